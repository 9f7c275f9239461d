/**
 * The fault scenario against a real local cluster (3 nats-servers + 3 runner processes, `LocalCluster`): the
 * cluster, the faults and the measurements. The test files decide which faults run and for how long; this module
 * owns how each fault is injected, how recovery is observed, and what is printed.
 *
 * Faults are injected from outside, as an operator or a crash would: `kill -9`, `SIGTERM`, `SIGSTOP`/`SIGCONT` of
 * the processes listed in `<dir>/cluster.json`. Failover is measured from the signal to the first moment a survivor's
 * `GET /v1/partitions` answers with no partition owned by the victim — the Status RPC is answered by the new owner's
 * partition entity, which has replayed its JetStream stream before it answers, so "served with its state rebuilt".
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { connect } from "@nats-io/transport-node"
import { jetstreamManager } from "@nats-io/jetstream"
import * as ChronosConfig from "../config/ChronosConfig.ts"
import * as LocalCluster from "../packages/cluster/src/LocalCluster.ts"
import * as Http from "./Http.ts"

export interface Cluster {
  readonly dir: string
  readonly file: () => LocalCluster.ClusterFile
  readonly urls: () => ReadonlyArray<string>
  readonly partitions: number
  /** Stops every process (SIGTERM, SIGKILL after a grace) and says how each one ended. */
  readonly down: () => Promise<ReadonlyArray<{ readonly name: string; readonly result: string }>>
}

const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect as Effect.Effect<A, never>)

/** Starts a cluster in a fresh temp directory on free ports (a random port range, retried when taken). */
export const startCluster = async (options: { readonly partitions: number; readonly nodes?: number }): Promise<Cluster> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-chaos-"))
  for (let attempt = 1;; attempt++) {
    const base = 20_000 + 50 * Math.floor(Math.random() * 800)
    const started = await Effect.runPromise(Effect.result(LocalCluster.up({
      dir,
      nodes: options.nodes ?? 3,
      partitions: options.partitions,
      httpPortBase: base,
      runnerPortBase: base + 10,
      natsClientPortBase: base + 20,
      natsClusterPortBase: base + 30,
      natsMonitorPortBase: base + 40,
      // CHRONOS_CHAOS_LOG_LEVEL=Debug: the runners log the cluster library's assignments, acquisitions, handoffs.
      runnerLogLevel: process.env.CHRONOS_CHAOS_LOG_LEVEL === "Debug" ? "Debug" : undefined
    })))
    if (started._tag === "Success") break
    if (attempt < 3 && started.failure.message.includes("is in use")) continue
    await run(LocalCluster.down({ dir })).catch(() => undefined)
    throw new Error(started.failure.message)
  }
  const file = () => JSON.parse(fs.readFileSync(path.join(dir, "cluster.json"), "utf8")) as LocalCluster.ClusterFile
  // Last resort if the test process dies: never leave detached servers behind.
  const killAll = () => {
    try {
      const f = file()
      for (const r of f.runners) LocalCluster.signal(r.pid, `--runner-port ${r.runnerPort}`, "SIGKILL")
      for (const n of f.nats) LocalCluster.signal(n.pid, n.configFile, "SIGKILL")
    } catch {
      // nothing recorded
    }
  }
  process.once("exit", killAll)
  return {
    dir,
    file,
    urls: () => file().runners.map((r) => r.url),
    partitions: options.partitions,
    down: async () => {
      process.removeListener("exit", killAll)
      Http.closeAll()
      const t0 = performance.now()
      // Every process must exit by itself after SIGTERM, the runner that was frozen past its lease included: a
      // runner bounds its graceful shutdown by `shutdownTimeoutMs` (Runner.layerShutdownBound); the grace here is
      // above it, so a "killed" below means that bound is broken.
      const stopped = await run(LocalCluster.down({ dir, graceMs: ChronosConfig.defaults.shutdownTimeoutMs + 5_000 }))
      log(`down in ${(performance.now() - t0).toFixed(0)} ms: ${stopped.map((p) => `${p.name} ${p.result}`).join(", ")}`)
      if (process.env.CHRONOS_KEEP_CHAOS_DIRS === undefined) fs.rmSync(dir, { recursive: true, force: true })
      else console.log(`[chaos] cluster directory kept: ${dir}`)
      return stopped
    }
  }
}

export type Owners = ReadonlyArray<{ readonly partition: number; readonly owner: string; readonly watermark: number }>

