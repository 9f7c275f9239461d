/**
 * The operator's commands of `chronos`: a local multi-node cluster (`cluster up|down|status`), the cold tier and
 * integrity tools over a data directory (`seal`, `verify`, `export`, `import`), and the MCP server over stdio
 * (`mcp`). Each is a thin shell over the module that owns the work (`@chronos/cluster`, `@chronos/storage`,
 * `@chronos/mcp`); this module owns flags, progress lines on stderr and exit codes.
 */
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as path from "node:path"

const some = <A>(o: Option.Option<A>): A | undefined => Option.getOrUndefined(o)

/** A progress line that rewrites itself on a terminal and appends otherwise (logs stay readable). */
const progress = (line: string) =>
  process.stderr.isTTY ? process.stderr.write(`\r\x1b[2K${line}`) : process.stderr.write(`${line}\n`)
const progressDone = () => process.stderr.isTTY && process.stderr.write("\n")

const bar = (done: number, total: number, width = 24) => {
  const filled = total === 0 ? width : Math.round((done / total) * width)
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total}`
}

/** Fails the command (exit 1) with a message, after printing it as the one error line. */
class CommandFailed extends Error {
  readonly _tag = "CommandFailed"
}

// ---- cluster ---------------------------------------------------------------------------------------------------------

const clusterDir = Flag.String("dir").pipe(Flag.withDescription("Directory of the local cluster (configs, data, logs)"))

const clusterUp = Command.make(
  "up",
  {
    nodes: Flag.Int("nodes").pipe(Flag.withDescription("NATS nodes and runners (default 3)"), Flag.withDefault(3)),
    dir: clusterDir,
    httpPort: Flag.Int("http-port").pipe(Flag.withDescription("HTTP port of the first runner (default 3900)"), Flag.optional),
    partitions: Flag.Int("partitions").pipe(Flag.withDescription("Partitions (fixed when first created)"), Flag.optional)
  },
  (flags) =>
    Effect.gen(function*() {
      const LocalCluster = yield* Effect.promise(() => import("@chronos/cluster/LocalCluster"))
      const t0 = performance.now()
      const cluster = yield* LocalCluster.up({
        dir: path.resolve(flags.dir),
        nodes: flags.nodes,
        httpPortBase: some(flags.httpPort),
        partitions: some(flags.partitions)
      })
      const owners = new Set(cluster.partitions.map((p) => p.owner))
      yield* Console.log(`cluster up in ${((performance.now() - t0) / 1_000).toFixed(1)} s: ` +
        `${cluster.partitions.length} partitions owned by ${owners.size} runners`)
      for (const r of cluster.runners) yield* Console.log(`  runner ${r.name}: http://127.0.0.1:${r.httpPort} (pid ${r.pid})`)
      for (const n of cluster.nats) yield* Console.log(`  nats ${n.name}: nats://127.0.0.1:${n.clientPort} (pid ${n.pid})`)
    })
).pipe(Command.withDescription("Start a local cluster: N nats-servers (R3) and N runners on loopback; waits until every partition is owned"))

const clusterDown = Command.make("down", { dir: clusterDir }, (flags) =>
  Effect.gen(function*() {
    const LocalCluster = yield* Effect.promise(() => import("@chronos/cluster/LocalCluster"))
    yield* LocalCluster.down({ dir: path.resolve(flags.dir) })
    yield* Console.log("cluster down")
  })).pipe(Command.withDescription("Stop the local cluster in --dir (runners first, then NATS)"))

