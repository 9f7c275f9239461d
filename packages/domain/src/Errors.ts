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

/**
 * Stored data failed its checksum (a sealed segment, a log record): it is never served silently. `location` names
 * the damaged file (segment, log file and byte). HTTP 502: the node's own storage answered it with invalid data —
 * like a gateway whose upstream did — which neither the request (4xx) nor a retry (503 `Unavailable`) can fix; the
 * `_tag` tells it apart from a proxy's 502. Reads that do not need the damaged data are unaffected.
 */
export class CorruptData extends Schema.TaggedError<CorruptData>()(
  "CorruptData",
  { location: Schema.String, message: Schema.String },
  { httpApiStatus: 502 }
) {}

export type AppendError = WrongExpectedVersion | InvalidRequest | LimitExceeded | Unavailable
export type ReadError = InvalidRequest | LimitExceeded | Unavailable | StreamNotFound | CorruptData
