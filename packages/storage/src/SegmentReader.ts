/**
 * Verified reads of segments. It owns the rule that nothing of a segment is served before its SHA-256 matches the
 * manifest and its rows match the manifest's range (one row per sequence, this partition only), and the ways
 * segments are read:
 *  - `replay`: every sealed event of a partition in sequence order, as heads (no payload: the payload columns are
 *    not even decompressed), bodies only for the rows the caller asks for, for a partition's load (cold boot);
 *  - `readSeqs`: the sealed events a partition's read needs the bodies of (its hot index keeps only heads of sealed
 *    events), reading only the segments whose range holds them and, in those, only the row groups whose statistics
 *    (tenant, stream, seq ranges) can hold them;
 *  - `readStream`: one stream's events, pruned the same way (tools, tests).
 * Both pruned reads go through a bounded cache of verified segment files (`segmentCacheBytesMax`, least recently
 * used out first), so a hit costs neither I/O nor a checksum; `readSeqs` also keeps the row groups it decoded
 * (`segmentRowGroupCacheBytesMax`, least recently used out first), so a repeat skips the decompression too. A
 * scan's pages (sequences in time order, spread over most row groups of a segment whose rows are in stream order)
 * are served from read-ahead windows: the events of the next `segmentReadAheadEventsMax` sequences, decoded in one
 * pass over the segment, `segmentReadAheadWindowsMax` of them kept.
 *
 * Damage is always a typed `CorruptData` whose `location` names the segment (and the row, when one row is at fault).
 * A pruned read fails only when a segment it needs is damaged: reads of other segments are unaffected.
 */
import { Clock, Effect } from "effect"
import { createHash } from "node:crypto"
import { Errors, type Event } from "@chronos/domain"
import type { EventHead } from "@chronos/engine/ColdStore"
import * as Manifest from "./Manifest.ts"
import * as SegmentFormat from "./SegmentFormat.ts"
import type { SegmentStoreError, SegmentStoreShape } from "./SegmentStore.ts"

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

export interface ReadStreamOptions {
  readonly fromVersion?: number | undefined
  readonly toVersion?: number | undefined
}

export interface ReadSeqsRequest {
  /** Ascending, without duplicates; each must be sealed. */
  readonly seqs: ReadonlyArray<number>
  readonly tenant: string
  readonly stream?: string | undefined
}

/** What a pruned read touched: how much the statistics saved. */
export interface ReadStats {
  readonly segments: number
  readonly rowGroups: number
  readonly rowGroupsRead: number
  readonly rowsRead: number
  readonly cacheHits: number
  /** Row groups served decoded from the row-group cache (`readSeqs` only). */
  readonly rowGroupHits: number
  /** Events served from a scan's read-ahead window (`readSeqs` only). */
  readonly windowHits: number
}

export interface ReplayStats {
  readonly segments: number
  readonly events: number
  readonly bytes: number
  readonly lastSeq: number
}

export interface SegmentReader {
  /** The segment's bytes, verified against the manifest entry (cached for later `readStream`s when `cache`). */
  readonly load: (
    partition: number,
    entry: Manifest.SegmentEntry,
    cache?: boolean
  ) => Effect.Effect<Uint8Array, Errors.CorruptData | SegmentStoreError>
  /**
   * Calls `onEvent` for every sealed event of `partition` in sequence order: with its body when `keepBody(type)`,
   * otherwise as a head. Each segment is verified before any of its rows is served.
   */
  readonly replay: (
    partition: number,
    keepBody: (type: string) => boolean,
    onEvent: (event: EventHead | Event.StoredEvent) => void
  ) => Effect.Effect<ReplayStats, Errors.CorruptData | SegmentStoreError>
  /**
   * The sealed events `request.seqs` of `partition`, in that order; `CorruptData` naming the segment when a segment
   * needed is damaged or does not hold an event asked for.
   */
  readonly readSeqs: (
    partition: number,
    request: ReadSeqsRequest
  ) => Effect.Effect<
    { readonly events: ReadonlyArray<Event.StoredEvent>; readonly stats: ReadStats },
    Errors.CorruptData | SegmentStoreError
  >
  readonly readStream: (
    partition: number,
    tenant: string,
    stream: string,
    options?: ReadStreamOptions
  ) => Effect.Effect<
    { readonly events: ReadonlyArray<Event.StoredEvent>; readonly stats: ReadStats },
    Errors.CorruptData | SegmentStoreError
  >
  /**
   * The partition's manifest as this reader last read it (by `replay` at a partition's load, or by `readSeqs`), read
   * now when it has none. The engine's cold reads use it, so a read costs no manifest request. A remembered manifest
   * can only lack segments sealed since (segments are only added while a node runs; compaction is offline), so
   * `readSeqs` reads it again when asked for a sequence above it.
   */
  readonly manifest: (partition: number) => Effect.Effect<Manifest.Manifest, Errors.CorruptData | SegmentStoreError>
  /** Forgets cached files, row groups and manifests (after a compaction replaced segments; benchmarks). */
  readonly clearCache: () => void
  /** Totals of every pruned read since the reader was made (`readSeqs` and `readStream`), and the cached bytes. */
  readonly totals: () => ReadStats & {
    readonly reads: number
    readonly cachedBytes: number
    readonly rowGroupCachedBytes: number
  }
}

