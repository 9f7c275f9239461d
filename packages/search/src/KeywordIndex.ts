/**
 * The BM25 keyword index of one tenant: an inverted index (term → postings of document number and weighted term
 * frequency) over the texts of `TextExtraction`, with incremental add, per-stream removal, filtered top-k search and
 * a binary snapshot. It is a plain synchronous data structure; `Search` runs it and persists it.
 *
 * Scoring — Okapi BM25 with Lucene's (always positive) IDF, summed over the distinct query terms t:
 *
 *     score(d, q) = Σ_t  idf(t) · tf(t,d)·(k1 + 1) / ( tf(t,d) + k1·(1 − b + b·dl(d)/avgdl) )
 *     idf(t)      = ln( 1 + (N − df(t) + 0.5) / (df(t) + 0.5) )
 *
 * with k1 = `bm25K1` (1.2), b = `bm25B` (0.75), N = live documents, df(t) = live documents containing t,
 * dl(d) = the document's length in tokens, avgdl = mean dl over live documents. Field weights (type, stream, and the
 * per-event-type field rules) enter as in BM25F's simple form: tf(t,d) = Σ_f w_f·tf_f(t,d) and dl(d) = Σ_f w_f·len_f(d).
 * With every weight 1 this is exactly textbook BM25 (the test checks it against an independent implementation).
 * A query term repeated in the query counts once; terms absent from the vocabulary contribute nothing.
 *
 * Why our own index instead of a library (measured in `shared/docs/search-storage.md` and `bench/search.ts`):
 * minisearch is not textbook BM25 and costs ~74 ms p50 on common terms at 100k documents; FTS5 is exact but needs
 * SQL for metadata filters and a file per tenant; postings in arrays with a dense score accumulator are exact, filter
 * inside the ranking, and answer common-term queries at 100k documents in a few milliseconds.
 */
import type { Event } from "@chronos/domain"
import { DocTable } from "./DocTable.ts"
import type { TypedArray } from "./internal/snapshotFile.ts"
import { type ExtractionConfig, extract } from "./TextExtraction.ts"
import { tokenize } from "./Tokenizer.ts"

export interface Bm25Params {
  readonly k1: number
  readonly b: number
}

export interface ScoredDoc {
  readonly doc: number
  readonly score: number
}

const snapshotVersion = 1

/** The k-th largest score among `docs` (a bounded min-heap would be faster; k is small and this runs once a term). */
const kthBest = (scores: Float64Array, docs: ReadonlyArray<number>, k: number): number => {
  const heap: Array<number> = []
  for (const d of docs) {
    const s = scores[d]!
    if (heap.length < k) {
      heap.push(s)
      if (heap.length === k) heap.sort((x, y) => x - y)
    } else if (s > heap[0]!) {
      // Insert in order, dropping the smallest: k is at most a few hundred.
      let i = 1
      while (i < k && heap[i]! < s) i++
      heap.splice(i, 0, s)
      heap.shift()
    }
  }
  return heap[0] ?? 0
}

export class KeywordIndex {
  readonly docs: DocTable
  readonly extraction: ExtractionConfig
  readonly extractionFingerprint: string
  private terms = new Map<string, number>()
  private termList: Array<string> = []
  private postDocs: Array<Array<number>> = []
  private postTf: Array<Array<number>> = []
  /** Live documents containing each term. */
  private df: Array<number> = []
  /** Weighted length of each document. */
  private docLen: Array<number> = []
  /** The distinct terms of document d are `docTerms[docTermStart[d] .. docTermStart[d + 1])` (for removal). */
  private docTermStart: Array<number> = [0]
  private docTerms: Array<number> = []
  private totalLen = 0
  private deadPostings = 0
  private scores = new Float64Array(0)

  constructor(extraction: ExtractionConfig, fingerprint: string, docs: DocTable = new DocTable()) {
    this.extraction = extraction
    this.extractionFingerprint = fingerprint
    this.docs = docs
  }

  get documents(): number {
    return this.docs.live
  }

  get vocabulary(): number {
    return this.termList.length
  }

  /** Indexes an event; returns its document number. */
  add(event: Event.StoredEvent): number {
    const { fields } = extract(event, this.extraction)
    return this.addFields(event, fields)
  }

