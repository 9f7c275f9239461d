import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as path from "node:path"
import * as Verify from "../src/Verify.ts"
import { listFiles, open, snapshot, tempDir } from "./support.ts"

describe("Sealing online", () => {
  it.live("policy and on-demand seals while writers append: no loss, no gap, same answers after a cold boot", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-online-")
      // Thresholds low enough that the policy seals several times during the run.
      const a = yield* open(dataDir, { coldSealBytesMin: 24 * 1024, coldSealCheckIntervalMs: 25 })
      const writers = 4
      const perWriter = 1_500
      const streamsPerWriter = 5
      const writer = (w: number) =>
        Effect.gen(function*() {
          const versions = new Array<number>(streamsPerWriter).fill(-1)
          for (let i = 0; i < perWriter;) {
            const s = i % streamsPerWriter
            const n = 1 + (i % 4)
            const events = Array.from({ length: Math.min(n, perWriter - i) }, (_, k) => ({
              type: "Tick",
              data: { w, i: i + k, pad: "x".repeat(40) }
            }))
            // Exact expected versions: a lost or duplicated event would fail the next append.
            const r = yield* a.engine.append(w % 2 === 0 ? "acme" : "beta", `w${w}-s${s}`, {
              expectedVersion: versions[s] === -1 ? "no_stream" : versions[s]!,
              events
            } as never)
            versions[s] = r.lastVersion
            i += events.length
          }
          return versions
        })
      const sealer = Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep(40)
          yield* a.tier.sealNow()
        }
      })
      const sealing = yield* Effect.forkChild(sealer)
      const versions = yield* Effect.forEach(Array.from({ length: writers }, (_, w) => w), writer, { concurrency: "unbounded" })
      yield* Fiber.interrupt(sealing)
      const final = yield* a.tier.sealNow()

      // Every stream has all its events, gapless; every partition's sequence is gapless from 1.
      const total = writers * perWriter
      assert.strictEqual(versions.flat().reduce((n, v) => n + v + 1, 0), total)
      let seen = 0
      for (const tenant of ["acme", "beta"]) {
        for (let p = 0; p < 4; p++) {
          const events = yield* a.engine.readPartition(tenant, p, { limit: 10_000 })
          seen += events.length
        }
      }
      assert.strictEqual(seen, total)
      const statuses = yield* a.engine.partitions
      assert.strictEqual(statuses.reduce((n, s) => n + s.watermark, 0), total)
      for (const r of final) {
        assert.strictEqual(r.sealedThrough, statuses[r.partition]!.watermark)
      }
      // Many segments per partition: the policy and the on-demand seals both ran during the writes.
      const segments = listFiles(path.join(dataDir, "segments"), ".parquet")
      assert.isAbove(segments.length, 8)
      const before = yield* snapshot(a.engine, 0)
      yield* a.close

      const report = yield* Verify.run({ dataDir })
      assert.deepStrictEqual(report.problems, [])
      assert.strictEqual(report.partitions.reduce((n, p) => n + p.segmentRows, 0), total)

      const b = yield* open(dataDir)
      assert.deepStrictEqual(yield* snapshot(b.engine, 0), before)
      for (let w = 0; w < writers; w++) {
        for (let s = 0; s < streamsPerWriter; s++) {
          const events = yield* b.engine.readStream(w % 2 === 0 ? "acme" : "beta", `w${w}-s${s}`, { limit: 10_000 })
          assert.deepStrictEqual(events.map((e) => e.streamVersion), Array.from({ length: events.length }, (_, v) => v))
          const is = events.map((e) => (e.data as { i: number }).i)
          assert.isTrue(is.every((i, k) => k === 0 || i > is[k - 1]!), "a stream's events keep their append order")
        }
      }
      yield* b.close
    }).pipe(Effect.scoped))
})
