import { DuckDBInstance } from "@duckdb/node-api"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { ChronosConfig, make as makeConfig } from "@chronos/config"
import type { Event } from "@chronos/domain"
import { EventLog } from "@chronos/engine/EventLog"
import { HEADER_BYTES } from "@chronos/engine/internal/fileLog"
import * as Partition from "@chronos/engine/Partition"
import { ColdTier } from "../src/ColdTier.ts"
import * as SegmentFormat from "../src/SegmentFormat.ts"
import * as Verify from "../src/Verify.ts"
import { flipByte, listFiles, open, populate, smallLimits, snapshot, tempDir } from "./support.ts"

describe("Integrity: independent reader, verify, corrupt data", () => {
  it.live("segments read by DuckDB match the API; a flipped byte in a segment and in a log record is named by verify, fails only its partition", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-integrity-")
      const streams = 30
      const a = yield* open(dataDir)
      yield* populate(a.engine, 2_000, streams)
      const sealedThrough = new Map((yield* a.tier.sealNow()).map((r) => [r.partition, r.sealedThrough]))
      yield* populate(a.engine, 600, streams, 2_000)
      const before = yield* snapshot(a.engine, streams)
      const sealedEvents: Array<Event.StoredEvent> = []
      for (const tenant of ["acme", "beta"]) {
        for (let p = 0; p < 4; p++) {
          sealedEvents.push(...(yield* a.engine.readPartition(tenant, p, { limit: 10_000 })).filter((e) => e.seq <= sealedThrough.get(p)!))
        }
      }
      yield* a.close

      // --- an independent reader: DuckDB reads every segment, and every value matches what the API returns.
      const segmentFiles = listFiles(path.join(dataDir, "segments"), ".parquet")
      assert.strictEqual(segmentFiles.length, 4)
      const duck = yield* Effect.promise(async () => {
        const db = await DuckDBInstance.create(":memory:")
        const con = await db.connect()
        const glob = path.join(dataDir, "segments", "*", "*.parquet")
        const rows = (await con.runAndReadAll(
          `SELECT tenant, stream, stream_version, partition, seq, event_id, type, epoch_ms(timestamp) AS ts, data, metadata,
                  filename FROM read_parquet('${glob}', filename = true) ORDER BY partition, seq`
        )).getRowObjectsJS()
        const meta = (await con.runAndReadAll(
          `SELECT DISTINCT compression, path_in_schema FROM parquet_metadata('${glob}') WHERE path_in_schema = 'data'`
        )).getRowObjectsJS()
        const groups = (await con.runAndReadAll(
          `SELECT count(DISTINCT (file_name, row_group_id)) AS n FROM parquet_metadata('${glob}')`
        )).getRowObjectsJS()
        con.closeSync()
        db.closeSync()
        return { rows, meta, groups: Number(groups[0]!["n"]) }
      })
      assert.strictEqual(duck.rows.length, 2_000)
      assert.deepStrictEqual(duck.meta.map((m) => m["compression"]), ["ZSTD"])
      assert.isAtLeast(duck.groups, 2_000 / smallLimits.segmentRowGroupRowsMax)
      const byKey = new Map(sealedEvents.map((e) => [`${e.partition}:${e.seq}`, e]))
      assert.strictEqual(byKey.size, 2_000)
      for (const r of duck.rows) {
        const e = byKey.get(`${r["partition"]}:${r["seq"]}`)
        if (e === undefined) assert.fail(`no event for row ${JSON.stringify(r, (_k, v) => typeof v === "bigint" ? String(v) : v)}`)
        assert.deepStrictEqual(
          [r["tenant"], r["stream"], Number(r["stream_version"]), r["event_id"], r["type"], Number(r["ts"])],
          [e.tenant, e.stream, e.streamVersion, e.eventId, e.type, e.timestamp]
        )
        assert.deepStrictEqual(JSON.parse(String(r["data"])), e.data)
        assert.deepStrictEqual(JSON.parse(String(r["metadata"])), e.metadata)
      }
      // Rows of each file are sorted by (tenant, stream, version).
      for (const file of segmentFiles) {
        const c = SegmentFormat.decode(new Uint8Array(fs.readFileSync(file)))
        for (let i = 1; i < c.rows; i++) {
          const k = (j: number) => [c.tenant[j]!, c.stream[j]!, c.streamVersion[j]!] as const
          const [t0, s0, v0] = k(i - 1)
          const [t1, s1, v1] = k(i)
          assert.isTrue(t0 < t1 || (t0 === t1 && (s0 < s1 || (s0 === s1 && v0 < v1))), `${file} row ${i} out of order`)
        }
      }

      // --- a sound data dir verifies clean.
      const clean = yield* Verify.run({ dataDir })
      assert.deepStrictEqual(clean.problems, [])
      assert.isTrue(clean.ok)
      assert.strictEqual(clean.partitions.reduce((n, p) => n + p.segmentRows, 0), 2_000)

      // --- damage: one byte of partition 1's segment, one byte inside a record body of partition 2's log.
      const segment = segmentFiles.find((f) => f.includes(`${path.sep}p001${path.sep}`))!
      flipByte(segment, Math.floor(fs.statSync(segment).size / 3), 0x5a)
      const logFiles = listFiles(path.join(dataDir, "log", "p002"), ".log")
      // Not the first file (it may hold only records below the sealed range, which no replay reads) nor the last
      // (damage at the end of the last file is indistinguishable from a torn write): a record replay must serve.
      assert.isAtLeast(logFiles.length, 3)
      const damagedLog = logFiles[1]!
      flipByte(damagedLog, HEADER_BYTES + 10, 0x5a)

      const report = yield* Verify.run({ dataDir })
      assert.isFalse(report.ok)
      const segmentProblem = report.problems.find((p) => p.file === segment)
      assert.isDefined(segmentProblem)
      assert.include(segmentProblem!.message, "sha256")
      const logProblem = report.problems.find((p) => p.file === damagedLog)
      assert.isDefined(logProblem)
      assert.strictEqual(logProblem!.kind, "log-record")
      assert.strictEqual(logProblem!.offset, 0)
      assert.include(logProblem!.message, "CRC32C mismatch")
      assert.deepStrictEqual([...new Set(report.problems.map((p) => p.partition))].sort(), [1, 2])

      // --- loading partition 1 fails with a typed CorruptData naming the segment; a segment read does too.
      const config = makeConfig({ ...smallLimits, dataDir })
      const layers = ColdTier.layerLocal({ dataDir }).pipe(
        Layer.provideMerge(EventLog.layerFile({ dataDir, segmentBytesMax: config.logSegmentBytesMax })),
        Layer.provideMerge(ChronosConfig.layer(config))
      )
      const loaded = yield* Partition.make(1, config).pipe(Effect.scoped, Effect.provide(layers), Effect.flip)
      assert.strictEqual(loaded._tag, "CorruptData")
      assert.include((loaded as { location: string }).location, segment)
      const tier = yield* Effect.provide(Effect.map(ColdTier, (t) => t), layers)
      const stream1 = sealedEvents.find((e) => e.partition === 1)!
      const read = yield* tier.reader.readStream(1, stream1.tenant, stream1.stream).pipe(Effect.flip)
      assert.strictEqual(read._tag, "CorruptData")

      // --- the store still opens: partitions 0 and 3 serve exactly what they did; 1 and 2 serve nothing silently.
      const b = yield* open(dataDir)
      for (const tenant of ["acme", "beta"]) {
        for (const p of [0, 3]) {
          assert.deepStrictEqual(yield* b.engine.readPartition(tenant, p, { limit: 10_000 }), before[`${tenant}/p${p}`])
        }
        for (const p of [1, 2]) {
          const exit = yield* Effect.exit(b.engine.readPartition(tenant, p, { limit: 10 }))
          assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
          const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
          assert.strictEqual((defect as { _tag?: string })._tag, "CorruptData")
        }
      }
      const p1Stream = sealedEvents.find((e) => e.partition === 1)!
      const refused = yield* b.engine.append(p1Stream.tenant, p1Stream.stream, { events: [{ type: "X", data: {} }] } as never).pipe(Effect.flip)
      assert.strictEqual(refused._tag, "Unavailable")
      assert.include((refused as { message: string }).message, "quarantined")
      const ok = sealedEvents.find((e) => e.partition === 0)!
      yield* b.engine.append(ok.tenant, ok.stream, { events: [{ type: "Y", data: {} }] } as never)
      yield* b.close
    }).pipe(Effect.scoped))
})
