/**
 * The longer guidance of the MCP surface, served as resources (`chronos://guides/…`, markdown): what a tool
 * description has no room for — the model of the store, time travel, the debugging workflow, query patterns and
 * their costs, and what every error means. Tool descriptions point here; this module owns the text and its
 * registration. Each guide is short enough to read in one go (a few kilobytes), because a model reads it into its
 * context.
 */
import { Effect, Layer } from "effect"
import { McpServer } from "effect/ai"

export interface Guide {
  readonly uri: string
  readonly name: string
  readonly description: string
  readonly text: string
}

const eventSourcingBasics: Guide = {
  uri: "chronos://guides/event-sourcing-basics",
  name: "Event sourcing basics in Chronos",
  description: "The data model: tenants, streams, events, versions, append-only corrections, optimistic concurrency",
  text: `# Event sourcing basics in Chronos

**Tenant** — a namespace. Every read and write names one (tools remember the last one you used in this session).
Tenants never see each other's data.

**Stream** — one entity's history (an account, an order, a user): \`account-42\`, \`order:2026-0001\`. Ids are
case-sensitive. A stream exists once it has an event.

**Event** — a fact that happened, named in the past tense (\`Deposited\`, \`OrderShipped\`), with:
- \`data\` (JSON payload), \`metadata\` (JSON: \`correlationId\` ties the events of one request or user journey
  together, \`causationId\` names the event or command that caused it);
- \`version\` — its position in its stream, gapless from 0 (v0, v1, …); the stream's *version* is its last event's;
- \`time\` — the commit time, assigned by the store (UTC). Business times (when the customer paid) belong in data;
- \`position\` — \`partition:seq\`, its place in the store's global order.

**State is derived.** An entity's state is a fold (a *reducer*) over its events: \`merge\` (each field keeps its last
written value), \`sum:amount\` (a balance from signed amounts), \`count\`, \`last\`. \`reconstruct_state\` folds for
you, at any point in time.

**Append-only.** History is never edited or deleted. A mistake is corrected with a new event that compensates it
(\`WithdrawalReversed\`, \`AddressCorrected\`), so the history shows both the mistake and the correction.

**Optimistic concurrency.** Every append says what the writer believes: \`expectedVersion\` = the version you read
(or \`no_stream\` to create). If someone appended in between, nothing is written and you get
\`WrongExpectedVersion\` with the actual version: re-read, re-decide, retry. This is how two writers never overwrite
each other's decisions.

**Idempotency.** An event id seen before in its stream is never written twice: a retried append returns the original
positions. \`append_events\` derives ids from the call when expectedVersion is a number, so retrying it is safe.

**Consistency.** A read of one stream sees every append that returned before it. Queries across streams see every
event that is durable (they never show an event that could still disappear).
`
}

const timeTravel: Guide = {
  uri: "chronos://guides/time-travel",
  name: "Time travel: asOf, compare_states, compliance",
  description: "How asOf works (inclusive, UTC, commit time), position vectors, and the as-of patterns",
  text: `# Time travel

Every read tool takes \`asOf\`: the store as it was at that point. Only events committed at or before it are seen.

## Naming a point
- ISO: \`2026-11-23T10:00:00Z\`, \`2026-11-23\` (midnight UTC). A time without a zone is UTC.
- Phrases (resolved against the server clock, shown back in ISO): \`now\`, \`yesterday\` (its start),
  \`end of yesterday\`, \`start of today\`, \`3 hours ago\`, \`last 24 hours\` (its start).
- A position vector \`3:120,7:88\`: per partition, events up to that sequence — exact to the event, e.g. the
  \`positions\` an append returned.
- For reconstruct_state / compare_states also a version: \`v12\`.

## Traps
- asOf is **inclusive** and uses **commit time**. An event at 10:00:00.500 is not in \`asOf: 10:00:00Z\`.
  Compact lines print milliseconds when they are not zero; copy times from results rather than rounding them.
- Business time is not commit time: "orders placed on Monday" may need a filter on a date in data, not \`time\`.
- Ranges for \`time\`: \`yesterday\` and \`2026-11-23\` cover the whole day; \`last 7 days\` starts 7×24 h ago;
  \`between A and B\` includes B's whole day when B is a date.

## Patterns
- **Compliance as-of** — "what did we know about X on 1 October?": \`reconstruct_state\` with \`asOf:
  "2026-10-01T23:59:59Z"\`; list the facts with \`get_stream\` + same asOf. Corrections made later do not leak in.
- **What changed** — \`compare_states\` from/to: the diff and the events between.
- **Bisecting a bad state** — compare_states over a wide window, then halve it (times or versions) until one event
  remains; read it with \`get_stream\` (withMetadata: true) to see who and why.
- **Replay what a user saw** — query_events/get_stream with the asOf of their request.
`
}

