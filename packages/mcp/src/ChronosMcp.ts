/**
 * The Chronos MCP server: the tools, guides and prompts of this package on the `McpServer` of `effect/ai`, served
 * over Streamable HTTP (`layerHttp`, mounted at `/mcp` on every node) or stdio (`layerStdio`, and `stdioProcess` for
 * a whole process: `chronos mcp --url …` / `--data-dir …`). This module owns the assembly and the transports.
 *
 * Why `effect/ai`'s `McpServer` rather than the official `@modelcontextprotocol/sdk` server: it is an Effect layer,
 * so it mounts on the node's existing `HttpRouter` next to the HTTP API (same server, same shutdown order, no second
 * HTTP stack or Express/Hono dependency tree in the node), it runs stdio from the `Stdio` service, it negotiates
 * every protocol revision from 2024-11-05 to 2025-11-25 with sessions (`Mcp-Session-Id`) and origin checks, and tool
 * schemas come from the same `Schema` values that decode the arguments. Interoperability is proven by the tests,
 * which drive it with the official SDK's client over both transports.
 *
 * Sessionful protocol revisions only: the multi-turn memory (`McpSessions`) is per MCP session, which the sessionless
 * 2026-07-28 revision does not have.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeStdio from "@effect/platform-node/NodeStdio"
import { Cause, type Config, Effect, Exit, Layer, Logger, Runtime } from "effect"
import { McpProtocol, McpServer } from "effect/ai"
import type { HttpRouter } from "effect/http"
import type { Stdio } from "effect/Stdio"
import type { Errors } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import type { LogError } from "@chronos/engine/EventLog"
import { ForkRegistry } from "@chronos/engine/ForkRegistry"
import { Forks } from "@chronos/engine/Forks"
import * as Embedded from "@chronos/storage/Embedded"
import * as Retention from "@chronos/storage/Retention"
import * as AppendTool from "./AppendTool.ts"
import * as ChronosTool from "./ChronosTool.ts"
import * as ClusterStatusTool from "./ClusterStatusTool.ts"
import * as ExploreTools from "./ExploreTools.ts"
import * as ForkTools from "./ForkTools.ts"
import * as Guides from "./Guides.ts"
import { McpConfig, type McpConfigShape } from "./McpConfig.ts"
import { McpSessions } from "./McpSessions.ts"
import { McpStore } from "./McpStore.ts"
import * as Prompts from "./Prompts.ts"
import * as QueryTools from "./QueryTools.ts"
import * as SearchTool from "./SearchTool.ts"
import * as StateTools from "./StateTools.ts"
import * as TimelineTool from "./TimelineTool.ts"

export const serverName = "chronos"
export const serverVersion = "0.1.0"

/** Every sessionful revision this `effect` release implements, newest first (the client's offer picks one). */
export const protocols = [
  McpProtocol.v2025_11_25,
  McpProtocol.v2025_06_18,
  McpProtocol.v2025_03_26,
  McpProtocol.v2024_11_05
] as const

/** Shown to the model when it connects: the orientation every session needs, in a few lines. */
export const instructions = `Chronos is an append-only event store. Data is organized by tenant (a namespace) and stream (one entity's history: events with gapless versions v0, v1, … and UTC commit times). State is derived by folding a stream's events; history is never edited — corrections are new events.
Start with describe_store (event types, counts, payload shapes, stream id patterns) before querying a tenant. One entity: get_stream / reconstruct_state (asOf = time travel) / compare_states. Many: query_events (indexed by type and time), event_timeline, sample_events, search_events (by content, where available). Writes: append_events with expectedVersion = the version you read, dryRun first; to experiment, create_fork and pass fork to the other tools (where available), then fork_diff and merge_fork or discard_fork.
Results are bounded and paged: when more is true, call next_page. The session remembers your tenant and last query (refine: true edits it). Guides: chronos://guides/… (debugging-state, time-travel, query-patterns, errors).`

