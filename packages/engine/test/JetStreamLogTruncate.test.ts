// Truncation of the JetStream log below the cold tier's sealed range, against real nats-server processes (R1 and R3):
// the stream's first_seq moves, the commit holding the boundary and the last commit are kept, a replay from the base
// reads the rest and a replay from below it is a clear defect, a reopened handle finds the truncated log, and a stream
// created with deny_purge (before truncation existed) still opens.
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schedule, Scope } from "effect"
import { connect } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { DiscardPolicy, type JetStreamManager, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream"
import type { Commit } from "../src/Commit.ts"
import type { LogError, PartitionLog } from "../src/EventLog.ts"
import * as JetStreamLog from "../src/internal/jetStreamLog.ts"
import { startNatsCluster, startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsClusterHandle, NatsServerHandle } from "../../../test/support/NatsServer.ts"

/** Commit `k` (1-based) holds 3 events: seqs 3k-2 .. 3k. */
const commitOf = (partition: number, k: number): Commit => ({
  partition,
  firstSeq: 3 * k - 2,
  timestamp: 1_700_000_000_000 + k,
  events: Array.from({ length: 3 }, (_, i) => ({
    eventId: `e-${3 * k - 2 + i}`,
    tenant: "t1",
    stream: `s-${k % 4}`,
    type: "Tested",
    streamVersion: 0,
    data: { seq: 3 * k - 2 + i },
    metadata: {}
  }))
})

const openIn = (driver: { readonly open: (p: number) => Effect.Effect<PartitionLog, LogError, Scope.Scope> }, p: number) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const log = yield* driver.open(p).pipe(Effect.provideService(Scope.Scope, scope))
    return { log, close: Scope.close(scope, Exit.void) }
  })

const replayFirsts = (log: PartitionLog, fromSeq: number) =>
  Effect.gen(function*() {
    const firsts: Array<number> = []
    const last = yield* log.replay(fromSeq, (c) => void firsts.push(c.firstSeq))
    return { last, firsts }
  })

/** Stream info from the leader; an admin request that times out during an R3 election is asked again (bounded). */
const info = (jsm: JetStreamManager, stream: string) =>
  Effect.tryPromise(() => jsm.streams.info(stream)).pipe(
    Effect.retry({ schedule: Schedule.spaced("250 millis"), times: 40 }),
    Effect.orDie
  )

/** The whole scenario on one server or cluster: 10 commits, truncations, replays, a reopen, more appends. */
const scenario = (urls: ReadonlyArray<string>, replicas: number, jsm: () => JetStreamManager, prefix: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const driver = yield* JetStreamLog.make({ servers: urls, replicas, streamPrefix: prefix }).pipe(
      Effect.provideService(Scope.Scope, scope)
    )
    const stream = JetStreamLog.streamName(prefix, 0)
    const a = yield* openIn(driver, 0)
    for (let k = 1; k <= 10; k++) yield* a.log.append(commitOf(0, k))
    assert.strictEqual((yield* info(jsm(), stream)).config.deny_purge, false)
    assert.isDefined(a.log.truncateBefore)
    const truncate = a.log.truncateBefore!

    // Sealed through seq 13: seq 14 is in commit 5 (seqs 13..15), which is kept whole; commits 1..4 go.
    yield* truncate(14)
    const after = yield* info(jsm(), stream)
    assert.strictEqual(after.state.first_seq, 5)
    assert.strictEqual(after.state.messages, 6)
    assert.strictEqual(after.state.last_seq, 10)
    // A replay from the base or inside the first kept commit reads every kept commit; the partition skips the
    // straddling commit's events below its sealed sequence itself.
    assert.deepStrictEqual(yield* replayFirsts(a.log, 13), { last: 30, firsts: [13, 16, 19, 22, 25, 28] })
    assert.deepStrictEqual(yield* replayFirsts(a.log, 14), { last: 30, firsts: [13, 16, 19, 22, 25, 28] })
    assert.deepStrictEqual(yield* replayFirsts(a.log, 23), { last: 30, firsts: [22, 25, 28] })
    // Below the base: a defect naming it, never a replay that silently starts later.
    const below = yield* Effect.exit(replayFirsts(a.log, 1))
    assert.isTrue(Exit.isFailure(below))
    if (Exit.isFailure(below)) assert.include(Cause.pretty(below.cause), "truncated below seq 13")
    // Truncating at or below the base is a no-op; far above the end keeps the last commit.
    yield* truncate(5)
    assert.strictEqual((yield* info(jsm(), stream)).state.first_seq, 5)
    yield* truncate(1_000)
    const kept = yield* info(jsm(), stream)
    assert.strictEqual(kept.state.first_seq, 10)
    assert.strictEqual(kept.state.messages, 1)
    yield* a.close

    // A new handle (a restart, another runner) opens the truncated log: same end, appends continue in order.
    const b = yield* openIn(driver, 0)
    assert.deepStrictEqual(yield* replayFirsts(b.log, 28), { last: 30, firsts: [28] })
    yield* b.log.append(commitOf(0, 11))
    assert.deepStrictEqual(yield* replayFirsts(b.log, 29), { last: 33, firsts: [28, 31] })
    assert.strictEqual((yield* info(jsm(), stream)).state.last_seq, 11)
    const below2 = yield* Effect.exit(replayFirsts(b.log, 27))
    assert.isTrue(Exit.isFailure(below2))
    yield* b.close
    yield* Scope.close(scope, Exit.void)
  })

