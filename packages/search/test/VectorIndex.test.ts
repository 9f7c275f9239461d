import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { Event } from "@chronos/domain"
import { Embedder, makeHashing } from "../src/Embedder.ts"
import { decode, encode } from "../src/internal/snapshotFile.ts"
import { VectorIndex } from "../src/VectorIndex.ts"

const params = { m: 16, efConstruction: 100, efSearch: 100, exactFilterDocsMax: 50 }

/** Deterministic pseudo-random vectors (xorshift) clustered around a few centres, like sentence embeddings. */
const vectors = (n: number, dim: number, seed = 7) => {
  let s = seed
  const rnd = () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return ((s >>> 0) / 4294967296) * 2 - 1
  }
  const centres = Array.from({ length: 8 }, () => Float32Array.from({ length: dim }, rnd))
  return Array.from({ length: n }, (_, i) => Float32Array.from(centres[i % 8]!, (c) => c + 0.6 * rnd()))
}

const event = (i: number): Event.StoredEvent => ({
  eventId: `e${i}`,
  tenant: "t",
  stream: `s-${i % 20}`,
  type: ["A", "B", "C", "D"][i % 4]!,
  data: null,
  metadata: {},
  timestamp: 1_000 + i,
  streamVersion: 0,
  partition: i % 4,
  seq: Math.floor(i / 4) + 1
})

const build = (n: number, dim = 24) => {
  const index = VectorIndex.empty("test", dim, params)
  const data = vectors(n, dim)
  data.forEach((v, i) => index.add(event(i), v))
  return { index, data }
}

describe("VectorIndex", () => {
  it("every filter strategy returns only passing documents; the exact scan matches float brute force", () => {
    const { index } = build(1_500)
    const queries = vectors(20, 24, 99)
    const filters = [
      { types: ["A"] },
      { types: ["B", "C"], streamPrefix: "s-1" },
      { streamPrefix: "s-13" },
      { since: 1_200, until: 1_260 },
      { asOf: { _tag: "Positions" as const, positions: new Map([[1, 40], [2, 3]]) } }
    ]
    let found = 0
    let expected = 0
    for (const filter of filters) {
      const accept = index.docs.compile(filter)
      const passing = index.docs.count(accept, Infinity)
      for (const q of queries) {
        const truth = index.bruteForce(q, 10, accept).map((h) => h.doc)
        for (const strategy of ["exact", "graph", "overfetch"] as const) {
          const hits = index.search(q, 10, accept, strategy)
          for (const h of hits) assert.isTrue(accept(h.doc), `${strategy} returned a non-matching document`)
          if (strategy === "exact") {
            assert.strictEqual(hits.length, truth.length)
            found += hits.filter((h) => truth.includes(h.doc)).length
            expected += truth.length
          }
        }
        const chosen = index.search(q, 10, accept)
        assert.strictEqual(index.lastStrategy, passing <= params.exactFilterDocsMax ? "exact" : "graph")
        assert.strictEqual(chosen.length, Math.min(10, passing))
      }
    }
    // int8 rounding may swap near-ties at the edge of the top 10, nothing more.
    assert.isAtLeast(found / expected, 0.98)
  })

  it("markDelete on stream removal: the stream never comes back", () => {
    const { data, index } = build(400)
    assert.strictEqual(index.removeStream("s-3"), 20)
    for (const q of data.slice(0, 40)) {
      for (const h of index.search(q, 30, undefined)) assert.notStrictEqual(index.docs.streams[index.docs.streamId.data[h.doc]!], "s-3")
    }
    assert.strictEqual(index.documents, 380)
  })

  it("is written and read back with the same answers", async () => {
    const { data, index } = build(300)
    index.removeStream("s-1")
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-vec-"))
    try {
      await index.writeGraph(path.join(dir, "g.hnsw"))
      const meta = decode(encode(index.snapshotMeta({ positions: [3] }, "g.hnsw")))
      assert.deepInclude(VectorIndex.describe(meta.header), { embedder: "test", dimension: 24, graphFile: "g.hnsw" })
      const loaded = await VectorIndex.load(meta.header, meta.arrays, path.join(dir, "g.hnsw"), params)
      for (const q of data.slice(0, 20)) assert.deepStrictEqual(loaded.search(q, 10, undefined), index.search(q, 10, undefined))
      loaded.add(event(300), data[0]!)
      assert.strictEqual(loaded.documents, index.documents + 1)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("refuses a vector of the wrong dimension (a broken embedder is a defect)", () => {
    const { index } = build(10)
    assert.throws(() => index.add(event(11), new Float32Array(5)), /5 dimensions for a 24-d index/)
  })
})

describe("Embedder", () => {
  it.effect("the hashing test embedder is deterministic, normalised and lexical", () =>
    Effect.gen(function*() {
      const e = makeHashing(128)
      const [a, b, c] = yield* e.embed(["card declined", "card declined", "sunny weather"])
      assert.deepStrictEqual(a, b)
      const dot = (x: Float32Array, y: Float32Array) => x.reduce((s, v, i) => s + v * y[i]!, 0)
      assert.closeTo(dot(a!, a!), 1, 1e-6)
      assert.isBelow(dot(a!, c!), 0.5)
      assert.strictEqual(e.id, "hashing-v1-128")
    }))

  it.live("the OpenAI-compatible driver: dimension probe, batches, errors", () =>
    Effect.gen(function*() {
      const requests: Array<any> = []
      let failNext = 0
      const server = http.createServer((req, res) => {
        let body = ""
        req.on("data", (d) => (body += d))
        req.on("end", () => {
          const parsed = JSON.parse(body)
          requests.push({ url: req.url, auth: req.headers.authorization, body: parsed })
          if (failNext > 0) {
            failNext--
            res.writeHead(503).end("overloaded")
            return
          }
          // Answers out of order, as the API allows: the driver must sort by index.
          const data = parsed.input.map((t: string, index: number) => ({ index, embedding: [t.length, index, 1] }))
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ data: data.reverse() }))
        })
      })
      yield* Effect.promise(() => new Promise<void>((r) => server.listen(0, "127.0.0.1", r)))
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      try {
        const result = yield* Effect.gen(function*() {
          const e = yield* Embedder
          const vectors = yield* e.embed(["a", "bbb"])
          const failed = yield* Effect.exit(Effect.sync(() => (failNext = 1)).pipe(Effect.andThen(e.embed(["x"]))))
          return { id: e.id, dimension: e.dimension, vectors, failed }
        }).pipe(Effect.provide(Embedder.layerHttp({ url, model: "m1", apiKey: "k", dimension: 0, timeoutMs: 5_000 })))
        assert.strictEqual(result.id, "openai-compatible:m1")
        assert.strictEqual(result.dimension, 3)
        assert.deepStrictEqual(result.vectors.map((v) => [...v]), [[1, 0, 1], [3, 1, 1]])
        assert.deepStrictEqual(requests[1], { url: "/v1/embeddings", auth: "Bearer k", body: { model: "m1", input: ["a", "bbb"] } })
        assert.isTrue(Exit.isFailure(result.failed))
        const reason: any = Exit.isFailure(result.failed) ? result.failed.cause.reasons[0] : undefined
        assert.deepInclude(reason.error, { _tag: "EmbedderError", retryable: true })
      } finally {
        server.close()
      }
    }))
})
