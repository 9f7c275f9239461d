// Real nats-server processes for tests and benchmarks: one JetStream server, or an N-node cluster on loopback.
//
// The binary comes from scripts/nats-server.mjs (CHRONOS_NATS_SERVER, PATH >= 2.10, or a cached Debian package).
// Every server gets its own directory (config, log, store) under the OS temp dir; stdout/stderr go to
// <dir>/nats-server.log. All processes are killed by stop() and, as a last resort, when this process exits.
// Set CHRONOS_KEEP_NATS_DIRS=1 to keep the directories after stop() (to inspect logs and stores).
//
// Only erasable TypeScript syntax: this file also runs under Node 22 type stripping (benchmarks).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export interface NatsServerOptions {
  /** JetStream store directory; default: a fresh directory inside the server's temp dir. */
  readonly storeDir?: string;
  /** Client port; default: a free port. */
  readonly port?: number;
  /** `jetstream { sync_interval: always }` (fsync before every ack); default true. */
  readonly syncAlways?: boolean;
}

export interface NatsServerHandle {
  /** e.g. "nats://127.0.0.1:41234" */
  readonly url: string;
  readonly port: number;
  /** HTTP monitoring port (/healthz, /varz, /jsz, ...). */
  readonly monitorPort: number;
  /** Cluster (route) port, or undefined for a standalone server. */
  readonly clusterPort: number | undefined;
  /** server_name, e.g. "n1" in a cluster. */
  readonly name: string;
  /** pid of the current process (changes after restart()). */
  readonly pid: number;
  readonly storeDir: string;
  /** Directory holding the config file and the log. */
  readonly dir: string;
  readonly configFile: string;
  readonly logFile: string;
  /** Whether the current process is still running (a paused process counts as running). */
  readonly running: boolean;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. Removes temp dirs unless kept. */
  stop(): Promise<void>;
  /** Sends a signal (default SIGKILL) without waiting: "SIGKILL" for a crash, "SIGSTOP"/"SIGCONT" to pause/resume. */
  kill(signal?: NodeJS.Signals): void;
  /** Starts the server again on the same ports and store dir (stopping it first if it still runs). */
  restart(): Promise<void>;
  /** The last lines of the server log. */
  logTail(lines?: number): string;
}

export interface NatsClusterOptions {
  /** Number of nodes; default 3. */
  readonly size?: number;
  /** `sync_interval: always` on every node; default true. */
  readonly syncAlways?: boolean;
}

