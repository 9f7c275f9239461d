/**
 * A local Chronos cluster on loopback: N nats-servers (a JetStream cluster, routes on 127.0.0.1, configs rendered
 * from `config/nats/node.conf.template`) and N runner processes (`cluster/runner.ts`), all started detached with
 * their logs in the cluster directory, so they outlive the launcher. This module owns that directory:
 *
 *   <dir>/cluster.json               what is running: { nats: [{ name, pid, clientPort, … }], runners: [{ name, pid,
 *                                    httpPort, … }] } — tools and fault tests read it to find a process to kill
 *   <dir>/nats/<name>/nats-server.conf, nats-server.log, store/     one per NATS node (n1, n2, …)
 *   <dir>/runners/<name>.log                                        one per runner (r1, r2, …)
 *
 * `up` starts everything and returns once every partition is owned by a runner (every runner agrees on the owners);
 * `down` stops the runners (gracefully: they hand their shards off), then the NATS nodes, and keeps the data, so a
 * later `up` on the same directory restarts the cluster with its events; `status` reports processes, health,
 * partition owners and replica health. `restartNats` / `restartRunner` start one stopped (or killed) process again
 * with its recorded settings — for fault tests.
 *
 * Why processes and not an in-process cluster: the point is to kill them (kill -9, SIGSTOP) from outside, exactly
 * as an operator or a crash would. Each process is recognised by its command line (`/proc/<pid>/cmdline`) before
 * it is signalled, so a pid reused by an unrelated process is never touched.
 */
import { Clock, Data, Duration, Effect, type LogLevel } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { connect } from "@nats-io/transport-node"
import { jetstreamManager } from "@nats-io/jetstream"
import type { Event } from "@chronos/domain"
import { defaultStreamPrefix, readReplicas } from "@chronos/engine/internal/jetStreamLog"
import type * as Runner from "./Runner.ts"
import * as RunnerArgs from "./RunnerArgs.ts"

// --- limits (units last) ------------------------------------------------------------------------------------------

/** How long `up` waits for the NATS nodes to be healthy and to elect a JetStream meta leader. */
export const natsReadyTimeoutMs = 30_000
/** How long `up` waits for every runner to serve and every partition to be owned. */
export const runnersReadyTimeoutMs = 120_000
/** How long `down` gives a process to exit after SIGTERM before it sends SIGKILL. */
export const stopGraceMs = 20_000
/** Timeout of one HTTP probe (health, partitions) of a process of the cluster. */
export const probeTimeoutMs = 2_000
/** Pause between two readiness probes. */
export const probeIntervalMs = 250
/** How long `status` waits for NATS to answer the replica query. */
export const replicaQueryTimeoutMs = 3_000

// --- options and results ------------------------------------------------------------------------------------------

export interface UpOptions {
  /** Directory of the cluster (created if missing; an existing one is reused with its data). */
  readonly dir: string
  /** NATS nodes and runners. Default 3. */
  readonly nodes?: number | undefined
  /** HTTP port of the first runner; runner i listens on `httpPortBase + i`. Default 3900. */
  readonly httpPortBase?: number | undefined
  /** Runner-to-runner socket port of the first runner. Default 3950. */
  readonly runnerPortBase?: number | undefined
  /** NATS client port of the first node. Default 4250. */
  readonly natsClientPortBase?: number | undefined
  /** NATS route (cluster) port of the first node. Default 6250. */
  readonly natsClusterPortBase?: number | undefined
  /** NATS monitoring port of the first node. Default 8250. */
  readonly natsMonitorPortBase?: number | undefined
  /** Partitions of the store (fixed when the cluster is first created). Default: `ChronosConfig` (32). */
  readonly partitions?: number | undefined
  /** Replicas of partition streams and coordination buckets. Default min(3, nodes). */
  readonly replicas?: number | undefined
  /** nats-server binary. Default: `scripts/nats-server.mjs` (PATH ≥ 2.10, `CHRONOS_NATS_SERVER`, or a download). */
  readonly natsServer?: string | undefined
  /** Extra environment of the runner processes (e.g. `CHRONOS_APPEND_TIMEOUT_MS`). */
  readonly runnerEnv?: Readonly<Record<string, string>> | undefined
  /** Log level of the runners ("Debug" shows the cluster library's shard assignments and handoffs). Default Info. */
  readonly runnerLogLevel?: LogLevel.LogLevel | undefined
}

