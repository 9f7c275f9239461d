/**
 * `npm run bench`: the peer workload on this machine, every figure measured in the same run, so that ratios are
 * meaningful even on a busy, 2-core machine. Prints JSON and rewrites `docs/BENCHMARKS.md`.
 *
 * Workload (the peers' event-store benchmark): 10k streams × 20 events of ~200 B, 8 concurrent writers with expected
 * versions, each pipelining up to 256 appends with one append in flight per stream; single-stream reads; reads by
 * type; a 1,000-event batch append. Every acknowledgement is durable: fsync before ack (file driver) and
 * `sync_interval: always` (JetStream).
 *
 * Baseline: raw JetStream on the same server, one publish per event, 256 publishes in flight.
 *
 * Flags: `--quick` (a tenth of the events, for a smoke run), `--no-write` (do not touch docs/BENCHMARKS.md),
 * `--cluster` (the R3 cluster benchmark of `bench/cluster.ts` instead).
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import http from "node:http"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Exit, Layer } from "effect"
import { connect } from "@nats-io/transport-node"
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import { freePorts, startNatsServer } from "../test/support/NatsServer.ts"
import * as PeerWorkload from "./peerWorkload.ts"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const args = new Set(process.argv.slice(2))
const quick = args.has("--quick")
const { depth: DEPTH, perStream: PER_STREAM, streams: STREAMS, writers: WRITERS } = PeerWorkload.shape(quick)
const payload = PeerWorkload.payload
const BASELINE_EVENTS = quick ? 5_000 : 20_000

const results: Record<string, unknown> = {}
const log = (line: string) => process.stderr.write(`${line}\n`)

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const latencySummary = (samplesNs: Array<number>) => {
  const sorted = samplesNs.sort((a, b) => a - b)
  return {
    samples: sorted.length,
    p50_us: +(percentile(sorted, 50) / 1_000).toFixed(2),
    p99_us: +(percentile(sorted, 99) / 1_000).toFixed(2),
    max_us: +(sorted[sorted.length - 1]! / 1_000).toFixed(2)
  }
}

// ---- raw JetStream baseline -------------------------------------------------------------------------------------
const rawJetStream = async (url: string) => {
  const nc = await connect({ servers: url })
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: "BASELINE", subjects: ["baseline.>"], storage: StorageType.File, num_replicas: 1 })
  const js = jetstream(nc)
  const body = new TextEncoder().encode(JSON.stringify({ type: "E", data: payload }))
  const t0 = performance.now()
  let next = 0
  const worker = async () => {
    while (next < BASELINE_EVENTS) {
      const i = next++
      await js.publish(`baseline.s${i % STREAMS}`, body)
    }
  }
  await Promise.all(Array.from({ length: DEPTH }, worker))
  const seconds = (performance.now() - t0) / 1_000
  await jsm.streams.delete("BASELINE")
  await nc.drain()
  return { events: BASELINE_EVENTS, seconds: +seconds.toFixed(2), eventsPerSec: Math.round(BASELINE_EVENTS / seconds) }
}

// ---- embedded ---------------------------------------------------------------------------------------------------
type EngineService = typeof Engine.Service

/** The peer workload through `Engine.appendMany`: each writer submits up to DEPTH appends (distinct streams) at once. */
const peerWorkloadEmbedded = (engine: EngineService, tenant: string) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    yield* Effect.forEach(
      Array.from({ length: WRITERS }, (_, w) => w),
      (w) =>
        Effect.gen(function*() {
          const mine: Array<number> = []
          for (let s = w; s < STREAMS; s += WRITERS) mine.push(s)
          for (let round = 0; round < PER_STREAM; round++) {
            for (let i = 0; i < mine.length; i += DEPTH) {
              const exits = yield* engine.appendMany(mine.slice(i, i + DEPTH).map((s) => ({
                tenant,
                stream: `s-${s}`,
                request: {
                  expectedVersion: round === 0 ? ("no_stream" as const) : round - 1,
                  events: [{ type: "Deposited" as never, data: payload }]
                }
              })))
              for (const e of exits) if (!Exit.isSuccess(e)) return yield* Effect.die(new Error(`append failed: ${e}`))
            }
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    const seconds = (performance.now() - t0) / 1_000
    const events = STREAMS * PER_STREAM
    return { events, seconds: +seconds.toFixed(2), eventsPerSec: Math.round(events / seconds) }
  })

const hotReads = (engine: EngineService, tenant: string) =>
  Effect.gen(function*() {
    const samples: Array<number> = []
    for (let i = 0; i < 20_000; i++) {
      const stream = `s-${i % STREAMS}`
      const t0 = process.hrtime.bigint()
      const events = yield* engine.readStream(tenant, stream, {})
      samples.push(Number(process.hrtime.bigint() - t0))
      if (events.length !== PER_STREAM) return yield* Effect.die(new Error(`read ${events.length} events`))
    }
    return latencySummary(samples.slice(2_000))
  })

const embedded = (driver: "file" | "jetstream", natsUrl: string) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "chronos-bench-"))
  const logLayer = driver === "file"
    ? EventLog.layerFile({ dataDir })
    : (EventLog as unknown as { layerJetStream: (o: object) => Layer.Layer<EventLog> }).layerJetStream({
      servers: natsUrl,
      streamPrefix: `BENCH${process.pid}`
    })
  const layer = Engine.layerLocal.pipe(Layer.provide(logLayer), Layer.provide(ChronosConfig.layer({ dataDir })))
  return Effect.gen(function*() {
    const engine = yield* Engine
    log(`» embedded ${driver}: ingest ${STREAMS * PER_STREAM} events`)
    const ingest = yield* peerWorkloadEmbedded(engine, "bench")
    log(`  ${ingest.eventsPerSec} events/s`)
    const reads = yield* hotReads(engine, "bench")
    log(`  hot read p50 ${reads.p50_us} µs, p99 ${reads.p99_us} µs`)
    return { ingest, hotStreamRead: reads }
  }).pipe(Effect.provide(layer), Effect.scoped, Effect.ensuring(Effect.sync(() => rmSync(dataDir, { recursive: true, force: true }))))
}

