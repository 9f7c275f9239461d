import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Embedder } from "../src/Embedder.ts"
import { Search } from "../src/Search.ts"
import { append, makeRuntime, type Runtime, streamsOf } from "./support.ts"

const withSearch = <A, E>(f: (s: Search["Service"]) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    return yield* f(yield* Search)
  })

const failureOf = <A, E>(exit: Exit.Exit<A, E>): any => Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
const errorOf = (exit: Exit.Exit<unknown, unknown>) => {
  const r = failureOf(exit)
  return r?._tag === "Fail" ? r.error : r
}

describe("Search (memory log, hashing embedder)", () => {
  let rt: Runtime
  let caughtUp: string
  beforeAll(async () => {
    rt = makeRuntime()
    caughtUp = await rt.runPromise(append("acme", [
      { stream: "order-1", type: "OrderPlaced", data: { customer: "Ada Lovelace", items: ["laptop", "mouse"] } },
      { stream: "order-1", type: "PaymentFailed", data: { reason: "card declined by the bank" } },
      { stream: "order-2", type: "OrderPlaced", data: { customer: "Grace Hopper", items: ["keyboard"] } },
      { stream: "order-2", type: "OrderShipped", data: { carrier: "DHL", tracking: "JX-44102" } },
      { stream: "user-9", type: "AddressChanged", data: { city: "Paris", street: "Rue de Rivoli" } },
      { stream: "user-9", type: "UserLoggedIn", data: { device: "phone" } }
    ]))
    await rt.runPromise(append("other", [{ stream: "order-1", type: "OrderShipped", data: { tracking: "JX-44102" } }]))
  })
  afterAll(() => rt.dispose())

  const search = (request: Parameters<Search["Service"]["search"]>[1], tenant = "acme") =>
    rt.runPromise(withSearch((s) => s.search(tenant, { waitFor: caughtUp, ...request })))
  const searchExit = (request: Parameters<Search["Service"]["search"]>[1], tenant = "acme") =>
    rt.runPromiseExit(withSearch((s) => s.search(tenant, request)))

  it("keyword search finds an exact rare term first, within the tenant", async () => {
    const hits = await search({ query: "JX-44102", mode: "keyword" })
    assert.deepStrictEqual(hits.map((h) => [h.event.stream, h.event.type]), [["order-2", "OrderShipped"]])
    assert.deepStrictEqual(hits[0]!.matchedBy, ["keyword"])
    assert.isAbove(hits[0]!.score, 0)
  })

  it("matches event type words and stream ids", async () => {
    assert.deepStrictEqual(streamsOf(await search({ query: "payment failed", mode: "keyword" })).slice(0, 1), ["order-1"])
    const userHits = await search({ query: "user-9", mode: "keyword" })
    assert.deepStrictEqual(new Set(streamsOf(userHits).slice(0, 2)), new Set(["user-9"]))
  })

  it("semantic and hybrid return scored events with matchedBy", async () => {
    const semantic = await search({ query: "declined card", mode: "semantic", limit: 3 })
    assert.strictEqual(semantic.length, 3)
    assert.deepStrictEqual(semantic[0]!.event.type, "PaymentFailed")
    for (const h of semantic) assert.deepStrictEqual(h.matchedBy, ["semantic"])
    const hybrid = await search({ query: "card declined", limit: 2 })
    assert.strictEqual(hybrid[0]!.event.type, "PaymentFailed")
    assert.deepStrictEqual(hybrid[0]!.matchedBy, ["keyword", "semantic"])
    assert.closeTo(hybrid[0]!.score, 2 / 61, 1e-12)
  })

  it("filters: types, stream prefix, time range, asOf", async () => {
    const byType = await search({ query: "order customer laptop keyboard", types: ["OrderPlaced"], limit: 10 })
    assert.isAbove(byType.length, 0)
    for (const h of byType) assert.strictEqual(h.event.type, "OrderPlaced")
    const byPrefix = await search({ query: "order", streamPrefix: "user-", limit: 10 })
    for (const h of byPrefix) assert.isTrue(h.event.stream.startsWith("user-"))
    const asOfNothing = await search({ query: "order", asOf: "0:0" })
    assert.deepStrictEqual(asOfNothing, [])
    const future = await search({ query: "order", since: "2999-01-01T00:00:00Z" })
    assert.deepStrictEqual(future, [])
  })

  it("rejects bad requests with typed errors and enforces limits", async () => {
    const fork = errorOf(await searchExit({ query: "x", fork: "f1" }))
    assert.strictEqual(fork._tag, "InvalidRequest")
    assert.strictEqual(fork.field, "fork")
    assert.strictEqual(fork.message, "this node serves no forks")
    const over = errorOf(await searchExit({ query: "x", limit: 101 }))
    assert.deepInclude(over, { _tag: "LimitExceeded", limit: "hitsMax", max: 100, actual: 101 })
    assert.strictEqual(errorOf(await searchExit({ query: "  " })).field, "query")
    assert.strictEqual(errorOf(await searchExit({ query: "x", limit: 0 })).field, "limit")
    assert.strictEqual(errorOf(await searchExit({ query: "x", types: ["not a type"] })).field, "types[0]")
    assert.strictEqual(errorOf(await searchExit({ query: "x", asOf: "yesterday" })).field, "asOf")
    assert.strictEqual(errorOf(await searchExit({ query: "x", waitFor: "99:1" })).field, "waitFor")
    assert.strictEqual(errorOf(await searchExit({ query: "x" }, "Bad Tenant")).field, "tenant")
    const q = errorOf(await searchExit({ query: "x".repeat(1_001) }))
    assert.deepInclude(q, { _tag: "LimitExceeded", limit: "queryCharsMax" })
    // The default limit is 10.
    const many = await rt.runPromise(append("many", Array.from({ length: 30 }, (_, i) => ({
      stream: `s-${i}`,
      type: "Note",
      data: { text: "same words everywhere" }
    }))))
    const hits = await search({ query: "same words", mode: "keyword", waitFor: many }, "many")
    assert.strictEqual(hits.length, 10)
  })

  it("waitFor gives read-your-writes; a position that never comes fails Unavailable after waitForMsMax", async () => {
    const token = await rt.runPromise(append("ryw", [{ stream: "a", type: "Note", data: { text: "fresh quokka" } }]))
    const hits = await search({ query: "quokka", mode: "hybrid", waitFor: token }, "ryw")
    assert.deepStrictEqual(streamsOf(hits), ["a"])
    const slow = makeRuntime({ search: { waitForMsMax: 50 } })
    try {
      const exit = await slow.runPromiseExit(withSearch((s) => s.search("t", { query: "x", waitFor: "0:5" })))
      assert.deepInclude(errorOf(exit), { _tag: "Unavailable", retryable: true })
    } finally {
      await slow.dispose()
    }
  })

  it("status reports documents, positions and zero lag once caught up", async () => {
    const status = await rt.runPromise(withSearch((s) => s.status("acme")))
    assert.strictEqual(status.keyword.documents, 6)
    assert.strictEqual(status.semantic.documents, 6)
    assert.strictEqual(status.keyword.state, "live")
    assert.strictEqual(status.keyword.lag, 0)
    assert.strictEqual(status.semantic.embedder, "hashing-v1-64")
    assert.strictEqual(status.keyword.partitions.length, 4)
    for (const p of status.keyword.partitions) assert.strictEqual(p.position, p.watermark)
  })

  it("removing a stream removes its hits from both indexes", async () => {
    const token = await rt.runPromise(append("del", [
      { stream: "keep", type: "Note", data: { text: "wombat burrow" } },
      { stream: "gone", type: "Note", data: { text: "wombat burrow" } }
    ]))
    await search({ query: "wombat", waitFor: token }, "del")
    const removed = await rt.runPromise(withSearch((s) => s.removeStream("del", "gone")))
    assert.deepStrictEqual(removed, { keyword: 1, semantic: 1 })
    for (const mode of ["keyword", "semantic", "hybrid"] as const) {
      assert.deepStrictEqual(streamsOf(await search({ query: "wombat burrow", mode }, "del")), ["keep"])
    }
  })
})

