/**
 * `npm run bench -- --cluster`: durable R3 ingestion of the peer workload through a local cluster, against the raw
 * R3 JetStream one-publish-per-event baseline measured in the same run on the same NATS cluster. Writes the cluster
 * section of `docs/BENCHMARKS.md` (between the `cluster` markers; the rest of the file is `bench/run.ts`'s).
 *
 * Cluster: `LocalCluster.up` in a temp directory — 3 nats-servers (routes on loopback, `sync_interval: always`:
 * fsync before every ack), 3 runner processes, partition streams and coordination buckets R3, 32 partitions.
 *
 * Workload (the peers', as in `bench/run.ts`): 10k streams × 20 events of ~200 B, 8 concurrent writers with exact
 * expected versions, each keeping up to 256 appends in flight with one append in flight per stream, one event per
 * HTTP request. Writer w sends to the gateway of runner w mod 3, so about two thirds of the appends cross to the
 * partition's owner through the entity RPC, as they would behind a load balancer.
 *
 * Baseline: raw JetStream on the same 3-node cluster, an R3 file stream, one publish per event (~200 B body, as
 * big as one event), 256 publishes in flight, each acknowledged after the R3 quorum fsync'd it.
 *
 * Flags: `--quick` (a tenth of the events), `--no-write` (print only).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import http from "node:http"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { connect } from "@nats-io/transport-node"
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream"
import * as LocalCluster from "../packages/cluster/src/LocalCluster.ts"
import * as Partitioning from "../packages/domain/src/Partitioning.ts"
import * as PeerWorkload from "./peerWorkload.ts"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const args = new Set(process.argv.slice(2))
const quick = args.has("--quick")
const { depth: DEPTH, perStream: PER_STREAM, streams: STREAMS, writers: WRITERS } = PeerWorkload.shape(quick)
const payload = PeerWorkload.payload
const PARTITIONS = 32
const BASELINE_EVENTS = quick ? 5_000 : 20_000

export const beginMarker = "<!-- cluster benchmark: begin (bench/cluster.ts) -->"
export const endMarker = "<!-- cluster benchmark: end -->"

const log = (line: string) => process.stderr.write(`${line}\n`)

// Idle pooled sockets are dropped before the server's keep-alive timeout (5 s) would close them under a request
// (a reset); a reset that happens anyway is retried with the same event ids (see `peerWorkload`).
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, timeout: 4_000 })

const post = (url: string, urlPath: string, body: unknown) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const data = JSON.stringify(body)
    const u = new URL(url)
    const req = http.request(
      {
        host: u.hostname,
        port: Number(u.port),
        method: "POST",
        path: urlPath,
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) }
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

/** Raw R3 JetStream: one publish per event, DEPTH in flight, on the cluster's NATS nodes. */
const rawJetStreamR3 = async (servers: ReadonlyArray<string>) => {
  const nc = await connect({ servers: [...servers] })
  const jsm = await jetstreamManager(nc)
  const name = `BASELINE_R3_${process.pid}`
  await jsm.streams.add({ name, subjects: [`baseline${process.pid}.>`], storage: StorageType.File, num_replicas: 3 })
  const js = jetstream(nc, { timeout: 30_000 })
  // The new stream elects its Raft leader first: publish once before the clock starts.
  for (let i = 0;; i++) {
    const ok = await js.publish(`baseline${process.pid}.warmup`, new Uint8Array(1)).then(() => true, () => false)
    if (ok) break
    if (i > 100) throw new Error("baseline stream has no leader")
    await new Promise((r) => setTimeout(r, 100))
  }
  const body = new TextEncoder().encode(JSON.stringify({ type: "Deposited", data: payload }))
  const t0 = performance.now()
  let next = 0
  const worker = async () => {
    while (next < BASELINE_EVENTS) {
      const i = next++
      await js.publish(`baseline${process.pid}.s${i % STREAMS}`, body)
    }
  }
  await Promise.all(Array.from({ length: DEPTH }, worker))
  const seconds = (performance.now() - t0) / 1_000
  await jsm.streams.delete(name)
  await nc.drain()
  return { events: BASELINE_EVENTS, seconds: +seconds.toFixed(2), eventsPerSec: Math.round(BASELINE_EVENTS / seconds) }
}

