/**
 * The Chronos client SDK: one service, `ChronosClient`, with the same interface and the same typed errors whether
 * it talks to a node over HTTP or runs the engine in this process.
 *
 *  - `layerHttp({ url })`: derived from the shared `ChronosApi` definition with `HttpApiClient.make`, so the client
 *    and the server cannot drift. Transient failures (`Unavailable` with `retryable`, connection errors, 5xx with
 *    an unexpected body) are retried with bounded exponential backoff. That is safe because appends are idempotent
 *    by event id, so the SDK gives every event without an id a UUID v4 *before* the first attempt: a retry re-sends
 *    exactly the same events. With `gateways` (every runner of a cluster) appends go to the runner that owns their
 *    stream's partition, learned from the cluster (`GET /health`, `GET /v1/partitions`), skipping a hop.
 *  - `layerEmbedded({ dataDir, ... })`: the engine in process over the durable file log.
 *  - `layerMemory(overrides?)`: the engine in process over the memory log (tests).
 *
 * Beyond streams and queries the client covers search (`search`, `searchStatus`), copy-on-write forks (`forks`, and
 * a `fork` option on append / read / query / state), catch-up + live subscriptions (`subscribe`: a `Stream` of
 * `SubscriptionItem`s that, over HTTP, reconnects with `Last-Event-ID` so nothing is skipped or repeated), durable
 * consumer groups (`consumers`), managed projections (`projections`), and stream retention and deletion
 * (`setRetention`, `getRetention`, `deleteStream`). In process these need their engine services (`Forks`, `Search`,
 * `ConsumerGroups`, `Projections`, `StreamRetention`): `layerMemory` brings the first four, `layerEmbedded` those
 * but `Search` (indexes and an embedder are a node's), `layerEngine` those present in its context. A feature
 * whose service is absent fails with a non-retryable `Unavailable` naming the service, never with a defect.
 *
 * Both modes validate requests the same way, with the domain schemas and `onExcessProperty: "error"`; a malformed
 * request fails with `InvalidRequest` naming the field (`events[0].type`, `limit`, `tenant`) before anything is
 * sent or written. Field names are those of the SDK call in both modes: HTTP locations reported by a server
 * (`query.limit`, `params.tenant`) are mapped back to the argument names.
 */
import { type Config, Context, Effect, Layer, type Stream } from "effect"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type { HttpClient } from "effect/http"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import type { Errors, Event, ExpectedVersion, Fork, Reducer, RetentionApi, SearchApi, SubscriptionsApi } from "@chronos/domain"
import { CheckpointStore } from "@chronos/engine/CheckpointStore"
import { ConsumerGroups } from "@chronos/engine/ConsumerGroup"
import { Engine } from "@chronos/engine/Engine"
import { EventLog, type LogError } from "@chronos/engine/EventLog"
import { ForkRegistry } from "@chronos/engine/ForkRegistry"
import { Forks } from "@chronos/engine/Forks"
import { Projections } from "@chronos/engine/Projection"
import { Embedder } from "@chronos/search/Embedder"
import { Search } from "@chronos/search/Search"
import { SearchConfig } from "@chronos/search/SearchConfig"
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
  /** Read through this fork (see `forks`); an unknown, discarded or expired fork fails with `ForkNotFound`. */
  readonly fork?: string | undefined
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
  readonly fork?: string | undefined
}

export interface PartitionReadOptions {
  /** First partition sequence to return (sequences start at 1). */
  readonly fromSeq?: number | undefined
  readonly types?: ReadonlyArray<string> | undefined
  readonly asOf?: string | undefined
  readonly limit?: number | undefined
  readonly fork?: string | undefined
}

export interface StateOptions {
  /**
   * A built-in reducer by name (`merge` — the default —, `count`, `last`, `sum:<field>`), or, in embedded mode
   * only, a reducer object `{ name, initial, step }` whose `step` receives the engine's `StoredEvent` (epoch-ms
   * timestamps). Over HTTP a reducer object fails with `InvalidRequest` (no user code runs on a server).
   */
  readonly reducer?: string | Reducer.Reducer<any> | undefined
  readonly asOf?: string | undefined
  readonly fork?: string | undefined
}

