/**
 * Durable consumer groups: named, server-side subscriptions whose position is stored (`CheckpointStore`), delivered
 * in batches to competing consumers that acknowledge what they processed. This module owns the delivery protocol:
 *
 *  - `next` hands out ready events (read from the group's subscription, in per-partition order) as deliveries, each
 *    with a delivery id (`partition:seq`) and its attempt number; a delivery must be acked within
 *    `consumerAckTimeoutMs`;
 *  - `ack` (by delivery id or event id) completes an event; `nack`, or an ack timeout, is a failed attempt: the
 *    event is retried after an exponential backoff (`consumerRetryBackoffMs` doubling up to
 *    `consumerRetryBackoffMsMax`), and parked as poison after `consumerAttemptsMax` attempts;
 *  - parked events are listed, and replayed on request (delivered again, with fresh attempts);
 *  - the checkpoint of each partition is the highest sequence with nothing before it outstanding: every event at or
 *    below it is acked, parked, or did not match the filter. Acks and failure counts above the checkpoint are stored
 *    with it, so a restart redelivers only what was not acknowledged, with its attempt count kept.
 *
 * What is durable, and when: the group's document (definition, checkpoint, acks and failures above it, deliveries in
 * flight with their ack deadlines, parked and replaying events, counters) is written with compare-and-swap at every
 * `ack`/`nack`/replay (before it answers) — in a cluster also at every `next` that hands out deliveries — and at
 * least every `consumerCheckpointIntervalMs` while the group moves, and when it closes. Delivery is at least once: an
 * event delivered but not acked when the process stops is still in flight when the group reopens (its consumer may
 * ack it there), and is delivered again once its ack deadline passes (its attempt counted).
 *
 * Memory is bounded: a group holds at most `consumerBufferEventsMax` events between its checkpoint and what it has
 * read (reading stops there), and `consumerParkedEventsMax` parked ones.
 *
 * In a cluster (`ConsumerGroups.layerCluster`) each group is an `effect/cluster` entity (`ConsumerGroupEntity`,
 * id `<tenant>/<name>`): exactly one runner at a time — the holder of the entity's shard — serves the group and keeps
 * its deliveries in flight in memory; every runner's gateway routes the group's operations there. When that runner
 * stops or dies, the shard's next holder reopens the group from NATS KV, in-flight deliveries included, so nothing is
 * handed to a second consumer before its ack deadline. Should two runners ever serve a group at once (a runner frozen
 * past its shard lease), the compare-and-swap before every `next` answers keeps them apart: a delivery is stored
 * before it is handed out, and the runner whose write loses closes its view and reloads the winner's.
 */
import { Cause, Clock, Context, Effect, Exit, Fiber, Layer, Option, Schema, Scope, Semaphore, Stream } from "effect"
import { type ClusterError, Entity, type Sharding } from "effect/cluster"
import { Rpc } from "effect/rpc"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { Errors, Event, SubscriptionsApi } from "@chronos/domain"
import { CheckpointStore, type CheckpointStoreShape } from "./CheckpointStore.ts"
import { Engine, type EngineShape } from "./Engine.ts"
import { StoredEventSchema } from "./PartitionEntity.ts"
import * as GatewayRetry from "./GatewayRetry.ts"
import * as Subscription from "./Subscription.ts"

type StoredEvent = Event.StoredEvent

export interface Filter {
  readonly types?: ReadonlyArray<string> | undefined
  readonly stream?: string | undefined
  readonly streamPrefix?: string | undefined
}

export interface Delivery {
  /** `partition:seq`. */
  readonly deliveryId: string
  readonly attempt: number
  readonly event: StoredEvent
}

export interface ParkedEntry {
  readonly partition: number
  readonly seq: number
  readonly eventId: string
  readonly stream: string
  readonly type: string
  readonly attempts: number
  /** Epoch ms. */
  readonly parkedAt: number
  readonly reason: string
}

/** A filter as stored: absent keys absent (see `normalizeFilter`). */
export interface StoredFilter {
  readonly types?: ReadonlyArray<string>
  readonly stream?: string
  readonly streamPrefix?: string
}

export interface GroupStatus {
  readonly tenant: string
  readonly name: string
  readonly filter: StoredFilter
  readonly createdAt: number
  readonly position: string
  readonly lag: {
    readonly total: number
    readonly partitions: ReadonlyArray<{ partition: number; position: number; watermark: number; lag: number }>
  }
  readonly pending: { ready: number; inFlight: number; retrying: number; replaying: number }
  readonly parked: number
  readonly stats: Stats
}

/** A group's status in its wire form (the HTTP API and the SDK answer the same). */
export const statusToWire = (s: GroupStatus): SubscriptionsApi.ConsumerStatus => ({
  tenant: s.tenant,
  name: s.name,
  filter: {
    ...(s.filter.types === undefined ? {} : { types: s.filter.types }),
    ...(s.filter.stream === undefined ? {} : { stream: s.filter.stream }),
    ...(s.filter.streamPrefix === undefined ? {} : { streamPrefix: s.filter.streamPrefix })
  },
  createdAt: new Date(s.createdAt).toISOString(),
  position: s.position,
  lag: s.lag,
  pending: s.pending,
  parked: s.parked,
  stats: s.stats
})

/** A parked event in its wire form. */
export const parkedToWire = (
  { entry, event }: { readonly entry: ParkedEntry; readonly event: StoredEvent | undefined }
): SubscriptionsApi.ParkedEvent => ({
  deliveryId: `${entry.partition}:${entry.seq}`,
  partition: entry.partition,
  seq: entry.seq,
  eventId: entry.eventId,
  stream: entry.stream,
  type: entry.type,
  attempts: entry.attempts,
  parkedAt: new Date(entry.parkedAt).toISOString(),
  reason: entry.reason,
  ...(event === undefined ? {} : { event: Event.toRecorded(event) })
})

interface Stats {
  delivered: number
  acked: number
  nacked: number
  expired: number
  parked: number
}

type GroupError = SubscriptionsApi.ConsumerGroupNotFound | Errors.InvalidRequest | Errors.Unavailable

