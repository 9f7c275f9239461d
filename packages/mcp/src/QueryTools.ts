/**
 * The read tools that page through events: `query_events` (a tenant's events across streams, with filters and time
 * ranges), `get_stream` (one entity's history, in version order) and `next_page` (continues whichever of the two ran
 * last in the session). This module owns their filters, their cursors and the session memory they share:
 *
 *  - filters the store indexes (event types, time, `asOf`) go to the engine and cost what they return;
 *  - filters it does not (a stream prefix, metadata values) are applied here over pages of the indexed query, and
 *    stop after `queryScanEventsMax` examined events with a cursor, so a needle-in-a-haystack query is bounded and
 *    says so instead of running long;
 *  - cursors are opaque to the model: `q:<store cursor>` (the engine's `timestamp.partition.seq`, strictly after)
 *    or `v:<version>` for one stream. A result cut by the byte budget continues right after its last event, so
 *    nothing is skipped.
 */
import { Effect, Schema } from "effect"
import { Errors, type Event } from "@chronos/domain"
import * as ChronosTool from "./ChronosTool.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import type { LastRead, OutputOptions, QueryFilters, Session } from "./McpSessions.ts"
import type { McpStoreShape } from "./McpStore.ts"
import * as Render from "./Render.ts"
import { iso } from "./TimeExpression.ts"
import { fromDomain, type ToolError, toolError } from "./ToolError.ts"
import * as Params from "./ToolParams.ts"

type StoredEvent = Event.StoredEvent

// ---- cursors --------------------------------------------------------------------------------------------------------

type Cursor = { readonly _tag: "Position"; readonly token: string } | { readonly _tag: "Version"; readonly version: number }

/** The engine's cursor for "strictly after this event" (`Engine.query`'s `after`). */
const positionOf = (e: StoredEvent): Cursor => ({ _tag: "Position", token: `${e.timestamp}.${e.partition}.${e.seq}` })

const formatCursor = (c: Cursor) => c._tag === "Position" ? `q:${c.token}` : `v:${c.version}`

const parseCursor = (text: string): Effect.Effect<Cursor, ToolError> => {
  const q = /^q:(\d+\.\d+\.\d+)$/.exec(text)
  if (q !== null) return Effect.succeed({ _tag: "Position", token: q[1]! })
  const v = /^v:(\d+)$/.exec(text)
  if (v !== null) return Effect.succeed({ _tag: "Version", version: Number(v[1]) })
  return Effect.fail(toolError("InvalidCursor", `cursor ${JSON.stringify(text)} is not one this server returned; ` +
    `pass the cursor of a previous result unchanged, or call next_page`))
}

// ---- query execution ------------------------------------------------------------------------------------------------

/** A query with its times resolved: what the engine and the post-filters run. */
export interface Resolved {
  readonly types?: ReadonlyArray<string> | undefined
  readonly since?: number | undefined
  readonly until?: number | undefined
  readonly asOf?: string | undefined
  readonly stream?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
}

export interface Page {
  readonly events: ReadonlyArray<StoredEvent>
  readonly next: Cursor | undefined
  readonly scanned: number
  /** The scan stopped at `queryScanEventsMax` examined events, not because it found enough or reached the end. */
  readonly budgetStop: boolean
}

type ReadError = Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable

const matchesMetadata = (e: StoredEvent, metadata: Readonly<Record<string, string>> | undefined) => {
  if (metadata === undefined) return true
  for (const [key, value] of Object.entries(metadata)) {
    const actual = e.metadata[key]
    if (actual === undefined || (typeof actual === "string" ? actual : JSON.stringify(actual)) !== value) return false
  }
  return true
}

