/**
 * Copy-on-write forks of a tenant's history: the service behind create, list, get, diff, merge and discard, the
 * engine of each fork (`engine`: every read and write of the `Engine`, through the fork), and TTL expiry.
 *
 * A fork is a record (`ForkRegistry`) — `{ id, tenant, parent, base, ttl, labels }` — and, once used, its own
 * partitions (`ForkRouter`). Creating one reads each parent partition's watermark (or its position at `asOf`) and
 * writes the record: nothing is copied or opened, so it costs the same on an empty store and on a large one.
 * A branch is a fork whose parent is a fork; its base is the parent fork's position vector.
 *
 * Guarantees, and why they hold:
 *  - a fork never changes its parent except by `merge`: its writes go to its own partitions, in its own log
 *    namespace; reads of the parent go through the parent's read path, bounded by the base;
 *  - merge is checked in full before anything is written: every stream's parent events after the stream's base
 *    version must be none, or exactly the fork's own (an earlier merge) — otherwise the stream conflicts and the
 *    merge writes nothing. Each stream is then re-appended in one append (atomic per stream) with the expected
 *    version the check saw and the fork's event ids, so a retry is idempotent and a racing writer makes that
 *    stream fail with a conflict instead of being overwritten. Atomicity across streams is not available (streams
 *    live in different partitions): a writer racing the merge can leave it partial, which the error says;
 *  - an expired or discarded fork is gone at once for every caller (`engine`, `get` answer `ForkNotFound` from its
 *    expiry instant on, before the timer runs); the timer then closes its partitions and deletes its log. A discard
 *    is marked in the registry before it starts, so one interrupted by a crash is finished at the next start; it
 *    takes every branch of the fork with it (a branch reads its parent's log).
 *
 * Limits: `forksPerTenantMax`, `forkEventsMax`, `forkTtlSecondsMax`, `forkLabelsMax`, `forkLabelLengthMax`,
 * `forkMergeConflictEventsMax`, `forkExpiryIntervalMs` (`ChronosConfig`).
 *
 * In a cluster (`PartitionEntity.ForkHost` present): a fork's partition p reads its parent's partition p
 * synchronously, so it lives on the runner that owns partition p. The fork's engine sends each call for partition p
 * to that runner (directly when it is this one, else through the partition entity with the fork named), where the
 * fork's local `ForkRouter` serves it (`ForkHost.resolve`). Records are shared through the NATS KV registry and
 * re-read before use (any runner may have created, discarded or expired a fork). Expiry runs as a cluster
 * singleton: exactly one runner expires forks at a time, and another takes over when it dies; every runner also
 * closes its own partitions of forks that are gone. A fork's base is taken from partition statuses (watermarks);
 * a fork at a past *time* (`asOf` as a timestamp) needs every parent partition local, and a merge checks reused
 * event ids only in partitions local to the runner merging (elsewhere the append's postcondition catches them).
 * `forkEventsMax` is enforced per runner (each runner counts the fork partitions it serves).
 *
 * Without `ForkHost` (an engine built without the partition entity: tests) every partition is local and expiry is
 * a timer.
 */
import { Clock, Context, Effect, Exit, Layer, Option, Random, Schema, Scope, Semaphore } from "effect"
import { Sharding } from "effect/cluster"
import { ChronosConfig } from "@chronos/config"
import { AsOf, Errors, Event, Fork, Ids } from "@chronos/domain"
import { Engine, type EngineShape, make as makeEngine, type PartitionRouter } from "./Engine.ts"
import { EventLog } from "./EventLog.ts"
import { ForkRegistry, type ForkRecord } from "./ForkRegistry.ts"
import { ForkReadPolicy } from "./ForkReadPolicy.ts"
import * as ForkRouter from "./ForkRouter.ts"
import * as GatewayRetry from "./GatewayRetry.ts"
import type * as Partition from "./Partition.ts"
import { ForkHost, makeForkRemoteRouter } from "./PartitionEntity.ts"

type StoredEvent = Event.StoredEvent

