/**
 * The `Search` service: native search over a tenant's events. It owns the per-tenant indexes (BM25 `KeywordIndex`
 * and HNSW `VectorIndex`), their followers (`IndexFollower`), their snapshots under `<dataDir>/search/<tenant>/`, and
 * the search request: validation against the limits of `SearchConfig`, filters, `waitFor`, the three modes and
 * their fusion, and fetching the hit events from the engine.
 *
 * Which tenants are indexed: the tenants named in `SearchConfig.tenants` and those with a snapshot on disk, from
 * start-up; any other tenant from its first search, status or `track` call. (The engine does not list tenants; see
 * the package README.) A tenant whose index is missing is rebuilt from the log; one with a snapshot is reloaded and
 * caught up from the snapshot's positions.
 *
 * Modes: `keyword` ranks by BM25; `semantic` by cosine similarity to the query's embedding; `hybrid` (default) fuses
 * both rankings by reciprocal rank fusion (`Fusion`). Every filter is applied inside each index's ranking.
 *
 * Forks (`fork`): a fork sees main's events at or below its base (intersected along its branch chain) plus the
 * events of its own log (and of the forks it branched from, above that bound). The tenant's indexes hold main's
 * events only, so a search through a fork ranks main's documents under that bound (`SearchFilter.seqMax`) and
 * the fork's events in a throw-away index built for the query (bounded by `forkSearchEventsMax`); the two lists are
 * merged by score (keyword: BM25 of each side over its own statistics — an approximation; semantic: cosine, which is
 * comparable). Nothing about a fork is stored by search, so a discarded fork leaves nothing behind.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ChronosConfig } from "@chronos/config"
import { AsOf, Errors, type Event, Fork, Ids, SearchApi } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import { Forks } from "@chronos/engine/Forks"
import { DocTable, type SearchFilter } from "./DocTable.ts"
import { Embedder, type EmbedderError } from "./Embedder.ts"
import { reciprocalRankFusion } from "./Fusion.ts"
import * as IndexFollower from "./IndexFollower.ts"
import { CorruptSnapshot, decode, encode, readIfExists, writeAtomic } from "./internal/snapshotFile.ts"
import { KeywordIndex } from "./KeywordIndex.ts"
import { SearchConfig } from "./SearchConfig.ts"
import { extract, fingerprint } from "./TextExtraction.ts"
import { VectorIndex } from "./VectorIndex.ts"

type StoredEvent = Event.StoredEvent

export interface SearchRequest {
  readonly query: string
  readonly mode?: SearchApi.SearchMode | undefined
  readonly limit?: number | undefined
  readonly types?: ReadonlyArray<string> | undefined
  readonly streamPrefix?: string | undefined
  readonly since?: string | undefined
  readonly until?: string | undefined
  readonly asOf?: string | undefined
  readonly fork?: string | undefined
  readonly waitFor?: string | undefined
}

export interface Hit {
  readonly event: StoredEvent
  readonly score: number
  readonly matchedBy: ReadonlyArray<SearchApi.MatchedBy>
}

export type SearchError =
  | Errors.InvalidRequest
  | Errors.LimitExceeded
  | Errors.Unavailable
  | SearchApi.EmbedderMismatch

export interface SearchShape {
  /** `ForkNotFound` only when the request can name a fork (its type has a `fork` key). */
  readonly search: <R extends SearchRequest>(
    tenant: string,
    request: R
  ) => Effect.Effect<ReadonlyArray<Hit>, SearchError | ("fork" extends keyof R ? Fork.ForkNotFound : never)>
  readonly status: (tenant: string) => Effect.Effect<SearchApi.SearchStatus, Errors.InvalidRequest | Errors.Unavailable>
  /**
   * Removes every event of `stream` from both indexes (the engine has no stream deletion yet; when it has, its
   * deletion record will drive this). Returns how many documents each index dropped.
   */
  readonly removeStream: (
    tenant: string,
    stream: string
  ) => Effect.Effect<{ readonly keyword: number; readonly semantic: number }, Errors.InvalidRequest>
  /** Starts indexing a tenant now (idempotent). */
  readonly track: (tenant: string) => Effect.Effect<void, Errors.InvalidRequest>
  /** The tenant's index objects, for benchmarks and diagnostics only (not an API surface; never mutate them). */
  readonly indexes: (
    tenant: string
  ) => Effect.Effect<{ readonly keyword: KeywordIndex; readonly vector: VectorIndex | undefined }, Errors.InvalidRequest>
}

