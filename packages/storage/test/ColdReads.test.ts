/**
 * Bounded-memory cold reads, over real Parquet files (`ColdTier.layerLocal` through the embedded store) and a real
 * file log: once sealed, a partition keeps only event heads; every read that needs sealed bodies fetches them from
 * the segments (pruned, cached) and answers exactly as the hot index did — after a seal and after a cold boot; a
 * segment damaged under a running node fails only the reads that need it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as path from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { Errors, type Event } from "@chronos/domain"
import { hasBody } from "@chronos/engine/ColdStore"
import type { EngineShape } from "@chronos/engine/Engine"
import type { ColdTierShape } from "../src/ColdTier.ts"
import * as Retention from "../src/Retention.ts"
import { flipByte, listFiles, open, populate, tempDir, tenants } from "./support.ts"

const STREAMS = 24

/** Every kind of read a client can make, over both tenants: the answers must not depend on where bodies live. */
const answers = (engine: EngineShape, midMs: number) =>
  Effect.gen(function*() {
    const out: Record<string, unknown> = {}
    const mid = new Date(midMs).toISOString()
    for (const tenant of tenants) {
      for (let s = 0; s < STREAMS; s += 3) {
        const stream = `order-${s}`
        const key = `${tenant}/${stream}`
        out[`${key}/all`] = yield* engine.readStream(tenant, stream, { limit: 10_000 })
        // Forward paging, 7 at a time.
        const pages: Array<ReadonlyArray<Event.StoredEvent>> = []
        for (let from = 0; pages.length < 100; from += 7) {
          const page = yield* engine.readStream(tenant, stream, { fromVersion: from, limit: 7 })
          if (page.length === 0) break
          pages.push(page)
        }
        out[`${key}/pages`] = pages
        out[`${key}/back`] = yield* engine.readStream(tenant, stream, { direction: "backward", limit: 5 })
        out[`${key}/backFrom`] = yield* engine.readStream(tenant, stream, { direction: "backward", fromVersion: 10, limit: 4 })
        out[`${key}/asOfTime`] = yield* engine.readStream(tenant, stream, { limit: 10_000, asOf: mid })
        out[`${key}/asOfPosition`] = yield* engine.readStream(tenant, stream, { limit: 10_000, asOf: "0:150,1:150,2:150,3:150" })
        for (const reducer of ["merge", "count", "last", "sum:n"]) {
          const state = (asOf: string | undefined) =>
            engine.state(tenant, stream, reducer, asOf).pipe(Effect.catchTag("StreamNotFound", () => Effect.succeed("none")))
          out[`${key}/state/${reducer}`] = yield* state(undefined)
          out[`${key}/state/${reducer}/asOf`] = yield* state(mid)
          out[`${key}/state/${reducer}/asOfPosition`] = yield* state("0:150,1:150,2:150,3:150")
        }
      }
      // Whole-tenant queries, paged with `next` at an odd page size.
      const all: Array<Event.StoredEvent> = []
      let after: string | undefined
      do {
        const page = yield* engine.query(tenant, { limit: 37, ...(after === undefined ? {} : { after }) })
        all.push(...page.events)
        after = page.next
      } while (after !== undefined)
      out[`${tenant}/query/all`] = all
      out[`${tenant}/query/type`] = yield* engine.query(tenant, { types: ["OrderPlaced"], limit: 10_000 })
      out[`${tenant}/query/since`] = yield* engine.query(tenant, { since: mid, limit: 10_000 })
      out[`${tenant}/query/until`] = yield* engine.query(tenant, { until: mid, types: ["ItemAdded"], limit: 10_000 })
      out[`${tenant}/query/asOf`] = yield* engine.query(tenant, { asOf: mid, limit: 10_000 })
      for (let p = 0; p < engine.config.partitions; p++) {
        out[`${tenant}/p${p}/prefix`] = yield* engine.router.scan(p, tenant, { streamPrefix: "order-1", limit: 10_000 })
        out[`${tenant}/p${p}/follow`] = yield* engine.router.follow(p, tenant, { fromSeq: 40, limit: 25 })
      }
    }
    return out
  })

/** Sealed events of every attached partition that still carry a body (system events may; others must not). */
const sealedBodies = (tier: ColdTierShape, sealedThrough: ReadonlyMap<number, number>) => {
  let bodies = 0
  let heads = 0
  for (const [p, through] of sealedThrough) {
    if (through === 0) continue
    const target = tier.target(p)!
    for (const e of target.readHeads(1, through)) {
      if (hasBody(e) && !e.type.startsWith("$")) bodies++
      else heads++
    }
  }
  return { bodies, heads }
}

const sealAll = (tier: ColdTierShape) =>
  Effect.map(tier.sealNow(), (reports) => new Map(reports.map((r) => [r.partition, r.sealedThrough])))

/** The defect a read died with (reads have no error channel: damage is a defect carrying `CorruptData`). */
const defectOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(effect), (exit) => (Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined))

