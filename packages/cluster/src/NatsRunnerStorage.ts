/**
 * `RunnerStorage` (the runner registry and the shard leases of `effect/cluster`) on NATS JetStream KV, so a Chronos
 * cluster coordinates without SQL. Cluster RPCs stay volatile (`MessageStorage.layerNoop`): the JetStream partition
 * streams are the durable truth and fence stale writers themselves.
 *
 * Key layout (`<p>` = `bucketPrefix`, default `chronos_cluster`):
 *
 *   bucket          key                       value (JSON)                                   TTL         storage
 *   <p>_runners     esc(host:port)            { runner, healthy, machineId, token }          expiration  memory
 *   <p>_locks       esc(group).<shard number>  { runner: "host:port", token }                 expiration  memory
 *   <p>_meta        machine-id-next           next unused machine id (decimal)               none        file
 *                   sharding                  { shardsPerGroup, shardLockExpirationMs }      none        file
 *
 * `esc` keeps `[A-Za-z0-9_-]` and writes every other UTF-8 byte as `=XX` (KV keys allow `[-/_=.A-Za-z0-9]`, and a
 * dot would start a new subject token), e.g. shard `default:12` → `default.12`, runner `127.0.0.1:34001` →
 * `127=2E0=2E0=2E1=3A34001`. `token` is random per storage instance (one process incarnation).
 *
 * Why this shape:
 *  - Leases the server expires. Runner entries and shard locks live in buckets whose TTL (stream `max_age`) equals
 *    `shardLockExpiration`: a lease is alive exactly while the server holds its last write, so a crashed runner's
 *    registration and shards vanish by themselves and no two runners ever compare clocks. Each refresh rewrites the
 *    entry (`update` with the revision we last wrote), which restarts its age. A bucket whose TTL differs from the
 *    configured expiration is refused at start (see `openBucket`); it is never changed in place, because other
 *    runners may hold leases in it under the old rules.
 *  - Compare-and-swap everywhere. Taking a free shard is a put that expects the key to be empty
 *    (`Nats-Expected-Last-Subject-Sequence: 0`) or to hold the delete marker we saw; keeping one is an `update` with
 *    the revision we last wrote; `release` deletes with the revision it saw. A lost race is never an error, just a
 *    shard not (or no longer) held. Revision checks are race-free on nats-server ≥ 2.10 (not on 2.9, nats.md).
 *  - Handoff without a lost round. A lease held by a runner that is no longer registered (a graceful stop
 *    unregisters first and releases its leases a moment later) is waited on for up to `handoffWaitMs` inside
 *    `acquire`, instead of being reported as not acquired: the library would only retry a second later, which made
 *    a graceful handoff take up to ~2 s instead of ~0.5 s (see ClusterConfig).
 *  - Batched, not one round trip per shard. `acquire` and `refresh` run every shard's chain of KV requests
 *    concurrently (pipelined on the one connection, at most `leaseRequestsInFlightMax` in flight). `refresh` needs
 *    no read at all: this instance remembers the revision of every lease it wrote, so a refresh is one pipelined
 *    wave of `update`s, and a mismatch means the lease expired or changed hands — reported lost, never silently
 *    re-taken (another runner may have run the shard in between). The contended paths read the one key through the
 *    stream leader. 300 shards: one wave of ~300 requests instead of 300 (acquire) or 600 (refresh) sequential round
 *    trips, which matters because the library gives a refresh at most one refresh interval (1 s) before it declares
 *    the lock storage unhealthy and stops every entity.
 *  - Consistent reads. Buckets are opened with `allow_direct: false`, so `get` is answered by the stream leader: a
 *    direct get may be served by a lagging replica of an R3 bucket (nats.md), which would make a lease we hold look
 *    stale. A stale read could not break exclusivity (every write is a CAS), but it would cause needless loss.
 *  - Memory storage for the leases. They are soft state that expires within seconds; keeping them off the disk keeps
 *    ~300 writes per second per cluster away from the fsyncs of the partition streams (`sync_interval: always`).
 *    R3 still replicates them through Raft, so losing one NATS node loses no lease. Losing a majority at once can
 *    lose leases, which is the same as their early expiry: the owner's next refresh fails and it stops the shard,
 *    and JetStream's expected-sequence fencing keeps a partition single-writer meanwhile. The meta bucket (machine
 *    id counter, fixed settings) must survive everything and uses file storage.
 *  - Machine ids come from a CAS counter (never reused, like SQL's serial column); a runner that re-registers while
 *    its entry is alive keeps its id. The `sharding` key records the cluster-wide settings at first start, and every
 *    runner and client refuses to start with different ones (a `shardsPerGroup` mismatch otherwise strands messages
 *    silently, effect.md gotcha #1).
 *  - One-pass listings without the JetStream meta layer: `getRunners` (polled every second by every process) lists
 *    the runner subjects with one `STREAM.INFO` and reads them concurrently from the stream leader, so it creates no
 *    consumer; `releaseAll` (shutdown only) reads the whole locks bucket through one ordered consumer.
 */
