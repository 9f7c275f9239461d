/**
 * The search part of the HTTP API: `POST /v1/tenants/{tenant}/search` (keyword, semantic or hybrid search over a
 * tenant's events, with filters, time travel and read-your-writes) and `GET /v1/tenants/{tenant}/search/status`
 * (how far each index has followed each partition). Kept in its own group so the search surface can grow without
 * touching the core API; `Api.ChronosApi` only adds it.
 */
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "effect/http-api"
import { InvalidRequest, LimitExceeded, Unavailable } from "./Errors.ts"
import { RecordedEvent } from "./Event.ts"
import { ForkNotFound } from "./Fork.ts"

/**
 * The tenant's vector index was built by another embedder (id or dimension) than the one configured now. Vectors of
 * two models are not comparable, so the index is refused rather than silently mixed: remove it (it is rebuilt from
 * the log) or configure `onEmbedderMismatch: rebuild`.
 */
export class EmbedderMismatch extends Schema.TaggedError<EmbedderMismatch>()(
  "EmbedderMismatch",
  {
    tenant: Schema.String,
    indexEmbedder: Schema.String,
    indexDimension: Schema.Int,
    embedder: Schema.String,
    dimension: Schema.Int,
    message: Schema.String
  },
  { httpApiStatus: 409 }
) {}

export const SearchMode = Schema.Literals(["keyword", "semantic", "hybrid"])
export type SearchMode = typeof SearchMode.Type

export const MatchedBy = Schema.Literals(["keyword", "semantic"])
export type MatchedBy = typeof MatchedBy.Type

export const SearchRequest = Schema.Struct({
  /** Words or a sentence. */
  query: Schema.String,
  /** `hybrid` (default): keyword and semantic ranks fused; `keyword`: BM25 only; `semantic`: vectors only. */
  mode: Schema.optionalKey(SearchMode),
  /** Hits to return (default and maximum: `SearchConfig.hitsDefault` / `hitsMax`). */
  limit: Schema.optionalKey(Schema.Int),
  /** Only these event types. */
  types: Schema.optionalKey(Schema.Array(Schema.String)),
  /** Only streams whose id starts with this. */
  streamPrefix: Schema.optionalKey(Schema.String),
  /** Only events committed at or after this ISO-8601 instant. */
  since: Schema.optionalKey(Schema.String),
  /** Only events committed at or before this ISO-8601 instant. */
  until: Schema.optionalKey(Schema.String),
  /** Search the store as it was: an ISO-8601 instant or a position vector `p:seq,…`. */
  asOf: Schema.optionalKey(Schema.String),
  /** Search what a fork sees: main's events at or below its base plus its own (an unknown fork: `ForkNotFound`). */
  fork: Schema.optionalKey(Schema.String),
  /**
   * A position vector `p:seq,…` (e.g. from an append's positions): wait until the indexes the mode uses have
   * indexed every event at or below it, so a search sees the caller's own writes.
   */
  waitFor: Schema.optionalKey(Schema.String)
})
export type SearchRequest = typeof SearchRequest.Type

export const SearchHit = Schema.Struct({
  event: RecordedEvent,
  /** BM25 score (keyword), cosine similarity (semantic) or reciprocal-rank-fusion score (hybrid). */
  score: Schema.Number,
  matchedBy: Schema.Array(MatchedBy)
})
export type SearchHit = typeof SearchHit.Type

export const SearchResult = Schema.Struct({ hits: Schema.Array(SearchHit) })
export type SearchResult = typeof SearchResult.Type

export const IndexPartitionStatus = Schema.Struct({
  partition: Schema.Int,
  /** Every event of the partition at or below this sequence has been indexed (or was not the tenant's). */
  position: Schema.Int,
  watermark: Schema.Int,
  /** `watermark - position`: sequences committed but not yet examined by the index. */
  lag: Schema.Int
})

export const IndexStatus = Schema.Struct({
  /** `catching-up`, `live` (caught up with the watermark once), `refused` (see `error`) or `stopped`. */
  state: Schema.Literals(["catching-up", "live", "refused", "stopped"]),
  documents: Schema.Int,
  /** Position vector of the index (`p:seq,…`), usable as `waitFor`. */
  position: Schema.String,
  lag: Schema.Int,
  partitions: Schema.Array(IndexPartitionStatus),
  error: Schema.optionalKey(Schema.String)
})
export type IndexStatus = typeof IndexStatus.Type

export const SearchStatus = Schema.Struct({
  tenant: Schema.String,
  keyword: IndexStatus,
  semantic: Schema.Struct({
    ...IndexStatus.fields,
    embedder: Schema.String,
    dimension: Schema.Int
  })
})
export type SearchStatus = typeof SearchStatus.Type

export class SearchGroup extends HttpApiGroup.make("search")
  .add(
    HttpApiEndpoint.post("search", "/v1/tenants/:tenant/search", {
      params: { tenant: Schema.String },
      payload: SearchRequest,
      success: SearchResult,
      error: [InvalidRequest, LimitExceeded, Unavailable, EmbedderMismatch, ForkNotFound]
    }),
    HttpApiEndpoint.get("status", "/v1/tenants/:tenant/search/status", {
      params: { tenant: Schema.String },
      success: SearchStatus,
      error: [InvalidRequest, Unavailable]
    })
  )
  .annotateMerge(OpenApi.annotations({
    title: "Search",
    description: "Keyword (BM25), semantic (HNSW over embeddings) and hybrid (reciprocal rank fusion) search"
  })) {}
