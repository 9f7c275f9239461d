/**
 * The entry point of the `chronos` command (run by `bin/chronos.mjs`, or directly with Node >= 22). It owns the
 * process boundary: arguments in, exit code out — 0 on success, 1 when a request failed (one line on stderr,
 * `error: <_tag>: <details>`), 2 on a usage error (help and the problem on stderr), 130 when interrupted.
 * SIGINT/SIGTERM interrupt the command, so `chronos start` shuts its node down gracefully.
 */
// Deep imports: the package index loads every platform module (~2 s of start-up on a busy machine).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Effect, Exit, Runtime } from "effect"
import { Command, CliError } from "effect/cli"
import * as fs from "node:fs"
import { command, formatError } from "./Cli.ts"

const version: string = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")).version

const usageExitCode = 2

/** The exit code for a failure; prints the failure unless effect/cli already did (help and parse errors). */
const onFailure = (error: unknown): Effect.Effect<number> => {
  if (CliError.isCliError(error)) {
    // `ShowHelp` without errors is `--help`; with errors it is a usage error, already printed with the help.
    if (error._tag === "ShowHelp") return Effect.succeed(error.errors.length === 0 ? 0 : usageExitCode)
    return Effect.as(Effect.sync(() => process.stderr.write(`error: ${error.message}\n`)), usageExitCode)
  }
  const usage = typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "UsageError"
  return Effect.as(
    Effect.sync(() => process.stderr.write(`${usage ? `error: ${(error as Error).message}` : formatError(error)}\n`)),
    usage ? usageExitCode : 1
  )
}

const program = Command.runWith(command, { version })(process.argv.slice(2)).pipe(
  Effect.as(0),
  Effect.catch(onFailure),
  Effect.catchDefect((defect) =>
    Effect.as(
      Effect.sync(() => process.stderr.write(`error: Defect: ${defect instanceof Error ? defect.message : String(defect)}\n`)),
      1
    )
  ),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) =>
    Exit.isSuccess(exit) ? onExit(exit.value as number) : Cause.hasInterruptsOnly(exit.cause) ? onExit(130) : Runtime.defaultTeardown(exit, onExit)
})
