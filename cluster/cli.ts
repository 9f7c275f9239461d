/**
 * The local-cluster launcher as a command (`chronos cluster …` calls the same functions of
 * `packages/cluster/src/LocalCluster.ts`):
 *
 *   node cluster/cli.ts up --nodes 3 --dir D [--http-port-base 3900] [--runner-port-base 3950]
 *                          [--nats-port-base 4250] [--partitions N] [--replicas N]
 *   node cluster/cli.ts down --dir D
 *   node cluster/cli.ts status --dir D [--json]
 *
 * Exit codes: 0 success, 1 the operation failed (message on stderr), 2 usage error.
 */
import { Effect } from "effect"
import * as LocalCluster from "../packages/cluster/src/LocalCluster.ts"

const usage = [
  "usage: cli.ts up --dir D [--nodes 3] [--http-port-base 3900] [--runner-port-base 3950] [--nats-port-base 4250]",
  "                 [--partitions N] [--replicas N]",
  "       cli.ts down --dir D",
  "       cli.ts status --dir D [--json]"
].join("\n")

const usageError = (message: string): never => {
  process.stderr.write(`${message}\n${usage}\n`)
  process.exit(2)
}

const [command, ...rest] = process.argv.slice(2)
const flags = new Map<string, string>()
let json = false
for (let i = 0; i < rest.length; i++) {
  const arg = rest[i]!
  if (arg === "--json") {
    json = true
    continue
  }
  if (arg === "--help" || arg === "-h") {
    process.stdout.write(`${usage}\n`)
    process.exit(0)
  }
  const eq = arg.indexOf("=")
  const flag = eq === -1 ? arg : arg.slice(0, eq)
  const value = eq === -1 ? rest[++i] : arg.slice(eq + 1)
  if (!flag.startsWith("--") || value === undefined) usageError(`unexpected argument ${arg}`)
  flags.set(flag.slice(2), value!)
}
const known: Record<string, ReadonlyArray<string>> = {
  up: ["dir", "nodes", "http-port-base", "runner-port-base", "nats-port-base", "partitions", "replicas"],
  down: ["dir"],
  status: ["dir"]
}
if (command === undefined || known[command] === undefined) usageError(`unknown command ${command ?? "(none)"}`)
for (const flag of flags.keys()) if (!known[command!]!.includes(flag)) usageError(`unknown flag --${flag} for ${command}`)
if (json && command !== "status") usageError("--json is a flag of status")
const dir = flags.get("dir") ?? usageError("--dir is required")
const int = (flag: string): number | undefined => {
  const v = flags.get(flag)
  if (v === undefined) return undefined
  return /^\d+$/.test(v) ? Number(v) : usageError(`--${flag} expects a non-negative integer, got ${JSON.stringify(v)}`)
}

const natsBase = int("nats-port-base")
const program: Effect.Effect<string, LocalCluster.LocalClusterError> = command === "up"
  ? Effect.map(
    LocalCluster.up({
      dir,
      nodes: int("nodes"),
      httpPortBase: int("http-port-base"),
      runnerPortBase: int("runner-port-base"),
      // One base for the three NATS port ranges: client at the base, routes +2000, monitoring +4000.
      natsClientPortBase: natsBase,
      natsClusterPortBase: natsBase === undefined ? undefined : natsBase + 2000,
      natsMonitorPortBase: natsBase === undefined ? undefined : natsBase + 4000,
      partitions: int("partitions"),
      replicas: int("replicas")
    }),
    LocalCluster.formatUp
  )
  : command === "down"
  ? Effect.map(LocalCluster.down({ dir }), (stopped) =>
    stopped.map((p) => `${p.name} (pid ${p.pid}): ${p.result}`).join("\n"))
  : Effect.map(LocalCluster.status({ dir }), (s) => json ? LocalCluster.statusJson(s) : LocalCluster.formatStatus(s))

Effect.runPromise(Effect.result(program)).then((result) => {
  if (result._tag === "Success") {
    process.stdout.write(`${result.success}\n`)
    process.exit(0)
  }
  process.stderr.write(`error: ${result.failure.message}\n`)
  process.exit(1)
})
