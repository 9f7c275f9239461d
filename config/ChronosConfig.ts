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
  /**
   * How long a commit may wait for more appends before it is written (0: flush as soon as the log is free). Unless
   * set, it is `jetStreamCommitLingerMs` with the JetStream log and 0 with the others.
   */
  readonly commitLingerMs: number
  /**
   * `commitLingerMs` when the log is JetStream and `commitLingerMs` is not set. Every JetStream commit pays a
   * replication round and an fsync on a quorum of nodes, whatever its size, so fuller commits cost less per event.
   * Measured with the cluster benchmark (owner-aware client, 2 cores): 0 ms → 1.4 events per commit, 0.55 ms of
   * nats-server CPU per event, 1,782 events/s; 5 ms → 2.9, 0.33 ms, 2,531 events/s (10 and 20 ms add little).
   */
  readonly jetStreamCommitLingerMs: number
  /** Commits written to the log but not yet acknowledged, per partition (pipelining depth). */
  readonly commitsInFlightMax: number
  /** Appends accepted by a partition but not yet durable; past this the partition answers `LimitExceeded`. */
  readonly pendingAppendsMax: number
  /** How long an append may wait for durability before it fails with `Unavailable`. */
  readonly appendTimeoutMs: number
  /**
   * Pause between two attempts of a call to a partition that failed with a retryable `Unavailable` (the partition
   * moving to another runner, reloading its log); the gateway retries within `appendTimeoutMs` / `readTimeoutMs`
   * (see `engine/GatewayRetry.ts`).
   */
  readonly appendRetryIntervalMs: number
  /**
   * How long one call to a partition on another runner may take before the gateway gives up on that attempt and
   * retries it (appends with the same event ids, so a slow attempt that still commits is answered, not doubled).
   */
  readonly remoteCallTimeoutMs: number
  /** Attempts to reopen and replay a partition's log after the log refused a commit, before the partition stops. */
  readonly reloadRetriesMax: number
  /**
   * Longest pause between two attempts to reopen a partition's log (after a refused commit, or when its activation
   * could not open the log): the backoff doubles from 100 ms up to this, so a log that is back (a NATS leader
   * elected) is found within about this long instead of after an ever longer wait.
   */
  readonly reloadBackoffMsMax: number
  /**
   * JetStream log only: how long one JetStream API request (stream info/create, message get) may take, and how long a
   * replay may make no progress, before it fails with `LogUnavailable` and is retried. Shorter than a NATS leader
   * election (4–7 s), so a request sent to a leader that just died is retried on the new one instead of waiting.
   */
  readonly natsRequestTimeoutMs: number
  /**
   * JetStream log only: how long one commit's publish waits for its acknowledgement before the append fails with
   * `LogUnavailable` (the partition then reloads and the gateway retries the append with the same event ids).
   */
  readonly natsPublishTimeoutMs: number
  /**
   * How long a graceful shutdown (SIGTERM/SIGINT) may take before the process exits anyway. Nothing acknowledged
   * depends on it (every acknowledged commit is already durable); it bounds a stop that cannot finish, e.g. a
   * runner resumed after being frozen past its lease, waiting on a log or a peer that no longer answers it.
   */
  readonly shutdownTimeoutMs: number
  /**
   * How long `GET /v1/partitions` waits for the replica health of a partition's log (JetStream: the stream leader's
   * `STREAM.INFO`) before it answers without it for that partition (its stream electing a leader, say).
   */
  readonly replicaStatusTimeoutMs: number

  // --- identifiers ---------------------------------------------------------------------------------------------
  readonly tenantIdLengthMax: number
  readonly streamIdLengthMax: number
  readonly eventTypeLengthMax: number

  // --- read path -----------------------------------------------------------------------------------------------
  /** How long a read of a partition on another runner may be retried by the gateway (all attempts) before `Unavailable`. */
  readonly readTimeoutMs: number
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
  /**
   * Events buffered for one streaming (SSE) subscriber, at most: what one step reads over all partitions, and the
   * queue between the reader and the connection. A subscriber that does not read stops the reading there.
   */
  readonly subscriptionWindowEventsMax: number
  /**
   * A subscriber further behind than this (sum of the watermarks − sum of its position) is told so (SSE
   * `event: lagging`), once each time it falls behind; it is never dropped silently.
   */
  readonly subscriberLagEventsMax: number
  /** How often a streaming subscriber's lag is measured. */
  readonly subscriptionLagCheckMs: number
  /** A `: keepalive` SSE comment is sent after this long without any other output. */
  readonly subscriptionKeepaliveMs: number
  /**
   * SDK over HTTP: consecutive failed reconnects of a streaming subscription (dropped connection, node restarting)
   * before its stream fails with `Unavailable`. The count starts again once a reconnect delivers something.
   */
  readonly subscribeReconnectsMax: number
  /** SDK over HTTP: delay before the first reconnect of a subscription; doubles with each failed one (jittered). */
  readonly subscribeReconnectDelayMs: number
  /** SDK over HTTP: upper bound of one reconnect delay of a subscription. */
  readonly subscribeReconnectDelayMsMax: number
  /**
   * SDK over HTTP: a subscription connection that brings no byte for this long (not even the node's keepalive,
   * every `subscriptionKeepaliveMs`) is taken for dead (a half-open connection) and replaced. 0: never.
   */
  readonly subscribeIdleTimeoutMs: number

  // --- consumer groups (server-side checkpoints) ---------------------------------------------------------------
  /** Characters of a consumer group's or a projection's name. */
  readonly consumerNameLengthMax: number
  /** Deliveries of one event (first one included) before it is parked as poison. */
  readonly consumerAttemptsMax: number
  /** A delivery not acknowledged within this long counts as a failed attempt and is retried. */
  readonly consumerAckTimeoutMs: number
  /**
   * How long an ack or nack waits for a group that just (re)opened — on another runner after a failover — to re-read
   * the deliveries it had in flight, before it answers `unknown` for the ids it still does not know.
   */
  readonly consumerRestoreWaitMs: number
  /** Delay before the first retry of a failed delivery; each later retry doubles it, up to the maximum. */
  readonly consumerRetryBackoffMs: number
  readonly consumerRetryBackoffMsMax: number
  /** Deliveries one `next` returns. */
  readonly consumerBatchEventsMax: number
  /** How long one `next` may wait for deliveries (long poll). */
  readonly consumerWaitMsMax: number
  /** Events a group holds in memory between its checkpoint and what it has read: ready, in flight, retrying. */
  readonly consumerBufferEventsMax: number
  /** Parked events per group; past this, failing events stay in retry (at the maximum backoff) instead. */
  readonly consumerParkedEventsMax: number
  /** A group's checkpoint is written at least this often while it moves (and at every ack/nack). */
  readonly consumerCheckpointIntervalMs: number
  /** Consumer groups open (served) in one process. */
  readonly consumerGroupsMax: number

  // --- projections -----------------------------------------------------------------------------------------------
  /** Keys of a declarative projection's state (`groupBy` values). Past this the projection stops as failed. */
  readonly projectionStateKeysMax: number
  /** A running projection writes its state and checkpoint (together) after this many events… */
  readonly projectionCheckpointEveryEvents: number
  /** …or this long after its last write, whichever comes first. */
  readonly projectionCheckpointIntervalMs: number
  /**
   * A projection whose owner has not written for this long is taken over by another process (cluster failover);
   * a running projection writes at least every third of it.
   */
  readonly projectionLeaseMs: number
  /** Projections defined in one process. */
  readonly projectionsMax: number
  /** Bytes of one stored checkpoint document (a group's, or a projection's state + checkpoint). */
  readonly checkpointBytesMax: number

  // --- forks (copy-on-write sandboxes) --------------------------------------------------------------------------
  /** Live forks of one tenant (branches included). */
  readonly forksPerTenantMax: number
  /** Events one fork may hold (its own writes; what it inherits from its parent is not counted). */
  readonly forkEventsMax: number
  /** A fork's time to live, at most. */
  readonly forkTtlSecondsMax: number
  /** How often expired forks are looked for and deleted (embedded mode's timer). */
  readonly forkExpiryIntervalMs: number
  /** Labels on one fork. */
  readonly forkLabelsMax: number
  /** Characters of one label's key or value. */
  readonly forkLabelLengthMax: number
  /** Parent events listed per conflicting stream in a merge report (the count is always given). */
  readonly forkMergeConflictEventsMax: number

  // --- file log ------------------------------------------------------------------------------------------------
  /** A partition's log file is rolled into a new segment file past this size. */
  readonly logSegmentBytesMax: number

  // --- cold tier (Parquet segments, see @chronos/storage) ---------------------------------------------------------
  /** A partition's durable, unsealed range is sealed into a segment once it holds this many bytes (estimated)… */
  readonly coldSealBytesMin: number
  /** …or once its oldest unsealed event is this old, whichever comes first. */
  readonly coldSealAgeMs: number
  /** How often an owner checks its partitions against the two sealing thresholds. */
  readonly coldSealCheckIntervalMs: number
  /** Rows of one Parquet row group: the unit that row-group statistics prune, so smaller prunes finer. */
  readonly segmentRowGroupRowsMax: number
  /** Events of one segment file; a larger sealed range is written as several segments. */
  readonly segmentEventsMax: number
  /** Bytes of verified segment files a reader keeps in memory (the cold-read cache). */
  readonly segmentCacheBytesMax: number
  /**
   * Bytes of decoded row groups (Arrow columns, decompressed) a reader keeps besides the files: a repeated cold read
   * of the same rows skips the ZSTD decode, which is most of its cost.
   */
  readonly segmentRowGroupCacheBytesMax: number
  /**
   * Events of one read-ahead window of a scan over sealed events: a scan's pages (time order) are spread over a
   * segment's row groups (stream order), so a window of the sequences that follow is decoded in one pass and serves
   * the next pages…
   */
  readonly segmentReadAheadEventsMax: number
  /** …and how many windows a reader keeps (one per partition being scanned), the oldest dropped first. */
  readonly segmentReadAheadWindowsMax: number
  /**
   * Where segments and manifests live: `default` (plain files under `<dataDir>/segments/` with the file log, `nats`
   * with the JetStream log, none with the memory log), `local`, `nats` (NATS Object Store + KV buckets replicated
   * like the log, at `natsUrls`), `none`.
   */
  readonly segmentStoreDriver: "default" | "local" | "nats" | "none"
  /** Bound of one request of the NATS segment store (a put, get or manifest write). */
  readonly segmentStoreTimeoutMs: number
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
  jetStreamCommitLingerMs: 5,
  commitsInFlightMax: 4,
  pendingAppendsMax: 200_000,
  appendTimeoutMs: 10_000,
  appendRetryIntervalMs: 100,
  remoteCallTimeoutMs: 2_000,
  reloadRetriesMax: 10,
  reloadBackoffMsMax: 1_000,
  natsRequestTimeoutMs: 2_000,
  natsPublishTimeoutMs: 3_000,
  shutdownTimeoutMs: 15_000,
  replicaStatusTimeoutMs: 1_000,
  tenantIdLengthMax: 64,
  streamIdLengthMax: 256,
  eventTypeLengthMax: 256,
  readTimeoutMs: 10_000,
  readEventsDefault: 100,
  readEventsMax: 10_000,
  snapshotEveryEvents: 1_000,
  subscriptionPageEventsMax: 1_000,
  subscriptionIdleWaitMs: 1_000,
  subscriptionWindowEventsMax: 1_000,
  subscriberLagEventsMax: 100_000,
  subscriptionLagCheckMs: 1_000,
  subscriptionKeepaliveMs: 15_000,
  subscribeReconnectsMax: 10,
  subscribeReconnectDelayMs: 100,
  subscribeReconnectDelayMsMax: 5_000,
  subscribeIdleTimeoutMs: 60_000,
  consumerNameLengthMax: 128,
  consumerAttemptsMax: 5,
  consumerAckTimeoutMs: 30_000,
  consumerRestoreWaitMs: 1_000,
  consumerRetryBackoffMs: 1_000,
  consumerRetryBackoffMsMax: 60_000,
  consumerBatchEventsMax: 1_000,
  consumerWaitMsMax: 30_000,
  consumerBufferEventsMax: 10_000,
  consumerParkedEventsMax: 10_000,
  consumerCheckpointIntervalMs: 1_000,
  consumerGroupsMax: 1_000,
  projectionStateKeysMax: 100_000,
  projectionCheckpointEveryEvents: 10_000,
  projectionCheckpointIntervalMs: 1_000,
  projectionLeaseMs: 15_000,
  projectionsMax: 1_000,
  checkpointBytesMax: 4 * 1_048_576,
  forksPerTenantMax: 100,
  forkEventsMax: 100_000,
  forkTtlSecondsMax: 7 * 24 * 3_600,
  forkExpiryIntervalMs: 1_000,
  forkLabelsMax: 16,
  forkLabelLengthMax: 128,
  forkMergeConflictEventsMax: 100,
  logSegmentBytesMax: 64 * 1_048_576,
  coldSealBytesMin: 64 * 1_048_576,
  coldSealAgeMs: 6 * 3_600_000,
  coldSealCheckIntervalMs: 10_000,
  segmentRowGroupRowsMax: 4_096,
  segmentEventsMax: 250_000,
  segmentCacheBytesMax: 256 * 1_048_576,
  segmentRowGroupCacheBytesMax: 64 * 1_048_576,
  segmentReadAheadEventsMax: 10_000,
  segmentReadAheadWindowsMax: 8,
  segmentStoreDriver: "default",
  segmentStoreTimeoutMs: 30_000
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
  const given = withoutUndefined(overrides)
  const merged: ChronosConfigShape = { ...defaults, ...given }
  const config: ChronosConfigShape = given.commitLingerMs === undefined && merged.logDriver === "jetstream"
    ? { ...merged, commitLingerMs: merged.jetStreamCommitLingerMs }
    : merged
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
  if (!["default", "local", "nats", "none"].includes(config.segmentStoreDriver)) {
    throw new Error(`config segmentStoreDriver must be default, local, nats or none, got ${config.segmentStoreDriver}`)
  }
  if (config.eventBytesMax > config.commitBytesMax) {
    throw new Error("config eventBytesMax must not exceed commitBytesMax: one event must fit in one commit")
  }
  if (config.readEventsDefault > config.readEventsMax) {
    throw new Error("config readEventsDefault must not exceed readEventsMax")
  }
  for (const key of ["subscriptionWindowEventsMax", "consumerAttemptsMax", "consumerBatchEventsMax", "consumerBufferEventsMax"] as const) {
    if (!Number.isInteger(config[key]) || config[key] < 1) throw new Error(`config ${key} must be an integer >= 1`)
  }
  if (config.consumerRetryBackoffMs > config.consumerRetryBackoffMsMax) {
    throw new Error("config consumerRetryBackoffMs must not exceed consumerRetryBackoffMsMax")
  }
  return config
}

const withoutUndefined = <A extends object>(a: A): Partial<A> =>
  Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined)) as Partial<A>
