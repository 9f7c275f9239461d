/**
 * Subscriptions, consumer groups and projections over real HTTP (a node in this process on the memory log):
 *  - SSE: catch-up, `caught-up`, live, resume with `Last-Event-ID` (exactly the remainder), filters, keepalive
 *    comments, typed 400s before the stream starts, `event: lagging` for a subscriber that falls behind;
 *  - consumer groups: create, long-poll `next`, ack, nack with retries, poison parked after N attempts, parked list
 *    and replay, status with lag;
 *  - projections: define, state and progress, one key, stop / start / reset / rebuild;
 *  - the OpenAPI document lists every endpoint (the subscription as `text/event-stream`).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { randomUUID } from "node:crypto"
import { type Client, startInProcess } from "./support.ts"
import { sleep, sse, type SseEvent } from "./subscriptionSupport.ts"

let node: { client: Client; stop: () => Promise<void> }
beforeAll(async () => {
  node = await startInProcess({
    partitions: 4,
    subscriptionKeepaliveMs: 200,
    subscriptionLagCheckMs: 20,
    subscriberLagEventsMax: 50,
    subscriptionWindowEventsMax: 64,
    subscriptionIdleWaitMs: 100,
    consumerAttemptsMax: 3,
    consumerRetryBackoffMs: 10,
    consumerRetryBackoffMsMax: 40,
    projectionCheckpointIntervalMs: 50
  })
})
afterAll(() => node.stop())

const append = (tenant: string, stream: string, type: string, data: unknown, eventId = randomUUID()) =>
  node.client.post(`/v1/tenants/${tenant}/streams/${stream}/events`, { events: [{ eventId, type, data }] }).then((r) => {
    assert.strictEqual(r.status, 200, JSON.stringify(r.body))
    return eventId
  })

const dataEvents = (events: ReadonlyArray<SseEvent>) => events.filter((e) => e.event === "message")

describe("SSE subscriptions", () => {
  it("catch-up, caught-up, live; Last-Event-ID resumes with exactly the remainder", async () => {
    const ids: Array<string> = []
    for (let i = 0; i < 30; i++) ids.push(await append("sse", `s-${i % 7}`, i % 2 === 0 ? "Even" : "Odd", { i }))
    const url = node.client.url
    const first = sse(url, "/v1/tenants/sse/subscribe")
    assert.strictEqual(await first.status, 200)
    await first.waitFor((es) => es.some((e) => e.event === "caught-up"))
    const history = dataEvents(first.events)
    assert.deepStrictEqual(new Set(history.map((e) => JSON.parse(e.data).eventId)), new Set(ids))
    assert.strictEqual(first.events.findIndex((e) => e.event === "caught-up"), 30, "caught-up right after history")
    // Each data is the event as reads return it; per-partition order; ids are position tokens.
    const recorded = history.map((e) => JSON.parse(e.data))
    for (let p = 0; p < 4; p++) {
      const seqs = recorded.filter((r) => r.partition === p).map((r) => r.seq)
      assert.deepStrictEqual(seqs, seqs.map((_, k) => k + 1))
    }
    assert.match(history[0]!.id!, /^\d+:\d+(,\d+:\d+)*$/)
    assert.hasAllKeys(recorded[0], ["eventId", "stream", "type", "data", "metadata", "timestamp", "streamVersion", "partition", "seq"])
    // Live.
    const live = await append("sse", "s-live", "Even", { live: true })
    await first.waitFor((es) => es.some((e) => e.data.includes(live)))
    first.close()

    // Resume after the 12th event: exactly the others (18 of history + the live one), each once.
    const cut = history[11]!
    const resumed = sse(url, "/v1/tenants/sse/subscribe?from=start", { "last-event-id": cut.id! })
    await resumed.waitFor((es) => es.some((e) => e.event === "caught-up"))
    const rest = dataEvents(resumed.events).map((e) => JSON.parse(e.data).eventId)
    const expected = [...history.slice(12).map((e) => JSON.parse(e.data).eventId), live]
    assert.deepStrictEqual(new Set(rest), new Set(expected))
    assert.strictEqual(rest.length, expected.length)
    resumed.close()

    // Filters: types, one stream, a stream prefix; from=now delivers only later events.
    const odd = sse(url, "/v1/tenants/sse/subscribe?types=Odd&streamPrefix=s-1")
    await odd.waitFor((es) => es.some((e) => e.event === "caught-up"))
    assert.deepStrictEqual(
      dataEvents(odd.events).map((e) => JSON.parse(e.data)).map((r) => `${r.stream}/${r.type}`),
      history.map((e) => JSON.parse(e.data)).filter((r) => r.type === "Odd" && r.stream.startsWith("s-1")).map((r) => `${r.stream}/${r.type}`)
    )
    odd.close()
    const now = sse(url, "/v1/tenants/sse/subscribe?from=now&stream=s-3")
    await now.waitFor((es) => es.length === 1)
    assert.strictEqual(now.events[0]!.event, "caught-up")
    await append("sse", "s-2", "Odd", {})
    const mine = await append("sse", "s-3", "Odd", {})
    await now.waitFor((es) => es.length === 2)
    assert.strictEqual(JSON.parse(now.events[1]!.data).eventId, mine)
    // Idle: keepalive comments.
    await sleep(500)
    assert.isAtLeast(now.comments(), 1)
    now.close()
  })

  it("bad options are a typed 400 before the stream starts", async () => {
    const bad = async (query: string, headers: Record<string, string> = {}) => {
      const res = await fetch(`${node.client.url}/v1/tenants/sse/subscribe${query}`, { headers })
      assert.strictEqual(res.status, 400)
      assert.match(res.headers.get("content-type") ?? "", /application\/json/)
      return (await res.json()) as { _tag: string; field: string }
    }
    assert.deepInclude(await bad("?from=yesterday"), { _tag: "InvalidRequest", field: "query.from" })
    assert.deepInclude(await bad("", { "last-event-id": "nope" }), { _tag: "InvalidRequest", field: "headers.last-event-id" })
    assert.deepInclude(await bad("?types=1bad"), { _tag: "InvalidRequest", field: "query.types[0]" })
    assert.deepInclude(await bad("?stream=%20x"), { _tag: "InvalidRequest", field: "query.stream" })
    const tenant = await fetch(`${node.client.url}/v1/tenants/BAD/subscribe`)
    assert.strictEqual(tenant.status, 400)
    assert.strictEqual(((await tenant.json()) as { field: string }).field, "params.tenant")
  })

  it("a live subscriber that stops reading is told it is lagging when it reads again, not dropped", async () => {
    const sub = sse(node.client.url, "/v1/tenants/lag/subscribe?from=now")
    await sub.waitFor((es) => es.some((e) => e.event === "caught-up"))
    sub.pause()
    // ~30 MB: more than the socket buffers hold, so the server sees the subscriber stop.
    const big = "x".repeat(10_000)
    for (let i = 0; i < 3_000; i += 50) {
      const r = await node.client.post(`/v1/tenants/lag/streams/s-${i % 9}/events`, {
        events: Array.from({ length: 50 }, (_, k) => ({ type: "Filler", data: { i: i + k, big } }))
      })
      assert.strictEqual(r.status, 200)
    }
    sub.resume()
    await sub.waitFor((es) => dataEvents(es).length === 3_000, 30_000)
    const lagging = sub.events.filter((e) => e.event === "lagging")
    assert.isAtLeast(lagging.length, 1, "told at least once")
    const notice = JSON.parse(lagging[0]!.data) as { lag: number; max: number; position: string }
    assert.strictEqual(notice.max, 50)
    assert.isAbove(notice.lag, 50)
    // Nothing was skipped for it.
    assert.strictEqual(new Set(dataEvents(sub.events).map((e) => JSON.parse(e.data).eventId)).size, 3_000)
    sub.close()
  })
})

describe("consumer groups over HTTP", () => {
  it("create, long-poll next, ack, nack, poison parked after N attempts, parked list and replay, status", async () => {
    const c = node.client
    for (let i = 0; i < 6; i++) await append("grp", `o-${i}`, i === 3 ? "Poison" : "Order", { i })
    const created = await c.post("/v1/tenants/grp/consumers/billing", { types: ["Order", "Poison"] })
    assert.strictEqual(created.status, 200, JSON.stringify(created.body))
    // Lag counts the partitions' events not yet behind the group (the tenant's 6, and other tenants' in them).
    assert.isAtLeast(created.body.lag.total, 6)
    assert.strictEqual((await c.post("/v1/tenants/grp/consumers/billing", { types: ["Order"] })).status, 409)
    assert.deepStrictEqual((await c.get("/v1/tenants/grp/consumers")).body, { names: ["billing"] })

    let poison = ""
    const attempts: Array<number> = []
    for (let round = 0; round < 20 && attempts.length < 3; round++) {
      const next = await c.get("/v1/tenants/grp/consumers/billing/next?max=10&waitMs=500")
      assert.strictEqual(next.status, 200, JSON.stringify(next.body))
      const good = next.body.deliveries.filter((d: any) => d.event.type !== "Poison")
      if (good.length > 0) {
        const ack = await c.post("/v1/tenants/grp/consumers/billing/ack", { ids: good.map((d: any) => d.deliveryId) })
        assert.deepStrictEqual(ack.body, { acked: good.length, unknown: [] })
      }
      for (const d of next.body.deliveries.filter((d: any) => d.event.type === "Poison")) {
        poison = d.deliveryId
        attempts.push(d.attempt)
        const nack = await c.post("/v1/tenants/grp/consumers/billing/nack", { ids: [d.deliveryId] })
        assert.strictEqual(nack.status, 200)
      }
    }
    assert.deepStrictEqual(attempts, [1, 2, 3])
    const status = await c.get("/v1/tenants/grp/consumers/billing")
    assert.strictEqual(status.body.parked, 1)
    assert.strictEqual(status.body.lag.total, 0)
    assert.strictEqual(status.body.stats.acked, 5)
    const parked = await c.get("/v1/tenants/grp/consumers/billing/parked")
    assert.strictEqual(parked.body.parked.length, 1)
    assert.strictEqual(parked.body.parked[0].deliveryId, poison)
    assert.strictEqual(parked.body.parked[0].attempts, 3)
    assert.strictEqual(parked.body.parked[0].event.type, "Poison")
    assert.deepStrictEqual((await c.post("/v1/tenants/grp/consumers/billing/parked/replay", {})).body, { replayed: 1, unknown: [] })
    const again = await c.get("/v1/tenants/grp/consumers/billing/next?waitMs=1000")
    assert.deepStrictEqual(again.body.deliveries.map((d: any) => [d.deliveryId, d.attempt]), [[poison, 1]])
    await c.post("/v1/tenants/grp/consumers/billing/ack", { ids: [again.body.deliveries[0].event.eventId] })
    assert.strictEqual((await c.get("/v1/tenants/grp/consumers/billing")).body.parked, 0)

    // A long poll is answered as soon as an event arrives.
    const t0 = performance.now()
    const [waited] = await Promise.all([
      c.get("/v1/tenants/grp/consumers/billing/next?waitMs=5000"),
      sleep(200).then(() => append("grp", "o-late", "Order", {}))
    ])
    assert.strictEqual(waited.body.deliveries.length, 1)
    assert.isBelow(performance.now() - t0, 4_000)

    // Typed errors.
    assert.deepInclude((await c.get("/v1/tenants/grp/consumers/nope")).body, { _tag: "ConsumerGroupNotFound" })
    assert.strictEqual((await c.get("/v1/tenants/grp/consumers/nope")).status, 404)
    assert.deepInclude((await c.get("/v1/tenants/grp/consumers/billing/next?max=x")).body, { field: "query.max" })
    assert.deepInclude((await c.get("/v1/tenants/grp/consumers/billing/next?max=1000000")).body, { _tag: "LimitExceeded" })
    assert.deepInclude((await c.post("/v1/tenants/grp/consumers/bad%20name", {})).body, { _tag: "InvalidRequest" })
    assert.strictEqual((await c.post("/v1/tenants/grp/consumers/billing/ack", { ids: [] })).status, 400)
  })
})

describe("projections over HTTP", () => {
  it("define, state and progress, one key, stop / start / reset / rebuild", async () => {
    const c = node.client
    for (let i = 0; i < 40; i++) await append("prj", `acct-${i % 4}`, i % 2 === 0 ? "Deposited" : "Withdrawn", { amount: i })
    const defined = await c.post("/v1/tenants/prj/projections/balance", {
      kind: "sum",
      field: "amount",
      groupBy: "stream",
      types: ["Deposited"]
    })
    assert.strictEqual(defined.status, 200, JSON.stringify(defined.body))
    const expected: Record<string, number> = {}
    for (let i = 0; i < 40; i += 2) expected[`acct-${i % 4}`] = (expected[`acct-${i % 4}`] ?? 0) + i
    const settled = async (name: string, check: (body: any) => boolean) => {
      for (let k = 0; k < 200; k++) {
        const s = await c.get(`/v1/tenants/prj/projections/${name}`)
        if (check(s.body)) return s.body
        await sleep(25)
      }
      throw new Error(`projection ${name} did not settle`)
    }
    const live = await settled("balance", (b) => b.phase === "live" && b.progress.remainingEvents === 0)
    assert.deepStrictEqual(live.state, expected)
    assert.strictEqual(live.processedEvents, 20)
    assert.strictEqual(live.progress.fraction, 1)
    assert.deepStrictEqual((await c.get("/v1/tenants/prj/projections/balance/state?key=acct-0")).body, {
      name: "balance",
      position: live.position,
      key: "acct-0",
      value: expected["acct-0"]
    })
    assert.strictEqual((await c.post("/v1/tenants/prj/projections/balance/stop", undefined)).body.status, "stopped")
    assert.strictEqual((await c.post("/v1/tenants/prj/projections/balance/start", undefined)).body.status, "running")
    const reset = await c.post("/v1/tenants/prj/projections/balance/reset", undefined)
    assert.strictEqual(reset.body.status, "stopped")
    assert.deepStrictEqual((await c.get("/v1/tenants/prj/projections/balance/state")).body.value, {})
    assert.strictEqual((await c.post("/v1/tenants/prj/projections/balance/rebuild", undefined)).status, 200)
    const rebuilt = await settled("balance", (b) => b.phase === "live" && b.progress.remainingEvents === 0)
    assert.deepStrictEqual(rebuilt.state, expected)
    // Count by type, last by data field; a conflicting definition; unknown; invalid.
    await c.post("/v1/tenants/prj/projections/types", { kind: "count", groupBy: "type" })
    assert.deepStrictEqual((await settled("types", (b) => b.phase === "live")).state, { Deposited: 20, Withdrawn: 20 })
    assert.strictEqual((await c.post("/v1/tenants/prj/projections/types", { kind: "count", groupBy: "stream" })).status, 409)
    assert.strictEqual((await c.get("/v1/tenants/prj/projections/nope")).status, 404)
    assert.deepInclude((await c.post("/v1/tenants/prj/projections/x", { kind: "median", groupBy: "type" })).body, { _tag: "InvalidRequest" })
    assert.deepInclude((await c.post("/v1/tenants/prj/projections/x", { kind: "sum", groupBy: "type" })).body, { _tag: "InvalidRequest", field: "field" })
    assert.deepStrictEqual((await c.get("/v1/tenants/prj/projections")).body, { names: ["balance", "types"] })
  })
})

describe("OpenAPI", () => {
  it("lists the subscription (text/event-stream), consumer and projection endpoints", async () => {
    const doc = (await node.client.get("/openapi.json")).body
    const paths = Object.keys(doc.paths)
    for (
      const p of [
        "/v1/tenants/{tenant}/subscribe",
        "/v1/tenants/{tenant}/consumers/{name}",
        "/v1/tenants/{tenant}/consumers/{name}/next",
        "/v1/tenants/{tenant}/consumers/{name}/ack",
        "/v1/tenants/{tenant}/consumers/{name}/nack",
        "/v1/tenants/{tenant}/consumers/{name}/parked",
        "/v1/tenants/{tenant}/consumers/{name}/parked/replay",
        "/v1/tenants/{tenant}/projections/{name}",
        "/v1/tenants/{tenant}/projections/{name}/state",
        "/v1/tenants/{tenant}/projections/{name}/rebuild"
      ]
    ) assert.include(paths, p)
    assert.hasAnyKeys(doc.paths["/v1/tenants/{tenant}/subscribe"].get.responses["200"].content, ["text/event-stream"])
  })
})
