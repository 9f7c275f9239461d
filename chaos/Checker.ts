/**
 * The independent history checker of the fault tests. It trusts nothing the writers believe: it reads the whole
 * history of a tenant back through the HTTP API of one runner (every partition by sequence, every stream by
 * version) and checks the writers' acknowledgements and the observer's reads against it as claims:
 *
 *  1. every acknowledged event is stored exactly once (by event id), at the acknowledged stream version and the
 *     acknowledged (partition, seq) — "versions acknowledged to clients match what is stored";
 *  2. no event id appears twice anywhere, and nothing is stored that no writer ever sent;
 *  3. every stream's versions are gapless from 0, and a stream read agrees with the partition reads;
 *  4. every partition's sequences are gapless from 1 (the tenant is the only one in the store);
 *  5. nothing is visible above a watermark: every event read is at or below its partition's watermark as reported
 *     right after the read (final read and the observer's reads during the faults), and every event the observer
 *     saw during the faults is in the final history at the same place (nothing visible was later lost or moved).
 *
 * Events of batches that were never acknowledged may be stored or not (the client cannot know), but never twice.
 */
import * as Http from "./Http.ts"
import type { Ack, Observation } from "./Workload.ts"

export interface Claims {
  readonly tenant: string
  readonly partitions: number
  readonly acks: ReadonlyArray<Ack>
  /** Every event id a writer ever sent, with its stream. */
  readonly attempted: ReadonlyMap<string, string>
  readonly observations: ReadonlyArray<Observation>
}

export interface Report {
  readonly violations: ReadonlyArray<string>
  readonly stats: {
    readonly events: number
    readonly streams: number
    readonly acknowledged: number
    readonly unacknowledgedStored: number
    readonly observations: number
    /** Every violation found (the list keeps the first 1,000). */
    readonly violations: number
  }
}

interface Stored {
  readonly eventId: string
  readonly stream: string
  readonly streamVersion: number
  readonly partition: number
  readonly seq: number
}

const page = 5_000
const timeoutMs = 30_000

const getOk = async (base: string, path: string) => {
  const res = await Http.get(base, path, timeoutMs)
  if (res.status !== 200) throw new Error(`GET ${base}${path}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`)
  return res.body
}

const watermarks = async (base: string): Promise<Array<number>> =>
  ((await getOk(base, "/v1/partitions")).partitions as ReadonlyArray<{ partition: number; watermark: number }>)
    .map((p) => p.watermark)

