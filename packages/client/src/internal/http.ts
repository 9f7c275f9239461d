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
 *    (a proxy's 502 page, an undeclared status) becomes `Unavailable` — except the 404 `ForkNotFound` that stream
 *    and query endpoints answer for `?fork=` without declaring it (see `Api`), recognised by its body;
 *  - `?fork=` on the append, whose endpoint declares no query: set on the request by the HTTP client from the
 *    `RequestFork` reference of the calling fiber;
 *  - subscriptions: the SSE stream of the generated client, resumed across dropped connections by
 *    `resumingSubscription.ts`; an SSE body silent for `subscribeIdleTimeoutMs` (no keepalive either) ends, so a
 *    half-open connection is replaced too.
 */
import { Context, Duration, Effect, Random, Schedule, Schema, Stream } from "effect"
import { defaults as configDefaults } from "@chronos/config"
import { HttpClient, HttpClientError, HttpClientRequest, HttpClientResponse } from "effect/http"
import { HttpApiClient } from "effect/http-api"
import { Api, Errors, type Event, Fork, SearchApi, SubscriptionsApi } from "@chronos/domain"
import type { ChronosClientShape, SubscriptionError } from "../ChronosClient.ts"
import * as ResumingSubscription from "./resumingSubscription.ts"
import {
  checkStream,
  checkTenant,
  decodeAck,
  decodeAppend,
  decodeAppendOptions,
  decodeCreateConsumer,
  decodeCreateFork,
  decodeDefineProjection,
  decodeDeleteStreamOptions,
  decodeLimitOptions,
  decodeMergeRequest,
  decodeNack,
  decodeNextOptions,
  decodePartitionReadOptions,
  decodeQueryOptions,
  decodeReadOptions,
  decodeReplay,
  decodeRetentionSettings,
  decodeSearchRequest,
  decodeStateOptions,
  decodeSubscribeOptions,
  isInvalid
} from "./validation.ts"
import * as OwnerRouting from "./ownerRouting.ts"
import { uuidV4 } from "./uuid.ts"

export interface HttpOptions {
  /** Base URL of a node, e.g. `http://127.0.0.1:3900`. */
  readonly url: string
  /**
   * The HTTP gateways of every runner of a cluster (`url` may be one of them). When given, each append goes to the
   * gateway of the runner that owns its stream's partition (see `ownerRouting.ts`), and to `url` when that is not
   * known; any gateway would serve it, through one more hop.
   */
  readonly gateways?: ReadonlyArray<string> | undefined
  /** How often at most the owner table of `gateways` is rebuilt after a failed attempt. */
  readonly ownerRoutesRefreshMsMin?: number | undefined
  /** Retries of a transient failure after the first attempt (0: no retry). */
  readonly retriesMax?: number | undefined
  /** Delay before the first retry; doubles with each retry (jittered). */
  readonly retryBaseDelayMs?: number | undefined
  /** Upper bound of one retry delay. */
  readonly retryDelayMaxMs?: number | undefined
  /** How long one attempt may take before it counts as a transient failure. */
  readonly requestTimeoutMs?: number | undefined
  /** Consecutive reconnects of a subscription that deliver nothing before it fails (`subscribeReconnectsMax`). */
  readonly subscribeReconnectsMax?: number | undefined
  /** Delay before the first reconnect of a subscription, doubled after each (`subscribeReconnectDelayMs`). */
  readonly subscribeReconnectDelayMs?: number | undefined
  /** Upper bound of one reconnect delay (`subscribeReconnectDelayMsMax`). */
  readonly subscribeReconnectDelayMsMax?: number | undefined
  /** A subscription connection silent for this long is replaced (`subscribeIdleTimeoutMs`; 0: never). */
  readonly subscribeIdleTimeoutMs?: number | undefined
}

export const defaults = {
  ownerRoutesRefreshMsMin: 1_000,
  retriesMax: 5,
  retryBaseDelayMs: 50,
  retryDelayMaxMs: 2_000,
  requestTimeoutMs: 30_000,
  subscribeReconnectsMax: configDefaults.subscribeReconnectsMax,
  subscribeReconnectDelayMs: configDefaults.subscribeReconnectDelayMs,
  subscribeReconnectDelayMsMax: configDefaults.subscribeReconnectDelayMsMax,
  subscribeIdleTimeoutMs: configDefaults.subscribeIdleTimeoutMs
} as const

/**
 * An SSE response whose body ends once no byte has come for `idleTimeoutMs`. The node writes a keepalive comment
 * while a subscription is idle, so silence means a connection that is gone without a FIN or RST (a dropped NAT entry,
 * a frozen peer): the subscription then reconnects instead of waiting forever. Other responses are left as they are.
 */
const withIdleTimeout = (
  response: HttpClientResponse.HttpClientResponse,
  idleTimeoutMs: number
): HttpClientResponse.HttpClientResponse => {
  if (idleTimeoutMs <= 0 || !(response.headers["content-type"] ?? "").startsWith("text/event-stream")) return response
  const body = Stream.toReadableStream(Stream.timeout(response.stream, Duration.millis(idleTimeoutMs)))
  return HttpClientResponse.fromWeb(
    response.request,
    new Response(body, { status: response.status, headers: new Headers(response.headers) })
  )
}

/** The fork the append being sent addresses (its endpoint has no declared query to carry `?fork=`). */
const RequestFork = Context.Reference<string | undefined>("chronos/client/http/RequestFork", {
  defaultValue: () => undefined
})

type Known =
  | Errors.WrongExpectedVersion
  | Errors.InvalidRequest
  | Errors.LimitExceeded
  | Errors.Unavailable
  | Errors.StreamNotFound
  | Errors.CorruptData
  | Fork.ForkNotFound
  | Fork.ForkMergeConflict
  | SearchApi.EmbedderMismatch
  | SubscriptionsApi.ConsumerGroupNotFound
  | SubscriptionsApi.ProjectionNotFound
  | SubscriptionsApi.DefinitionConflict

const knownClasses = [
  Errors.WrongExpectedVersion,
  Errors.InvalidRequest,
  Errors.LimitExceeded,
  Errors.Unavailable,
  Errors.StreamNotFound,
  Errors.CorruptData,
  Fork.ForkNotFound,
  Fork.ForkMergeConflict,
  SearchApi.EmbedderMismatch,
  SubscriptionsApi.ConsumerGroupNotFound,
  SubscriptionsApi.ProjectionNotFound,
  SubscriptionsApi.DefinitionConflict
] as const

const isKnown = (u: unknown): u is Known => knownClasses.some((c) => u instanceof c)

const decodeForkNotFound = Schema.decodeUnknownOption(Fork.ForkNotFound)

/**
 * The 404 `ForkNotFound` of a stream or query endpoint addressed with `?fork=`: undeclared there, so the generated
 * client reports an undeclared status; its body says which fork.
 */
const forkNotFound = (error: unknown): Effect.Effect<Fork.ForkNotFound | undefined> => {
  if (!HttpClientError.isHttpClientError(error)) return Effect.succeed(undefined)
  const reason = error.reason
  if (reason._tag !== "DecodeError" && reason._tag !== "StatusCodeError") return Effect.succeed(undefined)
  if (reason.response.status !== 404) return Effect.succeed(undefined)
  return reason.response.json.pipe(
    Effect.map((body) => {
      const decoded = decodeForkNotFound(body)
      return decoded._tag === "Some" ? decoded.value : undefined
    }),
    Effect.orElseSucceed(() => undefined)
  )
}

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

/** The errors of a subscription: the endpoint's own, and everything else (SSE framing, transport) as `Unavailable`. */
const subscriptionError = (error: unknown): SubscriptionError => {
  const known = toSdkError(error)
  return known._tag === "InvalidRequest" || known._tag === "Unavailable" || known._tag === "CorruptData"
    ? known
    : new Errors.Unavailable({ message: `unexpected ${known._tag} from the node's subscription`, retryable: false })
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
  const idleTimeoutMs = options.subscribeIdleTimeoutMs ?? defaults.subscribeIdleTimeoutMs
  const clientOf = (baseUrl: string) =>
    HttpApiClient.make(Api.ChronosApi, {
      baseUrl,
      transformClient: (httpClient) =>
        httpClient.pipe(
          HttpClient.mapRequestEffect((request) =>
            Effect.map(Effect.service(RequestFork), (fork) =>
              fork === undefined ? request : HttpClientRequest.setUrlParam(request, "fork", fork))),
          HttpClient.transformResponse(Effect.map((response) => withIdleTimeout(response, idleTimeoutMs)))
        )
    })
  const client = yield* clientOf(options.url)
  const gatewayClients = yield* Effect.forEach(options.gateways ?? [], clientOf)
  const routing = gatewayClients.length === 0 ? undefined : OwnerRouting.make(
    gatewayClients.map((c) => ({ health: c.health(), partitions: c.partitions() })),
    options.ownerRoutesRefreshMsMin ?? defaults.ownerRoutesRefreshMsMin
  )
  /**
   * An attempt through the client of the gateway that owns `tenant`/`stream` (the default one when unknown); a failed
   * attempt marks the owner table stale, so the retry follows a moved partition.
   */
  const viaOwner = <A, E>(tenant: string, stream: string, attempt: (c: typeof client) => Effect.Effect<A, E>) =>
    routing === undefined ? attempt(client) : Effect.flatMap(routing.gatewayOf(tenant, stream), (i) =>
      attempt(i === -1 ? client : gatewayClients[i]!).pipe(Effect.tapError(() => routing.markStale)))
  const reconnectsMax = options.subscribeReconnectsMax ?? defaults.subscribeReconnectsMax
  const reconnectDelayMs = options.subscribeReconnectDelayMs ?? defaults.subscribeReconnectDelayMs
  const reconnectDelayMsMax = options.subscribeReconnectDelayMsMax ?? defaults.subscribeReconnectDelayMsMax

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
      Effect.catch((error) =>
        Effect.flatMap(forkNotFound(error), (notFound) =>
          Effect.fail((notFound ?? toSdkError(error)) as Exclude<E, Transport> | Errors.Unavailable))),
      Effect.timeoutOrElse({ duration: timeout, orElse: timedOut }),
      Effect.retry({ schedule: backoff, times: retriesMax, while: (error) => isRetryable(error as Known) })
    )

  /** `call` of a request that may address a fork: it may also fail with the fork's `ForkNotFound`. */
  const callFork = <A, E>(attempt: Effect.Effect<A, E>, fork: string | undefined) =>
    call(fork === undefined ? attempt : Effect.provideService(attempt, RequestFork, fork)) as Effect.Effect<
      A,
      Exclude<E, Transport> | Errors.Unavailable | Fork.ForkNotFound
    >

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

  /** Path segments other than the tenant go into a URL: only non-empty ones without `/` (the server checks the rest). */
  const segment = (field: string, value: string): Errors.InvalidRequest | undefined =>
    value !== "" && !/[/?#]/.test(value) && value !== "." && value !== ".."
      ? undefined
      : new Errors.InvalidRequest({ field, message: `invalid ${field}: ${JSON.stringify(value).slice(0, 300)}` })

  const withFork = <A, E>(
    tenant: string,
    forkId: string,
    f: (params: { readonly tenant: string; readonly forkId: string }) => Effect.Effect<A, E>
  ) => {
    const invalid = ids(tenant) ?? segment("forkId", forkId)
    return invalid !== undefined ? Effect.fail(invalid) : f({ tenant, forkId })
  }

  const withName = <A, E>(
    tenant: string,
    name: string,
    f: (params: { readonly tenant: string; readonly name: string }) => Effect.Effect<A, E>
  ) => {
    const invalid = ids(tenant) ?? segment("name", name)
    return invalid !== undefined ? Effect.fail(invalid) : f({ tenant, name })
  }

  const shape = {
    append: (tenant: string, stream: string, request: unknown, options: unknown = {}) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const decoded = decodeAppend(request)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      const o = decodeAppendOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      // Ids are fixed here, once: every retry below sends the same events.
      const payload = withIds(decoded)
      return callFork(viaOwner(tenant, stream, (c) => c.streams.append({ params: { tenant, stream }, payload })), o.fork)
    },

    read: (tenant: string, stream: string, options: unknown = {}) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodeReadOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      const query = queryOf({ fromVersion: o.fromVersion, limit: o.limit, direction: o.direction, asOf: o.asOf, fork: o.fork })
      return Effect.map(callFork(client.streams.read({ params: { tenant, stream }, query }), o.fork), (result) => result.events)
    },

    query: (tenant: string, options: unknown = {}) => {
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
        after: o.after,
        fork: o.fork
      })
      return callFork(client.queries.events({ params: { tenant }, query }), o.fork)
    },

    readPartition: (tenant: string, partition: number, options: unknown = {}) => {
      const invalid = ids(tenant)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodePartitionReadOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      const query = queryOf({ fromSeq: o.fromSeq, types: o.types, asOf: o.asOf, limit: o.limit, fork: o.fork })
      return Effect.map(
        callFork(client.queries.partitionEvents({ params: { tenant, partition: String(partition) }, query }), o.fork),
        (result) => result.events
      )
    },

    state: (tenant: string, stream: string, options: unknown = {}) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodeStateOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      if (o.reducer !== undefined && typeof o.reducer !== "string") return Effect.fail(functionReducerOverHttp)
      const query = queryOf({ reducer: o.reducer, asOf: o.asOf, fork: o.fork })
      return callFork(client.streams.state({ params: { tenant, stream }, query }), o.fork)
    },

    partitions: () => onlyUnavailable(Effect.map(call(client.partitions()), (result) => result.partitions)),

    setRetention: (tenant, stream, settings) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const payload = decodeRetentionSettings(settings)
      if (isInvalid(payload)) return Effect.fail(payload)
      return call(client.retention.set({ params: { tenant, stream }, query: {}, payload }))
    },

    getRetention: (tenant, stream) => {
      const invalid = ids(tenant, stream)
      return invalid !== undefined ? Effect.fail(invalid) : call(client.retention.get({ params: { tenant, stream }, query: {} }))
    },

    deleteStream: (tenant, stream, options = {}) => {
      const invalid = ids(tenant, stream)
      if (invalid !== undefined) return Effect.fail(invalid)
      const o = decodeDeleteStreamOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      // The tombstone's id is chosen once, before the first attempt: a retry after a lost response is answered with
      // the original tombstone instead of writing a second one (which, after a re-append, would delete again).
      const query = queryOf({
        hard: o.hard === undefined ? undefined : String(o.hard),
        expectedVersion: o.expectedVersion,
        eventId: uuidV4(random)
      }) as { readonly hard?: "true" | "false"; readonly expectedVersion?: string; readonly eventId?: string }
      return call(client.retention.deleteStream({ params: { tenant, stream }, query }))
    },

    health: () => onlyUnavailable(call(client.health())),

    search: (tenant, request) => {
      const invalid = ids(tenant)
      if (invalid !== undefined) return Effect.fail(invalid)
      const payload = decodeSearchRequest(request)
      if (isInvalid(payload)) return Effect.fail(payload)
      return Effect.map(call(client.search.search({ params: { tenant }, payload })), (result) => result.hits)
    },

    searchStatus: (tenant) => {
      const invalid = ids(tenant)
      return invalid !== undefined ? Effect.fail(invalid) : call(client.search.status({ params: { tenant } }))
    },

    forks: {
      create: (tenant, request) => {
        const invalid = ids(tenant)
        if (invalid !== undefined) return Effect.fail(invalid)
        const payload = decodeCreateFork(request)
        return isInvalid(payload) ? Effect.fail(payload) : call(client.forks.create({ params: { tenant }, payload }))
      },
      list: (tenant) => {
        const invalid = ids(tenant)
        if (invalid !== undefined) return Effect.fail(invalid)
        return Effect.map(call(client.forks.list({ params: { tenant } })), (result) => result.forks)
      },
      get: (tenant, forkId) => withFork(tenant, forkId, (params) => call(client.forks.get({ params }))),
      diff: (tenant, forkId) => withFork(tenant, forkId, (params) => call(client.forks.diff({ params }))),
      merge: (tenant, forkId, options = {}) => {
        const payload = decodeMergeRequest(options)
        if (isInvalid(payload)) return Effect.fail(payload)
        return withFork(tenant, forkId, (params) => call(client.forks.merge({ params, payload })))
      },
      discard: (tenant, forkId) => withFork(tenant, forkId, (params) => call(client.forks.discard({ params })))
    },

    subscribe: (tenant, options = {}) => {
      const invalid = ids(tenant)
      if (invalid !== undefined) return Stream.fail(invalid)
      const o = decodeSubscribeOptions(options)
      if (isInvalid(o)) return Stream.fail(o)
      const query = queryOf({ from: o.from, types: o.types, stream: o.stream, streamPrefix: o.streamPrefix })
      return ResumingSubscription.make({
        connect: (lastEventId) =>
          Stream.unwrap(
            // Only opening the connection is timed and retried here: the stream then lasts as long as it is read.
            call(client.subscriptions.subscribe({
              params: { tenant },
              query,
              headers: lastEventId === undefined ? {} : { "last-event-id": lastEventId }
            }))
          ).pipe(Stream.mapError(subscriptionError)),
        // Any `Unavailable` of a subscription is worth a reconnect (bounded): a connection cut while its body is
        // read surfaces as a response error, not as a transport error of the request.
        isRetryable: (error) => error._tag === "Unavailable",
        reconnectsMax,
        delayMs: reconnectDelayMs,
        delayMsMax: reconnectDelayMsMax
      })
    },

    consumers: {
      create: (tenant, name, request = {}) => {
        const payload = decodeCreateConsumer(request)
        if (isInvalid(payload)) return Effect.fail(payload)
        return withName(tenant, name, (params) => call(client.subscriptions.createConsumer({ params, payload })))
      },
      get: (tenant, name) => withName(tenant, name, (params) => call(client.subscriptions.consumer({ params }))),
      list: (tenant) => {
        const invalid = ids(tenant)
        if (invalid !== undefined) return Effect.fail(invalid)
        return Effect.map(call(client.subscriptions.listConsumers({ params: { tenant } })), (result) => result.names)
      },
      next: (tenant, name, options = {}) => {
        const o = decodeNextOptions(options)
        if (isInvalid(o)) return Effect.fail(o)
        const query = queryOf({ max: o.max, waitMs: o.waitMs })
        return withName(tenant, name, (params) =>
          Effect.map(
            call(client.subscriptions.next({ params, query })),
            (result) => result.deliveries
          ))
      },
      ack: (tenant, name, ackIds) => {
        const payload = decodeAck({ ids: ackIds })
        if (isInvalid(payload)) return Effect.fail(payload)
        return withName(tenant, name, (params) => call(client.subscriptions.ack({ params, payload })))
      },
      nack: (tenant, name, nackIds, options = {}) => {
        const payload = decodeNack({ ids: nackIds, delayMs: options.delayMs })
        if (isInvalid(payload)) return Effect.fail(payload)
        return withName(tenant, name, (params) => call(client.subscriptions.nack({ params, payload })))
      },
      parked: (tenant, name, options = {}) => {
        const o = decodeLimitOptions(options)
        if (isInvalid(o)) return Effect.fail(o)
        const query = queryOf({ limit: o.limit })
        return withName(tenant, name, (params) =>
          Effect.map(call(client.subscriptions.parked({ params, query })), (result) => result.parked))
      },
      replayParked: (tenant, name, replayIds) => {
        const payload = decodeReplay({ ids: replayIds })
        if (isInvalid(payload)) return Effect.fail(payload)
        return withName(tenant, name, (params) => call(client.subscriptions.replayParked({ params, payload })))
      }
    },

    projections: {
      define: (tenant, name, request) => {
        const payload = decodeDefineProjection(request)
        if (isInvalid(payload)) return Effect.fail(payload)
        return withName(tenant, name, (params) => call(client.subscriptions.defineProjection({ params, payload })))
      },
      get: (tenant, name) => withName(tenant, name, (params) => call(client.subscriptions.projection({ params }))),
      state: (tenant, name, key) =>
        withName(tenant, name, (params) =>
          call(client.subscriptions.projectionState({ params, query: queryOf({ key }) }))),
      list: (tenant) => {
        const invalid = ids(tenant)
        if (invalid !== undefined) return Effect.fail(invalid)
        return Effect.map(call(client.subscriptions.listProjections({ params: { tenant } })), (result) => result.names)
      },
      start: (tenant, name) => withName(tenant, name, (params) => call(client.subscriptions.startProjection({ params }))),
      stop: (tenant, name) => withName(tenant, name, (params) => call(client.subscriptions.stopProjection({ params }))),
      reset: (tenant, name) => withName(tenant, name, (params) => call(client.subscriptions.resetProjection({ params }))),
      rebuild: (tenant, name) =>
        withName(tenant, name, (params) => call(client.subscriptions.rebuildProjection({ params })))
    }
  } satisfies Omit<ChronosClientShape, "append" | "read" | "query" | "readPartition" | "state"> & Record<string, unknown>
  // The stream methods are overloaded on `fork` (the error type widens with `ForkNotFound` only when a fork is named);
  // one implementation serves every overload.
  return shape as unknown as ChronosClientShape
})