/** Runs one page of a query; `limit` matches at most, cursor-continued. */
export const execute = (
  context: ChronosTool.ToolContext,
  engine: McpStoreShape,
  tenant: string,
  q: Resolved,
  limit: number,
  cursor: Cursor | undefined
): Effect.Effect<Page, ToolError> => {
  const { config } = context
  const pageSize = Math.min(config.scanPageEventsMax, config.queryScanEventsMax, engine.config.readEventsMax)
  const exact = q.stream !== undefined && !q.stream.endsWith("*") ? q.stream : undefined
  const prefix = q.stream !== undefined && q.stream.endsWith("*") ? q.stream.slice(0, -1) : undefined
  const types = q.types !== undefined && q.types.length > 0 ? new Set(q.types) : undefined
  const since = q.since === undefined ? undefined : new Date(q.since).toISOString()
  const until = q.until === undefined ? undefined : new Date(q.until).toISOString()

  const program: Effect.Effect<Page, ReadError | ToolError> = Effect.gen(function*() {
    if (exact !== undefined) {
      // One stream: read it in version order (it is time-ordered) and filter here.
      if (cursor !== undefined && cursor._tag !== "Version") {
        return yield* toolError("InvalidCursor", "this cursor belongs to a query without an exact stream filter")
      }
      let from = cursor?.version ?? 0
      const found: Array<StoredEvent> = []
      let scanned = 0
      while (true) {
        const batch = yield* engine.readStream(tenant, exact, { fromVersion: from, limit: pageSize, asOf: q.asOf })
        for (const e of batch) {
          scanned++
          if (q.until !== undefined && e.timestamp > q.until) return { events: found, next: undefined, scanned, budgetStop: false }
          if (types !== undefined && !types.has(e.type)) continue
          if (q.since !== undefined && e.timestamp < q.since) continue
          if (!matchesMetadata(e, q.metadata)) continue
          found.push(e)
          if (found.length === limit) {
            return { events: found, next: { _tag: "Version", version: e.streamVersion + 1 }, scanned, budgetStop: false }
          }
        }
        if (batch.length < pageSize) return { events: found, next: undefined, scanned, budgetStop: false }
        from = batch[batch.length - 1]!.streamVersion + 1
        if (scanned >= config.queryScanEventsMax) {
          return { events: found, next: { _tag: "Version", version: from }, scanned, budgetStop: true }
        }
      }
    }
    if (cursor !== undefined && cursor._tag !== "Position") {
      return yield* toolError("InvalidCursor", "this cursor belongs to a query of one exact stream")
    }
    const base = { types: q.types, since, until, asOf: q.asOf }
    if (prefix === undefined && q.metadata === undefined) {
      const page = yield* engine.query(tenant, { ...base, limit, after: cursor?.token })
      return {
        events: page.events,
        next: page.next === undefined ? undefined : { _tag: "Position", token: page.next },
        scanned: page.events.length,
        budgetStop: false
      }
    }
    let after = cursor?.token
    const found: Array<StoredEvent> = []
    let scanned = 0
    while (true) {
      const page = yield* engine.query(tenant, { ...base, limit: pageSize, after })
      for (const e of page.events) {
        scanned++
        if (prefix !== undefined && !e.stream.startsWith(prefix)) continue
        if (!matchesMetadata(e, q.metadata)) continue
        found.push(e)
        if (found.length === limit) return { events: found, next: positionOf(e), scanned, budgetStop: false }
      }
      if (page.next === undefined) return { events: found, next: undefined, scanned, budgetStop: false }
      after = page.next
      if (scanned >= config.queryScanEventsMax) {
        return { events: found, next: { _tag: "Position", token: after }, scanned, budgetStop: true }
      }
    }
  })
  return Effect.catchTags(program, {
    InvalidRequest: (e) => Effect.fail(fromDomain(e)),
    LimitExceeded: (e) => Effect.fail(fromDomain(e)),
    Unavailable: (e) => Effect.fail(fromDomain(e))
  })
}

// ---- output ---------------------------------------------------------------------------------------------------------

const QueryEcho = Schema.Struct({
  types: Schema.optionalKey(Schema.Array(Schema.String)),
  since: Schema.optionalKey(Schema.String),
  until: Schema.optionalKey(Schema.String),
  asOf: Schema.optionalKey(Schema.String),
  stream: Schema.optionalKey(Schema.String),
  metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.String))
}).annotate({ description: "The filters that ran, with times resolved to ISO (UTC)" })

