/**
 * The scrub of a data directory (`chronos verify`): reads every byte Chronos stored and reports each damaged log
 * record and segment with its location. It owns the definition of "sound", checked independently of the code that
 * serves reads (its own record scanner over the documented file-log format, its own manifest and row checks), so a
 * bug in a reader cannot hide damage from it:
 *  - log (`<dataDir>/log/p<NNN>/`): every record's magic, bounds and CRC32C, header/body agreement, sequence
 *    continuity within and across files from the recorded base sequence; after a damaged record the scan resyncs
 *    on the next valid record, so every damaged region is reported, each as file + byte offset;
 *  - segments (`<dataDir>/segments/p<NNN>/`): the manifest's invariants, each segment's size and SHA-256 against the
 *    manifest, its footer, one row per sequence of its range (segment + row on failure), and that the log continues
 *    where the segments end. Segment files that no manifest lists are warnings (orphans of an interrupted seal).
 *
 * `runStore(store)` scrubs the segments of any `SegmentStore` the same way — in a cluster, the NATS Object Store and
 * KV buckets (`SegmentStore.layerNats`), whose log is JetStream's (checked by JetStream itself, not here);
 * `runNats({ servers })` opens those buckets (existing ones only) and runs it (`chronos verify --nats <url>`).
 *
 * `run` and `runStore` never fail: every problem, I/O errors included, is in the report. `report.ok` is false when
 * any problem was found; the CLI exits non-zero then.
 */
import { Effect, Exit, Scope } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { Errors } from "@chronos/domain"
import * as Commit from "@chronos/engine/Commit"
import { crc32c } from "@chronos/engine/internal/crc32c"
import { BASE_FILE, HEADER_BYTES, MAGIC, readBaseSeq } from "@chronos/engine/internal/fileLog"
import * as Manifest from "./Manifest.ts"
import * as SegmentFormat from "./SegmentFormat.ts"
import { rowsBySeq, sha256 } from "./SegmentReader.ts"
import { makeLocal, manifestFile, type SegmentStoreShape } from "./SegmentStore.ts"
import * as NatsSegmentStore from "./internal/natsSegmentStore.ts"

export type ProblemKind = "log-record" | "log-file" | "segment" | "segment-row" | "manifest" | "continuity" | "io"

export interface Problem {
  readonly kind: ProblemKind
  readonly partition: number
  /** Human-readable place: `<file> at byte <offset>`, `<file> row <row>`, or a file. */
  readonly location: string
  readonly file: string
  readonly offset?: number
  readonly row?: number
  readonly message: string
}

export interface PartitionSummary {
  readonly partition: number
  readonly logBaseSeq: number
  readonly logFiles: number
  readonly logRecords: number
  /** Last sequence of the log (base - 1 when it holds no record). */
  readonly logLastSeq: number
  readonly segments: number
  readonly segmentRows: number
  readonly sealedThrough: number
}

export interface VerifyReport {
  readonly ok: boolean
  readonly dataDir: string
  readonly partitions: ReadonlyArray<PartitionSummary>
  readonly logBytes: number
  readonly segmentBytes: number
  readonly problems: ReadonlyArray<Problem>
  readonly warnings: ReadonlyArray<Problem>
}

export interface Progress {
  readonly partition: number
  readonly done: number
  readonly total: number
}

export interface Options {
  readonly dataDir: string
  readonly onProgress?: ((progress: Progress) => void) | undefined
}

const LOG_FILE = /^(\d{20})\.log$/
const PARTITION_DIR = /^p(\d{3,})$/

const listPartitions = async (dir: string): Promise<Array<number>> => {
  try {
    return (await fsp.readdir(dir)).flatMap((name) => {
      const m = PARTITION_DIR.exec(name)
      return m === null ? [] : [Number(m[1])]
    })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return []
    throw error
  }
}

type Parsed =
  | { readonly ok: true; readonly firstSeq: number; readonly count: number; readonly size: number; readonly body: Buffer }
  | { readonly ok: false; readonly problem: string }