const debuggingState: Guide = {
  uri: "chronos://guides/debugging-state",
  name: "Debugging an entity's state",
  description: "The workflow from 'this state is wrong' to a verified correction",
  text: `# Debugging an entity's state

1. **Orient** — \`describe_store\`: the event types of the tenant, their data shapes and stream id patterns. You now
   know which reducer folds the state (a balance kept as signed \`amount\`s is \`sum:amount\`; a profile is \`merge\`).
2. **See the symptom** — \`reconstruct_state\` (stream, reducer). Note the version and the last event.
3. **Find when it went wrong** — \`compare_states\` from a time it was right to now: the changed fields with deltas and
   the events in between. Narrow the window until the culprit is one event. \`event_timeline\` (stream) shows the
   rhythm — a doubled run (\`Withdrawn ×2\` within a second) is a classic duplicate.
4. **Find why** — \`get_stream\` around that version with \`withMetadata: true\`: correlationId/causationId. Follow the
   correlationId across streams: \`query_events\` with \`metadata: {"correlationId": …}\` or \`event_timeline\`.
   Check whether other entities were hit the same way: \`query_events\` with the culprit's type and time window.
5. **Correct** — never edit history: where forks are available, try the correction in a fork first (create_fork,
   append_events with fork, reconstruct_state with fork, fork_diff, merge_fork). Append a compensating event (\`WithdrawalReversed {amount: +75, reason}\`),
   with \`expectedVersion\` = the version you read, first with \`dryRun: true\` and \`previewReducer\` to see the
   state it will produce, then for real. Put the reason and the culprit's id in metadata (\`causationId\`).
6. **Verify** — \`reconstruct_state\` again; \`compare_states\` from before the fix shows exactly what changed.

If \`append_events\` answers WrongExpectedVersion, someone wrote meanwhile: re-read (step 2) before retrying — the
correction may no longer be needed.
`
}

const queryPatterns: Guide = {
  uri: "chronos://guides/query-patterns",
  name: "Query patterns and their costs",
  description: "Audit trail, user journey, incident window, sampling, paging, refine — and the performance traps",
  text: `# Query patterns

| Question | Tool and arguments |
| --- | --- |
| Everything about one entity | get_stream (stream); latest first: direction backward |
| Audit trail of a kind of action | query_events types [...], time "last 7 days" |
| A user journey across entities | query_events or event_timeline with metadata {"correlationId": …} |
| What happened during an incident | event_timeline time "between … and …", groupBy "hour"; then query_events |
| What does a type look like | describe_store (shape), then sample_events types [...] |
| An event by what it says | search_events (keyword / semantic / hybrid), where available |
| Current / past state | reconstruct_state (asOf) |
| What changed and why | compare_states |

## Paging and refining
Results are bounded (a default and a hard maximum per tool, and a byte budget). When \`more: true\`, call
\`next_page\` — the session remembers the query and its cursor. To change a filter without repeating the others use
\`query_events\` with \`refine: true\` and only what changes ("same but yesterday": \`refine: true, time: "yesterday"\`).

## Costs and traps
- **Indexed** (cheap, cost ≈ results): tenant, event types, time, asOf, one exact stream.
- **Scanned** (bounded per call, continued by next_page): stream prefixes (\`order-*\`), metadata values. Add
  types or a time range so the scan has less to look at. A result that says it stopped after N examined events has
  not proven absence: continue or narrow.
- **Large payloads** are cut in lists (\`…[+N bytes]\`); get_stream with format json shows one event whole (up to
  the result budget).
- describe_store and sample_events read bounded windows: on a big store their counts are estimates (\`exact:
  false\`); they never slow the store down.
- Prefer one well-filtered query over many broad ones: every result costs context.
`
}

