import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ChronosClient } from "../src/index.ts"

const Memory = ChronosClient.layerMemory({ partitions: 4 })
const id = (n: number) => `0b6a1f4e-3f7e-4a59-9a9e-${n.toString(16).padStart(12, "0")}`

describe("ChronosClient (memory)", () => {
  it.live("appends, reads, queries and folds state", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      const first = yield* client.append("acme", "order-1", {
        expectedVersion: "no_stream",
        events: [{ type: "Placed", data: { total: 10 }, metadata: { correlationId: "c1" } }]
      })
      assert.deepStrictEqual([first.firstVersion, first.lastVersion], [0, 0])
      const second = yield* client.append("acme", "order-1", {
        expectedVersion: 0,
        events: [{ type: "Paid", data: { paid: true } }, { type: "Shipped", data: { carrier: "ups" } }]
      })
      assert.deepStrictEqual([second.firstVersion, second.lastVersion], [1, 2])
      yield* client.append("acme", "order-2", { events: [{ type: "Placed", data: { total: 5 } }] })

      const events = yield* client.read("acme", "order-1")
      assert.deepStrictEqual(events.map((e) => [e.type, e.streamVersion]), [["Placed", 0], ["Paid", 1], ["Shipped", 2]])
      assert.deepStrictEqual(events[0]!.metadata, { correlationId: "c1" })
      assert.match(events[0]!.timestamp, /^\d{4}-\d{2}-\d{2}T/)

      const backward = yield* client.read("acme", "order-1", { direction: "backward", limit: 2 })
      assert.deepStrictEqual(backward.map((e) => e.streamVersion), [2, 1])

      const placed = yield* client.query("acme", { types: ["Placed"] })
      assert.deepStrictEqual(placed.events.map((e) => e.stream).sort(), ["order-1", "order-2"])
      const page = yield* client.query("acme", { limit: 2 })
      assert.strictEqual(page.events.length, 2)
      assert.isDefined(page.next)
      const rest = yield* client.query("acme", { limit: 10, after: page.next })
      assert.strictEqual(rest.events.length, 2)

      const partition = events[0]!.partition
      const inPartition = yield* client.readPartition("acme", partition, { fromSeq: 1 })
      assert.isTrue(inPartition.some((e) => e.stream === "order-1"))

      const merged = yield* client.state("acme", "order-1")
      assert.deepStrictEqual(merged.state, { total: 10, paid: true, carrier: "ups" })
      assert.strictEqual(merged.version, 2)
      const counted = yield* client.state("acme", "order-1", { reducer: "count" })
      assert.strictEqual(counted.state, 3)
      // Embedded modes also take a function reducer.
      const types = yield* client.state("acme", "order-1", {
        reducer: { name: "types", initial: [] as Array<string>, step: (s: Array<string>, e) => [...s, e.type] }
      })
      assert.deepStrictEqual(types.state, ["Placed", "Paid", "Shipped"])

      const health = yield* client.health()
      assert.deepStrictEqual(health, { status: "ok", partitions: 4 })
      const partitions = yield* client.partitions()
      assert.strictEqual(partitions.length, 4)
      assert.strictEqual(partitions.reduce((n, p) => n + p.events, 0), 4)
    }).pipe(Effect.provide(Memory)))

  it.live("an append with a known event id is idempotent", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      const a = yield* client.append("acme", "s", { events: [{ eventId: id(1), type: "A", data: 1 }] })
      const b = yield* client.append("acme", "s", { events: [{ eventId: id(1), type: "A", data: 1 }] })
      assert.deepStrictEqual(b, a)
      assert.strictEqual((yield* client.read("acme", "s")).length, 1)
    }).pipe(Effect.provide(Memory)))

  it.live("fails with typed errors", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      yield* client.append("acme", "s", { events: [{ type: "A", data: 1 }] })

      const wrong = yield* Effect.flip(client.append("acme", "s", { expectedVersion: "no_stream", events: [{ type: "B", data: 1 }] }))
      assert.strictEqual(wrong._tag, "WrongExpectedVersion")
      if (wrong._tag === "WrongExpectedVersion") assert.strictEqual(wrong.actual, 0)

      const missing = yield* Effect.flip(client.state("acme", "nope"))
      assert.strictEqual(missing._tag, "StreamNotFound")

      const tooMany = yield* Effect.flip(client.read("acme", "s", { limit: 1_000_000 }))
      assert.strictEqual(tooMany._tag, "LimitExceeded")

      const badTenant = yield* Effect.flip(client.append("Not A Tenant", "s", { events: [{ type: "A", data: 1 }] }))
      assert.strictEqual(badTenant._tag, "InvalidRequest")
      if (badTenant._tag === "InvalidRequest") assert.strictEqual(badTenant.field, "tenant")
    }).pipe(Effect.provide(Memory)))

  it.live("validation errors name the field", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ events: [{ type: "A", data: 1 }, { type: "9bad", data: 1 }] }, "events[1].type"],
        [{ events: [{ type: "A", data: 1, extra: true }] }, "events[0].extra"],
        [{ events: [{ type: "A", data: 1 }], expectedVerison: 3 }, "expectedVerison"],
        [{ events: [{ type: "A", data: 1, eventId: "not-a-uuid" }] }, "events[0].eventId"],
        [{ events: [{ type: "A", data: 1, metadata: [1] }] }, "events[0].metadata"],
        [{ events: [{ type: "A", data: Number.NaN }] }, "events[0].data"],
        [{ events: [{ type: "A" }] }, "events[0].data"],
        [{ events: [] }, "events"],
        [{ expectedVersion: -1, events: [{ type: "A", data: 1 }] }, "expectedVersion"],
        ["nope", "body"]
      ]
      for (const [request, field] of cases) {
        const error = yield* Effect.flip(client.append("acme", "s", request as never))
        assert.strictEqual(error._tag, "InvalidRequest", JSON.stringify(request))
        if (error._tag === "InvalidRequest") assert.strictEqual(error.field, field, JSON.stringify(request))
      }
      const option = yield* Effect.flip(client.read("acme", "s", { limit: "10" } as never))
      assert.strictEqual(option._tag === "InvalidRequest" && option.field, "limit")
      const unknownOption = yield* Effect.flip(client.query("acme", { typo: 1 } as never))
      assert.strictEqual(unknownOption._tag === "InvalidRequest" && unknownOption.field, "typo")
      const badReducer = yield* Effect.flip(client.state("acme", "s", { reducer: "median" }))
      assert.strictEqual(badReducer._tag === "InvalidRequest" && badReducer.field, "reducer")
      // Nothing was written by any of the rejected appends.
      assert.strictEqual((yield* client.partitions()).reduce((n, p) => n + p.events, 0), 0)
    }).pipe(Effect.provide(Memory)))
})
