/**
 * Forks on a real cluster (3 nats-servers + 3 runner processes, `LocalCluster`): a fork created through one runner's
 * gateway, written through a second and read through a third sees exactly main at its base plus its own events; a
 * fork's expiry happens exactly once (the expiry singleton's log line, over every runner's log), also after the
 * runner running the singleton is killed.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { cleanUp, json, logOf, post, until, upAnywhere } from "./support.ts"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-clusterforks-"))
afterAll(() => cleanUp(dir))





describe("forks on a 3-runner cluster", () => {
  it("create via A, append via B, read via C; expiry exactly once after the singleton's runner is killed", async () => {
    const cluster = await upAnywhere(dir)
    const [a, b, c] = cluster.runners
    const t = "/v1/tenants/acme"
    // Main: one event in each of 16 streams (spread over the partitions, so over the runners).
    for (let i = 0; i < 16; i++) {
      const r = await post(`${a!.url}${t}/streams/s-${i}/events`, { events: [{ type: "Opened", data: { i } }] })
      assert.strictEqual(r.status, 200, JSON.stringify(r.body))
    }
    const created = await post(`${a!.url}${t}/forks`, { ttlSeconds: 600 })
    assert.strictEqual(created.status, 201, JSON.stringify(created.body))
    const forkId: string = created.body.forkId
    // Into the fork through B, for every stream: every partition, local to B or not.
    for (let i = 0; i < 16; i++) {
      const r = await until(`append to s-${i} in the fork via B`, 20_000, async () => {
        const res = await post(`${b!.url}${t}/streams/s-${i}/events?fork=${forkId}`, {
          expectedVersion: 0,
          events: [{ type: "Changed", data: { i, in: "fork" } }]
        })
        return res.status === 200 ? res : undefined
      })
      assert.strictEqual(r.body.firstVersion, 1)
    }
    // Main after the base: the fork must not see it.
    assert.strictEqual((await post(`${a!.url}${t}/streams/s-0/events`, { events: [{ type: "Late", data: {} }] })).status, 200)
    for (let i = 0; i < 16; i++) {
      const forked = await json(`${c!.url}${t}/streams/s-${i}/events?fork=${forkId}`)
      assert.strictEqual(forked.status, 200, JSON.stringify(forked.body))
      assert.deepStrictEqual(forked.body.events.map((e: any) => [e.type, e.streamVersion]), [["Opened", 0], ["Changed", 1]])
      const mainRead = await json(`${c!.url}${t}/streams/s-${i}/events`)
      assert.deepStrictEqual(
        mainRead.body.events.map((e: any) => e.type),
        i === 0 ? ["Opened", "Late"] : ["Opened"]
      )
    }
    const diff = await json(`${c!.url}${t}/forks/${forkId}/diff`)
    assert.strictEqual(diff.status, 200, JSON.stringify(diff.body))
    assert.strictEqual(diff.body.events, 16)

    // Expiry: a short-lived fork, the singleton's runner killed before it expires, exactly one expiry after.
    const short = await post(`${b!.url}${t}/forks`, { ttlSeconds: 8 })
    assert.strictEqual(short.status, 201, JSON.stringify(short.body))
    const shortId: string = short.body.forkId
    assert.strictEqual((await post(`${c!.url}${t}/streams/x/events?fork=${shortId}`, { events: [{ type: "T", data: {} }] })).status, 200)
    const singleton = cluster.runners.find((r) => logOf(dir, r.name).includes("fork expiry singleton running"))
    assert.isDefined(singleton, "one runner runs the expiry singleton")
    process.kill(singleton!.pid, "SIGKILL")
    const survivors = cluster.runners.filter((r) => r.name !== singleton!.name)
    await until("the fork to be gone", 45_000, async () => {
      const res = await json(`${survivors[0]!.url}${t}/forks/${shortId}`)
      return res.status === 404 ? true : undefined
    })
    await until("the expiry to be logged", 15_000, async () =>
      survivors.some((r) => logOf(dir, r.name).includes(shortId)) ? true : undefined)
    const expiries = cluster.runners.map((r) => logOf(dir, r.name).split("\n").filter((l) => l.includes("forks expired") && l.includes(shortId)).length)
    assert.strictEqual(expiries.reduce((x, y) => x + y, 0), 1, `expiry log lines per runner: ${expiries.join(",")}`)
    // The long-lived fork is still there, and still readable through a survivor.
    const still = await until("the long fork readable after the failover", 30_000, async () => {
      const res = await json(`${survivors[1]!.url}${t}/streams/s-3/events?fork=${forkId}`)
      return res.status === 200 ? res : undefined
    })
    assert.deepStrictEqual(still.body.events.map((e: any) => e.type), ["Opened", "Changed"])
  }, 120_000)
})