export interface ConsumerGroupsShape {
  /** Creates the group, or returns it if it exists with the same filter (else `DefinitionConflict`). */
  readonly create: (
    tenant: string,
    name: string,
    options: Filter & { readonly from?: string | undefined }
  ) => Effect.Effect<
    GroupStatus,
    Errors.InvalidRequest | Errors.LimitExceeded | SubscriptionsApi.DefinitionConflict | Errors.Unavailable
  >
  readonly status: (tenant: string, name: string) => Effect.Effect<GroupStatus, GroupError>
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<string>, Errors.InvalidRequest | Errors.Unavailable>
  /**
   * Up to `max` deliveries (default 100, at most `consumerBatchEventsMax`), waiting up to `waitMs` (default 0, at
   * most `consumerWaitMsMax`) for the first one. An empty batch means nothing was ready in time.
   */
  readonly next: (
    tenant: string,
    name: string,
    options?: { readonly max?: number | undefined; readonly waitMs?: number | undefined }
  ) => Effect.Effect<ReadonlyArray<Delivery>, GroupError | Errors.LimitExceeded>
  /** Completes deliveries (by delivery id or event id); durable when it returns. */
  readonly ack: (
    tenant: string,
    name: string,
    ids: ReadonlyArray<string>
  ) => Effect.Effect<{ readonly acked: number; readonly unknown: ReadonlyArray<string> }, GroupError>
  /** Fails deliveries: each is retried after its backoff (or `delayMs`), or parked when out of attempts. */
  readonly nack: (
    tenant: string,
    name: string,
    ids: ReadonlyArray<string>,
    options?: { readonly delayMs?: number | undefined }
  ) => Effect.Effect<
    { readonly retrying: number; readonly parked: number; readonly unknown: ReadonlyArray<string> },
    GroupError
  >
  /** Parked events, oldest first, with the events themselves. */
  readonly parked: (
    tenant: string,
    name: string,
    options?: { readonly limit?: number | undefined }
  ) => Effect.Effect<
    ReadonlyArray<{ readonly entry: ParkedEntry; readonly event: StoredEvent | undefined }>,
    GroupError | Errors.LimitExceeded
  >
  /** Sends parked events (those named, or all) back for delivery with fresh attempts. */
  readonly replayParked: (
    tenant: string,
    name: string,
    ids?: ReadonlyArray<string> | undefined
  ) => Effect.Effect<{ readonly replayed: number; readonly unknown: ReadonlyArray<string> }, GroupError>
}

export class ConsumerGroups extends Context.Service<ConsumerGroups, ConsumerGroupsShape>()(
  "chronos/engine/ConsumerGroup/ConsumerGroups"
) {
  /**
   * Groups over the `Engine`, stored in the provided `CheckpointStore`, all served by this process (embedded use,
   * and a node on its own); every open group is flushed at release.
   */
  static readonly layer: Layer.Layer<ConsumerGroups, never, Engine | CheckpointStore | ChronosConfig> = Layer.effect(
    ConsumerGroups,
    Effect.gen(function*() {
      return yield* make(yield* Engine, yield* CheckpointStore, yield* ChronosConfig)
    })
  )

  /**
   * Groups in a cluster: each group is served by exactly one runner at a time, the one holding the shard of its
   * `ConsumerGroup` entity (see "In a cluster" in the module doc); this runner's gateway routes every operation of a
   * group there, and registers the entity so that it serves its share of the groups.
   */
  static readonly layerCluster: Layer.Layer<
    ConsumerGroups,
    never,
    Engine | CheckpointStore | ChronosConfig | Sharding.Sharding
  > = Layer.effect(
    ConsumerGroups,
    Effect.gen(function*() {
      const engine = yield* Engine
      const config = yield* ChronosConfig
      const local = yield* make(engine, yield* CheckpointStore, config, { storeDeliveriesBeforeAnswer: true })
      // Released before `local` (whose finalizer flushes what is left): each entity stopping releases its group.
      yield* Layer.build(layerEntity(local))
      return yield* makeRouted(local, engine, config)
    })
  )
}

// ---- the stored document ------------------------------------------------------------------------------------------

interface GroupDocument {
  readonly format: 1
  readonly tenant: string
  readonly name: string
  readonly filter: StoredFilter
  readonly createdAt: number
  /** partition → sequence (see the module doc). */
  readonly checkpoint: Record<string, number>
  /** Acked above the checkpoint: `[partition, seq]`. */
  readonly acked: ReadonlyArray<readonly [number, number]>
  /**
   * Outstanding events above the checkpoint that were delivered before: `[partition, seq, attempts, retryAt]`, and a
   * fifth element, the ack deadline (epoch ms), for a delivery in flight when the document was written (absent in
   * documents written before it existed).
   */
  readonly failures: ReadonlyArray<readonly [number, number, number, number, number?]>
  readonly parked: ReadonlyArray<ParkedEntry>
  /** Replayed parked events not yet acked: `[partition, seq, attempts]`, and the ack deadline when in flight. */
  readonly replay: ReadonlyArray<readonly [number, number, number, number?]>
  readonly stats: Stats
}

const keyOf = (tenant: string, name: string) => ["consumers", tenant, name] as const

const namePattern = /^[A-Za-z0-9][A-Za-z0-9_-]*$/

/** Validates a consumer group's or projection's name: it becomes a file name and a NATS KV key token. */
export const validName = (name: string, config: Pick<ChronosConfigShape, "consumerNameLengthMax">) =>
  namePattern.test(name) && name.length <= config.consumerNameLengthMax
    ? Effect.succeed(name)
    : Effect.fail(
      new Errors.InvalidRequest({
        field: "name",
        message: `a name is letters, digits, '_' and '-', starting with a letter or digit, at most ${config.consumerNameLengthMax} characters`
      })
    )

const sameFilter = (a: Filter, b: Filter) =>
  JSON.stringify([a.types ?? null, a.stream ?? null, a.streamPrefix ?? null]) ===
    JSON.stringify([b.types ?? null, b.stream ?? null, b.streamPrefix ?? null])

/** The filter without absent keys (what is stored and compared). */
export const normalizeFilter = (f: Filter): StoredFilter => ({
  ...(f.types === undefined || f.types.length === 0 ? {} : { types: [...f.types] }),
  ...(f.stream === undefined ? {} : { stream: f.stream }),
  ...(f.streamPrefix === undefined || f.streamPrefix === "" ? {} : { streamPrefix: f.streamPrefix })
})

export const storeUnavailable = (error: { readonly message: string }) =>
  new Errors.Unavailable({ message: `checkpoint store: ${error.message}`, retryable: true })

// ---- one open group -----------------------------------------------------------------------------------------------

interface Entry {
  readonly event: StoredEvent
  readonly id: string
  attempts: number
  state: "ready" | "inflight" | "waiting" | "done"
  deadline: number
  retryAt: number
  /** A replayed parked event: below the checkpoint, tracked in the document's `replay` list. */
  readonly replay: boolean
}

interface PartitionQueue {
  /** Entries read from the log, in sequence order; `head` is the first that may be outstanding. */
  entries: Array<Entry>
  head: number
}

/** A group the process serves: its runtime state over its document. Closed on a write conflict (then reopened). */
interface OpenGroup {
  readonly doc: () => GroupDocument
  readonly next: (max: number, waitMs: number) => Effect.Effect<ReadonlyArray<Delivery>, Errors.Unavailable>
  readonly ack: (ids: ReadonlyArray<string>) => Effect.Effect<{ acked: number; unknown: Array<string> }, Errors.Unavailable>
  readonly nack: (
    ids: ReadonlyArray<string>,
    delayMs: number | undefined
  ) => Effect.Effect<{ retrying: number; parked: number; unknown: Array<string> }, Errors.Unavailable>
  readonly replay: (ids: ReadonlyArray<string> | undefined) => Effect.Effect<{ replayed: number; unknown: Array<string> }, Errors.Unavailable>
  readonly status: Effect.Effect<GroupStatus, Errors.Unavailable>
  readonly flush: Effect.Effect<void, Errors.Unavailable>
  readonly close: Effect.Effect<void>
  /** Set once the group lost its document to another writer: the manager reopens it. */
  readonly closed: () => boolean
}

