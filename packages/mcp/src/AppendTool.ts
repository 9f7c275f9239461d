/**
 * `append_events`: the one write tool. It owns what makes an agent's write safe:
 *
 *  - `expectedVersion` is required, so the model states what it believes about the stream (a number: "I read it at
 *    version 7"); a mismatch writes nothing and the error says the actual version and what to do;
 *  - `dryRun` validates everything a real append would (schemas, limits, the expected version against the stream as
 *    it is now) and previews the state after the append with a reducer, writing nothing;
 *  - retries never duplicate: with a numeric or `no_stream` expectedVersion, event ids are derived from the call
 *    (tenant, stream, expected version, position, type, payload — SHA-256 → UUID v8), so repeating the same call
 *    returns the original positions (the store deduplicates by event id before it checks versions). With `any` or
 *    `stream_exists`, ids are random: two identical calls are two writes.
 */
import { Effect, Option, Random, Schema } from "effect"
import { createHash } from "node:crypto"
import { Errors, Event, ExpectedVersion, Reducer } from "@chronos/domain"
import * as ChronosTool from "./ChronosTool.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import * as Render from "./Render.ts"
import { fromDomain, type ToolError, toolError } from "./ToolError.ts"
import * as Params from "./ToolParams.ts"

const EventArg = Schema.Struct({
  type: Schema.String.annotate({ description: "Event type, past tense, e.g. WithdrawalReversed (letters, digits, _ . : -)" }),
  data: Schema.Unknown.annotate({ description: "The event's payload: any JSON value, usually an object" }),
  metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown).annotate({
    description: "Optional metadata, e.g. {\"correlationId\": \"…\", \"causationId\": \"…\", \"reason\": \"…\"}"
  })),
  eventId: Schema.optionalKey(Schema.String.annotate({
    description: "Optional UUID for idempotency. Leave it out: ids are derived from the call when expectedVersion " +
      "is a number or no_stream."
  }))
})

const ExpectedVersionArg = Schema.Union([
  Schema.Literals(["any", "no_stream", "stream_exists"]),
  Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
]).annotate({
  description: "What you believe the stream is at: its current version (a number, from get_stream/reconstruct_state; " +
    "safest), no_stream (must not exist yet), stream_exists, or any (no check: avoid unless the order of writers " +
    "does not matter)."
})

export const AppendResult = Schema.Struct({
  tenant: Schema.String,
  fork: Schema.optionalKey(Schema.String),
  stream: Schema.String,
  dryRun: Schema.Boolean,
  currentVersion: Schema.Int.annotate({ description: "The stream's version before this append (-1: no stream)" }),
  firstVersion: Schema.Int,
  lastVersion: Schema.Int,
  count: Schema.Int,
  eventIds: Schema.Array(Schema.String),
  positions: Schema.optionalKey(Schema.Array(Schema.String).annotate({
    description: "partition:seq of each written event; usable as an asOf position vector"
  })),
  reducer: Schema.optionalKey(Schema.String),
  stateBefore: Schema.optionalKey(Schema.Unknown),
  stateAfter: Schema.optionalKey(Schema.Unknown),
  note: Schema.optionalKey(Schema.String)
})
type AppendResult = typeof AppendResult.Type

/** A UUID (version 8: custom, RFC 9562) from the SHA-256 of `parts`. */
const derivedId = (parts: ReadonlyArray<string>): string => {
  const hex = createHash("sha256").update(parts.join("\u0000")).digest("hex")
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}

