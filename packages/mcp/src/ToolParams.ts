/**
 * The arguments tools share, each with the description a model reads (`tenant`, `format`, `limit`, times), and the
 * resolution of time arguments against the call's clock into store times, with errors the model can act on. One
 * definition per argument keeps the same word meaning the same thing in every tool.
 */
import { Effect, Schema } from "effect"
import type { McpConfigShape } from "./McpConfig.ts"
import * as TimeExpression from "./TimeExpression.ts"
import { type ToolError, toolError } from "./ToolError.ts"
import { AsOf } from "@chronos/domain"

export const tenant = Schema.optionalKey(
  Schema.String.annotate({
    description: "Tenant id (default: the tenant of your previous call in this session)."
  })
)

export const stream = Schema.String.annotate({
  description: "Stream id: one entity's history, e.g. account-42 or order:2026-0001 (case-sensitive)."
})

export const fork = Schema.optionalKey(
  Schema.String.annotate({
    description: "Work inside this fork (an id from create_fork) instead of the main store."
  })
)

export const format = Schema.optionalKey(
  Schema.Literals(["compact", "json"]).annotate({
    description: "compact (default): one line per event, `v3 <time> <stream> <Type> {data}`; json: objects.",
    default: "compact"
  })
)

export const withMetadata = Schema.optionalKey(
  Schema.Boolean.annotate({
    description: "Include each event's metadata (correlationId, causationId, …). Default false.",
    default: false
  })
)

/** `limit` with its default and hard maximum in the schema the model sees. */
export const limit = (defaultValue: number, maximum: number, what = "events") =>
  Schema.optionalKey(
    Schema.Int.check(Schema.isBetween({ minimum: 1, maximum })).annotate({
      description: `How many ${what} (default ${defaultValue}, at most ${maximum}; results are also cut to a byte budget).`,
      default: defaultValue
    })
  )

/** The `limit` of the read tools, from the configuration. */
export const eventsLimit = (config: McpConfigShape) => limit(config.eventsDefault, config.eventsMax)

export const asOf = Schema.optionalKey(
  Schema.String.annotate({
    description: "Time travel: the store as it was at this instant (inclusive, UTC): ISO, a phrase ('yesterday', " +
      "'3 hours ago') or a position vector like 3:120,7:88."
  })
)

export const types = Schema.optionalKey(
  Schema.Array(Schema.String).annotate({
    description: "Only these event types (exact names, case-sensitive; see describe_store). Indexed: cheap."
  })
)

/** The limit of a call: its argument, the configured default, never above the configured maximum. */
export const limitOf = (config: McpConfigShape, requested: number | undefined): number =>
  Math.min(requested ?? config.eventsDefault, config.eventsMax)

/** An instant argument as epoch ms. */
export const instant = (field: string, text: string, now: number): Effect.Effect<number, ToolError> => {
  const ms = TimeExpression.parseInstant(text, now)
  return ms === undefined
    ? Effect.fail(toolError("InvalidTime", `${field}: cannot read ${JSON.stringify(text)} as a time; use ${TimeExpression.instantHelp}`))
    : Effect.succeed(ms)
}

/** A range argument (`time`) as optional bounds. */
export const range = (field: string, text: string, now: number): Effect.Effect<TimeExpression.Range, ToolError> => {
  const r = TimeExpression.parseRange(text, now)
  return r === undefined
    ? Effect.fail(toolError("InvalidTime", `${field}: cannot read ${JSON.stringify(text)} as a time range; use ${TimeExpression.rangeHelp}`))
    : Effect.succeed(r)
}

/**
 * An `asOf` argument in the store's form: a position vector passes through, anything else becomes an ISO instant.
 * Undefined stays undefined (no time travel).
 */
export const asOfOf = (text: string | undefined, now: number): Effect.Effect<string | undefined, ToolError> => {
  if (text === undefined || text.trim() === "") return Effect.succeed(undefined)
  const parsed = AsOf.parse(text)
  if (parsed._tag === "Some" && parsed.value._tag === "Positions") return Effect.succeed(text.trim())
  return Effect.map(instant("asOf", text, now), (ms) => new Date(ms).toISOString())
}
