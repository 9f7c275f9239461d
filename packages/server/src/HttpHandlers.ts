/**
 * The handlers of `ChronosApi`: one `HttpApiBuilder.group` layer per API group, each a thin adapter over the
 * `Engine`. This module owns only the HTTP-to-engine translation: strings from the path and query become numbers
 * and lists (failing with an `InvalidRequest` that names the HTTP location, e.g. `query.limit`), engine events
 * become wire events (`Event.toRecorded`), and engine field names in errors become HTTP locations.
 * Validation against the limits and the identifier rules stays in the engine, so every surface enforces the same.
 * Append and read share their code (`internal/streamRoutes.ts`) with the node's direct path for those two hot
 * requests (`internal/directPath.ts`), so both answer alike. With `?fork=<forkId>` a stream or query request goes to
 * that fork's engine (`Forks.engine`) instead of the store's, through the same code; `Forks` applies the store's
 * retention and deletions to it (`Retention.layerForkReadPolicy`: a fork must not show what the store hides).
 */
import { Context, Effect, Layer, Schema } from "effect"
import { HttpServerResponse } from "effect/http"
import { HttpApi, HttpApiBuilder } from "effect/http-api"
import { Api as DomainApi, type Errors, Fork } from "@chronos/domain"
import { Engine, type EngineShape } from "@chronos/engine/Engine"
import { Forks } from "@chronos/engine/Forks"
import { locate, optionalInt, requiredInt, surfaceReadDefects, typeList } from "./internal/httpInput.ts"
import * as StreamRoutes from "./internal/streamRoutes.ts"

/**
 * `ChronosApi` as the server runs it: request bodies are decoded strictly, so an unknown field (a typo such as
 * `expectedVerison`) is a 400 naming it instead of being silently dropped. Only the payload is strict: header
 * decoding must tolerate transport headers. The OpenAPI document is generated from this value.
 */
export const Api = DomainApi.ChronosApi.annotate(HttpApi.PayloadParseOptions, { onExcessProperty: "error" })

/** A 200 whose JSON body is already serialized (see `internal/streamRoutes.ts`). */
const ok = (body: string): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(body, { contentType: "application/json" })

const encodeForkNotFound = Schema.encodeSync(Fork.ForkNotFound)

/**
 * Runs `f` on the engine a request addresses: the store's, or with `?fork=` that fork's. A fork that is unknown,
 * another tenant's, discarded or expired is a 404 `ForkNotFound`, answered here with the body HttpApi gives a
 * declared error: these endpoints do not declare it, because that would change the SDK's types (see `Api`).
 */
const onEngine = Effect.fnUntraced(function*() {
  const engine = yield* Engine
  const forks = yield* Forks
  return <A, E>(
    tenant: string,
    fork: string | undefined,
    f: (engine: EngineShape) => Effect.Effect<A, E>
  ): Effect.Effect<A | HttpServerResponse.HttpServerResponse, E | Errors.InvalidRequest | Errors.Unavailable> =>
    fork === undefined ? f(engine) : Effect.matchEffect(locate(forks.engine(tenant, fork)), {
      onFailure: (error): Effect.Effect<HttpServerResponse.HttpServerResponse, Errors.InvalidRequest | Errors.Unavailable> =>
        error._tag === "ForkNotFound"
          ? Effect.succeed(HttpServerResponse.jsonUnsafe(encodeForkNotFound(error), { status: 404 }))
          : Effect.fail(error),
      onSuccess: (fork) => f(fork)
    })
})

/** `?fork=` of the append, read from the URL (the endpoint declares no query; see `Api`). */
const forkOfUrl = (url: string): string | undefined => {
  const q = url.indexOf("?")
  return q === -1 ? undefined : new URLSearchParams(url.slice(q + 1)).get("fork") ?? undefined
}

/** The runner address of this node in its cluster (`Node.Options.runnerAddress`); absent for a node on its own. */
export const RunnerAddress = Context.Reference<string | undefined>("chronos/server/RunnerAddress", {
  defaultValue: () => undefined
})

