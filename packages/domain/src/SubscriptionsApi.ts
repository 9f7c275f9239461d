/**
 * The wire vocabulary of subscriptions, consumer groups and projections, and their HTTP endpoints
 * (`SubscriptionsGroup`, part of `ChronosApi`): request and response shapes, the SSE events of a streaming
 * subscription, and the errors a caller can act on (a group or projection that does not exist, a definition that
 * conflicts with the stored one).
 *
 *  - `GET  /v1/tenants/{tenant}/subscribe` — Server-Sent Events: catch-up, then `caught-up`, then live;
 *  - `/v1/tenants/{tenant}/consumers/{name}[/next|/ack|/nack|/parked|/parked/replay]` — durable consumer groups;
 *  - `/v1/tenants/{tenant}/projections/{name}[/state|/start|/stop|/reset|/rebuild]` — managed projections.
 */
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "effect/http-api"
import { CorruptData, InvalidRequest, LimitExceeded, Unavailable } from "./Errors.ts"
import { RecordedEvent } from "./Event.ts"

// ---- errors -------------------------------------------------------------------------------------------------------

export class ConsumerGroupNotFound extends Schema.TaggedError<ConsumerGroupNotFound>()(
  "ConsumerGroupNotFound",
  { tenant: Schema.String, name: Schema.String },
  { httpApiStatus: 404 }
) {}

export class ProjectionNotFound extends Schema.TaggedError<ProjectionNotFound>()(
  "ProjectionNotFound",
  { tenant: Schema.String, name: Schema.String },
  { httpApiStatus: 404 }
) {}

/**
 * A consumer group or projection of that name exists with another definition. Nothing was changed; define it
 * under another name, or (projections) pass `replace: true` to discard its state and rebuild it.
 */
export class DefinitionConflict extends Schema.TaggedError<DefinitionConflict>()(
  "DefinitionConflict",
  { kind: Schema.Literals(["consumer", "projection"]), name: Schema.String, message: Schema.String },
  { httpApiStatus: 409 }
) {}

// ---- subscriptions ------------------------------------------------------------------------------------------------

/** Which events a subscription, group or projection sees: all of a tenant's by default. */
export const Filter = Schema.Struct({
  /** Only these event types. */
  types: Schema.optionalKey(Schema.Array(Schema.String)),
  /** Only this stream (read from its partition alone). */
  stream: Schema.optionalKey(Schema.String),
  /** Only streams whose id starts with this. */
  streamPrefix: Schema.optionalKey(Schema.String)
})
export type Filter = typeof Filter.Type

/** `event: caught-up` — the history that existed when the subscription started has been delivered. */
export const CaughtUpData = Schema.Struct({ position: Schema.String })
/** `event: lagging` — the subscriber is `lag` events behind the head, over `max` (`subscriberLagEventsMax`). */
export const LaggingData = Schema.Struct({ lag: Schema.Int, max: Schema.Int, position: Schema.String })
/** `event: error` — the subscription stopped (the stream ends); reconnect with `Last-Event-ID` to resume. */
export const ErrorData = Schema.Struct({ _tag: Schema.String, message: Schema.String })

/**
 * The SSE events of `GET /v1/tenants/{tenant}/subscribe`. An event is a default (`message`) SSE event whose `data`
 * is the event as JSON (as in reads) and whose `id` is the position token right after it; sending that id back as
 * `Last-Event-ID` (or `from`) resumes exactly after it. `: keepalive` comments are sent while idle.
 */
export const SubscriptionEvent = Schema.Union([
  Schema.Struct({ event: Schema.Literal("message"), id: Schema.optional(Schema.String), data: Schema.fromJsonString(RecordedEvent) }),
  Schema.Struct({ event: Schema.Literal("caught-up"), id: Schema.optional(Schema.String), data: Schema.fromJsonString(CaughtUpData) }),
  Schema.Struct({ event: Schema.Literal("lagging"), id: Schema.optional(Schema.String), data: Schema.fromJsonString(LaggingData) }),
  Schema.Struct({ event: Schema.Literal("error"), id: Schema.optional(Schema.String), data: Schema.fromJsonString(ErrorData) })
])
export type SubscriptionEvent = typeof SubscriptionEvent.Type

