/**
 * The `chronos` command line: its commands, flags and output. It owns the translation between a shell and the
 * SDK: flags become `ChronosClient` calls (over HTTP with `--url`, or embedded over a data directory with
 * `--data-dir`), results become JSON on stdout (one object per line for events, so the output pipes into `jq` and
 * back into `append --file`), and failures become one line on stderr, `error: <_tag>: <details>`.
 *
 * Exit codes (decided in `main.ts` from what `run` returns): 0 success, 1 a failed request, 2 a usage error.
 */
import { Clock, Console, Effect, Layer, Option, Schema, Stream } from "effect"
import { Command, Flag, Argument } from "effect/cli"
import * as fs from "node:fs"
import * as readline from "node:readline"
import type { ChronosClient, EventInput } from "@chronos/client"
import * as AdminCommands from "./AdminCommands.ts"
import * as ForkCommands from "./ForkCommands.ts"
import * as RetentionCommands from "./RetentionCommands.ts"
import * as SearchCommand from "./SearchCommand.ts"
import * as SubscriptionCommands from "./SubscriptionCommands.ts"
import type { ChronosConfigShape } from "@chronos/config"
import { Errors, type Event, type ExpectedVersion } from "@chronos/domain"
import { connection, forkFlag, intFlag, printJson, some, typeList, typesFlag, UsageError, withClient } from "./internal/connection.ts"

// ---- shared ---------------------------------------------------------------------------------------------------------

export { UsageError }

const jsonFlag = (name: string) =>
  Flag.String(name).pipe(
    Flag.mapTryCatch(
      (text): unknown => JSON.parse(text),
      (error) => `--${name} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`
    )
  )

const printEvents = (events: ReadonlyArray<Event.RecordedEvent>) =>
  Effect.sync(() => {
    // One write for the whole page: a console.log per event costs more than the read for large pages.
    if (events.length > 0) process.stdout.write(events.map((e) => JSON.stringify(e)).join("\n") + "\n")
  })

const parseExpectedVersion = (text: string): ExpectedVersion.ExpectedVersion => {
  if (text === "any" || text === "no_stream" || text === "stream_exists") return text
  if (/^\d{1,15}$/.test(text)) return Number(text)
  throw new Error(`expected any, no_stream, stream_exists or a version number, got ${JSON.stringify(text)}`)
}

// ---- start ----------------------------------------------------------------------------------------------------------

const start = Command.make(
  "start",
  {
    dataDir: Flag.String("data-dir").pipe(Flag.withDescription("Data directory of the file log (default ./data)"), Flag.optional),
    port: intFlag("port", "HTTP port (default 3900)"),
    host: Flag.String("host").pipe(Flag.withDescription("HTTP host to bind (default 127.0.0.1)"), Flag.optional),
    partitions: intFlag("partitions", "Number of partitions, fixed when a store is created (default 32)"),
    log: Flag.Literals("log", ["file", "memory", "jetstream"]).pipe(
      Flag.withDescription("Log driver (default file)"),
      Flag.optional
    ),
    natsUrl: Flag.String("nats-url").pipe(
      Flag.withDescription("NATS servers for the jetstream driver, comma separated (default nats://127.0.0.1:4222)"),
      Flag.optional
    )
  },
  (flags) => {
    // Only flags that were given override: the rest come from CHRONOS_* variables or the defaults.
    const overrides: { -readonly [K in keyof ChronosConfigShape]?: ChronosConfigShape[K] } = {}
    if (Option.isSome(flags.dataDir)) overrides.dataDir = flags.dataDir.value
    if (Option.isSome(flags.port)) overrides.httpPort = flags.port.value
    if (Option.isSome(flags.host)) overrides.httpHost = flags.host.value
    if (Option.isSome(flags.partitions)) overrides.partitions = flags.partitions.value
    if (Option.isSome(flags.log)) overrides.logDriver = flags.log.value
    if (Option.isSome(flags.natsUrl)) overrides.natsUrls = flags.natsUrl.value
    // Runs until interrupted (SIGINT/SIGTERM), then shuts the node down gracefully. The server is loaded only
    // here: the other commands start faster without the HTTP server and its platform modules.
    return Effect.flatMap(
      Effect.promise(() => import("@chronos/server/Node")),
      (Node) => Layer.launch(Node.layer(overrides))
    )
  }
).pipe(
  Command.withDescription("Start a Chronos node (HTTP API + engine) and run until SIGINT/SIGTERM"),
  Command.withExamples([
    { command: "chronos start --data-dir ./data --port 3900", description: "A single node over the file log" },
    { command: "chronos start --log memory --port 0", description: "A throwaway node on a free port" }
  ])
)

