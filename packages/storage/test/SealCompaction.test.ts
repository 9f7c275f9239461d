import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Retention from "../src/Retention.ts"
import * as Seal from "../src/Seal.ts"
import * as SegmentFormat from "../src/SegmentFormat.ts"
import * as Verify from "../src/Verify.ts"
import { listFiles, open, tempDir } from "./support.ts"

/** Every row of every segment under `dataDir`, as `stream/version:type` with its data. */
const segmentRows = (dataDir: string) => {
  const rows: Array<{ label: string; data: string }> = []
  for (const file of listFiles(path.join(dataDir, "segments"), ".parquet")) {
    const c = SegmentFormat.decode(new Uint8Array(fs.readFileSync(file)))
    for (let i = 0; i < c.rows; i++) rows.push({ label: `${c.stream[i]}/${c.streamVersion[i]}:${c.type[i]}`, data: c.data[i]! })
  }
  return rows
}

const secret = "card 4111-1111-1111-1111"

const writeStreams = (engine: Parameters<typeof Retention.setSettings>[0]) =>
  Effect.gen(function*() {
    const put = (stream: string, n: number) =>
      Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
        engine.append("acme", stream, { events: [{ type: "Data", data: { i, secret } }] } as never), { discard: true })
    yield* put("hard", 4)
    yield* Retention.deleteStream(engine, "acme", "hard", { hard: true })
    yield* put("soft", 3)
    yield* Retention.deleteStream(engine, "acme", "soft", { hard: false })
    yield* put("counted", 6)
    yield* Retention.setSettings(engine, "acme", "counted", { maxCount: 2 })
    yield* put("plain", 2)
  })

const assertCompacted = (dataDir: string) => {
  const rows = segmentRows(dataDir)
  const labels = rows.map((r) => r.label).sort()
  assert.deepStrictEqual(labels, [
    // Hard deletion: every event before the tombstone is erased; the tombstone stays.
    "counted/0:$erased", "counted/1:$erased", "counted/2:$erased", "counted/3:$erased", "counted/4:$erased",
    "counted/5:Data", "counted/6:$metadata",
    "hard/0:$erased", "hard/1:$erased", "hard/2:$erased", "hard/3:$erased", "hard/4:$deleted",
    "plain/0:Data", "plain/1:Data",
    // A soft tombstone hides but does not erase.
    "soft/0:Data", "soft/1:Data", "soft/2:Data", "soft/3:$deleted"
  ].sort())
  // No payload of an erased event survives in any segment.
  for (const r of rows) if (r.label.endsWith("$erased")) assert.notInclude(r.data, "4111", r.label)
  assert.strictEqual(rows.filter((r) => r.data.includes(secret)).length, 2 + 3 + 1)
}

describe("Sealing compacts the log tail", () => {
  it.live("online seal: hard-deleted and retention-expired events reach segments erased; reads after cold boot agree", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-seal-compact-")
      const a = yield* open(dataDir)
      yield* writeStreams(a.engine)
      yield* a.tier.sealNow()
      assertCompacted(dataDir)
      const verified = yield* Verify.run({ dataDir })
      assert.deepStrictEqual(verified.problems, [])
      yield* a.close

      // Cold boot from the segments: the enforced reads show what they showed before the seal.
      const b = yield* open(dataDir)
      const reader = Retention.enforce(b.engine)
      const read = (stream: string) =>
        Effect.map(reader.readStream("acme", stream, { limit: 100 }), (es) => es.map((e) => `${e.streamVersion}:${e.type}`))
      assert.deepStrictEqual(yield* read("hard"), ["4:$deleted"])
      assert.deepStrictEqual(yield* read("soft"), ["3:$deleted"])
      assert.deepStrictEqual(yield* read("counted"), ["5:Data", "6:$metadata"])
      assert.deepStrictEqual(yield* read("plain"), ["0:Data", "1:Data"])
      // The erased events keep their positions: the stream continues at the next version.
      const next = yield* b.engine.append("acme", "hard", { expectedVersion: 4, events: [{ type: "Data", data: {} }] } as never)
      assert.strictEqual(next.firstVersion, 5)
      yield* b.close
    }).pipe(Effect.scoped))

  it.live("offline seal (chronos seal): the same compaction of rules found in the log tail", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-seal-compact-offline-")
      const a = yield* open(dataDir)
      yield* writeStreams(a.engine)
      yield* a.close
      yield* Seal.run({ dataDir, config: { partitions: 4, logSegmentBytesMax: 8 * 1024, segmentRowGroupRowsMax: 64 } })
      assertCompacted(dataDir)
    }).pipe(Effect.scoped))
})
