/**
 * Durable consumer groups over the engine: deliveries in per-partition order with delivery ids and attempts, acks
 * (by delivery id or event id) that move a durable checkpoint, retry with exponential backoff, poison events parked
 * after `consumerAttemptsMax` attempts and replayed on request, ack timeouts, lag metrics; the position survives a
 * restart on the file drivers (deliveries in flight stay in flight until their ack deadline), a handoff between two
 * successive servers of a group keeps its deliveries in flight, and a group continues on another "runner" through NATS
 * KV (real nats-server).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { MessageStorage, RunnerHealth, Runners, RunnerStorage, Sharding, ShardingConfig } from "effect/cluster"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { Ids } from "@chronos/domain"
import { CheckpointStore } from "../src/CheckpointStore.ts"
import { ConsumerGroups, type Delivery, make as makeGroups } from "../src/ConsumerGroup.ts"
import { Engine } from "../src/Engine.ts"
import { EventLog } from "../src/EventLog.ts"
import { startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsServerHandle } from "../../../test/support/NatsServer.ts"

const settings: Partial<ChronosConfigShape> = {
  partitions: 4,
  subscriptionIdleWaitMs: 50,
  consumerAttemptsMax: 3,
  consumerRetryBackoffMs: 20,
  consumerRetryBackoffMsMax: 80,
  consumerAckTimeoutMs: 60_000,
  consumerCheckpointIntervalMs: 50
}
const Config = ChronosConfig.layer(settings)

const dirs: Array<string> = []
let nats: NatsServerHandle | undefined
beforeAll(async () => {
  nats = await startNatsServer()
}, 60_000)
afterAll(async () => {
  await nats?.stop()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const type = (t: string) => Ids.EventType.make(t)

/** Appends `n` events over 6 streams; returns their ids in append order. */
const seed = (n: number, from = 0) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const ids: Array<string> = []
    for (let i = from; i < from + n; i++) {
      yield* engine.append("t", `s-${i % 6}`, { events: [{ type: type(i % 5 === 0 ? "Poison" : "Normal"), data: { i } }] })
    }
    const all = yield* engine.query("t", { limit: 10_000 })
    for (const e of all.events) ids.push(e.eventId)
    return ids
  })

const memoryStack = ConsumerGroups.layer.pipe(
  Layer.provideMerge(Engine.layerLocal),
  Layer.provideMerge(CheckpointStore.layerMemory({ bytesMax: 4 * 1_048_576 })),
  Layer.provide(EventLog.layerMemory),
  Layer.provideMerge(Config)
)

