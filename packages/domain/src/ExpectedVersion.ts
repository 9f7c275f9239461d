/**
 * Optimistic concurrency: what the writer believes about a stream before appending to it.
 * `any` skips the check; `no_stream` requires an empty stream; `stream_exists` a non-empty one; a number requires
 * that exact current version (the version of the stream's last event).
 */
import { Schema } from "effect"

export const ExpectedVersion = Schema.Union([
  Schema.Literals(["any", "no_stream", "stream_exists"]),
  Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
])
export type ExpectedVersion = typeof ExpectedVersion.Type

/**
 * Whether a stream whose current version is `current` (-1 when it has no events) satisfies `expected`.
 */
export const isSatisfied = (expected: ExpectedVersion, current: number): boolean => {
  switch (expected) {
    case "any":
      return true
    case "no_stream":
      return current === -1
    case "stream_exists":
      return current >= 0
    default:
      return current === expected
  }
}
