/**
 * The cluster's cold tier end to end on a real nats-server: a node with the JetStream log and the NATS segment store
 * seals (`POST /v1/admin/seal`), which truncates each partition's JetStream stream below the sealed range (its
 * first_seq moves); a node started afterwards on the same NATS boots from segments + the truncated streams and gives
 * the same answers, and takes appends.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime } from "effect"
import { HttpServer } from "effect/http"
import { connect } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import * as JetStreamLog from "@chronos/engine/internal/jetStreamLog"
import * as Node from "@chronos/server/Node"
import { startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsServerHandle } from "../../../test/support/NatsServer.ts"
import { populate, smallLimits, snapshot } from "./support.ts"

const partitions = 3
const streams = 12

const startNode = (natsUrl: string) =>
  Effect.promise(async () => {
    const runtime = ManagedRuntime.make(
      Node.layerFromConfig().pipe(
        Layer.provideMerge(ChronosConfig.layer({
          ...smallLimits,
          partitions,
          httpHost: "127.0.0.1",
          httpPort: 0,
          logDriver: "jetstream",
          natsUrls: natsUrl,
          segmentStoreDriver: "nats"
        }))
      )
    )
    const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    const engine = await runtime.runPromise(Effect.gen(function*() {
      return yield* Engine
    }))
    return { engine, url: `http://127.0.0.1:${address.port}`, stop: () => runtime.dispose() }
  })

/** Every answer about the data; partition statuses left out (replica activity times differ between runs). */
const answers = (engine: Parameters<typeof snapshot>[0]) =>
  Effect.map(snapshot(engine, streams), (s) => {
    const { partitions: _, ...rest } = s
    return rest
  })

const firstSeqs = (jsm: JetStreamManager) =>
  Effect.promise(() =>
    Promise.all(Array.from({ length: partitions }, (_, p) =>
      jsm.streams.info(JetStreamLog.streamName(JetStreamLog.defaultStreamPrefix, p)).then((i) => i.state)))
  )

describe("cold tier on NATS with the JetStream log", () => {
  let server: NatsServerHandle
  let nc: NatsConnection
  let jsm: JetStreamManager
  beforeAll(async () => {
    server = await startNatsServer()
    nc = await connect({ servers: server.url })
    jsm = await jetstreamManager(nc)
  })
  afterAll(async () => {
    await nc?.close()
    await server?.stop()
  })

  it.live("seal truncates each partition's stream; a node booted from segments + the truncated log answers the same", () =>
    Effect.gen(function*() {
      const a = yield* startNode(server.url)
      yield* populate(a.engine, 400, streams)
      const before = yield* firstSeqs(jsm)
      for (const s of before) assert.strictEqual(s.first_seq, 1)

      const sealed = yield* Effect.promise(() => fetch(`${a.url}/v1/admin/seal`, { method: "POST" }).then((r) => r.json()))
      const sealedThrough = (sealed as { partitions: Array<{ partition: number; sealedThrough: number }> }).partitions
      assert.strictEqual(sealedThrough.length, partitions)
      // Each stream now starts at its last commit (everything durable was sealed; the last commit is always kept).
      const truncated = yield* firstSeqs(jsm)
      truncated.forEach((s, p) => {
        assert.isAbove(s.first_seq, 1, `partition ${p}`)
        assert.strictEqual(s.first_seq, s.last_seq, `partition ${p}`)
        assert.strictEqual(s.messages, 1, `partition ${p}`)
      })
      // A tail after the seal stays in the log.
      yield* populate(a.engine, 60, streams, 400)
      const expected = yield* answers(a.engine)
      yield* Effect.promise(() => a.stop())

      const b = yield* startNode(server.url)
      const started = performance.now()
      const got = yield* answers(b.engine)
      assert.deepStrictEqual(got, expected)
      yield* Effect.logInfo(`answers after the cold boot compared in ${Math.round(performance.now() - started)} ms`)
      // Appends continue on the truncated streams, and a second seal truncates further.
      yield* populate(b.engine, 30, streams, 460)
      yield* Effect.promise(() => fetch(`${b.url}/v1/admin/seal`, { method: "POST" }).then((r) => r.json()))
      const again = yield* firstSeqs(jsm)
      again.forEach((s, p) => {
        assert.isAbove(s.first_seq, truncated[p]!.first_seq, `partition ${p}`)
        assert.strictEqual(s.messages, 1, `partition ${p}`)
      })
      const afterSecond = yield* answers(b.engine)
      yield* Effect.promise(() => b.stop())
      const c = yield* startNode(server.url)
      assert.deepStrictEqual(yield* answers(c.engine), afterSecond)
      yield* Effect.promise(() => c.stop())
    }), 120_000)
})