/**
 * The peer workload over HTTP (`peerWorkload.ts`), streams named `<prefix><n>`. Writer w sends to `urlFor(w, s)`:
 * the gateway of runner w mod 3 (as behind a load balancer), or the owner of the stream's partition (an
 * owner-aware client). Counts retried 503s and connection resets (there should be none).
 */
const peerWorkload = async (prefix: string, urlFor: (writer: number, stream: number) => string) => {
  let retries = 0
  const result = await PeerWorkload.run({
    streams: STREAMS,
    perStream: PER_STREAM,
    writers: WRITERS,
    depth: DEPTH,
    send: async (w, s, round) => {
      // A client-chosen event id: a retry below re-sends the same event.
      const body = PeerWorkload.appendBody(round, crypto.randomUUID())
      for (let attempt = 0;; attempt++) {
        const res = await post(urlFor(w, s), `/v1/tenants/bench/streams/${prefix}${s}/events`, body).catch(
          (error: NodeJS.ErrnoException) => {
            if (error.code !== "ECONNRESET" || attempt >= 20) throw error
            return { status: 503, body: "connection reset" }
          }
        )
        if (res.status === 200) return
        // Same ids on retry: a retried append is answered, never written twice.
        if (res.status !== 503 || attempt >= 20) throw new Error(`append ${res.status} ${res.body.slice(0, 300)}`)
        retries++
      }
    }
  })
  return { ...result, retried503s: retries }
}

/** CPU time (user + system) a process has used so far, ms, from `/proc/<pid>/stat` (Linux; 0 elsewhere). */
const cpuMs = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the command), in clock ticks.
    return ((Number(fields[11]) + Number(fields[12])) * 1_000) / ticksPerSecond
  } catch {
    return 0
  }
}
const ticksPerSecond = 100

/** CPU used during `work` by each group of processes, in ms per event. Where a CPU-bound run spends the cores. */
const cpuPerEvent = async <A extends { readonly events: number }>(
  groups: Record<string, ReadonlyArray<number>>,
  work: () => Promise<A>
): Promise<A & { readonly cpuMsPerEvent: Record<string, number> }> => {
  const sample = () => Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, pids.reduce((t, p) => t + cpuMs(p), 0)]))
  const self0 = process.cpuUsage()
  const before = sample()
  const result = await work()
  const after = sample()
  const self = process.cpuUsage(self0)
  const perEvent: Record<string, number> = {}
  for (const k of Object.keys(groups)) perEvent[k] = +((after[k]! - before[k]!) / result.events).toFixed(3)
  perEvent["load generator"] = +((self.user + self.system) / 1_000 / result.events).toFixed(3)
  return { ...result, cpuMsPerEvent: perEvent }
}

/** Commits (JetStream messages) and events of the partition streams: how well group commit batched. */
const commitStats = async (servers: ReadonlyArray<string>) => {
  const nc = await connect({ servers: [...servers] })
  try {
    const jsm = await jetstreamManager(nc)
    let commits = 0
    for (let p = 0; p < PARTITIONS; p++) {
      const info = await jsm.streams.info(`CHRONOS_P${String(p).padStart(3, "0")}`)
      commits += info.state.messages
    }
    return commits
  } finally {
    await nc.close()
  }
}

