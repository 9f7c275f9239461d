/**
 * Model-based test of reads through a fork: random appends to the store, a fork at a random point (now or `asOf` a
 * random position vector), then random appends interleaved on the store and the fork (expected versions, reused
 * event ids). Every read the engine offers through the fork — streams forward and backward from any version with
 * any limit, partition reads from any sequence, tenant queries paged with `next`, state — must equal the model:
 * the store's events at or below the base, then the fork's own, with versions and sequences continuing.
 */
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Effect, Exit, Layer, ManagedRuntime } from "effect"
import { ChronosConfig } from "@chronos/config"
import { Event as EventModule } from "@chronos/domain"
import type { Event } from "@chronos/domain"
import { Engine, type EngineShape } from "../src/Engine.ts"
import { EventLog } from "../src/EventLog.ts"
import { ForkRegistry } from "../src/ForkRegistry.ts"
import { Forks } from "../src/Forks.ts"

const streams = ["a", "b", "c", "d"]
const uuid = (n: number) => `0b6a1f4e-3f7e-4a59-9a9e-${n.toString(16).padStart(12, "0")}`

const op = fc.record({
  where: fc.constantFrom("main", "fork", "fork"),
  stream: fc.constantFrom(...streams),
  n: fc.integer({ min: 1, max: 3 }),
  reuse: fc.oneof({ arbitrary: fc.constant(null), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 30 }), weight: 1 }),
  expected: fc.oneof(
    { arbitrary: fc.constant("any" as const), weight: 3 },
    { arbitrary: fc.constant("auto" as const), weight: 3 },
    { arbitrary: fc.integer({ min: -1, max: 4 }), weight: 1 }
  )
})

type StoredEvent = Event.StoredEvent
/** What identifies an event in the model (its timestamp is the store's to choose). */
const key = (e: StoredEvent) => [e.eventId, e.stream, e.type, e.streamVersion, e.partition, e.seq]

