/**
 * The file log driver of `EventLog`: the embedded default durable log. It owns, per partition, a directory of
 * append-only segment files, the single-writer lock of that directory, crash recovery (torn-tail truncation) and the
 * group-commit write path (write, then one fdatasync for every write completed before it, then acknowledge).
 *
 * Layout (like Kafka / SierraDB):
 *
 *     <dataDir>/log/p<NNN>/LOCK                         pid + nonce of the process that owns the partition
 *     <dataDir>/log/p<NNN>/<firstSeq, 20 digits>.log    segment files, named by the first sequence they hold
 *     <dataDir>/forks/<forkId>/log/p<NNN>/…            the same, for the partitions of a fork (a log namespace)
 *
 * `NNN` is the partition number zero-padded to 3 digits. A segment is rolled (the next record goes to a new file)
 * once it holds `segmentBytesMax` bytes or more, so a segment always holds at least one record and a record is never
 * split. Segment names are contiguous: each one is the previous segment's last sequence + 1, and the first is the
 * log's base sequence: 1, or — once the cold tier sealed a prefix and the log was truncated below it
 * (`truncateBefore`) — the value recorded in `<dataDir>/log/p<NNN>/BASE` (`{"formatVersion":1,"baseSeq":N}`).
 * Truncation writes BASE durably first and deletes whole files after, so a crash in between leaves files entirely
 * below the base, which the next `open` finishes deleting.
 *
 * Record format, little-endian, back to back with no padding:
 *
 *     offset  size  field
 *          0     4  magic       0x43485231 ("CHR1" read as a u32; the bytes on disk are 31 52 48 43)
 *          4     4  bodyLength  bytes of the body
 *          8     4  crc32c      CRC32C over bytes [12, 24) of this header followed by the body
 *         12     8  firstSeq    u64, sequence of the commit's first event
 *         20     4  eventCount  u32, events in the commit (>= 1)
 *         24     n  body        `Commit.encodeBody` (UTF-8 JSON)
 *
 * The checksum covers firstSeq and eventCount, not only the body, so a flipped header bit cannot silently move a
 * commit to other sequences. bodyLength is covered indirectly: a wrong length makes the CRC run over the wrong bytes.
 *
 * Durability rules that the recovery relies on:
 *  - an append is acknowledged only after its bytes are written and fdatasync'd, so every acknowledged commit is
 *    on disk; only unacknowledged bytes at the end of the last segment can be torn by a crash;
 *  - a new segment is created (and its directory entry fsync'd) only after every byte of the previous segment is
 *    fsync'd, and nothing is written to it before that. Hence every segment but the last is complete: damage there is
 *    corruption, never a torn write;
 *  - an fdatasync failure is never retried (fsyncgate: Linux may drop the dirty pages and report success on the next
 *    fsync); the handle is poisoned, see `SegmentWriter.onSyncDone`.
 *
 * Recovery at `open`: sealed segments are walked header by header (magic, bounds, sequence continuity, exact end of
 * file, next segment name), without checksums or decoding, because a sealed segment was fully fsync'd before its
 * successor existed and reading gigabytes at every activation would be slow; `replay` verifies the checksum and the
 * decoded body of every record it serves. The last segment is scanned fully (checksums included) because that is
 * where a crash tears. The first invalid record there is a torn tail — truncated and logged — if no valid record
 * follows it anywhere in the file; otherwise open fails with a defect naming the file and byte offset (a later issue
 * turns it into a typed CorruptData error). Finally the last record's body is decoded and checked against its header.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import * as Commit from "../Commit.ts"
import * as DurableFile from "../DurableFile.ts"
import { type EventLogShape, isNamespace, type LogError, LogFenced, LogUnavailable, type PartitionLog } from "../EventLog.ts"
import { crc32c } from "./crc32c.ts"

// --- format ------------------------------------------------------------------------------------------------------

export const MAGIC = 0x43485231
export const HEADER_BYTES = 24
export const SEGMENT_BYTES_MAX_DEFAULT = 64 * 1_048_576

/** Bytes read at once by replay and the recovery scan: large enough that syscalls do not matter. */
const READ_CHUNK_BYTES = 4 * 1_048_576
/** Read size of the header-only walk of sealed segments: it needs 24 bytes per record, not the bodies. */
const HEADER_WALK_CHUNK_BYTES = 64 * 1024
/** Bounds of one writev: libuv splits beyond IOV_MAX itself, these only keep one batch's latency reasonable. */
const WRITE_BATCH_RECORDS = 512
const WRITE_BATCH_BYTES = 16 * 1_048_576
const TWO_POW_32 = 0x1_0000_0000
const SEGMENT_FILE = /^(\d{20})\.log$/
/** The base sequence record of a truncated log (see the module doc). */
export const BASE_FILE = "BASE"
const MAGIC_BYTES = Buffer.from([0x31, 0x52, 0x48, 0x43])

export const partitionDir = (dataDir: string, partition: number): string =>
  path.join(dataDir, "log", `p${String(partition).padStart(3, "0")}`)

export const segmentFileName = (firstSeq: number): string => `${String(firstSeq).padStart(20, "0")}.log`

/** The 24-byte record header for `body`; the record on disk is the header followed by the body. */
export const encodeRecordHeader = (firstSeq: number, eventCount: number, body: Uint8Array): Buffer => {
  const header = Buffer.allocUnsafe(HEADER_BYTES)
  header.writeUInt32LE(MAGIC, 0)
  header.writeUInt32LE(body.length, 4)
  // `>>> 0` is ToUint32, i.e. the low 32 bits of any safe integer.
  header.writeUInt32LE(firstSeq >>> 0, 12)
  header.writeUInt32LE(Math.floor(firstSeq / TWO_POW_32), 16)
  header.writeUInt32LE(eventCount, 20)
  header.writeUInt32LE(crc32c(body, 0, body.length, crc32c(header, 12, 24)), 8)
  return header
}

