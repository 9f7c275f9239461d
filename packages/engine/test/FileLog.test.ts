/**
 * The file log driver (`internal/fileLog.ts`): round trips, pipelining and group commit, segment rolling, replay
 * from a sequence, the append precondition, torn-tail recovery, mid-file corruption, the partition lock, write
 * failures, and kill -9 of a writer process in the middle of its commits.
 *
 * Recovered content is checked event by event against the deterministic generator in `fixtures/commits.ts`, and
 * the files are re-parsed by an independent reader of the record format below (`parseSegment`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Logger } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire, syncBuiltinESMExports } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { type Commit, lastSeq } from "../src/Commit.ts"
import { crc32c } from "../src/internal/crc32c.ts"
import * as FileLog from "../src/internal/fileLog.ts"
import { commitAt, eventAt } from "./fixtures/commits.ts"

const NODE = path.resolve(import.meta.dirname, "../../../node_modules/.bin/node")
const WRITER = path.resolve(import.meta.dirname, "fixtures/fileLogWriter.ts")

// --- helpers -------------------------------------------------------------------------------------------------------

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "chronos-filelog-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const openLog = (dataDir: string, segmentBytesMax?: number, partition = 0) =>
  Effect.flatMap(
    FileLog.make(segmentBytesMax === undefined ? { dataDir } : { dataDir, segmentBytesMax }),
    (driver) => driver.open(partition)
  )

const partitionPath = (dataDir: string, partition = 0) => path.join(dataDir, "log", `p${String(partition).padStart(3, "0")}`)
const segmentPath = (dataDir: string, firstSeq: number) => path.join(partitionPath(dataDir), FileLog.segmentFileName(firstSeq))
const segmentFiles = (dataDir: string): Array<string> =>
  fs.readdirSync(partitionPath(dataDir)).filter((name) => name.endsWith(".log")).sort()

/** Appends `counts.length` commits of the given sizes after `after`, sequentially; returns them. */
const appendAll = (log: FileLog.FilePartitionLog, after: number, counts: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const commits: Array<Commit> = []
    let next = after + 1
    for (const count of counts) {
      const commit = commitAt(0, next, count)
      yield* log.append(commit)
      commits.push(commit)
      next += count
    }
    return commits
  })

const replayAll = (log: FileLog.FilePartitionLog, fromSeq = 1) =>
  Effect.gen(function*() {
    const commits: Array<Commit> = []
    const last = yield* log.replay(fromSeq, (commit) => commits.push(commit))
    return { last, commits }
  })

/** Every commit is the generator's, and together they cover exactly `[from, to]` with no gap. */
const assertGapless = (commits: ReadonlyArray<Commit>, from: number, to: number) => {
  let expected = from
  for (const commit of commits) {
    assert.strictEqual(commit.firstSeq, expected, `commit starts at ${commit.firstSeq}, expected ${expected}`)
    assert.strictEqual(commit.partition, 0)
    assert.strictEqual(commit.timestamp, 1_700_000_000_000 + commit.firstSeq)
    for (const [i, event] of commit.events.entries()) {
      const expectedEvent = eventAt(commit.firstSeq + i)
      // Compared as JSON first (same key order on both sides): chai's deep equality is slow over 10^5 events.
      if (JSON.stringify(event) !== JSON.stringify(expectedEvent)) assert.deepStrictEqual(event, expectedEvent)
    }
    expected = lastSeq(commit) + 1
  }
  assert.strictEqual(expected - 1, to, `replay ends at ${expected - 1}, expected ${to}`)
}

/** Runs `effect` and returns what it logged at warning level, one string per log call. */
const withWarnings = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const warnings: Array<string> = []
    const logger = Logger.make((options) => {
      if (options.logLevel !== "Warn") return
      const message = options.message
      warnings.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
    })
    return effect.pipe(
      Effect.provide(Logger.layer([logger])),
      Effect.map((value) => [value, warnings] as const)
    )
  })

const defectMessage = (exit: Exit.Exit<unknown, unknown>): string => {
  if (!Exit.isFailure(exit)) return assert.fail("expected a failure, got a success")
  assert.isTrue(Cause.hasDies(exit.cause), `expected a defect, got ${Cause.pretty(exit.cause)}`)
  const defect = Cause.squash(exit.cause)
  return defect instanceof Error ? defect.message : String(defect)
}

