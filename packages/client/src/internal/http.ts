/**
 * The HTTP implementation of `ChronosClient`, generated from `ChronosApi` by `HttpApiClient.make`. It owns what
 * the generated client leaves to its user:
 *  - validation before sending (the same as embedded mode, `validation.ts`), including the path identifiers, so
 *    that nothing unchecked reaches a URL;
 *  - event ids: every event without one gets a UUID v4 from the `Random` service before the first attempt, so a
 *    retried append is byte-for-byte the same request and idempotent on the server;
 *  - retries of transient failures with exponential backoff (jittered), bounded by `retriesMax` and a delay cap,
 *    and a per-attempt timeout;
 *  - errors: declared errors pass through as the domain's tagged values (their HTTP field locations such as
 *    `query.limit` mapped back to SDK argument names); a transport failure or a response the API does not declare
 *    (a proxy's 502 page, an undeclared status) becomes `Unavailable`.
 */
import { Duration, Effect, Random, Schedule, Schema } from "effect"
import { HttpClientError } from "effect/http"
import { HttpApiClient } from "effect/http-api"
import { Api, Errors, type Event } from "@chronos/domain"
import type { ChronosClientShape } from "../ChronosClient.ts"
import {
  checkStream,
  checkTenant,
  decodeAppend,
  decodePartitionReadOptions,
  decodeQueryOptions,
  decodeReadOptions,
  decodeStateOptions,
  isInvalid
} from "./validation.ts"
import { uuidV4 } from "./uuid.ts"

export interface HttpOptions {
  /** Base URL of a node, e.g. `http://127.0.0.1:3900`. */
  readonly url: string
  /** Retries of a transient failure after the first attempt (0: no retry). */
  readonly retriesMax?: number | undefined
  /** Delay before the first retry; doubles with each retry (jittered). */
  readonly retryBaseDelayMs?: number | undefined
  /** Upper bound of one retry delay. */
  readonly retryDelayMaxMs?: number | undefined
  /** How long one attempt may take before it counts as a transient failure. */
  readonly requestTimeoutMs?: number | undefined
}

export const defaults = {
  retriesMax: 5,
  retryBaseDelayMs: 50,
  retryDelayMaxMs: 2_000,
  requestTimeoutMs: 30_000
} as const

type Known =
  | Errors.WrongExpectedVersion
  | Errors.InvalidRequest
  | Errors.LimitExceeded
  | Errors.Unavailable
  | Errors.StreamNotFound
  | Errors.CorruptData

const isKnown = (u: unknown): u is Known =>
  u instanceof Errors.WrongExpectedVersion || u instanceof Errors.InvalidRequest ||
  u instanceof Errors.LimitExceeded || u instanceof Errors.Unavailable || u instanceof Errors.StreamNotFound ||
  u instanceof Errors.CorruptData

/** `query.limit` → `limit`, `params.tenant` → `tenant`: the SDK names fields by its own arguments in both modes. */
const sdkField = (field: string) => field.replace(/^(query|params)\./, "")

const isTransientStatus = (status: number) => status >= 500 || status === 429 || status === 408

/** Any failure of the generated client that is not a declared error of the endpoint. */
const unavailable = (error: unknown): Errors.Unavailable => {
  if (HttpClientError.isHttpClientError(error)) {
    const reason = error.reason
    switch (reason._tag) {
      case "TransportError":
        return new Errors.Unavailable({ message: `cannot reach the node: ${error.message}`, retryable: true })
      case "StatusCodeError":
      case "DecodeError":
      case "EmptyBodyError": {
        const status = reason.response.status
        return new Errors.Unavailable({
          message: `unexpected response from the node (HTTP ${status}): ${error.message}`,
          retryable: isTransientStatus(status)
        })
      }
      default:
        return new Errors.Unavailable({ message: `invalid request to the node: ${error.message}`, retryable: false })
    }
  }
  if (Schema.isSchemaError(error)) {
    return new Errors.Unavailable({ message: `unexpected response body from the node: ${error.message}`, retryable: false })
  }
  return new Errors.Unavailable({ message: `request failed: ${String(error)}`, retryable: false })
}

const toSdkError = (error: unknown): Known => {
  if (!isKnown(error)) return unavailable(error)
  if (error._tag !== "InvalidRequest") return error
  const field = sdkField(error.field)
  return field === error.field ? error : new Errors.InvalidRequest({ field, message: error.message })
}

type Transport = HttpClientError.HttpClientError | Schema.SchemaError

const isRetryable = (error: Known) => error._tag === "Unavailable" && error.retryable

/** `{ a: undefined, b: 1 }` → `{ b: "1" }`: query strings carry only the keys that are present. */
const queryOf = (values: Record<string, string | number | ReadonlyArray<string> | undefined>) => {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue
    out[key] = typeof value === "string" ? value : typeof value === "number" ? String(value) : value.join(",")
  }
  return out
}

