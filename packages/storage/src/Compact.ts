/**
 * Offline compaction (`Compact.run({ dataDir })`): applies each stream's retention and hard deletion (see
 * `Retention`) to the sealed segments of a data directory, with no node running (it takes each partition's log
 * lock, like `Seal`). For every segment holding an erasable event it writes a new generation of the segment
 * (`<from>-<to>.c<N>.parquet`) in which those events are `$erased` — payload and type removed, positions kept — then
 * replaces the segment in the manifest, then deletes the old file. A crash leaves either the old or the new
 * generation in the manifest, and at most an orphan file (reported by `verify` as a warning).
 *
 * The rules of a stream come from all its events: segments and the log tail (a `$metadata` appended after the
 * last seal still applies to sealed events). Memory: one decoded segment at a time, plus every stream's system
 * events and last version.
 */
import { Clock, Effect } from "effect"
import * as path from "node:path"
import { make as makeConfig, type ChronosConfigShape } from "@chronos/config"
import { Errors, type Event } from "@chronos/domain"
import * as FileLog from "@chronos/engine/internal/fileLog"
import * as Manifest from "./Manifest.ts"
import * as Retention from "./Retention.ts"
import { storePartitions } from "./Seal.ts"
import type { SealError } from "./Sealer.ts"
import { writeSegment } from "./Sealer.ts"
import * as SegmentFormat from "./SegmentFormat.ts"
import * as SegmentReader from "./SegmentReader.ts"
import { makeLocal } from "./SegmentStore.ts"

export interface CompactReport {
  readonly partition: number
  readonly segmentsRewritten: number
  /** Events erased by this compaction (already erased ones not counted again). */
  readonly eventsErased: number
}

export interface Options {
  readonly dataDir: string
  readonly partitions?: ReadonlyArray<number> | undefined
  /** The time retention ages are measured against (default: the Clock). */
  readonly nowMs?: number | undefined
  readonly config?: Partial<ChronosConfigShape> | undefined
}

type SystemEvent = { readonly type: string; readonly data: unknown; readonly streamVersion: number }

const key = (tenant: string, stream: string) => `${tenant}\u0000${stream}`

const generationOf = (file: string): number => Number(Manifest.fileNamePattern.exec(file)?.[3] ?? 0)

export const compactPartition = (
  dataDir: string,
  partition: number,
  config: ChronosConfigShape,
  nowMs: number
): Effect.Effect<CompactReport, SealError> =>
  Effect.scoped(Effect.gen(function*() {
    const store = makeLocal(dataDir)
    const reader = SegmentReader.make(store, { cacheBytesMax: 0 })
    // Holding the log's lock keeps a node (and a concurrent seal) away while segments are replaced.
    const fileLog = yield* FileLog.make({ dataDir, segmentBytesMax: config.logSegmentBytesMax })
    const log = yield* fileLog.open(partition)
    let manifest = yield* store.readManifest(partition)
    if (manifest === undefined || manifest.segments.length === 0) return { partition, segmentsRewritten: 0, eventsErased: 0 }

    const decodeVerified = (entry: Manifest.SegmentEntry) =>
      Effect.flatMap(reader.load(partition, entry), (bytes) =>
        Effect.try({
          try: () => SegmentFormat.decode(bytes),
          catch: (error) =>
            new Errors.CorruptData({ location: store.location(partition, entry.file), message: String((error as Error).message) })
        }))

    // Pass 1: every stream's system events and last version, over segments and the log tail.
    const system = new Map<string, Array<SystemEvent>>()
    const lastVersion = new Map<string, number>()
    const observe = (tenant: string, stream: string, type: string, version: number, data: () => unknown) => {
      const k = key(tenant, stream)
      lastVersion.set(k, Math.max(lastVersion.get(k) ?? -1, version))
      if (type === Retention.metadataType || type === Retention.deletedType) {
        let list = system.get(k)
        if (list === undefined) system.set(k, list = [])
        list.push({ type, data: data(), streamVersion: version })
      }
    }
    for (const entry of manifest.segments) {
      const c = yield* decodeVerified(entry)
      for (let i = 0; i < c.rows; i++) {
        observe(c.tenant[i]!, c.stream[i]!, c.type[i]!, c.streamVersion[i]!, () => JSON.parse(c.data[i]!))
      }
    }
    yield* log.replay(Manifest.sealedThrough(manifest) + 1, (commit) => {
      for (const e of commit.events) observe(e.tenant, e.stream, e.type, e.streamVersion, () => e.data)
    })
    const rules = new Map([...system].map(([k, events]) => [k, Retention.rulesOf(events)]))
    if (rules.size === 0) return { partition, segmentsRewritten: 0, eventsErased: 0 }

    // Pass 2: rewrite the segments that hold erasable events.
    let segmentsRewritten = 0
    let eventsErased = 0
    for (const entry of manifest.segments) {
      const c = yield* decodeVerified(entry)
      const events: Array<Event.StoredEvent> = []
      let erasedHere = 0
      let erasedTotal = 0
      for (let i = 0; i < c.rows; i++) {
        const e = SegmentFormat.eventAt(c, i)
        const k = key(e.tenant, e.stream)
        const r = rules.get(k)
        if (e.type !== Retention.erasedType && r !== undefined && Retention.isErasable(e, r, lastVersion.get(k)!, nowMs)) {
          events.push({ ...e, type: Retention.erasedType, data: null, metadata: {} })
          erasedHere++
        } else {
          events.push(e)
        }
        if (events[events.length - 1]!.type === Retention.erasedType) erasedTotal++
      }
      if (erasedHere === 0) continue
      events.sort((a, b) => a.seq - b.seq)
      const { entry: written } = yield* writeSegment(
        store, partition, events, entry.fromSeq, entry.toSeq, config.segmentRowGroupRowsMax, generationOf(entry.file) + 1
      )
      manifest = Manifest.withReplaced(manifest, { ...written, erasedRows: erasedTotal })
      yield* store.writeManifest(partition, manifest)
      yield* store.remove(partition, entry.file)
      segmentsRewritten++
      eventsErased += erasedHere
    }
    return { partition, segmentsRewritten, eventsErased }
  }))

/** Compacts every partition of the store in `dataDir`, one at a time. */
export const run = (options: Options): Effect.Effect<ReadonlyArray<CompactReport>, SealError> =>
  Effect.gen(function*() {
    const dataDir = path.resolve(options.dataDir)
    const config = makeConfig({ ...options.config, dataDir })
    const nowMs = options.nowMs ?? (yield* Clock.currentTimeMillis)
    const chosen = options.partitions ?? Array.from({ length: storePartitions(dataDir) }, (_, p) => p)
    return yield* Effect.forEach(chosen, (p) => compactPartition(dataDir, p, config, nowMs))
  })
