import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schedule } from "effect"
import { TestRunner } from "effect/cluster"
import { ChronosConfig, defaults } from "@chronos/config"
import { Ids } from "@chronos/domain"
import type { Commit } from "../src/Commit.ts"
import { Engine } from "../src/Engine.ts"
import { EventLog, makeMemory } from "../src/EventLog.ts"
import * as Partition from "../src/Partition.ts"
import * as PartitionEntity from "../src/PartitionEntity.ts"

const event = (type: string, data: unknown) => ({ eventId: undefined, type, data, metadata: {}, bytes: 16 })

describe("Partition", () => {
  it.live("a stale writer is fenced: its appends fail retryably, it reloads and then sees the other writer's events", () =>
    Effect.gen(function*() {
      const store = new Map<number, Array<Commit>>()
      const log = Layer.succeed(EventLog, makeMemory(store))
      const a = yield* Partition.make(0, defaults).pipe(Effect.provide(log))
      const b = yield* Partition.make(0, defaults).pipe(Effect.provide(log))
      yield* a.append({ tenant: "t", stream: "s", expectedVersion: "any", events: [event("A", 1)] })
      // b opened before a wrote: its view is stale, and the log must refuse it.
      const fenced = yield* b.append({ tenant: "t", stream: "s", expectedVersion: "any", events: [event("B", 2)] })
        .pipe(Effect.flip)
      assert.strictEqual(fenced._tag, "Unavailable")
      // After its reload b knows a's event, so the same optimistic check now fails precisely.
      const retried = yield* b.append({ tenant: "t", stream: "s", expectedVersion: "no_stream", events: [event("B", 2)] })
        .pipe(
          Effect.retry({ while: (e) => e._tag === "Unavailable", schedule: Schedule.spaced("20 millis"), times: 50 }),
          Effect.flip
        )
      assert.strictEqual(retried._tag, "WrongExpectedVersion")
      const read = yield* b.readStream("t", "s", { limit: 10, direction: "forward" })
      assert.deepStrictEqual(read.map((e) => e.type), ["A"])
      assert.strictEqual(store.get(0)!.length, 1)
    }).pipe(Effect.scoped))

  it.live("a log that stops acknowledging fails appends retryably after appendTimeoutMs, then the partition recovers", () =>
    Effect.gen(function*() {
      const memory = makeMemory()
      let stall = true
      const stalling = Layer.succeed(EventLog, {
        ...memory,
        open: (p: number) =>
          Effect.map(memory.open(p), (log) => ({
            ...log,
            append: (commit: Commit) => stall ? Effect.never : log.append(commit)
          }))
      })
      const p = yield* Partition.make(0, { ...defaults, appendTimeoutMs: 100 }).pipe(Effect.provide(stalling))
      const error = yield* p.append({ tenant: "t", stream: "s", expectedVersion: "any", events: [event("A", 1)] }).pipe(Effect.flip)
      assert.strictEqual(error._tag, "Unavailable")
      stall = false
      const ok = yield* p.append({ tenant: "t", stream: "s", expectedVersion: "no_stream", events: [event("A", 1)] }).pipe(
        Effect.retry({ while: (e) => e._tag === "Unavailable", schedule: Schedule.spaced("20 millis"), times: 50 })
      )
      assert.strictEqual(ok.firstVersion, 0)
    }).pipe(Effect.scoped))

  it.live("a defect in the log (e.g. a failed fsync) stops the partition: nothing more is accepted", () =>
    Effect.gen(function*() {
      const memory = makeMemory()
      const broken = Layer.succeed(EventLog, {
        ...memory,
        open: (p: number) =>
          Effect.map(memory.open(p), (log) => ({ ...log, append: () => Effect.die(new Error("fdatasync: EIO")) }))
      })
      const p = yield* Partition.make(0, defaults).pipe(Effect.provide(broken))
      const first = yield* p.append({ tenant: "t", stream: "s", expectedVersion: "any", events: [event("A", 1)] }).pipe(Effect.flip)
      assert.strictEqual(first._tag, "Unavailable")
      const next = yield* p.append({ tenant: "t", stream: "s", expectedVersion: "any", events: [event("A", 1)] }).pipe(Effect.flip)
      assert.isTrue(next._tag === "Unavailable" && !next.retryable && next.message.includes("EIO"))
    }).pipe(Effect.scoped))

  it.live("appends accepted in different milliseconds while a commit is in flight share the next commit and its timestamp", () =>
    Effect.gen(function*() {
      const store = new Map<number, Array<Commit>>()
      const memory = makeMemory(store)
      // The log holds every commit until released: appends pile up behind the first one, each in its own millisecond.
      let release: (() => void) | undefined
      const gate = new Promise<void>((resolve) => release = resolve)
      const gated = Layer.succeed(EventLog, {
        ...memory,
        open: (p: number) =>
          Effect.map(memory.open(p), (log) => ({
            ...log,
            append: (commit: Commit) => Effect.andThen(Effect.promise(() => gate), log.append(commit))
          }))
      })
      const p = yield* Partition.make(0, { ...defaults, commitsInFlightMax: 1 }).pipe(Effect.provide(gated))
      const appends = yield* Effect.forEach(
        [0, 1, 2, 3, 4],
        (i) =>
          Effect.andThen(
            Effect.sleep("3 millis"),
            Effect.forkChild(p.append({ tenant: "t", stream: `s${i}`, expectedVersion: "no_stream", events: [event("A", i)] }), {
              startImmediately: true
            })
          ),
        { concurrency: 1 }
      )
      release!()
      for (const fiber of appends) yield* Fiber.join(fiber)
      const commits = store.get(0)!
      // The first append went alone; the four that waited behind it went together, whatever their milliseconds.
      assert.deepStrictEqual(commits.map((c) => c.events.length), [1, 4])
      const read = yield* p.scan("t", { limit: 10 })
      assert.deepStrictEqual(read.map((e) => e.timestamp), [commits[0]!.timestamp, ...Array(4).fill(commits[1]!.timestamp)])
      // A replay restores exactly what readers saw.
      const reopened = yield* Partition.make(0, defaults).pipe(Effect.provide(Layer.succeed(EventLog, makeMemory(store))))
      assert.deepStrictEqual(yield* reopened.scan("t", { limit: 10 }), read)
    }).pipe(Effect.scoped))

  it.live("a log that writes one commit at a time gets one in flight, whatever commitsInFlightMax says", () =>
    Effect.gen(function*() {
      const store = new Map<number, Array<Commit>>()
      const memory = makeMemory(store)
      let release: (() => void) | undefined
      const gate = new Promise<void>((resolve) => release = resolve)
      const serial = Layer.succeed(EventLog, {
        ...memory,
        open: (p: number) =>
          Effect.map(memory.open(p), (log) => ({
            ...log,
            commitsInFlightMax: 1,
            append: (commit: Commit) => Effect.andThen(Effect.promise(() => gate), log.append(commit))
          }))
      })
      const p = yield* Partition.make(0, { ...defaults, commitsInFlightMax: 4 }).pipe(Effect.provide(serial))
      // A pause between appends lets the writer cut a commit after each one if it may.
      const appends = yield* Effect.forEach([0, 1, 2, 3, 4], (i) =>
        Effect.andThen(
          Effect.sleep("3 millis"),
          Effect.forkChild(p.append({ tenant: "t", stream: `s${i}`, expectedVersion: "no_stream", events: [event("A", i)] }), {
            startImmediately: true
          })
        ))
      release!()
      for (const fiber of appends) yield* Fiber.join(fiber)
      // With 4 in flight the first four appends would each have been cut into a commit of their own.
      assert.deepStrictEqual(store.get(0)!.map((c) => c.events.length), [1, 4])
    }).pipe(Effect.scoped))

  it.live("readers never see above the watermark; time travel by timestamp and by position", () =>
    Effect.gen(function*() {
      const p = yield* Partition.make(0, defaults).pipe(Effect.provide(EventLog.layerMemory))
      const first = yield* p.append({ tenant: "t", stream: "s", expectedVersion: "any", events: [event("A", 1)] })
      yield* Effect.sleep("5 millis")
      const t1 = Date.now()
      yield* Effect.sleep("5 millis")
      yield* p.append({ tenant: "t", stream: "s", expectedVersion: 0, events: [event("B", 2)] })
      const atT1 = yield* p.readStream("t", "s", { limit: 10, direction: "forward", asOf: { _tag: "Timestamp", epochMs: t1 } })
      assert.deepStrictEqual(atT1.map((e) => e.type), ["A"])
      const atSeq = yield* p.readStream("t", "s", {
        limit: 10,
        direction: "backward",
        asOf: { _tag: "Positions", positions: new Map([[0, first.positions[0]!.seq]]) }
      })
      assert.deepStrictEqual(atSeq.map((e) => e.type), ["A"])
      const status = yield* p.status
      assert.strictEqual(status.watermark, 2)
    }).pipe(Effect.scoped))
})

