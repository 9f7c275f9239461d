/**
 * `event_timeline`: what happened, in order, condensed — the narrative of an entity, a user journey
 * (a `correlationId` across streams) or a tenant's activity, in far fewer lines than the events. This module owns
 * the condensing: consecutive events of the same stream and type collapse into one run (`Deposited ×5, v3–v7`), or
 * events are counted per hour/day bucket and type. It folds at most `timelineScanEventsMax` events per call and says
 * when the timeline is incomplete.
 */
import { Effect, Schema } from "effect"
import type { Event } from "@chronos/domain"
import * as ChronosTool from "./ChronosTool.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import * as QueryTools from "./QueryTools.ts"
import * as Render from "./Render.ts"
import { iso } from "./TimeExpression.ts"
import { toolError } from "./ToolError.ts"
import * as Params from "./ToolParams.ts"

type StoredEvent = Event.StoredEvent

const Entry = Schema.Struct({
  from: Schema.String,
  to: Schema.String,
  count: Schema.Int,
  stream: Schema.optionalKey(Schema.String),
  type: Schema.optionalKey(Schema.String),
  versions: Schema.optionalKey(Schema.String.annotate({ description: "e.g. v3-v7" })),
  types: Schema.optionalKey(Schema.Record(Schema.String, Schema.Int).annotate({ description: "Count per type in the bucket" })),
  streams: Schema.optionalKey(Schema.Int)
})
type Entry = typeof Entry.Type

export const TimelineResult = Schema.Struct({
  tenant: Schema.String,
  groupBy: Schema.Literals(["run", "hour", "day"]),
  events: Schema.Int.annotate({ description: "Events condensed into these entries" }),
  entries: Schema.Array(Entry),
  complete: Schema.Boolean.annotate({ description: "false: more matching events exist beyond what was folded" }),
  note: Schema.optionalKey(Schema.String)
})
type TimelineResult = typeof TimelineResult.Type

const hourMs = 3_600_000
const dayMs = 24 * hourMs

const runs = (events: ReadonlyArray<StoredEvent>): Array<Entry> => {
  const out: Array<Entry> = []
  let start: StoredEvent | undefined
  let end: StoredEvent | undefined
  let count = 0
  const flush = () => {
    if (start === undefined || end === undefined) return
    out.push({
      from: iso(start.timestamp),
      to: iso(end.timestamp),
      count,
      stream: start.stream,
      type: start.type,
      versions: start.streamVersion === end.streamVersion ? `v${start.streamVersion}` : `v${start.streamVersion}-v${end.streamVersion}`
    })
  }
  for (const e of events) {
    if (start !== undefined && e.stream === start.stream && e.type === start.type) {
      end = e
      count++
      continue
    }
    flush()
    start = end = e
    count = 1
  }
  flush()
  return out
}

const buckets = (events: ReadonlyArray<StoredEvent>, size: number): Array<Entry> => {
  const out: Array<Entry> = []
  let current: { start: number; types: Record<string, number>; streams: Set<string>; count: number; last: number } | undefined
  const flush = () => {
    if (current === undefined) return
    out.push({
      from: iso(current.start),
      to: iso(current.last),
      count: current.count,
      types: current.types,
      streams: current.streams.size
    })
  }
  for (const e of events) {
    const start = Math.floor(e.timestamp / size) * size
    if (current === undefined || current.start !== start) {
      flush()
      current = { start, types: {}, streams: new Set(), count: 0, last: e.timestamp }
    }
    current.count++
    current.last = e.timestamp
    current.types[e.type] = (current.types[e.type] ?? 0) + 1
    current.streams.add(e.stream)
  }
  flush()
  return out
}

const entryLine = (e: Entry): string =>
  e.type !== undefined
    ? `${e.from}${e.to === e.from ? "" : ` → ${e.to}`} ${e.stream} ${e.type}${e.count > 1 ? ` ×${e.count}` : ""} (${e.versions})`
    : `${e.from} ${e.count} events in ${e.streams} streams: ` +
      Object.entries(e.types ?? {}).sort((a, b) => b[1] - a[1]).map(([t, n]) => `${t} ${n}`).join(", ")

