/**
 * Events as clients propose them and as Chronos records them, and the shapes of appends and reads.
 * These schemas are the wire format of the HTTP API and of the SDK; the engine's in-memory form is `StoredEvent`
 * (epoch-millisecond timestamps, no branding), converted at the edge by `toRecorded`.
 */
import { Schema } from "effect"
import { ExpectedVersion } from "./ExpectedVersion.ts"
import { EventId, EventType } from "./Ids.ts"

/** An event to append. `eventId` makes the append idempotent; the server generates one when it is absent. */
export const ProposedEvent = Schema.Struct({
  eventId: Schema.optionalKey(EventId),
  type: EventType,
  data: Schema.Json,
  metadata: Schema.optionalKey(Schema.JsonObject)
})
export type ProposedEvent = typeof ProposedEvent.Type

/**
 * A proposed event from plain values, for code that builds events rather than decoding them (tests, tools,
 * benchmarks). The event id, when given, is checked here: a malformed one throws, as a bug in the caller.
 */
export const propose = (
  type: string,
  data: Schema.Json,
  options?: { readonly eventId?: string | undefined; readonly metadata?: Schema.JsonObject | undefined }
): ProposedEvent =>
  ProposedEvent.make({
    type: EventType.make(type),
    data,
    ...(options?.eventId === undefined ? {} : { eventId: EventId.make(options.eventId) }),
    ...(options?.metadata === undefined ? {} : { metadata: options.metadata })
  })

export const AppendRequest = Schema.Struct({
  expectedVersion: Schema.optionalKey(ExpectedVersion),
  events: Schema.Array(ProposedEvent).check(Schema.isMinLength(1))
})
export type AppendRequest = typeof AppendRequest.Type

export const Position = Schema.Struct({ partition: Schema.Int, seq: Schema.Int })
export type Position = typeof Position.Type

export const AppendResult = Schema.Struct({
  firstVersion: Schema.Int,
  lastVersion: Schema.Int,
  positions: Schema.Array(Position)
})
export type AppendResult = typeof AppendResult.Type

/** An event as it was committed. `timestamp` is ISO-8601 (UTC), assigned by the partition at commit. */
export const RecordedEvent = Schema.Struct({
  eventId: Schema.String,
  stream: Schema.String,
  type: Schema.String,
  data: Schema.Unknown,
  metadata: Schema.Unknown,
  timestamp: Schema.String,
  streamVersion: Schema.Int,
  partition: Schema.Int,
  seq: Schema.Int
})
export type RecordedEvent = typeof RecordedEvent.Type

/**
 * The engine's form of a committed event: plain, compact, immutable once committed. `timestamp` is epoch ms.
 * `data`/`metadata` are JSON values that are never mutated after the append that created them.
 */
export interface StoredEvent {
  readonly eventId: string
  readonly tenant: string
  readonly stream: string
  readonly type: string
  readonly data: unknown
  readonly metadata: Readonly<Record<string, unknown>>
  readonly timestamp: number
  readonly streamVersion: number
  readonly partition: number
  readonly seq: number
}

export const toRecorded = (e: StoredEvent): RecordedEvent => ({
  eventId: e.eventId,
  stream: e.stream,
  type: e.type,
  data: e.data,
  metadata: e.metadata,
  timestamp: new Date(e.timestamp).toISOString(),
  streamVersion: e.streamVersion,
  partition: e.partition,
  seq: e.seq
})

export const ReadResult = Schema.Struct({
  events: Schema.Array(RecordedEvent),
  /** Pass as `after` to continue a tenant-wide read; absent when the read reached the end. */
  next: Schema.optionalKey(Schema.String)
})
export type ReadResult = typeof ReadResult.Type

export const StateResult = Schema.Struct({
  stream: Schema.String,
  reducer: Schema.String,
  /** The version of the last event folded into `state` (-1: the stream had no events at that point). */
  version: Schema.Int,
  state: Schema.Unknown
})
export type StateResult = typeof StateResult.Type

/**
 * One replica of a partition's log as the log's leader sees it (the JetStream driver: the stream's Raft group, one
 * entry per NATS server holding a copy). A healthy R3 partition has three entries, one `leader`, all `current`.
 */
export const ReplicaStatus = Schema.Struct({
  /** NATS server name. */
  name: Schema.String,
  leader: Schema.Boolean,
  /** Caught up with the leader (the leader itself always is). */
  current: Schema.Boolean,
  /** Considered offline by the group. */
  offline: Schema.Boolean,
  /** Replication operations behind the leader (0 for the leader). */
  lag: Schema.Int,
  /** Milliseconds since the leader last heard from this replica (0 for the leader). */
  activeMs: Schema.Number
})
export type ReplicaStatus = typeof ReplicaStatus.Type

export const PartitionStatus = Schema.Struct({
  partition: Schema.Int,
  /** Last sequence assigned (may be above the watermark while a commit is in flight). */
  seq: Schema.Int,
  /** Highest sequence such that it and everything below it is durable; readers never see above it. */
  watermark: Schema.Int,
  owner: Schema.String,
  events: Schema.Int,
  streams: Schema.Int,
  /** The replicas of the partition's log, when its driver replicates (JetStream); absent otherwise. */
  replicas: Schema.optionalKey(Schema.Array(ReplicaStatus))
})
export type PartitionStatus = typeof PartitionStatus.Type

export const PartitionsResult = Schema.Struct({
  partitions: Schema.Array(PartitionStatus)
})
export type PartitionsResult = typeof PartitionsResult.Type
