// The JetStream driver of EventLog against real nats-server processes (test/support/NatsServer.ts): format, order,
// fencing, corruption, crash recovery (kill -9, R1 and R3), and the engine on top of it.
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { connect, headers } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { type JetStreamManager, jetstreamManager, StorageType } from "@nats-io/jetstream"
import { ChronosConfig } from "@chronos/config"
import { Event } from "@chronos/domain"
import { type Commit, checksum, encodeBody, lastSeq } from "../src/Commit.ts"
import { Engine } from "../src/Engine.ts"
import { EventLog, type LogError, type PartitionLog } from "../src/EventLog.ts"
import * as JetStreamLog from "../src/internal/jetStreamLog.ts"
import { startNatsCluster, startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsClusterHandle, NatsServerHandle } from "../../../test/support/NatsServer.ts"

const commitOf = (partition: number, firstSeq: number, n: number, tag = "a"): Commit => ({
  partition,
  firstSeq,
  timestamp: 1_700_000_000_000 + firstSeq,
  events: Array.from({ length: n }, (_, i) => ({
    eventId: `${tag}-${firstSeq + i}`,
    tenant: "t1",
    stream: `s-${(firstSeq + i) % 5}`,
    type: "Tested",
    streamVersion: 0,
    data: { i: firstSeq + i, tag, text: "x".repeat(50) },
    metadata: { tag }
  }))
})

/** Opens `partition` in a scope of its own (closed by the caller), like the partition's reload does. */
const openIn = (driver: { readonly open: (p: number) => Effect.Effect<PartitionLog, LogError, Scope.Scope> }, p: number) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const log = yield* driver.open(p).pipe(
      Effect.provideService(Scope.Scope, scope),
      Effect.tapCause(() => Scope.close(scope, Exit.void))
    )
    return { log, close: Scope.close(scope, Exit.void) }
  })

const replayAll = (log: PartitionLog, fromSeq = 1) =>
  Effect.gen(function*() {
    const commits: Array<Commit> = []
    const last = yield* log.replay(fromSeq, (c) => void commits.push(c))
    return { last, commits }
  })

const defectText = <A, E>(exit: Exit.Exit<A, E>): string => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  return Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""
}

const sleep = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

/** Retries `effect` (a fresh attempt each time) until it succeeds or `timeoutMs` passes. */
const retrying = <A, E, R>(effect: Effect.Effect<A, E, R>, timeoutMs: number, what: string) =>
  Effect.gen(function*() {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const exit = yield* Effect.exit(effect)
      if (Exit.isSuccess(exit)) return exit.value
      if (performance.now() > deadline) return yield* Effect.die(new Error(`${what}: ${Cause.pretty(exit.cause)}`))
      yield* sleep(200)
    }
  })

/**
 * Appends commits of `size` events starting at `firstSeq`, `window` in flight, until `count` are acknowledged or
 * one fails; `onAck` sees each acknowledged commit in order. Returns the number acknowledged and the first error.
 */
const pump = (
  log: PartitionLog,
  firstSeq: number,
  options: { count: number; size: number; window: number; tag: string; onAck: (c: Commit) => void }
) =>
  Effect.gen(function*() {
    const inFlight: Array<{ commit: Commit; fiber: Fiber.Fiber<Exit.Exit<void, LogError>> }> = []
    let next = firstSeq
    let started = 0
    let acked = 0
    let error: unknown
    const settleOne = Effect.gen(function*() {
      const head = inFlight.shift()!
      const exit = yield* Fiber.join(head.fiber)
      if (Exit.isSuccess(exit)) {
        if (error !== undefined) throw new Error("an append succeeded after an earlier one failed")
        acked++
        options.onAck(head.commit)
      } else {
        error ??= Cause.squash(exit.cause)
      }
    })
    while (error === undefined && started < options.count) {
      const commit = commitOf(log.partition, next, options.size, options.tag)
      next = lastSeq(commit) + 1
      started++
      const fiber = yield* Effect.forkChild(Effect.exit(log.append(commit)), { startImmediately: true })
      inFlight.push({ commit, fiber })
      if (inFlight.length >= options.window) yield* settleOne
    }
    while (inFlight.length > 0) yield* settleOne
    return { acked, error }
  })