const clusterStatus = Command.make(
  "status",
  { dir: clusterDir, json: Flag.Boolean("json").pipe(Flag.withDescription("Print JSON"), Flag.withDefault(false)) },
  (flags) =>
    Effect.gen(function*() {
      const LocalCluster = yield* Effect.promise(() => import("@chronos/cluster/LocalCluster"))
      const status = yield* LocalCluster.status({ dir: path.resolve(flags.dir) })
      if (flags.json) {
        return yield* Console.log(JSON.stringify({
          nats: status.nats.map((n) => ({ name: n.name, pid: n.pid, clientPort: n.clientPort, running: n.running, healthy: n.healthy })),
          runners: status.runners.map((r) => ({ name: r.name, pid: r.pid, httpPort: r.httpPort, running: r.running, healthy: r.healthy })),
          partitions: status.partitions
        }))
      }
      for (const n of status.nats) {
        yield* Console.log(`nats   ${n.name} pid ${n.pid} :${n.clientPort} ${n.running ? (n.healthy ? "healthy" : "unhealthy") : "down"}`)
      }
      for (const r of status.runners) {
        yield* Console.log(`runner ${r.name} pid ${r.pid} :${r.httpPort} ${r.running ? (r.healthy ? "healthy" : "unhealthy") : "down"}`)
      }
      const owners = new Map<string, number>()
      for (const p of status.partitions) owners.set(p.owner, (owners.get(p.owner) ?? 0) + 1)
      yield* Console.log(`partitions: ${[...owners].map(([o, n]) => `${n} on ${o}`).join(", ") || "none reported"}`)
    })
).pipe(Command.withDescription("Show the local cluster's processes (pids, ports, health) and partition owners"))

const cluster = Command.make("cluster").pipe(
  Command.withDescription("A local multi-node cluster on loopback"),
  Command.withSubcommands([clusterUp, clusterDown, clusterStatus])
)

// ---- cold tier and integrity ---------------------------------------------------------------------------------------

const dataDirFlag = Flag.String("data-dir").pipe(Flag.withDescription("Data directory"), Flag.withDefault("./data"))

const seal = Command.make("seal", { dataDir: dataDirFlag }, (flags) =>
  Effect.gen(function*() {
    const Seal = yield* Effect.promise(() => import("@chronos/storage/Seal"))
    const reports = yield* Seal.run({
      dataDir: flags.dataDir,
      onProgress: (p) => progress(`sealing ${bar(p.done, p.total)} partition ${p.partition}`)
    })
    progressDone()
    for (const r of reports) yield* Console.log(JSON.stringify(r))
  })).pipe(Command.withDescription("Seal every partition's durable log into Parquet segments now (offline: no node may hold the dir)"))

/**
 * Ends a scrub: its warnings and problems on stderr (one JSON line each), a summary line on stdout (`ok`, `what`,
 * the counts), and a failure (exit 1) when anything is corrupt.
 */
const reportVerify = (
  report: { readonly ok: boolean; readonly warnings: ReadonlyArray<unknown>; readonly problems: ReadonlyArray<unknown> },
  what: Readonly<Record<string, unknown>>
) =>
  Effect.gen(function*() {
    progressDone()
    for (const w of report.warnings) yield* Console.error(`warning: ${JSON.stringify(w)}`)
    for (const p of report.problems) yield* Console.error(`corrupt: ${JSON.stringify(p)}`)
    yield* Console.log(JSON.stringify({
      ok: report.ok,
      ...what,
      problems: report.problems.length,
      warnings: report.warnings.length
    }))
    if (!report.ok) return yield* Effect.fail(new CommandFailed(`verify found ${report.problems.length} problem(s)`))
  })

const verifyNats = (servers: ReadonlyArray<string>, bucketPrefix: string | undefined) =>
  Effect.gen(function*() {
    const Verify = yield* Effect.promise(() => import("@chronos/storage/Verify"))
    const { defaults } = yield* Effect.promise(() => import("@chronos/config"))
    const report = yield* Verify.runNats({
      servers,
      bucketPrefix,
      requestTimeoutMs: defaults.segmentStoreTimeoutMs,
      onProgress: (p) => progress(`verifying ${bar(p.done, p.total)} partition ${p.partition}`)
    })
    return yield* reportVerify(report, {
      nats: servers.join(","),
      partitions: report.partitions.length,
      segmentBytes: report.segmentBytes
    })
  })

