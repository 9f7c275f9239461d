/**
 * One partition: its single writer and its hot in-memory index. It owns, for its slice of the event space:
 *  - the write path: expected-version and event-id checks, assignment of gapless stream versions and partition
 *    sequences, group commit (many appends → one log record), pipelined commits, and the watermark;
 *  - the hot index: events by sequence, by stream (version → seq), by tenant and by (tenant, type), and
 *    permanent event-id deduplication;
 *  - reads bounded by the watermark, time travel (`asOf`) and state reconstruction with snapshots.
 *
 * Memory is bounded by the hot tail, not by the store: once a range is sealed durably in the cold tier (see
 * `ColdStore`: the cold tier's `truncateLog` says so), the partition drops the bodies (data, metadata) of its events
 * and keeps only their `EventHead`s — what every index, `asOf` search and idempotent-retry answer needs, with
 * tenant, stream and type strings shared per stream and type. A cold boot loads only heads for the sealed range.
 * System events (`$`-types: stream metadata, tombstones, erasures; few and small) keep their bodies: retention rules
 * are read from them. A read that needs bodies of sealed events (`readStream`, `scan`/`follow`, `reconstruct`,
 * `asOf` reads) fetches them from the cold tier in one request per read (per chunk, for long reconstructions), so
 * answers are the same before and after a seal — except that an event erased by compaction is served as its
 * `$erased` row. A damaged segment fails only the reads that need it: they die with its `CorruptData` (the read
 * signatures have no error channel; the HTTP edge answers a typed 502), while the hot tail and other segments serve.
 *
 * Invariants (checked; a violation is a defect that stops the partition, never a silent repair):
 *  - `watermark <= seq`; the watermark never moves backwards; commits are acknowledged in order;
 *  - every event of the partition has `seq` = its index + 1 (gapless from 1);
 *  - every stream's versions are gapless from 0; timestamps never decrease along the sequence.
 *
 * A fork's partition (`options.prefix`) continues its parent's partition p at `prefix.seq` (the fork's base):
 * its own sequences start at `prefix.seq + 1` and a stream's versions at the parent's version at the base + 1, so
 * positions, versions, `asOf` vectors and event-id idempotency carry across the boundary. Its log (in the fork's
 * namespace) stores local sequences 1..n, translated by `prefix.seq` on the way in and out, so every driver's
 * invariant "the first sequence is 1" holds. Without a prefix every offset is 0 and no lookup reaches a parent.
 *
 * State changes are applied when an append is accepted (so later appends in the pipeline see them) but readers only
 * see events at or below the watermark. If the log rejects a commit, every unacknowledged append fails with a
 * retryable `Unavailable` and the partition rebuilds its state from the log, discarding what was never durable.
 *
 * The write path avoids per-event Effect overhead: an append is one `Effect.callback` that registers with the
 * writer synchronously; the writer fiber cuts commits and resumes callers when the log acknowledges.
 */
import { Cause, Clock, Duration, Effect, Exit, Option, Random, Schedule, Scope } from "effect"
import type { ChronosConfigShape } from "@chronos/config"
import { AsOf, Errors, type Event, ExpectedVersion, Reducer } from "@chronos/domain"
import { ColdStore, type EventHead, type FetchRequest, hasBody, type SealTarget } from "./ColdStore.ts"
import { type Commit, encodeRow, encodeRowFrom, lastSeq } from "./Commit.ts"
import { EventLog, type LogError, LogUnavailable, type PartitionLog } from "./EventLog.ts"
import { CorruptLogError } from "./internal/fileLog.ts"

type StoredEvent = Event.StoredEvent
/** One event of the hot index: with its body, or only its head once its body was sealed and dropped. */
type Slot = EventHead | StoredEvent

/** Types of system events (`$metadata`, `$deleted`, `$erased`): their bodies stay in memory after a seal. */
const isSystemType = (type: string): boolean => type.charCodeAt(0) === 36 // "$"

const allBodies = (slots: ReadonlyArray<Slot>): slots is ReadonlyArray<StoredEvent> => {
  for (let i = 0; i < slots.length; i++) if (!hasBody(slots[i]!)) return false
  return true
}

export type PartitionLimits = Pick<
  ChronosConfigShape,
  | "commitEventsMax"
  | "commitBytesMax"
  | "commitLingerMs"
  | "commitsInFlightMax"
  | "pendingAppendsMax"
  | "readEventsMax"
  | "snapshotEveryEvents"
  | "reloadRetriesMax"
  | "reloadBackoffMsMax"
  | "appendTimeoutMs"
>

/** An event as accepted by the gateway: validated, with its serialized size measured. */
export interface AcceptedEvent {
  readonly eventId: string | undefined
  readonly type: string
  readonly data: unknown
  readonly metadata: Readonly<Record<string, unknown>>
  /** Bytes of `data` + `metadata` as JSON (measured by the gateway, used to size commits). */
  readonly bytes: number
  /** `data` and `metadata` as JSON, when the gateway already produced it (reused for the commit body). */
  readonly dataJson?: string | undefined
  readonly metadataJson?: string | undefined
}

export interface AppendInput {
  readonly tenant: string
  readonly stream: string
  readonly expectedVersion: ExpectedVersion.ExpectedVersion
  readonly events: ReadonlyArray<AcceptedEvent>
}

export interface AppendOutput {
  readonly firstVersion: number
  readonly lastVersion: number
  readonly positions: ReadonlyArray<Event.Position>
}

export type AppendFailure = Errors.WrongExpectedVersion | Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable

export interface ReadStreamOptions {
  /** First version to return (forward) or the highest version to return (backward). */
  readonly fromVersion?: number | undefined
  readonly limit: number
  readonly direction: "forward" | "backward"
  readonly asOf?: AsOf.AsOf | undefined
}

export interface ScanOptions {
  /** Only these event types (none: every type). */
  readonly types?: ReadonlyArray<string> | undefined
  readonly since?: number | undefined
  readonly until?: number | undefined
  readonly asOf?: AsOf.AsOf | undefined
  /** Return events strictly after this (timestamp, partition, seq) cursor. */
  readonly after?: Cursor | undefined
  /** Return events at or after this sequence. */
  readonly fromSeq?: number | undefined
  /** Only this stream. */
  readonly stream?: string | undefined
  /** Only streams whose id starts with this. */
  readonly streamPrefix?: string | undefined
  readonly limit: number
}

/** A total order over a tenant's events across partitions: (timestamp, partition, seq). */
export interface Cursor {
  readonly timestamp: number
  readonly partition: number
  readonly seq: number
}

export interface PartitionStatus {
  readonly partition: number
  readonly seq: number
  readonly watermark: number
  readonly events: number
  readonly streams: number
}