/**
 * A stale writer with two appends in flight: another writer has taken the position of the first one, so the first
 * is fenced; the second, pipelined behind it, expects the sequence the first would have taken — which the other
 * writer's commit now holds — and must be fenced too, or it would land with events overlapping the other's.
 */
const stalePipelined = (options: JetStreamLog.Options, partition: number, stream: string, jsm: () => Promise<JetStreamManager>) =>
  Effect.gen(function*() {
    const owner = yield* (yield* JetStreamLog.make(options)).open(partition)
    const stale = yield* (yield* JetStreamLog.make(options)).open(partition)
    yield* owner.append(commitOf(partition, 1, 3, "owner"))
    // Both started before either is acknowledged: pipelined on the stale writer's connection.
    const [first, second] = yield* Effect.all(
      [Effect.exit(stale.append(commitOf(partition, 1, 2, "stale"))), Effect.exit(stale.append(commitOf(partition, 3, 2, "stale")))],
      { concurrency: "unbounded" }
    )
    assert.isTrue(Exit.isFailure(first), "the stale writer's first append is fenced")
    assert.isTrue(Exit.isFailure(second), "the stale writer's pipelined second append is fenced")
    const info = yield* Effect.promise(() => jsm().then((m) => m.streams.info(stream)))
    assert.strictEqual(info.state.messages, 1, "only the owner's commit is stored")
    // The owner continues, and the log replays contiguous.
    yield* owner.append(commitOf(partition, 4, 1, "owner"))
    const all = yield* replayAll(owner)
    assert.deepStrictEqual(all.commits.flatMap((c) => c.events.map((e) => e.eventId)), ["owner-1", "owner-2", "owner-3", "owner-4"])
  }).pipe(Effect.scoped)

