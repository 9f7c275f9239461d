/**
 * The vector index of one tenant: an HNSW graph (hnswlib-node, cosine) over the embeddings of its events, labelled by
 * `DocTable` document number, with the embedder identity (`embedder`, `dimension`) it was built with. It owns
 * incremental insertion, per-stream deletion (`markDelete`), filtered k-nearest-neighbour search, and its snapshot
 * (the graph file written by hnswlib plus a checksummed document table).
 *
 * Filtered search never cuts the top-k before filtering. The strategy depends on how many live documents pass the
 * filter (counted over the document table, a few array reads each):
 *  - at most `vectorExactFilterDocsMax`: a scan of the passing documents — cosine of the query against an int8 copy
 *    of each normalised vector (kept beside the graph: 1 byte a dimension + a 4-byte step, scaled by the largest
 *    component so small components keep their precision; reading vectors back from hnswlib costs
 *    ~0.1–0.25 ms each through N-API). A selective filter is where a graph search either loses recall (over-fetch)
 *    or time (the callback walks most of the graph to find few passing nodes). int8 rounding can swap near-ties
 *    at the k-th place; the benchmark reports this scan's recall against float brute force;
 *  - more: hnswlib's filtered search (the filter is checked inside the graph walk, so the result is the top-k among
 *    passing documents up to HNSW's own approximation), with `ef` at least `k`.
 * `bench/search.ts` measures over-fetch against these two.
 */
import hnswlib from "hnswlib-node"
import type { Event } from "@chronos/domain"
import { DocTable } from "./DocTable.ts"
import type { TypedArray } from "./internal/snapshotFile.ts"

type Hnsw = InstanceType<typeof hnswlib.HierarchicalNSW>

export interface HnswParams {
  readonly m: number
  readonly efConstruction: number
  readonly efSearch: number
  /** Filters passing at most this many live documents are answered exactly. */
  readonly exactFilterDocsMax: number
}

export interface VectorHit {
  readonly doc: number
  /** Cosine similarity, in [-1, 1]. */
  readonly score: number
}

export type FilterStrategy = "none" | "exact" | "graph" | "overfetch"

const snapshotVersion = 1
const initialCapacity = 1_024

const toArray = (v: Float32Array): Array<number> => Array.from(v)

export class VectorIndex {
  readonly docs: DocTable
  readonly embedder: string
  readonly dimension: number
  readonly params: HnswParams
  private index: Hnsw
  private capacity: number
  /** `dimension` int8 components per document: round(u / step), u = v / |v|, step = max|u_i| / 127. */
  private quantized: Int8Array
  /** The `step` of each document's components. */
  private steps: Float32Array
  /** Which strategy the last search used (for tests and the benchmark). */
  lastStrategy: FilterStrategy = "none"

  private constructor(
    embedder: string,
    dimension: number,
    params: HnswParams,
    index: Hnsw,
    capacity: number,
    docs: DocTable,
    quantized: Int8Array,
    steps: Float32Array
  ) {
    this.embedder = embedder
    this.dimension = dimension
    this.params = params
    this.index = index
    this.capacity = capacity
    this.docs = docs
    this.quantized = quantized
    this.steps = steps
  }

  static empty(embedder: string, dimension: number, params: HnswParams): VectorIndex {
    const index = new hnswlib.HierarchicalNSW("cosine", dimension)
    index.initIndex({
      maxElements: initialCapacity,
      m: params.m,
      efConstruction: params.efConstruction,
      // Fixed seed: the same events in the same order build the same graph (reproducible tests and benchmarks).
      randomSeed: 100
    })
    return new VectorIndex(
      embedder,
      dimension,
      params,
      index,
      initialCapacity,
      new DocTable(),
      new Int8Array(initialCapacity * dimension),
      new Float32Array(initialCapacity)
    )
  }

  get documents(): number {
    return this.docs.live
  }