export interface NatsNode {
  readonly name: string
  readonly pid: number
  readonly clientPort: number
  readonly clusterPort: number
  readonly monitorPort: number
  readonly url: string
  readonly configFile: string
  readonly logFile: string
}

export interface RunnerProcess {
  readonly name: string
  readonly pid: number
  readonly httpPort: number
  readonly runnerPort: number
  /** `host:port` of the runner socket: how `GET /v1/partitions` names the owner of a partition. */
  readonly address: string
  readonly url: string
  readonly logFile: string
  /** The arguments of `cluster/runner.ts` (to restart it identically). */
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
}

/** The content of `<dir>/cluster.json`. */
export interface ClusterFile {
  readonly dir: string
  readonly nats: ReadonlyArray<NatsNode>
  readonly runners: ReadonlyArray<RunnerProcess>
}

export interface PartitionOwnership {
  readonly partition: number
  readonly owner: string
  readonly seq: number
  readonly watermark: number
  readonly replicas?: ReadonlyArray<Event.ReplicaStatus> | undefined
}

export interface Status {
  readonly dir: string
  readonly nats: ReadonlyArray<NatsNode & { readonly running: boolean; readonly healthy: boolean }>
  readonly runners: ReadonlyArray<RunnerProcess & { readonly running: boolean; readonly healthy: boolean }>
  /** As the first healthy runner reports them, with the replicas of each partition's stream from NATS. */
  readonly partitions: ReadonlyArray<PartitionOwnership>
}

/** Something the caller can act on: a port in use, no cluster in the directory, a process that did not come up. */
export class LocalClusterError extends Data.TaggedError("LocalClusterError")<{ readonly message: string }> {}

// --- files --------------------------------------------------------------------------------------------------------

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
const runnerEntry = path.join(repoRoot, "cluster", "runner.ts")
const templateFile = path.join(repoRoot, "config", "nats", "node.conf.template")
const clusterFile = (dir: string) => path.join(dir, "cluster.json")

const fail = (message: string) => Effect.fail(new LocalClusterError({ message }))

const io = <A>(what: string, f: () => A) =>
  Effect.try({ try: f, catch: (e) => new LocalClusterError({ message: `${what}: ${(e as Error).message}` }) })

/** Reads `<dir>/cluster.json`. */
export const readClusterFile = (dir: string): Effect.Effect<ClusterFile, LocalClusterError> =>
  Effect.suspend(() => {
    const file = clusterFile(path.resolve(dir))
    if (!fs.existsSync(file)) return fail(`no cluster in ${dir} (${file} does not exist); start one with up`)
    return io(`reading ${file}`, () => JSON.parse(fs.readFileSync(file, "utf8")) as ClusterFile)
  })

const writeClusterFile = (cluster: ClusterFile) =>
  io(`writing ${clusterFile(cluster.dir)}`, () => {
    const file = clusterFile(cluster.dir)
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(cluster, null, 2) + "\n")
    fs.renameSync(`${file}.tmp`, file)
  })

