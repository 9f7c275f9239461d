/**
 * The Chronos client SDK: one service, `ChronosClient`, with the same interface and the same typed errors whether
 * it talks to a node over HTTP or runs the engine in this process.
 *
 *  - `layerHttp({ url })`: derived from the shared `ChronosApi` definition with `HttpApiClient.make`, so the client
 *    and the server cannot drift. Transient failures (`Unavailable` with `retryable`, connection errors, 5xx with
 *    an unexpected body) are retried with bounded exponential backoff. That is safe because appends are idempotent
 *    by event id, so the SDK gives every event without an id a UUID v4 *before* the first attempt: a retry re-sends
 *    exactly the same events.
 *  - `layerEmbedded({ dataDir, ... })`: the engine in process over the durable file log.
 *  - `layerMemory(overrides?)`: the engine in process over the memory log (tests).
 *
 * Both modes validate requests the same way, with the domain schemas and `onExcessProperty: "error"`; a malformed
 * request fails with `InvalidRequest` naming the field (`events[0].type`, `limit`, `tenant`) before anything is
 * sent or written. Field names are those of the SDK call in both modes: HTTP locations reported by a server
 * (`query.limit`, `params.tenant`) are mapped back to the argument names.
 */
import { type Config, Context, Effect, Layer } from "effect"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type { HttpClient } from "effect/http"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import type { Errors, Event, ExpectedVersion, Reducer } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import { EventLog, type LogError } from "@chronos/engine/EventLog"
import * as Embedded from "./internal/embedded.ts"
import * as Http from "./internal/http.ts"

// ---- requests -------------------------------------------------------------------------------------------------------

/** An event to append. Without `eventId` one is generated (by the SDK over HTTP, by the engine in process). */
export interface EventInput {
  readonly eventId?: string
  readonly type: string
  readonly data: unknown
  readonly metadata?: Readonly<Record<string, unknown>>
}

export interface AppendRequest {
  /** Optimistic concurrency check; `any` when absent. */
  readonly expectedVersion?: ExpectedVersion.ExpectedVersion
  readonly events: ReadonlyArray<EventInput>
}

export interface ReadOptions {
  /** First version to return (forward), or the highest one (backward). */
  readonly fromVersion?: number | undefined
  readonly limit?: number | undefined
  readonly direction?: "forward" | "backward" | undefined
  /** Time travel: an ISO-8601 timestamp or a position vector `p:seq,p:seq` (see `AsOf`). */
  readonly asOf?: string | undefined
}

export interface QueryOptions {
  readonly types?: ReadonlyArray<string> | undefined
  /** ISO-8601 timestamps bounding the commit time. */
  readonly since?: string | undefined
  readonly until?: string | undefined
  readonly asOf?: string | undefined
  readonly limit?: number | undefined
  /** The `next` token of a previous page. */
  readonly after?: string | undefined
}

export interface PartitionReadOptions {
  /** First partition sequence to return (sequences start at 1). */
  readonly fromSeq?: number | undefined
  readonly types?: ReadonlyArray<string> | undefined
  readonly asOf?: string | undefined
  readonly limit?: number | undefined
}

export interface StateOptions {
  /**
   * A built-in reducer by name (`merge` — the default —, `count`, `last`, `sum:<field>`), or, in embedded mode
   * only, a reducer object `{ name, initial, step }` whose `step` receives the engine's `StoredEvent` (epoch-ms
   * timestamps). Over HTTP a reducer object fails with `InvalidRequest` (no user code runs on a server).
   */
  readonly reducer?: string | Reducer.Reducer<any> | undefined
  readonly asOf?: string | undefined
}

// ---- results --------------------------------------------------------------------------------------------------------

export interface QueryResult {
  readonly events: ReadonlyArray<Event.RecordedEvent>
  /** Pass as `after` to read the next page; absent when the read reached the end. */
  readonly next?: string
}

export interface Health {
  readonly status: "ok"
  readonly partitions: number
}

export type ReadError = Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable | Errors.CorruptData
export type StateError = Errors.InvalidRequest | Errors.StreamNotFound | Errors.Unavailable | Errors.CorruptData

