/**
 * Projections: the SDK fold, declarative projections (count / sum / last by stream, type or data field) equal to a
 * fresh fold of the same events, live updates, stop / start / reset / rebuild with progress, the key limit, an SDK
 * function reducer resumed from its stored state + checkpoint after a restart (file drivers) without applying any
 * event twice, and a failover to another process once the owner's lease expired.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { type Event, Ids, type SubscriptionsApi } from "@chronos/domain"
import { CheckpointStore, CheckpointStoreError } from "../src/CheckpointStore.ts"
import { Engine } from "../src/Engine.ts"
import { EventLog } from "../src/EventLog.ts"
import * as Projection from "../src/Projection.ts"

const settings: Partial<ChronosConfigShape> = {
  partitions: 4,
  subscriptionIdleWaitMs: 50,
  subscriptionPageEventsMax: 50,
  projectionCheckpointEveryEvents: 100,
  projectionCheckpointIntervalMs: 50,
  projectionLeaseMs: 600
}
const Config = ChronosConfig.layer(settings)
const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const type = (t: string) => Ids.EventType.make(t)
const regions = ["eu", "us", "apac"]

/** `n` events over 10 streams and 3 types, with an amount and a region. */
const seed = (n: number, from = 0) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    for (let i = from; i < from + n; i += 50) {
      yield* engine.appendMany(Array.from({ length: Math.min(50, from + n - i) }, (_, k) => {
        const j = i + k
        return {
          tenant: "t",
          stream: `acct-${j % 10}`,
          request: { events: [{ type: type(["Opened", "Deposited", "Withdrawn"][j % 3]!), data: { amount: j % 7, region: regions[j % 3]!, j } }] }
        }
      }))
    }
  })

/** Every event of the tenant (the reference for "a fresh fold"). */
const allEvents = Effect.gen(function*() {
  const engine = yield* Engine
  const out: Array<Event.StoredEvent> = []
  let after: string | undefined
  do {
    const page = yield* engine.query("t", { limit: 10_000, after })
    out.push(...page.events)
    after = page.next
  } while (after !== undefined)
  return out
})

const expected = (events: ReadonlyArray<Event.StoredEvent>, def: Projection.Declarative) => {
  const state: Record<string, unknown> = {}
  const order: Record<string, number> = {}
  for (const e of events) {
    if (def.types !== undefined && !def.types.includes(e.type)) continue
    const data = e.data as Record<string, unknown>
    const key = def.groupBy === "stream" ? e.stream : def.groupBy === "type" ? e.type : String(data[def.groupBy.dataField])
    if (def.kind === "count") state[key] = ((state[key] as number | undefined) ?? 0) + 1
    if (def.kind === "sum") state[key] = ((state[key] as number | undefined) ?? 0) + (data[def.field!] as number)
    if (def.kind === "last") {
      // The event with the greatest (timestamp, partition, seq); query returns them in that order.
      const rank = events.indexOf(e)
      if ((order[key] ?? -1) < rank) {
        order[key] = rank
        state[key] = def.field === undefined ? e.data : data[def.field]
      }
    }
  }
  return state
}

const memoryStack = (owner = "test-a") =>
  Layer.effect(Projection.Projections, Effect.gen(function*() {
    return yield* Projection.make(yield* Engine, yield* CheckpointStore, yield* ChronosConfig, { owner })
  }))

const Stack = memoryStack().pipe(
  Layer.provideMerge(Engine.layerLocal),
  Layer.provideMerge(CheckpointStore.layerMemory({ bytesMax: 4 * 1_048_576 })),
  Layer.provide(EventLog.layerMemory),
  Layer.provideMerge(Config)
)

/** Polls the projection until `done` holds (or fails after `ms`). */
const untilWith = (
  projections: Projection.ProjectionsShape,
  name: string,
  done: (s: SubscriptionsApi.ProjectionStatus) => boolean,
  ms = 10_000
) =>
  Effect.gen(function*() {
    const deadline = performance.now() + ms
    while (true) {
      const s = yield* projections.status("t", name, { withState: true })
      if (done(s)) return s
      if (performance.now() > deadline) return yield* Effect.die(new Error(`projection ${name}: ${JSON.stringify(s).slice(0, 500)}`))
      yield* Effect.sleep(20)
    }
  })