export interface ForksShape {
  readonly create: (
    tenant: string,
    request: Fork.CreateForkRequest
  ) => Effect.Effect<
    Fork.ForkInfo,
    Errors.InvalidRequest | Errors.LimitExceeded | Fork.ForkNotFound | Errors.Unavailable
  >
  /** The tenant's live forks, oldest first. */
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<Fork.ForkInfo>, Errors.InvalidRequest>
  readonly get: (tenant: string, forkId: string) => Effect.Effect<Fork.ForkInfo, Errors.InvalidRequest | Fork.ForkNotFound>
  /**
   * The engine of a fork: the same operations as `Engine`, reading the parent at the base plus the fork's own
   * events and writing to the fork, through the store's `ForkReadPolicy` when one is provided. Only for `tenant`
   * (other tenants are refused).
   */
  readonly engine: (
    tenant: string,
    forkId: string
  ) => Effect.Effect<EngineShape, Errors.InvalidRequest | Fork.ForkNotFound | Errors.Unavailable>
  /** What the fork added, per stream. */
  readonly diff: (
    tenant: string,
    forkId: string
  ) => Effect.Effect<Fork.DiffResult, Errors.InvalidRequest | Fork.ForkNotFound | Errors.Unavailable>
  /** Re-appends the fork's events to its parent (see the module doc); a dry run only reports. */
  readonly merge: (
    tenant: string,
    forkId: string,
    request: Fork.MergeRequest
  ) => Effect.Effect<
    Fork.MergeResult,
    Fork.ForkMergeConflict | Errors.InvalidRequest | Errors.LimitExceeded | Fork.ForkNotFound | Errors.Unavailable
  >
  /** Deletes the fork, its branches and their logs. */
  readonly discard: (
    tenant: string,
    forkId: string
  ) => Effect.Effect<Fork.DiscardResult, Errors.InvalidRequest | Fork.ForkNotFound | Errors.Unavailable>
  /** Deletes every expired fork now (what the expiry timer runs); returns their ids. */
  readonly expire: Effect.Effect<ReadonlyArray<string>, Errors.Unavailable>
}

export class Forks extends Context.Service<Forks, ForksShape>()("chronos/engine/Forks") {
  /** Forks of the provided `Engine`'s store, recorded in the provided `ForkRegistry`; expiry runs in the layer. */
  static readonly layer: Layer.Layer<Forks, Errors.Unavailable, Engine | ChronosConfig | EventLog | ForkRegistry> =
    Layer.effect(Forks, Effect.suspend(() => make))
}

/**
 * A fork whose partitions may be open: its router here (the partitions local to this runner), the router of the
 * whole fork (each partition where it lives: `router` when local), and the engine over the latter.
 */
interface OpenFork {
  readonly router: ForkRouter.ForkRouter
  readonly routed: PartitionRouter
  readonly engine: EngineShape
}

/** What a merge found for one stream, and what it would append. */
interface Plan {
  readonly stream: string
  readonly baseVersion: number
  readonly forkEvents: ReadonlyArray<StoredEvent>
  /** The fork's events not yet in the parent (the parent already has the others, from an earlier merge). */
  readonly remaining: ReadonlyArray<StoredEvent>
  readonly parentVersion: number
  readonly status: Fork.MergeStreamStatus
  readonly conflicts: ReadonlyArray<Fork.ParentEvent>
  readonly message?: string | undefined
}

/** A commit body row minus its payload and names (as `Engine` sizes an append): id, version, quotes, commas. */
const rowEnvelopeBytes = 36 + 16 + 20

const formatBase = (base: ReadonlyArray<number>): string => base.map((seq, p) => `${p}:${seq}`).join(",")

const info = (record: ForkRecord): Fork.ForkInfo => ({
  forkId: record.id,
  tenant: record.tenant,
  parent: record.parent,
  base: formatBase(record.base),
  ttlSeconds: record.ttlSeconds,
  createdAt: new Date(record.createdAtMs).toISOString(),
  expiresAt: new Date(record.expiresAtMs).toISOString(),
  labels: record.labels
})

const invalid = (field: string, message: string) => new Errors.InvalidRequest({ field, message })

const isForkId = Schema.is(Fork.ForkId)

const parentEvent = (e: StoredEvent): Fork.ParentEvent => ({
  eventId: e.eventId,
  type: e.type,
  streamVersion: e.streamVersion,
  timestamp: new Date(e.timestamp).toISOString()
})

export const make: Effect.Effect<
  ForksShape,
  Errors.Unavailable,
  Engine | ChronosConfig | EventLog | ForkRegistry | Scope.Scope