/**
 * The log on disk is inconsistent in a way a crash cannot explain. Raised as a defect for now; `file` and `offset`
 * are kept as fields so that the typed CorruptData error can be built from it.
 */
export class CorruptLogError extends Error {
  readonly file: string
  readonly offset: number
  constructor(file: string, offset: number, reason: string) {
    super(`file log corrupt: ${file} at byte ${offset}: ${reason}`)
    this.name = "CorruptLogError"
    this.file = file
    this.offset = offset
  }
}

// --- public shape --------------------------------------------------------------------------------------------------

export interface Options {
  readonly dataDir: string
  /** A segment is rolled once it holds this many bytes (default 64 MiB, `ChronosConfig.logSegmentBytesMax`). */
  readonly segmentBytesMax?: number
  /**
   * The store's partition count. Recorded in `<dataDir>/log/STORE.json` when the store is created and checked on
   * every later open: the count decides where every stream lives, so opening a store with another count would
   * silently route streams to partitions that do not hold them.
   */
  readonly partitions?: number
}

/** Checks (or, for a new store, records) the partition count of the store in `dataDir`. */
const checkStoreManifest = (dataDir: string, partitions: number): void => {
  const dir = path.join(dataDir, "log")
  const file = path.join(dir, "STORE.json")
  let recorded: { partitions?: unknown } | undefined
  try {
    recorded = JSON.parse(fs.readFileSync(file, "utf8")) as { partitions?: unknown }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error
  }
  if (recorded !== undefined) {
    if (recorded.partitions !== partitions) {
      throw new Error(
        `file log: ${dataDir} holds a store of ${String(recorded.partitions)} partitions, but ${partitions} were ` +
          `configured; the partition count is fixed when a store is created (set partitions to ${String(recorded.partitions)})`
      )
    }
    return
  }
  DurableFile.writeAtomicSync(file, JSON.stringify({ formatVersion: 1, partitions }) + "\n")
}

/** Counters of one open handle, for status output and benchmarks. */
export interface FileLogStats {
  readonly appends: number
  readonly bytesWritten: number
  readonly writes: number
  readonly fsyncs: number
  readonly segments: number
}

export interface FilePartitionLog extends PartitionLog {
  readonly stats: () => FileLogStats
}

export interface FileLogShape extends EventLogShape {
  readonly open: (partition: number, namespace?: string) => Effect.Effect<FilePartitionLog, LogError, Scope.Scope>
}

/** Where the logs of a namespace (a fork) live: `<dataDir>/forks/<namespace>/`, holding its own `log/p<NNN>/`. */
export const namespaceDir = (dataDir: string, namespace: string): string => path.join(dataDir, "forks", namespace)

/**
 * Deletes a namespace's directory tree. Precondition (asserted): none of its partitions is open in this process — a
 * LOCK of ours would mean a writer still appends to files we are about to delete.
 */
const dropNamespace = (dataDir: string, namespace: string): Effect.Effect<void, LogError> =>
  Effect.suspend(() => {
    if (!isNamespace(namespace)) return Effect.die(new Error(`file log: invalid namespace ${JSON.stringify(namespace)}`))
    const root = namespaceDir(dataDir, namespace)
    const logDir = path.join(root, "log")
    let partitions: Array<string> = []
    try {
      partitions = fs.readdirSync(logDir)
    } catch (error) {
      if (errorCode(error) !== "ENOENT") return Effect.fail(unavailable(-1, `cannot list ${logDir}`, error))
    }
    for (const name of partitions) {
      const holder = readLock(path.join(logDir, name, "LOCK"))
      if (holder !== undefined && Number.parseInt(holder, 10) === process.pid) {
        return Effect.die(new Error(`file log: drop of ${root} while ${name} is open in this process`))
      }
    }
    return Effect.tryPromise({
      try: async () => {
        await fsp.rm(root, { recursive: true, force: true })
        // The removal is durable once the parent directory is (it may not exist: nothing was ever written).
        try {
          fsyncDirSync(path.dirname(root))
        } catch (error) {
          if (errorCode(error) !== "ENOENT") throw error
        }
      },
      catch: (error) => unavailable(-1, `cannot delete ${root}`, error)
    })
  })

/**
 * Partition directories whose fdatasync failed in this process. Reopening one would read back, through the page
 * cache, bytes the kernel may already have failed to persist and serve them as committed, so `open` refuses them.
 * (The page cache outlives the process too: an operator should check the disk before the node is restarted.)
 */
const fsyncFailedDirs = new Set<string>()

export const make = (options: Options): Effect.Effect<FileLogShape> =>
  Effect.sync(() => {
    const segmentBytesMax = options.segmentBytesMax ?? SEGMENT_BYTES_MAX_DEFAULT
    if (!Number.isSafeInteger(segmentBytesMax) || segmentBytesMax < 1) {
      throw new Error(`file log: segmentBytesMax must be a positive integer, got ${segmentBytesMax}`)
    }
    // Resolved once so that a later change of the working directory cannot move the log.
    const dataDir = path.resolve(options.dataDir)
    if (options.partitions !== undefined) checkStoreManifest(dataDir, options.partitions)
    return {
      driver: "file",
      open: (partition: number, namespace?: string) =>
        namespace === undefined
          ? open(dataDir, segmentBytesMax, partition)
          : isNamespace(namespace)
          ? open(namespaceDir(dataDir, namespace), segmentBytesMax, partition)
          : Effect.die(new Error(`file log: invalid namespace ${JSON.stringify(namespace)}`)),
      drop: (namespace: string) => dropNamespace(dataDir, namespace)
    } satisfies FileLogShape
  })

// --- open ----------------------------------------------------------------------------------------------------------

