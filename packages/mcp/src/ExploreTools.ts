/**
 * The tools an agent runs before it knows what to ask: `describe_store` (which event types a tenant has, how many,
 * when, in which streams, with the shape of their payloads) and `sample_events` (a few representative events). This
 * module owns how they stay cheap on a store of any size: they never scan a tenant. They read bounded windows of each
 * partition through the partition indexes (`readPartition`, which jumps to a sequence and filters by tenant and type
 * without scanning), at most `describeScanEventsMax` / `sampleScanEventsMax` events in all, and extrapolate. When the
 * windows did not cover everything, results say `exact: false` and the counts are estimates.
 */
import { Effect, Schema } from "effect"
import type { Errors, Event } from "@chronos/domain"
import * as ChronosTool from "./ChronosTool.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import type { OutputOptions } from "./McpSessions.ts"
import * as Render from "./Render.ts"
import * as Shape from "./Shape.ts"
import { iso } from "./TimeExpression.ts"
import { fromDomain, type ToolError } from "./ToolError.ts"
import * as Params from "./ToolParams.ts"

type StoredEvent = Event.StoredEvent

const mapStoreError = <A>(effect: Effect.Effect<A, Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable>) =>
  Effect.mapError(effect, fromDomain)

/** `account-42` → `account-{n}`, `user-3f2a…uuid` → `user-{uuid}`: how an agent learns a type's id scheme. */
const streamPattern = (stream: string) =>
  stream.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, "{uuid}").replace(/\d+/g, "{n}")

interface PartitionSample {
  readonly events: ReadonlyArray<StoredEvent>
  /** The tenant's events in this partition: exact when `complete`, else extrapolated from the windows. */
  readonly estimate: number
  readonly complete: boolean
}

/**
 * The head window of a partition (from sequence 1) and, when the head did not reach the end, a tail window over as
 * many sequences as the head covered, ending at the watermark.
 */
const samplePartition = (
  context: ChronosTool.ToolContext,
  tenant: string,
  status: Event.PartitionStatus,
  window: number
): Effect.Effect<PartitionSample, ToolError> =>
  Effect.gen(function*() {
    const { engine } = context
    if (status.watermark === 0) return { events: [], estimate: 0, complete: true }
    const head = yield* mapStoreError(engine.readPartition(tenant, status.partition, { fromSeq: 1, limit: window }))
    if (head.length < window) return { events: head, estimate: head.length, complete: true }
    const headEnd = head[head.length - 1]!.seq
    const tailFrom = Math.max(headEnd + 1, status.watermark - headEnd + 1)
    const tail = yield* mapStoreError(engine.readPartition(tenant, status.partition, { fromSeq: tailFrom, limit: window }))
    const covered = tailFrom === headEnd + 1 && tail.length < window
    if (covered) return { events: [...head, ...tail], estimate: head.length + tail.length, complete: true }
    // Tenant density over the sequences the windows covered, applied to the sequences they skipped.
    const seen = head.length + tail.length
    const spanned = headEnd + Math.max(0, (tail[tail.length - 1]?.seq ?? status.watermark) - tailFrom + 1)
    const skipped = Math.max(0, status.watermark - spanned)
    return { events: [...head, ...tail], estimate: Math.round(seen + (seen / Math.max(1, spanned)) * skipped), complete: false }
  })

// ---- describe_store -------------------------------------------------------------------------------------------------

const TypeSummary = Schema.Struct({
  type: Schema.String,
  count: Schema.Int.annotate({ description: "Events of this type (an estimate unless exact is true)" }),
  streams: Schema.Int.annotate({ description: "Distinct streams with this type among the events read" }),
  firstSeen: Schema.String,
  lastSeen: Schema.String,
  streamPatterns: Schema.Array(Schema.String).annotate({ description: "Stream id patterns, e.g. account-{n}" }),
  exampleStreams: Schema.Array(Schema.String),
  shape: Schema.String.annotate({ description: "Inferred shape of data (no values), e.g. {amount: number}" }),
  metadataKeys: Schema.Array(Schema.String)
})

export const DescribeResult = Schema.Struct({
  tenant: Schema.String,
  exact: Schema.Boolean.annotate({ description: "false: counts are estimates from bounded windows of each partition" }),
  events: Schema.Int,
  streams: Schema.Int.annotate({ description: "Distinct streams among the events read (a lower bound unless exact)" }),
  firstEvent: Schema.optionalKey(Schema.String),
  lastEvent: Schema.optionalKey(Schema.String),
  types: Schema.Array(TypeSummary),
  typesNotShown: Schema.Int,
  scanned: Schema.Int.annotate({ description: "Events read to build this description" }),
  partitions: Schema.Int,
  note: Schema.optionalKey(Schema.String)
})
type DescribeResult = typeof DescribeResult.Type