/** Reads the history back from `base` and checks `claims` against it. Reading failures are thrown, not reported. */
export const check = async (base: string, claims: Claims): Promise<Report> => {
  const violations: Array<string> = []
  let violationCount = 0
  const violate = (message: string) => {
    violationCount++
    if (violations.length < 1_000) violations.push(message)
  }

  // ---- read every partition by sequence ----------------------------------------------------------------------
  const byId = new Map<string, Stored>()
  const byStream = new Map<string, Array<Stored>>()
  let events = 0
  for (let p = 0; p < claims.partitions; p++) {
    const seen: Array<Stored> = []
    for (let fromSeq = 1;;) {
      const body = await getOk(base, `/v1/tenants/${claims.tenant}/partitions/${p}/events?fromSeq=${fromSeq}&limit=${page}`)
      const batch = body.events as ReadonlyArray<Stored>
      seen.push(...batch)
      if (batch.length < page) break
      fromSeq = batch[batch.length - 1]!.seq + 1
    }
    // The watermark after the read: the read cannot have seen anything above the watermark at its time (≤ this).
    const wm = (await watermarks(base))[p]!
    events += seen.length
    seen.forEach((e, i) => {
      if (e.partition !== p) violate(`partition ${p} read returned an event of partition ${e.partition} (${e.eventId})`)
      if (e.seq !== i + 1) violate(`partition ${p}: sequence gap, position ${i + 1} holds seq ${e.seq}`)
      if (e.seq > wm) violate(`partition ${p}: seq ${e.seq} visible above the watermark ${wm}`)
      const twin = byId.get(e.eventId)
      if (twin !== undefined) {
        violate(`event ${e.eventId} stored twice: ${twin.partition}:${twin.seq} and ${e.partition}:${e.seq}`)
      }
      byId.set(e.eventId, e)
      let list = byStream.get(e.stream)
      if (list === undefined) byStream.set(e.stream, list = [])
      list.push(e)
      if (!claims.attempted.has(e.eventId)) violate(`event ${e.eventId} (${e.stream}) was never sent by any writer`)
      else if (claims.attempted.get(e.eventId) !== e.stream) {
        violate(`event ${e.eventId} sent to ${claims.attempted.get(e.eventId)} is stored in ${e.stream}`)
      }
    })
  }

  // ---- read every stream by version, compare with the partition view -----------------------------------------
  for (const [stream, fromPartitions] of byStream) {
    const read: Array<Stored> = []
    for (let fromVersion = 0;;) {
      const body = await getOk(base, `/v1/tenants/${claims.tenant}/streams/${stream}/events?fromVersion=${fromVersion}&limit=${page}`)
      const batch = body.events as ReadonlyArray<Stored>
      read.push(...batch)
      if (batch.length < page) break
      fromVersion = batch[batch.length - 1]!.streamVersion + 1
    }
    read.forEach((e, v) => {
      if (e.streamVersion !== v) violate(`stream ${stream}: version gap, position ${v} holds version ${e.streamVersion}`)
    })
    const ids = (xs: ReadonlyArray<Stored>) => xs.map((e) => `${e.eventId}@${e.streamVersion}`).join(",")
    const ordered = [...fromPartitions].sort((a, b) => a.streamVersion - b.streamVersion)
    if (ids(read) !== ids(ordered)) {
      violate(`stream ${stream}: the stream read (${read.length} events) differs from the partition reads (${ordered.length})`)
    }
  }

  // ---- the writers' acknowledgements -------------------------------------------------------------------------
  const acked = new Set<string>()
  for (const ack of claims.acks) {
    if (acked.has(ack.eventId)) violate(`event ${ack.eventId} acknowledged twice`)
    acked.add(ack.eventId)
    const e = byId.get(ack.eventId)
    if (e === undefined) {
      violate(`acknowledged event ${ack.eventId} (${ack.stream} v${ack.version}) is missing`)
      continue
    }
    if (e.stream !== ack.stream || e.streamVersion !== ack.version) {
      violate(`event ${ack.eventId}: acknowledged as ${ack.stream} v${ack.version}, stored as ${e.stream} v${e.streamVersion}`)
    }
    if (e.partition !== ack.partition || e.seq !== ack.seq) {
      violate(`event ${ack.eventId}: acknowledged at ${ack.partition}:${ack.seq}, stored at ${e.partition}:${e.seq}`)
    }
  }

  // ---- what the observer saw while the faults happened -------------------------------------------------------
  for (const o of claims.observations) {
    if (o.watermarkAfter !== undefined && o.seq > o.watermarkAfter) {
      violate(`observed ${o.partition}:${o.seq} (${o.eventId}) above the watermark ${o.watermarkAfter} reported after the read`)
    }
    const e = byId.get(o.eventId)
    if (e === undefined) violate(`observed event ${o.eventId} (${o.partition}:${o.seq}) is not in the final history`)
    else if (e.partition !== o.partition || e.seq !== o.seq || e.stream !== o.stream || e.streamVersion !== o.version) {
      violate(`observed event ${o.eventId} at ${o.partition}:${o.seq} ${o.stream} v${o.version}, finally at ` +
        `${e.partition}:${e.seq} ${e.stream} v${e.streamVersion}`)
    }
  }

  return {
    violations,
    stats: {
      events,
      streams: byStream.size,
      acknowledged: claims.acks.length,
      unacknowledgedStored: [...byId.keys()].filter((id) => !acked.has(id)).length,
      observations: claims.observations.length,
      violations: violationCount
    }
  }
}
