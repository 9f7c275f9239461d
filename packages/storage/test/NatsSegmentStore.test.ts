import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import type { ChronosConfigShape } from "@chronos/config"
import { startNatsCluster, startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsClusterHandle, NatsServerHandle } from "../../../test/support/NatsServer.ts"
import { bucketNames } from "../src/internal/natsSegmentStore.ts"
import * as Manifest from "../src/Manifest.ts"
import * as SegmentFormat from "../src/SegmentFormat.ts"
import * as SegmentReader from "../src/SegmentReader.ts"
import { sha256 } from "../src/SegmentReader.ts"
import { SegmentStore, type SegmentStoreShape } from "../src/SegmentStore.ts"
import * as Verify from "../src/Verify.ts"
import { call, startNode } from "./support.ts"

/** A NATS segment store in its own scope (its own connection), closed by `close`. */
const openStore = (servers: ReadonlyArray<string>, replicas: number, bucketPrefix: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      SegmentStore.layerNats({ servers, replicas, bucketPrefix, requestTimeoutMs: 20_000 }),
      scope
    ).pipe(Effect.orDie)
    return { store: Context.get(context, SegmentStore), close: Scope.close(scope, Exit.void) }
  })

const entry = (file: string, fromSeq: number, toSeq: number, bytes: Uint8Array): Manifest.SegmentEntry => ({
  file,
  fromSeq,
  toSeq,
  rows: toSeq - fromSeq + 1,
  bytes: bytes.length,
  sha256: sha256(bytes),
  minTimestampMs: 1,
  maxTimestampMs: 2,
  createdAtMs: 3
})

/** Bytes that are not all alike, larger than one object-store chunk (128 KiB), so chunking is exercised. */
const payload = (size: number, salt: number) => {
  const b = new Uint8Array(size)
  for (let i = 0; i < size; i++) b[i] = (i * 31 + salt * 7 + (i >> 8)) & 0xff
  return b
}

const exerciseStore = (a: SegmentStoreShape, b: SegmentStoreShape) =>
  Effect.gen(function*() {
    assert.strictEqual(a.driver, "nats")
    assert.deepStrictEqual(yield* a.partitions, [])
    assert.isUndefined(yield* a.get(3, Manifest.fileName(1, 10)))
    assert.isUndefined(yield* a.readManifest(3))

    const one = payload(300_000, 1)
    const two = payload(1_000, 2)
    yield* a.put(3, Manifest.fileName(1, 10), one)
    yield* a.put(3, Manifest.fileName(11, 12), two)
    yield* a.put(17, Manifest.fileName(1, 1), two)
    // Another connection (another node) reads the same bytes.
    assert.deepStrictEqual(yield* b.get(3, Manifest.fileName(1, 10)), one)
    assert.deepStrictEqual(yield* b.get(3, Manifest.fileName(11, 12)), two)
    assert.deepStrictEqual(yield* b.list(3), [Manifest.fileName(1, 10), Manifest.fileName(11, 12)])
    assert.deepStrictEqual(yield* b.list(4), [])

    // Manifests: compare-and-swap on the revision each driver last saw.
    assert.isUndefined(yield* b.readManifest(3))
    const m1 = Manifest.withSegment(Manifest.empty(3), entry(Manifest.fileName(1, 10), 1, 10, one))
    yield* a.writeManifest(3, m1)
    // b never read a manifest that exists: its create loses, and nothing of a's is overwritten.
    const lost = yield* b.writeManifest(3, Manifest.empty(3)).pipe(Effect.flip)
    assert.strictEqual(lost._tag, "SegmentStoreError")
    assert.include(lost.message, "the manifest changed")
    assert.deepStrictEqual(yield* b.readManifest(3), m1)
    // After a fresh read b may extend it; a, now stale, may not.
    const m2 = Manifest.withSegment(m1, entry(Manifest.fileName(11, 12), 11, 12, two))
    yield* b.writeManifest(3, m2)
    const stale = yield* a.writeManifest(3, Manifest.withSegment(m1, entry(Manifest.fileName(11, 11), 11, 11, two)))
      .pipe(Effect.flip)
    assert.include(stale.message, "the manifest changed")
    assert.deepStrictEqual(yield* a.readManifest(3), m2)
    // Consecutive writes by one driver need no re-read (its own revision is remembered).
    yield* a.writeManifest(3, m2)
    yield* a.writeManifest(3, m2)
    assert.deepStrictEqual(yield* b.partitions, [3, 17])

    yield* a.remove(3, Manifest.fileName(11, 12))
    yield* a.remove(3, Manifest.fileName(11, 12))
    assert.isUndefined(yield* b.get(3, Manifest.fileName(11, 12)))
    assert.deepStrictEqual(yield* b.list(3), [Manifest.fileName(1, 10)])
  })