/** Where an append goes: with `fork`, to that fork instead of the tenant's history. */
export interface AppendOptions {
  readonly fork?: string | undefined
}

/** An options object that names no fork: the call cannot fail with `ForkNotFound`. */
type NoFork<O> = O & { readonly fork?: undefined }
/** An options object that may name a fork. */
type WithFork<O> = O & { readonly fork: string | undefined }

// ---- search ---------------------------------------------------------------------------------------------------------

/** As `POST /v1/tenants/{tenant}/search` accepts it (see `SearchApi.SearchRequest`); absent keys may be `undefined`. */
export interface SearchRequest {
  readonly query: string
  /** `hybrid` (default), `keyword` (BM25) or `semantic` (vectors). */
  readonly mode?: SearchApi.SearchMode | undefined
  readonly limit?: number | undefined
  readonly types?: ReadonlyArray<string> | undefined
  readonly streamPrefix?: string | undefined
  /** ISO-8601 instants bounding the commit time. */
  readonly since?: string | undefined
  readonly until?: string | undefined
  readonly asOf?: string | undefined
  /** Search a fork (the server rejects it with `InvalidRequest` until fork search exists). */
  readonly fork?: string | undefined
  /** A position vector (e.g. from an append's positions): wait until the indexes have it (read-your-writes). */
  readonly waitFor?: string | undefined
}

export type SearchError =
  | Errors.InvalidRequest
  | Errors.LimitExceeded
  | Errors.Unavailable
  | SearchApi.EmbedderMismatch
  | Fork.ForkNotFound

// ---- forks ----------------------------------------------------------------------------------------------------------

export interface CreateForkRequest {
  /** Time to live, seconds (at most `forkTtlSecondsMax`). */
  readonly ttlSeconds: number
  /** Fork the parent as it was: an ISO-8601 instant or a position vector. Default: now. */
  readonly asOf?: string | undefined
  /** `main` (default) or a fork id of the same tenant (a branch). */
  readonly parent?: string | undefined
  readonly labels?: Readonly<Record<string, string>> | undefined
}

export type ForkError = Errors.InvalidRequest | Fork.ForkNotFound | Errors.Unavailable

export interface ForksClient {
  readonly create: (
    tenant: string,
    request: CreateForkRequest
  ) => Effect.Effect<Fork.ForkInfo, Errors.InvalidRequest | Errors.LimitExceeded | Fork.ForkNotFound | Errors.Unavailable>
  /** The tenant's live forks, oldest first. */
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<Fork.ForkInfo>, Errors.InvalidRequest | Errors.Unavailable>
  readonly get: (tenant: string, forkId: string) => Effect.Effect<Fork.ForkInfo, ForkError>
  /** What the fork added, per stream. */
  readonly diff: (tenant: string, forkId: string) => Effect.Effect<Fork.DiffResult, ForkError>
  /**
   * Re-appends the fork's events to its parent, stream by stream; `dryRun` only reports. A conflict of a real merge
   * fails with `ForkMergeConflict` (per-stream outcomes in `streams`); a dry run reports it as `status: "conflict"`.
   */
  readonly merge: (
    tenant: string,
    forkId: string,
    options?: { readonly dryRun?: boolean | undefined }
  ) => Effect.Effect<Fork.MergeResult, Fork.ForkMergeConflict | Errors.LimitExceeded | ForkError>
  /** Deletes the fork and its branches. */
  readonly discard: (tenant: string, forkId: string) => Effect.Effect<Fork.DiscardResult, ForkError>
}

// ---- subscriptions --------------------------------------------------------------------------------------------------

export interface SubscribeOptions {
  /** `start` (default), `now`, or a position token from an earlier item (resumes exactly after it). */
  readonly from?: string | undefined
  readonly types?: ReadonlyArray<string> | undefined
  /** Only this stream. */
  readonly stream?: string | undefined
  /** Only streams whose id starts with this. */
  readonly streamPrefix?: string | undefined
}