interface ParsedRecord {
  readonly offset: number
  readonly size: number
  readonly firstSeq: number
  readonly eventCount: number
}

/** An independent reader of the record format: the valid records from the start, and where they end. */
const parseSegment = (bytes: Uint8Array): { records: Array<ParsedRecord>; validEnd: number } => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const records: Array<ParsedRecord> = []
  let offset = 0
  while (offset + 24 <= bytes.length) {
    if (view.getUint32(offset, true) !== 0x43485231) break
    const size = 24 + view.getUint32(offset + 4, true)
    if (offset + size > bytes.length) break
    const crc = crc32c(bytes, offset + 24, offset + size, crc32c(bytes, offset + 12, offset + 24))
    if (crc !== view.getUint32(offset + 8, true)) break
    const firstSeq = Number(view.getBigUint64(offset + 12, true))
    records.push({ offset, size, firstSeq, eventCount: view.getUint32(offset + 20, true) })
    offset += size
  }
  return { records, validEnd: offset }
}

/** Every segment consists of valid records only, named by its first seq, contiguous from 1; returns the last seq. */
const assertCleanFiles = (dataDir: string): number => {
  let expected = 1
  for (const name of segmentFiles(dataDir)) {
    assert.strictEqual(name, FileLog.segmentFileName(expected), `segment ${name} where ${expected} was expected`)
    const bytes = fs.readFileSync(path.join(partitionPath(dataDir), name))
    const { records, validEnd } = parseSegment(bytes)
    assert.strictEqual(validEnd, bytes.length, `${name}: ${bytes.length - validEnd} bytes after the last valid record`)
    for (const record of records) {
      assert.strictEqual(record.firstSeq, expected)
      expected += record.eventCount
    }
  }
  return expected - 1
}

const flipByte = (file: string, offset: number) => {
  const bytes = fs.readFileSync(file)
  bytes[offset] = bytes[offset]! ^ 0x20
  fs.writeFileSync(file, bytes)
}

type FdatasyncCallback = (error: NodeJS.ErrnoException | null) => void

/**
 * Replaces `fs.fdatasync` (the driver's, through the live builtin exports) for the duration of `effect`:
 * `fake` receives the fd and the real callback.
 */
const withFdatasync = <A, E, R>(
  fake: (fd: number, callback: FdatasyncCallback, real: typeof fs.fdatasync) => void,
  effect: Effect.Effect<A, E, R>
) =>
  Effect.suspend(() => {
    const nodeFs = createRequire(import.meta.url)("node:fs") as { fdatasync: typeof fs.fdatasync }
    const real = nodeFs.fdatasync
    nodeFs.fdatasync = ((fd: number, callback: FdatasyncCallback) => fake(fd, callback, real)) as typeof fs.fdatasync
    syncBuiltinESMExports()
    return Effect.ensuring(effect, Effect.sync(() => {
      nodeFs.fdatasync = real
      syncBuiltinESMExports()
    }))
  })

// --- tests ---------------------------------------------------------------------------------------------------------

