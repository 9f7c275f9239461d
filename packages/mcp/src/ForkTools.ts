/**
 * The fork tools — `create_fork`, `list_forks`, `fork_diff`, `merge_fork`, `discard_fork` — over the engine's `Forks`
 * service: a safe place for an agent to try a change (append corrections, look at the resulting states) before
 * anything touches the main store. Reads and writes *inside* a fork are the ordinary tools with `fork: <id>`
 * (`ChronosTool.ToolContext.storeFor`); this module owns the lifecycle around them, and the advice for the fork
 * errors (a merge conflict names the streams and the parent events in the way).
 *
 * Registered only where a `Forks` service runs in the process (a node, embedded mode): see `ChronosMcp`.
 */
import { Effect, Schema } from "effect"
import { type Errors, Fork } from "@chronos/domain"
import { Forks } from "@chronos/engine/Forks"
import * as ChronosTool from "./ChronosTool.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import * as Render from "./Render.ts"
import { forkNotFound, fromDomain, type ToolError, toolError } from "./ToolError.ts"
import * as Params from "./ToolParams.ts"

type ForkError =
  | Errors.InvalidRequest
  | Errors.LimitExceeded
  | Errors.Unavailable
  | Fork.ForkNotFound
  | Fork.ForkMergeConflict

const mergeConflict = (e: Fork.ForkMergeConflict): ToolError => {
  const conflicts = e.streams.filter((s) => s.status === "conflict").map((s) =>
    `${s.stream} (main moved to v${s.parentVersion} after the fork's base v${s.baseVersion}` +
    (s.conflicts === undefined || s.conflicts.length === 0
      ? ")"
      : `: ${s.conflicts.map((c) => `v${c.streamVersion} ${c.type} at ${c.timestamp}`).join(", ")})`)
  )
  const tooLarge = e.streams.filter((s) => s.status === "tooLarge").map((s) => s.stream)
  return toolError(
    "ForkMergeConflict",
    `${e.partial ? "the merge was partial: main changed while it ran; some streams were merged (retrying is safe). " : "nothing was merged. "}` +
      (conflicts.length > 0 ? `Main changed under the fork in ${conflicts.join("; ")}. ` : "") +
      (tooLarge.length > 0 ? `Too many fork events to append atomically in ${tooLarge.join(", ")}. ` : "") +
      "Read main's new events (get_stream), decide whether your change still holds, then create a new fork from now " +
      "and re-apply it (or append to main directly with the new expectedVersion)."
  )
}

const forkErrors = (tenant: string, forkId: string | undefined) => (e: ForkError): ToolError => {
  switch (e._tag) {
    case "ForkNotFound":
      return forkNotFound(tenant, forkId ?? e.forkId)
    case "ForkMergeConflict":
      return mergeConflict(e)
    default:
      return fromDomain(e)
  }
}

const forkArg = Schema.String.annotate({ description: "The fork id (from create_fork or list_forks)." })

const ForkOut = Schema.Struct({
  forkId: Schema.String,
  tenant: Schema.String,
  parent: Schema.String,
  base: Schema.String.annotate({ description: "The main store's position vector the fork starts from (usable as asOf)" }),
  createdAt: Schema.String,
  expiresAt: Schema.String,
  labels: Schema.Record(Schema.String, Schema.String)
})

const forkLine = (f: Fork.ForkInfo) =>
  `${f.forkId} · parent ${f.parent} · created ${f.createdAt} · expires ${f.expiresAt}` +
  (Object.keys(f.labels).length === 0 ? "" : ` · ${JSON.stringify(f.labels)}`)

const forkOut = (f: Fork.ForkInfo): typeof ForkOut.Type => ({
  forkId: f.forkId,
  tenant: f.tenant,
  parent: f.parent,
  base: f.base,
  createdAt: f.createdAt,
  expiresAt: f.expiresAt,
  labels: f.labels
})

// ---- create_fork ----------------------------------------------------------------------------------------------------