/**
 * What a subscription delivers, in order: the history's events, one `CaughtUp`, then live events. Every item's
 * `position` is a resume token (`from`): resuming from an event's position delivers exactly what came after it.
 * `Lagging` (over HTTP only) says the subscriber is more than `max` events behind the head (`subscriberLagEventsMax`
 * on the node); it is a warning, the subscription goes on.
 */
export type SubscriptionItem =
  | { readonly _tag: "Event"; readonly event: Event.RecordedEvent; readonly position: string }
  | { readonly _tag: "CaughtUp"; readonly position: string }
  | { readonly _tag: "Lagging"; readonly lag: number; readonly max: number; readonly position: string }

export type SubscriptionError = Errors.InvalidRequest | Errors.Unavailable | Errors.CorruptData

// ---- consumer groups ------------------------------------------------------------------------------------------------

export interface CreateConsumerRequest {
  readonly types?: ReadonlyArray<string> | undefined
  readonly stream?: string | undefined
  readonly streamPrefix?: string | undefined
  /** Where a new group starts: `start` (default), `now`, or a position token. Ignored if the group exists. */
  readonly from?: string | undefined
}

export type ConsumerError = Errors.InvalidRequest | SubscriptionsApi.ConsumerGroupNotFound | Errors.Unavailable

export interface ConsumersClient {
  /** Creates the group, or returns it when it exists with the same filter (else `DefinitionConflict`). */
  readonly create: (
    tenant: string,
    name: string,
    request?: CreateConsumerRequest
  ) => Effect.Effect<
    SubscriptionsApi.ConsumerStatus,
    Errors.InvalidRequest | Errors.LimitExceeded | SubscriptionsApi.DefinitionConflict | Errors.Unavailable
  >
  /** Position, lag per partition, pending and parked counts. */
  readonly get: (tenant: string, name: string) => Effect.Effect<SubscriptionsApi.ConsumerStatus, ConsumerError>
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<string>, Errors.InvalidRequest | Errors.Unavailable>
  /** Up to `max` deliveries, waiting up to `waitMs` for the first (an empty batch: nothing was ready in time). */
  readonly next: (
    tenant: string,
    name: string,
    options?: { readonly max?: number | undefined; readonly waitMs?: number | undefined }
  ) => Effect.Effect<
    ReadonlyArray<SubscriptionsApi.Delivery>,
    ConsumerError | Errors.LimitExceeded | Errors.CorruptData
  >
  /** Completes deliveries (delivery ids `partition:seq` or event ids); durable when it returns. */
  readonly ack: (
    tenant: string,
    name: string,
    ids: ReadonlyArray<string>
  ) => Effect.Effect<{ readonly acked: number; readonly unknown: ReadonlyArray<string> }, ConsumerError>
  /** Fails deliveries: retried after their backoff (or `delayMs`), parked when out of attempts. */
  readonly nack: (
    tenant: string,
    name: string,
    ids: ReadonlyArray<string>,
    options?: { readonly delayMs?: number | undefined }
  ) => Effect.Effect<
    { readonly retrying: number; readonly parked: number; readonly unknown: ReadonlyArray<string> },
    ConsumerError
  >
  readonly parked: (
    tenant: string,
    name: string,
    options?: { readonly limit?: number | undefined }
  ) => Effect.Effect<
    ReadonlyArray<SubscriptionsApi.ParkedEvent>,
    ConsumerError | Errors.LimitExceeded | Errors.CorruptData
  >
  /** Sends parked events (those named, or all) back for delivery with fresh attempts. */
  readonly replayParked: (
    tenant: string,
    name: string,
    ids?: ReadonlyArray<string> | undefined
  ) => Effect.Effect<{ readonly replayed: number; readonly unknown: ReadonlyArray<string> }, ConsumerError>
}

// ---- projections ----------------------------------------------------------------------------------------------------