> = Effect.gen(function*() {
  const main = yield* Engine
  const config = yield* ChronosConfig
  const eventLog = yield* EventLog
  const registry = yield* ForkRegistry
  const clock = yield* Clock.Clock
  const random = yield* Random.Random
  const scope = yield* Effect.scope
  const now = () => clock.currentTimeMillisUnsafe()
  const host = Option.getOrUndefined(yield* Effect.serviceOption(ForkHost))
  // The store's read rules, applied to every fork engine handed out (see `ForkReadPolicy`).
  const readPolicy = Option.getOrUndefined(yield* Effect.serviceOption(ForkReadPolicy))
  /** Several runners share the registry: re-read records before use (see the module doc). */
  const shared = registry.driver === "nats-kv"

  const records = new Map<string, ForkRecord>()
  for (const record of yield* registry.load) records.set(record.id, record)

  /** The registry as stored now (shared registry only; on failure the records in memory serve, with a warning). */
  const refreshAll: Effect.Effect<void> = shared
    ? registry.load.pipe(
      Effect.map((all) => {
        records.clear()
        for (const r of all) records.set(r.id, r)
      }),
      Effect.catch((e) => Effect.logWarning(`fork registry unreachable; using the records in memory: ${e.message}`))
    )
    : Effect.void
  const refreshOne = (id: string): Effect.Effect<void> =>
    shared
      ? registry.get(id).pipe(
        Effect.map((r) => void (r === undefined ? records.delete(id) : records.set(id, r))),
        Effect.catch((e) => Effect.logWarning(`fork registry unreachable; using the records in memory: ${e.message}`))
      )
      : Effect.void
  const open = new Map<string, OpenFork>()
  /** Registry changes, and the counts and parent checks they depend on, one at a time. */
  const mutations = Semaphore.makeUnsafe(1)
  const opening = Semaphore.makeUnsafe(1)
  const merging = new Map<string, Semaphore.Semaphore>()

  const isLive = (record: ForkRecord, at: number) => !record.discarding && record.expiresAtMs > at

  const validTenant = (tenant: string) =>
    Schema.is(Ids.TenantId)(tenant) ? Effect.void : Effect.fail(invalid("tenant", `invalid tenant: ${JSON.stringify(tenant).slice(0, 100)}`))

  /** The live fork `forkId` of `tenant` (malformed, unknown, other tenant's, discarded or expired: not found). */
  const live = (tenant: string, forkId: string): Effect.Effect<ForkRecord, Errors.InvalidRequest | Fork.ForkNotFound> =>
    Effect.flatMap(validTenant(tenant), () =>
      Effect.flatMap(isForkId(forkId) ? refreshOne(forkId) : Effect.void, () => {
        const record = isForkId(forkId) ? records.get(forkId) : undefined
        return record !== undefined && record.tenant === tenant && isLive(record, now())
          ? Effect.succeed(record)
          : Effect.fail(new Fork.ForkNotFound({ tenant, forkId }))
      }))

  /** The parent of a record that exists: a child never outlives its parent's record (discards cascade). */
  const parentOf = (record: ForkRecord): Effect.Effect<ForkRecord> => {
    const parent = records.get(record.parent)
    return parent === undefined
      ? Effect.die(new Error(`fork ${record.id}: its parent ${record.parent} has no record`))
      : Effect.succeed(parent)
  }

  const mainLookup = (p: number): Effect.Effect<Partition.Lookup, Errors.Unavailable> => {
    const partition = main.router.local?.(p)
    return partition === undefined
      ? Effect.fail(new Errors.Unavailable({
        message: `partition ${p} is not open in this process (in a cluster: it moved to another runner; retry)`,
        // In a cluster the next attempt is routed to the partition's new owner.
        retryable: host !== undefined
      }))
      : Effect.succeed(partition.lookup)
  }

  /** Synchronous lookups into a fork's partitions (opened on demand). */
  const forkLookup = (fork: OpenFork) => (p: number): Effect.Effect<Partition.Lookup, Errors.Unavailable> =>
    Effect.map(fork.router.partition(p), (partition) => partition.lookup)

  /** Synchronous lookups into the parent of `record`, partition by partition. */
  const parentLookup = (record: ForkRecord): Effect.Effect<(p: number) => Effect.Effect<Partition.Lookup, Errors.Unavailable>> =>
    record.parent === Fork.mainParent
      ? Effect.succeed(mainLookup)
      : Effect.map(Effect.flatMap(parentOf(record), opened), forkLookup)

  /** Whether main's partition p (and so every fork's partition p) is served by this runner now. */
  const isHere = (p: number) => main.router.local?.(p) !== undefined

  /**
   * The whole fork in a cluster: partition p through the local router when p is here, else through the partition
   * entity to its owner (which serves it from its own local router of the fork), with the gateway's retries.
   */
  const clusterRouter = (forkId: string, local: ForkRouter.ForkRouter) =>
    Effect.gen(function*() {
      const remote = yield* ForkRemote(forkId)
      const pick = (p: number): PartitionRouter => (isHere(p) ? local : remote)
      const routed: PartitionRouter = {
        owner: (p) => main.router.owner(p),
        append: (p, input) => pick(p).append(p, input),
        appendMany: (p, inputs) => pick(p).appendMany(p, inputs),
        readStream: (p, t, stream, read) => pick(p).readStream(p, t, stream, read),
        scan: (p, t, options) => pick(p).scan(p, t, options),
        follow: (p, t, options) => pick(p).follow(p, t, options),
        reconstruct: (p, t, stream, reducer, asOf) => pick(p).reconstruct(p, t, stream, reducer, asOf),
        status: (p) => pick(p).status(p),
        awaitWatermark: (p, seq, timeoutMs) => pick(p).awaitWatermark(p, seq, timeoutMs),
        local: (p) => (isHere(p) ? local.local?.(p) : undefined)
      }
      return yield* GatewayRetry.make(routed, { ...config, isRemote: (p) => !isHere(p) })
    })

  const ForkRemote = (forkId: string): Effect.Effect<PartitionRouter> =>
    host === undefined
      ? Effect.die(new Error("fork routing through the partition entity needs ForkHost"))
      : makeForkRemoteRouter(forkId).pipe(Effect.provideService(Sharding.Sharding, host.sharding))

  /** The fork's router and engine, created on first use (its partitions open lazily, on their first call). */
  const opened = (record: ForkRecord): Effect.Effect<OpenFork> =>
    Effect.gen(function*() {
      const ready = open.get(record.id)
      if (ready !== undefined) return ready
      // The parent first, outside the lock (it takes the lock itself).
      const parent = record.parent === Fork.mainParent ? undefined : yield* opened(yield* parentOf(record))
      const lookup = yield* parentLookup(record)
      return yield* opening.withPermit(Effect.gen(function*() {
        const again = open.get(record.id)
        if (again !== undefined) return again
        const router = ForkRouter.make({
          forkId: record.id,
          tenant: record.tenant,
          base: record.base,
          parent: parent?.router ?? main.router,
          parentPartition: lookup,
          config,
          eventLog,
          scope: yield* Scope.fork(scope)
        })
        const routed = host === undefined ? router : yield* clusterRouter(record.id, router)
        const forkEngine = makeEngine(config, routed)
        const fork: OpenFork = {
          router,
          routed,
          engine: readPolicy === undefined ? forkEngine : readPolicy.wrap(forkEngine, main)
        }
        open.set(record.id, fork)
        return fork
      }))
    })

  // ---- create, list, get ------------------------------------------------------------------------------------------

  const newId = (): string => {
    const hex = () => (random.nextIntUnsafe() >>> 0).toString(16).padStart(8, "0")
    for (;;) {
      const id = `f${hex()}${hex()}`
      if (!records.has(id)) return id
    }
  }

  const validLabels = (labels: Readonly<Record<string, string>> | undefined) => {
    const entries = Object.entries(labels ?? {})
    if (entries.length > config.forkLabelsMax) {
      return Effect.fail(new Errors.LimitExceeded({
        limit: "forkLabelsMax",
        max: config.forkLabelsMax,
        actual: entries.length,
        message: `a fork has at most ${config.forkLabelsMax} labels`
      }))
    }
    for (const [key, value] of entries) {
      const longest = Math.max(key.length, value.length)
      if (longest > config.forkLabelLengthMax) {
        return Effect.fail(new Errors.LimitExceeded({
          limit: "forkLabelLengthMax",
          max: config.forkLabelLengthMax,
          actual: longest,
          message: `label ${JSON.stringify(key.slice(0, 64))}: keys and values have at most ${config.forkLabelLengthMax} characters`
        }))
      }
      if (key.length === 0) return Effect.fail(invalid("labels", "a label key is not empty"))
    }
    return Effect.succeed(Object.fromEntries(entries) as Record<string, string>)
  }

  const create: ForksShape["create"] = (tenant, request) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      const ttlSeconds = request.ttlSeconds
      if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) {
        return yield* invalid("ttlSeconds", "ttlSeconds must be a positive integer")
      }
      if (ttlSeconds > config.forkTtlSecondsMax) {
        return yield* new Errors.LimitExceeded({
          limit: "forkTtlSecondsMax",
          max: config.forkTtlSecondsMax,
          actual: ttlSeconds,
          message: `a fork lives at most ${config.forkTtlSecondsMax} s`
        })
      }
      const labels = yield* validLabels(request.labels)
      let asOf: AsOf.AsOf | undefined
      if (request.asOf !== undefined) {
        const parsed = AsOf.parse(request.asOf)
        if (parsed._tag === "None") {
          return yield* invalid("asOf", "expected an ISO-8601 timestamp or a position vector like 3:120,7:88")
        }
        asOf = parsed.value
      }
      const parentId = request.parent ?? Fork.mainParent
      return yield* mutations.withPermit(Effect.gen(function*() {
        yield* refreshAll
        const t = now()
        let count = 0
        for (const r of records.values()) if (r.tenant === tenant && isLive(r, t)) count++
        if (count >= config.forksPerTenantMax) {
          return yield* new Errors.LimitExceeded({
            limit: "forksPerTenantMax",
            max: config.forksPerTenantMax,
            actual: count + 1,
            message: `tenant ${tenant} has ${count} forks; discard one first`
          })
        }
        const parent = parentId === Fork.mainParent ? undefined : yield* live(tenant, parentId)
        const parentFork = parent === undefined ? undefined : yield* opened(parent)
        const lookups = parentFork === undefined ? mainLookup : forkLookup(parentFork)
        const parentRouter = parentFork?.routed ?? main.router
        // The fork's base: where each parent partition is now (its watermark) or was at `asOf`. Nothing else.
        const base: Array<number> = new Array(config.partitions)
        for (let p = 0; p < config.partitions; p++) {
          if (isHere(p)) base[p] = (yield* lookups(p)).positionAt(asOf)
          else {
            // On another runner: its watermark, bounded by a position vector; a past time needs the partition here.
            const { watermark } = yield* parentRouter.status(p)
            if (asOf === undefined) base[p] = watermark
            else if (asOf._tag === "Positions") base[p] = Math.min(watermark, asOf.positions.get(p) ?? 0)
            else {
              return yield* new Errors.Unavailable({
                message: `a fork at a past time needs partition ${p} on this runner; in a cluster, give asOf as a ` +
                  "position vector (p:seq,…)",
                retryable: false
              })
            }
          }
        }
        const expiresAtMs = Math.min(t + ttlSeconds * 1000, parent?.expiresAtMs ?? Infinity)
        const record: ForkRecord = {
          id: newId(),
          tenant,
          parent: parentId,
          base,
          ttlSeconds,
          createdAtMs: t,
          expiresAtMs,
          labels,
          discarding: false
        }
        yield* registry.put(record)
        records.set(record.id, record)
        return info(record)
      }))
    })

  const list: ForksShape["list"] = (tenant) =>
    Effect.map(Effect.andThen(validTenant(tenant), refreshAll), () => {
      const t = now()
      return [...records.values()]
        .filter((r) => r.tenant === tenant && isLive(r, t))
        .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1))
        .map(info)
    })

  const get: ForksShape["get"] = (tenant, forkId) => Effect.map(live(tenant, forkId), info)

  const engine: ForksShape["engine"] = (tenant, forkId) =>
    Effect.flatMap(live(tenant, forkId), (record) => Effect.map(opened(record), (fork) => fork.engine))

  // ---- diff ---------------------------------------------------------------------------------------------------

  /** The fork's own events by stream (a stream lives in one partition, so each list is in version order). */
  /** The fork's own events (above its base), in partition then sequence order, wherever its partitions live. */
  const ownEvents = (record: ForkRecord, fork: OpenFork) =>
    Effect.gen(function*() {
      const out: Array<StoredEvent> = []
      const page = config.readEventsMax
      for (let p = 0; p < config.partitions; p++) {
        let from = record.base[p]! + 1
        while (true) {
          const got = yield* fork.routed.scan(p, record.tenant, { fromSeq: from, limit: page })
          for (const e of got) out.push(e)
          if (got.length < page) break
          from = got[got.length - 1]!.seq + 1
        }
      }
      return out
    })

  const ownByStream = (record: ForkRecord, fork: OpenFork) =>
    Effect.map(ownEvents(record, fork), (events) => {
      const byStream = new Map<string, Array<StoredEvent>>()
      for (const e of events) {
        let list = byStream.get(e.stream)
        if (list === undefined) byStream.set(e.stream, list = [])
        list.push(e)
      }
      return { events, byStream: [...byStream].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) }
    })

  const diff: ForksShape["diff"] = (tenant, forkId) =>
    Effect.gen(function*() {
      const record = yield* live(tenant, forkId)
      const { byStream, events } = yield* ownByStream(record, yield* opened(record))
      return {
        forkId: record.id,
        parent: record.parent,
        base: formatBase(record.base),
        events: events.length,
        streams: byStream.map(([stream, list]) => ({
          stream,
          baseVersion: list[0]!.streamVersion - 1,
          events: list.map(Event.toRecorded)
        }))
      }
    })

  // ---- merge --------------------------------------------------------------------------------------------------

  const mergeLock = (forkId: string) => {
    let lock = merging.get(forkId)
    if (lock === undefined) merging.set(forkId, lock = Semaphore.makeUnsafe(1))
    return lock
  }

  /** Bytes an append of these events takes in a commit, counted as `Engine` counts them (`commitBytesMax`). */
  const appendBytes = (tenant: string, stream: string, events: ReadonlyArray<StoredEvent>) => {
    let total = 0
    for (const e of events) {
      total += Buffer.byteLength(JSON.stringify(e.data) ?? "null") + Buffer.byteLength(JSON.stringify(e.metadata)) +
        rowEnvelopeBytes + tenant.length + stream.length + e.type.length
    }
    return total
  }

  /** Checks one stream against the parent as it is now (see the module doc); writes nothing. */
  const plan = (
    tenant: string,
    target: EngineShape,
    lookup: Partition.Lookup | undefined,
    stream: string,
    forkEvents: ReadonlyArray<StoredEvent>
  ) =>
    Effect.gen(function*() {
      const baseVersion = forkEvents[0]!.streamVersion - 1
      for (let i = 0; i < forkEvents.length; i++) {
        if (forkEvents[i]!.streamVersion !== baseVersion + 1 + i) {
          return yield* Effect.die(new Error(`fork: ${stream} has a version gap at ${forkEvents[i]!.streamVersion}`))
        }
      }
      const parentVersion = lookup !== undefined
        ? lookup.versionAt(tenant, stream, Infinity)
        : (yield* target.readStream(tenant, stream, { direction: "backward", limit: 1 }).pipe(
          Effect.catchTag(["InvalidRequest", "LimitExceeded"], (e) => Effect.die(e))
        ))[0]?.streamVersion ?? -1
      if (parentVersion < baseVersion) {
        return yield* Effect.die(new Error(`fork: the parent's ${stream} is at ${parentVersion}, below the fork's base ${baseVersion}`))
      }
      // The parent's events after the base version: the fork's own first (merged earlier), then anything else.
      let merged = 0
      const conflicts: Array<Fork.ParentEvent> = []
      let from = baseVersion + 1
      scan: while (from <= parentVersion) {
        const page = yield* target.readStream(tenant, stream, { fromVersion: from, limit: config.readEventsMax })
        if (page.length === 0) break
        for (const e of page) {
          const mine = forkEvents[merged]
          if (conflicts.length === 0 && mine !== undefined && e.eventId === mine.eventId) merged++
          else {
            conflicts.push(parentEvent(e))
            if (conflicts.length >= config.forkMergeConflictEventsMax) break scan
          }
        }
        from = page[page.length - 1]!.streamVersion + 1
      }
      const remaining = forkEvents.slice(merged)
      const base = { stream, baseVersion, forkEvents, remaining, parentVersion, conflicts }
      if (conflicts.length > 0) {
        return {
          ...base,
          status: "conflict",
          message: `the parent has ${parentVersion - baseVersion - merged} events after version ${baseVersion + merged} ` +
            "that are not this fork's"
        } satisfies Plan
      }
      // An id the parent already uses elsewhere would make the append a no-op or a failure: a conflict too.
      for (const e of lookup === undefined ? [] : remaining) {
        const used = lookup!.eventAt(e.eventId, Infinity)
        if (used !== undefined) {
          return {
            ...base,
            status: "conflict",
            message: `event id ${e.eventId} is already used in the parent (${used.stream} version ${used.streamVersion})`
          } satisfies Plan
        }
      }
      if (remaining.length > config.appendEventsMax || appendBytes(tenant, stream, remaining) > config.commitBytesMax) {
        return {
          ...base,
          status: "tooLarge",
          message: `${remaining.length} events (${appendBytes(tenant, stream, remaining)} bytes) do not fit in one ` +
            `append (appendEventsMax ${config.appendEventsMax}, commitBytesMax ${config.commitBytesMax}): they ` +
            "could not be merged atomically"
        } satisfies Plan
      }
      return { ...base, status: remaining.length === 0 ? "merged" : "mergeable" } satisfies Plan
    })

  const toWire = (plan: Plan, appended: number, status: Fork.MergeStreamStatus = plan.status): Fork.MergeStream => ({
    stream: plan.stream,
    status,
    baseVersion: plan.baseVersion,
    events: plan.forkEvents.length,
    appended,
    parentVersion: plan.parentVersion,
    ...(status === "merged" || status === "mergeable"
      ? {
        firstVersion: plan.forkEvents[0]!.streamVersion,
        lastVersion: plan.forkEvents[plan.forkEvents.length - 1]!.streamVersion
      }
      : {}),
    ...(plan.conflicts.length > 0 ? { conflicts: plan.conflicts } : {}),
    ...(plan.message === undefined ? {} : { message: plan.message })
  })

  const merge: ForksShape["merge"] = (tenant, forkId, request) =>
    Effect.gen(function*() {
      const record = yield* live(tenant, forkId)
      const fork = yield* opened(record)
      const parentFork = record.parent === Fork.mainParent ? undefined : yield* opened(yield* parentOf(record))
      const target = parentFork?.engine ?? main
      const lookups = yield* parentLookup(record)
      const dryRun = request.dryRun === true
      return yield* mergeLock(record.id).withPermit(Effect.gen(function*() {
        const { byStream } = yield* ownByStream(record, fork)
        const plans: Array<Plan> = []
        for (const [stream, events] of byStream) {
          const p = main.partitionOf(tenant, stream)
          const lookup = isHere(p) ? yield* lookups(p) : undefined
          plans.push(yield* plan(tenant, target, lookup, stream, events))
        }
        const blocked = plans.filter((p) => p.status === "conflict" || p.status === "tooLarge")
        const result = (status: Fork.MergeResult["status"], streams: ReadonlyArray<Fork.MergeStream>): Fork.MergeResult => ({
          forkId: record.id,
          parent: record.parent,
          dryRun,
          status,
          streams
        })
        if (dryRun) {
          return result(
            blocked.length > 0 ? "conflict" : plans.every((p) => p.status === "merged") ? "merged" : "mergeable",
            plans.map((p) => toWire(p, 0))
          )
        }
        if (blocked.length > 0) {
          return yield* new Fork.ForkMergeConflict({
            forkId: record.id,
            parent: record.parent,
            partial: false,
            streams: plans.map((p) => toWire(p, 0)),
            message: `${blocked.length} of ${plans.length} streams cannot be merged; nothing was written`
          })
        }
        // Every stream checked: write each in one append, expecting exactly the version the check saw.
        type Outcome = {
          readonly plan: Plan
          readonly exit: Exit.Exit<Event.AppendResult, Errors.AppendError> | undefined
        }
        const outcomes = yield* Effect.forEach(plans, (p): Effect.Effect<Outcome> => {
          if (p.remaining.length === 0) return Effect.succeed({ plan: p, exit: undefined })
          const expected = p.remaining[0]!.streamVersion - 1
          return Effect.map(
            Effect.exit(target.append(tenant, p.stream, {
              expectedVersion: expected === -1 ? "no_stream" : expected,
              events: p.remaining.map((e) => ({
                eventId: e.eventId,
                type: e.type,
                data: e.data,
                metadata: e.metadata
              })) as unknown as Event.AppendRequest["events"]
            })),
            (exit) => ({ plan: p, exit })
          )
        }, { concurrency: 16 })
        const streams: Array<Fork.MergeStream> = []
        let written = 0
        let raced = 0
        let unavailable: Errors.Unavailable | undefined
        for (const { exit, plan: p } of outcomes) {
          if (exit === undefined) {
            streams.push(toWire(p, 0, "merged"))
            continue
          }
          if (Exit.isSuccess(exit)) {
            // Postcondition: the parent gave the fork's events the versions they have in the fork.
            if (exit.value.firstVersion !== p.remaining[0]!.streamVersion) {
              return yield* Effect.die(new Error(
                `fork ${record.id}: ${p.stream} merged at version ${exit.value.firstVersion}, ` +
                  `expected ${p.remaining[0]!.streamVersion}`
              ))
            }
            written++
            streams.push(toWire(p, p.remaining.length, "merged"))
            continue
          }
          const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
          const error = failure !== undefined && failure._tag === "Fail" ? failure.error : undefined
          if (error === undefined) return yield* Effect.orDie(Effect.failCause(exit.cause))
          if (error._tag === "Unavailable") unavailable ??= error
          else raced++
          streams.push({
            ...toWire(p, 0, "conflict"),
            message: error._tag === "WrongExpectedVersion"
              ? `the parent's ${p.stream} moved to version ${error.actual} during the merge`
              : `${error._tag}: ${"message" in error ? error.message : ""}`
          })
        }
        if (unavailable !== undefined) {
          return yield* new Errors.Unavailable({
            message: `merge of fork ${record.id}: ${written} streams merged, then: ${unavailable.message}; retry ` +
              "the merge (streams already merged are recognised by their event ids)",
            retryable: unavailable.retryable
          })
        }
        if (raced > 0) {
          return yield* new Fork.ForkMergeConflict({
            forkId: record.id,
            parent: record.parent,
            partial: written > 0,
            streams,
            message: `${raced} streams changed in the parent during the merge; ${written} were merged`
          })
        }
        return result("merged", streams)
      }))
    })

  // ---- discard and expiry -------------------------------------------------------------------------------------

  /** `record` and every fork branched from it, parents before children. */
  const family = (record: ForkRecord): Array<ForkRecord> => {
    const out = [record]
    for (let i = 0; i < out.length; i++) {
      for (const r of records.values()) if (r.parent === out[i]!.id) out.push(r)
    }
    return out
  }

  /** Call with `mutations` held. Marks the family durably, then closes and deletes it, branches first. */
  const discardFamily = (record: ForkRecord) =>
    Effect.gen(function*() {
      const doomed = family(record)
      for (const r of doomed) {
        if (r.discarding) continue
        const marked: ForkRecord = { ...r, discarding: true }
        yield* registry.put(marked)
        records.set(r.id, marked)
      }
      for (const r of [...doomed].reverse()) {
        const fork = open.get(r.id)
        if (fork !== undefined) {
          yield* fork.router.close
          open.delete(r.id)
        }
        if (eventLog.drop !== undefined) {
          yield* eventLog.drop(r.id).pipe(Effect.mapError((error) =>
            new Errors.Unavailable({ message: `fork ${r.id}: cannot delete its log: ${error.message}`, retryable: true })
          ))
        } else {
          yield* Effect.logWarning(`fork ${r.id}: the ${eventLog.driver} log cannot delete a namespace; its storage stays`)
        }
        yield* registry.remove(r.id)
        records.delete(r.id)
        merging.delete(r.id)
      }
      return doomed.map((r) => r.id)
    })

  const discard: ForksShape["discard"] = (tenant, forkId) =>
    mutations.withPermit(Effect.gen(function*() {
      yield* refreshAll
      const record = yield* live(tenant, forkId)
      return { discarded: yield* discardFamily(record) }
    }))

  const expire: ForksShape["expire"] = mutations.withPermit(Effect.gen(function*() {
    yield* refreshAll
    const t = now()
    const gone: Array<string> = []
    for (const record of [...records.values()]) {
      const current = records.get(record.id)
      if (current === undefined || isLive(current, t)) continue
      gone.push(...yield* discardFamily(current))
    }
    return gone
  }))

  const expireLogged = expire.pipe(
    Effect.tap((ids) => ids.length > 0 ? Effect.logInfo(`forks expired and deleted: ${ids.join(", ")}`) : Effect.void),
    Effect.catchCause((cause) => Effect.logWarning("fork expiry failed; will retry", cause))
  )
  // Discards interrupted by a crash, and forks that expired while the node was down, go first.
  const expiry = Effect.andThen(
    expireLogged,
    Effect.forever(Effect.andThen(Effect.sleep(config.forkExpiryIntervalMs), expireLogged))
  )
  if (host === undefined) {
    yield* expireLogged
    yield* Effect.forkIn(expiry, scope)
  } else {
    // Exactly one runner of the cluster expires forks (a runner on its own is its whole cluster); when it stops or
    // dies, the cluster starts the singleton on another runner.
    yield* host.sharding.registerSingleton(
      "chronos/forks/expiry",
      Effect.andThen(Effect.logInfo("fork expiry singleton running on this runner"), expiry)
    )
    // Calls for a fork's partitions that live here, from other runners (through the partition entity).
    host.resolve = (forkId) =>
      Effect.gen(function*() {
        yield* refreshOne(forkId)
        const record = records.get(forkId)
        if (record === undefined || !isLive(record, now())) {
          return yield* new Errors.Unavailable({ message: `fork ${forkId} does not exist (discarded or expired)`, retryable: false })
        }
        return (yield* opened(record)).router
      })
    yield* Effect.addFinalizer(() => Effect.sync(() => void (host.resolve = undefined)))
    if (shared) {
      // Forks discarded or expired by another runner: close their partitions here (the log is deleted by the
      // runner that discarded them).
      const sweep = Effect.gen(function*() {
        for (const [id, fork] of [...open]) {
          yield* refreshOne(id)
          const record = records.get(id)
          if (record === undefined || !isLive(record, now())) {
            open.delete(id)
            yield* fork.router.close
          }
        }
      })
      yield* Effect.forkIn(Effect.forever(Effect.andThen(Effect.sleep(config.forkExpiryIntervalMs), sweep)), scope)
    }
  }

  return { create, list, get, engine, diff, merge, discard, expire } satisfies ForksShape
})
