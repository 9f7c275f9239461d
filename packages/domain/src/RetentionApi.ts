/**
 * The retention part of the HTTP API: a stream's retention settings (`PUT`/`GET …/streams/:stream/retention`) and
 * stream deletion (`DELETE …/streams/:stream`). These are the only public way to write the system events that carry
 * the rules (`$metadata`, `$deleted`; see `@chronos/storage/Retention`): the append endpoint refuses `$`-types, so a
 * client cannot forge a tombstone or a rule through it. Kept in its own group; `Api.ChronosApi` only adds it.
 */
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "effect/http-api"
import { InvalidRequest, LimitExceeded, StreamNotFound, Unavailable, WrongExpectedVersion } from "./Errors.ts"
import { Position } from "./Event.ts"

const positive = (field: string) =>
  Schema.Int.check(Schema.isGreaterThan(0, { message: `${field} must be a positive integer` }))

/**
 * A stream's retention settings. Each one hides (at once) and erases (at the next seal or compaction) events:
 * older than `maxAgeMs` ms, not among the last `maxCount` versions, or with a version below `truncateBefore`.
 * A `PUT` replaces every setting: an absent one is no longer applied (`{}` clears them all).
 */
export const RetentionSettings = Schema.Struct({
  maxAgeMs: Schema.optionalKey(positive("maxAgeMs")),
  maxCount: Schema.optionalKey(positive("maxCount")),
  truncateBefore: Schema.optionalKey(positive("truncateBefore"))
})
export type RetentionSettings = typeof RetentionSettings.Type

/** The rules in effect for a stream. */
export const StreamRetention = Schema.Struct({
  stream: Schema.String,
  maxAgeMs: Schema.optionalKey(Schema.Int),
  maxCount: Schema.optionalKey(Schema.Int),
  truncateBefore: Schema.optionalKey(Schema.Int),
  /** Present once the stream was deleted: versions below it are hidden (the tombstones themselves stay visible). */
  deletedBefore: Schema.optionalKey(Schema.Int),
  /** Present once the stream was hard-deleted: versions below it are erased at the next seal or compaction. */
  hardDeletedBefore: Schema.optionalKey(Schema.Int),
  /** The stream's current version (its last event, system events included). */
  lastVersion: Schema.Int
})
export type StreamRetention = typeof StreamRetention.Type

export const DeleteStreamResult = Schema.Struct({
  stream: Schema.String,
  hard: Schema.Boolean,
  /** The tombstone's version: a later append continues at the next one. */
  version: Schema.Int,
  position: Position
})
export type DeleteStreamResult = typeof DeleteStreamResult.Type

const streamParams = { tenant: Schema.String, stream: Schema.String }
/** Declared so that it is refused by name: forks do not apply retention (see the server's `RetentionHandlers`). */
const fork = Schema.optionalKey(Schema.String)

export class RetentionGroup extends HttpApiGroup.make("retention")
  .add(
    HttpApiEndpoint.put("set", "/v1/tenants/:tenant/streams/:stream/retention", {
      params: streamParams,
      query: { fork },
      payload: RetentionSettings,
      success: StreamRetention,
      error: [InvalidRequest, LimitExceeded, Unavailable]
    }),
    HttpApiEndpoint.get("get", "/v1/tenants/:tenant/streams/:stream/retention", {
      params: streamParams,
      query: { fork },
      success: StreamRetention,
      error: [InvalidRequest, StreamNotFound, Unavailable]
    }),
    HttpApiEndpoint.delete("deleteStream", "/v1/tenants/:tenant/streams/:stream", {
      params: streamParams,
      query: {
        hard: Schema.optionalKey(Schema.Literals(["true", "false"])),
        expectedVersion: Schema.optionalKey(Schema.String),
        /**
         * The tombstone's event id (a UUID). A retry with the same id writes nothing and answers the original
         * tombstone, like a retried append; the SDK sets one before its first attempt.
         */
        eventId: Schema.optionalKey(Schema.String),
        fork
      },
      success: DeleteStreamResult,
      error: [InvalidRequest, WrongExpectedVersion, StreamNotFound, Unavailable]
    })
  )
  .annotateMerge(OpenApi.annotations({
    title: "Retention",
    description: "Per-stream retention (maxAgeMs, maxCount, truncateBefore) and stream deletion: soft (a tombstone " +
      "hides the stream's events; versions continue) or hard (also erased at the next seal or compaction)"
  })) {}
