/**
 * The partition as an `effect/cluster` entity: entity type "Partition", entity id = partition number. The cluster
 * guarantees one active instance per partition across all runners, which makes it the partition's single writer;
 * the instance rebuilds its state from the log when it activates (after a failover, on another runner).
 *
 * This module owns the RPC protocol of a partition and the layers around it:
 *  - `layerEntity`: registers the entity on this runner (the handlers call a local `Partition`), and records every
 *    partition active here in `ActivePartitions`;
 *  - `layerRouter`: an `Engine.Router` that calls a partition directly when it is active on this runner and through
 *    the entity client otherwise. The direct call is the same code the handler would run, minus message
 *    serialization and mailbox hops (measured: ~6× the append rate and ~15× lower read latency than going through
 *    the entity client in-process), and it is safe: the entity, not the router, decides where a partition lives,
 *    and a partition that is being moved away fails its calls with a retryable `Unavailable`;
 *  - `layerSingleRunner`: the cluster machinery for one process (no network, no storage): a node on its own is a
 *    one-runner cluster, so the same entity code runs in embedded mode and in a cluster.
 *
 * Forks in a cluster: every RPC may name a `fork`. The runner that owns partition p also serves partition p of every
 * fork (a fork's partition is layered on its parent's partition p through synchronous lookups, so it must live in
 * the same process); the handler hands such a call to the fork's local router, which `Forks` resolves through
 * `ForkHost` (`Forks` is built above the engine, so it plugs itself in when it starts).
 *
 * Cluster messages are volatile: the log is the durable truth, and appends are idempotent by event id, so a client
 * that re-sends after a failover gets the original answer instead of a duplicate.
 */
import { Context, Duration, Effect, Layer, Option, Schema } from "effect"
import {
  Entity,
  MessageStorage,
  RunnerHealth,
  Runners,
  RunnerStorage,
  Sharding,
  ShardingConfig
} from "effect/cluster"
import { Rpc } from "effect/rpc"
import { ChronosConfig } from "@chronos/config"
import { AsOf, Errors, type Event, ExpectedVersion, Reducer } from "@chronos/domain"
import * as GatewayRetry from "./GatewayRetry.ts"
import { awaitLocalWatermark, Engine, type PartitionRouter, Router } from "./Engine.ts"
import { EventLog } from "./EventLog.ts"
import * as Partition from "./Partition.ts"

/** A stored event on the wire between runners (also the consumer groups' entity, `ConsumerGroup`). */
export const StoredEventSchema = Schema.Struct({
  eventId: Schema.String,
  tenant: Schema.String,
  stream: Schema.String,
  type: Schema.String,
  data: Schema.Unknown,
  metadata: Schema.Record(Schema.String, Schema.Unknown),
  timestamp: Schema.Number,
  streamVersion: Schema.Int,
  partition: Schema.Int,
  seq: Schema.Int
})

const StoredEvents = Schema.Array(StoredEventSchema)

/** The fork a call is for (absent: main). */
const forkField = { fork: Schema.optionalKey(Schema.String) }

export const Append = Rpc.make("Append", {
  payload: {
    ...forkField,
    tenant: Schema.String,
    stream: Schema.String,
    expectedVersion: ExpectedVersion.ExpectedVersion,
    events: Schema.Array(Schema.Struct({
      eventId: Schema.optionalKey(Schema.String),
      type: Schema.String,
      data: Schema.Unknown,
      metadata: Schema.Record(Schema.String, Schema.Unknown),
      bytes: Schema.Number
    }))
  },
  success: Schema.Struct({
    firstVersion: Schema.Int,
    lastVersion: Schema.Int,
    positions: Schema.Array(Schema.Struct({ partition: Schema.Int, seq: Schema.Int }))
  }),
  error: Schema.Union([Errors.WrongExpectedVersion, Errors.InvalidRequest, Errors.LimitExceeded, Errors.Unavailable])
})

