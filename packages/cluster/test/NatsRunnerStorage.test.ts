/**
 * `NatsRunnerStorage` against real nats-server processes (test/support/NatsServer.ts):
 *  - one server: the runner registry, lease exclusivity under contention, refresh, expiry by the server's TTL,
 *    release/releaseAll, unique machine ids, the liveness heartbeat, and refusal of a mismatched configuration;
 *  - a 3-node cluster with R3 buckets: exclusivity, and leases and CAS that keep working through kill -9 of the
 *    buckets' leader;
 *  - end to end: two runner processes (`NodeClusterSocket`, storage "byo" = this storage + `MessageStorage.layerNoop`)
 *    and an in-process client; kill -9 of a runner, then a graceful stop; prints the measured failover times.
 * Every test uses its own bucket prefix, so tests sharing a server never see each other's keys.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Exit, Layer, Option } from "effect"
import { MessageStorage, Runner, RunnerAddress, RunnerStorage, ShardId, ShardingConfig } from "effect/cluster"
import { NodeClusterSocket } from "@effect/platform-node"
import { connect } from "@nats-io/transport-node"
import { jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as path from "node:path"
import * as ClusterConfig from "../src/ClusterConfig.ts"
import * as NatsRunnerStorage from "../src/NatsRunnerStorage.ts"
import { WhoAmI } from "./fixtures/WhoAmI.ts"
import { freePorts, startNatsCluster, startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsClusterHandle, NatsServerHandle } from "../../../test/support/NatsServer.ts"

const NODE = path.resolve(import.meta.dirname, "../../../node_modules/.bin/node")
const RUNNER = path.resolve(import.meta.dirname, "fixtures/runner.ts")
const SHARDS = 300

// --- helpers -------------------------------------------------------------------------------------------------------

let prefixCounter = 0
const freshPrefix = (name: string) => `t${process.pid}_${++prefixCounter}_${name}`

interface StorageOptions {
  readonly servers: string | ReadonlyArray<string>
  readonly prefix: string
  readonly expirationMs: number
  readonly replicas?: number
  readonly shardsPerGroup?: number
}

/** One storage instance (its own NATS connection, like one runner process), living in the test's scope. */
const makeStorage = (o: StorageOptions) =>
  Layer.build(
    NatsRunnerStorage.layer({ servers: o.servers, bucketPrefix: o.prefix, ...(o.replicas ? { replicas: o.replicas } : {}) })
      .pipe(Layer.provide(ShardingConfig.layer({
        shardsPerGroup: o.shardsPerGroup ?? SHARDS,
        shardLockExpiration: Duration.millis(o.expirationMs)
      })))
  ).pipe(Effect.map(Context.get(RunnerStorage.RunnerStorage)))

const address = (port: number) => RunnerAddress.make("127.0.0.1", port)
const shards = (n: number, group = "default", from = 1) => Array.from({ length: n }, (_, i) => ShardId.make(group, from + i))
const ids = (xs: ReadonlyArray<ShardId.ShardId>) => new Set(xs.map(String))
const now = Clock.currentTimeMillis
const runnerAt = (port: number) => new Runner.Runner({ address: address(port), groups: ["default"], weight: 1 })

/** Retries `effect` every `pauseMs` until it succeeds or `timeoutMs` passes (then fails with the last error). */
const eventually = <A, E>(effect: Effect.Effect<A, E>, timeoutMs: number, pauseMs = 200) =>
  Effect.gen(function*() {
    const deadline = (yield* now) + timeoutMs
    for (;;) {
      const exit = yield* Effect.exit(effect)
      if (Exit.isSuccess(exit) || (yield* now) > deadline) return yield* exit
      yield* Effect.sleep(Duration.millis(pauseMs))
    }
  })

/** Asserts that two acquisitions of the same shards partition them: every shard owned exactly once. */
const assertExclusive = (all: ReadonlyArray<ShardId.ShardId>, a: ReadonlyArray<ShardId.ShardId>, b: ReadonlyArray<ShardId.ShardId>) => {
  const sa = ids(a)
  const sb = ids(b)
  for (const s of sa) assert.isFalse(sb.has(s), `shard ${s} acquired by both runners`)
  assert.strictEqual(sa.size + sb.size, all.length, `every shard owned: ${sa.size} + ${sb.size}`)
}