const openGroup = (
  engine: EngineShape,
  store: CheckpointStoreShape,
  config: ChronosConfigShape,
  loaded: { readonly doc: GroupDocument; readonly revision: number },
  onClosed: () => void,
  options: MakeOptions
) =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const now = () => clock.currentTimeMillisUnsafe()
    const scope = yield* Scope.make()
    const { tenant, name, filter } = loaded.doc
    let revision = loaded.revision
    let closed = false

    // --- state ---------------------------------------------------------------------------------------------------
    const checkpoint = new Map<number, number>(Object.entries(loaded.doc.checkpoint).map(([p, s]) => [Number(p), s]))
    /** How far the reader has examined each partition (≥ checkpoint). */
    const cursor = new Map(checkpoint)
    const queues = new Map<number, PartitionQueue>()
    /** Acks and failures stored above the checkpoint for events not read yet (consumed as the reader passes). */
    const storedAcks = new Set(loaded.doc.acked.map(([p, s]) => `${p}:${s}`))
    const storedFailures = new Map(
      loaded.doc.failures.map(([p, s, attempts, retryAt, deadline]) => [`${p}:${s}`, { attempts, retryAt, deadline: deadline ?? 0 }])
    )
    let parked: Array<ParkedEntry> = [...loaded.doc.parked]
    const stats: Stats = { ...loaded.doc.stats }
    /** Every entry that is not done, by delivery id and by event id. */
    const open = new Map<string, Entry>()
    const byEventId = new Map<string, Entry>()
    const ready: Array<Entry> = []
    let readyHead = 0
    const replayReady: Array<Entry> = []
    /** Entries read from the log and not done (bounded by `consumerBufferEventsMax`). */
    let buffered = 0
    /** Bumped by every change that the document must reflect; `persisted` is the last one written. */
    let version = 0
    let persisted = 0

    // Waiters for "something changed" (a `next` waiting for deliveries, the reader waiting for room).
    let waiters: Array<() => void> = []
    const notify = () => {
      const ws = waiters
      waiters = []
      for (const w of ws) w()
    }
    const changed = (timeoutMs: number) =>
      Effect.callback<void>((resume) => {
        const w = () => resume(Effect.void)
        waiters.push(w)
        return Effect.sync(() => {
          waiters = waiters.filter((x) => x !== w)
        })
      }).pipe(Effect.timeoutOrElse({ duration: Math.max(0, timeoutMs), orElse: () => Effect.void }))

    const backoff = (attempts: number) =>
      Math.min(config.consumerRetryBackoffMs * 2 ** Math.max(0, attempts - 1), config.consumerRetryBackoffMsMax)

    const track = (entry: Entry) => {
      open.set(entry.id, entry)
      byEventId.set(entry.event.eventId, entry)
    }
    const untrack = (entry: Entry) => {
      open.delete(entry.id)
      if (byEventId.get(entry.event.eventId) === entry) byEventId.delete(entry.event.eventId)
    }

    /** Moves partition `p`'s checkpoint past every completed entry (and to the cursor when nothing is outstanding). */
    const advance = (p: number) => {
      const q = queues.get(p)
      if (q !== undefined) {
        while (q.head < q.entries.length && q.entries[q.head]!.state === "done") q.head++
        if (q.head > 1024 && q.head * 2 > q.entries.length) {
          q.entries = q.entries.slice(q.head)
          q.head = 0
        }
      }
      const first = q === undefined ? undefined : q.entries[q.head]
      const to = first === undefined ? (cursor.get(p) ?? 0) : first.event.seq - 1
      if (to !== (checkpoint.get(p) ?? 0)) {
        checkpoint.set(p, to)
        version++
      }
    }

    const complete = (entry: Entry) => {
      entry.state = "done"
      untrack(entry)
      if (entry.replay) {
        const i = replayReady.indexOf(entry)
        if (i >= 0) replayReady.splice(i, 1)
      } else {
        buffered--
        advance(entry.event.partition)
      }
      version++
    }

    const park = (entry: Entry, reason: string) => {
      parked.push({
        partition: entry.event.partition,
        seq: entry.event.seq,
        eventId: entry.event.eventId,
        stream: entry.event.stream,
        type: entry.event.type,
        attempts: entry.attempts,
        parkedAt: now(),
        reason
      })
      stats.parked++
      complete(entry)
    }

    /** A failed attempt: retry after the backoff, or park when out of attempts (and there is room). */
    const fail = (entry: Entry, reason: string, delayMs: number | undefined): "retrying" | "parked" => {
      version++
      if (entry.attempts >= config.consumerAttemptsMax && parked.length < config.consumerParkedEventsMax) {
        park(entry, reason)
        return "parked"
      }
      entry.state = "waiting"
      entry.retryAt = now() + (delayMs ?? backoff(entry.attempts))
      return "retrying"
    }

    /** Ack timeouts and due retries. */
    const sweep = () => {
      const t = now()
      for (const entry of open.values()) {
        if (entry.state === "inflight" && entry.deadline <= t) {
          stats.expired++
          fail(entry, `not acknowledged within ${config.consumerAckTimeoutMs} ms (consumerAckTimeoutMs)`, undefined)
        }
        if (entry.state === "waiting" && entry.retryAt <= t) {
          entry.state = "ready"
          if (entry.replay) replayReady.push(entry)
          else ready.push(entry)
        }
      }
    }

    /** When the next timer-driven change is due (an ack deadline or a retry), for `next` to wake up. */
    const nextDue = () => {
      let due = Infinity
      for (const entry of open.values()) {
        if (entry.state === "inflight") due = Math.min(due, entry.deadline)
        else if (entry.state === "waiting") due = Math.min(due, entry.retryAt)
      }
      return due
    }

    const take = (max: number): Array<Delivery> => {
      const out: Array<Delivery> = []
      const t = now()
      const deliver = (entry: Entry) => {
        entry.state = "inflight"
        entry.attempts++
        entry.deadline = t + config.consumerAckTimeoutMs
        stats.delivered++
        out.push({ deliveryId: entry.id, attempt: entry.attempts, event: entry.event })
      }
      while (out.length < max && replayReady.length > 0) {
        const entry = replayReady.shift()!
        if (entry.state === "ready") deliver(entry)
      }
      while (out.length < max && readyHead < ready.length) {
        const entry = ready[readyHead++]!
        if (entry.state === "ready") deliver(entry)
      }
      if (readyHead > 1024 && readyHead * 2 > ready.length) {
        ready.splice(0, readyHead)
        readyHead = 0
      }
      if (out.length > 0) version++
      return out
    }

    // --- the document --------------------------------------------------------------------------------------------
    const document = (): GroupDocument => {
      const acked: Array<readonly [number, number]> = []
      const failures: Array<readonly [number, number, number, number, number?]> = []
      for (const [p, q] of queues) {
        for (let i = q.head; i < q.entries.length; i++) {
          const e = q.entries[i]!
          if (e.state === "done") acked.push([p, e.event.seq])
          else if (e.state === "inflight") failures.push([p, e.event.seq, e.attempts, 0, e.deadline])
          else if (e.attempts > 0) failures.push([p, e.event.seq, e.attempts, e.state === "waiting" ? e.retryAt : 0])
        }
      }
      // Stored acks and failures the reader has not reached yet stay stored.
      for (const id of storedAcks) {
        const [p, s] = id.split(":").map(Number) as [number, number]
        acked.push([p, s])
      }
      for (const [id, f] of storedFailures) {
        const [p, s] = id.split(":").map(Number) as [number, number]
        failures.push(f.deadline > 0 ? [p, s, f.attempts, f.retryAt, f.deadline] : [p, s, f.attempts, f.retryAt])
      }
      const replay: Array<readonly [number, number, number, number?]> = []
      for (const entry of open.values()) {
        if (entry.replay) {
          replay.push(
            entry.state === "inflight"
              ? [entry.event.partition, entry.event.seq, entry.attempts, entry.deadline]
              : [entry.event.partition, entry.event.seq, entry.attempts]
          )
        }
      }
      return {
        format: 1,
        tenant,
        name,
        filter,
        createdAt: loaded.doc.createdAt,
        checkpoint: Object.fromEntries([...checkpoint].filter(([, s]) => s > 0).map(([p, s]) => [String(p), s])),
        acked,
        failures,
        parked,
        replay,
        stats: { ...stats }
      }
    }

    const writeLock = Semaphore.makeUnsafe(1)
    /**
     * Writes the document if it changed since the last write. Concurrent callers share writes: whoever gets the lock
     * writes everything changed so far, so a burst of acks costs a few writes, not one each.
     */
    const flush: Effect.Effect<void, Errors.Unavailable> = Effect.suspend(() => {
      const target = version
      return Semaphore.withPermit(writeLock)(Effect.suspend(() => {
        if (persisted >= target || closed) return Effect.void
        const at = version
        return store.put(keyOf(tenant, name), document(), revision).pipe(
          Effect.map((r) => {
            revision = r
            persisted = at
          }),
          // A put that lands must have its revision recorded: never interrupt between the two.
          Effect.uninterruptible,
          Effect.catchTags({
            CheckpointConflict: () =>
              // Another process wrote the group: this view is stale. Close it; the next request reopens it.
              Effect.andThen(
                close,
                Effect.fail(new Errors.Unavailable({ message: `consumer group ${name} was taken over by another process; retry`, retryable: true }))
              ),
            CheckpointStoreError: (e) => Effect.fail(storeUnavailable(e)),
            LimitExceeded: (e) => Effect.die(new Error(`consumer group ${name}: ${e.message}`))
          })
        )
      }))
    })

    // --- the reader ----------------------------------------------------------------------------------------------
    const stepEventsMax = Math.max(1, Math.min(config.subscriptionPageEventsMax, config.consumerBufferEventsMax))

    const onPage = (page: Subscription.Page) => {
      const t = now()
      for (const event of page.events) {
        const id = `${event.partition}:${event.seq}`
        if (storedAcks.delete(id)) continue
        const failure = storedFailures.get(id)
        storedFailures.delete(id)
        // A delivery that was in flight when the document was written (by this process before a restart, or by the
        // runner that served the group before it died or handed it over) is still in flight: its consumer may be
        // working on it and may ack it here. It is handed to nobody else before its ack deadline (then it expires as
        // any delivery does, an attempt counted).
        const inflight = failure !== undefined && failure.deadline > 0
        const entry: Entry = {
          event,
          id,
          attempts: failure?.attempts ?? 0,
          state: inflight ? "inflight" : failure !== undefined && failure.retryAt > t ? "waiting" : "ready",
          deadline: inflight ? failure.deadline : 0,
          retryAt: failure?.retryAt ?? 0,
          replay: false
        }
        let q = queues.get(event.partition)
        if (q === undefined) queues.set(event.partition, q = { entries: [], head: 0 })
        q.entries.push(entry)
        track(entry)
        buffered++
        if (entry.state === "ready") ready.push(entry)
      }
      for (const [p, s] of page.positions) if (s > (cursor.get(p) ?? 0)) cursor.set(p, s)
      for (const p of page.positions.keys()) advance(p)
      // Stored acks and failures the reader has passed without meeting (no longer in the subscription): dropped, so
      // that `restored` below becomes true.
      if (storedAcks.size > 0 || storedFailures.size > 0) {
        const passed = (id: string) => {
          const [p, s] = id.split(":").map(Number) as [number, number]
          return s <= (cursor.get(p) ?? 0)
        }
        for (const id of storedAcks) if (passed(id)) storedAcks.delete(id)
        for (const id of storedFailures.keys()) if (passed(id)) storedFailures.delete(id)
      }
      notify()
    }

    const waitForRoom: Effect.Effect<void> = Effect.suspend(() =>
      buffered + stepEventsMax <= config.consumerBufferEventsMax || closed
        ? Effect.void
        : Effect.andThen(changed(config.subscriptionIdleWaitMs), waitForRoom)
    )

    const reader = Effect.gen(function*() {
      while (!closed) {
        const from = Subscription.formatPositions(cursor)
        const subscription = yield* engine.subscribePages(tenant, {
          ...filter,
          from: from === "" ? "start" : from,
          stepEventsMax
        }).pipe(Effect.orDie)
        const exit = yield* subscription.pages.pipe(
          Stream.runForEach((page) => Effect.andThen(Effect.sync(() => onPage(page)), waitForRoom)),
          Effect.exit
        )
        if (Exit.isFailure(exit)) {
          yield* Effect.logWarning(`consumer group ${tenant}/${name}: reading stopped, resuming`, exit.cause)
          yield* Effect.sleep(config.subscriptionIdleWaitMs)
        }
      }
    })

    // Replayed parked events from the document: read them again (they are below the checkpoint).
    const readEvent = (p: number, seq: number) =>
      Effect.map(
        engine.readPartition(tenant, p, { fromSeq: seq, limit: 1 }).pipe(
          Effect.catchTags({
            InvalidRequest: (e) => Effect.die(new Error(e.message)),
            LimitExceeded: (e) => Effect.die(new Error(e.message))
          })
        ),
        (events) => events[0]?.seq === seq ? events[0] : undefined
      )

    /** A replayed event, ready — or still in flight until `deadline` (from the document: see `onPage`). */
    const enqueueReplay = (event: StoredEvent, attempts: number, deadline = 0) => {
      const entry: Entry = {
        event,
        id: `${event.partition}:${event.seq}`,
        attempts,
        state: deadline > 0 ? "inflight" : "ready",
        deadline,
        retryAt: 0,
        replay: true
      }
      track(entry)
      // An entry in flight joins `replayReady` when it expires (`sweep`).
      if (entry.state === "ready") replayReady.push(entry)
    }

    for (const [p, seq, attempts, deadline] of loaded.doc.replay) {
      const event = yield* readEvent(p, seq)
      if (event !== undefined) enqueueReplay(event, attempts, deadline ?? 0)
    }

    const readerFiber = yield* Effect.forkIn(reader, scope)
    const flusher = yield* Effect.forkIn(
      Effect.forever(Effect.andThen(
        Effect.sleep(Math.max(10, config.consumerCheckpointIntervalMs)),
        Effect.catch(flush, (e) => Effect.logWarning(`consumer group ${tenant}/${name}: checkpoint not written`, e.message))
      )),
      scope
    )

    const close: Effect.Effect<void> = Effect.suspend(() => {
      if (closed) return Effect.void
      closed = true
      onClosed()
      notify()
      return Effect.andThen(
        Effect.all([Fiber.interrupt(readerFiber), Fiber.interrupt(flusher)], { discard: true }),
        Scope.close(scope, Exit.void)
      )
    })

    const unavailableIfClosed = () =>
      closed
        ? Effect.fail(new Errors.Unavailable({ message: `consumer group ${name} is reopening; retry`, retryable: true }))
        : Effect.void

    const resolve = (id: string): Entry | undefined => open.get(id) ?? byEventId.get(id)

    /**
     * Waits (at most `consumerRestoreWaitMs`) until every id resolves or the reader has re-read every delivery the
     * document had in flight or failed: a group that just opened — after a restart or a failover — knows those only
     * once its reader reaches them, and an ack of one of them must complete it, not be answered `unknown`.
     */
    const awaitRestored = (ids: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const until = now() + config.consumerRestoreWaitMs
        while (!closed && storedFailures.size > 0 && ids.some((id) => resolve(id) === undefined)) {
          const t = now()
          if (t >= until) return
          yield* changed(until - t)
        }
      })

    const group: OpenGroup = {
      doc: document,
      closed: () => closed,
      flush,
      close,
      next: (max, waitMs) =>
        Effect.gen(function*() {
          const until = now() + waitMs
          while (true) {
            yield* unavailableIfClosed()
            sweep()
            const out = take(max)
            if (out.length > 0) {
              // Room for the reader.
              notify()
              // In a cluster the deliveries (with their ack deadlines) are stored before anyone gets them: whoever
              // serves the group next — after a crash, a handoff, or a runner that wrote the document meanwhile
              // (compare-and-swap, then this view closes and the caller retries) — hands none of them out again
              // before its deadline. Closed meanwhile: the document may not hold them, so nobody gets them (they
              // expire if it does). Elsewhere they are stored within `consumerCheckpointIntervalMs`, and at close.
              if (options.storeDeliveriesBeforeAnswer) {
                yield* flush
                yield* unavailableIfClosed()
              }
              return out
            }
            const t = now()
            if (t >= until) return out
            yield* changed(Math.min(until, nextDue()) - t)
          }
        }),
      ack: (ids) =>
        Effect.gen(function*() {
          yield* awaitRestored(ids)
          yield* unavailableIfClosed()
          let acked = 0
          const unknown: Array<string> = []
          for (const id of ids) {
            const entry = resolve(id)
            if (entry === undefined || entry.state === "done") unknown.push(id)
            else {
              complete(entry)
              stats.acked++
              acked++
            }
          }
          if (acked > 0) notify()
          yield* flush
          return { acked, unknown }
        }),
      nack: (ids, delayMs) =>
        Effect.gen(function*() {
          yield* awaitRestored(ids)
          yield* unavailableIfClosed()
          let retrying = 0
          let parkedNow = 0
          const unknown: Array<string> = []
          for (const id of ids) {
            const entry = resolve(id)
            if (entry === undefined || entry.state === "done" || entry.attempts === 0) unknown.push(id)
            else {
              stats.nacked++
              if (fail(entry, "nacked by the consumer", delayMs) === "parked") parkedNow++
              else retrying++
            }
          }
          notify()
          yield* flush
          return { retrying, parked: parkedNow, unknown }
        }),
      replay: (ids) =>
        Effect.gen(function*() {
          yield* unavailableIfClosed()
          const wanted = ids === undefined ? undefined : new Set(ids)
          const chosen = parked.filter((e) =>
            wanted === undefined || wanted.has(`${e.partition}:${e.seq}`) || wanted.has(e.eventId)
          )
          const unknown = wanted === undefined
            ? []
            : [...wanted].filter((id) => !chosen.some((e) => `${e.partition}:${e.seq}` === id || e.eventId === id))
          let replayed = 0
          for (const entry of chosen) {
            const id = `${entry.partition}:${entry.seq}`
            if (open.has(id)) continue // being delivered already
            const event = yield* readEvent(entry.partition, entry.seq)
            if (event !== undefined) {
              enqueueReplay(event, 0)
              replayed++
            }
          }
          const replayedSet = new Set(chosen)
          parked = parked.filter((e) => !replayedSet.has(e))
          version++
          notify()
          yield* flush
          return { replayed, unknown }
        }),
      status: Effect.gen(function*() {
        const partitions = yield* engine.partitions
        const subscribed = filter.stream === undefined
          ? partitions.map((s) => s.partition)
          : [engine.partitionOf(tenant, filter.stream)]
        const rows = subscribed.map((p) => {
          const watermark = partitions[p]?.watermark ?? 0
          const position = checkpoint.get(p) ?? 0
          return { partition: p, position, watermark, lag: Math.max(0, watermark - position) }
        })
        let readyCount = 0
        let inFlight = 0
        let retrying = 0
        let replaying = 0
        for (const entry of open.values()) {
          if (entry.replay) replaying++
          else if (entry.state === "ready") readyCount++
          else if (entry.state === "inflight") inFlight++
          else if (entry.state === "waiting") retrying++
        }
        return {
          tenant,
          name,
          filter,
          createdAt: loaded.doc.createdAt,
          position: Subscription.formatPositions(checkpoint),
          lag: { total: rows.reduce((n, r) => n + r.lag, 0), partitions: rows },
          pending: { ready: readyCount, inFlight, retrying, replaying },
          parked: parked.length,
          stats: { ...stats }
        }
      })
    }
    return group
  })