import { Clock, Data, Duration, Effect, Layer, Random, Result, Schedule } from "effect"
import { ClusterError, RunnerStorage, ShardingConfig } from "effect/cluster"
import { connect } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { JetStreamApiCodes, JetStreamApiError, jetstream, StorageType } from "@nats-io/jetstream"
import type { JetStreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import type { KV, KvEntry } from "@nats-io/kv"
import * as ClusterConfig from "./ClusterConfig.ts"

// --- options and errors -------------------------------------------------------------------------------------------

export interface Options {
  /** Replicas of the buckets: 1 on a single NATS server, 3 in a NATS cluster. Default 1. */
  readonly replicas?: number
  /** Prefix of the bucket names (`<prefix>_runners`, `<prefix>_locks`, `<prefix>_meta`). Default "chronos_cluster". */
  readonly bucketPrefix?: string
  /** Timeout of one KV request, ms. Default `ClusterConfig.natsRequestTimeoutMs`. */
  readonly requestTimeoutMs?: number
  /** KV requests one operation keeps in flight. Default `ClusterConfig.leaseRequestsInFlightMax`. */
  readonly requestsInFlightMax?: number
}

export interface LayerOptions extends Options {
  /** NATS server URL(s), e.g. "nats://127.0.0.1:4222"; all nodes of a cluster. */
  readonly servers: string | ReadonlyArray<string>
}

/**
 * A bucket or the recorded cluster settings disagree with this process's configuration (a different lease TTL,
 * `shardsPerGroup`, …). Starting anyway would break lease timing or shard routing, so the storage refuses to start.
 */
export class ClusterConfigMismatch extends Data.TaggedError("ClusterConfigMismatch")<{ readonly message: string }> {}

// --- encoding -----------------------------------------------------------------------------------------------------

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Escapes a string into one KV key token: `[A-Za-z0-9_-]` stay, every other UTF-8 byte becomes `=XX`. */
export const escapeKeyToken = (s: string): string => {
  let out = ""
  for (const byte of encoder.encode(s)) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9_-]/.test(c) ? c : `=${byte.toString(16).toUpperCase().padStart(2, "0")}`
  }
  return out
}

/** The lock key of a shard id in its `group:number` form: `esc(group).number`. */
export const shardKey = (shardId: string): string => {
  const i = shardId.lastIndexOf(":")
  return i < 0 ? escapeKeyToken(shardId) : `${escapeKeyToken(shardId.slice(0, i))}.${escapeKeyToken(shardId.slice(i + 1))}`
}

/** The registry key of a runner address (`host:port`). */
export const runnerKey = (address: string): string => escapeKeyToken(address)

interface LockValue {
  readonly runner: string
  readonly token: string
}

interface RunnerValue {
  readonly runner: string
  readonly healthy: boolean
  readonly machineId: number
  readonly token: string
}

/** A lease this storage instance holds: the revision of its last acknowledged write, and when that write was sent. */
interface Lease {
  readonly revision: number
  readonly sentAtMs: number
}

interface ShardingValue {
  readonly shardsPerGroup: number
  readonly shardLockExpirationMs: number
}

const parse = <A>(entry: KvEntry, valid: (v: Record<string, unknown>) => boolean): A | undefined => {
  if (entry.operation !== "PUT") return undefined
  try {
    const v: unknown = JSON.parse(decoder.decode(entry.value))
    return typeof v === "object" && v !== null && valid(v as Record<string, unknown>) ? (v as A) : undefined
  } catch {
    return undefined // not ours: treated as a foreign entry
  }
}