export const eventTimeline = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "event_timeline",
    title: "Event timeline",
    description: `A condensed, ordered timeline: consecutive events of the same stream and type collapse into one entry (Deposited ×5, v3-v7), or (groupBy hour/day) events are counted per time bucket and type.

Use it for: the story of an entity (stream), a user journey across streams (metadata {"correlationId": "…"}), a tenant's activity pattern ("what happened last night", spikes, silences — groupBy hour), before reading details with get_stream/query_events.
Not for: exact payloads (get_stream, query_events), state (reconstruct_state).
Bounded: folds at most ${config.timelineScanEventsMax} events and returns at most ${config.timelineEntriesMax} entries; complete: false says more exist — narrow the time range. Types and time are indexed; metadata and stream prefixes are scanned (bounded).
Errors: InvalidTime (rephrase the time), StreamNotFound is not an error here: an unknown stream gives an empty timeline.`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      stream: Schema.optionalKey(Schema.String.annotate({
        description: "One entity's stream (exact id), or a prefix ending in * (e.g. 'order-*'). Default: all streams."
      })),
      metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.String).annotate({
        description: "Only events with these metadata values, e.g. {\"correlationId\": \"c-42\"} for one journey."
      })),
      types: Params.types,
      time: Schema.optionalKey(Schema.String.annotate({
        description: "A time range: 'last 24 hours', 'yesterday', 'since 2026-11-20', 'between … and …', or ISO."
      })),
      asOf: Params.asOf,
      groupBy: Schema.optionalKey(Schema.Literals(["run", "hour", "day"]).annotate({
        description: "run (default): collapse consecutive same stream+type events. hour/day: counts per bucket.",
        default: "run"
      })),
      fork: Params.fork,
      limit: Params.limit(Math.min(20, config.timelineEntriesMax), config.timelineEntriesMax, "entries")
    }),
    output: TimelineResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        if (params.stream === undefined && params.metadata === undefined && params.time === undefined &&
          params.types === undefined && (params.groupBy ?? "run") === "run") {
          // A whole tenant as runs is just its events in order; ask for a narrower question instead of a wall.
          return yield* toolError("TooBroad", "a run timeline needs a stream, metadata, types or a time range; for a " +
            "whole tenant use groupBy: 'hour' or 'day', or describe_store")
        }
        const resolved = yield* QueryTools.resolve(Render.defined({
          types: params.types,
          time: params.time,
          asOf: params.asOf,
          stream: params.stream,
          metadata: params.metadata
        }), context.now)
        const store = yield* context.storeFor(tenant, params.fork)
        const page = yield* QueryTools.execute(context, store, tenant, resolved, config.timelineScanEventsMax, undefined)
        const groupBy = params.groupBy ?? "run"
        const all = groupBy === "run" ? runs(page.events) : buckets(page.events, groupBy === "hour" ? hourMs : dayMs)
        const limit = Math.min(params.limit ?? Math.min(20, config.timelineEntriesMax), config.timelineEntriesMax)
        const fitted = Render.fit(all.slice(0, limit), (e) => ({ line: entryLine(e), value: e }), config.resultBytesMax - Render.envelopeBytes)
        const entriesCut = fitted.values.length < all.length
        const complete = page.next === undefined && !entriesCut
        const folded = fitted.values.reduce((n, e) => n + e.count, 0)
        const notes: Array<string> = []
        if (page.next !== undefined) {
          notes.push(`more than ${page.events.length} matching events (or ${page.scanned} examined): narrow the time ` +
            `range or types to see the rest`)
        }
        if (entriesCut) notes.push(`${all.length - fitted.values.length} more entries not shown; raise limit or narrow the range`)
        if (page.events.length === 0) notes.push("no matching events")
        const note = notes.length > 0 ? notes.join("; ") : undefined
        yield* context.remember((s) => ({ ...s, tenant }))
        const structured: TimelineResult = Render.defined({
          tenant,
          groupBy,
          events: folded,
          entries: fitted.values,
          complete,
          note
        })
        const header = `timeline · tenant ${tenant}${params.stream === undefined ? "" : ` · stream ${params.stream}`}` +
          `${params.metadata === undefined ? "" : ` · metadata ${JSON.stringify(params.metadata)}`}` +
          `${resolved.since === undefined ? "" : ` · since ${iso(resolved.since)}`}` +
          `${resolved.until === undefined ? "" : ` · until ${iso(resolved.until)}`} · ${folded} events in ${fitted.values.length} entries`
        return { structured, text: [header, ...fitted.lines, ...(note === undefined ? [] : [`note: ${note}`])].join("\n") }
      })
  })
