/**
 * How events and values are shown to a model: the compact one-line form (`v3 2026-11-23T10:00:00Z acct-1 Deposited
 * {"amount":5}`), the JSON form, payload truncation with a visible marker, and the byte budget that every tool
 * result is cut to. This module owns "never unbounded": a result is built item by item and stops before the budget,
 * and the caller turns the stop into a cursor so that nothing is skipped.
 */
import { Schema } from "effect"
import type { Event } from "@chronos/domain"
import { iso } from "./TimeExpression.ts"

type StoredEvent = Event.StoredEvent

/**
 * Bytes of a result kept for what surrounds its items (header, notes, cursor, field names): items are fitted to
 * `resultBytesMax - envelopeBytes`, so the whole result stays within `resultBytesMax`.
 */
export const envelopeBytes = 2_000

/** UTF-8 bytes of a string. */
export const byteLength = (text: string): number => Buffer.byteLength(text)

/** Cuts `text` to at most `max` bytes of UTF-8 (never inside a character) and appends a marker saying how much. */
export const cut = (text: string, max: number): string => {
  const total = byteLength(text)
  if (total <= max) return text
  const buffer = Buffer.from(text)
  let end = max
  // Step back over UTF-8 continuation bytes (10xxxxxx) so the cut lands on a character boundary.
  while (end > 0 && (buffer[end]! & 0xc0) === 0x80) end--
  return `${buffer.subarray(0, end).toString()}…[+${total - end} bytes]`
}

/** JSON text of a value, `undefined` as `null` (JSON has no undefined). */
export const json = (value: unknown): string => JSON.stringify(value) ?? "null"

/** A payload as shown in JSON results: itself when small, else a marked preview (the full value: `get_stream`). */
export const payload = (value: unknown, max: number): unknown => {
  const text = json(value)
  return byteLength(text) <= max ? value : { $truncated: cut(text, max), bytes: byteLength(text) }
}

export interface EventView {
  /** Show the stream id (results spanning streams); one stream's read leaves it out. */
  readonly stream: boolean
  readonly withMetadata: boolean
  readonly payloadBytesMax: number
}

/** `v3 2026-11-23T10:00:00Z [stream ]Type {"data":…}[ meta={…}]` */
export const eventLine = (e: StoredEvent, view: EventView): string => {
  let line = `v${e.streamVersion} ${iso(e.timestamp)} ${view.stream ? `${e.stream} ` : ""}${e.type} ` +
    cut(json(e.data), view.payloadBytesMax)
  if (view.withMetadata && Object.keys(e.metadata).length > 0) {
    line += ` meta=${cut(json(e.metadata), view.payloadBytesMax)}`
  }
  return line
}

export interface EventJson {
  readonly stream: string
  readonly version: number
  readonly type: string
  readonly time: string
  /** `partition:seq`, the event's global position (usable in a position-vector `asOf`). */
  readonly position: string
  readonly data: unknown
  readonly metadata?: unknown
  readonly eventId?: string
}

/** The output schema of an event in a result: a compact line, or `EventJson`. */
export const EventOut = Schema.Union([
  Schema.String,
  Schema.Struct({
    stream: Schema.String,
    version: Schema.Int,
    type: Schema.String,
    time: Schema.String,
    position: Schema.String,
    data: Schema.Unknown,
    metadata: Schema.optionalKey(Schema.Unknown),
    eventId: Schema.optionalKey(Schema.String)
  })
]).annotate({ description: "An event: a compact line, or an object in json format" })

export const eventJson = (e: StoredEvent, view: EventView): EventJson => {
  const base = {
    stream: e.stream,
    version: e.streamVersion,
    type: e.type,
    time: iso(e.timestamp),
    position: `${e.partition}:${e.seq}`,
    data: payload(e.data, view.payloadBytesMax)
  }
  return view.withMetadata ? { ...base, metadata: payload(e.metadata, view.payloadBytesMax), eventId: e.eventId } : base
}

/** What one item costs in each form of a result: its line of text and its structured value. */
export interface Rendered<J> {
  readonly line: string
  readonly value: J
}

export interface Fitted<J> {
  readonly lines: Array<string>
  readonly values: Array<J>
  /** True when items were left out to stay within the budget. */
  readonly cut: boolean
}

/**
 * Takes items in order while both the text (one line each) and the structured copy (JSON) stay within `budget`
 * bytes. At least one item is always taken when there is one (items are individually bounded by payload truncation),
 * so paging always makes progress.
 */
export const fit = <A, J>(
  items: ReadonlyArray<A>,
  render: (item: A) => Rendered<J>,
  budget: number
): Fitted<J> => {
  const lines: Array<string> = []
  const values: Array<J> = []
  let textBytes = 0
  let jsonBytes = 0
  for (const item of items) {
    const r = render(item)
    const lineBytes = byteLength(r.line) + 1
    const valueBytes = byteLength(json(r.value)) + 1
    if (lines.length > 0 && (textBytes + lineBytes > budget || jsonBytes + valueBytes > budget)) {
      return { lines, values, cut: true }
    }
    lines.push(r.line)
    values.push(r.value)
    textBytes += lineBytes
    jsonBytes += valueBytes
  }
  return { lines, values, cut: false }
}

/**
 * A JSON value cut to about `budget` bytes, keeping its structure: objects keep their first keys and say how many
 * were left out (`"…": "+12 more keys"`), arrays their first items, strings are cut with a marker. Used for states,
 * which can be any size.
 */
export const bounded = (value: unknown, budget: number): { value: unknown; cut: boolean } => {
  if (byteLength(json(value)) <= budget) return { value, cut: false }
  return { value: shrink(value, budget), cut: true }
}

const shrink = (value: unknown, budget: number): unknown => {
  if (typeof value === "string") return cut(value, Math.max(16, budget - 24))
  if (Array.isArray(value)) {
    const out: Array<unknown> = []
    let used = 2
    for (let i = 0; i < value.length; i++) {
      const item = shrink(value[i], Math.max(64, Math.floor((budget - used) / 2)))
      const cost = byteLength(json(item)) + 1
      if (used + cost > budget - 32) {
        out.push(`…+${value.length - i} more items`)
        return out
      }
      out.push(item)
      used += cost
    }
    return out
  }
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value)
    const out: Record<string, unknown> = {}
    let used = 2
    for (let i = 0; i < entries.length; i++) {
      const [key, v] = entries[i]!
      const item = shrink(v, Math.max(64, Math.floor((budget - used) / 2)))
      const cost = byteLength(json(key)) + byteLength(json(item)) + 2
      if (used + cost > budget - 32) {
        out["…"] = `+${entries.length - i} more keys`
        return out
      }
      out[key] = item
      used += cost
    }
    return out
  }
  return value
}

/** `{ a: 1, b: undefined }` as `{ a: 1 }`, typed so: structured results omit absent fields rather than send null. */
export type Defined<A> =
  & { [K in keyof A as MaybeAbsent<A[K]> extends true ? never : K]: A[K] }
  & { [K in keyof A as MaybeAbsent<A[K]> extends true ? K : never]?: Exclude<A[K], undefined> }

/** `T | undefined` is absent-able; `unknown` (a JSON value of any kind) is a required field. */
type MaybeAbsent<T> = unknown extends T ? false : undefined extends T ? true : false

export const defined = <A extends object>(a: A): Defined<A> =>
  Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined)) as Defined<A>