const parseLock = (e: KvEntry) => parse<LockValue>(e, (v) => typeof v.runner === "string" && typeof v.token === "string")
const parseRunner = (e: KvEntry) =>
  parse<RunnerValue>(e, (v) =>
    typeof v.runner === "string" && typeof v.healthy === "boolean" && typeof v.machineId === "number" &&
    typeof v.token === "string")

// --- NATS helpers -------------------------------------------------------------------------------------------------

const isConflict = (e: unknown): boolean =>
  e instanceof JetStreamApiError &&
  (e.code === JetStreamApiCodes.StreamWrongLastSequence || e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)

const persistenceError = (cause: unknown) => new ClusterError.PersistenceError({ cause })

/** One NATS request as an effect; every failure is a `PersistenceError`. */
const request = <A>(f: () => Promise<A>): Effect.Effect<A, ClusterError.PersistenceError> =>
  Effect.tryPromise({ try: f, catch: persistenceError })

/**
 * A compare-and-swap write: its new revision, or `undefined` if the expected revision did not match. `onWritten`
 * runs inside the promise, so a write that lands after its effect was interrupted (the library puts timeouts on
 * acquire and refresh) is still recorded and can be refreshed or released later.
 */
const cas = (
  write: () => Promise<number>,
  onWritten?: (revision: number) => void
): Effect.Effect<number | undefined, ClusterError.PersistenceError> =>
  request(() =>
    write().then(
      (revision) => {
        onWritten?.(revision)
        return revision
      },
      (e: unknown) => (isConflict(e) ? undefined : Promise.reject(e))
    )
  )

/** A compare-and-swap delete: whether it happened. */
const casDelete = (kv: KV, key: string, revision: number): Effect.Effect<boolean, ClusterError.PersistenceError> =>
  request(() => kv.delete(key, { previousSeq: revision }).then(() => true, (e: unknown) => (isConflict(e) ? false : Promise.reject(e))))

// --- make ---------------------------------------------------------------------------------------------------------

/**
 * Builds the storage on an open NATS connection: creates (or checks) the three buckets and the recorded cluster
 * settings, then returns the `RunnerStorage` service. The connection stays the caller's.
 */