interface Cached {
  readonly bytes: Uint8Array
  readonly rowGroups: ReadonlyArray<SegmentFormat.RowGroupStats>
}

const corrupt = (location: string, message: string) => new Errors.CorruptData({ location, message })

/**
 * Checks decoded rows against their manifest entry and returns, for each sequence of the range in order, the row
 * that holds it. Throws the `CorruptData` to report.
 */
export const rowsBySeq = (
  location: string,
  partition: number,
  entry: Manifest.SegmentEntry,
  c: Pick<SegmentFormat.HeadColumns, "rows" | "seq" | "partition">
): Int32Array => {
  if (c.rows !== entry.rows) throw corrupt(location, `${c.rows} rows, the manifest says ${entry.rows}`)
  const order = new Int32Array(entry.toSeq - entry.fromSeq + 1).fill(-1)
  for (let i = 0; i < c.rows; i++) {
    const s = c.seq[i]!
    if (c.partition[i] !== partition) {
      throw corrupt(`${location} row ${i}`, `row of partition ${c.partition[i]} in a segment of partition ${partition}`)
    }
    if (!(s >= entry.fromSeq && s <= entry.toSeq)) {
      throw corrupt(`${location} row ${i}`, `seq ${s} outside the segment's range [${entry.fromSeq}, ${entry.toSeq}]`)
    }
    if (order[s - entry.fromSeq] !== -1) throw corrupt(`${location} row ${i}`, `seq ${s} appears twice`)
    order[s - entry.fromSeq] = i
  }
  // rows === range length and no duplicate: every sequence is present.
  return order
}

export interface ReaderOptions {
  /** `ChronosConfig.segmentCacheBytesMax`: verified files kept. */
  readonly cacheBytesMax: number
  /** `ChronosConfig.segmentRowGroupCacheBytesMax`: decoded row groups kept (0, the default: none). */
  readonly rowGroupCacheBytesMax?: number | undefined
  /** `ChronosConfig.segmentReadAheadEventsMax`: events of one scan's read-ahead window (0, the default: none). */
  readonly readAheadEventsMax?: number | undefined
  /** `ChronosConfig.segmentReadAheadWindowsMax`: read-ahead windows kept (the oldest out first). */
  readonly readAheadWindowsMax?: number | undefined
}

/**
 * A read needing at least this many row groups of a segment is a scan (a one-stream read needs one or two): it
 * decodes a read-ahead window rather than only the rows asked for.
 */
const readAheadRowGroupsMin = 3

interface Window {
  readonly fileKey: string
  readonly lo: number
  readonly hi: number
  /** Every event of the segment with a sequence in `[lo, hi]`. */
  readonly events: ReadonlyMap<number, Event.StoredEvent>
}

