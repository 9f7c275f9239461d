/**
 * The load of the fault tests: concurrent writers with expected versions, and an observer that reads while faults
 * happen. Everything they see is recorded as *claims* for the independent `Checker`, which verifies them against
 * what the cluster serves afterwards; the workload itself asserts nothing about the store.
 *
 * Writers: each is the only writer of its streams, so it always knows the version it expects. It appends batches of
 * 1–3 events with fresh event ids and an exact expected version, through the HTTP gateway of a runner (writer `w`
 * starts at runner `w mod n` and moves to the next runner after a failure). A batch is retried — with the SAME ids
 * and the SAME expected version — after a 503 or a transport failure (refused, reset, timed out: a runner being
 * killed or paused) until it is acknowledged, so an attempt that committed but whose answer was lost is answered by
 * the retry instead of written twice. Any other answer (a 409 above all) is recorded as an anomaly.
 *
 * Observer: reads the tail of a random partition through a random runner, between two reads of that partition's
 * owner and watermark, and records every event it saw with the watermark read after it (when one owner answered
 * both). The checker verifies that each one is in the
 * final history at the same place (nothing observed was later lost or moved) and at or below that watermark.
 */
import { randomUUID } from "node:crypto"
import * as Http from "./Http.ts"

export interface Ack {
  readonly eventId: string
  readonly stream: string
  readonly version: number
  readonly partition: number
  readonly seq: number
}

export interface Observation {
  readonly eventId: string
  readonly stream: string
  readonly version: number
  readonly partition: number
  readonly seq: number
  /**
   * The partition's watermark reported right after the read by the owner that also answered right before it;
   * undefined when the owner changed in between (or a status did not answer).
   */
  readonly watermarkAfter: number | undefined
}

export interface Anomaly {
  readonly writer: number
  readonly stream: string
  readonly status: number
  readonly body: unknown
}

export interface Options {
  /** Base URLs of the runners' gateways (dead ones are fine: writers move on). */
  readonly urls: () => ReadonlyArray<string>
  readonly tenant: string
  readonly writers: number
  readonly streamsPerWriter: number
  /** Client-side timeout of one HTTP request, ms (above the server's appendTimeoutMs, so a slow append is not cut). */
  readonly requestTimeoutMs: number
  /** Pause after a failed attempt, ms. */
  readonly retryPauseMs: number
}

/** Counters of one phase of a run (reset by `phase`). */
export interface PhaseStats {
  readonly name: string
  acked: number
  unavailable: number
  transportErrors: number
  /** Longest time any writer went without an acknowledgement, ms. */
  maxStallMs: number
}