/** Replaces `{{key}}` by its value and keeps or drops `{{#section}}…{{/section}}` blocks. */
export const renderTemplate = (
  template: string,
  values: Readonly<Record<string, string>>,
  sections: Readonly<Record<string, boolean>>
): string =>
  template
    .replace(/\{\{#(\w+)\}\}\n?([\s\S]*?)\{\{\/\1\}\}\n?/g, (_, name: string, body: string) => sections[name] ? body : "")
    .replace(/\{\{(\w+)\}\}/g, (whole, key: string) => values[key] ?? whole)

// --- processes ----------------------------------------------------------------------------------------------------

/** Whether `pid` is alive and its command line contains `marker` (so a reused pid is never mistaken for ours). */
export const isOurs = (pid: number, marker: string): boolean => {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
    // A zombie (killed, not yet reaped by its parent) has an empty command line: it is gone for our purposes.
    return cmdline.includes(marker)
  } catch {
    return process.platform !== "linux" // no /proc: trust kill(pid, 0)
  }
}

const natsMarker = (n: NatsNode) => n.configFile
const runnerMarker = (r: RunnerProcess) => `--runner-port ${r.runnerPort}`

/** Sends `signal` to our process `pid` (see `isOurs`); false when it is not running. */
export const signal = (pid: number, marker: string, sig: NodeJS.Signals): boolean => {
  if (!isOurs(pid, marker)) return false
  try {
    process.kill(pid, sig)
    return true
  } catch {
    return false
  }
}

/** Starts a detached process whose output goes to `logFile`; it keeps running after this process exits. */
const spawnDetached = (
  command: string,
  args: ReadonlyArray<string>,
  logFile: string,
  env: Readonly<Record<string, string | undefined>>
) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => io(`starting ${command}`, () => {
    fs.mkdirSync(path.dirname(logFile), { recursive: true })
    const fd = fs.openSync(logFile, "a")
    try {
      fs.writeSync(fd, `\n=== ${new Date(now).toISOString()} ${command} ${args.join(" ")}\n`)
      const child = spawn(command, [...args], { detached: true, stdio: ["ignore", fd, fd], cwd: repoRoot, env })
      child.unref()
      if (child.pid === undefined) throw new Error("no pid (spawn failed)")
      return child.pid
    } finally {
      fs.closeSync(fd)
    }
  }))

/** Stops our process: SIGCONT (a paused process cannot exit), SIGTERM, then SIGKILL after `graceMs`. */
const stopProcess = (pid: number, marker: string, graceMs: number) =>
  Effect.gen(function*() {
    if (!signal(pid, marker, "SIGCONT")) return "not running" as const
    signal(pid, marker, "SIGTERM")
    const deadline = (yield* Clock.currentTimeMillis) + graceMs
    while ((yield* Clock.currentTimeMillis) < deadline) {
      if (!isOurs(pid, marker)) return "stopped" as const
      yield* Effect.sleep(Duration.millis(100))
    }
    signal(pid, marker, "SIGKILL")
    return "killed" as const
  })

const portFree = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const server = net.createServer()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen(port, "127.0.0.1", () => server.close(() => resume(Effect.succeed(true))))
  })

/** GET `http://127.0.0.1:<port><path>` as JSON; undefined on any failure (a probe, never an error). */
const getJson = (port: number, pathAndQuery: string) =>
  Effect.callback<{ readonly status: number; readonly body: any } | undefined>((resume) => {
    let done = false
    const answer = (value: { readonly status: number; readonly body: any } | undefined) => {
      if (done) return
      done = true
      resume(Effect.succeed(value))
    }
    const req = http.get({ host: "127.0.0.1", port, path: pathAndQuery, timeout: probeTimeoutMs, agent: false }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (text += c))
      res.on("end", () => {
        try {
          answer({ status: res.statusCode ?? 0, body: JSON.parse(text) })
        } catch {
          answer({ status: res.statusCode ?? 0, body: text })
        }
      })
      res.on("error", () => answer(undefined))
    })
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", () => answer(undefined))
  })

/** Polls `check` until it returns a value or `timeoutMs` passes; then fails with `what` and the last reason. */
const waitFor = <A>(
  what: string,
  timeoutMs: number,
  check: Effect.Effect<{ readonly ok: A } | { readonly notYet: string }, LocalClusterError>
) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
    for (;;) {
      const r = yield* check
      if ("ok" in r) return r.ok
      if ((yield* Clock.currentTimeMillis) > deadline) {
        return yield* fail(`${what} did not happen within ${timeoutMs} ms (last: ${r.notYet})`)
      }
      yield* Effect.sleep(Duration.millis(probeIntervalMs))
    }
  })

const tail = (file: string, lines = 15) => {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
  } catch {
    return "(no log)"
  }
}

const natsBinary = (explicit: string | undefined): Effect.Effect<string, LocalClusterError> =>
  explicit !== undefined ? Effect.succeed(explicit) : Effect.tryPromise({
    try: () => {
      // A non-literal specifier: the .mjs script has no type declarations.
      const spec: string = new URL("../../../scripts/nats-server.mjs", import.meta.url).href
      return (import(spec) as Promise<{ ensureNatsServer(): Promise<string> }>).then((m) => m.ensureNatsServer())
    },
    catch: (e) => new LocalClusterError({ message: `no usable nats-server: ${(e as Error).message}` })
  })

// --- NATS nodes ---------------------------------------------------------------------------------------------------

const startNats = (bin: string, node: NatsNode) =>
  Effect.map(spawnDetached(bin, ["-c", node.configFile], node.logFile, process.env), (pid): NatsNode => ({ ...node, pid }))

