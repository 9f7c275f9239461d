/**
 * Declarative reducers for state reconstruction over HTTP (safe: no user code runs on the server).
 * The SDK's embedded mode additionally accepts any function `(state, event) => state`.
 *
 *  - `merge` (default): shallow-merges each event's `data` object into the state (last writer wins per field);
 *  - `count`: the number of events;
 *  - `last`: the `data` of the last event;
 *  - `sum:<field>`: the sum of the numeric field `<field>` of each event's `data`.
 */
import { Option } from "effect"
import type { StoredEvent } from "./Event.ts"

export interface Reducer<S = unknown> {
  /** Stable name; snapshots are cached per (stream, reducer name). */
  readonly name: string
  readonly initial: S
  readonly step: (state: S, event: StoredEvent) => S
}

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

export const merge: Reducer<Record<string, unknown>> = {
  name: "merge",
  initial: {},
  step: (state, event) => isObject(event.data) ? { ...state, ...event.data } : state
}

export const count: Reducer<number> = { name: "count", initial: 0, step: (n) => n + 1 }

export const last: Reducer<unknown> = { name: "last", initial: null, step: (_, event) => event.data }

export const sum = (field: string): Reducer<number> => ({
  name: `sum:${field}`,
  initial: 0,
  step: (total, event) => {
    const value = isObject(event.data) ? event.data[field] : undefined
    return typeof value === "number" && Number.isFinite(value) ? total + value : total
  }
})

/** The built-in reducer named `name`, or `None`. */
export const fromName = (name: string): Option.Option<Reducer> => {
  if (name === "merge") return Option.some(merge as Reducer)
  if (name === "count") return Option.some(count as Reducer)
  if (name === "last") return Option.some(last)
  const m = /^sum:([A-Za-z0-9_]{1,128})$/.exec(name)
  return m ? Option.some(sum(m[1]!) as Reducer) : Option.none()
}
