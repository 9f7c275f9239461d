/**
 * The gateway's transparent retry of calls to partitions, as a `PartitionRouter` decorator (used by
 * `PartitionEntity.layerRouter`, the router of every node and cluster runner): a client of any runner sees a
 * partition moving (failover, rebalance, a log reload after a fence) as latency, not as an error, and no call to
 * another runner can hang.
 *
 * Appends are retried idempotently: every event gets its id *before the first attempt*. A partition deduplicates
 * appends by event id (an exact retry returns the original positions, even when its expected version is stale by
 * then), so an attempt that was committed but whose answer was lost is answered, not written twice. Without this, an
 * event the client sent without an id would get a fresh id from the partition on every attempt — and the cluster
 * itself re-sends a volatile message to a shard's new owner, so even one gateway attempt can reach two partitions'
 * incarnations. Reads (stream reads, scans, status) are idempotent as they are.
 *
 * Bounds:
 *  - an append, all attempts included, takes at most `appendTimeoutMs`; a read at most `readTimeoutMs`;
 *  - a call to a partition on another runner is cut after `remoteCallTimeoutMs` and retried: the cluster library
 *    can leave such a call without any reply — seen for ~1 in 15 appends in flight to a runner stopping gracefully,
 *    and for every read in flight to a runner that was frozen (SIGSTOP) past its lease, which otherwise hung for
 *    ever and, still pending, kept its runner from shutting down — although the partition is served again within
 *    seconds. A remote partition stopped while it handled the call answers with an interruption: retried too;
 *  - a partition open in this process bounds its calls itself (its watchdog, and it answers everything pending when
 *    it closes), and is not cut: a timer per append would cost a third of the local append rate.
 * A cut append may still commit: the caller gets `Unavailable`, and re-sending with the same event ids is safe as
 * always. Only `Unavailable` with `retryable: true` (and an unanswered remote call) is retried; a stopped partition,
 * a wrong expected version and invalid input are answered at once. Follows, folds (`reconstruct`) and watermark
 * waits may legitimately take long: they are not retried, only bounded (by `readTimeoutMs`, or the wait's own
 * timeout plus `remoteCallTimeoutMs`).
 */
import { Cause, Clock, Effect, Exit, Fiber, Option, Random } from "effect"
import { Errors } from "@chronos/domain"
import type { PartitionRouter } from "./Engine.ts"
import type * as Partition from "./Partition.ts"

export interface Options {
  /** Time budget of one append, all attempts included, ms (`ChronosConfig.appendTimeoutMs`). */
  readonly appendTimeoutMs: number
  /** Time budget of one read, all attempts included, ms (`ChronosConfig.readTimeoutMs`). */
  readonly readTimeoutMs: number
  /** Pause between two attempts, ms (`ChronosConfig.appendRetryIntervalMs`). */
  readonly appendRetryIntervalMs: number
  /** Bound of one attempt to a partition on another runner, ms (`ChronosConfig.remoteCallTimeoutMs`). */
  readonly remoteCallTimeoutMs: number
  /** Whether partition `p` is on another runner right now (asked per attempt). Default: always. */
  readonly isRemote?: ((partition: number) => boolean) | undefined
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

const isRetryable = (error: { readonly _tag: string }): boolean =>
  error instanceof Errors.Unavailable && error.retryable

/** Whether an append's exit is worth another attempt: a retryable `Unavailable`, or (remote) an interruption. */
const retryableExit = (exit: Exit.Exit<unknown, { readonly _tag: string }>, remote: boolean): boolean =>
  Exit.isFailure(exit) &&
  (exit.cause.reasons.some((r) => r._tag === "Fail" && isRetryable(r.error)) ||
    (remote && Cause.hasInterruptsOnly(exit.cause)))

/**
 * Runs `effect` for at most `ms`; past that, answers `onTimeout` at once and interrupts `effect` in the background.
 * Not `Effect.timeout`: that waits for the interruption to finish, and interrupting a call to a runner that stopped
 * answering (frozen) waits on that runner too — the cut would hang with the call. Used by every remote gateway call.
 */
export const cutAfter = <A, E, E2>(effect: Effect.Effect<A, E>, ms: number, onTimeout: () => Effect.Effect<A, E2>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkDetach(effect)
    const exit = yield* Fiber.await(fiber).pipe(
      Effect.timeoutOption(Math.max(1, ms)),
      Effect.onInterrupt(() => Effect.forkDetach(Fiber.interrupt(fiber)))
    )
    if (Option.isNone(exit)) {
      yield* Effect.forkDetach(Fiber.interrupt(fiber))
      return yield* onTimeout()
    }
    return yield* exit.value
  })

