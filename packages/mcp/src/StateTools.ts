/**
 * The state tools: `reconstruct_state` (an entity's state folded from its events, now or at any past instant) and
 * `compare_states` (the same entity at two points, with a structural diff and the events in between — "what changed
 * and which events did it"). This module owns the points in an entity's history a model can name: an instant (ISO
 * or a phrase, folded by the store with its snapshots) or a version (`v12`, folded here from the stream, bounded),
 * and the selection of a sub-value (`path`) so a large state need not be shown whole.
 */
import { Effect, Option, Schema } from "effect"
import { Errors, type Event, Reducer } from "@chronos/domain"
import * as ChronosTool from "./ChronosTool.ts"
import * as Diff from "./Diff.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import type { McpStoreShape } from "./McpStore.ts"
import * as Render from "./Render.ts"
import { iso } from "./TimeExpression.ts"
import { fromDomain, type ToolError, toolError } from "./ToolError.ts"
import * as Params from "./ToolParams.ts"

type StoredEvent = Event.StoredEvent

const reducerArg = Schema.optionalKey(
  Schema.String.annotate({
    description: "How events fold into state: merge (default: shallow-merge each event's data object; a field holds " +
      "its last written value), count, last (the last event's data), sum:<field> (e.g. sum:amount for a balance " +
      "kept as signed amounts).",
    default: "merge"
  })
)

const pathArg = Schema.optionalKey(
  Schema.String.annotate({
    description: "Only this part of the state, e.g. balance, lines[2].qty, or address.city. Use it for large states."
  })
)

// ---- points in history ----------------------------------------------------------------------------------------------

/** A point in an entity's history as the model named it: a store `asOf` (time or positions) or a version. */
type Point = { readonly _tag: "AsOf"; readonly asOf: string | undefined } | { readonly _tag: "Version"; readonly version: number }

const pointOf = (field: string, text: string | undefined, now: number): Effect.Effect<Point, ToolError> => {
  if (text === undefined || text.trim() === "" || text.trim().toLowerCase() === "now") {
    return Effect.succeed({ _tag: "AsOf", asOf: undefined })
  }
  const v = /^v(?:ersion)?\s*(\d+)$/i.exec(text.trim())
  if (v !== null) return Effect.succeed({ _tag: "Version", version: Number(v[1]) })
  return Params.asOfOf(text, now).pipe(
    Effect.map((asOf): Point => ({ _tag: "AsOf", asOf })),
    Effect.mapError((e) => toolError(e.code, `${field}: ${e.message}, or a version like v12`))
  )
}

interface Folded {
  readonly version: number
  readonly state: unknown
  /** The last event folded (absent when the stream had none at that point). */
  readonly last: StoredEvent | undefined
}

const storeErrors = <A, E extends Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable | Errors.StreamNotFound>(
  effect: Effect.Effect<A, E>
): Effect.Effect<A, ToolError> => Effect.mapError(effect, (e) => fromDomain(e))

/** The state at a point; a stream that did not exist then folds to version -1 and the reducer's initial state. */
const stateAt = (
  context: ChronosTool.ToolContext,
  engine: McpStoreShape,
  tenant: string,
  stream: string,
  reducerName: string,
  point: Point
): Effect.Effect<Folded, ToolError> =>
  Effect.gen(function*() {
    const { config } = context
    const reducer = yield* Option.match(Reducer.fromName(reducerName), {
      onNone: () =>
        Effect.fail(toolError("InvalidRequest", `unknown reducer ${JSON.stringify(reducerName)}: use merge, count, ` +
          `last or sum:<field>`)),
      onSome: Effect.succeed
    })
    if (point._tag === "AsOf") {
      const result = yield* engine.state(tenant, stream, reducer, point.asOf).pipe(
        Effect.map((r) => ({ version: r.version, state: r.state })),
        Effect.catchTag("StreamNotFound", () => Effect.succeed({ version: -1, state: reducer.initial })),
        storeErrors
      )
      const last = result.version < 0
        ? undefined
        : (yield* storeErrors(engine.readStream(tenant, stream, { fromVersion: result.version, limit: 1, asOf: point.asOf })))[0]
      return { ...result, last }
    }
    // A version: fold the stream here, page by page, bounded (the store's snapshots only serve instants).
    let state = reducer.initial
    let last: StoredEvent | undefined
    let from = 0
    const pageSize = Math.min(config.scanPageEventsMax, engine.config.readEventsMax)
    while (from <= point.version) {
      if (from >= config.queryScanEventsMax) {
        return yield* toolError("LimitExceeded", `folding to v${point.version} would read more than ` +
          `${config.queryScanEventsMax} events here; name the point by time instead (the store folds times with ` +
          `snapshots)`)
      }
      const limit = Math.min(pageSize, point.version - from + 1)
      const page = yield* storeErrors(engine.readStream(tenant, stream, { fromVersion: from, limit }))
      for (const e of page) {
        state = reducer.step(state, e)
        last = e
      }
      if (page.length < limit) break
      from += page.length
    }
    if (last === undefined) return { version: -1, state: reducer.initial, last: undefined }
    if (last.streamVersion < point.version) {
      return yield* toolError("InvalidRequest", `${stream} has no version ${point.version}: it is at version ` +
        `${last.streamVersion}`)
    }
    return { version: last.streamVersion, state, last }
  })