  /** Adds an event with its vector; returns its document number. */
  add(event: Event.StoredEvent, vector: Float32Array): number {
    if (vector.length !== this.dimension) {
      throw new Error(`vector of ${vector.length} dimensions for a ${this.dimension}-d index`)
    }
    const doc = this.docs.add(event)
    if (doc >= this.capacity) {
      this.capacity = Math.max(this.capacity * 2, doc + 1)
      this.index.resizeIndex(this.capacity)
      const grown = new Int8Array(this.capacity * this.dimension)
      grown.set(this.quantized)
      this.quantized = grown
      const steps = new Float32Array(this.capacity)
      steps.set(this.steps)
      this.steps = steps
    }
    this.index.addPoint(toArray(vector), doc)
    // Scaled by the largest component, not the norm: normalised 512-d components are ~0.04, which a norm scale
    // would round to a handful of levels.
    let norm = 0
    let max = 0
    for (let i = 0; i < vector.length; i++) {
      norm += vector[i]! * vector[i]!
      max = Math.max(max, Math.abs(vector[i]!))
    }
    const step = max > 0 ? max / Math.sqrt(norm) / 127 : 0
    const scale = step > 0 ? 1 / (Math.sqrt(norm) * step) : 0
    const o = doc * this.dimension
    for (let i = 0; i < vector.length; i++) this.quantized[o + i] = Math.round(vector[i]! * scale)
    this.steps[doc] = step
    return doc
  }

  /** Deletes every document of `stream` from the graph's results; returns how many. */
  removeStream(stream: string): number {
    const removed = this.docs.removeStream(stream)
    for (const doc of removed) this.index.markDelete(doc)
    return removed.length
  }

  /**
   * The `k` live documents nearest to `query` among those `accept` passes (`undefined`: every live document),
   * best first. `strategy` forces one (benchmarks); otherwise it is chosen as the module comment says.
   */
  search(
    query: Float32Array,
    k: number,
    accept: ((doc: number) => boolean) | undefined,
    strategy?: Exclude<FilterStrategy, "none">,
    overfetchFactor = 4
  ): Array<VectorHit> {
    if (this.docs.live === 0 || k <= 0) return []
    const q = toArray(query)
    let chosen: FilterStrategy = accept === undefined ? "none" : strategy ?? "graph"
    if (accept !== undefined && strategy === undefined) {
      const passing = this.docs.count(accept, this.params.exactFilterDocsMax)
      if (passing === 0) return []
      chosen = passing <= this.params.exactFilterDocsMax ? "exact" : "graph"
    }
    this.lastStrategy = chosen
    switch (chosen) {
      case "none":
        return this.knn(q, Math.min(k, this.docs.live), undefined)
      case "graph":
        return this.knn(q, Math.min(k, this.docs.live), accept)
      case "overfetch": {
        const wide = this.knn(q, Math.min(k * overfetchFactor, this.docs.live), undefined)
        return wide.filter((h) => accept!(h.doc)).slice(0, k)
      }
      case "exact":
        return this.exact(query, k, accept!)
    }
  }

  private knn(q: Array<number>, k: number, accept: ((doc: number) => boolean) | undefined): Array<VectorHit> {
    this.index.setEf(Math.max(this.params.efSearch, k))
    const result = accept === undefined ? this.index.searchKnn(q, k) : this.index.searchKnn(q, k, accept)
    return result.neighbors.map((doc, i) => ({ doc, score: 1 - result.distances[i]! }))
  }

  /** Cosine of the query against the int8 copy of each passing document; the top k kept in a bounded heap. */
  private exact(query: Float32Array, k: number, accept: (doc: number) => boolean): Array<VectorHit> {
    let norm = 0
    for (let i = 0; i < query.length; i++) norm += query[i]! * query[i]!
    const inverse = 1 / (Math.sqrt(norm) || 1)
    const dim = this.dimension
    const q = this.quantized
    const steps = this.steps
    // Min-heap on (score, then larger doc first out) of the best k so far.
    const heapDocs = new Int32Array(k)
    const heapScores = new Float64Array(k)
    let size = 0
    const worse = (a: number, b: number) =>
      heapScores[a]! < heapScores[b]! || (heapScores[a] === heapScores[b] && heapDocs[a]! > heapDocs[b]!)
    const swap = (a: number, b: number) => {
      const d = heapDocs[a]!
      const s = heapScores[a]!
      heapDocs[a] = heapDocs[b]!
      heapScores[a] = heapScores[b]!
      heapDocs[b] = d
      heapScores[b] = s
    }
    for (let doc = 0; doc < this.docs.size; doc++) {
      if (!accept(doc)) continue
      let dot = 0
      for (let i = 0, o = doc * dim; i < dim; i++, o++) dot += q[o]! * query[i]!
      const score = dot * steps[doc]! * inverse
      if (size < k) {
        heapDocs[size] = doc
        heapScores[size] = score
        for (let i = size++; i > 0;) {
          const p = (i - 1) >> 1
          if (!worse(i, p)) break
          swap(i, p)
          i = p
        }
      } else if (score > heapScores[0]!) {
        heapDocs[0] = doc
        heapScores[0] = score
        for (let i = 0;;) {
          const l = 2 * i + 1
          const r = l + 1
          let m = i
          if (l < size && worse(l, m)) m = l
          if (r < size && worse(r, m)) m = r
          if (m === i) break
          swap(i, m)
          i = m
        }
      }
    }
    const hits: Array<VectorHit> = []
    for (let i = 0; i < size; i++) hits.push({ doc: heapDocs[i]!, score: heapScores[i]! })
    return hits.sort((a, b) => b.score - a.score || a.doc - b.doc)
  }