interface TypeStats {
  sampled: number
  estimate: number
  readonly streams: Set<string>
  readonly patterns: Map<string, number>
  first: number
  last: number
  readonly shape: Shape.Shape
  readonly metadataKeys: Set<string>
}

const approx = (n: number, exact: boolean) => exact ? n.toLocaleString("en-US") : `~${n.toLocaleString("en-US")}`

/** `1 stream`, `~2,400 streams`. */
const count = (n: number, exact: boolean, noun: string) => `${approx(n, exact)} ${noun}${n === 1 ? "" : "s"}`

export const describeStore = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "describe_store",
    title: "Describe the store",
    description: `What a tenant's store contains: each event type with its count, first/last seen, the streams it occurs in (id patterns like account-{n}), the inferred shape of its data ({amount: number, note?: string} — no values), and its metadata keys.

Call it first, before querying a tenant you have not seen in this session: exact type names, stream id schemes and field names are what every other tool needs.
Cost is bounded whatever the store's size: it reads at most ${config.describeScanEventsMax} events (windows at the start and end of each partition, through the indexes) and extrapolates; exact: false means the counts are estimates (the types, shapes and time span are still real). For exact counts of one type use query_events with types.
Errors: InvalidRequest (bad tenant id). An empty result means the tenant has no events: check the tenant name (tenants are separate namespaces).`,
    parameters: Schema.Struct({ tenant: Params.tenant }),
    output: DescribeResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        const { engine } = context
        const statuses = yield* mapStoreError(engine.partitions)
        const window = Math.max(
          10,
          Math.min(
            config.describeWindowEvents,
            engine.config.readEventsMax,
            Math.floor(config.describeScanEventsMax / (2 * Math.max(1, statuses.length)))
          )
        )
        const samples = yield* Effect.forEach(statuses, (s) => samplePartition(context, tenant, s, window), {
          concurrency: 8
        })
        const stats = new Map<string, TypeStats>()
        const shapeLimits = { fieldsMax: config.shapeFieldsMax, depthMax: config.shapeDepthMax }
        const allStreams = new Set<string>()
        let scanned = 0
        let exact = true
        let total = 0
        for (const sample of samples) {
          scanned += sample.events.length
          exact &&= sample.complete
          total += sample.estimate
          const scale = sample.events.length === 0 ? 0 : sample.estimate / sample.events.length
          const perType = new Map<string, number>()
          for (const e of sample.events) {
            let s = stats.get(e.type)
            if (s === undefined) {
              s = {
                sampled: 0,
                estimate: 0,
                streams: new Set(),
                patterns: new Map(),
                first: e.timestamp,
                last: e.timestamp,
                shape: Shape.make(shapeLimits),
                metadataKeys: new Set()
              }
              stats.set(e.type, s)
            }
            s.sampled++
            perType.set(e.type, (perType.get(e.type) ?? 0) + 1)
            // Counting beyond the bound would cost memory proportional to the store.
            if (s.streams.size < config.describeStreamsTrackedMax) s.streams.add(e.stream)
            if (allStreams.size < config.describeStreamsTrackedMax) allStreams.add(e.stream)
            const pattern = streamPattern(e.stream)
            s.patterns.set(pattern, (s.patterns.get(pattern) ?? 0) + 1)
            if (e.timestamp < s.first) s.first = e.timestamp
            if (e.timestamp > s.last) s.last = e.timestamp
            if (s.sampled <= 200) Shape.observe(s.shape, e.data)
            for (const key of Object.keys(e.metadata)) if (s.metadataKeys.size < 20) s.metadataKeys.add(key)
          }
          for (const [type, n] of perType) stats.get(type)!.estimate += n * scale
        }
        const sorted = [...stats].sort((a, b) => b[1].estimate - a[1].estimate || a[0].localeCompare(b[0]))
        // A tenant with more types is summarized: that many types is itself worth knowing.
        const shown = sorted.slice(0, config.describeTypesMax)
        const types = shown.map(([type, s]) => ({
          type,
          count: Math.round(s.estimate),
          streams: s.streams.size,
          firstSeen: iso(s.first),
          lastSeen: iso(s.last),
          streamPatterns: [...s.patterns].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([p]) => p),
          exampleStreams: [...s.streams].slice(0, 3),
          shape: Shape.render(s.shape),
          metadataKeys: [...s.metadataKeys]
        }))
        const first = Math.min(...[...stats.values()].map((s) => s.first))
        const last = Math.max(...[...stats.values()].map((s) => s.last))
        const notes: Array<string> = []
        if (total === 0) {
          notes.push(`tenant ${tenant} has no events. Tenants are separate namespaces: check the name (the server's ` +
            `default tenant is ${config.defaultTenant}).`)
        }
        if (!exact) {
          notes.push(`estimated from ${scanned} events read at the start and end of each partition; counts and ` +
            `stream numbers are approximate, types/shapes/time span are real`)
        }
        if (sorted.length > shown.length) notes.push(`${sorted.length - shown.length} more types not shown`)
        const note = notes.length > 0 ? notes.join("; ") : undefined
        yield* context.remember((s) => ({ ...s, tenant }))
        const structured: DescribeResult = Render.defined({
          tenant,
          exact,
          events: total,
          streams: allStreams.size,
          firstEvent: total === 0 ? undefined : iso(first),
          lastEvent: total === 0 ? undefined : iso(last),
          types,
          typesNotShown: sorted.length - shown.length,
          scanned,
          partitions: statuses.length,
          note
        })
        const lines = types.map((t) =>
          `${t.type}: ${count(t.count, exact, "event")} in ${count(t.streams, exact, "stream")} ` +
          `(${t.streamPatterns.join(", ")}; e.g. ${t.exampleStreams.join(", ")}) · ${t.firstSeen} → ${t.lastSeen}` +
          ` · data ${t.shape}${t.metadataKeys.length > 0 ? ` · metadata ${t.metadataKeys.join(", ")}` : ""}`
        )
        const header = total === 0
          ? `tenant ${tenant}: no events`
          : `tenant ${tenant}: ${count(total, exact, "event")} in ${count(allStreams.size, exact, "stream")}, ` +
            `${iso(first)} → ${iso(last)}, ${sorted.length} event types`
        const fitted = Render.fit(lines, (line) => ({ line, value: line }), config.resultBytesMax - Render.envelopeBytes)
        return {
          structured: fitted.cut ? { ...structured, types: types.slice(0, fitted.lines.length), typesNotShown: sorted.length - fitted.lines.length } : structured,
          text: [header, ...fitted.lines, ...(note === undefined ? [] : [`note: ${note}`])].join("\n")
        }
      })
  })

