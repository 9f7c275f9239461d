/**
 * Errors a caller can act on. Each is a tagged value with an HTTP status, the same in the server, the HTTP client
 * and the embedded SDK, so that code handling `WrongExpectedVersion` works whichever way it talks to Chronos.
 */
import { Schema } from "effect"
import { ExpectedVersion } from "./ExpectedVersion.ts"

/** The stream is not at the version the writer expected; nothing was written. `actual` is -1 for no stream. */
export class WrongExpectedVersion extends Schema.TaggedError<WrongExpectedVersion>()(
  "WrongExpectedVersion",
  { stream: Schema.String, expected: ExpectedVersion, actual: Schema.Int },
  { httpApiStatus: 409 }
) {}

export class StreamNotFound extends Schema.TaggedError<StreamNotFound>()(
  "StreamNotFound",
  { tenant: Schema.String, stream: Schema.String },
  { httpApiStatus: 404 }
) {}

/** The request is malformed; `field` names the offending part (`body`, `events[3].type`, `query.limit`, …). */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  { field: Schema.String, message: Schema.String },
  { httpApiStatus: 400 }
) {}

/** A named limit was exceeded by the request (see `config/ChronosConfig.ts` for every limit and its default). */
export class LimitExceeded extends Schema.TaggedError<LimitExceeded>()(
  "LimitExceeded",
  { limit: Schema.String, max: Schema.Number, actual: Schema.Number, message: Schema.String },
  { httpApiStatus: 400 }
) {}

/**
 * The store cannot serve the request now (log unreachable, partition moving, overloaded). Retrying with the same
 * event ids is safe: appends are idempotent.
 */
export class Unavailable extends Schema.TaggedError<Unavailable>()(
  "Unavailable",
  { message: Schema.String, retryable: Schema.Boolean },
  { httpApiStatus: 503 }
) {}

/** Stored data failed its checksum; it is never served silently. */
export class CorruptData extends Schema.TaggedError<CorruptData>()(
  "CorruptData",
  { location: Schema.String, message: Schema.String },
  { httpApiStatus: 500 }
) {}

export type AppendError = WrongExpectedVersion | InvalidRequest | LimitExceeded | Unavailable
export type ReadError = InvalidRequest | LimitExceeded | Unavailable | StreamNotFound | CorruptData
