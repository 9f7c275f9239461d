/**
 * The one typed configuration of Chronos: every limit, timeout and default lives here, named with its unit last,
 * so that a reader finds each bound in one place and every layer enforces the same numbers.
 *
 * Values come from defaults, overridden by environment variables (`CHRONOS_<NAME>` in CONSTANT_CASE, e.g.
 * `CHRONOS_HTTP_PORT=3901`) and then by explicit overrides (CLI flags, tests).
 */
import { Config, Context, Effect, Layer } from "effect"

export interface ChronosConfigShape {
  /** Number of partitions. Fixed when a store is created: it decides where every stream lives. */
  readonly partitions: number
  /** Directory of the embedded file log (and later segments). */
  readonly dataDir: string
  /** Which log driver the node uses: `file` (embedded default), `jetstream`, or `memory` (tests). */
  readonly logDriver: "file" | "jetstream" | "memory"
  /** NATS servers for the JetStream log driver, comma separated. */
  readonly natsUrls: string
  /** JetStream replication factor for partition streams (1 single node, 3 in a cluster). */
  readonly natsReplicas: number
  readonly httpHost: string
  readonly httpPort: number

  // --- write path ---------------------------------------------------------------------------------------------
  /** Events in one append request. */
  readonly appendEventsMax: number
  /** Bytes of one event's `data` + `metadata`, serialized as JSON. */
  readonly eventBytesMax: number
  /** Bytes of one HTTP request body. */
  readonly requestBodyBytesMax: number
  /** Events in one commit (one log record). Group commit closes a commit at this size. */
  readonly commitEventsMax: number
  /** Bytes of one commit body. Must stay below the JetStream server's max_payload. */
  readonly commitBytesMax: number
  /** How long a commit may wait for more appends before it is written (0: flush as soon as the log is free). */
  readonly commitLingerMs: number
  /** Commits written to the log but not yet acknowledged, per partition (pipelining depth). */
  readonly commitsInFlightMax: number
  /** Appends accepted by a partition but not yet durable; past this the partition answers `LimitExceeded`. */
  readonly pendingAppendsMax: number
  /** How long an append may wait for durability before it fails with `Unavailable`. */
  readonly appendTimeoutMs: number
  /** Attempts to reopen and replay a partition's log after the log refused a commit, before the partition stops. */
  readonly reloadRetriesMax: number

  // --- identifiers ---------------------------------------------------------------------------------------------
  readonly tenantIdLengthMax: number
  readonly streamIdLengthMax: number
  readonly eventTypeLengthMax: number

  // --- read path -----------------------------------------------------------------------------------------------
  /** Events returned by a read when the caller gives no limit. */
  readonly readEventsDefault: number
  /** Events one read may return. */
  readonly readEventsMax: number
  /** A stream snapshot is kept every this many events, so state reconstruction folds at most this many. */
  readonly snapshotEveryEvents: number

  // --- subscriptions -------------------------------------------------------------------------------------------
  /** Events a subscription reads from one partition per step (its buffer, at most, per partition). */
  readonly subscriptionPageEventsMax: number
  /** How long an idle subscription waits for new events before it looks again. */
  readonly subscriptionIdleWaitMs: number

  // --- file log ------------------------------------------------------------------------------------------------
  /** A partition's log file is rolled into a new segment file past this size. */
  readonly logSegmentBytesMax: number
}

export const defaults: ChronosConfigShape = {
  partitions: 32,
  dataDir: "./data",
  logDriver: "file",
  natsUrls: "nats://127.0.0.1:4222",
  natsReplicas: 1,
  httpHost: "127.0.0.1",
  httpPort: 3900,
  appendEventsMax: 10_000,
  eventBytesMax: 1_048_576,
  requestBodyBytesMax: 16 * 1_048_576,
  commitEventsMax: 8_192,
  commitBytesMax: 4 * 1_048_576,
  commitLingerMs: 0,
  commitsInFlightMax: 4,
  pendingAppendsMax: 200_000,
  appendTimeoutMs: 10_000,
  reloadRetriesMax: 10,
  tenantIdLengthMax: 64,
  streamIdLengthMax: 256,
  eventTypeLengthMax: 256,
  readEventsDefault: 100,
  readEventsMax: 10_000,
  snapshotEveryEvents: 1_000,
  subscriptionPageEventsMax: 1_000,
  subscriptionIdleWaitMs: 1_000,
  logSegmentBytesMax: 64 * 1_048_576
}

export class ChronosConfig extends Context.Service<ChronosConfig, ChronosConfigShape>()("chronos/config/ChronosConfig") {
  /** Defaults with explicit overrides; ignores the environment (tests). */
  static readonly layer = (overrides: Partial<ChronosConfigShape> = {}): Layer.Layer<ChronosConfig> =>
    Layer.succeed(ChronosConfig, make(overrides))

  /** Defaults, then `CHRONOS_*` environment variables, then explicit overrides (the node and the CLI). */
  static readonly layerConfig = (
    overrides: Partial<ChronosConfigShape> = {}
  ): Layer.Layer<ChronosConfig, Config.ConfigError> =>
    Layer.effect(
      ChronosConfig,
      Effect.gen(function*() {
        const fromEnv: Record<string, unknown> = {}
        for (const [key, value] of Object.entries(defaults)) {
          const name = `CHRONOS_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`
          const config: Config.Config<number | string> = typeof value === "number"
            ? Config.Number(name)
            : Config.String(name)
          const found = yield* Config.option(config)
          if (found._tag === "Some") fromEnv[key] = found.value
        }
        return make({ ...(fromEnv as Partial<ChronosConfigShape>), ...overrides })
      })
    )
}

/** Merges overrides over the defaults and rejects impossible combinations at start-up, not at the first append. */
export const make = (overrides: Partial<ChronosConfigShape>): ChronosConfigShape => {
  const config: ChronosConfigShape = { ...defaults, ...withoutUndefined(overrides) }
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === "number" && !(Number.isFinite(value) && value >= 0)) {
      throw new Error(`config ${key} must be a finite non-negative number, got ${value}`)
    }
  }
  if (!Number.isInteger(config.partitions) || config.partitions < 1 || config.partitions > 4096) {
    throw new Error(`config partitions must be an integer in [1, 4096], got ${config.partitions}`)
  }
  if (!["file", "jetstream", "memory"].includes(config.logDriver)) {
    throw new Error(`config logDriver must be file, jetstream or memory, got ${config.logDriver}`)
  }
  if (config.eventBytesMax > config.commitBytesMax) {
    throw new Error("config eventBytesMax must not exceed commitBytesMax: one event must fit in one commit")
  }
  if (config.readEventsDefault > config.readEventsMax) {
    throw new Error("config readEventsDefault must not exceed readEventsMax")
  }
  return config
}

const withoutUndefined = <A extends object>(a: A): Partial<A> =>
  Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined)) as Partial<A>
