/**
 * The gateway's transparent, idempotent retry of appends, as a `PartitionRouter` decorator (used by
 * `PartitionEntity.layerRouter`, the router of every node and cluster runner).
 *
 * Why it exists: in a cluster an append can fail with a retryable `Unavailable` for reasons the caller cannot act
 * on — its partition is moving to another runner (a failover, a rebalance), is reloading its log after a fence, or
 * its owner died with the append in flight. The gateway retries those until the append's `appendTimeoutMs` runs
 * out, so a client of any runner sees a failover as latency, not as an error.
 *
 * Why it is safe: every event gets its id *before the first attempt*. A partition deduplicates appends by event id
 * (an exact retry returns the original positions, even when its expected version is stale by then), so an attempt
 * that was committed but whose answer was lost is answered, not written twice. Without this, an event the client
 * sent without an id would get a fresh id from the partition on every attempt — and the cluster itself re-sends a
 * volatile message to a shard's new owner, so even one gateway attempt can reach two partitions' incarnations.
 *
 * Bounds: the whole append (all attempts) takes at most `appendTimeoutMs`; an attempt that may never answer (to a
 * remote runner) is cut after `appendAttemptTimeoutMs` and retried, see `cutAttempts`. An attempt cut short may
 * still commit: the caller gets `Unavailable`, and re-sending with the same event ids is safe as always.
 * Only `Unavailable` with `retryable: true` is retried; a stopped partition, a wrong expected version and invalid
 * input are answered at once.
 */
import { Cause, Clock, Effect, Exit, Random } from "effect"
import { Errors } from "@chronos/domain"
import type { PartitionRouter } from "./Engine.ts"
import type * as Partition from "./Partition.ts"

export interface Options {
  /** Time budget of one append, all attempts included, ms (`ChronosConfig.appendTimeoutMs`). */
  readonly appendTimeoutMs: number
  /** Pause between two attempts, ms (`ChronosConfig.appendRetryIntervalMs`). */
  readonly appendRetryIntervalMs: number
  /** Bound of one attempt that is cut (see `cutAttempts`), ms (`ChronosConfig.appendAttemptTimeoutMs`). */
  readonly appendAttemptTimeoutMs: number
  /**
   * Whether an attempt to partition `p` must be cut by this module after `appendAttemptTimeoutMs` (and at the
   * deadline): true (the default) for calls that may never answer — a call to another runner that stops while the
   * call is in flight can be left without a reply by the cluster library (seen ~1 in 15 graceful stops), though the
   * partition is served elsewhere within a second; an attempt whose remote partition was stopped under it ends in
   * an interruption, also retried. A local partition bounds its appends itself (its watchdog, and it
   * answers everything pending when it closes), and a timer per append would cost a third of the local append rate.
   */
  readonly cutAttempts?: ((partition: number) => boolean) | undefined
}

const HEX: ReadonlyArray<string> = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** A UUID v4 from `next32` (32 random bits per call). */
export const uuidV4 = (next32: () => number): string => {
  const b = new Uint8Array(16)
  for (let i = 0; i < 16; i += 4) {
    const r = next32()
    b[i] = r & 0xff
    b[i + 1] = (r >>> 8) & 0xff
    b[i + 2] = (r >>> 16) & 0xff
    b[i + 3] = (r >>> 24) & 0xff
  }
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  let s = ""
  for (let i = 0; i < 16; i++) s += (i === 4 || i === 6 || i === 8 || i === 10 ? "-" : "") + HEX[b[i]!]!
  return s
}

/** `input` with an id on every event: the client's where it gave one, a new one otherwise (same object if complete). */
export const withEventIds = (input: Partition.AppendInput, newId: () => string): Partition.AppendInput => {
  let complete = true
  for (const e of input.events) {
    if (e.eventId === undefined) {
      complete = false
      break
    }
  }
  return complete ? input : {
    ...input,
    events: input.events.map((e) => e.eventId === undefined ? { ...e, eventId: newId() } : e)
  }
}

const isRetryable = (error: Partition.AppendFailure): boolean => error._tag === "Unavailable" && error.retryable

/** Decorates `router`: appends get their event ids up front and are retried while `Unavailable` (see module doc). */
export const make = (router: PartitionRouter, options: Options): Effect.Effect<PartitionRouter> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const random = yield* Random.Random
    const newId = () => uuidV4(() => random.nextIntUnsafe())
    const now = () => clock.currentTimeMillisUnsafe()
    const cut = options.cutAttempts ?? (() => true)

    // The remote partition was stopped while it handled the attempt (its shard moving, its runner losing its lock
    // storage): the cluster answers the call with an interruption. Not this fiber's interruption — that one cannot be
    // caught — so the attempt is simply unanswered, and retried.
    const stopped = (p: number) =>
      new Errors.Unavailable({ message: `partition ${p} was stopped while it handled the append; retry`, retryable: true })

    // Retried as long as time is left; what the caller finally sees when it is not.
    const timedOut = (p: number) =>
      new Errors.Unavailable({
        message: `partition ${p} did not answer the append in time (appendTimeoutMs ${options.appendTimeoutMs} ms); ` +
          "it may still commit: retry with the same event ids",
        retryable: true
      })

    /** Attempts `input` (ids already assigned) until it is answered or the deadline passes. */
    const retrying = (p: number, input: Partition.AppendInput, deadline: number) => {
      const attempt = (): Effect.Effect<Partition.AppendOutput, Partition.AppendFailure> =>
        (cut(p)
          ? Effect.timeoutOrElse(router.append(p, input), {
            duration: Math.max(1, Math.min(options.appendAttemptTimeoutMs, deadline - now())),
            orElse: () => Effect.fail(timedOut(p))
          }).pipe(Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.fail(stopped(p)) : Effect.failCause(cause)))
          : router.append(p, input)).pipe(
          Effect.catch((error) =>
            isRetryable(error) && now() + options.appendRetryIntervalMs < deadline
              ? Effect.andThen(Effect.sleep(options.appendRetryIntervalMs), Effect.suspend(attempt))
              : Effect.fail(error)
          )
        )
      return attempt()
    }

    return {
      ...router,
      append: (p, input) => Effect.suspend(() => retrying(p, withEventIds(input, newId), now() + options.appendTimeoutMs)),
      // One batch first (the partition's group commit); then the appends that failed retryably, each on its own.
      appendMany: (p, inputs) =>
        Effect.suspend(() => {
          const deadline = now() + options.appendTimeoutMs
          const ready = inputs.map((input) => withEventIds(input, newId))
          return Effect.flatMap(
            cut(p)
              ? Effect.timeoutOrElse(router.appendMany(p, ready), {
                duration: options.appendAttemptTimeoutMs,
                orElse: () => Effect.succeed(ready.map(() => Exit.fail(timedOut(p))))
              })
              : router.appendMany(p, ready),
            (exits) => {
              const again: Array<number> = []
              for (let i = 0; i < exits.length; i++) {
                const exit = exits[i]!
                if (Exit.isFailure(exit) && exit.cause.reasons.some((r) => r._tag === "Fail" && isRetryable(r.error))) {
                  again.push(i)
                }
              }
              if (again.length === 0) return Effect.succeed(exits)
              return Effect.forEach(again, (i) =>
                Effect.map(
                  Effect.exit(Effect.andThen(Effect.sleep(options.appendRetryIntervalMs), retrying(p, ready[i]!, deadline))),
                  (exit) => void (exits[i] = exit)
                ), { concurrency: "unbounded", discard: true }).pipe(Effect.as(exits))
            }
          )
        })
    }
  })