export const runClusterBench = async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "chronos-bench-cluster-"))
  try {
    log(`» cluster: 3 nats-servers (R3, sync_interval always) + 3 runners, ${PARTITIONS} partitions (${dir})`)
    // A random port range, another one when a port of it is taken (as the fault tests do).
    const up = async (attempt: number): Promise<LocalCluster.ClusterFile> => {
      const base = 20_000 + 50 * Math.floor(Math.random() * 800)
      const started = await Effect.runPromise(Effect.result(LocalCluster.up({
        dir,
        nodes: 3,
        partitions: PARTITIONS,
        httpPortBase: base,
        runnerPortBase: base + 10,
        natsClientPortBase: base + 20,
        natsClusterPortBase: base + 30,
        natsMonitorPortBase: base + 40
      })))
      if (started._tag === "Success") return started.success
      if (attempt < 3 && started.failure.message.includes("is in use")) return up(attempt + 1)
      throw new Error(started.failure.message)
    }
    const cluster = await up(1)
    const servers = cluster.nats.map((n) => n.url)
    const urls = cluster.runners.map((r) => r.url)

    log(`» raw R3 JetStream baseline: ${BASELINE_EVENTS} events, one publish each, ${DEPTH} in flight`)
    const groups = { "3 runners": cluster.runners.map((r) => r.pid), "3 nats-servers": cluster.nats.map((n) => n.pid) }
    const rawJetStreamR3Result = await cpuPerEvent(groups, () => rawJetStreamR3(servers))
    log(`  ${rawJetStreamR3Result.eventsPerSec} events/s`)

    log(`» cluster over HTTP, any gateway: ${STREAMS * PER_STREAM} events, ${WRITERS} writers × ${DEPTH} in flight`)
    const ingest = await cpuPerEvent(groups, () => peerWorkload("g-", (w) => urls[w % urls.length]!))
    const commits = await commitStats(servers)
    log(`  ${ingest.eventsPerSec} events/s (${ingest.retried503s} retries), ${(ingest.events / commits).toFixed(1)} events per commit`)

    // An owner-aware client: the partition of each stream from the documented hash, its owner from
    // `GET /v1/partitions`, the owner's HTTP endpoint from the cluster's runner list.
    const status = await Effect.runPromise(LocalCluster.status({ dir }))
    const httpOf = new Map(cluster.runners.map((r) => [r.address, r.url]))
    const ownerUrl = status.partitions.map((p) => httpOf.get(p.owner) ?? urls[0]!)
    log(`» cluster over HTTP, owner-aware client: ${STREAMS * PER_STREAM} events, same workload`)
    const owned = await cpuPerEvent(
      groups,
      () => peerWorkload("o-", (_w, s) => ownerUrl[Partitioning.partitionOf("bench", `o-${s}`, PARTITIONS)]!)
    )
    const ownedCommits = (await commitStats(servers)) - commits
    log(`  ${owned.eventsPerSec} events/s (${owned.retried503s} retries), ${(owned.events / ownedCommits).toFixed(1)} events per commit`)

    const results = {
      rawJetStreamR3: rawJetStreamR3Result,
      clusterHttpR3: { ...ingest, commits, eventsPerCommit: +(ingest.events / commits).toFixed(1) },
      ratio: +(ingest.eventsPerSec / rawJetStreamR3Result.eventsPerSec).toFixed(2),
      ownerAwareHttpR3: { ...owned, commits: ownedCommits, eventsPerCommit: +(owned.events / ownedCommits).toFixed(1) },
      ownerAwareRatio: +(owned.eventsPerSec / rawJetStreamR3Result.eventsPerSec).toFixed(2),
      machine: {
        cpus: os.cpus().length,
        cpu: os.cpus()[0]?.model,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        node: process.version,
        loadavg: os.loadavg().map((l) => +l.toFixed(2))
      },
      quick
    }
    return results
  } finally {
    agent.destroy()
    await Effect.runPromise(Effect.result(LocalCluster.down({ dir })))
    rmSync(dir, { recursive: true, force: true })
  }
}

export type ClusterResults = Awaited<ReturnType<typeof runClusterBench>>