const until = (name: string, done: (s: SubscriptionsApi.ProjectionStatus) => boolean, ms = 10_000) =>
  Effect.flatMap(Projection.Projections, (projections) => untilWith(projections, name, done, ms))

const caughtUp = (s: { readonly phase: string; readonly progress: { readonly remainingEvents: number } }) =>
  s.phase === "live" && s.progress.remainingEvents === 0

describe("Projection", () => {
  it.live("fold (SDK): one state per page, exact at its position, resumable", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      yield* seed(300)
      const reducer = { initial: 0, step: (n: number, e: Event.StoredEvent) => n + (e.data as { amount: number }).amount }
      const states = yield* Projection.fold(engine, "t", { types: ["Deposited"] }, reducer).pipe(
        Stream.takeUntil((f) => f.caughtUp),
        Stream.runCollect
      )
      const last = states[states.length - 1]!
      const all = yield* allEvents
      assert.strictEqual(last.state, all.filter((e) => e.type === "Deposited").reduce((n, e) => n + (e.data as { amount: number }).amount, 0))
      // Resume from a mid-way position with its state: the same final state.
      const mid = states[Math.floor(states.length / 2)]!
      const resumed = yield* Projection.fold(engine, "t", { types: ["Deposited"], from: mid.position }, { ...reducer, initial: mid.state }).pipe(
        Stream.takeUntil((f) => f.caughtUp),
        Stream.runCollect
      )
      assert.strictEqual(resumed[resumed.length - 1]!.state, last.state)
    }).pipe(Effect.provide(Engine.layerLocal.pipe(Layer.provide(EventLog.layerMemory), Layer.provideMerge(Config)))))

  it.live("declarative projections equal a fresh fold; live; stop, start, reset, rebuild with progress", () =>
    Effect.gen(function*() {
      const projections = yield* Projection.Projections
      yield* seed(600)
      const definitions: Record<string, Projection.Declarative> = {
        "count-by-type": { kind: "count", groupBy: "type" },
        "sum-by-stream": { kind: "sum", field: "amount", groupBy: "stream" },
        "sum-deposits-by-region": { kind: "sum", field: "amount", groupBy: { dataField: "region" }, types: ["Deposited"] },
        "last-by-stream": { kind: "last", groupBy: "stream" },
        "last-amount-by-region": { kind: "last", field: "amount", groupBy: { dataField: "region" } }
      }
      for (const [name, def] of Object.entries(definitions)) yield* projections.define("t", name, def)
      for (const [name, def] of Object.entries(definitions)) {
        const s = yield* until(name, caughtUp)
        assert.deepStrictEqual(s.state, expected(yield* allEvents, def), name)
        assert.strictEqual(s.status, "running")
      }
      // Live: new events are folded.
      yield* seed(60, 600)
      const live = yield* until("count-by-type", (s) => (s.state as Record<string, number>).Opened === 220)
      assert.deepStrictEqual(live.state, expected(yield* allEvents, definitions["count-by-type"]!))
      // One key's value.
      assert.deepStrictEqual(yield* projections.state("t", "count-by-type", "Opened"), {
        name: "count-by-type",
        position: live.position,
        key: "Opened",
        value: 220
      })
      assert.strictEqual((yield* projections.state("t", "count-by-type", "Nope")).value, null)
      // Stop: nothing more is folded; start: it catches up.
      const stopped = yield* projections.stop("t", "count-by-type")
      assert.strictEqual(stopped.status, "stopped")
      yield* seed(30, 660)
      yield* Effect.sleep(200)
      assert.strictEqual(((yield* projections.status("t", "count-by-type", { withState: true })).state as Record<string, number>).Opened, 220)
      yield* projections.start("t", "count-by-type")
      yield* until("count-by-type", (s) => (s.state as Record<string, number>).Opened === 230)
      // Reset: empty and stopped. Rebuild: from the start, with progress, to the same state.
      const reset = yield* projections.reset("t", "count-by-type")
      assert.strictEqual(reset.status, "stopped")
      assert.strictEqual(reset.position, "")
      assert.strictEqual(reset.processedEvents, 0)
      assert.deepStrictEqual((yield* projections.status("t", "count-by-type", { withState: true })).state, {})
      yield* projections.rebuild("t", "count-by-type")
      const rebuilt = yield* until("count-by-type", caughtUp)
      assert.deepStrictEqual(rebuilt.state, expected(yield* allEvents, definitions["count-by-type"]!))
      assert.strictEqual(rebuilt.processedEvents, 690)
      assert.strictEqual(rebuilt.progress.fraction, 1)
      // Definitions are idempotent; another one is a conflict unless replaced.
      yield* projections.define("t", "sum-by-stream", definitions["sum-by-stream"]!)
      const conflict = yield* projections.define("t", "sum-by-stream", { kind: "count", groupBy: "stream" }).pipe(Effect.flip)
      assert.strictEqual(conflict._tag, "DefinitionConflict")
      yield* projections.define("t", "sum-by-stream", { kind: "count", groupBy: "stream" }, { replace: true })
      const replaced = yield* until("sum-by-stream", caughtUp)
      assert.deepStrictEqual(replaced.state, expected(yield* allEvents, { kind: "count", groupBy: "stream" }))
      assert.deepStrictEqual([...yield* projections.list("t")].sort(), Object.keys(definitions).sort())
      assert.strictEqual((yield* projections.status("t", "nope").pipe(Effect.flip))._tag, "ProjectionNotFound")
      assert.strictEqual(
        (yield* projections.define("t", "bad", { kind: "sum", groupBy: "type" }).pipe(Effect.flip))._tag,
        "InvalidRequest"
      )
    }).pipe(Effect.provide(Stack)))

  it.live("rebuild reports progress (events/s, ETA, position vs head) while it runs", () =>
    Effect.gen(function*() {
      const projections = yield* Projection.Projections
      yield* seed(30_000)
      yield* projections.define("t", "slow", { kind: "count", groupBy: "stream" })
      const samples: Array<{ fraction: number; rate: number; eta: number | undefined }> = []
      const done = yield* until("slow", (s) => {
        samples.push({ fraction: s.progress.fraction, rate: s.progress.eventsPerSecond, eta: s.progress.etaMs })
        return caughtUp(s)
      }, 30_000)
      assert.strictEqual(done.processedEvents, 30_000)
      assert.strictEqual(done.progress.headEvents, 30_000)
      const mid = samples.filter((s) => s.fraction > 0 && s.fraction < 1 && s.rate > 0)
      assert.isAbove(mid.length, 0, `a sample mid-rebuild with a rate: ${JSON.stringify(samples.slice(0, 20))}`)
      assert.isDefined(mid[0]!.eta)
    }).pipe(Effect.provide(memoryStack().pipe(
      Layer.provideMerge(Engine.layerLocal),
      Layer.provide(CheckpointStore.layerMemory({ bytesMax: 4 * 1_048_576 })),
      Layer.provide(EventLog.layerMemory),
      // Small pages, so that the rebuild takes long enough to be observed.
      Layer.provideMerge(ChronosConfig.layer({ ...settings, subscriptionPageEventsMax: 5 }))
    ))))

  it.live("a state over projectionStateKeysMax keys fails the projection (typed status), nothing half-applied", () =>
    Effect.gen(function*() {
      const projections = yield* Projection.Projections
      yield* seed(100)
      yield* projections.define("t", "by-j", { kind: "count", groupBy: { dataField: "j" } })
      const failed = yield* until("by-j", (s) => s.status === "failed")
      assert.include(failed.error ?? "", "projectionStateKeysMax")
      assert.isAtMost(failed.keys, 40)
    }).pipe(Effect.provide(memoryStack().pipe(
      Layer.provideMerge(Engine.layerLocal),
      Layer.provide(CheckpointStore.layerMemory({ bytesMax: 4 * 1_048_576 })),
      Layer.provide(EventLog.layerMemory),
      Layer.provideMerge(ChronosConfig.layer({ ...settings, projectionStateKeysMax: 40 }))
    ))))

  it.live("SDK function reducer: resumed from its stored state + checkpoint after a restart, nothing applied twice", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(path.join(tmpdir(), "chronos-proj-"))
      dirs.push(dataDir)
      let applied = 0
      const reducer: Projection.Reducer<{ n: number; total: number }> = {
        name: "totals-v1",
        initial: { n: 0, total: 0 },
        step: (s, e) => {
          applied++
          return { n: s.n + 1, total: s.total + (e.data as { amount: number }).amount }
        }
      }
      const node = memoryStack("node-1").pipe(
        Layer.provideMerge(Engine.layerLocal),
        Layer.provide(CheckpointStore.layerFile({ dataDir, bytesMax: 4 * 1_048_576 })),
        Layer.provide(EventLog.layerFile({ dataDir })),
        Layer.provideMerge(Config)
      )
      const run = (more: number, from: number) =>
        Effect.gen(function*() {
          const projections = yield* Projection.Projections
          yield* projections.register("t", "totals", { reducer, types: ["Deposited"] })
          yield* seed(more, from)
          return yield* until("totals", caughtUp)
        }).pipe(Effect.provide(node))
      const first = yield* run(300, 0)
      const appliedFirst = applied
      const second = yield* run(150, 300)
      const deposits = (yield* allEvents.pipe(Effect.provide(Engine.layerLocal.pipe(Layer.provide(EventLog.layerFile({ dataDir })), Layer.provide(Config)))))
        .filter((e) => e.type === "Deposited")
      assert.deepStrictEqual(first.state, { n: 100, total: deposits.slice(0, 100).reduce((n, e) => n + (e.data as { amount: number }).amount, 0) })
      assert.deepStrictEqual(second.state, { n: 150, total: deposits.reduce((n, e) => n + (e.data as { amount: number }).amount, 0) })
      // The second run applied only the 50 new deposits: it resumed from the stored checkpoint.
      assert.strictEqual(appliedFirst, 100)
      assert.strictEqual(applied, 150)
    }))

  it.live("failover: another process takes a projection over once its owner's lease expired; the old owner stops", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const config = yield* ChronosConfig
      const store = yield* CheckpointStore
      yield* seed(200)
      // Runner A's checkpoint store becomes unreachable (a network partition): its lease runs out.
      let partitioned = false
      const flaky: typeof store = {
        ...store,
        put: (key, value, revision) =>
          partitioned
            ? Effect.fail(new CheckpointStoreError({ key: key.join("."), message: "partitioned" }))
            : store.put(key, value, revision)
      }
      const a = yield* Projection.make(engine, flaky, config, { owner: "runner-a" })
      yield* a.define("t", "totals", { kind: "sum", field: "amount", groupBy: "type" })
      yield* untilWith(a, "totals", caughtUp, 10_000)
      partitioned = true
      yield* seed(100, 200)
      const b = yield* Projection.make(engine, store, config, { owner: "runner-b" })
      assert.strictEqual((yield* b.status("t", "totals")).owner, "runner-a", "a fresh lease is respected")
      const taken = yield* untilWith(b, "totals", (s) => s.owner === "runner-b" && caughtUp(s), 10_000)
      const reference = { kind: "sum", field: "amount", groupBy: "type" } as const
      assert.deepStrictEqual(taken.state, expected(yield* allEvents, reference))
      // A comes back: its next write conflicts, so it stops instead of overwriting B's work.
      partitioned = false
      yield* seed(30, 300)
      yield* Effect.sleep(500)
      const after = yield* untilWith(b, "totals", caughtUp, 10_000)
      assert.strictEqual(after.owner, "runner-b")
      assert.deepStrictEqual(after.state, expected(yield* allEvents, reference))
    }).pipe(Effect.provide(Engine.layerLocal.pipe(
      Layer.provideMerge(CheckpointStore.layerMemory({ bytesMax: 4 * 1_048_576 })),
      Layer.provide(EventLog.layerMemory),
      Layer.provideMerge(Config)
    ))))

  it.live("a graceful shutdown hands a projection over at once", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const config = yield* ChronosConfig
      const store = yield* CheckpointStore
      yield* seed(100)
      yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* Projection.make(engine, store, config, { owner: "runner-a" })
        yield* a.define("t", "counts", { kind: "count", groupBy: "stream" })
        yield* untilWith(a, "counts", caughtUp, 10_000)
      }))
      const b = yield* Projection.make(engine, store, config, { owner: "runner-b" })
      const t0 = performance.now()
      yield* untilWith(b, "counts", (s) => s.owner === "runner-b", 10_000)
      assert.isBelow(performance.now() - t0, config.projectionLeaseMs)
    }).pipe(Effect.provide(Engine.layerLocal.pipe(
      Layer.provideMerge(CheckpointStore.layerMemory({ bytesMax: 4 * 1_048_576 })),
      Layer.provide(EventLog.layerMemory),
      Layer.provideMerge(ChronosConfig.layer({ ...settings, projectionLeaseMs: 3_000 }))
    ))))
})
