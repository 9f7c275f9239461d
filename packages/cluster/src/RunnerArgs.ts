/**
 * The command line of a runner process (`cluster/runner.ts`): flags to `Runner.Options`. Pure, so the launcher
 * (`LocalCluster`) and tests build and check the same arguments the process parses.
 */
import type { LogLevel } from "effect"
import type * as Runner from "./Runner.ts"

const logLevels: ReadonlyArray<LogLevel.LogLevel> = ["All", "Trace", "Debug", "Info", "Warn", "Error", "Fatal", "None"]

export const usage = "usage: runner.ts --runner-port N --nats URL[,URL…] [--name NAME] [--http-port N] [--host H] " +
  "[--replicas N] [--partitions N] [--runner-host H] [--runner-listen-host H] [--bucket-prefix P] " +
  "[--log-level Info|Debug|Warn]"

export type Parsed =
  | { readonly _tag: "Ok"; readonly options: Runner.Options & { readonly logLevel?: LogLevel.LogLevel | undefined } }
  | { readonly _tag: "Help"; readonly usage: string }
  | { readonly _tag: "Invalid"; readonly message: string; readonly usage: string }

const port = (flag: string, value: string): number | string => {
  const n = Number(value)
  return /^\d+$/.test(value) && n <= 65_535 ? n : `${flag} expects a port number (0-65535), got ${JSON.stringify(value)}`
}

const positive = (flag: string, value: string): number | string =>
  /^[1-9]\d*$/.test(value) ? Number(value) : `${flag} expects a positive integer, got ${JSON.stringify(value)}`

/** Parses `--flag value` and `--flag=value`. */
export const parseRunnerArgs = (argv: ReadonlyArray<string>): Parsed => {
  const invalid = (message: string): Parsed => ({ _tag: "Invalid", message, usage })
  let name: string | undefined
  let natsUrls: Array<string> | undefined
  let runnerPort: number | undefined
  let replicas: number | undefined
  let runnerHost: string | undefined
  let runnerListenHost: string | undefined
  let bucketPrefix: string | undefined
  let logLevel: LogLevel.LogLevel | undefined
  const config: { httpPort?: number; httpHost?: string; partitions?: number } = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--help" || arg === "-h") return { _tag: "Help", usage }
    const eq = arg.indexOf("=")
    const flag = eq === -1 ? arg : arg.slice(0, eq)
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
    if (value === undefined) return invalid(`${flag} expects a value`)
    let n: number | string = 0
    switch (flag) {
      case "--name":
        name = value
        break
      case "--nats":
        natsUrls = value.split(",").map((s) => s.trim()).filter((s) => s !== "")
        if (natsUrls.length === 0) return invalid("--nats expects at least one URL")
        break
      case "--http-port":
        if (typeof (n = port(flag, value)) === "string") return invalid(n)
        config.httpPort = n
        break
      case "--host":
        config.httpHost = value
        break
      case "--runner-port":
        if (typeof (n = port(flag, value)) === "string") return invalid(n)
        runnerPort = n
        break
      case "--runner-host":
        runnerHost = value
        break
      case "--runner-listen-host":
        runnerListenHost = value
        break
      case "--replicas":
        if (typeof (n = positive(flag, value)) === "string") return invalid(n)
        replicas = n
        break
      case "--partitions":
        if (typeof (n = positive(flag, value)) === "string") return invalid(n)
        config.partitions = n
        break
      case "--bucket-prefix":
        bucketPrefix = value
        break
      case "--log-level":
        if (!(logLevels as ReadonlyArray<string>).includes(value)) return invalid(`--log-level expects one of ${logLevels.join(", ")}`)
        logLevel = value as LogLevel.LogLevel
        break
      default:
        return invalid(`unknown argument ${arg}`)
    }
  }
  if (runnerPort === undefined || runnerPort === 0) return invalid("--runner-port is required (and must not be 0)")
  if (natsUrls === undefined) return invalid("--nats is required")
  return {
    _tag: "Ok",
    options: {
      name,
      natsUrls,
      runnerPort,
      replicas,
      runnerHost,
      runnerListenHost,
      bucketPrefix,
      logLevel,
      config
    }
  }
}

/** The arguments that `parseRunnerArgs` parses back into `options` (what a launcher passes to `cluster/runner.ts`). */
export const toArgs = (options: Runner.Options & { readonly logLevel?: LogLevel.LogLevel | undefined }): Array<string> => {
  const args = ["--runner-port", String(options.runnerPort), "--nats", options.natsUrls.join(",")]
  if (options.name !== undefined) args.push("--name", options.name)
  if (options.replicas !== undefined) args.push("--replicas", String(options.replicas))
  if (options.runnerHost !== undefined) args.push("--runner-host", options.runnerHost)
  if (options.runnerListenHost !== undefined) args.push("--runner-listen-host", options.runnerListenHost)
  if (options.bucketPrefix !== undefined) args.push("--bucket-prefix", options.bucketPrefix)
  if (options.config?.httpHost !== undefined) args.push("--host", options.config.httpHost)
  if (options.config?.httpPort !== undefined) args.push("--http-port", String(options.config.httpPort))
  if (options.config?.partitions !== undefined) args.push("--partitions", String(options.config.partitions))
  if (options.logLevel !== undefined) args.push("--log-level", options.logLevel)
  return args
}
