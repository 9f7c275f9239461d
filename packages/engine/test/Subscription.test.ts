import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Queue, Stream } from "effect"
import { TestRunner } from "effect/cluster"
import { ChronosConfig } from "@chronos/config"
import { Ids } from "@chronos/domain"
import { Engine } from "../src/Engine.ts"
import { EventLog } from "../src/EventLog.ts"
import * as PartitionEntity from "../src/PartitionEntity.ts"
import type * as Subscription from "../src/Subscription.ts"

const config = ChronosConfig.layer({ partitions: 4, subscriptionPageEventsMax: 7, subscriptionIdleWaitMs: 200 })
const Local = Engine.layerLocal.pipe(Layer.provide(EventLog.layerMemory), Layer.provide(config))
const ViaRpc = Engine.layer.pipe(
  Layer.provide(PartitionEntity.layerRemoteRouter),
  Layer.provideMerge(PartitionEntity.layerEntity),
  Layer.provideMerge(PartitionEntity.ActivePartitions.layer),
  Layer.provideMerge(TestRunner.layer),
  Layer.provide(EventLog.layerMemory),
  Layer.provideMerge(config)
)

const type = (t: string) => Ids.EventType.make(t)
const append = (engine: typeof Engine.Service, stream: string, t: string, n: number) =>
  engine.append("t", stream, { events: [{ type: type(t), data: { n } }] })

/** Collects items into a queue from a forked subscription, so the test can interleave writes and reads. */
const subscribe = (engine: typeof Engine.Service, request: Parameters<typeof Engine.Service.subscribe>[1]) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Subscription.Item>()
    const stream = yield* engine.subscribe("t", request)
    const fiber = yield* stream.pipe(Stream.runForEach((item) => Queue.offer(queue, item)), Effect.forkChild)
    const take = (n: number) => Effect.forEach(Array.from({ length: n }), () => Queue.take(queue))
    return { take, fiber, queue }
  })

const scenario = Effect.gen(function*() {
  const engine = yield* Engine
  for (let i = 0; i < 30; i++) yield* append(engine, `s-${i % 6}`, i % 3 === 0 ? "A" : "B", i)
  const sub = yield* subscribe(engine, {})
  const history = yield* sub.take(31)
  const events = history.filter((i) => i._tag === "Event")
  assert.strictEqual(events.length, 30)
  assert.strictEqual(history[30]!._tag, "CaughtUp")
  // Exactly once, per-partition order.
  assert.strictEqual(new Set(events.map((e) => e.event.eventId)).size, 30)
  for (let p = 0; p < 4; p++) {
    const seqs = events.filter((e) => e.event.partition === p).map((e) => e.event.seq)
    assert.deepStrictEqual(seqs, seqs.map((_, i) => i + 1))
  }
  // Live: new events arrive after the marker.
  yield* append(engine, "s-live", "A", 99)
  const live = yield* sub.take(1)
  assert.strictEqual(live[0]!._tag === "Event" && live[0]!.event.stream, "s-live")
  yield* Fiber.interrupt(sub.fiber)

  // Resume from a position delivers exactly the remainder.
  const cut = events[14]!
  const resumed = yield* subscribe(engine, { from: cut.position })
  const rest = (yield* resumed.take(31 - 15 + 1)).filter((i) => i._tag === "Event")
  const expected = [...events.slice(15).map((e) => e.event.eventId)]
  const got = rest.map((e) => e.event.eventId)
  // Everything not covered by the cut position, plus the live event, exactly once.
  const cutPositions = new Map(cut.position.split(",").map((pair) => pair.split(":").map(Number) as [number, number]))
  const remainder = events.filter((e) => e.event.seq > (cutPositions.get(e.event.partition) ?? 0)).map((e) => e.event.eventId)
  assert.deepStrictEqual(new Set(got.slice(0, remainder.length)), new Set(remainder))
  assert.isTrue(expected.every((id) => remainder.includes(id) || !got.includes(id)))
  yield* Fiber.interrupt(resumed.fiber)

  // Filters: type B of streams starting with "s-1" (s-1 holds i = 1, 7, 13, 19, 25: all B); the marker still comes.
  const filtered = yield* subscribe(engine, { types: ["B"], streamPrefix: "s-1" })
  const items = yield* filtered.take(6)
  assert.deepStrictEqual(
    items.map((i) => i._tag === "Event" ? `${i.event.stream}/${i.event.type}/${(i.event.data as { n: number }).n}` : i._tag),
    ["s-1/B/1", "s-1/B/7", "s-1/B/13", "s-1/B/19", "s-1/B/25", "CaughtUp"]
  )
  yield* Fiber.interrupt(filtered.fiber)

  // One stream, from now: only what comes later.
  const one = yield* subscribe(engine, { stream: "s-1", from: "now" })
  const marker = yield* one.take(1)
  assert.strictEqual(marker[0]!._tag, "CaughtUp")
  yield* append(engine, "s-2", "B", 1)
  yield* append(engine, "s-1", "B", 2)
  const next = yield* one.take(1)
  assert.strictEqual(next[0]!._tag === "Event" && next[0]!.event.stream, "s-1")
  yield* Fiber.interrupt(one.fiber)

  const bad = yield* engine.subscribe("t", { from: "yesterday" }).pipe(Effect.flip)
  assert.strictEqual(bad._tag, "InvalidRequest")
})

describe("Subscription", () => {
  it.live("catch-up then live, exactly once in per-partition order, resumable, filtered (local)", () =>
    scenario.pipe(Effect.provide(Local)))
  it.live("the same through the Partition entity's RPCs", () => scenario.pipe(Effect.provide(ViaRpc)))
})