export const ReadStream = Rpc.make("ReadStream", {
  payload: {
    ...forkField,
    tenant: Schema.String,
    stream: Schema.String,
    fromVersion: Schema.optionalKey(Schema.Int),
    limit: Schema.Int,
    direction: Schema.Literals(["forward", "backward"]),
    asOf: Schema.optionalKey(Schema.String)
  },
  success: StoredEvents,
  error: Errors.Unavailable
})

export const Scan = Rpc.make("Scan", {
  payload: {
    ...forkField,
    tenant: Schema.String,
    types: Schema.optionalKey(Schema.Array(Schema.String)),
    since: Schema.optionalKey(Schema.Number),
    until: Schema.optionalKey(Schema.Number),
    asOf: Schema.optionalKey(Schema.String),
    after: Schema.optionalKey(Schema.Struct({ timestamp: Schema.Number, partition: Schema.Int, seq: Schema.Int })),
    fromSeq: Schema.optionalKey(Schema.Int),
    stream: Schema.optionalKey(Schema.String),
    streamPrefix: Schema.optionalKey(Schema.String),
    limit: Schema.Int
  },
  success: StoredEvents,
  error: Errors.Unavailable
})

export const Reconstruct = Rpc.make("Reconstruct", {
  payload: {
    ...forkField,
    tenant: Schema.String,
    stream: Schema.String,
    reducer: Schema.String,
    asOf: Schema.optionalKey(Schema.String)
  },
  success: Schema.Struct({ version: Schema.Int, state: Schema.Unknown }),
  error: Schema.Union([Errors.InvalidRequest, Errors.Unavailable])
})

export const Status = Rpc.make("Status", {
  payload: forkField,
  error: Errors.Unavailable,
  success: Schema.Struct({
    partition: Schema.Int,
    seq: Schema.Int,
    watermark: Schema.Int,
    events: Schema.Int,
    streams: Schema.Int,
    runner: Schema.String
  })
})

export const Follow = Rpc.make("Follow", {
  payload: Scan.payloadSchema,
  success: Schema.Struct({ events: StoredEvents, through: Schema.Int }),
  error: Errors.Unavailable
})

export const AwaitWatermark = Rpc.make("AwaitWatermark", {
  payload: { ...forkField, seq: Schema.Int, timeoutMs: Schema.Int },
  success: Schema.Int,
  error: Errors.Unavailable
})

export const PartitionEntity = Entity.make("Partition", [Append, ReadStream, Scan, Follow, AwaitWatermark, Reconstruct, Status])

/** The RPC payload of a scan (optional fields omitted rather than sent as undefined). */
const scanPayload = (
  tenant: string,
  options: Partition.ScanOptions,
  fork: string | undefined
): typeof Scan.payloadSchema.Type => ({
  ...(fork === undefined ? {} : { fork }),
  tenant,
  limit: options.limit,
  ...(options.types === undefined ? {} : { types: options.types }),
  ...(options.since === undefined ? {} : { since: options.since }),
  ...(options.until === undefined ? {} : { until: options.until }),
  ...(options.asOf === undefined ? {} : { asOf: AsOf.format(options.asOf) }),
  ...(options.after === undefined ? {} : { after: options.after }),
  ...(options.fromSeq === undefined ? {} : { fromSeq: options.fromSeq }),
  ...(options.stream === undefined ? {} : { stream: options.stream }),
  ...(options.streamPrefix === undefined ? {} : { streamPrefix: options.streamPrefix })
})

const parseAsOf = (asOf: string | undefined): AsOf.AsOf | undefined =>
  asOf === undefined ? undefined : AsOf.parse(asOf).pipe((o) => o._tag === "Some" ? o.value : undefined)

/** The partitions active on this runner, by partition number (maintained by the entity's activations). */
export class ActivePartitions extends Context.Service<ActivePartitions, Map<number, Partition.Partition>>()(
  "chronos/engine/PartitionEntity/ActivePartitions"
) {
  static readonly layer: Layer.Layer<ActivePartitions> = Layer.sync(ActivePartitions, () => new Map())
}

