/**
 * The handlers of the `search` API group (`POST /v1/tenants/{tenant}/search`, `GET …/search/status`): a thin adapter
 * over the `Search` service of `@chronos/search`. Validation and limits stay in the service (so the SDK's embedded
 * mode enforces the same); this module only turns engine events into wire events and names the tenant's HTTP
 * location in errors. Body fields keep their names (`limit`, `types[0]`), as body decoding errors do.
 */
import { Effect, Layer } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Errors, Event } from "@chronos/domain"
import { Embedder } from "@chronos/search/Embedder"
import { Search } from "@chronos/search/Search"
import { SearchConfig, type SearchConfigShape } from "@chronos/search/SearchConfig"
import type { ChronosConfigShape } from "@chronos/config"
import { Api } from "./HttpHandlers.ts"

const locateTenant = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapErrorEager(effect, (error) =>
    error instanceof Errors.InvalidRequest && error.field === "tenant"
      ? new Errors.InvalidRequest({ field: "params.tenant", message: error.message }) as E
      : error)

export const SearchHandlers = HttpApiBuilder.group(
  Api,
  "search",
  Effect.fnUntraced(function*(handlers) {
    const search = yield* Search
    return handlers.handleAll({
      search: ({ params, payload }) =>
        locateTenant(Effect.map(search.search(params.tenant, payload), (hits) => ({
          hits: hits.map((h) => ({ event: Event.toRecorded(h.event), score: h.score, matchedBy: h.matchedBy }))
        }))),
      status: ({ params }) => locateTenant(search.status(params.tenant))
    })
  })
)

/**
 * The search service of a node: indexes persisted under `<dataDir>/search/` (in memory with the memory log, which
 * forgets everything at exit anyway), the embedder named by the search configuration.
 */
export const searchLayer = (config: ChronosConfigShape, overrides: Partial<SearchConfigShape> = {}) => {
  const Config = SearchConfig.layerConfig(overrides)
  return (config.logDriver === "memory" ? Search.layerMemory : Search.layer).pipe(
    Layer.provide(Embedder.layerConfig),
    Layer.provide(Config)
  )
}
