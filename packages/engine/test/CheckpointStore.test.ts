/**
 * The `CheckpointStore` contract on every driver (memory, file, NATS KV against a real nats-server): documents
 * round-trip, every write is a compare-and-swap on the revision, the size limit is the same everywhere, listing by
 * prefix; and for the file driver, that a document is replaced atomically (no temporary files left, a restart reads
 * the last complete write).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { CheckpointStore } from "../src/CheckpointStore.ts"
import { startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsServerHandle } from "../../../test/support/NatsServer.ts"

const bytesMax = 4096
const dirs: Array<string> = []
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), "chronos-ckpt-"))
  dirs.push(dir)
  return dir
}
let nats: NatsServerHandle | undefined
beforeAll(async () => {
  nats = await startNatsServer()
}, 60_000)
afterAll(async () => {
  await nats?.stop()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const contract = Effect.gen(function*() {
  const store = yield* CheckpointStore
  const key = ["consumers", "acme", "billing"]
  assert.isUndefined(yield* store.get(key))
  const r1 = yield* store.put(key, { checkpoint: { "0": 5 }, note: "first" }, 0)
  const got = yield* store.get(key)
  assert.deepStrictEqual(got, { value: { checkpoint: { "0": 5 }, note: "first" }, revision: r1 })
  // Creating again, or writing with a stale revision, is a conflict and changes nothing.
  const again = yield* store.put(key, { note: "again" }, 0).pipe(Effect.flip)
  assert.strictEqual(again._tag, "CheckpointConflict")
  const r2 = yield* store.put(key, { note: "second" }, r1)
  assert.isAbove(r2, r1)
  const stale = yield* store.put(key, { note: "stale" }, r1).pipe(Effect.flip)
  assert.strictEqual(stale._tag, "CheckpointConflict")
  assert.deepStrictEqual((yield* store.get(key))?.value, { note: "second" })
  // The same size limit for every driver.
  const big = yield* store.put(key, { blob: "x".repeat(bytesMax) }, r2).pipe(Effect.flip)
  assert.strictEqual(big._tag, "LimitExceeded")
  // Listing by prefix.
  yield* store.put(["consumers", "acme", "audit"], 1, 0)
  yield* store.put(["consumers", "other", "audit"], 2, 0)
  yield* store.put(["projections", "acme", "totals"], 3, 0)
  const acme = (yield* store.list(["consumers", "acme"])).map((k) => k.join("/")).sort()
  assert.deepStrictEqual(acme, ["consumers/acme/audit", "consumers/acme/billing"])
  assert.strictEqual((yield* store.list(["projections"])).length, 1)
  // A document is never shared by reference with the caller.
  const doc = (yield* store.get(key))!.value as { note: string }
  doc.note = "mutated"
  assert.deepStrictEqual((yield* store.get(key))?.value, { note: "second" })
})

describe("CheckpointStore", () => {
  it.effect("memory driver", () => contract.pipe(Effect.provide(CheckpointStore.layerMemory({ bytesMax }))))

  it.live("file driver: atomic replace under <dataDir>/<kind>/<tenant>/, survives a reopen", () =>
    Effect.gen(function*() {
      const dataDir = tempDir()
      yield* contract.pipe(Effect.provide(CheckpointStore.layerFile({ dataDir, bytesMax })))
      assert.deepStrictEqual(readdirSync(path.join(dataDir, "consumers", "acme")).sort(), ["audit.json", "billing.json"])
      // A fresh store (a restart) reads the last complete write and continues its revisions.
      yield* Effect.gen(function*() {
        const store = yield* CheckpointStore
        const doc = yield* store.get(["consumers", "acme", "billing"])
        assert.deepStrictEqual(doc?.value, { note: "second" })
        yield* store.put(["consumers", "acme", "billing"], { note: "third" }, doc!.revision)
      }).pipe(Effect.provide(CheckpointStore.layerFile({ dataDir, bytesMax })))
      assert.isFalse(readdirSync(path.join(dataDir, "consumers", "acme")).some((f) => f.endsWith(".tmp")))
    }))

  it.live("NATS KV driver (real nats-server); two connections see each other's writes and conflicts", () =>
    Effect.gen(function*() {
      const options = { servers: [nats!.url], replicas: 1, bytesMax, bucket: "chronos_ckpt_test" }
      yield* contract.pipe(Effect.provide(CheckpointStore.layerNatsKv(options)))
      // Another process (another runner) continues from what the first wrote.
      yield* Effect.gen(function*() {
        const store = yield* CheckpointStore
        const doc = yield* store.get(["consumers", "acme", "billing"])
        assert.deepStrictEqual(doc?.value, { note: "second" })
        const conflict = yield* store.put(["consumers", "acme", "billing"], {}, doc!.revision - 1).pipe(Effect.flip)
        assert.strictEqual(conflict._tag, "CheckpointConflict")
      }).pipe(Effect.provide(CheckpointStore.layerNatsKv(options)))
    }))
})