const open = (
  dataDir: string,
  segmentBytesMax: number,
  partition: number
): Effect.Effect<FilePartitionLog, LogError, Scope.Scope> =>
  Effect.gen(function*() {
    if (!Number.isSafeInteger(partition) || partition < 0) {
      return yield* Effect.die(new Error(`file log: invalid partition ${partition}`))
    }
    const dir = partitionDir(dataDir, partition)
    if (fsyncFailedDirs.has(dir)) {
      return yield* Effect.die(
        new Error(
          `file log: an fdatasync in ${dir} failed earlier in this process; its durable content is unknown, ` +
            `refusing to reopen (restart the process and check the disk)`
        )
      )
    }

    const lock = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          ensureDir(dir)
          return acquireLock(dir, partition)
        },
        catch: (error) => error instanceof LogFenced ? error : unavailable(partition, `cannot lock ${dir}`, error)
      }),
      (lock) => Effect.sync(() => releaseLock(lock))
    )
    if (lock.tookOverFrom !== undefined) {
      yield* Effect.logWarning(`file log: took over the stale lock of dead process ${lock.tookOverFrom}`).pipe(
        Effect.annotateLogs({ partition, file: lock.path })
      )
    }

    // Uninterruptible: an interrupted open releases the lock, and a recovery still truncating in the background
    // would then race the next owner's.
    const recovered = yield* Effect.uninterruptible(
      fromPromise(partition, `recovery of ${dir}`, () => recover(dir, partition))
    )
    for (const torn of recovered.truncated) {
      yield* Effect.logWarning(
        `file log: torn tail truncated: ${torn.file} at byte ${torn.offset}, dropped ${torn.droppedBytes} bytes ` +
          `(${torn.reason}); only unacknowledged writes can be torn`
      ).pipe(
        Effect.annotateLogs({ partition, file: torn.file, offset: torn.offset, droppedBytes: torn.droppedBytes })
      )
    }

    const last = recovered.segments[recovered.segments.length - 1]!
    const writer = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          new SegmentWriter(
            dir,
            partition,
            segmentBytesMax,
            recovered.segments,
            fs.openSync(last.path, "r+"),
            recovered.tailBytes,
            recovered.lastSeq
          ),
        catch: (error) => unavailable(partition, `cannot open ${last.path} for writing`, error)
      }),
      (writer) => writer.close()
    )

    // Advanced at call time, in-flight appends included: the contract's precondition (see EventLog.ts).
    let expectedNext = recovered.lastSeq + 1

    // The precondition is checked when the effect runs, so pipelined callers must run their appends in call order
    // (one fiber, or forks started in order). Interrupting a caller only stops its wait: an accepted record is
    // written and synced regardless (a write cannot be taken back), and later appends still follow it.
    const append = (commit: Commit.Commit): Effect.Effect<void, LogError> =>
      Effect.callback<void, LogError>((resume) => {
        const count = commit.events.length
        if (commit.firstSeq !== expectedNext || count === 0 || commit.partition !== partition) {
          resume(Effect.die(
            new Error(
              `EventLog precondition: partition ${partition} append of ${count} events at seq ${commit.firstSeq} ` +
                `for partition ${commit.partition}, expected a non-empty commit at seq ${expectedNext}`
            )
          ))
          return
        }
        let body: Uint8Array
        try {
          body = Commit.encodeBody(commit)
        } catch (error) {
          resume(Effect.die(error))
          return
        }
        expectedNext = commit.firstSeq + count
        writer.append(encodeRecordHeader(commit.firstSeq, count, body), body, expectedNext - 1, resume)
      })

    const replay = (fromSeq: number, onCommit: (commit: Commit.Commit) => void): Effect.Effect<number, LogError> =>
      fromPromise(partition, `replay of ${dir}`, (signal) => replayFrom(writer, fromSeq, onCommit, signal))

    // Serialized: two truncations racing over the same file list would delete by stale indexes.
    let truncation: Promise<void> = Promise.resolve()
    const truncateBefore = (seq: number): Effect.Effect<void, LogError> =>
      fromPromise(partition, `truncation of ${dir}`, () => (truncation = truncation.then(() => truncate(writer, seq))))

    return { partition, append, replay, truncateBefore, stats: () => writer.stats() } satisfies FilePartitionLog
  })

/**
 * Runs a promise-returning function at the boundary: I/O errors (those carrying a `syscall`) become
 * `LogUnavailable` (the disk or the file system is at fault, an operator can act, a retry may work); corruption and
 * anything else (a bug, an exception thrown by a replay callback) are defects.
 */
const fromPromise = <A>(
  partition: number,
  what: string,
  run: (signal: AbortSignal) => Promise<A>
): Effect.Effect<A, LogUnavailable> =>
  Effect.callback<A, LogUnavailable>((resume, signal) => {
    run(signal).then(
      (value) => resume(Effect.succeed(value)),
      (error) => resume(isSystemError(error) ? Effect.fail(unavailable(partition, what, error)) : Effect.die(error))
    )
  })

const isSystemError = (error: unknown): error is NodeJS.ErrnoException =>
  error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === "string"

const errorCode = (error: unknown): string | undefined =>
  error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined

const unavailable = (partition: number, what: string, error: unknown): LogUnavailable =>
  new LogUnavailable({ partition, message: `${what}: ${error instanceof Error ? error.message : String(error)}` })

// --- directories and the lock --------------------------------------------------------------------------------------

const fsyncDirSync = DurableFile.fsyncDirSync

const fsyncDir = (dir: string, callback: (error: Error | null) => void): void => {
  fs.open(dir, "r", (openError, fd) => {
    if (openError) return callback(openError)
    fs.fsync(fd, (syncError) => fs.close(fd, () => callback(syncError)))
  })
}

/** Creates the partition directory; a directory entry is durable only once its parent is fsync'd. */
const ensureDir = DurableFile.ensureDirSync

interface Lock {
  readonly path: string
  /** `<pid> <nonce>`: the nonce tells our lock from a later one of a recycled pid, so release never deletes it. */
  readonly content: string
  readonly tookOverFrom: string | undefined
}

const readLock = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch (error) {
    if (errorCode(error) === "ENOENT") return undefined
    throw error
  }
}

