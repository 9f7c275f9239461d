/**
 * A commit: the unit the partition writes to its log. One commit holds many events (group commit), all of one
 * partition, with consecutive sequences starting at `firstSeq` and one server timestamp. The body encoding is part
 * of the storage format (file log records and JetStream messages carry it unchanged).
 *
 * Body: UTF-8 JSON `{"v":1,"p":partition,"s":firstSeq,"t":timestampMs,"e":[[eventId,tenant,stream,type,version,data,metadata],…]}`.
 * Integrity: CRC32C of the body travels beside it (record header in the file log, `Chronos-Crc32c` header in JetStream).
 */
import { crc32c } from "./internal/crc32c.ts"

export interface CommitEvent {
  readonly eventId: string
  readonly tenant: string
  readonly stream: string
  readonly type: string
  readonly streamVersion: number
  readonly data: unknown
  readonly metadata: Readonly<Record<string, unknown>>
}

export interface Commit {
  readonly partition: number
  /** Sequence of the first event; the commit covers `[firstSeq, firstSeq + events.length - 1]`. */
  readonly firstSeq: number
  /** Commit time, epoch ms; never below the previous commit's of the same partition. */
  readonly timestamp: number
  readonly events: ReadonlyArray<CommitEvent>
  /**
   * The events already encoded as body rows (same order), when the writer has them: the gateway serializes each
   * event's data once to measure it, and the body reuses that text instead of serializing everything again.
   */
  readonly rows?: ReadonlyArray<string> | undefined
}

export const formatVersion = 1

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** The last sequence a commit covers. */
export const lastSeq = (commit: Commit): number => commit.firstSeq + commit.events.length - 1

export const encodeBody = (commit: Commit): Uint8Array => {
  const rows = commit.rows ?? commit.events.map(encodeRow)
  return encoder.encode(
    `{"v":${formatVersion},"p":${commit.partition},"s":${commit.firstSeq},"t":${commit.timestamp},"e":[${rows.join(",")}]}`
  )
}

/** One event as a body row: `[eventId,tenant,stream,type,version,data,metadata]`. */
export const encodeRow = (e: CommitEvent): string =>
  JSON.stringify([e.eventId, e.tenant, e.stream, e.type, e.streamVersion, e.data, e.metadata])

/**
 * The same row from JSON already produced for `data` and `metadata`. Identifiers are validated to characters that
 * need no JSON escaping (see `Ids`), which is what makes plain concatenation exact.
 */
export const encodeRowFrom = (
  eventId: string,
  tenant: string,
  stream: string,
  type: string,
  streamVersion: number,
  dataJson: string,
  metadataJson: string
): string => `["${eventId}","${tenant}","${stream}","${type}",${streamVersion},${dataJson},${metadataJson}]`

/**
 * Decodes a body written by `encodeBody`. Throws on anything else: callers verify the checksum first, so a body
 * that passes its CRC but does not decode is a broken invariant (a bug or an incompatible writer), not bad input.
 */
export const decodeBody = (bytes: Uint8Array): Commit => {
  const raw = JSON.parse(decoder.decode(bytes)) as {
    v: number
    p: number
    s: number
    t: number
    e: Array<[string, string, string, string, number, unknown, Record<string, unknown>]>
  }
  if (raw.v !== formatVersion) throw new Error(`unsupported commit format version ${raw.v}`)
  const events: Array<CommitEvent> = raw.e.map(([eventId, tenant, stream, type, streamVersion, data, metadata]) => ({
    eventId,
    tenant,
    stream,
    type,
    streamVersion,
    data,
    metadata
  }))
  return { partition: raw.p, firstSeq: raw.s, timestamp: raw.t, events }
}

export const checksum = (body: Uint8Array): number => crc32c(body)
