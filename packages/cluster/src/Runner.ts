/**
 * A Chronos cluster runner: one process that is at once a node (`Node.layer`: the JetStream log driver on an R3
 * NATS cluster, the engine, the HTTP gateway) and a member of the `effect/cluster` cluster that shares the
 * partitions (a `NodeClusterSocket` runner with storage "byo" = `NatsRunnerStorage` + `MessageStorage.layerNoop`).
 *
 * This module owns how those pieces are wired for a runner, and nothing else:
 *  - one `ClusterConfig` for everything: the sharding layer and the runner storage see the same settings, so
 *    `shardsPerGroup` is the same on every runner (the storage refuses to start with a different one);
 *  - the runner address is explicit (`runnerHost:runnerPort`, advertised to the other runners) and may listen on
 *    another interface (`runnerListenHost`, e.g. 0.0.0.0 in a container);
 *  - cluster RPCs stay volatile: the partition streams in JetStream are the durable truth, and the gateway retries
 *    an append with the same event ids, which the partition deduplicates (`PartitionEntity.layerRouter`);
 *  - a runner that cannot join its cluster (NATS unreachable, a mismatched cluster configuration, its runner port in
 *    use) fails at start-up: `Node.layer` treats start-up failures of the sharding layer as defects, so the process
 *    exits non-zero instead of serving partitions it cannot own.
 *
 * The HTTP gateway of any runner serves every partition: partitions active on this runner are called directly,
 * the others through the entity client (to whichever runner holds their shard), see `PartitionEntity.layerRouter`.
 */
import { NodeClusterSocket, NodeRuntime } from "@effect/platform-node"
import { Cause, type Config, Effect, Exit, Layer, type LogLevel, Option, References, Runtime } from "effect"
import { type ClusterError, MessageStorage, RunnerAddress, type Sharding, ShardingConfig } from "effect/cluster"
import type { HttpServerError } from "effect/http"
import type { SocketServer } from "effect/socket"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import type { LogError } from "@chronos/engine/EventLog"
import * as Node from "@chronos/server/Node"
import * as ClusterConfig from "./ClusterConfig.ts"
import * as NatsRunnerStorage from "./NatsRunnerStorage.ts"

export interface Options {
  /** A name for logs and tooling (e.g. "r1"); not used for routing. */
  readonly name?: string | undefined
  /** NATS client URLs of the cluster (all nodes, so the runner survives the loss of any one). */
  readonly natsUrls: ReadonlyArray<string>
  /** Replicas of the partition streams and of the coordination buckets: 3 on a 3-node NATS cluster. Default 3. */
  readonly replicas?: number | undefined
  /** Host other runners reach this runner on (its advertised runner address). Default 127.0.0.1. */
  readonly runnerHost?: string | undefined
  /** Port of the runner-to-runner socket. */
  readonly runnerPort: number
  /** Interface the runner socket listens on, when it differs from `runnerHost` (e.g. "0.0.0.0"). */
  readonly runnerListenHost?: string | undefined
  /** Prefix of the coordination buckets. Default "chronos_cluster" (see `NatsRunnerStorage`). */
  readonly bucketPrefix?: string | undefined
  /**
   * Node configuration on top of the defaults and `CHRONOS_*` environment variables (`httpHost`, `httpPort`,
   * `partitions`, limits, …). `logDriver`, `natsUrls` and `natsReplicas` are set from the options above.
   */
  readonly config?: Partial<ChronosConfigShape> | undefined
}

/** `host:port` of a runner: how the cluster, `GET /v1/partitions` and the tooling name a runner. */
export const formatAddress = (host: string, port: number): string => `${host}:${port}`

/** The node configuration of a runner: the JetStream log on the given NATS cluster, plus the caller's settings. */
export const nodeConfig = (options: Options): Partial<ChronosConfigShape> => ({
  ...options.config,
  logDriver: "jetstream",
  natsUrls: options.natsUrls.join(","),
  natsReplicas: options.replicas ?? 3
})

/**
 * The cluster membership of a runner: `Sharding` over the runner socket and the NATS runner storage. Also exports
 * this runner's `ShardingConfig`, which is how the gateway learns the runner's own address (to name the owner of
 * the partitions active here in `GET /v1/partitions`).
 */