const isAlive = (pid: number): boolean => {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return errorCode(error) === "EPERM"
  }
}

/**
 * Takes `<dir>/LOCK`. The lock file is written in full to a temporary file and hard-linked into place: `link` fails
 * atomically if LOCK exists, and LOCK is never observed half-written (a half-written one would look stale).
 * A lock whose pid is dead is taken over by renaming it aside: `rename` moves exactly one inode, so of two processes
 * racing for the same stale lock only one gets it; the other finds a different content aside, puts it back and
 * refuses. A recycled pid (the owner died, the pid now belongs to another live process) makes us refuse: the safe
 * direction; the message says which pid so that an operator can remove the file.
 */
const acquireLock = (dir: string, partition: number): Lock => {
  const lockPath = path.join(dir, "LOCK")
  const nonce = randomBytes(8).toString("hex")
  const content = `${process.pid} ${nonce}\n`
  const temp = path.join(dir, `LOCK.${process.pid}.${nonce}.tmp`)
  const aside = path.join(dir, `LOCK.${process.pid}.${nonce}.stale`)
  fs.writeFileSync(temp, content, { flag: "wx" })
  let tookOverFrom: string | undefined
  try {
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        fs.linkSync(temp, lockPath)
        return { path: lockPath, content, tookOverFrom }
      } catch (error) {
        if (errorCode(error) !== "EEXIST") throw error
      }
      const holder = readLock(lockPath)
      if (holder === undefined) continue // released meanwhile
      const pid = Number.parseInt(holder, 10)
      if (Number.isSafeInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new LogFenced({
          partition,
          message: `${lockPath} is held by live process ${pid}` +
            (pid === process.pid ? " (this process: the partition is already open)" : "") +
            "; if that process is not Chronos, remove the file"
        })
      }
      try {
        fs.renameSync(lockPath, aside)
      } catch (error) {
        if (errorCode(error) === "ENOENT") continue
        throw error
      }
      const moved = readLock(aside)
      if (moved !== holder) {
        // We moved a lock another opener created after we read the stale one: restore it and yield to it.
        try {
          fs.linkSync(aside, lockPath)
        } catch {
          // Someone else already holds LOCK again; either way it is not ours.
        }
        fs.rmSync(aside, { force: true })
        throw new LogFenced({ partition, message: `${lockPath} was taken by another process while we took it over` })
      }
      fs.rmSync(aside, { force: true })
      tookOverFrom = holder.trim() === "" ? "(empty lock file)" : holder.trim()
    }
    throw new LogFenced({ partition, message: `${lockPath} is contended: could not take it after 8 attempts` })
  } finally {
    fs.rmSync(temp, { force: true })
  }
}

const releaseLock = (lock: Lock): void => {
  try {
    if (readLock(lock.path) === lock.content) fs.unlinkSync(lock.path)
  } catch {
    // Best effort: a LOCK left behind names a dead pid and is taken over by the next open.
  }
}

// --- reading records -----------------------------------------------------------------------------------------------

const END = 0
const RECORD = 1
const INVALID = 2
const NEED_BYTES = 3

/**
 * Reads records of one file region `[start, end)` through a reusable buffer. `parse` is synchronous and allocation
 * free; when the buffer does not hold the next record it returns NEED_BYTES and the caller awaits `fill()`, so the
 * per-record cost has no promise in it. The fields describe the record last returned.
 */
class RecordReader {
  buf: Buffer
  /** File offset of `buf[0]`. */
  bufStart: number
  bufLen = 0
  /** File offset of the next record. */
  pos: number
  need = 0
  offset = 0
  firstSeq = 0
  eventCount = 0
  bodyLength = 0
  /** Index of the body in `buf`, or -1 when the body was skipped. */
  bodyStart = -1
  problem = ""
  readonly fh: fsp.FileHandle
  readonly end: number
  readonly chunkBytes: number

  constructor(fh: fsp.FileHandle, start: number, end: number, chunkBytes: number) {
    this.fh = fh
    this.pos = start
    this.bufStart = start
    this.end = end
    this.chunkBytes = chunkBytes
    this.buf = Buffer.allocUnsafe(Math.max(HEADER_BYTES, Math.min(chunkBytes, end - start)))
  }

  /**
   * Parses the record at `pos`. Its body is loaded and its checksum verified only when the record reaches
   * `bodyFromSeq` (0: always; Infinity: header walk).
   */
  parse(bodyFromSeq: number): number {
    const pos = this.pos
    const avail = this.end - pos
    if (avail <= 0) return END
    this.offset = pos
    if (avail < HEADER_BYTES) {
      this.problem = `incomplete record header (${avail} of ${HEADER_BYTES} bytes before the end of the file)`
      return INVALID
    }
    const at = pos - this.bufStart
    if (at < 0 || at + HEADER_BYTES > this.bufLen) {
      this.need = HEADER_BYTES
      return NEED_BYTES
    }
    const b = this.buf
    const magic = b.readUInt32LE(at)
    if (magic !== MAGIC) {
      this.problem = `bad magic 0x${magic.toString(16).padStart(8, "0")}`
      return INVALID
    }
    const bodyLength = b.readUInt32LE(at + 4)
    const size = HEADER_BYTES + bodyLength
    if (size > avail) {
      this.problem = `record of ${size} bytes runs ${size - avail} bytes past the end of the file`
      return INVALID
    }
    const hi = b.readUInt32LE(at + 16)
    const eventCount = b.readUInt32LE(at + 20)
    // Header walks do not check the CRC, so reject values no writer produces before trusting them.
    if (eventCount === 0 || hi >= 0x20_0000) {
      this.problem = `implausible header (eventCount ${eventCount}, firstSeq high word ${hi})`
      return INVALID
    }
    const firstSeq = hi * TWO_POW_32 + b.readUInt32LE(at + 12)
    if (firstSeq + eventCount - 1 < bodyFromSeq) {
      this.firstSeq = firstSeq
      this.eventCount = eventCount
      this.bodyLength = bodyLength
      this.bodyStart = -1
      this.pos = pos + size
      return RECORD
    }
    if (at + size > this.bufLen) {
      this.need = size
      return NEED_BYTES
    }
    const stored = b.readUInt32LE(at + 8)
    const computed = crc32c(b, at + HEADER_BYTES, at + size, crc32c(b, at + 12, at + HEADER_BYTES))
    if (computed !== stored) {
      this.problem = `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`
      return INVALID
    }
    this.firstSeq = firstSeq
    this.eventCount = eventCount
    this.bodyLength = bodyLength
    this.bodyStart = at + HEADER_BYTES
    this.pos = pos + size
    return RECORD
  }