export class Search extends Context.Service<Search, SearchShape>()("chronos/search/Search") {
  /** Indexes persisted under `<dataDir>/search/` (reloaded at start-up, rebuilt from the log when missing). */
  static readonly layer: Layer.Layer<Search, never, Engine | Embedder | SearchConfig | ChronosConfig> = Layer.effect(
    Search,
    Effect.gen(function*() {
      const chronos = yield* ChronosConfig
      return yield* make({ directory: path.join(chronos.dataDir, "search") })
    })
  )

  /** Indexes in memory only: rebuilt from the log at every start (tests, memory log). */
  static readonly layerMemory: Layer.Layer<Search, never, Engine | Embedder | SearchConfig> = Layer.effect(
    Search,
    Effect.suspend(() => make({ directory: undefined }))
  )
}

// ---- per tenant ----------------------------------------------------------------------------------------------------

interface TenantIndexes {
  readonly keyword: KeywordIndex
  readonly keywordFollower: IndexFollower.Follower
  /** Undefined while refused (`mismatch`). */
  readonly vector: VectorIndex | undefined
  readonly vectorFollower: IndexFollower.Follower
  readonly mismatch: SearchApi.EmbedderMismatch | undefined
}

interface StoredPositions {
  readonly partitions: number
  readonly positions: ReadonlyArray<number>
}

const invalid = (field: string, message: string) => new Errors.InvalidRequest({ field, message })

const positionKey = (partition: number, seq: number) => partition * 2 ** 40 + seq