export const start = (options: Options) => {
  const acks: Array<Ack> = []
  /** Every event id ever sent, with its stream: what may exist in the store. */
  const attempted = new Map<string, string>()
  /** Ids of batches that were still unacknowledged when the writers stopped (may or may not be stored). */
  const inDoubt = new Set<string>()
  const anomalies: Array<Anomaly> = []
  const observations: Array<Observation> = []
  const phases: Array<PhaseStats> = []
  let current: PhaseStats = { name: "start", acked: 0, unavailable: 0, transportErrors: 0, maxStallMs: 0 }
  phases.push(current)
  let stopping = false
  const lastAck = new Array<number>(options.writers).fill(performance.now())

  const noteStall = (w: number) => {
    const stall = performance.now() - lastAck[w]!
    if (stall > current.maxStallMs) current.maxStallMs = stall
  }

  const writer = async (w: number) => {
    const versions = new Map<string, number>()
    for (let i = 0; !stopping; i++) {
      const stream = `w${w}-s${i % options.streamsPerWriter}`
      const version = versions.get(stream) ?? -1
      const events = Array.from({ length: 1 + (i % 3) }, (_, k) => ({
        eventId: randomUUID(),
        type: "Written",
        data: { w, i, k }
      }))
      for (const e of events) attempted.set(e.eventId, stream)
      const body = { expectedVersion: version === -1 ? "no_stream" : version, events }
      const path = `/v1/tenants/${options.tenant}/streams/${stream}/events`
      let done = false
      for (let attempt = 0; !done; attempt++) {
        const urls = options.urls()
        const url = urls[(w + attempt) % urls.length]!
        let res: Http.Response
        try {
          res = await Http.post(url, path, body, options.requestTimeoutMs)
        } catch {
          current.transportErrors++
          noteStall(w)
          if (stopping && attempt > 50) break
          await Http.sleep(options.retryPauseMs)
          continue
        }
        if (res.status === 200) {
          const r = res.body as { firstVersion: number; positions: ReadonlyArray<{ partition: number; seq: number }> }
          events.forEach((e, k) =>
            acks.push({
              eventId: e.eventId,
              stream,
              version: r.firstVersion + k,
              partition: r.positions[k]!.partition,
              seq: r.positions[k]!.seq
            })
          )
          versions.set(stream, r.firstVersion + events.length - 1)
          noteStall(w)
          lastAck[w] = performance.now()
          current.acked += events.length
          done = true
        } else if (res.status === 503) {
          current.unavailable++
          noteStall(w)
          if (stopping && attempt > 50) break
          await Http.sleep(options.retryPauseMs)
        } else {
          anomalies.push({ writer: w, stream, status: res.status, body: res.body })
          // The stream's history is now unknown to this writer: leave it alone from here on.
          versions.set(stream, Number.NaN)
          done = true
        }
      }
      if (!done) for (const e of events) inDoubt.add(e.eventId)
      if (Number.isNaN(versions.get(stream))) return
    }
  }

  const partitionStatus = async (url: string, p: number) => {
    const res = await Http.get(url, "/v1/partitions", 5_000).catch(() => undefined)
    return res?.status === 200
      ? (res.body.partitions as ReadonlyArray<{ owner: string; watermark: number }>)[p]
      : undefined
  }

  const observer = async (partitions: number) => {
    const lastSeq = new Array<number>(partitions).fill(0)
    while (!stopping) {
      const urls = options.urls()
      const url = urls[Math.floor(Math.random() * urls.length)]!
      const p = Math.floor(Math.random() * partitions)
      const fromSeq = Math.max(1, lastSeq[p]! - 50)
      try {
        // The partition's owner and watermark before and after the read, as this runner sees them. The watermark is
        // only a bound for the read when one owner answered both (ownership moves during the faults, and a runner
        // that was frozen answers from its stale state until it notices it lost the partition).
        const before = await partitionStatus(url, p)
        const read = await Http.get(url, `/v1/tenants/${options.tenant}/partitions/${p}/events?fromSeq=${fromSeq}&limit=500`, 5_000)
        if (read.status !== 200) continue
        const after = await partitionStatus(url, p)
        const watermark = before !== undefined && after !== undefined && before.owner === after.owner
          ? after.watermark
          : undefined
        for (const e of read.body.events as ReadonlyArray<any>) {
          observations.push({
            eventId: e.eventId,
            stream: e.stream,
            version: e.streamVersion,
            partition: e.partition,
            seq: e.seq,
            watermarkAfter: watermark
          })
          if (e.seq > lastSeq[p]!) lastSeq[p] = e.seq
        }
      } catch {
        // a runner being killed or paused: try another
      }
      await Http.sleep(20)
    }
  }

  let running: Promise<unknown> = Promise.resolve()
  return {
    acks,
    attempted,
    inDoubt,
    anomalies,
    observations,
    phases,
    /** Starts the writers and the observer. */
    run: (partitions: number) => {
      running = Promise.all([
        ...Array.from({ length: options.writers }, (_, w) => writer(w)),
        observer(partitions)
      ])
    },
    /** Starts a new phase of counters (e.g. when a fault is injected). */
    phase: (name: string) => {
      for (let w = 0; w < options.writers; w++) noteStall(w)
      current = { name, acked: 0, unavailable: 0, transportErrors: 0, maxStallMs: 0 }
      phases.push(current)
    },
    /** Stops the writers after their current batch (given up after many failed attempts: then in doubt). */
    stop: async () => {
      stopping = true
      await running
    }
  }
}

export type Workload = ReturnType<typeof start>