/** `lines[2].qty` → the value there, or a message naming what exists. */
const select = (state: unknown, path: string | undefined): { value: unknown } | { missing: string } => {
  if (path === undefined || path.trim() === "") return { value: state }
  const parts = path.trim().replace(/\[(\d+)\]/g, ".$1").split(".").filter((p) => p !== "")
  let value: unknown = state
  for (let i = 0; i < parts.length; i++) {
    const key = parts[i]!
    if (typeof value !== "object" || value === null || !(key in value)) {
      const here = parts.slice(0, i).join(".") || "(state)"
      const keys = typeof value === "object" && value !== null ? Object.keys(value).slice(0, 30) : []
      return {
        missing: `no ${key} in ${here}` + (keys.length > 0 ? `; it has ${keys.join(", ")}` : `; it is ${JSON.stringify(value)}`)
      }
    }
    value = (value as Record<string, unknown>)[key]
  }
  return { value }
}

const LastEvent = Schema.Struct({ version: Schema.Int, type: Schema.String, time: Schema.String })

const lastEventOf = (e: StoredEvent | undefined) =>
  e === undefined ? undefined : { version: e.streamVersion, type: e.type, time: iso(e.timestamp) }

// ---- reconstruct_state ----------------------------------------------------------------------------------------------

export const StateResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.optionalKey(Schema.String),
  stream: Schema.String,
  reducer: Schema.String,
  at: Schema.String.annotate({ description: "The point folded to: now, an ISO instant, positions, or vN" }),
  version: Schema.Int.annotate({ description: "Version of the last event folded" }),
  lastEvent: Schema.optionalKey(LastEvent),
  path: Schema.optionalKey(Schema.String),
  state: Schema.Unknown,
  truncated: Schema.Boolean,
  note: Schema.optionalKey(Schema.String)
})
type StateResult = typeof StateResult.Type

const describePoint = (point: Point) =>
  point._tag === "Version" ? `v${point.version}` : point.asOf === undefined ? "now" : point.asOf