/** `GET /health`, `GET /v1/partitions`. */
export const SystemHandlers = HttpApiBuilder.group(
  Api,
  "system",
  Effect.fnUntraced(function*(handlers) {
    const engine = yield* Engine
    // A cluster runner names itself as `/v1/partitions` names owners: owner-aware clients map one to the other.
    const runner = yield* RunnerAddress
    const health = Effect.succeed({
      status: "ok" as const,
      partitions: engine.config.partitions,
      ...(runner === undefined ? {} : { runner })
    })
    return handlers.handleAll({
      health: () => health,
      partitions: () => Effect.map(engine.partitions, (partitions) => ({ partitions }))
    })
  })
)

/** Append to, read, and fold one stream. */
export const StreamsHandlers = HttpApiBuilder.group(
  Api,
  "streams",
  Effect.fnUntraced(function*(handlers) {
    const on = yield* onEngine()
    return handlers.handleAll({
      // Uninterruptible: an append is registered with its partition synchronously and will commit regardless;
      // letting the request finish means a graceful shutdown answers it instead of dropping the acknowledgement.
      append: {
        handler: ({ params, payload, request }) =>
          on(params.tenant, forkOfUrl(request.url), (engine) =>
            Effect.map(StreamRoutes.append(engine, params.tenant, params.stream, payload), ok)),
        options: { uninterruptible: true }
      },
      // Reads of a partition whose stored data is damaged answer a typed `CorruptData` (see `surfaceReadDefects`).
      read: ({ params, query }) =>
        on(params.tenant, query.fork, (engine) =>
          surfaceReadDefects(Effect.map(StreamRoutes.read(engine, params.tenant, params.stream, query), ok))),
      state: ({ params, query }) =>
        on(params.tenant, query.fork, (engine) =>
          surfaceReadDefects(locate(engine.state(params.tenant, params.stream, query.reducer, query.asOf))))
    })
  })
)

/** Cross-stream reads: the tenant's events (paged with `next`) and one partition's events in sequence order. */
export const QueriesHandlers = HttpApiBuilder.group(
  Api,
  "queries",
  Effect.fnUntraced(function*(handlers) {
    const on = yield* onEngine()
    return handlers.handleAll({
      events: ({ params, query }) =>
        on(params.tenant, query.fork, (engine) => surfaceReadDefects(locate(Effect.flatMap(optionalInt(query.limit, "query.limit"), (limit) =>
          Effect.map(
            engine.query(params.tenant, {
              types: typeList(query.types),
              since: query.since,
              until: query.until,
              asOf: query.asOf,
              limit,
              after: query.after
            }),
            (page) => ok(StreamRoutes.readResultJson(page.events, page.next))
          ))))),
      partitionEvents: ({ params, query }) =>
        on(params.tenant, query.fork, (engine) => surfaceReadDefects(locate(Effect.flatMap(
          Effect.all([
            requiredInt(params.partition, "params.partition"),
            optionalInt(query.fromSeq, "query.fromSeq"),
            optionalInt(query.limit, "query.limit")
          ]),
          ([partition, fromSeq, limit]) =>
            Effect.map(
              engine.readPartition(params.tenant, partition, {
                fromSeq,
                types: typeList(query.types),
                asOf: query.asOf,
                limit
              }),
              (events) => ok(StreamRoutes.readResultJson(events))
            )
        ))))
    })
  })
)

/** Every group of the API, over the `Engine` (the `RequestValidation` middleware is resolved when routes are built). */
export const layer: Layer.Layer<
  Layer.Success<typeof SystemHandlers> | Layer.Success<typeof StreamsHandlers> | Layer.Success<typeof QueriesHandlers>,
  never,
  Engine | Forks | DomainApi.RequestValidation
> = Layer.mergeAll(SystemHandlers, StreamsHandlers, QueriesHandlers)