export const make = (store: SegmentStoreShape, options: ReaderOptions): SegmentReader => {
  const rowGroupCacheBytesMax = options.rowGroupCacheBytesMax ?? 0
  const readAheadEventsMax = options.readAheadEventsMax ?? 0
  const readAheadWindowsMax = options.readAheadWindowsMax ?? 0
  // Oldest first. Few (one per partition being scanned, typically), so a linear search is the right index.
  let windows: Array<Window> = []
  const windowOf = (fileKey: string, sq: number): Window | undefined => {
    for (let w = windows.length - 1; w >= 0; w--) {
      const window = windows[w]!
      if (window.fileKey === fileKey && sq >= window.lo && sq <= window.hi) return window
    }
    return undefined
  }
  const rememberWindow = (window: Window) => {
    if (readAheadWindowsMax === 0) return
    windows.push(window)
    if (windows.length > readAheadWindowsMax) windows = windows.slice(windows.length - readAheadWindowsMax)
  }
  // Insertion-ordered like `cache`; keyed by file, checksum and row group.
  const rowGroupCache = new Map<string, SegmentFormat.DecodedRowGroup>()
  let rowGroupCachedBytes = 0
  /** Row group `index` of a verified file, decoded, from the cache or decoded now (and kept). Throws `FormatError`. */
  const decodedRowGroup = (
    fileKey: string,
    bytes: Uint8Array,
    index: number,
    /** Keep it once decoded (a read-ahead pass does not: it would flush the cache for groups read once). */
    keep = true
  ): { group: SegmentFormat.DecodedRowGroup; hit: boolean } => {
    const key = `${fileKey}/${index}`
    const cached = rowGroupCache.get(key)
    if (cached !== undefined) {
      rowGroupCache.delete(key)
      rowGroupCache.set(key, cached)
      return { group: cached, hit: true }
    }
    const group = SegmentFormat.decodeRowGroup(bytes, index)
    if (keep && group.byteLength <= rowGroupCacheBytesMax) {
      rowGroupCache.set(key, group)
      rowGroupCachedBytes += group.byteLength
      for (const [k, v] of rowGroupCache) {
        if (rowGroupCachedBytes <= rowGroupCacheBytesMax) break
        rowGroupCache.delete(k)
        rowGroupCachedBytes -= v.byteLength
      }
    }
    return { group, hit: false }
  }
  // Insertion-ordered: the first key is the least recently used (a hit re-inserts).
  const cache = new Map<string, Cached>()
  let cachedBytes = 0
  const remember = (key: string, value: Cached) => {
    if (value.bytes.length > options.cacheBytesMax) return
    cache.set(key, value)
    cachedBytes += value.bytes.length
    for (const [k, v] of cache) {
      if (cachedBytes <= options.cacheBytesMax) break
      cache.delete(k)
      cachedBytes -= v.bytes.length
    }
  }

  const fetchVerified = (partition: number, entry: Manifest.SegmentEntry) =>
    Effect.flatMap(store.get(partition, entry.file), (bytes) => {
      const location = store.location(partition, entry.file)
      if (bytes === undefined) return Effect.fail(corrupt(location, "segment listed in the manifest is missing"))
      if (bytes.length !== entry.bytes) {
        return Effect.fail(corrupt(location, `${bytes.length} bytes, the manifest says ${entry.bytes}`))
      }
      const digest = sha256(bytes)
      return digest === entry.sha256
        ? Effect.succeed(bytes)
        : Effect.fail(corrupt(location, `sha256 ${digest} does not match the manifest's ${entry.sha256}`))
    })

  const cachedSegment = (partition: number, entry: Manifest.SegmentEntry) =>
    Effect.suspend((): Effect.Effect<{ value: Cached; hit: boolean }, Errors.CorruptData | SegmentStoreError> => {
      const key = `${partition}/${entry.file}/${entry.sha256}`
      const hit = cache.get(key)
      if (hit !== undefined) {
        cache.delete(key)
        cache.set(key, hit)
        return Effect.succeed({ value: hit, hit: true })
      }
      return Effect.flatMap(fetchVerified(partition, entry), (bytes) => {
        try {
          const value = { bytes, rowGroups: SegmentFormat.inspect(bytes).rowGroups }
          remember(key, value)
          return Effect.succeed({ value, hit: false })
        } catch (error) {
          return Effect.fail(corrupt(store.location(partition, entry.file), String((error as Error).message)))
        }
      })
    })

  const load: SegmentReader["load"] = (partition, entry, useCache = false) =>
    useCache ? Effect.map(cachedSegment(partition, entry), ({ value }) => value.bytes) : fetchVerified(partition, entry)

  const manifestOf = (partition: number) =>
    Effect.flatMap(store.readManifest(partition), (m) => {
      if (m === undefined) return Effect.succeed(Manifest.empty(partition))
      const problems = Manifest.check(m)
      if (m.partition !== partition) problems.push(`manifest of partition ${m.partition}`)
      return problems.length === 0
        ? Effect.succeed(m)
        : Effect.fail(corrupt(store.location(partition, "MANIFEST.json"), problems.join("; ")))
    })

  /** Manifests as last read, by partition (see `SegmentReader.manifest`). */
  const manifests = new Map<number, Manifest.Manifest>()
  const remembered = (partition: number) =>
    Effect.tap(manifestOf(partition), (m) => Effect.sync(() => manifests.set(partition, m)))
  const lastManifest: SegmentReader["manifest"] = (partition) =>
    Effect.suspend(() => {
      const known = manifests.get(partition)
      return known === undefined ? remembered(partition) : Effect.succeed(known)
    })

  const replay: SegmentReader["replay"] = (partition, keepBody, onEvent) =>
    Effect.gen(function*() {
      // A load reads the manifest afresh: another runner may have sealed while the partition lived there.
      const manifest = yield* remembered(partition)
      let events = 0
      let bytesRead = 0
      for (const entry of manifest.segments) {
        // Not cached: a replay reads each segment once, and the partition keeps only heads afterwards.
        const bytes = yield* fetchVerified(partition, entry)
        bytesRead += bytes.length
        const location = store.location(partition, entry.file)
        const sealed = yield* Effect.try({
          try: () => segmentHeads(location, partition, entry, bytes, keepBody),
          catch: (error) =>
            error instanceof Errors.CorruptData ? error : corrupt(location, String((error as Error).message))
        })
        for (const event of sealed) onEvent(event)
        events += entry.rows
      }
      return { segments: manifest.segments.length, events, bytes: bytesRead, lastSeq: Manifest.sealedThrough(manifest) }
    })

  const totals = { reads: 0, segments: 0, rowGroups: 0, rowGroupsRead: 0, rowsRead: 0, cacheHits: 0, rowGroupHits: 0, windowHits: 0 }
  const count = (stats: ReadStats) => {
    totals.reads++
    totals.segments += stats.segments
    totals.rowGroups += stats.rowGroups
    totals.rowGroupsRead += stats.rowGroupsRead
    totals.rowsRead += stats.rowsRead
    totals.cacheHits += stats.cacheHits
    totals.rowGroupHits += stats.rowGroupHits
    totals.windowHits += stats.windowHits
  }

  const readSeqs: SegmentReader["readSeqs"] = (partition, request) =>
    Effect.gen(function*() {
      const { seqs, tenant, stream } = request
      const out: Array<Event.StoredEvent> = new Array(seqs.length)
      let segments = 0
      let rowGroups = 0
      let rowGroupsRead = 0
      let rowsRead = 0
      let cacheHits = 0
      let rowGroupHits = 0
      let windowHits = 0
      if (seqs.length === 0) {
        return { events: out, stats: { segments, rowGroups, rowGroupsRead, rowsRead, cacheHits, rowGroupHits, windowHits } }
      }
      const known = yield* lastManifest(partition)
      const manifest = seqs[seqs.length - 1]! <= Manifest.sealedThrough(known) ? known : yield* remembered(partition)
      let filled = 0
      /** Places the event of sequence `sq` of the request, checked against what was asked. */
      const place = (location: string, sq: number, e: Event.StoredEvent | undefined): Errors.CorruptData | undefined => {
        if (e === undefined || e.tenant !== tenant || (stream !== undefined && e.stream !== stream)) {
          return corrupt(location, `seq ${sq} of tenant ${tenant}${stream === undefined ? "" : ` stream ${stream}`} is not in the segment`)
        }
        const k = SegmentFormat.firstAtOrAbove(seqs, sq)
        if (seqs[k] !== sq || out[k] !== undefined) return corrupt(location, `seq ${sq} appears twice`)
        out[k] = e
        filled++
        return undefined
      }
      for (const entry of manifest.segments) {
        // The sequences asked for that this segment holds: seqs[from, to).
        const from = SegmentFormat.firstAtOrAbove(seqs, entry.fromSeq)
        const to = SegmentFormat.firstAtOrAbove(seqs, entry.toSeq + 1)
        if (from === to) continue
        segments++
        const location = store.location(partition, entry.file)
        const fileKey = `${partition}/${entry.file}/${entry.sha256}`
        // What an earlier scan's read-ahead window already holds costs nothing more.
        const wanted: Array<number> = []
        for (let k = from; k < to; k++) {
          const sq = seqs[k]!
          const window = windowOf(fileKey, sq)
          if (window === undefined) wanted.push(sq)
          else {
            windowHits++
            const error = place(location, sq, window.events.get(sq))
            if (error !== undefined) return yield* Effect.fail(error)
          }
        }
        if (wanted.length === 0) continue
        const { hit, value } = yield* cachedSegment(partition, entry)
        if (hit) cacheHits++
        rowGroups += value.rowGroups.length
        const candidates = SegmentFormat.pruneRowGroups(value.rowGroups, tenant, stream, wanted)
        const decodeChecked = <A>(f: () => A) =>
          Effect.try({
            try: f,
            catch: (error) =>
              error instanceof Errors.CorruptData ? error : corrupt(location, String((error as Error).message))
          })
        if (readAheadEventsMax > 0 && candidates.length >= readAheadRowGroupsMin) {
          // A scan: its sequences are spread over most row groups (rows are in stream order, sequences in time order),
          // so each page would decompress most of the segment again. Decode a window of the following sequences
          // once instead; the next pages of the scan are served from it.
          let i = 0
          while (i < wanted.length) {
            const lo = wanted[i]!
            const hi = Math.min(entry.toSeq, lo + readAheadEventsMax - 1)
            const window = yield* decodeChecked(() => {
              const events = new Map<number, Event.StoredEvent>()
              for (const rg of value.rowGroups) {
                if (rg.seqMin !== undefined && rg.seqMax !== undefined && (rg.seqMax < lo || rg.seqMin > hi)) continue
                rowGroupsRead++
                rowsRead += rg.rows
                const { group, hit: rgHit } = decodedRowGroup(fileKey, value.bytes, rg.index, false)
                if (rgHit) rowGroupHits++
                const c = SegmentFormat.selectRows(group, () => true, (sq) => sq >= lo && sq <= hi)
                for (let r = 0; r < c.rows; r++) {
                  if (c.partition[r] !== partition) {
                    throw corrupt(`${location} row group ${rg.index}`, `row of partition ${c.partition[r]} in a segment of partition ${partition}`)
                  }
                  events.set(c.seq[r]!, SegmentFormat.eventAt(c, r))
                }
              }
              return { fileKey, lo, hi, events }
            })
            rememberWindow(window)
            for (; i < wanted.length && wanted[i]! <= hi; i++) {
              const error = place(location, wanted[i]!, window.events.get(wanted[i]!))
              if (error !== undefined) return yield* Effect.fail(error)
            }
          }
          continue
        }
        rowGroupsRead += candidates.length
        for (const rg of candidates) rowsRead += rg.rows
        const found = yield* decodeChecked(() => {
          const keep = new Set(wanted)
          const events: Array<Event.StoredEvent> = []
          for (const rg of candidates) {
            const { group, hit: rgHit } = decodedRowGroup(fileKey, value.bytes, rg.index)
            if (rgHit) rowGroupHits++
            const c = SegmentFormat.selectRows(
              group,
              (t, st) => t === tenant && (stream === undefined || st === stream),
              (sq) => keep.has(sq)
            )
            for (let r = 0; r < c.rows; r++) {
              if (c.partition[r] !== partition) {
                throw corrupt(`${location} row group ${rg.index}`, `row of partition ${c.partition[r]} in a segment of partition ${partition}`)
              }
              events.push(SegmentFormat.eventAt(c, r))
            }
          }
          return events
        })
        const bySeq = new Map(found.map((e) => [e.seq, e]))
        if (bySeq.size !== found.length) return yield* Effect.fail(corrupt(location, "a sequence appears twice"))
        for (const sq of wanted) {
          const error = place(location, sq, bySeq.get(sq))
          if (error !== undefined) return yield* Effect.fail(error)
        }
      }
      if (filled !== seqs.length) {
        const missing = seqs.find((_, k) => out[k] === undefined)
        return yield* Effect.fail(
          corrupt(store.location(partition, "MANIFEST.json"), `seq ${missing} is in no segment of the manifest`)
        )
      }
      const stats = { segments, rowGroups, rowGroupsRead, rowsRead, cacheHits, rowGroupHits, windowHits }
      count(stats)
      return { events: out, stats }
    })

  const readStream: SegmentReader["readStream"] = (partition, tenant, stream, readOptions = {}) =>
    Effect.gen(function*() {
      const manifest = yield* manifestOf(partition)
      const out: Array<Event.StoredEvent> = []
      let rowGroups = 0
      let rowGroupsRead = 0
      let rowsRead = 0
      let cacheHits = 0
      for (const entry of manifest.segments) {
        const { hit, value } = yield* cachedSegment(partition, entry)
        if (hit) cacheHits++
        rowGroups += value.rowGroups.length
        const candidates = SegmentFormat.pruneRowGroups(value.rowGroups, tenant, stream)
        if (candidates.length === 0) continue
        rowGroupsRead += candidates.length
        for (const rg of candidates) rowsRead += rg.rows
        const location = store.location(partition, entry.file)
        const found = yield* Effect.try({
          try: () => {
            const c = SegmentFormat.decodeStream(value.bytes, candidates.map((rg) => rg.index), tenant, stream)
            const events: Array<Event.StoredEvent> = []
            for (let i = 0; i < c.rows; i++) {
              if (c.tenant[i] !== tenant || c.stream[i] !== stream) continue
              const v = c.streamVersion[i]!
              if (readOptions.fromVersion !== undefined && v < readOptions.fromVersion) continue
              if (readOptions.toVersion !== undefined && v > readOptions.toVersion) continue
              const s = c.seq[i]!
              if (c.partition[i] !== partition || s < entry.fromSeq || s > entry.toSeq) {
                throw corrupt(`${location} row group rows`, `row of partition ${c.partition[i]} seq ${s} outside the segment`)
              }
              events.push(SegmentFormat.eventAt(c, i))
            }
            return events
          },
          catch: (error) =>
            error instanceof Errors.CorruptData ? error : corrupt(location, String((error as Error).message))
        })
        for (const e of found) out.push(e)
      }
      out.sort((a, b) => a.streamVersion - b.streamVersion)
      const stats = {
        segments: manifest.segments.length,
        rowGroups,
        rowGroupsRead,
        rowsRead,
        cacheHits,
        rowGroupHits: 0,
        windowHits: 0
      }
      count(stats)
      return { events: out, stats }
    })

  return {
    load,
    replay,
    readSeqs,
    readStream,
    manifest: lastManifest,
    clearCache: () => {
      cache.clear()
      cachedBytes = 0
      rowGroupCache.clear()
      rowGroupCachedBytes = 0
      windows = []
      manifests.clear()
    },
    totals: () => ({ ...totals, cachedBytes, rowGroupCachedBytes })
  }
}