export const reconstructState = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "reconstruct_state",
    title: "Reconstruct state",
    description: `An entity's state folded from its stream's events — now, at a past instant (asOf), or at a version (v12) — with the version and last event it reflects.

Use it for: the current state of an entity; compliance as-of ("what did we know about X on 2026-10-01?" — asOf shows only what had been recorded by then); debugging a state (see it at the time it went wrong, then compare_states / get_stream to find the event that did it).
Do not use it to list events (get_stream) or compare two points (compare_states does both folds and the diff).
Reducers: merge (default) keeps each field's last written value; sum:amount computes e.g. a balance from signed amounts; count; last. Pick the one matching how the entity's events encode its state (describe_store shows the data shapes).
Large states are cut to ${config.resultBytesMax} bytes keeping their structure; use path to look inside (e.g. path: "lines[3]").
Errors: StreamNotFound (no such stream, or it had no events yet at that time — note asOf is inclusive and in UTC), InvalidRequest (unknown reducer).`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      stream: Params.stream,
      asOf: Schema.optionalKey(Schema.String.annotate({
        description: "The point to fold to: an instant (ISO or a phrase like 'yesterday', 'end of yesterday'), a " +
          "position vector, or a version like v12. Default: now."
      })),
      reducer: reducerArg,
      path: pathArg,
      fork: Params.fork
    }),
    output: StateResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        const reducer = params.reducer ?? "merge"
        const point = yield* pointOf("asOf", params.asOf, context.now)
        const store = yield* context.storeFor(tenant, params.fork)
        const folded = yield* stateAt(context, store, tenant, params.stream, reducer, point)
        if (folded.version < 0) {
          return yield* fromDomain(new Errors.StreamNotFound({ tenant, stream: params.stream })).pipe(
            (e) => Effect.fail(point._tag === "AsOf" && point.asOf !== undefined
              ? toolError(e.code, `${e.message} Folded as of ${point.asOf}: the stream may only start later.`)
              : e)
          )
        }
        const selected = select(folded.state, params.path)
        if ("missing" in selected) return yield* toolError("InvalidPath", `path ${params.path}: ${selected.missing}`)
        const shown = Render.bounded(selected.value, config.resultBytesMax - Render.envelopeBytes)
        yield* context.remember((s) => ({ ...s, tenant }))
        const at = describePoint(point)
        const structured: StateResult = Render.defined({
          tenant,
          fork: params.fork,
          stream: params.stream,
          reducer,
          at,
          version: folded.version,
          lastEvent: lastEventOf(folded.last),
          path: params.path,
          state: shown.value,
          truncated: shown.cut,
          note: shown.cut ? "state cut to the result budget; use path to see a part of it whole" : undefined
        })
        const last = folded.last
        const text = `${params.stream} · tenant ${tenant}${params.fork === undefined ? "" : ` · fork ${params.fork}`} · ${at} · v${folded.version}` +
          (last === undefined ? "" : ` (last event ${last.type} at ${iso(last.timestamp)})`) + ` · reducer ${reducer}\n` +
          `${params.path === undefined ? "state" : params.path}: ${Render.json(shown.value)}` +
          (shown.cut ? "\nnote: state cut to the result budget; use path to see a part of it whole" : "")
        return { structured, text }
      })
  })

// ---- compare_states -------------------------------------------------------------------------------------------------

const Side = Schema.Struct({
  at: Schema.String,
  version: Schema.Int.annotate({ description: "-1: the stream had no events yet" }),
  lastEvent: Schema.optionalKey(LastEvent)
})

export const CompareResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.optionalKey(Schema.String),
  stream: Schema.String,
  reducer: Schema.String,
  path: Schema.optionalKey(Schema.String),
  from: Side,
  to: Side,
  changes: Schema.Array(Schema.Struct({
    path: Schema.String,
    change: Schema.Literals(["added", "removed", "changed"]),
    before: Schema.optionalKey(Schema.Unknown),
    after: Schema.optionalKey(Schema.Unknown),
    delta: Schema.optionalKey(Schema.Number)
  })),
  totalChanges: Schema.Int,
  eventsBetween: Schema.Int.annotate({ description: "Events between the two points (versions from+1..to)" }),
  events: Schema.Array(Schema.String).annotate({ description: "The first events between, one line each" }),
  note: Schema.optionalKey(Schema.String)
})
type CompareResult = typeof CompareResult.Type