// ---- the manager --------------------------------------------------------------------------------------------------

/** The groups this process serves itself, with what the cluster entity needs besides the public operations. */
export interface LocalGroups extends ConsumerGroupsShape {
  /** Stores a new group's document, or checks the stored one's filter; opens nothing. */
  readonly define: (
    tenant: string,
    name: string,
    options: Filter & { readonly from?: string | undefined }
  ) => Effect.Effect<
    void,
    Errors.InvalidRequest | Errors.LimitExceeded | SubscriptionsApi.DefinitionConflict | Errors.Unavailable
  >
  /** Writes and closes the group if this process has it open: it is about to be served elsewhere (or reopened). */
  readonly release: (tenant: string, name: string) => Effect.Effect<void>
}

export interface MakeOptions {
  /**
   * Whether `next` stores its deliveries before it answers (one more checkpoint write per `next`; measured on the
   * file store: about half the next+ack rate of a lone consumer). Needed where another process may take the group
   * over after a crash (a cluster); otherwise a crash forgets up to `consumerCheckpointIntervalMs` of deliveries,
   * which are then handed out again at once. Default: false.
   */
  readonly storeDeliveriesBeforeAnswer?: boolean | undefined
}

export const make = Effect.fnUntraced(function*(
  engine: EngineShape,
  store: CheckpointStoreShape,
  config: ChronosConfigShape,
  options: MakeOptions = {}
): Effect.fn.Return<LocalGroups, never, Scope.Scope> {
  const clock = yield* Clock.Clock
  const services = yield* Effect.context<never>()
  const groups = new Map<string, OpenGroup>()
  /** Opening a group is serialized per process: two requests must not open two runtimes of one group. */
  const openLock = Semaphore.makeUnsafe(1)

  yield* Effect.addFinalizer(() =>
    Effect.forEach([...groups.values()], (g) =>
      Effect.andThen(Effect.ignore(g.flush), g.close), { discard: true, concurrency: "unbounded" })
  )

  /** Validates the tenant id (as a subscription would; nothing is read). */
  const validTenant = (tenant: string) => Effect.asVoid(engine.subscribePages(tenant, {}))

  const load = (tenant: string, name: string) =>
    Effect.gen(function*() {
      yield* validName(name, config)
      yield* validTenant(tenant)
      const key = `${tenant}/${name}`
      const existing = groups.get(key)
      if (existing !== undefined && !existing.closed()) return existing
      return yield* Semaphore.withPermit(openLock)(Effect.gen(function*() {
        const again = groups.get(key)
        if (again !== undefined && !again.closed()) return again
        if (groups.size >= config.consumerGroupsMax) {
          return yield* new Errors.Unavailable({
            message: `this process serves ${groups.size} consumer groups already (consumerGroupsMax)`,
            retryable: false
          })
        }
        const stored = yield* store.get(keyOf(tenant, name)).pipe(Effect.mapError(storeUnavailable))
        if (stored === undefined) return yield* new SubscriptionsApi.ConsumerGroupNotFound({ tenant, name })
        const group = yield* openGroup(
          engine,
          store,
          config,
          { doc: stored.value as GroupDocument, revision: stored.revision },
          () => {
            if (groups.get(key) === group) groups.delete(key)
          },
          options
        ).pipe(Effect.provideContext(services))
        groups.set(key, group)
        return group
      }))
    })

  const define: LocalGroups["define"] = (tenant, name, options) =>
    Effect.gen(function*() {
      yield* validName(name, config)
      const filter = normalizeFilter(options)
      // Validates tenant, filter and `from` exactly as a subscription would (nothing is read yet).
      const { partitions } = yield* engine.subscribePages(tenant, { ...filter, from: options.from })
      const stored = yield* store.get(keyOf(tenant, name)).pipe(Effect.mapError(storeUnavailable))
      if (stored !== undefined) {
        const doc = stored.value as GroupDocument
        if (!sameFilter(doc.filter, filter)) {
          return yield* new SubscriptionsApi.DefinitionConflict({
            kind: "consumer",
            name,
            message: `consumer group ${name} exists with filter ${JSON.stringify(doc.filter)}`
          })
        }
        return
      }
      let checkpoint: Record<string, number> = {}
      if (options.from === "now") {
        const all = yield* engine.partitions
        checkpoint = Object.fromEntries(partitions.map((p) => [String(p), all[p]?.watermark ?? 0]).filter(([, s]) => (s as number) > 0))
      } else if (options.from !== undefined && options.from !== "start") {
        const positions = Option.getOrElse(Subscription.parseFrom(options.from), () => new Map<number, number>())
        if (positions !== "now") {
          checkpoint = Object.fromEntries([...positions].filter(([p, s]) => partitions.includes(p) && s > 0).map(([p, s]) => [String(p), s]))
        }
      }
      const doc: GroupDocument = {
        format: 1,
        tenant,
        name,
        filter,
        createdAt: clock.currentTimeMillisUnsafe(),
        checkpoint,
        acked: [],
        failures: [],
        parked: [],
        replay: [],
        stats: { delivered: 0, acked: 0, nacked: 0, expired: 0, parked: 0 }
      }
      yield* store.put(keyOf(tenant, name), doc, 0).pipe(
        Effect.catchTags({
          // Created concurrently: the other request's definition wins if it is the same; compared below.
          CheckpointConflict: () => Effect.void,
          CheckpointStoreError: (e) => Effect.fail(storeUnavailable(e)),
          LimitExceeded: (e) => Effect.fail(e)
        })
      )
      const now = yield* store.get(keyOf(tenant, name)).pipe(Effect.mapError(storeUnavailable))
      if (now !== undefined && !sameFilter((now.value as GroupDocument).filter, filter)) {
        return yield* new SubscriptionsApi.DefinitionConflict({
          kind: "consumer",
          name,
          message: `consumer group ${name} was just created with another filter`
        })
      }
    })

  const create: ConsumerGroupsShape["create"] = (tenant, name, options) =>
    Effect.andThen(
      define(tenant, name, options),
      status(tenant, name).pipe(
        Effect.catchTag("ConsumerGroupNotFound", () => Effect.die(new Error(`consumer group ${name} vanished`)))
      )
    )

  // Under the open lock: a group being opened while its entity stops must not stay open after the release.
  const release: LocalGroups["release"] = (tenant, name) =>
    Semaphore.withPermit(openLock)(Effect.suspend(() => {
      const group = groups.get(`${tenant}/${name}`)
      return group === undefined ? Effect.void : Effect.andThen(
        Effect.catch(group.flush, (e) => Effect.logWarning(`consumer group ${tenant}/${name}: not written at release`, e.message)),
        group.close
      )
    }))

  const status: ConsumerGroupsShape["status"] = (tenant, name) =>
    Effect.flatMap(load(tenant, name), (g) => g.status)

  const list: ConsumerGroupsShape["list"] = (tenant) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      const keys = yield* store.list(["consumers", tenant]).pipe(Effect.mapError(storeUnavailable))
      return keys.filter((k) => k.length === 3).map((k) => k[2]!).sort()
    })

  const next: ConsumerGroupsShape["next"] = (tenant, name, options = {}) =>
    Effect.gen(function*() {
      const max = options.max ?? Math.min(100, config.consumerBatchEventsMax)
      const waitMs = options.waitMs ?? 0
      if (!Number.isInteger(max) || max < 1) {
        return yield* new Errors.InvalidRequest({ field: "max", message: "max must be a positive integer" })
      }
      if (max > config.consumerBatchEventsMax) {
        return yield* new Errors.LimitExceeded({
          limit: "consumerBatchEventsMax",
          max: config.consumerBatchEventsMax,
          actual: max,
          message: `one next returns at most ${config.consumerBatchEventsMax} deliveries`
        })
      }
      if (!Number.isInteger(waitMs) || waitMs < 0) {
        return yield* new Errors.InvalidRequest({ field: "waitMs", message: "waitMs must be a non-negative integer" })
      }
      if (waitMs > config.consumerWaitMsMax) {
        return yield* new Errors.LimitExceeded({
          limit: "consumerWaitMsMax",
          max: config.consumerWaitMsMax,
          actual: waitMs,
          message: `one next waits at most ${config.consumerWaitMsMax} ms`
        })
      }
      const group = yield* load(tenant, name)
      return yield* group.next(max, waitMs)
    })

  const ack: ConsumerGroupsShape["ack"] = (tenant, name, ids) =>
    Effect.flatMap(load(tenant, name), (g) => g.ack(ids))

  const nack: ConsumerGroupsShape["nack"] = (tenant, name, ids, options = {}) =>
    Effect.gen(function*() {
      if (options.delayMs !== undefined && (!Number.isInteger(options.delayMs) || options.delayMs < 0)) {
        return yield* new Errors.InvalidRequest({ field: "delayMs", message: "delayMs must be a non-negative integer" })
      }
      const group = yield* load(tenant, name)
      return yield* group.nack(ids, options.delayMs)
    })

  const parked: ConsumerGroupsShape["parked"] = (tenant, name, options = {}) =>
    Effect.gen(function*() {
      const limit = options.limit ?? Math.min(100, config.readEventsMax)
      if (!Number.isInteger(limit) || limit < 1) {
        return yield* new Errors.InvalidRequest({ field: "limit", message: "limit must be a positive integer" })
      }
      if (limit > config.readEventsMax) {
        return yield* new Errors.LimitExceeded({
          limit: "readEventsMax",
          max: config.readEventsMax,
          actual: limit,
          message: `a read returns at most ${config.readEventsMax} events`
        })
      }
      const group = yield* load(tenant, name)
      const entries = group.doc().parked.slice(0, limit)
      return yield* Effect.forEach(entries, (entry) =>
        Effect.map(
          engine.readPartition(tenant, entry.partition, { fromSeq: entry.seq, limit: 1 }).pipe(
            Effect.catchTags({
              InvalidRequest: (e) => Effect.die(new Error(e.message)),
              LimitExceeded: (e) => Effect.die(new Error(e.message))
            })
          ),
          (events) => ({ entry, event: events[0]?.seq === entry.seq ? events[0] : undefined })
        ), { concurrency: 16 })
    })

  const replayParked: ConsumerGroupsShape["replayParked"] = (tenant, name, ids) =>
    Effect.flatMap(load(tenant, name), (g) => g.replay(ids))

  return { create, status, list, next, ack, nack, parked, replayParked, define, release }
})

