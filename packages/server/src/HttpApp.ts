/**
 * The HTTP application of a node, as router layers ready for `HttpRouter.serve`: the `ChronosApi` routes with
 * their handlers and request validation, `/openapi.json`, and a JSON 404 for paths outside the API (HttpApi
 * answers an empty 404, which a client cannot tell from a proxy's).
 */
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerError, HttpServerResponse } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import * as ChronosMcp from "@chronos/mcp/ChronosMcp"
import { AdminHandlers } from "./AdminHandlers.ts"
import { ForksHandlers } from "./ForksHandlers.ts"
import * as HttpHandlers from "./HttpHandlers.ts"
import * as RequestValidation from "./RequestValidation.ts"
import { RetentionHandlers } from "./RetentionHandlers.ts"
import * as SubscriptionsHandlers from "./SubscriptionsHandlers.ts"
import { SearchHandlers } from "./SearchHandlers.ts"

export const openapiPath = "/openapi.json"

const routeNotFound = (error: unknown) =>
  HttpServerError.isHttpServerError(error) && error.reason._tag === "RouteNotFound" ? error.reason : undefined

/** A JSON body for requests that match no route, e.g. `{"_tag":"RouteNotFound","method":"GET","path":"/x",…}`. */
export const NotFound = HttpRouter.middleware(
  (httpEffect) =>
    Effect.catch(httpEffect, (error) => {
      const notFound = routeNotFound(error)
      if (notFound === undefined) return Effect.fail(error)
      const path = notFound.request.url.split("?")[0]
      return Effect.succeed(HttpServerResponse.jsonUnsafe({
        _tag: "RouteNotFound",
        method: notFound.request.method,
        path,
        message: `no route for ${notFound.request.method} ${path}; see ${openapiPath}`
      }, { status: 404 }))
    }),
  { global: true }
)

/**
 * Every route of the node's HTTP API, over the `Engine`. Also needs the platform's HTTP services (file system,
 * ETags — for `/openapi.json`), which `NodeHttpServer.layer` provides.
 */
export const layer = Layer.mergeAll(
  HttpApiBuilder.layer(HttpHandlers.Api, { openapiPath }),
  NotFound,
  // The MCP server (Streamable HTTP) at `/mcp`, over the same engine: see `@chronos/mcp`.
  ChronosMcp.layerHttp()
).pipe(
  Layer.provide(HttpHandlers.layer),
  Layer.provide(ForksHandlers),
  Layer.provide(SubscriptionsHandlers.layer),
  Layer.provide(SearchHandlers),
  Layer.provide(AdminHandlers),
  Layer.provide(RetentionHandlers),
  Layer.provide(RequestValidation.layer)
)