// ---- consumer groups ----------------------------------------------------------------------------------------------

export const CreateConsumerRequest = Schema.Struct({
  ...Filter.fields,
  /** Where a new group starts: `start` (default), `now`, or a position token. Ignored if the group exists. */
  from: Schema.optionalKey(Schema.String)
})
export type CreateConsumerRequest = typeof CreateConsumerRequest.Type

export const PartitionLag = Schema.Struct({
  partition: Schema.Int,
  /** Everything at or below this sequence is acknowledged or parked (or does not match the filter). */
  position: Schema.Int,
  watermark: Schema.Int,
  /** `watermark − position`: events of the partition not yet behind the group (matching or not). */
  lag: Schema.Int
})

export const ConsumerStatus = Schema.Struct({
  tenant: Schema.String,
  name: Schema.String,
  filter: Filter,
  createdAt: Schema.String,
  /** The group's durable checkpoint as a position token. */
  position: Schema.String,
  lag: Schema.Struct({ total: Schema.Int, partitions: Schema.Array(PartitionLag) }),
  pending: Schema.Struct({
    /** Read from the log, waiting for a `next`. */
    ready: Schema.Int,
    /** Delivered, waiting for an ack (or the ack timeout). */
    inFlight: Schema.Int,
    /** Failed at least once, waiting for their backoff. */
    retrying: Schema.Int,
    /** Parked events sent back for delivery by a replay. */
    replaying: Schema.Int
  }),
  parked: Schema.Int,
  stats: Schema.Struct({
    delivered: Schema.Int,
    acked: Schema.Int,
    nacked: Schema.Int,
    expired: Schema.Int,
    parked: Schema.Int
  })
})
export type ConsumerStatus = typeof ConsumerStatus.Type

export const Delivery = Schema.Struct({
  /** `partition:seq` of the event; acknowledge with it (or with the event id). */
  deliveryId: Schema.String,
  /** 1 for the first delivery of the event, then 2, 3, … up to `consumerAttemptsMax`. */
  attempt: Schema.Int,
  event: RecordedEvent
})
export type Delivery = typeof Delivery.Type

export const DeliveriesResult = Schema.Struct({ deliveries: Schema.Array(Delivery) })

export const AckRequest = Schema.Struct({
  /** Delivery ids (`partition:seq`) or event ids. */
  ids: Schema.Array(Schema.String).check(Schema.isMinLength(1))
})

export const AckResult = Schema.Struct({
  acked: Schema.Int,
  /** Ids that matched no pending delivery (already acknowledged, parked, or unknown): nothing was done for them. */
  unknown: Schema.Array(Schema.String)
})

export const NackRequest = Schema.Struct({
  ids: Schema.Array(Schema.String).check(Schema.isMinLength(1)),
  /** Retry no earlier than this (default: the exponential backoff of the attempt). */
  delayMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))
})

export const NackResult = Schema.Struct({
  /** Scheduled for another attempt. */
  retrying: Schema.Int,
  /** Out of attempts: parked. */
  parked: Schema.Int,
  unknown: Schema.Array(Schema.String)
})

export const ParkedEvent = Schema.Struct({
  deliveryId: Schema.String,
  partition: Schema.Int,
  seq: Schema.Int,
  eventId: Schema.String,
  stream: Schema.String,
  type: Schema.String,
  attempts: Schema.Int,
  parkedAt: Schema.String,
  reason: Schema.String,
  event: Schema.optionalKey(RecordedEvent)
})
export type ParkedEvent = typeof ParkedEvent.Type

export const ParkedResult = Schema.Struct({ parked: Schema.Array(ParkedEvent) })

export const ReplayRequest = Schema.Struct({
  /** Parked delivery ids or event ids to replay; all parked events when absent. */
  ids: Schema.optionalKey(Schema.Array(Schema.String))
})

export const ReplayResult = Schema.Struct({ replayed: Schema.Int, unknown: Schema.Array(Schema.String) })

export const NamesResult = Schema.Struct({ names: Schema.Array(Schema.String) })

// ---- projections --------------------------------------------------------------------------------------------------