export const createFork = (_config: McpConfigShape) =>
  ChronosTool.make({
    name: "create_fork",
    title: "Create a fork",
    description: `Create a private, copy-on-write fork of a tenant's store: it sees the main store as of now (or asOf) and takes its own writes, which never reach main unless you merge_fork. Creating one copies nothing (instant on any store).

Use it to run a safe experiment: apply a correction with append_events (fork: id), check the result with reconstruct_state / compare_states (fork: id), review fork_diff, then merge_fork (dryRun first) or discard_fork.
Forks expire after ttlMinutes (default 60); expired forks are deleted with their events. Keep one fork per experiment and discard it when done.
Errors: LimitExceeded (too many live forks for the tenant: discard some), InvalidRequest (bad asOf or parent).`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      ttlMinutes: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 7 * 24 * 60 })).annotate({
        description: "Minutes until the fork and its events are deleted (default 60).",
        default: 60
      })),
      asOf: Schema.optionalKey(Schema.String.annotate({
        description: "Fork the store as it was at this instant (ISO or a phrase) or position vector. Default: now."
      })),
      parent: Schema.optionalKey(Schema.String.annotate({ description: "Branch from this fork instead of main." })),
      labels: Schema.optionalKey(Schema.Record(Schema.String, Schema.String).annotate({
        description: "Tags, e.g. {\"purpose\": \"reverse duplicate withdrawal\"}"
      }))
    }),
    output: ForkOut,
    hints: { readOnly: false, destructive: false, idempotent: false },
    run: (params, context) =>
      Effect.gen(function*() {
        const forks = yield* Forks
        const tenant = context.tenantOf(params.tenant)
        const asOf = yield* Params.asOfOf(params.asOf, context.now)
        const info = yield* forks.create(tenant, Render.defined({
          ttlSeconds: (params.ttlMinutes ?? 60) * 60,
          asOf,
          parent: params.parent,
          labels: params.labels ?? { createdBy: "mcp" }
        })).pipe(Effect.mapError(forkErrors(tenant, params.parent)))
        yield* context.remember((s) => ({ ...s, tenant }))
        return {
          structured: forkOut(info),
          text: `created fork ${forkLine(info)}\nuse fork: "${info.forkId}" with append_events, get_stream, ` +
            `reconstruct_state, compare_states, query_events; then fork_diff, merge_fork (dryRun first) or discard_fork`
        }
      })
  })

// ---- list_forks -----------------------------------------------------------------------------------------------------

export const listForks = (_config: McpConfigShape) =>
  ChronosTool.make({
    name: "list_forks",
    title: "List forks",
    description: `The tenant's live forks, oldest first, with their parents, bases, expiry and labels.
Use it to find a fork id you lost (e.g. after ForkNotFound), to see what experiments are running, or to clean up with discard_fork before creating more (a tenant has a limit of live forks). Not needed right after create_fork: it returns the id.`,
    parameters: Schema.Struct({ tenant: Params.tenant }),
    output: Schema.Struct({ tenant: Schema.String, forks: Schema.Array(ForkOut) }),
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const forks = yield* Forks
        const tenant = context.tenantOf(params.tenant)
        const list = yield* forks.list(tenant).pipe(Effect.mapError(fromDomain))
        return {
          structured: { tenant, forks: list.map(forkOut) },
          text: [`${list.length} forks · tenant ${tenant}`, ...list.map(forkLine)].join("\n")
        }
      })
  })

// ---- fork_diff ------------------------------------------------------------------------------------------------------

export const ForkDiffResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.String,
  parent: Schema.String,
  base: Schema.String,
  events: Schema.Int.annotate({ description: "Events the fork holds in all" }),
  streams: Schema.Array(Schema.Struct({
    stream: Schema.String,
    baseVersion: Schema.Int.annotate({ description: "The stream's version in main at the fork's base (-1: new)" }),
    count: Schema.Int,
    events: Schema.Array(Schema.String)
  })),
  note: Schema.optionalKey(Schema.String)
})

export const forkDiff = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "fork_diff",
    title: "Diff a fork",
    description: `What a fork added compared with its parent: per stream, the version it started from and the fork's own events (one line each). This is exactly what merge_fork would append.

Use it to review an experiment before merging, or to report what it would change. For the effect on an entity's state, use compare_states with fork (from the fork's base to now) or reconstruct_state with and without fork.
Bounded: event lines are cut to the result budget (counts are always complete). Errors: ForkNotFound.`,
    parameters: Schema.Struct({ tenant: Params.tenant, fork: forkArg }),
    output: ForkDiffResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const forks = yield* Forks
        const tenant = context.tenantOf(params.tenant)
        const diff = yield* forks.diff(tenant, params.fork).pipe(Effect.mapError(forkErrors(tenant, params.fork)))
        let budget = config.resultBytesMax - Render.envelopeBytes
        let cut = false
        const streams = diff.streams.map((s) => {
          const lines = Render.fit(
            s.events,
            (e) => {
              const line = `v${e.streamVersion} ${e.timestamp} ${e.type} ${Render.cut(Render.json(e.data), config.payloadBytesMax)}`
              return { line, value: line }
            },
            Math.max(0, budget)
          )
          const taken = budget > 0 ? lines.lines : []
          budget -= taken.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0)
          cut ||= taken.length < s.events.length
          return { stream: s.stream, baseVersion: s.baseVersion, count: s.events.length, events: taken }
        })
        const note = cut ? "event lines cut to the result budget; get_stream with fork reads them all" : undefined
        const structured = Render.defined({
          tenant,
          fork: params.fork,
          parent: diff.parent,
          base: diff.base,
          events: diff.events,
          streams,
          note
        })
        const text = [
          `fork ${params.fork} · parent ${diff.parent} · ${diff.events} events in ${streams.length} streams`,
          ...streams.flatMap((s) => [`${s.stream} (from v${s.baseVersion}, +${s.count}):`, ...s.events.map((l) => `  ${l}`)]),
          ...(note === undefined ? [] : [`note: ${note}`])
        ].join("\n")
        return { structured, text }
      })
  })

