/**
 * What every client command of `chronos` shares: the connection flags (`--url` or `--data-dir`) and the
 * `ChronosClient` they select, the `UsageError` of a command line that parsed but makes no sense, and the output
 * helpers (JSON lines on stdout; `--json` or human text for the commands that have both).
 */
import { type Config, Console, Effect, Layer, Option, Schema } from "effect"
import { Flag } from "effect/cli"
import { ChronosClient } from "@chronos/client"
import type { LogError } from "@chronos/engine/EventLog"
import type { Errors, Event } from "@chronos/domain"

export const defaultUrl = "http://127.0.0.1:3900"

export const connection = {
  url: Flag.String("url").pipe(
    Flag.withDescription(`Base URL of a running node (default ${defaultUrl}, or $CHRONOS_URL)`),
    Flag.optional
  ),
  dataDir: Flag.String("data-dir").pipe(
    Flag.withDescription("Run the engine in this process over this data directory instead of calling a node " +
      "(only while no node holds the directory; not for search, which needs a node)"),
    Flag.optional
  )
}

export interface Connection {
  readonly url: Option.Option<string>
  readonly dataDir: Option.Option<string>
}

/** A usage error found after parsing (two flags that exclude each other, a malformed file line): exit code 2. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

export const clientLayer = (
  c: Connection
): Layer.Layer<ChronosClient, UsageError | LogError | Config.ConfigError | Errors.Unavailable> => {
  if (Option.isSome(c.url) && Option.isSome(c.dataDir)) {
    return Layer.effect(ChronosClient, Effect.fail(new UsageError({ message: "--url and --data-dir exclude each other" })))
  }
  // Over a data dir as a node serves it (`@chronos/storage/Embedded.clientLayer`): with the cold tier, without which a
  // sealed store (log truncated below its segments) cannot be opened, retention applied to reads, forks, consumer
  // groups and projections (their state next to the log). Search needs a node (its calls say so).
  if (Option.isSome(c.dataDir)) {
    const dataDir = c.dataDir.value
    return Layer.unwrap(Effect.map(
      Effect.promise(() => import("@chronos/storage/Embedded")),
      // Its own owner name: a node later started on this directory takes the projections over after their lease
      // instead of mistaking them for its own.
      (Embedded) => Embedded.clientLayer({ dataDir, owner: `cli:${process.pid}` })
    ))
  }
  const url = Option.getOrElse(c.url, () => process.env["CHRONOS_URL"] ?? defaultUrl)
  return ChronosClient.layerHttp({ url })
}

export const withClient = <A, E>(c: Connection, use: (client: ChronosClient["Service"]) => Effect.Effect<A, E>) =>
  Effect.flatMap(ChronosClient, use).pipe(Effect.provide(clientLayer(c)))

// ---- output ---------------------------------------------------------------------------------------------------------

export const printJson = (value: unknown) => Console.log(JSON.stringify(value))

export const json = Flag.Boolean("json").pipe(
  Flag.withDescription("Print JSON (one object per line) instead of text"),
  Flag.withDefault(false)
)

/** Prints `value` as one JSON line with `--json`, else the text lines `human` makes of it. */
export const print = <A>(asJson: boolean, value: A, human: (value: A) => ReadonlyArray<string>) =>
  asJson ? printJson(value) : Effect.sync(() => {
    const lines = human(value)
    if (lines.length > 0) process.stdout.write(lines.join("\n") + "\n")
  })

/** At most `max` characters of a JSON value, on one line. */
export const brief = (value: unknown, max = 100): string => {
  const text = JSON.stringify(value) ?? "undefined"
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}

/** `account-42@3 Deposited {"amount":5}`: an event on one line. */
export const eventLine = (e: Event.RecordedEvent): string =>
  `${e.stream}@${e.streamVersion}  ${e.type}  ${e.timestamp}  ${brief(e.data)}`

// ---- flags ------------------------------------------------------------------------------------------------------------

export const intFlag = (name: string, description: string) =>
  Flag.Int(name).pipe(Flag.withDescription(description), Flag.optional)

export const some = <A>(option: Option.Option<A>): A | undefined => Option.getOrUndefined(option)

/** `--types A,B` → `["A", "B"]`. */
export const typesFlag = Flag.String("types").pipe(
  Flag.withDescription("Only these event types, comma separated"),
  Flag.optional
)
export const typeList = (types: Option.Option<string>): ReadonlyArray<string> | undefined =>
  Option.getOrUndefined(Option.map(types, (t) => t.split(",").map((s) => s.trim()).filter((s) => s !== "")))

export const forkFlag = Flag.String("fork").pipe(
  Flag.withDescription("Address this fork of the tenant (see `chronos fork`) instead of its history"),
  Flag.optional
)
