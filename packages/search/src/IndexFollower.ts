/**
 * Follows one tenant's committed events into one index, asynchronously: the loop that reads each partition after
 * the index's position (through `Engine.readPartition`, bounded by the watermark), hands the events to the index in
 * chunks, and moves the position. It owns the index's position per partition, its state and lag, waiting for a
 * position (read-your-writes), and when the index is written to disk.
 *
 * Why positions are exact: before reading partition p, the follower notes its watermark w; the read returns the
 * tenant's events after the position up to the current watermark (≥ w). When fewer than a page come back, every
 * event at or below max(w, last returned) has been seen, whether or not it was the tenant's; otherwise the position
 * is the last returned event. A position therefore means "every event of the partition at or below it is indexed
 * (or was not this tenant's)", the same meaning as a subscription's position token, so `waitFor` can take one.
 *
 * Why appends are never slowed: the follower runs on its own fiber, reads only committed events, applies them in
 * chunks and yields to the event loop every `indexSliceMs` of work; embedding runs in worker threads.
 * A chunk is applied uninterruptibly (so the index never holds half a chunk beyond its position) and the position
 * moves after every chunk, so a failure (embedder down, partition unavailable) resumes exactly where it stopped.
 */
import { Cause, Clock, Effect, Exit, Fiber, Scope } from "effect"
import type { Errors, Event } from "@chronos/domain"
import type { Engine } from "@chronos/engine/Engine"

export type FollowerState = "catching-up" | "live" | "refused" | "stopped"

export interface Sink<P, E> {
  /** Work before a chunk changes the index (e.g. embedding); interruptible, may fail and be retried. */
  readonly prepare: (events: ReadonlyArray<Event.StoredEvent>) => Effect.Effect<P, E>
  /** Applies a prepared chunk (one partition, in sequence order); run uninterruptibly, so all or nothing. */
  readonly commit: (events: ReadonlyArray<Event.StoredEvent>, prepared: P) => Effect.Effect<void>
  /** Events per `apply` call. */
  readonly chunkEvents: number
  /** Writes the index and `positions` to disk (called from the follower's fiber, so never during an `apply`). */
  readonly snapshot: ((positions: ReadonlyArray<number>) => Effect.Effect<void>) | undefined
}

export interface FollowerOptions {
  readonly tenant: string
  readonly partitions: number
  readonly pageEventsMax: number
  readonly idleWaitMs: number
  readonly sliceMs: number
  readonly snapshotEveryMs: number
  /** Where the index starts (from its snapshot), per partition; absent: from the beginning. */
  readonly positions?: ReadonlyArray<number> | undefined
}

interface Waiter {
  readonly target: ReadonlyMap<number, number>
  readonly resume: () => void
}

export interface PartitionProgress {
  readonly partition: number
  readonly position: number
  readonly watermark: number
  readonly lag: number
}

export interface Follower {
  readonly positions: () => ReadonlyArray<number>
  readonly state: () => FollowerState
  readonly error: () => string | undefined
  /** Waits until every listed partition's position reaches its sequence; `false` after `timeoutMs`. */
  readonly awaitPositions: (target: ReadonlyMap<number, number>, timeoutMs: number) => Effect.Effect<boolean>
  /** Position, watermark and lag per partition (asks the engine for watermarks). */
  readonly progress: Effect.Effect<ReadonlyArray<PartitionProgress>, Errors.Unavailable>
  /** Records a change made outside the loop (e.g. `removeStream`), so the next snapshot includes it. */
  readonly touch: () => void
  /** Writes a snapshot now if anything changed (shutdown). Runs after the loop is stopped. */
  readonly stop: Effect.Effect<void>
}

/** A refused index: it has no loop; searches fail before they reach it. */
export const refused = (partitions: number, reason: string): Follower => ({
  positions: () => new Array<number>(partitions).fill(0),
  state: () => "refused",
  error: () => reason,
  awaitPositions: () => Effect.succeed(false),
  progress: Effect.succeed([]),
  touch: () => {},
  stop: Effect.void
})

export const reached = (positions: ReadonlyArray<number>, target: ReadonlyMap<number, number>): boolean => {
  for (const [p, seq] of target) if ((positions[p] ?? 0) < seq) return false
  return true
}