/** Decorates `router` (see the module doc). */
export const make = (router: PartitionRouter, options: Options): Effect.Effect<PartitionRouter> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const random = yield* Random.Random
    const newId = () => uuidV4(() => random.nextIntUnsafe())
    const now = () => clock.currentTimeMillisUnsafe()
    const isRemote = options.isRemote ?? (() => true)

    const unanswered = (p: number, what: string, budget: string) =>
      new Errors.Unavailable({
        message: `partition ${p} did not answer the ${what} in time (${budget}); retry` +
          (what === "append" ? " with the same event ids: it may still commit" : ""),
        retryable: true
      })

    // The remote partition was stopped while it handled the call (its shard moving, its runner losing its lock
    // storage): the cluster answers with an interruption. Not this fiber's own interruption — that one cannot be
    // caught — so the call is simply unanswered.
    const stopped = (p: number, what: string) =>
      new Errors.Unavailable({ message: `partition ${p} was stopped while it handled the ${what}; retry`, retryable: true })

    /** One attempt of `call`: as it is when local; cut after `boundMs` and interruptions mapped when remote. */
    const attemptOnce = <A, E extends { readonly _tag: string }>(
      p: number,
      what: string,
      budget: string,
      boundMs: number,
      call: () => Effect.Effect<A, E>
    ): Effect.Effect<A, E | Errors.Unavailable> =>
      !isRemote(p) ? call() : cutAfter(call(), boundMs, () => Effect.fail(unanswered(p, what, budget))).pipe(
        Effect.catchCause((cause): Effect.Effect<A, E | Errors.Unavailable> =>
          Cause.hasInterruptsOnly(cause) ? Effect.fail(stopped(p, what)) : Effect.failCause(cause)
        )
      )

    /** Attempts `call` until it is answered, fails for good, or `deadline` passes. */
    const retrying = <A, E extends { readonly _tag: string }>(
      p: number,
      what: string,
      budget: string,
      deadline: number,
      call: () => Effect.Effect<A, E>
    ): Effect.Effect<A, E | Errors.Unavailable> => {
      const attempt = (): Effect.Effect<A, E | Errors.Unavailable> =>
        attemptOnce(p, what, budget, Math.min(options.remoteCallTimeoutMs, deadline - now()), call).pipe(
          Effect.catch((error) =>
            isRetryable(error) && now() + options.appendRetryIntervalMs < deadline
              ? Effect.andThen(Effect.sleep(options.appendRetryIntervalMs), Effect.suspend(attempt))
              : Effect.fail(error)
          )
        )
      return attempt()
    }

    const appendBudget = `appendTimeoutMs ${options.appendTimeoutMs} ms`
    const readBudget = `readTimeoutMs ${options.readTimeoutMs} ms`
    const appendOnce = (p: number, input: Partition.AppendInput, deadline: number) =>
      retrying(p, "append", appendBudget, deadline, () => router.append(p, input))
    const read = <A>(p: number, call: () => Effect.Effect<A, Errors.Unavailable>) =>
      Effect.suspend(() => retrying(p, "read", readBudget, now() + options.readTimeoutMs, call))

    return {
      ...router,
      append: (p, input) => Effect.suspend(() => appendOnce(p, withEventIds(input, newId), now() + options.appendTimeoutMs)),
      // One batch first (the partition's group commit); then the appends that failed retryably, each on its own.
      appendMany: (p, inputs) =>
        Effect.suspend(() => {
          const deadline = now() + options.appendTimeoutMs
          const ready = inputs.map((input) => withEventIds(input, newId))
          const remote = isRemote(p)
          const batch = remote
            ? cutAfter(
              router.appendMany(p, ready),
              options.remoteCallTimeoutMs,
              () => Effect.succeed(ready.map(() => Exit.fail(unanswered(p, "append", appendBudget))))
            )
            : router.appendMany(p, ready)
          return Effect.flatMap(batch, (exits) => {
            const again: Array<number> = []
            for (let i = 0; i < exits.length; i++) if (retryableExit(exits[i]!, remote)) again.push(i)
            if (again.length === 0) return Effect.succeed(exits)
            return Effect.forEach(again, (i) =>
              Effect.map(
                Effect.exit(Effect.andThen(Effect.sleep(options.appendRetryIntervalMs), appendOnce(p, ready[i]!, deadline))),
                (exit) => void (exits[i] = exit)
              ), { concurrency: "unbounded", discard: true }).pipe(Effect.as(exits))
          })
        }),
      readStream: (p, tenant, stream, o) => read(p, () => router.readStream(p, tenant, stream, o)),
      scan: (p, tenant, o) => read(p, () => router.scan(p, tenant, o)),
      status: (p) => read(p, () => router.status(p)),
      follow: (p, tenant, o) =>
        attemptOnce(p, "read", readBudget, options.readTimeoutMs, () => router.follow(p, tenant, o)),
      reconstruct: (p, tenant, stream, reducer, asOf) =>
        attemptOnce(p, "read", readBudget, options.readTimeoutMs, () => router.reconstruct(p, tenant, stream, reducer, asOf)),
      awaitWatermark: (p, seq, timeoutMs) =>
        attemptOnce(
          p,
          "watermark wait",
          "its timeout + remoteCallTimeoutMs",
          timeoutMs + options.remoteCallTimeoutMs,
          () => router.awaitWatermark(p, seq, timeoutMs)
        )
    }
  })