// ---- in a cluster -------------------------------------------------------------------------------------------------

const DeliverySchema = Schema.Struct({ deliveryId: Schema.String, attempt: Schema.Int, event: StoredEventSchema })

const ParkedEntrySchema = Schema.Struct({
  partition: Schema.Int,
  seq: Schema.Int,
  eventId: Schema.String,
  stream: Schema.String,
  type: Schema.String,
  attempts: Schema.Int,
  parkedAt: Schema.Number,
  reason: Schema.String
})

const GroupStatusSchema = Schema.Struct({
  tenant: Schema.String,
  name: Schema.String,
  filter: Schema.Struct({
    types: Schema.optionalKey(Schema.Array(Schema.String)),
    stream: Schema.optionalKey(Schema.String),
    streamPrefix: Schema.optionalKey(Schema.String)
  }),
  createdAt: Schema.Number,
  position: Schema.String,
  lag: Schema.Struct({
    total: Schema.Number,
    partitions: Schema.Array(Schema.Struct({
      partition: Schema.Int,
      position: Schema.Number,
      watermark: Schema.Number,
      lag: Schema.Number
    }))
  }),
  pending: Schema.Struct({ ready: Schema.Int, inFlight: Schema.Int, retrying: Schema.Int, replaying: Schema.Int }),
  parked: Schema.Int,
  stats: Schema.Struct({
    delivered: Schema.Int,
    acked: Schema.Int,
    nacked: Schema.Int,
    expired: Schema.Int,
    parked: Schema.Int
  })
})

