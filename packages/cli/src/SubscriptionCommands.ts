/**
 * The commands of the subscriptions API: `chronos subscribe` (catch-up + live, printed as events arrive until
 * Ctrl-C), `chronos consumer …` (durable consumer groups: create, status, next, ack, nack, parked, replay) and
 * `chronos projection …` (managed projections: define, status, state, start, stop, reset, rebuild with progress).
 * Text by default, JSON with `--json` (one object per line for streams of items).
 */
import { Clock, Effect, Option, Schema, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { SubscriptionItem } from "@chronos/client"
import type { SubscriptionsApi } from "@chronos/domain"
import {
  brief,
  connection,
  eventLine,
  intFlag,
  json,
  print,
  some,
  typeList,
  typesFlag,
  withClient
} from "./internal/connection.ts"

/** A rebuild that ended with the projection failed (the node's reason in `message`): exit code 1. */
export class ProjectionFailed extends Schema.TaggedError<ProjectionFailed>()("ProjectionFailed", {
  name: Schema.String,
  message: Schema.String
}) {}

const tenant = Argument.String("tenant").pipe(Argument.withDescription("Tenant id"))
const name = Argument.String("name").pipe(Argument.withDescription("Name of the consumer group or projection"))
const streamFlag = Flag.String("stream").pipe(Flag.withDescription("Only this stream"), Flag.optional)
const streamPrefixFlag = Flag.String("stream-prefix").pipe(
  Flag.withDescription("Only streams whose id starts with this"),
  Flag.optional
)

// ---- subscribe --------------------------------------------------------------------------------------------------------

const itemText = (item: SubscriptionItem): { readonly out?: string; readonly err?: string } => {
  switch (item._tag) {
    case "Event":
      return { out: `${item.position}  ${eventLine(item.event)}` }
    case "CaughtUp":
      return { err: `-- caught up at ${item.position === "" ? "start" : item.position}; live from here --` }
    case "Lagging":
      return { err: `warning: ${item.lag} events behind the head (warned past ${item.max})` }
  }
}

const subscribe = Command.make(
  "subscribe",
  {
    tenant,
    from: Flag.String("from").pipe(
      Flag.withDescription("start (default), now, or a position printed by an earlier subscribe (resumes after it)"),
      Flag.optional
    ),
    types: typesFlag,
    stream: streamFlag,
    streamPrefix: streamPrefixFlag,
    count: intFlag("count", "Exit after this many events"),
    untilCaughtUp: Flag.Boolean("until-caught-up").pipe(
      Flag.withDescription("Exit once the history is printed, instead of following live events"),
      Flag.withDefault(false)
    ),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) => {
      let items = client.subscribe(flags.tenant, {
        from: some(flags.from),
        types: typeList(flags.types),
        stream: some(flags.stream),
        streamPrefix: some(flags.streamPrefix)
      })
      if (flags.untilCaughtUp) items = Stream.takeUntil(items, (item) => item._tag === "CaughtUp")
      if (Option.isSome(flags.count)) {
        const max = flags.count.value
        let events = 0
        items = max <= 0 ? Stream.empty : Stream.takeUntil(items, (item) => item._tag === "Event" && ++events >= max)
      }
      // One write per batch the stream hands over: a write per event costs more than the event when catching up.
      return Stream.runForEachArray(items, (batch) =>
        Effect.sync(() => {
          if (flags.json) {
            process.stdout.write(batch.map((item) => JSON.stringify(item)).join("\n") + "\n")
            return
          }
          let out = ""
          for (const item of batch) {
            const text = itemText(item)
            if (text.out !== undefined) out += text.out + "\n"
            if (text.err !== undefined) {
              if (out !== "") process.stdout.write(out)
              out = ""
              process.stderr.write(text.err + "\n")
            }
          }
          if (out !== "") process.stdout.write(out)
        }))
    })
).pipe(
  Command.withDescription("Print a tenant's events as they arrive: the history, then live (Ctrl-C to stop). Over " +
    "HTTP a dropped connection is resumed where it stopped"),
  Command.withExamples([
    { command: "chronos subscribe acme --types Deposited --from now", description: "Follow new deposits" },
    { command: "chronos subscribe acme --json --until-caught-up > history.ndjson", description: "Dump the history" }
  ])
)

// ---- consumer groups --------------------------------------------------------------------------------------------------

