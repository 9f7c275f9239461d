import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Event, Ids } from "@chronos/domain"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "../src/Engine.ts"
import { EventLog } from "../src/EventLog.ts"

const TestEngine = Engine.layerLocal.pipe(
  Layer.provide(EventLog.layerMemory),
  Layer.provide(ChronosConfig.layer({ partitions: 4 }))
)

const ev = (type: string, data: Schema.Json, eventId?: string) => Event.propose(type, data, { eventId })

describe("Engine (memory log)", () => {
  it.live("appends and reads a stream with gapless versions", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const a = yield* engine.append("t1", "order-1", { expectedVersion: "no_stream", events: [ev("Placed", { n: 1 })] })
      assert.strictEqual(a.firstVersion, 0)
      const b = yield* engine.append("t1", "order-1", { expectedVersion: 0, events: [ev("Paid", { n: 2 }), ev("Shipped", { n: 3 })] })
      assert.deepStrictEqual([b.firstVersion, b.lastVersion], [1, 2])
      const events = yield* engine.readStream("t1", "order-1", {})
      assert.deepStrictEqual(events.map((e) => [e.type, e.streamVersion]), [["Placed", 0], ["Paid", 1], ["Shipped", 2]])
      const wrong = yield* engine.append("t1", "order-1", { expectedVersion: 0, events: [ev("X", {})] }).pipe(Effect.flip)
      assert.strictEqual(wrong._tag, "WrongExpectedVersion")
      const state = yield* engine.state("t1", "order-1", "merge", undefined)
      assert.deepStrictEqual(state.state, { n: 3 })
    }).pipe(Effect.provide(TestEngine)))

  it.live("generated event ids are valid, distinct UUIDs", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      yield* engine.append("t1", "ids", { events: Array.from({ length: 50 }, (_, i) => ev("A", { i })) })
      const read = yield* engine.readStream("t1", "ids", {})
      const ids = read.map((e) => e.eventId)
      assert.strictEqual(new Set(ids).size, 50)
      for (const id of ids) assert.isTrue(Schema.is(Ids.EventId)(id), id)
    }).pipe(Effect.provide(TestEngine)))

  it.live("a duplicate event id returns the original positions and writes nothing", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const id = "0b6a1f4e-3f7e-4a59-9a9e-6f1a2d3c4b5e"
      const first = yield* engine.append("t1", "s", { events: [ev("A", {}, id)] })
      const again = yield* engine.append("t1", "s", { expectedVersion: "no_stream", events: [ev("A", {}, id)] })
      assert.deepStrictEqual(again, first)
      assert.strictEqual((yield* engine.readStream("t1", "s", {})).length, 1)
    }).pipe(Effect.provide(TestEngine)))
})