const groupErrors = Schema.Union([SubscriptionsApi.ConsumerGroupNotFound, Errors.InvalidRequest, Errors.Unavailable])
const Ids = Schema.Array(Schema.String)

export const Next = Rpc.make("Next", {
  payload: { max: Schema.optionalKey(Schema.Int), waitMs: Schema.optionalKey(Schema.Int) },
  success: Schema.Array(DeliverySchema),
  error: Schema.Union([SubscriptionsApi.ConsumerGroupNotFound, Errors.InvalidRequest, Errors.Unavailable, Errors.LimitExceeded])
})

export const Ack = Rpc.make("Ack", {
  payload: { ids: Ids },
  success: Schema.Struct({ acked: Schema.Int, unknown: Ids }),
  error: groupErrors
})

export const Nack = Rpc.make("Nack", {
  payload: { ids: Ids, delayMs: Schema.optionalKey(Schema.Int) },
  success: Schema.Struct({ retrying: Schema.Int, parked: Schema.Int, unknown: Ids }),
  error: groupErrors
})

export const Parked = Rpc.make("Parked", {
  payload: { limit: Schema.optionalKey(Schema.Int) },
  // `event` is absent when the parked event is no longer readable (retention).
  success: Schema.Array(Schema.Struct({ entry: ParkedEntrySchema, event: Schema.optionalKey(StoredEventSchema) })),
  error: Schema.Union([SubscriptionsApi.ConsumerGroupNotFound, Errors.InvalidRequest, Errors.Unavailable, Errors.LimitExceeded])
})