describe("filters never return a non-matching event", () => {
  it.live("for random events and random filters, in every mode", () =>
    Effect.promise(async () => {
      // Small exact-filter threshold so both vector strategies (exact and filtered graph walk) are exercised.
      const rt = makeRuntime({ search: { vectorExactFilterDocsMax: 40 } })
      try {
        const types = ["Alpha", "Beta", "Gamma"]
        const words = ["red", "green", "blue", "quick", "fox", "lazy", "dog", "jumps"]
        const events = Array.from({ length: 300 }, (_, i) => ({
          stream: `${["acc", "acct", "user", "u"][i % 4]}-${i % 17}`,
          type: types[i % 3]!,
          data: { text: `${words[i % 8]} ${words[(i * 3) % 8]} ${words[(i * 5 + 1) % 8]}` }
        }))
        const half = await rt.runPromise(append("f", events.slice(0, 150)))
        const all = await rt.runPromise(append("f", events.slice(150)))
        const times = await rt.runPromise(withSearch((s) =>
          s.search("f", { query: "red green blue quick fox lazy dog jumps", mode: "keyword", limit: 100, waitFor: all })))
        const stamps = times.map((h) => h.event.timestamp).sort((a, b) => a - b)
        const halfPositions = new Map(half.split(",").map((x) => x.split(":").map(Number) as [number, number]))
        await fc.assert(
          fc.asyncProperty(
            fc.record({
              mode: fc.constantFrom("keyword" as const, "semantic" as const, "hybrid" as const),
              query: fc.subarray(words, { minLength: 1, maxLength: 3 }).map((w) => w.join(" ")),
              types: fc.option(fc.subarray(types, { minLength: 1 }), { nil: undefined }),
              streamPrefix: fc.option(fc.constantFrom("acc", "acct-", "u", "user-1", "zzz"), { nil: undefined }),
              since: fc.option(fc.constantFrom(...stamps), { nil: undefined }),
              until: fc.option(fc.constantFrom(...stamps), { nil: undefined }),
              asOf: fc.option(fc.constantFrom("half", "time"), { nil: undefined }),
              limit: fc.integer({ min: 1, max: 50 })
            }),
            async (f) => {
              const asOfTime = stamps[Math.floor(stamps.length / 3)]!
              const hits = await rt.runPromise(withSearch((s) =>
                s.search("f", {
                  query: f.query,
                  mode: f.mode,
                  limit: f.limit,
                  types: f.types,
                  streamPrefix: f.streamPrefix,
                  since: f.since === undefined ? undefined : new Date(f.since).toISOString(),
                  until: f.until === undefined ? undefined : new Date(f.until).toISOString(),
                  asOf: f.asOf === "half" ? half : f.asOf === "time" ? new Date(asOfTime).toISOString() : undefined
                })))
              assert.isAtMost(hits.length, f.limit)
              for (const { event: e } of hits) {
                assert.strictEqual(e.tenant, "f")
                if (f.types !== undefined) assert.include(f.types, e.type)
                if (f.streamPrefix !== undefined) assert.isTrue(e.stream.startsWith(f.streamPrefix))
                if (f.since !== undefined) assert.isAtLeast(e.timestamp, f.since)
                if (f.until !== undefined) assert.isAtMost(e.timestamp, f.until)
                if (f.asOf === "half") assert.isAtMost(e.seq, halfPositions.get(e.partition) ?? 0)
                if (f.asOf === "time") assert.isAtMost(e.timestamp, asOfTime)
              }
            }
          ),
          { numRuns: 150, seed: 42 }
        )
      } finally {
        await rt.dispose()
      }
    }))
})