// ---- append ---------------------------------------------------------------------------------------------------------

/** Bounds of one append made from `--file` lines: well under `appendEventsMax` and the request body limit. */
export const fileBatchEventsMax = 1_000
export const fileBatchBytesMax = 1_048_576

/** Interval of the progress line on stderr while appending a file. */
const progressIntervalMs = 1_000

const FileLine = Schema.Struct({
  type: Schema.String,
  data: Schema.Unknown,
  metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  eventId: Schema.optionalKey(Schema.String)
})
const decodeFileLine = Schema.decodeUnknownExit(Schema.fromJsonString(FileLine), { onExcessProperty: "error" })

const appendFile = (
  client: ChronosClient["Service"],
  tenant: string,
  stream: string,
  path: string,
  expectedVersion: ExpectedVersion.ExpectedVersion | undefined,
  fork: string | undefined
) =>
  Effect.gen(function*() {
    if (!fs.existsSync(path)) return yield* new UsageError({ message: `--file ${path}: no such file` })
    const startedMs = yield* Clock.currentTimeMillis
    let lastProgressMs = startedMs
    let batch: Array<EventInput> = []
    let batchBytes = 0
    let batchFirstLine = 0
    let lineNo = 0
    let appended = 0
    let appends = 0
    let firstVersion: number | undefined
    let lastVersion: number | undefined
    // A chain of batches keeps its concurrency check: after the first batch each one expects the version the
    // previous one ended at, so no other writer can slip events between two batches unnoticed.
    let expected = expectedVersion
    const tty = process.stderr.isTTY === true

    const progress = (final: boolean) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (!final && now - lastProgressMs < progressIntervalMs) return
        lastProgressMs = now
        const seconds = Math.max((now - startedMs) / 1000, 0.001)
        const line = `appended ${appended} events in ${appends} appends (${Math.round(appended / seconds)} events/s)`
        yield* Effect.sync(() => process.stderr.write(tty ? `\r${line}${final ? "\n" : ""}` : `${line}\n`))
      })

    const flush = Effect.gen(function*() {
      if (batch.length === 0) return
      const events = batch
      const firstLine = batchFirstLine
      batch = []
      batchBytes = 0
      const result = yield* client.append(
        tenant,
        stream,
        expected === undefined ? { events } : { expectedVersion: expected, events },
        { fork }
      )
        .pipe(Effect.mapError((error) => atLine(error, path, firstLine)))
      appends++
      appended += events.length
      firstVersion ??= result.firstVersion
      lastVersion = result.lastVersion
      if (expected !== undefined && expected !== "any") expected = result.lastVersion
      yield* progress(false)
    })

    const lines = Stream.fromAsyncIterable(
      readline.createInterface({ input: fs.createReadStream(path), crlfDelay: Infinity }),
      (error) => new UsageError({ message: `--file ${path}: ${error instanceof Error ? error.message : String(error)}` })
    )
    yield* Stream.runForEach(lines, (text) =>
      Effect.gen(function*() {
        lineNo++
        if (text.trim() === "") return
        const decoded = decodeFileLine(text)
        if (decoded._tag === "Failure") {
          const cause = decoded.cause.reasons[0]
          const detail = cause?._tag === "Fail" ? String(cause.error.message).split("\n").join(" ") : "invalid line"
          return yield* new UsageError({ message: `${path}:${lineNo}: expected {type, data, metadata?, eventId?}: ${detail}` })
        }
        const bytes = Buffer.byteLength(text)
        if (batch.length > 0 && (batch.length >= fileBatchEventsMax || batchBytes + bytes > fileBatchBytesMax)) {
          yield* flush
        }
        if (batch.length === 0) batchFirstLine = lineNo
        batch.push(decoded.value as EventInput)
        batchBytes += bytes
      }))
    yield* flush
    yield* progress(true)
    return { events: appended, appends, firstVersion, lastVersion }
  })

/** An append error of a batch from a file, re-pointed at the file line: `events[3].type` → `events.ndjson:15.type`. */
const atLine = <E>(error: E, path: string, firstLine: number): E => {
  if (!(error instanceof Errors.InvalidRequest)) return error
  const m = /^events\[(\d+)\](.*)$/.exec(error.field)
  if (m === null) return error
  // Lines are counted including blank ones, so the index maps to a line only approximately when there are blanks.
  return new Errors.InvalidRequest({ field: `${path}:${firstLine + Number(m[1])}${m[2]}`, message: error.message }) as E
}

