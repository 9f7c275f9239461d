/**
 * `node bench/storage.ts [--quick] [--driver local|nats] [--replicas 1|3]`: the cold tier on this machine, printed
 * as one JSON object on stdout (progress on stderr). Standalone: it does not touch `docs/BENCHMARKS.md` or
 * `bench/run.ts`.
 *
 * Drivers: `local` (default) — plain files under a temp dir, as in embedded mode; `nats` — the cluster driver (NATS
 * Object Store for segments, KV for the manifest) on a nats-server this benchmark starts (`--replicas 3`: a 3-node
 * cluster on loopback with R3 buckets), with `sync_interval: always` like the test harness: every chunk fsync'd.
 *
 * Workload: the peers' event shape (~200 B JSON payload of prose-like text, metadata with a correlation id), 10k
 * streams × 20 events (`--quick`: 1k × 20) in one partition, sealed into segments of 100k events with the default
 * row groups (`segmentRowGroupRowsMax`; `--row-group-rows N` to try another size).
 *
 * Measured:
 *  - segment write: encode (Arrow + parquet-wasm, ZSTD) + SHA-256 + durable write (fsync + rename) + manifest, as
 *    events/s and MB/s of input (the events' JSON) and of Parquet written;
 *  - compression: Parquet bytes against the events' JSON and against the file log's commit bodies for them;
 *  - cold read of one stream: `SegmentReader.readStream` with row-group pruning — cold (cache dropped: file read,
 *    SHA-256 of each segment, footer, pruned row groups decoded) and warm (segments cached, pruned decode only);
 *    and the same read without pruning (every row group decoded) for comparison;
 *  - cold boot: `SegmentReader.replay` of the whole partition (verify + decode of the key columns, as heads), events/s;
 *  - through the engine (an embedded store, one partition, `--driver local` only): heap bytes per event with every
 *    body in memory (hot) and after a seal (bodies dropped, heads kept), measured after full GCs; and the latency of
 *    one stream's read whose events are all sealed (bodies fetched from the segments): cache miss (segment read,
 *    SHA-256, pruned decode) and cache hit (decoded row groups cached); and a catch-up scan of the whole sealed
 *    partition in pages of 1,000 events (`follow`, as subscriptions and indexers read), events/s.
 */
import { Clock, Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { defaults } from "@chronos/config"
import { Event } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { ColdTier } from "../packages/storage/src/ColdTier.ts"
import * as Embedded from "../packages/storage/src/Embedded.ts"
import * as Commit from "@chronos/engine/Commit"
import * as Manifest from "../packages/storage/src/Manifest.ts"
import * as SegmentFormat from "../packages/storage/src/SegmentFormat.ts"
import * as SegmentReader from "../packages/storage/src/SegmentReader.ts"
import * as NatsSegmentStore from "../packages/storage/src/internal/natsSegmentStore.ts"
import { makeLocal, type SegmentStoreShape } from "../packages/storage/src/SegmentStore.ts"
import { startNatsCluster, startNatsServer } from "../test/support/NatsServer.ts"
import * as Sealer from "../packages/storage/src/Sealer.ts"

const quick = process.argv.includes("--quick")
const STREAMS = quick ? 1_000 : 10_000
const PER_STREAM = 20
const SEGMENT_EVENTS = 100_000
const READS = 50
const rowGroupFlag = process.argv.indexOf("--row-group-rows")
const ROW_GROUP_ROWS = rowGroupFlag > 0 ? Number(process.argv[rowGroupFlag + 1]) : defaults.segmentRowGroupRowsMax
const driverFlag = process.argv.indexOf("--driver")
const DRIVER = driverFlag > 0 ? process.argv[driverFlag + 1] : "local"
const replicasFlag = process.argv.indexOf("--replicas")
const REPLICAS = replicasFlag > 0 ? Number(process.argv[replicasFlag + 1]) : 1
if (DRIVER !== "local" && DRIVER !== "nats") throw new Error(`--driver expects local or nats, got ${DRIVER}`)
const log = (line: string) => process.stderr.write(`${line}\n`)

/** The segment store of `--driver`, with whatever it needs (a nats-server or cluster) released with the scope. */
const openStore = (dataDir: string) =>
  Effect.gen(function*() {
    if (DRIVER === "local") return makeLocal(dataDir) as SegmentStoreShape
    const urls = yield* Effect.acquireRelease(
      Effect.promise(async () => {
        if (REPLICAS === 1) {
          const server = await startNatsServer()
          return { urls: [server.url], stop: () => server.stop() }
        }
        const cluster = await startNatsCluster({ size: REPLICAS })
        await cluster.waitForMetaLeader()
        return { urls: [...cluster.urls], stop: () => cluster.stop() }
      }),
      (nats) => Effect.promise(() => nats.stop())
    )
    log(`nats driver: ${urls.urls.length} server(s), R${REPLICAS} buckets`)
    return yield* NatsSegmentStore.make({ servers: urls.urls, replicas: REPLICAS, requestTimeoutMs: 60_000 }).pipe(Effect.orDie)
  })

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = xs.slice().sort((a, b) => a - b)
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!.toFixed(2))
}