interface StreamEntry {
  readonly tenant: string
  readonly stream: string
  /** The stream's first version here: 0, or in a fork's partition the parent's version at the base + 1. */
  readonly firstVersion: number
  /** `seqs[v - firstVersion]` is the partition sequence of stream version `v`. */
  readonly seqs: Array<number>
  /**
   * Snapshots per reducer name: `snapshots.get(name)[k]` is the state after the first `(k + 1) * every` events of
   * the stream held here (from `reducer.initial`).
   */
  snapshots: Map<string, Array<unknown>> | undefined
}

/** An append accepted into the pipeline, waiting for the commit that carries it to be acknowledged. */
interface PendingAppend {
  readonly events: ReadonlyArray<StoredEvent>
  /** The events as commit body rows (`Commit.encodeRow`). */
  readonly rows: ReadonlyArray<string>
  readonly bytes: number
  readonly output: AppendOutput
  readonly resume: (exit: Exit.Exit<AppendOutput, AppendFailure>) => void
}

interface InFlightCommit {
  readonly commit: Commit
  readonly appends: ReadonlyArray<PendingAppend>
  /** The log handle generation it was written to; completions from a handle replaced by a reload are ignored. */
  readonly generation: number
  readonly startedAtMs: number
  done: boolean
}

/** A read or duplicate append waiting for the watermark to reach `seq`. */
interface WatermarkWaiter {
  readonly seq: number
  readonly resume: () => void
  readonly fail: (error: Errors.Unavailable) => void
}

/** Two-level maps (tenant, then name): no key is built by string concatenation on the hot path. */
type ByTenant<A> = Map<string, Map<string, A>>

const lookup = <A>(map: ByTenant<A>, tenant: string, name: string): A | undefined => map.get(tenant)?.get(name)

/** Index of the first element of the ascending `seqs` whose event satisfies `atOrAfter`, by binary search. */
const lowerBound = (seqs: ReadonlyArray<number>, atOrAfter: (seq: number) => boolean): number => {
  let lo = 0
  let hi = seqs.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (atOrAfter(seqs[mid]!)) hi = mid
    else lo = mid + 1
  }
  return lo
}


/**
 * Synchronous reads of a partition's hot index at a sequence, for a fork's partition layered on it (`Prefix`).
 * Answers never go above the watermark.
 */
export interface Lookup {
  /** The highest sequence a read at `asOf` sees (the watermark when `asOf` is absent). */
  readonly positionAt: (asOf: AsOf.AsOf | undefined) => number
  /** The stream's version at sequence `atSeq` (-1: none of its events is at or below `atSeq`). */
  readonly versionAt: (tenant: string, stream: string, atSeq: number) => number
  /** The event with this id at or below sequence `atSeq`, if any (its head: the body may be sealed). */
  readonly eventAt: (eventId: string, atSeq: number) => EventHead | undefined
  /** The timestamp of the event at sequence `atSeq` (0 for sequence 0). */
  readonly timestampAt: (atSeq: number) => number
}

/**
 * What a fork's partition continues from: its parent's partition (the same partition number, of main or of the
 * parent fork) at sequence `seq`. The parent must stay open while this partition is, and `seq` must be at or below
 * its watermark — history there never changes, so the lookups are stable.
 */
export interface Prefix {
  readonly seq: number
  readonly parent: Lookup
}

export interface MakeOptions {
  /** The log namespace (a fork id): this partition's log is the namespace's, not the store's (`EventLog.open`). */
  readonly namespace?: string | undefined
  /** Continue a parent partition (a fork's partition); see `Prefix` and the module doc. */
  readonly prefix?: Prefix | undefined
}

export interface Partition {
  readonly id: number
  readonly append: (input: AppendInput) => Effect.Effect<AppendOutput, AppendFailure>
  /**
   * Submits many independent appends at once, in order, and waits for all of them: the same pipeline and group
   * commit as `append`, without a fiber per append. Each append succeeds or fails on its own.
   */
  readonly appendMany: (
    inputs: ReadonlyArray<AppendInput>
  ) => Effect.Effect<Array<Exit.Exit<AppendOutput, AppendFailure>>>
  readonly readStream: (
    tenant: string,
    stream: string,
    options: ReadStreamOptions
  ) => Effect.Effect<ReadonlyArray<StoredEvent>>
  readonly scan: (tenant: string, options: ScanOptions) => Effect.Effect<ReadonlyArray<StoredEvent>>
  /** `scan`, plus how far it looked: the primitive of subscriptions and indexers (see `scanThrough`). */
  readonly follow: (
    tenant: string,
    options: ScanOptions
  ) => Effect.Effect<{ readonly events: ReadonlyArray<StoredEvent>; readonly through: number }>
  readonly reconstruct: <S>(
    tenant: string,
    stream: string,
    reducer: Reducer.Reducer<S>,
    asOf: AsOf.AsOf | undefined
  ) => Effect.Effect<{ readonly version: number; readonly state: S }>
  /** The stream's current durable version (-1 when it has no events). */
  readonly streamVersion: (tenant: string, stream: string) => Effect.Effect<number>
  readonly status: Effect.Effect<PartitionStatus>
  /** Waits until the watermark reaches `seq` (read-your-writes for readers that did not write). */
  readonly awaitWatermark: (seq: number) => Effect.Effect<void, Errors.Unavailable>
  /** Synchronous lookups for forks layered on this partition. */
  readonly lookup: Lookup
}

/**
 * Opens partition `id`: opens its log, rebuilds the hot index by replaying it, and starts the writer.
 * Everything is released with the scope.
 */