const append = Command.make(
  "append",
  {
    tenant: Argument.String("tenant").pipe(Argument.withDescription("Tenant id")),
    stream: Argument.String("stream").pipe(Argument.withDescription("Stream id")),
    type: Flag.String("type").pipe(Flag.withDescription("Event type"), Flag.optional),
    data: jsonFlag("data").pipe(Flag.withDescription("Event data, JSON"), Flag.optional),
    metadata: jsonFlag("metadata").pipe(Flag.withDescription("Event metadata, a JSON object"), Flag.optional),
    expectedVersion: Flag.String("expected-version").pipe(
      Flag.mapTryCatch(parseExpectedVersion, (error) => (error as Error).message),
      Flag.withDescription("any | no_stream | stream_exists | N (default any)"),
      Flag.optional
    ),
    eventId: Flag.String("event-id").pipe(
      Flag.withDescription("Event id (UUID) for an idempotent append; generated when absent"),
      Flag.optional
    ),
    file: Flag.String("file").pipe(
      Flag.withDescription("Append the events of an NDJSON file, one {type, data, metadata?, eventId?} per line, " +
        `in batches of up to ${fileBatchEventsMax} events (progress on stderr)`),
      Flag.optional
    ),
    fork: forkFlag,
    ...connection
  },
  (flags) =>
    Effect.gen(function*() {
      const expectedVersion = some(flags.expectedVersion)
      if (Option.isSome(flags.file)) {
        if (Option.isSome(flags.type) || Option.isSome(flags.data) || Option.isSome(flags.metadata) || Option.isSome(flags.eventId)) {
          return yield* new UsageError({ message: "--file excludes --type, --data, --metadata and --event-id" })
        }
        const file = flags.file.value
        const summary = yield* withClient(flags, (client) =>
          appendFile(client, flags.tenant, flags.stream, file, expectedVersion, some(flags.fork)))
        return yield* printJson(summary)
      }
      if (Option.isNone(flags.type) || Option.isNone(flags.data)) {
        return yield* new UsageError({ message: "append needs --type and --data (or --file)" })
      }
      const event: { -readonly [K in keyof EventInput]: EventInput[K] } = { type: flags.type.value, data: flags.data.value }
      if (Option.isSome(flags.metadata)) event.metadata = flags.metadata.value as Record<string, unknown>
      if (Option.isSome(flags.eventId)) event.eventId = flags.eventId.value
      const result = yield* withClient(flags, (client) =>
        client.append(
          flags.tenant,
          flags.stream,
          expectedVersion === undefined ? { events: [event] } : { expectedVersion, events: [event] },
          { fork: some(flags.fork) }
        ))
      yield* printJson(result)
    })
).pipe(
  Command.withDescription("Append one event (or an NDJSON file of events) to a stream"),
  Command.withExamples([
    {
      command: "chronos append acme order-1 --type Placed --data '{\"total\":10}' --expected-version no_stream",
      description: "Create a stream with its first event"
    },
    { command: "chronos append acme order-1 --file events.ndjson", description: "Append many events in batches" }
  ])
)

// ---- reads ----------------------------------------------------------------------------------------------------------

const asOf = Flag.String("as-of").pipe(
  Flag.withDescription("Time travel: an ISO-8601 timestamp or a position vector p:seq,p:seq"),
  Flag.optional
)
const limit = intFlag("limit", "Maximum number of events")

const read = Command.make(
  "read",
  {
    tenant: Argument.String("tenant").pipe(Argument.withDescription("Tenant id")),
    stream: Argument.String("stream").pipe(Argument.withDescription("Stream id")),
    from: intFlag("from", "First version to read (the highest one with --backward)"),
    limit,
    backward: Flag.Boolean("backward").pipe(Flag.withDescription("Newest first"), Flag.withDefault(false)),
    asOf,
    fork: forkFlag,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.read(flags.tenant, flags.stream, {
        fromVersion: some(flags.from),
        limit: some(flags.limit),
        direction: flags.backward ? "backward" : "forward",
        asOf: some(flags.asOf),
        fork: some(flags.fork)
      })).pipe(Effect.flatMap(printEvents))
).pipe(Command.withDescription("Read a stream's events (one JSON object per line)"))

const query = Command.make(
  "query",
  {
    tenant: Argument.String("tenant").pipe(Argument.withDescription("Tenant id")),
    types: typesFlag,
    since: Flag.String("since").pipe(Flag.withDescription("Committed at or after this ISO-8601 time"), Flag.optional),
    until: Flag.String("until").pipe(Flag.withDescription("Committed at or before this ISO-8601 time"), Flag.optional),
    asOf,
    limit,
    after: Flag.String("after").pipe(Flag.withDescription("Continue after this `next` token"), Flag.optional),
    fork: forkFlag,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.query(flags.tenant, {
        types: typeList(flags.types),
        since: some(flags.since),
        until: some(flags.until),
        asOf: some(flags.asOf),
        limit: some(flags.limit),
        after: some(flags.after),
        fork: some(flags.fork)
      })).pipe(
        Effect.flatMap((page) =>
          Effect.andThen(
            printEvents(page.events),
            // stdout stays pure events; the continuation token goes to stderr.
            page.next === undefined ? Effect.void : Console.error(`next: ${page.next}`)
          )
        )
      )
).pipe(Command.withDescription("Query a tenant's events across streams (one JSON object per line)"))

