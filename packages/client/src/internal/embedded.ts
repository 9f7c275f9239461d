/**
 * The in-process implementation of `ChronosClient`: a thin adapter over an `Engine` (and, for the features beyond
 * streams, the engine services `Forks`, `Search`, `ConsumerGroups`, `Projections` when they are provided) that adds
 * only the SDK's request validation (`validation.ts`) and the conversion of engine values to wire values. The append
 * path is one synchronous validation and one call: no extra fibers, no re-encoding.
 *
 * A feature whose service is absent fails with a non-retryable `Unavailable` that names the service and the way to
 * get it: the caller asked for something this client was not built with, which is a configuration it can act on.
 */
import { Effect, Option, Stream } from "effect"
import type { ChronosConfigShape } from "@chronos/config"
import { Errors, Event, type Reducer } from "@chronos/domain"
import { type ConsumerGroupsShape, parkedToWire, statusToWire } from "@chronos/engine/ConsumerGroup"
import type { EngineShape } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import type { ForksShape } from "@chronos/engine/Forks"
import type { ProjectionsShape } from "@chronos/engine/Projection"
import type { SearchShape } from "@chronos/search/Search"
import type { ChronosClientShape, StreamRetentionShape, SubscriptionItem } from "../ChronosClient.ts"
import {
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

/** The engine services beyond `Engine` that some features need; each may be absent. */
export interface Services {
  readonly forks: Option.Option<ForksShape>
  readonly search: Option.Option<SearchShape>
  readonly groups: Option.Option<ConsumerGroupsShape>
  readonly projections: Option.Option<ProjectionsShape>
  /** Retention and deletion (`StreamRetention`, from `@chronos/storage/RetentionClient`); absent when not provided. */
  readonly retention?: Option.Option<StreamRetentionShape> | undefined
}

export const noServices: Services = {
  forks: Option.none(),
  search: Option.none(),
  groups: Option.none(),
  projections: Option.none()
}

const recordedAll = (events: ReadonlyArray<Event.StoredEvent>): Array<Event.RecordedEvent> => {
  const out = new Array<Event.RecordedEvent>(events.length)
  for (let i = 0; i < events.length; i++) out[i] = Event.toRecorded(events[i]!)
  return out
}

const isReducerObject = (u: unknown): boolean =>
  typeof u === "object" && u !== null && typeof (u as { name?: unknown }).name === "string" &&
  typeof (u as { step?: unknown }).step === "function" && "initial" in u

const badReducer = new Errors.InvalidRequest({
  field: "reducer",
  message: "expected a reducer name (merge, count, last, sum:<field>) or a reducer object { name, initial, step }"
})

const missing = (feature: string, service: string) =>
  new Errors.Unavailable({
    message: `${feature} needs the ${service} service, which this in-process client was not built with ` +
      `(provide it to ChronosClient.layerEngine, or use layerMemory, or a node over HTTP)`,
    retryable: false
  })


export const make = (engine: EngineShape, services: Services = noServices): ChronosClientShape => {
  /** The engine a request addresses: the store's, or with `fork` that fork's (`ForkNotFound` when it is gone). */
  const on = <A, E>(tenant: string, fork: string | undefined, f: (engine: EngineShape) => Effect.Effect<A, E>) => {
    if (fork === undefined) return f(engine)
    if (Option.isNone(services.forks)) return Effect.fail(missing("fork", "Forks"))
    return Effect.flatMap(services.forks.value.engine(tenant, fork), f)
  }

  const withService = <S, A, E>(
    service: Option.Option<S>,
    feature: string,
    name: string,
    f: (service: S) => Effect.Effect<A, E>
  ): Effect.Effect<A, E | Errors.Unavailable> =>
    Option.isNone(service) ? Effect.fail(missing(feature, name)) : f(service.value)

  const forks = <A, E>(f: (forks: ForksShape) => Effect.Effect<A, E>) => withService(services.forks, "forks", "Forks", f)
  const groups = <A, E>(f: (groups: ConsumerGroupsShape) => Effect.Effect<A, E>) =>
    withService(services.groups, "consumer groups", "ConsumerGroups", f)
  const projections = <A, E>(f: (projections: ProjectionsShape) => Effect.Effect<A, E>) =>
    withService(services.projections, "projections", "Projections", f)
  const retention = <A, E>(f: (retention: StreamRetentionShape) => Effect.Effect<A, E>) =>
    withService(services.retention ?? Option.none(), "retention", "StreamRetention", f)

  const shape = {
    append: (tenant: string, stream: string, request: unknown, options: unknown = {}) => {
      const decoded = decodeAppend(request)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      const o = decodeAppendOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      return on(tenant, o.fork, (e) => e.append(tenant, stream, decoded))
    },

    read: (tenant: string, stream: string, options: unknown = {}) => {
      const decoded = decodeReadOptions(options)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      const { fork, ...request } = decoded
      return on(tenant, fork, (e) => Effect.map(e.readStream(tenant, stream, request), recordedAll))
    },

    query: (tenant: string, options: unknown = {}) => {
      const decoded = decodeQueryOptions(options)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      const { fork, ...request } = decoded
      return on(tenant, fork, (e) =>
        Effect.map(e.query(tenant, request), (page) =>
          page.next === undefined
            ? { events: recordedAll(page.events) }
            : { events: recordedAll(page.events), next: page.next }))
    },

    readPartition: (tenant: string, partition: number, options: unknown = {}) => {
      const decoded = decodePartitionReadOptions(options)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      const { fork, ...request } = decoded
      return on(tenant, fork, (e) => Effect.map(e.readPartition(tenant, partition, request), recordedAll))
    },

    state: (tenant: string, stream: string, options: unknown = {}) => {
      const decoded = decodeStateOptions(options)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      const reducer = decoded.reducer
      if (reducer !== undefined && typeof reducer !== "string" && !isReducerObject(reducer)) {
        return Effect.fail(badReducer)
      }
      return on(tenant, decoded.fork, (e) =>
        e.state(tenant, stream, reducer as string | Reducer.Reducer | undefined, decoded.asOf))
    },

    partitions: () => engine.partitions,

    setRetention: (tenant, stream, settings) => {
      const payload = decodeRetentionSettings(settings)
      if (isInvalid(payload)) return Effect.fail(payload)
      return retention((r) => r.set(tenant, stream, payload))
    },
    getRetention: (tenant, stream) => retention((r) => r.get(tenant, stream)),
    deleteStream: (tenant, stream, options = {}) => {
      const o = decodeDeleteStreamOptions(options)
      if (isInvalid(o)) return Effect.fail(o)
      return retention((r) => r.delete(tenant, stream, { hard: o.hard ?? false, expectedVersion: o.expectedVersion }))
    },

    health: () => Effect.succeed({ status: "ok" as const, partitions: engine.config.partitions }),

    search: (tenant, request) => {
      const decoded = decodeSearchRequest(request)
      if (isInvalid(decoded)) return Effect.fail(decoded)
      return withService(services.search, "search", "Search", (search) =>
        Effect.map(search.search(tenant, decoded), (hits) =>
          hits.map((h) => ({ event: Event.toRecorded(h.event), score: h.score, matchedBy: h.matchedBy }))))
    },

    searchStatus: (tenant) => withService(services.search, "search", "Search", (search) => search.status(tenant)),

    forks: {
      create: (tenant, request) => {
        const decoded = decodeCreateFork(request)
        return isInvalid(decoded) ? Effect.fail(decoded) : forks((f) => f.create(tenant, decoded))
      },
      list: (tenant) => forks((f) => f.list(tenant)),
      get: (tenant, forkId) => forks((f) => f.get(tenant, forkId)),
      diff: (tenant, forkId) => forks((f) => f.diff(tenant, forkId)),
      merge: (tenant, forkId, options = {}) => {
        const decoded = decodeMergeRequest(options)
        return isInvalid(decoded) ? Effect.fail(decoded) : forks((f) => f.merge(tenant, forkId, decoded))
      },
      discard: (tenant, forkId) => forks((f) => f.discard(tenant, forkId))
    },

    subscribe: (tenant, options = {}) => {
      const decoded = decodeSubscribeOptions(options)
      if (isInvalid(decoded)) return Stream.fail(decoded)
      return Stream.unwrap(Effect.map(engine.subscribe(tenant, decoded), (items) =>
        Stream.map(items, (item): SubscriptionItem =>
          item._tag === "Event"
            ? { _tag: "Event", event: Event.toRecorded(item.event), position: item.position }
            : { _tag: "CaughtUp", position: item.position })))
    },

    consumers: {
      create: (tenant, name, request = {}) => {
        const decoded = decodeCreateConsumer(request)
        return isInvalid(decoded)
          ? Effect.fail(decoded)
          : groups((g) => Effect.map(g.create(tenant, name, decoded), statusToWire))
      },
      get: (tenant, name) => groups((g) => Effect.map(g.status(tenant, name), statusToWire)),
      list: (tenant) => groups((g) => g.list(tenant)),
      next: (tenant, name, options = {}) => {
        const decoded = decodeNextOptions(options)
        return isInvalid(decoded) ? Effect.fail(decoded) : groups((g) =>
          Effect.map(g.next(tenant, name, decoded), (deliveries) =>
            deliveries.map((d) => ({ deliveryId: d.deliveryId, attempt: d.attempt, event: Event.toRecorded(d.event) }))))
      },
      ack: (tenant, name, ids) => {
        const decoded = decodeAck({ ids })
        return isInvalid(decoded) ? Effect.fail(decoded) : groups((g) => g.ack(tenant, name, decoded.ids))
      },
      nack: (tenant, name, ids, options = {}) => {
        const decoded = decodeNack({ ids, delayMs: options.delayMs })
        return isInvalid(decoded)
          ? Effect.fail(decoded)
          : groups((g) => g.nack(tenant, name, decoded.ids, { delayMs: decoded.delayMs }))
      },
      parked: (tenant, name, options = {}) => {
        const decoded = decodeLimitOptions(options)
        return isInvalid(decoded) ? Effect.fail(decoded) : groups((g) =>
          Effect.map(g.parked(tenant, name, decoded), (parked) =>
            parked.map(parkedToWire)))
      },
      replayParked: (tenant, name, ids) => {
        const decoded = decodeReplay({ ids })
        return isInvalid(decoded) ? Effect.fail(decoded) : groups((g) => g.replayParked(tenant, name, decoded.ids))
      }
    },

    projections: {
      define: (tenant, name, request) => {
        const decoded = decodeDefineProjection(request)
        if (isInvalid(decoded)) return Effect.fail(decoded)
        const { replace, start, ...definition } = decoded
        return projections((p) => p.define(tenant, name, definition, { replace, start }))
      },
      get: (tenant, name) => projections((p) => p.status(tenant, name, { withState: true })),
      state: (tenant, name, key) => projections((p) => p.state(tenant, name, key)),
      list: (tenant) => projections((p) => p.list(tenant)),
      start: (tenant, name) => projections((p) => p.start(tenant, name)),
      stop: (tenant, name) => projections((p) => p.stop(tenant, name)),
      reset: (tenant, name) => projections((p) => p.reset(tenant, name)),
      rebuild: (tenant, name) => projections((p) => p.rebuild(tenant, name))
    }
  } satisfies Omit<ChronosClientShape, "append" | "read" | "query" | "readPartition" | "state"> & Record<string, unknown>
  // The stream methods are overloaded on `fork` (the error type widens with `ForkNotFound` only when a fork is named);
  // one implementation serves every overload.
  return shape as unknown as ChronosClientShape
}

/** The durable file log of `config.dataDir` (segments rolled at `config.logSegmentBytesMax`). */
export const fileLog = (config: ChronosConfigShape) =>
  EventLog.layerFile({ dataDir: config.dataDir, segmentBytesMax: config.logSegmentBytesMax, partitions: config.partitions })
