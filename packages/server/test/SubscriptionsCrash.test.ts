/**
 * Subscriptions, consumer groups and projections across a crash of the node (a child process on the file log,
 * killed with SIGKILL and restarted on the same data directory):
 *  - an SSE subscriber started mid-load, while writers run and the node is killed and restarted, resumes with
 *    `Last-Event-ID` and ends up with every event exactly once, in per-partition order (gapless sequences);
 *  - projections killed mid-run resume from their stored state + checkpoint (written together) and end equal to a
 *    fresh fold of the same events: nothing applied twice, nothing skipped;
 *  - a consumer group's acknowledged position survives the crash.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import type { ChildProcess } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import * as http from "node:http"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { exited, freePort, request, startNode } from "./support.ts"
import { retrying, sleep, sse, type SseConnection, type SseEvent } from "./subscriptionSupport.ts"

const partitions = 8
const dirs: Array<string> = []
const children: Array<ChildProcess> = []
afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const nodeArgs = (port: number, dataDir: string) =>
  ["--port", String(port), "--data-dir", dataDir, "--log", "file", "--partitions", String(partitions)]

/** Writers appending 1–3 events per request to their own streams; a failed request is re-sent with the same ids. */
const startWriters = (agent: http.Agent, port: number, tenant: string, count: number) => {
  const acked: Array<string> = []
  let stopped = false
  const writer = async (w: number) => {
    for (let i = 0; !stopped; i++) {
      const events = Array.from({ length: 1 + (i % 3) }, (_, k) => ({
        eventId: randomUUID(),
        type: k === 0 ? "Deposited" : "Withdrawn",
        data: { amount: (i + k) % 11, region: ["eu", "us", "apac"][(w + i) % 3] }
      }))
      await retrying(async () => {
        const r = await request(agent, port, "POST", `/v1/tenants/${tenant}/streams/w${w}-s${i % 5}/events`, { events })
        if (r.status !== 200) throw new Error(`append ${r.status} ${JSON.stringify(r.body)}`)
      })
      for (const e of events) acked.push(e.eventId)
    }
  }
  const running = Promise.all(Array.from({ length: count }, (_, w) => writer(w)))
  return {
    acked,
    stop: async () => {
      stopped = true
      await running
    }
  }
}

/** An SSE subscriber that reconnects with `Last-Event-ID` whenever its connection ends, until `stop`. */
const resumingSubscriber = (port: number, p: string) => {
  const received: Array<SseEvent> = []
  let lastId: string | undefined
  let stopped = false
  let current: SseConnection | undefined
  let connections = 0
  const loop = (async () => {
    while (!stopped) {
      const conn = sse(`http://127.0.0.1:${port}`, p, lastId === undefined ? {} : { "last-event-id": lastId })
      current = conn
      const status = await conn.status
      if (status === 200) connections++
      let seen = 0
      const drain = () => {
        for (; seen < conn.events.length; seen++) {
          const e = conn.events[seen]!
          received.push(e)
          if (e.id !== undefined) lastId = e.id
        }
      }
      const timer = setInterval(drain, 5)
      await conn.ended
      clearInterval(timer)
      drain()
      if (!stopped) await sleep(50)
    }
  })()
  return {
    received,
    connections: () => connections,
    stop: async () => {
      stopped = true
      current?.close()
      await loop
    }
  }
}