describe("JetStreamLog (single server)", () => {
  let server: NatsServerHandle
  let nc: NatsConnection
  beforeAll(async () => {
    server = await startNatsServer()
    nc = await connect({ servers: server.url })
  })
  afterAll(async () => {
    await nc?.close()
    await server?.stop()
  })

  it.live("creates the stream, round-trips commits and replays from any sequence", () =>
    Effect.gen(function*() {
      const driver = yield* JetStreamLog.make({ servers: server.url, streamPrefix: "RT" })
      const log = yield* driver.open(3)
      assert.strictEqual(yield* log.replay(1, () => assert.fail("empty log")), 0)
      const commits = [commitOf(3, 1, 3), commitOf(3, 4, 1), commitOf(3, 5, 10), commitOf(3, 15, 2)]
      for (const c of commits) yield* log.append(c)
      const all = yield* replayAll(log)
      assert.strictEqual(all.last, 16)
      assert.deepStrictEqual(all.commits, commits)
      // From the middle of a commit: the commit reaching fromSeq and every later one (binary search).
      for (const [from, firstIndex] of [[4, 1], [6, 2], [14, 2], [15, 3], [16, 3]] as const) {
        const part = yield* replayAll(log, from)
        assert.strictEqual(part.last, 16)
        assert.deepStrictEqual(part.commits, commits.slice(firstIndex), `fromSeq ${from}`)
      }
      assert.deepStrictEqual((yield* replayAll(log, 17)).commits, [])

      // The stored format: one stream per partition, one message per commit.
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      const info = yield* Effect.promise(() => jsm.streams.info("RT_P003"))
      assert.deepStrictEqual(info.config.subjects, ["rt.p.003"])
      assert.strictEqual(info.config.storage, "file")
      assert.strictEqual(info.config.num_replicas, 1)
      assert.strictEqual(info.config.allow_direct, true)
      assert.strictEqual(info.config.max_msgs, -1)
      assert.strictEqual(info.config.max_bytes, -1)
      assert.strictEqual(info.config.max_age, 0)
      assert.strictEqual(info.config.max_msg_size, 8 * 1_048_576) // the harness server's max_payload
      assert.strictEqual(info.config.duplicate_window, 120_000_000_000)
      assert.strictEqual(info.state.messages, 4)
      const m = yield* Effect.promise(() => jsm.streams.getMessage("RT_P003", { seq: 3 }))
      assert.strictEqual(m!.header.get("Chronos-First-Seq"), "5")
      assert.strictEqual(m!.header.get("Chronos-Count"), "10")
      assert.strictEqual(m!.header.get("Chronos-Crc32c"), JetStreamLog.formatCrc(checksum(m!.data)))
      assert.strictEqual(m!.header.get("Nats-Msg-Id"), "3-5")
      assert.deepStrictEqual(m!.data, encodeBody(commits[2]!))
    }).pipe(Effect.scoped))

  it.live("pipelined appends resolve in call order; a wrong first sequence is a defect", () =>
    Effect.gen(function*() {
      const driver = yield* JetStreamLog.make({ servers: server.url, streamPrefix: "PIPE" })
      const log = yield* driver.open(0)
      const order: Array<number> = []
      const fibers = []
      let seq = 1
      for (let i = 0; i < 200; i++) {
        const c = commitOf(0, seq, 1 + (i % 7))
        seq = lastSeq(c) + 1
        fibers.push(
          yield* Effect.forkChild(log.append(c).pipe(Effect.andThen(Effect.sync(() => void order.push(i)))), { startImmediately: true })
        )
      }
      for (const f of fibers) yield* Fiber.join(f)
      assert.deepStrictEqual(order, Array.from({ length: 200 }, (_, i) => i))
      const all = yield* replayAll(log)
      assert.strictEqual(all.last, seq - 1)
      assert.strictEqual(all.commits.length, 200)
      const text = defectText(yield* Effect.exit(log.append(commitOf(0, seq + 1, 1))))
      assert.include(text, "EventLog precondition")
    }).pipe(Effect.scoped))

  it.live("a reopened log (new connection) continues at the right sequence", () =>
    Effect.gen(function*() {
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const driver = yield* JetStreamLog.make({ servers: server.url, streamPrefix: "REOPEN" })
        const log = yield* driver.open(12)
        yield* log.append(commitOf(12, 1, 5))
        yield* log.append(commitOf(12, 6, 5))
        return yield* replayAll(log)
      }))
      assert.strictEqual(first.last, 10)
      yield* Effect.scoped(Effect.gen(function*() {
        const driver = yield* JetStreamLog.make({ servers: [server.url], streamPrefix: "REOPEN" })
        const log = yield* driver.open(12)
        const again = yield* replayAll(log)
        assert.strictEqual(again.last, 10)
        assert.deepStrictEqual(again.commits, first.commits)
        assert.include(defectText(yield* Effect.exit(log.append(commitOf(12, 1, 1)))), "expected seq 11")
        yield* log.append(commitOf(12, 11, 2))
        assert.strictEqual((yield* replayAll(log)).last, 12)
      }))
    }))

  it.live("fences a stale writer: LogFenced, nothing written, every later append fails", () =>
    Effect.gen(function*() {
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      const a = yield* (yield* JetStreamLog.make({ servers: server.url, streamPrefix: "FENCE" })).open(1)
      const b = yield* (yield* JetStreamLog.make({ servers: server.url, streamPrefix: "FENCE" })).open(1)
      yield* a.append(commitOf(1, 1, 3, "A"))
      // B starts at the same position: JetStream sees the same Nats-Msg-Id and acks a duplicate: a fence.
      const fenced = yield* Effect.flip(b.append(commitOf(1, 1, 2, "B")))
      assert.strictEqual(fenced._tag, "LogFenced")
      assert.strictEqual(fenced.partition, 1)
      const later = yield* Effect.flip(b.append(commitOf(1, 3, 1, "B")))
      assert.strictEqual(later._tag, "LogFenced")
      let info = yield* Effect.promise(() => jsm.streams.info("FENCE_P001"))
      assert.strictEqual(info.state.messages, 1)

      // Past the duplicate window the check is the expected last sequence (JetStream error 10071): a fence too.
      const shortWindow = { servers: server.url, streamPrefix: "FENCE2", duplicateWindowMs: 300 }
      const c = yield* (yield* JetStreamLog.make(shortWindow)).open(1)
      const d = yield* (yield* JetStreamLog.make(shortWindow)).open(1)
      yield* c.append(commitOf(1, 1, 3, "C"))
      yield* sleep(600)
      const d1 = yield* Effect.flip(d.append(commitOf(1, 1, 2, "D")))
      assert.strictEqual(d1._tag, "LogFenced")
      assert.include(d1.message, "10071")
      info = yield* Effect.promise(() => jsm.streams.info("FENCE2_P001"))
      assert.strictEqual(info.state.messages, 1)
      const got = yield* replayAll(c)
      assert.deepStrictEqual(got.commits.flatMap((x) => x.events.map((e) => e.eventId)), ["C-1", "C-2", "C-3"])

      // Ten writers racing for the same position: exactly one wins.
      const racers = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => i), () =>
        Effect.flatMap(JetStreamLog.make({ servers: server.url, streamPrefix: "RACE" }), (l) => l.open(2)))
      const results = yield* Effect.forEach(racers, (l, i) => Effect.exit(l.append(commitOf(2, 1, 1, `R${i}`))), {
        concurrency: "unbounded"
      })
      assert.strictEqual(results.filter(Exit.isSuccess).length, 1)
      info = yield* Effect.promise(() => jsm.streams.info("RACE_P002"))
      assert.strictEqual(info.state.messages, 1)
    }).pipe(Effect.scoped))

  it.live("a stale writer's pipelined appends are all fenced: none lands behind the first fenced one", () =>
    stalePipelined({ servers: server.url, streamPrefix: "PIPEFENCE" }, 6, "PIPEFENCE_P006", () => jetstreamManager(nc)))

  it.live("a CRC mismatch stops the replay with a defect naming the stream and sequence", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* (yield* JetStreamLog.make({ servers: server.url, streamPrefix: "CRC" })).open(5)
        yield* log.append(commitOf(5, 1, 2))
        yield* log.append(commitOf(5, 3, 2))
      }))
      // A hand-crafted commit: right headers and sequence, but a body that is not what its checksum says.
      const body = encodeBody(commitOf(5, 5, 1))
      const h = headers()
      h.set("Chronos-First-Seq", "5")
      h.set("Chronos-Count", "1")
      h.set("Chronos-Crc32c", JetStreamLog.formatCrc((checksum(body) ^ 1) >>> 0))
      h.set("Nats-Expected-Last-Sequence", "2")
      const ack = yield* Effect.promise(() => nc.request("crc.p.005", body, { headers: h, timeout: 5_000 }))
      assert.strictEqual(ack.json<{ seq: number }>().seq, 3)
      const log = yield* (yield* JetStreamLog.make({ servers: server.url, streamPrefix: "CRC" })).open(5)
      const seen: Array<number> = []
      const text = defectText(yield* Effect.exit(log.replay(1, (c) => void seen.push(c.firstSeq))))
      assert.include(text, "CRC32C mismatch in stream CRC_P005 at JetStream sequence 3")
      assert.deepStrictEqual(seen, [1, 3])
    }).pipe(Effect.scoped))

  it.live("refuses what cannot work (commits over max_payload, foreign streams), raises what it can", () =>
    Effect.gen(function*() {
      const tooBig = defectText(yield* Effect.exit(JetStreamLog.make({ servers: server.url, commitBytesMax: 8 * 1_048_576 })))
      assert.include(tooBig, "max_payload is 8388608 bytes, but commitBytesMax 8388608")
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      yield* Effect.promise(() => jsm.streams.add({ name: "ALIEN_P000", subjects: ["alien.elsewhere"] }))
      yield* Effect.promise(() => jsm.streams.add({ name: "ALIEN_P001", subjects: ["alien.p.001"], max_age: 60_000_000_000 }))
      const driver = yield* JetStreamLog.make({ servers: server.url, streamPrefix: "ALIEN" })
      assert.include(defectText(yield* Effect.exit(driver.open(0))), "stream ALIEN_P000 exists with subjects")
      assert.include(defectText(yield* Effect.exit(driver.open(1))), "max_age 60000000000 (the log must never discard")
      yield* Effect.promise(() => jsm.streams.add({ name: "ALIEN_P002", subjects: ["alien.p.002"], storage: StorageType.File }))
      const r3 = yield* JetStreamLog.make({ servers: server.url, streamPrefix: "ALIEN", replicas: 3 })
      assert.include(defectText(yield* Effect.exit(r3.open(2))), "num_replicas 1 (expected 3)")
      assert.include(defectText(yield* Effect.exit(r3.open(3))), "replicas > 1 not supported in non-clustered mode")
      // Editable settings that are too tight are raised instead.
      yield* Effect.promise(() =>
        jsm.streams.add({ name: "ALIEN_P004", subjects: ["alien.p.004"], storage: StorageType.File, max_msg_size: 1000 })
      )
      yield* driver.open(4)
      const raised = yield* Effect.promise(() => jsm.streams.info("ALIEN_P004"))
      assert.strictEqual(raised.config.max_msg_size, 8 * 1_048_576)
      assert.strictEqual(raised.config.allow_direct, true)
    }).pipe(Effect.scoped))

  it.live("the engine over the JetStream log: append, read, restart, read back", () =>
    Effect.gen(function*() {
      const engineLayer = () =>
        Engine.layerLocal.pipe(
          Layer.provide(EventLog.layerJetStream({ servers: server.url, streamPrefix: "ENGINE" })),
          Layer.provide(ChronosConfig.layer({ partitions: 4 }))
        )
      const streams = Array.from({ length: 8 }, (_, i) => `order-${i}`)
      yield* Effect.gen(function*() {
        const engine = yield* Engine
        for (const s of streams) {
          yield* engine.append("t1", s, { expectedVersion: "no_stream", events: [Event.propose("Placed", { s })] })
          yield* engine.append("t1", s, { expectedVersion: 0, events: [Event.propose("Paid", { s, paid: true })] })
        }
        const events = yield* engine.readStream("t1", "order-3", {})
        assert.deepStrictEqual(events.map((e) => [e.type, e.streamVersion]), [["Placed", 0], ["Paid", 1]])
      }).pipe(Effect.provide(engineLayer()))
      // A new layer: a new connection, every partition rebuilt from its stream.
      yield* Effect.gen(function*() {
        const engine = yield* Engine
        for (const s of streams) {
          const events = yield* engine.readStream("t1", s, {})
          assert.deepStrictEqual(events.map((e) => [e.type, e.data]), [["Placed", { s }], ["Paid", { s, paid: true }]])
        }
        const next = yield* engine.append("t1", "order-0", { expectedVersion: 1, events: [Event.propose("Shipped", {})] })
        assert.strictEqual(next.firstVersion, 2)
        const status = yield* engine.partitions
        assert.strictEqual(status.reduce((n, p) => n + p.events, 0), 17)
      }).pipe(Effect.provide(engineLayer()))
    }))
})

