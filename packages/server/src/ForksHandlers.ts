/**
 * The handlers of the `forks` group of `ChronosApi` (create, list, get, diff, merge, discard), and the node layer of
 * the `Forks` service. Like `HttpHandlers`, this module owns only the HTTP-to-engine translation; everything a fork
 * is and guarantees lives in `@chronos/engine/Forks`. Reads and appends through a fork are the stream and query
 * endpoints with `?fork=` (see `HttpHandlers`).
 */
import { Effect, Layer } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import type { ChronosConfigShape } from "@chronos/config"
import { Errors } from "@chronos/domain"
import { ForkRegistry } from "@chronos/engine/ForkRegistry"
import { Forks } from "@chronos/engine/Forks"
import * as Retention from "@chronos/storage/Retention"
import { Api } from "./HttpHandlers.ts"
import { locate } from "./internal/httpInput.ts"

/**
 * Where fork records are kept, beside the log: `<dataDir>/forks/forks.json` with the file log, a NATS KV bucket with
 * the JetStream log, memory with the memory log.
 */
export const registryLayer = (config: ChronosConfigShape): Layer.Layer<ForkRegistry, Errors.Unavailable> => {
  switch (config.logDriver) {
    case "memory":
      return ForkRegistry.layerMemory
    case "file":
      return ForkRegistry.layerFile(config.dataDir)
    case "jetstream":
      return ForkRegistry.layerNatsKv({
        servers: config.natsUrls.split(",").map((s) => s.trim()).filter((s) => s !== ""),
        replicas: config.natsReplicas
      })
  }
}

/**
 * `Forks` over the node's engine and log, with the registry of `config.logDriver`; every fork engine applies the
 * store's retention and deletions (`Retention.layerForkReadPolicy`), whoever opens it (HTTP, MCP, search).
 */
export const forksLayer = (config: ChronosConfigShape) =>
  Forks.layer.pipe(Layer.provide(Layer.merge(registryLayer(config), Retention.layerForkReadPolicy)))

/**
 * `locate` for the create body: its fields (`ttlSeconds`, `asOf`, `labels`) are named as in the body, like the
 * decoding errors of a payload; only the tenant comes from the path.
 */
const locateTenant = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapErrorEager(effect, (error) =>
    error instanceof Errors.InvalidRequest && error.field === "tenant"
      ? new Errors.InvalidRequest({ field: "params.tenant", message: error.message }) as E
      : error)

/** `/v1/tenants/{tenant}/forks…`. */
export const ForksHandlers = HttpApiBuilder.group(
  Api,
  "forks",
  Effect.fnUntraced(function*(handlers) {
    const forks = yield* Forks
    return handlers.handleAll({
      create: ({ params, payload }) => locateTenant(forks.create(params.tenant, payload)),
      list: ({ params }) => locate(Effect.map(forks.list(params.tenant), (list) => ({ forks: list }))),
      get: ({ params }) => locate(forks.get(params.tenant, params.forkId)),
      diff: ({ params }) => locate(forks.diff(params.tenant, params.forkId)),
      merge: ({ params, payload }) => locate(forks.merge(params.tenant, params.forkId, payload)),
      discard: ({ params }) => locate(forks.discard(params.tenant, params.forkId))
    })
  })
)
