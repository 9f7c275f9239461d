import { assert, describe, it } from "@effect/vitest"
import { Effect, ManagedRuntime } from "effect"
import * as path from "node:path"
import { ChronosClient } from "@chronos/client"
import { Errors } from "@chronos/domain"
import { type Body, call, flipByte, listFiles, smallLimits, startNode, tempDir } from "./support.ts"

/** The segment file of `partition` (each of these tests seals once, so one). */
const segmentOf = (dataDir: string, partition: number) =>
  listFiles(path.join(dataDir, "segments"), ".parquet")
    .find((f) => f.includes(`${path.sep}p${String(partition).padStart(3, "0")}${path.sep}`))!

describe("CorruptData over HTTP", () => {
  it.live("one flipped byte in a segment: reads of its partition are a typed 502 CorruptData (HTTP and SDK); other reads are unchanged", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-corrupt-http-")
      const node = yield* startNode({ logDriver: "file", dataDir })
      const partitionOf = new Map<string, number>()
      for (let i = 0; i < 80; i++) {
        const stream = `order-${i % 12}`
        const r = yield* call(`${node.url}/v1/tenants/acme/streams/${stream}/events`, "POST", {
          events: [{ type: "Placed", data: { i, note: "payload ".repeat(5) } }]
        })
        assert.strictEqual(r.status, 200)
        partitionOf.set(stream, r.body.positions[0]!.partition)
      }
      assert.strictEqual((yield* call(`${node.url}/v1/admin/seal`, "POST")).status, 200)
      // A hot tail after the sealed range.
      for (let i = 0; i < 12; i++) {
        assert.strictEqual((yield* call(`${node.url}/v1/tenants/acme/streams/order-${i}/events`, "POST", {
          events: [{ type: "Paid", data: { i } }]
        })).status, 200)
      }
      const streams = [...partitionOf.keys()]
      const before = new Map<string, Body>()
      for (const s of streams) before.set(s, (yield* call(`${node.url}/v1/tenants/acme/streams/${s}/events?limit=1000`, "GET")).body)
      yield* Effect.promise(() => node.stop())

      // Damage one byte in the middle of the segment of the partition holding order-0.
      const damaged = partitionOf.get("order-0")!
      const segment = segmentOf(dataDir, damaged)
      flipByte(segment)

      const again = yield* startNode({ logDriver: "file", dataDir })
      const damagedStreams = streams.filter((s) => partitionOf.get(s) === damaged)
      const healthyStreams = streams.filter((s) => partitionOf.get(s) !== damaged)
      assert.isNotEmpty(healthyStreams)
      const expectCorrupt = (r: { status: number; body: Body }, what: string) => {
        assert.strictEqual(r.status, 502, `${what}: ${JSON.stringify(r.body)}`)
        assert.strictEqual(r.body._tag, "CorruptData", what)
        assert.include(r.body.location, segment, what)
        assert.include(r.body.message, "sha256", what)
      }
      for (const s of damagedStreams) {
        // The direct path (a plain read) and HttpApi (an escaped query) answer alike.
        expectCorrupt(yield* call(`${again.url}/v1/tenants/acme/streams/${s}/events?limit=1000`, "GET"), `read ${s}`)
        expectCorrupt(
          yield* call(`${again.url}/v1/tenants/acme/streams/${s}/events?asOf=2999-01-01T00%3A00%3A00Z`, "GET"),
          `read ${s} asOf`
        )
        expectCorrupt(yield* call(`${again.url}/v1/tenants/acme/streams/${s}/state`, "GET"), `state ${s}`)
      }
      expectCorrupt(yield* call(`${again.url}/v1/tenants/acme/partitions/${damaged}/events`, "GET"), "partition read")
      // A tenant-wide query needs every partition: it cannot be answered whole, so it is not answered.
      expectCorrupt(yield* call(`${again.url}/v1/tenants/acme/events?limit=1000`, "GET"), "tenant query")
      for (const s of healthyStreams) {
        const r = yield* call(`${again.url}/v1/tenants/acme/streams/${s}/events?limit=1000`, "GET")
        assert.strictEqual(r.status, 200)
        assert.deepStrictEqual(r.body, before.get(s))
      }
      for (let p = 0; p < smallLimits.partitions; p++) {
        if (p === damaged) continue
        assert.strictEqual((yield* call(`${again.url}/v1/tenants/acme/partitions/${p}/events`, "GET")).status, 200)
      }

      // The SDK decodes it as the typed error (not retried, not an Unavailable).
      const client = ManagedRuntime.make(ChronosClient.layerHttp({ url: again.url, retriesMax: 0 }))
      const error = yield* Effect.promise(() =>
        client.runPromise(Effect.flip(Effect.gen(function*() {
          return yield* (yield* ChronosClient).read("acme", damagedStreams[0]!)
        })))
      )
      assert.instanceOf(error, Errors.CorruptData)
      assert.include((error as Errors.CorruptData).location, segment)
      const fine = yield* Effect.promise(() =>
        client.runPromise(Effect.gen(function*() {
          return yield* (yield* ChronosClient).read("acme", healthyStreams[0]!, { limit: 1000 })
        }))
      )
      assert.deepStrictEqual(fine, before.get(healthyStreams[0]!)!.events)
      yield* Effect.promise(() => client.dispose())
      yield* Effect.promise(() => again.stop())
    }).pipe(Effect.scoped))

  it.live("a segment damaged under a running node: reads that need its sealed events are a 502 naming it; the hot tail and other partitions answer", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-corrupt-live-")
      const node = yield* startNode({ logDriver: "file", dataDir })
      const partitionOf = new Map<string, number>()
      for (let i = 0; i < 60; i++) {
        const stream = `order-${i % 12}`
        const r = yield* call(`${node.url}/v1/tenants/acme/streams/${stream}/events`, "POST", {
          events: [{ type: "Placed", data: { i } }]
        })
        assert.strictEqual(r.status, 200)
        partitionOf.set(stream, r.body.positions[0]!.partition)
      }
      assert.strictEqual((yield* call(`${node.url}/v1/admin/seal`, "POST")).status, 200)
      const damaged = partitionOf.get("order-0")!
      const segment = segmentOf(dataDir, damaged)
      // Only the segment file: the node keeps running on what it has in memory (the heads of sealed events).
      flipByte(segment)
      // An append to a stream of the damaged segment lands in the hot tail, and reading only the tail answers: the
      // partition is not stopped, only reads that need the damaged segment fail.
      const tail = yield* call(`${node.url}/v1/tenants/acme/streams/order-0/events`, "POST", {
        expectedVersion: 4,
        events: [{ type: "Paid", data: { late: true } }]
      })
      assert.strictEqual(tail.status, 200, JSON.stringify(tail.body))
      const tailRead = yield* call(`${node.url}/v1/tenants/acme/streams/order-0/events?fromVersion=5`, "GET")
      assert.strictEqual(tailRead.status, 200, JSON.stringify(tailRead.body))
      assert.deepStrictEqual(tailRead.body.events.map((e) => e.type), ["Paid"])
      const read = yield* call(`${node.url}/v1/tenants/acme/streams/order-0/events?limit=1000`, "GET")
      assert.strictEqual(read.status, 502, JSON.stringify(read.body))
      assert.strictEqual(read.body._tag, "CorruptData")
      assert.include(read.body.location, segment)
      for (const [s, p] of partitionOf) {
        if (p === damaged) continue
        const r = yield* call(`${node.url}/v1/tenants/acme/streams/${s}/events?limit=1000`, "GET")
        assert.strictEqual(r.status, 200, s)
        assert.strictEqual(r.body.events.length, 5, s)
      }
      yield* Effect.promise(() => node.stop())
    }).pipe(Effect.scoped))
})