/**
 * A declarative projection: safe to run on the server (no user code). Per key (`groupBy`: the stream, the event
 * type, or the value of a top-level field of the event's data), one of:
 *  - `count`: the number of events;
 *  - `sum`: the sum of the numeric data field `field` (events without it are skipped);
 *  - `last`: the last event's data (or its field `field`, when given and present).
 */
export const ProjectionDefinition = Schema.Struct({
  kind: Schema.Literals(["count", "sum", "last"]),
  field: Schema.optionalKey(Schema.String),
  groupBy: Schema.Union([Schema.Literals(["stream", "type"]), Schema.Struct({ dataField: Schema.String })]),
  ...Filter.fields
})
export type ProjectionDefinition = typeof ProjectionDefinition.Type

export const DefineProjectionRequest = Schema.Struct({
  ...ProjectionDefinition.fields,
  /** Start running once defined (default true). */
  start: Schema.optionalKey(Schema.Boolean),
  /** Replace an existing projection with another definition: its state is discarded and rebuilt. */
  replace: Schema.optionalKey(Schema.Boolean)
})
export type DefineProjectionRequest = typeof DefineProjectionRequest.Type

export const ProjectionProgress = Schema.Struct({
  /** Sum of the projection's position over its partitions: log events examined (matching or not). */
  positionEvents: Schema.Int,
  /** Sum of the watermarks over the same partitions. */
  headEvents: Schema.Int,
  remainingEvents: Schema.Int,
  /** Log events examined per second, recently. */
  eventsPerSecond: Schema.Number,
  /** Estimated time to reach the head at that rate (absent while the rate is unknown). */
  etaMs: Schema.optionalKey(Schema.Number),
  /** `positionEvents / headEvents` in [0, 1]. */
  fraction: Schema.Number
})

export const ProjectionStatus = Schema.Struct({
  tenant: Schema.String,
  name: Schema.String,
  /** The declarative definition, or `{ kind: "custom", reducer }` for an SDK projection with a function reducer. */
  definition: Schema.Unknown,
  status: Schema.Literals(["running", "stopped", "failed"]),
  /** `catching-up` until it first reached the head, then `live`; `idle` when not running here. */
  phase: Schema.Literals(["catching-up", "live", "idle"]),
  error: Schema.optionalKey(Schema.String),
  /** The position of the state (`state` folds exactly the matching events up to it). */
  position: Schema.String,
  /** Matching events folded into the state since it was last reset. */
  processedEvents: Schema.Int,
  keys: Schema.Int,
  progress: ProjectionProgress,
  /** When state and position were last written durably (together). */
  checkpointedAt: Schema.optionalKey(Schema.String),
  owner: Schema.optionalKey(Schema.String),
  state: Schema.optionalKey(Schema.Unknown)
})
export type ProjectionStatus = typeof ProjectionStatus.Type

export const ProjectionStateResult = Schema.Struct({
  name: Schema.String,
  position: Schema.String,
  key: Schema.optionalKey(Schema.String),
  /** The whole state, or the key's value (null when the key has none). */
  value: Schema.Unknown
})
export type ProjectionStateResult = typeof ProjectionStateResult.Type

// ---- endpoints ----------------------------------------------------------------------------------------------------

const tenantParams = { tenant: Schema.String }
const nameParams = { tenant: Schema.String, name: Schema.String }
const groupErrors = [InvalidRequest, ConsumerGroupNotFound, Unavailable]
const projectionErrors = [InvalidRequest, ProjectionNotFound, Unavailable]