export interface ChronosClientShape {
  readonly append: (
    tenant: string,
    stream: string,
    request: AppendRequest
  ) => Effect.Effect<Event.AppendResult, Errors.AppendError>
  readonly read: (
    tenant: string,
    stream: string,
    options?: ReadOptions
  ) => Effect.Effect<ReadonlyArray<Event.RecordedEvent>, ReadError>
  readonly query: (tenant: string, options?: QueryOptions) => Effect.Effect<QueryResult, ReadError>
  readonly readPartition: (
    tenant: string,
    partition: number,
    options?: PartitionReadOptions
  ) => Effect.Effect<ReadonlyArray<Event.RecordedEvent>, ReadError>
  readonly state: (tenant: string, stream: string, options?: StateOptions) => Effect.Effect<Event.StateResult, StateError>
  readonly partitions: () => Effect.Effect<ReadonlyArray<Event.PartitionStatus>, Errors.Unavailable>
  readonly health: () => Effect.Effect<Health, Errors.Unavailable>
}

// ---- layers ---------------------------------------------------------------------------------------------------------

export type HttpOptions = Http.HttpOptions

/** Retry and timeout bounds of `layerHttp` when the caller names none. */
export const httpDefaults = Http.defaults

export interface EmbeddedOptions extends Partial<Omit<ChronosConfigShape, "dataDir" | "logDriver">> {
  /** Directory of the file log. One process at a time may open it. */
  readonly dataDir: string
}

export class ChronosClient extends Context.Service<ChronosClient, ChronosClientShape>()("chronos/client/ChronosClient") {
  /**
   * A client of a node's HTTP API at `url` (e.g. `http://127.0.0.1:3900`), over undici's keep-alive connection
   * pool: it measured about half the client CPU per request of `fetch` (`bench/httpClient.ts`). The pool is
   * closed with the layer.
   */
  static readonly layerHttp = (options: HttpOptions): Layer.Layer<ChronosClient> =>
    ChronosClient.layerHttpWith(options).pipe(Layer.provide(NodeHttpClient.layerUndici))

  /** A client of a node's HTTP API over the `HttpClient` provided (e.g. `FetchHttpClient.layer` outside Node). */
  static readonly layerHttpWith = (options: HttpOptions): Layer.Layer<ChronosClient, never, HttpClient.HttpClient> =>
    Layer.effect(ChronosClient, Http.make(options))

  /** A client over whatever `Engine` is provided (e.g. a node's own engine, for in-process tools). */
  static readonly layerEngine: Layer.Layer<ChronosClient, never, Engine> = Layer.effect(
    ChronosClient,
    Effect.map(Engine, Embedded.make)
  )

  /**
   * The engine in this process over the durable file log in `dataDir`. Configuration: defaults, then `CHRONOS_*`
   * environment variables, then `options`. The log is closed (pending commits flushed) when the layer's scope
   * closes.
   */
  static readonly layerEmbedded = (
    options: EmbeddedOptions
  ): Layer.Layer<ChronosClient, LogError | Config.ConfigError> => {
    const { dataDir, ...overrides } = options
    const config = ChronosConfig.layerConfig({ ...overrides, dataDir, logDriver: "file" })
    return ChronosClient.layerEngine.pipe(
      Layer.provide(Engine.layerLocal),
      Layer.provide(Layer.unwrap(Effect.map(ChronosConfig, Embedded.fileLog))),
      Layer.provide(config)
    )
  }

  /** The engine in this process over the memory log: an independent, empty store per build (tests). */
  static readonly layerMemory = (
    overrides: Partial<ChronosConfigShape> = {}
  ): Layer.Layer<ChronosClient, never> =>
    ChronosClient.layerEngine.pipe(
      Layer.provide(Engine.layerLocal),
      Layer.provide(EventLog.layerMemory),
      Layer.provide(ChronosConfig.layer({ ...overrides, logDriver: "memory" })),
      // The memory log never fails to open.
      Layer.orDie
    )
}
