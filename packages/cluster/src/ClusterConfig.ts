/**
 * The cluster-wide sharding settings of Chronos: the values every runner AND every client must share, the fast
 * failover knobs, and the named limits of the NATS runner storage (unit last in every name).
 *
 * Why one module: `effect/cluster` maps an entity id to a shard with `hash(entityId) % shardsPerGroup`, on the
 * sender's side. A client whose `shardsPerGroup` differs from the runners' addresses shards no runner owns and
 * hangs silently (effect.md gotcha #1), and the number can never change once a cluster holds data (gotcha #2). So
 * the value lives here, once, and `NatsRunnerStorage` records it in the cluster's meta bucket at first start and
 * refuses to start a runner or client with a different one.
 *
 * Failover arithmetic (library defaults in brackets):
 *  - a runner killed with -9 stops refreshing; its runner entry and its shard leases are KV entries whose bucket TTL
 *    is `shardLockExpiration`, so the NATS server drops them at most 5 s [35 s] after the last refresh;
 *  - the survivors notice the missing runner at their next assignment poll (`refreshAssignmentsInterval`, 1 s [3 s]),
 *    recompute the hash ring and acquire the freed shards (the acquisition loop retries every second);
 *  - so a crash moves every shard within about 5 + 1 + 1 = 7 s (< 10 s); the end-to-end test measures 5–6 s.
 *  - a graceful stop (SIGTERM) unregisters the runner and releases every lease at once, so the shards move at the
 *    others' next assignment poll plus their next acquisition attempt. The library pauses a fixed 1 s between
 *    acquisition attempts (Sharding.js, not configurable), so this measures ~1.0–1.5 s from SIGTERM to every entity
 *    answering from another runner; a shorter assignment poll (500 ms was tried) does not change that, and only
 *    doubles the registry reads, so it stays at 1 s.
 * The library refreshes every min(`shardLockRefreshInterval`, `shardLockExpiration` / 3) = 1 s, and a refresh that
 * does not succeed within that interval marks the lock storage unhealthy: the runner stops all its entities before
 * any lease can expire, and takes its shards back once a probe succeeds. So a NATS node crash that hits the locks
 * bucket's Raft leader pauses every entity for about the election (measured 4–8 s here, nats.md says ~4–5 s),
 * whatever the expiration; a node crash that hits no lease leader costs nothing. A longer expiration would not
 * shorten that pause, only slow down runner-crash failover, so 5 s stays.
 *
 * Correctness never rests on these timings: a partition's writes are fenced by JetStream's expected last sequence
 * (ARCHITECTURE.md §3), so two runners that briefly both believe they own a shard cannot both append.
 */
import { Duration, Layer, Option } from "effect"
import { RunnerAddress, ShardingConfig } from "effect/cluster"

// --- values that must be identical on every runner and client -------------------------------------------------------

/** Shards of each shard group. Fixed for the life of a cluster: it decides which shard (so which runner) owns an entity. */
export const shardsPerGroup = 300

/**
 * How long a shard lease and a runner registration live without a refresh; also the TTL of the KV buckets that hold
 * them (the NATS server expires them, so runners never compare clocks). Changing it means recreating those buckets.
 */
export const shardLockExpirationMs = 5_000

// --- failover knobs (per process, but keep them equal so behaviour is predictable) ----------------------------------

/** How often a runner extends its leases and its registration (the library caps it at a third of the expiration). */
export const shardLockRefreshIntervalMs = 1_000

/** How often every runner and client re-reads the runner registry and recomputes shard assignments. */
export const refreshAssignmentsIntervalMs = 500

/**
 * How often the shard acquisition loop is woken even without a change (it also restarts at this pace after a
 * storage failure). Chronos keeps cluster messages volatile (`MessageStorage.layerNoop`), so nothing else polls.
 */
export const entityMessagePollIntervalMs = 1_000

// --- limits of the NATS runner storage ------------------------------------------------------------------------------

/**
 * How long one NATS KV request of the runner storage may take before it fails. Shorter than a NATS leader election:
 * the library retries refreshes itself, and a request that hangs longer than the refresh interval is useless anyway.
 */
export const natsRequestTimeoutMs = 2_000

/** How long creating or checking the buckets at start may take (an R3 bucket is a meta-layer change + an election). */
export const natsSetupTimeoutMs = 15_000

/** Pause between two attempts of a start-up request to a bucket that is still electing its leader. */
export const natsSetupRetryIntervalMs = 250

/**
 * KV requests one acquire/refresh/release keeps in flight on the connection. One wave covers the default shard
 * count; the bound keeps a huge shard count from flooding the connection's outbound buffer.
 */
export const leaseRequestsInFlightMax = 512

/**
 * How long `acquire` waits for a shard whose lease belongs to a runner that is no longer registered (a graceful stop
 * in progress, or a registration that lapsed just before its leases) to be released or to expire, instead of
 * failing at once and costing a whole acquisition round (the library retries after a fixed 1 s). Below the library's
 * bound on one acquire call (min(shardLockRefreshInterval, shardLockExpiration / 3) = 1 s).
 */
export const handoffWaitMs = 600

/** Pause between two reads of a lease that `acquire` waits on (see `handoffWaitMs`). */
export const handoffPollIntervalMs = 25

/** Attempts of a compare-and-swap loop on a contended key (machine-id counter, runner entry) before it fails. */
export const casAttemptsMax = 50

// --- ShardingConfig --------------------------------------------------------------------------------------------------

/** The `ShardingConfig` fields shared by every runner and client of a Chronos cluster. */
export const shardingConfig = {
  shardsPerGroup,
  shardLockExpiration: Duration.millis(shardLockExpirationMs),
  shardLockRefreshInterval: Duration.millis(shardLockRefreshIntervalMs),
  refreshAssignmentsInterval: Duration.millis(refreshAssignmentsIntervalMs),
  entityMessagePollInterval: Duration.millis(entityMessagePollIntervalMs)
} satisfies Partial<ShardingConfig.ShardingConfig["Service"]>

/**
 * The settings of a runner listening on `host:port`. The address is always explicit: the library's default
 * (`localhost:34431`) and its unprefixed `HOST`/`PORT` environment variables would otherwise decide it (gotcha #3).
 */
export const runnerShardingConfig = (host: string, port: number): Partial<ShardingConfig.ShardingConfig["Service"]> => ({
  ...shardingConfig,
  runnerAddress: Option.some(RunnerAddress.make(host, port))
})

/** The settings of a client-only process (no runner address: it sends to entities but owns no shards). */
export const clientShardingConfig: Partial<ShardingConfig.ShardingConfig["Service"]> = {
  ...shardingConfig,
  runnerAddress: Option.none()
}

/** `ShardingConfig` for the storage layers of a runner (or, without an address, of a client). */
export const layer = (address?: { readonly host: string; readonly port: number }): Layer.Layer<ShardingConfig.ShardingConfig> =>
  ShardingConfig.layer(address === undefined ? clientShardingConfig : runnerShardingConfig(address.host, address.port))