export const QueryResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.optionalKey(Schema.String),
  query: QueryEcho,
  count: Schema.Int,
  events: Schema.Array(Render.EventOut),
  more: Schema.Boolean.annotate({ description: "More events may match: call next_page (or pass cursor)" }),
  cursor: Schema.optionalKey(Schema.String),
  scanned: Schema.Int.annotate({ description: "Events examined to find these" }),
  note: Schema.optionalKey(Schema.String)
})
type QueryResult = typeof QueryResult.Type

export const StreamResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.optionalKey(Schema.String),
  stream: Schema.String,
  version: Schema.Int.annotate({ description: "The stream's version (at asOf): the version of its last event" }),
  asOf: Schema.optionalKey(Schema.String),
  direction: Schema.Literals(["forward", "backward"]),
  count: Schema.Int,
  events: Schema.Array(Render.EventOut),
  more: Schema.Boolean,
  nextVersion: Schema.optionalKey(Schema.Int.annotate({ description: "fromVersion of the next page" })),
  note: Schema.optionalKey(Schema.String)
})
type StreamResult = typeof StreamResult.Type

/**
 * `next_page` continues either kind of read, and MCP wants an object at the root of an output schema: the fields
 * both share are required, the others optional (a query's `query`/`cursor`, a stream read's `stream`/`nextVersion`).
 */
export const PageResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.optionalKey(Schema.String),
  count: Schema.Int,
  events: Schema.Array(Render.EventOut),
  more: Schema.Boolean,
  note: Schema.optionalKey(Schema.String),
  query: Schema.optionalKey(QueryEcho),
  cursor: Schema.optionalKey(Schema.String),
  scanned: Schema.optionalKey(Schema.Int),
  stream: Schema.optionalKey(Schema.String),
  version: Schema.optionalKey(Schema.Int),
  asOf: Schema.optionalKey(Schema.String),
  direction: Schema.optionalKey(Schema.Literals(["forward", "backward"])),
  nextVersion: Schema.optionalKey(Schema.Int)
})

interface Shown<J> {
  readonly fitted: Render.Fitted<J>
  readonly included: ReadonlyArray<StoredEvent>
}

/** Events rendered in the call's format and cut to the result budget (less room for the envelope). */
const show = (
  config: McpConfigShape,
  events: ReadonlyArray<StoredEvent>,
  output: OutputOptions,
  multiStream: boolean
): Shown<typeof Render.EventOut.Type> => {
  const view: Render.EventView = {
    stream: multiStream,
    withMetadata: output.withMetadata,
    payloadBytesMax: config.payloadBytesMax
  }
  const fitted = Render.fit(
    events,
    (e) => {
      const line = Render.eventLine(e, view)
      return { line, value: output.format === "compact" ? line : Render.eventJson(e, view) }
    },
    config.resultBytesMax - Render.envelopeBytes
  )
  return { fitted, included: events.slice(0, fitted.lines.length) }
}

const describeQuery = (tenant: string, echo: typeof QueryEcho.Type) => {
  const parts = [`tenant ${tenant}`]
  if (echo.types !== undefined) parts.push(`types ${echo.types.join(",")}`)
  if (echo.stream !== undefined) parts.push(`stream ${echo.stream}`)
  if (echo.metadata !== undefined) parts.push(`metadata ${JSON.stringify(echo.metadata)}`)
  if (echo.since !== undefined) parts.push(`since ${echo.since}`)
  if (echo.until !== undefined) parts.push(`until ${echo.until}`)
  if (echo.asOf !== undefined) parts.push(`asOf ${echo.asOf}`)
  return parts.join(" · ")
}

const withoutUndefined = Render.defined