  /** Loads at least `need` bytes from `pos` (parse guaranteed they exist before `end`), and more if they fit. */
  async fill(): Promise<void> {
    const keepFrom = this.pos - this.bufStart
    if (keepFrom > 0 && keepFrom < this.bufLen) {
      this.buf.copy(this.buf, 0, keepFrom, this.bufLen)
      this.bufLen -= keepFrom
    } else if (keepFrom !== 0) {
      this.bufLen = 0 // `pos` moved past the buffer (a skipped body): start afresh
    }
    this.bufStart = this.pos
    if (this.need > this.buf.length) {
      const grown = Buffer.allocUnsafe(this.need)
      this.buf.copy(grown, 0, 0, this.bufLen)
      this.buf = grown
    }
    const target = Math.min(this.buf.length, this.end - this.bufStart, Math.max(this.need, this.chunkBytes))
    while (this.bufLen < target) {
      const { bytesRead } = await this.fh.read(this.buf, this.bufLen, target - this.bufLen, this.bufStart + this.bufLen)
      if (bytesRead === 0) throw new Error(`file ended at byte ${this.bufStart + this.bufLen}, expected ${this.end}`)
      this.bufLen += bytesRead
    }
  }

  /** The next record, reading as needed: RECORD, INVALID or END. */
  async next(bodyFromSeq: number): Promise<number> {
    for (;;) {
      const status = this.parse(bodyFromSeq)
      if (status !== NEED_BYTES) return status
      await this.fill()
    }
  }

  body(): Uint8Array {
    return this.buf.subarray(this.bodyStart, this.bodyStart + this.bodyLength)
  }
}

/** Decodes the body the reader just returned and checks it against the header (CRC-valid but inconsistent = bug). */
const decodeChecked = (file: string, reader: RecordReader, partition: number): Commit.Commit => {
  let commit: Commit.Commit
  try {
    commit = Commit.decodeBody(reader.body())
  } catch (error) {
    throw new CorruptLogError(
      file,
      reader.offset,
      `body passes its checksum but does not decode: ${error instanceof Error ? error.message : String(error)}`
    )
  }
  if (
    commit.firstSeq !== reader.firstSeq || commit.events.length !== reader.eventCount || commit.partition !== partition
  ) {
    throw new CorruptLogError(
      file,
      reader.offset,
      `header says partition ${partition} seq ${reader.firstSeq} x${reader.eventCount}, body says partition ` +
        `${commit.partition} seq ${commit.firstSeq} x${commit.events.length}`
    )
  }
  return commit
}

// --- recovery ------------------------------------------------------------------------------------------------------

interface Segment {
  readonly firstSeq: number
  readonly path: string
}

interface Truncation {
  readonly file: string
  readonly offset: number
  readonly droppedBytes: number
  readonly reason: string
}

interface Recovered {
  /** Never empty: a fresh log gets its first segment here. */
  readonly segments: Array<Segment>
  readonly lastSeq: number
  /** Bytes of valid records in the last segment: where the next write goes. */
  readonly tailBytes: number
  readonly truncated: Array<Truncation>
}

const listSegments = async (dir: string): Promise<Array<Segment>> => {
  const segments: Array<Segment> = []
  for (const name of await fsp.readdir(dir)) {
    const match = SEGMENT_FILE.exec(name)
    if (match !== null) segments.push({ firstSeq: Number(match[1]), path: path.join(dir, name) })
  }
  // Zero-padded names sort numerically as strings, but sort by number to not depend on that.
  return segments.sort((a, b) => a.firstSeq - b.firstSeq)
}

/** The log's base sequence: 1 unless a truncation recorded another in `<dir>/BASE`. */
export const readBaseSeq = (dir: string): number => {
  let text: string
  try {
    text = fs.readFileSync(path.join(dir, BASE_FILE), "utf8")
  } catch (error) {
    if (errorCode(error) === "ENOENT") return 1
    throw error
  }
  let baseSeq: unknown
  try {
    baseSeq = (JSON.parse(text) as { baseSeq?: unknown }).baseSeq
  } catch {
    baseSeq = undefined
  }
  if (typeof baseSeq !== "number" || !Number.isSafeInteger(baseSeq) || baseSeq < 1) {
    throw new CorruptLogError(path.join(dir, BASE_FILE), 0, `not a base sequence record: ${JSON.stringify(text.slice(0, 100))}`)
  }
  return baseSeq
}

/** Records the base sequence durably. */
const writeBaseSeq = (dir: string, baseSeq: number): Promise<void> =>
  DurableFile.writeAtomic(path.join(dir, BASE_FILE), JSON.stringify({ formatVersion: 1, baseSeq }) + "\n")

/**
 * Deletes the segment files that hold only sequences below `seq` (never the current one): BASE first, then the
 * files, so that at no point does a file below the recorded base look like part of the log.
 */
const truncate = async (writer: SegmentWriter, seq: number): Promise<void> => {
  const segments = writer.segments
  let drop = 0
  while (drop < segments.length - 1 && segments[drop + 1]!.firstSeq <= seq) drop++
  if (drop === 0) return
  const doomed = segments.slice(0, drop)
  await writeBaseSeq(writer.dir, segments[drop]!.firstSeq)
  // Rolls only append, so the first `drop` entries are still the doomed ones; replays started after this skip them.
  segments.splice(0, drop)
  for (const segment of doomed) await fsp.rm(segment.path, { force: true })
  fsyncDirSync(writer.dir)
}