/** Parses the record at `pos` of `buf` (the file-log record format, see `engine/internal/fileLog.ts`). */
const parseRecord = (buf: Buffer, pos: number): Parsed => {
  const avail = buf.length - pos
  if (avail < HEADER_BYTES) return { ok: false, problem: `incomplete record header (${avail} of ${HEADER_BYTES} bytes)` }
  const magic = buf.readUInt32LE(pos)
  if (magic !== MAGIC) return { ok: false, problem: `bad magic 0x${magic.toString(16).padStart(8, "0")}` }
  const bodyLength = buf.readUInt32LE(pos + 4)
  const size = HEADER_BYTES + bodyLength
  if (size > avail) return { ok: false, problem: `record of ${size} bytes runs past the end of the file` }
  const stored = buf.readUInt32LE(pos + 8)
  const computed = crc32c(buf, pos + HEADER_BYTES, pos + size, crc32c(buf, pos + 12, pos + HEADER_BYTES))
  if (stored !== computed) {
    return { ok: false, problem: `CRC32C mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})` }
  }
  const firstSeq = buf.readUInt32LE(pos + 16) * 0x1_0000_0000 + buf.readUInt32LE(pos + 12)
  const count = buf.readUInt32LE(pos + 20)
  if (count === 0) return { ok: false, problem: "record of 0 events" }
  return { ok: true, firstSeq, count, size, body: buf.subarray(pos + HEADER_BYTES, pos + size) }
}

const MAGIC_BYTES = Buffer.from([0x31, 0x52, 0x48, 0x43])

/** The offset of the next record with a valid checksum after `from`, or -1. */
const resync = (buf: Buffer, from: number): number => {
  for (let i = buf.indexOf(MAGIC_BYTES, from); i !== -1; i = buf.indexOf(MAGIC_BYTES, i + 1)) {
    if (parseRecord(buf, i).ok) return i
  }
  return -1
}

interface LogResult {
  baseSeq: number
  files: number
  records: number
  lastSeq: number
  bytes: number
}

const verifyLog = async (dir: string, partition: number, problems: Array<Problem>): Promise<LogResult | undefined> => {
  const add = (kind: ProblemKind, file: string, message: string, offset?: number) =>
    problems.push({
      kind,
      partition,
      file,
      location: offset === undefined ? file : `${file} at byte ${offset}`,
      message,
      ...(offset === undefined ? {} : { offset })
    })
  let names: Array<string>
  try {
    names = await fsp.readdir(dir)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined
    add("io", dir, String((error as Error).message))
    return undefined
  }
  let baseSeq = 1
  try {
    baseSeq = readBaseSeq(dir)
  } catch (error) {
    add("log-file", path.join(dir, BASE_FILE), String((error as Error).message))
  }
  const files = names.flatMap((name) => {
    const m = LOG_FILE.exec(name)
    return m === null ? [] : [{ firstSeq: Number(m[1]), file: path.join(dir, name) }]
  }).sort((a, b) => a.firstSeq - b.firstSeq)
  const result: LogResult = { baseSeq, files: files.length, records: 0, lastSeq: baseSeq - 1, bytes: 0 }
  let expected = baseSeq
  for (const { file, firstSeq } of files) {
    if (firstSeq !== expected) {
      add("continuity", file, `file starts at seq ${firstSeq}, but the log continues at seq ${expected}`)
      expected = firstSeq
    }
    let buf: Buffer
    try {
      buf = await fsp.readFile(file)
    } catch (error) {
      add("io", file, String((error as Error).message))
      continue
    }
    result.bytes += buf.length
    let pos = 0
    while (pos < buf.length) {
      const r = parseRecord(buf, pos)
      if (!r.ok) {
        const next = resync(buf, pos + 1)
        add(
          "log-record",
          file,
          `${r.problem}; ${next === -1 ? `${buf.length - pos} bytes to the end of the file unreadable` : `${next - pos} bytes skipped to the next valid record`}`,
          pos
        )
        if (next === -1) break
        pos = next
        continue
      }
      if (r.firstSeq !== expected) {
        add("continuity", file, `record at seq ${r.firstSeq}, expected ${expected}`, pos)
      }
      try {
        const commit = Commit.decodeBody(r.body)
        if (commit.firstSeq !== r.firstSeq || commit.events.length !== r.count || commit.partition !== partition) {
          add(
            "log-record",
            file,
            `header says partition ${partition} seq ${r.firstSeq} x${r.count}, body says partition ${commit.partition} ` +
              `seq ${commit.firstSeq} x${commit.events.length}`,
            pos
          )
        }
      } catch (error) {
        add("log-record", file, `body passes its CRC but does not decode: ${String((error as Error).message)}`, pos)
      }
      result.records++
      expected = r.firstSeq + r.count
      pos += r.size
    }
  }
  result.lastSeq = expected - 1
  return result
}

interface SegmentsResult {
  segments: number
  rows: number
  sealedThrough: number
  bytes: number
}

