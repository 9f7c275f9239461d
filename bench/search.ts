/**
 * `node --expose-gc bench/search.ts [--events N] [--model-events N] [--queries N] [--fts5] [--no-model]`: native search on this
 * machine, printed as one JSON document on stdout (progress on stderr).
 *
 * 1. Index throughput, end to end: N events (default 100k, synthetic shop events from templates, each with a rare
 *    id) appended to an engine over the memory log, then `Search` started on the tenant; time until each index has
 *    caught up (both indexes run at once on the one event-loop thread, as in a node). The vector index uses the
 *    hashing test embedder at 512-d (the local model's dimension), so the figure is HNSW insertion, not the model.
 * 2. Query latency p50/p99 per mode at N events, through `Search.search` (validation, filters, fusion and fetching
 *    the hit events included); semantic/hybrid with the hashing embedder, plus the local model's query-embedding
 *    latency measured separately.
 * 3. HNSW recall@10 against exact brute force over the same vectors (read back from the index), at the default
 *    `ef` and others; on the hashing vectors at N, and on the local model's vectors at `--model-events`.
 * 4. Filtered vector search: over-fetch (×4) against the filtered graph walk and the exact scan, by selectivity.
 * 5. Memory: heap and RSS growth of indexing N events (after GC), and snapshot sizes.
 * 6. The local model's embedding throughput (1 and 2 worker threads).
 * 7. With `--fts5`: the same BM25 queries on node:sqlite FTS5 (exact BM25) for comparison.
 *
 * `--no-model` skips 6, `--model-events 0` the local model's indexing run.
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import { mkdtempSync, rmSync, statSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import { Embedder } from "@chronos/search/Embedder"
import { encode } from "@chronos/search/internal/snapshotFile"
import { Search } from "@chronos/search/Search"
import { defaults as searchDefaults, SearchConfig } from "@chronos/search/SearchConfig"
import type { VectorIndex } from "@chronos/search/VectorIndex"

const argv = process.argv.slice(2)
const flag = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(argv[i + 1])
}
const N = flag("events", 100_000)
const MODEL_N = flag("model-events", 5_000)
const QUERIES = flag("queries", 200)
const log = (line: string) => process.stderr.write(`${line}\n`)
const gc = () => (globalThis as { gc?: () => void }).gc?.()
const mib = (bytes: number) => Math.round((bytes / 1_048_576) * 10) / 10
const now = () => performance.now()
const results: Record<string, unknown> = { events: N, machine: { cpus: os.cpus().length, node: process.version } }

// ---- corpus ----------------------------------------------------------------------------------------------------------

let seed = 12345
const rnd = () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) / 4294967296
}
const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rnd() * xs.length)]!
const names = ["Ada", "Grace", "Alan", "Marie", "Linus", "Barbara", "Edsger", "Donald", "Frances", "Ken", "Radia", "Tim"]
  .flatMap((f) => ["Smith", "Garcia", "Chen", "Müller", "Rossi", "Kowalski", "Silva", "Okafor"].map((l) => `${f} ${l}`))
const products = [
  "laptop", "wireless mouse", "standing desk", "espresso machine", "running shoes", "headphones", "office chair",
  "monitor", "keyboard", "phone case", "backpack", "water bottle", "desk lamp", "coffee beans", "tea kettle",
  "winter jacket", "yoga mat", "bicycle helmet", "camera lens", "smart watch", "printer ink", "blender", "notebook"
]
const cities = ["Paris", "Berlin", "Lisbon", "Madrid", "Rome", "Vienna", "Warsaw", "Oslo", "Dublin", "Prague", "Athens"]
const reasons = [
  "card declined by the bank", "insufficient funds", "address not found", "customer changed their mind",
  "item arrived damaged", "wrong size", "late delivery", "duplicate order", "fraud suspected", "price too high"
]
const templates: ReadonlyArray<[string, () => { text: string } & Record<string, string>]> = [
  ["OrderPlaced", () => ({ text: `${pick(names)} ordered ${1 + Math.floor(rnd() * 5)} ${pick(products)} for delivery to ${pick(cities)}` })],
  ["OrderCancelled", () => ({ text: `order cancelled because ${pick(reasons)}`, customer: pick(names) })],
  ["OrderShipped", () => ({ text: `${pick(products)} shipped from the ${pick(cities)} warehouse`, carrier: pick(["DHL", "UPS", "FedEx"]) })],
  ["PaymentFailed", () => ({ text: `payment of ${pick(names)} failed: ${pick(reasons)}` })],
  ["PaymentCaptured", () => ({ text: `payment captured for ${pick(products)}`, method: pick(["card", "paypal", "transfer"]) })],
  ["RefundIssued", () => ({ text: `refund issued to ${pick(names)} because ${pick(reasons)}` })],
  ["AddressChanged", () => ({ text: `${pick(names)} moved from ${pick(cities)} to ${pick(cities)}` })],
  ["UserLoggedIn", () => ({ text: `${pick(names)} signed in from ${pick(cities)} on ${pick(["phone", "tablet", "desktop"])}` })],
  ["TicketOpened", () => ({ text: `support ticket: the ${pick(products)} stopped working after ${1 + Math.floor(rnd() * 30)} days` })],
  ["ReviewPosted", () => ({ text: `${1 + Math.floor(rnd() * 5)} stars for the ${pick(products)}: ${pick(["great", "terrible", "okay", "excellent", "poor"])} quality` })],
  ["StockDepleted", () => ({ text: `${pick(products)} out of stock in ${pick(cities)}` })],
  ["InventoryRestocked", () => ({ text: `${100 + Math.floor(rnd() * 900)} units of ${pick(products)} restocked in ${pick(cities)}` })]
]
const makeEvent = (i: number) => {
  const [type, data] = pick(templates)
  return { stream: `${type.toLowerCase()}-${i % 20_000}`, type, data: { ...data(), ref: `REF-${(i * 7919) % 1_000_003}` } }
}
const queryTexts = (n: number) => Array.from({ length: n }, () => makeEvent(Math.floor(rnd() * 1e9)).data.text)

const percentile = (xs: Array<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 1000) / 1000
}
const latency = async (n: number, f: (i: number) => Promise<unknown>) => {
  const ms: Array<number> = []
  for (let i = 0; i < n; i++) {
    const t = now()
    await f(i)
    ms.push(now() - t)
  }
  return { p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) }
}

// ---- engine + search --------------------------------------------------------------------------------------------------

const makeRuntime = (embedder: Layer.Layer<Embedder>) => {
  const chronos = ChronosConfig.layer({ partitions: 8, logDriver: "memory" })
  const engine = Engine.layerLocal.pipe(Layer.provide(EventLog.layerMemory), Layer.provide(chronos))
  return ManagedRuntime.make(Search.layerMemory.pipe(
    Layer.provideMerge(embedder),
    Layer.provide(SearchConfig.layer({ indexIdleWaitMs: 20 })),
    Layer.provideMerge(engine)
  ))
}

const appendAll = (rt: ReturnType<typeof makeRuntime>, tenant: string, count: number) =>
  rt.runPromise(Effect.gen(function*() {
    const engine = yield* Engine
    for (let i = 0; i < count; i += 1_000) {
      const batch = Array.from({ length: Math.min(1_000, count - i) }, (_, k) => {
        const e = makeEvent(i + k)
        return { tenant, stream: e.stream, request: { events: [{ type: e.type, data: e.data }] } as never }
      })
      yield* engine.appendMany(batch)
    }
  }))

const withSearch = <A, E>(f: (s: Search["Service"]) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    return yield* f(yield* Search)
  })

/** Every vector of the index, read back once (hnswlib stores cosine vectors normalised). */
const vectorsOf = (index: VectorIndex) => {
  const dim = index.dimension
  const all = new Float32Array(index.docs.size * dim)
  for (let d = 0; d < index.docs.size; d++) all.set(index.vectorOf(d), d * dim)
  return all
}