export const layerSharding = (options: Options): Layer.Layer<
  Sharding.Sharding | ShardingConfig.ShardingConfig,
  | Config.ConfigError
  | NatsRunnerStorage.ClusterConfigMismatch
  | ClusterError.PersistenceError
  | SocketServer.SocketServerError
> => {
  const host = options.runnerHost ?? "127.0.0.1"
  const settings: Partial<ShardingConfig.ShardingConfig["Service"]> = {
    ...ClusterConfig.runnerShardingConfig(host, options.runnerPort),
    ...(options.runnerListenHost === undefined
      ? {}
      : { runnerListenAddress: Option.some(RunnerAddress.make(options.runnerListenHost, options.runnerPort)) })
  }
  const config = ShardingConfig.layer(settings)
  const storage = Layer.mergeAll(
    NatsRunnerStorage.layer({
      servers: options.natsUrls,
      replicas: options.replicas ?? 3,
      ...(options.bucketPrefix === undefined ? {} : { bucketPrefix: options.bucketPrefix })
    }),
    MessageStorage.layerNoop
  ).pipe(Layer.provide(config))
  return NodeClusterSocket.layer({ storage: "byo", shardingConfig: settings }).pipe(
    Layer.provide(storage),
    Layer.provideMerge(config)
  )
}

/** A runner as one layer: the node, on the cluster given by `layerSharding(options)`. */
export const layer = (options: Options): Layer.Layer<Node.Services, LogError | HttpServerError.ServeError | Config.ConfigError> =>
  Node.layer(nodeConfig(options), {
    sharding: Layer.orDie(layerSharding(options)),
    runnerAddress: formatAddress(options.runnerHost ?? "127.0.0.1", options.runnerPort)
  })

/**
 * A runner only ends by interruption (SIGINT/SIGTERM), so a clean shutdown exits 0 (what supervisors expect), as
 * `Node.run` does; a failed start-up or shutdown still exits non-zero.
 */
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

/**
 * Bounds a graceful shutdown: from the first SIGINT/SIGTERM, the process has `shutdownTimeoutMs` to finish it, then
 * exits with status 1 whatever is still waiting. A stop must always end: a runner resumed after being frozen past its
 * lease has lost its shards and its peers may no longer answer it, and a shutdown step waiting on them (an HTTP
 * request that never ends, a peer RPC) would keep it alive for ever. Nothing acknowledged depends on the rest of the
 * shutdown: every acknowledged commit is already durable in JetStream, and leases expire by themselves.
 */
export const layerShutdownBound: Layer.Layer<never, never, ChronosConfig> = Layer.effectDiscard(
  Effect.gen(function*() {
    const { shutdownTimeoutMs } = yield* ChronosConfig
    let timer: ReturnType<typeof setTimeout> | undefined
    const onSignal = (signal: NodeJS.Signals) => {
      timer ??= setTimeout(() => {
        process.stderr.write(`chronos runner: graceful shutdown after ${signal} did not finish within ` +
          `${shutdownTimeoutMs} ms (shutdownTimeoutMs); exiting\n`)
        process.exit(1)
      }, shutdownTimeoutMs)
      // Does not keep an otherwise finished process alive.
      timer.unref()
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("SIGTERM", onSignal)
        process.on("SIGINT", onSignal)
      }),
      // The timer itself stays armed: it must outlive the rest of the shutdown.
      () =>
        Effect.sync(() => {
          process.removeListener("SIGTERM", onSignal)
          process.removeListener("SIGINT", onSignal)
        })
    )
  })
)

/**
 * Runs a runner as the process's main program until SIGINT/SIGTERM, then shuts it down gracefully: the HTTP
 * gateway drains, the runner unregisters and hands its shards off, partitions close, the log connection drains —
 * within `shutdownTimeoutMs` (see `layerShutdownBound`).
 * `logLevel` "Debug" also shows the cluster library's shard assignments, acquisitions and releases.
 */
export const run = (options: Options & { readonly logLevel?: LogLevel.LogLevel | undefined }): void =>
  Layer.launch(Layer.provideMerge(layerShutdownBound, layer(options))).pipe(
    Effect.provideService(References.MinimumLogLevel, options.logLevel ?? "Info"),
    NodeRuntime.runMain({ teardown })
  )
