/**
 * The `PartitionRouter` of one fork. Partition p of a fork is its parent's partition p at or below `base[p]`,
 * followed by the fork's own partition p: a `Partition` opened with a `prefix` (so its sequences and versions
 * continue the parent's) over the fork's namespace of the `EventLog`. `Engine.make(config, router)` then gives the
 * fork every read and write of the engine — validation, scatter-gather queries, state, subscriptions — unchanged.
 *
 * This module owns:
 *  - the merge of the two halves for every read. The parent's half is read through the parent's router (main's, or
 *    the parent fork's for a branch) with `asOf` = the base intersected with the caller's `asOf`; the fork's half
 *    from its own partition with the caller's `asOf`. The halves never overlap — the parent's are at or below
 *    `base[p]`, the fork's above — and the fork's timestamps start at the parent's at the base, so sequence order is
 *    time order across the boundary and one concatenation is the answer;
 *  - the lazy opening of the fork's partitions: creating a fork opens and copies nothing;
 *  - the `forkEventsMax` bound, checked under a lock at submission so that concurrent appends cannot overshoot it;
 *  - closing: `close` waits for the calls in flight, then closes the partitions; every later call fails.
 *
 *  - following its parent: the fork's partition p is layered on the parent's partition p *object* it was opened
 *    over; when that object changes (in a cluster, partition p moved away and back, or its entity was restarted),
 *    the fork's partition is closed and reopened over the new one (its log replayed), never served stale.
 *
 * The fork's partitions need their parents' partitions in this process (the synchronous `Partition.Lookup`): in
 * embedded mode every partition is here; in a cluster, `Forks` routes a fork's partition p to the runner that owns
 * partition p (through the partition entity, see `PartitionEntity`), where this router serves it.
 */
import { Effect, Exit, Fiber, Scope, Semaphore } from "effect"
import type { ChronosConfigShape } from "@chronos/config"
import { type AsOf, Errors, type Event } from "@chronos/domain"
import { awaitLocalWatermark, type PartitionRouter } from "./Engine.ts"
import { EventLog, type EventLogShape } from "./EventLog.ts"
import * as Partition from "./Partition.ts"

type StoredEvent = Event.StoredEvent

export interface Options {
  readonly forkId: string
  readonly tenant: string
  /** `base[p]`: the parent's sequence in partition p the fork continues from. */
  readonly base: ReadonlyArray<number>
  /** Where the parent's events are read (main's router, or the parent fork's). */
  readonly parent: PartitionRouter
  /** The parent's partition p, open, for the synchronous lookups a fork's partition is layered on. */
  readonly parentPartition: (partition: number) => Effect.Effect<Partition.Lookup, Errors.Unavailable>
  readonly config: ChronosConfigShape
  readonly eventLog: EventLogShape
  /** The scope the fork's partitions live in; closed by `close`. */
  readonly scope: Scope.Closeable
}

export interface ForkRouter extends PartitionRouter {
  /** The fork's own partition p, opened (its log replayed) on first use. */
  readonly partition: (partition: number) => Effect.Effect<Partition.Partition, Errors.Unavailable>
  /** The fork's own events (what it added), in partition then sequence order: what diff and merge work from. */
  readonly ownEvents: Effect.Effect<ReadonlyArray<StoredEvent>, Errors.Unavailable>
  /** Waits for the calls in flight, then closes the fork's partitions; every later call fails with `Unavailable`. */
  readonly close: Effect.Effect<void>
}

/** More permits than calls can ever be in flight: `close` takes them all, i.e. waits for every call to finish. */
const gatePermits = 1 << 30

