import { assert, describe, it } from "@effect/vitest"
import type { Event } from "@chronos/domain"
import { decode, encode } from "../src/internal/snapshotFile.ts"
import { KeywordIndex } from "../src/KeywordIndex.ts"
import { defaults } from "../src/SearchConfig.ts"
import { extract, fingerprint } from "../src/TextExtraction.ts"
import { identifierWords, stem, tokenize } from "../src/Tokenizer.ts"

const event = (i: number, stream = `s${i}`, type = "Note", data: unknown = null): Event.StoredEvent => ({
  eventId: `e${i}`,
  tenant: "t",
  stream,
  type,
  data,
  metadata: {},
  timestamp: 1_000 + i,
  streamVersion: 0,
  partition: i % 3,
  seq: i + 1
})

const all = (index: KeywordIndex) => (doc: number) => index.docs.isAlive(doc)

/** Textbook BM25 written independently of the index (the oracle of `shared/docs/search-storage.md` §6.3). */
const reference = (texts: ReadonlyArray<string>, query: string, k1: number, b: number) => {
  const tok = (s: string) => s.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean)
  const docs = texts.map(tok)
  const N = docs.length
  const avgdl = docs.reduce((a, d) => a + d.length, 0) / N
  const out = new Map<number, number>()
  docs.forEach((toks, i) => {
    let score = 0
    let matched = 0
    for (const t of new Set(tok(query))) {
      const tf = toks.filter((x) => x === t).length
      if (tf === 0) continue
      matched++
      const n = docs.filter((d) => d.includes(t)).length
      const idf = Math.log(1 + (N - n + 0.5) / (n + 0.5))
      score += idf * (tf * (k1 + 1)) / (tf + k1 * (1 - b + (b * toks.length) / avgdl))
    }
    if (matched > 0) out.set(i, score)
  })
  return out
}

const build = (texts: ReadonlyArray<string>) => {
  const index = new KeywordIndex(defaults, fingerprint(defaults))
  texts.forEach((text, i) => index.addFields(event(i), [{ text, weight: 1 }]))
  return index
}

describe("Tokenizer", () => {
  it("splits on non-word characters, folds case and plurals", () => {
    assert.deepStrictEqual(tokenize("ORD-77812 Orders shipped; Addresses, status", 64), [
      "ord",
      "77812",
      "order",
      "shipped",
      "addresse",
      "status"
    ])
    assert.strictEqual(stem("companies"), "company")
    assert.strictEqual(stem("glass"), "glass")
    assert.deepStrictEqual(tokenize("x".repeat(100), 64), ["x".repeat(64)])
  })

  it("splits identifiers at case changes", () => {
    assert.strictEqual(identifierWords("PaymentFailed"), "PaymentFailed Payment Failed")
    assert.strictEqual(identifierWords("HTTPRequestFailed"), "HTTPRequestFailed HTTP Request Failed")
    assert.strictEqual(identifierWords("order-1"), "order-1")
  })
})

describe("TextExtraction", () => {
  it("takes type, stream and every string leaf by default, within the length limit", () => {
    const e = event(1, "order-7", "OrderPlaced", { customer: { name: "Ada" }, items: ["laptop", 3], note: "fast" })
    const { fields, sentence } = extract(e, defaults)
    assert.deepStrictEqual(fields.map((f) => f.text), ["OrderPlaced Order Placed", "order-7", "Ada", "laptop", "fast"])
    assert.strictEqual(sentence, "Order Placed. Ada. laptop. fast")
    const small = extract(event(2, "s", "T", { a: "x".repeat(100) }), { ...defaults, textCharsMax: 20 })
    assert.isAtMost(small.fields.reduce((n, f) => n + f.text.length, 0), 20)
  })

  it("uses per-type field rules and weights", () => {
    const config = { ...defaults, fields: { OrderPlaced: [{ path: "data.customer.name", weight: 3 }] } }
    const e = event(1, "order-7", "OrderPlaced", { customer: { name: "Ada" }, note: "ignored" })
    assert.deepStrictEqual(extract(e, config).fields.map((f) => [f.text, f.weight]), [
      ["OrderPlaced Order Placed", 1],
      ["order-7", 1],
      ["Ada", 3]
    ])
  })

  it("survives deeply nested data", () => {
    let deep: unknown = "bottom"
    for (let i = 0; i < 100_000; i++) deep = [deep]
    assert.deepStrictEqual(extract(event(1, "s", "T", deep), defaults).fields.at(-1)?.text, "bottom")
  })
})

