/**
 * `search_events`: find events by what they say rather than by their type or stream — keyword (BM25), semantic
 * (embeddings) or hybrid — over the `Search` service of `@chronos/search`. This module owns the tool and the
 * translation of its results into the MCP surface's compact form with scores.
 *
 * The service is looked up by its key, with a type-only import of its shape: loading `@chronos/search` brings its
 * native vector index and embedding model, which a stdio process over a remote node must not pay for. The tool is
 * registered only where the service runs (a node): see `ChronosMcp`.
 */
import { Context, Effect, Schema } from "effect"
import type { SearchShape } from "@chronos/search/Search"
import * as ChronosTool from "./ChronosTool.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import * as Render from "./Render.ts"
import { iso } from "./TimeExpression.ts"
import { fromDomain, toolError } from "./ToolError.ts"
import * as Params from "./ToolParams.ts"

/** The `Search` service of `@chronos/search/Search`, by its key (the same service, without loading the module). */
export const Search = Context.Service<SearchShape>("chronos/search/Search")

export const SearchResult = Schema.Struct({
  tenant: Schema.String,
  query: Schema.String,
  mode: Schema.Literals(["keyword", "semantic", "hybrid"]),
  count: Schema.Int,
  hits: Schema.Array(Schema.Struct({
    score: Schema.Number,
    matchedBy: Schema.Array(Schema.String),
    event: Render.EventOut
  })),
  note: Schema.optionalKey(Schema.String)
})
type SearchResult = typeof SearchResult.Type

export const searchEvents = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "search_events",
    title: "Search events",
    description: `Find events by their content: keyword (exact words, ids, names — BM25), semantic (meaning: "complaints about late delivery" finds "package arrived a week after the promised date"), or hybrid (default: both, fused).

Use it when you know what an event says but not its type or stream: "the support ticket mentioning a refund for order 7731", "anything about a failed card payment". Then read the entity with get_stream / reconstruct_state.
Do not use it for exhaustive lists or counts (query_events with types and time is exact and indexed), or for state.
Ranked and bounded: the best hits first (limit default ${config.eventsDefault}, at most ${config.eventsMax}); filters (types, stream prefix, time, asOf) apply inside the ranking. Freshly appended events are indexed within moments; pass waitFor (the positions an append returned) to be sure they are searchable.
Errors: EmbedderMismatch (the index was built with another embedding model: semantic search needs a rebuild; use mode keyword meanwhile), InvalidRequest.`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      query: Schema.String.annotate({ description: "Words or a sentence." }),
      mode: Schema.optionalKey(Schema.Literals(["keyword", "semantic", "hybrid"]).annotate({
        description: "hybrid (default), keyword or semantic.",
        default: "hybrid"
      })),
      types: Params.types,
      stream: Schema.optionalKey(Schema.String.annotate({ description: "Only streams starting with this prefix (a trailing * is optional)." })),
      time: Schema.optionalKey(Schema.String.annotate({ description: "A time range: 'last 7 days', 'yesterday', ISO, …" })),
      asOf: Params.asOf,
      waitFor: Schema.optionalKey(Schema.String.annotate({
        description: "Positions (p:seq,…) to wait for, e.g. from append_events, so those events are searchable."
      })),
      limit: Params.eventsLimit(config),
      format: Params.format,
      withMetadata: Params.withMetadata
    }),
    output: SearchResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const search = yield* Search
        const tenant = context.tenantOf(params.tenant)
        const window = params.time === undefined ? {} : yield* Params.range("time", params.time, context.now)
        const asOf = yield* Params.asOfOf(params.asOf, context.now)
        const mode = params.mode ?? "hybrid"
        const hits = yield* search.search(tenant, Render.defined({
          query: params.query,
          mode,
          limit: Params.limitOf(config, params.limit),
          types: params.types,
          streamPrefix: params.stream?.replace(/\*$/, ""),
          since: window.since === undefined ? undefined : new Date(window.since).toISOString(),
          until: window.until === undefined ? undefined : new Date(window.until).toISOString(),
          asOf,
          waitFor: params.waitFor
        })).pipe(
          Effect.mapError((e) =>
            e._tag === "EmbedderMismatch"
              ? toolError("EmbedderMismatch", `${e.message}; use mode: "keyword" until the index is rebuilt`)
              : fromDomain(e)
          )
        )
        const view: Render.EventView = {
          stream: true,
          withMetadata: params.withMetadata ?? false,
          payloadBytesMax: config.payloadBytesMax
        }
        const format = params.format ?? "compact"
        const fitted = Render.fit(
          hits,
          (h) => {
            const line = `${h.score.toFixed(3)} ${Render.eventLine(h.event, view)}`
            return {
              line,
              value: {
                score: h.score,
                matchedBy: [...h.matchedBy],
                event: format === "compact" ? Render.eventLine(h.event, view) : Render.eventJson(h.event, view)
              }
            }
          },
          config.resultBytesMax - Render.envelopeBytes
        )
        const note = hits.length === 0
          ? "no hits: try other words, mode semantic for meaning, or fewer filters"
          : fitted.cut
          ? `cut to ${fitted.values.length} hits by the result budget`
          : undefined
        yield* context.remember((s) => ({ ...s, tenant }))
        const structured: SearchResult = Render.defined({
          tenant,
          query: params.query,
          mode,
          count: fitted.values.length,
          hits: fitted.values,
          note
        })
        const header = `${fitted.values.length} hits · ${mode} · tenant ${tenant} · "${params.query}"` +
          `${window.since === undefined ? "" : ` · since ${iso(window.since)}`}`
        return { structured, text: [header, ...fitted.lines, ...(note === undefined ? [] : [`note: ${note}`])].join("\n") }
      })
  })