const natsHealthy = (node: NatsNode) =>
  Effect.map(getJson(node.monitorPort, "/healthz?js-enabled-only=true"), (r) => r?.status === 200)

/** Every running node healthy and agreeing on one JetStream meta leader over the whole group. */
const natsReady = (nodes: ReadonlyArray<NatsNode>) =>
  Effect.gen(function*() {
    for (const node of nodes) {
      if (!isOurs(node.pid, natsMarker(node))) {
        return yield* fail(`nats-server ${node.name} exited during start-up; log ${node.logFile}:\n${tail(node.logFile)}`)
      }
      if (!(yield* natsHealthy(node))) return { notYet: `${node.name} not healthy` }
    }
    if (nodes.length === 1) return { ok: undefined }
    const views = yield* Effect.forEach(nodes, (n) => getJson(n.monitorPort, "/jsz"))
    const leaders = new Set(views.map((v) => v?.body?.meta_cluster?.leader ?? ""))
    const full = views.every((v) => (v?.body?.meta_cluster?.cluster_size ?? 0) >= nodes.length)
    return leaders.size === 1 && !leaders.has("") && full
      ? { ok: undefined }
      : { notYet: `meta leaders ${[...leaders].join(",") || "-"}` }
  })

// --- runners ------------------------------------------------------------------------------------------------------

const startRunnerProcess = (runner: RunnerProcess) =>
  Effect.map(
    spawnDetached(process.execPath, [runnerEntry, ...runner.args], runner.logFile, { ...process.env, ...runner.env }),
    (pid): RunnerProcess => ({ ...runner, pid })
  )

/** The partitions as runner `r` reports them, or why not. */
const partitionsOf = (r: RunnerProcess) =>
  Effect.map(getJson(r.httpPort, "/v1/partitions"), (res): ReadonlyArray<PartitionOwnership> | string =>
    res === undefined
      ? `${r.name} does not answer`
      : res.status !== 200
      ? `${r.name} answers ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`
      : (res.body.partitions as ReadonlyArray<PartitionOwnership>))

/** Every runner serving, and all of them naming the same runner as the owner of every partition. */
const runnersReady = (runners: ReadonlyArray<RunnerProcess>) =>
  Effect.gen(function*() {
    for (const r of runners) {
      if (!isOurs(r.pid, runnerMarker(r))) {
        return yield* fail(`runner ${r.name} exited during start-up; log ${r.logFile}:\n${tail(r.logFile, 30)}`)
      }
    }
    const views = yield* Effect.forEach(runners, partitionsOf, { concurrency: "unbounded" })
    const addresses = new Set(runners.map((r) => r.address))
    const first = views[0]
    for (const view of views) if (typeof view === "string") return { notYet: view }
    const owners = (first as ReadonlyArray<PartitionOwnership>).map((p) => p.owner)
    for (const owner of owners) if (!addresses.has(owner)) return { notYet: `a partition owned by ${owner}` }
    for (const view of views) {
      if ((view as ReadonlyArray<PartitionOwnership>).some((p, i) => p.owner !== owners[i])) {
        return { notYet: "runners disagree on partition owners (shards moving)" }
      }
    }
    return { ok: first as ReadonlyArray<PartitionOwnership> }
  })

// --- public API ---------------------------------------------------------------------------------------------------

/**
 * Starts the cluster and waits until every partition is owned; returns what it started (also in `<dir>/cluster.json`).
 * Fails without starting anything when a port is in use or a cluster of this directory is still running; when a
 * process does not come up it fails with its log tail and leaves the rest running for inspection (`down` stops it).
 */
