/**
 * Forks over the file log: the store's log files are byte-for-byte unchanged by any fork activity short of a merge,
 * a fork's log lives in its own directory and is deleted with it, and forks (records and logs) survive a restart —
 * including a fork that expired while the store was closed, which is deleted at the next start.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ChronosConfig } from "@chronos/config"
import { Event } from "@chronos/domain"
import { Engine } from "../src/Engine.ts"
import { EventLog } from "../src/EventLog.ts"
import { ForkRegistry, registryFile } from "../src/ForkRegistry.ts"
import { Forks } from "../src/Forks.ts"

const ev = (type: string, data: Schema.Json) => Event.propose(type, data)

const open = (dataDir: string) =>
  ManagedRuntime.make(
    Forks.layer.pipe(
      Layer.provideMerge(Engine.layerLocal),
      Layer.provideMerge(Layer.mergeAll(
        EventLog.layerFile({ dataDir, partitions: 4 }),
        Layer.orDie(ForkRegistry.layerFile(dataDir))
      )),
      Layer.provideMerge(ChronosConfig.layer({ partitions: 4, dataDir, forkExpiryIntervalMs: 50 }))
    )
  )

/** Every file under `dir` with its SHA-256 (sorted by path). */
const fingerprint = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(d, entry.name)
      if (entry.isDirectory()) walk(full)
      else out[path.relative(dir, full)] = createHash("sha256").update(fs.readFileSync(full)).digest("hex")
    }
  }
  walk(dir)
  return out
}

describe("Forks on the file log", () => {
  it("leave the store's log files byte-for-byte unchanged, keep their own log apart, and delete it", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-forks-"))
    const rt = open(dataDir)
    try {
      await rt.runPromise(Effect.gen(function*() {
        const engine = yield* Engine
        const forks = yield* Forks
        for (let i = 0; i < 40; i++) yield* engine.append("t", `s${i % 5}`, { events: [ev("E", { i }), ev("F", { i })] })
        const mainLog = path.join(dataDir, "log")
        const before = fingerprint(mainLog)
        const mainEvents = yield* engine.query("t", { limit: 1000 })
        const middle = mainEvents.events[30]!
        const past = `${middle.partition}:${middle.seq}`

        // Fork activity of every kind except a merge.
        const fork = yield* forks.create("t", { ttlSeconds: 600, labels: { purpose: "test" } })
        const asOf = yield* forks.create("t", { ttlSeconds: 600, asOf: past })
        const f = yield* forks.engine("t", fork.forkId)
        for (let i = 0; i < 30; i++) yield* f.append("t", `s${i % 7}`, { events: [ev("G", { i })] })
        const branch = yield* forks.create("t", { ttlSeconds: 600, parent: fork.forkId })
        const b = yield* forks.engine("t", branch.forkId)
        yield* b.append("t", "s0", { events: [ev("H", {})] })
        yield* f.query("t", { limit: 1000 })
        yield* (yield* forks.engine("t", asOf.forkId)).query("t", { limit: 1000 })
        yield* f.readPartition("t", 1, {})
        yield* f.state("t", "s1", "count", undefined)
        yield* forks.diff("t", fork.forkId)
        yield* forks.merge("t", fork.forkId, { dryRun: true })
        assert.deepStrictEqual(fingerprint(mainLog), before, "fork activity leaves the store's log byte-for-byte")
        assert.deepStrictEqual(yield* engine.query("t", { limit: 1000 }), mainEvents)

        // The parent moves on its own; a merge that conflicts with that writes nothing either.
        yield* engine.append("t", "s0", { events: [ev("Conflict", {})] })
        const afterConflictingWrite = fingerprint(mainLog)
        const conflict = yield* forks.merge("t", fork.forkId, {}).pipe(Effect.flip)
        assert.strictEqual(conflict._tag, "ForkMergeConflict")

        assert.deepStrictEqual(fingerprint(mainLog), afterConflictingWrite, "a conflicting merge writes nothing")
        const reread = yield* engine.query("t", { limit: 1000 })
        assert.deepStrictEqual(reread.events.slice(0, mainEvents.events.length), mainEvents.events)
        assert.strictEqual(reread.events.length, mainEvents.events.length + 1)

        // The fork's log is its own directory.
        const forkDir = path.join(dataDir, "forks", fork.forkId)
        assert.isTrue(fs.existsSync(path.join(forkDir, "log")))
        assert.isTrue(fs.readdirSync(path.join(forkDir, "log")).every((p) => /^p\d{3}$/.test(p)))
        assert.isTrue(fs.existsSync(registryFile(dataDir)))
        const discarded = yield* forks.discard("t", fork.forkId)
        assert.sameMembers([...discarded.discarded], [fork.forkId, branch.forkId])
        assert.isFalse(fs.existsSync(forkDir), "storage freed")
        assert.isFalse(fs.existsSync(path.join(dataDir, "forks", branch.forkId)))
        const registry = JSON.parse(fs.readFileSync(registryFile(dataDir), "utf8"))
        assert.deepStrictEqual(registry.forks.map((r: any) => r.id), [asOf.forkId])
      }))
    } finally {
      await rt.dispose()
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it("survive a restart: records, logs, versions; a fork that expired meanwhile is deleted at start", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-forks-"))
    try {
      const first = open(dataDir)
      const { kept, short } = await first.runPromise(Effect.gen(function*() {
        const engine = yield* Engine
        const forks = yield* Forks
        yield* engine.append("t", "s", { events: [ev("A", {}), ev("B", {})] })
        const kept = yield* forks.create("t", { ttlSeconds: 600 })
        const short = yield* forks.create("t", { ttlSeconds: 1 })
        yield* (yield* forks.engine("t", kept.forkId)).append("t", "s", { expectedVersion: 1, events: [ev("C", {})] })
        yield* (yield* forks.engine("t", short.forkId)).append("t", "s", { events: [ev("X", {})] })
        return { kept, short }
      }))
      await first.dispose()
      assert.isTrue(fs.existsSync(path.join(dataDir, "forks", short.forkId)))
      await new Promise((r) => setTimeout(r, 1_100))

      const second = open(dataDir)
      try {
        await second.runPromise(Effect.gen(function*() {
          const engine = yield* Engine
          const forks = yield* Forks
          assert.isFalse(fs.existsSync(path.join(dataDir, "forks", short.forkId)), "expired while down: deleted at start")
          assert.deepStrictEqual((yield* forks.list("t")).map((f) => f.forkId), [kept.forkId])
          const f = yield* forks.engine("t", kept.forkId)
          assert.deepStrictEqual((yield* f.readStream("t", "s", {})).map((e) => [e.type, e.streamVersion]), [["A", 0], ["B", 1], ["C", 2]])
          const next = yield* f.append("t", "s", { expectedVersion: 2, events: [ev("D", {})] })
          assert.strictEqual(next.firstVersion, 3)
          const merged = yield* forks.merge("t", kept.forkId, {})
          assert.deepStrictEqual(merged.streams.map((s) => [s.stream, s.appended]), [["s", 2]])
          assert.deepStrictEqual((yield* engine.readStream("t", "s", {})).map((e) => e.type), ["A", "B", "C", "D"])
        }))
      } finally {
        await second.dispose()
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
