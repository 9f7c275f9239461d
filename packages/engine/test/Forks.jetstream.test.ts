/**
 * Forks over the JetStream log (a real nats-server): a fork's partitions are streams of their own
 * (`<prefix>_FORK_<forkId>_P<NNN>`), the store's streams do not change, and a discard deletes the fork's streams;
 * fork records in NATS KV survive a restart.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { connect } from "@nats-io/transport-node"
import { jetstreamManager } from "@nats-io/jetstream"
import { ChronosConfig } from "@chronos/config"
import { Event } from "@chronos/domain"
import { Engine } from "../src/Engine.ts"
import { EventLog } from "../src/EventLog.ts"
import { ForkRegistry } from "../src/ForkRegistry.ts"
import { Forks } from "../src/Forks.ts"
import { startNatsServer, type NatsServerHandle } from "../../../test/support/NatsServer.ts"

const ev = (type: string, data: Schema.Json) => Event.propose(type, data)

describe("Forks on the JetStream log", () => {
  let server: NatsServerHandle
  beforeAll(async () => {
    server = await startNatsServer()
  })
  afterAll(() => server?.stop())

  const open = () =>
    ManagedRuntime.make(
      Forks.layer.pipe(
        Layer.provideMerge(Engine.layerLocal),
        Layer.provideMerge(Layer.mergeAll(
          Layer.orDie(EventLog.layerJetStream({ servers: server.url, streamPrefix: "FKT" })),
          Layer.orDie(ForkRegistry.layerNatsKv({ servers: [server.url], replicas: 1, bucket: "fkt_forks" }))
        )),
        Layer.provideMerge(ChronosConfig.layer({ partitions: 2 }))
      )
    )

  it("keeps a fork in streams of its own, its record in KV, and deletes them with it", async () => {
    let rt = open()
    const nc = await connect({ servers: server.url })
    try {
      const jsm = await jetstreamManager(nc)
      const streams = async () => {
        const out: Record<string, number> = {}
        for await (const info of jsm.streams.list()) out[info.config.name] = info.state.messages
        return out
      }
      const fork = await rt.runPromise(Effect.gen(function*() {
        const engine = yield* Engine
        const forks = yield* Forks
        for (let i = 0; i < 10; i++) yield* engine.append("t", `s${i}`, { events: [ev("A", { i })] })
        const fork = yield* forks.create("t", { ttlSeconds: 60 })
        const f = yield* forks.engine("t", fork.forkId)
        return { fork, f }
      }))
      const before = await streams()
      assert.deepStrictEqual(Object.keys(before).filter((n) => n.startsWith("FKT_")).sort(), ["FKT_P000", "FKT_P001"])
      await rt.runPromise(Effect.gen(function*() {
        for (let i = 0; i < 10; i++) yield* fork.f.append("t", `s${i}`, { expectedVersion: 0, events: [ev("B", { i })] })
        const read = yield* fork.f.readStream("t", "s3", {})
        assert.deepStrictEqual(read.map((e) => [e.type, e.streamVersion]), [["A", 0], ["B", 1]])
      }))
      const during = await streams()
      const mine = Object.keys(during).filter((name) => name.startsWith(`FKT_FORK_${fork.fork.forkId}_P`)).sort()
      assert.deepStrictEqual(mine, [`FKT_FORK_${fork.fork.forkId}_P000`, `FKT_FORK_${fork.fork.forkId}_P001`])
      assert.strictEqual(mine.reduce((n, name) => n + during[name]!, 0) > 0, true)
      assert.strictEqual(during["FKT_P000"], before["FKT_P000"])
      assert.strictEqual(during["FKT_P001"], before["FKT_P001"])

      // A restart: the record comes back from KV, the fork's events from its streams.
      await rt.dispose()
      rt = open()
      await rt.runPromise(Effect.gen(function*() {
        const forks = yield* Forks
        assert.deepStrictEqual((yield* forks.list("t")).map((f) => f.forkId), [fork.fork.forkId])
        const f = yield* forks.engine("t", fork.fork.forkId)
        assert.deepStrictEqual((yield* f.readStream("t", "s3", {})).map((e) => e.type), ["A", "B"])
        yield* forks.discard("t", fork.fork.forkId)
      }))
      assert.deepStrictEqual(Object.keys(await streams()).filter((n) => n.startsWith("FKT_")).sort(), ["FKT_P000", "FKT_P001"], "the fork's streams are deleted")
      await rt.dispose()
      rt = open()
      assert.deepStrictEqual(await rt.runPromise(Effect.flatMap(Effect.service(Forks), (forks) => forks.list("t"))), [])
    } finally {
      await nc.close()
      await rt.dispose()
    }
  })
})