/** Starts following in `scope`; the loop runs until `stop` or the scope closes. */
export const start = <P, E>(
  engine: Engine["Service"],
  sink: Sink<P, E>,
  options: FollowerOptions,
  scope: Scope.Scope
): Effect.Effect<Follower> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const positions: Array<number> = Array.from({ length: options.partitions }, (_, p) => options.positions?.[p] ?? 0)
    let state: FollowerState = "catching-up"
    let error: string | undefined
    let dirty = false
    let lastSnapshotMs = clock.currentTimeMillisUnsafe()
    let waiters: Array<Waiter> = []
    let wake: (() => void) | undefined

    const notify = () => {
      if (waiters.length === 0) return
      const still: Array<Waiter> = []
      for (const w of waiters) if (reached(positions, w.target)) w.resume()
      else still.push(w)
      waiters = still
    }

    /** One pass over every partition; whether anything moved. */
    const pass = Effect.gen(function*() {
      const statuses = yield* engine.partitions
      let progressed = false
      let sliceStart = clock.currentTimeMillisUnsafe()
      for (const status of statuses) {
        const p = status.partition
        const watermark = status.watermark
        while (positions[p]! < watermark) {
          const events = yield* engine.readPartition(options.tenant, p, {
            fromSeq: positions[p]! + 1,
            limit: options.pageEventsMax
          }).pipe(Effect.catchTag(["InvalidRequest", "LimitExceeded"], (e) => Effect.die(e)))
          for (let i = 0; i < events.length; i += sink.chunkEvents) {
            const chunk = events.slice(i, i + sink.chunkEvents)
            const prepared = yield* sink.prepare(chunk)
            yield* Effect.uninterruptible(sink.commit(chunk, prepared))
            positions[p] = chunk[chunk.length - 1]!.seq
            dirty = true
            notify()
            if (clock.currentTimeMillisUnsafe() - sliceStart >= options.sliceMs) {
              yield* Effect.yieldNow
              sliceStart = clock.currentTimeMillisUnsafe()
            }
          }
          const last = events[events.length - 1]?.seq ?? 0
          const through = events.length < options.pageEventsMax ? Math.max(watermark, last) : last
          if (through > positions[p]!) positions[p] = through
          progressed = true
          notify()
        }
      }
      if (state === "catching-up" && statuses.every((s) => positions[s.partition]! >= s.watermark)) state = "live"
      return progressed
    })

    const maybeSnapshot = (force: boolean) =>
      Effect.gen(function*() {
        if (sink.snapshot === undefined || !dirty) return
        const now = clock.currentTimeMillisUnsafe()
        if (!force && now - lastSnapshotMs < options.snapshotEveryMs) return
        dirty = false
        lastSnapshotMs = now
        yield* sink.snapshot([...positions])
      })

    const idle = Effect.race(
      Effect.sleep(options.idleWaitMs),
      Effect.callback<void>((resume) => {
        wake = () => resume(Effect.void)
        return Effect.sync(() => {
          wake = undefined
        })
      })
    )

    const loop = Effect.gen(function*() {
      while (true) {
        const exit = yield* Effect.exit(pass)
        if (Exit.isFailure(exit)) {
          if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.interrupt
          if (Cause.hasDies(exit.cause)) {
            state = "stopped"
            error = `index stopped on a defect: ${String(Cause.squash(exit.cause))}`
            yield* Effect.logError(`search index of tenant ${options.tenant} stopped`, exit.cause)
            return
          }
          // A typed failure (partition unavailable, embedder down): keep the position, retry after a pause.
          error = String(Cause.squash(exit.cause))
          yield* Effect.logWarning(`search indexing of tenant ${options.tenant} failed; retrying`, exit.cause)
          yield* Effect.sleep(Math.max(options.idleWaitMs, 1_000))
          continue
        }
        error = undefined
        yield* maybeSnapshot(false)
        if (!exit.value) yield* idle
      }
    })

    const fiber = yield* Effect.forkIn(loop, scope)

    const awaitPositions = (target: ReadonlyMap<number, number>, timeoutMs: number): Effect.Effect<boolean> =>
      reached(positions, target) ? Effect.succeed(true) : Effect.race(
        Effect.callback<boolean>((resume) => {
          const waiter: Waiter = { target, resume: () => resume(Effect.succeed(true)) }
          waiters.push(waiter)
          wake?.()
          return Effect.sync(() => {
            waiters = waiters.filter((w) => w !== waiter)
          })
        }),
        Effect.as(Effect.sleep(timeoutMs), false)
      )

    const progress = Effect.map(engine.partitions, (statuses) =>
      statuses.map((s): PartitionProgress => {
        const position = Math.min(positions[s.partition] ?? 0, s.watermark)
        return { partition: s.partition, position, watermark: s.watermark, lag: s.watermark - position }
      }))

    const stop = Effect.gen(function*() {
      yield* Fiber.interrupt(fiber)
      if (state !== "stopped") yield* maybeSnapshot(true)
      state = state === "refused" ? state : "stopped"
    })

    return {
      positions: () => positions,
      state: () => state,
      error: () => error,
      awaitPositions,
      progress,
      touch: () => {
        dirty = true
      },
      stop
    }
  })