// ---- sample_events --------------------------------------------------------------------------------------------------

export const SampleResult = Schema.Struct({
  tenant: Schema.String,
  filters: Schema.Struct({
    types: Schema.optionalKey(Schema.Array(Schema.String)),
    stream: Schema.optionalKey(Schema.String)
  }),
  count: Schema.Int,
  events: Schema.Array(Render.EventOut),
  typesCovered: Schema.Array(Schema.String),
  scanned: Schema.Int,
  note: Schema.optionalKey(Schema.String)
})
type SampleResult = typeof SampleResult.Type

/** `k` items spread evenly over `items` (first and last included when k ≥ 2). */
const spread = <A>(items: ReadonlyArray<A>, k: number): Array<A> => {
  if (items.length <= k) return [...items]
  if (k === 1) return [items[Math.floor(items.length / 2)]!]
  return Array.from({ length: k }, (_, i) => items[Math.round((i * (items.length - 1)) / (k - 1))]!)
}

/**
 * Picks `size` events: round-robin over types (so rare types appear next to frequent ones), and within a type spread
 * over time. Deterministic: the same store gives the same sample, so a model can compare two calls.
 */
const stratify = (candidates: ReadonlyArray<StoredEvent>, size: number): Array<StoredEvent> => {
  const byType = new Map<string, Array<StoredEvent>>()
  for (const e of candidates) {
    let list = byType.get(e.type)
    if (list === undefined) byType.set(e.type, list = [])
    list.push(e)
  }
  const types = [...byType.keys()].sort()
  const quota = new Map(types.map((t) => [t, 0]))
  let left = Math.min(size, candidates.length)
  while (left > 0) {
    for (const t of types) {
      if (left === 0) break
      if (quota.get(t)! < byType.get(t)!.length) {
        quota.set(t, quota.get(t)! + 1)
        left--
      }
    }
  }
  const picked: Array<StoredEvent> = []
  for (const t of types) {
    const list = byType.get(t)!.sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || a.seq - b.seq)
    picked.push(...spread(list, quota.get(t)!))
  }
  return picked.sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || a.seq - b.seq)
}