export const up = (options: UpOptions): Effect.Effect<ClusterFile & { readonly partitions: ReadonlyArray<PartitionOwnership> }, LocalClusterError> =>
  Effect.gen(function*() {
    const dir = path.resolve(options.dir)
    const nodes = options.nodes ?? 3
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) return yield* fail(`nodes must be an integer in [1, 9], got ${nodes}`)
    const replicas = options.replicas ?? Math.min(3, nodes)
    if (replicas > nodes) return yield* fail(`replicas (${replicas}) cannot exceed the NATS nodes (${nodes})`)
    if (fs.existsSync(clusterFile(dir))) {
      const previous = yield* readClusterFile(dir)
      const alive = [
        ...previous.nats.filter((n) => isOurs(n.pid, natsMarker(n))).map((n) => `${n.name} (pid ${n.pid})`),
        ...previous.runners.filter((r) => isOurs(r.pid, runnerMarker(r))).map((r) => `${r.name} (pid ${r.pid})`)
      ]
      if (alive.length > 0) return yield* fail(`a cluster of ${dir} is still running: ${alive.join(", ")}; run down first`)
    }
    const base = {
      http: options.httpPortBase ?? 3900,
      runner: options.runnerPortBase ?? 3950,
      client: options.natsClientPortBase ?? 4250,
      route: options.natsClusterPortBase ?? 6250,
      monitor: options.natsMonitorPortBase ?? 8250
    }
    const ports = Object.entries(base).flatMap(([kind, b]) => Array.from({ length: nodes }, (_, i) => [kind, b + i] as const))
    const seen = new Set<number>()
    for (const [kind, port] of ports) {
      if (seen.has(port)) return yield* fail(`port ${port} is given to two processes; spread the port bases apart`)
      seen.add(port)
      if (!(yield* portFree(port))) return yield* fail(`port ${port} (${kind}) is in use on 127.0.0.1; choose another base`)
    }

    const bin = yield* natsBinary(options.natsServer)
    const template = yield* io(`reading ${templateFile}`, () => fs.readFileSync(templateFile, "utf8"))
    const clusterName = `chronos-${path.basename(dir).replace(/[^A-Za-z0-9_-]/g, "_")}`
    const routes = Array.from({ length: nodes }, (_, i) => `    "nats-route://127.0.0.1:${base.route + i}"`).join("\n")
    const planned: Array<NatsNode> = []
    for (let i = 0; i < nodes; i++) {
      const name = `n${i + 1}`
      const nodeDir = path.join(dir, "nats", name)
      const node: NatsNode = {
        name,
        pid: 0,
        clientPort: base.client + i,
        clusterPort: base.route + i,
        monitorPort: base.monitor + i,
        url: `nats://127.0.0.1:${base.client + i}`,
        configFile: path.join(nodeDir, "nats-server.conf"),
        logFile: path.join(nodeDir, "nats-server.log")
      }
      const config = renderTemplate(template, {
        name,
        host: "127.0.0.1",
        clientPort: String(node.clientPort),
        monitorPort: String(node.monitorPort),
        clusterPort: String(node.clusterPort),
        storeDir: path.join(nodeDir, "store"),
        clusterName,
        routes
      }, { cluster: nodes > 1 })
      yield* io(`writing ${node.configFile}`, () => {
        fs.mkdirSync(path.join(nodeDir, "store"), { recursive: true })
        fs.writeFileSync(node.configFile, config)
      })
      planned.push(node)
    }
    const nats = yield* Effect.forEach(planned, (n) => startNats(bin, n))
    // Recorded at once, so `down` can stop what was started even if the rest of `up` fails.
    yield* writeClusterFile({ dir, nats, runners: [] })
    yield* waitFor("NATS cluster start-up", natsReadyTimeoutMs, natsReady(nats))

    const natsUrls = nats.map((n) => n.url)
    const runners: Array<RunnerProcess> = []
    for (let i = 0; i < nodes; i++) {
      const name = `r${i + 1}`
      const runnerOptions: Runner.Options & { readonly logLevel?: LogLevel.LogLevel | undefined } = {
        name,
        logLevel: options.runnerLogLevel,
        natsUrls,
        replicas,
        runnerHost: "127.0.0.1",
        runnerPort: base.runner + i,
        config: {
          httpHost: "127.0.0.1",
          httpPort: base.http + i,
          ...(options.partitions === undefined ? {} : { partitions: options.partitions })
        }
      }
      runners.push(yield* startRunnerProcess({
        name,
        pid: 0,
        httpPort: base.http + i,
        runnerPort: base.runner + i,
        address: `127.0.0.1:${base.runner + i}`, // as the runner advertises itself (`Runner.formatAddress`)
        url: `http://127.0.0.1:${base.http + i}`,
        logFile: path.join(dir, "runners", `${name}.log`),
        args: RunnerArgs.toArgs(runnerOptions),
        env: { ...options.runnerEnv }
      }))
    }
    const cluster: ClusterFile = { dir, nats, runners }
    yield* writeClusterFile(cluster)
    const partitions = yield* waitFor("every partition owned by a runner", runnersReadyTimeoutMs, runnersReady(runners))
    return { ...cluster, partitions }
  })