/**
 * Where this runner's fork partitions are found: `Forks` sets `resolve` when it starts (it is built above the engine)
 * and finds the runner's `Sharding` here (for its expiry singleton and the entity client of remote fork calls); the
 * node's consumer groups find it here too (their `ConsumerGroup` entity).
 */
export interface ForkHostShape {
  readonly sharding: Sharding.Sharding["Service"]
  /** The local router of a fork (its partitions layered on this runner's partitions); unset until `Forks` starts. */
  resolve: ((forkId: string) => Effect.Effect<PartitionRouter, Errors.Unavailable>) | undefined
}

export class ForkHost extends Context.Service<ForkHost, ForkHostShape>()("chronos/engine/PartitionEntity/ForkHost") {
  static readonly layer: Layer.Layer<ForkHost, never, Sharding.Sharding> = Layer.effect(
    ForkHost,
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      return { sharding, resolve: undefined } satisfies ForkHostShape
    })
  )
}

/** Registers the Partition entity on this runner. Each activation opens its partition's log and replays it. */
export const layerEntity: Layer.Layer<never, never, Sharding.Sharding | ChronosConfig | EventLog | ActivePartitions> =
  PartitionEntity.toLayer(
    Effect.gen(function*() {
      const address = yield* Entity.CurrentAddress
      const runner = yield* Entity.CurrentRunnerAddress
      const config = yield* ChronosConfig
      const id = Number(address.entityId)
      if (!Number.isInteger(id) || id < 0 || id >= config.partitions) {
        return yield* Effect.die(new Error(`Partition entity id ${address.entityId} is not a partition of ${config.partitions}`))
      }
      // A log that is unavailable for now (its NATS stream electing a leader, a node restarting) is retried here,
      // with the reload's capped backoff, instead of failing the activation: a failed activation is only retried
      // by the cluster library later, and meanwhile every call to the partition waits.
      const partition = yield* Partition.makeServing(id, config).pipe(
        Effect.tapError((e) => Effect.logWarning(`partition ${id}: cannot open its log yet, retrying`, e.message)),
        Effect.retry({
          while: (e) => e._tag === "LogUnavailable",
          times: config.reloadRetriesMax,
          schedule: Partition.reloadSchedule(config)
        }),
        Effect.orDie
      )
      const active = yield* ActivePartitions
      active.set(id, partition)
      yield* Effect.addFinalizer(() => Effect.sync(() => active.get(id) === partition && active.delete(id)))
      const owner = `${runner.host}:${runner.port}`
      yield* Effect.logInfo(`partition ${id} active on ${owner}`)
      // Optional: tests that register the entity alone serve no forks.
      const host = yield* Effect.serviceOption(ForkHost)
      /** A call for a fork: to the fork's router here (its partition `id` lives with this one). */
      const forked = <A, E>(fork: string, f: (router: PartitionRouter) => Effect.Effect<A, E>) =>
        host._tag === "None" || host.value.resolve === undefined
          ? Effect.fail(new Errors.Unavailable({ message: "forks are not started on this runner yet", retryable: true }))
          : Effect.flatMap(host.value.resolve(fork), f)
      return PartitionEntity.of({
        Append: ({ payload }) =>
          payload.fork !== undefined
            ? forked(payload.fork, (r) => r.append(id, { ...payload, events: payload.events.map((e) => ({ ...e, eventId: e.eventId })) }))
            : partition.append({
            tenant: payload.tenant,
            stream: payload.stream,
            expectedVersion: payload.expectedVersion,
            events: payload.events.map((e) => ({ ...e, eventId: e.eventId }))
          }),
        ReadStream: ({ payload }) => {
          const options = {
            fromVersion: payload.fromVersion,
            limit: payload.limit,
            direction: payload.direction,
            asOf: parseAsOf(payload.asOf)
          }
          return payload.fork !== undefined
            ? forked(payload.fork, (r) => r.readStream(id, payload.tenant, payload.stream, options))
            : partition.readStream(payload.tenant, payload.stream, options)
        },
        Scan: ({ payload }) => {
          const options = { ...payload, asOf: parseAsOf(payload.asOf) }
          return payload.fork !== undefined
            ? forked(payload.fork, (r) => r.scan(id, payload.tenant, options))
            : partition.scan(payload.tenant, options)
        },
        Follow: ({ payload }) => {
          const options = { ...payload, asOf: parseAsOf(payload.asOf) }
          return payload.fork !== undefined
            ? forked(payload.fork, (r) => r.follow(id, payload.tenant, options))
            : partition.follow(payload.tenant, options)
        },
        AwaitWatermark: ({ payload }) =>
          payload.fork !== undefined
            ? forked(payload.fork, (r) => r.awaitWatermark(id, payload.seq, payload.timeoutMs))
            : awaitLocalWatermark(partition, payload.seq, payload.timeoutMs),
        Reconstruct: ({ payload }) => {
          const reducer = Reducer.fromName(payload.reducer)
          if (reducer._tag === "None") {
            return Effect.fail(new Errors.InvalidRequest({ field: "reducer", message: `unknown reducer ${payload.reducer}` }))
          }
          const asOf = parseAsOf(payload.asOf)
          return payload.fork !== undefined
            ? forked(payload.fork, (r) => r.reconstruct(id, payload.tenant, payload.stream, reducer.value, asOf))
            : partition.reconstruct(payload.tenant, payload.stream, reducer.value, asOf)
        },
        Status: ({ payload }) =>
          Effect.map(
            payload.fork !== undefined ? forked(payload.fork, (r) => r.status(id)) : partition.status,
            (s) => ({ ...s, runner: owner })
          )
      })
    }),
    {
      // Appends must not wait for each other: the partition pipelines them and keeps their order itself.
      concurrency: "unbounded",
      // A partition stays resident while its shard is here: passivating it would throw away its hot index.
      // (Not `Entity.keepAlive`: that sends a persisted message, and cluster messages are volatile here.)
      maxIdleTime: Duration.infinity
    }
  )

