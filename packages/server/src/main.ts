/**
 * Runs one Chronos node from the command line (the full CLI, `chronos start`, lives in `@chronos/cli` and calls
 * `Node.run` too):
 *
 *     node packages/server/src/main.ts [--host H] [--port N] [--data-dir D] [--log file|memory|jetstream]
 *                                      [--nats-url URL] [--partitions N] [--direct-path on|off]
 *
 * `--direct-path off` sends every request through HttpApi (see `internal/directPath.ts`); for comparisons.
 * Flags override `CHRONOS_*` environment variables, which override the defaults of `config/ChronosConfig.ts`.
 */
import { realpathSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type { ChronosConfigShape } from "@chronos/config"
import * as Node from "./Node.ts"

type Overrides = { -readonly [K in keyof ChronosConfigShape]?: ChronosConfigShape[K] }

const usage = "usage: main.ts [--host H] [--port N] [--data-dir D] [--log file|memory|jetstream] " +
  "[--nats-url URL] [--partitions N] [--direct-path on|off]"

const fail = (message: string): never => {
  process.stderr.write(`${message}\n${usage}\n`)
  process.exit(2)
}

const int = (flag: string, value: string): number =>
  /^\d+$/.test(value) ? Number(value) : fail(`${flag} expects a non-negative integer, got ${JSON.stringify(value)}`)

/** Parses `--flag value` and `--flag=value`. */
export const parseArgs = (
  argv: ReadonlyArray<string>
): { readonly overrides: Partial<ChronosConfigShape>; readonly options: Node.Options } => {
  const overrides: Overrides = {}
  let directPath = true
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--help" || arg === "-h") {
      process.stdout.write(`${usage}\n`)
      process.exit(0)
    }
    const eq = arg.indexOf("=")
    const flag = eq === -1 ? arg : arg.slice(0, eq)
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
    if (value === undefined) fail(`${flag} expects a value`)
    const v = value!
    switch (flag) {
      case "--host":
        overrides.httpHost = v
        break
      case "--port":
        overrides.httpPort = int(flag, v)
        break
      case "--data-dir":
        overrides.dataDir = v
        break
      case "--log":
        if (v !== "file" && v !== "memory" && v !== "jetstream") fail(`--log expects file, memory or jetstream`)
        overrides.logDriver = v as ChronosConfigShape["logDriver"]
        break
      case "--nats-url":
        overrides.natsUrls = v
        break
      case "--partitions":
        overrides.partitions = int(flag, v)
        break
      case "--direct-path":
        if (v !== "on" && v !== "off") fail("--direct-path expects on or off")
        directPath = v === "on"
        break
      default:
        fail(`unknown argument ${arg}`)
    }
  }
  return { overrides, options: { directPath } }
}

// Run only as the entry point, so `parseArgs` can be imported (tests, the CLI) without starting a node.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  const { overrides, options } = parseArgs(process.argv.slice(2))
  Node.run(overrides, options)
}