/** What limits the figure, from the run's own numbers (the text must stay true whichever way the ratio goes). */
const limits = (r: ClusterResults): string => {
  const best = Math.max(r.clusterHttpR3.eventsPerSec, r.ownerAwareHttpR3.eventsPerSec)
  const inFlight = WRITERS * DEPTH
  const waitS = (inFlight / Math.max(best, 1)).toFixed(1)
  const cpu = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0)
  const natsBaseline = r.rawJetStreamR3.cpuMsPerEvent["3 nats-servers"] ?? 0
  const natsOwner = r.ownerAwareHttpR3.cpuMsPerEvent["3 nats-servers"] ?? 0
  const runnersGateway = r.clusterHttpR3.cpuMsPerEvent["3 runners"] ?? 0
  const runnersOwner = r.ownerAwareHttpR3.cpuMsPerEvent["3 runners"] ?? 0
  return `- **CPU is the limit, and the baseline needs ~${cpu(r.rawJetStreamR3.cpuMsPerEvent).toFixed(2)} ms of it per event where the cluster needs ~${cpu(r.ownerAwareHttpR3.cpuMsPerEvent).toFixed(2)} ms** (table above): ${inFlight.toLocaleString("en")} appends in flight and at most ${best.toLocaleString("en")} acknowledged per second means an append waited ~${waitS} s for CPU (Little's law) on ${r.machine.cpus} cores shared by 3 runners, 3 nats-servers and the load generator.
- **The nats-servers spend ${(natsOwner / Math.max(natsBaseline, 0.001)).toFixed(0)}× more CPU per event for the cluster (${natsOwner} ms) than for the baseline (${natsBaseline} ms).** The baseline's ${DEPTH} publishes in flight all go to one stream, whose Raft group replicates and fsyncs them in large batches. The cluster's commits go to ${PARTITIONS} streams, one Raft group each, one commit in flight per partition (the fencing rule of the JetStream driver), so each commit pays its own replication round and fsyncs on every replica. Group commit is what amortises that: ${r.clusterHttpR3.eventsPerCommit} (any gateway) and ${r.ownerAwareHttpR3.eventsPerCommit} (owner-aware) events per commit here, with each partition receiving ~${Math.round(best / PARTITIONS)} appends/s. A ratio above 1 needs commits of tens of events, i.e. appends reaching each partition far faster than one replication round — more client concurrency than this machine can feed over HTTP, or batched appends.
- **The runners spend ${runnersGateway} ms per event with any gateway and ${runnersOwner} ms with an owner-aware client**: two thirds of the any-gateway appends also pay the runner-to-runner entity RPC (encoding, decoding, fibers on two runners). What is left per event is one HTTP request and its JSON. The owner-aware rate is ${(r.ownerAwareHttpR3.eventsPerSec / Math.max(r.clusterHttpR3.eventsPerSec, 1)).toFixed(1)}× the any-gateway one in this run.
- More cores, batched appends (several events per request) and more streams in flight raise the cluster's figure; the baseline gains from none of them on one stream.`
}

