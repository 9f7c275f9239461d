/**
 * The cold tier of a process: the implementation of the engine's `ColdStore` over a `SegmentStore`, and the owner of
 * sealing in that process. It owns:
 *  - cold boot: a partition's load replays its verified segments as heads (see `SegmentReader.replay`; the
 *    payload stays in the segments), with one log line per partition saying how many segments and events it loaded
 *    and how long that took;
 *  - cold reads: the bodies of sealed events a partition's read needs (`ColdStore.fetch`, over
 *    `SegmentReader.readSeqs`: pruned by row-group statistics, through the `segmentCacheBytesMax` and
 *    `segmentRowGroupCacheBytesMax` caches, scans through read-ahead windows);
 *  - the sealing policy: each partition attached here (every partition this process owns) is checked every
 *    `coldSealCheckIntervalMs`; its durable, unsealed range is sealed once it holds `coldSealBytesMin` bytes
 *    (estimated from the events' JSON) or its oldest unsealed event is `coldSealAgeMs` old;
 *  - sealing on demand (`sealNow`, behind `POST /v1/admin/seal`): every partition attached here, now.
 * Seals of one partition are serialized (policy and on-demand share a per-partition lock).
 *
 * Layers: `ColdTier.layer` (over a provided `SegmentStore`), `layerLocal({ dataDir })` (embedded default: plain
 * Parquet files under `<dataDir>/segments/`), `layerNats(…)` (cluster: NATS Object Store + KV, replicated like the
 * log), `layerMemory` (tests). Each provides both `ColdTier` and the engine's
 * `ColdStore`; provide it to the engine's layer (`Engine.layerLocal`, `PartitionEntity.layerEngine`) and every
 * partition opened there loads from and seals to it.
 */
import { Clock, Context, Effect, Layer, Scope, Semaphore } from "effect"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { ColdStore, hasBody, type SealTarget } from "@chronos/engine/ColdStore"
import { LogUnavailable } from "@chronos/engine/EventLog"
import * as Manifest from "./Manifest.ts"
import * as SegmentReader from "./SegmentReader.ts"
import { type SealError, type SealReport, approxBytes, seal } from "./Sealer.ts"
import type * as NatsSegmentStore from "./internal/natsSegmentStore.ts"
import { SegmentStore, type SegmentStoreError, type SegmentStoreShape } from "./SegmentStore.ts"

export type ColdTierLimits = Pick<
  ChronosConfigShape,
  | "coldSealBytesMin"
  | "coldSealAgeMs"
  | "coldSealCheckIntervalMs"
  | "segmentRowGroupRowsMax"
  | "segmentEventsMax"
  | "segmentCacheBytesMax"
  | "segmentRowGroupCacheBytesMax"
  | "segmentReadAheadEventsMax"
  | "segmentReadAheadWindowsMax"
>

export interface ColdTierShape {
  readonly store: SegmentStoreShape
  readonly reader: SegmentReader.SegmentReader
  /** Partitions attached (open) in this process, ascending. */
  readonly attached: () => ReadonlyArray<number>
  /** What an attached partition offers the cold tier (its hot index as heads and bodies: tools, tests). */
  readonly target: (partition: number) => SealTarget | undefined
  /**
   * Seals every attached partition (or those named) now: everything durable, not only past the thresholds. Each
   * partition is reported on its own; the first failure fails the call after the others were attempted.
   */
  readonly sealNow: (partitions?: ReadonlyArray<number>) => Effect.Effect<ReadonlyArray<SealReport>, SealError>
}

export class ColdTier extends Context.Service<ColdTier, ColdTierShape>()("chronos/storage/ColdTier") {
  /** The cold tier over the provided `SegmentStore`, with the limits of `ChronosConfig`. */
  static readonly layer: Layer.Layer<ColdTier | ColdStore, never, SegmentStore | ChronosConfig> = Layer.effectContext(
    Effect.gen(function*() {
      const tier = yield* make(yield* SegmentStore, yield* ChronosConfig)
      return Context.make(ColdTier, tier.tier).pipe(Context.add(ColdStore, tier.coldStore))
    })
  )

  /** Plain Parquet files under `<dataDir>/segments/` (embedded mode). */
  static readonly layerLocal = (options: { readonly dataDir: string }): Layer.Layer<ColdTier | ColdStore, never, ChronosConfig> =>
    ColdTier.layer.pipe(Layer.provide(SegmentStore.layerLocal(options)))

  /** Segments in a NATS Object Store bucket, manifests in a NATS KV bucket (cluster mode; see `SegmentStore`). */
  static readonly layerNats = (
    options: NatsSegmentStore.Options
  ): Layer.Layer<ColdTier | ColdStore, SegmentStoreError, ChronosConfig> =>
    ColdTier.layer.pipe(Layer.provide(SegmentStore.layerNats(options)))

  /** Segments in process memory (tests). */
  static readonly layerMemory: Layer.Layer<ColdTier | ColdStore | SegmentStore, never, ChronosConfig> = ColdTier.layer.pipe(
    Layer.provideMerge(SegmentStore.layerMemory)
  )
}

interface Attached {
  readonly target: SealTarget
  /** Sequence up to which `estimatedBytes` has counted the unsealed events. */
  measuredThrough: number
  estimatedBytes: number
  sealedThrough: number
}

