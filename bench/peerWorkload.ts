/**
 * The peers' ingestion workload, shared by the single-node (`bench/run.ts`) and cluster (`bench/cluster.ts`)
 * benchmarks: `streams` streams × `perStream` events, `writers` concurrent writers (writer w owns the streams
 * s ≡ w mod writers), each keeping up to `depth` appends in flight with at most one in flight per stream, with
 * exact expected versions (a stream's next append is sent once the previous one was acknowledged).
 *
 * A lane waiting for its stream's previous append awaits that append's promise. (It used to poll with
 * `setImmediate`, which made the load generator burn a core while 2,000 lanes spun — CPU the measured server
 * shares on this machine.)
 */
/** The workload's size: 10k streams (1k with `--quick`) × 20 events, 8 writers × 256 appends in flight. */
export const shape = (quick: boolean) => ({ streams: quick ? 1_000 : 10_000, perStream: 20, writers: 8, depth: 256 })

/** One event's data: ~200 B as JSON. */
export const payload = { text: "x".repeat(160), amount: 42, currency: "EUR" }

/** The body of round `round` of a stream: one event, the exact expected version. */
export const appendBody = (round: number, eventId?: string) => ({
  expectedVersion: round === 0 ? "no_stream" : round - 1,
  events: [{ ...(eventId === undefined ? {} : { eventId }), type: "Deposited", data: payload }]
})

export interface Options {
  readonly streams: number
  readonly perStream: number
  readonly writers: number
  readonly depth: number
  /** Sends round `round` of stream `stream` (expected version `round - 1`, or no stream for round 0). */
  readonly send: (writer: number, stream: number, round: number) => Promise<void>
}

export const run = async (options: Options): Promise<{ readonly events: number; readonly seconds: number; readonly eventsPerSec: number }> => {
  const t0 = performance.now()
  await Promise.all(Array.from({ length: options.writers }, async (_, w) => {
    const mine: Array<number> = []
    for (let s = w; s < options.streams; s += options.writers) mine.push(s)
    // The acknowledgement of each stream's latest append taken by a lane.
    const last = new Map<number, Promise<void>>()
    let cursor = 0
    const total = mine.length * options.perStream
    const lane = async () => {
      while (cursor < total) {
        const k = cursor++
        const s = mine[k % mine.length]!
        const round = Math.floor(k / mine.length)
        const previous = last.get(s)
        const sent = (previous ?? Promise.resolve()).then(() => options.send(w, s, round))
        last.set(s, sent)
        await sent
      }
    }
    await Promise.all(Array.from({ length: Math.min(options.depth, mine.length) }, lane))
  }))
  const seconds = (performance.now() - t0) / 1_000
  const events = options.streams * options.perStream
  return { events, seconds: +seconds.toFixed(2), eventsPerSec: Math.round(events / seconds) }
}