/**
 * Stops the runners (graceful handoff), then the NATS nodes; keeps the directory and its data. A process that has
 * not exited `graceMs` (default `stopGraceMs`) after SIGTERM is killed.
 */
export const down = (options: { readonly dir: string; readonly graceMs?: number | undefined }): Effect.Effect<
  ReadonlyArray<{ readonly name: string; readonly pid: number; readonly result: "stopped" | "killed" | "not running" }>,
  LocalClusterError
> =>
  Effect.gen(function*() {
    const cluster = yield* readClusterFile(options.dir)
    const grace = options.graceMs ?? stopGraceMs
    const runners = yield* Effect.forEach(
      cluster.runners,
      (r) => Effect.map(stopProcess(r.pid, runnerMarker(r), grace), (result) => ({ name: r.name, pid: r.pid, result })),
      { concurrency: "unbounded" }
    )
    const nats = yield* Effect.forEach(
      cluster.nats,
      (n) => Effect.map(stopProcess(n.pid, natsMarker(n), grace), (result) => ({ name: n.name, pid: n.pid, result })),
      { concurrency: "unbounded" }
    )
    return [...runners, ...nats]
  })

/** Processes, their health, the owner, sequence and watermark of every partition, and each stream's replicas. */
export const status = (options: { readonly dir: string }): Effect.Effect<Status, LocalClusterError> =>
  Effect.gen(function*() {
    const cluster = yield* readClusterFile(options.dir)
    const nats = yield* Effect.forEach(cluster.nats, (n) => {
      const running = isOurs(n.pid, natsMarker(n))
      return Effect.map(running ? natsHealthy(n) : Effect.succeed(false), (healthy) => ({ ...n, running, healthy }))
    }, { concurrency: "unbounded" })
    const runners = yield* Effect.forEach(cluster.runners, (r) => {
      const running = isOurs(r.pid, runnerMarker(r))
      return Effect.map(
        running ? getJson(r.httpPort, "/health") : Effect.succeed(undefined),
        (res) => ({ ...r, running, healthy: res?.status === 200 })
      )
    }, { concurrency: "unbounded" })
    let partitions: ReadonlyArray<PartitionOwnership> = []
    for (const r of runners) {
      if (!r.healthy) continue
      const view = yield* partitionsOf(r)
      if (typeof view !== "string") {
        partitions = view
        break
      }
    }
    const urls = nats.filter((n) => n.healthy).map((n) => n.url)
    if (partitions.length > 0 && urls.length > 0) {
      const replicas = yield* replicasOfAll(urls, partitions.map((p) => p.partition))
      partitions = partitions.map((p) => ({ ...p, replicas: p.replicas ?? replicas.get(p.partition) }))
    }
    return { dir: cluster.dir, nats, runners, partitions }
  })

/** The replicas of each partition's stream, read from NATS (best effort: an unreachable NATS gives none). */
const replicasOfAll = (servers: ReadonlyArray<string>, partitions: ReadonlyArray<number>) =>
  Effect.promise(async () => {
    const out = new Map<number, ReadonlyArray<Event.ReplicaStatus>>()
    const nc = await connect({ servers: [...servers], timeout: replicaQueryTimeoutMs, maxReconnectAttempts: 0 }).catch(() => undefined)
    if (nc === undefined) return out
    try {
      const jsm = await jetstreamManager(nc, { timeout: replicaQueryTimeoutMs, checkAPI: false })
      await Promise.all(partitions.map(async (p) => {
        const replicas = await readReplicas(jsm, defaultStreamPrefix, p).catch(() => undefined)
        if (replicas !== undefined) out.set(p, replicas)
      }))
    } finally {
      await nc.close().catch(() => undefined)
    }
    return out
  })