const program = Effect.gen(function*() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-bench-storage-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
  const store = yield* openStore(dataDir)
  const total = STREAMS * PER_STREAM
  // Appended round-robin over streams (as concurrent writers would), so a segment's rows need the sort.
  const events: Array<Event.StoredEvent> = new Array(total)
  const t0 = 1_750_000_000_000
  // Text of words drawn from a 5,000-word vocabulary by a fixed generator: compressible like prose, not like "xxxx".
  let seed = 0x2545f491
  const next = () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return seed >>> 0
  }
  const vocabulary = Array.from({ length: 5_000 }, (_, i) => (i * 2_654_435_761 >>> 0).toString(36).slice(0, 3 + (i % 7)))
  const sentence = () => Array.from({ length: 24 }, () => vocabulary[next() % vocabulary.length]!).join(" ")
  for (let i = 0; i < total; i++) {
    const stream = i % STREAMS
    events[i] = {
      eventId: `01890000-0000-7000-8000-${String(i).padStart(12, "0")}`,
      tenant: "acme",
      stream: `order-${stream}`,
      type: i % 4 === 0 ? "OrderPlaced" : "ItemAdded",
      data: { text: sentence(), amount: next() % 100_000, currency: "EUR", sku: `sku-${next() % 5_000}` },
      metadata: { correlationId: `c-${Math.floor(i / 4)}` },
      timestamp: t0 + Math.floor(i / 50),
      streamVersion: Math.floor(i / STREAMS),
      partition: 0,
      seq: i + 1
    }
  }
  let jsonBytes = 0
  for (const e of events) jsonBytes += Sealer.approxBytes(e)
  let logBytes = 0
  for (let i = 0; i < total; i += 500) {
    const slice = events.slice(i, i + 500)
    logBytes += 24 + Commit.encodeBody({ partition: 0, firstSeq: slice[0]!.seq, timestamp: slice[0]!.timestamp, events: slice }).length
  }
  log(`${total} events, ${(jsonBytes / 1_048_576).toFixed(1)} MiB of JSON, ${(logBytes / 1_048_576).toFixed(1)} MiB as log records`)

  // --- segment write ------------------------------------------------------------------------------------------
  const writeStart = yield* Clock.currentTimeMillis
  let manifest = Manifest.empty(0)
  let parquetBytes = 0
  for (let from = 1; from <= total; from += SEGMENT_EVENTS) {
    const to = Math.min(total, from + SEGMENT_EVENTS - 1)
    const { entry } = yield* Sealer.writeSegment(store, 0, events.slice(from - 1, to), from, to, ROW_GROUP_ROWS)
    manifest = Manifest.withSegment(manifest, entry)
    yield* store.writeManifest(0, manifest)
    parquetBytes += entry.bytes
  }
  const writeMs = (yield* Clock.currentTimeMillis) - writeStart
  log(`sealed in ${writeMs} ms into ${manifest.segments.length} segments, ${(parquetBytes / 1_048_576).toFixed(1)} MiB`)

  // --- cold reads of one stream ----------------------------------------------------------------------------------
  const reader = SegmentReader.make(store, { cacheBytesMax: defaults.segmentCacheBytesMax })
  const picks = Array.from({ length: READS }, (_, k) => `order-${(k * 7919) % STREAMS}`)
  const cold: Array<number> = []
  const warm: Array<number> = []
  let rowGroupsRead = 0
  let rowGroups = 0
  for (const stream of picks) {
    reader.clearCache()
    const a = performance.now()
    const r = yield* reader.readStream(0, "acme", stream)
    cold.push(performance.now() - a)
    if (r.events.length !== PER_STREAM) throw new Error(`read ${r.events.length} events of ${stream}`)
    rowGroupsRead += r.stats.rowGroupsRead
    rowGroups += r.stats.rowGroups
    const b = performance.now()
    yield* reader.readStream(0, "acme", stream)
    warm.push(performance.now() - b)
  }
  // Without pruning: every row group of every (cached, verified) segment decoded and filtered.
  const unpruned: Array<number> = []
  for (const stream of picks.slice(0, 10)) {
    const a = performance.now()
    let found = 0
    for (const entry of manifest.segments) {
      const bytes = yield* reader.load(0, entry, true)
      const c = SegmentFormat.decode(bytes)
      for (let i = 0; i < c.rows; i++) if (c.stream[i] === stream) found++
    }
    unpruned.push(performance.now() - a)
    if (found !== PER_STREAM) throw new Error(`unpruned read found ${found}`)
  }

  // --- cold boot ---------------------------------------------------------------------------------------------------
  const bootStart = performance.now()
  let replayed = 0
  yield* reader.replay(0, () => false, () => {
    replayed++
  })
  const bootMs = performance.now() - bootStart
  if (replayed !== total) throw new Error(`replayed ${replayed} of ${total}`)

  // --- through the engine: memory per event, hot vs sealed, and cold reads of one stream --------------------------
  const engine = DRIVER === "local" ? yield* engineMeasures(sentence, next) : undefined

  const mib = (bytes: number, ms: number) => Number((bytes / 1_048_576 / (ms / 1000)).toFixed(1))
  return {
    machine: { cpus: os.cpus().length, node: process.version, loadavg: os.loadavg().map((l) => Number(l.toFixed(2))) },
    driver: { name: DRIVER, replicas: DRIVER === "nats" ? REPLICAS : undefined },
    workload: { events: total, streams: STREAMS, eventsPerStream: PER_STREAM, segmentEvents: SEGMENT_EVENTS, rowGroupRows: ROW_GROUP_ROWS },
    segmentWrite: {
      ms: writeMs,
      eventsPerSecond: Math.round(total / (writeMs / 1000)),
      inputMiBPerSecond: mib(jsonBytes, writeMs),
      parquetMiBPerSecond: mib(parquetBytes, writeMs)
    },
    compression: {
      jsonBytes,
      logRecordBytes: logBytes,
      parquetBytes,
      bytesPerEvent: Number((parquetBytes / total).toFixed(1)),
      ratioVsJson: Number((jsonBytes / parquetBytes).toFixed(2)),
      ratioVsLog: Number((logBytes / parquetBytes).toFixed(2))
    },
    coldReadOneStream: {
      coldMs: { p50: percentile(cold, 50), p99: percentile(cold, 99) },
      warmMs: { p50: percentile(warm, 50), p99: percentile(warm, 99) },
      unprunedWarmMs: { p50: percentile(unpruned, 50), p99: percentile(unpruned, 99) },
      rowGroupsReadPerRead: Number((rowGroupsRead / READS).toFixed(2)),
      rowGroupsPerRead: rowGroups / READS
    },
    coldBoot: { ms: Math.round(bootMs), eventsPerSecond: Math.round(total / (bootMs / 1000)) },
    ...(engine === undefined ? {} : { engine })
  }
})