export const Replay = Rpc.make("Replay", {
  payload: { ids: Schema.optionalKey(Ids) },
  success: Schema.Struct({ replayed: Schema.Int, unknown: Ids }),
  error: groupErrors
})

export const Status = Rpc.make("Status", { success: GroupStatusSchema, error: groupErrors })

/**
 * A consumer group as an `effect/cluster` entity: entity type "ConsumerGroup", entity id `<tenant>/<name>` (a tenant
 * id and a group name never contain `/`). Its shard (the entity id's hash, in the default shard group, like the
 * partitions: every runner runs the same code, so `shardsPerGroup` is the one `ClusterConfig` records) decides which
 * runner serves the group.
 */
export const ConsumerGroupEntity = Entity.make("ConsumerGroup", [Next, Ack, Nack, Parked, Replay, Status])

const entityIdOf = (tenant: string, name: string) => `${tenant}/${name}`

/**
 * Registers the `ConsumerGroup` entity on this runner: an activation serves its group from `local` (opened on the
 * first call, from the stored document), and releases it when it stops — its shard moving to another runner, the
 * runner shutting down, or the entity idle past `entityMaxIdleTime` (reopened on the next call). Releasing writes the
 * deliveries in flight with their ack deadlines, so the next server of the group hands none of them out early.
 */