/** A declarative projection (`SubscriptionsApi.ProjectionDefinition`) with `start` (default true) and `replace`. */
export interface DefineProjectionRequest {
  readonly kind: "count" | "sum" | "last"
  readonly field?: string | undefined
  readonly groupBy: "stream" | "type" | { readonly dataField: string }
  readonly types?: ReadonlyArray<string> | undefined
  readonly stream?: string | undefined
  readonly streamPrefix?: string | undefined
  readonly start?: boolean | undefined
  readonly replace?: boolean | undefined
}

export type ProjectionError = Errors.InvalidRequest | SubscriptionsApi.ProjectionNotFound | Errors.Unavailable
type ProjectionCall = (tenant: string, name: string) => Effect.Effect<SubscriptionsApi.ProjectionStatus, ProjectionError>

export interface ProjectionsClient {
  readonly define: (
    tenant: string,
    name: string,
    request: DefineProjectionRequest
  ) => Effect.Effect<
    SubscriptionsApi.ProjectionStatus,
    Errors.InvalidRequest | Errors.LimitExceeded | SubscriptionsApi.DefinitionConflict | Errors.Unavailable
  >
  /** Status, progress (events/s, ETA) and the whole state. */
  readonly get: ProjectionCall
  /** The state (or one key's value) and the position it is exact at. */
  readonly state: (
    tenant: string,
    name: string,
    key?: string | undefined
  ) => Effect.Effect<SubscriptionsApi.ProjectionStateResult, ProjectionError>
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<string>, Errors.InvalidRequest | Errors.Unavailable>
  readonly start: ProjectionCall
  readonly stop: ProjectionCall
  /** Stops, and discards the state and checkpoint. */
  readonly reset: ProjectionCall
  /** Reset, then run from the start of the log; `get` shows the rebuild's progress. */
  readonly rebuild: ProjectionCall
}

// ---- retention and deletion -----------------------------------------------------------------------------------------

/** A stream's retention settings (`RetentionApi.RetentionSettings`): positive integers; an absent one is not applied. */
export interface RetentionSettings {
  readonly maxAgeMs?: number | undefined
  readonly maxCount?: number | undefined
  readonly truncateBefore?: number | undefined
}

export interface DeleteStreamOptions {
  /** Also erase the events at the next seal or compaction (default: soft, hidden only). */
  readonly hard?: boolean | undefined
  /** Delete only if the stream is at this version. */
  readonly expectedVersion?: ExpectedVersion.ExpectedVersion | undefined
}

/**
 * Retention and deletion over an engine, for the in-process drivers: `@chronos/storage/RetentionClient.layer`
 * provides it over an `Engine` (one that applies retention to its reads, `Retention.layerEnforced`). This package
 * cannot depend on the storage package (its export and import use this client), so it names the operations and
 * finds them in the context, like the other engine services. Inputs are validated by the client first.
 */
export interface StreamRetentionShape {
  readonly set: (
    tenant: string,
    stream: string,
    settings: RetentionApi.RetentionSettings
  ) => Effect.Effect<RetentionApi.StreamRetention, Errors.InvalidRequest | Errors.Unavailable>
  readonly get: (
    tenant: string,
    stream: string
  ) => Effect.Effect<RetentionApi.StreamRetention, Errors.InvalidRequest | Errors.StreamNotFound | Errors.Unavailable>
  readonly delete: (
    tenant: string,
    stream: string,
    options: { readonly hard: boolean; readonly expectedVersion?: ExpectedVersion.ExpectedVersion | undefined }
  ) => Effect.Effect<
    RetentionApi.DeleteStreamResult,
    Errors.InvalidRequest | Errors.WrongExpectedVersion | Errors.StreamNotFound | Errors.Unavailable
  >
}