const recover = async (dir: string, partition: number): Promise<Recovered> => {
  const baseSeq = readBaseSeq(dir)
  const segments = await listSegments(dir)
  // Files left below the base by a truncation that crashed after recording it: finish deleting them.
  let leftovers = 0
  while (segments.length > 1 && segments[1]!.firstSeq <= baseSeq) {
    await fsp.rm(segments.shift()!.path, { force: true })
    leftovers++
  }
  if (leftovers > 0) fsyncDirSync(dir)
  if (segments.length === 0) {
    if (baseSeq !== 1) throw new CorruptLogError(path.join(dir, BASE_FILE), 0, `base seq ${baseSeq} but no segment file`)
    const first = { firstSeq: 1, path: path.join(dir, segmentFileName(1)) }
    await (await fsp.open(first.path, "wx")).close()
    fsyncDirSync(dir)
    return { segments: [first], lastSeq: 0, tailBytes: 0, truncated: [] }
  }
  const first = segments[0]!
  if (first.firstSeq !== baseSeq) {
    throw new CorruptLogError(first.path, 0, `the first segment starts at seq ${first.firstSeq}, expected the base seq ${baseSeq}`)
  }

  let expected = baseSeq
  // Where the log's last record is, to decode it at the end: [file, offset].
  let lastRecord: [string, number] | undefined

  for (let i = 0; i < segments.length - 1; i++) {
    const segment = segments[i]!
    const fh = await fsp.open(segment.path, "r")
    try {
      const size = (await fh.stat()).size
      const reader = new RecordReader(fh, 0, size, HEADER_WALK_CHUNK_BYTES)
      let records = 0
      for (;;) {
        const status = await reader.next(Infinity)
        if (status === END) break
        if (status === INVALID) {
          throw new CorruptLogError(
            segment.path,
            reader.offset,
            `${reader.problem} in a sealed segment (fully fsync'd before the next one began: not a torn write)`
          )
        }
        if (reader.firstSeq !== expected) {
          throw new CorruptLogError(segment.path, reader.offset, `record at seq ${reader.firstSeq}, expected ${expected}`)
        }
        expected += reader.eventCount
        lastRecord = [segment.path, reader.offset]
        records++
      }
      if (records === 0) throw new CorruptLogError(segment.path, 0, "sealed segment holds no record")
    } finally {
      await fh.close()
    }
    const next = segments[i + 1]!
    if (next.firstSeq !== expected) {
      throw new CorruptLogError(
        next.path,
        0,
        `segment starts at seq ${next.firstSeq} but the previous one ends at seq ${expected - 1}`
      )
    }
  }

  const tail = segments[segments.length - 1]!
  const truncated: Array<Truncation> = []
  let tailBytes = 0
  const fh = await fsp.open(tail.path, "r+")
  try {
    const size = (await fh.stat()).size
    const reader = new RecordReader(fh, 0, size, READ_CHUNK_BYTES)
    for (;;) {
      const status = await reader.next(0)
      if (status === END) break
      if (status === RECORD) {
        if (reader.firstSeq !== expected) {
          // A record with a valid checksum cannot come from a torn write: the writer broke continuity.
          throw new CorruptLogError(tail.path, reader.offset, `record at seq ${reader.firstSeq}, expected ${expected}`)
        }
        expected += reader.eventCount
        lastRecord = [tail.path, reader.offset]
        tailBytes = reader.pos
        continue
      }
      const offset = reader.offset
      const later = await findValidRecord(fh, offset + 1, size)
      if (later >= 0) {
        throw new CorruptLogError(
          tail.path,
          offset,
          `${reader.problem}, but a valid record follows at byte ${later}: not a torn tail`
        )
      }
      await fh.truncate(offset)
      await fh.sync()
      truncated.push({ file: tail.path, offset, droppedBytes: size - offset, reason: reader.problem })
      break
    }
  } finally {
    await fh.close()
  }

  if (lastRecord !== undefined) await checkRecordDecodes(lastRecord[0], lastRecord[1], partition)
  return { segments, lastSeq: expected - 1, tailBytes, truncated }
}

/** Is there any record with a valid checksum in `[from, end)`? Returns its offset, or -1. */
const findValidRecord = async (fh: fsp.FileHandle, from: number, end: number): Promise<number> => {
  const chunk = Buffer.allocUnsafe(Math.max(HEADER_BYTES, Math.min(READ_CHUNK_BYTES, end - from)))
  for (let chunkStart = from; chunkStart + HEADER_BYTES <= end;) {
    const length = Math.min(chunk.length, end - chunkStart)
    let filled = 0
    while (filled < length) {
      const { bytesRead } = await fh.read(chunk, filled, length - filled, chunkStart + filled)
      if (bytesRead === 0) break
      filled += bytesRead
    }
    const view = chunk.subarray(0, filled)
    for (let i = view.indexOf(MAGIC_BYTES); i !== -1; i = view.indexOf(MAGIC_BYTES, i + 1)) {
      const candidate = chunkStart + i
      const reader = new RecordReader(fh, candidate, end, HEADER_WALK_CHUNK_BYTES)
      if ((await reader.next(0)) === RECORD) return candidate
    }
    if (chunkStart + filled >= end || filled < MAGIC_BYTES.length) break
    chunkStart += filled - (MAGIC_BYTES.length - 1) // overlap: a magic split across two chunks is still found
  }
  return -1
}

const checkRecordDecodes = async (file: string, offset: number, partition: number): Promise<void> => {
  const fh = await fsp.open(file, "r")
  try {
    const reader = new RecordReader(fh, offset, (await fh.stat()).size, HEADER_WALK_CHUNK_BYTES)
    if ((await reader.next(0)) !== RECORD) throw new CorruptLogError(file, offset, reader.problem)
    decodeChecked(file, reader, partition)
  } finally {
    await fh.close()
  }
}

