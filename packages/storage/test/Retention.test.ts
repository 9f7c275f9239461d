import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect } from "effect"
import * as Compact from "../src/Compact.ts"
import * as Retention from "../src/Retention.ts"
import * as Seal from "../src/Seal.ts"
import * as Verify from "../src/Verify.ts"
import { open, smallLimits, type Store, tempDir } from "./support.ts"

describe("Retention and deletion", () => {
  it.live("maxCount, soft and hard deletion set after a seal: hidden by reads, erased (hard and retention only) by compaction", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-retention-")
      const put = (engine: Store["engine"], stream: string, n: number, from = 0) =>
        Effect.forEach(Array.from({ length: n }, (_, i) => i + from), (i) =>
          engine.append("acme", stream, { events: [{ type: "Data", data: { i }, metadata: { m: i } }] } as never), { discard: true })
      // The data is sealed before any rule exists (a seal erases what the rules it sees make erasable: see
      // SealCompaction.test.ts); the rules land in the log tail and reach the segments by compaction.
      const first = yield* open(dataDir)
      yield* put(first.engine, "kept", 10)
      yield* put(first.engine, "hard", 5)
      yield* put(first.engine, "soft", 5)
      yield* put(first.engine, "plain", 4)
      yield* first.close
      yield* Seal.run({ dataDir, config: smallLimits })
      const a = yield* open(dataDir)
      yield* Retention.setSettings(a.engine, "acme", "kept", { maxCount: 3 })
      yield* Retention.deleteStream(a.engine, "acme", "hard", { hard: true })
      yield* Retention.deleteStream(a.engine, "acme", "soft", { hard: false })
      yield* put(a.engine, "soft", 2, 5) // a new life of the stream: versions continue
      const now = yield* Clock.currentTimeMillis
      const read = (engine: typeof a.engine, stream: string) => engine.readStream("acme", stream, { limit: 1_000 })
      const visibleTypes = (events: ReadonlyArray<{ type: string; streamVersion: number }>) =>
        Retention.visible(events as never, now).map((e: { type: string; streamVersion: number }) => `${e.streamVersion}:${e.type}`)

      const before: Record<string, ReadonlyArray<any>> = {}
      for (const s of ["kept", "hard", "soft", "plain"]) before[s] = yield* read(a.engine, s)
      // Reads through the rule: the last 3 versions of "kept" (its $metadata is one of them), tombstones only, …
      assert.deepStrictEqual(visibleTypes(before["kept"]!), ["8:Data", "9:Data", "10:$metadata"])
      assert.deepStrictEqual(visibleTypes(before["hard"]!), ["5:$deleted"])
      assert.deepStrictEqual(visibleTypes(before["soft"]!), ["5:$deleted", "6:Data", "7:Data"])
      assert.deepStrictEqual(visibleTypes(before["plain"]!), ["0:Data", "1:Data", "2:Data", "3:Data"])
      yield* a.close

      const reports = yield* Compact.run({ dataDir, config: smallLimits, nowMs: now })
      // Erased: "kept" versions 0..7 (retention) and "hard" 0..4 (hard deletion); the soft-deleted events stay.
      assert.strictEqual(reports.reduce((n, r) => n + r.eventsErased, 0), 8 + 5)
      assert.isTrue((yield* Verify.run({ dataDir })).ok)
      // Compacting again changes nothing.
      assert.strictEqual((yield* Compact.run({ dataDir, config: smallLimits, nowMs: now })).reduce((n, r) => n + r.segmentsRewritten, 0), 0)

      const b = yield* open(dataDir)
      for (const s of ["kept", "hard", "soft", "plain"]) {
        const after = yield* read(b.engine, s)
        // Positions are kept: same ids, versions, sequences and timestamps; erased events lost only their payload.
        assert.deepStrictEqual(
          after.map((e) => [e.eventId, e.streamVersion, e.seq, e.timestamp]),
          before[s]!.map((e) => [e.eventId, e.streamVersion, e.seq, e.timestamp])
        )
        const rules = Retention.rulesOf(before[s]!)
        const last = before[s]!.length - 1
        after.forEach((e, k) => {
          const original = before[s]![k]
          if (Retention.isErasable(original, rules, last, now)) {
            assert.deepStrictEqual([e.type, e.data, e.metadata], [Retention.erasedType, null, {}])
          } else {
            assert.deepStrictEqual(e, original)
          }
        })
        assert.deepStrictEqual(visibleTypes(after), visibleTypes(before[s]!))
      }
      // An erased event's id still answers as a duplicate: a retried append does not resurrect it.
      const erased = before["hard"]![0]
      const retry = yield* b.engine.append("acme", "hard", { events: [{ eventId: erased.eventId, type: "Data", data: {} }] } as never)
      assert.strictEqual(retry.firstVersion, 0)
      yield* b.close
    }).pipe(Effect.scoped))
})