/** Reads the owner ("host:port") of every lock key straight from the bucket, bypassing the storage under test. */
const ownersInBucket = (servers: string | ReadonlyArray<string>, prefix: string) =>
  Effect.promise(async () => {
    const nc = await connect({ servers: typeof servers === "string" ? servers : [...servers] })
    try {
      const kv = await new Kvm(nc).open(`${prefix}_locks`, { allow_direct: false })
      const out = new Map<string, string>()
      for await (const e of await kv.history()) {
        if (e.operation === "PUT") out.set(e.key, (e.json() as { runner: string }).runner)
        else out.delete(e.key)
      }
      return out
    } finally {
      await nc.close()
    }
  })

// --- one nats-server -------------------------------------------------------------------------------------------------

describe("NatsRunnerStorage on one nats-server", () => {
  let server: NatsServerHandle
  beforeAll(async () => {
    server = await startNatsServer()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it.live("registers runners, lists them with their health, keeps machine ids, unregisters", () =>
    Effect.gen(function*() {
      const o = { servers: server.url, prefix: freshPrefix("registry"), expirationMs: 5_000 }
      const s1 = yield* makeStorage(o)
      const s2 = yield* makeStorage(o)
      const b = address(2)
      const ra = runnerAt(1)
      const rb = runnerAt(2)
      const ma = yield* s1.register(ra, true)
      const mb = yield* s2.register(rb, true)
      assert.notStrictEqual(ma, mb)
      let listed = yield* s1.getRunners
      assert.deepStrictEqual(listed.map(([r, h]) => [r.address.port, h]).sort(), [[1, true], [2, true]])
      // Another runner's health check flags b; the flag is visible to all and survives b's heartbeat.
      yield* s1.setRunnerHealth(b, false)
      yield* s2.refresh(b, [])
      listed = yield* s2.getRunners
      assert.deepStrictEqual(listed.map(([r, h]) => [r.address.port, h]).sort(), [[1, true], [2, false]])
      // Re-registering a live runner keeps its machine id (like SQL's upsert).
      assert.strictEqual(yield* s1.register(ra, true), ma)
      yield* s2.unregister(b)
      listed = yield* s1.getRunners
      assert.deepStrictEqual(listed.map(([r]) => r.address.port), [1])
      // An unregistered runner that comes back gets a new id.
      const mb2 = yield* s2.register(rb, true)
      assert.isTrue(mb2 !== ma && mb2 !== mb)
      // unregister by an instance that did not make the registration leaves it alone (a newer incarnation's).
      yield* s1.unregister(b)
      assert.strictEqual((yield* s1.getRunners).length, 2)
    }))

  it.live("two runners competing for the same 300 shards: every shard owned by exactly one", () =>
    Effect.gen(function*() {
      const o = { servers: server.url, prefix: freshPrefix("compete"), expirationMs: 5_000 }
      const s1 = yield* makeStorage(o)
      const s2 = yield* makeStorage(o)
      const all = shards(SHARDS)
      const t0 = yield* now
      // Opposite orders, so the two runners' requests collide in the middle instead of one simply going first.
      const [a, b] = yield* Effect.all([s1.acquire(address(1), all), s2.acquire(address(2), [...all].reverse())], { concurrency: 2 })
      console.log(`[R1] two runners acquiring ${SHARDS} contended shards concurrently: ${(yield* now) - t0} ms (${a.length} + ${b.length})`)
      assertExclusive(all, a, b)
      // The bucket agrees with what each runner was told.
      const owners = yield* ownersInBucket(server.url, o.prefix)
      assert.strictEqual(owners.size, SHARDS)
      for (const s of a) assert.strictEqual(owners.get(NatsRunnerStorage.shardKey(String(s))), "127.0.0.1:1")
      for (const s of b) assert.strictEqual(owners.get(NatsRunnerStorage.shardKey(String(s))), "127.0.0.1:2")
      // A second round changes nothing: each keeps its own, takes none of the other's.
      const [a2, b2] = yield* Effect.all([s1.acquire(address(1), all), s2.acquire(address(2), all)], { concurrency: 2 })
      assert.deepStrictEqual(ids(a2), ids(a))
      assert.deepStrictEqual(ids(b2), ids(b))
    }))

  it.live("refresh keeps leases past the TTL; a runner that stops refreshing loses them to the other", () =>
    Effect.gen(function*() {
      const expirationMs = 2_000
      const o = { servers: server.url, prefix: freshPrefix("expiry"), expirationMs }
      const s1 = yield* makeStorage(o)
      const s2 = yield* makeStorage(o)
      const all = shards(SHARDS)
      yield* s1.register(runnerAt(1), true)
      assert.strictEqual((yield* s1.acquire(address(1), all)).length, SHARDS)
      // Refresh every 500 ms for twice the TTL: everything is kept, nothing can be taken.
      const start = yield* now
      while ((yield* now) - start < 2 * expirationMs) {
        yield* Effect.sleep("500 millis")
        const t0 = yield* now
        const kept = yield* s1.refresh(address(1), all)
        const took = (yield* now) - t0
        assert.strictEqual(kept.length, SHARDS, "refresh kept every lease")
        assert.isBelow(took, 1_000, "a refresh of 300 leases must fit the library's 1 s refresh budget")
        assert.strictEqual((yield* s2.acquire(address(2), all)).length, 0)
      }
      assert.deepStrictEqual((yield* s2.getRunners).map(([r]) => r.address.port), [1])
      // Runner 1 stops refreshing (as after kill -9). The server expires its leases and its registration.
      const stopped = yield* now
      let taken: ReadonlyArray<ShardId.ShardId> = []
      while (taken.length < SHARDS && (yield* now) - stopped < expirationMs + 3_000) {
        taken = [...taken, ...(yield* s2.acquire(address(2), all.filter((s) => !ids(taken).has(String(s)))))]
        if (taken.length < SHARDS) yield* Effect.sleep("100 millis")
      }
      const after = (yield* now) - stopped
      console.log(`[R1] leases of a silent runner taken over ${after} ms after its last refresh (TTL ${expirationMs} ms)`)
      assert.strictEqual(taken.length, SHARDS)
      assert.isAtLeast(after, expirationMs - 250, "not before the TTL")
      assert.deepStrictEqual((yield* s2.getRunners).length, 0, "the silent runner's registration expired too")
      // The old owner learns that it lost everything and cannot take anything back.
      assert.deepStrictEqual(yield* s1.refresh(address(1), all), [])
      assert.deepStrictEqual(yield* s1.acquire(address(1), all), [])
    }))

  it.live("release and releaseAll drop only the caller's own leases", () =>
    Effect.gen(function*() {
      const o = { servers: server.url, prefix: freshPrefix("release"), expirationMs: 5_000 }
      const s1 = yield* makeStorage(o)
      const s2 = yield* makeStorage(o)
      const mine = shards(10, "default", 1)
      const theirs = shards(10, "default", 11)
      assert.strictEqual((yield* s1.acquire(address(1), mine)).length, 10)
      assert.strictEqual((yield* s2.acquire(address(2), theirs)).length, 10)
      // Releasing someone else's shard does nothing.
      yield* s1.release(address(1), theirs[0]!)
      assert.strictEqual((yield* s2.refresh(address(2), theirs)).length, 10)
      // Releasing one's own frees it at once (no TTL wait).
      yield* s1.release(address(1), mine[0]!)
      assert.deepStrictEqual((yield* s2.acquire(address(2), [mine[0]!])).map(String), [String(mine[0])])
      // releaseAll drops all of runner 1's leases and none of runner 2's.
      yield* s1.releaseAll(address(1))
      const owners = yield* ownersInBucket(server.url, o.prefix)
      assert.deepStrictEqual([...owners.values()].filter((r) => r === "127.0.0.1:1"), [])
      assert.strictEqual((yield* s2.refresh(address(2), [...theirs, mine[0]!])).length, 11)
      assert.strictEqual((yield* s2.acquire(address(2), mine.slice(1))).length, 9)
      // releaseAll from a fresh instance (a restarted runner with the same address) finds the leases by scanning.
      const s2again = yield* makeStorage(o)
      yield* s2again.releaseAll(address(2))
      assert.strictEqual((yield* ownersInBucket(server.url, o.prefix)).size, 0)
      assert.deepStrictEqual(yield* s2.refresh(address(2), theirs), [])
    }))

  it.live("graceful handoff: acquire waits for the leases of a runner that unregistered, not for those of a live one", () =>
    Effect.gen(function*() {
      const o = { servers: server.url, prefix: freshPrefix("handoff"), expirationMs: 5_000 }
      const s1 = yield* makeStorage(o)
      const s2 = yield* makeStorage(o)
      yield* s1.register(runnerAt(1), true)
      yield* s2.register(runnerAt(2), true)
      const held = shards(20)
      assert.strictEqual((yield* s1.acquire(address(1), held)).length, 20)
      // Runner 1 is registered: its leases are someone else's live leases, refused at once.
      const t0 = yield* now
      assert.deepStrictEqual(yield* s2.acquire(address(2), held), [])
      assert.isBelow((yield* now) - t0, ClusterConfig.handoffWaitMs)
      // A graceful stop: unregister first, release a moment later. The acquire that started in between gets them.
      yield* s1.unregister(address(1))
      const release = Effect.sleep("200 millis").pipe(
        Effect.andThen(Effect.forEach(held, (shard) => s1.release(address(1), shard), { concurrency: "unbounded" }))
      )
      const [taken] = yield* Effect.all([s2.acquire(address(2), held), release], { concurrency: 2 })
      assert.deepStrictEqual(ids(taken), ids(held))
    }))

  it.live("machine ids are unique under concurrent registration", () =>
    Effect.gen(function*() {
      const o = { servers: server.url, prefix: freshPrefix("machineid"), expirationMs: 5_000 }
      const instances = yield* Effect.forEach([0, 1, 2, 3], () => makeStorage(o))
      const got = yield* Effect.forEach(
        Array.from({ length: 40 }, (_, i) => i),
        (i) => instances[i % instances.length]!.register(runnerAt(1000 + i), true),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(new Set(got).size, 40, `machine ids ${got.join(",")}`)
      assert.strictEqual((yield* instances[0]!.getRunners).length, 40)
    }))

  it.live("refresh with no shards is a liveness heartbeat that keeps the registration", () =>
    Effect.gen(function*() {
      const expirationMs = 1_500
      const s = yield* makeStorage({ servers: server.url, prefix: freshPrefix("heartbeat"), expirationMs })
      yield* s.register(runnerAt(7), true)
      const start = yield* now
      while ((yield* now) - start < 2 * expirationMs) {
        assert.deepStrictEqual(yield* s.refresh(address(7), []), [])
        yield* Effect.sleep("400 millis")
      }
      assert.strictEqual((yield* s.getRunners).length, 1)
      yield* Effect.sleep(Duration.millis(expirationMs + 600))
      assert.strictEqual((yield* s.getRunners).length, 0, "without heartbeats the registration expires")
    }))

  it.live("refuses to start with a lease TTL or shard count that differs from the cluster's", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix("mismatch")
      yield* makeStorage({ servers: server.url, prefix, expirationMs: 5_000 })
      const ttl = yield* Effect.flip(makeStorage({ servers: server.url, prefix, expirationMs: 3_000 }))
      assert.strictEqual(ttl._tag, "ClusterConfigMismatch")
      assert.match(ttl._tag === "ClusterConfigMismatch" ? ttl.message : "", /TTL 5000 ms, but this process needs 3000 ms/)
      const count = yield* Effect.flip(makeStorage({ servers: server.url, prefix, expirationMs: 5_000, shardsPerGroup: 16 }))
      assert.strictEqual(count._tag, "ClusterConfigMismatch")
      assert.match(count._tag === "ClusterConfigMismatch" ? count.message : "", /shardsPerGroup=16/)
    }))
})

// --- 3-node cluster, R3 buckets ----------------------------------------------------------------------------------------

describe("NatsRunnerStorage on a 3-node NATS cluster (R3 buckets)", () => {
  let cluster: NatsClusterHandle
  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 })
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  it.live("leases stay exclusive and keep working through kill -9 of the buckets' leader", () =>
    Effect.gen(function*() {
      // Longer than a NATS Raft election (4–9 s): the leases must survive the loss of one of their three replicas.
      const expirationMs = 15_000
      const o = { servers: cluster.urls, prefix: freshPrefix("r3"), expirationMs, replicas: 3 }
      const s1 = yield* makeStorage(o)
      const s2 = yield* makeStorage(o)
      const all = shards(SHARDS)
      const t0 = yield* now
      const [a, b] = yield* Effect.all([s1.acquire(address(1), all), s2.acquire(address(2), [...all].reverse())], { concurrency: 2 })
      console.log(`[R3] two runners acquiring ${SHARDS} contended shards concurrently: ${(yield* now) - t0} ms (${a.length} + ${b.length})`)
      assertExclusive(all, a, b)
      const t1 = yield* now
      assert.strictEqual((yield* s1.refresh(address(1), a)).length, a.length)
      console.log(`[R3] refresh of ${a.length} held shards: ${(yield* now) - t1} ms`)

      // kill -9 the leader of the locks bucket's Raft group.
      const leader = yield* Effect.promise(async () => {
        const nc = await connect({ servers: [...cluster.urls] })
        try {
          const jsm = await jetstreamManager(nc)
          return (await jsm.streams.info(`KV_${o.prefix}_locks`)).cluster?.leader ?? ""
        } finally {
          await nc.close()
        }
      })
      const victim = cluster.nodes.find((n) => n.name === leader)
      assert.isDefined(victim, `locks leader ${leader}`)
      victim!.kill("SIGKILL")
      const killed = yield* now

      // Both runners keep their leases (R3: the other two nodes hold them) once a new leader answers.
      const keptA = yield* eventually(s1.refresh(address(1), a), 20_000)
      const recovered = (yield* now) - killed
      const keptB = yield* eventually(s2.refresh(address(2), b), 5_000)
      console.log(`[R3] after kill -9 of leader ${leader}: refresh answered again after ${recovered} ms`)
      assert.strictEqual(keptA.length, a.length)
      assert.strictEqual(keptB.length, b.length)
      // Compare-and-swap still holds: neither can take the other's shards, and a new contention round on fresh
      // shards is still exclusive.
      // (A call may still meet the reconnecting connection — "no responders" — and fail; runners retry acquisition,
      // so the test does too, within a bound. What must hold is the answer once there is one.)
      assert.strictEqual((yield* eventually(s1.acquire(address(1), b), 10_000)).length, 0)
      assert.strictEqual((yield* eventually(s2.acquire(address(2), a), 10_000)).length, 0)
      const more = shards(100, "other")
      const [a3, b3] = yield* Effect.all([
        eventually(s1.acquire(address(1), more), 10_000),
        eventually(s2.acquire(address(2), more), 10_000)
      ], { concurrency: 2 })
      assertExclusive(more, a3, b3)
      const owners = yield* ownersInBucket(cluster.urls, o.prefix)
      assert.strictEqual(owners.size, SHARDS + 100)
    }))
})