describe("FileLog", () => {
  it.live("round trip: what is appended is replayed, identical", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const log = yield* openLog(dir)
      assert.deepStrictEqual(yield* replayAll(log), { last: 0, commits: [] })
      const commits = yield* appendAll(log, 0, [1, 5, 3])
      const replayed = yield* replayAll(log)
      assert.strictEqual(replayed.last, 9)
      assert.deepStrictEqual(replayed.commits, commits)
      assert.deepStrictEqual(segmentFiles(dir), [FileLog.segmentFileName(1)])
      assert.strictEqual(assertCleanFiles(dir), 9)
    }))

  it.live("pipelined appends resolve in call order and share fsyncs (group commit)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const log = yield* openLog(dir)
      const resolved: Array<number> = []
      const fibers: Array<Fiber.Fiber<void, unknown>> = []
      for (let i = 0; i < 64; i++) {
        const commit = commitAt(0, 1 + i * 10, 10)
        fibers.push(yield* Effect.forkChild(Effect.tap(log.append(commit), () => Effect.sync(() => resolved.push(i)))))
      }
      for (const fiber of fibers) yield* Fiber.join(fiber)
      assert.deepStrictEqual(resolved, Array.from({ length: 64 }, (_, i) => i))
      const stats = log.stats()
      assert.strictEqual(stats.appends, 64)
      assert.isBelow(stats.fsyncs, 32, `one fsync must cover many appends, got ${stats.fsyncs} for 64`)
      const replayed = yield* replayAll(log)
      assert.strictEqual(replayed.last, 640)
      assertGapless(replayed.commits, 1, 640)
    }))

  it.live("reopen recovers the last seq, replays everything, and continues at the next seq", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(Effect.flatMap(openLog(dir), (log) => appendAll(log, 0, Array.from({ length: 20 }, (_, i) => 1 + (i % 4)))))
      const [replayed, warnings] = yield* withWarnings(Effect.scoped(Effect.flatMap(openLog(dir), (log) =>
        Effect.gen(function*() {
          const replayed = yield* replayAll(log)
          yield* appendAll(log, replayed.last, [7])
          return replayed
        }))))
      assert.deepStrictEqual(warnings, [])
      assert.strictEqual(replayed.last, 50)
      assertGapless(replayed.commits, 1, 50)
      const again = yield* Effect.scoped(Effect.flatMap(openLog(dir), (log) => replayAll(log)))
      assertGapless(again.commits, 1, 57)
      assert.isFalse(fs.existsSync(path.join(partitionPath(dir), "LOCK")), "the lock is released on close")
    }))

  it.live("closing the scope waits for appends in flight", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fibers = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dir)
        const fibers: Array<Fiber.Fiber<void, unknown>> = []
        // startImmediately: each append is issued (and accepted) before the scope starts closing.
        for (let i = 0; i < 16; i++) {
          fibers.push(yield* Effect.forkDetach(log.append(commitAt(0, 1 + i * 3, 3)), { startImmediately: true }))
        }
        assert.strictEqual(log.stats().appends, 16)
        return fibers
      }))
      for (const fiber of fibers) yield* Fiber.join(fiber)
      const replayed = yield* Effect.scoped(Effect.flatMap(openLog(dir), (log) => replayAll(log)))
      assertGapless(replayed.commits, 1, 48)
    }))

  it.live("rolls segments past segmentBytesMax and replays across them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const counts = Array.from({ length: 40 }, (_, i) => 1 + (i % 6))
      const commits = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dir, 2_000)
        const commits = yield* appendAll(log, 0, counts)
        assert.isAbove(log.stats().segments, 5)
        const replayed = yield* replayAll(log)
        assert.deepStrictEqual(replayed.commits, commits)
        return commits
      }))
      const total = lastSeq(commits[commits.length - 1]!)
      // Each segment holds whole records; every one but the last reached the limit with its last record.
      const files = segmentFiles(dir)
      assert.isAbove(files.length, 5)
      for (const name of files.slice(0, -1)) {
        const bytes = fs.readFileSync(path.join(partitionPath(dir), name))
        const { records } = parseSegment(bytes)
        const lastRecord = records[records.length - 1]!
        assert.isAtLeast(bytes.length, 2_000)
        assert.isBelow(lastRecord.offset, 2_000, "a record starts a new segment once the limit is reached")
      }
      assert.strictEqual(assertCleanFiles(dir), total)
      // Reopen (with another limit: it only decides when the next roll happens) and replay across segments.
      const replayed = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dir, 5_000)
        yield* appendAll(log, total, [3, 3])
        return yield* replayAll(log)
      }))
      assertGapless(replayed.commits, 1, total + 6)
    }))

  it.live("replay(fromSeq) starts at the commit holding fromSeq, across segments", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const log = yield* openLog(dir, 1_500)
      yield* appendAll(log, 0, Array.from({ length: 30 }, () => 10)) // commit k holds [10k+1, 10k+10]
      assert.isAbove(log.stats().segments, 3)
      for (const [fromSeq, firstCommit] of [[1, 1], [0, 1], [55, 51], [60, 51], [61, 61], [300, 291]] as const) {
        const replayed = yield* replayAll(log, fromSeq)
        assert.strictEqual(replayed.last, 300)
        assert.strictEqual(replayed.commits[0]!.firstSeq, firstCommit, `fromSeq ${fromSeq}`)
        assertGapless(replayed.commits, firstCommit, 300)
      }
      assert.deepStrictEqual(yield* replayAll(log, 301), { last: 300, commits: [] })
    }))

  it.live("an append out of sequence is a defect", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const log = yield* openLog(dir)
      assert.include(defectMessage(yield* Effect.exit(log.append(commitAt(0, 2, 1)))), "expected a non-empty commit at seq 1")
      yield* log.append(commitAt(0, 1, 5))
      assert.include(defectMessage(yield* Effect.exit(log.append(commitAt(0, 5, 1)))), "at seq 6")
      assert.include(defectMessage(yield* Effect.exit(log.append(commitAt(0, 7, 1)))), "at seq 6")
      assert.include(defectMessage(yield* Effect.exit(log.append(commitAt(0, 6, 0)))), "non-empty")
      assert.include(defectMessage(yield* Effect.exit(log.append(commitAt(3, 6, 1)))), "for partition 3")
      yield* log.append(commitAt(0, 6, 1))
      assertGapless((yield* replayAll(log)).commits, 1, 6)
    }))

  describe("torn tail", () => {
    // Five commits of 3 events; the damage hits the last record (seq 13..15), so recovery ends at seq 12.
    const tornTailCase = (damage: (file: string, last: ParsedRecord) => void) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.scoped(Effect.flatMap(openLog(dir), (log) => appendAll(log, 0, [3, 3, 3, 3, 3])))
        const file = segmentPath(dir, 1)
        const { records } = parseSegment(fs.readFileSync(file))
        const last = records[4]!
        damage(file, last)
        const damagedSize = fs.statSync(file).size
        const [recovered, warnings] = yield* withWarnings(Effect.scoped(Effect.gen(function*() {
          const log = yield* openLog(dir)
          const before = yield* replayAll(log)
          assert.strictEqual(fs.statSync(file).size, last.offset, "the torn tail is cut off at open")
          yield* log.append(commitAt(0, before.last + 1, 4))
          return before
        })))
        assert.strictEqual(recovered.last, 12)
        assertGapless(recovered.commits, 1, 12)
        assert.strictEqual(warnings.length, 1, `warnings: ${JSON.stringify(warnings)}`)
        assert.include(warnings[0]!, file)
        assert.include(warnings[0]!, `at byte ${last.offset}`)
        assert.include(warnings[0]!, `dropped ${damagedSize - last.offset} bytes`)
        const after = yield* Effect.scoped(Effect.flatMap(openLog(dir), (log) => replayAll(log)))
        assertGapless(after.commits, 1, 16)
        assert.strictEqual(assertCleanFiles(dir), 16)
      })

    it.live("cut in the middle of the last record's header", () =>
      tornTailCase((file, last) => fs.truncateSync(file, last.offset + 10)))

    it.live("cut in the middle of the last record's body", () =>
      tornTailCase((file, last) => fs.truncateSync(file, last.offset + 24 + Math.floor((last.size - 24) / 2))))

    it.live("a flipped byte in the last record's body", () =>
      tornTailCase((file, last) => flipByte(file, last.offset + 24 + 17)))

    it.live("a flipped byte in the last record's firstSeq (covered by the checksum)", () =>
      tornTailCase((file, last) => flipByte(file, last.offset + 12)))

    it.live("zeros after a cut (a file extended but not written before the crash)", () =>
      tornTailCase((file, last) => {
        fs.truncateSync(file, last.offset + 30)
        fs.appendFileSync(file, Buffer.alloc(4096))
      }))

    it.live("in the last segment of several: sealed segments are kept", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.scoped(Effect.flatMap(openLog(dir, 1_000), (log) => appendAll(log, 0, Array.from({ length: 12 }, () => 3))))
        const files = segmentFiles(dir)
        assert.isAbove(files.length, 2)
        const file = path.join(partitionPath(dir), files[files.length - 1]!)
        const { records } = parseSegment(fs.readFileSync(file))
        const last = records[records.length - 1]!
        fs.truncateSync(file, last.offset + 5)
        const [replayed, warnings] = yield* withWarnings(Effect.scoped(Effect.flatMap(openLog(dir, 1_000), (log) => replayAll(log))))
        assert.strictEqual(replayed.last, last.firstSeq - 1)
        assertGapless(replayed.commits, 1, last.firstSeq - 1)
        assert.strictEqual(warnings.length, 1)
        assert.include(warnings[0]!, `${file} at byte ${last.offset}`)
      }))
  })

  describe("corruption that is not a torn tail fails open, naming the file and the byte", () => {
    const corruptCase = (
      segmentBytesMax: number,
      damage: (dir: string) => { file: string; offset: number }
    ) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.scoped(Effect.flatMap(openLog(dir, segmentBytesMax), (log) => appendAll(log, 0, Array.from({ length: 12 }, () => 3))))
        const { file, offset } = damage(dir)
        const sizesBefore = segmentFiles(dir).map((name) => fs.statSync(path.join(partitionPath(dir), name)).size)
        const message = defectMessage(yield* Effect.exit(Effect.scoped(openLog(dir, segmentBytesMax))))
        assert.include(message, `${file} at byte ${offset}`)
        const sizesAfter = segmentFiles(dir).map((name) => fs.statSync(path.join(partitionPath(dir), name)).size)
        assert.deepStrictEqual(sizesAfter, sizesBefore, "nothing is truncated")
        assert.isFalse(fs.existsSync(path.join(partitionPath(dir), "LOCK")), "the lock is released when open fails")
        return message
      })

    it.live("a flipped byte in an early record with valid records after it", () =>
      Effect.gen(function*() {
        const message = yield* corruptCase(1_000_000, (dir) => {
          const file = segmentPath(dir, 1)
          const record = parseSegment(fs.readFileSync(file)).records[1]!
          flipByte(file, record.offset + 24 + 40)
          return { file, offset: record.offset }
        })
        assert.include(message, "checksum mismatch")
        assert.include(message, "not a torn tail")
      }))

    it.live("a destroyed magic in the middle of the file", () =>
      corruptCase(1_000_000, (dir) => {
        const file = segmentPath(dir, 1)
        const record = parseSegment(fs.readFileSync(file)).records[6]!
        flipByte(file, record.offset)
        return { file, offset: record.offset }
      }))

    it.live("a sealed segment cut short", () =>
      corruptCase(1_000, (dir) => {
        const file = path.join(partitionPath(dir), segmentFiles(dir)[1]!)
        const { records } = parseSegment(fs.readFileSync(file))
        const last = records[records.length - 1]!
        fs.truncateSync(file, last.offset + 30)
        return { file, offset: last.offset }
      }))

    it.live("a missing segment (a gap between segments)", () =>
      corruptCase(1_000, (dir) => {
        const files = segmentFiles(dir)
        assert.isAbove(files.length, 3)
        fs.rmSync(path.join(partitionPath(dir), files[1]!))
        return { file: path.join(partitionPath(dir), files[2]!), offset: 0 }
      }))
  })

  describe("lock", () => {
    it.live("a second open of an open partition fails with LogFenced; other partitions and a later open work", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.scoped(Effect.gen(function*() {
          const log = yield* openLog(dir)
          yield* log.append(commitAt(0, 1, 2))
          const error = yield* Effect.flip(Effect.scoped(openLog(dir)))
          assert.strictEqual(error._tag, "LogFenced")
          assert.include(error.message, `live process ${process.pid}`)
          yield* Effect.scoped(Effect.flatMap(openLog(dir, undefined, 1), (other) => other.append(commitAt(1, 1, 1))))
          yield* log.append(commitAt(0, 3, 2)) // the failed open did not disturb the owner
        }))
        const replayed = yield* Effect.scoped(Effect.flatMap(openLog(dir), (log) => replayAll(log)))
        assertGapless(replayed.commits, 1, 4)
      }))

    it.live("a lock held by another live process is refused; a dead process's lock is taken over", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        fs.mkdirSync(partitionPath(dir), { recursive: true })
        const lockFile = path.join(partitionPath(dir), "LOCK")
        fs.writeFileSync(lockFile, `${process.ppid} someone-else\n`)
        const error = yield* Effect.flip(Effect.scoped(openLog(dir)))
        assert.strictEqual(error._tag, "LogFenced")
        // 4194305 is above Linux's PID_MAX_LIMIT (2^22): no process can have it.
        fs.writeFileSync(lockFile, "4194305 dead\n")
        const [, warnings] = yield* withWarnings(Effect.scoped(Effect.gen(function*() {
          const log = yield* openLog(dir)
          assert.match(fs.readFileSync(lockFile, "utf8"), new RegExp(`^${process.pid} `))
          yield* log.append(commitAt(0, 1, 1))
        })))
        assert.strictEqual(warnings.length, 1)
        assert.include(warnings[0]!, "took over the stale lock of dead process 4194305")
        assert.isFalse(fs.existsSync(lockFile))
        assert.deepStrictEqual(fs.readdirSync(partitionPath(dir)), [FileLog.segmentFileName(1)], "no lock debris")
      }))
  })

  it.live("a failed write fails that append and every later one; a reopen recovers", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dir, 100)
        yield* log.append(commitAt(0, 1, 2)) // fills the first segment: the next append rolls
        fs.writeFileSync(segmentPath(dir, 3), "") // the roll's exclusive create now fails
        const first = yield* Effect.flip(log.append(commitAt(0, 3, 2)))
        assert.strictEqual(first._tag, "LogUnavailable")
        assert.include(first.message, FileLog.segmentFileName(3))
        const second = yield* Effect.flip(log.append(commitAt(0, 5, 1)))
        assert.strictEqual(second._tag, "LogUnavailable")
      }))
      // The empty segment left behind is named by the right seq: recovery accepts it and writes into it.
      const replayed = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* openLog(dir, 100)
        assert.strictEqual((yield* replayAll(log)).last, 2)
        yield* log.append(commitAt(0, 3, 2))
        return yield* replayAll(log)
      }))
      assertGapless(replayed.commits, 1, 4)
      assert.strictEqual(assertCleanFiles(dir), 4)
    }))

  it.live("an append resolves only after an fdatasync that started after its write", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const log = yield* openLog(dir)
      const held: Array<() => void> = []
      yield* withFdatasync(
        (fd, callback, real) => held.push(() => real(fd, callback)),
        Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(log.append(commitAt(0, 1, 3)), { startImmediately: true })
          yield* Effect.sleep(100)
          assert.strictEqual(held.length, 1, "written, and its fdatasync started")
          assert.isUndefined(fiber.pollUnsafe(), "not acknowledged while its fdatasync runs")
          assert.deepStrictEqual(yield* replayAll(log), { last: 0, commits: [] }, "replay serves only synced bytes")
          held.shift()!()
          yield* Fiber.join(fiber)
        })
      )
      assertGapless((yield* replayAll(log)).commits, 1, 3)
    }))

  it.live("a failed fdatasync is a defect for the appends it covered and every later one, and bars a reopen", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const log = yield* openLog(dir)
      yield* log.append(commitAt(0, 1, 1))
      // Every fdatasync now reports EIO, as after a writeback error; the driver must not retry it.
      let calls = 0
      const exits = yield* withFdatasync(
        (_fd, callback) => {
          calls++
          const error = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO", syscall: "fdatasync" })
          process.nextTick(callback, error)
        },
        Effect.gen(function*() {
          const fibers: Array<Fiber.Fiber<void, unknown>> = []
          for (let i = 0; i < 5; i++) {
            fibers.push(yield* Effect.forkChild(log.append(commitAt(0, 2 + i, 1)), { startImmediately: true }))
          }
          const exits = yield* Effect.forEach(fibers, (fiber) => Effect.exit(Fiber.join(fiber)))
          exits.push(yield* Effect.exit(log.append(commitAt(0, 7, 1))))
          return exits
        })
      )
      assert.strictEqual(calls, 1, "an fdatasync is never retried")
      assert.strictEqual(exits.length, 6)
      for (const exit of exits) assert.include(defectMessage(exit), "fdatasync")
      assert.include(defectMessage(yield* Effect.exit(Effect.scoped(openLog(dir)))), "refusing to reopen")
      // What was acknowledged before the failure is still served.
      assertGapless((yield* replayAll(log)).commits, 1, 1)
    }))

  describe("kill -9 of a writer in the middle of its commits", () => {
    const EVENTS_PER_COMMIT = 400
    const IN_FLIGHT = 8
    const SEGMENT_BYTES_MAX = 1024 * 1024

    /** Runs the writer until `killAfterMs` after its first acknowledgement, then SIGKILLs it. */
    const runAndKill = (dataDir: string, killAfterMs: number) =>
      Effect.promise(() =>
        new Promise<{ acked: Array<number>; signal: string | null; stderr: string }>((resolve) => {
          const child = spawn(
            NODE,
            [WRITER, dataDir, String(SEGMENT_BYTES_MAX), String(EVENTS_PER_COMMIT), String(IN_FLIGHT)],
            { stdio: ["ignore", "pipe", "pipe"] }
          )
          let stdout = ""
          let stderr = ""
          let killTimer: NodeJS.Timeout | undefined
          const guard = setTimeout(() => child.kill("SIGKILL"), 30_000)
          child.stdout.on("data", (chunk: Buffer) => {
            stdout += chunk.toString("utf8")
            killTimer ??= setTimeout(() => child.kill("SIGKILL"), killAfterMs)
          })
          child.stderr.on("data", (chunk: Buffer) => {
            stderr += chunk.toString("utf8")
          })
          // "close": the process is reaped (its pid is dead, so its LOCK is stale) and stdout is drained.
          child.on("close", (_code, signal) => {
            clearTimeout(guard)
            if (killTimer !== undefined) clearTimeout(killTimer)
            // Only complete lines: a line is written with one write(2), but be strict anyway.
            const acked = stdout.split("\n").slice(0, -1).map(Number)
            resolve({ acked, signal, stderr })
          })
        })
      )

    const killRound = (dataDir: string, killAfterMs: number, ackedBefore: number) =>
      Effect.gen(function*() {
        const run = yield* runAndKill(dataDir, killAfterMs)
        assert.strictEqual(run.signal, "SIGKILL", `the writer must die by the kill, not on its own: ${run.stderr}`)
        assert.isAbove(run.acked.length, 0)
        // Acks are in order, one per commit, continuing where the previous round's log ended.
        run.acked.forEach((seq, i) => assert.strictEqual(seq, ackedBefore + (i + 1) * EVENTS_PER_COMMIT))
        const maxAcked = run.acked[run.acked.length - 1]!

        const [replayed, warnings] = yield* withWarnings(Effect.scoped(Effect.flatMap(openLog(dataDir, SEGMENT_BYTES_MAX), (log) => replayAll(log))))
        // Every acknowledged seq is there, gapless from 1, each event exactly as written.
        assert.isAtLeast(replayed.last, maxAcked)
        assertGapless(replayed.commits, 1, replayed.last)
        // Beyond the last printed ack there can only be the appends that were in flight.
        assert.isAtMost(replayed.last, maxAcked + IN_FLIGHT * EVENTS_PER_COMMIT)
        // Nothing beyond the (truncated) torn tail: every byte of every segment is a valid record.
        assert.strictEqual(assertCleanFiles(dataDir), replayed.last)
        // The writer died holding the lock: the reopen takes it over (and says so).
        assert.isTrue(warnings.some((w) => w.includes("took over the stale lock of dead process")))
        const torn = warnings.filter((w) => w.includes("torn tail"))
        for (const warning of torn) assert.match(warning, /torn tail truncated: .* at byte \d+, dropped \d+ bytes/)
        return { last: replayed.last, acked: run.acked.length, torn: torn.length }
      })

    for (const killAfterMs of [300, 550, 800]) {
      it.live(`killed ${killAfterMs} ms after its first ack, twice (the second run resumes the recovered log)`, () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const first = yield* killRound(dir, killAfterMs, 0)
          const second = yield* killRound(dir, Math.round(killAfterMs / 2), first.last)
          assert.isAbove(second.last, first.last)
          console.log(`kill -9 after ${killAfterMs} ms: ${JSON.stringify({ first, second, segments: segmentFiles(dir).length })}`)
        }), 60_000)
    }
  })
})

describe("store manifest", () => {
  it("records the partition count when a store is created and refuses another count later", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-manifest-"))
    await Effect.runPromise(FileLog.make({ dataDir: dir, partitions: 8 }))
    await Effect.runPromise(FileLog.make({ dataDir: dir, partitions: 8 }))
    const exit = await Effect.runPromiseExit(FileLog.make({ dataDir: dir, partitions: 32 }))
    assert.strictEqual(exit._tag, "Failure")
    assert.include(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : ""), "holds a store of 8 partitions, but 32 were configured")
    fs.rmSync(dir, { recursive: true, force: true })
  })
})