export interface NatsClusterHandle {
  readonly name: string;
  /** Client URLs of all nodes, in node order. */
  readonly urls: ReadonlyArray<string>;
  readonly nodes: ReadonlyArray<NatsServerHandle>;
  /** Waits until every running node reports the same JetStream meta leader and a full meta group. */
  waitForMetaLeader(timeoutMs?: number): Promise<string>;
  /** The logs of all nodes, for failure messages. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;
const CLUSTER_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const LOG_NAME = "nats-server.log";

// ---------------------------------------------------------------------------------------------
// binary

let binary: Promise<string> | undefined;

function natsServerBinary(): Promise<string> {
  // A non-literal specifier keeps TypeScript from needing declarations for the .mjs script.
  const spec: string = new URL("../../scripts/nats-server.mjs", import.meta.url).href;
  binary ??= (import(spec) as Promise<{ ensureNatsServer(): Promise<string> }>)
    .then((m) => m.ensureNatsServer())
    .catch((e: unknown) => {
      binary = undefined;
      throw e;
    });
  return binary;
}

// ---------------------------------------------------------------------------------------------
// process registry: everything still running is killed when this process exits

const live = new Set<ChildProcess>();
/** Temp directories created here, removed by stop() or at exit (unless CHRONOS_KEEP_NATS_DIRS is set). */
const ownedDirs = new Set<string>();
let exitHooksInstalled = false;

const keepDirs = (): boolean => Boolean(process.env.CHRONOS_KEEP_NATS_DIRS);

async function removeOwnedDir(dir: string): Promise<void> {
  ownedDirs.delete(dir);
  if (!keepDirs()) await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
}

function killAllSync(): void {
  for (const child of live) {
    try {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  live.clear();
  if (!keepDirs()) {
    for (const dir of ownedDirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // best effort
      }
    }
  }
  ownedDirs.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", killAllSync);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      killAllSync();
      process.removeListener(sig, onSignal);
      // Re-raise so the default behaviour (or other handlers) still applies.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

/** Distinct free TCP ports on 127.0.0.1: all are bound at once (so they differ), then released. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function httpGet(port: number, pathAndQuery: string, timeoutMs = 2_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: pathAndQuery, timeout: timeoutMs, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${pathAndQuery} timed out`)));
    req.on("error", reject);
  });
}

function readTail(file: string, lines: number): string {
  try {
    const text = fs.readFileSync(file, "utf8");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

const q = (s: string): string => JSON.stringify(s);

function isAddressInUse(log: string): boolean {
  return /address already in use/i.test(log);
}

interface ServerSpec {
  readonly name: string;
  readonly dir: string;
  readonly storeDir: string;
  readonly port: number;
  readonly monitorPort: number;
  readonly syncAlways: boolean;
  readonly cluster?: { readonly name: string; readonly port: number; readonly routes: ReadonlyArray<number> };
}

function configText(s: ServerSpec): string {
  const js = [`store_dir: ${q(s.storeDir)}`, "max_mem: 256MB", "max_file: 8GB"];
  if (s.syncAlways) js.push("sync_interval: always");
  const lines = [
    `server_name: ${q(s.name)}`,
    `listen: "127.0.0.1:${s.port}"`,
    `http: "127.0.0.1:${s.monitorPort}"`,
    "max_payload: 8MB",
    `jetstream { ${js.join(", ")} }`,
  ];
  if (s.cluster) {
    lines.push(
      "cluster {",
      `  name: ${q(s.cluster.name)}`,
      `  listen: "127.0.0.1:${s.cluster.port}"`,
      `  routes: [ ${s.cluster.routes.map((p) => q(`nats-route://127.0.0.1:${p}`)).join(", ")} ]`,
      "}",
    );
  }
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// one server process

class ServerProcess implements NatsServerHandle {
  readonly spec: ServerSpec;
  readonly ownsDir: boolean;
  readonly configFile: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(spec: ServerSpec, ownsDir: boolean) {
    this.spec = spec;
    this.ownsDir = ownsDir;
    this.configFile = path.join(spec.dir, "nats-server.conf");
    this.logFile = path.join(spec.dir, LOG_NAME);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.spec.port}`;
  }
  get port(): number {
    return this.spec.port;
  }
  get monitorPort(): number {
    return this.spec.monitorPort;
  }
  get clusterPort(): number | undefined {
    return this.spec.cluster?.port;
  }
  get name(): string {
    return this.spec.name;
  }
  get storeDir(): string {
    return this.spec.storeDir;
  }
  get dir(): string {
    return this.spec.dir;
  }
  get pid(): number {
    return this.child?.pid ?? -1;
  }
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  logTail(lines = 40): string {
    return readTail(this.logFile, lines);
  }

  /** Spawns the process (config written first); does not wait for readiness. */
  async spawn(): Promise<void> {
    const bin = await natsServerBinary();
    await fsp.mkdir(this.spec.storeDir, { recursive: true });
    await fsp.writeFile(this.configFile, configText(this.spec));
    const fd = fs.openSync(this.logFile, "a");
    fs.writeSync(fd, `\n=== ${new Date().toISOString()} starting ${bin} -c ${this.configFile}\n`);
    let child: ChildProcess;
    try {
      child = spawn(bin, ["-c", this.configFile], { stdio: ["ignore", fd, fd], cwd: this.spec.dir });
    } finally {
      fs.closeSync(fd);
    }
    installExitHooks();
    this.child = child;
    this.stopped = false;
    live.add(child);
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        live.delete(child);
        resolve();
      });
      child.once("error", () => {
        live.delete(child);
        resolve();
      });
    });
  }

  /** Polls /healthz until JetStream is up; fails early if the process exits. */
  async waitReady(timeoutMs = START_TIMEOUT_MS): Promise<void> {
    const child = this.child;
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        throw new NatsStartError(
          `nats-server ${this.name} exited during startup (code ${child?.exitCode}, signal ${child?.signalCode})`,
          this,
        );
      }
      try {
        const r = await httpGet(this.monitorPort, "/healthz?js-enabled-only=true", 1_000);
        if (r.status === 200) return;
        last = `HTTP ${r.status} ${r.body.trim()}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new NatsStartError(`nats-server ${this.name} not healthy after ${timeoutMs} ms (last probe: ${last})`, this);
      }
      await sleep(50);
    }
  }

  async start(): Promise<void> {
    await this.spawn();
    await this.waitReady();
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    const pid = this.child?.pid;
    if (pid === undefined || !this.running) return;
    try {
      process.kill(pid, signal);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
    }
  }

  /** Ends the current process (SIGTERM, SIGKILL after the grace period); keeps the directories. */
  async terminate(): Promise<void> {
    if (!this.running) {
      await this.exited;
      return;
    }
    this.kill("SIGTERM");
    this.kill("SIGCONT"); // a paused (SIGSTOPped) server must run to handle SIGTERM
    let timer: ReturnType<typeof setTimeout> | undefined;
    const graceful = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STOP_GRACE_MS))),
    ]);
    clearTimeout(timer);
    if (!graceful) {
      this.kill("SIGKILL");
      await this.exited;
    }
  }

  async restart(): Promise<void> {
    await this.terminate();
    await this.start();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.terminate();
    if (this.ownsDir) await removeOwnedDir(this.spec.dir);
  }
}

export class NatsStartError extends Error {
  readonly log: string;
  constructor(message: string, server: { name: string; logFile: string; logTail(lines?: number): string }) {
    const log = server.logTail(30);
    super(`${message}\n--- ${server.logFile} (tail) ---\n${log}`);
    this.name = "NatsStartError";
    this.log = log;
  }
}

async function makeDir(prefix: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  ownedDirs.add(dir);
  installExitHooks();
  return dir;
}

// ---------------------------------------------------------------------------------------------
// public API

/** Starts one JetStream server on 127.0.0.1 and waits until it is healthy. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  await natsServerBinary(); // fail fast (and download once) before creating anything
  const attempts = opts.port === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const dir = await makeDir("chronos-nats-");
    const picked = await freePorts(2);
    const port = opts.port ?? picked[0]!;
    const monitorPort = picked[1]!;
    const server = new ServerProcess(
      {
        name: `s${port}`,
        dir,
        storeDir: opts.storeDir ? path.resolve(opts.storeDir) : path.join(dir, "store"),
        port,
        monitorPort,
        syncAlways: opts.syncAlways ?? true,
      },
      true,
    );
    try {
      await server.start();
      return server;
    } catch (e) {
      const retry = attempt < attempts && isAddressInUse(server.logTail(10));
      await server.stop();
      if (!retry) throw e;
    }
  }
}

/** Starts an N-node JetStream cluster (routes on loopback) and waits for a meta leader over the full group. */
export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsClusterHandle> {
  const size = opts.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`cluster size must be a positive integer, got ${size}`);
  await natsServerBinary();
  for (let attempt = 1; ; attempt++) {
    const root = await makeDir("chronos-nats-cluster-");
    const ports = await freePorts(3 * size);
    const routePorts = ports.slice(2 * size);
    const clusterName = `chronos-test-${routePorts[0]}`;
    const nodes = Array.from({ length: size }, (_, i) => {
      const dir = path.join(root, `n${i + 1}`);
      return new ServerProcess(
        {
          name: `n${i + 1}`,
          dir,
          storeDir: path.join(dir, "store"),
          port: ports[i]!,
          monitorPort: ports[size + i]!,
          syncAlways: opts.syncAlways ?? true,
          cluster: { name: clusterName, port: routePorts[i]!, routes: routePorts },
        },
        false,
      );
    });
    await Promise.all(nodes.map((n) => fsp.mkdir(n.dir, { recursive: true })));
    const cluster = new Cluster(clusterName, root, nodes);
    try {
      await Promise.all(nodes.map((n) => n.spawn()));
      await Promise.all(nodes.map((n) => n.waitReady()));
      await cluster.waitForMetaLeader(CLUSTER_TIMEOUT_MS);
      return cluster;
    } catch (e) {
      const retry = attempt < 3 && nodes.some((n) => isAddressInUse(n.logTail(10)));
      await cluster.stop();
      if (!retry) throw e;
    }
  }
}

interface JszMeta {
  readonly server_name?: string;
  readonly meta_cluster?: {
    readonly leader?: string;
    readonly cluster_size?: number;
    readonly replicas?: ReadonlyArray<{ readonly name: string; readonly current?: boolean; readonly offline?: boolean }>;
  };
}

class Cluster implements NatsClusterHandle {
  readonly name: string;
  readonly root: string;
  readonly nodes: ReadonlyArray<ServerProcess>;

  constructor(name: string, root: string, nodes: ReadonlyArray<ServerProcess>) {
    this.name = name;
    this.root = root;
    this.nodes = nodes;
  }

  get urls(): ReadonlyArray<string> {
    return this.nodes.map((n) => n.url);
  }

  logTail(lines = 20): string {
    return this.nodes.map((n) => `--- ${n.name}: ${n.logFile} ---\n${n.logTail(lines)}`).join("\n");
  }

  async waitForMetaLeader(timeoutMs = CLUSTER_TIMEOUT_MS): Promise<string> {
    const size = this.nodes.length;
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      const running = this.nodes.filter((n) => n.running);
      const views = await Promise.all(
        running.map(async (n) => {
          try {
            const r = await httpGet(n.monitorPort, "/jsz", 1_000);
            return r.status === 200 ? (JSON.parse(r.body) as JszMeta) : undefined;
          } catch {
            return undefined;
          }
        }),
      );
      const leaders = new Set(views.map((v) => v?.meta_cluster?.leader ?? ""));
      const leader = views[0]?.meta_cluster?.leader;
      const full = views.every((v) => (v?.meta_cluster?.cluster_size ?? 0) >= size || (v?.meta_cluster?.replicas?.length ?? -1) + 1 >= size);
      if (running.length > 0 && leader && leaders.size === 1 && full) return leader;
      last = running
        .map((n, i) => `${n.name}: leader=${views[i]?.meta_cluster?.leader ?? "-"} size=${views[i]?.meta_cluster?.cluster_size ?? "-"}`)
        .join(", ");
      if (Date.now() > deadline) {
        throw new Error(
          `JetStream cluster ${this.name} has no meta leader over ${size} peers after ${timeoutMs} ms (${last})\n${this.logTail(20)}`,
        );
      }
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await removeOwnedDir(this.root);
  }
}
