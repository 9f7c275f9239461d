/**
 * A consumer group on a real cluster (3 nats-servers + 3 runner processes, `LocalCluster`): created through runner A,
 * consumed by two consumers that fetch concurrently through runners B and C and ack what they get. The group is
 * served by one runner (its `ConsumerGroup` entity's), so no event is ever held by both consumers at once before its
 * ack deadline; every event is delivered; an event whose ack was confirmed is never delivered again. The runner
 * serving the group is killed (SIGKILL) half-way, and the group continues through the survivors with nothing lost;
 * then the runner that took it over is stopped (SIGTERM), and the group continues on the last one.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { cleanUp, json, logOf, pause, post, upAnywhere } from "./support.ts"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-clusterconsumers-"))
afterAll(() => cleanUp(dir))

/** Short enough that expiries after the failover fit in the test, long enough that a live consumer always acks in time. */
const ackTimeoutMs = 8_000




describe("consumer groups on a 3-runner cluster", () => {
  it("one runner serves a group: consumers via two gateways never hold the same event; its runner killed, then stopped: nothing lost", async () => {
    const cluster = await upAnywhere(dir, { runnerEnv: { CHRONOS_CONSUMER_ACK_TIMEOUT_MS: String(ackTimeoutMs), CHRONOS_CONSUMER_RETRY_BACKOFF_MS: "200" } })
    const [a, b, c] = cluster.runners
    const t = "/v1/tenants/acme"
    const group = `${t}/consumers/workers`
    const all: Array<string> = []
    /** Appends `n` events (10 per request, over 20 streams) through `url`, retrying while the cluster fails over. */
    const seed = async (url: () => string, n: number, from: number) => {
      for (let i = from; i < from + n; i += 10) {
        const events = Array.from({ length: 10 }, (_, k) => ({ eventId: randomUUID(), type: "Job", data: { i: i + k } }))
        for (let attempt = 0;; attempt++) {
          const r = await post(`${url()}${t}/streams/s-${(i / 10) % 20}/events`, { events }).catch(() => undefined)
          if (r?.status === 200) break
          if (attempt > 100) throw new Error(`append ${i} failed: ${JSON.stringify(r?.body)}`)
          await pause(200)
        }
        all.push(...events.map((e) => e.eventId))
      }
    }
    await seed(() => a!.url, 200, 0)
    const created = await post(`${a!.url}${group}`, {})
    assert.strictEqual(created.status, 200, JSON.stringify(created.body))
    assert.strictEqual(created.body.lag.total, 200)

    // The runner serving the group: the one whose log says so (exactly one).
    const servingLine = "consumer group acme/workers active on"
    const servers = cluster.runners.filter((r) => logOf(dir, r.name).includes(servingLine))
    assert.strictEqual(servers.length, 1, "one runner serves the group")
    const owner = servers[0]!
    assert.include(logOf(dir, owner.name), `${servingLine} ${owner.address}`)
    const survivors = cluster.runners.filter((r) => r.name !== owner.name)
    // Every operation answers through another runner's gateway (the entity's replies cross the network).
    const away = survivors[0]!.url
    assert.deepStrictEqual((await json(`${away}${group}/parked`)).body, { parked: [] })
    assert.deepStrictEqual((await post(`${away}${group}/parked/replay`, {})).body, { replayed: 0, unknown: [] })
    assert.deepStrictEqual((await post(`${away}${group}/nack`, { ids: ["99:99"] })).body, { retrying: 0, parked: 0, unknown: ["99:99"] })
    assert.strictEqual((await json(`${away}${group}`)).body.lag.total, 200)
    assert.strictEqual((await json(`${away}${t}/consumers/nope`)).status, 404)
    /** Runners stopped by the test: consumers use the others' gateways. */
    const dead = new Set<string>()

    // --- two consumers ----------------------------------------------------------------------------------------------
    /** Event id → who holds it and when they asked for it (its ack deadline is at most `ackTimeoutMs` after that). */
    const held = new Map<string, { consumer: string; askedAt: number }>()
    const confirmedAcks = new Set<string>()
    /**
     * Acked, or answered `unknown` by an ack: an ack whose answer was lost in the kill may have landed, and then its
     * retry finds the deliveries done. Whether everything was really acknowledged is read from the group at the end.
     */
    const settled = new Set<string>()
    const deliveredTimes = new Map<string, number>()
    const violations: Array<string> = []
    let stop = false
    const consume = async (name: string, gateways: Array<{ url: string; name: string }>) => {
      let g = 0
      const gateway = () => {
        // A consumer of a stopped runner's gateway moves to a live one.
        while (dead.has(gateways[g % gateways.length]!.name)) g++
        return gateways[g % gateways.length]!.url
      }
      while (!stop) {
        const askedAt = Date.now()
        const next = await json(`${gateway()}${group}/next?max=5&waitMs=1000`).catch(() => undefined)
        if (next?.status !== 200) {
          g++
          await pause(100)
          continue
        }
        const deliveries: Array<any> = next.body.deliveries
        for (const d of deliveries) {
          const id: string = d.event.eventId
          const other = held.get(id)
          if (other !== undefined && other.consumer !== name && Date.now() < other.askedAt + ackTimeoutMs) {
            violations.push(`${id} handed to ${name} while ${other.consumer} held it (asked ${Date.now() - other.askedAt} ms ago)`)
          }
          if (confirmedAcks.has(id)) violations.push(`${id} delivered to ${name} again after its ack was confirmed`)
          held.set(id, { consumer: name, askedAt })
          deliveredTimes.set(id, (deliveredTimes.get(id) ?? 0) + 1)
        }
        if (deliveries.length === 0) continue
        // "Work", then ack until the ack is answered (through any live gateway while the group fails over).
        await pause(20)
        const ids = deliveries.map((d) => d.deliveryId)
        for (;;) {
          const ack = await post(`${gateway()}${group}/ack`, { ids }).catch(() => undefined)
          if (ack?.status === 200) {
            const unknown = new Set<string>(ack.body.unknown)
            for (const d of deliveries) {
              const id: string = d.event.eventId
              if (!unknown.has(d.deliveryId)) confirmedAcks.add(id)
              settled.add(id)
              if (held.get(id)?.consumer === name) held.delete(id)
            }
            break
          }
          g++
          await pause(100)
        }
      }
    }
    const consumers = Promise.all([
      consume("consumer-1", [b!, c!, a!]),
      consume("consumer-2", [c!, b!, a!])
    ])
    const waitFor = async (what: string, ms: number, done: () => boolean) => {
      const deadline = Date.now() + ms
      while (!done()) {
        if (Date.now() > deadline || violations.length > 0) {
          stop = true
          await consumers
          throw new Error(`stopped waiting for ${what} (${confirmedAcks.size} acked); violations: ${violations.join("; ")}`)
        }
        await pause(50)
      }
    }
    const redelivered = () => [...deliveredTimes.values()].filter((n) => n > 1).length
    let last = survivors[0]!
    try {
      await waitFor("half of the events acked", 20_000, () => confirmedAcks.size >= 100)
      assert.isBelow(confirmedAcks.size, all.length, "the owner is killed mid-way")
      process.kill(owner.pid, "SIGKILL")
      dead.add(owner.name)
      const killedAt = Date.now()
      // More events while the group fails over, through a survivor.
      await seed(() => survivors[0]!.url, 100, 200)
      await waitFor("every event settled after the failover", 40_000, () => all.every((id) => settled.has(id)))
      console.log(
        `consumer group failover (SIGKILL): all ${all.length} events settled ${Date.now() - killedAt} ms after the kill; ` +
          `${redelivered()} redelivered`
      )
      // Served by exactly one survivor after the kill; stopped gracefully, the group moves to the last runner.
      const taken = survivors.filter((r) => logOf(dir, r.name).includes(servingLine))
      assert.strictEqual(taken.length, 1, "one survivor took the group over")
      last = survivors.find((r) => r.name !== taken[0]!.name)!
      const redeliveredBefore = redelivered()
      process.kill(taken[0]!.pid, "SIGTERM")
      dead.add(taken[0]!.name)
      const stoppedAt = Date.now()
      await seed(() => last.url, 50, 300)
      await waitFor("every event settled after the handoff", 30_000, () => all.every((id) => settled.has(id)))
      console.log(
        `consumer group handoff (SIGTERM): all ${all.length} events settled ${Date.now() - stoppedAt} ms after the stop; ` +
          `${redelivered() - redeliveredBefore} redelivered`
      )
    } finally {
      stop = true
      await consumers
    }
    assert.deepStrictEqual(violations, [])
    assert.include(logOf(dir, last.name), servingLine)
    // Nothing lost: every event was delivered, and the group has acknowledged everything (its checkpoint is at the
    // partitions' heads, nothing pending, nothing parked).
    assert.deepStrictEqual(all.filter((id) => !deliveredTimes.has(id)), [])
    let status = await json(`${last.url}${group}`)
    for (let round = 0; round < 100 && (status.status !== 200 || status.body.lag.total !== 0); round++) {
      await pause(100)
      status = await json(`${last.url}${group}`)
    }
    assert.strictEqual(status.status, 200, JSON.stringify(status.body))
    assert.strictEqual(status.body.lag.total, 0)
    assert.deepStrictEqual(status.body.pending, { ready: 0, inFlight: 0, retrying: 0, replaying: 0 })
    assert.strictEqual(status.body.parked, 0)
    console.log(`acks answered unknown (their first answer lost): ${[...settled].filter((id) => !confirmedAcks.has(id)).length}`)
  }, 120_000)
})
