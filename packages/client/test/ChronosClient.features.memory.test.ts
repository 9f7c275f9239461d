/**
 * Search, forks, subscriptions, consumer groups and projections through the in-process drivers: `layerMemory`
 * (every service), and `layerEngine` over a bare engine, whose missing services must be typed failures.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import { ChronosClient } from "../src/index.ts"
import * as Scenarios from "./scenarios.ts"

const attemptsMax = 3
const Memory = ChronosClient.layerMemory({
  partitions: 4,
  subscriptionIdleWaitMs: 50,
  consumerAttemptsMax: attemptsMax,
  consumerRetryBackoffMs: 10,
  consumerRetryBackoffMsMax: 40,
  projectionCheckpointIntervalMs: 50
})

describe("ChronosClient (memory): search, forks, subscriptions, groups, projections", () => {
  it.live("search round trip", () => Scenarios.searchRoundTrip("search").pipe(Effect.provide(Memory)), 30_000)
  it.live("fork create, append in fork, diff, dry run, merge, discard", () =>
    Scenarios.forkLifecycle("forks").pipe(Effect.provide(Memory)))
  it.live("a conflicting merge", () => Scenarios.forkConflict("conflict").pipe(Effect.provide(Memory)))
  it.live("subscribe: history, caught-up, live, resume", () =>
    Scenarios.subscribeHistoryThenLive("subs").pipe(Effect.provide(Memory)), 30_000)
  it.live("consumer group ack and park", () =>
    Scenarios.consumerGroupAckAndPark("groups", attemptsMax).pipe(Effect.provide(Memory)), 30_000)
  it.live("projection state", () => Scenarios.projectionState("proj").pipe(Effect.provide(Memory)), 30_000)

  it.live("over a bare engine, features without their service fail with a typed Unavailable", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      const search = yield* Effect.flip(client.search("acme", { query: "x" }))
      assert.strictEqual(search._tag, "Unavailable")
      assert.include(search.message, "Search")
      const fork = yield* Effect.flip(client.forks.create("acme", { ttlSeconds: 10 }))
      assert.include(fork._tag === "Unavailable" ? fork.message : "", "Forks")
      const read = yield* Effect.flip(client.read("acme", "s", { fork: "f1" }))
      assert.strictEqual(read._tag, "Unavailable")
      const group = yield* Effect.flip(client.consumers.list("acme"))
      assert.include(group._tag === "Unavailable" ? group.message : "", "ConsumerGroups")
      const projection = yield* Effect.flip(client.projections.get("acme", "p"))
      assert.include(projection._tag === "Unavailable" ? projection.message : "", "Projections")
      // Subscriptions need only the engine.
      yield* client.append("acme", "s", { events: [{ type: "A", data: 1 }] })
      const items = yield* client.subscribe("acme").pipe(Stream.takeUntil((i) => i._tag === "CaughtUp"), Stream.runCollect)
      assert.deepStrictEqual(items.map((i) => i._tag), ["Event", "CaughtUp"])
    }).pipe(Effect.provide(ChronosClient.layerEngine.pipe(
      Layer.provide(Engine.layerLocal),
      Layer.provide(EventLog.layerMemory),
      Layer.provide(ChronosConfig.layer({ partitions: 2, logDriver: "memory" })),
      Layer.orDie
    ))))
})