const errors: Guide = {
  uri: "chronos://guides/errors",
  name: "What errors mean and what to do",
  description: "Every error a tool can return, and the next call that fixes it",
  text: `# Errors

Tool errors come back as results with isError: true; the message always says what to do next.

| Code | Meaning | Next step |
| --- | --- | --- |
| WrongExpectedVersion | The stream moved since you read it; nothing written | Re-read (the message gives the version), re-check, retry with it |
| StreamNotFound | No such stream in this tenant, or no events yet at asOf | Check the id (case-sensitive) and tenant; find ids with query_events/sample_events |
| InvalidArguments | An argument is unknown or out of range | The message lists accepted arguments and bounds |
| InvalidRequest | An id, type name or payload is malformed | The message names the field and the rule |
| InvalidTime | A time could not be read | Use ISO (2026-11-23T10:00:00Z) or a listed phrase |
| LimitExceeded | Too much in one call | Page (next_page) or split appends |
| DryRunFailed | The dry run found a problem; nothing written | Fix what it lists, dry-run again |
| NothingToContinue / NothingToRefine | No earlier query in this session | Run query_events / get_stream first |
| ForkNotFound | The fork expired, was discarded, or is another tenant's | list_forks; create_fork |
| ForkMergeConflict | Main changed a stream after the fork's base; nothing merged | Read main's new events, re-decide, re-fork |
| ForksUnavailable | This server has no forks | Use append_events with dryRun |
| Unavailable (retryable) | The store is busy or a partition is moving | Retry the same call shortly; appends are idempotent |
| CorruptData | Stored data failed its checksum | Not fixable by a tool call: report it to an operator |
`
}

const forksIntro = `# Safe experiments (forks)

A **fork** is a private, copy-on-write branch of a tenant: it sees the main store as of its creation (its *base*)
and takes its own writes, which never reach main unless merged. Creating one copies nothing.`

const forksAvailable: Guide = {
  uri: "chronos://guides/forks",
  name: "Safe experiments (forks)",
  description: "How to try a change in a fork, review it, and merge or discard it",
  text: `${forksIntro}

1. \`create_fork\` (ttlMinutes, labels {purpose: …}) → a fork id.
2. Pass \`fork: <id>\` to append_events, get_stream, query_events, reconstruct_state, compare_states,
   event_timeline: they work inside the fork (reads: main up to the base + the fork's events; writes: the fork).
   Use \`expectedVersion\` as usual — versions continue main's.
3. \`fork_diff\`: exactly what the fork added, per stream — what a merge would append.
4. \`merge_fork\`: dryRun defaults to true (a check: mergeable or conflict). Then \`dryRun: false\`. Each stream is
   appended with the version it had at the base as the expectation: if main changed that stream since, it is a
   conflict and nothing is merged — re-read main, re-decide, and re-fork.
5. \`discard_fork\` when done (forks also expire).

Without forks, \`append_events\` with \`dryRun: true\` and a \`previewReducer\` previews a change without writing.
`
}

const forksMissing: Guide = {
  uri: "chronos://guides/forks",
  name: "Safe experiments (forks)",
  description: "How to try a change without touching production data",
  text: `${forksIntro}

The fork tools are **not available on this server** (it reaches its store over HTTP). Experiment without writing:
1. \`append_events\` with \`dryRun: true\` and a \`previewReducer\`: validates the events and the expected version
   against the stream as it is now, and shows the state before and after. Nothing is written.
2. \`compare_states\` and \`reconstruct_state\` with \`asOf\` to reason about how the entity got here.
3. Only then append for real, with the same expectedVersion — or not at all.
`
}

/** Which optional tools the server has: the guides describe what is there. */
export interface Features {
  readonly forks: boolean
  readonly search: boolean
}

export const all = (features: Features): ReadonlyArray<Guide> => [
  eventSourcingBasics,
  timeTravel,
  debuggingState,
  queryPatterns,
  errors,
  features.forks ? forksAvailable : forksMissing
]

/** Registers every guide as a markdown resource. */
export const layer = (features: Features): Layer.Layer<never, never, McpServer.McpServer> => Layer.effectDiscard(
  Effect.forEach(all(features), (guide) =>
    McpServer.registerResource({
      uri: guide.uri,
      name: guide.name,
      description: guide.description,
      mimeType: "text/markdown",
      audience: ["assistant"],
      content: Effect.succeed(guide.text)
    }), { discard: true })
)