export const make = Effect.fnUntraced(function*(store: SegmentStoreShape, limits: ColdTierLimits) {
  const reader = SegmentReader.make(store, {
    cacheBytesMax: limits.segmentCacheBytesMax,
    rowGroupCacheBytesMax: limits.segmentRowGroupCacheBytesMax,
    readAheadEventsMax: limits.segmentReadAheadEventsMax,
    readAheadWindowsMax: limits.segmentReadAheadWindowsMax
  })
  const attached = new Map<number, Attached>()
  const locks = new Map<number, Semaphore.Semaphore>()
  const lockOf = (partition: number) => {
    let lock = locks.get(partition)
    if (lock === undefined) locks.set(partition, lock = Semaphore.makeUnsafe(1))
    return lock
  }
  const sealOptions = { rowGroupRowsMax: limits.segmentRowGroupRowsMax, segmentEventsMax: limits.segmentEventsMax }

  const sealOne = (entry: Attached): Effect.Effect<SealReport, SealError> =>
    Semaphore.withPermit(lockOf(entry.target.partition))(
      Effect.tap(seal(store, entry.target, sealOptions), (report) =>
        Effect.sync(() => {
          entry.sealedThrough = report.sealedThrough
          entry.estimatedBytes = 0
          entry.measuredThrough = Math.max(entry.measuredThrough, report.sealedThrough)
        }))
    )

  /** Measures what became durable since the last check and seals when a threshold is passed. */
  const check = (entry: Attached) =>
    Effect.gen(function*() {
      const { target } = entry
      const watermark = target.watermark()
      if (watermark <= entry.sealedThrough) return
      const from = Math.max(entry.measuredThrough, entry.sealedThrough) + 1
      // Counted once per event, in bounded slices (the hot index serves them without I/O).
      // Heads, not `readRange`: should `sealedThrough` lag (a manifest unreadable at attach), the range may start in
      // the sealed part, whose bodies the partition dropped; those count nothing, and the seal re-reads the manifest.
      for (let s = from; s <= watermark; s += 10_000) {
        for (const e of target.readHeads(s, Math.min(watermark, s + 9_999))) {
          if (hasBody(e)) entry.estimatedBytes += approxBytes(e)
        }
      }
      entry.measuredThrough = watermark
      const oldest = target.readHeads(entry.sealedThrough + 1, entry.sealedThrough + 1)[0]!
      const now = yield* Clock.currentTimeMillis
      if (entry.estimatedBytes >= limits.coldSealBytesMin || now - oldest.timestamp >= limits.coldSealAgeMs) {
        const report = yield* sealOne(entry)
        const rows = report.segments.reduce((n, s) => n + s.rows, 0)
        yield* Effect.logInfo(
          `partition ${target.partition}: sealed ${rows} events into ${report.segments.length} segment(s), ` +
            `through seq ${report.sealedThrough}`
        )
      }
    })

  const coldStore = ColdStore.of({
    replay: (partition, keepBody, onEvent) =>
      Effect.gen(function*() {
        const started = yield* Clock.currentTimeMillis
        const stats = yield* reader.replay(partition, keepBody, onEvent).pipe(
          Effect.catchTag("SegmentStoreError", (e) =>
            Effect.fail(new LogUnavailable({ partition, message: `segments unreadable: ${e.location}: ${e.message}` })))
        )
        if (stats.segments > 0) {
          const ms = yield* SegmentReader.elapsedMs(started)
          yield* Effect.logInfo(
            `partition ${partition}: cold boot loaded ${stats.segments} segment(s), ${stats.events} events ` +
              `(${(stats.bytes / 1024).toFixed(0)} KiB verified) in ${ms} ms; the log follows from seq ${stats.lastSeq + 1}`
          )
        }
        return stats.lastSeq
      }),
    fetch: (partition, request) =>
      reader.readSeqs(partition, request).pipe(
        Effect.map((r) => r.events),
        Effect.catchTag("SegmentStoreError", (e) =>
          Effect.fail(new LogUnavailable({ partition, message: `segments unreadable: ${e.location}: ${e.message}` })))
      ),
    attach: (target) =>
      Effect.gen(function*() {
        // The manifest the partition's load just read (no second request; see `SegmentReader.manifest`).
        const manifest = yield* reader.manifest(target.partition).pipe(
          Effect.catch((error) =>
            Effect.as(Effect.logWarning(`partition ${target.partition}: cold tier manifest unreadable`, error), undefined))
        )
        const sealedThrough = manifest === undefined ? 0 : Manifest.sealedThrough(manifest)
        const entry: Attached = { target, measuredThrough: sealedThrough, estimatedBytes: 0, sealedThrough }
        attached.set(target.partition, entry)
        const scope = yield* Effect.scope
        yield* Scope.addFinalizer(scope, Effect.sync(() => attached.get(target.partition) === entry && attached.delete(target.partition)))
        const policy = Effect.gen(function*() {
          while (true) {
            yield* Effect.sleep(Math.max(10, limits.coldSealCheckIntervalMs))
            // Whatever went wrong (a reload racing the check included), the policy lives on and retries.
            yield* check(entry).pipe(
              Effect.catchCause((cause) => Effect.logWarning(`partition ${target.partition}: sealing failed; retrying later`, cause))
            )
          }
        })
        yield* Effect.forkIn(policy, scope)
      })
  })

  const tier: ColdTierShape = {
    store,
    reader,
    attached: () => [...attached.keys()].sort((a, b) => a - b),
    target: (partition) => attached.get(partition)?.target,
    sealNow: (partitions) =>
      Effect.gen(function*() {
        const chosen = (partitions ?? [...attached.keys()]).slice().sort((a, b) => a - b)
        const results = yield* Effect.forEach(chosen, (p) => {
          const entry = attached.get(p)
          return entry === undefined
            ? Effect.succeed(undefined)
            : Effect.result(sealOne(entry))
        }, { concurrency: 2 })
        const reports: Array<SealReport> = []
        for (const r of results) {
          if (r === undefined) continue
          if (r._tag === "Failure") return yield* Effect.fail(r.failure)
          reports.push(r.success)
        }
        return reports
      })
  }
  return { tier, coldStore }
})
