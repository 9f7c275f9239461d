/**
 * MCP prompts: ready-made investigations a user can pick in their client ("investigate an entity", "run a safe
 * experiment", "audit trail", "compliance as of"). Each expands into instructions that name the tools in the order
 * that works and the traps to avoid; this module owns those scripts. The experiment prompt works in a fork where the
 * server has the fork tools, and falls back to dry runs where it does not, so it always names tools that exist.
 */
import { Effect, Layer, Schema } from "effect"
import { McpServer } from "effect/ai"

const optional = (description: string) => Schema.optional(Schema.String.annotate({ description }))

const tenantLine = (tenant: string | undefined) => tenant === undefined ? "" : ` in tenant ${tenant}`

const investigateEntity = McpServer.prompt({
  name: "investigate_entity",
  title: "Investigate an entity",
  description: "Find out what happened to one entity (a stream) and why its state is what it is",
  parameters: {
    stream: Schema.String.annotate({ description: "The stream id, e.g. account-42" }),
    tenant: optional("The tenant (default: the session's)"),
    question: optional("What looks wrong, e.g. 'why is the balance negative?'")
  },
  content: ({ question, stream, tenant }) =>
    Effect.succeed(
      `Investigate the entity ${stream}${tenantLine(tenant)} in the Chronos event store.` +
        (question === undefined ? "" : ` The question: ${question}`) + `

Work in this order, and say what each step showed:
1. describe_store${tenant === undefined ? "" : ` (tenant ${tenant})`}: learn the event types, their data shapes and which reducer folds this kind of entity (e.g. sum:amount for balances kept as signed amounts, merge for records).
2. reconstruct_state (stream ${stream}, that reducer): the state now, its version and last event.
3. event_timeline (stream ${stream}): the condensed story; look for anomalies (duplicates in quick succession, gaps, unexpected types).
4. compare_states from a time the state was right to now, narrowing the window until one event explains the change.
5. get_stream around that version with withMetadata: true; follow its correlationId with query_events (metadata) to see the whole request or journey, and check whether other entities were hit the same way (query_events with that type and time window).
Answer with the cause (the exact events, versions and times), the evidence, and — if a correction is warranted — the compensating event you would append (do not append to main without being asked; try it in a fork where available, or with append_events dryRun). Read chronos://guides/debugging-state for details.`
    )
})

const safeExperiment = (forks: boolean) => McpServer.prompt({
  name: "run_safe_experiment",
  title: "Run a safe experiment",
  description: "Try a change to an entity without risking production data",
  parameters: {
    change: Schema.String.annotate({ description: "What to try, e.g. 'reverse the duplicate withdrawal'" }),
    stream: optional("The stream the change applies to"),
    tenant: optional("The tenant (default: the session's)")
  },
  content: ({ change, stream, tenant }) =>
    Effect.succeed(
      `Try this change safely in the Chronos event store${tenantLine(tenant)}: ${change}` +
        (stream === undefined ? "" : ` (stream ${stream})`) + "\n\n" + (forks ? withFork : withoutFork)
    )
})

const withFork = `Do it in a fork (a private copy-on-write branch), never directly in main:
1. Read the entity in main: reconstruct_state and get_stream (direction backward) — note its current version.
2. create_fork (labels {"purpose": …}) and note its id.
3. Express the change as new events (history is append-only: corrections are compensating events, never edits) and append them with append_events, fork: <id>, expectedVersion = that version (dryRun first if unsure).
4. Check the effect inside the fork: reconstruct_state and compare_states with fork: <id>; fork_diff shows exactly what a merge would append.
5. Report the events, the before/after state and any risk. Merge only when the user confirms: merge_fork (dryRun first, then dryRun: false); otherwise discard_fork. Verify main with reconstruct_state afterwards.
See chronos://guides/forks.`

const withoutFork = `Forks (private copy-on-write branches you could write to freely, then diff and merge) are not available on this server, so do not write to learn:
1. Read the entity: reconstruct_state and get_stream (direction backward) — note its current version.
2. Express the change as new events (history is append-only: corrections are compensating events, never edits).
3. append_events with dryRun: true, expectedVersion = that version and a previewReducer that shows the effect; check stateBefore/stateAfter is exactly what you intend.
4. Report the events, the preview and any risk. Append for real (same arguments, without dryRun) only when the user confirms; then verify with reconstruct_state.
See chronos://guides/forks.`

const auditTrail = McpServer.prompt({
  name: "audit_trail",
  title: "Audit trail",
  description: "Who did what to an entity, when, in order",
  parameters: {
    stream: Schema.String.annotate({ description: "The stream id" }),
    since: optional("Only from this time on (ISO or a phrase like 'last 30 days')"),
    tenant: optional("The tenant (default: the session's)")
  },
  content: ({ since, stream, tenant }) =>
    Effect.succeed(
      `Produce the audit trail of ${stream}${tenantLine(tenant)}${since === undefined ? "" : ` since ${since}`}.
Use get_stream (withMetadata: true${since === undefined ? "" : "; or query_events with stream and time"}) and next_page until more is false; summarize each change as: time (UTC), version, event type, what changed, and who/why from metadata. Mention corrections (compensating events) explicitly. Do not round times.`
    )
})

const complianceAsOf = McpServer.prompt({
  name: "compliance_as_of",
  title: "Compliance: what did we know then",
  description: "Reconstruct exactly what was recorded about an entity at a past instant",
  parameters: {
    stream: Schema.String.annotate({ description: "The stream id" }),
    asOf: Schema.String.annotate({ description: "The instant, e.g. 2026-10-01T23:59:59Z" }),
    tenant: optional("The tenant (default: the session's)")
  },
  content: ({ asOf, stream, tenant }) =>
    Effect.succeed(
      `State what was recorded about ${stream}${tenantLine(tenant)} as of ${asOf}, and nothing recorded later.
1. reconstruct_state with asOf ${asOf}: the state then and the last event it includes.
2. get_stream with asOf ${asOf}: the facts behind it.
3. compare_states from ${asOf} to now: what was recorded afterwards (including corrections), clearly separated.
asOf is inclusive and in UTC commit time; say so in the answer. See chronos://guides/time-travel.`
    )
})

/** Every prompt; the experiment prompt uses forks where the server has them. */
export const layer = (features: { readonly forks: boolean }) =>
  Layer.mergeAll(investigateEntity, safeExperiment(features.forks), auditTrail, complianceAsOf)
