/**
 * The node's direct path for its two hottest requests — append to a stream, read a stream — answered straight
 * from Node's `request` event instead of through Effect's HTTP server and HttpApi. Measured on this code base,
 * that stack costs more CPU per append than the engine itself (see packages/server/bench/); this path keeps the
 * contract and drops the per-request machinery.
 *
 * The contract is kept by construction:
 *  - only *plain* requests are taken: exact paths without percent-escapes, a JSON body with a content-length
 *    within `requestBodyBytesMax`, query values without escapes, each known query key at most once, a valid
 *    `direction`. Anything else — chunked or oversized bodies, other content types, odd URLs, values HttpApi
 *    would reject while decoding — goes to HttpApi unchanged, which answers it as it always does;
 *  - the body is decoded with the same schema and options as HttpApi (`HttpHandlers.Api`), and a decoding failure
 *    becomes the same `InvalidRequest` (`RequestValidation.invalidRequestOf`);
 *  - the engine call and the 200 body are the HttpApi handlers' own code (`streamRoutes.ts`);
 *  - errors are encoded with the endpoints' error schemas and statuses, defects are an empty 500.
 * The endpoints stay declared in `ChronosApi` (OpenAPI, client), and HttpApi still serves them for every request
 * this path declines.
 *
 * Keep in step: a middleware added to `ChronosApi` (authentication, tenancy, rate limits) is NOT applied here;
 * it must be applied in `handle` as well, or this path switched off (`Node.layer` option `directPath: false`).
 */
import { type Context, Effect, Exit, Schema } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { ChronosConfigShape } from "@chronos/config"
import { Errors, Event } from "@chronos/domain"
import type { EngineShape } from "@chronos/engine/Engine"
import { invalidRequestOf } from "../RequestValidation.ts"
import { surfaceReadDefects } from "./httpInput.ts"
import * as StreamRoutes from "./streamRoutes.ts"

const streamEvents = /^\/v1\/tenants\/([^/%]+)\/streams\/([^/%]+)\/events$/

const errorSchemas = [
  Errors.WrongExpectedVersion,
  Errors.InvalidRequest,
  Errors.LimitExceeded,
  Errors.Unavailable,
  Errors.CorruptData
] as const
const encodeError = Schema.encodeUnknownSync(Schema.Union(errorSchemas))
const statusOf = new Map<string, number>(
  errorSchemas.map((schema) => [
    schema.identifier,
    (schema.ast.annotations as { readonly httpApiStatus?: number } | undefined)?.httpApiStatus ?? 500
  ])
)

const isJson = (contentType: string | undefined) => {
  if (contentType === undefined) return true // HttpApi reads a body without a content-type as JSON too
  const type = contentType.split(";", 1)[0]!.trim().toLowerCase()
  return type === "application/json"
}

const readKeys = new Set(["fromVersion", "limit", "direction", "asOf"])

/** The read query, or `undefined` when it is not plain (then HttpApi decodes it). */
const plainReadQuery = (search: string): StreamRoutes.ReadQuery | undefined => {
  if (search === "") return {}
  if (search.includes("%") || search.includes("+")) return undefined
  const query: Record<string, string> = {}
  for (const pair of search.split("&")) {
    if (pair === "") continue
    const eq = pair.indexOf("=")
    const key = eq === -1 ? pair : pair.slice(0, eq)
    // A read through a fork (`?fork=`) is HttpApi's: this path serves the store's own streams only.
    if (key === "fork") return undefined
    if (!readKeys.has(key)) continue // HttpApi ignores unknown query keys too
    if (key in query) return undefined
    query[key] = eq === -1 ? "" : pair.slice(eq + 1)
  }
  if (query.direction !== undefined && query.direction !== "forward" && query.direction !== "backward") {
    return undefined
  }
  return query as StreamRoutes.ReadQuery
}

const decodeAppend = Schema.decodeUnknownExit(Event.AppendRequest, { onExcessProperty: "error" })

export interface DirectPath {
  /** Answers `request` and returns true, or returns false (without touching it) to leave it to HttpApi. */
  readonly handle: (request: IncomingMessage, response: ServerResponse) => boolean
}

export const make = (
  engine: EngineShape,
  config: Pick<ChronosConfigShape, "requestBodyBytesMax">,
  context: Context.Context<never>
): DirectPath => {
  const run = Effect.runForkWith(context)

  const send = (response: ServerResponse, status: number, body: string) => {
    response.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body)
    })
    response.end(body)
  }

  // A defect (or an error the endpoints do not declare) is an empty 500, as HttpApi answers it.
  const internalError = (response: ServerResponse) => {
    response.writeHead(500, { "content-length": 0 })
    response.end()
  }

  const answer = (response: ServerResponse, effect: Effect.Effect<string, Errors.AppendError | Errors.ReadError>) =>
    run(effect).addObserver((exit) => {
      if (Exit.isSuccess(exit)) return send(response, 200, exit.value)
      const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
      if (failure === undefined || failure._tag !== "Fail") return internalError(response)
      const status = statusOf.get(failure.error._tag)
      let body: string
      try {
        body = JSON.stringify(encodeError(failure.error))
      } catch {
        return internalError(response)
      }
      send(response, status ?? 500, body)
    })

  const append = (request: IncomingMessage, response: ServerResponse, tenant: string, stream: string) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("error", () => {}) // an aborted upload; Node closes the socket
    request.on("end", () => {
      const text = chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString()
      let body: unknown
      try {
        body = text === "" ? undefined : JSON.parse(text)
      } catch {
        const error = new Errors.InvalidRequest({ field: "body", message: "Expected a valid JSON body" })
        return send(response, 400, JSON.stringify(encodeError(error)))
      }
      const decoded = decodeAppend(body)
      if (Exit.isFailure(decoded)) {
        const reason = decoded.cause.reasons.find((r) => r._tag === "Fail")
        const issue = reason !== undefined && reason._tag === "Fail" ? reason.error.issue : undefined
        return send(response, 400, JSON.stringify(encodeError(invalidRequestOf("", issue))))
      }
      answer(response, StreamRoutes.append(engine, tenant, stream, decoded.value))
    })
  }

  return {
    handle: (request, response) => {
      const url = request.url
      if (url === undefined || url.charCodeAt(1) !== 118 /* "v" */) return false
      const q = url.indexOf("?")
      const match = streamEvents.exec(q === -1 ? url : url.slice(0, q))
      if (match === null) return false
      const tenant = match[1]!
      const stream = match[2]!
      if (request.method === "POST") {
        // Only a plain append takes this path; with a query (`?fork=` above all) HttpApi handles it.
        if (q !== -1) return false
        const length = request.headers["content-length"]
        if (length === undefined || !isJson(request.headers["content-type"])) return false
        if (Number(length) > config.requestBodyBytesMax || request.headers.expect !== undefined) return false
        append(request, response, tenant, stream)
        return true
      }
      if (request.method === "GET") {
        const query = plainReadQuery(q === -1 ? "" : url.slice(q + 1))
        if (query === undefined) return false
        answer(response, surfaceReadDefects(StreamRoutes.read(engine, tenant, stream, query)))
        return true
      }
      return false
    }
  }
}
