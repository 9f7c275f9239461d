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
 *  - the survivors notice the missing runner at their next assignment poll (`refreshAssignmentsInterval`, 250 ms
 *    [3 s]), recompute the hash ring and acquire the freed shards;
 *  - so a crash moves every shard within about 5 + 0.5 + activation ≈ 6 s (< 10 s). Measured with 3 runner
 *    processes (chaos/cluster.test.ts, scratch loops): 4.3–5.6 s from kill -9 to every partition answering from
 *    another runner with its state replayed from JetStream.
 *  - a graceful stop (SIGTERM) unregisters the runner, stops its entities and then releases its leases. The others
 *    see the registry change at their next assignment poll and acquire at once — unless the stopping runner has not
 *    released a lease yet, when the library would retry only after a fixed 1 s (Sharding.js, not configurable).
 *    `NatsRunnerStorage.acquire` therefore waits up to `handoffWaitMs` for a lease whose runner is no longer
 *    registered. With that and the 500 ms poll this measures 0.43–0.83 s from SIGTERM to every partition answering
 *    from another runner (15 stops of an idle 3-runner cluster), against 0.5–1.4 s with the 1 s poll alone and up
 *    to 2 s before either (a 500 ms poll alone did not help: the fixed retry dominated). Under the chaos test's
 *    8-writer load that became 0.5–1.5 s: from SIGTERM, ~100 ms until the stopping runner has drained its HTTP
 *    requests and released its shards, up to one poll until the others notice, then the activation (replay of the
 *    partition's stream, ~100 ms — but a replay whose consumer delivered nothing stalled 2 s, now replaced after
 *    `replayStartTimeoutMs`, see the JetStream driver). The poll is therefore 250 ms.
 *
 * Losing the NATS node that leads the locks bucket's Raft group (investigated; the answer is: no knob fixes it):
 * the library refreshes every min(`shardLockRefreshInterval`, `shardLockExpiration` / 3) = 1 s, retries a failed
 * refresh 5× 50 ms, and if that does not succeed within the interval marks the lock storage unhealthy and stops
 * every entity of the runner (all runners at once), taking the shards back once a probe succeeds. During the
 * election every KV request fails at once ("no responders") or times out. Measured here: the locks bucket took
 * 3.0–6.2 s to accept writes again after kill -9 of its leader; clients (through the gateway's retry) saw the
 * longest append stall at 5–9 s on an idle cluster and 6–18 s under the 8-writer fault test, where a partition
 * whose stream was still electing too failed its activation after the JetStream driver's 10 s request timeout and
 * was activated again — past `appendTimeoutMs` those appends got a 503 (nothing acknowledged was ever lost). A longer refresh tolerance does not avoid the stop: tried with
 * expiration 7.5 s / refresh 2.5 s (the most that keeps kill -9 failover under 10 s), the runners still declared
 * the storage unhealthy (the requests fail fast, and the election outlasts 2.5 s anyway) and the stall was the
 * same (max 9.1 s). Riding out a 6 s election would need a 6 s tolerance, i.e. an expiration ≥ 18 s and a kill -9
 * failover ≥ 19 s. So 5 s / 1 s stay: the pause is bounded by the election, and losing a NATS node that leads no
 * lease bucket costs only the partitions whose streams it led (their own election, a few seconds).

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

/**
 * How often every runner and client re-reads the runner registry and recomputes shard assignments: the detection
 * delay of a departed runner (see the failover arithmetic). One STREAM.INFO plus one get per runner each time.
 */
export const refreshAssignmentsIntervalMs = 250

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

/**
 * How long one lease refresh waits for the bucket before it stops waiting and falls back on `leaseToleranceMs`.
 * Below the library's bound on a whole refresh (min(shardLockRefreshInterval, shardLockExpiration / 3) = 1 s): a
 * refresh that outlives that bound marks the lock storage unhealthy and stops every entity of the runner.
 */
export const leaseRefreshTimeoutMs = 600

/**
 * How long after its last acknowledged write a lease is still reported as held when a refresh cannot reach the
 * locks bucket (its Raft group electing a leader after a NATS node died: "no responders" or timeouts for a few
 * seconds). The lease is still in the bucket until `shardLockExpirationMs` after that write, so nobody else can take
 * it meanwhile; one refresh interval short of it, so that the refresh after the last tolerated one (1 s later, plus
 * `leaseRefreshTimeoutMs`) fails and stops the shards before another runner could serve them. Without this, every
 * runner stopped every entity for the whole election (see the module doc).
 */
export const leaseToleranceMs = shardLockExpirationMs - shardLockRefreshIntervalMs

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

/**
 * How many times a runner's first start writes the cluster-wide sharding settings before it gives up: a write whose
 * acknowledgement was lost (the meta bucket electing a leader under load) left nothing to read back.
 */
export const settingsWriteAttemptsMax = 5
