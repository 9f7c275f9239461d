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
 *    partition's index; nothing is buffered for it beyond one step: at most `pageEventsMax` per partition and, when
 *    `stepEventsMax` is given, at most that many in all (the window of an SSE subscriber, a consumer group's buffer).
 *
 * Two views of the same reading: `pages` (what consumer groups, projections and SSE build on: every step's events
 * with the position vector reached, also when nothing matched, so progress and lag are exact under any filter) and
 * `make` (one item per event, each with its own resume token, and the `CaughtUp` marker).
 */
import { Array as Arr, Effect, Option, Stream } from "effect"
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
  /**
   * Events one step may read over all partitions together (default: no bound beyond `pageEventsMax` each). Steps
   * start at a different partition each time, so a busy partition cannot starve the others of this budget.
   */
  readonly stepEventsMax?: number | undefined
}

/** One step of a subscription: what it read, and how far it has looked in every partition. */
export interface Page {
  /** Matching events, grouped by partition, each partition's in sequence order. Possibly empty. */
  readonly events: ReadonlyArray<Event.StoredEvent>
  /**
   * The position vector after this page (partition → last sequence examined, matched or not). A fresh map per
   * page: it may be kept. Resuming from it (`formatPositions`) delivers exactly what comes after this page.
   */
  readonly positions: ReadonlyMap<number, number>
  /** True on the one page at which the history that existed at subscription time has been read. */
  readonly caughtUp: boolean
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

/** The sum of a position vector's sequences: with the sum of the watermarks, how far behind a reader is. */
export const positionSum = (positions: ReadonlyMap<number, number>): number => {
  let sum = 0
  for (const s of positions.values()) sum += s
  return sum
}

/**
 * Resume tokens event by event inside a page: the position right after each event is the previous page's vector,
 * with the partitions examined before the event's own moved to where the page left them, and the event's own
 * partition at the event. Tokens are built from cached `p:seq` parts, so a token costs no sort, and within a run of
 * one partition's events only two concatenations.
 */
export const tokens = (partitions: ReadonlyArray<number>) => {
  const sorted = [...partitions].sort((a, b) => a - b)
  const index = new Map(sorted.map((p, i) => [p, i]))
  const parts: Array<string> = sorted.map(() => "")
  const seqs: Array<number> = sorted.map(() => 0)
  let sum = 0
  const set = (p: number, seq: number) => {
    const i = index.get(p)!
    sum += seq - seqs[i]!
    seqs[i] = seq
    parts[i] = seq > 0 ? `${p}:${seq}` : ""
  }
  const join = (some: ReadonlyArray<string>): string => {
    let out = ""
    for (const part of some) {
      if (part === "") continue
      out = out === "" ? part : `${out},${part}`
    }
    return out
  }
  const format = (): string => join(parts)
  return {
    /** Starts from a position vector (partitions not listed: 0). */
    reset: (positions: ReadonlyMap<number, number>) => {
      for (const p of sorted) set(p, positions.get(p) ?? 0)
    },
    /**
     * Walks a page: `onEvent` gets each event with its token and the position sum after it; afterwards the
     * tracker stands at the page's positions.
     */
    page: (page: Page, onEvent: (event: Event.StoredEvent, token: string, sum: number) => void) => {
      let current = -1
      // Within a run of one partition's events only that partition's part changes: the parts before and after it
      // are joined once per run, so a token costs two concatenations however many partitions there are.
      let before = ""
      let after = ""
      for (const event of page.events) {
        const p = event.partition
        if (p !== current) {
          if (current !== -1) set(current, page.positions.get(current) ?? 0)
          current = p
          const i = index.get(p)!
          before = join(parts.slice(0, i))
          after = join(parts.slice(i + 1))
        }
        set(p, event.seq)
        const own = parts[index.get(p)!]!
        const token = before === "" ? (after === "" ? own : `${own},${after}`) : after === "" ? `${before},${own}` : `${before},${own},${after}`
        onEvent(event, token, sum)
      }
      for (const p of sorted) set(p, page.positions.get(p) ?? 0)
    },
    format,
    sum: () => sum
  }
}

/**
 * The pages of a subscription over `partitions` (all of a tenant's, or the one of its stream). `from` must be valid
 * (see `parseFrom`); positions of partitions not listed start at 0. The first page is the starting point (no events,
 * the positions the subscription starts from, `from` clamped to the watermarks). After it, pages without events are
 * emitted only when positions moved (or at the caught-up point); an idle subscription waits on the watermarks.
 */
export const pages = (
  router: PartitionRouter,
  tenant: string,
  partitions: ReadonlyArray<number>,
  from: ReadonlyMap<number, number> | "now",
  options: Options
): Stream.Stream<Page, Errors.Unavailable> =>
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
      streamPrefix: options.streamPrefix
    }
    const n = partitions.length
    let start = 0

    const step = Effect.gen(function*() {
      const events: Array<Event.StoredEvent> = []
      let progressed = false
      let budget = options.stepEventsMax ?? Infinity
      for (let k = 0; k < n && budget > 0; k++) {
        const p = partitions[(start + k) % n]!
        const at = positions.get(p)!
        const page = yield* router.follow(p, tenant, {
          ...scanOptions,
          limit: Math.min(options.pageEventsMax, budget),
          fromSeq: at + 1
        })
        for (const event of page.events) events.push(event)
        budget -= page.events.length
        if (page.through > at) {
          positions.set(p, page.through)
          progressed = true
        }
      }
      start = n === 0 ? 0 : (start + 1) % n
      let caughtUpNow = false
      if (!caughtUp && partitions.every((p) => positions.get(p)! >= head.get(p)!)) {
        caughtUp = true
        caughtUpNow = true
      }
      if (events.length === 0 && !progressed && !caughtUpNow) {
        // Nothing new anywhere: sleep until some partition's watermark passes our position (bounded wait).
        yield* Effect.raceAll(
          partitions.map((p) => router.awaitWatermark(p, positions.get(p)! + 1, options.idleWaitMs))
        )
        return []
      }
      return [{ events, positions: new Map(positions), caughtUp: caughtUpNow }]
    })

    const origin: Page = { events: [], positions: new Map(positions), caughtUp: false }
    return Stream.concat(
      Stream.succeed(origin),
      Stream.paginate(undefined, () => Effect.map(step, (out) => [out, Option.some(undefined)] as const))
    )
  }))

/**
 * The subscription over `partitions` as items: one per event, each with its resume token, and `CaughtUp` once.
 * `from` must be valid (see `parseFrom`); positions of partitions not listed start at 0.
 */
export const make = (
  router: PartitionRouter,
  tenant: string,
  partitions: ReadonlyArray<number>,
  from: ReadonlyMap<number, number> | "now",
  options: Options
): Stream.Stream<Item, Errors.Unavailable> =>
  Stream.suspend(() => {
    const tracker = tokens(partitions)
    return pages(router, tenant, partitions, from, options).pipe(
      Stream.map((page) => {
        const items: Array<Item> = []
        tracker.page(page, (event, position) => void items.push({ _tag: "Event", event, position }))
        if (page.caughtUp) items.push({ _tag: "CaughtUp", position: tracker.format() })
        return items
      }),
      Stream.filter((items): items is Arr.NonEmptyArray<Item> => items.length > 0),
      Stream.flattenArray
    )
  })