const statusLines = (s: SubscriptionsApi.ConsumerStatus): Array<string> => [
  `consumer ${s.name} (tenant ${s.tenant}) ${brief(s.filter, 80)}`,
  `  position  ${s.position === "" ? "start" : s.position}`,
  `  lag       ${s.lag.total} events`,
  `  pending   ${s.pending.ready} ready, ${s.pending.inFlight} in flight, ${s.pending.retrying} retrying, ` +
  `${s.pending.replaying} replaying`,
  `  parked    ${s.parked}`,
  `  stats     delivered ${s.stats.delivered}, acked ${s.stats.acked}, nacked ${s.stats.nacked}, ` +
  `expired ${s.stats.expired}, parked ${s.stats.parked}`
]

const ids = Argument.String("ids").pipe(
  Argument.withDescription("Delivery ids (partition:seq) or event ids"),
  Argument.variadic({ min: 1 })
)

const consumerCreate = Command.make(
  "create",
  {
    tenant,
    name,
    types: typesFlag,
    stream: streamFlag,
    streamPrefix: streamPrefixFlag,
    from: Flag.String("from").pipe(Flag.withDescription("Where a new group starts: start (default), now or a position"), Flag.optional),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.consumers.create(flags.tenant, flags.name, {
        types: typeList(flags.types),
        stream: some(flags.stream),
        streamPrefix: some(flags.streamPrefix),
        from: some(flags.from)
      })).pipe(Effect.flatMap((s) => print(flags.json, s, statusLines)))
).pipe(Command.withDescription("Create a durable consumer group (or show it, if it exists with the same filter)"))

const consumerGet = Command.make("get", { tenant, name, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.consumers.get(flags.tenant, flags.name)).pipe(
    Effect.flatMap((s) => print(flags.json, s, statusLines))
  )).pipe(Command.withDescription("Show a group: position, lag, pending and parked events"))

const consumerList = Command.make("list", { tenant, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.consumers.list(flags.tenant)).pipe(
    Effect.flatMap((names) => print(flags.json, { names }, ({ names }) => names.length === 0 ? ["no consumer groups"] : names))
  )).pipe(Command.withDescription("List a tenant's consumer groups"))

const consumerNext = Command.make(
  "next",
  {
    tenant,
    name,
    max: intFlag("max", "Deliveries to take at most (default 100)"),
    waitMs: intFlag("wait-ms", "How long to wait for the first delivery (default 0)"),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.consumers.next(flags.tenant, flags.name, { max: some(flags.max), waitMs: some(flags.waitMs) })).pipe(
        Effect.flatMap((deliveries) =>
          flags.json
            ? Effect.forEach(deliveries, (d) => print(true, d, () => []), { discard: true })
            : print(false, deliveries, (all) =>
              all.length === 0
                ? ["no deliveries"]
                : all.map((d) => `${d.deliveryId}  attempt ${d.attempt}  ${eventLine(d.event)}`))
        )
      )
).pipe(Command.withDescription("Take deliveries (acknowledge them with `consumer ack`, or they come back)"))

const consumerAck = Command.make("ack", { tenant, name, ids, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.consumers.ack(flags.tenant, flags.name, flags.ids)).pipe(
    Effect.flatMap((r) =>
      print(flags.json, r, (r) => [`acked ${r.acked}${r.unknown.length === 0 ? "" : `; unknown: ${r.unknown.join(", ")}`}`]))
  )).pipe(Command.withDescription("Acknowledge deliveries"))

const consumerNack = Command.make(
  "nack",
  { tenant, name, ids, delayMs: intFlag("delay-ms", "Retry no earlier than this (default: the backoff)"), json, ...connection },
  (flags) =>
    withClient(flags, (client) =>
      client.consumers.nack(flags.tenant, flags.name, flags.ids, { delayMs: some(flags.delayMs) })).pipe(
        Effect.flatMap((r) =>
          print(flags.json, r, (r) => [
            `retrying ${r.retrying}, parked ${r.parked}${r.unknown.length === 0 ? "" : `; unknown: ${r.unknown.join(", ")}`}`
          ]))
      )
).pipe(Command.withDescription("Fail deliveries: retried after a backoff, parked when out of attempts"))

