/**
 * The gateway to the store: the one service every surface (HTTP, SDK, CLI, MCP) talks to. It owns request
 * validation against the named limits, routing of each request to its partition (`Partitioning`), and the
 * scatter-gather of cross-partition queries, merged in (timestamp, partition, seq) order.
 *
 * How a request reaches a partition is a `PartitionRouter`: `layerLocal` holds every partition in this process
 * (embedded mode, single node); `PartitionEntity.layerRouter` sends it to the `Partition` entity of
 * `effect/cluster`, wherever its shard lives.
 */
import { Context, Effect, Exit, Layer, Option, Schema, type Stream } from "effect"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { AsOf, Errors, type Event, Ids, Partitioning, Reducer } from "@chronos/domain"
import type { LogError } from "./EventLog.ts"
import { EventLog } from "./EventLog.ts"
import * as Partition from "./Partition.ts"
import * as Subscription from "./Subscription.ts"

type StoredEvent = Event.StoredEvent

/** What the engine needs from wherever partitions live. Every call names its partition. */
export interface PartitionRouter {
  readonly owner: (partition: number) => string
  readonly append: (
    partition: number,
    input: Partition.AppendInput
  ) => Effect.Effect<Partition.AppendOutput, Partition.AppendFailure>
  readonly appendMany: (
    partition: number,
    inputs: ReadonlyArray<Partition.AppendInput>
  ) => Effect.Effect<Array<Exit.Exit<Partition.AppendOutput, Partition.AppendFailure>>>
  readonly readStream: (
    partition: number,
    tenant: string,
    stream: string,
    options: Partition.ReadStreamOptions
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, Errors.Unavailable>
  readonly scan: (
    partition: number,
    tenant: string,
    options: Partition.ScanOptions
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, Errors.Unavailable>
  readonly reconstruct: (
    partition: number,
    tenant: string,
    stream: string,
    reducer: Reducer.Reducer,
    asOf: AsOf.AsOf | undefined
  ) => Effect.Effect<{ readonly version: number; readonly state: unknown }, Errors.Unavailable>
  readonly status: (partition: number) => Effect.Effect<Partition.PartitionStatus, Errors.Unavailable>
  readonly follow: (
    partition: number,
    tenant: string,
    options: Partition.ScanOptions
  ) => Effect.Effect<{ readonly events: ReadonlyArray<StoredEvent>; readonly through: number }, Errors.Unavailable>
  /** Resolves once the partition's watermark reaches `seq`, or after `timeoutMs` (with the watermark then). */
  readonly awaitWatermark: (partition: number, seq: number, timeoutMs: number) => Effect.Effect<number, Errors.Unavailable>
  /**
   * The partition object when it is open in this process (absent for remote ones): forks layer their partitions on
   * it through its synchronous lookups (`Partition.Lookup`, see `Forks`).
   */
  readonly local?: (partition: number) => Partition.Partition | undefined
}

export class Router extends Context.Service<Router, PartitionRouter>()("chronos/engine/Engine/Router") {}

export interface AppendCommand {
  readonly tenant: string
  readonly stream: string
  readonly request: Event.AppendRequest
}

export interface ReadStreamRequest {
  readonly fromVersion?: number | undefined
  readonly limit?: number | undefined
  readonly direction?: "forward" | "backward" | undefined
  readonly asOf?: string | undefined
}

export interface QueryRequest {
  readonly types?: ReadonlyArray<string> | undefined
  readonly since?: string | undefined
  readonly until?: string | undefined
  readonly asOf?: string | undefined
  readonly limit?: number | undefined
  /** The `next` token of a previous page. */
  readonly after?: string | undefined
}

export interface SubscribeRequest {
  /** `start` (default), `now`, or a position token from a previous item. */
  readonly from?: string | undefined
  readonly types?: ReadonlyArray<string> | undefined
  readonly stream?: string | undefined
  readonly streamPrefix?: string | undefined
}

export interface PartitionReadRequest {
  readonly fromSeq?: number | undefined
  readonly types?: ReadonlyArray<string> | undefined
  readonly asOf?: string | undefined
  readonly limit?: number | undefined
}

export interface EngineShape {
  readonly config: ChronosConfigShape
  readonly append: (
    tenant: string,
    stream: string,
    request: Event.AppendRequest
  ) => Effect.Effect<Event.AppendResult, Errors.AppendError>
  /**
   * Many independent appends (any streams, each with its own expected version) submitted at once; results come
   * back in the same order, each a success or its own typed failure. This is how a writer pipelines without paying
   * for a fiber per append.
   */
  readonly appendMany: (
    appends: ReadonlyArray<AppendCommand>
  ) => Effect.Effect<Array<Exit.Exit<Event.AppendResult, Errors.AppendError>>>
  readonly readStream: (
    tenant: string,
    stream: string,
    request: ReadStreamRequest
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable>
  readonly query: (
    tenant: string,
    request: QueryRequest
  ) => Effect.Effect<
    { readonly events: ReadonlyArray<StoredEvent>; readonly next: string | undefined },
    Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable
  >
  readonly readPartition: (
    tenant: string,
    partition: number,
    request: PartitionReadRequest
  ) => Effect.Effect<ReadonlyArray<StoredEvent>, Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable>
  readonly state: (
    tenant: string,
    stream: string,
    reducer: string | Reducer.Reducer | undefined,
    asOf: string | undefined
  ) => Effect.Effect<Event.StateResult, Errors.InvalidRequest | Errors.StreamNotFound | Errors.Unavailable>
  readonly partitions: Effect.Effect<ReadonlyArray<Event.PartitionStatus>, Errors.Unavailable>
  /** A catch-up + live subscription (see `Subscription`). Fails at once with `InvalidRequest` on bad options. */
  readonly subscribe: (
    tenant: string,
    request: SubscribeRequest
  ) => Effect.Effect<Stream.Stream<Subscription.Item, Errors.Unavailable>, Errors.InvalidRequest>
  /**
   * The same subscription as `subscribe`, as pages with the position vector reached after each (see
   * `Subscription.pages`), and the partitions it reads: what consumer groups, projections and SSE build on.
   * `stepEventsMax` bounds what one step reads over all partitions (a subscriber's window).
   */
  readonly subscribePages: (
    tenant: string,
    request: SubscribeRequest & { readonly stepEventsMax?: number | undefined }
  ) => Effect.Effect<
    { readonly partitions: ReadonlyArray<number>; readonly pages: Stream.Stream<Subscription.Page, Errors.Unavailable> },
    Errors.InvalidRequest
  >
  /** The partition of a stream (stable; see `Partitioning`). */
  readonly partitionOf: (tenant: string, stream: string) => number
  /** The router this engine runs on: what layers built over the engine (forks) read the partitions through. */
  readonly router: PartitionRouter
}

export class Engine extends Context.Service<Engine, EngineShape>()("chronos/engine/Engine") {
  /** The engine over whatever `Router` is provided. */
  static readonly layer: Layer.Layer<Engine, never, Router | ChronosConfig> = Layer.effect(
    Engine,
    Effect.gen(function*() {
      return make(yield* ChronosConfig, yield* Router)
    })
  )

  /** Every partition in this process, over the provided `EventLog` (embedded mode and single node). */
  static readonly layerLocal: Layer.Layer<Engine, LogError, ChronosConfig | EventLog> = Layer.suspend(() =>
    Engine.layer.pipe(Layer.provide(layerLocalRouter))
  )
}

/** A router to partitions opened in this process: all `config.partitions` of them, opened in parallel. */
export const layerLocalRouter: Layer.Layer<Router, LogError, ChronosConfig | EventLog> = Layer.effect(
  Router,
  Effect.gen(function*() {
    const config = yield* ChronosConfig
    const partitions = yield* Effect.forEach(
      Array.from({ length: config.partitions }, (_, i) => i),
      (i) => Partition.makeServing(i, config),
      { concurrency: 8 }
    )
    return localRouter(partitions, "local")
  })
)

/** Routes to already-open partitions (also used by the Partition entity on its runner). */
export const localRouter = (partitions: ReadonlyArray<Partition.Partition>, owner: string): PartitionRouter => {
  const at = (p: number) => partitions[p]!
  return {
    owner: () => owner,
    append: (p, input) => at(p).append(input),
    appendMany: (p, inputs) => at(p).appendMany(inputs),
    readStream: (p, tenant, stream, options) => at(p).readStream(tenant, stream, options),
    scan: (p, tenant, options) => at(p).scan(tenant, options),
    reconstruct: (p, tenant, stream, reducer, asOf) => at(p).reconstruct(tenant, stream, reducer, asOf),
    status: (p) => at(p).status,
    follow: (p, tenant, options) => at(p).follow(tenant, options),
    awaitWatermark: (p, seq, timeoutMs) => awaitLocalWatermark(at(p), seq, timeoutMs),
    local: (p) => partitions[p]
  }
}

/** Waits on a local partition's watermark, bounded by `timeoutMs`; answers the watermark at that point. */
export const awaitLocalWatermark = (partition: Partition.Partition, seq: number, timeoutMs: number) =>
  partition.awaitWatermark(seq).pipe(
    Effect.timeoutOrElse({ duration: timeoutMs, orElse: () => Effect.void }),
    Effect.andThen(Effect.map(partition.status, (s) => s.watermark))
  )

// ---- validation ---------------------------------------------------------------------------------------------------

const invalid = (field: string, message: string) => new Errors.InvalidRequest({ field, message })

const decodeId = <S extends Schema.Top & { readonly DecodingServices: never }>(
  schema: S,
  field: string,
  value: unknown
): Effect.Effect<S["Type"], Errors.InvalidRequest> => {
  const result = Schema.decodeUnknownExit(schema)(value)
  return result._tag === "Success"
    ? Effect.succeed(result.value)
    : Effect.fail(invalid(field, `invalid ${field}: ${JSON.stringify(value)?.slice(0, 300)}`))
}

const validTenant = (tenant: string) => decodeId(Ids.TenantId, "tenant", tenant)
const validStream = (stream: string) => decodeId(Ids.StreamId, "stream", stream)

const parseAsOf = (asOf: string | undefined, field = "asOf"): Effect.Effect<AsOf.AsOf | undefined, Errors.InvalidRequest> =>
  asOf === undefined ? Effect.succeed(undefined) : Option.match(AsOf.parse(asOf), {
    onNone: () => Effect.fail(invalid(field, "expected an ISO-8601 timestamp or a position vector like 3:120,7:88")),
    onSome: (a) => Effect.succeed(a)
  })

const parseTime = (value: string | undefined, field: string): Effect.Effect<number | undefined, Errors.InvalidRequest> =>
  value === undefined ? Effect.succeed(undefined) : Option.match(AsOf.parseTimestamp(value), {
    onNone: () => Effect.fail(invalid(field, "expected an ISO-8601 timestamp")),
    onSome: (t) => Effect.succeed(t)
  })

const cursorPattern = /^(\d+)\.(\d+)\.(\d+)$/

const encodeCursor = (e: StoredEvent) => `${e.timestamp}.${e.partition}.${e.seq}`

const parseCursor = (after: string | undefined): Effect.Effect<Partition.Cursor | undefined, Errors.InvalidRequest> => {
  if (after === undefined) return Effect.succeed(undefined)
  const m = cursorPattern.exec(after)
  return m === null
    ? Effect.fail(invalid("after", "expected the `next` token of a previous page"))
    : Effect.succeed({ timestamp: Number(m[1]), partition: Number(m[2]), seq: Number(m[3]) })
}

const orderByPosition = (a: StoredEvent, b: StoredEvent) =>
  a.timestamp - b.timestamp || a.partition - b.partition || a.seq - b.seq

/** A commit body row minus its payload and names: event id (36), version (≤ 16 digits), quotes and commas. */
const rowEnvelopeBytes = 36 + 16 + 20

/** UTF-8 length of a JSON text; the UTF-16 length is exact for ASCII, the common case, and much cheaper. */
const byteLength = (json: string): number => {
  for (let i = 0; i < json.length; i++) if (json.charCodeAt(i) > 0x7f) return Buffer.byteLength(json)
  return json.length
}

export const make = (config: ChronosConfigShape, router: PartitionRouter): EngineShape => {
  const partitionOf = (tenant: string, stream: string) => Partitioning.partitionOf(tenant, stream, config.partitions)

  const limitOf = (limit: number | undefined): Effect.Effect<number, Errors.InvalidRequest | Errors.LimitExceeded> => {
    if (limit === undefined) return Effect.succeed(config.readEventsDefault)
    if (!Number.isInteger(limit) || limit < 1) return Effect.fail(invalid("limit", "limit must be a positive integer"))
    if (limit > config.readEventsMax) {
      return Effect.fail(
        new Errors.LimitExceeded({
          limit: "readEventsMax",
          max: config.readEventsMax,
          actual: limit,
          message: `a read returns at most ${config.readEventsMax} events; page with a cursor`
        })
      )
    }
    return Effect.succeed(limit)
  }

  const validTypes = (types: ReadonlyArray<string> | undefined) =>
    types === undefined
      ? Effect.succeed(undefined)
      : Effect.forEach(types, (t, i) => decodeId(Ids.EventType, `types[${i}]`, t))

  // Identifiers already seen valid skip their schema check: the hot path sees the same streams over and over.
  // Bounded: the cache is dropped whole when full (a cheap, allocation-free eviction).
  const validNames = new Set<string>()
  const validNamesMax = 65_536
  const checkName = (schema: typeof Ids.TenantId | typeof Ids.StreamId, field: string, key: string, value: string) => {
    if (validNames.has(key)) return undefined
    const result = Schema.decodeUnknownExit(schema)(value)
    if (result._tag === "Failure") return invalid(field, `invalid ${field}: ${JSON.stringify(value).slice(0, 300)}`)
    if (validNames.size >= validNamesMax) validNames.clear()
    validNames.add(key)
    return undefined
  }

  /** Validates an append synchronously (no fiber, no generator: this is the hottest path of the store). */
  const acceptAppend = (
    tenant: string,
    stream: string,
    request: Event.AppendRequest
  ): Partition.AppendInput | Errors.InvalidRequest | Errors.LimitExceeded => {
    const badName = checkName(Ids.TenantId, "tenant", `t\u0000${tenant}`, tenant) ??
      checkName(Ids.StreamId, "stream", `s\u0000${stream}`, stream)
    if (badName !== undefined) return badName
    const n = request.events.length
    if (n === 0) return invalid("events", "at least one event is required")
    if (n > config.appendEventsMax) {
      return new Errors.LimitExceeded({
        limit: "appendEventsMax",
        max: config.appendEventsMax,
        actual: n,
        message: `one append carries at most ${config.appendEventsMax} events`
      })
    }
    const accepted: Array<Partition.AcceptedEvent> = new Array(n)
    let total = 0
    for (let i = 0; i < n; i++) {
      const e = request.events[i]!
      const dataJson = JSON.stringify(e.data) ?? "null"
      const metadataJson = e.metadata === undefined ? "{}" : JSON.stringify(e.metadata)
      const payloadBytes = byteLength(dataJson) + byteLength(metadataJson)
      if (payloadBytes > config.eventBytesMax) {
        return new Errors.LimitExceeded({
          limit: "eventBytesMax",
          max: config.eventBytesMax,
          actual: payloadBytes,
          message: `events[${i}]: data + metadata are ${payloadBytes} bytes as JSON, over ${config.eventBytesMax}`
        })
      }
      // What the event costs in a commit body: its payload plus the row around it (ids are ASCII by validation).
      const bytes = payloadBytes + rowEnvelopeBytes + tenant.length + stream.length + e.type.length
      total += bytes
      accepted[i] = {
        eventId: e.eventId,
        type: e.type,
        data: e.data,
        metadata: e.metadata ?? {},
        bytes,
        dataJson,
        metadataJson
      }
    }
    // One append is one atomic commit, so it must fit in one log record.
    if (total > config.commitBytesMax) {
      return new Errors.LimitExceeded({
        limit: "commitBytesMax",
        max: config.commitBytesMax,
        actual: total,
        message: `one append is committed atomically and must fit in ${config.commitBytesMax} bytes`
      })
    }
    return { tenant, stream, expectedVersion: request.expectedVersion ?? "any", events: accepted }
  }

  const append: EngineShape["append"] = (tenant, stream, request) => {
    const input = acceptAppend(tenant, stream, request)
    return "events" in input ? router.append(partitionOf(tenant, stream), input) : Effect.fail(input)
  }

  const appendMany: EngineShape["appendMany"] = (appends) =>
    Effect.suspend(() => {
      const out: Array<Exit.Exit<Event.AppendResult, Errors.AppendError>> = new Array(appends.length)
      const byPartition = new Map<number, { inputs: Array<Partition.AppendInput>; slots: Array<number> }>()
      for (let i = 0; i < appends.length; i++) {
        const { request, stream, tenant } = appends[i]!
        const input = acceptAppend(tenant, stream, request)
        if (!("events" in input)) {
          out[i] = Exit.fail(input)
          continue
        }
        const p = partitionOf(tenant, stream)
        let group = byPartition.get(p)
        if (group === undefined) byPartition.set(p, group = { inputs: [], slots: [] })
        group.inputs.push(input)
        group.slots.push(i)
      }
      return Effect.forEach(
        byPartition,
        ([p, group]) =>
          Effect.map(router.appendMany(p, group.inputs), (exits) => {
            for (let k = 0; k < exits.length; k++) out[group.slots[k]!] = exits[k]!
          }),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.as(out))
    })

  // The hottest read: validated synchronously (names through the same cache as appends), one effect in the end.
  const readStream: EngineShape["readStream"] = (tenant, stream, request) => {
    const badName = checkName(Ids.TenantId, "tenant", `t\u0000${tenant}`, tenant) ??
      checkName(Ids.StreamId, "stream", `s\u0000${stream}`, stream)
    if (badName !== undefined) return Effect.fail(badName)
    if (request.fromVersion !== undefined && (!Number.isInteger(request.fromVersion) || request.fromVersion < 0)) {
      return Effect.fail(invalid("fromVersion", "fromVersion must be a non-negative integer"))
    }
    if (request.asOf === undefined && request.limit === undefined) {
      return router.readStream(partitionOf(tenant, stream), tenant, stream, {
        fromVersion: request.fromVersion,
        limit: config.readEventsDefault,
        direction: request.direction ?? "forward",
        asOf: undefined
      })
    }
    return Effect.gen(function*() {
      const limit = yield* limitOf(request.limit)
      const asOf = yield* parseAsOf(request.asOf)
      return yield* router.readStream(partitionOf(tenant, stream), tenant, stream, {
        fromVersion: request.fromVersion,
        limit,
        direction: request.direction ?? "forward",
        asOf
      })
    })
  }

  const query: EngineShape["query"] = (tenant, request) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      const limit = yield* limitOf(request.limit)
      const types = yield* validTypes(request.types)
      const asOf = yield* parseAsOf(request.asOf)
      const since = yield* parseTime(request.since, "since")
      const until = yield* parseTime(request.until, "until")
      const after = yield* parseCursor(request.after)
      const options: Partition.ScanOptions = { types, since, until, asOf, after, limit }
      // Each partition returns its first `limit` matches in order; the first `limit` of the merge are exact.
      const parts = yield* Effect.forEach(
        Array.from({ length: config.partitions }, (_, p) => p),
        (p) => router.scan(p, tenant, options),
        { concurrency: "unbounded" }
      )
      const merged = parts.flat().sort(orderByPosition)
      const events = merged.length > limit ? merged.slice(0, limit) : merged
      const last = events[events.length - 1]
      return { events, next: events.length === limit && last !== undefined ? encodeCursor(last) : undefined }
    })

  const readPartition: EngineShape["readPartition"] = (tenant, partition, request) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      if (!Number.isInteger(partition) || partition < 0 || partition >= config.partitions) {
        return yield* invalid("partition", `partition must be an integer in [0, ${config.partitions})`)
      }
      const limit = yield* limitOf(request.limit)
      const types = yield* validTypes(request.types)
      const asOf = yield* parseAsOf(request.asOf)
      if (request.fromSeq !== undefined && (!Number.isInteger(request.fromSeq) || request.fromSeq < 1)) {
        return yield* invalid("fromSeq", "fromSeq must be an integer >= 1")
      }
      return yield* router.scan(partition, tenant, { fromSeq: request.fromSeq, types, asOf, limit })
    })

  const state: EngineShape["state"] = (tenant, stream, reducerOrName, asOfText) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      yield* validStream(stream)
      const asOf = yield* parseAsOf(asOfText)
      const reducer = typeof reducerOrName === "object"
        ? reducerOrName
        : yield* Option.match(Reducer.fromName(reducerOrName ?? "merge"), {
          onNone: () => Effect.fail(invalid("reducer", "expected merge, count, last or sum:<field>")),
          onSome: Effect.succeed
        })
      const result = yield* router.reconstruct(partitionOf(tenant, stream), tenant, stream, reducer, asOf)
      if (result.version === -1) return yield* new Errors.StreamNotFound({ tenant, stream })
      return { stream, reducer: reducer.name, version: result.version, state: result.state }
    })

  const partitions: EngineShape["partitions"] = Effect.forEach(
    Array.from({ length: config.partitions }, (_, p) => p),
    (p) =>
      Effect.map(router.status(p), (s): Event.PartitionStatus => ({
        partition: s.partition,
        seq: s.seq,
        watermark: s.watermark,
        owner: router.owner(p),
        events: s.events,
        streams: s.streams
      })),
    { concurrency: "unbounded" }
  )

  const subscription = (tenant: string, request: SubscribeRequest) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      if (request.stream !== undefined) yield* validStream(request.stream)
      const types = yield* validTypes(request.types)
      const from = yield* Option.match(Subscription.parseFrom(request.from ?? "start"), {
        onNone: () => Effect.fail(invalid("from", "expected start, now, or a position token like 3:120,7:88")),
        onSome: Effect.succeed
      })
      const partitions = request.stream !== undefined
        ? [partitionOf(tenant, request.stream)]
        : Array.from({ length: config.partitions }, (_, p) => p)
      const options: Subscription.Options = {
        types,
        stream: request.stream,
        streamPrefix: request.streamPrefix,
        pageEventsMax: config.subscriptionPageEventsMax,
        idleWaitMs: config.subscriptionIdleWaitMs
      }
      return { partitions, from, options }
    })

  const subscribe: EngineShape["subscribe"] = (tenant, request) =>
    Effect.map(
      subscription(tenant, request),
      ({ from, options, partitions }) => Subscription.make(router, tenant, partitions, from, options)
    )

  const subscribePages: EngineShape["subscribePages"] = (tenant, request) =>
    Effect.gen(function*() {
      const { from, options, partitions } = yield* subscription(tenant, request)
      const step = request.stepEventsMax
      if (step !== undefined && (!Number.isInteger(step) || step < 1)) {
        return yield* invalid("stepEventsMax", "stepEventsMax must be a positive integer")
      }
      return {
        partitions,
        pages: Subscription.pages(router, tenant, partitions, from, { ...options, stepEventsMax: step })
      }
    })

  return {
    config,
    append,
    appendMany,
    subscribe,
    subscribePages,
    readStream,
    query,
    readPartition,
    state,
    partitions,
    partitionOf,
    router
  }
}
