import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { listFiles, open, populate, snapshot, tempDir } from "./support.ts"

describe("ColdTier (embedded, file log + local segments)", () => {
  it.live("seal on demand, then a cold boot from segments + a short log tail serves the same answers", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-cold-")
      const streams = 40
      const a = yield* open(dataDir)
      yield* populate(a.engine, 3_000, streams)
      const logFilesBefore = listFiles(path.join(dataDir, "log"), ".log").length
      const before = yield* snapshot(a.engine, streams)

      const reports = yield* a.tier.sealNow()
      assert.strictEqual(reports.length, 4)
      const sealed = reports.reduce((n, r) => n + r.segments.reduce((m, s) => m + s.rows, 0), 0)
      assert.strictEqual(sealed, 3_000)
      // The log was truncated below the sealed range (whole files only): most of its files are gone.
      const logFilesAfter = listFiles(path.join(dataDir, "log"), ".log").length
      assert.isBelow(logFilesAfter, logFilesBefore / 4)
      assert.strictEqual(listFiles(path.join(dataDir, "segments"), ".parquet").length, 4)
      // Sealing changes nothing a reader sees.
      assert.deepStrictEqual(yield* snapshot(a.engine, streams), before)

      // A short tail after the seal.
      yield* populate(a.engine, 200, streams, 3_000)
      const withTail = yield* snapshot(a.engine, streams)
      yield* a.close

      const b = yield* open(dataDir)
      assert.deepStrictEqual(yield* snapshot(b.engine, streams), withTail)
      // Streams continue at the right versions after a cold boot.
      const v = (withTail["acme/order-2"] as ReadonlyArray<{ streamVersion: number }>).length
      const next = yield* b.engine.append("acme", "order-2", { expectedVersion: v - 1, events: [{ type: "Closed", data: {} }] } as never)
      assert.strictEqual(next.firstVersion, v)
      // A second seal only writes what is new.
      const again = yield* b.tier.sealNow()
      assert.strictEqual(again.reduce((n, r) => n + r.segments.reduce((m, s) => m + s.rows, 0), 0), 201)
      assert.isTrue(fs.existsSync(path.join(dataDir, "segments", "p000", "MANIFEST.json")))
      yield* b.close
    }).pipe(Effect.scoped))
})