export const make = Effect.fnUntraced(function*(nc: NatsConnection, options: Options = {}) {
  const config = yield* ShardingConfig.ShardingConfig
  const expirationMs = Duration.toMillis(Duration.fromInputUnsafe(config.shardLockExpiration))
  const replicas = options.replicas ?? 1
  const prefix = options.bucketPrefix ?? "chronos_cluster"
  const timeoutMs = options.requestTimeoutMs ?? ClusterConfig.natsRequestTimeoutMs
  const concurrency = options.requestsInFlightMax ?? ClusterConfig.leaseRequestsInFlightMax
  if (!/^[-\w]+$/.test(prefix)) return yield* Effect.die(new Error(`bucketPrefix must match [-A-Za-z0-9_]+, got "${prefix}"`))

  const js = jetstream(nc, { timeout: timeoutMs })
  const jsm: JetStreamManager = yield* request(() => js.jetstreamManager())
  // Creating an R3 bucket is a JetStream meta-layer operation plus a Raft election: it can take seconds on a busy
  // cluster, so setup gets its own, longer timeout; the lease requests use the short one.
  const setupKvm = new Kvm(jetstream(nc, { timeout: Math.max(timeoutMs, ClusterConfig.natsSetupTimeoutMs) }))
  const kvm = new Kvm(js)

  // A bucket that was just created still elects its Raft leader (seconds on a busy 3-node cluster whose runners all
  // start at once), so its first requests may time out: setup retries them for up to `natsSetupTimeoutMs`. Every
  // step is a read or a CAS, so repeating one is harmless.
  const settle = <A>(effect: Effect.Effect<A, ClusterError.PersistenceError>) =>
    effect.pipe(Effect.retry({
      times: Math.ceil(ClusterConfig.natsSetupTimeoutMs / (timeoutMs + ClusterConfig.natsSetupRetryIntervalMs)),
      schedule: Schedule.spaced(Duration.millis(ClusterConfig.natsSetupRetryIntervalMs))
    }))

  /**
   * Opens a bucket, creating it if missing. An existing bucket must have the TTL this process needs: a lease bucket
   * with another TTL would expire leases at the wrong time (or never), and the meta bucket must never expire its
   * counter. Such a bucket is refused rather than reconfigured, since live runners may depend on its current rules;
   * the message says how to fix it.
   */
  const openBucket = Effect.fnUntraced(function*(name: string, ttlMs: number, storage: StorageType) {
    const create = request(() => setupKvm.create(name, { history: 1, ttl: ttlMs, replicas, storage, allow_direct: false }))
    // Two processes creating the same bucket at once: the loser's create fails, the retry binds to the winner's.
    const created = yield* Effect.catch(create, () => create)
    const status = yield* settle(request(() => created.status()))
    if (status.ttl !== ttlMs) {
      return yield* new ClusterConfigMismatch({
        message: `NATS KV bucket "${name}" has TTL ${status.ttl} ms, but this process needs ${ttlMs} ms ` +
          (ttlMs === 0
            ? "(no TTL: it holds the machine id counter and the cluster settings). "
            : "(= shardLockExpiration; leases and registrations expire through the bucket TTL). ") +
          "Every runner and client must use the same ClusterConfig. If the configuration changed on purpose, stop " +
          `every runner and delete the bucket (nats kv del ${name}); it is recreated on the next start.`
      })
    }
    if (status.replicas !== replicas) {
      yield* Effect.logWarning(`NATS KV bucket "${name}" has ${status.replicas} replicas, configured ${replicas}; using it as is`)
    }
    // The handle for lease traffic: bound (no request) through the short-timeout client, reads via the leader.
    return yield* request(() => kvm.open(name, { allow_direct: false }))
  })

  const runners = yield* openBucket(`${prefix}_runners`, expirationMs, StorageType.Memory)
  const locks = yield* openBucket(`${prefix}_locks`, expirationMs, StorageType.Memory)
  const meta = yield* openBucket(`${prefix}_meta`, 0, StorageType.File)
  const runnersStream = `KV_${prefix}_runners`
  const runnersSubjectPrefix = `$KV.${prefix}_runners.`

  // Record the cluster-wide settings at first start; everyone after must agree (see module doc).
  const settings: ShardingValue = { shardsPerGroup: config.shardsPerGroup, shardLockExpirationMs: expirationMs }
  let recorded = yield* settle(request(() => meta.get("sharding")))
  // First start (or the record was deleted on purpose): write ours, then read back ours or the one a concurrent first
  // start wrote. A write whose outcome was lost (a timeout during a bucket election under load) leaves nothing to
  // read: write again, a bounded number of times, rather than take "nothing" for a mismatch.
  const unrecorded = () => recorded === null || recorded.operation !== "PUT"
  for (let attempt = 0; attempt < ClusterConfig.settingsWriteAttemptsMax && unrecorded(); attempt++) {
    const expected = recorded?.revision ?? 0
    yield* settle(cas(() => meta.put("sharding", JSON.stringify(settings), { previousSeq: expected })))
    recorded = yield* settle(request(() => meta.get("sharding")))
  }
  const recordedSettings = recorded === null
    ? undefined
    : parse<ShardingValue>(recorded, (v) => typeof v.shardsPerGroup === "number" && typeof v.shardLockExpirationMs === "number")
  if (
    recordedSettings === undefined || recordedSettings.shardsPerGroup !== settings.shardsPerGroup ||
    recordedSettings.shardLockExpirationMs !== settings.shardLockExpirationMs
  ) {
    return yield* new ClusterConfigMismatch({
      message: `this process uses shardsPerGroup=${settings.shardsPerGroup}, shardLockExpiration=${expirationMs} ms, ` +
        `but the cluster recorded ${recorded === null ? "nothing readable" : decoder.decode(recorded.value)} in ` +
        `"${prefix}_meta"/sharding. Every runner and client must share ClusterConfig; shardsPerGroup decides which ` +
        "runner owns an entity and can never differ between processes."
    })
  }

  // This incarnation's identity: lets refresh recognise a write of ours whose acknowledgement was lost, and lets
  // unregister leave alone a registration that a newer process with the same address has made since.
  const token = (yield* Effect.forEach([0, 1, 2, 3], () => Random.nextIntBetween(0, 0xffff)))
    .map((n) => n.toString(16).padStart(4, "0")).join("")

  // Every lease this instance wrote, per runner address (one instance may serve several in tests): the revision of
  // our last acknowledged write, and when that write was sent (the server's TTL started no earlier).
  const leases = new Map<string, Map<string, Lease>>()
  const leasesOf = (address: string): Map<string, Lease> => {
    let m = leases.get(address)
    if (m === undefined) leases.set(address, m = new Map())
    return m
  }
  const lockValue = (address: string): string => JSON.stringify({ runner: address, token } satisfies LockValue)

  // The runner entry this instance registered, per address: its content and revision, for the heartbeat.
  const registrations = new Map<string, { value: RunnerValue; revision: number }>()

  // --- leases -------------------------------------------------------------------------------------------------

  /**
   * Takes one shard for `address`: extends the lease we hold, creates a missing one, replaces a delete marker, or
   * keeps a lease that already carries our address (an earlier incarnation of this runner, or a write whose ack we
   * missed — the same "keep your own" rule as SQL). Someone else's live lease, or a lost race, is `false`.
   */
  const acquireOne = (address: string, key: string) =>
    Effect.gen(function*() {
      const mine = leasesOf(address)
      const value = lockValue(address)
      const sentAtMs = yield* Clock.currentTimeMillis
      const record = (revision: number) => void mine.set(key, { revision, sentAtMs })
      const known = mine.get(key)?.revision
      const first = known !== undefined
        ? yield* cas(() => locks.update(key, value, known), record)
        : yield* cas(() => locks.put(key, value, { previousSeq: 0 }), record)
      if (first !== undefined) return true
      if (known !== undefined) mine.delete(key)
      // Contended: decide on the current entry, read through the stream leader, and write with its revision.
      let entry = yield* request(() => locks.get(key))
      const holder = entry?.operation === "PUT" ? parseLock(entry)?.runner : undefined
      if (entry !== null && holder !== undefined && holder !== address) {
        // Someone else's lease. If its runner is no longer registered it is handing off (a graceful stop
        // unregisters first, then stops its entities and releases) or its registration lapsed just before its
        // leases: wait a moment for the release or the expiry instead of failing, which would cost a whole
        // acquisition round (the library retries after a fixed second).
        if ((yield* request(() => runners.get(runnerKey(holder))))?.operation === "PUT") return false
        entry = yield* awaitRelease(key, entry.revision)
        if (entry !== null && entry.operation === "PUT" && parseLock(entry)?.runner !== address) return false
      }
      let expected: number
      if (entry === null) expected = 0 // expired since our first attempt
      else if (entry.operation !== "PUT") expected = entry.revision // released: a delete marker
      else if (parseLock(entry)?.runner === address) expected = entry.revision
      else return false
      return (yield* cas(() => locks.put(key, value, { previousSeq: expected }), record)) !== undefined
    })

  /** Polls lock `key` until its entry is no longer revision `revision` or `handoffWaitMs` passes; the last entry. */
  const awaitRelease = (key: string, revision: number) =>
    Effect.gen(function*() {
      const deadline = (yield* Clock.currentTimeMillis) + ClusterConfig.handoffWaitMs
      let entry = yield* request(() => locks.get(key))
      while (entry !== null && entry.revision === revision && (yield* Clock.currentTimeMillis) < deadline) {
        yield* Effect.sleep(Duration.millis(ClusterConfig.handoffPollIntervalMs))
        entry = yield* request(() => locks.get(key))
      }
      return entry
    })

  /**
   * Extends one lease. It stays ours only if nothing was written since our last write: a revision mismatch means
   * it expired (and maybe changed hands), unless the current entry is a write of this very instance whose
   * acknowledgement we missed.
   */
  const refreshOne = (address: string, key: string) =>
    Effect.gen(function*() {
      const mine = leasesOf(address)
      const value = lockValue(address)
      const sentAtMs = yield* Clock.currentTimeMillis
      const record = (revision: number) => void mine.set(key, { revision, sentAtMs })
      const known = mine.get(key)?.revision
      if (known !== undefined && (yield* cas(() => locks.update(key, value, known), record)) !== undefined) return true
      const entry = yield* request(() => locks.get(key))
      const current = entry === null ? undefined : parseLock(entry)
      if (entry !== null && current?.runner === address && current.token === token) {
        if ((yield* cas(() => locks.update(key, value, entry.revision), record)) !== undefined) return true
      }
      mine.delete(key)
      return false
    })

  /**
   * `refreshOne` within `leaseRefreshTimeoutMs`; when the bucket cannot answer in time (its Raft group electing a
   * leader), a lease whose last acknowledged write is younger than `leaseToleranceMs` is reported as held: it is
   * still in the bucket, so no other runner can have taken it (see ClusterConfig). An older one fails the refresh.
   * A definite answer (kept, or lost to a revision mismatch) is never overridden.
   */
  const refreshTolerant = (address: string, key: string) =>
    refreshOne(address, key).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(ClusterConfig.leaseRefreshTimeoutMs),
        orElse: () => Effect.fail(persistenceError(new Error(`refresh of lease ${key} timed out`)))
      }),
      Effect.catch((error) =>
        Effect.gen(function*() {
          const lease = leasesOf(address).get(key)
          const ageMs = (yield* Clock.currentTimeMillis) - (lease?.sentAtMs ?? -Infinity)
          if (ageMs < ClusterConfig.leaseToleranceMs) {
            tolerated++
            return true
          }
          return yield* Effect.fail(error)
        })
      )
    )
  /** Leases reported held without confirmation since the last fully confirmed refresh (for the log line). */
  let tolerated = 0

  /** Deletes one lease if `address` holds it, with the revision we know or, failing that, the one we read. */
  const releaseOne = (address: string, key: string, revision: number | undefined) =>
    Effect.gen(function*() {
      leasesOf(address).delete(key)
      if (revision !== undefined && (yield* casDelete(locks, key, revision))) return
      const entry = yield* request(() => locks.get(key))
      if (entry !== null && parseLock(entry)?.runner === address) yield* casDelete(locks, key, entry.revision)
    })

  // --- runners ------------------------------------------------------------------------------------------------

  /** The next machine id: increments the counter with compare-and-swap, with a little jitter under contention. */
  const nextMachineId = Effect.gen(function*() {
    for (let attempt = 0; attempt < ClusterConfig.casAttemptsMax; attempt++) {
      const entry = yield* request(() => meta.get("machine-id-next"))
      const current = entry?.operation === "PUT" ? Number(decoder.decode(entry.value)) : 0
      const next = Number.isSafeInteger(current) && current >= 0 ? current : 0
      const written = yield* cas(() => meta.put("machine-id-next", String(next + 1), { previousSeq: entry?.revision ?? 0 }))
      if (written !== undefined) return next
      yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(0, 10)))
    }
    return yield* Effect.fail(persistenceError(new Error("machine id counter: too much contention")))
  })

  /** Writes the runner entry (creating or replacing the revision we saw); the new revision is remembered. */
  const writeRunner = (address: string, value: RunnerValue, expected: number) =>
    cas(
      () => runners.put(runnerKey(address), JSON.stringify(value), { previousSeq: expected }),
      (revision) => void registrations.set(address, { value, revision })
    )

  /**
   * Re-writes our runner entry so it does not expire. Uses the revision we last wrote; if someone changed the entry
   * meanwhile (another runner's health check), re-reads it and keeps their change. An entry that expired or belongs
   * to a newer incarnation is left alone: the library re-registers a runner that is missing from `getRunners`.
   */
  const heartbeat = (address: string) =>
    Effect.gen(function*() {
      const key = runnerKey(address)
      const known = registrations.get(address)
      if (known !== undefined && (yield* writeRunner(address, known.value, known.revision)) !== undefined) return
      const entry = yield* request(() => runners.get(key))
      const current = entry === null ? undefined : parseRunner(entry)
      if (entry === null || current === undefined || current.token !== token) {
        registrations.delete(address)
        return
      }
      yield* writeRunner(address, current, entry.revision) // a conflict here waits for the next heartbeat
    })

  /** Runs `f` for every item, `concurrency` at a time on the one connection; per-item results, never failing. */
  const each = <A, B>(items: ReadonlyArray<A>, f: (a: A) => Effect.Effect<B, ClusterError.PersistenceError>) =>
    Effect.forEach(items, (a) => Effect.result(f(a)), { concurrency })

  /** Fails with the first error, if any; otherwise the successes in order. */
  const allOrFail = <B>(results: ReadonlyArray<Result.Result<B, ClusterError.PersistenceError>>) =>
    Effect.gen(function*() {
      const out: Array<B> = []
      for (const r of results) {
        if (Result.isFailure(r)) return yield* Effect.fail(r.failure)
        out.push(r.success)
      }
      return out
    })

  /** The current entries of a bucket in one pass (one ordered consumer), keyed by KV key. */
  const scan = (kv: KV) =>
    Effect.tryPromise({
      try: async (signal) => {
        const out = new Map<string, KvEntry>()
        const it = await kv.history()
        signal.addEventListener("abort", () => it.stop()) // a timed-out scan must not leave its consumer running
        for await (const e of it) out.set(e.key, e) // history 1: one entry per key (the last wins regardless)
        return out
      },
      catch: persistenceError
    }).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(timeoutMs * 2),
        orElse: () => Effect.fail(persistenceError(new Error("scan of the locks bucket timed out")))
      })
    )

  return RunnerStorage.makeEncoded({
    getRunners: Effect.gen(function*() {
      const info = yield* request(() => jsm.streams.info(runnersStream, { subjects_filter: `${runnersSubjectPrefix}>` }))
      const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(runnersSubjectPrefix.length))
      const entries = yield* allOrFail(yield* each(keys, (key) => request(() => runners.get(key))))
      const out: Array<readonly [runner: string, healthy: boolean]> = []
      for (const entry of entries) {
        const value = entry === null ? undefined : parseRunner(entry)
        if (value !== undefined) out.push([value.runner, value.healthy])
      }
      return out
    }),

    register: (address, runner, healthy) =>
      Effect.gen(function*() {
        const key = runnerKey(address)
        for (let attempt = 0; attempt < ClusterConfig.casAttemptsMax; attempt++) {
          const entry = yield* request(() => runners.get(key))
          const current = entry === null ? undefined : parseRunner(entry)
          // A live entry of this address keeps its machine id (as SQL's upsert does); otherwise allocate one.
          const machineId = current?.machineId ?? (yield* nextMachineId)
          const value: RunnerValue = { runner, healthy, machineId, token }
          if ((yield* writeRunner(address, value, entry?.revision ?? 0)) !== undefined) return machineId
        }
        return yield* Effect.fail(persistenceError(new Error(`register ${address}: too much contention`)))
      }),

    unregister: (address) =>
      Effect.gen(function*() {
        registrations.delete(address)
        const entry = yield* request(() => runners.get(runnerKey(address)))
        const current = entry === null ? undefined : parseRunner(entry)
        // Only our own registration: a newer process with the same address may have registered since.
        if (entry !== null && current?.token === token) yield* casDelete(runners, runnerKey(address), entry.revision)
      }),

    setRunnerHealth: (address, healthy) =>
      Effect.gen(function*() {
        const key = runnerKey(address)
        for (let attempt = 0; attempt < ClusterConfig.casAttemptsMax; attempt++) {
          const entry = yield* request(() => runners.get(key))
          const current = entry === null ? undefined : parseRunner(entry)
          if (entry === null || current === undefined || current.healthy === healthy) return
          const value = { ...current, healthy }
          const written = yield* cas(() => runners.update(key, JSON.stringify(value), entry.revision), (revision) => {
            if (registrations.has(address)) registrations.set(address, { value, revision })
          })
          if (written !== undefined) return
        }
        return yield* Effect.fail(persistenceError(new Error(`setRunnerHealth ${address}: too much contention`)))
      }),

    acquire: (address, shardIds) =>
      Effect.gen(function*() {
        const results = yield* each(shardIds, (shardId) => acquireOne(address, shardKey(shardId)))
        // "Try to acquire": a shard whose requests failed is simply not acquired this round (the library retries
        // every second). Only a storage that failed every request is an error, so an outage is visible.
        const first = results[0]
        if (first !== undefined && Result.isFailure(first) && results.every(Result.isFailure)) {
          return yield* Effect.fail(first.failure)
        }
        return shardIds.filter((_, i) => {
          const r = results[i]!
          return Result.isSuccess(r) && r.success
        })
      }),

    refresh: (address, shardIds) =>
      Effect.gen(function*() {
        // An empty list is the library's liveness probe while it considers the lock storage unhealthy: besides the
        // heartbeat, read a (never written) key of the locks bucket, so the probe only succeeds once the locks
        // bucket's own Raft leader answers again (it is a different group from the runners bucket's).
        const probe = shardIds.length === 0 ? request(() => locks.get("probe")) : Effect.void
        // The heartbeat is best effort: the runners bucket is a separate Raft group, and a hiccup there must not
        // stop every entity while the leases themselves are fine (a registration that does lapse is re-registered
        // by the library's next assignment poll).
        // Bounded like the leases: the library gives the whole refresh one refresh interval.
        const beat = heartbeat(address).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(ClusterConfig.leaseRefreshTimeoutMs),
            orElse: () => Effect.fail(persistenceError(new Error("heartbeat timed out")))
          }),
          Effect.catchCause((cause) => Effect.logWarning(`heartbeat of runner ${address} failed`, cause))
        )
        const toleratedBefore = tolerated
        const [, , results] = yield* Effect.all([
          beat,
          probe,
          each(shardIds, (shardId) => refreshTolerant(address, shardKey(shardId)))
        ], { concurrency: 3 })
        // A lease we could not confirm, and no longer within its tolerance, must not be reported as kept, nor as lost
        // on a mere timeout: the whole refresh fails and the library retries it (and stops the shards if the
        // storage stays unreachable).
        const kept = yield* allOrFail(results)
        if (tolerated > toleratedBefore) {
          yield* Effect.logWarning(
            `locks bucket unreachable: ${tolerated - toleratedBefore} of ${shardIds.length} leases of ${address} ` +
              `kept unconfirmed (within ${ClusterConfig.leaseToleranceMs} ms of their last write)`
          )
        }
        return shardIds.filter((_, i) => kept[i])
      }),

    release: (address, shardId) => {
      const key = shardKey(shardId)
      return releaseOne(address, key, leases.get(address)?.get(key)?.revision)
    },

    releaseAll: (address) =>
      Effect.gen(function*() {
        // One pass over the bucket finds every lease of this address, including ones we did not know we held
        // (an earlier incarnation's, a write whose ack was lost); the leases we remember cover a lagging replica.
        // The scan's consumer needs the JetStream meta leader; if that is unavailable, release what we know and
        // leave the rest to the TTL rather than fail (the library blocks reacquisition until releaseAll succeeds).
        const entries = yield* scan(locks).pipe(
          Effect.tapCause((cause) => Effect.logWarning("releaseAll: scan of the locks bucket failed; releasing the leases this process knows", cause)),
          Effect.orElseSucceed(() => new Map<string, KvEntry>())
        )
        const targets = new Map<string, number | undefined>()
        for (const [key, entry] of entries) {
          if (parseLock(entry)?.runner === address) targets.set(key, entry.revision)
        }
        for (const [key, lease] of leasesOf(address)) if (!targets.has(key)) targets.set(key, lease.revision)
        yield* allOrFail(yield* each([...targets], ([key, revision]) => releaseOne(address, key, revision)))
        leases.delete(address)
      })
  })
})

