/**
 * The Chronos MCP server as a stdio process, for MCP clients that launch their servers (Claude Desktop, Claude Code,
 * IDEs):
 *
 *     node packages/mcp/src/main.ts --url http://127.0.0.1:3900     # a running node, through the HTTP API
 *     node packages/mcp/src/main.ts --data-dir ./data               # the store opened in this process
 *          [--tenant T] [--partitions N]
 *
 * `--tenant` sets the tenant a session starts with (`CHRONOS_MCP_DEFAULT_TENANT`); `--partitions` is only needed for
 * a new data directory that should not get the default count. stdout carries only MCP messages; logs and usage go to
 * stderr. The CLI (`chronos mcp`) runs the same `ChronosMcp.stdioProcess`.
 */
import { realpathSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as ChronosMcp from "./ChronosMcp.ts"

const usage = "usage: main.ts (--url URL | --data-dir DIR) [--tenant T] [--partitions N]"

const fail = (message: string): never => {
  process.stderr.write(`${message}\n${usage}\n`)
  process.exit(2)
}

export interface Args {
  readonly target: ChronosMcp.Target
  readonly options: ChronosMcp.Options
}

/** Parses `--flag value` and `--flag=value`. */
export const parseArgs = (argv: ReadonlyArray<string>): Args => {
  let url: string | undefined
  let dataDir: string | undefined
  let tenant: string | undefined
  let partitions: number | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--help" || arg === "-h") {
      process.stderr.write(`${usage}\n`)
      process.exit(0)
    }
    const eq = arg.indexOf("=")
    const flag = eq === -1 ? arg : arg.slice(0, eq)
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
    if (value === undefined) return fail(`${flag} expects a value`)
    switch (flag) {
      case "--url":
        url = value
        break
      case "--data-dir":
        dataDir = value
        break
      case "--tenant":
        tenant = value
        break
      case "--partitions":
        if (!/^\d+$/.test(value)) return fail("--partitions expects a positive integer")
        partitions = Number(value)
        break
      default:
        return fail(`unknown argument ${arg}`)
    }
  }
  if ((url === undefined) === (dataDir === undefined)) return fail("give exactly one of --url and --data-dir")
  const target: ChronosMcp.Target = url !== undefined ? { url } : { dataDir: dataDir!, partitions }
  return { target, options: { config: tenant === undefined ? {} : { defaultTenant: tenant } } }
}

// Run only as the entry point, so `parseArgs` can be imported (tests, the CLI) without starting a server.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  const { options, target } = parseArgs(process.argv.slice(2))
  ChronosMcp.runStdio(target, options)
}