export const make = (options: Options): ForkRouter => {
  const { base, config, forkId, parent, tenant } = options
  const partitions = config.partitions
  if (base.length !== partitions) {
    throw new Error(`fork ${forkId}: base has ${base.length} entries for ${partitions} partitions`)
  }
  const own: Array<Partition.Partition | undefined> = new Array(partitions).fill(undefined)
  /** The parent's lookups each open partition is layered on, and the scope it lives in. */
  const over: Array<Partition.Lookup | undefined> = new Array(partitions).fill(undefined)
  const scopes: Array<Scope.Closeable | undefined> = new Array(partitions).fill(undefined)
  const opening = Array.from({ length: partitions }, () => Semaphore.makeUnsafe(1))
  const admission = Semaphore.makeUnsafe(1)
  const gate = Semaphore.makeUnsafe(gatePermits)
  let closing = false
  const pageMax = config.readEventsMax

  const gone = () => new Errors.Unavailable({ message: `fork ${forkId} was discarded`, retryable: false })
  const otherTenant = (t: string) =>
    new Errors.Unavailable({ message: `fork ${forkId} belongs to tenant ${tenant}, not ${t}`, retryable: false })

  /** Runs a call unless the fork is closing; `close` waits for it. */
  const guarded = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | Errors.Unavailable> =>
    Effect.suspend((): Effect.Effect<A, E | Errors.Unavailable> =>
      closing
        ? Effect.fail(gone())
        : gate.withPermits(1)(
          Effect.suspend((): Effect.Effect<A, E | Errors.Unavailable> => closing ? Effect.fail(gone()) : effect)
        )
    )

  const openNow = (p: number, parentLookup: Partition.Lookup) =>
    Effect.gen(function*() {
      const stale = scopes[p]
      if (stale !== undefined) {
        own[p] = undefined
        scopes[p] = undefined
        yield* Scope.close(stale, Exit.void)
      }
      const scope = yield* Scope.fork(options.scope)
      const partition = yield* Partition.make(p, config, {
        namespace: forkId,
        prefix: { seq: base[p]!, parent: parentLookup }
      }).pipe(
        Effect.provideService(EventLog, options.eventLog),
        Effect.provideService(Scope.Scope, scope),
        Effect.mapError((error) =>
          new Errors.Unavailable({
            message: `fork ${forkId}: cannot open partition ${p}: ${error._tag}: ${error.message}`,
            retryable: error._tag !== "CorruptData"
          })
        )
      )
      own[p] = partition
      over[p] = parentLookup
      scopes[p] = scope
      return partition
    })

  const partition = (p: number): Effect.Effect<Partition.Partition, Errors.Unavailable> =>
    Effect.suspend(() => {
      if (!Number.isInteger(p) || p < 0 || p >= partitions) return Effect.die(new Error(`fork ${forkId}: no partition ${p}`))
      return Effect.flatMap(options.parentPartition(p), (lookup) => {
        const ready = own[p]
        if (ready !== undefined && over[p] === lookup) return Effect.succeed(ready)
        return opening[p]!.withPermit(Effect.suspend(() => {
          const opened = own[p]
          return opened !== undefined && over[p] === lookup ? Effect.succeed(opened) : openNow(p, lookup)
        }))
      })
    })

  const atBase: ReadonlyArray<AsOf.AsOf> = base.map((seq, p) => ({ _tag: "Positions", positions: new Map([[p, seq]]) }))

  /** The parent's half of a read at `asOf`: at or below the base, and at or below what `asOf` allows. */
  const parentAsOf = (p: number, asOf: AsOf.AsOf | undefined): Effect.Effect<AsOf.AsOf, Errors.Unavailable> =>
    asOf === undefined
      ? Effect.succeed(atBase[p]!)
      : Effect.map(options.parentPartition(p), (lookup) => ({
        _tag: "Positions",
        positions: new Map([[p, Math.min(base[p]!, lookup.positionAt(asOf))]])
      }))

  const concat = (head: ReadonlyArray<StoredEvent>, tail: ReadonlyArray<StoredEvent>): ReadonlyArray<StoredEvent> =>
    tail.length === 0 ? head : head.length === 0 ? tail : [...head, ...tail]

  /**
   * Checks `forkEventsMax` and submits under one lock (the partition takes an append synchronously when its fiber
   * starts), so that concurrent appends cannot pass the check together; then waits outside the lock, so appends
   * still pipeline. What the fork holds is counted from its partitions' sequences: accepted appends included.
   */
  const admit = <A, E>(
    n: number,
    submit: Effect.Effect<A, E>
  ): Effect.Effect<A, E | Errors.LimitExceeded> =>
    Effect.flatMap(
      admission.withPermit(Effect.gen(function*() {
        let held = 0
        for (let q = 0; q < partitions; q++) {
          const part = own[q]
          if (part !== undefined) held += (yield* part.status).seq - base[q]!
        }
        if (held + n > config.forkEventsMax) {
          return yield* new Errors.LimitExceeded({
            limit: "forkEventsMax",
            max: config.forkEventsMax,
            actual: held + n,
            message: `fork ${forkId} holds ${held} events; one fork holds at most ${config.forkEventsMax}`
          })
        }
        return yield* Effect.forkChild(submit, { startImmediately: true })
      })),
      Fiber.join
    )

  const router: ForkRouter = {
    owner: (p) => parent.owner(p),

    append: (p, input) =>
      guarded(Effect.gen(function*() {
        if (input.tenant !== tenant) return yield* otherTenant(input.tenant)
        const part = yield* partition(p)
        return yield* admit(input.events.length, part.append(input))
      })),

    appendMany: (p, inputs) =>
      Effect.map(
        Effect.exit(guarded(Effect.gen(function*() {
          const stranger = inputs.find((input) => input.tenant !== tenant)
          if (stranger !== undefined) return yield* otherTenant(stranger.tenant)
          const part = yield* partition(p)
          let n = 0
          for (const input of inputs) n += input.events.length
          return yield* admit(n, part.appendMany(inputs))
        }))),
        (exit) => Exit.isSuccess(exit) ? exit.value : inputs.map(() => Exit.failCause(exit.cause))
      ),

    readStream: (p, t, stream, read) =>
      guarded(Effect.gen(function*() {
        if (t !== tenant) return yield* otherTenant(t)
        const part = yield* partition(p)
        const limit = Math.min(read.limit, pageMax)
        if (read.direction === "forward") {
          const head = yield* parent.readStream(p, t, stream, { ...read, limit, asOf: yield* parentAsOf(p, read.asOf) })
          if (head.length >= limit) return head
          const tail = yield* part.readStream(t, stream, { ...read, limit: limit - head.length })
          if (head.length > 0 && tail.length > 0 && tail[0]!.streamVersion !== head[head.length - 1]!.streamVersion + 1) {
            return yield* Effect.die(new Error(`fork ${forkId}: ${stream} does not continue its parent's versions`))
          }
          return concat(head, tail)
        }
        // Backward: the fork's own events first (the newest), then the parent's below them.
        const tail = yield* part.readStream(t, stream, { ...read, limit })
        if (tail.length >= limit) return tail
        const fromVersion = tail.length > 0 ? tail[tail.length - 1]!.streamVersion - 1 : read.fromVersion
        if (fromVersion !== undefined && fromVersion < 0) return tail
        const head = yield* parent.readStream(p, t, stream, {
          ...read,
          fromVersion,
          limit: limit - tail.length,
          asOf: yield* parentAsOf(p, read.asOf)
        })
        return concat(tail, head)
      })),

    scan: (p, t, scan) =>
      guarded(Effect.gen(function*() {
        if (t !== tenant) return yield* otherTenant(t)
        const part = yield* partition(p)
        const b = base[p]!
        const fromSeq = scan.fromSeq ?? 1
        const limit = Math.min(scan.limit, pageMax)
        let head: ReadonlyArray<StoredEvent> = []
        if (fromSeq <= b) {
          head = yield* parent.scan(p, t, { ...scan, limit, asOf: yield* parentAsOf(p, scan.asOf) })
          if (head.length >= limit) return head
        }
        const tail = yield* part.scan(t, { ...scan, fromSeq: Math.max(fromSeq, b + 1), limit: limit - head.length })
        return concat(head, tail)
      })),

    follow: (p, t, scan) =>
      guarded(Effect.gen(function*() {
        if (t !== tenant) return yield* otherTenant(t)
        const part = yield* partition(p)
        const b = base[p]!
        const fromSeq = scan.fromSeq ?? 1
        const limit = Math.min(scan.limit, pageMax)
        let head: { readonly events: ReadonlyArray<StoredEvent>; readonly through: number } = {
          events: [],
          through: fromSeq - 1
        }
        if (fromSeq <= b) {
          head = yield* parent.follow(p, t, { ...scan, limit, asOf: yield* parentAsOf(p, scan.asOf) })
          // Stopped by the limit, or by a caller's `asOf` below the base (then none of the fork's events is visible).
          if (head.events.length >= limit || head.through < b) return head
        }
        const tail = yield* part.follow(t, { ...scan, fromSeq: Math.max(fromSeq, b + 1), limit: limit - head.events.length })
        return { events: concat(head.events, tail.events), through: tail.through }
      })),

    // The parent folds its half (with its snapshots); the fork's own events of the stream are folded on top.
    reconstruct: (p, t, stream, reducer, asOf) =>
      guarded(Effect.gen(function*() {
        if (t !== tenant) return yield* otherTenant(t)
        const part = yield* partition(p)
        const below = yield* parent.reconstruct(p, t, stream, reducer, yield* parentAsOf(p, asOf))
        let version = below.version
        let state = below.state
        while (true) {
          const page = yield* part.readStream(t, stream, { fromVersion: version + 1, limit: pageMax, direction: "forward", asOf })
          for (const e of page) {
            if (e.streamVersion !== version + 1) {
              return yield* Effect.die(
                new Error(`fork ${forkId}: ${stream} version ${e.streamVersion} does not follow ${version}`)
              )
            }
            state = reducer.step(state, e)
            version = e.streamVersion
          }
          if (page.length < pageMax) return { version, state }
        }
      })),

    // Sequence and watermark continue the parent's; `events` and `streams` count what the fork itself holds.
    status: (p) => guarded(Effect.flatMap(partition(p), (part) => part.status)),

    awaitWatermark: (p, seq, timeoutMs) =>
      guarded(Effect.flatMap(partition(p), (part) => awaitLocalWatermark(part, seq, timeoutMs))),

    local: (p) => own[p],

    partition,

    ownEvents: guarded(Effect.gen(function*() {
      const out: Array<StoredEvent> = []
      for (let p = 0; p < partitions; p++) {
        const part = yield* partition(p)
        let from = base[p]! + 1
        while (true) {
          const page = yield* part.scan(tenant, { fromSeq: from, limit: pageMax })
          for (const e of page) out.push(e)
          if (page.length < pageMax) break
          from = page[page.length - 1]!.seq + 1
        }
      }
      return out
    })),

    close: Effect.suspend(() => {
      closing = true
      return gate.withPermits(gatePermits)(Scope.close(options.scope, Exit.void))
    })
  }
  return router
}
