/**
 * Truncation of the file log below a sealed range (`truncateBefore`, used by the cold tier): whole files only, the
 * base sequence recorded in `BASE` so that `open` and `replay` accept a first file above seq 1, and crash safety
 * (BASE is written before files are deleted; files left below the base are deleted at the next open).
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type Commit, lastSeq } from "../src/Commit.ts"
import * as FileLog from "../src/internal/fileLog.ts"
import { commitAt } from "./fixtures/commits.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "chronos-truncate-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)
const dirOf = (dataDir: string) => path.join(dataDir, "log", "p000")
const files = (dataDir: string) => fs.readdirSync(dirOf(dataDir)).filter((n) => n.endsWith(".log")).sort()
const openLog = (dataDir: string) => Effect.flatMap(FileLog.make({ dataDir, segmentBytesMax: 1024 }), (d) => d.open(0))
const replayAll = (log: FileLog.FilePartitionLog, fromSeq: number) =>
  Effect.gen(function*() {
    const commits: Array<Commit> = []
    const last = yield* log.replay(fromSeq, (c) => commits.push(c))
    return { commits, last }
  })

describe("FileLog truncation", () => {
  it.live("drops whole files below a sequence, records the base, and reopens, replays and appends from there", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dataDir)
        for (let s = 1; s <= 100; s += 2) yield* log.append(commitAt(0, s, 2))
        const before = files(dataDir)
        assert.isAbove(before.length, 5)
        yield* log.truncateBefore!(51)
        const after = files(dataDir)
        const base = Number(after[0]!.slice(0, 20))
        // Only whole files that end below 51 are gone; the first kept one holds seq 51.
        assert.isAtMost(base, 51)
        assert.isAbove(Number(after[1]!.slice(0, 20)), 51)
        assert.deepStrictEqual(before.slice(before.length - after.length), after)
        assert.deepStrictEqual(JSON.parse(fs.readFileSync(path.join(dirOf(dataDir), FileLog.BASE_FILE), "utf8")).baseSeq, base)
        const { commits, last } = yield* replayAll(log, 51)
        assert.strictEqual(last, 100)
        assert.strictEqual(commits[0]!.firstSeq <= 51 && lastSeq(commits[0]!) >= 51, true)
        // Truncating below what is already gone changes nothing; the last file is never deleted.
        yield* log.truncateBefore!(10)
        yield* log.truncateBefore!(1_000)
        assert.deepStrictEqual(files(dataDir), [after[after.length - 1]!])
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dataDir)
        const { commits, last } = yield* replayAll(log, 1)
        assert.strictEqual(last, 100)
        assert.strictEqual(commits[0]!.firstSeq, Number(files(dataDir)[0]!.slice(0, 20)))
        yield* log.append(commitAt(0, 101, 1))
        assert.strictEqual((yield* replayAll(log, 101)).last, 101)
      }))
    }).pipe(Effect.scoped))

  it.live("a truncation that crashed after recording BASE is finished at open; a BASE no file matches is corruption", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dataDir)
        for (let s = 1; s <= 60; s += 2) yield* log.append(commitAt(0, s, 2))
      }))
      const all = files(dataDir)
      const newBase = Number(all[3]!.slice(0, 20))
      // As if `truncateBefore` wrote BASE and the process died before deleting anything.
      fs.writeFileSync(path.join(dirOf(dataDir), FileLog.BASE_FILE), JSON.stringify({ formatVersion: 1, baseSeq: newBase }))
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dataDir)
        assert.deepStrictEqual(files(dataDir), all.slice(3))
        assert.strictEqual((yield* replayAll(log, 1)).commits[0]!.firstSeq, newBase)
      }))
      // A BASE that is not the first file's first sequence: the log lost data, open refuses with a defect.
      fs.writeFileSync(path.join(dirOf(dataDir), FileLog.BASE_FILE), JSON.stringify({ formatVersion: 1, baseSeq: newBase + 1 }))
      const exit = yield* Effect.exit(Effect.scoped(openLog(dataDir)))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      assert.include(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : ""), "expected the base seq")
    }).pipe(Effect.scoped))
})