export const make = Effect.fnUntraced(function*(
  id: number,
  limits: PartitionLimits,
  options: MakeOptions = {}
): Effect.fn.Return<Partition, LogError | Errors.CorruptData, EventLog | Scope.Scope> {
  const eventLog = yield* EventLog
  const clock = yield* Clock.Clock
  const random = yield* Random.Random
  const scope = yield* Effect.scope
  // Optional cold tier (sealed segments): replayed before the log, and told about the partition once it is open.
  // Never for a fork's partition: its log is small and dies with the fork, and sealed segments are keyed by
  // partition number alone, so a fork's events would land among the store's own.
  const cold = options.namespace === undefined && options.prefix === undefined
    ? yield* Effect.serviceOption(ColdStore)
    : Option.none()
  const prefix = options.prefix
  /** Sequences at or below `base` are the parent's (0 without a prefix): this partition's own start at base + 1. */
  const base = prefix?.seq ?? 0
  if (prefix !== undefined && !(Number.isSafeInteger(base) && base >= 0 && base <= prefix.parent.positionAt(undefined))) {
    return yield* Effect.die(new Error(`partition ${id}: prefix seq ${base} is not at or below the parent's watermark`))
  }

  // ---- state ---------------------------------------------------------------------------------------------------
  /** `events[s - 1 - base]` is the event of sequence `s`; at or below `evictedThrough` only heads (see module doc). */
  let events: Array<Slot> = []
  /** The sealed range whose bodies were dropped: `[1, evictedThrough]` (0 without a cold tier, or before a seal). */
  let evictedThrough = 0
  /** One string instance per event type, shared by the heads (strings decoded from segments are fresh copies). */
  let typeNames = new Map<string, string>()
  let streams: ByTenant<StreamEntry> = new Map()
  let streamCount = 0
  let byTenant = new Map<string, Array<number>>()
  let byType: ByTenant<Array<number>> = new Map()
  let eventIds = new Map<string, number>()
  let seq = 0
  let watermark = 0
  let lastTimestamp = 0

  // ---- write pipeline --------------------------------------------------------------------------------------------
  let log: PartitionLog
  let logScope: Scope.Closeable
  let batch: Array<PendingAppend> = []
  let pendingCount = 0
  const inFlight: Array<InFlightCommit> = []
  let waiters: Array<WatermarkWaiter> = []
  /** Set while the partition reloads after a log failure: appends fail fast instead of queueing. */
  let reloading = false
  /** Incremented by every reload: identifies the log handle a commit was written to. */
  let generation = 0
  /** Set when the partition has stopped for good (see `stop`); every call fails with a non-retryable error. */
  let stopped: string | undefined
  let wakeWriter: (() => void) | undefined

  const unavailable = (message: string) => new Errors.Unavailable({ message, retryable: true })

  const indexEvent = (event: Slot, entry: StreamEntry) => {
    if (event.seq !== base + events.length + 1) {
      throw new Error(`partition ${id}: sequence gap, expected ${base + events.length + 1}, got ${event.seq}`)
    }
    if (event.streamVersion !== entry.firstVersion + entry.seqs.length) {
      throw new Error(
        `partition ${id}: version gap in ${event.stream}, expected ${entry.firstVersion + entry.seqs.length}, ` +
          `got ${event.streamVersion}`
      )
    }
    if (event.timestamp < lastTimestamp) {
      throw new Error(`partition ${id}: timestamp went backwards at seq ${event.seq}`)
    }
    lastTimestamp = event.timestamp
    events.push(event)
    entry.seqs.push(event.seq)
    let tenantSeqs = byTenant.get(event.tenant)
    if (tenantSeqs === undefined) byTenant.set(event.tenant, tenantSeqs = [])
    tenantSeqs.push(event.seq)
    let types = byType.get(event.tenant)
    if (types === undefined) byType.set(event.tenant, types = new Map())
    let typeSeqs = types.get(event.type)
    if (typeSeqs === undefined) types.set(event.type, typeSeqs = [])
    typeSeqs.push(event.seq)
    eventIds.set(event.eventId, event.seq)
  }

  const entryFor = (tenant: string, stream: string): StreamEntry => {
    let byStream = streams.get(tenant)
    if (byStream === undefined) streams.set(tenant, byStream = new Map())
    let entry = byStream.get(stream)
    if (entry === undefined) {
      const firstVersion = prefix === undefined ? 0 : prefix.parent.versionAt(tenant, stream, base) + 1
      entry = { tenant, stream, firstVersion, seqs: [], snapshots: undefined }
      byStream.set(stream, entry)
      streamCount++
    }
    return entry
  }

  const applyCommit = (commit: Commit) => {
    if (commit.partition !== id) throw new Error(`partition ${id}: log holds a commit of partition ${commit.partition}`)
    let s = commit.firstSeq
    for (const e of commit.events) {
      // A log record may straddle the end of the sealed range: its events the cold tier already served are skipped.
      if (s < replayFromSeq) {
        s++
        continue
      }
      indexEvent({
        eventId: e.eventId,
        tenant: e.tenant,
        stream: e.stream,
        type: e.type,
        data: e.data,
        metadata: e.metadata,
        timestamp: commit.timestamp,
        streamVersion: e.streamVersion,
        partition: id,
        seq: base + s++
      }, entryFor(e.tenant, e.stream))
    }
  }

  /** Replay skips events below this sequence: those the cold tier served (see `load`). */
  let replayFromSeq = 1

  const internType = (type: string): string => {
    const known = typeNames.get(type)
    if (known !== undefined) return known
    typeNames.set(type, type)
    return type
  }

  /** `event` without its body, its strings shared with the index (system events keep their bodies). */
  const headOf = (event: Slot, entry: StreamEntry): Slot =>
    isSystemType(event.type) && hasBody(event) ? event : {
      eventId: event.eventId,
      tenant: entry.tenant,
      stream: entry.stream,
      type: internType(event.type),
      timestamp: event.timestamp,
      streamVersion: event.streamVersion,
      partition: id,
      seq: event.seq
    }

  /** Drops the bodies of `[evictedThrough + 1, through]`: sealed durably, a read fetches them from the cold tier. */
  const evict = (through: number) => {
    const to = Math.min(through, watermark)
    for (let s = evictedThrough + 1; s <= to; s++) {
      const e = events[s - 1 - base]!
      if (hasBody(e) && !isSystemType(e.type)) events[s - 1 - base] = headOf(e, lookup(streams, e.tenant, e.stream)!)
    }
    if (to > evictedThrough) evictedThrough = to
  }

  /**
   * Opens the log and rebuilds every index from it: the sealed segments first (when a cold tier is provided), then
   * the log from the sequence after them. Only durable commits exist afterwards.
   */
  const load = Effect.gen(function*() {
    logScope = yield* Scope.fork(scope)
    log = yield* eventLog.open(id, options.namespace).pipe(Effect.provideService(Scope.Scope, logScope))
    // Read everything first, then rebuild the indexes in one synchronous step: a reload (after a refused commit) runs
    // while readers keep calling this partition, and they must keep seeing the previous state — durable up to its
    // watermark — until the new one is complete, never a half-rebuilt one (a watermark back at 0, a stream missing
    // its events: found by the chaos test's observer).
    const sealedEvents: Array<Slot> = []
    const sealed = Option.isSome(cold)
      ? yield* cold.value.replay(id, isSystemType, (event) => void sealedEvents.push(event))
      : 0
    const logCommits: Array<Commit> = []
    const last = yield* log.replay(sealed + 1, (commit) => void logCommits.push(commit))
    events = []
    streams = new Map()
    streamCount = 0
    byTenant = new Map()
    byType = new Map()
    eventIds = new Map()
    typeNames = new Map()
    evictedThrough = 0
    seq = base
    watermark = base
    // A fork's timestamps continue from its parent's at the base: time order holds across the boundary.
    lastTimestamp = prefix === undefined ? 0 : prefix.parent.timestampAt(base)
    replayFromSeq = 1
    for (const event of sealedEvents) {
      if (event.partition !== id) throw new Error(`partition ${id}: the cold tier served an event of partition ${event.partition}`)
      const entry = entryFor(event.tenant, event.stream)
      indexEvent(headOf(event, entry), entry)
    }
    evictedThrough = events.length
    if (sealed !== events.length) {
      return yield* Effect.die(new Error(`partition ${id}: cold tier reports seq ${sealed} but replayed ${events.length}`))
    }
    replayFromSeq = sealed + 1
    for (const commit of logCommits) {
      if (events.length === 0 && commit.firstSeq > 1 && Option.isNone(cold)) {
        return yield* Effect.die(new Error(
          `partition ${id}: the log starts at seq ${commit.firstSeq}, it was truncated below sealed segments; ` +
            `open the partition with the ColdStore that holds them (@chronos/storage)`
        ))
      }
      applyCommit(commit)
    }
    if (last < sealed) {
      return yield* Effect.die(new Error(`partition ${id}: the log ends at seq ${last}, below the sealed seq ${sealed}`))
    }
    if (last !== events.length) {
      return yield* Effect.die(new Error(`partition ${id}: log reports last seq ${last} but replay produced ${events.length}`))
    }
    seq = base + last
    watermark = base + last
  })

  yield* load

  // ---- watermark ---------------------------------------------------------------------------------------------
  const advanceWatermark = (to: number) => {
    if (to < watermark || to > seq) throw new Error(`partition ${id}: watermark ${watermark} -> ${to} (seq ${seq})`)
    watermark = to
    if (waiters.length > 0) {
      const still: Array<WatermarkWaiter> = []
      for (const w of waiters) if (w.seq <= watermark) w.resume()
      else still.push(w)
      waiters = still
    }
  }

  const awaitWatermark = (target: number): Effect.Effect<void, Errors.Unavailable> =>
    target <= watermark ? Effect.void : Effect.callback<void, Errors.Unavailable>((resume) => {
      waiters.push({
        seq: target,
        resume: () => resume(Effect.void),
        fail: (error) => resume(Effect.fail(error))
      })
    })

  // ---- commits -----------------------------------------------------------------------------------------------
  /** Takes appends off the batch into one commit: at least one append, then up to the commit limits. */
  const cutCommit = (): InFlightCommit => {
    const appends: Array<PendingAppend> = []
    let eventCount = 0
    let bytes = 0
    let i = 0
    for (; i < batch.length; i++) {
      const p = batch[i]!
      if (appends.length > 0 && (eventCount + p.events.length > limits.commitEventsMax || bytes + p.bytes > limits.commitBytesMax)) {
        break
      }
      appends.push(p)
      eventCount += p.events.length
      bytes += p.bytes
    }
    batch = i === batch.length ? [] : batch.slice(i)
    // A commit carries one timestamp for all its events (see `Commit`): the commit time, which is the newest
    // acceptance time among them (timestamps never decrease along the sequence, so it is the last append's). Appends
    // accepted in earlier milliseconds are restamped to it before anyone can see them (they are above the
    // watermark), so a replay restores exactly the timestamps readers saw. Splitting commits by millisecond instead
    // gave one event per commit whenever a partition saw fewer appends per millisecond than its log's round trip
    // (measured in the R3 cluster: 1 event per commit at 14 appends/s per partition).
    const timestamp = appends[appends.length - 1]!.events[0]!.timestamp
    const commitEvents: Array<StoredEvent> = new Array(eventCount)
    const rows: Array<string> = new Array(eventCount)
    let k = 0
    for (const p of appends) {
      for (let j = 0; j < p.events.length; j++) {
        let event = p.events[j]!
        if (event.timestamp !== timestamp) {
          if (event.timestamp > timestamp || event.seq <= watermark) {
            throw new Error(`partition ${id}: restamping seq ${event.seq} (${event.timestamp} -> ${timestamp})`)
          }
          event = { ...event, timestamp }
          events[event.seq - 1 - base] = event
        }
        // Stored events carry every field a commit needs: the commit shares them instead of copying.
        commitEvents[k] = event
        rows[k++] = p.rows[j]!
      }
    }
    const first = commitEvents[0]!
    return {
      commit: { partition: id, firstSeq: first.seq - base, timestamp, events: commitEvents, rows },
      appends,
      generation,
      startedAtMs: clock.currentTimeMillisUnsafe(),
      done: false
    }
  }

  const onCommitDone = (entry: InFlightCommit, exit: Exit.Exit<void, LogError>) => {
    if (entry.generation !== generation) return
    if (Exit.isFailure(exit)) {
      // The log refused or lost this commit (and therefore every later one): nothing unacknowledged can be
      // trusted. Fail it all, then rebuild from what the log holds.
      if (!reloading && stopped === undefined) startReload(exit)
      return
    }
    entry.done = true
    // Acknowledgements arrive in order by contract; the FIFO makes that an asserted fact, not an assumption.
    while (inFlight.length > 0 && inFlight[0]!.done) {
      const head = inFlight.shift()!
      advanceWatermark(base + lastSeq(head.commit))
      for (const p of head.appends) {
        pendingCount--
        p.resume(Exit.succeed(p.output))
      }
    }
    wakeWriter?.()
  }

  const failEverythingPending = (error: Errors.Unavailable) => {
    for (const c of inFlight.splice(0)) for (const p of c.appends) p.resume(Exit.fail(error))
    for (const p of batch) p.resume(Exit.fail(error))
    batch = []
    pendingCount = 0
    for (const w of waiters) w.fail(error)
    waiters = []
  }

  /** Stops the partition for good: a broken invariant in the log (e.g. a failed fsync) must not be papered over. */
  const stop = (reason: string) => {
    stopped = reason
    failEverythingPending(new Errors.Unavailable({ message: `partition ${id} stopped: ${reason}`, retryable: false }))
    Effect.runForkWith(services)(Effect.logError(`partition ${id} stopped`, reason))
  }

  const startReload = (exit: Exit.Exit<void, LogError>) => {
    const reason = Exit.isFailure(exit) ? String(exit.cause) : "unknown"
    if (Exit.isFailure(exit) && Cause.hasDies(exit.cause)) return stop(reason)
    reloading = true
    generation++
    failEverythingPending(unavailable(`partition ${id} lost its log position and is reloading; retry (${reason})`))
    Effect.runForkWith(services)(
      Effect.gen(function*() {
        yield* Effect.logWarning(`partition ${id}: log append failed, reloading from the log`, reason)
        yield* Scope.close(logScope, Exit.void)
        const reloaded = yield* Effect.exit(load.pipe(
          Effect.retry({ times: limits.reloadRetriesMax, schedule: reloadSchedule(limits) })
        ))
        if (Exit.isFailure(reloaded)) return stop(`reload failed: ${String(reloaded.cause)}`)
        reloading = false
        yield* Effect.logInfo(`partition ${id}: reloaded at seq ${seq}`)
      })
    )
  }

  const services = yield* Effect.context<never>()

  /** Commits kept in flight: the limit, or fewer when the log writes fewer at once (`PartitionLog.commitsInFlightMax`). */
  const inFlightMax = () => Math.min(limits.commitsInFlightMax, log.commitsInFlightMax ?? limits.commitsInFlightMax)

  const writer = Effect.gen(function*() {
    while (true) {
      yield* Effect.callback<void>((resume) => {
        if (batch.length > 0 && inFlight.length < inFlightMax() && !reloading) resume(Effect.void)
        else {
          wakeWriter = () => {
            if (batch.length > 0 && inFlight.length < inFlightMax() && !reloading) {
              wakeWriter = undefined
              resume(Effect.void)
            }
          }
        }
      })
      if (limits.commitLingerMs > 0) yield* Effect.sleep(limits.commitLingerMs)
      while (batch.length > 0 && inFlight.length < inFlightMax() && !reloading) {
        const entry = cutCommit()
        inFlight.push(entry)
        yield* Effect.forkChild(
          log.append(entry.commit).pipe(Effect.exit, Effect.map((exit) => onCommitDone(entry, exit))),
          { startImmediately: true }
        )
      }
    }
  })
  yield* Effect.forkIn(writer, scope)

  // A log that stops acknowledging is treated like one that refused: everything pending fails (retryable; clients
  // retry with the same event ids) and the partition reloads, which tells what actually became durable.
  const watchdog = Effect.gen(function*() {
    while (true) {
      yield* Effect.sleep(Math.max(10, limits.appendTimeoutMs / 4))
      const oldest = inFlight[0]
      if (
        oldest !== undefined && !reloading && stopped === undefined &&
        clock.currentTimeMillisUnsafe() - oldest.startedAtMs > limits.appendTimeoutMs
      ) {
        startReload(Exit.fail(new LogUnavailable({
          partition: id,
          message: `the log did not acknowledge commit ${oldest.commit.firstSeq} within ${limits.appendTimeoutMs} ms (appendTimeoutMs)`
        })))
      }
    }
  })
  yield* Effect.forkIn(watchdog, scope)

  // ---- cold tier ---------------------------------------------------------------------------------------------
  if (Option.isSome(cold)) {
    const target: SealTarget = {
      partition: id,
      watermark: () => watermark,
      readRange: (fromSeq, toSeq) => {
        if (!(Number.isSafeInteger(fromSeq) && fromSeq > evictedThrough && fromSeq <= toSeq && toSeq <= watermark)) {
          throw new Error(
            `partition ${id}: readRange(${fromSeq}, ${toSeq}) outside [${evictedThrough + 1}, watermark ${watermark}]`
          )
        }
        const range = events.slice(fromSeq - 1, toSeq)
        if (!allBodies(range)) throw new Error(`partition ${id}: readRange(${fromSeq}, ${toSeq}) met an event without body`)
        return range
      },
      readHeads: (fromSeq, toSeq) => {
        if (!(Number.isSafeInteger(fromSeq) && fromSeq >= 1 && fromSeq <= toSeq && toSeq <= watermark)) {
          throw new Error(`partition ${id}: readHeads(${fromSeq}, ${toSeq}) outside [1, watermark ${watermark}]`)
        }
        return events.slice(fromSeq - 1, toSeq)
      },
      truncateLog: (below) =>
        Effect.suspend(() => {
          if (below > watermark + 1) {
            return Effect.die(new Error(`partition ${id}: truncateLog(${below}) above watermark ${watermark}`))
          }
          // Everything below `below` is sealed durably and in the manifest (the caller's guarantee): reads fetch
          // those bodies from the cold tier from now on, whatever becomes of the log truncation.
          evict(below - 1)
          if (reloading || stopped !== undefined) {
            return Effect.fail(new LogUnavailable({ partition: id, message: `partition ${id} is reloading; retry` }))
          }
          return log.truncateBefore === undefined ? Effect.void : log.truncateBefore(below)
        })
    }
    yield* cold.value.attach(target).pipe(Effect.provideService(Scope.Scope, scope))
  }

  // Closed under its callers (its shard moved to another runner, lock storage lost, the node stopping): answer
  // everything still pending instead of leaving it waiting for ever. Retryable: the caller re-sends with the same
  // event ids to wherever the partition lives next, which tells whether the commit landed.
  let closed = false
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      closed = true
      failEverythingPending(unavailable(`partition ${id} closed on this runner; retry`))
    })
  )

  // ---- append ------------------------------------------------------------------------------------------------
  /**
   * Event ids for events appended without one: RFC 9562 version-8 UUIDs made of 74 random bits drawn once per
   * partition instance (from the Random service: deterministic under a seeded Random in tests) and a 48-bit
   * counter. Unique like random UUIDs, at the cost of one hex conversion instead of 128 random bits per event.
   */
  const idPrefix = (() => {
    const r = () => (random.nextIntUnsafe() >>> 0).toString(16).padStart(8, "0")
    const a = r() + r() + r()
    const variant = (8 + (random.nextIntUnsafe() & 3)).toString(16)
    return `${a.slice(0, 8)}-${a.slice(8, 12)}-8${a.slice(12, 15)}-${variant}${a.slice(15, 18)}-`
  })()
  let idCounter = 0
  const newEventId = (): string => idPrefix + (idCounter++).toString(16).padStart(12, "0")

  /** The answer to an append whose events are all already stored: their original positions. */
  const duplicateOf = (
    input: AppendInput,
    known: ReadonlyArray<EventHead>
  ): AppendOutput | Errors.InvalidRequest => {
    for (let i = 0; i < known.length; i++) {
      const e = known[i]!
      if (e.tenant !== input.tenant || e.stream !== input.stream) {
        return new Errors.InvalidRequest({
          field: `events[${i}].eventId`,
          message: `event id ${e.eventId} is already used by another stream`
        })
      }
      if (i > 0 && e.streamVersion !== known[i - 1]!.streamVersion + 1) {
        return new Errors.InvalidRequest({
          field: `events[${i}].eventId`,
          message: "these event ids were appended before, but not together in this order"
        })
      }
    }
    const first = known[0]!
    return {
      firstVersion: first.streamVersion,
      lastVersion: first.streamVersion + known.length - 1,
      positions: known.map((e) => ({ partition: id, seq: e.seq }))
    }
  }

  const submit = (input: AppendInput, resume: (exit: Exit.Exit<AppendOutput, AppendFailure>) => void): void => {
    if (stopped !== undefined) {
      return resume(Exit.fail(new Errors.Unavailable({ message: `partition ${id} stopped: ${stopped}`, retryable: false })))
    }
    if (reloading) return resume(Exit.fail(unavailable(`partition ${id} is reloading its log; retry`)))
    if (closed) return resume(Exit.fail(unavailable(`partition ${id} closed on this runner; retry`)))
    const n = input.events.length
    if (n === 0) {
      return resume(Exit.fail(new Errors.InvalidRequest({ field: "events", message: "at least one event is required" })))
    }
    if (n > 1) {
      const seen = new Set<string>()
      for (let i = 0; i < n; i++) {
        const eventId = input.events[i]!.eventId
        if (eventId === undefined) continue
        if (seen.has(eventId)) {
          return resume(Exit.fail(
            new Errors.InvalidRequest({ field: `events[${i}].eventId`, message: "duplicate event id in one append" })
          ))
        }
        seen.add(eventId)
      }
    }
    // Idempotency next: a retried append must get its original answer even though its expected version is stale.
    const known: Array<EventHead> = []
    for (let i = 0; i < n; i++) {
      const eventId = input.events[i]!.eventId
      if (eventId === undefined) continue
      const s = eventIds.get(eventId)
      // In a fork's partition an id the parent holds at or below the base is a retry too: the fork sees that event.
      const e = s !== undefined
        ? events[s - 1 - base]
        : prefix === undefined
        ? undefined
        : prefix.parent.eventAt(eventId, base)
      if (e !== undefined) known.push(e)
    }
    if (known.length > 0) {
      if (known.length !== n) {
        return resume(Exit.fail(
          new Errors.InvalidRequest({
            field: "events",
            message: `${known.length} of ${n} event ids were appended before: an append is either new or an exact retry`
          })
        ))
      }
      const answer = duplicateOf(input, known)
      if (answer instanceof Errors.InvalidRequest) return resume(Exit.fail(answer))
      const highest = known[known.length - 1]!.seq
      // The original may still be in flight: answer only once it is durable.
      if (highest <= watermark) return resume(Exit.succeed(answer))
      waiters.push({
        seq: highest,
        resume: () => resume(Exit.succeed(answer)),
        fail: (error) => resume(Exit.fail(error))
      })
      return
    }
    const existing = lookup(streams, input.tenant, input.stream)
    const current = existing !== undefined
      ? existing.firstVersion + existing.seqs.length - 1
      : prefix === undefined
      ? -1
      : prefix.parent.versionAt(input.tenant, input.stream, base)
    if (!ExpectedVersion.isSatisfied(input.expectedVersion, current)) {
      return resume(Exit.fail(
        new Errors.WrongExpectedVersion({ stream: input.stream, expected: input.expectedVersion, actual: current })
      ))
    }
    if (pendingCount >= limits.pendingAppendsMax) {
      return resume(Exit.fail(unavailable(`partition ${id} has ${pendingCount} appends waiting (pendingAppendsMax)`)))
    }
    let bytes = 0
    for (let i = 0; i < n; i++) bytes += input.events[i]!.bytes
    const entry = existing ?? entryFor(input.tenant, input.stream)
    const now = clock.currentTimeMillisUnsafe()
    const timestamp = now > lastTimestamp ? now : lastTimestamp
    const stored: Array<StoredEvent> = new Array(n)
    const rows: Array<string> = new Array(n)
    const positions: Array<Event.Position> = new Array(n)
    const firstVersion = current + 1
    for (let i = 0; i < n; i++) {
      const e = input.events[i]!
      seq++
      const event: StoredEvent = {
        eventId: e.eventId ?? newEventId(),
        tenant: input.tenant,
        stream: input.stream,
        type: e.type,
        data: e.data,
        metadata: e.metadata,
        timestamp,
        streamVersion: firstVersion + i,
        partition: id,
        seq
      }
      indexEvent(event, entry)
      stored[i] = event
      rows[i] = e.dataJson !== undefined && e.metadataJson !== undefined
        ? encodeRowFrom(event.eventId, event.tenant, event.stream, event.type, event.streamVersion, e.dataJson, e.metadataJson)
        : encodeRow(event)
      positions[i] = { partition: id, seq }
    }
    pendingCount++
    batch.push({
      events: stored,
      rows,
      bytes,
      output: { firstVersion, lastVersion: firstVersion + n - 1, positions },
      resume
    })
    wakeWriter?.()
  }

  const append = (input: AppendInput): Effect.Effect<AppendOutput, AppendFailure> =>
    Effect.callback<AppendOutput, AppendFailure>((resume) => submit(input, resume))

  const appendMany = (inputs: ReadonlyArray<AppendInput>) =>
    Effect.callback<Array<Exit.Exit<AppendOutput, AppendFailure>>>((resume) => {
      const out: Array<Exit.Exit<AppendOutput, AppendFailure>> = new Array(inputs.length)
      let left = inputs.length
      if (left === 0) return resume(Effect.succeed(out))
      for (let i = 0; i < inputs.length; i++) {
        submit(inputs[i]!, (exit) => {
          out[i] = exit
          if (--left === 0) resume(Effect.succeed(out))
        })
      }
    })

  // ---- reads -------------------------------------------------------------------------------------------------
  /** The highest sequence a read at `asOf` may see: never above the watermark. */
  const visibleSeq = (asOf: AsOf.AsOf | undefined): number => {
    const bySeq = Math.min(watermark, AsOf.seqBound(asOf, id))
    const t = AsOf.timeBound(asOf)
    if (t === Infinity) return bySeq
    // Timestamps are non-decreasing along the sequence: binary search the last event at or before t.
    // Over this partition's own events (a bound at or below `base` leaves none of them).
    if (bySeq <= base) return bySeq
    let lo = base
    let hi = bySeq
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (events[mid - base]!.timestamp <= t) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The highest version of `entry` visible at sequence `maxSeq`. */
  const visibleVersion = (entry: StreamEntry, maxSeq: number): number =>
    entry.firstVersion + lowerBound(entry.seqs, (s) => s > maxSeq) - 1

  /**
   * The events of `slots` with their bodies, in the same order: those still in memory as they are, the sealed ones
   * fetched from the cold tier in one request (all of `tenant`, and of `stream` when given: the tier prunes by it).
   * Damage dies with the segment's `CorruptData`; an unreachable segment store with a retryable `Unavailable`.
   */
  const withBodies = (
    slots: ReadonlyArray<Slot>,
    tenant: string,
    stream: string | undefined
  ): Effect.Effect<ReadonlyArray<StoredEvent>> => {
    if (allBodies(slots)) return Effect.succeed(slots)
    if (Option.isNone(cold)) {
      return Effect.die(new Error(`partition ${id}: events without bodies and no cold tier to fetch them from`))
    }
    const seqs: Array<number> = []
    for (const e of slots) if (!hasBody(e)) seqs.push(e.seq)
    seqs.sort((a, b) => a - b)
    const request: FetchRequest = { seqs, tenant, stream }
    return cold.value.fetch(id, request).pipe(
      Effect.mapError((error) =>
        error._tag === "CorruptData"
          ? error
          : new Errors.Unavailable({ message: `partition ${id}: sealed events not readable now: ${error.message}`, retryable: true })
      ),
      Effect.orDie,
      Effect.map((fetched) => {
        if (fetched.length !== seqs.length) {
          throw new Error(`partition ${id}: the cold tier returned ${fetched.length} events for ${seqs.length} sequences`)
        }
        const bySeq = new Map<number, StoredEvent>()
        for (let k = 0; k < fetched.length; k++) {
          const f = fetched[k]!
          if (f.seq !== seqs[k]) throw new Error(`partition ${id}: the cold tier returned seq ${f.seq} for ${seqs[k]}`)
          bySeq.set(f.seq, f)
        }
        return slots.map((e) => {
          if (hasBody(e)) return e
          const f = bySeq.get(e.seq)!
          // The segment was written from this index (or the index loaded from it): anything but an erasure by
          // compaction (type and body replaced, position and id kept) is a broken invariant.
          if (f.eventId !== e.eventId || f.stream !== e.stream || f.tenant !== e.tenant || f.streamVersion !== e.streamVersion) {
            throw new Error(`partition ${id}: the sealed row of seq ${e.seq} is not the indexed event ${e.eventId}`)
          }
          return f
        })
      })
    )
  }

  const readStream = (tenant: string, stream: string, options: ReadStreamOptions) =>
    Effect.suspend((): Effect.Effect<ReadonlyArray<StoredEvent>> => {
      const entry = lookup(streams, tenant, stream)
      if (entry === undefined) return Effect.succeed([])
      const top = visibleVersion(entry, visibleSeq(options.asOf))
      const limit = Math.min(options.limit, limits.readEventsMax)
      const out: Array<Slot> = []
      const first = entry.firstVersion
      if (options.direction === "forward") {
        for (let v = Math.max(first, options.fromVersion ?? 0); v <= top && out.length < limit; v++) {
          out.push(events[entry.seqs[v - first]! - 1 - base]!)
        }
      } else {
        for (let v = Math.min(top, options.fromVersion ?? top); v >= first && out.length < limit; v--) {
          out.push(events[entry.seqs[v - first]! - 1 - base]!)
        }
      }
      return withBodies(out, tenant, stream)
    })

  const afterCursor = (e: Slot, c: Cursor | undefined): boolean =>
    c === undefined || e.timestamp > c.timestamp ||
    (e.timestamp === c.timestamp && (id > c.partition || (id === c.partition && e.seq > c.seq)))

  /**
   * The matching events from `fromSeq` on (in sequence order), and `through`: the sequence up to which the
   * partition was examined — the last match when `limit` stopped the scan, else the visible bound. A follower
   * resumes at `through + 1` and can never skip an event, even when none matched.
   */
  const scanThrough = (tenant: string, options: ScanOptions): { events: Array<Slot>; through: number } => {
    const maxSeq = visibleSeq(options.asOf)
    const since = Math.max(options.since ?? -Infinity, options.after?.timestamp ?? -Infinity)
    const until = options.until ?? Infinity
    const fromSeq = options.fromSeq ?? 1
    const limit = Math.min(options.limit, limits.readEventsMax)
    const lists: Array<ReadonlyArray<number>> = []
    if (options.stream !== undefined) {
      const entry = lookup(streams, tenant, options.stream)
      if (entry !== undefined) lists.push(entry.seqs)
    } else if (options.types === undefined || options.types.length === 0) {
      const all = byTenant.get(tenant)
      if (all !== undefined) lists.push(all)
    } else {
      for (const type of new Set(options.types)) {
        const l = lookup(byType, tenant, type)
        if (l !== undefined) lists.push(l)
      }
    }
    const types = options.stream !== undefined && options.types !== undefined && options.types.length > 0
      ? new Set(options.types)
      : undefined
    const prefix = options.streamPrefix
    // k-way merge by sequence (= time order within a partition) of the candidate lists.
    const cursors = lists.map((l) => lowerBound(l, (s) => s >= fromSeq && events[s - 1 - base]!.timestamp >= since))
    const out: Array<Slot> = []
    while (out.length < limit) {
      let best = -1
      let bestSeq = Infinity
      for (let k = 0; k < lists.length; k++) {
        const s = lists[k]![cursors[k]!]
        if (s !== undefined && s < bestSeq) {
          best = k
          bestSeq = s
        }
      }
      if (best === -1 || bestSeq > maxSeq) break
      cursors[best]!++
      const e = events[bestSeq - 1 - base]!
      if (e.timestamp > until) break
      if (types !== undefined && !types.has(e.type)) continue
      if (prefix !== undefined && !e.stream.startsWith(prefix)) continue
      if (afterCursor(e, options.after)) out.push(e)
    }
    const through = out.length === limit ? out[out.length - 1]!.seq : Math.max(maxSeq, fromSeq - 1)
    return { events: out, through }
  }

  /**
   * `scanThrough` with bodies. A sealed event's row may have been erased by compaction since it was indexed (its
   * type is `$erased` now): the row wins, so a scan by type drops it, and scans on from where it stopped to fill
   * the page, as the index built from the segments (at the next cold boot) would have answered.
   */
  const follow = (tenant: string, options: ScanOptions) =>
    Effect.suspend((): Effect.Effect<{ readonly events: ReadonlyArray<StoredEvent>; readonly through: number }> => {
      const first = scanThrough(tenant, options)
      if (allBodies(first.events)) return Effect.succeed({ events: first.events, through: first.through })
      const types = options.types !== undefined && options.types.length > 0 ? new Set(options.types) : undefined
      const limit = Math.min(options.limit, limits.readEventsMax)
      return Effect.gen(function*() {
        const out: Array<StoredEvent> = []
        let page = first
        let pageLimit = limit
        while (true) {
          const got = yield* withBodies(page.events, tenant, options.stream)
          let dropped = false
          for (const e of got) {
            if (types !== undefined && !types.has(e.type)) dropped = true
            else out.push(e)
          }
          if (!dropped || page.events.length < pageLimit) return { events: out, through: page.through }
          pageLimit = limit - out.length
          page = scanThrough(tenant, { ...options, fromSeq: page.through + 1, limit: pageLimit })
        }
      })
    })

  const scan = (tenant: string, options: ScanOptions) =>
    Effect.map(follow(tenant, options), (r): ReadonlyArray<StoredEvent> => r.events)

  const reconstruct = <S>(tenant: string, stream: string, reducer: Reducer.Reducer<S>, asOf: AsOf.AsOf | undefined) =>
    Effect.suspend((): Effect.Effect<{ readonly version: number; readonly state: S }> => {
      const entry = lookup(streams, tenant, stream)
      if (entry === undefined) return Effect.succeed({ version: -1, state: reducer.initial })
      const top = visibleVersion(entry, visibleSeq(asOf))
      const every = limits.snapshotEveryEvents
      // Snapshots only ever cover durable versions (top <= watermark), so a reload never invalidates them.
      let snapshots = entry.snapshots?.get(reducer.name) as Array<S> | undefined
      if (snapshots === undefined && every > 0) {
        snapshots = []
        ;(entry.snapshots ??= new Map()).set(reducer.name, snapshots)
      }
      // Folds the stream's events held here: index i is version firstVersion + i. (A fork's partition holds only
      // the fork's own events; the fork's router folds them onto the parent's state at the base.)
      const last = top - entry.firstVersion
      let state = reducer.initial
      let i = 0
      if (snapshots !== undefined && every > 0) {
        const k = Math.min(snapshots.length, Math.floor((last + 1) / every))
        if (k > 0) {
          state = snapshots[k - 1]!
          i = k * every
        }
      }
      const version = last < 0 ? -1 : top
      const index = events
      const step = (event: StoredEvent) => {
        state = reducer.step(state, event)
        if (snapshots !== undefined && every > 0 && (i + 1) % every === 0 && snapshots.length === (i + 1) / every - 1) {
          snapshots.push(state)
        }
        i++
      }
      // All in memory (the common case: no version to fold is sealed): one synchronous fold.
      if (i > last || entry.seqs[i]! > evictedThrough) {
        while (i <= last) {
          const e = index[entry.seqs[i]! - 1 - base]!
          if (!hasBody(e)) throw new Error(`partition ${id}: seq ${e.seq} above the sealed range has no body`)
          step(e)
        }
        return Effect.succeed({ version, state })
      }
      // Sealed versions' bodies come from the cold tier in chunks of `readEventsMax`: memory stays bounded however
      // long the stream.
      return Effect.gen(function*() {
        while (i <= last) {
          const end = Math.min(last, i + limits.readEventsMax - 1)
          const slots: Array<Slot> = []
          for (let j = i; j <= end; j++) slots.push(index[entry.seqs[j]! - 1 - base]!)
          for (const event of yield* withBodies(slots, tenant, stream)) step(event)
        }
        return { version, state }
      })
    })

  // ---- lookups (for forks layered on this partition) -------------------------------------------------------------
  const versionAt = (tenant: string, stream: string, atSeq: number): number => {
    if (prefix !== undefined && atSeq <= base) return prefix.parent.versionAt(tenant, stream, atSeq)
    const entry = lookup(streams, tenant, stream)
    if (entry === undefined) return prefix === undefined ? -1 : prefix.parent.versionAt(tenant, stream, base)
    return visibleVersion(entry, Math.min(atSeq, watermark))
  }

  const eventAt = (eventId: string, atSeq: number): EventHead | undefined => {
    const s = eventIds.get(eventId)
    if (s !== undefined) return s <= atSeq && s <= watermark ? events[s - 1 - base] : undefined
    return prefix === undefined ? undefined : prefix.parent.eventAt(eventId, Math.min(atSeq, base))
  }

  const timestampAt = (atSeq: number): number => {
    const at = Math.min(atSeq, watermark)
    if (at <= base) return prefix === undefined ? 0 : prefix.parent.timestampAt(at)
    return events[at - 1 - base]!.timestamp
  }

  const positionAt = (asOf: AsOf.AsOf | undefined): number => {
    const own = visibleSeq(asOf)
    // None of this partition's own events is visible: the parent answers (bounded by the base).
    return prefix !== undefined && own <= base ? Math.min(base, prefix.parent.positionAt(asOf)) : own
  }

  const streamVersion = (tenant: string, stream: string) => Effect.sync(() => versionAt(tenant, stream, watermark))

  const status = Effect.sync((): PartitionStatus => ({
    partition: id,
    seq,
    watermark,
    // This partition's own events (a fork's partition: the fork's, not its parent's).
    events: watermark - base,
    streams: streamCount
  }))

  return {
    id,
    append,
    appendMany,
    readStream,
    scan,
    follow,
    reconstruct,
    streamVersion,
    status,
    awaitWatermark,
    lookup: { positionAt, versionAt, eventAt, timestampAt }
  }
})