/** The cluster section of docs/BENCHMARKS.md. */
export const section = (r: ClusterResults) => `${beginMarker}
## Cluster (R3)

Generated by \`npm run bench -- --cluster\` on ${new Date().toISOString().slice(0, 10)}; both figures come from the
same run on the same NATS cluster.

### Method

- Machine: ${r.machine.cpus} cores (${r.machine.cpu}), ${r.machine.memoryGiB} GiB, Node ${r.machine.node}. The load
  generator, 3 runner processes and 3 nats-servers all share these cores. Load average at the end:
  ${r.machine.loadavg.join(", ")}.
- Cluster: \`LocalCluster\` (what \`chronos cluster up\` starts): 3 nats-servers with routes on loopback and
  \`sync_interval: always\` (every node fsyncs before it acknowledges), ${PARTITIONS} partitions, each an R3 file stream
  (an append is acknowledged once 2 of 3 nodes have fsync'd its commit), 3 runners sharing the partitions.
- Workload (the peers'): ${STREAMS.toLocaleString("en")} streams × ${PER_STREAM} events of ~200 B, ${WRITERS} concurrent
  writers with exact expected versions, each keeping up to ${DEPTH} appends in flight (one per stream), one event per
  HTTP request with a client-chosen event id. Measured twice, on fresh streams each time: **any gateway** — writer *w*
  uses the gateway of runner *w* mod 3 (as behind a load balancer), so about two thirds of the appends are forwarded
  to the partition's owner over the runner-to-runner entity RPC; **owner-aware** — each append goes to the HTTP
  endpoint of its partition's owner (the partition from the documented stream hash, the owner from
  \`GET /v1/partitions\`).
- Baseline, same run, same NATS cluster: raw JetStream, an R3 file stream, one publish per event (the same ~200 B
  body), ${DEPTH} publishes in flight.

### Results

| what | result |
|---|---|
| raw R3 JetStream baseline (one publish per event) | ${r.rawJetStreamR3.eventsPerSec.toLocaleString("en")} events/s |
| **cluster over HTTP, any gateway**, R3, peer workload | ${r.clusterHttpR3.eventsPerSec.toLocaleString("en")} events/s (**${r.ratio}×** the baseline; ${r.clusterHttpR3.eventsPerCommit} events per commit, ${r.clusterHttpR3.retried503s} retries) |
| **cluster over HTTP, owner-aware client**, R3, peer workload | ${r.ownerAwareHttpR3.eventsPerSec.toLocaleString("en")} events/s (**${r.ownerAwareRatio}×** the baseline; ${r.ownerAwareHttpR3.eventsPerCommit} events per commit, ${r.ownerAwareHttpR3.retried503s} retries) |

CPU per event during each measurement (user + system time of the processes, from \`/proc/<pid>/stat\`, divided by
the events written; the machine has ${r.machine.cpus} cores, so ${(r.machine.cpus * 1000).toLocaleString("en")} ms of CPU per second in all):

| CPU ms per event | ${Object.keys(r.rawJetStreamR3.cpuMsPerEvent).join(" | ")} |
|---|${Object.keys(r.rawJetStreamR3.cpuMsPerEvent).map(() => "---").join("|")}|
| raw R3 JetStream baseline | ${Object.values(r.rawJetStreamR3.cpuMsPerEvent).join(" | ")} |
| cluster, any gateway | ${Object.values(r.clusterHttpR3.cpuMsPerEvent).join(" | ")} |
| cluster, owner-aware client | ${Object.values(r.ownerAwareHttpR3.cpuMsPerEvent).join(" | ")} |

### What limits it

${limits(r)}

\`\`\`json
${JSON.stringify(r, null, 2)}
\`\`\`
${endMarker}
`

/** `text` with its cluster section replaced by `newSection` (appended when it has none). */
export const withSection = (text: string, newSection: string): string => {
  const b = text.indexOf(beginMarker)
  const e = text.indexOf(endMarker)
  if (b >= 0 && e > b) return text.slice(0, b) + newSection + text.slice(e + endMarker.length).replace(/^\n/, "")
  return `${text.trimEnd()}\n\n${newSection}`
}

/** The text of `file` from `begin` to `end` (markers included), or "": a section a rewrite of the file keeps. */
export const sectionOf = (file: string, begin: string, end: string): string => {
  if (!existsSync(file)) return ""
  const text = readFileSync(file, "utf8")
  const b = text.indexOf(begin)
  const e = text.indexOf(end)
  return b >= 0 && e > b ? text.slice(b, e + end.length) + "\n" : ""
}

/** The cluster section currently in `file`, or "" (so that `bench/run.ts` keeps it when it rewrites the file). */
export const currentSection = (file: string): string => sectionOf(file, beginMarker, endMarker)

export const main = async () => {
  const results = await runClusterBench()
  console.log(JSON.stringify(results, null, 2))
  if (!args.has("--no-write") && !quick) {
    const file = path.join(root, "docs", "BENCHMARKS.md")
    const text = existsSync(file) ? readFileSync(file, "utf8") : "# Chronos benchmarks\n"
    writeFileSync(file, withSection(text, section(results)))
    log(`» wrote the cluster section of ${file}`)
  }
}
