/**
 * A Chronos node as one layer: configuration (defaults, `CHRONOS_*` environment, overrides), the event log driver
 * the configuration names, the engine (every partition an effect/cluster entity on this runner), and the HTTP API on
 * `httpHost:httpPort`. It owns start-up order and shutdown order: the HTTP server stops accepting and lets
 * in-flight requests finish before the partitions flush their commits and the log closes (each layer is released
 * before the layers it was built on).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, type Config, Context, Effect, Exit, Layer, Runtime } from "effect"
import { HttpRouter, HttpServer, type HttpServerError } from "effect/http"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import { EventLog, type LogError } from "@chronos/engine/EventLog"
import * as PartitionEntity from "@chronos/engine/PartitionEntity"
import { ColdTier } from "@chronos/storage/ColdTier"
import * as Retention from "@chronos/storage/Retention"
import type { Sharding } from "effect/cluster"
import type { SearchConfigShape } from "@chronos/search/SearchConfig"
import { forksLayer } from "./ForksHandlers.ts"
import * as HttpApp from "./HttpApp.ts"
import { RunnerAddress } from "./HttpHandlers.ts"
import * as NodeServer from "./internal/nodeServer.ts"
import * as SubscriptionsHandlers from "./SubscriptionsHandlers.ts"
import { searchLayer } from "./SearchHandlers.ts"

/** The `EventLog` named by `config.logDriver`. */
export const logLayer = (config: ChronosConfigShape): Layer.Layer<EventLog, LogError> => {
  switch (config.logDriver) {
    case "memory":
      return EventLog.layerMemory
    case "file":
      return EventLog.layerFile({
        dataDir: config.dataDir,
        segmentBytesMax: config.logSegmentBytesMax,
        partitions: config.partitions
      })
    case "jetstream":
      return EventLog.layerJetStream({
        servers: config.natsUrls.split(",").map((s) => s.trim()).filter((s) => s !== ""),
        replicas: config.natsReplicas,
        commitBytesMax: config.commitBytesMax,
        // Short: a request or publish to a stream leader that just died must fail and be retried on the new leader
        // (the partition's reload, the entity's activation retry) rather than wait out a long default.
        requestTimeoutMs: config.natsRequestTimeoutMs,
        publishTimeoutMs: config.natsPublishTimeoutMs
      })
  }
}

/**
 * The cold tier (Parquet segments, `@chronos/storage`) of `config.segmentStoreDriver`: by default plain files under
 * `<dataDir>/segments/` for the file log, NATS buckets replicated like the log (Object Store for segments, KV for
 * manifests) for the JetStream log — so a cluster's partitions seal and load on whichever runner owns them — and
 * none for the memory log. Typed as providing nothing: the
 * engine and the admin handler find it with `serviceOption`. A node that cannot reach its segment store must not
 * serve (it would serve a partial history): a start-up defect.
 */
export const coldLayer = (config: ChronosConfigShape): Layer.Layer<never, never, ChronosConfig> => {
  const driver = config.segmentStoreDriver === "default"
    ? (config.logDriver === "file" ? "local" : config.logDriver === "jetstream" ? "nats" : "none")
    : config.segmentStoreDriver
  switch (driver) {
    case "local":
      return ColdTier.layerLocal({ dataDir: config.dataDir })
    case "nats":
      return ColdTier.layerNats({
        servers: config.natsUrls.split(",").map((s) => s.trim()).filter((s) => s !== ""),
        replicas: config.natsReplicas,
        requestTimeoutMs: config.segmentStoreTimeoutMs,
        metadataTimeoutMs: config.natsRequestTimeoutMs
      }).pipe(Layer.orDie)
    case "none":
      return Layer.empty
  }
}

/** `log: file, data: ./data` / `log: jetstream, nats: …` / `log: memory`. */
const describeLog = (config: ChronosConfigShape) =>
  config.logDriver === "file"
    ? `log: file, data: ${config.dataDir}`
    : config.logDriver === "jetstream"
    ? `log: jetstream, nats: ${config.natsUrls}`
    : "log: memory"

/** What a running node offers to code in the same process (tests, the CLI): its server, engine and config. */
export type Services = HttpServer.HttpServer | Engine | ChronosConfig

