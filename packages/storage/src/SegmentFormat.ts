/**
 * The on-disk format of a segment: one Parquet file (written by parquet-wasm, ZSTD) holding a sealed range of one
 * partition's events — or, for an export, any set of events. This module owns the column layout, the row order,
 * the file's key-value metadata, and the translation between events and columns; nothing else knows Parquet.
 *
 * Columns (in this order; plain Parquet types, so that any tool reads them):
 *
 *     tenant          UTF8
 *     stream          UTF8
 *     stream_version  INT64
 *     partition       INT32
 *     seq             INT64                      the event's partition sequence (gapless within a partition)
 *     event_id        UTF8
 *     type            UTF8
 *     timestamp       INT64 TIMESTAMP(MILLIS, UTC)
 *     data            UTF8   JSON text
 *     metadata        UTF8   JSON text
 *
 * Rows are sorted by (tenant, stream, stream_version), so one stream is a contiguous run of rows and the row-group
 * statistics of `tenant` and `stream` bound which streams a row group can hold: a reader of one stream skips every
 * other row group (`pruneRowGroups`; `seq` statistics narrow it further for a read of known sequences). Reads of
 * the keys alone (`decodeHeads`: everything but `data` and `metadata`) never decompress the payload columns: that is
 * what a cold boot loads. Key-value metadata: `chronos.format` (= 1), `chronos.partition`,
 * `chronos.fromSeq`, `chronos.toSeq`, `chronos.rows` (absent for exports, which span partitions).
 */
import * as arrow from "apache-arrow"
import { parquetMetadata } from "hyparquet"
import * as pw from "parquet-wasm"
import type { Event } from "@chronos/domain"

export const formatVersion = 1

export const columns = [
  "tenant",
  "stream",
  "stream_version",
  "partition",
  "seq",
  "event_id",
  "type",
  "timestamp",
  "data",
  "metadata"
] as const

/** What the file says about itself, from its key-value metadata. */
export interface SegmentHeader {
  readonly format: number | undefined
  readonly partition: number | undefined
  readonly fromSeq: number | undefined
  readonly toSeq: number | undefined
  readonly rows: number
}

/** Decoded key columns (everything but the payload), in file order. */
export interface HeadColumns {
  readonly rows: number
  readonly tenant: ReadonlyArray<string>
  readonly stream: ReadonlyArray<string>
  readonly streamVersion: ReadonlyArray<number>
  readonly partition: ReadonlyArray<number>
  readonly seq: ReadonlyArray<number>
  readonly eventId: ReadonlyArray<string>
  readonly type: ReadonlyArray<string>
  readonly timestamp: ReadonlyArray<number>
}

/** Decoded rows, column by column (row `i` of each array is one event), in file order. */
export interface SegmentColumns extends HeadColumns {
  readonly data: ReadonlyArray<string>
  readonly metadata: ReadonlyArray<string>
}

/** Statistics of one row group, as written in the file footer (what pruning decides on). */
export interface RowGroupStats {
  readonly index: number
  /** Index of the row group's first row in the file. */
  readonly firstRow: number
  readonly rows: number
  readonly tenantMin: string | undefined
  readonly tenantMax: string | undefined
  readonly streamMin: string | undefined
  readonly streamMax: string | undefined
  readonly seqMin: number | undefined
  readonly seqMax: number | undefined
  readonly timestampMin: number | undefined
  readonly timestampMax: number | undefined
}

/** The file is not a segment this module can read (truncated, not Parquet, other columns). */
export class FormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = "SegmentFormatError"
  }
}

export interface EncodeOptions {
  /** Rows per row group (`ChronosConfig.segmentRowGroupRowsMax`). */
  readonly rowGroupRowsMax: number
  /** The sealed range, for a partition segment; absent for exports. */
  readonly range?: { readonly partition: number; readonly fromSeq: number; readonly toSeq: number } | undefined
}

/** Orders events by (tenant, stream, stream version): the row order of every segment. Ids are ASCII (see `Ids`). */
export const compareEvents = (a: Event.StoredEvent, b: Event.StoredEvent): number =>
  a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 :
  a.stream < b.stream ? -1 : a.stream > b.stream ? 1 :
  a.streamVersion - b.streamVersion