// --- end to end: effect/cluster with two runner processes -----------------------------------------------------------

describe("effect/cluster on NatsRunnerStorage: two runner processes and a client", () => {
  let server: NatsServerHandle
  beforeAll(async () => {
    server = await startNatsServer()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it.live("kill -9 of a runner: every entity answers from the survivor within 10 s; a graceful stop hands off in ~1 s", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix("e2e")
      const [p1, p2] = yield* Effect.promise(() => freePorts(2))
      const runnerA = `127.0.0.1:${p1}`
      const runnerB = `127.0.0.1:${p2}`
      const a = yield* spawnRunner(server.url, p1!, prefix)
      yield* spawnRunner(server.url, p2!, prefix).pipe(Effect.delay("300 millis"))

      const Storage = Layer.mergeAll(NatsRunnerStorage.layer({ servers: server.url, bucketPrefix: prefix }), MessageStorage.layerNoop)
        .pipe(Layer.provide(ClusterConfig.layer()))
      const Client = NodeClusterSocket.layer({ clientOnly: true, storage: "byo", shardingConfig: ClusterConfig.clientShardingConfig })
        .pipe(Layer.provide(Storage))
      // Built in the test's scope: the client's Sharding must outlive this line.
      const clientFor = yield* WhoAmI.client.pipe(Effect.provide(yield* Layer.build(Client)))

      const entities = Array.from({ length: 40 }, (_, i) => `entity-${i}`)
      const ask = (id: string) =>
        clientFor(id).WhoAmI().pipe(Effect.timeout("2 seconds"), Effect.map((r) => r.runner), Effect.option)
      const askAll = Effect.forEach(entities, ask, { concurrency: "unbounded" })

      // Both runners up and sharing the entities.
      const spread = yield* eventually(
        Effect.flatMap(askAll, (owners) => {
          const set = new Set(owners.map((o) => Option.getOrElse(o, () => "none")))
          return set.size === 2 && set.has(runnerA) && set.has(runnerB)
            ? Effect.succeed(owners)
            : Effect.fail(`owners: ${[...set].join(", ")}`)
        }),
        30_000,
        250
      )
      const onA = spread.filter((o) => Option.isSome(o) && o.value === runnerA)
      console.log(`[e2e] ${entities.length} entities spread: ${onA.length} on ${runnerA}, ${entities.length - onA.length} on ${runnerB}`)

      // kill -9 runner A; measure until every entity answers from B.
      a.kill("SIGKILL")
      const killed = yield* now
      const failoverMs = yield* untilAllAnswerFrom(entities, ask, runnerB, 20_000)
      console.log(`[e2e] kill -9 failover: all ${entities.length} entities answer from the survivor after ${failoverMs - killed} ms`)
      assert.isBelow(failoverMs - killed, 10_000)

      // Graceful stop: bring A back, wait for the rebalance, then SIGTERM B.
      yield* spawnRunner(server.url, p1!, prefix)
      yield* eventually(
        Effect.flatMap(askAll, (owners) =>
          owners.some((o) => Option.isSome(o) && o.value === runnerA) ? Effect.void : Effect.fail("not rebalanced")),
        30_000,
        250
      )
      const b = runners.find((r) => r.port === p2 && r.child.exitCode === null)!
      b.child.kill("SIGTERM")
      const stopped = yield* now
      const gracefulMs = yield* untilAllAnswerFrom(entities, ask, runnerA, 20_000)
      console.log(`[e2e] graceful stop (SIGTERM): all entities answer from the other runner after ${gracefulMs - stopped} ms`)
      // ~1–1.5 s: the stopping runner releases its leases at once, but the library's acquisition loop pauses a
      // fixed 1 s between attempts (Sharding.js), so the new owner takes them on its next attempt.
      assert.isBelow(gracefulMs - stopped, 3_000)
    }), { timeout: 90_000 })
})