export class StreamRetention extends Context.Service<StreamRetention, StreamRetentionShape>()(
  "chronos/client/StreamRetention"
) {}

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
  readonly append: {
    (tenant: string, stream: string, request: AppendRequest, options?: NoFork<AppendOptions>): Effect.Effect<
      Event.AppendResult,
      Errors.AppendError
    >
    (tenant: string, stream: string, request: AppendRequest, options: WithFork<AppendOptions>): Effect.Effect<
      Event.AppendResult,
      Errors.AppendError | Fork.ForkNotFound
    >
  }
  readonly read: {
    (tenant: string, stream: string, options?: NoFork<ReadOptions>): Effect.Effect<ReadonlyArray<Event.RecordedEvent>, ReadError>
    (tenant: string, stream: string, options: WithFork<ReadOptions>): Effect.Effect<
      ReadonlyArray<Event.RecordedEvent>,
      ReadError | Fork.ForkNotFound
    >
  }
  readonly query: {
    (tenant: string, options?: NoFork<QueryOptions>): Effect.Effect<QueryResult, ReadError>
    (tenant: string, options: WithFork<QueryOptions>): Effect.Effect<QueryResult, ReadError | Fork.ForkNotFound>
  }
  readonly readPartition: {
    (tenant: string, partition: number, options?: NoFork<PartitionReadOptions>): Effect.Effect<
      ReadonlyArray<Event.RecordedEvent>,
      ReadError
    >
    (tenant: string, partition: number, options: WithFork<PartitionReadOptions>): Effect.Effect<
      ReadonlyArray<Event.RecordedEvent>,
      ReadError | Fork.ForkNotFound
    >
  }
  readonly state: {
    (tenant: string, stream: string, options?: NoFork<StateOptions>): Effect.Effect<Event.StateResult, StateError>
    (tenant: string, stream: string, options: WithFork<StateOptions>): Effect.Effect<
      Event.StateResult,
      StateError | Fork.ForkNotFound
    >
  }
  readonly partitions: () => Effect.Effect<ReadonlyArray<Event.PartitionStatus>, Errors.Unavailable>
  readonly health: () => Effect.Effect<Health, Errors.Unavailable>
  /** Keyword, semantic or hybrid search over a tenant's events. */
  readonly search: (tenant: string, request: SearchRequest) => Effect.Effect<ReadonlyArray<SearchApi.SearchHit>, SearchError>
  /** How far each index has followed each partition (positions, lag). */
  readonly searchStatus: (tenant: string) => Effect.Effect<SearchApi.SearchStatus, Errors.InvalidRequest | Errors.Unavailable>
  readonly forks: ForksClient
  /**
   * Catch-up + live: history, one `CaughtUp`, then live events, until interrupted. Bad options fail the stream at
   * once with `InvalidRequest`. Over HTTP a dropped connection is resumed from the last item's position (bounded by
   * `subscribeReconnectsMax`, then `Unavailable`).
   */
  readonly subscribe: (tenant: string, options?: SubscribeOptions) => Stream.Stream<SubscriptionItem, SubscriptionError>
  readonly consumers: ConsumersClient
  readonly projections: ProjectionsClient
  /**
   * Replaces a stream's retention settings (`{}` clears them) and returns the rules in effect: what they hide is gone
   * from reads at once, and erased at the next seal. In process it needs the `StreamRetention` service (see there;
   * without it a non-retryable `Unavailable`).
   */
  readonly setRetention: (
    tenant: string,
    stream: string,
    settings: RetentionSettings
  ) => Effect.Effect<RetentionApi.StreamRetention, Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable>
  /** The rules in effect for a stream (`StreamNotFound` when it has no events). In process as `setRetention`. */
  readonly getRetention: (
    tenant: string,
    stream: string
  ) => Effect.Effect<RetentionApi.StreamRetention, Errors.InvalidRequest | Errors.StreamNotFound | Errors.Unavailable>
  /**
   * Deletes a stream: a tombstone hides its events (a later append continues the versions); `hard` also erases them
   * at the next seal. Retried like every call, and idempotently: the tombstone's event id is chosen before the first
   * attempt, so a retry after a lost response is answered with the original tombstone. In process as `setRetention`.
   */
  readonly deleteStream: (
    tenant: string,
    stream: string,
    options?: DeleteStreamOptions
  ) => Effect.Effect<
    RetentionApi.DeleteStreamResult,
    Errors.InvalidRequest | Errors.WrongExpectedVersion | Errors.StreamNotFound | Errors.Unavailable
  >
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

  /**
   * A client over whatever `Engine` is provided (e.g. a node's own engine, for in-process tools). Forks, search,
   * consumer groups, projections and retention use the `Forks`, `Search`, `ConsumerGroups`, `Projections` and
   * `StreamRetention` services when they are in the context too; without one, its feature fails with a
   * non-retryable `Unavailable` naming it.
   */
  static readonly layerEngine: Layer.Layer<ChronosClient, never, Engine> = Layer.effect(
    ChronosClient,
    Effect.gen(function*() {
      const engine = yield* Engine
      return Embedded.make(engine, {
        forks: yield* Effect.serviceOption(Forks),
        search: yield* Effect.serviceOption(Search),
        groups: yield* Effect.serviceOption(ConsumerGroups),
        projections: yield* Effect.serviceOption(Projections),
        retention: yield* Effect.serviceOption(StreamRetention)
      })
    })
  )

  /**
   * The engine in this process over the durable file log in `dataDir`, with forks (`<dataDir>/forks/`), consumer
   * groups and projections (`<dataDir>/consumers|projections/`). Not search: its indexes and embedder belong to a
   * node (`search` fails with `Unavailable`). Configuration: defaults, then `CHRONOS_*` environment variables, then
   * `options`. The log is closed (pending commits flushed) when the layer's scope closes. No cold tier and no
   * retention on reads: for a store that may have been sealed or given retention rules, use
   * `@chronos/storage/Embedded.clientLayer`, which serves the directory as a node does.
   */
  static readonly layerEmbedded = (
    options: EmbeddedOptions
  ): Layer.Layer<ChronosClient, LogError | Config.ConfigError | Errors.Unavailable> => {
    const { dataDir, ...overrides } = options
    const config = ChronosConfig.layerConfig({ ...overrides, dataDir, logDriver: "file" })
    const log = Layer.unwrap(Effect.map(ChronosConfig, Embedded.fileLog))
    return ChronosClient.layerEngine.pipe(
      Layer.provide(engineServices(ForkRegistry.layerFile(dataDir))),
      Layer.provideMerge(Engine.layerLocal),
      Layer.provideMerge(log),
      Layer.provideMerge(config)
    )
  }

  /**
   * The engine in this process over the memory log: an independent, empty store per build (tests), with forks,
   * consumer groups, projections and search. Search runs with the deterministic hashing embedder
   * (`Embedder.layerTest`): keyword ranking is the node's, semantic ranking is only roughly lexical.
   */
  static readonly layerMemory = (
    overrides: Partial<ChronosConfigShape> = {}
  ): Layer.Layer<ChronosClient, never> =>
    ChronosClient.layerEngine.pipe(
      Layer.provide(Search.layerMemory.pipe(
        Layer.provide(Embedder.layerTest()),
        Layer.provide(SearchConfig.layer({ embedder: "test" }))
      )),
      Layer.provide(engineServices(ForkRegistry.layerMemory)),
      Layer.provideMerge(Engine.layerLocal),
      Layer.provideMerge(EventLog.layerMemory),
      Layer.provideMerge(ChronosConfig.layer({ ...overrides, logDriver: "memory" })),
      // The memory log and the memory registries never fail to open.
      Layer.orDie
    )
}

/** Forks (records in `registry`), consumer groups and projections (stored next to the log) over the engine. */
const engineServices = <E>(registry: Layer.Layer<ForkRegistry, E>) =>
  Layer.mergeAll(
    Forks.layer.pipe(Layer.provide(registry)),
    Layer.mergeAll(ConsumerGroups.layer, Projections.layer()).pipe(Layer.provide(CheckpointStore.layerConfig))
  )