const functionReducerOverHttp = new Errors.InvalidRequest({
  field: "reducer",
  message: "reducer objects run only in embedded mode; over HTTP name a built-in reducer: merge, count, last or " +
    "sum:<field>"
})

export const make = Effect.fnUntraced(function*(options: HttpOptions) {
  const random = yield* Random.Random
  const retriesMax = options.retriesMax ?? defaults.retriesMax
  const baseDelay = Duration.millis(options.retryBaseDelayMs ?? defaults.retryBaseDelayMs)
  const maxDelay = Duration.millis(options.retryDelayMaxMs ?? defaults.retryDelayMaxMs)
  const timeout = Duration.millis(options.requestTimeoutMs ?? defaults.requestTimeoutMs)
  const client = yield* HttpApiClient.make(Api.ChronosApi, { baseUrl: options.url })

  const backoff = Schedule.exponential(baseDelay).pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, maxDelay))),
    Schedule.jittered
  )
  const timedOut = () =>
    Effect.fail(
      new Errors.Unavailable({ message: `no response within ${Duration.format(timeout)}`, retryable: true })
    )

  /**
   * One logical call: a timeout per attempt, typed errors (the endpoint's declared errors, everything else as
   * `Unavailable`), and bounded retries of transient failures.
   */
  const call = <A, E>(attempt: Effect.Effect<A, E>): Effect.Effect<A, Exclude<E, Transport> | Errors.Unavailable> =>
    attempt.pipe(
      Effect.mapError((error) => toSdkError(error) as Exclude<E, Transport> | Errors.Unavailable),
      Effect.timeoutOrElse({ duration: timeout, orElse: timedOut }),
      Effect.retry({ schedule: backoff, times: retriesMax, while: (error) => isRetryable(error as Known) })
    )

  /** For endpoints that declare no error of their own (only the validation middleware's, which they never raise). */
  const onlyUnavailable = <A>(effect: Effect.Effect<A, Known>): Effect.Effect<A, Errors.Unavailable> =>
    Effect.mapError(effect, (error) =>
      error._tag === "Unavailable"
        ? error
        : new Errors.Unavailable({ message: `unexpected ${error._tag} from the node`, retryable: false }))

  const withIds = (request: Event.AppendRequest): Event.AppendRequest => {
    let events: Array<Event.ProposedEvent> | undefined
    for (let i = 0; i < request.events.length; i++) {
      const event = request.events[i]!
      if (event.eventId !== undefined) continue
      events ??= request.events.slice()
      events[i] = { ...event, eventId: uuidV4(random) as Event.ProposedEvent["eventId"] & string }
    }
    return events === undefined ? request : { ...request, events }
  }

  const ids = (tenant: string, stream?: string) =>
    checkTenant(tenant) ?? (stream === undefined ? undefined : checkStream(stream))

  const shape: ChronosClientShape = {
    append: (tenant, stream, request) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const decoded = decodeAppend(request)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      // Ids are fixed here, once: every retry below sends the same events.
      const payload = withIds(decoded)
      return call(client.streams.append({ params: { tenant, stream }, payload }))
    },

    read: (tenant, stream, options = {}) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodeReadOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      const query = queryOf({ fromVersion: o.fromVersion, limit: o.limit, direction: o.direction, asOf: o.asOf })
      return Effect.map(call(client.streams.read({ params: { tenant, stream }, query })), (result) => result.events)
    },

    query: (tenant, options = {}) => {
      const invalid = ids(tenant)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodeQueryOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      const query = queryOf({
        types: o.types,
        since: o.since,
        until: o.until,
        asOf: o.asOf,
        limit: o.limit,
        after: o.after
      })
      return call(client.queries.events({ params: { tenant }, query }))
    },

    readPartition: (tenant, partition, options = {}) => {
      const invalid = ids(tenant)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodePartitionReadOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      const query = queryOf({ fromSeq: o.fromSeq, types: o.types, asOf: o.asOf, limit: o.limit })
      return Effect.map(
        call(client.queries.partitionEvents({ params: { tenant, partition: String(partition) }, query })),
        (result) => result.events
      )
    },

    state: (tenant, stream, options = {}) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodeStateOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      if (o.reducer !== undefined && typeof o.reducer !== "string") return Effect.fail(functionReducerOverHttp)
      const query = queryOf({ reducer: o.reducer, asOf: o.asOf })
      return call(client.streams.state({ params: { tenant, stream }, query }))
    },

    partitions: () => onlyUnavailable(Effect.map(call(client.partitions()), (result) => result.partitions)),

    health: () => onlyUnavailable(call(client.health()))
  }
  return shape
})