const unavailable = (error: { readonly _tag: string }) =>
  error instanceof Errors.Unavailable
    ? error
    : new Errors.Unavailable({ message: `partition unreachable: ${error._tag}`, retryable: true })

/**
 * An `Engine.Router`: direct to partitions active here, through the entity client to the others; appends get their
 * event ids before the first attempt, and calls are retried while `Unavailable` and bounded when remote
 * (`GatewayRetry`). A partition active here is owned by this runner's address when the sharding layer exports its
 * `ShardingConfig` (cluster runners do), by "local" otherwise (a node on its own).
 */
export const layerRouter: Layer.Layer<Router, never, Sharding.Sharding | ActivePartitions | ChronosConfig> = Layer.effect(
  Router,
  Effect.gen(function*() {
    const active = yield* ActivePartitions
    const remote = yield* makeRemoteRouter
    const config = yield* ChronosConfig
    const self = Option.flatMap(yield* Effect.serviceOption(ShardingConfig.ShardingConfig), (c) => c.runnerAddress)
    const here = Option.match(self, { onNone: () => "local", onSome: (a) => `${a.host}:${a.port}` })
    const local = (p: number) => active.get(p)
    return yield* GatewayRetry.make({
      owner: (p) => local(p) === undefined ? remote.owner(p) : here,
      append: (p, input) => local(p)?.append(input) ?? remote.append(p, input),
      appendMany: (p, inputs) => local(p)?.appendMany(inputs) ?? remote.appendMany(p, inputs),
      readStream: (p, tenant, stream, options) =>
        local(p)?.readStream(tenant, stream, options) ?? remote.readStream(p, tenant, stream, options),
      scan: (p, tenant, options) => local(p)?.scan(tenant, options) ?? remote.scan(p, tenant, options),
      reconstruct: (p, tenant, stream, reducer, asOf) =>
        local(p)?.reconstruct(tenant, stream, reducer, asOf) ?? remote.reconstruct(p, tenant, stream, reducer, asOf),
      status: (p) => local(p)?.status ?? remote.status(p),
      follow: (p, tenant, options) => local(p)?.follow(tenant, options) ?? remote.follow(p, tenant, options),
      awaitWatermark: (p, seq, timeoutMs) => {
        const partition = local(p)
        return partition === undefined
          ? remote.awaitWatermark(p, seq, timeoutMs)
          : awaitLocalWatermark(partition, seq, timeoutMs)
      },
      local: (p) => active.get(p)
    } satisfies PartitionRouter, { ...config, isRemote: (p) => local(p) === undefined })
  })
)