/** Runs a query page and builds its result; remembers it in the session for `next_page`. */
const queryPage = (
  context: ChronosTool.ToolContext,
  tenant: string,
  fork: string | undefined,
  filters: QueryFilters,
  resolved: Resolved,
  output: OutputOptions,
  cursor: Cursor | undefined
): Effect.Effect<ChronosTool.ToolOutput<QueryResult>, ToolError> =>
  Effect.gen(function*() {
    const store = yield* context.storeFor(tenant, fork)
    const page = yield* execute(context, store, tenant, resolved, output.limit, cursor)
    const shown = show(context.config, page.events, output, true)
    const last = shown.included[shown.included.length - 1]
    const next = shown.fitted.cut && last !== undefined
      ? (resolved.stream !== undefined && !resolved.stream.endsWith("*")
        ? { _tag: "Version" as const, version: last.streamVersion + 1 }
        : positionOf(last))
      : page.next
    const echo = withoutUndefined({
      types: resolved.types,
      since: resolved.since === undefined ? undefined : iso(resolved.since),
      until: resolved.until === undefined ? undefined : iso(resolved.until),
      asOf: resolved.asOf,
      stream: resolved.stream,
      metadata: resolved.metadata
    })
    const notes: Array<string> = []
    if (shown.fitted.cut) notes.push(`cut to ${shown.fitted.lines.length} events by the ${context.config.resultBytesMax}-byte result budget`)
    if (page.budgetStop) {
      notes.push(`stopped after examining ${page.scanned} events (stream prefix and metadata filters are not ` +
        `indexed); next_page continues the scan. Narrow with types or a time range to make it cheaper.`)
    }
    if (shown.included.length === 0 && next === undefined) {
      notes.push("no events match. Check names with describe_store; time filters use commit time (UTC).")
    }
    const note = notes.length > 0 ? notes.join(" ") : undefined
    yield* context.remember((s): Session => ({
      tenant,
      last: { _tag: "Query", fork, filters, resolved: { since: resolved.since, until: resolved.until, asOf: resolved.asOf }, output, next: next === undefined ? undefined : formatCursor(next) }
    }))
    const structured: QueryResult = withoutUndefined({
      tenant,
      fork,
      query: echo,
      count: shown.included.length,
      events: shown.fitted.values,
      more: next !== undefined,
      cursor: next === undefined ? undefined : formatCursor(next),
      scanned: page.scanned,
      note
    })
    const header = `${shown.included.length} events · ${describeQuery(tenant, echo)}${fork === undefined ? "" : ` · fork ${fork}`}`
    const footer = next === undefined ? "(end of results)" : `(more: call next_page, or query_events with cursor ${formatCursor(next)})`
    const body = output.format === "compact" ? shown.fitted.lines : shown.fitted.values.map(Render.json)
    return { structured, text: [header, ...body, ...(note === undefined ? [] : [`note: ${note}`]), footer].join("\n") }
  })

// ---- query_events ---------------------------------------------------------------------------------------------------

const queryParameters = (config: McpConfigShape) =>
  Schema.Struct({
    tenant: Params.tenant,
    types: Params.types,
    time: Schema.optionalKey(Schema.String.annotate({
      description: "A time range by commit time: 'last 24 hours', 'yesterday', 'today', 'this week', " +
        "'since 2026-11-20', 'between 2026-11-01 and 2026-11-03', or ISO. since/until override its bounds."
    })),
    since: Schema.optionalKey(Schema.String.annotate({
      description: "Events committed at or after this instant (ISO or a phrase like 'yesterday', '3 hours ago')."
    })),
    until: Schema.optionalKey(Schema.String.annotate({
      description: "Events committed at or before this instant (ISO or a phrase)."
    })),
    asOf: Params.asOf,
    stream: Schema.optionalKey(Schema.String.annotate({
      description: "Only this stream (exact id), or streams starting with a prefix ending in * (e.g. 'account-*'). " +
        "Prefixes are not indexed: the scan is bounded and continues with next_page."
    })),
    metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.String).annotate({
      description: "Only events whose metadata has these exact values, e.g. {\"correlationId\": \"c-42\"} for one " +
        "user journey or request across streams. Not indexed: bounded scan."
    })),
    limit: Params.eventsLimit(config),
    format: Params.format,
    withMetadata: Params.withMetadata,
    refine: Schema.optionalKey(Schema.Boolean.annotate({
      description: "Start from the previous query_events of this session: its filters stay unless given here " +
        "(e.g. refine: true, time: 'yesterday' = 'same but yesterday'). Pass an empty string or [] to drop one.",
      default: false
    })),
    cursor: Schema.optionalKey(Schema.String.annotate({
      description: "Continue a previous result with the same filters (its cursor). next_page does this for you."
    })),
    fork: Params.fork
  })

