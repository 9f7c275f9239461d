/**
 * The manifest of one partition's cold tier: the ordered list of its segments with their sequence ranges, row
 * counts and SHA-256. It is the only truth about which segments exist: a segment file not in the manifest is not
 * served (an orphan of a seal that crashed before the manifest was written), and a log is truncated only below what
 * the manifest lists. This module owns the manifest's schema and its invariants:
 *  - segments are contiguous from seq 1: the first starts at 1, each next one at the previous `toSeq + 1`;
 *  - every segment holds exactly one row per sequence of its range (`rows = toSeq - fromSeq + 1`): compaction
 *    erases payloads but keeps positions (see `Retention`), so replay stays gapless.
 *
 * Stored as JSON (`MANIFEST.json` beside the segments in embedded mode), written atomically by the `SegmentStore`.
 */
import { Schema } from "effect"

export const formatVersion = 1

export const SegmentEntry = Schema.Struct({
  /** File name within the partition's segment directory (or object name within its prefix). */
  file: Schema.String,
  fromSeq: Schema.Int,
  toSeq: Schema.Int,
  rows: Schema.Int,
  bytes: Schema.Int,
  /** SHA-256 of the whole file, lowercase hex: verified before any byte of the segment is served. */
  sha256: Schema.String,
  minTimestampMs: Schema.Number,
  maxTimestampMs: Schema.Number,
  createdAtMs: Schema.Number,
  /** Rows whose payload compaction erased (retention, hard deletion); 0 or absent for a sealed segment. */
  erasedRows: Schema.optionalKey(Schema.Int)
})
export type SegmentEntry = typeof SegmentEntry.Type

export const Manifest = Schema.Struct({
  formatVersion: Schema.Literal(formatVersion),
  partition: Schema.Int,
  segments: Schema.Array(SegmentEntry)
})
export type Manifest = typeof Manifest.Type

export const empty = (partition: number): Manifest => ({ formatVersion, partition, segments: [] })

/** The last sealed sequence (0: nothing sealed). */
export const sealedThrough = (m: Manifest): number => m.segments[m.segments.length - 1]?.toSeq ?? 0

const pad = (n: number) => String(n).padStart(20, "0")

/** `<fromSeq>-<toSeq>.parquet`, zero-padded so that names sort by range; `generation` > 0 marks a compacted copy. */
export const fileName = (fromSeq: number, toSeq: number, generation = 0): string =>
  generation === 0 ? `${pad(fromSeq)}-${pad(toSeq)}.parquet` : `${pad(fromSeq)}-${pad(toSeq)}.c${generation}.parquet`

export const fileNamePattern = /^(\d{20})-(\d{20})(?:\.c(\d+))?\.parquet$/

/** Problems with the manifest's own invariants (empty when it is sound). */
export const check = (m: Manifest): Array<string> => {
  const problems: Array<string> = []
  let expected = 1
  for (const s of m.segments) {
    if (s.fromSeq !== expected) problems.push(`${s.file}: starts at seq ${s.fromSeq}, expected ${expected}`)
    if (s.toSeq < s.fromSeq) problems.push(`${s.file}: empty range [${s.fromSeq}, ${s.toSeq}]`)
    if (s.rows !== s.toSeq - s.fromSeq + 1) {
      problems.push(`${s.file}: ${s.rows} rows for the ${s.toSeq - s.fromSeq + 1} sequences of [${s.fromSeq}, ${s.toSeq}]`)
    }
    if (!/^[0-9a-f]{64}$/.test(s.sha256)) problems.push(`${s.file}: sha256 is not 64 hex digits`)
    expected = s.toSeq + 1
  }
  return problems
}

/** The manifest with `entry` appended. Precondition: the entry continues the sealed range. */
export const withSegment = (m: Manifest, entry: SegmentEntry): Manifest => {
  if (entry.fromSeq !== sealedThrough(m) + 1 || entry.rows !== entry.toSeq - entry.fromSeq + 1) {
    throw new Error(
      `manifest of partition ${m.partition}: segment [${entry.fromSeq}, ${entry.toSeq}] x${entry.rows} does not ` +
        `continue the sealed range ending at ${sealedThrough(m)}`
    )
  }
  return { ...m, segments: [...m.segments, entry] }
}

/** The manifest with the segment covering `entry`'s range replaced by `entry` (compaction). */
export const withReplaced = (m: Manifest, entry: SegmentEntry): Manifest => {
  const i = m.segments.findIndex((s) => s.fromSeq === entry.fromSeq && s.toSeq === entry.toSeq)
  if (i < 0) throw new Error(`manifest of partition ${m.partition}: no segment [${entry.fromSeq}, ${entry.toSeq}]`)
  return { ...m, segments: m.segments.map((s, k) => (k === i ? entry : s)) }
}

export const encode = (m: Manifest): string => JSON.stringify(m, null, 1) + "\n"

const decodeJson = Schema.decodeUnknownExit(Schema.fromJsonString(Manifest))

/** Parses a manifest; `undefined` with the reason when the text is not one. */
export const decode = (text: string): { readonly manifest: Manifest } | { readonly problem: string } => {
  const exit = decodeJson(text)
  return exit._tag === "Success" ? { manifest: exit.value } : { problem: `not a manifest: ${String(exit.cause).slice(0, 300)}` }
}