  /** Indexes already extracted texts (also the entry point of the BM25 conformance test). */
  addFields(event: Event.StoredEvent, fields: ReadonlyArray<{ readonly text: string; readonly weight: number }>): number {
    const tf = new Map<number, number>()
    let dl = 0
    for (const field of fields) {
      for (const word of tokenize(field.text, this.extraction.tokenCharsMax)) {
        let t = this.terms.get(word)
        if (t === undefined) {
          t = this.termList.length
          this.terms.set(word, t)
          this.termList.push(word)
          this.postDocs.push([])
          this.postTf.push([])
          this.df.push(0)
        }
        tf.set(t, (tf.get(t) ?? 0) + field.weight)
        dl += field.weight
      }
    }
    const doc = this.docs.add(event)
    for (const [t, f] of tf) {
      this.postDocs[t]!.push(doc)
      this.postTf[t]!.push(f)
      this.df[t]!++
      this.docTerms.push(t)
    }
    this.docTermStart.push(this.docTerms.length)
    this.docLen.push(dl)
    this.totalLen += dl
    return doc
  }

  /** Removes every document of `stream`; returns how many. */
  removeStream(stream: string): number {
    const removed = this.docs.removeStream(stream)
    for (const doc of removed) {
      for (let i = this.docTermStart[doc]!; i < this.docTermStart[doc + 1]!; i++) {
        this.df[this.docTerms[i]!]!--
        this.deadPostings++
      }
      this.totalLen -= this.docLen[doc]!
    }
    return removed.length
  }

  /** The distinct known terms of a query, in query order. */
  queryTerms(query: string): Array<number> {
    const out: Array<number> = []
    for (const word of tokenize(query, this.extraction.tokenCharsMax)) {
      const t = this.terms.get(word)
      if (t !== undefined && !out.includes(t)) out.push(t)
    }
    return out
  }