export const compareStates = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "compare_states",
    title: "Compare an entity at two points",
    description: `One entity's state at two points in its history, a structural diff (each added/removed/changed field with before, after and numeric delta), and the events between the two points that caused it.

Use it for: "what changed in account-42 since yesterday and why", finding when and how a state went wrong (bisect: compare wide, then narrow the window), checking what a correction will change (compare before and after the fix), explaining a state to a user.
Points: from (required) and to (default now), each an instant (ISO or phrase), a position vector, or a version like v12. A stream that did not exist at from compares from empty.
Bounded: at most ${config.diffEntriesMax} changes and ${config.eventsDefault} event lines are listed (totals are always given); get_stream with fromVersion reads the rest. Errors: StreamNotFound (no events at 'to'), InvalidTime, InvalidPath.`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      stream: Params.stream,
      from: Schema.String.annotate({
        description: "The earlier point: an instant (ISO or a phrase like 'yesterday', '2 hours ago'), a position " +
          "vector, or a version like v3."
      }),
      to: Schema.optionalKey(Schema.String.annotate({ description: "The later point (same forms). Default: now." })),
      reducer: reducerArg,
      path: pathArg,
      fork: Params.fork
    }),
    output: CompareResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        const reducer = params.reducer ?? "merge"
        const fromPoint = yield* pointOf("from", params.from, context.now)
        const toPoint = yield* pointOf("to", params.to, context.now)
        const store = yield* context.storeFor(tenant, params.fork)
        const [a, b] = yield* Effect.all([
          stateAt(context, store, tenant, params.stream, reducer, fromPoint),
          stateAt(context, store, tenant, params.stream, reducer, toPoint)
        ], { concurrency: 2 })
        if (b.version < 0) return yield* fromDomain(new Errors.StreamNotFound({ tenant, stream: params.stream }))
        if (a.version > b.version) {
          return yield* toolError("InvalidTime", `from (${describePoint(fromPoint)}, v${a.version}) is later than to ` +
            `(${describePoint(toPoint)}, v${b.version}); swap them`)
        }
        const before = select(a.version < 0 ? null : a.state, params.path)
        const after = select(b.state, params.path)
        if ("missing" in after) return yield* toolError("InvalidPath", `path ${params.path}: ${after.missing}`)
        const result = Diff.diff("missing" in before ? null : before.value, after.value, config.diffEntriesMax)
        const between = b.version - a.version
        const lineLimit = Math.min(config.eventsDefault, between)
        const events = lineLimit <= 0
          ? []
          : yield* storeErrors(store.readStream(tenant, params.stream, { fromVersion: a.version + 1, limit: lineLimit }))
        const view: Render.EventView = { stream: false, withMetadata: false, payloadBytesMax: config.payloadBytesMax }
        const budget = Math.floor((config.resultBytesMax - Render.envelopeBytes) / 2)
        const changeLines = Render.fit(
          result.changes,
          (c) => {
            const value = Render.defined({
              path: c.path,
              change: c.change,
              before: c.before === undefined ? undefined : Render.payload(c.before, config.payloadBytesMax),
              after: c.after === undefined ? undefined : Render.payload(c.after, config.payloadBytesMax),
              delta: c.delta
            })
            const line = `${c.change} ${c.path}: ` +
              (c.change === "added" ? Render.json(value.after) : c.change === "removed" ? `was ${Render.json(value.before)}`
              : `${Render.json(value.before)} → ${Render.json(value.after)}${c.delta === undefined ? "" : ` (${c.delta >= 0 ? "+" : ""}${c.delta})`}`)
            return { line, value }
          },
          budget
        )
        const eventLines = Render.fit(events, (e) => {
          const line = Render.eventLine(e, view)
          return { line, value: line }
        }, budget)
        const notes: Array<string> = []
        if (result.total > changeLines.values.length) notes.push(`${result.total - changeLines.values.length} more changes not listed (use path to focus)`)
        if (between > eventLines.values.length) {
          notes.push(`${between - eventLines.values.length} more events between; get_stream fromVersion ` +
            `${a.version + 1 + eventLines.values.length} reads them`)
        }
        if (a.version < 0) notes.push("the stream had no events at 'from': compared from empty")
        const note = notes.length > 0 ? notes.join("; ") : undefined
        yield* context.remember((s) => ({ ...s, tenant }))
        const side = (point: Point, f: Folded) => Render.defined({ at: describePoint(point), version: f.version, lastEvent: lastEventOf(f.last) })
        const structured: CompareResult = Render.defined({
          tenant,
          fork: params.fork,
          stream: params.stream,
          reducer,
          path: params.path,
          from: side(fromPoint, a),
          to: side(toPoint, b),
          changes: changeLines.values,
          totalChanges: result.total,
          eventsBetween: between,
          events: eventLines.values,
          note
        })
        const text = [
          `${params.stream} · tenant ${tenant}${params.fork === undefined ? "" : ` · fork ${params.fork}`} · ${describePoint(fromPoint)} (v${a.version}) → ${describePoint(toPoint)} ` +
          `(v${b.version}) · reducer ${reducer}${params.path === undefined ? "" : ` · path ${params.path}`}`,
          `${result.total} changes:`,
          ...changeLines.lines,
          `${between} events between:`,
          ...eventLines.lines,
          ...(note === undefined ? [] : [`note: ${note}`])
        ].join("\n")
        return { structured, text }
      })
  })