/**
 * Sharding for a node on its own: every shard is local, messages are volatile and never leave the process.
 * `simulateRemoteSerialization` is off because nothing is remote.
 */
export const layerSingleRunner: Layer.Layer<Sharding.Sharding | Runners.Runners> = Sharding.layer.pipe(
  Layer.provideMerge(Runners.layerNoop),
  Layer.provide([MessageStorage.layerNoop, RunnerStorage.layerMemory, RunnerHealth.layerNoop]),
  Layer.provide(ShardingConfig.layer({ simulateRemoteSerialization: false }))
)

/**
 * The engine of a node: partitions as entities on this runner (given `Sharding`), reached directly when local.
 * Activates every partition before it is provided, so that recovery happens at start-up, not on the first request.
 */
export const layerEngine = Layer.effect(
  Engine,
  Effect.gen(function*() {
    const engine = yield* Engine
    yield* engine.partitions.pipe(Effect.orDie)
    const log = yield* EventLog
    const config = yield* ChronosConfig
    const replicasOf = log.replicas
    // The replica health of each partition's log, read by any runner (every runner reaches the same NATS cluster);
    // a log without replication is one local copy. Bounded: a stream electing its leader is reported without it.
    const partitions: Engine["Service"]["partitions"] = replicasOf === undefined
      ? Effect.map(engine.partitions, (ps) => ps.map((p) => ({ ...p, replicas: [localReplica] })))
      : Effect.flatMap(engine.partitions, (ps) =>
        Effect.forEach(ps, (p) =>
          replicasOf(p.partition).pipe(
            Effect.timeoutOption(config.replicaStatusTimeoutMs),
            Effect.map((r) => r._tag === "Some" ? { ...p, replicas: r.value } : p),
            Effect.orElseSucceed(() => p)
          ), { concurrency: "unbounded" }))
    return { ...engine, partitions }
  })
).pipe(
  Layer.provide(Engine.layer),
  Layer.provide(layerRouter),
  Layer.provide(layerEntity),
  Layer.provideMerge(ActivePartitions.layer),
  Layer.provideMerge(ForkHost.layer)
)

/** The one replica of a log kept by this process (memory, file). */
const localReplica = { name: "local", leader: true, current: true, offline: false, lag: 0, activeMs: 0 }

/** A router that always goes through the entity client: for client-only processes, and tests of the RPC path. */
export const layerRemoteRouter: Layer.Layer<Router, never, Sharding.Sharding> = Layer.suspend(() =>
  Layer.effect(Router, makeRemoteRouter)
)

/**
 * A router to a fork's partitions through the entity client: each call goes to the owner of its partition, which
 * serves it from the fork's partition there (see the module doc).
 */
export const makeForkRemoteRouter = (forkId: string): Effect.Effect<PartitionRouter, never, Sharding.Sharding> =>
  makeRemoteRouterFor(forkId)

const makeRemoteRouter: Effect.Effect<PartitionRouter, never, Sharding.Sharding> = Effect.suspend(() =>
  makeRemoteRouterFor(undefined)
)