describe("JetStream log truncation (R1)", () => {
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

  it.live("purges whole commits below the sealed sequence; replay from below the base is a defect", () =>
    scenario([server.url], 1, () => jsm, "TRUNC"), 60_000)

  it.live("a handle opened before another handle truncated sees the new base (truncates further, refuses below it)", () =>
    Effect.gen(function*() {
      const prefix = "TWOHANDLES"
      const scope = yield* Scope.make()
      const driver = yield* JetStreamLog.make({ servers: server.url, streamPrefix: prefix }).pipe(
        Effect.provideService(Scope.Scope, scope)
      )
      const a = yield* openIn(driver, 0)
      for (let k = 1; k <= 8; k++) yield* a.log.append(commitOf(0, k))
      // `b` opens on the whole log; then the (stale) owner `a` truncates below seq 16 (commit 6 kept).
      const b = yield* openIn(driver, 0)
      yield* a.log.truncateBefore!(16)
      assert.strictEqual((yield* info(jsm, JetStreamLog.streamName(prefix, 0))).state.first_seq, 6)
      // `b` probes nothing below the new first message: its truncation and replays start there.
      yield* b.log.truncateBefore!(20)
      assert.strictEqual((yield* info(jsm, JetStreamLog.streamName(prefix, 0))).state.first_seq, 7)
      assert.deepStrictEqual(yield* replayFirsts(b.log, 19), { last: 24, firsts: [19, 22] })
      const below = yield* Effect.exit(replayFirsts(b.log, 10))
      assert.isTrue(Exit.isFailure(below))
      if (Exit.isFailure(below)) assert.include(Cause.pretty(below.cause), "truncated below seq 19")
      yield* a.close
      yield* b.close
      yield* Scope.close(scope, Exit.void)
    }), 60_000)

  it.live("a stream created with deny_purge opens and works; truncation skips it", () =>
    Effect.gen(function*() {
      const prefix = "LEGACY"
      const stream = JetStreamLog.streamName(prefix, 0)
      // The configuration the driver created before truncation existed.
      yield* Effect.promise(() =>
        jsm.streams.add({
          name: stream,
          subjects: [JetStreamLog.subjectName(prefix, 0)],
          storage: StorageType.File,
          num_replicas: 1,
          retention: RetentionPolicy.Limits,
          discard: DiscardPolicy.Old,
          allow_direct: true,
          deny_delete: true,
          deny_purge: true
        })
      )
      const scope = yield* Scope.make()
      const driver = yield* JetStreamLog.make({ servers: server.url, streamPrefix: prefix }).pipe(
        Effect.provideService(Scope.Scope, scope)
      )
      const a = yield* openIn(driver, 0)
      for (let k = 1; k <= 4; k++) yield* a.log.append(commitOf(0, k))
      yield* a.log.truncateBefore!(7)
      const after = yield* info(jsm, stream)
      assert.isTrue(after.config.deny_purge)
      assert.strictEqual(after.state.first_seq, 1)
      assert.strictEqual(after.state.messages, 4)
      // JetStream refuses to lift deny_purge (why the driver does not try).
      const lift = yield* Effect.exit(Effect.tryPromise(() => jsm.streams.update(stream, { ...after.config, deny_purge: false })))
      assert.isTrue(Exit.isFailure(lift))
      assert.deepStrictEqual(yield* replayFirsts(a.log, 1), { last: 12, firsts: [1, 4, 7, 10] })
      yield* a.close
      yield* Scope.close(scope, Exit.void)
    }), 60_000)
})

describe("JetStream log truncation (R3)", () => {
  let cluster: NatsClusterHandle
  let nc: NatsConnection
  let jsm: JetStreamManager
  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 })
    nc = await connect({ servers: [...cluster.urls] })
    jsm = await jetstreamManager(nc)
  }, 60_000)
  afterAll(async () => {
    await nc?.close()
    await cluster?.stop()
  })

  it.live("the same on three replicas", () => scenario(cluster.urls, 3, () => jsm, "TRUNC3"), 90_000)
})
