/**
 * The cold tier as a partition sees it: the sealed, immutable ranges of its log that live outside the log (Parquet
 * segments with a manifest, implemented by `@chronos/storage`). This module owns only the contract between a
 * partition and that tier, so that the engine does not depend on any storage format:
 *  - at load, a partition first asks the cold tier to `replay` its sealed events (in sequence order, from seq 1,
 *    each segment verified before anything of it is served), then replays its log from the sequence after them;
 *  - once loaded, the partition `attach`es itself: the cold tier may then read durable ranges from the hot index,
 *    seal them, and ask the partition to truncate its log below what is sealed (its policy, its fibers, released
 *    with the partition).
 *
 * The service is optional: a partition opened without one replays its whole log from seq 1 (the foundation's
 * behaviour), and refuses, with a defect naming the cause, a log that was truncated below a sealed range.
 */
import { Context, type Effect, type Scope } from "effect"
import type { Errors, Event } from "@chronos/domain"
import type { Commit } from "./Commit.ts"
import type { LogError, LogUnavailable } from "./EventLog.ts"

/** What an open partition offers the cold tier. Every method is safe to call from any fiber. */
export interface SealTarget {
  readonly partition: number
  /** The partition's watermark now: only ranges at or below it may be sealed. */
  readonly watermark: () => number
  /**
   * The durable events of `[fromSeq, toSeq]` in sequence order, from the hot index (no I/O). Precondition:
   * `1 <= fromSeq <= toSeq <= watermark()`.
   */
  readonly readRange: (fromSeq: number, toSeq: number) => ReadonlyArray<Event.StoredEvent>
  /**
   * Drops whole log files (or messages) that hold only sequences below `seq`. The caller guarantees that every
   * sequence below `seq` is sealed durably and listed in the manifest; the partition checks `seq <= watermark + 1`.
   * A log driver that cannot truncate keeps its records (harmless: replay skips what the cold tier served).
   */
  readonly truncateLog: (seq: number) => Effect.Effect<void, LogError>
}

export interface ColdStoreShape {
  /**
   * Calls `onCommit` for every sealed event of `partition`, in sequence order starting at seq 1, and returns the
   * last sealed sequence (0: nothing sealed). Fails with `CorruptData` naming the segment when a segment fails its
   * checksum or its rows do not match the manifest: nothing of a damaged segment is served.
   */
  readonly replay: (
    partition: number,
    onCommit: (commit: Commit) => void
  ) => Effect.Effect<number, Errors.CorruptData | LogUnavailable>
  /** Registers an open partition with the cold tier until `Scope` closes (sealing policy, on-demand sealing). */
  readonly attach: (target: SealTarget) => Effect.Effect<void, never, Scope.Scope>
}

export class ColdStore extends Context.Service<ColdStore, ColdStoreShape>()("chronos/engine/ColdStore") {}