describe("NATS segment store: single server", () => {
  let server: NatsServerHandle
  beforeAll(async () => {
    server = await startNatsServer()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it.live("segments in an object store, manifests in KV with compare-and-swap", () =>
    Effect.gen(function*() {
      const a = yield* openStore([server.url], 1, "T1")
      const b = yield* openStore([server.url], 1, "T1")
      yield* exerciseStore(a.store, b.store)
      yield* a.close
      yield* b.close
    }))

  it.live("a node on the JetStream log with segmentStoreDriver=nats seals over HTTP and cold-boots from the buckets", () =>
    Effect.gen(function*() {
      const config: Partial<ChronosConfigShape> = { logDriver: "jetstream", natsUrls: server.url, segmentStoreDriver: "nats" }
      const node = yield* startNode(config)
      const partitionOf = new Map<string, number>()
      for (let i = 0; i < 60; i++) {
        const r = yield* call(`${node.url}/v1/tenants/acme/streams/order-${i % 9}/events`, "POST", {
          events: [{ type: i % 2 === 0 ? "Placed" : "Paid", data: { i, text: "x".repeat(i) } }]
        })
        assert.strictEqual(r.status, 200)
        partitionOf.set(`order-${i % 9}`, r.body.positions[0]!.partition)
      }
      const sealed = yield* call(`${node.url}/v1/admin/seal`, "POST")
      assert.strictEqual(sealed.status, 200, JSON.stringify(sealed.body))
      const segments = sealed.body.partitions.flatMap((p) => p.segments)
      assert.strictEqual(segments.reduce((n: number, s: any) => n + s.rows, 0), 60)
      for (const s of segments) assert.match(s.location, /^nats-obj:CHRONOS_SEGMENTS\/p\d{3}\//)
      const before = yield* call(`${node.url}/v1/tenants/acme/events?limit=100`, "GET")
      const streamBefore = yield* call(`${node.url}/v1/tenants/acme/streams/order-4/events?limit=100`, "GET")
      assert.strictEqual(before.body.events.length, 60)
      yield* Effect.promise(() => node.stop())

      // What is in the buckets, read by an independent client: every listed object decodes to its rows.
      const nc = yield* Effect.promise(() => connect({ servers: server.url }))
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      const streams = yield* Effect.promise(async () => {
        const names: Array<string> = []
        for await (const s of jsm.streams.list()) names.push(s.config.name)
        return names
      })
      assert.includeMembers(streams, [`OBJ_${bucketNames("CHRONOS").segments}`, `KV_${bucketNames("CHRONOS").manifests}`])
      yield* Effect.promise(() => nc.close())
      const reader = yield* openStore([server.url], 1, "CHRONOS")
      let rows = 0
      for (const p of yield* reader.store.partitions) {
        const manifest = (yield* reader.store.readManifest(p))!
        for (const e of manifest.segments) {
          const bytes = (yield* reader.store.get(p, e.file))!
          assert.strictEqual(sha256(bytes), e.sha256)
          rows += SegmentFormat.decode(bytes).rows
        }
      }
      assert.strictEqual(rows, 60)
      // A pruned cold read of one stream from the buckets (footer statistics of small objects included).
      const segmentReader = SegmentReader.make(reader.store, { cacheBytesMax: 1_048_576 })
      const cold = yield* segmentReader.readStream(partitionOf.get("order-4")!, "acme", "order-4")
      assert.deepStrictEqual(cold.events.map((e) => e.eventId), streamBefore.body.events.map((e) => e.eventId))
      yield* reader.close

      // A new node loads the sealed ranges from the buckets (and the log beyond them): the same answers.
      const again = yield* startNode(config)
      const after = yield* call(`${again.url}/v1/tenants/acme/events?limit=100`, "GET")
      assert.deepStrictEqual(after.body, before.body)
      assert.deepStrictEqual((yield* call(`${again.url}/v1/tenants/acme/streams/order-4/events?limit=100`, "GET")).body, streamBefore.body)
      const appended = yield* call(`${again.url}/v1/tenants/acme/streams/order-4/events`, "POST", {
        expectedVersion: streamBefore.body.events.length - 1,
        events: [{ type: "Placed", data: { after: true } }]
      })
      assert.strictEqual(appended.status, 200, JSON.stringify(appended.body))
      yield* Effect.promise(() => again.stop())

      // One flipped byte in a segment object (rewritten whole, so the object store's own digest matches it): the
      // manifest's SHA-256 catches it, and reads of that partition are a typed 502 CorruptData naming the object.
      const damaged = partitionOf.get("order-4")!
      const writer = yield* openStore([server.url], 1, "CHRONOS")
      const clean = yield* Verify.runStore(writer.store)
      assert.deepStrictEqual(clean.problems, [])
      assert.strictEqual(clean.partitions.reduce((n, p) => n + p.segmentRows, 0), 60)
      const victim = (yield* writer.store.readManifest(damaged))!.segments[0]!
      const bytes = (yield* writer.store.get(damaged, victim.file))!.slice()
      bytes[Math.floor(bytes.length / 2)]! ^= 0x01
      yield* writer.store.put(damaged, victim.file, bytes)
      // The scrub of the buckets names the damaged object, and only it.
      const scrub = yield* Verify.runStore(writer.store)
      assert.isFalse(scrub.ok)
      assert.deepStrictEqual([...new Set(scrub.problems.map((p) => p.file))], [writer.store.location(damaged, victim.file)])
      assert.include(scrub.problems[0]!.message, "sha256")
      // `chronos verify --nats`: the same scrub from the URL alone, over the existing buckets.
      const byUrl = yield* Verify.runNats({ servers: [server.url], requestTimeoutMs: 20_000 })
      assert.deepStrictEqual(byUrl.problems, scrub.problems)
      assert.deepStrictEqual(byUrl.partitions, scrub.partitions)
      // A prefix with no store is a problem, and creates nothing.
      const missing = yield* Verify.runNats({ servers: [server.url], bucketPrefix: "NOSUCH", requestTimeoutMs: 5_000 })
      assert.isFalse(missing.ok)
      assert.strictEqual(missing.problems[0]!.kind, "io")
      const missingAgain = yield* Verify.runNats({ servers: [server.url], bucketPrefix: "NOSUCH", requestTimeoutMs: 5_000 })
      assert.isFalse(missingAgain.ok)
      yield* writer.close
      const third = yield* startNode(config)
      const corrupt = yield* call(`${third.url}/v1/tenants/acme/streams/order-4/events?limit=100`, "GET")
      assert.strictEqual(corrupt.status, 502, JSON.stringify(corrupt.body))
      assert.strictEqual(corrupt.body._tag, "CorruptData")
      assert.strictEqual(corrupt.body.location, writer.store.location(damaged, victim.file))
      assert.match(corrupt.body.location, /^nats-obj:CHRONOS_SEGMENTS\/p\d{3}\//)
      const healthy = [...partitionOf].find(([, p]) => p !== damaged)![0]
      assert.strictEqual((yield* call(`${third.url}/v1/tenants/acme/streams/${healthy}/events?limit=100`, "GET")).status, 200)
      yield* Effect.promise(() => third.stop())
    }))
})

describe("NATS segment store: R3 cluster", () => {
  let cluster: NatsClusterHandle
  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 })
    await cluster.waitForMetaLeader()
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  it.live("buckets are replicated 3 ways and keep serving with one server down", () =>
    Effect.gen(function*() {
      const a = yield* openStore(cluster.urls, 3, "R3")
      const b = yield* openStore([...cluster.urls].reverse(), 3, "R3")
      yield* exerciseStore(a.store, b.store)

      const nc = yield* Effect.promise(() => connect({ servers: [...cluster.urls] }))
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      for (const stream of [`OBJ_${bucketNames("R3").segments}`, `KV_${bucketNames("R3").manifests}`]) {
        const info = yield* Effect.promise(() => jsm.streams.info(stream))
        assert.strictEqual(info.config.num_replicas, 3, stream)
      }
      yield* Effect.promise(() => nc.close())

      // One server down: a quorum of two still stores and serves segments and manifests.
      const one = payload(200_000, 9)
      cluster.nodes[0]!.kill("SIGKILL")
      const deadline = Date.now() + 60_000
      // Until the streams whose leader died have elected a new one, requests may fail: retried within a bound.
      const retrying = <A, E>(effect: Effect.Effect<A, E>) =>
        Effect.suspend(function loop(): Effect.Effect<A, E> {
          return Effect.catch(effect, (e) =>
            Date.now() > deadline ? Effect.fail(e) : Effect.andThen(Effect.sleep(250), Effect.suspend(loop)))
        })
      const manifest = (yield* retrying(b.store.readManifest(3)))!
      yield* retrying(b.store.put(5, Manifest.fileName(1, 4), one))
      assert.deepStrictEqual(yield* retrying(a.store.get(5, Manifest.fileName(1, 4))), one)
      yield* retrying(b.store.writeManifest(3, manifest))
      assert.deepStrictEqual(yield* retrying(a.store.readManifest(3)), manifest)
      yield* a.close
      yield* b.close
    }))
})
