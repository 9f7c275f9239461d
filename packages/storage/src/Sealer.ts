/**
 * Sealing: turning the durable head of a partition's log into immutable segments. It owns the order of the steps,
 * which is what makes a crash at any point safe:
 *  1. write the segment file durably (`SegmentStore.put`: temp file, fsync, rename) — a crash here leaves an orphan
 *     file that no manifest lists and that the next seal of the same range overwrites;
 *  2. append it to the manifest durably — from now on it is served;
 *  3. only then truncate the log below the sealed sequence (whole files only; see `PartitionLog.truncateBefore`).
 * A crash between 2 and 3 leaves the log longer than needed, which the next seal truncates.
 *
 * Only ranges at or below the partition's watermark are sealed, in segments of at most `segmentEventsMax` events.
 *
 * Sealing also compacts the log tail it seals: an event that retention or hard deletion makes erasable (see
 * `Retention.isErasable`) is written to the segment already `$erased` — payload and type removed, position kept — so
 * a hard-deleted event never reaches a segment. The rules come from the stream's events in the partition's hot index
 * (`readHeads` from `SealOptions.indexFromSeq`, 1 for an open partition, whose index keeps the bodies of system events).
 */
import { Clock, Effect } from "effect"
import type { Errors, Event } from "@chronos/domain"
import { hasBody, type SealTarget } from "@chronos/engine/ColdStore"
import { type LogError, LogUnavailable } from "@chronos/engine/EventLog"
import * as Manifest from "./Manifest.ts"
import * as Retention from "./Retention.ts"
import * as SegmentFormat from "./SegmentFormat.ts"
import { sha256 } from "./SegmentReader.ts"
import type { SegmentStoreError, SegmentStoreShape } from "./SegmentStore.ts"

export interface SealOptions {
  /** `ChronosConfig.segmentRowGroupRowsMax`. */
  readonly rowGroupRowsMax: number
  /** `ChronosConfig.segmentEventsMax`. */
  readonly segmentEventsMax: number
  /**
   * The first sequence `readRange` can serve (default 1). Retention rules are read from `[indexFromSeq, watermark]`:
   * an offline seal sees only the log tail, so rules set only in earlier segments wait for `Compact.run`.
   */
  readonly indexFromSeq?: number | undefined
}

export interface SealedSegment {
  readonly file: string
  readonly location: string
  readonly fromSeq: number
  readonly toSeq: number
  readonly rows: number
  readonly bytes: number
  /** Bytes of the events' JSON (data + metadata) and identifiers, for compression ratios. */
  readonly rawBytes: number
}

export interface SealReport {
  readonly partition: number
  /** The last sealed sequence after this seal (0: nothing sealed yet). */
  readonly sealedThrough: number
  /** Segments written by this seal (empty when nothing new was durable). */
  readonly segments: ReadonlyArray<SealedSegment>
}

export type SealError = SegmentStoreError | Errors.CorruptData | LogError

/** Approximate bytes of an event outside Parquet (its JSON and identifiers): what sealing thresholds measure. */
export const approxBytes = (e: {
  readonly eventId: string
  readonly tenant: string
  readonly stream: string
  readonly type: string
  readonly data: unknown
  readonly metadata: unknown
}): number =>
  (JSON.stringify(e.data)?.length ?? 4) + (JSON.stringify(e.metadata)?.length ?? 2) + e.eventId.length +
  e.tenant.length + e.stream.length + e.type.length + 40

/** Writes one segment for the events of `[fromSeq, toSeq]` (all of them, in sequence order) and returns its entry. */
export const writeSegment = Effect.fnUntraced(function*(
  store: SegmentStoreShape,
  partition: number,
  events: ReadonlyArray<Event.StoredEvent>,
  fromSeq: number,
  toSeq: number,
  rowGroupRowsMax: number,
  generation = 0
): Effect.fn.Return<{ entry: Manifest.SegmentEntry; sealed: SealedSegment }, SegmentStoreError> {
  if (events.length !== toSeq - fromSeq + 1 || events[0]?.seq !== fromSeq || events[events.length - 1]?.seq !== toSeq) {
    return yield* Effect.die(
      new Error(`seal of partition ${partition}: [${fromSeq}, ${toSeq}] got ${events.length} events ` +
        `from ${events[0]?.seq} to ${events[events.length - 1]?.seq}`)
    )
  }
  const bytes = SegmentFormat.encode(events, { rowGroupRowsMax, range: { partition, fromSeq, toSeq } })
  const file = Manifest.fileName(fromSeq, toSeq, generation)
  yield* store.put(partition, file, bytes)
  let rawBytes = 0
  for (const e of events) rawBytes += approxBytes(e)
  const entry: Manifest.SegmentEntry = {
    file,
    fromSeq,
    toSeq,
    rows: events.length,
    bytes: bytes.length,
    sha256: sha256(bytes),
    minTimestampMs: events[0]!.timestamp,
    maxTimestampMs: events[events.length - 1]!.timestamp,
    createdAtMs: yield* Clock.currentTimeMillis
  }
  return {
    entry,
    sealed: { file, location: store.location(partition, file), fromSeq, toSeq, rows: events.length, bytes: bytes.length, rawBytes }
  }
})

