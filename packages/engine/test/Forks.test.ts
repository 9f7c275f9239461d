/**
 * Forks at the engine level over the memory log (whose stores the tests inspect): reads through a fork, versions
 * and positions across the base, `asOf` forks, diff, merge (clean, conflicting, racing, idempotent), branches,
 * subscriptions and queries through a fork, expiry and the bounds. The file log's byte-for-byte and storage checks
 * are in `Forks.file.test.ts`; HTTP in the server's `Forks.http.test.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Schema, Stream } from "effect"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { Event as EventModule } from "@chronos/domain"
import type { Event } from "@chronos/domain"
import type { Commit } from "../src/Commit.ts"
import { Engine, type EngineShape } from "../src/Engine.ts"
import { EventLog, makeMemory } from "../src/EventLog.ts"
import { ForkRegistry } from "../src/ForkRegistry.ts"
import { Forks } from "../src/Forks.ts"

const ev = (type: string, data: Schema.Json, eventId?: string) => EventModule.propose(type, data, { eventId })
const uuid = (n: number) => `0b6a1f4e-3f7e-4a59-9a9e-${n.toString(16).padStart(12, "0")}`

/** An engine over a memory log whose stores the test can inspect, with forks on a memory registry. */
const setup = (overrides: Partial<ChronosConfigShape> = {}) => {
  const store = new Map<number, Array<Commit>>()
  const namespaces = new Map<string, Map<number, Array<Commit>>>()
  const layer = Forks.layer.pipe(
    Layer.provideMerge(Engine.layerLocal),
    Layer.provideMerge(Layer.mergeAll(Layer.succeed(EventLog, makeMemory(store, namespaces)), ForkRegistry.layerMemory)),
    Layer.provideMerge(ChronosConfig.layer({ partitions: 4, ...overrides }))
  )
  return { store, namespaces, layer }
}

/** Everything the store's own log holds, as text: compared before/after fork activity. */
const logBytes = (store: Map<number, Array<Commit>>) =>
  JSON.stringify([...store].sort(([a], [b]) => a - b).map(([p, commits]) =>
    [p, commits.map((c) => [c.partition, c.firstSeq, c.timestamp, c.events])]
  ))

/** Every event of a tenant, through `engine.query`, all pages. */
const everything = (engine: EngineShape, tenant: string) =>
  Effect.gen(function*() {
    const out: Array<Event.StoredEvent> = []
    let after: string | undefined
    do {
      const page = yield* engine.query(tenant, { limit: 7, after })
      out.push(...page.events)
      after = page.next
    } while (after !== undefined)
    return out
  })

const baseOf = (base: string, p: number) => Number(base.split(",")[p]!.split(":")[1])