describe("restart", () => {
  it.live("reloads the persisted snapshots and catches up from their positions", () =>
    Effect.promise(async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-search-"))
      try {
        const first = makeRuntime({ dataDir })
        const t1 = await first.runPromise(append("acme", [
          { stream: "keep-1", type: "Note", data: { text: "alpaca wool" } },
          { stream: "gone-1", type: "Note", data: { text: "alpaca wool" } }
        ]))
        await first.runPromise(withSearch((s) => s.search("acme", { query: "alpaca", waitFor: t1 })))
        // Removed from the indexes only: a rebuild from the log would bring it back, a reload does not.
        await first.runPromise(withSearch((s) => s.removeStream("acme", "gone-1")))
        await first.dispose()
        const files = fs.readdirSync(path.join(dataDir, "search", "acme")).sort()
        assert.includeMembers(files, ["keyword.snap", "vector.meta"])
        assert.isTrue(files.some((f) => /^vector\.\d+\.hnsw$/.test(f)))

        // Written while the node is down: the restarted indexes must catch up from their snapshot's positions.
        const second = makeRuntime({ dataDir })
        const t2 = await second.runPromise(append("acme", [{ stream: "keep-2", type: "Note", data: { text: "alpaca yarn" } }]))
        for (const mode of ["keyword", "semantic"] as const) {
          const hits = await second.runPromise(withSearch((s) =>
            s.search("acme", { query: "alpaca", mode, waitFor: t2 })))
          assert.deepStrictEqual(new Set(streamsOf(hits)), new Set(["keep-1", "keep-2"]), mode)
        }
        const status = await second.runPromise(withSearch((s) => s.status("acme")))
        assert.strictEqual(status.keyword.documents, 2)
        assert.strictEqual(status.semantic.documents, 2)
        await second.dispose()

        // Another embedder (different dimension): the vector index is refused with a typed error; keyword works.
        const third = makeRuntime({ dataDir, embedder: Embedder.layerTest(32) })
        const exit = await third.runPromiseExit(withSearch((s) =>
          s.search("acme", { query: "alpaca", mode: "semantic" })))
        assert.deepInclude(errorOf(exit), {
          _tag: "EmbedderMismatch",
          indexEmbedder: "hashing-v1-64",
          indexDimension: 64,
          embedder: "hashing-v1-32",
          dimension: 32
        })
        const keyword = await third.runPromise(withSearch((s) =>
          s.search("acme", { query: "alpaca", mode: "keyword", waitFor: t2 })))
        assert.strictEqual(keyword.length, 2)
        const refused = await third.runPromise(withSearch((s) => s.status("acme")))
        assert.strictEqual(refused.semantic.state, "refused")
        await third.dispose()

        // …unless told to rebuild: then it re-embeds from the log (the removed stream comes back with it).
        const fourth = makeRuntime({ dataDir, embedder: Embedder.layerTest(32), search: { onEmbedderMismatch: "rebuild" } })
        const rebuilt = await fourth.runPromise(withSearch((s) =>
          s.search("acme", { query: "alpaca", mode: "semantic", waitFor: t2 })))
        assert.strictEqual(rebuilt.length, 3)
        await fourth.dispose()
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true })
      }
    }))

  it.live("rebuilds an index whose snapshot is ahead of the log (the log was replaced)", () =>
    Effect.promise(async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-search-"))
      try {
        const first = makeRuntime({ dataDir })
        const t1 = await first.runPromise(append("acme", [
          { stream: "old-1", type: "Note", data: { text: "narwhal" } },
          { stream: "old-2", type: "Note", data: { text: "narwhal" } }
        ]))
        await first.runPromise(withSearch((s) => s.search("acme", { query: "narwhal", waitFor: t1 })))
        await first.dispose()
        fs.rmSync(path.join(dataDir, "log"), { recursive: true, force: true })
        const second = makeRuntime({ dataDir })
        const t2 = await second.runPromise(append("acme", [{ stream: "new-1", type: "Note", data: { text: "narwhal" } }]))
        for (const mode of ["keyword", "semantic"] as const) {
          const hits = await second.runPromise(withSearch((s) => s.search("acme", { query: "narwhal", mode, waitFor: t2 })))
          assert.deepStrictEqual(streamsOf(hits), ["new-1"], mode)
        }
        await second.dispose()
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true })
      }
    }))
})
