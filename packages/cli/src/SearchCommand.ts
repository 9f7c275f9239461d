/**
 * `chronos search`: keyword, semantic or hybrid search over a tenant's events (`ChronosClient.search`), printed as
 * one hit per line (score, what matched, the event) or, with `--json`, one JSON hit per line.
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import {
  brief,
  connection,
  forkFlag,
  intFlag,
  json,
  printJson,
  some,
  typeList,
  typesFlag,
  withClient
} from "./internal/connection.ts"

export const command = Command.make(
  "search",
  {
    tenant: Argument.String("tenant").pipe(Argument.withDescription("Tenant id")),
    query: Argument.String("query").pipe(Argument.withDescription("Words or a sentence")),
    mode: Flag.Literals("mode", ["keyword", "semantic", "hybrid"]).pipe(
      Flag.withDescription("keyword (BM25), semantic (embeddings) or hybrid (both fused; default)"),
      Flag.optional
    ),
    limit: intFlag("limit", "Hits to return"),
    types: typesFlag,
    streamPrefix: Flag.String("stream-prefix").pipe(Flag.withDescription("Only streams whose id starts with this"), Flag.optional),
    since: Flag.String("since").pipe(Flag.withDescription("Committed at or after this ISO-8601 time"), Flag.optional),
    until: Flag.String("until").pipe(Flag.withDescription("Committed at or before this ISO-8601 time"), Flag.optional),
    asOf: Flag.String("as-of").pipe(Flag.withDescription("Search the store as it was (ISO-8601 or p:seq,…)"), Flag.optional),
    waitFor: Flag.String("wait-for").pipe(
      Flag.withDescription("Wait until the indexes have every event up to this position vector (p:seq,…)"),
      Flag.optional
    ),
    fork: forkFlag,
    json,
    ...connection
  },
  (flags) =>
    Effect.gen(function*() {
      const hits = yield* withClient(flags, (client) =>
        client.search(flags.tenant, {
          query: flags.query,
          mode: some(flags.mode),
          limit: some(flags.limit),
          types: typeList(flags.types),
          streamPrefix: some(flags.streamPrefix),
          since: some(flags.since),
          until: some(flags.until),
          asOf: some(flags.asOf),
          waitFor: some(flags.waitFor),
          fork: some(flags.fork)
        }))
      if (flags.json) return yield* Effect.forEach(hits, printJson, { discard: true })
      if (hits.length === 0) return yield* Effect.sync(() => process.stderr.write("no hits\n"))
      yield* Effect.sync(() =>
        process.stdout.write(
          hits.map((h) =>
            `${h.score.toFixed(4)}  ${h.matchedBy.join("+").padEnd(16)}  ${h.event.stream}@${h.event.streamVersion}  ` +
            `${h.event.type}  ${brief(h.event.data)}`
          ).join("\n") + "\n"
        )
      )
    })
).pipe(
  Command.withDescription("Search a tenant's events (keyword, semantic or hybrid)"),
  Command.withExamples([
    { command: "chronos search acme 'printer on fire' --mode keyword --types TicketOpened", description: "BM25 over one type" },
    { command: "chronos search acme 'angry customer' --json", description: "Hybrid search, one JSON hit per line" }
  ])
)