const layerEntity = (local: LocalGroups) =>
  ConsumerGroupEntity.toLayer(
    Effect.gen(function*() {
      const address = yield* Entity.CurrentAddress
      const runner = yield* Entity.CurrentRunnerAddress
      const slash = address.entityId.indexOf("/")
      if (slash <= 0) return yield* Effect.die(new Error(`ConsumerGroup entity id ${address.entityId} is not <tenant>/<name>`))
      const tenant = address.entityId.slice(0, slash)
      const name = address.entityId.slice(slash + 1)
      yield* Effect.addFinalizer(() => local.release(tenant, name))
      yield* Effect.logInfo(`consumer group ${tenant}/${name} active on ${runner.host}:${runner.port}`)
      return ConsumerGroupEntity.of({
        Next: ({ payload }) => local.next(tenant, name, payload),
        Ack: ({ payload }) => local.ack(tenant, name, payload.ids),
        Nack: ({ payload }) => local.nack(tenant, name, payload.ids, payload),
        Parked: ({ payload }) =>
          Effect.map(
            local.parked(tenant, name, payload),
            (rows) => rows.map(({ entry, event }) => event === undefined ? { entry } : { entry, event })
          ),
        Replay: ({ payload }) => local.replayParked(tenant, name, payload.ids),
        Status: () => local.status(tenant, name)
      })
    }),
    // A long-polling `next` must not hold the acks of the same group.
    { concurrency: "unbounded" }
  )

/** The cluster's own failures of a call (the entity's runner gone, its mailbox full, …): retried. */
type ClusterFailure =
  | ClusterError.MailboxFull
  | ClusterError.AlreadyProcessingMessage
  | ClusterError.PersistenceError
  | ClusterError.EntityNotAssignedToRunner

const clusterFailureTags: ReadonlySet<string> = new Set([
  "MailboxFull",
  "AlreadyProcessingMessage",
  "PersistenceError",
  "EntityNotAssignedToRunner"
])

const isClusterFailure = (error: { readonly _tag: string }): error is ClusterFailure => clusterFailureTags.has(error._tag)

const clusterUnavailable = (error: ClusterFailure) =>
  new Errors.Unavailable({ message: `consumer group unreachable: ${error._tag}`, retryable: true })

/**
 * The gateway side: every operation of a group goes to its entity through the entity client (in-process when this
 * runner holds its shard), with the retry rules of the partitions' gateway (`GatewayRetry`): an attempt is cut after
 * `remoteCallTimeoutMs` (plus the wait of a long-polling `next`), a retryable `Unavailable`, a cluster failure or an
 * interruption (the entity stopped while it handled the call: its shard moving) is retried every
 * `appendRetryIntervalMs` within `readTimeoutMs` (plus the wait). Retrying is safe: a `next` whose answer was lost
 * leaves its deliveries in flight until their ack deadline (then they are delivered again), and a repeated ack or
 * nack finds its deliveries done (`unknown`). `create` and `list` work on the stored documents from any runner.
 */
const makeRouted = (local: LocalGroups, engine: EngineShape, config: ChronosConfigShape) =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const now = () => clock.currentTimeMillisUnsafe()
    const clientFor = yield* ConsumerGroupEntity.client
    type Client = ReturnType<typeof clientFor>

    const routed = <A, E extends { readonly _tag: string }>(
      tenant: string,
      name: string,
      what: string,
      waitMs: number,
      call: (client: Client, waitLeftMs: number) => Effect.Effect<A, E | ClusterFailure>
    ): Effect.Effect<A, E | Errors.Unavailable | Errors.InvalidRequest> =>
      Effect.gen(function*() {
        // Checked here: a bad name must not activate an entity anywhere.
        yield* validName(name, config)
        yield* engine.subscribePages(tenant, {})
        const client = clientFor(entityIdOf(tenant, name))
        const until = now() + waitMs
        const deadline = until + config.readTimeoutMs
        const attempt = (): Effect.Effect<A, E | Errors.Unavailable> => {
          const waitLeftMs = Math.max(0, until - now())
          return GatewayRetry.cutAfter(
            Effect.mapError(
              call(client, waitLeftMs),
              (e): E | Errors.Unavailable => isClusterFailure(e) ? clusterUnavailable(e) : e as E
            ),
            Math.min(config.remoteCallTimeoutMs + waitLeftMs, deadline - now()),
            () =>
              Effect.fail(
                new Errors.Unavailable({ message: `the consumer group did not answer the ${what} in time; retry`, retryable: true })
              )
          ).pipe(
            Effect.catchCause((cause): Effect.Effect<A, E | Errors.Unavailable> =>
              Cause.hasInterruptsOnly(cause)
                ? Effect.fail(new Errors.Unavailable({ message: `the consumer group stopped during the ${what}; retry`, retryable: true }))
                : Effect.failCause(cause)
            ),
            Effect.catch((error) =>
              error instanceof Errors.Unavailable && error.retryable && now() + config.appendRetryIntervalMs < deadline
                ? Effect.andThen(Effect.sleep(config.appendRetryIntervalMs), Effect.suspend(attempt))
                : Effect.fail(error)
            )
          )
        }
        return yield* attempt()
      })

    const shape: ConsumerGroupsShape = {
      create: (tenant, name, options) =>
        Effect.andThen(
          local.define(tenant, name, options),
          routed(tenant, name, "status", 0, (c) => c.Status()).pipe(
            Effect.catchTag("ConsumerGroupNotFound", () => Effect.die(new Error(`consumer group ${name} vanished`)))
          )
        ),
      list: local.list,
      status: (tenant, name) => routed(tenant, name, "status", 0, (c) => c.Status()),
      // Options out of bounds are answered here by the local operation, which checks them before it opens anything:
      // an invalid value must not reach the wire (an integer field of the RPC) nor the call's time budget (`waitMs`).
      next: (tenant, name, options = {}) =>
        Effect.gen(function*() {
          const waitMs = options.waitMs ?? 0
          const max = options.max ?? 1
          if (
            !Number.isInteger(waitMs) || waitMs < 0 || waitMs > config.consumerWaitMsMax ||
            !Number.isInteger(max) || max < 1 || max > config.consumerBatchEventsMax
          ) {
            return yield* local.next(tenant, name, options)
          }
          return yield* routed(tenant, name, "next", waitMs, (c, waitLeftMs) =>
            c.Next({ ...(options.max === undefined ? {} : { max: options.max }), waitMs: waitLeftMs }))
        }),
      ack: (tenant, name, ids) => routed(tenant, name, "ack", 0, (c) => c.Ack({ ids })),
      nack: (tenant, name, ids, options = {}) =>
        options.delayMs !== undefined && (!Number.isInteger(options.delayMs) || options.delayMs < 0)
          ? local.nack(tenant, name, ids, options)
          : routed(tenant, name, "nack", 0, (c) => c.Nack({ ids, ...(options.delayMs === undefined ? {} : { delayMs: options.delayMs }) })),
      parked: (tenant, name, options = {}) =>
        options.limit !== undefined && (!Number.isInteger(options.limit) || options.limit < 1 || options.limit > config.readEventsMax)
          ? local.parked(tenant, name, options)
          : Effect.map(
            routed(tenant, name, "parked", 0, (c) => c.Parked(options.limit === undefined ? {} : { limit: options.limit })),
            (rows) => rows.map((row) => ({ entry: row.entry, event: row.event }))
          ),
      replayParked: (tenant, name, ids) =>
        routed(tenant, name, "replay", 0, (c) => c.Replay(ids === undefined ? {} : { ids }))
    }
    return shape
  })
