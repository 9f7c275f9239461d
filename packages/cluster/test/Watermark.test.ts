/**
 * The watermark across runners: a reader on another runner never sees an event above the partition's watermark.
 * A remote read is an RPC to the partition's owner (`PartitionEntity`), which answers from its own state bounded by
 * its watermark — so while a commit is written but not yet acknowledged by the log, the owner knows the events
 * (seq > watermark) and every remote read, scan, fold and status still shows the partition as it was before them.
 *
 * In-process cluster (`TestRunner`), every call through the entity client with serialization simulated as for a
 * remote runner; the log is the memory driver behind a gate that holds acknowledgements back. The fault test
 * (chaos/cluster.test.ts) checks the same invariant across real processes, while runners and NATS nodes die.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Latch, Layer } from "effect"
import { TestRunner } from "effect/cluster"
import { ChronosConfig } from "@chronos/config"
import { Ids } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import { EventLog, makeMemory } from "@chronos/engine/EventLog"
import * as PartitionEntity from "@chronos/engine/PartitionEntity"

describe("watermark across runners (remote reads go to the owner)", () => {
  it.live("a commit written but not acknowledged is invisible to remote reads, scans, folds and status", () =>
    Effect.gen(function*() {
      const gate = yield* Latch.make(true)
      const memory = makeMemory()
      const gated = Layer.succeed(EventLog, {
        ...memory,
        open: (partition, namespace) =>
          Effect.map(memory.open(partition, namespace), (log) => ({
            ...log,
            // Written at once (the driver's order is taken at the call), acknowledged only when the gate opens.
            append: (commit) => Effect.andThen(log.append(commit), gate.await)
          }))
      })
      const Cluster = Engine.layer.pipe(
        Layer.provide(PartitionEntity.layerRemoteRouter),
        Layer.provideMerge(PartitionEntity.layerEntity),
        Layer.provideMerge(PartitionEntity.ActivePartitions.layer),
        Layer.provideMerge(TestRunner.layer),
        Layer.provide(gated),
        Layer.provideMerge(ChronosConfig.layer({ partitions: 4 }))
      )
      yield* Effect.gen(function*() {
        const engine = yield* Engine
        const event = (n: number) => ({ type: Ids.EventType.make("Deposited"), data: { n } })
        yield* engine.append("acme", "acct-1", { expectedVersion: "no_stream", events: [event(1)] })
        const p = engine.partitionOf("acme", "acct-1")

        // The next commit is written to the log but not acknowledged: the append stays pending.
        yield* gate.close
        const pending = yield* Effect.forkChild(engine.append("acme", "acct-1", { expectedVersion: 0, events: [event(2), event(3)] }))
        const deadline = performance.now() + 5_000
        let status = (yield* engine.partitions)[p]!
        while (status.seq !== 3 && performance.now() < deadline) {
          yield* Effect.sleep("10 millis")
          status = (yield* engine.partitions)[p]!
        }
        assert.strictEqual(status.seq, 3, "the owner assigned the pending events")
        assert.strictEqual(status.watermark, 1, "but its watermark stays at the last acknowledged commit")
        assert.strictEqual(status.events, 1)

        const read = yield* engine.readStream("acme", "acct-1", {})
        assert.deepStrictEqual(read.map((e) => e.seq), [1])
        const backward = yield* engine.readStream("acme", "acct-1", { direction: "backward" })
        assert.deepStrictEqual(backward.map((e) => e.seq), [1])
        const scanned = yield* engine.readPartition("acme", p, { fromSeq: 1 })
        assert.deepStrictEqual(scanned.map((e) => e.seq), [1])
        const queried = yield* engine.query("acme", {})
        assert.deepStrictEqual(queried.events.map((e) => e.seq), [1])
        const folded = yield* engine.state("acme", "acct-1", "count", undefined)
        assert.strictEqual(folded.version, 0)
        // A read "as of" a position above the watermark is still bounded by it.
        const asOf = yield* engine.readStream("acme", "acct-1", { asOf: `${p}:3` })
        assert.deepStrictEqual(asOf.map((e) => e.seq), [1])

        // Acknowledged: the watermark moves and the events become visible everywhere at once.
        yield* gate.open
        const appended = yield* Fiber.join(pending)
        assert.deepStrictEqual(appended.positions.map((x) => x.seq), [2, 3])
        const after = (yield* engine.partitions)[p]!
        assert.strictEqual(after.watermark, 3)
        assert.deepStrictEqual((yield* engine.readStream("acme", "acct-1", {})).map((e) => e.seq), [1, 2, 3])
      }).pipe(Effect.provide(Cluster))
    }))
})
