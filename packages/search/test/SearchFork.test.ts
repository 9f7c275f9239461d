/**
 * Search through a fork (`fork`): what the fork sees — main's events at or below its base plus its own (and, for a
 * branch, its parent fork's below the branch's base) — and nothing else, in every mode.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, ManagedRuntime } from "effect"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import { ForkRegistry } from "@chronos/engine/ForkRegistry"
import { Forks } from "@chronos/engine/Forks"
import { Embedder } from "../src/Embedder.ts"
import { Search, type SearchRequest } from "../src/Search.ts"
import { SearchConfig } from "../src/SearchConfig.ts"
import { append } from "./support.ts"

const makeRuntime = () => {
  const chronos = ChronosConfig.layer({ partitions: 4, logDriver: "memory" })
  const log = EventLog.layerMemory
  const engine = Engine.layerLocal.pipe(Layer.provide(log), Layer.provide(chronos))
  const forks = Forks.layer.pipe(Layer.provide(ForkRegistry.layerMemory), Layer.provide(log))
  const search = Search.layerMemory.pipe(
    Layer.provide(Embedder.layerTest(64)),
    Layer.provide(SearchConfig.layer({ indexIdleWaitMs: 20 }))
  )
  return ManagedRuntime.make(
    search.pipe(Layer.provideMerge(forks), Layer.provideMerge(engine), Layer.provideMerge(chronos))
  )
}

const createFork = (request: { readonly ttlSeconds: number; readonly parent?: string }) =>
  Effect.gen(function*() {
    return yield* (yield* Forks).create("acme", request)
  })
const searchIn = (request: SearchRequest) =>
  Effect.gen(function*() {
    return yield* (yield* Search).search("acme", request)
  })

describe("Search with fork", () => {
  let rt: ReturnType<typeof makeRuntime>
  let forkId: string
  let branchId: string
  let caughtUp: string
  beforeAll(async () => {
    rt = makeRuntime()
    const before = await rt.runPromise(append("acme", [
      { stream: "ticket-1", type: "TicketOpened", data: { text: "printer zephyrine jammed on floor two" } },
      { stream: "ticket-2", type: "TicketOpened", data: { text: "laptop battery swollen" } }
    ]))
    forkId = (await rt.runPromise(createFork({ ttlSeconds: 600 }))).forkId
    // In the fork only.
    await rt.runPromise(Effect.gen(function*() {
      const forks = yield* Forks
      const engine = yield* forks.engine("acme", forkId)
      yield* engine.append("acme", "ticket-3", { events: [{ type: "TicketOpened", data: { text: "zephyrine toner smeared" } }] } as never)
    }))
    branchId = (await rt.runPromise(createFork({ ttlSeconds: 600, parent: forkId }))).forkId
    await rt.runPromise(Effect.gen(function*() {
      const forks = yield* Forks
      const engine = yield* forks.engine("acme", branchId)
      yield* engine.append("acme", "ticket-4", { events: [{ type: "TicketOpened", data: { text: "zephyrine scanner offline" } }] } as never)
      // In the fork after the branch was taken: the branch must not see it.
      const fork = yield* forks.engine("acme", forkId)
      yield* fork.append("acme", "ticket-5", { events: [{ type: "TicketOpened", data: { text: "zephyrine cable frayed" } }] } as never)
    }))
    // In main after the fork's base: the fork must not see it.
    const after = await rt.runPromise(append("acme", [
      { stream: "ticket-6", type: "TicketOpened", data: { text: "zephyrine projector flickers" } }
    ]))
    // Every main event indexed before the first search: the highest position of each partition of both batches.
    const positions = new Map<string, number>()
    for (const token of [before, after]) {
      for (const part of token.split(",")) {
        const [p, seq] = part.split(":")
        positions.set(p!, Math.max(positions.get(p!) ?? 0, Number(seq)))
      }
    }
    caughtUp = [...positions].map(([p, seq]) => `${p}:${seq}`).join(",")
  })
  afterAll(() => rt.dispose())

  const search = (request: SearchRequest) =>
    rt.runPromise(searchIn({ waitFor: caughtUp, ...request }))
  const streams = async (request: SearchRequest) => (await search(request)).map((h) => h.event.stream).sort()

  for (const mode of ["keyword", "semantic", "hybrid"] as const) {
    it(`${mode}: main sees its own events only`, async () => {
      const found = await streams({ query: "zephyrine", mode, limit: 20 })
      if (mode === "keyword") assert.deepStrictEqual(found, ["ticket-1", "ticket-6"])
      else {
        assert.notInclude(found, "ticket-3")
        assert.notInclude(found, "ticket-4")
        assert.notInclude(found, "ticket-5")
        assert.include(found, "ticket-6")
      }
    })

    it(`${mode}: a fork sees main at its base plus its own events`, async () => {
      const found = await streams({ query: "zephyrine", mode, limit: 20, fork: forkId })
      if (mode === "keyword") assert.deepStrictEqual(found, ["ticket-1", "ticket-3", "ticket-5"])
      else {
        assert.includeMembers(found, ["ticket-3", "ticket-5"])
        assert.notInclude(found, "ticket-4")
        assert.notInclude(found, "ticket-6")
      }
    })

    it(`${mode}: a branch sees main and its parent fork at its base, plus its own`, async () => {
      const found = await streams({ query: "zephyrine", mode, limit: 20, fork: branchId })
      if (mode === "keyword") assert.deepStrictEqual(found, ["ticket-1", "ticket-3", "ticket-4"])
      else {
        assert.includeMembers(found, ["ticket-3", "ticket-4"])
        assert.notInclude(found, "ticket-5")
        assert.notInclude(found, "ticket-6")
      }
    })
  }

  it("a fork's event found with fork=id carries the fork's position and data", async () => {
    const hits = await search({ query: "toner", mode: "keyword", fork: forkId })
    assert.strictEqual(hits.length, 1)
    assert.strictEqual(hits[0]!.event.stream, "ticket-3")
    assert.deepStrictEqual(hits[0]!.event.data, { text: "zephyrine toner smeared" })
    assert.deepStrictEqual(await streams({ query: "toner", mode: "keyword" }), [])
  })

  it("filters apply to the fork's own events too", async () => {
    assert.deepStrictEqual(await streams({ query: "zephyrine", mode: "keyword", fork: forkId, streamPrefix: "ticket-3" }), [
      "ticket-3"
    ])
    assert.deepStrictEqual(await streams({ query: "zephyrine", mode: "keyword", fork: forkId, types: ["Other"] }), [])
  })

  it("an unknown or discarded fork is ForkNotFound", async () => {
    const exit = await rt.runPromiseExit(
      searchIn({ query: "zephyrine", fork: "f0000000000000000" })
    )
    assert.isTrue(Exit.isFailure(exit))
    const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
    assert.strictEqual(reason?._tag === "Fail" ? reason.error._tag : undefined, "ForkNotFound")
  })
})