const state = Command.make(
  "state",
  {
    tenant: Argument.String("tenant").pipe(Argument.withDescription("Tenant id")),
    stream: Argument.String("stream").pipe(Argument.withDescription("Stream id")),
    reducer: Flag.String("reducer").pipe(
      Flag.withDescription("merge (default), count, last or sum:<field>"),
      Flag.optional
    ),
    asOf,
    fork: forkFlag,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.state(flags.tenant, flags.stream, { reducer: some(flags.reducer), asOf: some(flags.asOf), fork: some(flags.fork) }))
      .pipe(Effect.flatMap(printJson))
).pipe(Command.withDescription("Reconstruct a stream's state with a reducer, optionally as of a point in time"))

const partitions = Command.make(
  "partitions",
  { ...connection },
  (flags) =>
    withClient(flags, (client) => client.partitions()).pipe(
      Effect.flatMap((all) => Effect.forEach(all, printJson, { discard: true }))
    )
).pipe(Command.withDescription("Show every partition: sequence, watermark, owner, events, streams"))

// ---- root -----------------------------------------------------------------------------------------------------------

export const command = Command.make("chronos").pipe(
  Command.withDescription("Chronos: an event store with time travel. Start a node, append, read and query; search, " +
    "fork, subscribe, consumer groups and projections."),
  Command.withSubcommands([
    start,
    append,
    read,
    query,
    state,
    partitions,
    SearchCommand.command,
    ForkCommands.command,
    ...SubscriptionCommands.commands,
    ...RetentionCommands.commands,
    ...AdminCommands.commands
  ])
)

/** `error: InvalidRequest: events[0].type: an event type is …` — the one line a failed command prints. */
export const formatError = (error: unknown): string => {
  if (typeof error !== "object" || error === null || !("_tag" in error)) return `error: ${String(error)}`
  const e = error as Record<string, unknown> & { readonly _tag: string }
  switch (e._tag) {
    case "InvalidRequest":
      return `error: InvalidRequest: ${e["field"]}: ${e["message"]}`
    case "WrongExpectedVersion":
      return `error: WrongExpectedVersion: stream ${e["stream"]} expected ${JSON.stringify(e["expected"])}, actual ${e["actual"]}`
    case "LimitExceeded":
      return `error: LimitExceeded: ${e["limit"]} (max ${e["max"]}, got ${e["actual"]}): ${e["message"]}`
    case "StreamNotFound":
      return `error: StreamNotFound: ${e["tenant"]}/${e["stream"]}`
    case "ForkNotFound":
      return `error: ForkNotFound: ${e["tenant"]}/${e["forkId"]} (never created, discarded or expired)`
    case "ForkMergeConflict": {
      // Which streams stood in the way, and of what: the decision the user has to make next.
      const streams = (e["streams"] as ReadonlyArray<{ stream: string; status: string; conflicts?: ReadonlyArray<{ type: string; streamVersion: number }> }>)
        .filter((s) => s.status !== "merged" && s.status !== "mergeable")
        .map((s) => `${s.stream} (${s.status}${s.conflicts === undefined ? "" : `: ${s.conflicts.map((c) => `${c.type}@${c.streamVersion}`).join(", ")}`})`)
      return `error: ForkMergeConflict: ${e["message"]}; partial=${e["partial"]}; streams: ${streams.join("; ")}`
    }
    case "LogFenced":
      // With --data-dir this nearly always means a running node owns the directory.
      return `error: LogFenced: ${e["message"]} (is a node running on this data dir? then use --url)`
    default: {
      const message = typeof e["message"] === "string" && e["message"] !== "" ? e["message"] : undefined
      const fields = Object.entries(e).filter(([k, v]) => k !== "_tag" && k !== "message" && typeof v !== "object")
      // Platform errors (e.g. `ServeError` for a port in use) carry the useful part in their cause.
      const cause = e["cause"] instanceof Error ? e["cause"].message : undefined
      const details = [message, ...fields.map(([k, v]) => `${k}=${String(v)}`), cause].filter((s) => s !== undefined)
      return `error: ${e._tag}${details.length > 0 ? `: ${details.join(" ")}` : ""}`
    }
  }
}