// ---- HTTP ---------------------------------------------------------------------------------------------------------
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

const request = (port: number, method: string, urlPath: string, body?: unknown) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path: urlPath,
        agent,
        headers: data === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(data) }
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
        res.on("error", reject)
      }
    )
    req.on("error", reject)
    req.end(data)
  })

const startServer = async (dataDir: string, port: number) => {
  const child = spawn(process.execPath, [path.join(root, "packages/server/src/main.ts"), "--log", "file", "--data-dir", dataDir, "--port", String(port)], {
    stdio: ["ignore", "ignore", "inherit"]
  })
  for (let i = 0; i < 200; i++) {
    const ok = await request(port, "GET", "/health").then((r) => r.status === 200, () => false)
    if (ok) return child
    await new Promise((r) => setTimeout(r, 50))
  }
  child.kill("SIGKILL")
  throw new Error("server did not become healthy")
}

const overHttp = async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "chronos-bench-http-"))
  const [port] = await freePorts(1)
  const server = await startServer(dataDir, port!)
  try {
    log(`» HTTP (file driver): ingest ${STREAMS * PER_STREAM} events, ${WRITERS} writers × ${DEPTH} in flight`)
    const ingest = await PeerWorkload.run({
      streams: STREAMS,
      perStream: PER_STREAM,
      writers: WRITERS,
      depth: DEPTH,
      send: async (_writer, s, round) => {
        const res = await request(port!, "POST", `/v1/tenants/bench/streams/s-${s}/events`, PeerWorkload.appendBody(round))
        if (res.status !== 200) throw new Error(`append ${res.status} ${res.body}`)
      }
    })
    log(`  ${ingest.eventsPerSec} events/s`)

    log("» HTTP: 1,000-event batch appends")
    const batches = quick ? 10 : 50
    const batchBody = { events: Array.from({ length: 1_000 }, () => ({ type: "Deposited", data: payload })) }
    const tb = performance.now()
    for (let i = 0; i < batches; i++) {
      const res = await request(port!, "POST", `/v1/tenants/bench/streams/batch-${i}/events`, batchBody)
      if (res.status !== 200) throw new Error(`batch append ${res.status} ${res.body.slice(0, 200)}`)
    }
    const batchSeconds = (performance.now() - tb) / 1_000
    const batch = { batches, eventsPerBatch: 1_000, eventsPerSec: Math.round((batches * 1_000) / batchSeconds), msPerBatch: +((batchSeconds * 1_000) / batches).toFixed(2) }
    log(`  ${batch.eventsPerSec} events/s (${batch.msPerBatch} ms per batch)`)

    log("» HTTP: single-stream reads (20 events), one at a time")
    const samples: Array<number> = []
    for (let i = 0; i < (quick ? 2_000 : 10_000); i++) {
      const t = process.hrtime.bigint()
      const res = await request(port!, "GET", `/v1/tenants/bench/streams/s-${i % STREAMS}/events`)
      samples.push(Number(process.hrtime.bigint() - t))
      if (res.status !== 200) throw new Error(`read ${res.status}`)
    }
    const streamRead = latencySummary(samples.slice(500))
    log(`  p50 ${streamRead.p50_us} µs, p99 ${streamRead.p99_us} µs`)

    log("» HTTP: reads by type (100 events of one type across 32 partitions)")
    const typeSamples: Array<number> = []
    for (let i = 0; i < (quick ? 200 : 1_000); i++) {
      const t = process.hrtime.bigint()
      const res = await request(port!, "GET", `/v1/tenants/bench/events?types=Deposited&limit=100`)
      typeSamples.push(Number(process.hrtime.bigint() - t))
      if (res.status !== 200) throw new Error(`query ${res.status}`)
    }
    const byType = latencySummary(typeSamples.slice(50))
    log(`  p50 ${byType.p50_us} µs, p99 ${byType.p99_us} µs`)
    return { ingest, batch, streamRead, byType }
  } finally {
    server.kill("SIGTERM")
    rmSync(dataDir, { recursive: true, force: true })
  }
}