// ---- merge_fork -----------------------------------------------------------------------------------------------------

export const MergeForkResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.String,
  parent: Schema.String,
  dryRun: Schema.Boolean,
  status: Schema.Literals(["merged", "mergeable", "conflict"]),
  streams: Schema.Array(Schema.Struct({
    stream: Schema.String,
    status: Schema.String,
    events: Schema.Int,
    appended: Schema.Int,
    parentVersion: Schema.Int,
    firstVersion: Schema.optionalKey(Schema.Int),
    lastVersion: Schema.optionalKey(Schema.Int),
    message: Schema.optionalKey(Schema.String)
  }))
})

export const mergeFork = (_config: McpConfigShape) =>
  ChronosTool.make({
    name: "merge_fork",
    title: "Merge a fork",
    description: `Apply a fork's events to its parent (main): each stream's fork events are appended with the version the fork started from as the expected version, so nothing in main is overwritten — if main changed a stream meanwhile, that is a conflict and nothing is merged.

dryRun defaults to TRUE: the first call only checks and reports (status mergeable or conflict). Call again with dryRun: false to merge, after reviewing fork_diff. A repeated merge is safe (already-merged events are recognized).
Errors: ForkMergeConflict (names each stream main changed and the events in the way: re-read, re-decide, re-fork), ForkNotFound, LimitExceeded.`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      fork: forkArg,
      dryRun: Schema.optionalKey(Schema.Boolean.annotate({
        description: "Only check and report (default true). Pass false to merge.",
        default: true
      }))
    }),
    output: MergeForkResult,
    hints: { readOnly: false, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const forks = yield* Forks
        const tenant = context.tenantOf(params.tenant)
        const dryRun = params.dryRun ?? true
        const result = yield* forks.merge(tenant, params.fork, { dryRun }).pipe(
          Effect.mapError(forkErrors(tenant, params.fork))
        )
        if (result.status === "conflict") {
          return yield* mergeConflict(new Fork.ForkMergeConflict({
            forkId: result.forkId,
            parent: result.parent,
            partial: false,
            streams: result.streams,
            message: "conflict"
          }))
        }
        const streams = result.streams.map((s) => Render.defined({
          stream: s.stream,
          status: s.status,
          events: s.events,
          appended: s.appended,
          parentVersion: s.parentVersion,
          firstVersion: s.firstVersion,
          lastVersion: s.lastVersion,
          message: s.message
        }))
        const text = [
          `${dryRun ? "dry run: " : ""}fork ${params.fork} → ${result.parent}: ${result.status}`,
          ...streams.map((s) =>
            `${s.stream}: ${s.status}, ${s.events} events${s.appended > 0 ? `, appended v${s.firstVersion}-v${s.lastVersion}` : ""}`
          ),
          ...(dryRun ? ["nothing was written; call merge_fork with dryRun: false to merge"] : [])
        ].join("\n")
        return {
          structured: { tenant, fork: params.fork, parent: result.parent, dryRun, status: result.status, streams },
          text
        }
      })
  })

// ---- discard_fork ---------------------------------------------------------------------------------------------------

export const discardFork = (_config: McpConfigShape) =>
  ChronosTool.make({
    name: "discard_fork",
    title: "Discard a fork",
    description: `Delete a fork, its events and every fork branched from it. Main is never affected. Use it when an experiment is done (merged or abandoned); forks also expire on their own.
Errors: ForkNotFound (already gone — nothing to do).`,
    parameters: Schema.Struct({ tenant: Params.tenant, fork: forkArg }),
    output: Schema.Struct({ tenant: Schema.String, discarded: Schema.Array(Schema.String) }),
    hints: { readOnly: false, destructive: true, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const forks = yield* Forks
        const tenant = context.tenantOf(params.tenant)
        const result = yield* forks.discard(tenant, params.fork).pipe(Effect.mapError(forkErrors(tenant, params.fork)))
        return {
          structured: { tenant, discarded: [...result.discarded] },
          text: `discarded ${result.discarded.join(", ")}`
        }
      })
  })

/** Every fork tool; they need the `Forks` service. */
export const tools = (config: McpConfigShape) => [
  createFork(config),
  listForks(config),
  forkDiff(config),
  mergeFork(config),
  discardFork(config)
] as const