describe("Forks", () => {
  it.live("a fork reads its parent at the base, writes only to itself, and continues versions and positions", () => {
    const { layer, store } = setup()
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      yield* engine.append("t", "order-1", { events: [ev("Placed", { n: 1 }), ev("Paid", { n: 2 })] })
      yield* engine.append("t", "order-2", { events: [ev("Placed", { n: 1 })] })
      const fork = yield* forks.create("t", { ttlSeconds: 60, labels: { agent: "a1" } })
      assert.deepStrictEqual(fork.labels, { agent: "a1" })
      const f = yield* forks.engine("t", fork.forkId)
      // Main moves on after the base: the fork does not see it.
      yield* engine.append("t", "order-1", { events: [ev("Shipped", { n: 3 })] })
      const mainBefore = logBytes(store)
      const mainRead = yield* everything(engine, "t")

      const read = yield* f.readStream("t", "order-1", {})
      assert.deepStrictEqual(read.map((e) => [e.type, e.streamVersion]), [["Placed", 0], ["Paid", 1]])
      const a = yield* f.append("t", "order-1", { expectedVersion: 1, events: [ev("Cancelled", { n: 9 })] })
      assert.strictEqual(a.firstVersion, 2)
      const p = engine.partitionOf("t", "order-1")
      assert.deepStrictEqual(a.positions, [{ partition: p, seq: baseOf(fork.base, p) + 1 }])
      const all = yield* f.readStream("t", "order-1", {})
      assert.deepStrictEqual(all.map((e) => [e.type, e.streamVersion]), [["Placed", 0], ["Paid", 1], ["Cancelled", 2]])
      assert.strictEqual(all[2]!.seq, baseOf(fork.base, p) + 1)
      assert.deepStrictEqual((yield* f.readStream("t", "order-1", { fromVersion: 1, limit: 1 })).map((e) => e.type), ["Paid"])
      assert.deepStrictEqual((yield* f.readStream("t", "order-1", { fromVersion: 1 })).map((e) => e.type), ["Paid", "Cancelled"])
      const back = yield* f.readStream("t", "order-1", { direction: "backward" })
      assert.deepStrictEqual(back.map((e) => e.streamVersion), [2, 1, 0])
      const back2 = yield* f.readStream("t", "order-1", { direction: "backward", fromVersion: 1 })
      assert.deepStrictEqual(back2.map((e) => e.streamVersion), [1, 0])
      // Expected versions see the merged stream.
      const wrong = yield* f.append("t", "order-1", { expectedVersion: 1, events: [ev("X", {})] }).pipe(Effect.flip)
      assert.strictEqual(wrong._tag, "WrongExpectedVersion")
      if (wrong._tag === "WrongExpectedVersion") assert.strictEqual(wrong.actual, 2)
      assert.strictEqual((yield* f.append("t", "order-2", { expectedVersion: "no_stream", events: [ev("X", {})] }).pipe(Effect.flip))._tag, "WrongExpectedVersion")
      const fresh = yield* f.append("t", "order-9", { expectedVersion: "no_stream", events: [ev("Placed", {})] })
      assert.strictEqual(fresh.firstVersion, 0)
      const state = yield* f.state("t", "order-1", "merge", undefined)
      assert.deepStrictEqual([state.version, state.state], [2, { n: 9 }])
      const count = yield* f.state("t", "order-1", "count", undefined)
      assert.deepStrictEqual([count.version, count.state], [2, 3])

      // The parent is unchanged by all of it: its log and every read of it.
      assert.strictEqual(logBytes(store), mainBefore)
      assert.deepStrictEqual(yield* everything(engine, "t"), mainRead)
      assert.deepStrictEqual((yield* engine.readStream("t", "order-1", {})).map((e) => e.type), ["Placed", "Paid", "Shipped"])
    }).pipe(Effect.provide(layer))
  })

  it.live("a retried append keeps its answer across the base: parent ids are duplicates, not new events", () => {
    const { layer } = setup()
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      const original = yield* engine.append("t", "s", { events: [ev("A", 1, uuid(1)), ev("B", 2, uuid(2))] })
      const f = yield* forks.engine("t", (yield* forks.create("t", { ttlSeconds: 60 })).forkId)
      const again = yield* f.append("t", "s", { expectedVersion: "no_stream", events: [ev("A", 1, uuid(1)), ev("B", 2, uuid(2))] })
      assert.deepStrictEqual(again, original)
      assert.strictEqual((yield* f.readStream("t", "s", {})).length, 2)
      const mixed = yield* f.append("t", "s", { events: [ev("A", 1, uuid(1)), ev("C", 3, uuid(3))] }).pipe(Effect.flip)
      assert.strictEqual(mixed._tag, "InvalidRequest")
      // Event ids are unique per partition (as on main): another stream of the same partition cannot reuse one.
      let other = 0
      while (engine.partitionOf("t", `other-${other}`) !== engine.partitionOf("t", "s")) other++
      const elsewhere = yield* f.append("t", `other-${other}`, { events: [ev("A", 1, uuid(1))] }).pipe(Effect.flip)
      assert.strictEqual(elsewhere._tag, "InvalidRequest")
      // The fork's own ids dedupe as usual.
      const own = yield* f.append("t", "s", { events: [ev("C", 3, uuid(3))] })
      assert.deepStrictEqual(yield* f.append("t", "s", { events: [ev("C", 3, uuid(3))] }), own)
    }).pipe(Effect.provide(layer))
  })

  it.live("a fork created at asOf sees exactly the history up to that point", () => {
    const { layer } = setup()
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      for (let i = 0; i < 6; i++) yield* engine.append("t", `s${i % 3}`, { events: [ev("E", { i })] })
      const cut = (yield* engine.partitions).map((s) => `${s.partition}:${s.watermark}`).join(",")
      const history = yield* everything(engine, "t")
      yield* Effect.sleep(5)
      const instant = new Date(history[history.length - 1]!.timestamp).toISOString()
      yield* Effect.sleep(5)
      for (let i = 6; i < 12; i++) yield* engine.append("t", `s${i % 3}`, { events: [ev("E", { i })] })

      const byPosition = yield* forks.create("t", { ttlSeconds: 60, asOf: cut })
      assert.strictEqual(byPosition.base, cut)
      const fp = yield* forks.engine("t", byPosition.forkId)
      assert.deepStrictEqual(yield* everything(fp, "t"), history)
      const byTime = yield* forks.create("t", { ttlSeconds: 60, asOf: instant })
      assert.strictEqual(byTime.base, cut)
      const ft = yield* forks.engine("t", byTime.forkId)
      assert.deepStrictEqual(yield* everything(ft, "t"), history)
      // Versions continue from the parent's version at that point, not from now.
      const s0 = yield* ft.append("t", "s0", { expectedVersion: 1, events: [ev("F", {})] })
      assert.strictEqual(s0.firstVersion, 2)
      assert.deepStrictEqual((yield* ft.readStream("t", "s0", {})).map((e) => e.streamVersion), [0, 1, 2])
      // asOf through the fork: the parent part is cut too.
      const p0 = engine.partitionOf("t", "s0")
      const firstOnly = `${p0}:${(yield* engine.readStream("t", "s0", {}))[0]!.seq}`
      assert.deepStrictEqual((yield* ft.readStream("t", "s0", { asOf: firstOnly })).map((e) => e.streamVersion), [0])
      assert.strictEqual((yield* ft.state("t", "s0", "count", firstOnly)).version, 0)
    }).pipe(Effect.provide(layer))
  })

  it.live("queries, partition reads, state and subscriptions work through a fork", () => {
    const { layer } = setup({ subscriptionIdleWaitMs: 20 })
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      for (let i = 0; i < 10; i++) yield* engine.append("t", `acc-${i % 4}`, { events: [ev(i % 2 ? "Credit" : "Debit", { amount: i })] })
      yield* engine.append("u", "other-tenant", { events: [ev("Credit", { amount: 100 })] })
      const fork = yield* forks.create("t", { ttlSeconds: 60 })
      const f = yield* forks.engine("t", fork.forkId)
      yield* engine.append("t", "acc-0", { events: [ev("Credit", { amount: 1000 })] }) // after the base: invisible
      for (let i = 0; i < 5; i++) yield* f.append("t", `acc-${i}`, { events: [ev("Credit", { amount: 10 + i })] })

      const all = yield* everything(f, "t")
      assert.strictEqual(all.length, 15)
      assert.isFalse(all.some((e) => (e.data as { readonly amount?: unknown }).amount === 1000))
      for (let i = 1; i < all.length; i++) {
        const a = all[i - 1]!
        const b = all[i]!
        assert.isTrue(a.timestamp < b.timestamp || (a.timestamp === b.timestamp && (a.partition < b.partition || (a.partition === b.partition && a.seq < b.seq))))
      }
      const credits = yield* f.query("t", { types: ["Credit"], limit: 100 })
      assert.strictEqual(credits.events.length, 10)
      const since = new Date(all[10]!.timestamp).toISOString()
      const late = yield* f.query("t", { since, limit: 100 })
      assert.isTrue(late.events.every((e) => e.timestamp >= all[10]!.timestamp))
      assert.isTrue(late.events.length >= 5)
      // One partition in sequence order, from a sequence inside the parent's part.
      const p = engine.partitionOf("t", "acc-0")
      const part = yield* f.readPartition("t", p, { fromSeq: 2 })
      assert.deepStrictEqual(part.map((e) => e.seq), all.filter((e) => e.partition === p && e.seq >= 2).map((e) => e.seq).sort((a, b) => a - b))
      assert.deepStrictEqual((yield* f.state("t", "acc-0", "sum:amount", undefined)).state, 0 + 4 + 8 + 10)
      // The fork's engine serves only its tenant.
      assert.strictEqual((yield* f.readStream("u", "other-tenant", {}).pipe(Effect.flip))._tag, "Unavailable")

      // Subscription: history (parent at the base, then the fork's), CaughtUp, then live fork events only.
      const sub = yield* f.subscribe("t", { from: "start" })
      const seen: Array<string> = []
      const collector = yield* Stream.runForEach(sub, (item) =>
        Effect.sync(() => void seen.push(item._tag === "Event" ? `${item.event.stream}:${item.event.streamVersion}` : "CaughtUp"))
      ).pipe(Effect.forkChild)
      while (!seen.includes("CaughtUp")) yield* Effect.sleep(5)
      assert.strictEqual(seen.length, 16)
      yield* engine.append("t", "acc-1", { events: [ev("Credit", { amount: 5000 })] }) // main: not in the fork
      yield* f.append("t", "acc-1", { events: [ev("Debit", { amount: 1 })] })
      while (seen.length < 17) yield* Effect.sleep(5)
      yield* Effect.sleep(50)
      assert.deepStrictEqual(seen.slice(16), ["acc-1:4"])
      // Resume from a position token: exactly the remainder.
      const resumed = yield* f.subscribe("t", { from: fork.base })
      const tail = yield* Stream.runCollect(Stream.takeUntil(resumed, (i) => i._tag === "CaughtUp"))
      assert.strictEqual(tail.filter((i) => i._tag === "Event").length, 6)
      yield* Fiber.interrupt(collector)
    }).pipe(Effect.provide(layer))
  })

  it.live("diff lists the fork's events per stream; a clean merge appends exactly them, versions continuing", () => {
    const { layer, store } = setup()
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      yield* engine.append("t", "a", { events: [ev("A0", {}), ev("A1", {})] })
      yield* engine.append("t", "b", { events: [ev("B0", {})] })
      const fork = yield* forks.create("t", { ttlSeconds: 60 })
      const f = yield* forks.engine("t", fork.forkId)
      yield* f.append("t", "a", { expectedVersion: 1, events: [ev("A2", { x: 1 }), ev("A3", { x: 2 })] })
      yield* f.append("t", "new", { expectedVersion: "no_stream", events: [ev("N0", {})] })
      yield* engine.append("t", "b", { events: [ev("B1", {})] }) // the parent moves, on a stream the fork left alone

      const diff = yield* forks.diff("t", fork.forkId)
      assert.strictEqual(diff.events, 3)
      assert.deepStrictEqual(diff.streams.map((s) => [s.stream, s.baseVersion, s.events.map((e) => e.type)]), [
        ["a", 1, ["A2", "A3"]],
        ["new", -1, ["N0"]]
      ])
      const before = logBytes(store)
      const dry = yield* forks.merge("t", fork.forkId, { dryRun: true })
      assert.strictEqual(dry.status, "mergeable")
      assert.deepStrictEqual(dry.streams.map((s) => [s.stream, s.status, s.appended]), [["a", "mergeable", 0], ["new", "mergeable", 0]])
      assert.strictEqual(logBytes(store), before, "a dry run writes nothing")

      const merged = yield* forks.merge("t", fork.forkId, {})
      assert.strictEqual(merged.status, "merged")
      assert.deepStrictEqual(merged.streams.map((s) => [s.stream, s.status, s.appended, s.firstVersion, s.lastVersion]), [
        ["a", "merged", 2, 2, 3],
        ["new", "merged", 1, 0, 0]
      ])
      const a = yield* engine.readStream("t", "a", {})
      assert.deepStrictEqual(a.map((e) => [e.type, e.streamVersion]), [["A0", 0], ["A1", 1], ["A2", 2], ["A3", 3]])
      const forkA = yield* f.readStream("t", "a", {})
      // Exactly the fork's events: same ids, types, data, metadata and versions.
      assert.deepStrictEqual(a.slice(2).map((e) => [e.eventId, e.type, e.data, e.metadata, e.streamVersion]),
        forkA.slice(2).map((e) => [e.eventId, e.type, e.data, e.metadata, e.streamVersion]))
      assert.deepStrictEqual((yield* engine.readStream("t", "new", {})).map((e) => e.type), ["N0"])
      assert.deepStrictEqual((yield* engine.readStream("t", "b", {})).map((e) => e.type), ["B0", "B1"])

      // Merging again is idempotent; later fork events merge incrementally.
      const again = yield* forks.merge("t", fork.forkId, {})
      assert.deepStrictEqual(again.streams.map((s) => [s.stream, s.status, s.appended]), [["a", "merged", 0], ["new", "merged", 0]])
      yield* f.append("t", "a", { expectedVersion: 3, events: [ev("A4", {})] })
      const more = yield* forks.merge("t", fork.forkId, {})
      assert.deepStrictEqual(more.streams.map((s) => [s.stream, s.appended]), [["a", 1], ["new", 0]])
      assert.deepStrictEqual((yield* engine.readStream("t", "a", {})).map((e) => e.type), ["A0", "A1", "A2", "A3", "A4"])
    }).pipe(Effect.provide(layer))
  })

  it.live("a conflicting merge changes nothing and reports every conflicting stream", () => {
    const { layer, store } = setup()
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      for (const s of ["x", "y", "z"]) yield* engine.append("t", s, { events: [ev(`${s}0`, {})] })
      const fork = yield* forks.create("t", { ttlSeconds: 60 })
      const f = yield* forks.engine("t", fork.forkId)
      for (const s of ["x", "y", "z"]) yield* f.append("t", s, { expectedVersion: 0, events: [ev(`${s}-fork`, {})] })
      yield* engine.append("t", "x", { events: [ev("x-main-1", {}), ev("x-main-2", {})] })
      yield* engine.append("t", "z", { events: [ev("z-main", {})] })
      const before = logBytes(store)
      const mainBefore = yield* everything(engine, "t")

      const dry = yield* forks.merge("t", fork.forkId, { dryRun: true })
      assert.strictEqual(dry.status, "conflict")
      const error = yield* forks.merge("t", fork.forkId, {}).pipe(Effect.flip)
      assert.strictEqual(error._tag, "ForkMergeConflict")
      if (error._tag !== "ForkMergeConflict") return
      assert.isFalse(error.partial)
      for (const report of [dry.streams, error.streams]) {
        assert.deepStrictEqual(report.map((s) => [s.stream, s.status]), [["x", "conflict"], ["y", "mergeable"], ["z", "conflict"]])
        const x = report[0]!
        assert.deepStrictEqual(x.conflicts!.map((e) => [e.type, e.streamVersion]), [["x-main-1", 1], ["x-main-2", 2]])
        assert.strictEqual(x.parentVersion, 2)
        assert.deepStrictEqual(report[2]!.conflicts!.map((e) => [e.type, e.streamVersion]), [["z-main", 1]])
      }
      // Nothing was written: not even the stream that had no conflict.
      assert.strictEqual(logBytes(store), before)
      assert.deepStrictEqual(yield* everything(engine, "t"), mainBefore)
    }).pipe(Effect.provide(layer))
  })

  it.live("a fork of a fork reads both parents, and merges into its parent fork", () => {
    const { layer, store } = setup()
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      yield* engine.append("t", "s", { events: [ev("m0", {})] })
      const parent = yield* forks.create("t", { ttlSeconds: 60 })
      const pf = yield* forks.engine("t", parent.forkId)
      yield* pf.append("t", "s", { expectedVersion: 0, events: [ev("p1", {})] })
      const child = yield* forks.create("t", { ttlSeconds: 3600, parent: parent.forkId })
      assert.strictEqual(child.parent, parent.forkId)
      assert.strictEqual(child.expiresAt, parent.expiresAt, "a branch does not outlive its parent")
      const cf = yield* forks.engine("t", child.forkId)
      yield* pf.append("t", "s", { expectedVersion: 1, events: [ev("p2", {})] }) // after the child's base
      yield* cf.append("t", "s", { expectedVersion: 1, events: [ev("c2", {}), ev("c3", {})] })
      assert.deepStrictEqual((yield* cf.readStream("t", "s", {})).map((e) => e.type), ["m0", "p1", "c2", "c3"])
      assert.deepStrictEqual((yield* pf.readStream("t", "s", {})).map((e) => e.type), ["m0", "p1", "p2"])
      assert.deepStrictEqual((yield* cf.state("t", "s", "count", undefined)).version, 3)
      // A branch at a point inside the parent fork's inherited range.
      const early = yield* forks.create("t", { ttlSeconds: 60, parent: parent.forkId, asOf: "0:0,1:0,2:0,3:0" })
      const ef = yield* forks.engine("t", early.forkId)
      assert.deepStrictEqual(yield* ef.readStream("t", "s", {}), [])
      yield* ef.append("t", "s", { expectedVersion: "no_stream", events: [ev("e0", {})] })

      const conflict = yield* forks.merge("t", child.forkId, {}).pipe(Effect.flip)
      assert.strictEqual(conflict._tag, "ForkMergeConflict")
      const child2 = yield* forks.create("t", { ttlSeconds: 60, parent: parent.forkId })
      const c2 = yield* forks.engine("t", child2.forkId)
      yield* c2.append("t", "s", { expectedVersion: 2, events: [ev("c3", {})] })
      const mainBefore = logBytes(store)
      const merged = yield* forks.merge("t", child2.forkId, {})
      assert.strictEqual(merged.parent, parent.forkId)
      assert.deepStrictEqual((yield* pf.readStream("t", "s", {})).map((e) => e.type), ["m0", "p1", "p2", "c3"])
      assert.strictEqual(logBytes(store), mainBefore, "merging into a fork leaves main alone")
      yield* forks.merge("t", parent.forkId, {})
      assert.deepStrictEqual((yield* engine.readStream("t", "s", {})).map((e) => e.type), ["m0", "p1", "p2", "c3"])

      // Discarding the parent takes its branches with it.
      const gone = yield* forks.discard("t", parent.forkId)
      assert.sameMembers([...gone.discarded], [parent.forkId, child.forkId, early.forkId, child2.forkId])
      assert.deepStrictEqual(yield* forks.list("t"), [])
      assert.strictEqual((yield* forks.engine("t", child.forkId).pipe(Effect.flip))._tag, "ForkNotFound")
    }).pipe(Effect.provide(layer))
  })

  it.live("an expired fork is gone at once, then its log is deleted; discard frees storage too", () => {
    const { layer, namespaces } = setup({ forkExpiryIntervalMs: 20 })
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      yield* engine.append("t", "s", { events: [ev("A", {})] })
      const short = yield* forks.create("t", { ttlSeconds: 1 })
      const kept = yield* forks.create("t", { ttlSeconds: 60 })
      const f = yield* forks.engine("t", short.forkId)
      yield* f.append("t", "s", { events: [ev("B", {})] })
      yield* (yield* forks.engine("t", kept.forkId)).append("t", "s", { events: [ev("C", {})] })
      assert.isTrue(namespaces.has(short.forkId))
      yield* Effect.sleep(1_100)
      assert.strictEqual((yield* forks.get("t", short.forkId).pipe(Effect.flip))._tag, "ForkNotFound")
      assert.strictEqual((yield* forks.engine("t", short.forkId).pipe(Effect.flip))._tag, "ForkNotFound")
      // An engine handed out before expiry stops serving once the timer has deleted the fork.
      yield* Effect.sleep(100)
      assert.isFalse(namespaces.has(short.forkId), "the expired fork's log is deleted")
      assert.strictEqual((yield* f.readStream("t", "s", {}).pipe(Effect.flip))._tag, "Unavailable")
      assert.deepStrictEqual((yield* forks.list("t")).map((x) => x.forkId), [kept.forkId])
      yield* forks.discard("t", kept.forkId)
      assert.isFalse(namespaces.has(kept.forkId))
      assert.strictEqual((yield* forks.discard("t", kept.forkId).pipe(Effect.flip))._tag, "ForkNotFound")
      assert.deepStrictEqual((yield* engine.readStream("t", "s", {})).map((e) => e.type), ["A"])
    }).pipe(Effect.provide(layer))
  })

  it.live("bounds: forks per tenant, events per fork, ttl, labels; unknown parents and ids", () => {
    const { layer } = setup({ forksPerTenantMax: 2, forkEventsMax: 5, forkTtlSecondsMax: 100, forkLabelsMax: 1 })
    return Effect.gen(function*() {
      const forks = yield* Forks
      const a = yield* forks.create("t", { ttlSeconds: 10 })
      const second = yield* forks.create("t", { ttlSeconds: 10 })
      const third = yield* forks.create("t", { ttlSeconds: 10 }).pipe(Effect.flip)
      assert.strictEqual(third._tag, "LimitExceeded")
      if (third._tag === "LimitExceeded") assert.strictEqual(third.limit, "forksPerTenantMax")
      yield* forks.create("u", { ttlSeconds: 10 }) // another tenant has its own count
      const ttl = yield* forks.create("u", { ttlSeconds: 101 }).pipe(Effect.flip)
      assert.strictEqual(ttl._tag === "LimitExceeded" && ttl.limit, "forkTtlSecondsMax")
      const labels = yield* forks.create("u", { ttlSeconds: 1, labels: { a: "1", b: "2" } }).pipe(Effect.flip)
      assert.strictEqual(labels._tag === "LimitExceeded" && labels.limit, "forkLabelsMax")
      assert.strictEqual((yield* forks.create("u", { ttlSeconds: 1, parent: "f0000000000000000" }).pipe(Effect.flip))._tag, "ForkNotFound")
      assert.strictEqual((yield* forks.create("u", { ttlSeconds: 1, parent: a.forkId }).pipe(Effect.flip))._tag, "ForkNotFound")
      assert.strictEqual((yield* forks.create("u", { ttlSeconds: 1, asOf: "yesterday" }).pipe(Effect.flip))._tag, "InvalidRequest")
      assert.strictEqual((yield* forks.get("t", "../../etc").pipe(Effect.flip))._tag, "ForkNotFound")
      assert.strictEqual((yield* forks.get("u", a.forkId).pipe(Effect.flip))._tag, "ForkNotFound", "forks are per tenant")

      const f = yield* forks.engine("t", a.forkId)
      yield* f.append("t", "s", { events: [ev("A", 1), ev("A", 2), ev("A", 3)] })
      const over = yield* f.append("t", "s2", { events: [ev("A", 4), ev("A", 5), ev("A", 6)] }).pipe(Effect.flip)
      assert.strictEqual(over._tag === "LimitExceeded" && over.limit, "forkEventsMax")
      yield* f.append("t", "s3", { events: [ev("A", 4), ev("A", 5)] })
      // Concurrent appends cannot pass the bound together.
      const b = yield* forks.engine("t", second.forkId)
      const results = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => Effect.exit(b.append("t", `c${i}`, { events: [ev("A", i)] })),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(results.filter((r) => r._tag === "Success").length, 5)
      assert.strictEqual((yield* forks.diff("t", second.forkId)).events, 5)
    }).pipe(Effect.provide(layer))
  })

  it.live("forks stay usable side by side and never see each other", () => {
    const { layer } = setup()
    return Effect.gen(function*() {
      const engine = yield* Engine
      const forks = yield* Forks
      yield* engine.append("t", "s", { events: [ev("A", {})] })
      const one = yield* forks.engine("t", (yield* forks.create("t", { ttlSeconds: 60 })).forkId)
      const two = yield* forks.engine("t", (yield* forks.create("t", { ttlSeconds: 60 })).forkId)
      const r1 = yield* one.append("t", "s", { expectedVersion: 0, events: [ev("one", {})] })
      const r2 = yield* two.append("t", "s", { expectedVersion: 0, events: [ev("two", {})] })
      assert.deepStrictEqual(r1.positions, r2.positions, "both continue the same base")
      assert.deepStrictEqual((yield* one.readStream("t", "s", {})).map((e) => e.type), ["A", "one"])
      assert.deepStrictEqual((yield* two.readStream("t", "s", {})).map((e) => e.type), ["A", "two"])
      assert.isTrue(Option.isNone(Option.none()))
    }).pipe(Effect.provide(layer))
  })
})