/** Float cosine of document `d` (from `all`) with `q`. */
const cosine = (all: Float32Array, dim: number, q: Float32Array, d: number) => {
  let norm = 0
  let dot = 0
  for (let i = 0, o = d * dim; i < dim; i++, o++) {
    norm += q[i]! * q[i]!
    dot += all[o]! * q[i]!
  }
  return dot / (Math.sqrt(norm) || 1)
}

/** The exact top-k among accepted documents: their ids and the k-th score (the bar a correct answer must reach). */
const exactTopK = (all: Float32Array, dim: number, q: Float32Array, k: number, accept: (d: number) => boolean) => {
  const scores: Array<[number, number]> = []
  for (let d = 0; d * dim < all.length; d++) if (accept(d)) scores.push([d, cosine(all, dim, q, d)])
  const top = scores.sort((a, b) => b[1] - a[1]).slice(0, k)
  return { docs: top.map(([d]) => d), bar: top.length === 0 ? Infinity : top[top.length - 1]![1] }
}

/**
 * Tie-aware recall: a returned document counts when its true cosine reaches the k-th true score (minus float noise).
 * Many synthetic events differ only by their unique id, so exact ties at the k-th place are common; which of the tied
 * documents is returned does not make an answer wrong.
 */
const hitsOf = (
  all: Float32Array,
  dim: number,
  q: Float32Array,
  truth: { readonly docs: ReadonlyArray<number>; readonly bar: number },
  got: ReadonlyArray<number>
) => Math.min(truth.docs.length, got.filter((d) => truth.docs.includes(d) || cosine(all, dim, q, d) >= truth.bar - 1e-6).length)