const verifySegments = async (
  store: SegmentStoreShape,
  partition: number,
  problems: Array<Problem>,
  warnings: Array<Problem>
): Promise<SegmentsResult | undefined> => {
  const add = (into: Array<Problem>, kind: ProblemKind, file: string, message: string, row?: number) =>
    into.push({
      kind,
      partition,
      file,
      location: row === undefined ? file : `${file} row ${row}`,
      message,
      ...(row === undefined ? {} : { row })
    })
  const manifestLocation = store.location(partition, manifestFile)
  const read = await Effect.runPromise(Effect.result(store.readManifest(partition)))
  if (read._tag === "Failure") {
    add(problems, "manifest", manifestLocation, read.failure.message)
    return undefined
  }
  const listed = await Effect.runPromise(Effect.result(store.list(partition)))
  const files = listed._tag === "Success" ? listed.success : []
  const manifest = read.success
  if (manifest === undefined) {
    for (const f of files) add(warnings, "segment", store.location(partition, f), "segment file with no manifest (orphan)")
    return files.length === 0 ? undefined : { segments: 0, rows: 0, sealedThrough: 0, bytes: 0 }
  }
  for (const p of Manifest.check(manifest)) add(problems, "manifest", manifestLocation, p)
  if (manifest.partition !== partition) add(problems, "manifest", manifestLocation, `manifest of partition ${manifest.partition}`)
  const result: SegmentsResult = { segments: manifest.segments.length, rows: 0, sealedThrough: Manifest.sealedThrough(manifest), bytes: 0 }
  for (const entry of manifest.segments) {
    const location = store.location(partition, entry.file)
    const got = await Effect.runPromise(Effect.result(store.get(partition, entry.file)))
    if (got._tag === "Failure") {
      // The store itself may detect damage (the NATS object store checks its own digest).
      add(problems, got.failure._tag === "CorruptData" ? "segment" : "io", location, got.failure.message)
      continue
    }
    const bytes = got.success
    if (bytes === undefined) {
      add(problems, "segment", location, "segment listed in the manifest is missing")
      continue
    }
    result.bytes += bytes.length
    if (bytes.length !== entry.bytes) add(problems, "segment", location, `${bytes.length} bytes, the manifest says ${entry.bytes}`)
    const digest = sha256(bytes)
    if (digest !== entry.sha256) {
      add(problems, "segment", location, `sha256 ${digest} does not match the manifest's ${entry.sha256}`)
    }
    // Rows are checked even when the checksum failed: the report then says which rows are damaged, if it can.
    try {
      const { header } = SegmentFormat.inspect(bytes)
      if (header.partition !== partition || header.fromSeq !== entry.fromSeq || header.toSeq !== entry.toSeq) {
        add(problems, "segment", location,
          `footer says partition ${header.partition} [${header.fromSeq}, ${header.toSeq}], the manifest [${entry.fromSeq}, ${entry.toSeq}]`)
      }
      const c = SegmentFormat.decode(bytes)
      rowsBySeq(location, partition, entry, c)
      for (let i = 0; i < c.rows; i++) {
        try {
          SegmentFormat.eventAt(c, i)
        } catch (error) {
          add(problems, "segment-row", location, String((error as Error).message), i)
        }
      }
      result.rows += c.rows
    } catch (error) {
      if (error instanceof Errors.CorruptData) {
        const m = / row (\d+)$/.exec(error.location)
        add(problems, m === null ? "segment" : "segment-row", location, error.message, m === null ? undefined : Number(m[1]))
      } else {
        add(problems, "segment", location, `unreadable: ${String((error as Error).message)}`)
      }
    }
  }
  const inManifest = new Set(manifest.segments.map((s) => s.file))
  for (const f of files) {
    if (!inManifest.has(f)) add(warnings, "segment", store.location(partition, f), "segment file not in the manifest (orphan)")
  }
  return result
}

