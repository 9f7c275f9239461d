/**
 * Verified reads of segments. It owns the rule that nothing of a segment is served before its SHA-256 matches the
 * manifest and its rows match the manifest's range (one row per sequence, this partition only), and the two ways
 * segments are read:
 *  - `replay`: every sealed event of a partition in sequence order, as commits, for a partition's load (cold boot);
 *  - `readStream`: one stream's events, reading only the row groups whose statistics can hold the stream (pruning),
 *    through a bounded cache of verified segment files (`segmentCacheBytesMax`). The engine does not need this yet
 *    (its hot index keeps every event after load); it is the read path of a bounded-memory engine and of tools.
 *
 * Damage is always a typed `CorruptData` whose `location` names the segment (and the row, when one row is at fault).
 */
import { Clock, Effect } from "effect"
import { createHash } from "node:crypto"
import { Errors, type Event } from "@chronos/domain"
import type { Commit, CommitEvent } from "@chronos/engine/Commit"
import * as Manifest from "./Manifest.ts"
import * as SegmentFormat from "./SegmentFormat.ts"
import type { SegmentStoreError, SegmentStoreShape } from "./SegmentStore.ts"

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

export interface ReadStreamOptions {
  readonly fromVersion?: number | undefined
  readonly toVersion?: number | undefined
}

/** What a pruned read touched: how much the statistics saved. */
export interface ReadStats {
  readonly segments: number
  readonly rowGroups: number
  readonly rowGroupsRead: number
  readonly rowsRead: number
  readonly cacheHits: number
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
  readonly replay: (
    partition: number,
    onCommit: (commit: Commit) => void
  ) => Effect.Effect<ReplayStats, Errors.CorruptData | SegmentStoreError>
  readonly readStream: (
    partition: number,
    tenant: string,
    stream: string,
    options?: ReadStreamOptions
  ) => Effect.Effect<
    { readonly events: ReadonlyArray<Event.StoredEvent>; readonly stats: ReadStats },
    Errors.CorruptData | SegmentStoreError
  >
  /** Forgets cached files (after a compaction replaced segments). */
  readonly clearCache: () => void
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
  c: SegmentFormat.SegmentColumns
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

export const make = (store: SegmentStoreShape, options: { readonly cacheBytesMax: number }): SegmentReader => {
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

  const replay: SegmentReader["replay"] = (partition, onCommit) =>
    Effect.gen(function*() {
      const manifest = yield* manifestOf(partition)
      let events = 0
      let bytesRead = 0
      for (const entry of manifest.segments) {
        // Not cached: a replay reads each segment once, and the hot index keeps the events afterwards.
        const bytes = yield* fetchVerified(partition, entry)
        bytesRead += bytes.length
        const location = store.location(partition, entry.file)
        const commits = yield* Effect.try({
          try: () => segmentCommits(location, partition, entry, bytes),
          catch: (error) =>
            error instanceof Errors.CorruptData ? error : corrupt(location, String((error as Error).message))
        })
        for (const commit of commits) onCommit(commit)
        events += entry.rows
      }
      return { segments: manifest.segments.length, events, bytes: bytesRead, lastSeq: Manifest.sealedThrough(manifest) }
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
      return {
        events: out,
        stats: { segments: manifest.segments.length, rowGroups, rowGroupsRead, rowsRead, cacheHits }
      }
    })

  return {
    load,
    replay,
    readStream,
    clearCache: () => {
      cache.clear()
      cachedBytes = 0
    }
  }
}

/**
 * The segment's rows as commits in sequence order: one commit per run of consecutive rows with the same timestamp
 * (the partition applies a commit's timestamp to all its events). Throws `CorruptData` on damage.
 */
export const segmentCommits = (
  location: string,
  partition: number,
  entry: Manifest.SegmentEntry,
  bytes: Uint8Array
): Array<Commit> => {
  const c = SegmentFormat.decode(bytes)
  const order = rowsBySeq(location, partition, entry, c)
  const commits: Array<Commit> = []
  let current: { firstSeq: number; timestamp: number; events: Array<CommitEvent> } | undefined
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!
    const timestamp = c.timestamp[i]!
    if (current !== undefined && timestamp < current.timestamp) {
      throw corrupt(`${location} row ${i}`, `timestamp goes backwards at seq ${entry.fromSeq + k}`)
    }
    let event: Event.StoredEvent
    try {
      event = SegmentFormat.eventAt(c, i)
    } catch (error) {
      throw corrupt(`${location} row ${i}`, String((error as Error).message))
    }
    if (current === undefined || current.timestamp !== timestamp) {
      if (current !== undefined) commits.push({ partition, ...current })
      current = { firstSeq: entry.fromSeq + k, timestamp, events: [] }
    }
    current.events.push({
      eventId: event.eventId,
      tenant: event.tenant,
      stream: event.stream,
      type: event.type,
      streamVersion: event.streamVersion,
      data: event.data,
      metadata: event.metadata
    })
  }
  if (current !== undefined) commits.push({ partition, ...current })
  return commits
}

/** Milliseconds since `startMs` on the Clock (for the startup report). */
export const elapsedMs = (startMs: number) => Effect.map(Clock.currentTimeMillis, (now) => now - startMs)