// --- replay --------------------------------------------------------------------------------------------------------

/**
 * Streams the acknowledged part of the log: sealed segments to their end, the current one up to the last fsync'd
 * byte (bytes written but not yet synced are not acknowledged and must not be served). Segments that end before
 * `fromSeq` are skipped by name; in the first segment read, records before `fromSeq` are skipped header-only.
 */
const replayFrom = async (
  writer: SegmentWriter,
  fromSeq: number,
  onCommit: (commit: Commit.Commit) => void,
  signal: AbortSignal
): Promise<number> => {
  const segments = writer.segments.slice()
  const durableEnd = writer.durableEnd
  const durableLastSeq = writer.durableLastSeq
  if (durableLastSeq === 0 || fromSeq > durableLastSeq) return durableLastSeq
  let i = segments.length - 1
  while (i > 0 && segments[i]!.firstSeq > fromSeq) i--
  let expected = segments[i]!.firstSeq
  for (; i < segments.length; i++) {
    const segment = segments[i]!
    if (segment.firstSeq !== expected) {
      throw new CorruptLogError(segment.path, 0, `segment starts at seq ${segment.firstSeq}, expected ${expected}`)
    }
    const fh = await fsp.open(segment.path, "r")
    try {
      const end = i === segments.length - 1 ? durableEnd : (await fh.stat()).size
      const reader = new RecordReader(fh, 0, end, READ_CHUNK_BYTES)
      for (;;) {
        const status = reader.parse(fromSeq)
        if (status === NEED_BYTES) {
          if (signal.aborted) return durableLastSeq
          await reader.fill()
          continue
        }
        if (status === END) break
        if (status === INVALID) throw new CorruptLogError(segment.path, reader.offset, reader.problem)
        if (reader.firstSeq !== expected) {
          throw new CorruptLogError(segment.path, reader.offset, `record at seq ${reader.firstSeq}, expected ${expected}`)
        }
        expected += reader.eventCount
        if (reader.bodyStart >= 0) onCommit(decodeChecked(segment.path, reader, writer.partition))
      }
    } finally {
      await fh.close()
    }
  }
  if (expected - 1 !== durableLastSeq) {
    throw new CorruptLogError(
      segments[segments.length - 1]!.path,
      durableEnd,
      `log ends at seq ${expected - 1}, expected ${durableLastSeq}`
    )
  }
  return durableLastSeq
}

// --- writing -------------------------------------------------------------------------------------------------------

type Resume = (effect: Effect.Effect<void, LogError>) => void

interface Entry {
  readonly header: Uint8Array
  readonly body: Uint8Array
  readonly lastSeq: number
  /** Offset in its segment just past the record, set when the record is placed in a write. */
  end: number
  readonly resume: Resume
}

/**
 * The group-commit pipeline of one partition, in plain callbacks (no fiber per write). Entries move
 * queued → writing (one positioned writev in flight) → written → syncing (one fdatasync in flight) → resolved, always
 * in call order. A write and a sync may run at the same time: the sync only claims the writes that completed before
 * it started, and everything written meanwhile is claimed by the next one. So with N appends in flight the cost is
 * about one writev and one fdatasync per batch, not per append.
 */
class SegmentWriter {
  readonly dir: string
  readonly partition: number
  readonly segmentBytesMax: number
  readonly segments: Array<Segment>
  fd: number
  /** End of the bytes issued to the current segment. */
  writePos: number
  /** End of the fsync'd bytes of the current segment, and the last fsync'd sequence: what replay may serve. */
  durableEnd: number
  durableLastSeq: number

  queued: Array<Entry> = []
  writing: Array<Entry> | undefined = undefined
  writeInFlight = false
  written: Array<Entry> = []
  syncing: Array<Entry> | undefined = undefined
  rolling = false
  /** Set by the first write or sync failure; every unresolved and later append resolves with it. */
  failure: Effect.Effect<never, LogError> | undefined = undefined
  closing = false
  onIdle: (() => void) | undefined = undefined

  appends = 0
  bytesWritten = 0
  writes = 0
  fsyncs = 0

  constructor(
    dir: string,
    partition: number,
    segmentBytesMax: number,
    segments: Array<Segment>,
    fd: number,
    tailBytes: number,
    lastSeq: number
  ) {
    this.dir = dir
    this.partition = partition
    this.segmentBytesMax = segmentBytesMax
    this.segments = segments
    this.fd = fd
    this.writePos = tailBytes
    this.durableEnd = tailBytes
    this.durableLastSeq = lastSeq
  }

  stats(): FileLogStats {
    return {
      appends: this.appends,
      bytesWritten: this.bytesWritten,
      writes: this.writes,
      fsyncs: this.fsyncs,
      segments: this.segments.length
    }
  }

  currentPath(): string {
    return this.segments[this.segments.length - 1]!.path
  }

  append(header: Uint8Array, body: Uint8Array, lastSeq: number, resume: Resume): void {
    if (this.closing) {
      resume(Effect.fail(new LogUnavailable({ partition: this.partition, message: "file log handle is closed" })))
      return
    }
    this.appends++
    this.queued.push({ header, body, lastSeq, end: 0, resume })
    // Pumping right away gives the lowest latency when idle; under load the write in flight makes later appends
    // queue, and they leave together in the next writev.
    this.pump()
  }

  pump(): void {
    if (this.failure !== undefined) {
      this.failPending()
    } else {
      if (!this.writeInFlight && !this.rolling && this.queued.length > 0) {
        if (this.writePos < this.segmentBytesMax) this.write()
        else if (this.written.length === 0 && this.syncing === undefined) this.roll()
        // else: the current segment is full but not yet fully synced; the sync below (or in flight) will pump.
      }
      if (this.syncing === undefined && this.written.length > 0) this.sync()
    }
    if (this.onIdle !== undefined && this.isIdle()) {
      const onIdle = this.onIdle
      this.onIdle = undefined
      onIdle()
    }
  }