type Rules = ReadonlyMap<string, { readonly rules: Retention.StreamRules; readonly lastVersion: number }>

const streamKey = (tenant: string, stream: string) => `${tenant}\u0000${stream}`

/** The retention rules and last versions of the streams that have any, from `[fromSeq, toSeq]` of the hot index. */
export const rulesOfRange = (target: SealTarget, fromSeq: number, toSeq: number): Rules => {
  const system = new Map<string, Array<Event.StoredEvent>>()
  const last = new Map<string, number>()
  for (let s = fromSeq; s <= toSeq; s += 10_000) {
    // Heads: the partition keeps the bodies of sealed system events only, which is all the rules need.
    for (const e of target.readHeads(s, Math.min(toSeq, s + 9_999))) {
      const k = streamKey(e.tenant, e.stream)
      last.set(k, Math.max(last.get(k) ?? -1, e.streamVersion))
      if ((e.type === Retention.metadataType || e.type === Retention.deletedType) && hasBody(e)) {
        let list = system.get(k)
        if (list === undefined) system.set(k, list = [])
        list.push(e)
      }
    }
  }
  return new Map([...system].map(([k, events]) => [k, { rules: Retention.rulesOf(events), lastVersion: last.get(k)! }]))
}

/** `events` with every erasable one replaced by its `$erased` placeholder, and how many rows are erased. */
export const eraseExpired = (
  events: ReadonlyArray<Event.StoredEvent>,
  rules: Rules,
  nowMs: number
): { readonly events: ReadonlyArray<Event.StoredEvent>; readonly erasedRows: number } => {
  if (rules.size === 0) return { events, erasedRows: events.filter((e) => e.type === Retention.erasedType).length }
  let erasedRows = 0
  const out = events.map((e) => {
    if (e.type === Retention.erasedType) {
      erasedRows++
      return e
    }
    const r = rules.get(streamKey(e.tenant, e.stream))
    if (r === undefined || !Retention.isErasable(e, r.rules, r.lastVersion, nowMs)) return e
    erasedRows++
    return { ...e, type: Retention.erasedType, data: null, metadata: {} }
  })
  return { events: out, erasedRows }
}

/**
 * Seals everything of `target` that is durable and not sealed yet, then truncates its log below the sealed range.
 * Callers serialize seals of one partition (the manifest is read, extended and written back).
 */
export const seal = Effect.fnUntraced(function*(
  store: SegmentStoreShape,
  target: SealTarget,
  options: SealOptions
): Effect.fn.Return<SealReport, SealError> {
  const partition = target.partition
  let manifest = (yield* store.readManifest(partition)) ?? Manifest.empty(partition)
  const written: Array<SealedSegment> = []
  const watermark = target.watermark()
  let from = Manifest.sealedThrough(manifest) + 1
  const indexFromSeq = options.indexFromSeq ?? 1
  const rules = from <= watermark && indexFromSeq <= watermark
    ? yield* Effect.try({
      try: () => rulesOfRange(target, indexFromSeq, watermark),
      catch: (error) =>
        new LogUnavailable({ partition, message: `retention rules not readable now: ${String((error as Error).message)}` })
    })
    : new Map()
  const nowMs = yield* Clock.currentTimeMillis
  while (from <= watermark) {
    const to = Math.min(watermark, from + options.segmentEventsMax - 1)
    // The range can vanish under us only while the partition reloads its log: transient, the next seal retries.
    const events = yield* Effect.try({
      try: () => target.readRange(from, to),
      catch: (error) =>
        new LogUnavailable({ partition, message: `range [${from}, ${to}] not readable now: ${String((error as Error).message)}` })
    })
    const compacted = eraseExpired(events, rules, nowMs)
    const { entry, sealed } = yield* writeSegment(store, partition, compacted.events, from, to, options.rowGroupRowsMax)
    manifest = Manifest.withSegment(manifest, compacted.erasedRows > 0 ? { ...entry, erasedRows: compacted.erasedRows } : entry)
    // Durable in the manifest before anything depends on it; each segment on its own, so a long seal makes progress.
    yield* store.writeManifest(partition, manifest)
    written.push(sealed)
    from = to + 1
  }
  const sealedThrough = Manifest.sealedThrough(manifest)
  if (sealedThrough > 0) yield* target.truncateLog(sealedThrough + 1)
  return { partition, sealedThrough, segments: written }
})