/** The partitions as `url` reports them, or undefined (not answering, or a partition unreachable right now). */
export const owners = async (url: string): Promise<Owners | undefined> => {
  const res = await Http.get(url, "/v1/partitions", 3_000).catch(() => undefined)
  return res?.status === 200 ? res.body.partitions : undefined
}

/** The runner owning the most partitions (among `candidates`), as seen from `url`. */
export const busiestRunner = async (cluster: Cluster, candidates?: ReadonlyArray<string>) => {
  const f = cluster.file()
  const names = candidates ?? f.runners.map((r) => r.name)
  for (;;) {
    for (const url of cluster.urls()) {
      const view = await owners(url)
      if (view === undefined) continue
      const count = (address: string) => view.filter((p) => p.owner === address).length
      const ranked = f.runners.filter((r) => names.includes(r.name)).sort((a, b) => count(b.address) - count(a.address))
      return { runner: ranked[0]!, owned: count(ranked[0]!.address) }
    }
    await Http.sleep(200)
  }
}

/**
 * Milliseconds from `since` until a runner other than `victim` answers `GET /v1/partitions` with every partition
 * owned by a live runner other than the victim; throws after `timeoutMs`.
 */
export const waitServedWithout = async (
  cluster: Cluster,
  victim: LocalCluster.RunnerProcess,
  since: number,
  timeoutMs: number
): Promise<number> => {
  const others = cluster.file().runners.filter((r) => r.name !== victim.name)
  const alive = new Set(others.map((r) => r.address))
  for (;;) {
    for (const r of others) {
      const view = await owners(r.url)
      if (view !== undefined && view.every((p) => alive.has(p.owner))) return performance.now() - since
    }
    if (performance.now() - since > timeoutMs) {
      throw new Error(`${victim.name}'s partitions not served by another runner within ${timeoutMs} ms`)
    }
    await Http.sleep(100)
  }
}

/** Waits until every runner of the cluster answers and all agree on the owner of every partition. */
export const waitSettled = async (cluster: Cluster, timeoutMs: number): Promise<void> => {
  const start = performance.now()
  for (;;) {
    const views = await Promise.all(cluster.urls().map(owners))
    const first = views[0]
    const addresses = new Set(cluster.file().runners.map((r) => r.address))
    if (
      first !== undefined && views.every((v) => v !== undefined && v.every((p, i) => p.owner === first[i]!.owner)) &&
      first.every((p) => addresses.has(p.owner))
    ) return
    if (performance.now() - start > timeoutMs) throw new Error(`cluster not settled within ${timeoutMs} ms`)
    await Http.sleep(200)
  }
}

export const signalRunner = (runner: LocalCluster.RunnerProcess, sig: NodeJS.Signals) => {
  if (!LocalCluster.signal(runner.pid, `--runner-port ${runner.runnerPort}`, sig)) {
    throw new Error(`runner ${runner.name} (pid ${runner.pid}) is not running`)
  }
}

export const signalNats = (node: LocalCluster.NatsNode, sig: NodeJS.Signals) => {
  if (!LocalCluster.signal(node.pid, node.configFile, sig)) throw new Error(`NATS node ${node.name} is not running`)
}

/** Waits until the runner process is gone (after a kill). */
export const waitGone = async (pid: number, marker: string) => {
  while (LocalCluster.isOurs(pid, marker)) await Http.sleep(20)
}

export const restartRunner = (cluster: Cluster, name: string) => run(LocalCluster.restartRunner({ dir: cluster.dir, name }))
export const restartNats = (cluster: Cluster, name: string) => run(LocalCluster.restartNats({ dir: cluster.dir, name }))

/** The NATS node leading the Raft group of `stream` (e.g. the shard-locks bucket `KV_chronos_cluster_locks`). */
export const streamLeader = async (cluster: Cluster, stream: string): Promise<LocalCluster.NatsNode> => {
  const nodes = cluster.file().nats
  const nc = await connect({ servers: nodes.map((n) => n.url), timeout: 5_000 })
  try {
    const jsm = await jetstreamManager(nc, { timeout: 5_000 })
    const leader = (await jsm.streams.info(stream)).cluster?.leader
    const node = nodes.find((n) => n.name === leader)
    if (node === undefined) throw new Error(`stream ${stream} has no leader among ${nodes.map((n) => n.name).join(",")}`)
    return node
  } finally {
    await nc.close()
  }
}

export const log = (message: string) => console.log(`[chaos] ${message}`)