describe("JetStreamLog (crash of a single server)", () => {
  let server: NatsServerHandle
  beforeAll(async () => {
    server = await startNatsServer()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it.live("kill -9 during pipelined appends: every acknowledged commit survives, contiguous", () =>
    Effect.gen(function*() {
      const options = { servers: server.url, streamPrefix: "KILL", publishTimeoutMs: 2_000, requestTimeoutMs: 3_000 }
      const acked: Array<Commit> = []
      const result = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* (yield* JetStreamLog.make(options)).open(7)
        return yield* pump(log, 1, {
          count: 100_000,
          size: 16,
          window: 8,
          tag: "k",
          onAck: (c) => {
            acked.push(c)
            if (acked.length === 60) server.kill("SIGKILL")
          }
        })
      }))
      assert.isAtLeast(result.acked, 60)
      assert.isDefined(result.error)
      assert.strictEqual((result.error as LogError)._tag, "LogUnavailable")
      yield* Effect.promise(() => server.restart())
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* (yield* JetStreamLog.make(options)).open(7)
        const all = yield* replayAll(log) // verifies CRC and continuity
        const ackedLast = lastSeq(acked[acked.length - 1]!)
        assert.isAtLeast(all.last, ackedLast)
        assert.deepStrictEqual(all.commits.slice(0, acked.length), acked)
        // And it takes appends again, after whatever (acked or not) the log holds.
        yield* log.append(commitOf(7, all.last + 1, 1, "after"))
      }))
    }))

  it.live("the engine rides through a kill -9 and restart of its server on the same connection", () =>
    Effect.gen(function*() {
      const uuid = (i: number) => `0b6a1f4e-3f7e-4a59-9a9e-${String(i).padStart(12, "0")}`
      const layer = Engine.layerLocal.pipe(
        Layer.provide(EventLog.layerJetStream({ servers: server.url, streamPrefix: "EK", publishTimeoutMs: 2_000 })),
        Layer.provide(ChronosConfig.layer({ partitions: 2 }))
      )
      const append = (engine: Engine["Service"], i: number) =>
        engine.append("t1", `s-${i % 4}`, { events: [Event.propose("E", { i }, { eventId: uuid(i) })] })
      yield* Effect.gen(function*() {
        const engine = yield* Engine
        for (let i = 0; i < 20; i++) yield* append(engine, i)
        server.kill("SIGKILL")
        yield* Effect.promise(() => server.restart())
        // The partitions reload from their streams; a client retries with the same event ids.
        for (let i = 20; i < 30; i++) yield* retrying(append(engine, i), 30_000, `append ${i}`)
      }).pipe(Effect.provide(layer))
      yield* Effect.gen(function*() {
        const engine = yield* Engine
        const ids = (yield* Effect.forEach([0, 1, 2, 3], (k) => engine.readStream("t1", `s-${k}`, {})))
          .flat()
          .map((e) => e.eventId)
          .sort()
        assert.deepStrictEqual(ids, Array.from({ length: 30 }, (_, i) => uuid(i)))
      }).pipe(Effect.provide(layer))
    }))
})