/** A row as JSON text (`data` is any JSON value; `undefined` would not round-trip, so it is stored as null). */
const json = (value: unknown): string => JSON.stringify(value) ?? "null"

/**
 * A UTF-8 column built directly from its offsets and bytes: about twice as fast as `vectorFromArray`, which
 * dominates the cost of encoding a segment outside parquet-wasm.
 */
const utf8 = (values: ReadonlyArray<string>): arrow.Vector<arrow.Utf8> => {
  const n = values.length
  const offsets = new Int32Array(n + 1)
  let total = 0
  for (let i = 0; i < n; i++) {
    total += Buffer.byteLength(values[i]!, "utf8")
    offsets[i + 1] = total
  }
  const bytes = Buffer.allocUnsafe(total)
  for (let i = 0; i < n; i++) bytes.write(values[i]!, offsets[i]!, "utf8")
  return arrow.makeVector(
    arrow.makeData({ type: new arrow.Utf8(), length: n, nullCount: 0, valueOffsets: offsets, data: bytes })
  )
}

/** Writes `events` (any order; sorted here) as one Parquet file. */
export const encode = (events: ReadonlyArray<Event.StoredEvent>, options: EncodeOptions): Uint8Array => {
  if (!(Number.isInteger(options.rowGroupRowsMax) && options.rowGroupRowsMax >= 1)) {
    throw new Error(`segment rowGroupRowsMax must be a positive integer, got ${options.rowGroupRowsMax}`)
  }
  const sorted = events.slice().sort(compareEvents)
  const n = sorted.length
  const tenant = new Array<string>(n)
  const stream = new Array<string>(n)
  const version = new BigInt64Array(n)
  const partition = new Int32Array(n)
  const seq = new BigInt64Array(n)
  const eventId = new Array<string>(n)
  const type = new Array<string>(n)
  const timestamp = new Array<number>(n)
  const data = new Array<string>(n)
  const metadata = new Array<string>(n)
  for (let i = 0; i < n; i++) {
    const e = sorted[i]!
    tenant[i] = e.tenant
    stream[i] = e.stream
    version[i] = BigInt(e.streamVersion)
    partition[i] = e.partition
    seq[i] = BigInt(e.seq)
    eventId[i] = e.eventId
    type[i] = e.type
    timestamp[i] = e.timestamp
    data[i] = json(e.data)
    metadata[i] = json(e.metadata)
  }
  const table = new arrow.Table({
    tenant: utf8(tenant),
    stream: utf8(stream),
    stream_version: arrow.makeVector(version),
    partition: arrow.makeVector(partition),
    seq: arrow.makeVector(seq),
    event_id: utf8(eventId),
    type: utf8(type),
    timestamp: arrow.vectorFromArray(timestamp, new arrow.TimestampMillisecond("UTC")),
    data: utf8(data),
    metadata: utf8(metadata)
  })
  const kv = new Map<string, string>([["chronos.format", String(formatVersion)], ["chronos.rows", String(n)]])
  if (options.range !== undefined) {
    kv.set("chronos.partition", String(options.range.partition))
    kv.set("chronos.fromSeq", String(options.range.fromSeq))
    kv.set("chronos.toSeq", String(options.range.toSeq))
  }
  const props = new pw.WriterPropertiesBuilder()
    .setCompression(pw.Compression.ZSTD)
    .setMaxRowGroupSize(options.rowGroupRowsMax)
    // Chunk (row-group) statistics are what pruning reads; per-page ones would only grow the footer.
    .setStatisticsEnabled(pw.EnabledStatistics.Chunk)
    .setKeyValueMetadata(kv)
    .setCreatedBy("chronos")
    .build()
  const wasmTable = pw.Table.fromIPCStream(arrow.tableToIPC(table, "stream"))
  return pw.writeParquet(wasmTable, props)
}

// A copy through the Uint8Array constructor, not `bytes.slice()`: on a Node `Buffer` (what the NATS client returns)
// `slice` is a view, whose `.buffer` is the whole shared pool the small buffer was cut from.
const toArrayBuffer = (bytes: Uint8Array): ArrayBuffer =>
  bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes.buffer
    : new Uint8Array(bytes).buffer

const toNumber = (v: unknown): number | undefined =>
  typeof v === "bigint" ? Number(v) : typeof v === "number" ? v : v instanceof Date ? v.getTime() : undefined
