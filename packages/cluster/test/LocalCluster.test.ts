/**
 * The local-cluster tooling against real processes (`LocalCluster`, what `chronos cluster up|down|status` runs):
 * 3 nats-servers + 3 runner processes started detached, `cluster.json` as tools read it, every runner's gateway
 * serving every partition (remote ones through the entity client), `GET /v1/partitions` naming the same owner on
 * every runner, replica health from JetStream in `status`, a killed runner seen and restarted, `down`, and `up` on
 * the same directory bringing the cluster back with its events. Also the runner's command line (`RunnerArgs`).
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ChronosClient } from "@chronos/client"
import * as LocalCluster from "../src/LocalCluster.ts"
import * as RunnerArgs from "../src/RunnerArgs.ts"
import { json, upAnywhere } from "./support.ts"

const run = <A>(effect: Effect.Effect<A, LocalCluster.LocalClusterError>): Promise<A> => Effect.runPromise(effect)

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-localcluster-"))
afterAll(async () => {
  await run(LocalCluster.down({ dir })).catch(() => undefined)
  fs.rmSync(dir, { recursive: true, force: true })
})



describe("RunnerArgs", () => {
  it("parses what toArgs writes, and refuses what it cannot run", () => {
    const options = {
      name: "r1",
      natsUrls: ["nats://a:1", "nats://b:2"],
      replicas: 3,
      runnerHost: "10.0.0.5",
      runnerPort: 3950,
      runnerListenHost: "0.0.0.0",
      bucketPrefix: "p",
      logLevel: "Debug" as const,
      config: { httpHost: "0.0.0.0", httpPort: 3900, partitions: 16 }
    }
    const parsed = RunnerArgs.parseRunnerArgs(RunnerArgs.toArgs(options))
    assert.deepStrictEqual(parsed, { _tag: "Ok", options })
    assert.strictEqual(RunnerArgs.parseRunnerArgs(["--nats", "nats://a:1"])._tag, "Invalid") // no runner port
    assert.strictEqual(RunnerArgs.parseRunnerArgs(["--runner-port", "70000", "--nats", "x"])._tag, "Invalid")
    assert.strictEqual(RunnerArgs.parseRunnerArgs(["--runner-port", "1", "--nats", "x", "--bogus", "1"])._tag, "Invalid")
    assert.strictEqual(RunnerArgs.parseRunnerArgs(["--help"])._tag, "Help")
  })
})

describe("LocalCluster (3 nats-servers + 3 runner processes)", () => {
  it("up, any runner serves every partition, status with owners and replicas, a killed runner, down, up again", async () => {
    const t0 = performance.now()
    const cluster = await upAnywhere(dir)
    console.log(`[cluster] up in ${((performance.now() - t0) / 1000).toFixed(1)} s\n${LocalCluster.formatUp(cluster)}`)

    // cluster.json: what tools and fault tests read to find a process.
    const file = JSON.parse(fs.readFileSync(path.join(dir, "cluster.json"), "utf8"))
    assert.deepStrictEqual(file.nats.map((n: any) => n.name), ["n1", "n2", "n3"])
    assert.deepStrictEqual(file.runners.map((r: any) => r.name), ["r1", "r2", "r3"])
    for (const p of [...file.nats, ...file.runners]) assert.isTrue(Number.isInteger(p.pid) && p.pid > 0)
    for (const n of file.nats) assert.isTrue(Number.isInteger(n.clientPort))
    for (const r of file.runners) assert.isTrue(Number.isInteger(r.httpPort))

    // Every runner names the same runner address as the owner of each partition.
    const addresses = cluster.runners.map((r) => r.address)
    const views = await Promise.all(cluster.runners.map((r) => json(`${r.url}/v1/partitions`)))
    for (const v of views) {
      assert.strictEqual(v.status, 200)
      assert.deepStrictEqual(v.body.partitions.map((p: any) => p.owner), views[0]!.body.partitions.map((p: any) => p.owner))
      for (const p of v.body.partitions) assert.include(addresses, p.owner)
    }

    // Append to a stream of every partition through r1; read each back through r2 and r3.
    const [r1, r2, r3] = cluster.runners
    const streams = new Map<number, string>()
    for (let i = 0; streams.size < 8 && i < 500; i++) {
      const res = await json(`${r1!.url}/v1/tenants/t/streams/s${i}/events`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ events: [{ type: "Created", data: { i } }] })
      })
      assert.strictEqual(res.status, 200)
      streams.set(res.body.positions[0].partition, `s${i}`)
    }
    for (const [partition, stream] of streams) {
      for (const r of [r2!, r3!]) {
        const read = await json(`${r.url}/v1/tenants/t/streams/${stream}/events`)
        assert.strictEqual(read.status, 200)
        assert.strictEqual(read.body.events.length, 1)
        assert.strictEqual(read.body.events[0].partition, partition)
      }
    }

    // Each gateway names its runner as /v1/partitions names owners; an owner-aware SDK client routes every append to
    // the owner. Its default gateway is unreachable here, so an append not routed to a live gateway would fail.
    for (const r of cluster.runners) assert.strictEqual((await json(`${r.url}/health`)).body.runner, r.address)
    const owned = ManagedRuntime.make(ChronosClient.layerHttp({
      url: "http://127.0.0.1:9",
      gateways: cluster.runners.map((r) => r.url),
      retriesMax: 20,
      retryDelayMaxMs: 500
    }))
    const appendOwned = (stream: string) =>
      owned.runPromise(Effect.gen(function*() {
        return yield* (yield* ChronosClient).append("t", stream, { events: [{ type: "Routed", data: {} }] })
      }))
    for (const [partition, stream] of streams) {
      const result = await appendOwned(`${stream}-owned`)
      assert.isNumber(result.positions[0]!.seq, `partition ${partition}`)
    }

    // status: processes, owners, and each partition stream's replicas (R3: one leader, all current).
    const status = await run(LocalCluster.status({ dir }))
    assert.isTrue(status.nats.every((n) => n.running && n.healthy))
    assert.isTrue(status.runners.every((r) => r.running && r.healthy))
    assert.strictEqual(status.partitions.length, 8)
    for (const p of status.partitions) {
      assert.include(addresses, p.owner)
      assert.strictEqual(p.replicas?.length, 3, `replicas of partition ${p.partition}`)
      assert.strictEqual(p.replicas?.filter((r) => r.leader).length, 1)
      assert.isTrue(p.replicas?.every((r) => r.current && !r.offline))
    }
    console.log(LocalCluster.formatStatus(status))

    // The cold tier of a cluster is NATS (Object Store segments, KV manifests, R3 like the log): each runner seals
    // the partitions it owns; whichever runner owns a partition later loads its sealed range from the buckets
    // (checked below, after a runner is killed and after the whole cluster restarts).
    const sealed = new Map<number, number>()
    for (const r of cluster.runners) {
      const res = await json(`${r.url}/v1/admin/seal`, { method: "POST" })
      assert.strictEqual(res.status, 200, JSON.stringify(res.body))
      for (const p of res.body.partitions) {
        if (p.sealedThrough > 0) sealed.set(p.partition, p.sealedThrough)
        for (const seg of p.segments) assert.notInclude(seg.location, dir, "a cluster segment lives in NATS, not on disk")
      }
    }
    assert.deepStrictEqual([...sealed.keys()].sort((a, b) => a - b), [...streams.keys()].sort((a, b) => a - b))

    // A second `up` on a running cluster is refused; a killed runner shows as not running and restarts.
    const again = await Effect.runPromise(Effect.result(LocalCluster.up({ dir })))
    assert.isTrue(again._tag === "Failure" && again.failure.message.includes("still running"))
    process.kill(r3!.pid, "SIGKILL")
    for (let i = 0; i < 100 && (await run(LocalCluster.status({ dir }))).runners[2]!.running; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    assert.isFalse((await run(LocalCluster.status({ dir }))).runners[2]!.running)
    await run(LocalCluster.restartRunner({ dir, name: "r3" }))
    assert.isTrue((await run(LocalCluster.status({ dir }))).runners[2]!.healthy)
    for (const [, stream] of streams) {
      const read = await json(`${r3!.url}/v1/tenants/t/streams/${stream}/events`)
      assert.strictEqual(read.status, 200, JSON.stringify(read.body))
      assert.strictEqual(read.body.events.length, 1)
    }
    // The owner-aware client follows partitions that moved with r3's death and return (its table was stale).
    for (const [, stream] of streams) await appendOwned(`${stream}-owned`)
    await owned.dispose()

    // down stops everything; up on the same directory brings the events back (JetStream keeps them on disk).
    const stopped = await run(LocalCluster.down({ dir }))
    assert.strictEqual(stopped.length, 6)
    assert.isTrue(stopped.every((p) => p.result === "stopped"), JSON.stringify(stopped))
    const down = await run(LocalCluster.status({ dir }))
    assert.isTrue([...down.nats, ...down.runners].every((p) => !p.running))
    const back = await upAnywhere(dir)
    for (const [, stream] of streams) {
      const read = await json(`${back.runners[1]!.url}/v1/tenants/t/streams/${stream}/events`)
      assert.strictEqual(read.body.events.length, 1)
    }
    await run(LocalCluster.down({ dir }))
  }, 240_000)
})
