import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ChronosClient } from "../src/index.ts"
import type { SubscriptionsApi } from "@chronos/domain"
import { eventually } from "./scenarios.ts"

/** Deliveries of the group `billing` until `count` have come (each `next` waits up to a second for one). */
const collect = (client: ChronosClient["Service"], count: number) =>
  Effect.gen(function*() {
    const all: Array<SubscriptionsApi.Delivery> = []
    for (let round = 0; round < 20 && all.length < count; round++) {
      all.push(...yield* client.consumers.next("acme", "billing", { max: 10, waitMs: 1_000 }))
    }
    return all
  })

describe("ChronosClient (embedded, file log)", () => {
  it.live("keeps appended events across a close and a reopen of the data dir", () =>
    Effect.gen(function*() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-client-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
      const layer = ChronosClient.layerEmbedded({ dataDir, partitions: 4 })

      // First life: append, then close the layer (flushes and closes the log).
      const scope = yield* Scope.make()
      const first = Context.get(yield* Layer.buildWithScope(layer, scope), ChronosClient)
      yield* first.append("acme", "order-1", { expectedVersion: "no_stream", events: [{ type: "Placed", data: { total: 10 } }] })
      yield* first.append("acme", "order-1", {
        expectedVersion: 0,
        events: [{ type: "Paid", data: { paid: true }, metadata: { by: "card" } }]
      })
      yield* first.append("acme", "order-2", { events: [{ type: "Placed", data: { total: 3 } }] })
      const before = yield* first.read("acme", "order-1")
      yield* Scope.close(scope, Exit.void)

      // Second life over the same directory: the same events, and the stream continues at the next version.
      const second = yield* Effect.gen(function*() {
        const client = yield* ChronosClient
        const after = yield* client.read("acme", "order-1")
        const next = yield* client.append("acme", "order-1", { expectedVersion: 1, events: [{ type: "Shipped", data: {} }] })
        const state = yield* client.state("acme", "order-1")
        const all = yield* client.query("acme")
        return { after, next, state, all }
      }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(second.after, before)
      assert.deepStrictEqual(second.after.map((e) => e.type), ["Placed", "Paid"])
      assert.deepStrictEqual(second.after[1]!.metadata, { by: "card" })
      assert.strictEqual(second.next.firstVersion, 2)
      assert.deepStrictEqual(second.state.state, { total: 10, paid: true })
      assert.strictEqual(second.all.events.length, 4)
    }).pipe(Effect.scoped))

  it.live("keeps forks, consumer-group positions and projection state across a reopen; search says it needs a node", () =>
    Effect.gen(function*() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-client-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
      const layer = ChronosClient.layerEmbedded({ dataDir, partitions: 4, projectionCheckpointIntervalMs: 20 })

      const scope = yield* Scope.make()
      const first = Context.get(yield* Layer.buildWithScope(layer, scope), ChronosClient)
      for (let i = 0; i < 3; i++) yield* first.append("acme", `acct-${i}`, { events: [{ type: "Deposited", data: { amount: i + 1 } }] })
      const fork = yield* first.forks.create("acme", { ttlSeconds: 600 })
      yield* first.append("acme", "acct-0", { events: [{ type: "Deposited", data: { amount: 100 } }] }, { fork: fork.forkId })
      yield* first.consumers.create("acme", "billing", { types: ["Deposited"] })
      // Acknowledge one delivery; the others stay unacknowledged, so they must come back after the reopen.
      const delivered = yield* eventually("a delivery", Effect.map(
        first.consumers.next("acme", "billing", { max: 1, waitMs: 1_000 }),
        (ds) => ds.length > 0 ? ds : undefined
      ))
      assert.strictEqual(delivered.length, 1)
      yield* first.consumers.ack("acme", "billing", [delivered[0]!.deliveryId])
      yield* first.projections.define("acme", "total", { kind: "sum", field: "amount", groupBy: "type" })
      const folded = yield* eventually("the projection folded", Effect.map(
        first.projections.state("acme", "total", "Deposited"),
        (s) => s.value === 6 ? s : undefined
      ))
      assert.strictEqual(folded.value, 6)
      const search = yield* Effect.flip(first.search("acme", { query: "x" }))
      assert.isTrue(search._tag === "Unavailable" && search.message.includes("Search"), JSON.stringify(search))
      yield* Scope.close(scope, Exit.void)

      const second = yield* Effect.gen(function*() {
        const client = yield* ChronosClient
        return {
          forkRead: yield* client.read("acme", "acct-0", { fork: fork.forkId }),
          mainRead: yield* client.read("acme", "acct-0"),
          next: yield* collect(client, 2),
          state: yield* client.projections.state("acme", "total", "Deposited")
        }
      }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(second.forkRead.map((e) => (e.data as { amount: number }).amount), [1, 100])
      assert.strictEqual(second.mainRead.length, 1)
      // The acknowledged delivery is behind the group: exactly the two others come (again).
      const acked = delivered[0]!.event.stream
      assert.deepStrictEqual(second.next.map((d) => d.event.stream).sort(), ["acct-0", "acct-1", "acct-2"].filter((s) => s !== acked))
      assert.strictEqual(second.state.value, 6)
    }).pipe(Effect.scoped))
})
