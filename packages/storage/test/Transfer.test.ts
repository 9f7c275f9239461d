import { DuckDBInstance } from "@duckdb/node-api"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as path from "node:path"
import * as Export from "../src/Export.ts"
import * as Import from "../src/Import.ts"
import * as Seal from "../src/Seal.ts"
import * as Verify from "../src/Verify.ts"
import { listFiles, open, populate, smallLimits, snapshot, tempDir } from "./support.ts"

describe("Offline seal, export and import", () => {
  it.live("seal a data dir offline; export a tenant to Parquet; import it elsewhere, twice, idempotently", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-offline-")
      const streams = 25
      const a = yield* open(dataDir)
      yield* populate(a.engine, 1_500, streams)
      const before = yield* snapshot(a.engine, streams)
      // A node (here: this store) holds the partitions' locks: offline sealing refuses to run beside it.
      const refused = yield* Seal.run({ dataDir, config: smallLimits }).pipe(Effect.flip)
      assert.strictEqual(refused._tag, "LogFenced")
      yield* a.close

      const progress: Array<number> = []
      const reports = yield* Seal.run({ dataDir, config: smallLimits, onProgress: (p) => progress.push(p.done) })
      assert.deepStrictEqual(progress, [1, 2, 3, 4])
      assert.strictEqual(reports.reduce((n, r) => n + r.segments.reduce((m, s) => m + s.rows, 0), 0), 1_500)
      assert.isTrue((yield* Verify.run({ dataDir })).ok)
      // Sealed twice: nothing new.
      assert.deepStrictEqual((yield* Seal.run({ dataDir, config: smallLimits })).flatMap((r) => r.segments), [])

      const b = yield* open(dataDir)
      assert.deepStrictEqual(yield* snapshot(b.engine, streams), before)
      yield* b.close

      // Export one tenant from the data dir.
      const out = yield* tempDir("chronos-export-")
      const file = path.join(out, "acme.parquet")
      const phases = new Set<string>()
      const exported = yield* Export.run({ dataDir, tenant: "acme", to: file, onProgress: (p) => phases.add(p.phase) })
      const acme = before["acme/all"] as ReadonlyArray<{ eventId: string; stream: string; data: unknown }>
      assert.strictEqual(exported.events, acme.length)
      assert.deepStrictEqual([...phases], ["read", "write", "done"])
      const duck = yield* Effect.promise(async () => {
        const db = await DuckDBInstance.create(":memory:")
        const con = await db.connect()
        const rows = (await con.runAndReadAll(`SELECT count(*) AS n, count(DISTINCT tenant) AS t FROM '${file}'`)).getRowObjectsJS()
        con.closeSync()
        db.closeSync()
        return rows[0]!
      })
      assert.deepStrictEqual([Number(duck["n"]), Number(duck["t"])], [acme.length, 1])

      // Import into an empty store, then again: the second import appends nothing.
      const target = yield* tempDir("chronos-import-")
      const counts: Array<number> = []
      const first = yield* Import.run({ from: file, dataDir: target, onProgress: (p) => counts.push(p.events) })
      assert.strictEqual(first.events, acme.length)
      assert.strictEqual(counts[counts.length - 1], acme.length)
      const second = yield* Import.run({ from: file, dataDir: target })
      assert.strictEqual(second.events, acme.length)
      // A new store made by the import: the default partition count.
      const c = yield* open(target, { partitions: 32 })
      for (let s = 0; s < streams; s++) {
        const original = before[`acme/order-${s}`] as ReadonlyArray<{ eventId: string; type: string; data: unknown; metadata: unknown; streamVersion: number }>
        const imported = yield* c.engine.readStream("acme", `order-${s}`, { limit: 10_000 })
        assert.deepStrictEqual(
          imported.map((e) => [e.eventId, e.type, e.data, e.metadata, e.streamVersion]),
          original.map((e) => [e.eventId, e.type, e.data, e.metadata, e.streamVersion])
        )
      }
      assert.strictEqual((yield* c.engine.partitions).reduce((n, p) => n + p.watermark, 0), acme.length)
      yield* c.close
      assert.isAbove(listFiles(path.join(dataDir, "segments"), ".parquet").length, 0)
    }).pipe(Effect.scoped))
})