  /**
   * The top `k` live documents accepted by `accept` for `query`, best first (ties: older document first).
   * `accept` must reject dead documents (`DocTable.compile` does).
   */
  search(query: string, k: number, accept: (doc: number) => boolean, params: Bm25Params): Array<ScoredDoc> {
    const n = this.docs.live
    if (n === 0 || k <= 0) return []
    const queryTerms = this.queryTerms(query)
    if (queryTerms.length === 0) return []
    const avgdl = this.totalLen / n || 1
    const { b, k1 } = params
    if (this.scores.length < this.docs.size) this.scores = new Float64Array(Math.max(this.docs.size, this.scores.length * 2))
    const scores = this.scores
    const touched: Array<number> = []
    const docLen = this.docLen
    // Term at a time, rarest first, with MaxScore pruning: a term adds at most idf·(k1 + 1), so once the k-th best
    // score so far exceeds what all remaining terms could add, no untouched document can enter the top k and the
    // remaining (common, long) postings only update documents already scored. Exact: same top k as a full scan.
    const terms = queryTerms.filter((t) => this.df[t]! > 0).sort((x, y) => this.df[x]! - this.df[y]!)
    const idfs = terms.map((t) => Math.log(1 + (n - this.df[t]! + 0.5) / (this.df[t]! + 0.5)))
    const remaining = idfs.map((_, i) => idfs.slice(i).reduce((a, idf) => a + idf * (k1 + 1), 0))
    for (let ti = 0; ti < terms.length; ti++) {
      const t = terms[ti]!
      const idf = idfs[ti]!
      const docs = this.postDocs[t]!
      const tfs = this.postTf[t]!
      const score = (i: number, d: number) => {
        const f = tfs[i]!
        return idf * (f * (k1 + 1)) / (f + k1 * (1 - b + (b * docLen[d]!) / avgdl))
      }
      const pruned = ti > 0 && touched.length >= k && remaining[ti]! < kthBest(scores, touched, k)
      if (!pruned) {
        for (let i = 0; i < docs.length; i++) {
          const d = docs[i]!
          if (!accept(d)) continue
          if (scores[d] === 0) touched.push(d)
          scores[d]! += score(i, d)
        }
      } else if (touched.length * 20 < docs.length) {
        // Few candidates, long postings: find each candidate by binary search (postings are in document order).
        for (const d of touched) {
          let lo = 0
          let hi = docs.length
          while (lo < hi) {
            const mid = (lo + hi) >>> 1
            if (docs[mid]! < d) lo = mid + 1
            else hi = mid
          }
          if (docs[lo] === d) scores[d]! += score(lo, d)
        }
      } else {
        for (let i = 0; i < docs.length; i++) {
          const d = docs[i]!
          if (scores[d] !== 0) scores[d]! += score(i, d)
        }
      }
    }
    // Top-k by a bounded min-heap over the touched documents; the accumulator is cleared as it is read.
    const heap: Array<number> = []
    const worse = (a: number, c: number) => scores[a]! < scores[c]! || (scores[a] === scores[c] && a > c)
    const siftDown = (i: number) => {
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < heap.length && worse(heap[l]!, heap[m]!)) m = l
        if (r < heap.length && worse(heap[r]!, heap[m]!)) m = r
        if (m === i) return
        ;[heap[i], heap[m]] = [heap[m]!, heap[i]!]
        i = m
      }
    }
    for (const d of touched) {
      if (heap.length < k) {
        heap.push(d)
        for (let i = heap.length - 1; i > 0;) {
          const p = (i - 1) >> 1
          if (!worse(heap[i]!, heap[p]!)) break
          ;[heap[i], heap[p]] = [heap[p]!, heap[i]!]
          i = p
        }
      } else if (worse(heap[0]!, d)) {
        heap[0] = d
        siftDown(0)
      }
    }
    const out = heap.map((doc) => ({ doc, score: scores[doc]! }))
      .sort((x, y) => y.score - x.score || x.doc - y.doc)
    for (const d of touched) scores[d] = 0
    return out
  }

  /** Drops postings of removed documents once they are a quarter of all postings. */
  compactIfWorthIt(): void {
    if (this.deadPostings * 4 < this.docTerms.length) return
    const alive = this.docs.alive.data
    for (let t = 0; t < this.postDocs.length; t++) {
      const docs = this.postDocs[t]!
      const tfs = this.postTf[t]!
      let w = 0
      for (let i = 0; i < docs.length; i++) {
        if (alive[docs[i]!] === 1) {
          docs[w] = docs[i]!
          tfs[w++] = tfs[i]!
        }
      }
      docs.length = w
      tfs.length = w
    }
    this.deadPostings = 0
  }

  toSnapshot(extra: unknown): { header: unknown; arrays: Record<string, TypedArray> } {
    this.compactIfWorthIt()
    const docs = this.docs.toSnapshot()
    let postings = 0
    for (const p of this.postDocs) postings += p.length
    const postStart = new Int32Array(this.termList.length + 1)
    const postDocs = new Int32Array(postings)
    const postTf = new Float32Array(postings)
    let o = 0
    for (let t = 0; t < this.termList.length; t++) {
      postStart[t] = o
      const d = this.postDocs[t]!
      const f = this.postTf[t]!
      for (let i = 0; i < d.length; i++, o++) {
        postDocs[o] = d[i]!
        postTf[o] = f[i]!
      }
    }
    postStart[this.termList.length] = o
    return {
      header: {
        kind: "keyword",
        version: snapshotVersion,
        fingerprint: this.extractionFingerprint,
        terms: this.termList,
        totalLen: this.totalLen,
        deadPostings: this.deadPostings,
        docs: docs.header,
        extra
      },
      arrays: {
        ...docs.arrays,
        "kw.postStart": postStart,
        "kw.postDocs": postDocs,
        "kw.postTf": postTf,
        "kw.df": Int32Array.from(this.df),
        "kw.docLen": Float64Array.from(this.docLen),
        "kw.docTermStart": Int32Array.from(this.docTermStart),
        "kw.docTerms": Int32Array.from(this.docTerms)
      }
    }
  }

  /**
   * Restores an index from `toSnapshot`; `undefined` when the snapshot was built under another extraction
   * fingerprint or format (the caller rebuilds from the log).
   */
  static fromSnapshot(
    header: unknown,
    arrays: Readonly<Record<string, TypedArray>>,
    extraction: ExtractionConfig,
    fingerprint: string
  ): { index: KeywordIndex; extra: unknown } | undefined {
    const h = header as {
      kind: string
      version: number
      fingerprint: string
      terms: Array<string>
      totalLen: number
      deadPostings: number
      docs: unknown
      extra: unknown
    }
    if (h.kind !== "keyword" || h.version !== snapshotVersion || h.fingerprint !== fingerprint) return undefined
    const index = new KeywordIndex(extraction, fingerprint, DocTable.fromSnapshot(h.docs, arrays))
    const postStart = arrays["kw.postStart"] as Int32Array
    const postDocs = arrays["kw.postDocs"] as Int32Array
    const postTf = arrays["kw.postTf"] as Float32Array
    index.termList = h.terms
    index.terms = new Map(h.terms.map((w, i) => [w, i]))
    index.postDocs = h.terms.map((_, t) => Array.from(postDocs.subarray(postStart[t]!, postStart[t + 1]!)))
    index.postTf = h.terms.map((_, t) => Array.from(postTf.subarray(postStart[t]!, postStart[t + 1]!)))
    index.df = Array.from(arrays["kw.df"] as Int32Array)
    index.docLen = Array.from(arrays["kw.docLen"] as Float64Array)
    index.docTermStart = Array.from(arrays["kw.docTermStart"] as Int32Array)
    index.docTerms = Array.from(arrays["kw.docTerms"] as Int32Array)
    index.totalLen = h.totalLen
    index.deadPostings = h.deadPostings
    return { index, extra: h.extra }
  }
}