/**
 * A partition whose stored data failed verification at load (`CorruptData`): it serves nothing rather than a
 * partial history. Appends fail with a non-retryable `Unavailable` naming the damage; reads die with the
 * `CorruptData` itself (the read signatures have no error channel, and an empty answer would be a silent lie);
 * `status` answers, so that the node and its other partitions keep running and an operator can see which one is out.
 */
export const quarantined = (id: number, error: Errors.CorruptData): Partition => {
  const refused = new Errors.Unavailable({
    message: `partition ${id} is quarantined: corrupt data at ${error.location}: ${error.message}; run chronos verify`,
    retryable: false
  })
  return {
    id,
    append: () => Effect.fail(refused),
    appendMany: (inputs) => Effect.succeed(inputs.map(() => Exit.fail(refused))),
    readStream: () => Effect.die(error),
    scan: () => Effect.die(error),
    follow: () => Effect.die(error),
    reconstruct: () => Effect.die(error),
    streamVersion: () => Effect.die(error),
    status: Effect.succeed({ partition: id, seq: 0, watermark: 0, events: 0, streams: 0 }),
    awaitWatermark: () => Effect.fail(refused),
    // Forks cannot be layered on a quarantined partition: their lookups fail like its reads.
    lookup: {
      positionAt: () => {
        throw error
      },
      versionAt: () => {
        throw error
      },
      eventAt: () => {
        throw error
      },
      timestampAt: () => {
        throw error
      }
    }
  }
}