/**
 * The storage with its own NATS connection, drained when the layer's scope closes. Needs `ShardingConfig` (the lease
 * expiration and `shardsPerGroup`): give it the same `ClusterConfig` as the cluster layer.
 */
export const layer = (
  options: LayerOptions
): Layer.Layer<RunnerStorage.RunnerStorage, ClusterError.PersistenceError | ClusterConfigMismatch, ShardingConfig.ShardingConfig> =>
  Layer.effect(
    RunnerStorage.RunnerStorage,
    Effect.gen(function*() {
      const timeoutMs = options.requestTimeoutMs ?? ClusterConfig.natsRequestTimeoutMs
      const nc = yield* Effect.acquireRelease(
        request(() =>
          connect({
            servers: typeof options.servers === "string" ? options.servers : [...options.servers],
            name: "chronos-runner-storage",
            // A runner lives for days: never give up reconnecting (the default stops after 10 attempts).
            maxReconnectAttempts: -1,
            reconnectTimeWait: 250,
            // Every request would otherwise build an Error up front for its async stack trace: ~2% of a runner's CPU
            // in the cluster benchmark's profile, for a trace no caller reads (failures are mapped to typed errors).
            noAsyncTraces: true,
            timeout: timeoutMs
          })
        ),
        // Drain lets in-flight releases finish; a server that is gone cannot drain, so close after a bound.
        (nc) =>
          Effect.promise(() => nc.drain().catch(() => nc.close())).pipe(
            Effect.timeoutOrElse({ duration: Duration.millis(timeoutMs), orElse: () => Effect.promise(() => nc.close()) })
          )
      )
      return yield* make(nc, options)
    })
  )