describe("Partition entity (effect/cluster, in-memory runner)", () => {
  const config = ChronosConfig.layer({ partitions: 4 })
  // Through the entity client (RPC path, serialization simulated as for a remote runner).
  const ViaRpc = Engine.layer.pipe(
    Layer.provide(PartitionEntity.layerRemoteRouter),
    Layer.provideMerge(PartitionEntity.layerEntity),
    Layer.provideMerge(PartitionEntity.ActivePartitions.layer),
    Layer.provideMerge(TestRunner.layer),
    Layer.provide(EventLog.layerMemory),
    Layer.provideMerge(config)
  )
  // The node's engine: entities on a single runner, called directly once active.
  const Node = PartitionEntity.layerEngine.pipe(
    Layer.provideMerge(PartitionEntity.layerSingleRunner),
    Layer.provide(EventLog.layerMemory),
    Layer.provideMerge(config)
  )

  const scenario = Effect.gen(function*() {
      const engine = yield* Engine
      for (let i = 0; i < 20; i++) {
        yield* engine.append("acme", `order-${i}`, {
          expectedVersion: "no_stream",
          events: [{ type: Ids.EventType.make("Placed"), data: { amount: i } }]
        })
      }
      yield* engine.append("acme", "order-3", { expectedVersion: 0, events: [{ type: Ids.EventType.make("Paid"), data: { amount: 5 } }] })
      const read = yield* engine.readStream("acme", "order-3", {})
      assert.deepStrictEqual(read.map((e) => e.type), ["Placed", "Paid"])
      const paid = yield* engine.query("acme", { types: ["Paid"] })
      assert.strictEqual(paid.events.length, 1)
      const placed = yield* engine.query("acme", { types: ["Placed"], limit: 7 })
      assert.strictEqual(placed.events.length, 7)
      assert.isDefined(placed.next)
      const sum = yield* engine.state("acme", "order-3", "sum:amount", undefined)
      assert.strictEqual(sum.state, 8)
      const custom = yield* engine.state("acme", "order-3", { name: "types", initial: "", step: (s, e) => `${s}${e.type[0]}` }, undefined)
      assert.strictEqual(custom.state, "PP")
      const partitions = yield* engine.partitions
      assert.strictEqual(partitions.reduce((n, p) => n + p.events, 0), 21)
    })

  it.live("routes appends, reads, queries and state through the entity client", () =>
    Effect.gen(function*() {
      yield* scenario
      // Nothing went direct: the router has no active partitions of its own to call.
      const active = yield* PartitionEntity.ActivePartitions
      assert.strictEqual(active.size, 4)
    }).pipe(Effect.provide(ViaRpc)))
  it.live("the node engine activates every partition at start and serves the same answers", () =>
    Effect.gen(function*() {
      const active = yield* PartitionEntity.ActivePartitions
      assert.strictEqual(active.size, 4)
      yield* scenario
    }).pipe(Effect.provide(Node)))
})