const toText = (v: unknown): string | undefined =>
  typeof v === "string" ? v : v instanceof Uint8Array ? Buffer.from(v).toString("utf8") : undefined

/** Reads the footer: the header and the statistics of every row group. Throws `FormatError` if it is not a segment. */
export const inspect = (bytes: Uint8Array): { readonly header: SegmentHeader; readonly rowGroups: ReadonlyArray<RowGroupStats> } => {
  let meta: ReturnType<typeof parquetMetadata>
  try {
    meta = parquetMetadata(toArrayBuffer(bytes))
  } catch (error) {
    throw new FormatError(`not a readable Parquet footer: ${error instanceof Error ? error.message : String(error)}`)
  }
  const names = meta.schema.slice(1).map((s) => s.name)
  if (names.length !== columns.length || names.some((name, i) => name !== columns[i])) {
    throw new FormatError(`unexpected columns [${names.join(", ")}], expected [${columns.join(", ")}]`)
  }
  const kv = new Map((meta.key_value_metadata ?? []).map((e) => [e.key, e.value]))
  const kvInt = (key: string) => {
    const v = kv.get(key)
    return v === undefined ? undefined : Number(v)
  }
  const col = (rg: (typeof meta.row_groups)[number], name: string) =>
    rg.columns[columns.indexOf(name as (typeof columns)[number])]?.meta_data?.statistics
  let firstRow = 0
  const rowGroups = meta.row_groups.map((rg, index): RowGroupStats => {
    const tenant = col(rg, "tenant")
    const stream = col(rg, "stream")
    const seq = col(rg, "seq")
    const ts = col(rg, "timestamp")
    const rows = Number(rg.num_rows)
    const stats: RowGroupStats = {
      index,
      firstRow,
      rows,
      tenantMin: toText(tenant?.min_value ?? tenant?.min),
      tenantMax: toText(tenant?.max_value ?? tenant?.max),
      streamMin: toText(stream?.min_value ?? stream?.min),
      streamMax: toText(stream?.max_value ?? stream?.max),
      seqMin: toNumber(seq?.min_value ?? seq?.min),
      seqMax: toNumber(seq?.max_value ?? seq?.max),
      timestampMin: toNumber(ts?.min_value ?? ts?.min),
      timestampMax: toNumber(ts?.max_value ?? ts?.max)
    }
    firstRow += rows
    return stats
  })
  return {
    header: {
      format: kvInt("chronos.format"),
      partition: kvInt("chronos.partition"),
      fromSeq: kvInt("chronos.fromSeq"),
      toSeq: kvInt("chronos.toSeq"),
      rows: Number(meta.num_rows)
    },
    rowGroups
  }
}

/**
 * The row groups that may hold events of `(tenant, stream)`, by their statistics. Conservative: a row group
 * without statistics is kept. Rows are sorted by (tenant, stream), so a group whose tenant range is a single tenant
 * can be pruned by its stream range as well.
 */
export const pruneRowGroups = (
  rowGroups: ReadonlyArray<RowGroupStats>,
  tenant: string,
  stream?: string,
  /** Ascending sequences: keep only row groups whose `seq` range holds one of them. */
  seqs?: ReadonlyArray<number>
): ReadonlyArray<RowGroupStats> =>
  rowGroups.filter((rg) => {
    if (seqs !== undefined && rg.seqMin !== undefined && rg.seqMax !== undefined) {
      const k = firstAtOrAbove(seqs, rg.seqMin)
      if (k === seqs.length || seqs[k]! > rg.seqMax) return false
    }
    if (rg.tenantMin === undefined || rg.tenantMax === undefined) return true
    if (tenant < rg.tenantMin || tenant > rg.tenantMax) return false
    if (stream === undefined || rg.tenantMin !== rg.tenantMax) return true
    if (rg.streamMin === undefined || rg.streamMax === undefined) return true
    return stream >= rg.streamMin && stream <= rg.streamMax
  })

/** Index of the first element of the ascending `values` that is `>= x` (`values.length`: none). */
export const firstAtOrAbove = (values: ReadonlyArray<number>, x: number): number => {
  let lo = 0
  let hi = values.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (values[mid]! < x) lo = mid + 1
    else hi = mid
  }
  return lo
}