/** The built-in tools, in the order a model should consider them. */
export const tools = (config: McpConfigShape) => [
  ExploreTools.describeStore(config),
  QueryTools.queryEvents(config),
  QueryTools.nextPage(config),
  QueryTools.getStream(config),
  StateTools.reconstructState(config),
  StateTools.compareStates(config),
  TimelineTool.eventTimeline(config),
  ExploreTools.sampleEvents(config),
  AppendTool.appendEvents(config),
  ClusterStatusTool.clusterStatus(config)
] as const

/** What a registration layer may need from the server assembly (extensions add their own services on top). */
export type Registry = McpServer.McpServer | McpStore | McpConfig | McpSessions

export interface Options {
  /** MCP limits over the defaults and `CHRONOS_MCP_*` (see `McpConfig`). */
  readonly config?: Partial<McpConfigShape> | undefined
  /**
   * More registrations, e.g. `ChronosTool.register((config) => [searchEvents(config)])` provided with the search
   * service: how the search and fork tools join the server.
   */
  readonly extensions?: Layer.Layer<never, never, Registry> | undefined
}

/**
 * The tools, guides and prompts (and any extensions), registered on the `McpServer`. The fork tools join when a
 * `Forks` service runs in the process (a node, embedded mode), `search_events` when a `Search` service does (a
 * node); the guides and prompts say which are there.
 */
export const registrations = (
  extensions: Layer.Layer<never, never, Registry> = Layer.empty
): Layer.Layer<never, never, Registry> =>
  Layer.unwrap(Effect.gen(function*() {
    const forks = yield* Effect.serviceOption(Forks)
    const search = yield* Effect.serviceOption(SearchTool.Search)
    const features = { forks: forks._tag === "Some", search: search._tag === "Some" }
    return Layer.mergeAll(
      ChronosTool.register(tools),
      forks._tag === "Some"
        ? ChronosTool.register(ForkTools.tools).pipe(Layer.provide(Layer.succeed(Forks, forks.value)))
        : Layer.empty,
      search._tag === "Some"
        ? ChronosTool.register((config) => [SearchTool.searchEvents(config)]).pipe(
          Layer.provide(Layer.succeed(SearchTool.Search, search.value))
        )
        : Layer.empty,
      Guides.layer(features),
      Prompts.layer(features),
      extensions
    )
  }))

const services = (options: Options): Layer.Layer<McpConfig | McpSessions, Config.ConfigError> =>
  McpSessions.layer.pipe(Layer.provideMerge(McpConfig.layerConfig(options.config)))

export interface HttpOptions extends Options {
  /** Default `/mcp`. */
  readonly path?: HttpRouter.PathInput | undefined
  /** Browser origins allowed to call (requests with any other `Origin` are refused; origin-less clients pass). */
  readonly allowedOrigins?: ReadonlyArray<string> | undefined
}

/**
 * Streamable HTTP at `path` on the `HttpRouter`, over the `Engine` of the process: what a node mounts. A session is
 * ended with `DELETE` (its memory is forgotten after `sessionIdleMs` either way). A bad `CHRONOS_MCP_*` variable is a
 * start-up defect, like a bad `ChronosConfig`.
 */
export const layerHttp = (options: HttpOptions = {}): Layer.Layer<never, never, HttpRouter.HttpRouter | Engine> =>
  McpServer.layerHttp({
    name: serverName,
    version: serverVersion,
    instructions,
    path: options.path ?? "/mcp",
    protocols,
    allowedOrigins: options.allowedOrigins,
    allowSessionTermination: true,
    registrations: registrations(options.extensions)
  }).pipe(
    Layer.provide(services(options)),
    Layer.provide(McpStore.layerEngine),
    Layer.orDie
  )