describe("ConsumerGroup", () => {
  it.live("delivers every event once in per-partition order, acks move the checkpoint, lag is reported", () =>
    Effect.gen(function*() {
      const groups = yield* ConsumerGroups
      yield* seed(40)
      const created = yield* groups.create("t", "all", {})
      assert.strictEqual(created.lag.total, 40)
      const seen: Array<{ partition: number; seq: number; id: string }> = []
      while (seen.length < 40) {
        const batch = yield* groups.next("t", "all", { max: 7, waitMs: 1_000 })
        assert.isAbove(batch.length, 0)
        for (const d of batch) {
          assert.strictEqual(d.attempt, 1)
          assert.strictEqual(d.deliveryId, `${d.event.partition}:${d.event.seq}`)
          seen.push({ partition: d.event.partition, seq: d.event.seq, id: d.event.eventId })
        }
        // Ack half by delivery id, half by event id.
        const ids = batch.map((d, i) => i % 2 === 0 ? d.deliveryId : d.event.eventId)
        const acked = yield* groups.ack("t", "all", ids)
        assert.strictEqual(acked.acked, batch.length)
        assert.deepStrictEqual(acked.unknown, [])
      }
      assert.strictEqual(new Set(seen.map((s) => s.id)).size, 40)
      for (let p = 0; p < 4; p++) {
        const seqs = seen.filter((s) => s.partition === p).map((s) => s.seq)
        assert.deepStrictEqual(seqs, seqs.map((_, i) => i + 1), `partition ${p} in order, gapless`)
      }
      const status = yield* groups.status("t", "all")
      assert.strictEqual(status.lag.total, 0)
      assert.strictEqual(status.stats.acked, 40)
      assert.deepStrictEqual(status.pending, { ready: 0, inFlight: 0, retrying: 0, replaying: 0 })
      // Nothing more, and an ack of something already acked is reported, not an error.
      assert.deepStrictEqual(yield* groups.next("t", "all", { max: 10, waitMs: 0 }), [])
      assert.deepStrictEqual((yield* groups.ack("t", "all", [seen[0]!.id])).unknown, [seen[0]!.id])
      // Live: new events arrive through a waiting next.
      const [batch] = yield* Effect.all([
        groups.next("t", "all", { max: 10, waitMs: 5_000 }),
        Effect.andThen(Effect.sleep(100), seed(1, 40))
      ], { concurrency: 2 })
      assert.strictEqual(batch.length, 1)
      // Lag: one event delivered but not acknowledged is behind.
      assert.strictEqual((yield* groups.status("t", "all")).lag.total, 1)
      // Same definition is idempotent; another filter is a conflict.
      assert.strictEqual((yield* groups.create("t", "all", {})).name, "all")
      const conflict = yield* groups.create("t", "all", { types: ["Normal"] }).pipe(Effect.flip)
      assert.strictEqual(conflict._tag, "DefinitionConflict")
      // Typed errors for what a caller can fix.
      assert.strictEqual((yield* groups.status("t", "nope").pipe(Effect.flip))._tag, "ConsumerGroupNotFound")
      assert.strictEqual((yield* groups.create("t", "bad name", {}).pipe(Effect.flip))._tag, "InvalidRequest")
      assert.strictEqual((yield* groups.next("t", "all", { max: 100_000 }).pipe(Effect.flip))._tag, "LimitExceeded")
    }).pipe(Effect.provide(memoryStack)))

  it.live("retry with backoff, poison parked after consumerAttemptsMax attempts, replay, ack timeout", () =>
    Effect.gen(function*() {
      const groups = yield* ConsumerGroups
      yield* seed(10)
      yield* groups.create("t", "poison", { types: ["Poison"] }) // i = 0 and 5
      const attempts: Array<number> = []
      const times: Array<number> = []
      const t0 = performance.now()
      let poisonId = ""
      // The consumer fails every delivery of the first poison event and acks the other one.
      for (let round = 0; round < 20; round++) {
        const batch = yield* groups.next("t", "poison", { max: 10, waitMs: 500 })
        for (const d of batch) {
          if ((d.event.data as { i: number }).i === 0) {
            poisonId = d.deliveryId
            attempts.push(d.attempt)
            times.push(performance.now() - t0)
            const result = yield* groups.nack("t", "poison", [d.deliveryId])
            assert.strictEqual(result.parked, d.attempt === 3 ? 1 : 0)
          } else {
            yield* groups.ack("t", "poison", [d.deliveryId])
          }
        }
        if (attempts.length === 3) break
      }
      assert.deepStrictEqual(attempts, [1, 2, 3])
      // Exponential backoff: the second retry waits longer than the first (20 ms, then 40 ms).
      assert.isAtLeast(times[1]! - times[0]!, 15)
      assert.isAtLeast(times[2]! - times[1]!, 35)
      let status = yield* groups.status("t", "poison")
      assert.strictEqual(status.parked, 1)
      assert.strictEqual(status.lag.total, 0, "a parked event no longer holds the checkpoint")
      const parked = yield* groups.parked("t", "poison")
      assert.strictEqual(parked.length, 1)
      assert.strictEqual(`${parked[0]!.entry.partition}:${parked[0]!.entry.seq}`, poisonId)
      assert.strictEqual(parked[0]!.entry.attempts, 3)
      assert.strictEqual((parked[0]!.event?.data as { i: number }).i, 0)
      // Replay: delivered again with fresh attempts; acked this time.
      assert.deepStrictEqual(yield* groups.replayParked("t", "poison"), { replayed: 1, unknown: [] })
      const again = yield* groups.next("t", "poison", { max: 10, waitMs: 1_000 })
      assert.deepStrictEqual(again.map((d) => [d.deliveryId, d.attempt]), [[poisonId, 1]])
      yield* groups.ack("t", "poison", [poisonId])
      status = yield* groups.status("t", "poison")
      assert.strictEqual(status.parked, 0)
      assert.strictEqual(status.pending.replaying, 0)
      assert.deepStrictEqual((yield* groups.replayParked("t", "poison", ["9:9"])).unknown, ["9:9"])
    }).pipe(Effect.provide(memoryStack)))

  it.live("a delivery not acknowledged in time is a failed attempt and is delivered again", () =>
    Effect.gen(function*() {
      const groups = yield* ConsumerGroups
      yield* seed(1)
      yield* groups.create("t", "slow", {})
      const first = yield* groups.next("t", "slow", { max: 1, waitMs: 1_000 })
      assert.strictEqual(first[0]!.attempt, 1)
      const second = yield* groups.next("t", "slow", { max: 1, waitMs: 2_000 })
      assert.strictEqual(second[0]!.deliveryId, first[0]!.deliveryId)
      assert.strictEqual(second[0]!.attempt, 2)
      assert.strictEqual((yield* groups.status("t", "slow")).stats.expired, 1)
    }).pipe(Effect.provide(ConsumerGroups.layer.pipe(
      Layer.provideMerge(Engine.layerLocal),
      Layer.provide(CheckpointStore.layerMemory({ bytesMax: 1_048_576 })),
      Layer.provide(EventLog.layerMemory),
      Layer.provideMerge(ChronosConfig.layer({ ...settings, consumerAckTimeoutMs: 200 }))
    ))))

  it.live("file drivers: the position, acks and attempts survive a restart; the unacknowledged come again after their ack deadline", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(path.join(tmpdir(), "chronos-group-"))
      dirs.push(dataDir)
      const ackTimeoutMs = 2_000
      const node = ConsumerGroups.layer.pipe(
        Layer.provideMerge(Engine.layerLocal),
        Layer.provide(CheckpointStore.layerFile({ dataDir, bytesMax: 4 * 1_048_576 })),
        Layer.provide(EventLog.layerFile({ dataDir })),
        Layer.provideMerge(ChronosConfig.layer({ ...settings, consumerAckTimeoutMs: ackTimeoutMs }))
      )
      const firstRun = yield* Effect.gen(function*() {
        const groups = yield* ConsumerGroups
        yield* seed(30)
        yield* groups.create("t", "durable", {})
        const beforeFirst = Date.now()
        const batch = yield* groups.next("t", "durable", { max: 20, waitMs: 1_000 })
        assert.strictEqual(batch.length, 20)
        // Ack all but every fourth, and fail one once (its attempt count must survive).
        const kept = batch.filter((_, i) => i % 4 === 0)
        yield* groups.ack("t", "durable", batch.filter((_, i) => i % 4 !== 0).map((d) => d.deliveryId))
        yield* groups.nack("t", "durable", [kept[0]!.deliveryId], { delayMs: 0 })
        // The rest (10 never delivered, then the nacked one again) is delivered, and not acknowledged.
        const beforeRest = Date.now()
        const rest = yield* groups.next("t", "durable", { max: 100, waitMs: 1_000 })
        assert.deepStrictEqual(rest.map((d) => d.attempt), [...Array(10).fill(1), 2])
        assert.strictEqual(rest[10]!.deliveryId, kept[0]!.deliveryId)
        // When each delivery was handed out at the latest: its ack deadline is at most `ackTimeoutMs` later.
        const handedAt = new Map([
          ...kept.map((d) => [d.deliveryId, beforeFirst] as const),
          ...rest.map((d) => [d.deliveryId, beforeRest] as const)
        ])
        return { kept, handedAt, status: yield* groups.status("t", "durable") }
      }).pipe(Effect.provide(node))
      const secondRun = yield* Effect.gen(function*() {
        const groups = yield* ConsumerGroups
        const status = yield* groups.status("t", "durable")
        assert.strictEqual(status.position, firstRun.status.position)
        assert.strictEqual(status.stats.acked, 15)
        // Still in flight after the restart: ackable by their consumer, handed to nobody else before the deadline.
        // (The group reads its events in the background after it opens: polled.)
        let inFlight = status.pending.inFlight
        for (let round = 0; round < 100 && inFlight < 15; round++) {
          yield* Effect.sleep(10)
          inFlight = (yield* groups.status("t", "durable")).pending.inFlight
        }
        assert.strictEqual(inFlight, 15)
        const redelivered: Array<{ id: string; attempt: number; at: number }> = []
        for (let round = 0; round < 40 && redelivered.length < 15; round++) {
          for (const d of yield* groups.next("t", "durable", { max: 100, waitMs: 300 })) {
            redelivered.push({ id: d.deliveryId, attempt: d.attempt, at: Date.now() })
          }
        }
        return redelivered
      }).pipe(Effect.provide(node))
      for (const d of secondRun) {
        assert.isAtLeast(d.at, firstRun.handedAt.get(d.id)! + ackTimeoutMs, `${d.id} came again before its ack deadline`)
      }
      // The 15 unacknowledged (5 of the first batch, 10 of the second): each exactly once.
      const kept = new Set(firstRun.kept.map((d) => d.deliveryId))
      assert.strictEqual(secondRun.length, 15)
      assert.strictEqual(new Set(secondRun.map((d) => d.id)).size, 15)
      assert.strictEqual(secondRun.filter((d) => kept.has(d.id)).length, 5)
      // Attempts were stored: the retried one comes for its third attempt, every other one for its second.
      const byId = new Map(secondRun.map((d) => [d.id, d.attempt]))
      assert.strictEqual(byId.get(firstRun.kept[0]!.deliveryId), 3)
      assert.deepStrictEqual(secondRun.filter((d) => d.id !== firstRun.kept[0]!.deliveryId).map((d) => d.attempt), Array(14).fill(2))
    }))

  it.live("a handoff keeps deliveries in flight: acked where the group went, handed to nobody before their deadline", () =>
    Effect.gen(function*() {
      const ackTimeoutMs = 1_500 // the configuration below
      // Two successive servers of the group (as when its shard moves between runners) over one log and one store.
      const server = ConsumerGroups.layer
      yield* seed(10)
      const first = yield* Effect.gen(function*() {
        const groups = yield* ConsumerGroups
        yield* groups.create("t", "moving", { types: ["Poison"] }) // i = 0 and 5
        // Park the first poison event, replay it, and leave it in flight (with the other one).
        let parkedId = ""
        const held: Array<Delivery> = []
        for (let round = 0; round < 20 && parkedId === ""; round++) {
          for (const d of yield* groups.next("t", "moving", { max: 10, waitMs: 500 })) {
            if ((d.event.data as { i: number }).i !== 0) held.push(d) // i = 5: held, never acked here
            else if ((yield* groups.nack("t", "moving", [d.deliveryId], { delayMs: 0 })).parked === 1) parkedId = d.deliveryId
          }
        }
        assert.notStrictEqual(parkedId, "")
        yield* groups.replayParked("t", "moving")
        const askedAt = Date.now()
        held.push(...yield* groups.next("t", "moving", { max: 10, waitMs: 1_000 }))
        assert.deepStrictEqual(held.map((d) => [(d.event.data as { i: number }).i, d.attempt]), [[5, 1], [0, 1]])
        return { held, askedAt }
      }).pipe(Effect.provide(server))
      yield* Effect.gen(function*() {
        const groups = yield* ConsumerGroups
        let status = yield* groups.status("t", "moving")
        for (let round = 0; round < 100 && status.pending.inFlight + status.pending.replaying < 2; round++) {
          yield* Effect.sleep(10)
          status = yield* groups.status("t", "moving")
        }
        assert.strictEqual(status.pending.inFlight, 1)
        assert.strictEqual(status.pending.replaying, 1)
        // Nothing to hand out while both are held, until their deadline.
        const early = yield* groups.next("t", "moving", { max: 10, waitMs: 300 })
        assert.deepStrictEqual(early, [])
        // The holder of the live one acks it here; the replayed one expires and comes again.
        const live = first.held.find((d) => (d.event.data as { i: number }).i === 5)!
        assert.deepStrictEqual(yield* groups.ack("t", "moving", [live.deliveryId]), { acked: 1, unknown: [] })
        const again = yield* groups.next("t", "moving", { max: 10, waitMs: ackTimeoutMs + 2_000 })
        assert.isAtLeast(Date.now(), first.askedAt + ackTimeoutMs)
        assert.deepStrictEqual(again.map((d) => [(d.event.data as { i: number }).i, d.attempt]), [[0, 2]])
        assert.strictEqual((yield* groups.status("t", "moving")).stats.expired, 1)
      }).pipe(Effect.provide(server))
    }).pipe(Effect.provide(Layer.mergeAll(Engine.layerLocal, CheckpointStore.layerMemory({ bytesMax: 1_048_576 })).pipe(
      Layer.provide(EventLog.layerMemory),
      Layer.provideMerge(ChronosConfig.layer({ ...settings, consumerAckTimeoutMs: 1_500 }))
    ))))

  it.live("two processes serving one group at once (a runner frozen past its lease) never hand out the same event", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const store = yield* CheckpointStore
      const config = yield* ChronosConfig
      // Two servers of the same group over one store, as in a cluster: deliveries stored before `next` answers.
      const servers = [
        yield* makeGroups(engine, store, config, { storeDeliveriesBeforeAnswer: true }),
        yield* makeGroups(engine, store, config, { storeDeliveriesBeforeAnswer: true })
      ]
      yield* seed(60)
      yield* servers[0]!.create("t", "split", {})
      const deliveredTo = new Map<string, Array<number>>()
      const acked = new Set<string>()
      const unknownAcks: Array<string> = []
      let conflicts = 0
      // One consumer on each server; the ack deadline (60 s) never passes, so any event handed out twice is a bug.
      const consumer = (k: number) =>
        Effect.gen(function*() {
          for (let round = 0; round < 400 && acked.size < 60; round++) {
            const batch = yield* servers[k]!.next("t", "split", { max: 3, waitMs: 50 }).pipe(
              Effect.catchTag("Unavailable", () => Effect.sync(() => (conflicts++, [] as ReadonlyArray<Delivery>)))
            )
            for (const d of batch) deliveredTo.set(d.event.eventId, [...(deliveredTo.get(d.event.eventId) ?? []), k])
            if (batch.length === 0) continue
            // "Work" (the other server's turn to write), then acked until the ack lands (a conflict closes the
            // server's view; the retry reopens it).
            yield* Effect.sleep(20)
            for (let attempt = 0; attempt < 50; attempt++) {
              const r = yield* servers[k]!.ack("t", "split", batch.map((d) => d.deliveryId)).pipe(Effect.option)
              if (r._tag === "Some") {
                // Known even by a view that just reopened (it waits until it has re-read what was in flight).
                unknownAcks.push(...r.value.unknown)
                for (const d of batch) acked.add(d.event.eventId)
                break
              }
              conflicts++
            }
          }
        })
      yield* Effect.all([consumer(0), consumer(1)], { concurrency: 2, discard: true })
      assert.strictEqual(acked.size, 60)
      const twice = [...deliveredTo].filter(([, to]) => to.length > 1)
      assert.deepStrictEqual(twice, [], `handed out twice (${conflicts} conflicts)`)
      assert.deepStrictEqual(unknownAcks, [])
      assert.isAbove(conflicts, 0, "the two servers did contend")
      // Both really served the group (else this proves nothing).
      const counts = [0, 1].map((k) => [...deliveredTo.values()].filter((to) => to[0] === k).length)
      assert.isAbove(counts[0]!, 0)
      assert.isAbove(counts[1]!, 0)
    }).pipe(Effect.scoped, Effect.provide(memoryStack)))

  it.live("through the ConsumerGroup entity, messages serialized as between runners: every operation and typed error", () =>
    Effect.gen(function*() {
      const groups = yield* ConsumerGroups
      yield* seed(10)
      const created = yield* groups.create("t", "routed", { types: ["Poison"] }) // i = 0 and 5
      assert.deepStrictEqual(created.filter, { types: ["Poison"] })
      let parkedId = ""
      let other = ""
      for (let round = 0; round < 20 && (parkedId === "" || other === ""); round++) {
        for (const d of yield* groups.next("t", "routed", { max: 10, waitMs: 500 })) {
          assert.strictEqual(d.event.type, "Poison")
          if ((d.event.data as { i: number }).i === 5) {
            assert.deepStrictEqual(yield* groups.ack("t", "routed", [d.event.eventId]), { acked: 1, unknown: [] })
            other = d.deliveryId
          } else if ((yield* groups.nack("t", "routed", [d.deliveryId], { delayMs: 0 })).parked === 1) {
            parkedId = d.deliveryId
          }
        }
      }
      assert.notStrictEqual(parkedId, "")
      const parked = yield* groups.parked("t", "routed", { limit: 10 })
      assert.deepStrictEqual(parked.map((p) => [`${p.entry.partition}:${p.entry.seq}`, p.entry.attempts, p.event?.type]), [[parkedId, 3, "Poison"]])
      assert.deepStrictEqual(yield* groups.replayParked("t", "routed", [parkedId, "9:9"]), { replayed: 1, unknown: ["9:9"] })
      const again = yield* groups.next("t", "routed", { max: 10, waitMs: 1_000 })
      assert.deepStrictEqual(again.map((d) => [d.deliveryId, d.attempt]), [[parkedId, 1]])
      yield* groups.ack("t", "routed", [parkedId])
      const status = yield* groups.status("t", "routed")
      assert.strictEqual(status.parked, 0)
      assert.strictEqual(status.lag.total, 0)
      assert.deepStrictEqual(status.stats, { delivered: 5, acked: 2, nacked: 3, expired: 0, parked: 1 })
      assert.deepStrictEqual(yield* groups.list("t"), ["routed"])
      // Typed errors come back through the entity (or before it, for what can be checked at the gateway).
      assert.strictEqual((yield* groups.status("t", "nope").pipe(Effect.flip))._tag, "ConsumerGroupNotFound")
      assert.strictEqual((yield* groups.ack("t", "nope", ["1:1"]).pipe(Effect.flip))._tag, "ConsumerGroupNotFound")
      assert.strictEqual((yield* groups.status("t", "bad name").pipe(Effect.flip))._tag, "InvalidRequest")
      assert.strictEqual((yield* groups.status("Bad Tenant", "routed").pipe(Effect.flip))._tag, "InvalidRequest")
      assert.strictEqual((yield* groups.next("t", "routed", { max: 100_000 }).pipe(Effect.flip))._tag, "LimitExceeded")
      assert.strictEqual((yield* groups.next("t", "routed", { waitMs: -1 }).pipe(Effect.flip))._tag, "InvalidRequest")
      assert.strictEqual((yield* groups.nack("t", "routed", [parkedId], { delayMs: 0.5 }).pipe(Effect.flip))._tag, "InvalidRequest")
    }).pipe(Effect.provide(ConsumerGroups.layerCluster.pipe(
      Layer.provide(
        // One runner whose messages are serialized as if they crossed the network (the RPC schemas are exercised).
        Sharding.layer.pipe(
          Layer.provide(Runners.layerNoop),
          Layer.provide([MessageStorage.layerNoop, RunnerStorage.layerMemory, RunnerHealth.layerNoop]),
          Layer.provide(ShardingConfig.layer({ simulateRemoteSerialization: true }))
        )
      ),
      Layer.provideMerge(Engine.layerLocal),
      Layer.provide(CheckpointStore.layerMemory({ bytesMax: 1_048_576 })),
      Layer.provide(EventLog.layerMemory),
      Layer.provideMerge(Config)
    ))))

  it.live("NATS KV driver: a group continues on another runner from the stored checkpoint", () =>
    Effect.gen(function*() {
      const store = CheckpointStore.layerNatsKv({ servers: [nats!.url], replicas: 1, bytesMax: 1_048_576, bucket: "chronos_groups_test" })
      // Runner A and runner B share the log (in a cluster: JetStream), each has its own NATS connection.
      const runner = ConsumerGroups.layer.pipe(Layer.provide(store))
      yield* Effect.gen(function*() {
        yield* seed(12)
        const delivered = yield* Effect.gen(function*() {
          const groups = yield* ConsumerGroups
          yield* groups.create("t", "kv", { streamPrefix: "s-" })
          const batch = yield* groups.next("t", "kv", { max: 8, waitMs: 1_000 })
          yield* groups.ack("t", "kv", batch.map((d) => d.deliveryId))
          return batch.map((d) => d.event.eventId)
        }).pipe(Effect.provide(runner))
        const rest = yield* Effect.gen(function*() {
          const groups = yield* ConsumerGroups
          const status = yield* groups.status("t", "kv")
          assert.strictEqual(status.stats.acked, 8)
          const batch = yield* groups.next("t", "kv", { max: 100, waitMs: 1_000 })
          yield* groups.ack("t", "kv", batch.map((d) => d.deliveryId))
          assert.strictEqual((yield* groups.status("t", "kv")).lag.total, 0)
          return batch.map((d) => d.event.eventId)
        }).pipe(Effect.provide(runner))
        assert.strictEqual(delivered.length, 8)
        assert.strictEqual(rest.length, 4)
        assert.strictEqual(new Set([...delivered, ...rest]).size, 12)
      }).pipe(Effect.provide(Engine.layerLocal.pipe(Layer.provide(EventLog.layerMemory), Layer.provideMerge(Config))))
    }))
})