describe("subscriptions across a crash (kill -9, file log)", () => {
  it("a subscriber started mid-load, projections mid-run and a group all come through a kill -9 and restart", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "chronos-sub-crash-"))
    dirs.push(dataDir)
    const port = await freePort()
    // Small pages and frequent checkpoints: many (state, position) writes for the kill to land between.
    const env = {
      CHRONOS_SUBSCRIPTION_PAGE_EVENTS_MAX: "16",
      CHRONOS_PROJECTION_CHECKPOINT_EVERY_EVENTS: "37",
      CHRONOS_PROJECTION_CHECKPOINT_INTERVAL_MS: "10",
      CHRONOS_SUBSCRIPTION_IDLE_WAIT_MS: "100"
    }
    let node = await startNode(nodeArgs(port, dataDir), env)
    children.push(node.child)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
    const call = (method: string, p: string, body?: unknown) => request(agent, port, method, p, body)
    // History: 6 000 events.
    for (let i = 0; i < 120; i++) {
      const r = await call("POST", `/v1/tenants/crash/streams/acct-${i % 13}/events`, {
        events: Array.from({ length: 50 }, (_, k) => ({
          type: k % 3 === 0 ? "Withdrawn" : "Deposited",
          data: { amount: (i * 50 + k) % 17, region: ["eu", "us", "apac"][k % 3] }
        }))
      })
      assert.strictEqual(r.status, 200)
    }
    // A consumer group acknowledges the first 100 events before the crash.
    assert.strictEqual((await call("POST", "/v1/tenants/crash/consumers/audit", {})).status, 200)
    const firstBatch = await call("GET", "/v1/tenants/crash/consumers/audit/next?max=100&waitMs=2000")
    const ackedIds = firstBatch.body.deliveries.map((d: any) => d.deliveryId) as Array<string>
    assert.strictEqual(ackedIds.length, 100)
    await call("POST", "/v1/tenants/crash/consumers/audit/ack", { ids: ackedIds })

    // Load: writers run throughout (re-sending with the same ids while the node is down).
    const writers = startWriters(agent, port, "crash", 4)
    const definitions = {
      "count-by-stream": { kind: "count", groupBy: "stream" },
      "sum-by-type": { kind: "sum", field: "amount", groupBy: "type" },
      "last-by-region": { kind: "last", field: "amount", groupBy: { dataField: "region" } }
    }
    for (const [name, def] of Object.entries(definitions)) {
      assert.strictEqual((await call("POST", `/v1/tenants/crash/projections/${name}`, def)).status, 200)
    }
    // The subscriber starts mid-load.
    await sleep(300)
    const subscriber = resumingSubscriber(port, "/v1/tenants/crash/subscribe")
    // Kill while the projections are mid-way (or, if they were faster, while they fold the writers' events).
    let fraction = 0
    for (let k = 0; k < 400; k++) {
      fraction = (await call("GET", "/v1/tenants/crash/projections/count-by-stream")).body.progress.fraction
      if (fraction > 0.2 && subscriber.received.length > 100) break
      await sleep(5)
    }
    node.child.kill("SIGKILL")
    await exited(node.child)
    node = await startNode(nodeArgs(port, dataDir), env)
    children.push(node.child)
    await sleep(1_000)
    await writers.stop()
    const total = (await call("GET", "/v1/partitions")).body.partitions.reduce((n: number, s: any) => n + s.watermark, 0)

    // 1. The subscriber: everything the store holds, each event once, per-partition order, gapless.
    const events = () => subscriber.received.filter((e) => e.event === "message").map((e) => JSON.parse(e.data))
    for (let k = 0; k < 600 && events().length < total; k++) await sleep(50)
    await subscriber.stop()
    const got = events()
    assert.isAtLeast(subscriber.connections(), 2, "it reconnected after the crash")
    assert.isAbove(writers.acked.length, 50)
    const ids = got.map((e) => e.eventId as string)
    assert.strictEqual(new Set(ids).size, ids.length, "no event delivered twice")
    const seen = new Set(ids)
    assert.deepStrictEqual(writers.acked.filter((id) => !seen.has(id)), [], "every acknowledged event delivered")
    assert.strictEqual(got.length, total, "every stored event delivered (acknowledged or not)")
    for (let p = 0; p < partitions; p++) {
      const seqs = got.filter((e) => e.partition === p).map((e) => e.seq as number)
      assert.deepStrictEqual(seqs, seqs.map((_, i) => i + 1), `partition ${p} in order, gapless`)
    }

    // 2. The projections equal a fresh fold of the same events: the same definitions, defined now.
    const settled = async (name: string) => {
      for (let k = 0; k < 600; k++) {
        const s = (await call("GET", `/v1/tenants/crash/projections/${name}`)).body
        if (s.phase === "live" && s.progress.remainingEvents === 0) return s
        await sleep(25)
      }
      throw new Error(`projection ${name} did not catch up`)
    }
    for (const [name, def] of Object.entries(definitions)) {
      assert.strictEqual((await call("POST", `/v1/tenants/crash/projections/fresh-${name}`, def)).status, 200)
    }
    for (const name of Object.keys(definitions)) {
      const resumed = await settled(name)
      const fresh = await settled(`fresh-${name}`)
      assert.deepStrictEqual(resumed.state, fresh.state, `${name} (killed at ${fraction})`)
      assert.strictEqual(resumed.processedEvents, fresh.processedEvents)
    }
    const counts = (await settled("count-by-stream")).state as Record<string, number>
    assert.strictEqual(Object.values(counts).reduce((n, c) => n + c, 0), total, "every event counted once")

    // 3. The group: its 100 acknowledged events are not delivered again.
    const status = (await call("GET", "/v1/tenants/crash/consumers/audit")).body
    assert.strictEqual(status.stats.acked, 100)
    const again = await call("GET", "/v1/tenants/crash/consumers/audit/next?max=1000&waitMs=1000")
    assert.isAbove(again.body.deliveries.length, 0)
    const acked = new Set(ackedIds)
    assert.isFalse(again.body.deliveries.some((d: any) => acked.has(d.deliveryId)))

    agent.destroy()
    node.child.kill("SIGTERM")
    await exited(node.child)
  })
})