/** A full collection (`--expose-gc` at run time: the script is started by `node` without flags). */
const fullGc = (() => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  return () => {
    gc()
    gc()
  }
})()

/**
 * The same workload through an embedded engine (file log + local segments, one partition, sealing only on demand):
 * heap per event before and after a seal, then cold reads of one stream through `Engine.readStream`.
 */
const engineMeasures = (sentence: () => string, next: () => number) =>
  Effect.scoped(Effect.gen(function*() {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-bench-engine-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
    const total = STREAMS * PER_STREAM
    fullGc()
    const emptyHeap = process.memoryUsage().heapUsed
    const context = yield* Layer.build(Embedded.layer({
      dataDir,
      partitions: 1,
      coldSealBytesMin: 1e15,
      coldSealAgeMs: 1e15,
      coldSealCheckIntervalMs: 3_600_000
    })).pipe(Effect.orDie)
    const engine = Context.get(context, Engine)
    const tier = Context.get(context, ColdTier)
    fullGc()
    const baseHeap = process.memoryUsage().heapUsed
    for (let i = 0; i < total; i += 500) {
      const exits = yield* engine.appendMany(Array.from({ length: Math.min(500, total - i) }, (_, k) => {
        const n = i + k
        return {
          tenant: "acme",
          stream: `order-${n % STREAMS}`,
          request: {
            events: [Event.propose(n % 4 === 0 ? "OrderPlaced" : "ItemAdded", {
              text: sentence(),
              amount: next() % 100_000,
              currency: "EUR",
              sku: `sku-${next() % 5_000}`
            }, { metadata: { correlationId: `c-${Math.floor(n / 4)}` } })]
          }
        }
      }))
      for (const exit of exits) if (exit._tag === "Failure") throw new Error(`append failed: ${String(exit.cause)}`)
    }
    fullGc()
    const hotHeap = process.memoryUsage().heapUsed
    const sealStart = performance.now()
    yield* tier.sealNow().pipe(Effect.orDie)
    const sealMs = performance.now() - sealStart
    tier.reader.clearCache()
    fullGc()
    const sealedHeap = process.memoryUsage().heapUsed
    log(`engine: ${total} events, heap ${((hotHeap - baseHeap) / 1_048_576).toFixed(1)} MiB hot, ` +
      `${((sealedHeap - baseHeap) / 1_048_576).toFixed(1)} MiB after the seal`)

    const picks = Array.from({ length: READS }, (_, k) => `order-${(k * 7919) % STREAMS}`)
    const miss: Array<number> = []
    const hit: Array<number> = []
    for (const stream of picks) {
      tier.reader.clearCache()
      const a = performance.now()
      const events = yield* engine.readStream("acme", stream, { limit: 1_000 }).pipe(Effect.orDie)
      miss.push(performance.now() - a)
      if (events.length !== PER_STREAM) throw new Error(`engine read ${events.length} events of ${stream}`)
      const b = performance.now()
      yield* engine.readStream("acme", stream, { limit: 1_000 }).pipe(Effect.orDie)
      hit.push(performance.now() - b)
    }
    const totals = tier.reader.totals()
    // A subscriber catching up from the start: the whole sealed partition in pages of 1,000 (read-ahead windows).
    tier.reader.clearCache()
    const scanStart = performance.now()
    let scanned = 0
    for (let from = 1; scanned < total;) {
      const page = yield* engine.router.follow(0, "acme", { fromSeq: from, limit: 1_000 }).pipe(Effect.orDie)
      scanned += page.events.length
      from = page.through + 1
    }
    const scanMs = performance.now() - scanStart
    return {
      events: total,
      engineHeapBytes: baseHeap - emptyHeap,
      heapBytesPerEvent: {
        hot: Math.round((hotHeap - baseHeap) / total),
        sealed: Math.round((sealedHeap - baseHeap) / total)
      },
      sealMs: Math.round(sealMs),
      coldReadOneStream: {
        cacheMissMs: { p50: percentile(miss, 50), p99: percentile(miss, 99) },
        cacheHitMs: { p50: percentile(hit, 50), p99: percentile(hit, 99) },
        rowGroupsReadPerRead: Number((totals.rowGroupsRead / totals.reads).toFixed(2)),
        rowGroupsPerRead: Number((totals.rowGroups / totals.reads).toFixed(2))
      },
      catchUpScan: { pageEvents: 1_000, ms: Math.round(scanMs), eventsPerSecond: Math.round(total / (scanMs / 1000)) }
    }
  }))

const result = await Effect.runPromise(Effect.scoped(program))
process.stdout.write(JSON.stringify(result, null, 2) + "\n")