const consumerParked = Command.make(
  "parked",
  { tenant, name, limit: intFlag("limit", "Parked events to list at most"), json, ...connection },
  (flags) =>
    withClient(flags, (client) => client.consumers.parked(flags.tenant, flags.name, { limit: some(flags.limit) })).pipe(
      Effect.flatMap((parked) =>
        flags.json
          ? Effect.forEach(parked, (p) => print(true, p, () => []), { discard: true })
          : print(false, parked, (all) =>
            all.length === 0
              ? ["no parked events"]
              : all.map((p) => `${p.deliveryId}  ${p.stream}  ${p.type}  ${p.attempts} attempts  ${p.parkedAt}  ${p.reason}`))
      )
    )
).pipe(Command.withDescription("List events parked after failing every attempt"))

const consumerReplay = Command.make(
  "replay",
  {
    tenant,
    name,
    ids: Argument.String("ids").pipe(
      Argument.withDescription("Parked delivery ids or event ids (all parked events when none)"),
      Argument.variadic()
    ),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.consumers.replayParked(flags.tenant, flags.name, flags.ids.length === 0 ? undefined : flags.ids)).pipe(
        Effect.flatMap((r) =>
          print(flags.json, r, (r) => [`replayed ${r.replayed}${r.unknown.length === 0 ? "" : `; unknown: ${r.unknown.join(", ")}`}`]))
      )
).pipe(Command.withDescription("Send parked events back for delivery with fresh attempts"))

const consumer = Command.make("consumer").pipe(
  Command.withDescription("Durable consumer groups: the node keeps the position; deliveries are acked, retried or parked"),
  Command.withSubcommands([consumerCreate, consumerGet, consumerList, consumerNext, consumerAck, consumerNack, consumerParked, consumerReplay])
)

// ---- projections ------------------------------------------------------------------------------------------------------

const percent = (fraction: number) => `${(fraction * 100).toFixed(1)}%`

const progressText = (p: SubscriptionsApi.ProjectionStatus["progress"]) =>
  `${percent(p.fraction)} (${p.positionEvents}/${p.headEvents} events, ${Math.round(p.eventsPerSecond)} events/s` +
  `${p.etaMs === undefined ? "" : `, eta ${(p.etaMs / 1_000).toFixed(1)} s`})`

const projectionLines = (s: SubscriptionsApi.ProjectionStatus): Array<string> => [
  `projection ${s.name}: ${s.status} (${s.phase}), ${s.processedEvents} events folded, ${s.keys} keys`,
  `  definition ${brief(s.definition, 120)}`,
  `  position   ${s.position === "" ? "start" : s.position}`,
  `  progress   ${progressText(s.progress)}`,
  ...(s.error === undefined ? [] : [`  error      ${s.error}`]),
  ...(s.state === undefined ? [] : [`  state      ${brief(s.state, 400)}`])
]

const parseGroupBy = (text: string): "stream" | "type" | { readonly dataField: string } => {
  if (text === "stream" || text === "type") return text
  if (text.startsWith("data:") && text.length > 5) return { dataField: text.slice(5) }
  throw new Error(`--group-by: expected stream, type or data:<field>, got ${JSON.stringify(text)}`)
}

const projectionDefine = Command.make(
  "define",
  {
    tenant,
    name,
    kind: Flag.Literals("kind", ["count", "sum", "last"]).pipe(
      Flag.withDescription("count events, sum a numeric data field, or keep the last event's data (or field)")
    ),
    field: Flag.String("field").pipe(Flag.withDescription("The data field of sum (and, optionally, last)"), Flag.optional),
    groupBy: Flag.String("group-by").pipe(
      Flag.mapTryCatch(parseGroupBy, (error) => (error as Error).message),
      Flag.withDescription("stream (default), type, or data:<field>"),
      Flag.optional
    ),
    types: typesFlag,
    stream: streamFlag,
    streamPrefix: streamPrefixFlag,
    stopped: Flag.Boolean("stopped").pipe(Flag.withDescription("Define it without starting it"), Flag.withDefault(false)),
    replace: Flag.Boolean("replace").pipe(
      Flag.withDescription("Replace a projection of that name with another definition (its state is rebuilt)"),
      Flag.withDefault(false)
    ),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.projections.define(flags.tenant, flags.name, {
        kind: flags.kind,
        field: some(flags.field),
        groupBy: Option.getOrElse(flags.groupBy, () => "stream" as const),
        types: typeList(flags.types),
        stream: some(flags.stream),
        streamPrefix: some(flags.streamPrefix),
        start: !flags.stopped,
        replace: flags.replace
      })).pipe(Effect.flatMap((s) => print(flags.json, s, projectionLines)))
).pipe(
  Command.withDescription("Define a declarative projection (count | sum | last, grouped by stream, type or a data field)"),
  Command.withExamples([{
    command: "chronos projection define acme balances --kind sum --field amount --types Deposited",
    description: "The sum of deposits per stream"
  }])
)