const verify = Command.make("verify", {
  dataDir: dataDirFlag,
  nats: Flag.String("nats").pipe(
    Flag.withDescription("Scrub a cluster's NATS segment store at these servers (comma separated) instead of a data dir"),
    Flag.optional
  ),
  prefix: Flag.String("prefix").pipe(
    Flag.withDescription("Bucket prefix of the NATS segment store (default CHRONOS: CHRONOS_SEGMENTS, CHRONOS_MANIFESTS)"),
    Flag.optional
  )
}, (flags) =>
  Effect.gen(function*() {
    if (Option.isSome(flags.nats)) {
      const servers = flags.nats.value.split(",").map((s) => s.trim()).filter((s) => s !== "")
      return yield* verifyNats(servers, some(flags.prefix))
    }
    const Verify = yield* Effect.promise(() => import("@chronos/storage/Verify"))
    const report = yield* Verify.run({
      dataDir: flags.dataDir,
      onProgress: (p) => progress(`verifying ${bar(p.done, p.total)} partition ${p.partition}`)
    })
    return yield* reportVerify(report, {
      dataDir: report.dataDir,
      partitions: report.partitions.length,
      logBytes: report.logBytes,
      segmentBytes: report.segmentBytes
    })
  })).pipe(Command.withDescription(
    "Scrub a data dir (every log record's CRC32C, every segment's SHA-256) or with --nats a cluster's segment store; " +
      "exit 1 on corruption"
  ))

const target = (url: Option.Option<string>, dataDir: Option.Option<string>) =>
  Option.isSome(url)
    ? { url: url.value }
    : { dataDir: Option.getOrElse(dataDir, () => "./data") }

const transferFlags = {
  url: Flag.String("url").pipe(Flag.withDescription("Base URL of a running node"), Flag.optional),
  dataDir: Flag.String("data-dir").pipe(Flag.withDescription("Data directory (when no node holds it)"), Flag.optional)
}

const exportCommand = Command.make(
  "export",
  {
    tenant: Flag.String("tenant").pipe(Flag.withDescription("Tenant to export")),
    to: Flag.String("to").pipe(Flag.withDescription("Parquet file to write")),
    ...transferFlags
  },
  (flags) =>
    Effect.gen(function*() {
      const Export = yield* Effect.promise(() => import("@chronos/storage/Export"))
      const report = yield* Export.run({
        ...target(flags.url, flags.dataDir),
        tenant: flags.tenant,
        to: flags.to,
        onProgress: (p) => progress(`export ${p.phase} ${bar(p.partitionsDone, p.partitions)} partitions, ${p.events} events`)
      })
      progressDone()
      yield* Console.log(JSON.stringify(report))
    })
).pipe(Command.withDescription("Export a tenant's events to one Parquet file (readable by DuckDB, Spark, pandas…)"))

const importCommand = Command.make(
  "import",
  {
    from: Flag.String("from").pipe(Flag.withDescription("Parquet file written by `chronos export`")),
    tenant: Flag.String("tenant").pipe(Flag.withDescription("Import into this tenant instead of the file's"), Flag.optional),
    ...transferFlags
  },
  (flags) =>
    Effect.gen(function*() {
      const Import = yield* Effect.promise(() => import("@chronos/storage/Import"))
      const report = yield* Import.run({
        ...target(flags.url, flags.dataDir),
        from: flags.from,
        tenant: some(flags.tenant),
        onProgress: (p) => progress(`import ${bar(p.events, p.total)} events`)
      })
      progressDone()
      yield* Console.log(JSON.stringify(report))
    })
).pipe(Command.withDescription("Import a Parquet export (idempotent by event id: re-running appends nothing new)"))

// ---- MCP -------------------------------------------------------------------------------------------------------------

const mcp = Command.make(
  "mcp",
  {
    url: Flag.String("url").pipe(Flag.withDescription("Serve a running node (its HTTP API)"), Flag.optional),
    dataDir: Flag.String("data-dir").pipe(Flag.withDescription("Serve an embedded store in this directory"), Flag.optional)
  },
  (flags) =>
    Effect.gen(function*() {
      const ChronosMcp = yield* Effect.promise(() => import("@chronos/mcp/ChronosMcp"))
      return yield* Layer.launch(ChronosMcp.stdioProcess(target(flags.url, flags.dataDir)))
    })
).pipe(Command.withDescription("Run the MCP server over stdio, for an agent (see the README for client config)"))

export const commands = [cluster, seal, verify, exportCommand, importCommand, mcp] as const