/**
 * The segment's rows in sequence order, as heads, or with their bodies when `keepBody(type)`. Checks the rows against
 * the manifest entry and that timestamps never decrease along the sequence. Throws `CorruptData` on damage.
 */
export const segmentHeads = (
  location: string,
  partition: number,
  entry: Manifest.SegmentEntry,
  bytes: Uint8Array,
  keepBody: (type: string) => boolean
): Array<EventHead | Event.StoredEvent> => {
  const { heads: c, bodies } = SegmentFormat.decodeHeads(bytes)
  const order = rowsBySeq(location, partition, entry, c)
  const out: Array<EventHead | Event.StoredEvent> = new Array(order.length)
  const withBody: Array<number> = []
  let last = -Infinity
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!
    const timestamp = c.timestamp[i]!
    if (timestamp < last) throw corrupt(`${location} row ${i}`, `timestamp goes backwards at seq ${entry.fromSeq + k}`)
    last = timestamp
    out[k] = {
      eventId: c.eventId[i]!,
      tenant: c.tenant[i]!,
      stream: c.stream[i]!,
      type: c.type[i]!,
      timestamp,
      streamVersion: c.streamVersion[i]!,
      partition,
      seq: entry.fromSeq + k
    }
    if (keepBody(c.type[i]!)) withBody.push(k)
  }
  if (withBody.length > 0) {
    const rows = withBody.map((k) => order[k]!)
    const b = bodies(rows)
    for (let j = 0; j < withBody.length; j++) {
      const k = withBody[j]!
      let body: ReturnType<typeof SegmentFormat.parseBody>
      try {
        body = SegmentFormat.parseBody(b.data[j]!, b.metadata[j]!, rows[j]!)
      } catch (error) {
        throw corrupt(`${location} row ${rows[j]}`, String((error as Error).message))
      }
      out[k] = { ...out[k]!, data: body.data, metadata: body.metadata }
    }
  }
  return out
}

/** Milliseconds since `startMs` on the Clock (for the startup report). */
export const elapsedMs = (startMs: number) => Effect.map(Clock.currentTimeMillis, (now) => now - startMs)