/**
 * The pauses between attempts to reopen a partition's log: doubling from 100 ms, capped at `reloadBackoffMsMax`.
 * Capped because the log usually comes back all at once (a NATS stream leader elected after 4–7 s): an uncapped
 * doubling would by then wait 6.4 s more before its next attempt, turning a short outage into a long stall.
 */
export const reloadSchedule = (limits: Pick<PartitionLimits, "reloadBackoffMsMax">) =>
  Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced(Duration.millis(limits.reloadBackoffMsMax))])

/**
 * `make`, except that a partition whose stored data fails verification — a sealed segment (`CorruptData`) or a log
 * record (the file log's `CorruptLogError`, a defect) — opens `quarantined` instead of failing: one damaged partition
 * must not keep a node's other partitions from serving. Every other failure or defect is left as it was.
 */
export const makeServing = (
  id: number,
  limits: PartitionLimits
): Effect.Effect<Partition, LogError, EventLog | Scope.Scope> => {
  const quarantine = (error: Errors.CorruptData) =>
    Effect.as(
      Effect.logError(`partition ${id} quarantined: corrupt data at ${error.location}: ${error.message}`),
      quarantined(id, error)
    )
  return make(id, limits).pipe(
    Effect.catchTag("CorruptData", quarantine),
    Effect.catchDefect((defect) =>
      defect instanceof CorruptLogError
        ? quarantine(new Errors.CorruptData({ location: `${defect.file} at byte ${defect.offset}`, message: defect.message }))
        : Effect.die(defect)
    )
  )
}
