/**
 * The vocabulary of copy-on-write forks: fork ids, the fork record as clients see it, the create / diff / merge
 * requests and results, and the two errors only forks produce. A fork is a sandbox over a tenant's history: it sees
 * its parent's events at or below `base` (a position vector), writes only to its own log, and changes its parent
 * only through an explicit merge. The engine side lives in `@chronos/engine/Forks`; the HTTP group in `ForksApi`.
 */
import { Schema } from "effect"
import { RecordedEvent } from "./Event.ts"

/**
 * A fork id: lowercase letters, digits and `-`. It names a directory (file log), part of a JetStream stream name and
 * a URL segment, so nothing else is allowed. The server generates ids as `f` + 16 hex digits.
 */
export const ForkId = Schema.String.check(
  Schema.isPattern(/^[a-z0-9][a-z0-9-]{0,63}$/, { message: "a fork id is lowercase letters, digits and '-'" })
).pipe(Schema.brand("ForkId"))
export type ForkId = typeof ForkId.Type

/** The parent of a fork created without one: the tenant's real history. */
export const mainParent = "main"

/** A fork as the API shows it. */
export const ForkInfo = Schema.Struct({
  forkId: Schema.String,
  tenant: Schema.String,
  /** `main`, or the id of the fork this one branched from. */
  parent: Schema.String,
  /**
   * The parent's position vector the fork continues from (`p:seq,…`, every partition): the fork sees the parent's
   * events at or below it. Usable as `asOf` on the parent to see what the fork started from.
   */
  base: Schema.String,
  ttlSeconds: Schema.Int,
  createdAt: Schema.String,
  /** After this instant the fork is gone: reads answer `ForkNotFound` and its log is deleted. */
  expiresAt: Schema.String,
  labels: Schema.Record(Schema.String, Schema.String)
})
export type ForkInfo = typeof ForkInfo.Type

export const CreateForkRequest = Schema.Struct({
  /** Time to live, seconds (at most `forkTtlSecondsMax`; a branch never outlives its parent). */
  ttlSeconds: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  /** Fork the parent as it was: an ISO-8601 instant or a position vector `p:seq,…`. Default: now. */
  asOf: Schema.optionalKey(Schema.String),
  /** `main` (default) or a fork id of the same tenant (a branch). */
  parent: Schema.optionalKey(Schema.String),
  /** Free-form tags (who made it, why), returned by list and get. */
  labels: Schema.optionalKey(Schema.Record(Schema.String, Schema.String))
})
export type CreateForkRequest = typeof CreateForkRequest.Type

export const ForkList = Schema.Struct({ forks: Schema.Array(ForkInfo) })
export type ForkList = typeof ForkList.Type

/** What a fork added to one stream: its own events, in version order. */
export const DiffStream = Schema.Struct({
  stream: Schema.String,
  /** The stream's version in the parent at `base` (-1: the stream is new in the fork). */
  baseVersion: Schema.Int,
  events: Schema.Array(RecordedEvent)
})
export type DiffStream = typeof DiffStream.Type

export const DiffResult = Schema.Struct({
  forkId: Schema.String,
  parent: Schema.String,
  base: Schema.String,
  /** Events the fork holds in all. */
  events: Schema.Int,
  streams: Schema.Array(DiffStream)
})
export type DiffResult = typeof DiffResult.Type

export const MergeRequest = Schema.Struct({
  /** Check every stream and report, write nothing. */
  dryRun: Schema.optionalKey(Schema.Boolean)
})
export type MergeRequest = typeof MergeRequest.Type

/** An event of the parent that the fork did not see (it came after `base`): the cause of a conflict. */
export const ParentEvent = Schema.Struct({
  eventId: Schema.String,
  type: Schema.String,
  streamVersion: Schema.Int,
  timestamp: Schema.String
})
export type ParentEvent = typeof ParentEvent.Type

/**
 * A stream's outcome:
 *  - `merged`: the fork's events are in the parent (appended now, or found there from an earlier merge);
 *  - `mergeable`: a dry run found nothing in the way;
 *  - `conflict`: the parent has events after `baseVersion` that are not this fork's (listed in `conflicts`);
 *  - `tooLarge`: the stream's fork events do not fit in one append (`appendEventsMax`, `commitBytesMax`), so they
 *    cannot be merged atomically.
 */
export const MergeStreamStatus = Schema.Literals(["merged", "mergeable", "conflict", "tooLarge"])
export type MergeStreamStatus = typeof MergeStreamStatus.Type

export const MergeStream = Schema.Struct({
  stream: Schema.String,
  status: MergeStreamStatus,
  baseVersion: Schema.Int,
  /** The fork's events of this stream. */
  events: Schema.Int,
  /** Of those, how many this call appended to the parent (0 in a dry run, and when an earlier merge did). */
  appended: Schema.Int,
  /** The parent's version of the stream when it was checked. */
  parentVersion: Schema.Int,
  /** The versions the fork's events have in the parent, once merged (the same as in the fork). */
  firstVersion: Schema.optionalKey(Schema.Int),
  lastVersion: Schema.optionalKey(Schema.Int),
  /** The parent's events after `baseVersion` that are not the fork's (the first `forkMergeConflictEventsMax`). */
  conflicts: Schema.optionalKey(Schema.Array(ParentEvent)),
  message: Schema.optionalKey(Schema.String)
})
export type MergeStream = typeof MergeStream.Type

export const MergeResult = Schema.Struct({
  forkId: Schema.String,
  parent: Schema.String,
  dryRun: Schema.Boolean,
  /** `merged`: done; `mergeable`: a dry run found no conflict; `conflict`: a dry run found one. */
  status: Schema.Literals(["merged", "mergeable", "conflict"]),
  streams: Schema.Array(MergeStream)
})
export type MergeResult = typeof MergeResult.Type

export const DiscardResult = Schema.Struct({
  /** The fork and every fork branched from it (a branch cannot outlive the history it reads). */
  discarded: Schema.Array(Schema.String)
})
export type DiscardResult = typeof DiscardResult.Type

/** No such fork for this tenant: never created, discarded, or expired. */
export class ForkNotFound extends Schema.TaggedError<ForkNotFound>()(
  "ForkNotFound",
  { tenant: Schema.String, forkId: Schema.String },
  { httpApiStatus: 404 }
) {}

/**
 * A merge found streams the parent changed after `base`. Every stream was checked before anything was written, so
 * nothing was merged (`partial: false`) — unless the parent changed between the check and the writes, in which
 * case `partial` is true and `streams` says which streams were merged; a retry is safe (merged events are
 * recognised by their ids).
 */
export class ForkMergeConflict extends Schema.TaggedError<ForkMergeConflict>()(
  "ForkMergeConflict",
  {
    forkId: Schema.String,
    parent: Schema.String,
    partial: Schema.Boolean,
    streams: Schema.Array(MergeStream),
    message: Schema.String
  },
  { httpApiStatus: 409 }
) {}