const column = (table: arrow.Table, name: string) => {
  const v = table.getChild(name)
  if (v === null) throw new FormatError(`column ${name} is missing`)
  return v
}

/** Rows `rows` (all when undefined) of a string column. */
const strings = (table: arrow.Table, name: string, rows: ReadonlyArray<number> | undefined): Array<string> => {
  const v = column(table, name)
  const n = rows === undefined ? v.length : rows.length
  const out = new Array<string>(n)
  for (let k = 0; k < n; k++) {
    const i = rows === undefined ? k : rows[k]!
    const s: unknown = v.get(i)
    if (typeof s !== "string") throw new FormatError(`column ${name} row ${i} is not a string`)
    out[k] = s
  }
  return out
}

const numbers = (table: arrow.Table, name: string, rows: ReadonlyArray<number> | undefined): Array<number> => {
  const v = column(table, name)
  const n = rows === undefined ? v.length : rows.length
  const out = new Array<number>(n)
  for (let k = 0; k < n; k++) {
    const i = rows === undefined ? k : rows[k]!
    const x = toNumber(v.get(i))
    if (x === undefined) throw new FormatError(`column ${name} row ${i} is not a number`)
    out[k] = x
  }
  return out
}

const readTable = (
  bytes: Uint8Array,
  rowGroups: ReadonlyArray<number> | undefined,
  names?: ReadonlyArray<string>
): arrow.Table => {
  try {
    const wasm = pw.readParquet(bytes, {
      ...(rowGroups === undefined ? {} : { rowGroups: [...rowGroups] }),
      ...(names === undefined ? {} : { columns: [...names] })
    })
    return arrow.tableFromIPC(wasm.intoIPCStream())
  } catch (error) {
    throw new FormatError(`cannot decode: ${error instanceof Error ? error.message : String(error)}`)
  }
}

const columnsOf = (table: arrow.Table, rows: ReadonlyArray<number> | undefined): SegmentColumns => ({
  rows: rows === undefined ? table.numRows : rows.length,
  tenant: strings(table, "tenant", rows),
  stream: strings(table, "stream", rows),
  streamVersion: numbers(table, "stream_version", rows),
  partition: numbers(table, "partition", rows),
  seq: numbers(table, "seq", rows),
  eventId: strings(table, "event_id", rows),
  type: strings(table, "type", rows),
  timestamp: numbers(table, "timestamp", rows),
  data: strings(table, "data", rows),
  metadata: strings(table, "metadata", rows)
})

const headColumnNames = columns.filter((name) => name !== "data" && name !== "metadata")

/**
 * Every row's key columns, without reading the payload columns (`data`, `metadata`) at all: their pages are never
 * decompressed. `bodies` reads the payload of some rows afterwards (the rows a caller keeps bodies for). Throws
 * `FormatError`.
 */
export const decodeHeads = (bytes: Uint8Array): {
  readonly heads: HeadColumns
  readonly bodies: (rows: ReadonlyArray<number>) => { readonly data: Array<string>; readonly metadata: Array<string> }
} => {
  const table = readTable(bytes, undefined, headColumnNames)
  const heads: HeadColumns = {
    rows: table.numRows,
    tenant: strings(table, "tenant", undefined),
    stream: strings(table, "stream", undefined),
    streamVersion: numbers(table, "stream_version", undefined),
    partition: numbers(table, "partition", undefined),
    seq: numbers(table, "seq", undefined),
    eventId: strings(table, "event_id", undefined),
    type: strings(table, "type", undefined),
    timestamp: numbers(table, "timestamp", undefined)
  }
  return {
    heads,
    bodies: (rows) => {
      if (rows.length === 0) return { data: [], metadata: [] }
      const payload = readTable(bytes, undefined, ["data", "metadata"])
      if (payload.numRows !== table.numRows) throw new FormatError(`payload columns hold ${payload.numRows} rows, not ${table.numRows}`)
      return { data: strings(payload, "data", rows), metadata: strings(payload, "metadata", rows) }
    }
  }
}

/** One row group, decompressed into Arrow columns (not JavaScript values yet): what a reader's row-group cache keeps. */
export interface DecodedRowGroup {
  readonly table: arrow.Table
  /** Bytes of its column buffers. */
  readonly byteLength: number
}