/** stdio over the provided store: the server reads JSON-RPC lines on stdin and writes them on stdout. */
export const layerStdio = (options: Options = {}): Layer.Layer<never, Config.ConfigError, Stdio | McpStore> =>
  McpServer.layerStdio({
    name: serverName,
    version: serverVersion,
    instructions,
    protocols,
    registrations: registrations(options.extensions)
  }).pipe(
    Layer.provide(services(options)),
    Layer.orDie
  ) as unknown as Layer.Layer<never, Config.ConfigError, Stdio | McpStore>

// ---- a whole stdio process ------------------------------------------------------------------------------------------

/** Where a stdio process finds its store: a running node, or a data directory opened in this process. */
export type Target =
  | { readonly url: string }
  | {
    readonly dataDir: string
    /** The store's partition count; default: the one recorded in the data directory, else the configuration's. */
    readonly partitions?: number | undefined
  }

/**
 * The store of a target: a client of the node, or the data directory opened in this process as a node opens it —
 * the file log with its cold tier (`Embedded.layer`: segments under `<dataDir>/segments/`), reads that apply each
 * stream's retention and deletions, and the forks recorded in the data directory (so the fork tools work embedded
 * too, with the store's rules applied to fork reads).
 */
export const storeLayer = (
  target: Target
): Layer.Layer<McpStore, Errors.Unavailable | LogError | Config.ConfigError> => {
  if ("url" in target) return McpStore.layerHttp(target.url)
  const EngineLive = Retention.layerEnforced.pipe(
    Layer.provideMerge(Embedded.layer({
      dataDir: target.dataDir,
      ...(target.partitions === undefined ? {} : { partitions: target.partitions })
    }))
  )
  return Layer.mergeAll(
    McpStore.layerEngine,
    Forks.layer.pipe(Layer.provide(Layer.merge(ForkRegistry.layerFile(target.dataDir), Retention.layerForkReadPolicy)))
  ).pipe(Layer.provide(EngineLive))
}

/**
 * A complete stdio MCP process over `target`, for `Layer.launch`: stdout carries only JSON-RPC (every log goes to
 * stderr), and the process ends when the client closes stdin (the embedded store is closed first, its commits
 * flushed). This is what `chronos mcp` runs:
 *
 *     Layer.launch(ChronosMcp.stdioProcess({ url: "http://127.0.0.1:3900" }))
 *     Layer.launch(ChronosMcp.stdioProcess({ dataDir: "./data" }))
 */
export const stdioProcess = (
  target: Target,
  options: Options = {}
): Layer.Layer<never, Errors.Unavailable | LogError | Config.ConfigError> =>
  layerStdio(options).pipe(
    Layer.provide(storeLayer(target)),
    Layer.provide(NodeStdio.layer),
    Layer.provide(Layer.succeed(Logger.LogToStderr, true))
  )

/** A stdio process ends when its client goes away; that is a clean exit (0), not an interruption (130). */
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

/**
 * Runs `stdioProcess(target)` as the process's main program. A start-up failure (node unreachable, data directory
 * locked) is reported on stderr — `runMain`'s own report would go to stdout, which belongs to the MCP client.
 */
export const runStdio = (target: Target, options: Options = {}): void =>
  stdioMain(target, options).pipe(NodeRuntime.runMain({ teardown, disableErrorReporting: true }))

/**
 * `stdioProcess(target)` launched, as an effect that runs until the client closes stdin: for a CLI command handler.
 * It reports its own failures on stderr, so the caller's runtime should not report them again on stdout.
 */
export const stdioMain = (target: Target, options: Options = {}): Effect.Effect<never, StartError> =>
  Layer.launch(stdioProcess(target, options)).pipe(
    Effect.tapCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.void
        : Effect.sync(() => process.stderr.write(`chronos mcp: ${Cause.pretty(cause)}\n`))
    ),
    Effect.provideService(Logger.LogToStderr, true)
  )

/** Why a stdio process could not start: the node is unreachable, the data directory cannot be opened, bad config. */
export type StartError = Errors.Unavailable | LogError | Config.ConfigError