  /** Float cosine over every passing document, read back from the graph: slow, for tests and benchmarks only. */
  bruteForce(query: Float32Array, k: number, accept: (doc: number) => boolean = (doc) => this.docs.isAlive(doc)) {
    let norm = 0
    for (let i = 0; i < query.length; i++) norm += query[i]! * query[i]!
    norm = Math.sqrt(norm) || 1
    const hits: Array<VectorHit> = []
    for (let doc = 0; doc < this.docs.size; doc++) {
      if (!accept(doc)) continue
      const v = this.index.getPoint(doc)
      let dot = 0
      for (let i = 0; i < v.length; i++) dot += v[i]! * query[i]!
      hits.push({ doc, score: dot / norm })
    }
    return hits.sort((a, b) => b.score - a.score || a.doc - b.doc).slice(0, k)
  }

  /** The stored (normalised) vector of a document, from the graph. */
  vectorOf(doc: number): Array<number> {
    return this.index.getPoint(doc)
  }

  /** The graph as hnswlib's file (written by its own thread pool), plus the header and document table. */
  async writeGraph(file: string): Promise<void> {
    await this.index.writeIndex(file)
  }

  snapshotMeta(extra: unknown, graphFile: string): { header: unknown; arrays: Record<string, TypedArray> } {
    const docs = this.docs.toSnapshot()
    return {
      header: {
        kind: "vector",
        version: snapshotVersion,
        embedder: this.embedder,
        dimension: this.dimension,
        m: this.params.m,
        efConstruction: this.params.efConstruction,
        capacity: this.capacity,
        graphFile,
        docs: docs.header,
        extra
      },
      arrays: {
        ...docs.arrays,
        "vec.quantized": this.quantized.subarray(0, this.docs.size * this.dimension),
        "vec.steps": this.steps.subarray(0, this.docs.size)
      }
    }
  }

  /** What a stored snapshot says about itself, before the graph is read. */
  static describe(header: unknown): {
    readonly embedder: string
    readonly dimension: number
    readonly graphFile: string
    readonly compatible: boolean
    readonly extra: unknown
  } {
    const h = header as { kind: string; version: number; embedder: string; dimension: number; graphFile: string; extra: unknown }
    return {
      embedder: h.embedder,
      dimension: h.dimension,
      graphFile: h.graphFile,
      compatible: h.kind === "vector" && h.version === snapshotVersion,
      extra: h.extra
    }
  }

  static async load(
    header: unknown,
    arrays: Readonly<Record<string, TypedArray>>,
    graphPath: string,
    params: HnswParams
  ): Promise<VectorIndex> {
    const h = header as { embedder: string; dimension: number; capacity: number; docs: unknown }
    const docs = DocTable.fromSnapshot(h.docs, arrays)
    const index = new hnswlib.HierarchicalNSW("cosine", h.dimension)
    await index.readIndex(graphPath)
    if (index.getCurrentCount() !== docs.size) {
      throw new Error(`graph holds ${index.getCurrentCount()} vectors, document table ${docs.size}`)
    }
    const stored = arrays["vec.quantized"]
    const storedSteps = arrays["vec.steps"]
    if (
      !(stored instanceof Int8Array) || stored.length !== docs.size * h.dimension ||
      !(storedSteps instanceof Float32Array) || storedSteps.length !== docs.size
    ) throw new Error("snapshot lacks the quantized vectors")
    const capacity = index.getMaxElements()
    const quantized = new Int8Array(capacity * h.dimension)
    quantized.set(stored)
    const steps = new Float32Array(capacity)
    steps.set(storedSteps)
    return new VectorIndex(h.embedder, h.dimension, params, index, capacity, docs, quantized, steps)
  }
}