export const sampleEvents = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "sample_events",
    title: "Sample events",
    description: `A quick, representative sample of a tenant's events (or of some types, or of streams matching a prefix): spread over event types, partitions and time, so rare types show up next to frequent ones.

Use it to see real payloads before writing a query, to learn what a type's events look like, or to find example stream ids. Not for counting or completeness (describe_store counts; query_events is exhaustive).
Cost is bounded: at most ${config.sampleScanEventsMax} events are read, in windows through the partition indexes. Deterministic: the same store gives the same sample.
size defaults to ${config.sampleEventsDefault}, at most ${config.sampleEventsMax}. Errors: InvalidRequest (bad tenant or type name).`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      types: Params.types,
      stream: Schema.optionalKey(Schema.String.annotate({
        description: "Only this stream, or streams starting with a prefix ending in * (e.g. 'order-*')."
      })),
      size: Params.limit(config.sampleEventsDefault, config.sampleEventsMax),
      format: Params.format,
      withMetadata: Params.withMetadata
    }),
    output: SampleResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        const { engine } = context
        const size = Math.min(params.size ?? config.sampleEventsDefault, config.sampleEventsMax)
        const types = params.types !== undefined && params.types.length > 0 ? params.types : undefined
        const exact = params.stream !== undefined && !params.stream.endsWith("*") ? params.stream : undefined
        const prefix = params.stream !== undefined && params.stream.endsWith("*") ? params.stream.slice(0, -1) : undefined
        let candidates: ReadonlyArray<StoredEvent>
        if (exact !== undefined) {
          // One stream: windows at evenly spaced versions.
          const head = yield* mapStoreError(engine.readStream(tenant, exact, { direction: "backward", limit: 1 }))
          const version = head[0]?.streamVersion ?? -1
          const windows = 4
          const per = Math.max(1, Math.floor(config.sampleScanEventsMax / windows))
          const starts = [...new Set(spread(Array.from({ length: version + 1 }, (_, v) => v), windows))]
          const reads = yield* Effect.forEach(
            starts,
            (from) => mapStoreError(engine.readStream(tenant, exact, { fromVersion: from, limit: Math.min(per, engine.config.readEventsMax) })),
            { concurrency: 4 }
          )
          const seen = new Set<string>()
          candidates = reads.flat().filter((e) =>
            !seen.has(e.eventId) && (seen.add(e.eventId), types === undefined || types.includes(e.type))
          )
        } else {
          // Across partitions: four windows per partition (start, thirds, end), through the tenant/type index.
          const statuses = yield* mapStoreError(engine.partitions)
          const live = statuses.filter((s) => s.watermark > 0)
          const per = Math.max(
            1,
            Math.min(engine.config.readEventsMax, Math.floor(config.sampleScanEventsMax / (4 * Math.max(1, live.length))))
          )
          const reads = yield* Effect.forEach(
            live.flatMap((s) =>
              [...new Set([1, Math.floor(s.watermark / 3), Math.floor((2 * s.watermark) / 3), s.watermark - per + 1])]
                .map((from) => ({ partition: s.partition, fromSeq: Math.max(1, from) }))
            ),
            ({ fromSeq, partition }) =>
              mapStoreError(engine.readPartition(tenant, partition, { fromSeq, limit: per, types })),
            { concurrency: 8 }
          )
          const seen = new Set<string>()
          candidates = reads.flat().filter((e) =>
            !seen.has(e.eventId) && (seen.add(e.eventId), prefix === undefined || e.stream.startsWith(prefix))
          )
        }
        const picked = stratify(candidates, size)
        const output: OutputOptions = {
          format: params.format ?? "compact",
          limit: size,
          withMetadata: params.withMetadata ?? false
        }
        const view: Render.EventView = { stream: true, withMetadata: output.withMetadata, payloadBytesMax: config.payloadBytesMax }
        const fitted = Render.fit(
          picked,
          (e) => {
            const line = Render.eventLine(e, view)
            return { line, value: output.format === "compact" ? line : Render.eventJson(e, view) }
          },
          config.resultBytesMax - Render.envelopeBytes
        )
        const included = picked.slice(0, fitted.lines.length)
        const typesCovered = [...new Set(included.map((e) => e.type))].sort()
        const note = candidates.length === 0
          ? "nothing matched: check the tenant, type names and stream prefix (describe_store lists them)"
          : fitted.cut
          ? `cut to ${included.length} events by the ${config.resultBytesMax}-byte result budget`
          : undefined
        yield* context.remember((s) => ({ ...s, tenant }))
        const structured: SampleResult = Render.defined({
          tenant,
          filters: Render.defined({ types, stream: params.stream }),
          count: included.length,
          events: fitted.values,
          typesCovered,
          scanned: candidates.length,
          note
        })
        const header = `${included.length} sampled events · tenant ${tenant}` +
          `${types === undefined ? "" : ` · types ${types.join(",")}`}${params.stream === undefined ? "" : ` · stream ${params.stream}`}` +
          ` · from ${candidates.length} read`
        const body = output.format === "compact" ? fitted.lines : fitted.values.map(Render.json)
        return { structured, text: [header, ...body, ...(note === undefined ? [] : [`note: ${note}`])].join("\n") }
      })
  })