/** Starts NATS node `name` again with its recorded config (after a kill); waits until it is healthy. */
export const restartNats = (options: { readonly dir: string; readonly name: string; readonly natsServer?: string | undefined }) =>
  Effect.gen(function*() {
    const cluster = yield* readClusterFile(options.dir)
    const node = cluster.nats.find((n) => n.name === options.name)
    if (node === undefined) return yield* fail(`no NATS node ${options.name} in ${options.dir}`)
    if (isOurs(node.pid, natsMarker(node))) return yield* fail(`NATS node ${options.name} (pid ${node.pid}) is still running`)
    const started = yield* startNats(yield* natsBinary(options.natsServer), node)
    yield* writeClusterFile({ ...cluster, nats: cluster.nats.map((n) => n.name === node.name ? started : n) })
    yield* waitFor(`NATS node ${node.name} healthy`, natsReadyTimeoutMs, Effect.map(natsHealthy(started), (ok) =>
      ok ? { ok: undefined } : { notYet: "not healthy" }))
    return started
  })

/** Starts runner `name` again with its recorded arguments (after a kill); waits until it serves HTTP. */
export const restartRunner = (options: { readonly dir: string; readonly name: string }) =>
  Effect.gen(function*() {
    const cluster = yield* readClusterFile(options.dir)
    const runner = cluster.runners.find((r) => r.name === options.name)
    if (runner === undefined) return yield* fail(`no runner ${options.name} in ${options.dir}`)
    if (isOurs(runner.pid, runnerMarker(runner))) return yield* fail(`runner ${options.name} (pid ${runner.pid}) is still running`)
    const started = yield* startRunnerProcess(runner)
    yield* writeClusterFile({ ...cluster, runners: cluster.runners.map((r) => r.name === runner.name ? started : r) })
    yield* waitFor(`runner ${runner.name} serving`, runnersReadyTimeoutMs, Effect.gen(function*() {
      if (!isOurs(started.pid, runnerMarker(started))) {
        return yield* fail(`runner ${runner.name} exited during start-up; log ${runner.logFile}:\n${tail(runner.logFile, 30)}`)
      }
      const res = yield* getJson(started.httpPort, "/health")
      return res?.status === 200 ? { ok: undefined } : { notYet: "not serving" }
    }))
    return started
  })

// --- text output (the CLI prints these) -----------------------------------------------------------------------------

/** What `up` prints: the endpoints. */
export const formatUp = (cluster: ClusterFile & { readonly partitions: ReadonlyArray<PartitionOwnership> }): string => {
  const owned = new Map<string, number>()
  for (const p of cluster.partitions) owned.set(p.owner, (owned.get(p.owner) ?? 0) + 1)
  return [
    `chronos cluster up in ${cluster.dir}`,
    "runners (HTTP API, any runner serves every partition):",
    ...cluster.runners.map((r) =>
      `  ${r.name}  ${r.url}  runner ${r.address}  pid ${r.pid}  partitions ${owned.get(r.address) ?? 0}  log ${r.logFile}`
    ),
    "NATS (JetStream):",
    ...cluster.nats.map((n) => `  ${n.name}  ${n.url}  monitor http://127.0.0.1:${n.monitorPort}  pid ${n.pid}`),
    `every one of the ${cluster.partitions.length} partitions is owned; stop with: down --dir ${cluster.dir}`
  ].join("\n")
}

/** What `status` prints without `--json`. */
export const formatStatus = (s: Status): string => {
  const state = (p: { readonly running: boolean; readonly healthy: boolean }) =>
    p.healthy ? "healthy" : p.running ? "running, not healthy" : "not running"
  const replicas = (p: PartitionOwnership) =>
    p.replicas === undefined
      ? "replicas ?"
      : p.replicas.map((r) =>
        `${r.name}${r.leader ? "*" : ""}:${r.offline ? "offline" : r.current ? "current" : `lag ${r.lag}`}`
      ).join(" ")
  return [
    `cluster ${s.dir}`,
    "runners:",
    ...s.runners.map((r) => `  ${r.name}  ${r.url}  runner ${r.address}  pid ${r.pid}  ${state(r)}`),
    "NATS:",
    ...s.nats.map((n) => `  ${n.name}  ${n.url}  pid ${n.pid}  ${state(n)}`),
    "partitions (owner, seq, watermark, replicas; * = stream leader):",
    ...s.partitions.map((p) => `  ${String(p.partition).padStart(3)}  ${p.owner}  seq ${p.seq}  wm ${p.watermark}  ${replicas(p)}`)
  ].join("\n")
}

/** What `status --json` prints: the cluster.json shape plus liveness and the partitions. */
export const statusJson = (s: Status): string => JSON.stringify(s, null, 2)