export interface Options extends NodeServer.Options {
  /**
   * The cluster this node is a runner of. Default: a cluster of one (`PartitionEntity.layerSingleRunner`): every
   * partition is an entity on this runner. A multi-node deployment passes its runner's sharding layer here
   * (start-up failures of that layer are defects: a runner that cannot join its cluster must not serve).
   */
  readonly sharding?: Layer.Layer<Sharding.Sharding> | undefined
  /** The runner address of this node in its cluster (`host:port`), reported by `GET /health` for routing clients. */
  readonly runnerAddress?: string | undefined
  /** Search settings over the defaults and `CHRONOS_SEARCH_*` (see `@chronos/search/SearchConfig`). */
  readonly search?: Partial<SearchConfigShape> | undefined
}

/** A node over an already-provided `ChronosConfig`. */
export const layerFromConfig = (options: Options = {}): Layer.Layer<
  HttpServer.HttpServer | Engine,
  LogError | HttpServerError.ServeError,
  ChronosConfig
> =>
  Layer.unwrap(Effect.gen(function*() {
    const config = yield* ChronosConfig
    // One log for the engine and the forks (theirs in per-fork namespaces of it).
    const LogLive = logLayer(config)
    // Partitions are effect/cluster entities on this runner; the engine calls them directly while they are local.
    // Reads apply each stream's retention and deletion at once (`Retention.enforce`), not only after compaction.
    const EngineLive = Retention.layerEnforced.pipe(Layer.provideMerge(PartitionEntity.layerEngine.pipe(
      Layer.provide(options.sharding ?? PartitionEntity.layerSingleRunner),
      Layer.provideMerge(coldLayer(config)),
      Layer.provide(LogLive)
    )))
    // Forks over the engine (closed before it). A node that cannot read its fork registry must not serve.
    const EngineAndForks = forksLayer(config).pipe(Layer.orDie, Layer.provide(LogLive), Layer.provideMerge(EngineLive))
    // Search follows the engine's committed events (and reads forks for `fork` searches); it is released before the
    // engine, after the HTTP server. A bad search configuration is a start-up defect, like a bad `ChronosConfig`.
    const EngineAndSearch = searchLayer(config, options.search).pipe(Layer.orDie, Layer.provideMerge(EngineAndForks))
    // Consumer groups and projections run over the engine (and stop before it); their state is stored next to the log.
    const CoreAndForks = SubscriptionsHandlers.layerServices.pipe(Layer.provideMerge(EngineAndSearch))
    const { layer: Server, drain } = NodeServer.make(config, options)
    const Serve = HttpRouter.serve(HttpApp.layer, { disableLogger: true, disableListenLog: true })
    // Built last, once the routes are served: announces the node and exports only what callers use. Its
    // finalizer runs first at shutdown, so connections are drained before the server waits for them.
    const Exports = Layer.effectContext(Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const engine = yield* Engine
      const longRequests = yield* SubscriptionsHandlers.LongRequests
      // SSE streams and long polls end first: the server could not finish draining while they last.
      yield* Effect.addFinalizer(() => Effect.andThen(Effect.sync(drain), longRequests.close))
      yield* Effect.logInfo(
        `chronos listening on ${HttpServer.formatAddress(server.address)} ` +
          `(${describeLog(config)}, partitions: ${config.partitions})`
      )
      return Context.make(HttpServer.HttpServer, server).pipe(Context.add(Engine, engine))
    }))
    return Exports.pipe(
      Layer.provide(Serve),
      Layer.provide(Server),
      Layer.provide(CoreAndForks),
      Layer.provide(Layer.succeed(RunnerAddress, options.runnerAddress))
    )
  }))

/**
 * The node: `ChronosConfig.layerConfig(overrides)` + the log driver of `config.logDriver` + `Engine.layerLocal`
 * + the HTTP API (with `/openapi.json`). Listening once built; stopped (gracefully) when its scope closes.
 */
export const layer = (
  overrides: Partial<ChronosConfigShape> = {},
  options: Options = {}
): Layer.Layer<Services, LogError | HttpServerError.ServeError | Config.ConfigError> =>
  layerFromConfig(options).pipe(Layer.provideMerge(ChronosConfig.layerConfig(overrides)))

/**
 * A node only ends by interruption (SIGINT/SIGTERM), so a shutdown that finished cleanly exits 0 — what process
 * supervisors expect from a requested stop — instead of Effect's default 130. A failed start-up or a failing
 * shutdown (e.g. a commit that could not be flushed) still exits non-zero.
 */
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

/**
 * Runs a node as the process's main program until SIGINT/SIGTERM, then shuts it down gracefully: the listener
 * closes, in-flight requests are answered (appends wait for their commit), pending commits are flushed and the
 * log is closed.
 */
export const run = (overrides: Partial<ChronosConfigShape> = {}, options: Options = {}): void =>
  Layer.launch(layer(overrides, options)).pipe(NodeRuntime.runMain({ teardown }))
