/**
 * A subscription as a Server-Sent Events body. It owns the framing, the subscriber's window, its lag and keepalives:
 *
 *  - framing: each event is a default SSE event, `id: <position token>` and `data: <RecordedEvent JSON>`; the end of
 *    history is `event: caught-up`; a stop is `event: error` and the end of the body (the client reconnects with
 *    `Last-Event-ID`). Idle connections get a `: keepalive` comment every `keepaliveMs`.
 *  - window: a reader fiber turns pages (at most `windowEventsMax` events each) into frames and offers them to a
 *    queue of `windowEventsMax` frames; the connection takes from the queue only when the socket accepted the previous
 *    write (Node's `drain`, in the server). A subscriber that stops reading (TCP backpressure) therefore fills the
 *    queue and the reader stops pulling from the partitions: it costs a bounded buffer and no CPU, and never slows
 *    writers or other subscribers.
 *  - lag: once live (after `caught-up`; a subscriber replaying history is behind by definition), at most every
 *    `lagCheckMs`, what is being sent is compared with the watermarks (sum of the watermarks − sum of the position,
 *    over the subscription's partitions). Past `lagEventsMax` the subscriber gets `event: lagging` with its lag,
 *    once per time it falls behind (again after it came back under half the limit). It is told when it next
 *    reads; it is never dropped.
 */
import { type Cause, Clock, Effect, Option, Queue, Stream } from "effect"
import { Event } from "@chronos/domain"
import type { Errors } from "@chronos/domain"
import type { EngineShape } from "@chronos/engine/Engine"
import * as Subscription from "@chronos/engine/Subscription"

export interface Options {
  readonly windowEventsMax: number
  readonly lagEventsMax: number
  readonly lagCheckMs: number
  readonly keepaliveMs: number
  /** The watermark of every partition (cached: many subscribers share one read). */
  readonly heads: Effect.Effect<ReadonlyArray<number>, Errors.Unavailable>
  /** Completes when the node shuts down: the body ends. */
  readonly closing: Effect.Effect<void>
}

interface Frame {
  /** SSE text; empty for a frame that only carries progress (a page that matched nothing). */
  readonly text: string
  /** Position sum after this frame. */
  readonly sum: number
  readonly position: string
  /** After the caught-up point: only a live subscriber can fall behind (history is behind by definition). */
  readonly live: boolean
}

const encoder = new TextEncoder()
const keepalive = encoder.encode(": keepalive\n\n")

const idLine = (position: string) => position === "" ? "" : `id: ${position}\n`

/** Every partition's watermark, read at most every `ttlMs` however many subscribers ask. */
export const watermarkCache = (engine: EngineShape, ttlMs: number): Effect.Effect<ReadonlyArray<number>, Errors.Unavailable> => {
  let at = -Infinity
  let value: ReadonlyArray<number> = []
  return Effect.flatMap(Clock.currentTimeMillis, (now) => {
    if (now - at < ttlMs / 2) return Effect.succeed(value)
    return Effect.map(engine.partitions, (all) => {
      value = all.map((s) => s.watermark)
      at = now
      return value
    })
  })
}

export const body = (
  subscription: {
    readonly partitions: ReadonlyArray<number>
    readonly pages: Stream.Stream<Subscription.Page, Errors.Unavailable>
  },
  options: Options
): Stream.Stream<Uint8Array> =>
  Stream.unwrap(Effect.gen(function*() {
    const queue = yield* Queue.bounded<Frame, Cause.Done>(Math.max(1, options.windowEventsMax))
    const tracker = Subscription.tokens(subscription.partitions)

    let live = false
    const framesOf = (page: Subscription.Page): Array<Frame> => {
      const frames: Array<Frame> = []
      tracker.page(page, (event, position, sum) => {
        frames.push({ text: `${idLine(position)}data: ${JSON.stringify(Event.toRecorded(event))}\n\n`, sum, position, live })
      })
      const position = tracker.format()
      if (page.caughtUp) {
        live = true
        frames.push({
          text: `event: caught-up\n${idLine(position)}data: ${JSON.stringify({ position })}\n\n`,
          sum: tracker.sum(),
          position,
          live
        })
      } else if (frames.length === 0) {
        frames.push({ text: "", sum: tracker.sum(), position, live })
      }
      return frames
    }

    // The reader: pulls pages only while the window has room (offerAll suspends when the queue is full).
    yield* subscription.pages.pipe(
      Stream.runForEach((page) => Queue.offerAll(queue, framesOf(page))),
      Effect.catch((error) =>
        Queue.offer(queue, {
          text: `event: error\ndata: ${JSON.stringify({ _tag: error._tag, message: error.message })}\n\n`,
          sum: tracker.sum(),
          position: tracker.format(),
          live
        })
      ),
      Effect.andThen(Queue.end(queue)),
      Effect.forkScoped
    )

    let lastCheck = -Infinity
    let lagging = false
    const inPartitions = subscription.partitions

    /** The `lagging` frame to send before `frames`, if the subscriber just fell behind. */
    const lagCheck = (sum: number, position: string) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (now - lastCheck < options.lagCheckMs) return ""
        lastCheck = now
        const heads = yield* Effect.orElseSucceed(options.heads, () => [] as ReadonlyArray<number>)
        if (heads.length === 0) return ""
        let head = 0
        for (const p of inPartitions) head += heads[p] ?? 0
        const lag = Math.max(0, head - sum)
        if (lag > options.lagEventsMax && !lagging) {
          lagging = true
          return `event: lagging\ndata: ${JSON.stringify({ lag, max: options.lagEventsMax, position })}\n\n`
        }
        if (lag <= options.lagEventsMax / 2) lagging = false
        return ""
      })

    // The connection's pull: called only when the socket took the previous chunk.
    const pull: Effect.Effect<readonly [Uint8Array], Cause.Done> = Effect.gen(function*() {
      while (true) {
        const taken = yield* Queue.takeBetween(queue, 1, 256).pipe(Effect.timeoutOption(options.keepaliveMs))
        if (Option.isNone(taken)) return [keepalive] as const
        let text = ""
        let last: Frame | undefined
        for (const frame of taken.value) {
          text += frame.text
          last = frame
        }
        const notice = last === undefined || !last.live ? "" : yield* lagCheck(last.sum, last.position)
        if (notice !== "" || text !== "") return [encoder.encode(notice + text)] as const
      }
    })

    return Stream.fromPull(Effect.succeed(pull)).pipe(Stream.interruptWhen(options.closing))
  }))
