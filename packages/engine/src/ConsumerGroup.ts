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
 * What is durable, and when: the group's document (definition, checkpoint, acks and failures above it, parked and
 * replaying events, counters) is written with compare-and-swap at every `ack`/`nack`/replay (before it answers) and
 * at least every `consumerCheckpointIntervalMs` while the group moves. Delivery is at least once: an event
 * delivered but not acked when the process stops is delivered again (its attempt counted).
 *
 * Memory is bounded: a group holds at most `consumerBufferEventsMax` events between its checkpoint and what it has
 * read (reading stops there), and `consumerParkedEventsMax` parked ones. In a cluster the document lives in NATS KV,
 * so a group continues on any runner from its stored checkpoint; two runners serving the same group at once never
 * corrupt it (every write is a compare-and-swap; the loser reloads), but their consumers may see duplicates — route
 * a group's consumers to one runner.
 */
import { Clock, Context, Effect, Exit, Fiber, Layer, Option, Scope, Semaphore, Stream } from "effect"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { Errors, type Event, SubscriptionsApi } from "@chronos/domain"
import { CheckpointStore, type CheckpointStoreShape } from "./CheckpointStore.ts"
import { Engine, type EngineShape } from "./Engine.ts"
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

export interface GroupStatus {
  readonly tenant: string
  readonly name: string
  readonly filter: Filter
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
  /** Groups over the `Engine`, stored in the provided `CheckpointStore`; every open group is flushed at release. */
  static readonly layer: Layer.Layer<ConsumerGroups, never, Engine | CheckpointStore | ChronosConfig> = Layer.effect(
    ConsumerGroups,
    Effect.gen(function*() {
      return yield* make(yield* Engine, yield* CheckpointStore, yield* ChronosConfig)
    })
  )
}

// ---- the stored document ------------------------------------------------------------------------------------------

interface GroupDocument {
  readonly format: 1
  readonly tenant: string
  readonly name: string
  readonly filter: Filter
  readonly createdAt: number
  /** partition → sequence (see the module doc). */
  readonly checkpoint: Record<string, number>
  /** Acked above the checkpoint: `[partition, seq]`. */
  readonly acked: ReadonlyArray<readonly [number, number]>
  /** Outstanding events above the checkpoint that were delivered before: `[partition, seq, attempts, retryAt]`. */
  readonly failures: ReadonlyArray<readonly [number, number, number, number]>
  readonly parked: ReadonlyArray<ParkedEntry>
  /** Replayed parked events not yet acked: `[partition, seq, attempts]`. */
  readonly replay: ReadonlyArray<readonly [number, number, number]>
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
export const normalizeFilter = (
  f: Filter
): { readonly types?: ReadonlyArray<string>; readonly stream?: string; readonly streamPrefix?: string } => ({
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
  onClosed: () => void
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
    const storedFailures = new Map(loaded.doc.failures.map(([p, s, attempts, retryAt]) => [`${p}:${s}`, { attempts, retryAt }]))
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
      const failures: Array<readonly [number, number, number, number]> = []
      for (const [p, q] of queues) {
        for (let i = q.head; i < q.entries.length; i++) {
          const e = q.entries[i]!
          if (e.state === "done") acked.push([p, e.event.seq])
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
        failures.push([p, s, f.attempts, f.retryAt])
      }
      const replay: Array<readonly [number, number, number]> = []
      for (const entry of open.values()) {
        if (entry.replay) replay.push([entry.event.partition, entry.event.seq, entry.attempts])
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
        const entry: Entry = {
          event,
          id,
          attempts: failure?.attempts ?? 0,
          state: failure !== undefined && failure.retryAt > t ? "waiting" : "ready",
          deadline: 0,
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

    const enqueueReplay = (event: StoredEvent, attempts: number) => {
      const entry: Entry = {
        event,
        id: `${event.partition}:${event.seq}`,
        attempts,
        state: "ready",
        deadline: 0,
        retryAt: 0,
        replay: true
      }
      track(entry)
      replayReady.push(entry)
    }

    for (const [p, seq, attempts] of loaded.doc.replay) {
      const event = yield* readEvent(p, seq)
      if (event !== undefined) enqueueReplay(event, attempts)
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
              // Room for the reader, and attempts recorded within the checkpoint interval.
              notify()
              return out
            }
            const t = now()
            if (t >= until) return out
            yield* changed(Math.min(until, nextDue()) - t)
          }
        }),
      ack: (ids) =>
        Effect.gen(function*() {
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

export const make = Effect.fnUntraced(function*(
  engine: EngineShape,
  store: CheckpointStoreShape,
  config: ChronosConfigShape
): Effect.fn.Return<ConsumerGroupsShape, never, Scope.Scope> {
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
          }
        ).pipe(Effect.provideContext(services))
        groups.set(key, group)
        return group
      }))
    })

  const create: ConsumerGroupsShape["create"] = (tenant, name, options) =>
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
        return yield* status(tenant, name).pipe(
          Effect.catchTag("ConsumerGroupNotFound", () => Effect.die(new Error(`consumer group ${name} vanished`)))
        )
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
      return yield* status(tenant, name).pipe(
        Effect.catchTag("ConsumerGroupNotFound", () => Effect.die(new Error(`consumer group ${name} vanished`)))
      )
    })

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

  return { create, status, list, next, ack, nack, parked, replayParked }
})