const mergeFilters = (previous: QueryFilters, given: QueryFilters): QueryFilters => {
  const timeGiven = given.time !== undefined || given.since !== undefined || given.until !== undefined
  // A new time bound replaces the old time window as a whole: "same but since yesterday" must not keep an old `until`.
  const base: QueryFilters = timeGiven ? { ...previous, time: undefined, since: undefined, until: undefined } : previous
  const merged: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(given)) {
    if (value === undefined) continue
    const empty = value === "" || (Array.isArray(value) && value.length === 0) ||
      (typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 0)
    merged[key] = empty ? undefined : value
  }
  return withoutUndefined(merged) as QueryFilters
}

/** Resolves the time phrases of `filters` against `now`. */
export const resolve = (filters: QueryFilters, now: number): Effect.Effect<Resolved, ToolError> =>
  Effect.gen(function*() {
    const window = filters.time === undefined ? {} : yield* Params.range("time", filters.time, now)
    const since = filters.since === undefined ? window.since : yield* Params.instant("since", filters.since, now)
    const until = filters.until === undefined ? window.until : yield* Params.instant("until", filters.until, now)
    if (since !== undefined && until !== undefined && since > until) {
      return yield* toolError("InvalidTime", `since (${iso(since)}) is after until (${iso(until)}): nothing can match`)
    }
    return {
      types: filters.types,
      since,
      until,
      asOf: yield* Params.asOfOf(filters.asOf, now),
      stream: filters.stream,
      metadata: filters.metadata
    }
  })

export const queryEvents = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "query_events",
    title: "Query events",
    description: `Find events across a tenant's streams by type, time range, stream prefix or metadata, oldest first.

Use it for: an audit trail ("every Withdrawn in the last 24 hours"), a user journey across streams (metadata {"correlationId": …}), what happened around an incident (time: "between … and …"), compliance as-of (asOf: a past instant shows only what was recorded by then).
Do not use it for: one entity's full history (get_stream is cheaper and ordered by version); current state (reconstruct_state); learning what types exist (describe_store first).

Multi-turn: the session remembers this query. next_page continues it; refine: true reuses its filters ("same but since yesterday" = refine: true, since: "yesterday").
Performance: types and time are indexed (cost ~ results). stream prefixes and metadata are filtered by scanning, at most ${config.queryScanEventsMax} events per call; add types or a time range to narrow. Results are at most ${config.eventsMax} events and ${config.resultBytesMax} bytes; payloads over ${config.payloadBytesMax} bytes are cut (…[+N bytes]) — read the full event with get_stream.
Times: ISO or phrases ("last 24 hours", "yesterday", "3 hours ago"), UTC, by commit time. Errors: InvalidTime (rephrase the time), InvalidRequest (a bad id or type name; the message says which).`,
    parameters: queryParameters(config),
    output: QueryResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        const given: QueryFilters = withoutUndefined({
          types: params.types,
          time: params.time,
          since: params.since,
          until: params.until,
          asOf: params.asOf,
          stream: params.stream,
          metadata: params.metadata
        })
        let filters = given
        if (params.refine === true) {
          const last = context.session.last
          if (last === undefined || last._tag !== "Query") {
            return yield* toolError("NothingToRefine", "refine: true needs an earlier query_events in this session; " +
              "call query_events with all the filters you want")
          }
          filters = mergeFilters(last.filters, given)
        } else {
          filters = mergeFilters({}, given)
        }
        const resolved = yield* resolve(filters, context.now)
        const output: OutputOptions = {
          format: params.format ?? "compact",
          limit: Params.limitOf(config, params.limit),
          withMetadata: params.withMetadata ?? false
        }
        const cursor = params.cursor === undefined ? undefined : yield* parseCursor(params.cursor)
        const fork = params.fork === undefined && params.refine === true && context.session.last?._tag === "Query"
          ? context.session.last.fork
          : params.fork
        return yield* queryPage(context, tenant, fork, filters, resolved, output, cursor)
      })
  })

// ---- get_stream -----------------------------------------------------------------------------------------------------