const recallAt10 = (index: VectorIndex, all: Float32Array, queries: ReadonlyArray<Float32Array>, efs: ReadonlyArray<number>) => {
  const truth = queries.map((q) => exactTopK(all, index.dimension, q, 10, (d) => index.docs.isAlive(d)))
  const out: Record<string, unknown> = {}
  const params = index.params as { efSearch: number }
  const original = params.efSearch
  for (const ef of efs) {
    params.efSearch = ef
    let hit = 0
    const ms: Array<number> = []
    queries.forEach((q, i) => {
      const t = now()
      const got = index.search(q, 10, undefined).map((h) => h.doc)
      ms.push(now() - t)
      hit += hitsOf(all, index.dimension, q, truth[i]!, got)
    })
    out[`ef${ef}`] = { recallAt10: Math.round((hit / (queries.length * 10)) * 1000) / 1000, p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) }
  }
  params.efSearch = original
  return out
}

const main = async () => {
  // ---- 1. throughput, 2. latency, 3. recall, 4. filters, 5. memory (hashing embedder, 512-d) ----------------------
  const rt = makeRuntime(Embedder.layerTest(512))
  log(`appending ${N} events…`)
  let t = now()
  await appendAll(rt, "bench", N)
  results.appendSeconds = Math.round((now() - t) / 10) / 100
  gc()
  const before = process.memoryUsage()
  log("indexing…")
  t = now()
  await rt.runPromise(withSearch((s) => s.track("bench")))
  let keywordDone = 0
  let vectorDone = 0
  while (vectorDone === 0) {
    const status = await rt.runPromise(withSearch((s) => s.status("bench")))
    if (keywordDone === 0 && status.keyword.lag === 0 && status.keyword.documents === N) keywordDone = now() - t
    if (status.semantic.lag === 0 && status.semantic.documents === N) vectorDone = now() - t
    await new Promise((r) => setTimeout(r, 100))
    if ((now() - t) % 10_000 < 100) log(`  keyword ${status.keyword.documents}, vector ${status.semantic.documents}`)
  }
  results.indexThroughput = {
    note: "both indexes follow the engine concurrently on one thread; vector = HNSW insertion of 512-d hashing vectors",
    keyword: { seconds: Math.round(keywordDone / 10) / 100, eventsPerSecond: Math.round(N / (keywordDone / 1000)) },
    vector: { seconds: Math.round(vectorDone / 10) / 100, eventsPerSecond: Math.round(N / (vectorDone / 1000)) }
  }
  log(JSON.stringify(results.indexThroughput))
  gc()
  const after = process.memoryUsage()
  const { keyword, vector } = await rt.runPromise(withSearch((s) => s.indexes("bench")))
  const dir = mkdtempSync(path.join(os.tmpdir(), "chronos-search-bench-"))
  await vector!.writeGraph(path.join(dir, "g.hnsw"))
  results.memory = {
    heapGrowthMiB: mib(after.heapUsed - before.heapUsed),
    rssGrowthMiB: mib(after.rss - before.rss),
    perEvents: N,
    keywordSnapshotMiB: mib(encode(keyword.toSnapshot({})).length),
    vectorGraphFileMiB: mib(statSync(path.join(dir, "g.hnsw")).size),
    vocabulary: keyword.vocabulary
  }
  rmSync(dir, { recursive: true, force: true })
  log(JSON.stringify(results.memory))

  const texts = queryTexts(QUERIES)
  const rare = Array.from({ length: QUERIES }, () => `REF-${(Math.floor(rnd() * N) * 7919) % 1_000_003}`)
  const common = ["order", "payment failed", "the customer", "stars for the", "shipped from the warehouse"]
  const lat: Record<string, unknown> = {}
  for (const mode of ["keyword", "semantic", "hybrid"] as const) {
    lat[mode] = await latency(QUERIES, (i) => rt.runPromise(withSearch((s) => s.search("bench", { query: texts[i]!, mode }))))
  }
  lat.keywordRareTerm = await latency(QUERIES, (i) => rt.runPromise(withSearch((s) => s.search("bench", { query: rare[i]!, mode: "keyword" }))))
  lat.keywordCommonTerms = await latency(QUERIES, (i) =>
    rt.runPromise(withSearch((s) => s.search("bench", { query: common[i % common.length]!, mode: "keyword" }))))
  lat.hybridFilteredType = await latency(QUERIES, (i) =>
    rt.runPromise(withSearch((s) => s.search("bench", { query: texts[i]!, types: ["PaymentFailed"] }))))
  results.queryLatency = { note: `${QUERIES} queries each, limit 10, through Search.search (event fetch included)`, ...lat }
  log(JSON.stringify(results.queryLatency))

  // Recall on the same vectors.
  log("recall (hashing vectors)…")
  const all = vectorsOf(vector!)
  const embedder = Embedder.layerTest(512)
  const queryVectors = await Effect.runPromise(Effect.gen(function*() {
    return yield* (yield* Embedder).embed(queryTexts(QUERIES))
  }).pipe(Effect.provide(embedder)))
  results.hnswRecallHashing = {
    vectors: N,
    dimension: 512,
    m: searchDefaults.hnswM,
    efConstruction: searchDefaults.hnswEfConstruction,
    defaultEf: searchDefaults.hnswEfSearch,
    ...recallAt10(vector!, all, queryVectors, [50, 100, 200, 400])
  }
  log(JSON.stringify(results.hnswRecallHashing))

  // Filtered vector search by selectivity: recall against the exact filtered top-10, and latency.
  log("filters…")
  const filters: Record<string, Parameters<VectorIndex["docs"]["compile"]>[0]> = {
    "since (most)": { since: (vector!.docs.timestamp.data[Math.floor(N / 2)] ?? 0) },
    "three types": { types: ["PaymentFailed", "OrderPlaced", "ReviewPosted"] },
    "one type": { types: ["PaymentFailed"] },
    "prefix orderplaced-1": { streamPrefix: "orderplaced-1" },
    "prefix orderplaced-19": { streamPrefix: "orderplaced-19" },
    "prefix orderplaced-199": { streamPrefix: "orderplaced-199" }
  }
  const filterResults: Record<string, unknown> = {}
  for (const [name, filter] of Object.entries(filters)) {
    const accept = vector!.docs.compile(filter)
    const passing = vector!.docs.count(accept, Infinity)
    const truth = queryVectors.slice(0, 50).map((q) => exactTopK(all, 512, q, 10, accept))
    const row: Record<string, unknown> = { passing }
    for (const strategy of ["overfetch", "graph", "exact"] as const) {
      if (strategy === "exact" && passing > 50_000) continue
      let hit = 0
      let expected = 0
      const ms: Array<number> = []
      queryVectors.slice(0, 50).forEach((q, i) => {
        const start = now()
        const got = vector!.search(q, 10, accept, strategy).map((h) => h.doc)
        ms.push(now() - start)
        hit += hitsOf(all, 512, queryVectors[i]!, truth[i]!, got)
        expected += truth[i]!.docs.length
      })
      row[strategy] = { recallAt10: Math.round((hit / Math.max(1, expected)) * 1000) / 1000, p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) }
    }
    filterResults[name] = row
    log(`  ${name}: ${JSON.stringify(row)}`)
  }
  results.filteredVectorSearch = {
    note: "tie-aware recall@10 against the exact float top-10 among passing documents; overfetch = top-40 unfiltered, " +
      "then filtered; exact = scan of the int8 copies; " +
      `the service picks exact when at most ${searchDefaults.vectorExactFilterDocsMax} documents pass, graph otherwise`,
    ...filterResults
  }

  // FTS5 comparison on the same corpus and queries.
  if (argv.includes("--fts5")) {
    log("fts5…")
    const { DatabaseSync } = await import("node:sqlite")
    const db = new DatabaseSync(":memory:")
    db.exec("CREATE VIRTUAL TABLE ev USING fts5(id UNINDEXED, text)")
    const insert = db.prepare("INSERT INTO ev(id, text) VALUES (?, ?)")
    seed = 12345
    const start = now()
    db.exec("BEGIN")
    for (let i = 0; i < N; i++) {
      const e = makeEvent(i)
      insert.run(i, `${e.type} ${e.stream} ${Object.values(e.data).join(" ")}`)
    }
    db.exec("COMMIT")
    const build = now() - start
    const q = db.prepare("SELECT id, bm25(ev) s FROM ev WHERE ev MATCH ? ORDER BY s LIMIT 10")
    const match = (text: string) => text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean).map((w) => `"${w}"`).join(" OR ")
    results.fts5 = {
      buildSeconds: Math.round(build / 10) / 100,
      sentenceQueries: await latency(QUERIES, async (i) => q.all(match(texts[i]!))),
      rareTerm: await latency(QUERIES, async (i) => q.all(match(rare[i]!))),
      commonTerms: await latency(QUERIES, async (i) => q.all(match(common[i % common.length]!)))
    }
    log(JSON.stringify(results.fts5))
  }
  await rt.dispose()

  // ---- 6. the local model: throughput, query latency, and HNSW recall on its vectors --------------------------------
  for (const workers of argv.includes("--no-model") ? [] : [1, 2]) {
    log(`local model, ${workers} worker(s)…`)
    const sentences = Array.from({ length: 512 }, (_, i) => makeEvent(i).data.text)
    const r = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const e = yield* Embedder
      yield* e.embed(["warm up"])
      const start = now()
      for (let i = 0; i < sentences.length; i += 32) yield* e.embed(sentences.slice(i, i + 32))
      const seconds = (now() - start) / 1000
      const single: Array<number> = []
      for (let i = 0; i < 50; i++) {
        const s = now()
        yield* e.embed([sentences[i]!])
        single.push(now() - s)
      }
      return { embeddingsPerSecond: Math.round(sentences.length / seconds), queryEmbedP50Ms: percentile(single, 50), queryEmbedP99Ms: percentile(single, 99) }
    }).pipe(Effect.provide(Embedder.layerLocal({ workers })))))
    results[`localModel${workers}Worker${workers > 1 ? "s" : ""}`] = r
    log(JSON.stringify(r))
  }

  if (MODEL_N > 0) {
    log(`local model end to end on ${MODEL_N} events…`)
    const mrt = makeRuntime(Embedder.layerLocal({ workers: 2 }))
    await appendAll(mrt, "model", MODEL_N)
    const start = now()
    await mrt.runPromise(withSearch((s) => s.track("model")))
    for (;;) {
      const status = await mrt.runPromise(withSearch((s) => s.status("model")))
      if (status.semantic.lag === 0 && status.semantic.documents === MODEL_N) break
      await new Promise((r) => setTimeout(r, 200))
    }
    const seconds = (now() - start) / 1000
    const { vector: mv } = await mrt.runPromise(withSearch((s) => s.indexes("model")))
    const qv = await mrt.runPromise(Effect.gen(function*() {
      return yield* (yield* Embedder).embed(queryTexts(Math.min(QUERIES, 100)))
    }))
    results.localModelIndexing = {
      events: MODEL_N,
      seconds: Math.round(seconds * 100) / 100,
      eventsPerSecond: Math.round(MODEL_N / seconds),
      semanticQuery: await latency(50, (i) =>
        mrt.runPromise(withSearch((s) => s.search("model", { query: texts[i % texts.length]!, mode: "semantic" })))),
      hybridQuery: await latency(50, (i) =>
        mrt.runPromise(withSearch((s) => s.search("model", { query: texts[i % texts.length]!, mode: "hybrid" })))),
      hnswRecall: recallAt10(mv!, vectorsOf(mv!), qv, [50, 100, 200])
    }
    log(JSON.stringify(results.localModelIndexing))
    await mrt.dispose()
  }

  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
}

main().catch((e) => {
  log(String(e?.stack ?? e))
  process.exit(1)
})
