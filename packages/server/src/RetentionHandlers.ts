/**
 * The handlers of the `retention` API group: set and get a stream's retention settings, delete a stream. Each is a
 * thin adapter over `@chronos/storage/Retention`, which owns the system events (`$metadata`, `$deleted`) and what
 * they hide; the rules apply to reads at once (`Retention.layerEnforced`) and are erased at the next seal.
 *
 * `?fork=` is refused (`InvalidRequest` on `query.fork`): a fork's engine does not apply retention, so a rule or a
 * tombstone written there would be silently ignored, and the store's rules must not be set through a fork.
 */
import { Effect, Schema } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Errors, ExpectedVersion, type RetentionApi } from "@chronos/domain"
import { Engine, type EngineShape } from "@chronos/engine/Engine"
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

const report = (stream: string, c: Retention.Current): RetentionApi.StreamRetention => ({
  stream,
  ...c.settings,
  ...(c.rules.deletedBefore === 0 ? {} : { deletedBefore: c.rules.deletedBefore }),
  ...(c.rules.hardDeletedBefore === 0 ? {} : { hardDeletedBefore: c.rules.hardDeletedBefore }),
  lastVersion: c.lastVersion
})

/** A one-event system append cannot exceed a limit: if it does, the limits are broken, not the request. */
const noLimit = <A, E>(effect: Effect.Effect<A, E | Errors.LimitExceeded>): Effect.Effect<A, Exclude<E, Errors.LimitExceeded>> =>
  Effect.catchIf(effect, (e): e is Errors.LimitExceeded => e instanceof Errors.LimitExceeded, (e) => Effect.die(e)) as never

const existing = (engine: EngineShape, tenant: string, stream: string) =>
  Effect.flatMap(Retention.current(engine, tenant, stream), (c) =>
    c.lastVersion === -1 ? Effect.fail(new Errors.StreamNotFound({ tenant, stream })) : Effect.succeed(c))

export const RetentionHandlers = HttpApiBuilder.group(
  Api,
  "retention",
  Effect.fnUntraced(function*(handlers) {
    // The node's engine (retention-enforcing); the helpers read the log as written through its router.
    const engine = yield* Engine
    return handlers.handleAll({
      set: ({ params, payload, query }) =>
        locate(Effect.gen(function*() {
          yield* noFork(query.fork)
          // Names first: an invalid id must not reach the append as a system event of an unnamed stream.
          yield* Retention.current(engine, params.tenant, params.stream)
          yield* noLimit(Retention.setSettings(engine, params.tenant, params.stream, payload))
          return report(params.stream, yield* Retention.current(engine, params.tenant, params.stream))
        })).pipe(Effect.catchTag("WrongExpectedVersion", (e) => Effect.die(e))),
      get: ({ params, query }) =>
        locate(Effect.gen(function*() {
          yield* noFork(query.fork)
          return report(params.stream, yield* existing(engine, params.tenant, params.stream))
        })),
      deleteStream: ({ params, query }) =>
        locate(Effect.gen(function*() {
          yield* noFork(query.fork)
          const expectedVersion = yield* expectedVersionOf(query.expectedVersion)
          const hard = query.hard === "true"
          // Deleting a stream that never existed would create one holding only a tombstone.
          yield* existing(engine, params.tenant, params.stream)
          const result = yield* noLimit(Retention.deleteStream(engine, params.tenant, params.stream, { hard, expectedVersion }))
          return {
            stream: params.stream,
            hard,
            version: result.lastVersion,
            position: result.positions[result.positions.length - 1]!
          }
        }))
    })
  })
)
