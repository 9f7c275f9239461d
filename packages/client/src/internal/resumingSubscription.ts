/**
 * A subscription over Server-Sent Events that survives dropped connections: it turns the SSE events of
 * `GET /v1/tenants/{tenant}/subscribe` into `SubscriptionItem`s and, when a connection ends or fails transiently,
 * connects again with `Last-Event-ID` set to the position of the last thing it delivered.
 *
 * Why nothing is skipped or repeated: every event's SSE `id` is the position vector right after it, and the server
 * resumes a subscription exactly after the vector it is given (`Subscription` in the engine). The resume point moves
 * only when an item is handed downstream, so a frame lost with a connection is read again from the next one.
 * Two details keep this exact:
 *  - the `caught-up` marker carries a position too (the history's end), so a subscription that has delivered no
 *    event yet still resumes from where it was (not from `now` again, which would skip what came in between);
 *    an empty position means nothing existed before it, and resuming from `start` is then exact;
 *  - the marker is delivered once: a reconnected connection announces its own catch-up, which is not news to
 *    the subscriber (it caught up before the drop).
 *
 * Reconnects are bounded: at most `reconnectsMax` consecutive attempts that deliver nothing, with an exponential,
 * jittered delay between `delayMs` and `delayMsMax`; then the stream fails with `Unavailable`. Errors that a retry
 * cannot fix (a bad request, corrupt data) fail it at once.
 */
import { Effect, Random, Result, Stream } from "effect"
import { Errors, type SubscriptionsApi } from "@chronos/domain"
import type { SubscriptionItem } from "../ChronosClient.ts"

export interface Options<E> {
  /** Opens one connection; `lastEventId` is absent for the first one (the request's own `from` applies). */
  readonly connect: (lastEventId: string | undefined) => Stream.Stream<SubscriptionsApi.SubscriptionEvent, E>
  /** Whether a failure of a connection is worth another one (the stream fails with it otherwise). */
  readonly isRetryable: (error: E) => boolean
  readonly reconnectsMax: number
  readonly delayMs: number
  readonly delayMsMax: number
}

export const make = <E>(options: Options<E>): Stream.Stream<SubscriptionItem, E | Errors.Unavailable> => {
  /** Where the next connection resumes: the position after the last delivered item (`undefined`: not yet known). */
  let resume: string | undefined
  let caughtUp = false
  /** Why the last connection ended, for the error once reconnects run out. */
  let lastProblem = "the connection ended"

  const toItem = (frame: SubscriptionsApi.SubscriptionEvent): Result.Result<SubscriptionItem, void> => {
    switch (frame.event) {
      case "message": {
        // An event always has an id (a position is never empty after an event); keep the last one if not.
        const position = frame.id ?? resume ?? ""
        resume = position
        return Result.succeed({ _tag: "Event", event: frame.data, position })
      }
      case "caught-up": {
        resume = frame.data.position === "" ? resume ?? "start" : frame.data.position
        if (caughtUp) return Result.failVoid
        caughtUp = true
        return Result.succeed({ _tag: "CaughtUp", position: frame.data.position })
      }
      case "lagging":
        return Result.succeed({ _tag: "Lagging", lag: frame.data.lag, max: frame.data.max, position: frame.data.position })
      case "error":
        // The server stopped this subscription (the body ends next): reconnecting resumes it.
        lastProblem = `the node stopped the subscription: ${frame.data._tag}: ${frame.data.message}`
        return Result.failVoid
    }
  }

  const delay = (attempt: number) =>
    Effect.flatMap(Random.next, (r) => {
      const ceiling = Math.min(options.delayMs * 2 ** (attempt - 1), options.delayMsMax)
      // Jitter in [ceiling / 2, ceiling]: many subscribers dropped at once do not reconnect in lockstep.
      return Effect.sleep(Math.round(ceiling / 2 + (r * ceiling) / 2))
    })

  const connection = (failures: number): Stream.Stream<SubscriptionItem, E | Errors.Unavailable> =>
    Stream.suspend(() => {
      let delivered = false
      const afterEnd = Stream.suspend(() => {
        const attempt = delivered ? 1 : failures + 1
        if (attempt > options.reconnectsMax) {
          return Stream.fail(new Errors.Unavailable({
            message: `subscription lost after ${options.reconnectsMax} reconnects: ${lastProblem}`,
            retryable: true
          }))
        }
        return Stream.concat(Stream.fromEffectDrain(delay(attempt)), connection(attempt))
      })
      const frames = options.connect(resume === "" ? undefined : resume).pipe(
        Stream.filterMap((frame) => {
          const item = toItem(frame)
          if (Result.isSuccess(item)) delivered = true
          return item
        }),
        Stream.catch((error: E) => {
          if (!options.isRetryable(error)) return Stream.fail(error)
          lastProblem = describe(error)
          return Stream.empty
        })
      )
      return Stream.concat(frames, afterEnd)
    })

  return connection(0)
}

const describe = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