describe("JetStreamLog (3-node cluster, R3)", () => {
  let cluster: NatsClusterHandle
  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 })
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  it.live("R3: a stale writer's pipelined appends are all fenced", () =>
    Effect.gen(function*() {
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: [...cluster.urls] })),
        (c) => Effect.promise(() => c.close())
      )
      yield* stalePipelined({ servers: [...cluster.urls], replicas: 3, streamPrefix: "R3PIPE" }, 7, "R3PIPE_P007", () => jetstreamManager(nc))
    }).pipe(Effect.scoped))

  it.live("kill -9 of the stream leader during appends: with reopen-and-retry, every acked commit survives", () =>
    Effect.gen(function*() {
      const options = {
        servers: [...cluster.urls],
        replicas: 3,
        streamPrefix: "R3",
        publishTimeoutMs: 2_000,
        requestTimeoutMs: 3_000
      }
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: [...cluster.urls] })),
        (c) => Effect.promise(() => c.close())
      )
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      const acked: Array<Commit> = []
      const target = 400
      let killed = false
      let failures = 0
      yield* Effect.scoped(Effect.gen(function*() {
        const driver = yield* JetStreamLog.make(options)
        while (acked.length < target) {
          // Reopen (as the partition does after a failure) and continue after whatever the log holds.
          const { log, close } = yield* retrying(openIn(driver, 4), 30_000, "open")
          const all = yield* retrying(replayAll(log), 30_000, "replay")
          assert.deepStrictEqual(all.commits.slice(0, acked.length), acked, "acked commits present after reopen")
          // Commits the log holds beyond the acked ones were written but not acknowledged: adopt them.
          acked.push(...all.commits.slice(acked.length))
          const r = yield* pump(log, all.last + 1, {
            count: target - acked.length,
            size: 8,
            window: 8,
            tag: `r${failures}`,
            onAck: (c) => {
              acked.push(c)
              if (acked.length === 100 && !killed) {
                killed = true
                void jsm.streams.info("R3_P004").then((i) => {
                  const leader = cluster.nodes.find((n) => n.name === i.cluster?.leader)
                  leader?.kill("SIGKILL")
                })
              }
            }
          })
          if (r.error !== undefined) failures++
          yield* close
        }
      }))
      assert.isTrue(killed)
      assert.isAtLeast(failures, 1)
      // A fresh connection sees every acknowledged commit, verified and contiguous.
      yield* Effect.scoped(Effect.gen(function*() {
        const driver = yield* JetStreamLog.make(options)
        const { log } = yield* retrying(openIn(driver, 4), 30_000, "final open")
        const all = yield* retrying(replayAll(log), 30_000, "final replay")
        assert.deepStrictEqual(all.commits.slice(0, acked.length), acked)
      }))
    }).pipe(Effect.scoped))
})
