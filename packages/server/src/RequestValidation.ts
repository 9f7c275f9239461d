/**
 * The server side of the `RequestValidation` middleware declared by `ChronosApi`: it owns what a client sees when
 * its request cannot be decoded. Every decoding failure becomes a typed 400 instead of HttpApi's empty one:
 *  - `InvalidRequest { field, message }`, `field` naming the offending part: `body` (malformed JSON or not an
 *    object), `events[0].type`, `expectedVersion`, `params.stream`, `query.direction`, `headers.content-type`;
 *  - `LimitExceeded { limit: "requestBodyBytesMax" }` for a body over the limit. A declared `content-length` is
 *    checked before anything is read (`actual` is the declared length); a chunked body is cut off once it passes
 *    the limit (`actual` is then a lower bound, `max + 1`), so an oversized body is never buffered whole.
 * Response encoding failures are server bugs and stay 500s (reported by HttpApi).
 */
import { ByteSize, Effect, Layer, SchemaIssue } from "effect"
import type { unhandled } from "effect/Types"
import { HttpIncomingMessage, HttpServerError, HttpServerRequest, type HttpServerResponse } from "effect/http"
import { HttpApiError } from "effect/http-api"
import { ChronosConfig } from "@chronos/config"
import { Api, Errors } from "@chronos/domain"

const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

/** Messages for fields whose schema is a union: the raw union message lists only some members. */
const hints: Record<string, string> = {
  expectedVersion: "expectedVersion must be \"any\", \"no_stream\", \"stream_exists\" or a non-negative integer"
}

const slotPrefix: Record<string, string> = { Params: "params", Query: "query", Headers: "headers", Payload: "" }

/** `["events", 0, "type"]` under `prefix` → `events[0].type`; the empty payload path is `body`. */
const fieldOf = (prefix: string, path: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined) => {
  let field = prefix
  for (const segment of path ?? []) {
    const key = typeof segment === "object" ? segment.key : segment
    field += typeof key === "number" ? `[${key}]` : field === "" ? String(key) : `.${String(key)}`
  }
  return field === "" ? "body" : field
}

/**
 * The `InvalidRequest` for a schema issue in one part of the request (`prefix`: `params`, `query`, `headers`, or
 * `""` for the body). Only the first issue is reported; decoding stops at the first one anyway.
 */
export const invalidRequestOf = (prefix: string, issue: SchemaIssue.Issue | undefined): Errors.InvalidRequest => {
  const first = issue === undefined ? undefined : formatIssues(issue).issues[0]
  const field = fieldOf(prefix, first?.path)
  // `Object.hasOwn`: a field named `__proto__` or `constructor` must not find Object.prototype's members.
  const message = (Object.hasOwn(hints, field) ? hints[field] : undefined) ??
    (first === undefined ? `invalid ${field}` : first.message)
  return new Errors.InvalidRequest({ field, message })
}

/** The `InvalidRequest` for an HttpApi request decoding failure. */
export const toInvalidRequest = (error: HttpApiError.HttpApiSchemaError): Errors.InvalidRequest =>
  invalidRequestOf(
    slotPrefix[error.kind] ?? error.kind.toLowerCase(),
    error.cause instanceof Error && "issue" in error.cause
      ? (error.cause as { readonly issue: SchemaIssue.Issue }).issue
      : undefined
  )

const isRequestDecoding = (error: HttpApiError.HttpApiSchemaError) =>
  error.kind !== "Body" && error.kind !== "ResponseHeaders"

const bodyTooLarge = (max: number, actual: number) =>
  new Errors.LimitExceeded({
    limit: "requestBodyBytesMax",
    max,
    actual,
    message: `a request body is at most ${max} bytes`
  })

const isBodyTooLarge = (defect: unknown): boolean =>
  HttpServerError.isHttpServerError(defect) && defect.reason._tag === "RequestParseError" &&
  defect.reason.reason === "BodyTooLarge"

const unsupportedMediaType = new Errors.InvalidRequest({
  field: "headers.content-type",
  message: "the request body must be JSON (content-type: application/json)"
})

/** The middleware, bounded by `config.requestBodyBytesMax`. */
export const layer: Layer.Layer<Api.RequestValidation, never, ChronosConfig> = Layer.effect(
  Api.RequestValidation,
  Effect.gen(function*() {
    const config = yield* ChronosConfig
    const maxBytes = config.requestBodyBytesMax
    const maxBodySize = ByteSize.bytes(maxBytes)

    const onSchemaError = (error: unhandled): Effect.Effect<never, unhandled | Errors.InvalidRequest> =>
      Effect.fail(
        HttpApiError.HttpApiSchemaError.is(error) && isRequestDecoding(error) ? toInvalidRequest(error) : error
      )
    // `LimitExceeded` is not an error of the middleware (it would be listed on every endpoint); it is raised only
    // on endpoints with a body, and the one such endpoint (append) declares it.
    const tooLarge = (actual: number) => Effect.fail(bodyTooLarge(maxBytes, actual) as unknown as unhandled)

    // Applied once per endpoint when the routes are built; only endpoints with a body pay for the body checks.
    return (httpEffect, { endpoint }) => {
      const decoded = Effect.catch(httpEffect, onSchemaError)
      if (endpoint.payload.size === 0) return decoded
      const guarded = Effect.catchDefect(
        Effect.provideService(decoded, HttpIncomingMessage.MaxBodySize, maxBodySize),
        (defect) => isBodyTooLarge(defect) ? tooLarge(maxBytes + 1) : Effect.die(defect)
      )
      return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const declared = Number(request.headers["content-length"] ?? 0)
        if (declared > maxBytes) return tooLarge(declared)
        return Effect.flatMap(guarded, (response: HttpServerResponse.HttpServerResponse) =>
          response.status === 415 ? Effect.fail(unsupportedMediaType) : Effect.succeed(response))
      })
    }
  })
)
