/**
 * `chronos fork create|list|get|diff|merge|discard`: copy-on-write forks of a tenant's history through
 * `ChronosClient.forks`. Reads and writes *in* a fork are the ordinary commands with `--fork <id>`. Each command
 * prints text by default and JSON with `--json`; a merge that conflicts fails (exit 1) naming the streams in the way.
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { Fork } from "@chronos/domain"
import { brief, connection, eventLine, json, print, some, withClient } from "./internal/connection.ts"

const tenant = Argument.String("tenant").pipe(Argument.withDescription("Tenant id"))
const forkId = Argument.String("fork-id").pipe(Argument.withDescription("Fork id (from `chronos fork create`)"))

const infoLines = (f: Fork.ForkInfo): Array<string> => [
  `fork ${f.forkId}`,
  `  parent   ${f.parent}`,
  `  base     ${f.base}`,
  `  created  ${f.createdAt}`,
  `  expires  ${f.expiresAt} (ttl ${f.ttlSeconds} s)`,
  ...(Object.keys(f.labels).length === 0 ? [] : [`  labels   ${Object.entries(f.labels).map(([k, v]) => `${k}=${v}`).join(" ")}`])
]

const create = Command.make(
  "create",
  {
    tenant,
    ttl: Flag.Int("ttl").pipe(Flag.withDescription("Time to live, seconds"), Flag.withDefault(3_600)),
    asOf: Flag.String("as-of").pipe(Flag.withDescription("Fork the parent as it was (ISO-8601 or p:seq,…)"), Flag.optional),
    parent: Flag.String("parent").pipe(Flag.withDescription("Branch this fork instead of the tenant's history"), Flag.optional),
    label: Flag.KeyValuePair("label").pipe(Flag.withDescription("A label key=value (repeatable)"), Flag.optional),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) =>
      client.forks.create(flags.tenant, {
        ttlSeconds: flags.ttl,
        asOf: some(flags.asOf),
        parent: some(flags.parent),
        labels: some(flags.label)
      })).pipe(Effect.flatMap((info) => print(flags.json, info, infoLines)))
).pipe(Command.withDescription("Create a fork: a sandbox that sees the tenant's history and writes only to itself"))

const list = Command.make("list", { tenant, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.forks.list(flags.tenant)).pipe(
    Effect.flatMap((forks) =>
      flags.json
        ? print(true, { forks }, () => [])
        : print(false, forks, (all) =>
          all.length === 0
            ? ["no forks"]
            : all.map((f) => `${f.forkId}  parent ${f.parent}  expires ${f.expiresAt}  ${brief(f.labels, 60)}`))
    )
  )).pipe(Command.withDescription("List a tenant's live forks"))

const get = Command.make("get", { tenant, forkId, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.forks.get(flags.tenant, flags.forkId)).pipe(
    Effect.flatMap((info) => print(flags.json, info, infoLines))
  )).pipe(Command.withDescription("Show a fork"))

const diff = Command.make("diff", { tenant, forkId, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.forks.diff(flags.tenant, flags.forkId)).pipe(
    Effect.flatMap((d) =>
      print(flags.json, d, (d) => [
        `fork ${d.forkId}: ${d.events} events in ${d.streams.length} streams (base ${d.base})`,
        ...d.streams.flatMap((s) => [
          `${s.stream} (${s.baseVersion === -1 ? "new" : `after version ${s.baseVersion}`})`,
          ...s.events.map((e) => `  + ${eventLine(e)}`)
        ])
      ]))
  )).pipe(Command.withDescription("What a fork added, per stream"))

const mergeLines = (m: Fork.MergeResult): Array<string> => [
  `${m.dryRun ? "dry run: " : ""}${m.status} (fork ${m.forkId} into ${m.parent})`,
  ...m.streams.map((s) =>
    `  ${s.stream}: ${s.status}, ${s.events} events, ${s.appended} appended` +
    (s.firstVersion === undefined ? "" : `, versions ${s.firstVersion}..${s.lastVersion}`) +
    (s.conflicts === undefined ? "" : `; parent changed: ${s.conflicts.map((c) => `${c.type}@${c.streamVersion}`).join(", ")}`) +
    (s.message === undefined ? "" : ` (${s.message})`)
  )
]

const merge = Command.make(
  "merge",
  {
    tenant,
    forkId,
    dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Check every stream and report; write nothing"), Flag.withDefault(false)),
    json,
    ...connection
  },
  (flags) =>
    withClient(flags, (client) => client.forks.merge(flags.tenant, flags.forkId, { dryRun: flags.dryRun })).pipe(
      Effect.flatMap((m) => print(flags.json, m, mergeLines))
    )
).pipe(Command.withDescription("Bring a fork's events into its parent, stream by stream (--dry-run to check first)"))

const discard = Command.make("discard", { tenant, forkId, json, ...connection }, (flags) =>
  withClient(flags, (client) => client.forks.discard(flags.tenant, flags.forkId)).pipe(
    Effect.flatMap((r) => print(flags.json, r, (r) => [`discarded ${r.discarded.join(", ")}`]))
  )).pipe(Command.withDescription("Delete a fork and its branches"))

export const command = Command.make("fork").pipe(
  Command.withDescription("Copy-on-write forks of a tenant's history (read and write in one with --fork <id>)"),
  Command.withSubcommands([create, list, get, diff, merge, discard]),
  Command.withExamples([
    { command: "chronos fork create acme --ttl 600 --label by=me", description: "A sandbox for ten minutes" },
    { command: "chronos append acme order-1 --type Paid --data '{}' --fork f0123456789abcdef", description: "Write in it" },
    { command: "chronos fork merge acme f0123456789abcdef --dry-run", description: "Check before merging" }
  ])
)