/** Scrubs `dataDir` and reports every problem found. Never fails. */
export const run = (options: Options): Effect.Effect<VerifyReport> =>
  Effect.promise(async () => {
    const dataDir = path.resolve(options.dataDir)
    const problems: Array<Problem> = []
    const warnings: Array<Problem> = []
    const store = makeLocal(dataDir)
    const logRoot = path.join(dataDir, "log")
    const partitionIds = [
      ...new Set([...(await listPartitions(logRoot)), ...(await listPartitions(path.join(dataDir, "segments")))])
    ].sort((a, b) => a - b)
    const partitions: Array<PartitionSummary> = []
    let logBytes = 0
    let segmentBytes = 0
    let done = 0
    for (const partition of partitionIds) {
      const dir = path.join(logRoot, `p${String(partition).padStart(3, "0")}`)
      const log = await verifyLog(dir, partition, problems)
      const segs = await verifySegments(store, partition, problems, warnings)
      const sealedThrough = segs?.sealedThrough ?? 0
      if (log !== undefined && log.baseSeq > sealedThrough + 1) {
        problems.push({
          kind: "continuity",
          partition,
          file: dir,
          location: dir,
          message: `the log starts at seq ${log.baseSeq} but the segments end at seq ${sealedThrough}: ` +
            `seqs ${sealedThrough + 1}..${log.baseSeq - 1} are nowhere`
        })
      }
      if (log !== undefined && log.lastSeq < sealedThrough) {
        problems.push({
          kind: "continuity",
          partition,
          file: dir,
          location: dir,
          message: `the log ends at seq ${log.lastSeq}, below the sealed seq ${sealedThrough}`
        })
      }
      logBytes += log?.bytes ?? 0
      segmentBytes += segs?.bytes ?? 0
      partitions.push({
        partition,
        logBaseSeq: log?.baseSeq ?? 1,
        logFiles: log?.files ?? 0,
        logRecords: log?.records ?? 0,
        logLastSeq: log?.lastSeq ?? 0,
        segments: segs?.segments ?? 0,
        segmentRows: segs?.rows ?? 0,
        sealedThrough
      })
      options.onProgress?.({ partition, done: ++done, total: partitionIds.length })
    }
    return { ok: problems.length === 0, dataDir, partitions, logBytes, segmentBytes, problems, warnings }
  })

export interface StoreReport {
  readonly ok: boolean
  /** The store's driver (`local`, `nats`, `memory`). */
  readonly driver: string
  readonly partitions: ReadonlyArray<Pick<PartitionSummary, "partition" | "segments" | "segmentRows" | "sealedThrough">>
  readonly segmentBytes: number
  readonly problems: ReadonlyArray<Problem>
  readonly warnings: ReadonlyArray<Problem>
}

/** Scrubs every partition's segments and manifest in `store` (the segment half of `run`). Never fails. */
export const runStore = (
  store: SegmentStoreShape,
  options: { readonly onProgress?: ((progress: Progress) => void) | undefined } = {}
): Effect.Effect<StoreReport> =>
  Effect.promise(async () => {
    const problems: Array<Problem> = []
    const warnings: Array<Problem> = []
    const listed = await Effect.runPromise(Effect.result(store.partitions))
    if (listed._tag === "Failure") {
      const where = listed.failure.location
      problems.push({ kind: "io", partition: -1, file: where, location: where, message: listed.failure.message })
      return { ok: false, driver: store.driver, partitions: [], segmentBytes: 0, problems, warnings }
    }
    const partitions: Array<StoreReport["partitions"][number]> = []
    let segmentBytes = 0
    let done = 0
    for (const partition of listed.success) {
      const segs = await verifySegments(store, partition, problems, warnings)
      segmentBytes += segs?.bytes ?? 0
      partitions.push({
        partition,
        segments: segs?.segments ?? 0,
        segmentRows: segs?.rows ?? 0,
        sealedThrough: segs?.sealedThrough ?? 0
      })
      options.onProgress?.({ partition, done: ++done, total: listed.success.length })
    }
    return { ok: problems.length === 0, driver: store.driver, partitions, segmentBytes, problems, warnings }
  })

/**
 * Scrubs a cluster's NATS segment store (`<bucketPrefix>_SEGMENTS` / `_MANIFESTS` at `servers`): `runStore` over its
 * existing buckets. Buckets that cannot be opened (no server, no such store) are an `io` problem in the report.
 */
export const runNats = (options: {
  readonly servers: ReadonlyArray<string>
  readonly bucketPrefix?: string | undefined
  readonly requestTimeoutMs: number
  readonly onProgress?: ((progress: Progress) => void) | undefined
}): Effect.Effect<StoreReport> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const opened = yield* Effect.exit(NatsSegmentStore.make({
      servers: options.servers,
      replicas: 1,
      bucketPrefix: options.bucketPrefix,
      requestTimeoutMs: options.requestTimeoutMs,
      openOnly: true
    }).pipe(Effect.provideService(Scope.Scope, scope)))
    if (Exit.isFailure(opened)) {
      yield* Scope.close(scope, Exit.void)
      const failure = opened.cause.reasons.find((r) => r._tag === "Fail")
      const where = `nats:${options.servers.join(",")}`
      const message = failure?._tag === "Fail" ? (failure.error as { message: string }).message : "cannot open the segment store"
      return {
        ok: false,
        driver: "nats",
        partitions: [],
        segmentBytes: 0,
        problems: [{ kind: "io" as const, partition: -1, file: where, location: where, message }],
        warnings: []
      }
    }
    return yield* runStore(opened.value, { onProgress: options.onProgress }).pipe(Effect.ensuring(Scope.close(scope, Exit.void)))
  })