const streamParameters = (config: McpConfigShape) =>
  Schema.Struct({
    tenant: Params.tenant,
    stream: Params.stream,
    fromVersion: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)).annotate({
      description: "First version to return (forward), or the highest (backward). Default: the start (forward) or " +
        "the latest (backward)."
    })),
    direction: Schema.optionalKey(Schema.Literals(["forward", "backward"]).annotate({
      description: "forward (default): oldest first. backward: newest first — use it for 'the last N events'.",
      default: "forward"
    })),
    asOf: Params.asOf,
    limit: Params.eventsLimit(config),
    format: Params.format,
    withMetadata: Params.withMetadata,
    fork: Params.fork
  })

const streamPage = (
  context: ChronosTool.ToolContext,
  tenant: string,
  fork: string | undefined,
  stream: string,
  direction: "forward" | "backward",
  fromVersion: number | undefined,
  asOf: string | undefined,
  output: OutputOptions
): Effect.Effect<ChronosTool.ToolOutput<StreamResult>, ToolError> =>
  Effect.gen(function*() {
    const { config } = context
    const engine = yield* context.storeFor(tenant, fork)
    const head = yield* engine.readStream(tenant, stream, { direction: "backward", limit: 1, asOf })
    const version = head[0]?.streamVersion ?? -1
    if (version === -1) {
      return yield* fromDomain(new Errors.StreamNotFound({ tenant, stream }))
    }
    const events = yield* engine.readStream(tenant, stream, { fromVersion, direction, limit: output.limit, asOf })
    const shown = show(config, events, output, false)
    const last = shown.included[shown.included.length - 1]
    const nextVersion = last === undefined
      ? undefined
      : direction === "forward"
      ? (last.streamVersion < version ? last.streamVersion + 1 : undefined)
      : (last.streamVersion > 0 ? last.streamVersion - 1 : undefined)
    const notes: Array<string> = []
    if (shown.fitted.cut) notes.push(`cut to ${shown.included.length} events by the ${config.resultBytesMax}-byte result budget`)
    if (events.length === 0) notes.push(`no events from version ${fromVersion}; the stream is at version ${version}`)
    const note = notes.length > 0 ? notes.join(" ") : undefined
    yield* context.remember((): Session => ({
      tenant,
      last: { _tag: "Stream", fork, stream, direction, asOf, output, nextVersion }
    }))
    const structured: StreamResult = withoutUndefined({
      tenant,
      fork,
      stream,
      version,
      asOf,
      direction,
      count: shown.included.length,
      events: shown.fitted.values,
      more: nextVersion !== undefined,
      nextVersion,
      note
    })
    const header = `${stream} · tenant ${tenant}${fork === undefined ? "" : ` · fork ${fork}`} · at version ${version}${asOf === undefined ? "" : ` as of ${asOf}`} · ` +
      `${shown.included.length} events ${direction}`
    const footer = nextVersion === undefined ? "(end of stream)" : `(more: call next_page, or get_stream with fromVersion ${nextVersion})`
    const body = output.format === "compact" ? shown.fitted.lines : shown.fitted.values.map(Render.json)
    return { structured, text: [header, ...body, ...(note === undefined ? [] : [`note: ${note}`]), footer].join("\n") }
  }).pipe(Effect.catchTags({
    InvalidRequest: (e: Errors.InvalidRequest) => Effect.fail(fromDomain(e)),
    LimitExceeded: (e: Errors.LimitExceeded) => Effect.fail(fromDomain(e)),
    Unavailable: (e: Errors.Unavailable) => Effect.fail(fromDomain(e))
  }))

export const getStream = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "get_stream",
    title: "Read one stream",
    description: `Read one entity's history (a stream) in version order: exactly what was recorded, with versions and commit times.

Use it for: the audit trail of one entity, finding the event that broke a state, reading full payloads that other tools cut, the current version before append_events (direction: backward, limit: 1), what an entity looked like at a time (asOf).
Do not use it for: the state itself (reconstruct_state folds the events for you), events of many entities (query_events).
Pattern — debugging a state: reconstruct_state shows the wrong value → get_stream (or compare_states) around the time it went wrong → the culprit event and its metadata (withMetadata: true shows correlationId/causationId).
Paging: at most ${config.eventsMax} events per call; next_page continues (the session remembers). Long streams: direction backward for the latest events.
Errors: StreamNotFound (no such stream in this tenant, or none yet at asOf — ids are case-sensitive).`,
    parameters: streamParameters(config),
    output: StreamResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        const asOf = yield* Params.asOfOf(params.asOf, context.now)
        const output: OutputOptions = {
          format: params.format ?? "compact",
          limit: Params.limitOf(config, params.limit),
          withMetadata: params.withMetadata ?? false
        }
        return yield* streamPage(
          context,
          tenant,
          params.fork,
          params.stream,
          params.direction ?? "forward",
          params.fromVersion,
          asOf,
          output
        )
      })
  })