  isIdle(): boolean {
    return !this.writeInFlight && this.syncing === undefined && !this.rolling && this.queued.length === 0 &&
      this.written.length === 0
  }

  write(): void {
    const queued = this.queued
    const buffers: Array<Uint8Array> = []
    let pos = this.writePos
    let n = 0
    while (
      n < queued.length && n < WRITE_BATCH_RECORDS && pos - this.writePos < WRITE_BATCH_BYTES &&
      pos < this.segmentBytesMax
    ) {
      const entry = queued[n++]!
      buffers.push(entry.header, entry.body)
      pos += entry.header.length + entry.body.length
      entry.end = pos
    }
    let batch: Array<Entry>
    if (n === queued.length) {
      batch = queued
      this.queued = []
    } else {
      batch = queued.slice(0, n)
      this.queued = queued.slice(n)
    }
    const at = this.writePos
    const bytes = pos - at
    this.writePos = pos
    this.writing = batch
    this.writeInFlight = true
    fs.writev(this.fd, buffers, at, (error, written) => {
      this.writeInFlight = false
      if (this.writing === undefined) return this.pump() // already failed (a sync failed meanwhile)
      this.writing = undefined
      if (error !== null || written !== bytes) {
        // A short write is what libuv reports when a later part of the writev failed (ENOSPC, EIO).
        const reason = error !== null ? error.message : `short write: ${written} of ${bytes} bytes`
        this.fail(
          Effect.fail(
            new LogUnavailable({
              partition: this.partition,
              message: `write to ${this.currentPath()} at byte ${at} failed: ${reason}; this handle fails every ` +
                `later append, reopen it (the partial record is truncated as a torn tail)`
            })
          )
        )
      } else {
        this.writes++
        this.bytesWritten += bytes
        if (this.written.length === 0) this.written = batch
        else for (const entry of batch) this.written.push(entry)
      }
      this.pump()
    })
  }

  sync(): void {
    const batch = this.written
    this.written = []
    this.syncing = batch
    fs.fdatasync(this.fd, (error) => this.onSyncDone(batch, error))
  }

  /**
   * A failed fdatasync poisons the handle for good and is reported as a defect, not as the retryable
   * LogUnavailable: after a writeback error Linux may mark the dirty pages clean, so a retried fsync "succeeds"
   * without the data on disk, and a reopen in this process would read the unpersisted bytes back from the page cache
   * and serve them as committed (fsyncgate). Nothing the caller can retry makes that safe; the directory is also
   * barred from reopening in this process.
   */
  onSyncDone(batch: Array<Entry>, error: NodeJS.ErrnoException | null): void {
    this.syncing = undefined
    if (error !== null) {
      fsyncFailedDirs.add(this.dir)
      const failure = Effect.die(
        new Error(
          `file log: fdatasync of ${this.currentPath()} failed (${error.message}); durability of everything ` +
            `written since the last successful fsync is unknown and an fsync is never retried (fsyncgate)`
        )
      )
      // Overrides an earlier write failure: every append still unresolved is now of unknown durability too.
      this.failure = failure
      for (const entry of batch) entry.resume(failure)
    } else {
      this.fsyncs++
      const last = batch[batch.length - 1]!
      this.durableEnd = last.end
      this.durableLastSeq = last.lastSeq
      for (const entry of batch) entry.resume(Effect.void)
    }
    this.pump()
  }

  /**
   * Rolls to a new segment. Called only when nothing is in flight and everything written is fsync'd, so the old
   * segment is complete on disk before the new file exists: recovery may treat damage in any segment but the last
   * as corruption. The directory is fsync'd before the first write so that an acknowledged record can never sit in
   * a file whose name did not survive the crash.
   */
  roll(): void {
    this.rolling = true
    const firstSeq = this.durableLastSeq + 1
    const file = path.join(this.dir, segmentFileName(firstSeq))
    fs.open(file, "wx", (openError, fd) => {
      if (openError !== null) {
        this.rolling = false
        this.fail(Effect.fail(
          new LogUnavailable({ partition: this.partition, message: `cannot create segment ${file}: ${openError.message}` })
        ))
        return this.pump()
      }
      fsyncDir(this.dir, (syncError) => {
        this.rolling = false
        if (syncError !== null) {
          fsyncFailedDirs.add(this.dir)
          this.fail(Effect.die(new Error(`file log: fsync of directory ${this.dir} failed (${syncError.message})`)))
          fs.close(fd, () => {})
          return this.pump()
        }
        // The old segment is fully synced; a close error cannot lose anything.
        fs.close(this.fd, () => {})
        this.fd = fd
        this.segments.push({ firstSeq, path: file })
        this.writePos = 0
        this.durableEnd = 0
        this.pump()
      })
    })
  }

  fail(failure: Effect.Effect<never, LogError>): void {
    if (this.failure === undefined) this.failure = failure
  }

  /**
   * Resolves every unresolved append with the failure, in call order. Entries in a sync still in flight come
   * first in order and resolve when it completes (successfully, if it succeeds: they were written and synced), so
   * this waits for it.
   */
  failPending(): void {
    if (this.syncing !== undefined) return
    const failure = this.failure!
    const written = this.written
    const writing = this.writing
    const queued = this.queued
    this.written = []
    this.writing = undefined
    this.queued = []
    for (const entry of written) entry.resume(failure)
    if (writing !== undefined) for (const entry of writing) entry.resume(failure)
    for (const entry of queued) entry.resume(failure)
  }

  /**
   * Lets every accepted append finish (written and synced, or failed), then closes the fd. Closing earlier would be
   * unsafe, not only lossy: a queued libuv operation would use the fd number, which the kernel may by then have
   * given to another file.
   */
  close(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      this.closing = true
      this.onIdle = () => fs.close(this.fd, () => resume(Effect.void))
      this.pump()
    })
  }
}