const projectionGet = Command.make("get", { tenant, name, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.projections.get(flags.tenant, flags.name)).pipe(
    Effect.flatMap((s) => print(flags.json, s, projectionLines))
  )).pipe(Command.withDescription("Show a projection: status, progress and state"))

const projectionState = Command.make(
  "state",
  {
    tenant,
    name,
    key: Flag.String("key").pipe(Flag.withDescription("Only this key's value"), Flag.optional),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) => client.projections.state(flags.tenant, flags.name, some(flags.key))).pipe(
      Effect.flatMap((s) =>
        print(flags.json, s, (s) => [JSON.stringify(s.value, null, 2), `(at position ${s.position === "" ? "start" : s.position})`]))
    )
).pipe(Command.withDescription("Print a projection's state (or one key's value)"))

const projectionList = Command.make("list", { tenant, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.projections.list(flags.tenant)).pipe(
    Effect.flatMap((names) => print(flags.json, { names }, ({ names }) => names.length === 0 ? ["no projections"] : names))
  )).pipe(Command.withDescription("List a tenant's projections"))

const control = (verb: "start" | "stop" | "reset", description: string) =>
  Command.make(verb, { tenant, name, json, ...connection }, (flags) =>
    withClient(flags, (client) => client.projections[verb](flags.tenant, flags.name)).pipe(
      Effect.flatMap((s) => print(flags.json, s, projectionLines))
    )).pipe(Command.withDescription(description))

/** How often a rebuild's progress is asked for and redrawn. */
const rebuildProgressIntervalMs = 250

const projectionRebuild = Command.make(
  "rebuild",
  {
    tenant,
    name,
    detach: Flag.Boolean("detach").pipe(
      Flag.withDescription("Start the rebuild and return, instead of showing its progress until it reaches the head"),
      Flag.withDefault(false)
    ),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      Effect.gen(function*() {
        const started = yield* client.projections.rebuild(flags.tenant, flags.name)
        if (flags.detach) return yield* print(flags.json, started, projectionLines)
        const tty = process.stderr.isTTY === true
        const t0 = yield* Clock.currentTimeMillis
        let status = started
        // Done once it first reaches the head (`live`): under steady writes the head keeps moving, and a rebuild
        // that is live is as current as the projection ever is.
        while (status.status === "running" && status.phase !== "live") {
          yield* Effect.sync(() =>
            process.stderr.write(`${tty ? "\r\x1b[2K" : ""}rebuilding ${flags.name}: ${progressText(status.progress)}${tty ? "" : "\n"}`))
          yield* Effect.sleep(rebuildProgressIntervalMs)
          status = yield* client.projections.get(flags.tenant, flags.name)
        }
        const seconds = ((yield* Clock.currentTimeMillis) - t0) / 1_000
        yield* Effect.sync(() =>
          process.stderr.write(`${tty ? "\r\x1b[2K" : ""}rebuilt ${flags.name} in ${seconds.toFixed(1)} s: ` +
            `${status.processedEvents} events folded, ${status.status} (${status.phase})\n`))
        if (status.status === "failed") {
          return yield* new ProjectionFailed({ name: flags.name, message: status.error ?? "unknown error" })
        }
        yield* print(flags.json, status, projectionLines)
      }))
).pipe(Command.withDescription("Reset a projection and fold the log again from the start, showing progress"))

const projection = Command.make("projection").pipe(
  Command.withDescription("Managed projections: declarative folds the node keeps up to date, state stored with its position"),
  Command.withSubcommands([
    projectionDefine,
    projectionGet,
    projectionState,
    projectionList,
    control("start", "Run a stopped projection"),
    control("stop", "Stop a projection (its state and position are kept)"),
    control("reset", "Stop a projection and discard its state"),
    projectionRebuild
  ])
)

export const commands = [subscribe, consumer, projection] as const