describe("Forks against a model", () => {
  it("every read through a fork is the store at the base followed by the fork's own events", async () => {
    const rt = ManagedRuntime.make(
      Forks.layer.pipe(
        Layer.provideMerge(Engine.layerLocal),
        Layer.provideMerge(Layer.mergeAll(EventLog.layerMemory, ForkRegistry.layerMemory)),
        Layer.provideMerge(ChronosConfig.layer({ partitions: 3, forksPerTenantMax: 1_000, readEventsMax: 1_000 }))
      )
    )
    const engine = await rt.runPromise(Effect.service(Engine))
    const forks = await rt.runPromise(Effect.service(Forks))
    let round = 0
    // Event ids are unique per partition across tenants: every run draws fresh ones.
    let nextId = 0
    let ownEvents = 0
    let inheritedEvents = 0
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(op, { minLength: 0, maxLength: 12 }),
          fc.array(op, { minLength: 0, maxLength: 20 }),
          fc.boolean(),
          fc.array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 1, max: 6 }), fc.boolean()), { minLength: 3, maxLength: 3 }),
          async (before, after, atPast, reads) => {
            const tenant = `m${round++}`
            const ids: Array<string> = []
            const forkWrites: Array<StoredEvent> = []
            const run = async (target: EngineShape, o: typeof before[number], own?: ReadonlyArray<number>) => {
              const events = Array.from({ length: o.n }, (_, i) => {
                const id = o.reuse !== null && o.reuse < ids.length && i === 0 && o.n === 1 ? ids[o.reuse]! : uuid(nextId++)
                ids.push(id)
                return EventModule.propose(`T${i}`, { i }, { eventId: id })
              })
              const expectedVersion = o.expected === "auto"
                ? (yield_version(await rt.runPromise(target.readStream(tenant, o.stream, { direction: "backward", limit: 1 }))))
                : o.expected === -1 ? "no_stream" : o.expected
              const result = await rt.runPromise(Effect.exit(target.append(tenant, o.stream, { expectedVersion, events })))
              // The model of the fork's own events: what its appends answered (new positions above the base only).
              if (own !== undefined && Exit.isSuccess(result)) {
                result.value.positions.forEach((pos, i) => {
                  if (pos.seq <= own[pos.partition]! || forkWrites.some((e) => e.partition === pos.partition && e.seq === pos.seq)) return
                  forkWrites.push({
                    eventId: events[i]!.eventId!,
                    tenant,
                    stream: o.stream,
                    type: events[i]!.type,
                    data: events[i]!.data,
                    metadata: {},
                    timestamp: 0,
                    streamVersion: result.value.firstVersion + i,
                    partition: pos.partition,
                    seq: pos.seq
                  })
                })
              }
            }
            for (const o of before) await run(engine, o)
            const cut = (await rt.runPromise(engine.partitions)).map((s) => `${s.partition}:${Math.floor(s.watermark / 2)}`).join(",")
            const fork = await rt.runPromise(forks.create(tenant, { ttlSeconds: 600, ...(atPast ? { asOf: cut } : {}) }))
            const base = fork.base.split(",").map((pair) => Number(pair.split(":")[1]))
            const f = await rt.runPromise(forks.engine(tenant, fork.forkId))
            for (const o of after) await (o.where === "main" ? run(engine, o) : run(f, o, base))

            // The model: the store's events at or below the base, then the fork's own events.
            const mainAll = (await rt.runPromise(engine.query(tenant, { limit: 1_000 }))).events
            const inherited = mainAll.filter((e) => e.seq <= base[e.partition]!)
            const model = [...inherited, ...forkWrites]
            ownEvents += forkWrites.length
            inheritedEvents += inherited.length
            // Versions continue per stream and sequences per partition, gapless.
            for (const s of streams) {
              const versions = model.filter((e) => e.stream === s).map((e) => e.streamVersion)
              expect(versions).toEqual(versions.map((_, i) => i))
            }
            for (let p = 0; p < 3; p++) {
              const own = forkWrites.filter((e) => e.partition === p).map((e) => e.seq)
              expect(own).toEqual(own.map((_, i) => base[p]! + 1 + i))
            }
            const byPosition = (x: StoredEvent, y: StoredEvent) => x.partition - y.partition || x.seq - y.seq
            // Tenant query, paged: every event once, in (timestamp, partition, seq) order.
            for (const [, limit] of reads) {
              const got: Array<StoredEvent> = []
              let after: string | undefined
              do {
                const page = await rt.runPromise(f.query(tenant, { limit, after }))
                got.push(...page.events)
                after = page.next
              } while (after !== undefined)
              for (let i = 1; i < got.length; i++) {
                const [x, y] = [got[i - 1]!, got[i]!]
                expect(x.timestamp < y.timestamp || (x.timestamp === y.timestamp && byPosition(x, y) < 0)).toBe(true)
              }
              expect([...got].sort(byPosition).map(key)).toEqual([...model].sort(byPosition).map(key))
            }
            // Streams, forward and backward, from any version, any limit; state.
            for (const s of streams) {
              const all = model.filter((e) => e.stream === s)
              for (const [from, limit, backward] of reads) {
                const got = await rt.runPromise(f.readStream(tenant, s, { fromVersion: from, limit, direction: backward ? "backward" : "forward" }))
                const want = backward
                  ? all.filter((e) => e.streamVersion <= from).reverse().slice(0, limit)
                  : all.filter((e) => e.streamVersion >= from).slice(0, limit)
                expect(got.map(key)).toEqual(want.map(key))
              }
              const state = await rt.runPromise(Effect.exit(f.state(tenant, s, "count", undefined)))
              if (all.length === 0) expect(Exit.isFailure(state)).toBe(true)
              else expect(Exit.isSuccess(state) && [state.value.version, state.value.state]).toEqual([all.length - 1, all.length])
            }
            // Partitions from any sequence.
            for (let p = 0; p < 3; p++) {
              for (const [from, limit] of reads) {
                const got = await rt.runPromise(f.readPartition(tenant, p, { fromSeq: from + 1, limit }))
                const want = model.filter((e) => e.partition === p && e.seq >= from + 1).sort(byPosition).slice(0, limit)
                expect(got.map(key)).toEqual(want.map(key))
              }
            }
            await rt.runPromise(forks.discard(tenant, fork.forkId))
          }
        ),
        { numRuns: 100 }
      )
      // The runs exercised both halves of the fork's view.
      expect(ownEvents).toBeGreaterThan(100)
      expect(inheritedEvents).toBeGreaterThan(100)
    } finally {
      await rt.dispose()
    }
  }, 120_000)
})

const yield_version = (last: ReadonlyArray<StoredEvent>) => (last.length === 0 ? "no_stream" as const : last[0]!.streamVersion)
