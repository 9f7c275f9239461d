/**
 * Time travel cut-offs. A read with `asOf` sees the store as it was at that point:
 *  - an ISO-8601 timestamp: events committed at or before that instant;
 *  - a position vector `p:seq,p:seq,…` (as returned by `GET /v1/partitions` or carried by events): in each listed
 *    partition the events at or below `seq`; partitions not listed contribute nothing.
 */
import { Option } from "effect"

export type AsOf =
  | { readonly _tag: "Timestamp"; readonly epochMs: number }
  | { readonly _tag: "Positions"; readonly positions: ReadonlyMap<number, number> }

const positionVector = /^\d+:\d+(,\d+:\d+)*$/

/** Parses an `asOf` string; `None` when it is neither an ISO timestamp nor a position vector. */
export const parse = (input: string): Option.Option<AsOf> => {
  const text = input.trim()
  if (positionVector.test(text)) {
    const positions = new Map<number, number>()
    for (const pair of text.split(",")) {
      const [p, s] = pair.split(":")
      positions.set(Number(p), Number(s))
    }
    return Option.some({ _tag: "Positions", positions })
  }
  // Only full ISO-8601 dates (with a date part) are accepted: `Date.parse` alone accepts too much.
  if (!/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) return Option.none()
  const epochMs = Date.parse(text)
  return Number.isFinite(epochMs) ? Option.some({ _tag: "Timestamp", epochMs }) : Option.none()
}

/** Parses an ISO-8601 timestamp (for `since` / `until`). */
export const parseTimestamp = (input: string): Option.Option<number> =>
  Option.flatMap(parse(input), (a) => a._tag === "Timestamp" ? Option.some(a.epochMs) : Option.none())

/** The highest sequence of `partition` that a read at `asOf` may see (`Infinity`: no positional bound). */
export const seqBound = (asOf: AsOf | undefined, partition: number): number =>
  asOf === undefined || asOf._tag === "Timestamp" ? Infinity : (asOf.positions.get(partition) ?? 0)

/** The latest timestamp a read at `asOf` may see (`Infinity`: no time bound). */
export const timeBound = (asOf: AsOf | undefined): number =>
  asOf === undefined || asOf._tag === "Positions" ? Infinity : asOf.epochMs

/** The text form of an `AsOf`, accepted back by `parse`. */
export const format = (asOf: AsOf): string =>
  asOf._tag === "Timestamp"
    ? new Date(asOf.epochMs).toISOString()
    : [...asOf.positions].map(([p, s]) => `${p}:${s}`).join(",")