/** `global.gc` without `--expose-gc` on the command line (vitest's workers are started without it). */
const collect = (): (() => void) => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  return () => {
    gc()
    gc()
  }
}

describe("Cold reads (bounded memory)", () => {
  it.live("hot, after a seal (bodies dropped) and after a cold boot: identical answers to every read", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-coldreads-")
      const a = yield* open(dataDir)
      yield* populate(a.engine, 1_200, STREAMS)
      const firstAll = yield* a.engine.query("acme", { limit: 10_000 })
      const midMs = firstAll.events[Math.floor(firstAll.events.length / 2)]!.timestamp
      const hot = yield* answers(a.engine, midMs)

      const sealed = yield* sealAll(a.tier)
      assert.strictEqual([...sealed.values()].reduce((n, s) => n + s, 0), 1_200)
      // The hot index holds no body of a sealed event any more.
      const afterSeal = sealedBodies(a.tier, sealed)
      assert.strictEqual(afterSeal.bodies, 0)
      assert.strictEqual(afterSeal.heads, 1_200)
      const before = a.tier.reader.totals()
      assert.deepStrictEqual(yield* answers(a.engine, midMs), hot)
      // …and those answers did come from the segments.
      assert.isAbove(a.tier.reader.totals().reads, before.reads)

      // A hot tail after the sealed range: reads span both.
      yield* populate(a.engine, 300, STREAMS, 1_200)
      const withTail = yield* answers(a.engine, midMs)
      yield* a.close

      const b = yield* open(dataDir)
      assert.deepStrictEqual(sealedBodies(b.tier, sealed), afterSeal)
      assert.deepStrictEqual(yield* answers(b.engine, midMs), withTail)
      yield* b.close
    }).pipe(Effect.scoped))

  it.live("after sealing ~1 KB events the heap no longer holds their bodies; a one-stream read prunes row groups", () =>
    Effect.gen(function*() {
      const gc = collect()
      const dataDir = yield* tempDir("chronos-coldreads-mem-")
      const a = yield* open(dataDir, { partitions: 1, segmentRowGroupRowsMax: 64 })
      const n = 4_000
      // ~1 KB of text that does not repeat from one event to the next.
      const payload = (i: number) => Array.from({ length: 64 }, (_, k) => ((i * 7_919 + k * 104_729) % 1e9).toString(36).padStart(15, "x")).join("")
      for (let i = 0; i < n; i += 200) {
        const exits = yield* a.engine.appendMany(
          Array.from({ length: 200 }, (_, k) => ({
            tenant: "acme",
            stream: `s-${(i + k) % 50}`,
            request: { events: [{ type: "Noted", data: { i: i + k, text: payload(i + k) } }] }
          })) as never
        )
        for (const exit of exits) if (exit._tag === "Failure") return yield* Effect.die(exit.cause)
      }
      gc()
      const hotHeap = process.memoryUsage().heapUsed
      const sealed = yield* sealAll(a.tier)
      gc()
      const sealedHeap = process.memoryUsage().heapUsed
      const freedPerEvent = (hotHeap - sealedHeap) / n
      // Each body is ~1.1 KB of JSON text in memory (more as a JS object); a head is about a tenth of that.
      assert.isAbove(freedPerEvent, 700, `freed ${freedPerEvent.toFixed(0)} bytes per event`)
      assert.deepStrictEqual(sealedBodies(a.tier, sealed), { bodies: 0, heads: n })

      // One stream's read reads one segment's row groups that can hold it, not all of them.
      const before = a.tier.reader.totals()
      const events = yield* a.engine.readStream("acme", "s-7", { limit: 1_000 })
      assert.strictEqual(events.length, n / 50)
      assert.deepStrictEqual(events.map((e) => (e.data as { i: number }).i), Array.from({ length: n / 50 }, (_, k) => 7 + 50 * k))
      const after = a.tier.reader.totals()
      const rowGroups = after.rowGroups - before.rowGroups
      const read = after.rowGroupsRead - before.rowGroupsRead
      assert.strictEqual(after.reads - before.reads, 1)
      assert.strictEqual(rowGroups, Math.ceil(n / 64))
      assert.isAtLeast(read, 1)
      assert.isAtMost(read, 3, `read ${read} of ${rowGroups} row groups`)
      // A repeat is a cache hit: no I/O, no checksum, no decompression.
      yield* a.engine.readStream("acme", "s-7", { limit: 1_000 })
      assert.strictEqual(a.tier.reader.totals().cacheHits - after.cacheHits, 1)
      assert.strictEqual(a.tier.reader.totals().rowGroupHits - after.rowGroupHits, read)
      // A scan over the sealed range in pages: every page after a window's first is served from the window.
      const scanned: Array<number> = []
      for (let from = 1; scanned.length < n;) {
        const page = yield* a.engine.router.follow(0, "acme", { fromSeq: from, limit: 100 })
        for (const e of page.events) scanned.push(e.seq)
        from = page.through + 1
      }
      assert.deepStrictEqual(scanned, Array.from({ length: n }, (_, k) => k + 1))
      assert.isAtLeast(a.tier.reader.totals().windowHits - after.windowHits, n - 100 * Math.ceil(n / a.engine.config.segmentReadAheadEventsMax))
      yield* a.close
    }).pipe(Effect.scoped))

  it.live("an event erased by the seal: the running node serves its $erased row and scans by its old type skip it, as after a cold boot", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-coldreads-erased-")
      const a = yield* open(dataDir)
      const put = (stream: string, n: number) =>
        Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
          a.engine.append("acme", stream, { events: [{ type: "Data", data: { i, stream } }] } as never), { discard: true })
      yield* put("hard", 4)
      yield* Retention.deleteStream(a.engine, "acme", "hard", { hard: true })
      yield* put("plain", 3)
      const view = (engine: EngineShape) =>
        Effect.gen(function*() {
          return {
            hard: (yield* engine.readStream("acme", "hard", { limit: 100 })).map((e) => `${e.streamVersion}:${e.type}:${JSON.stringify(e.data)}`),
            data: (yield* engine.query("acme", { types: ["Data"], limit: 100 })).events.map((e) => `${e.stream}/${e.streamVersion}`),
            // A page of 2 by type: the erased events must not make it short or end it early.
            firstPage: (yield* engine.query("acme", { types: ["Data"], limit: 2 })).events.map((e) => `${e.stream}/${e.streamVersion}`)
          }
        })
      yield* a.tier.sealNow()
      const running = yield* view(a.engine)
      assert.deepStrictEqual(running.hard, ["0:$erased:null", "1:$erased:null", "2:$erased:null", "3:$erased:null", '4:$deleted:{"hard":true}'])
      assert.deepStrictEqual(running.data, ["plain/0", "plain/1", "plain/2"])
      assert.deepStrictEqual(running.firstPage, ["plain/0", "plain/1"])
      yield* a.close
      const b = yield* open(dataDir)
      assert.deepStrictEqual(yield* view(b.engine), running)
      yield* b.close
    }).pipe(Effect.scoped))

  it.live("a byte flipped in one segment of a running node: reads needing it fail with CorruptData naming it; others serve", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-coldreads-corrupt-")
      const a = yield* open(dataDir)
      const p = 1
      // Streams of partition p: `a-*` sealed into its first segment, `b-*` into its second, `c-*` left hot.
      const pick = (prefix: string) => {
        const out: Array<string> = []
        for (let i = 0; out.length < 4; i++) if (a.engine.partitionOf("acme", `${prefix}-${i}`) === p) out.push(`${prefix}-${i}`)
        return out
      }
      const write = (streams: ReadonlyArray<string>) =>
        Effect.forEach(streams, (stream) =>
          a.engine.append("acme", stream, {
            events: Array.from({ length: 20 }, (_, k) => ({ type: "Noted", data: { stream, k, note: "x".repeat(100) } }))
          } as never), { discard: true })
      const [first, second, tail] = [pick("a"), pick("b"), pick("c")]
      yield* write(first)
      yield* sealAll(a.tier)
      yield* write(second)
      yield* sealAll(a.tier)
      yield* write(tail)
      const segments = listFiles(path.join(dataDir, "segments", `p${String(p).padStart(3, "0")}`), ".parquet")
      assert.strictEqual(segments.length, 2)
      // Nothing of partition p was read since the seals: no segment is in the reader's cache.
      const damaged = segments[0]!
      flipByte(damaged)

      const expectCorrupt = (defect: unknown, what: string) => {
        assert.instanceOf(defect, Errors.CorruptData, what)
        assert.include((defect as Errors.CorruptData).location, damaged, what)
      }
      expectCorrupt(yield* defectOf(a.engine.readStream("acme", first[0]!, { limit: 100 })), "readStream")
      expectCorrupt(yield* defectOf(a.engine.state("acme", first[1]!, "count", undefined)), "state")
      expectCorrupt(yield* defectOf(a.engine.router.scan(p, "acme", { limit: 1_000 })), "scan")
      // The other segment and the hot tail of the same partition serve.
      for (const stream of second) assert.strictEqual((yield* a.engine.readStream("acme", stream, { limit: 100 })).length, 20)
      for (const stream of tail) assert.strictEqual((yield* a.engine.readStream("acme", stream, { limit: 100 })).length, 20)
      const bState = yield* a.engine.state("acme", second[0]!, "count", undefined)
      assert.strictEqual(bState.version, 19)
      const hotPart = yield* a.engine.router.scan(p, "acme", { fromSeq: 161, limit: 1_000 })
      assert.strictEqual(hotPart.length, 80)
      // And appends go on.
      yield* a.engine.append("acme", first[0]!, { events: [{ type: "Noted", data: {} }] } as never)
      yield* a.close
    }).pipe(Effect.scoped))
})
