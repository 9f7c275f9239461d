/**
 * The store as the MCP tools see it: exactly the part of the `Engine` they call (appends, reads, queries, partition
 * windows, state, partition status). This module owns that port and its two implementations:
 *
 *  - `layerEngine`: the `Engine` itself — embedded, or inside a node (where `/mcp` is served);
 *  - `layerClient` / `layerHttp(url)`: a running node reached through the client SDK (`ChronosClient`), for
 *    `main.ts --url`. It translates wire events (ISO timestamps) back to the engine's `StoredEvent` (epoch ms),
 *    passes reducers by name (no user code runs on a server; the built-in reducers' names round-trip), and turns
 *    `CorruptData` — which the engine's signatures have no room for — into a non-retryable `Unavailable` that says so.
 *
 * The port is a `Pick` of `EngineShape`, so the tools are written against the engine's own types and any engine
 * satisfies it; it stays narrow so that the remote adapter does not have to follow every engine feature (routers,
 * subscriptions) that the tools do not use.
 */
import { Context, Effect, Layer } from "effect"
import { ChronosClient, type ReadError } from "@chronos/client"
import { make as makeConfig } from "@chronos/config"
import { Errors, type Event, Partitioning } from "@chronos/domain"
import { Engine, type EngineShape } from "@chronos/engine/Engine"

export type McpStoreShape = Pick<
  EngineShape,
  "config" | "append" | "readStream" | "query" | "readPartition" | "state" | "partitions" | "partitionOf"
>

export class McpStore extends Context.Service<McpStore, McpStoreShape>()("chronos/mcp/McpStore") {
  /** The engine of this process (embedded mode, or a node serving `/mcp`). */
  static readonly layerEngine: Layer.Layer<McpStore, never, Engine> = Layer.effect(
    McpStore,
    Effect.map(Engine, (engine): McpStoreShape => engine)
  )

  /**
   * A node through the provided `ChronosClient`. Building it asks the node for its partition count (with the
   * client's retries), so a wrong URL fails at start-up with `Unavailable`, not at the first tool call.
   */
  static readonly layerClient: Layer.Layer<McpStore, Errors.Unavailable, ChronosClient> = Layer.effect(
    McpStore,
    Effect.gen(function*() {
      const client = yield* ChronosClient
      const health = yield* client.health()
      return fromClient(client, health.partitions)
    })
  )

  /** A node's HTTP API at `url` (e.g. `http://127.0.0.1:3900`). */
  static readonly layerHttp = (url: string): Layer.Layer<McpStore, Errors.Unavailable> =>
    McpStore.layerClient.pipe(Layer.provide(ChronosClient.layerHttp({ url })))
}

const toStored = (tenant: string) => (e: Event.RecordedEvent): Event.StoredEvent => ({
  eventId: e.eventId,
  tenant,
  stream: e.stream,
  type: e.type,
  data: e.data,
  metadata: (typeof e.metadata === "object" && e.metadata !== null ? e.metadata : {}) as Record<string, unknown>,
  timestamp: Date.parse(e.timestamp),
  streamVersion: e.streamVersion,
  partition: e.partition,
  seq: e.seq
})

const withoutCorrupt = <A, E>(
  effect: Effect.Effect<A, E | Errors.CorruptData>
): Effect.Effect<A, Exclude<E, Errors.CorruptData> | Errors.Unavailable> =>
  Effect.catchIf(
    effect,
    (e): e is Errors.CorruptData => e instanceof Errors.CorruptData,
    (e) => Effect.fail(new Errors.Unavailable({ message: `corrupt data at ${e.location}: ${e.message}`, retryable: false }))
  ) as Effect.Effect<A, Exclude<E, Errors.CorruptData> | Errors.Unavailable>

/**
 * The store over a client of a node with `partitions` partitions. Its configuration is the defaults with that
 * partition count: the node enforces its own limits on every request, and the MCP limits are far below the defaults.
 */
export const fromClient = (client: ChronosClient["Service"], partitions: number): McpStoreShape => {
  const config = makeConfig({ partitions })
  const read = <A>(effect: Effect.Effect<A, ReadError>) => withoutCorrupt(effect)
  return {
    config,
    append: (tenant, stream, request) => client.append(tenant, stream, request),
    readStream: (tenant, stream, request) =>
      Effect.map(read(client.read(tenant, stream, request)), (events) => events.map(toStored(tenant))),
    query: (tenant, request) =>
      Effect.map(read(client.query(tenant, request)), (page) => ({
        events: page.events.map(toStored(tenant)),
        next: page.next
      })),
    readPartition: (tenant, partition, request) =>
      Effect.map(read(client.readPartition(tenant, partition, request)), (events) => events.map(toStored(tenant))),
    state: (tenant, stream, reducer, asOf) =>
      withoutCorrupt(client.state(tenant, stream, {
        reducer: typeof reducer === "object" ? reducer.name : reducer,
        asOf
      })),
    partitions: Effect.suspend(() => client.partitions()),
    partitionOf: (tenant, stream) => Partitioning.partitionOf(tenant, stream, partitions)
  }
}