interface RunnerProcess {
  readonly port: number
  readonly child: ChildProcess
  readonly log: Array<string>
}
const runners: Array<RunnerProcess> = []

/** Starts a runner process (killed with SIGKILL when the test's scope closes, if still running). */
const spawnRunner = (natsUrl: string, port: number, prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(NODE, [RUNNER], {
        env: { ...process.env, NATS_URL: natsUrl, RUNNER_PORT: String(port), BUCKET_PREFIX: prefix },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const log: Array<string> = []
      child.stdout?.on("data", (d: Buffer) => log.push(d.toString()))
      child.stderr?.on("data", (d: Buffer) => log.push(d.toString()))
      runners.push({ port, child, log })
      return child
    }),
    (child) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  )

/** Polls the entities that have not yet answered from `runner` until all have; returns the time it happened. */
const untilAllAnswerFrom = <E>(
  entities: ReadonlyArray<string>,
  ask: (id: string) => Effect.Effect<Option.Option<string>, E>,
  runner: string,
  timeoutMs: number
) =>
  Effect.gen(function*() {
    const start = yield* now
    let pending = [...entities]
    while (pending.length > 0) {
      if ((yield* now) - start > timeoutMs) {
        return yield* Effect.die(new Error(`${pending.length} entities still not answering from ${runner}: ${pending.join(",")}\n${
          runners.map((r) => `--- runner ${r.port}\n${r.log.join("").slice(-3000)}`).join("\n")}`))
      }
      const answers = yield* Effect.forEach(pending, ask, { concurrency: "unbounded" })
      pending = pending.filter((_, i) => Option.getOrUndefined(answers[i]!) !== runner)
      if (pending.length > 0) yield* Effect.sleep("100 millis")
    }
    return yield* now
  })
