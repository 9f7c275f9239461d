/**
 * The cold tier as a partition sees it: the sealed, immutable ranges of its log that live outside the log (Parquet
 * segments with a manifest, implemented by `@chronos/storage`). This module owns only the contract between a
 * partition and that tier, so that the engine does not depend on any storage format:
 *  - at load, a partition first asks the cold tier to `replay` its sealed events (in sequence order, from seq 1,
 *    each segment verified before anything of it is served) as `EventHead`s — everything but the bodies, which stay
 *    in the segments — then replays its log from the sequence after them;
 *  - once loaded, the partition `attach`es itself: the cold tier may then read durable ranges from the hot index,
 *    seal them, and ask the partition to truncate its log below what is sealed (its policy, its fibers, released
 *    with the partition). That call is also the partition's signal that the range is durable in the manifest: it
 *    drops the bodies of the sealed events from memory and keeps their heads;
 *  - every read that needs the body of a sealed event `fetch`es it from the cold tier (pruned by row-group
 *    statistics, through a bounded cache), so memory is bounded by the hot tail and the heads, not by the store.
 *
 * The service is optional: a partition opened without one replays its whole log from seq 1 (the foundation's
 * behaviour), keeps every body, and refuses, with a defect naming the cause, a log that was truncated below a
 * sealed range.
 */
import { Context, type Effect, type Scope } from "effect"
import type { Errors, Event } from "@chronos/domain"
import type { LogError, LogUnavailable } from "./EventLog.ts"

/**
 * A sealed event as the hot index keeps it once its body (data, metadata) was dropped: what the indexes (by stream,
 * tenant, type, event id, time) and idempotent-retry answers need. A `StoredEvent` is one too.
 */
export interface EventHead {
  readonly eventId: string
  readonly tenant: string
  readonly stream: string
  readonly type: string
  readonly timestamp: number
  readonly streamVersion: number
  readonly partition: number
  readonly seq: number
}

/** Whether `event` carries its body (`StoredEvent`) or is only a head. */
export const hasBody = (event: EventHead | Event.StoredEvent): event is Event.StoredEvent => "metadata" in event

/** What an open partition offers the cold tier. Every method is safe to call from any fiber. */
export interface SealTarget {
  readonly partition: number
  /** The partition's watermark now: only ranges at or below it may be sealed. */
  readonly watermark: () => number
  /**
   * The durable events of `[fromSeq, toSeq]` in sequence order, with their bodies, from the hot index (no I/O).
   * Precondition: `1 <= fromSeq <= toSeq <= watermark()` and `fromSeq` above the sealed range (whose bodies the
   * partition dropped; see `readHeads`).
   */
  readonly readRange: (fromSeq: number, toSeq: number) => ReadonlyArray<Event.StoredEvent>
  /**
   * Like `readRange`, sealed range included: a sealed event is a head, except that system events (types starting
   * with `$`: stream metadata, tombstones, erasures — few and small) keep their bodies, because retention rules are
   * read from them. Precondition: `1 <= fromSeq <= toSeq <= watermark()`.
   */
  readonly readHeads: (fromSeq: number, toSeq: number) => ReadonlyArray<EventHead | Event.StoredEvent>
  /**
   * Drops whole log files (or messages) that hold only sequences below `seq`. The caller guarantees that every
   * sequence below `seq` is sealed durably and listed in the manifest; the partition checks `seq <= watermark + 1`,
   * and drops the bodies of those events from memory (reads fetch them with `ColdStoreShape.fetch`).
   * A log driver that cannot truncate keeps its records (harmless: replay skips what the cold tier served).
   */
  readonly truncateLog: (seq: number) => Effect.Effect<void, LogError>
}

/** Which sealed events a read needs the bodies of (see `ColdStoreShape.fetch`). */
export interface FetchRequest {
  /** Sequences of sealed events, ascending, without duplicates. */
  readonly seqs: ReadonlyArray<number>
  /** Every event asked for is of this tenant (prunes row groups by their statistics). */
  readonly tenant: string
  /** …and, when set, of this stream (prunes much more: a stream is a contiguous run of rows). */
  readonly stream?: string | undefined
}

export interface ColdStoreShape {
  /**
   * Calls `onEvent` for every sealed event of `partition`, in sequence order starting at seq 1, and returns the
   * last sealed sequence (0: nothing sealed). An event comes with its body (a `StoredEvent`) only when `keepBody`
   * says so for its type; otherwise as an `EventHead`. Fails with `CorruptData` naming the segment when a segment
   * fails its checksum or its rows do not match the manifest: nothing of a damaged segment is served.
   */
  readonly replay: (
    partition: number,
    keepBody: (type: string) => boolean,
    onEvent: (event: EventHead | Event.StoredEvent) => void
  ) => Effect.Effect<number, Errors.CorruptData | LogUnavailable>
  /**
   * The sealed events `request.seqs` of `partition`, with their bodies, in the order asked. The rows are the
   * segments' as they are now: a compaction may have erased an event (type `$erased`, no payload) since the partition
   * indexed it, and the row wins. Fails with `CorruptData` naming the segment when a segment needed is damaged or an
   * event asked for is not in it; segments not needed are not read.
   */
  readonly fetch: (
    partition: number,
    request: FetchRequest
  ) => Effect.Effect<ReadonlyArray<Event.StoredEvent>, Errors.CorruptData | LogUnavailable>
  /** Registers an open partition with the cold tier until `Scope` closes (sealing policy, on-demand sealing). */
  readonly attach: (target: SealTarget) => Effect.Effect<void, never, Scope.Scope>
}

export class ColdStore extends Context.Service<ColdStore, ColdStoreShape>()("chronos/engine/ColdStore") {}