// ---- main ---------------------------------------------------------------------------------------------------------
const main = async () => {
  // `--cluster`: the R3 cluster benchmark instead (bench/cluster.ts), which writes only its own section.
  if (args.has("--cluster")) return (await import("./cluster.ts")).main()
  const nats = await startNatsServer({ syncAlways: true })
  try {
    log(`» raw JetStream baseline: ${BASELINE_EVENTS} events, one publish each, ${DEPTH} in flight`)
    results.rawJetStream = await rawJetStream(nats.url)
    log(`  ${(results.rawJetStream as { eventsPerSec: number }).eventsPerSec} events/s`)
    results.embeddedFile = await Effect.runPromise(embedded("file", nats.url))
    results.embeddedJetStream = await Effect.runPromise(embedded("jetstream", nats.url))
    results.http = await overHttp()
  } finally {
    await nats.stop()
  }
  const baseline = (results.rawJetStream as { eventsPerSec: number }).eventsPerSec
  const ratio = (x: { ingest: { eventsPerSec: number } }) => +(x.ingest.eventsPerSec / baseline).toFixed(1)
  results.ratios = {
    httpFileVsRawJetStream: ratio(results.http as never),
    embeddedFileVsRawJetStream: ratio(results.embeddedFile as never),
    embeddedJetStreamVsRawJetStream: ratio(results.embeddedJetStream as never),
    httpFileVsEmmettPostgres: +((results.http as { ingest: { eventsPerSec: number } }).ingest.eventsPerSec / 900).toFixed(1)
  }
  results.machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, loadavg: os.loadavg().map((l) => +l.toFixed(2)) }
  results.quick = quick
  console.log(JSON.stringify(results, null, 2))
  if (!args.has("--no-write") && !quick) {
    // Keeps the cluster section (`npm run bench -- --cluster`), which this run does not measure.
    const file = path.join(root, "docs", "BENCHMARKS.md")
    const { currentSection, sectionOf } = await import("./cluster.ts")
    const cluster = currentSection(file)
    // The hand-written analysis of what limits the figures is kept too (it is updated by whoever re-reads them).
    const notes = sectionOf(file, notesBegin, notesEnd)
    writeFileSync(file, report(results, notes) + (cluster === "" ? "" : `\n${cluster}`))
  }
  agent.destroy()
}

