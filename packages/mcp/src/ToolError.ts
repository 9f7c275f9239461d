/**
 * Errors a model can act on, and the advice that goes with them. A tool never answers a store error with a bare
 * tag: every failure becomes a tool result with `isError: true` whose text says what happened, in the store's own
 * numbers, and what call to make next ("the stream is at version 7; re-read it and retry with expectedVersion 7").
 * This module owns that translation, for the domain errors (`@chronos/domain` Errors) and for the MCP surface's own
 * (bad arguments, unknown times, nothing to continue).
 */
import { Data } from "effect"
import type { Errors } from "@chronos/domain"

/** A failure shown to the model as a tool result with `isError`. `code` is stable, for programs and tests. */
export class ToolError extends Data.TaggedError("ToolError")<{
  readonly code: string
  readonly message: string
  /** The same call may succeed later unchanged (the store was unavailable). */
  readonly retryable: boolean
}> {}

export const toolError = (code: string, message: string, retryable = false) =>
  new ToolError({ code, message, retryable })

type DomainError =
  | Errors.WrongExpectedVersion
  | Errors.InvalidRequest
  | Errors.LimitExceeded
  | Errors.StreamNotFound
  | Errors.Unavailable
  | Errors.CorruptData

const fieldHints: Record<string, string> = {
  tenant: "a tenant id is lowercase letters, digits, '_' or '-' (e.g. acme, team-1)",
  stream: "a stream id is letters, digits and _ . : @ + = -, starting with a letter or digit (e.g. account-42, " +
    "order:2026-0001)",
  asOf: "asOf is an ISO time, a phrase like 'yesterday', or a position vector like 3:120,7:88",
  reducer: "reducers: merge (default: shallow-merge each event's data), count, last, sum:<field>"
}

const hintFor = (field: string) => {
  const key = Object.keys(fieldHints).find((k) => field === k || field.startsWith(`${k}[`) || field.endsWith(`.${k}`))
  if (key !== undefined) return ` (${fieldHints[key]})`
  if (/type/.test(field)) return " (an event type is letters, digits and _ . : -, starting with a letter)"
  return ""
}

/** The advice for a store error, as a `ToolError`. */
export const fromDomain = (error: DomainError): ToolError => {
  switch (error._tag) {
    case "WrongExpectedVersion": {
      if (error.actual === -1) {
        return toolError(
          "WrongExpectedVersion",
          `stream ${error.stream} does not exist yet, but expectedVersion was ${JSON.stringify(error.expected)}. ` +
            `Nothing was written. To create it, retry with expectedVersion "no_stream"; if you expected it to exist, ` +
            `check the stream id and tenant.`
        )
      }
      const next = typeof error.expected === "number" && error.expected < error.actual
        ? ` Re-read what you missed with get_stream (stream ${error.stream}, fromVersion ${error.expected + 1})`
        : ` Re-read it with get_stream (stream ${error.stream}, direction backward)`
      return toolError(
        "WrongExpectedVersion",
        `the stream ${error.stream} is at version ${error.actual}, not ${JSON.stringify(error.expected)}: it changed ` +
          `since you read it, and nothing was written.${next}, check your events still make sense, and retry with ` +
          `expectedVersion ${error.actual}.`
      )
    }
    case "InvalidRequest":
      return toolError("InvalidRequest", `invalid ${error.field}: ${error.message}${hintFor(error.field)}`)
    case "LimitExceeded":
      return toolError(
        "LimitExceeded",
        `${error.message} (limit ${error.limit} is ${error.max}, the call asked for ${error.actual}). ` +
          (error.limit.startsWith("append") || error.limit.startsWith("commit") || error.limit.startsWith("event")
            ? "Split the events over several append_events calls, or make payloads smaller."
            : "Ask for less and continue with next_page.")
      )
    case "StreamNotFound":
      return toolError(
        "StreamNotFound",
        `no stream ${error.stream} in tenant ${error.tenant} (or it had no events yet at that time). Stream ids are ` +
          `case-sensitive and tenants are separate namespaces: find real ids with query_events or sample_events, and ` +
          `check the tenant.`
      )
    case "Unavailable":
      return error.retryable
        ? toolError(
          "Unavailable",
          `the store is temporarily unavailable (${error.message}). Retry the same call in a few seconds; an ` +
            `append_events retried with the same arguments is idempotent, so it is never written twice.`,
          true
        )
        : toolError("Unavailable", `the store cannot serve this (${error.message}); retrying will not help.`)
    case "CorruptData":
      return toolError(
        "CorruptData",
        `stored data failed its checksum at ${error.location}; it is never served silently. This needs an ` +
          `operator (chronos verify); other streams and partitions still work.`
      )
  }
}

/** A fork id that names no live fork of the tenant. */
export const forkNotFound = (tenant: string, fork: string) =>
  toolError(
    "ForkNotFound",
    `no fork ${fork} in tenant ${tenant}: it expired, was discarded, or belongs to another tenant. list_forks shows ` +
      `the live ones; create_fork makes a new one.`
  )