// ---- next_page ------------------------------------------------------------------------------------------------------

export const nextPage = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "next_page",
    title: "Next page",
    description: `Continue the last query_events or get_stream of this session from where it stopped, with the same filters and format.

Use it whenever a result says more: true. It needs no arguments: the session remembers the query and its cursor (sessions are forgotten after ${Math.round(config.sessionIdleMs / 60_000)} idle minutes; then pass cursor to query_events or fromVersion to get_stream instead).
Returns the same shape as the call it continues. At the end it returns no events and more: false. Error NothingToContinue: no earlier read in this session.`,
    parameters: Schema.Struct({
      limit: Params.eventsLimit(config)
    }),
    output: PageResult,
    hints: { readOnly: true, destructive: false, idempotent: false },
    run: (params, context): Effect.Effect<ChronosTool.ToolOutput<QueryResult | StreamResult>, ToolError> =>
      Effect.gen(function*() {
        const last: LastRead | undefined = context.session.last
        const tenant = context.session.tenant ?? config.defaultTenant
        if (last === undefined) {
          return yield* toolError("NothingToContinue", "no earlier query_events or get_stream in this session to " +
            "continue; call one of them first")
        }
        const output = params.limit === undefined ? last.output : { ...last.output, limit: Params.limitOf(config, params.limit) }
        if (last._tag === "Query") {
          if (last.next === undefined) return endOfQuery(tenant, last)
          const cursor = yield* parseCursor(last.next)
          const resolved: Resolved = {
            types: last.filters.types,
            stream: last.filters.stream,
            metadata: last.filters.metadata,
            since: last.resolved.since,
            until: last.resolved.until,
            asOf: last.resolved.asOf
          }
          return yield* queryPage(context, tenant, last.fork, last.filters, resolved, output, cursor)
        }
        if (last.nextVersion === undefined) return yield* endOfStream(context, tenant, last)
        return yield* streamPage(context, tenant, last.fork, last.stream, last.direction, last.nextVersion, last.asOf, output)
      })
  })

const endOfQuery = (tenant: string, last: Extract<LastRead, { _tag: "Query" }>): ChronosTool.ToolOutput<QueryResult> => ({
  structured: {
    tenant,
    query: withoutUndefined({
      types: last.filters.types,
      since: last.resolved.since === undefined ? undefined : iso(last.resolved.since),
      until: last.resolved.until === undefined ? undefined : iso(last.resolved.until),
      asOf: last.resolved.asOf,
      stream: last.filters.stream,
      metadata: last.filters.metadata
    }),
    count: 0,
    events: [],
    more: false,
    scanned: 0,
    note: "the last query already reached the end"
  },
  text: "0 events: the last query already reached the end (end of results)"
})

const endOfStream = (
  context: ChronosTool.ToolContext,
  tenant: string,
  last: Extract<LastRead, { _tag: "Stream" }>
): Effect.Effect<ChronosTool.ToolOutput<StreamResult>, ToolError> =>
  context.storeFor(tenant, last.fork).pipe(
    Effect.flatMap((store) =>
      store.readStream(tenant, last.stream, { direction: "backward", limit: 1, asOf: last.asOf }).pipe(Effect.mapError(fromDomain))
    ),
    Effect.map((head) => ({
      structured: withoutUndefined({
        tenant,
        stream: last.stream,
        version: head[0]?.streamVersion ?? -1,
        asOf: last.asOf,
        direction: last.direction,
        count: 0,
        events: [],
        more: false,
        note: "the last read already reached the end of the stream"
      }),
      text: `0 events: the last read of ${last.stream} already reached the end (end of stream)`
    }))
  )