export class SubscriptionsGroup extends HttpApiGroup.make("subscriptions")
  .add(
    HttpApiEndpoint.get("subscribe", "/v1/tenants/:tenant/subscribe", {
      params: tenantParams,
      query: {
        /** `start` (default), `now`, or a position token; `Last-Event-ID` takes precedence. */
        from: Schema.optionalKey(Schema.String),
        types: Schema.optionalKey(Schema.String),
        stream: Schema.optionalKey(Schema.String),
        streamPrefix: Schema.optionalKey(Schema.String)
      },
      headers: { "last-event-id": Schema.optionalKey(Schema.String) },
      success: HttpApiSchema.StreamSse({ events: SubscriptionEvent }),
      error: [InvalidRequest, Unavailable, CorruptData]
    }),
    HttpApiEndpoint.get("listConsumers", "/v1/tenants/:tenant/consumers", {
      params: tenantParams,
      success: NamesResult,
      error: [InvalidRequest, Unavailable]
    }),
    HttpApiEndpoint.post("createConsumer", "/v1/tenants/:tenant/consumers/:name", {
      params: nameParams,
      payload: CreateConsumerRequest,
      success: ConsumerStatus,
      error: [InvalidRequest, LimitExceeded, DefinitionConflict, Unavailable]
    }),
    HttpApiEndpoint.get("consumer", "/v1/tenants/:tenant/consumers/:name", {
      params: nameParams,
      success: ConsumerStatus,
      error: groupErrors
    }),
    HttpApiEndpoint.get("next", "/v1/tenants/:tenant/consumers/:name/next", {
      params: nameParams,
      query: { max: Schema.optionalKey(Schema.String), waitMs: Schema.optionalKey(Schema.String) },
      success: DeliveriesResult,
      error: [InvalidRequest, LimitExceeded, ConsumerGroupNotFound, Unavailable, CorruptData]
    }),
    HttpApiEndpoint.post("ack", "/v1/tenants/:tenant/consumers/:name/ack", {
      params: nameParams,
      payload: AckRequest,
      success: AckResult,
      error: groupErrors
    }),
    HttpApiEndpoint.post("nack", "/v1/tenants/:tenant/consumers/:name/nack", {
      params: nameParams,
      payload: NackRequest,
      success: NackResult,
      error: groupErrors
    }),
    HttpApiEndpoint.get("parked", "/v1/tenants/:tenant/consumers/:name/parked", {
      params: nameParams,
      query: { limit: Schema.optionalKey(Schema.String) },
      success: ParkedResult,
      error: [InvalidRequest, LimitExceeded, ConsumerGroupNotFound, Unavailable, CorruptData]
    }),
    HttpApiEndpoint.post("replayParked", "/v1/tenants/:tenant/consumers/:name/parked/replay", {
      params: nameParams,
      payload: ReplayRequest,
      success: ReplayResult,
      error: groupErrors
    }),
    HttpApiEndpoint.get("listProjections", "/v1/tenants/:tenant/projections", {
      params: tenantParams,
      success: NamesResult,
      error: [InvalidRequest, Unavailable]
    }),
    HttpApiEndpoint.post("defineProjection", "/v1/tenants/:tenant/projections/:name", {
      params: nameParams,
      payload: DefineProjectionRequest,
      success: ProjectionStatus,
      error: [InvalidRequest, LimitExceeded, DefinitionConflict, Unavailable]
    }),
    HttpApiEndpoint.get("projection", "/v1/tenants/:tenant/projections/:name", {
      params: nameParams,
      success: ProjectionStatus,
      error: projectionErrors
    }),
    HttpApiEndpoint.get("projectionState", "/v1/tenants/:tenant/projections/:name/state", {
      params: nameParams,
      query: { key: Schema.optionalKey(Schema.String) },
      success: ProjectionStateResult,
      error: projectionErrors
    }),
    HttpApiEndpoint.post("startProjection", "/v1/tenants/:tenant/projections/:name/start", {
      params: nameParams,
      success: ProjectionStatus,
      error: projectionErrors
    }),
    HttpApiEndpoint.post("stopProjection", "/v1/tenants/:tenant/projections/:name/stop", {
      params: nameParams,
      success: ProjectionStatus,
      error: projectionErrors
    }),
    HttpApiEndpoint.post("resetProjection", "/v1/tenants/:tenant/projections/:name/reset", {
      params: nameParams,
      success: ProjectionStatus,
      error: projectionErrors
    }),
    HttpApiEndpoint.post("rebuildProjection", "/v1/tenants/:tenant/projections/:name/rebuild", {
      params: nameParams,
      success: ProjectionStatus,
      error: projectionErrors
    })
  )
  .annotateMerge(OpenApi.annotations({
    title: "Subscriptions",
    description: "Catch-up + live subscriptions (Server-Sent Events), durable consumer groups, managed projections"
  })) {}