describe("KeywordIndex (BM25)", () => {
  const texts = [
    "cat cat dog",
    "cat bird bird bird fish fish",
    "dog dog dog dog",
    "fish bird",
    "dog mouse mouse mouse mouse mouse mouse",
    "elephant zebra",
    "lion lion tiger",
    "owl"
  ]

  it("scores exactly textbook BM25 (k1 1.2, b 0.75, Lucene idf)", () => {
    const index = build(texts)
    const hits = index.search("cat dog", 10, all(index), { k1: 1.2, b: 0.75 })
    // The published values of the reference corpus.
    assert.deepStrictEqual(hits.map((h) => h.doc), [0, 2, 1, 4])
    assert.closeTo(hits[0]!.score, 2.8381, 1e-4)
    assert.closeTo(hits[1]!.score, 1.5598, 1e-4)
    assert.closeTo(hits[2]!.score, 0.9913, 1e-4)
    assert.closeTo(hits[3]!.score, 0.6703, 1e-4)
    for (const [k1, b] of [[1.2, 0.75], [2, 0.3], [0.5, 1]] as const) {
      for (const q of ["cat dog", "bird fish owl", "mouse", "zebra lion dog"]) {
        const expected = reference(texts, q, k1, b)
        const got = index.search(q, 100, all(index), { k1, b })
        assert.strictEqual(got.length, expected.size)
        for (const h of got) assert.closeTo(h.score, expected.get(h.doc)!, 1e-9)
      }
    }
  })

  it("a field of weight 2 scores as if its text appeared twice", () => {
    const weighted = new KeywordIndex(defaults, fingerprint(defaults))
    const doubled = new KeywordIndex(defaults, fingerprint(defaults))
    texts.forEach((text, i) => {
      weighted.addFields(event(i), [{ text, weight: i === 1 ? 2 : 1 }])
      doubled.addFields(event(i), [{ text: i === 1 ? `${text} ${text}` : text, weight: 1 }])
    })
    const a = weighted.search("bird fish cat", 10, all(weighted), { k1: 1.2, b: 0.75 })
    const b = doubled.search("bird fish cat", 10, all(doubled), { k1: 1.2, b: 0.75 })
    assert.deepStrictEqual(a.map((h) => h.doc), b.map((h) => h.doc))
    a.forEach((h, i) => assert.closeTo(h.score, b[i]!.score, 1e-9))
  })

  it("finds an exact rare term first among many common ones", () => {
    const common = ["order", "placed", "customer", "shipped", "payment", "invoice", "the", "a", "with"]
    const corpus = Array.from({ length: 2_000 }, (_, i) =>
      Array.from({ length: 12 }, (_, k) => common[(i * 7 + k * 3) % common.length]).join(" "))
    corpus[1_234] = `${corpus[1_234]} ZX-99812 refund`
    corpus[77] = `${corpus[77]} refund`
    const index = build(corpus)
    const hits = index.search("customer order refund zx-99812", 5, all(index), { k1: 1.2, b: 0.75 })
    assert.strictEqual(hits[0]!.doc, 1_234)
    assert.strictEqual(hits[1]!.doc, 77)
  })

  it("top-k with MaxScore pruning equals the top k of a full ranking", () => {
    let seed = 3
    const rnd = () => {
      seed ^= seed << 13
      seed ^= seed >>> 17
      seed ^= seed << 5
      return (seed >>> 0) / 4294967296
    }
    // Zipf-like words: a few in almost every document, most rare.
    const word = () => `w${Math.floor(Math.pow(rnd(), 4) * 500)}`
    const index = build(Array.from({ length: 3_000 }, () => Array.from({ length: 5 + Math.floor(rnd() * 15) }, word).join(" ")))
    for (let q = 0; q < 200; q++) {
      const query = Array.from({ length: 1 + Math.floor(rnd() * 4) }, word).join(" ")
      const k = 1 + Math.floor(rnd() * 20)
      const full = index.search(query, 100_000, all(index), { k1: 1.2, b: 0.75 }).slice(0, k)
      const top = index.search(query, k, all(index), { k1: 1.2, b: 0.75 })
      assert.deepStrictEqual(top.map((h) => h.doc), full.map((h) => h.doc), query)
      top.forEach((h, i) => assert.closeTo(h.score, full[i]!.score, 1e-9))
    }
  })

  it("removing a stream removes its documents and their statistics", () => {
    const index = build(texts)
    const without = build(texts.filter((_, i) => i !== 2))
    assert.strictEqual(index.removeStream("s2"), 1)
    const hits = index.search("cat dog", 10, all(index), { k1: 1.2, b: 0.75 })
    const expected = without.search("cat dog", 10, all(without), { k1: 1.2, b: 0.75 })
    assert.notInclude(hits.map((h) => h.doc), 2)
    assert.deepStrictEqual(hits.map((h) => h.score), expected.map((h) => h.score))
    assert.strictEqual(index.documents, texts.length - 1)
  })

  it("a snapshot restores the same index", () => {
    const index = build(texts)
    index.removeStream("s0")
    const snap = decode(encode(index.toSnapshot({ positions: [1, 2] })))
    const restored = KeywordIndex.fromSnapshot(snap.header, snap.arrays, defaults, fingerprint(defaults))!
    assert.deepStrictEqual(restored.extra, { positions: [1, 2] })
    for (const q of ["cat dog", "bird", "owl zebra"]) {
      assert.deepStrictEqual(
        restored.index.search(q, 10, all(restored.index), { k1: 1.2, b: 0.75 }),
        index.search(q, 10, all(index), { k1: 1.2, b: 0.75 })
      )
    }
    restored.index.add(event(100, "s100", "Note", { text: "cat" }))
    assert.strictEqual(restored.index.documents, texts.length)
    // Built under other extraction settings: refused, so the caller rebuilds.
    assert.isUndefined(KeywordIndex.fromSnapshot(snap.header, snap.arrays, defaults, "other"))
    // A flipped byte is detected.
    const bytes = encode(index.toSnapshot({}))
    bytes[bytes.length - 10]! ^= 1
    assert.throws(() => decode(bytes), /checksum/)
  })
})
