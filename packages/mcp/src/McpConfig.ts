/**
 * The configuration of the MCP surface: every bound on what one tool call may cost or return, named with its unit
 * last, with its default. The store's own limits (`readEventsMax`, `eventBytesMax`, …) stay in `ChronosConfig`;
 * these are tighter, because a tool result lands in a model's context window, where every byte is paid for on
 * every later turn.
 *
 * Values come from the defaults, then `CHRONOS_MCP_<NAME>` environment variables (CONSTANT_CASE, e.g.
 * `CHRONOS_MCP_RESULT_BYTES_MAX=16000`), then explicit overrides.
 */
import { Config, Context, Effect, Layer } from "effect"

export interface McpConfigShape {
  /** The tenant a session uses until a tool call names another one. */
  readonly defaultTenant: string

  // --- output -------------------------------------------------------------------------------------------------
  /** Bytes of one tool result (its text, and separately its structured copy); past this it is cut with a cursor. */
  readonly resultBytesMax: number
  /** Bytes of one event payload (`data` as JSON) shown in a result; longer payloads are cut with a marker. */
  readonly payloadBytesMax: number

  // --- paging -------------------------------------------------------------------------------------------------
  /** Events a read tool returns when the call names no `limit`. */
  readonly eventsDefault: number
  /** Events a read tool returns at most, whatever `limit` says. */
  readonly eventsMax: number
  /** Events a query with filters the store does not index (stream, metadata) examines per call before it stops. */
  readonly queryScanEventsMax: number
  /** Events asked of the store per page while a tool filters them itself (bounded by the store's read maximum). */
  readonly scanPageEventsMax: number

  // --- describe_store / sample_events -------------------------------------------------------------------------
  /** Events `describe_store` reads at each end (head and tail) of each partition. */
  readonly describeWindowEvents: number
  /** Events `describe_store` reads in all, across partitions; the per-partition window shrinks to fit. */
  readonly describeScanEventsMax: number
  /** Event types `describe_store` describes at most (the rest are counted). */
  readonly describeTypesMax: number
  /** Distinct streams `describe_store` remembers per type while counting (memory, not output). */
  readonly describeStreamsTrackedMax: number
  /** Fields an inferred payload shape lists per object, and how deep it looks. */
  readonly shapeFieldsMax: number
  readonly shapeDepthMax: number
  /** Events `sample_events` returns when the call names no `size`. */
  readonly sampleEventsDefault: number
  /** Events `sample_events` returns at most. */
  readonly sampleEventsMax: number
  /** Events `sample_events` examines in all to choose its sample. */
  readonly sampleScanEventsMax: number

  // --- state tools ----------------------------------------------------------------------------------------------
  /** Differences `compare_states` lists at most. */
  readonly diffEntriesMax: number
  /** Timeline entries `event_timeline` returns at most. */
  readonly timelineEntriesMax: number
  /** Events `event_timeline` folds into entries per call, at most. */
  readonly timelineScanEventsMax: number

  // --- writes ---------------------------------------------------------------------------------------------------
  /** Events one `append_events` call may carry (an agent's append is a correction, not a bulk load). */
  readonly appendEventsMax: number

  // --- sessions -------------------------------------------------------------------------------------------------
  /** MCP sessions remembered at once; the least recently used is forgotten first. */
  readonly sessionsMax: number
  /** A session idle this long is forgotten (its tenant, last query and cursor). */
  readonly sessionIdleMs: number
}

export const defaults: McpConfigShape = {
  defaultTenant: "default",
  resultBytesMax: 24_000,
  payloadBytesMax: 400,
  eventsDefault: 20,
  eventsMax: 200,
  queryScanEventsMax: 5_000,
  scanPageEventsMax: 500,
  describeWindowEvents: 200,
  describeScanEventsMax: 12_800,
  describeTypesMax: 50,
  describeStreamsTrackedMax: 10_000,
  shapeFieldsMax: 40,
  shapeDepthMax: 4,
  sampleEventsDefault: 10,
  sampleEventsMax: 50,
  sampleScanEventsMax: 3_000,
  diffEntriesMax: 100,
  timelineEntriesMax: 50,
  timelineScanEventsMax: 2_000,
  appendEventsMax: 100,
  sessionsMax: 1_000,
  sessionIdleMs: 30 * 60_000
}

export class McpConfig extends Context.Service<McpConfig, McpConfigShape>()("chronos/mcp/McpConfig") {
  /** Defaults with explicit overrides; ignores the environment (tests). */
  static readonly layer = (overrides: Partial<McpConfigShape> = {}): Layer.Layer<McpConfig> =>
    Layer.succeed(McpConfig, make(overrides))

  /** Defaults, then `CHRONOS_MCP_*` environment variables, then explicit overrides. */
  static readonly layerConfig = (
    overrides: Partial<McpConfigShape> = {}
  ): Layer.Layer<McpConfig, Config.ConfigError> =>
    Layer.effect(
      McpConfig,
      Effect.gen(function*() {
        const fromEnv: Record<string, unknown> = {}
        for (const [key, value] of Object.entries(defaults)) {
          const name = `CHRONOS_MCP_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`
          const config: Config.Config<number | string> = typeof value === "number"
            ? Config.Number(name)
            : Config.String(name)
          const found = yield* Config.option(config)
          if (found._tag === "Some") fromEnv[key] = found.value
        }
        return make({ ...(fromEnv as Partial<McpConfigShape>), ...overrides })
      })
    )
}

/** Merges overrides over the defaults and rejects impossible values at start-up. */
export const make = (overrides: Partial<McpConfigShape>): McpConfigShape => {
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined))
  const config: McpConfigShape = { ...defaults, ...defined }
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === "number" && !(Number.isInteger(value) && value >= 1)) {
      throw new Error(`mcp config ${key} must be a positive integer, got ${value}`)
    }
  }
  if (config.eventsDefault > config.eventsMax) throw new Error("mcp config eventsDefault must not exceed eventsMax")
  if (config.sampleEventsDefault > config.sampleEventsMax) {
    throw new Error("mcp config sampleEventsDefault must not exceed sampleEventsMax")
  }
  // A result must hold at least a few events of the largest size shown, or paging could never make progress.
  if (config.resultBytesMax < 4 * (config.payloadBytesMax + 200)) {
    throw new Error("mcp config resultBytesMax must hold at least 4 events of payloadBytesMax")
  }
  return config
}