const randomId = Effect.gen(function*() {
  let hex = ""
  for (let i = 0; i < 4; i++) hex += Math.floor((yield* Random.next) * 0x1_0000_0000).toString(16).padStart(8, "0")
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`
})

const decodeRequest = Schema.decodeUnknownExit(Event.AppendRequest)

/** The domain's own validation of the request (ids, type names, JSON payloads), as the store would apply it. */
const validate = (request: unknown): Effect.Effect<Event.AppendRequest, ToolError> => {
  const exit = decodeRequest(request, { onExcessProperty: "error", errors: "all" })
  if (exit._tag === "Success") return Effect.succeed(exit.value)
  const message = String(exit.cause).replace(/\s+/g, " ").slice(0, 1_500)
  return Effect.fail(toolError("InvalidRequest", `the events are not valid: ${message}`))
}

export const appendEvents = (config: McpConfigShape) =>
  ChronosTool.make({
    name: "append_events",
    title: "Append events",
    description: `Append events to one stream, atomically, with an optimistic-concurrency check. The store is append-only: this never changes or deletes history; a correction is a new event (e.g. WithdrawalReversed), never an edit.

Always: read first (get_stream direction backward limit 1, or reconstruct_state) and pass that version as expectedVersion; run with dryRun: true to validate and preview the state after (previewReducer, e.g. sum:amount), then again without dryRun.
Retries are safe with a numeric expectedVersion (ids are derived from the call, so a repeated call is recognized and not written twice). At most ${config.appendEventsMax} events per call; each event's data+metadata at most the store's eventBytesMax.
Do not experiment on production data: create_fork, then append with fork (writes stay in the fork; fork_diff shows them, merge_fork applies them). Where forks are not available, dryRun is the safe way to try.
Errors: WrongExpectedVersion (the stream moved: the message gives its version — re-read, re-check, retry with it), InvalidRequest (names the bad field), LimitExceeded (split the events), Unavailable (retry the same call).`,
    parameters: Schema.Struct({
      tenant: Params.tenant,
      stream: Params.stream,
      expectedVersion: ExpectedVersionArg,
      events: Schema.Array(EventArg).check(Schema.isMinLength(1), Schema.isMaxLength(config.appendEventsMax)).annotate({
        description: `The events, in order (1 to ${config.appendEventsMax}).`
      }),
      dryRun: Schema.optionalKey(Schema.Boolean.annotate({
        description: "Validate and preview without writing. Default false.",
        default: false
      })),
      previewReducer: Schema.optionalKey(Schema.String.annotate({
        description: "Reducer for the dry-run state preview: merge (default), count, last, sum:<field>.",
        default: "merge"
      })),
      fork: Params.fork
    }),
    output: AppendResult,
    hints: { readOnly: false, destructive: false, idempotent: false },
    run: (params, context) =>
      Effect.gen(function*() {
        const tenant = context.tenantOf(params.tenant)
        const engine = yield* context.storeFor(tenant, params.fork)
        const deterministic = typeof params.expectedVersion === "number" || params.expectedVersion === "no_stream"
        const events = yield* Effect.forEach(params.events, (e, i) =>
          Effect.map(
            e.eventId !== undefined
              ? Effect.succeed(e.eventId)
              : deterministic
              ? Effect.succeed(derivedId([
                tenant,
                params.fork ?? "",
                params.stream,
                String(params.expectedVersion),
                String(i),
                e.type,
                Render.json(e.data),
                Render.json(e.metadata ?? {})
              ]))
              : randomId,
            (eventId) => (e.metadata === undefined ? { eventId, type: e.type, data: e.data } : { eventId, type: e.type, data: e.data, metadata: e.metadata })
          ))
        const request = yield* validate({ expectedVersion: params.expectedVersion, events })
        const eventIds = events.map((e) => e.eventId)
        const head = yield* engine.readStream(tenant, params.stream, { direction: "backward", limit: 1 }).pipe(
          Effect.mapError(fromDomain)
        )
        const current = head[0]?.streamVersion ?? -1
        yield* context.remember((s) => ({ ...s, tenant }))

        if (params.dryRun === true) {
          const problems: Array<string> = []
          if (!ExpectedVersion.isSatisfied(params.expectedVersion, current)) {
            problems.push(fromDomain(new Errors.WrongExpectedVersion({
              stream: params.stream,
              expected: params.expectedVersion,
              actual: current
            })).message)
          }
          if (request.events.length > engine.config.appendEventsMax) {
            problems.push(`${request.events.length} events exceed the store's appendEventsMax (${engine.config.appendEventsMax})`)
          }
          request.events.forEach((e, i) => {
            const bytes = Buffer.byteLength(Render.json(e.data)) + Buffer.byteLength(Render.json(e.metadata ?? {}))
            if (bytes > engine.config.eventBytesMax) {
              problems.push(`events[${i}]: data + metadata are ${bytes} bytes, over the store's eventBytesMax (${engine.config.eventBytesMax})`)
            }
          })
          if (problems.length > 0) {
            return yield* toolError("DryRunFailed", `dry run: this append would fail, nothing was written. ${problems.join(" ")}`)
          }
          const reducerName = params.previewReducer ?? "merge"
          const reducer = yield* Option.match(Reducer.fromName(reducerName), {
            onNone: () => Effect.fail(toolError("InvalidRequest", `unknown previewReducer ${JSON.stringify(reducerName)}: use merge, count, last or sum:<field>`)),
            onSome: Effect.succeed
          })
          const before = current === -1
            ? reducer.initial
            : (yield* engine.state(tenant, params.stream, reducer, undefined).pipe(Effect.mapError(fromDomain))).state
          let after = before
          request.events.forEach((e, i) => {
            after = reducer.step(after, {
              eventId: e.eventId ?? "",
              tenant,
              stream: params.stream,
              type: e.type,
              data: e.data,
              metadata: e.metadata ?? {},
              timestamp: context.now,
              streamVersion: current + 1 + i,
              partition: engine.partitionOf(tenant, params.stream),
              seq: 0
            })
          })
          const budget = Math.floor((context.config.resultBytesMax - Render.envelopeBytes) / 2)
          const shownBefore = Render.bounded(before, budget)
          const shownAfter = Render.bounded(after, budget)
          const structured: AppendResult = Render.defined({
            tenant,
            fork: params.fork,
            stream: params.stream,
            dryRun: true,
            currentVersion: current,
            firstVersion: current + 1,
            lastVersion: current + request.events.length,
            count: request.events.length,
            eventIds,
            reducer: reducerName,
            stateBefore: shownBefore.value,
            stateAfter: shownAfter.value,
            note: "nothing was written; run again without dryRun to append"
          })
          const text = `dry run OK · ${params.stream} · tenant ${tenant}${params.fork === undefined ? "" : ` · fork ${params.fork}`} · at v${current} → would write ` +
            `v${current + 1}-v${current + request.events.length} (${request.events.length} events); nothing written\n` +
            `state (${reducerName}) before: ${Render.json(shownBefore.value)}\n` +
            `state (${reducerName}) after:  ${Render.json(shownAfter.value)}`
          return { structured, text }
        }

        const result = yield* engine.append(tenant, params.stream, request).pipe(Effect.mapError(fromDomain))
        const positions = result.positions.map((p) => `${p.partition}:${p.seq}`)
        const repeated = result.lastVersion <= current
        const structured: AppendResult = Render.defined({
          tenant,
          fork: params.fork,
          stream: params.stream,
          dryRun: false,
          currentVersion: current,
          firstVersion: result.firstVersion,
          lastVersion: result.lastVersion,
          count: request.events.length,
          eventIds,
          positions,
          note: repeated
            ? "these events were already appended by an earlier identical call; nothing new was written"
            : undefined
        })
        const text = `${repeated ? "already appended (idempotent retry)" : "appended"} · ${params.stream} · tenant ` +
          `${tenant}${params.fork === undefined ? "" : ` · fork ${params.fork}`} · v${result.firstVersion}-v${result.lastVersion} · positions ${positions.join(",")}`
        return { structured, text }
      })
  })