/** Decompresses row group `index`. Throws `FormatError`. */
export const decodeRowGroup = (bytes: Uint8Array, index: number): DecodedRowGroup => {
  const table = readTable(bytes, [index])
  let byteLength = 0
  for (const name of columns) byteLength += column(table, name).byteLength
  return { table, byteLength }
}

/**
 * The rows of the given row groups (in file order) whose `(tenant, stream, seq)` passes `keep`: the other rows'
 * payload columns are never converted to JavaScript values. Throws `FormatError`.
 */
export const decodeWhere = (
  bytes: Uint8Array,
  rowGroups: ReadonlyArray<number>,
  keep: (tenant: string, stream: string, seq: number) => boolean
): SegmentColumns => selectRows({ table: readTable(bytes, rowGroups), byteLength: 0 }, keep)

/** `decodeWhere` over row groups already decoded. Throws `FormatError`. */
export const selectRows = (
  group: DecodedRowGroup,
  keep: (tenant: string, stream: string, seq: number) => boolean,
  /** A cheaper test on the sequence alone, applied first (the strings of rows it rejects are never decoded). */
  seqWanted?: (seq: number) => boolean
): SegmentColumns => {
  const table = group.table
  const tenants = column(table, "tenant")
  const streams = column(table, "stream")
  const seqs = column(table, "seq")
  const rows: Array<number> = []
  for (let i = 0; i < table.numRows; i++) {
    const sq = toNumber(seqs.get(i))
    if (sq === undefined) throw new FormatError(`row ${i} has no seq`)
    if (seqWanted !== undefined && !seqWanted(sq)) continue
    const t: unknown = tenants.get(i)
    const st: unknown = streams.get(i)
    if (typeof t !== "string" || typeof st !== "string") throw new FormatError(`row ${i} has no tenant or stream`)
    if (keep(t, st, sq)) rows.push(i)
  }
  return columnsOf(table, rows)
}

/** Reads rows, all of them or only those of the given row groups (in file order). Throws `FormatError`. */
export const decode = (bytes: Uint8Array, rowGroups?: ReadonlyArray<number>): SegmentColumns =>
  columnsOf(readTable(bytes, rowGroups), undefined)

/**
 * Reads only the rows of `(tenant, stream)` in the given row groups: the other rows' payload columns are never
 * converted to JavaScript values (they dominate the cost of a decode). Throws `FormatError`.
 */
export const decodeStream = (
  bytes: Uint8Array,
  rowGroups: ReadonlyArray<number>,
  tenant: string,
  stream: string
): SegmentColumns => {
  const table = readTable(bytes, rowGroups)
  const tenants = column(table, "tenant")
  const streams = column(table, "stream")
  const rows: Array<number> = []
  for (let i = 0; i < table.numRows; i++) {
    if (streams.get(i) === stream && tenants.get(i) === tenant) rows.push(i)
  }
  return columnsOf(table, rows)
}

/** A row's payload from its JSON text. Throws `FormatError` when it is not JSON or `metadata` is not an object. */
export const parseBody = (
  dataJson: string,
  metadataJson: string,
  row: number
): { readonly data: unknown; readonly metadata: Readonly<Record<string, unknown>> } => {
  let data: unknown
  let metadata: unknown
  try {
    data = JSON.parse(dataJson)
    metadata = JSON.parse(metadataJson)
  } catch (error) {
    throw new FormatError(`row ${row}: data or metadata is not JSON (${error instanceof Error ? error.message : String(error)})`)
  }
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    throw new FormatError(`row ${row}: metadata is not a JSON object`)
  }
  return { data, metadata: metadata as Record<string, unknown> }
}

/** Row `i` as an event (parses its JSON). Throws `FormatError` when `data` or `metadata` is not JSON. */
export const eventAt = (c: SegmentColumns, i: number): Event.StoredEvent => {
  const { data, metadata } = parseBody(c.data[i]!, c.metadata[i]!, i)
  return {
    eventId: c.eventId[i]!,
    tenant: c.tenant[i]!,
    stream: c.stream[i]!,
    type: c.type[i]!,
    data,
    metadata,
    timestamp: c.timestamp[i]!,
    streamVersion: c.streamVersion[i]!,
    partition: c.partition[i]!,
    seq: c.seq[i]!
  }
}
