/**
 * Catch-up + live subscriptions: every committed event of a tenant (or of one stream, or of some event types or a
 * stream prefix), in per-partition order, from a position vector, the start or now; history first, then a single
 * `CaughtUp` marker, then live events as the partitions' watermarks advance.
 *
 * Guarantees, and why they hold:
 *  - nothing above a watermark is ever delivered: it reads with `Partition.follow`, bounded by the watermark;
 *  - nothing is skipped: each partition's position only moves to what `follow` reports it examined (`through`),
 *    whether or not anything matched;
 *  - nothing is delivered twice within a subscription, and resuming from an emitted position delivers exactly the
 *    remainder: positions are per partition and strictly increase;
 *  - a slow consumer never slows writers or other subscribers: the stream is pulled, a page at a time, from the
 *    partition's index; nothing is buffered for it beyond one page (`subscriptionPageEventsMax`).
 */
import { Effect, Option, Stream } from "effect"
import { AsOf, type Errors, type Event } from "@chronos/domain"
import type { PartitionRouter } from "./Engine.ts"

export type Item =
  | {
    readonly _tag: "Event"
    readonly event: Event.StoredEvent
    /** Resume token: the position vector right after this event (`p:seq,…`, see `AsOf`). */
    readonly position: string
  }
  | { readonly _tag: "CaughtUp"; readonly position: string }

export interface Options {
  readonly types?: ReadonlyArray<string> | undefined
  readonly stream?: string | undefined
  readonly streamPrefix?: string | undefined
  /** Events read from one partition per step. */
  readonly pageEventsMax: number
  /** How long one wait for new events may last before the subscription looks again (keeps waits bounded). */
  readonly idleWaitMs: number
}

/**
 * Parses `from` — `start`, `now`, or a position vector `p:seq,…` (events after it; unlisted partitions from the
 * start) — into a map of partition → last delivered sequence, or `"now"`.
 */
export const parseFrom = (from: string): Option.Option<ReadonlyMap<number, number> | "now"> => {
  if (from === "start") return Option.some(new Map())
  if (from === "now") return Option.some("now")
  return Option.flatMap(AsOf.parse(from), (a) => a._tag === "Positions" ? Option.some(a.positions) : Option.none())
}

export const formatPositions = (positions: ReadonlyMap<number, number>): string =>
  [...positions].filter(([, s]) => s > 0).sort(([a], [b]) => a - b).map(([p, s]) => `${p}:${s}`).join(",")

/**
 * The subscription over `partitions` (all of a tenant's, or the one of its stream). `from` must be valid (see
 * `parseFrom`); positions of partitions not listed start at 0.
 */
export const make = (
  router: PartitionRouter,
  tenant: string,
  partitions: ReadonlyArray<number>,
  from: ReadonlyMap<number, number> | "now",
  options: Options
): Stream.Stream<Item, Errors.Unavailable> =>
  Stream.unwrap(Effect.gen(function*() {
    const positions = new Map<number, number>()
    // The head at subscription time: history ends when every partition has been examined up to it.
    const head = new Map<number, number>()
    yield* Effect.forEach(partitions, (p) =>
      Effect.map(router.status(p), (s) => {
        head.set(p, s.watermark)
        positions.set(p, from === "now" ? s.watermark : Math.min(from.get(p) ?? 0, s.watermark))
      }), { concurrency: "unbounded", discard: true })
    let caughtUp = false
    const scanOptions = {
      types: options.types,
      stream: options.stream,
      streamPrefix: options.streamPrefix,
      limit: options.pageEventsMax
    }

    const step = Effect.gen(function*() {
      const items: Array<Item> = []
      let progressed = false
      for (const p of partitions) {
        const at = positions.get(p)!
        const page = yield* router.follow(p, tenant, { ...scanOptions, fromSeq: at + 1 })
        for (const event of page.events) {
          positions.set(p, event.seq)
          items.push({ _tag: "Event", event, position: formatPositions(positions) })
        }
        if (page.through > at) {
          positions.set(p, page.through)
          progressed = true
        }
      }
      if (!caughtUp && partitions.every((p) => positions.get(p)! >= head.get(p)!)) {
        caughtUp = true
        items.push({ _tag: "CaughtUp", position: formatPositions(positions) })
      }
      if (items.length === 0 && !progressed) {
        // Nothing new anywhere: sleep until some partition's watermark passes our position (bounded wait).
        yield* Effect.raceAll(
          partitions.map((p) => router.awaitWatermark(p, positions.get(p)! + 1, options.idleWaitMs))
        )
      }
      return items
    })

    return Stream.paginate(undefined, () => Effect.map(step, (items) => [items, Option.some(undefined)] as const))
  }))
