import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { ChronosConfig, make as makeConfig } from "@chronos/config"
import type { Event } from "@chronos/domain"
import { type Commit } from "@chronos/engine/Commit"
import { EventLog, makeMemory } from "@chronos/engine/EventLog"
import * as Partition from "@chronos/engine/Partition"
import { ColdTier } from "../src/ColdTier.ts"
import * as Manifest from "../src/Manifest.ts"
import * as SegmentReader from "../src/SegmentReader.ts"
import { makeMemory as makeMemoryStore, SegmentStore } from "../src/SegmentStore.ts"
import * as Sealer from "../src/Sealer.ts"

const events = (partition: number, from: number, count: number, streams: number): Array<Event.StoredEvent> => {
  const versions = new Map<string, number>()
  return Array.from({ length: count }, (_, i) => {
    const stream = `s-${String((i * 31) % streams).padStart(4, "0")}`
    const v = (versions.get(stream) ?? -1) + 1
    versions.set(stream, v)
    return {
      eventId: `00000000-0000-4000-8000-${String(from + i).padStart(12, "0")}`,
      tenant: i % 5 === 0 ? "beta" : "acme",
      stream,
      type: "T",
      data: { i: from + i },
      metadata: {},
      timestamp: 1_700_000_000_000 + from + i,
      streamVersion: v,
      partition,
      seq: from + i
    }
  })
}

describe("Segments", () => {
  it.effect("row-group statistics prune a one-stream read to the row groups that can hold it; the cache serves repeats", () =>
    Effect.gen(function*() {
      const store = makeMemoryStore()
      const all = events(0, 1, 20_000, 400)
      const { entry } = yield* Sealer.writeSegment(store, 0, all, 1, 20_000, 256)
      yield* store.writeManifest(0, Manifest.withSegment(Manifest.empty(0), entry))
      const reader = SegmentReader.make(store, { cacheBytesMax: 64 * 1_048_576 })
      const target = all.find((e) => e.tenant === "acme" && e.stream === "s-0123")!
      const expected = all.filter((e) => e.tenant === "acme" && e.stream === "s-0123")
      const first = yield* reader.readStream(0, "acme", "s-0123")
      assert.deepStrictEqual(first.events, expected)
      assert.isAbove(first.stats.rowGroups, 70)
      assert.isAtMost(first.stats.rowGroupsRead, 2)
      assert.strictEqual(first.stats.cacheHits, 0)
      const ranged = yield* reader.readStream(0, "acme", "s-0123", { fromVersion: 10, toVersion: 12 })
      assert.deepStrictEqual(ranged.events.map((e) => e.streamVersion), [10, 11, 12])
      assert.strictEqual(ranged.stats.cacheHits, 1)
      // A stream no row group can hold reads none.
      const none = yield* reader.readStream(0, "zeta", target.stream)
      assert.deepStrictEqual([none.events.length, none.stats.rowGroupsRead], [0, 0])
      // Damage in the stored bytes is caught before anything is served, cache or not.
      reader.clearCache()
      const bytes = store.files.get("p000/" + entry.file)!
      bytes[bytes.length >> 1]! ^= 1
      const failed = yield* reader.readStream(0, "acme", "s-0123").pipe(Effect.flip)
      assert.strictEqual(failed._tag, "CorruptData")
      assert.include((failed as { location: string }).location, entry.file)
    }))

  it.effect("memory drivers: seal, truncate the memory log, reload the partition from segments + log", () =>
    Effect.gen(function*() {
      const config = makeConfig({ partitions: 1, segmentRowGroupRowsMax: 32, segmentEventsMax: 100 })
      const logStore = new Map<number, Array<Commit>>()
      const layers = ColdTier.layerMemory.pipe(
        Layer.provideMerge(Layer.succeed(EventLog, makeMemory(logStore))),
        Layer.provideMerge(ChronosConfig.layer(config))
      )
      yield* Effect.gen(function*() {
        const tier = yield* ColdTier
        const store = yield* SegmentStore
        const reads = (p: Partition.Partition) =>
          Effect.all([p.scan("t", { limit: 10_000 }), p.readStream("t", "a", { limit: 10_000, direction: "forward" })])
        const before = yield* Effect.scoped(Effect.gen(function*() {
          const p = yield* Partition.make(0, config)
          for (let i = 0; i < 50; i++) {
            yield* p.append({
              tenant: "t",
              stream: i % 2 === 0 ? "a" : "b",
              expectedVersion: "any",
              events: Array.from({ length: 7 }, (_, k) => ({ eventId: undefined, type: "E", data: { i, k }, metadata: {}, bytes: 20 }))
            })
          }
          const reports = yield* tier.sealNow()
          // 350 events in segments of at most 100.
          assert.deepStrictEqual(reports[0]!.segments.map((s) => [s.fromSeq, s.toSeq]), [[1, 100], [101, 200], [201, 300], [301, 350]])
          assert.strictEqual(logStore.get(0)!.length, 1)
          yield* p.append({ tenant: "t", stream: "a", expectedVersion: "any", events: [{ eventId: undefined, type: "Tail", data: 1, metadata: {}, bytes: 4 }] })
          return yield* reads(p)
        }))
        const after = yield* Effect.scoped(Effect.flatMap(Partition.make(0, config), reads))
        assert.deepStrictEqual(after, before)
        assert.strictEqual(after[0].length, 351)
        const manifest = (yield* store.readManifest(0))!
        assert.deepStrictEqual(Manifest.check(manifest), [])
        assert.strictEqual(Manifest.sealedThrough(manifest), 350)
      }).pipe(Effect.provide(layers))
    }))

  it("manifest invariants", () => {
    const entry = (fromSeq: number, toSeq: number): Manifest.SegmentEntry => ({
      file: Manifest.fileName(fromSeq, toSeq),
      fromSeq,
      toSeq,
      rows: toSeq - fromSeq + 1,
      bytes: 1,
      sha256: "0".repeat(64),
      minTimestampMs: 0,
      maxTimestampMs: 0,
      createdAtMs: 0
    })
    const m = Manifest.withSegment(Manifest.withSegment(Manifest.empty(3), entry(1, 10)), entry(11, 20))
    assert.deepStrictEqual(Manifest.check(m), [])
    assert.throws(() => Manifest.withSegment(m, entry(22, 30)))
    assert.lengthOf(Manifest.check({ ...m, segments: [entry(2, 10)] }), 1)
    const decoded = Manifest.decode(Manifest.encode(m))
    assert.deepStrictEqual("manifest" in decoded ? decoded.manifest : decoded, m)
    assert.isTrue("problem" in Manifest.decode("{\"formatVersion\":1}"))
  })
})