export const make = Effect.fnUntraced(function*(options: { readonly directory: string | undefined }) {
  const engine = yield* Engine
  // Optional: a search process without forks (benchmarks, the SDK's plain embedded mode) refuses `fork`.
  const forks = yield* Effect.serviceOption(Forks)
  const embedder = yield* Embedder
  const config = yield* SearchConfig
  const scope = yield* Effect.scope
  const partitions = engine.config.partitions
  const extractionFingerprint = fingerprint(config)
  const bm25 = { k1: config.bm25K1, b: config.bm25B }
  const hnswParams = {
    m: config.hnswM,
    efConstruction: config.hnswEfConstruction,
    efSearch: config.hnswEfSearch,
    exactFilterDocsMax: config.vectorExactFilterDocsMax
  }
  const tenants = new Map<string, Promise<TenantIndexes>>()
  const loaded = new Map<string, TenantIndexes>()
  const followerOptions = (tenant: string, positions: ReadonlyArray<number> | undefined) => ({
    tenant,
    partitions,
    pageEventsMax: config.indexPageEventsMax,
    idleWaitMs: config.indexIdleWaitMs,
    sliceMs: config.indexSliceMs,
    snapshotEveryMs: config.snapshotEveryMs,
    positions
  })

  const dirOf = (tenant: string) => options.directory === undefined ? undefined : path.join(options.directory, tenant)

  /** Positions from a snapshot, if it was taken on a store with the same number of partitions. */
  const storedPositions = (extra: unknown): ReadonlyArray<number> | undefined => {
    const e = extra as StoredPositions | undefined
    return e !== undefined && e.partitions === partitions && e.positions.length === partitions ? e.positions : undefined
  }

  const readSnapshot = (file: string) =>
    Effect.promise(async () => {
      const bytes = await readIfExists(file)
      return bytes === undefined ? undefined : decode(bytes)
    })

  /** A snapshot that cannot be used is logged and ignored: the index is rebuilt from the log. */
  const orRebuild = <A>(what: string, effect: Effect.Effect<A | undefined>) =>
    effect.pipe(
      Effect.catchDefect((defect) =>
        Effect.as(
          Effect.logWarning(`search: ${what} is unusable (${
            defect instanceof CorruptSnapshot ? defect.message : String(defect)
          }); rebuilding it from the log`),
          undefined
        )
      )
    )

  // ---- keyword ---------------------------------------------------------------------------------------------------

  const loadKeyword = (tenant: string) =>
    Effect.gen(function*() {
      const dir = dirOf(tenant)
      if (dir === undefined) return undefined
      const snap = yield* readSnapshot(path.join(dir, "keyword.snap"))
      if (snap === undefined) return undefined
      const restored = KeywordIndex.fromSnapshot(snap.header, snap.arrays, config, extractionFingerprint)
      const positions = restored === undefined ? undefined : storedPositions(restored.extra)
      if (restored === undefined || positions === undefined) {
        yield* Effect.logInfo(`search: keyword index of ${tenant} was built with other settings; rebuilding`)
        return undefined
      }
      return { index: restored.index, positions }
    })

  const keywordSink = (tenant: string, index: KeywordIndex): IndexFollower.Sink<void, never> => ({
    chunkEvents: 256,
    prepare: () => Effect.void,
    commit: (events) =>
      Effect.sync(() => {
        for (const e of events) index.add(e)
      }),
    snapshot: dirOf(tenant) === undefined ? undefined : (positions) =>
      writeFile(
        `keyword index of ${tenant}`,
        () => writeAtomic(path.join(dirOf(tenant)!, "keyword.snap"), encode(index.toSnapshot({ partitions, positions })))
      )
  })

  const writeFile = (what: string, write: () => Promise<void>) =>
    Effect.tryPromise({ try: write, catch: (e) => e }).pipe(
      Effect.catch((e) => Effect.logWarning(`search: could not write the ${what}: ${String(e)}`))
    )

  // ---- vector ----------------------------------------------------------------------------------------------------

  const mismatchOf = (tenant: string, indexEmbedder: string, indexDimension: number) =>
    new SearchApi.EmbedderMismatch({
      tenant,
      indexEmbedder,
      indexDimension,
      embedder: embedder.id,
      dimension: embedder.dimension,
      message: `the vector index of ${tenant} was built by ${indexEmbedder} (${indexDimension}-d) but the embedder is ` +
        `${embedder.id} (${embedder.dimension}-d); remove ${dirOf(tenant) ?? "the index"}/vector.* to rebuild it, ` +
        `or set onEmbedderMismatch to rebuild`
    })

  const loadVector = (tenant: string) =>
    Effect.gen(function*() {
      const dir = dirOf(tenant)
      if (dir === undefined) return undefined
      const snap = yield* readSnapshot(path.join(dir, "vector.meta"))
      if (snap === undefined) return undefined
      const about = VectorIndex.describe(snap.header)
      if (about.embedder !== embedder.id || about.dimension !== embedder.dimension) {
        const mismatch = mismatchOf(tenant, about.embedder, about.dimension)
        if (config.onEmbedderMismatch === "refuse") return { _tag: "Refused", mismatch } as const
        yield* Effect.logWarning(`search: ${mismatch.message}; rebuilding (onEmbedderMismatch: rebuild)`)
        return undefined
      }
      const positions = storedPositions(about.extra)
      if (!about.compatible || positions === undefined) return undefined
      const index = yield* Effect.promise(() =>
        VectorIndex.load(snap.header, snap.arrays, path.join(dir, about.graphFile), hnswParams)
      )
      return { _tag: "Loaded", index, positions, generation: generationOf(about.graphFile) } as const
    })

  const generationOf = (graphFile: string) => Number(/^vector\.(\d+)\.hnsw$/.exec(graphFile)?.[1] ?? 0)

  const vectorSink = (
    tenant: string,
    index: VectorIndex,
    firstGeneration: number
  ): IndexFollower.Sink<ReadonlyArray<Float32Array>, EmbedderError> => {
    let generation = firstGeneration
    return {
      chunkEvents: config.embedBatchTexts,
      prepare: (events) => embedder.embed(events.map((e) => extract(e, config).sentence)),
      commit: (events, vectors) =>
        Effect.gen(function*() {
          // hnswlib inserts synchronously (~1 ms a vector at 512-d): yield between inserts so appends and searches
          // interleave with a long chunk.
          let since = yield* Effect.clockWith((c) => c.currentTimeMillis)
          for (let i = 0; i < events.length; i++) {
            index.add(events[i]!, vectors[i]!)
            const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
            if (now - since >= config.indexSliceMs) {
              yield* Effect.yieldNow
              since = now
            }
          }
        }),
      snapshot: dirOf(tenant) === undefined ? undefined : (positions) =>
        writeFile(`vector index of ${tenant}`, async () => {
          const dir = dirOf(tenant)!
          generation++
          const graphFile = `vector.${generation}.hnsw`
          await writeAtomic(path.join(dir, graphFile), (tmp) => index.writeGraph(tmp))
          await writeAtomic(path.join(dir, "vector.meta"), encode(index.snapshotMeta({ partitions, positions }, graphFile)))
          for (const f of await fs.readdir(dir)) {
            if (/^vector\.\d+\.hnsw$/.test(f) && f !== graphFile) await fs.rm(path.join(dir, f), { force: true })
          }
        })
    }
  }

  // ---- tenants -----------------------------------------------------------------------------------------------------

  /**
   * A snapshot ahead of the log (the log was replaced or truncated under it) describes events that no longer exist:
   * such an index is rebuilt. Watermarks that cannot be read now skip the check.
   */
  const aheadOfLog = (positions: ReadonlyArray<number>) =>
    engine.partitions.pipe(
      Effect.map((statuses) => statuses.some((s) => (positions[s.partition] ?? 0) > s.watermark)),
      Effect.catch(() => Effect.succeed(false))
    )

  const unlessAhead = <A extends { readonly positions: ReadonlyArray<number> }>(what: string, loaded: A | undefined) =>
    loaded === undefined ? Effect.succeed(undefined) : Effect.flatMap(aheadOfLog(loaded.positions), (ahead) =>
      ahead
        ? Effect.as(Effect.logWarning(`search: the ${what} is ahead of the log; rebuilding it`), undefined)
        : Effect.succeed(loaded))

  const openTenant = (tenant: string) =>
    Effect.gen(function*() {
      const kw = yield* orRebuild(`keyword index of ${tenant}`, loadKeyword(tenant)).pipe(
        Effect.flatMap((loaded) => unlessAhead(`keyword index of ${tenant}`, loaded))
      )
      const keyword = kw?.index ?? new KeywordIndex(config, extractionFingerprint)
      const keywordFollower = yield* IndexFollower.start(
        engine,
        keywordSink(tenant, keyword),
        followerOptions(tenant, kw?.positions),
        scope
      )
      const loadedVector = yield* orRebuild(`vector index of ${tenant}`, loadVector(tenant))
      if (loadedVector?._tag === "Refused") {
        yield* Effect.logWarning(`search: ${loadedVector.mismatch.message}`)
        return {
          keyword,
          keywordFollower,
          vector: undefined,
          vectorFollower: IndexFollower.refused(partitions, loadedVector.mismatch.message),
          mismatch: loadedVector.mismatch
        } satisfies TenantIndexes
      }
      const vec = yield* unlessAhead(`vector index of ${tenant}`, loadedVector)
      const vector = vec?.index ?? VectorIndex.empty(embedder.id, embedder.dimension, hnswParams)
      const vectorFollower = yield* IndexFollower.start(
        engine,
        vectorSink(tenant, vector, vec?.generation ?? 0),
        followerOptions(tenant, vec?.positions),
        scope
      )
      return { keyword, keywordFollower, vector, vectorFollower, mismatch: undefined } satisfies TenantIndexes
    })

  const runFork = Effect.runPromiseWith(yield* Effect.context<never>())

  /** The tenant's indexes, opened once (concurrent first calls share the opening). */
  const tenantIndexes = (tenant: string): Effect.Effect<TenantIndexes> => {
    const ready = loaded.get(tenant)
    if (ready !== undefined) return Effect.succeed(ready)
    let opening = tenants.get(tenant)
    if (opening === undefined) {
      // Opened outside the caller's fiber: an interrupted first search must not leave the tenant half-open.
      opening = runFork(Effect.tap(openTenant(tenant), (t) => Effect.sync(() => loaded.set(tenant, t))))
      tenants.set(tenant, opening)
    }
    const p = opening
    return Effect.promise(() => p)
  }

  const validTenant = (tenant: string) =>
    Schema.decodeUnknownExit(Ids.TenantId)(tenant)._tag === "Success"
      ? Effect.succeed(tenant)
      : Effect.fail(invalid("tenant", `invalid tenant: ${JSON.stringify(tenant).slice(0, 100)}`))

  yield* Effect.addFinalizer(() =>
    Effect.forEach(loaded.values(), (t) => Effect.andThen(t.keywordFollower.stop, t.vectorFollower.stop), {
      discard: true
    })
  )

  // ---- validation --------------------------------------------------------------------------------------------------

  const parseTime = (value: string | undefined, field: string) =>
    value === undefined ? Effect.succeed(undefined) : Option.match(AsOf.parseTimestamp(value), {
      onNone: () => Effect.fail(invalid(field, "expected an ISO-8601 timestamp")),
      onSome: (t) => Effect.succeed(t)
    })

  const parseAsOf = (value: string | undefined) =>
    value === undefined ? Effect.succeed(undefined) : Option.match(AsOf.parse(value), {
      onNone: () => Effect.fail(invalid("asOf", "expected an ISO-8601 timestamp or a position vector like 3:120,7:88")),
      onSome: (a) => Effect.succeed(a)
    })

  const parseWaitFor = (value: string | undefined) =>
    Effect.gen(function*() {
      if (value === undefined) return undefined
      const parsed = AsOf.parse(value)
      if (Option.isNone(parsed) || parsed.value._tag !== "Positions") {
        return yield* invalid("waitFor", "expected a position vector like 3:120,7:88")
      }
      for (const p of parsed.value.positions.keys()) {
        if (p >= partitions) return yield* invalid("waitFor", `partition ${p} does not exist (${partitions} partitions)`)
      }
      return parsed.value.positions
    })

  const validate = (request: SearchRequest) =>
    Effect.gen(function*() {
      const query = request.query.trim()
      if (query === "") return yield* invalid("query", "query must not be empty")
      if (request.query.length > config.queryCharsMax) {
        return yield* new Errors.LimitExceeded({
          limit: "queryCharsMax",
          max: config.queryCharsMax,
          actual: request.query.length,
          message: `a query has at most ${config.queryCharsMax} characters`
        })
      }
      const mode = request.mode ?? "hybrid"
      if (!["keyword", "semantic", "hybrid"].includes(mode)) {
        return yield* invalid("mode", "mode must be keyword, semantic or hybrid")
      }
      const limit = request.limit ?? config.hitsDefault
      if (!Number.isInteger(limit) || limit < 1) return yield* invalid("limit", "limit must be a positive integer")
      if (limit > config.hitsMax) {
        return yield* new Errors.LimitExceeded({
          limit: "hitsMax",
          max: config.hitsMax,
          actual: limit,
          message: `a search returns at most ${config.hitsMax} hits`
        })
      }
      const types = request.types ?? []
      if (types.length > config.filterTypesMax) {
        return yield* new Errors.LimitExceeded({
          limit: "filterTypesMax",
          max: config.filterTypesMax,
          actual: types.length,
          message: `a search filters on at most ${config.filterTypesMax} event types`
        })
      }
      for (const [i, t] of types.entries()) {
        if (Schema.decodeUnknownExit(Ids.EventType)(t)._tag === "Failure") {
          return yield* invalid(`types[${i}]`, `invalid event type: ${JSON.stringify(t).slice(0, 100)}`)
        }
      }
      const filter: SearchFilter = {
        types,
        streamPrefix: request.streamPrefix === "" ? undefined : request.streamPrefix,
        since: yield* parseTime(request.since, "since"),
        until: yield* parseTime(request.until, "until"),
        asOf: yield* parseAsOf(request.asOf)
      }
      const waitFor = yield* parseWaitFor(request.waitFor)
      return { query, mode, limit, filter, waitFor }
    })

  // ---- search ------------------------------------------------------------------------------------------------------

  const unavailable = (message: string, retryable = true) => new Errors.Unavailable({ message, retryable })

  /** The hit events from the engine; one that is not there (or not the indexed one) is dropped, never substituted. */
  const fetchEvents = (tenant: string, keys: ReadonlyArray<number>, streams: ReadonlyMap<number, string>) =>
    Effect.forEach(keys, (key) => {
      const partition = Math.floor(key / 2 ** 40)
      const seq = key - partition * 2 ** 40
      return engine.readPartition(tenant, partition, { fromSeq: seq, limit: 1 }).pipe(
        Effect.map((events) => {
          const e = events[0]
          return e !== undefined && e.seq === seq && e.stream === streams.get(key) ? e : undefined
        }),
        Effect.catchTag(["InvalidRequest", "LimitExceeded"], (e) => Effect.die(e))
      )
    }, { concurrency: "unbounded" })

  // ---- forks -------------------------------------------------------------------------------------------------------

  /** `p:seq,…` (a fork's base as `Forks` reports it) as one sequence per partition (unlisted: 0). */
  const parseBase = (base: string): Array<number> => {
    const out = new Array<number>(partitions).fill(0)
    for (const part of base.split(",")) {
      const [p, seq] = part.split(":")
      if (p !== undefined && seq !== undefined && Number(p) < partitions) out[Number(p)] = Number(seq)
    }
    return out
  }

  /**
   * What a fork sees that the tenant's indexes do not hold: `seqMax`, the bound of its view of main (the minimum of
   * the bases along its branch chain), and every event it sees above that bound (its own, and its ancestors' below
   * its base), read through the fork's engine.
   */
  const forkView = (tenant: string, forkId: string) =>
    Effect.gen(function*() {
      if (Option.isNone(forks)) return yield* invalid("fork", "this node serves no forks")
      const service = forks.value
      const forkEngine = yield* service.engine(tenant, forkId)
      let info = yield* service.get(tenant, forkId)
      const seqMax = parseBase(info.base)
      while (info.parent !== Fork.mainParent) {
        info = yield* service.get(tenant, info.parent)
        parseBase(info.base).forEach((seq, p) => {
          seqMax[p] = Math.min(seqMax[p]!, seq)
        })
      }
      const page = engine.config.readEventsMax
      const events: Array<StoredEvent> = []
      for (let p = 0; p < partitions; p++) {
        let from = seqMax[p]! + 1
        while (true) {
          const got = yield* forkEngine.router.scan(p, tenant, { fromSeq: from, limit: page })
          for (const e of got) events.push(e)
          if (events.length > config.forkSearchEventsMax) {
            return yield* new Errors.LimitExceeded({
              limit: "forkSearchEventsMax",
              max: config.forkSearchEventsMax,
              actual: events.length,
              message: `fork ${forkId} holds more than ${config.forkSearchEventsMax} events of its own, which a ` +
                "search ranks on the spot; merge or discard it"
            })
          }
          if (got.length < page) break
          from = got[got.length - 1]!.seq + 1
        }
      }
      return { seqMax, events }
    })

  /** The fork's events ranked for `query` (keyword and/or semantic), best first, with the same filter. */
  const rankForkEvents = (
    events: ReadonlyArray<StoredEvent>,
    query: string,
    queryVector: Float32Array | undefined,
    candidates: number,
    filter: SearchFilter,
    useKeyword: boolean
  ) =>
    Effect.gen(function*() {
      const keyword: Array<{ event: StoredEvent; score: number }> = []
      const semantic: Array<{ event: StoredEvent; score: number }> = []
      if (events.length === 0) return { keyword, semantic }
      if (useKeyword) {
        const index = new KeywordIndex(config, extractionFingerprint)
        const byDoc: Array<StoredEvent> = []
        for (const e of events) byDoc[index.add(e)] = e
        for (const h of index.search(query, candidates, index.docs.compile(filter), bm25)) {
          keyword.push({ event: byDoc[h.doc]!, score: h.score })
        }
      }
      if (queryVector !== undefined) {
        const table = new DocTable()
        const byDoc: Array<StoredEvent> = []
        for (const e of events) byDoc[table.add(e)] = e
        const accept = table.compile(filter)
        const passing = byDoc.filter((_, doc) => accept(doc))
        const vectors: Array<Float32Array> = []
        for (let i = 0; i < passing.length; i += config.embedBatchTexts) {
          const chunk = passing.slice(i, i + config.embedBatchTexts)
          vectors.push(...yield* embedder.embed(chunk.map((e) => extract(e, config).sentence)).pipe(
            Effect.mapError((e) => unavailable(`the embedder failed: ${e.message}`, e.retryable))
          ))
        }
        const norm = (v: Float32Array) => {
          let n = 0
          for (let i = 0; i < v.length; i++) n += v[i]! * v[i]!
          return Math.sqrt(n) || 1
        }
        const qn = norm(queryVector)
        passing.forEach((event, i) => {
          const v = vectors[i]!
          let dot = 0
          for (let j = 0; j < v.length; j++) dot += v[j]! * queryVector[j]!
          semantic.push({ event, score: dot / (qn * norm(v)) })
        })
        semantic.sort((a, b) => b.score - a.score || a.event.seq - b.event.seq)
        semantic.length = Math.min(semantic.length, candidates)
      }
      return { keyword, semantic }
    })

  /** Two score-ordered lists as one, best first, cut at `k`. */
  const mergeByScore = (
    a: ReadonlyArray<{ key: number; score: number }>,
    b: ReadonlyArray<{ key: number; score: number }>,
    k: number
  ) => [...a, ...b].sort((x, y) => y.score - x.score || x.key - y.key).slice(0, k)

  const search = (tenant: string, request: SearchRequest) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      const { filter, limit, mode, query, waitFor } = yield* validate(request)
      const view = request.fork === undefined ? undefined : yield* forkView(tenant, request.fork)
      const mainFilter: SearchFilter = view === undefined ? filter : { ...filter, seqMax: view.seqMax }
      const t = yield* tenantIndexes(tenant)
      const useKeyword = mode !== "semantic"
      const useSemantic = mode !== "keyword"
      if (useSemantic && t.mismatch !== undefined) return yield* t.mismatch
      if (useSemantic && t.vectorFollower.state() === "stopped") {
        return yield* unavailable(`the vector index of ${tenant} stopped: ${t.vectorFollower.error()}`, false)
      }
      if (waitFor !== undefined) {
        const waits = [
          ...(useKeyword ? [t.keywordFollower.awaitPositions(waitFor, config.waitForMsMax)] : []),
          ...(useSemantic ? [t.vectorFollower.awaitPositions(waitFor, config.waitForMsMax)] : [])
        ]
        const reached = yield* Effect.all(waits, { concurrency: "unbounded" })
        if (!reached.every(Boolean)) {
          return yield* unavailable(
            `the search index of ${tenant} did not reach ${request.waitFor} within ${config.waitForMsMax} ms (waitForMsMax)`
          )
        }
      }
      const candidates = mode === "hybrid" ? Math.max(limit, config.hybridCandidatesMax) : limit
      const streamOfKey = new Map<number, string>()
      let keywordHits = useKeyword
        ? t.keyword.search(query, candidates, t.keyword.docs.compile(mainFilter), bm25).map((h) => ({
          key: keyOf(t.keyword, h.doc, streamOfKey),
          score: h.score
        }))
        : []
      let semanticHits: Array<{ key: number; score: number }> = []
      const forkEvents = view?.events ?? []
      let queryVector: Float32Array | undefined
      if (useSemantic && ((t.vector !== undefined && t.vector.documents > 0) || forkEvents.length > 0)) {
        const [vector] = yield* embedder.embed([query]).pipe(
          Effect.mapError((e) => unavailable(`the embedder failed: ${e.message}`, e.retryable))
        )
        queryVector = vector!
      }
      if (queryVector !== undefined && t.vector !== undefined && t.vector.documents > 0) {
        const vi = t.vector
        semanticHits = vi.search(queryVector, candidates, vi.docs.compile(mainFilter)).map((h) => ({
          key: keyOf(vi, h.doc, streamOfKey),
          score: h.score
        }))
      }
      // A fork's own events: ranked apart (they are not indexed), merged into each list by score.
      const inFork = new Map<number, StoredEvent>()
      if (forkEvents.length > 0) {
        const own = yield* rankForkEvents(forkEvents, query, queryVector, candidates, filter, useKeyword)
        const keyed = (list: ReadonlyArray<{ event: StoredEvent; score: number }>) =>
          list.map(({ event, score }) => {
            const key = positionKey(event.partition, event.seq)
            inFork.set(key, event)
            return { key, score }
          })
        keywordHits = mergeByScore(keywordHits, keyed(own.keyword), candidates)
        semanticHits = mergeByScore(semanticHits, keyed(own.semantic), candidates)
      }
      const ranked: Array<{ key: number; score: number; matchedBy: ReadonlyArray<SearchApi.MatchedBy> }> =
        mode === "keyword"
          ? keywordHits.map((h) => ({ ...h, matchedBy: ["keyword"] }))
          : mode === "semantic"
          ? semanticHits.map((h) => ({ ...h, matchedBy: ["semantic"] }))
          : reciprocalRankFusion([
            { list: "keyword" as const, keys: keywordHits.map((h) => h.key) },
            { list: "semantic" as const, keys: semanticHits.map((h) => h.key) }
          ], config.rrfK)
      const top = ranked.slice(0, limit)
      const fetched = yield* fetchEvents(tenant, top.filter((h) => !inFork.has(h.key)).map((h) => h.key), streamOfKey)
      let next = 0
      const events = top.map((h) => inFork.get(h.key) ?? fetched[next++])
      const hits: Array<Hit> = []
      top.forEach((h, i) => {
        const event = events[i]
        if (event !== undefined) hits.push({ event, score: h.score, matchedBy: h.matchedBy })
      })
      return hits
    })

  /** A hit's key (its position), remembering the stream it was indexed under to check the fetched event against. */
  const keyOf = (index: KeywordIndex | VectorIndex, doc: number, streams: Map<number, string>): number => {
    const p = index.docs.position(doc)
    const key = positionKey(p.partition, p.seq)
    streams.set(key, index.docs.streams[index.docs.streamId.data[doc]!]!)
    return key
  }

  // ---- status ------------------------------------------------------------------------------------------------------

  const indexStatus = (follower: IndexFollower.Follower, documents: number) =>
    Effect.map(follower.progress, (progress): SearchApi.IndexStatus => {
      const error = follower.error()
      return {
        state: follower.state(),
        documents,
        position: progress.filter((p) => p.position > 0).map((p) => `${p.partition}:${p.position}`).join(","),
        lag: progress.reduce((n, p) => n + p.lag, 0),
        partitions: progress,
        ...(error === undefined ? {} : { error })
      }
    })

  const status: SearchShape["status"] = (tenant) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      const t = yield* tenantIndexes(tenant)
      const keyword = yield* indexStatus(t.keywordFollower, t.keyword.documents)
      const semantic = yield* indexStatus(t.vectorFollower, t.vector?.documents ?? 0)
      return {
        tenant,
        keyword,
        semantic: { ...semantic, embedder: embedder.id, dimension: embedder.dimension }
      }
    })

  const removeStream: SearchShape["removeStream"] = (tenant, stream) =>
    Effect.gen(function*() {
      yield* validTenant(tenant)
      if (Schema.decodeUnknownExit(Ids.StreamId)(stream)._tag === "Failure") {
        return yield* invalid("stream", `invalid stream: ${JSON.stringify(stream).slice(0, 100)}`)
      }
      const t = yield* tenantIndexes(tenant)
      const keyword = t.keyword.removeStream(stream)
      const semantic = t.vector?.removeStream(stream) ?? 0
      t.keywordFollower.touch()
      t.vectorFollower.touch()
      return { keyword, semantic }
    })

  const track: SearchShape["track"] = (tenant) => Effect.asVoid(Effect.andThen(validTenant(tenant), tenantIndexes(tenant)))

  // Tenants known at start-up: configured ones and those with a snapshot on disk (opened in the background).
  const known = new Set(config.tenants.split(",").map((t) => t.trim()).filter((t) => t !== ""))
  if (options.directory !== undefined) {
    const dir = options.directory
    const entries = yield* Effect.promise(() => fs.readdir(dir).catch(() => [] as Array<string>))
    for (const e of entries) known.add(e)
  }
  yield* Effect.forkIn(
    Effect.forEach(known, (tenant) => Effect.ignore(track(tenant)), { discard: true }),
    scope
  )

  const indexes: SearchShape["indexes"] = (tenant) =>
    Effect.map(Effect.andThen(validTenant(tenant), tenantIndexes(tenant)), (t) => ({ keyword: t.keyword, vector: t.vector }))

  return Search.of({ search: search as SearchShape["search"], status, removeStream, track, indexes })
})
