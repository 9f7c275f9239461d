/**
 * `chronos retention set|get` and `chronos delete-stream`: a stream's retention settings and its deletion through
 * `ChronosClient` (`setRetention`, `getRetention`, `deleteStream`), over a node (`--url`) or a data directory
 * (`--data-dir`: the client there carries `@chronos/storage/RetentionClient`). Text by default, JSON with `--json`.
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { ExpectedVersion, RetentionApi } from "@chronos/domain"
import { connection, intFlag, json, print, some, UsageError, withClient } from "./internal/connection.ts"

const tenant = Argument.String("tenant").pipe(Argument.withDescription("Tenant id"))
const stream = Argument.String("stream").pipe(Argument.withDescription("Stream id"))

const retentionLines = (r: RetentionApi.StreamRetention): Array<string> => [
  `stream ${r.stream} (version ${r.lastVersion})`,
  `  maxAgeMs        ${r.maxAgeMs ?? "-"}`,
  `  maxCount        ${r.maxCount ?? "-"}`,
  `  truncateBefore  ${r.truncateBefore ?? "-"}`,
  ...(r.deletedBefore === undefined ? [] : [
    `  deleted         below version ${r.deletedBefore}` +
    (r.hardDeletedBefore === undefined ? " (soft)" : ` (hard below ${r.hardDeletedBefore})`)
  ])
]

const set = Command.make(
  "set",
  {
    tenant,
    stream,
    maxAgeMs: intFlag("max-age-ms", "Hide (and erase at the next seal) events older than this, ms"),
    maxCount: intFlag("max-count", "Keep only the stream's last N versions (its $metadata/$deleted events count)"),
    truncateBefore: intFlag("truncate-before", "Hide versions below this one"),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.setRetention(flags.tenant, flags.stream, {
        maxAgeMs: some(flags.maxAgeMs),
        maxCount: some(flags.maxCount),
        truncateBefore: some(flags.truncateBefore)
      })).pipe(Effect.flatMap((r) => print(flags.json, r, retentionLines)))
).pipe(Command.withDescription("Replace a stream's retention settings (none given: clear them); hidden from reads at once"))

const get = Command.make(
  "get",
  { tenant, stream, json, ...connection },
  (flags) =>
    withClient(flags, (client) => client.getRetention(flags.tenant, flags.stream)).pipe(
      Effect.flatMap((r) => print(flags.json, r, retentionLines))
    )
).pipe(Command.withDescription("Show a stream's retention settings and deletion state"))

export const retention = Command.make("retention").pipe(
  Command.withDescription("A stream's retention: maxAgeMs, maxCount, truncateBefore"),
  Command.withSubcommands([set, get])
)

const parseExpected = (text: string): ExpectedVersion.ExpectedVersion | UsageError => {
  if (text === "any" || text === "no_stream" || text === "stream_exists") return text
  if (/^\d{1,15}$/.test(text)) return Number(text)
  return new UsageError({
    message: `--expected-version: any, no_stream, stream_exists or a version number, got ${JSON.stringify(text)}`
  })
}

export const deleteStream = Command.make(
  "delete-stream",
  {
    tenant,
    stream,
    hard: Flag.Boolean("hard").pipe(
      Flag.withDescription("Also erase the events at the next seal or compaction (default: soft, hidden only)"),
      Flag.withDefault(false)
    ),
    expectedVersion: Flag.String("expected-version").pipe(
      Flag.withDescription("Delete only if the stream is at this version"),
      Flag.optional
    ),
    json,
    ...connection
  },
  (flags) =>
    Effect.gen(function*() {
      const text = some(flags.expectedVersion)
      const expected = text === undefined ? undefined : parseExpected(text)
      if (expected instanceof UsageError) return yield* expected
      const result = yield* withClient(flags, (client) =>
        client.deleteStream(flags.tenant, flags.stream, { hard: flags.hard, expectedVersion: expected }))
      yield* print(flags.json, result, (r) => [
        `deleted ${r.stream} (${r.hard ? "hard: erased at the next seal" : "soft"}); tombstone at version ${r.version}`
      ])
    })
).pipe(Command.withDescription("Delete a stream: soft (a tombstone hides its events; versions continue) or --hard"))

export const commands = [retention, deleteStream] as const