const notesBegin = "<!-- notes: begin (written by hand; kept by bench/run.ts) -->"
const notesEnd = "<!-- notes: end -->"

const report = (r: Record<string, any>, notes: string) => `# Chronos benchmarks

Generated by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}; every figure below comes from the same run.

## Method

- Machine: ${r.machine.cpus} cores (${r.machine.cpu}), ${r.machine.memoryGiB} GiB, Node ${r.machine.node}; the load
  generator, the server and nats-server share the same 2 cores. Load average at the end: ${r.machine.loadavg.join(", ")}.
- Workload (the peers'): ${STREAMS.toLocaleString("en")} streams × ${PER_STREAM} events of ~200 B, ${WRITERS} concurrent
  writers with expected versions, each pipelining up to ${DEPTH} appends with one append in flight per stream.
- Durability: every acknowledgement is durable — the file driver fsyncs (fdatasync) before acknowledging; nats-server
  runs with \`sync_interval: always\`.
- Baseline, measured in the same run on the same nats-server: raw JetStream, one publish per event, ${DEPTH} in flight.
- Emmett-on-PostgreSQL's ~0.9k events/s for this workload is the figure measured earlier on this machine (shared/docs),
  not re-measured here.

## Results

| what | result |
|---|---|
| raw JetStream baseline (one publish per event) | ${r.rawJetStream.eventsPerSec.toLocaleString("en")} events/s |
| **HTTP**, file driver, peer workload | ${r.http.ingest.eventsPerSec.toLocaleString("en")} events/s (${r.ratios.httpFileVsRawJetStream}× raw JetStream, ${r.ratios.httpFileVsEmmettPostgres}× Emmett/PostgreSQL) |
| HTTP, 1,000-event batch append | ${r.http.batch.eventsPerSec.toLocaleString("en")} events/s (${r.http.batch.msPerBatch} ms per batch) |
| HTTP, single-stream read (20 events) | p50 ${r.http.streamRead.p50_us} µs, p99 ${r.http.streamRead.p99_us} µs |
| HTTP, read by type (100 events, scatter-gather over 32 partitions) | p50 ${r.http.byType.p50_us} µs, p99 ${r.http.byType.p99_us} µs |
| **embedded**, file driver, peer workload | ${r.embeddedFile.ingest.eventsPerSec.toLocaleString("en")} events/s (${r.ratios.embeddedFileVsRawJetStream}× raw JetStream) |
| embedded, JetStream driver (R1), peer workload | ${r.embeddedJetStream.ingest.eventsPerSec.toLocaleString("en")} events/s (${r.ratios.embeddedJetStreamVsRawJetStream}× raw JetStream) |
| embedded hot read, one stream (20 events) | p50 ${r.embeddedFile.hotStreamRead.p50_us} µs, p99 ${r.embeddedFile.hotStreamRead.p99_us} µs |

Subscriptions, projections, search, forks, the cold tier and the partition logs on their own are measured by
standalone scripts: [BENCHMARKS-components.md](BENCHMARKS-components.md).

${notes === "" ? `${notesBegin}\n${notesEnd}\n` : notes}
## Raw output

\`\`\`json
${JSON.stringify(r, null, 2)}
\`\`\`
`

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