const makeRemoteRouterFor = (fork: string | undefined): Effect.Effect<PartitionRouter, never, Sharding.Sharding> =>
  Effect.gen(function*() {
    const forkPart = fork === undefined ? {} : { fork }
    const clientFor = yield* PartitionEntity.client
    const clients = new Map<number, ReturnType<typeof clientFor>>()
    const client = (p: number) => {
      let c = clients.get(p)
      if (c === undefined) clients.set(p, c = clientFor(String(p)))
      return c
    }
    const owners = new Map<number, string>()
    const router: PartitionRouter = {
      owner: (p) => owners.get(p) ?? "unknown",
      append: (p, input) =>
        client(p).Append({
          ...forkPart,
          tenant: input.tenant,
          stream: input.stream,
          expectedVersion: input.expectedVersion,
          events: input.events.map((e) => ({
            ...(e.eventId === undefined ? {} : { eventId: e.eventId }),
            type: e.type,
            data: e.data,
            metadata: e.metadata,
            bytes: e.bytes
          }))
        }).pipe(
          Effect.catchTags({
            MailboxFull: (e) => Effect.fail(unavailable(e)),
            AlreadyProcessingMessage: (e) => Effect.fail(unavailable(e)),
            PersistenceError: (e) => Effect.fail(unavailable(e)),
            EntityNotAssignedToRunner: (e) => Effect.fail(unavailable(e))
          })
        ),
      // Each append is its own message: the entity pipelines them (unbounded handler concurrency).
      appendMany: (p, inputs) => Effect.forEach(inputs, (input) => Effect.exit(router.append(p, input)), { concurrency: "unbounded" }),
      readStream: (p, tenant, stream, options) =>
        client(p).ReadStream({
          ...forkPart,
          tenant,
          stream,
          ...(options.fromVersion === undefined ? {} : { fromVersion: options.fromVersion }),
          limit: options.limit,
          direction: options.direction,
          ...(options.asOf === undefined ? {} : { asOf: AsOf.format(options.asOf) })
        }).pipe(Effect.catch((e) => Effect.fail(unavailable(e)))),
      scan: (p, tenant, options) => client(p).Scan(scanPayload(tenant, options, fork)).pipe(Effect.catch((e) => Effect.fail(unavailable(e)))),
      follow: (p, tenant, options) => client(p).Follow(scanPayload(tenant, options, fork)).pipe(Effect.catch((e) => Effect.fail(unavailable(e)))),
      awaitWatermark: (p, seq, timeoutMs) =>
        client(p).AwaitWatermark({ ...forkPart, seq, timeoutMs }).pipe(Effect.catch((e) => Effect.fail(unavailable(e)))),
      reconstruct: (p, tenant, stream, reducer, asOf) =>
        Reducer.fromName(reducer.name)._tag === "Some"
          ? client(p).Reconstruct({
            ...forkPart,
            tenant,
            stream,
            reducer: reducer.name,
            ...(asOf === undefined ? {} : { asOf: AsOf.format(asOf) })
          }).pipe(Effect.catch((e) => Effect.fail(unavailable(e))))
          // A function reducer cannot cross the network: fold the stream here, page by page.
          : foldRemotely(router, p, tenant, stream, reducer, asOf),
      status: (p) =>
        client(p).Status(forkPart).pipe(
          Effect.tap((s) => Effect.sync(() => owners.set(p, s.runner))),
          Effect.catch((e) => Effect.fail(unavailable(e)))
        )
    }
    return router
})

const foldRemotely = (
  router: PartitionRouter,
  p: number,
  tenant: string,
  stream: string,
  reducer: Reducer.Reducer,
  asOf: AsOf.AsOf | undefined
) =>
  Effect.gen(function*() {
    const page = 1_000
    let state = reducer.initial
    let version = -1
    while (true) {
      const events: ReadonlyArray<Event.StoredEvent> = yield* router.readStream(p, tenant, stream, {
        fromVersion: version + 1,
        limit: page,
        direction: "forward",
        asOf
      })
      for (const e of events) state = reducer.step(state, e)
      if (events.length > 0) version = events[events.length - 1]!.streamVersion
      if (events.length < page) return { version, state }
    }
  })
