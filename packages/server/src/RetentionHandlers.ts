/**
 * The handlers of the `retention` API group: set and get a stream's retention settings, delete a stream. Each is a
 * thin adapter over `@chronos/storage/Retention` (`setRetention`, `getRetention`, `deleteExisting`, shared with the
 * SDK's in-process driver), which owns the system events (`$metadata`, `$deleted`) and what they hide; the rules
 * apply to reads at once (`Retention.layerEnforced`) and are erased at the next seal.
 *
 * `?fork=` is refused (`InvalidRequest` on `query.fork`): a fork's engine does not apply retention, so a rule or a
 * tombstone written there would be silently ignored, and the store's rules must not be set through a fork.
 */
import { Effect, Schema } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Errors, ExpectedVersion, Ids } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import * as Retention from "@chronos/storage/Retention"
import { Api } from "./HttpHandlers.ts"
import { locate } from "./internal/httpInput.ts"

const noFork = (fork: string | undefined): Effect.Effect<void, Errors.InvalidRequest> =>
  fork === undefined ? Effect.void : Effect.fail(
    new Errors.InvalidRequest({
      field: "query.fork",
      message: "retention and deletion apply to the store's streams only: forks do not apply them"
    })
  )

const decodeExpected = Schema.decodeUnknownOption(ExpectedVersion.ExpectedVersion)

/** `?expectedVersion=`: `any`, `no_stream`, `stream_exists` or a version. */
const expectedVersionOf = (
  value: string | undefined
): Effect.Effect<ExpectedVersion.ExpectedVersion | undefined, Errors.InvalidRequest> => {
  if (value === undefined) return Effect.succeed(undefined)
  const parsed = decodeExpected(/^\d{1,15}$/.test(value) ? Number(value) : value)
  return parsed._tag === "Some" ? Effect.succeed(parsed.value) : Effect.fail(
    new Errors.InvalidRequest({
      field: "query.expectedVersion",
      message: "expectedVersion is any, no_stream, stream_exists or a non-negative integer"
    })
  )
}

const isEventId = Schema.is(Ids.EventId)

/** `?eventId=`: the tombstone's id, a UUID (what makes a retried deletion idempotent). */
const eventIdOf = (value: string | undefined): Effect.Effect<string | undefined, Errors.InvalidRequest> =>
  value === undefined || isEventId(value) ? Effect.succeed(value) : Effect.fail(
    new Errors.InvalidRequest({ field: "query.eventId", message: "eventId is a UUID" })
  )

export const RetentionHandlers = HttpApiBuilder.group(
  Api,
  "retention",
  Effect.fnUntraced(function*(handlers) {
    // The node's engine (retention-enforcing); the helpers read the log as written through its router.
    const engine = yield* Engine
    return handlers.handleAll({
      set: ({ params, payload, query }) =>
        locate(Effect.andThen(noFork(query.fork), Retention.setRetention(engine, params.tenant, params.stream, payload))),
      get: ({ params, query }) =>
        locate(Effect.andThen(noFork(query.fork), Retention.getRetention(engine, params.tenant, params.stream))),
      deleteStream: ({ params, query }) =>
        locate(Effect.gen(function*() {
          yield* noFork(query.fork)
          const expectedVersion = yield* expectedVersionOf(query.expectedVersion)
          const eventId = yield* eventIdOf(query.eventId)
          return yield* Retention.deleteExisting(engine, params.tenant, params.stream, {
            hard: query.hard === "true",
            expectedVersion,
            eventId
          })
        }))
    })
  })
)
