/**
 * Forks over real HTTP (a node in this process, memory log): the forks group, `?fork=` on every stream and query
 * endpoint (with and without the direct path), typed 404s for unknown and expired forks, merge reports and the
 * 409 of a conflicting merge — and the parent unchanged, read for read, by everything done in a fork.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Client, startInProcess } from "./support.ts"

const limits = { partitions: 4, readEventsDefault: 100, readEventsMax: 500, forkExpiryIntervalMs: 50 }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const request = async (api: Client, method: string, path: string, body?: unknown) => {
  const res = await fetch(api.url + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, body: text === "" ? undefined : JSON.parse(text) }
}

describe.each([true, false])("Forks over HTTP (direct path: %s)", (directPath) => {
  let api: Client
  let stop: () => Promise<void>
  const tenant = `forks-${directPath ? "d" : "h"}`
  const streams = (stream: string, fork?: string) =>
    `/v1/tenants/${tenant}/streams/${stream}/events${fork === undefined ? "" : `?fork=${fork}`}`

  beforeAll(async () => {
    const node = await startInProcess(limits, { directPath })
    api = node.client
    stop = node.stop
  })
  afterAll(() => stop())

  /** Everything a client can read of the tenant's main history. */
  const mainView = async () => ({
    query: (await api.get(`/v1/tenants/${tenant}/events?limit=500`)).body,
    partitions: await Promise.all([0, 1, 2, 3].map(async (p) =>
      (await api.get(`/v1/tenants/${tenant}/partitions/${p}/events?limit=500`)).body
    )),
    cart: (await api.get(streams("cart-1"))).body,
    state: (await api.get(`/v1/tenants/${tenant}/streams/cart-1/state?reducer=count`)).body
  })

  it("create, read and write through ?fork=, diff, merge; the parent is unchanged until the merge", async () => {
    assert.strictEqual((await api.post(streams("cart-1"), { events: [{ type: "Added", data: { sku: "a" } }] })).status, 200)
    await api.post(streams("cart-2"), { events: [{ type: "Added", data: { sku: "b" } }] })

    const created = await api.post(`/v1/tenants/${tenant}/forks`, { ttlSeconds: 600, labels: { agent: "planner" } })
    assert.strictEqual(created.status, 201)
    const fork = created.body.forkId as string
    assert.match(fork, /^f[0-9a-f]{16}$/)
    assert.match(created.body.base, /^0:\d+,1:\d+,2:\d+,3:\d+$/)
    assert.isString(created.body.expiresAt)
    const before = await mainView()

    const appended = await api.post(streams("cart-1", fork), {
      expectedVersion: 0,
      events: [{ type: "Added", data: { sku: "c" } }, { type: "Removed", data: { sku: "a" } }]
    })
    assert.strictEqual(appended.status, 200)
    assert.deepStrictEqual([appended.body.firstVersion, appended.body.lastVersion], [1, 2])
    const p = appended.body.positions[0].partition
    const base = Number(created.body.base.split(",")[p].split(":")[1])
    assert.deepStrictEqual(appended.body.positions.map((x: any) => x.seq), [base + 1, base + 2])

    const read = await api.get(streams("cart-1", fork))
    assert.deepStrictEqual(read.body.events.map((e: any) => [e.type, e.streamVersion]), [["Added", 0], ["Added", 1], ["Removed", 2]])
    const backward = await api.get(`${streams("cart-1", fork)}&direction=backward&limit=2`)
    assert.deepStrictEqual(backward.body.events.map((e: any) => e.streamVersion), [2, 1])
    const state = await api.get(`/v1/tenants/${tenant}/streams/cart-1/state?reducer=count&fork=${fork}`)
    assert.deepStrictEqual([state.status, state.body.version, state.body.state], [200, 2, 3])
    const query = await api.get(`/v1/tenants/${tenant}/events?types=Removed&fork=${fork}`)
    assert.deepStrictEqual(query.body.events.map((e: any) => e.stream), ["cart-1"])
    const partition = await api.get(`/v1/tenants/${tenant}/partitions/${p}/events?fork=${fork}&fromSeq=${base + 1}`)
    assert.deepStrictEqual(partition.body.events.map((e: any) => e.type), ["Added", "Removed"])
    const wrong = await api.post(streams("cart-1", fork), { expectedVersion: 0, events: [{ type: "X", data: 1 }] })
    assert.deepStrictEqual([wrong.status, wrong.body._tag, wrong.body.actual], [409, "WrongExpectedVersion", 2])

    assert.deepStrictEqual(await mainView(), before, "nothing done in the fork shows in the parent")

    const listed = await api.get(`/v1/tenants/${tenant}/forks`)
    assert.deepStrictEqual(listed.body.forks.map((f: any) => f.forkId), [fork])
    assert.deepStrictEqual((await api.get(`/v1/tenants/${tenant}/forks/${fork}`)).body.labels, { agent: "planner" })
    const diff = await api.get(`/v1/tenants/${tenant}/forks/${fork}/diff`)
    assert.deepStrictEqual(diff.body.streams.map((s: any) => [s.stream, s.baseVersion, s.events.length]), [["cart-1", 0, 2]])

    const dry = await api.post(`/v1/tenants/${tenant}/forks/${fork}/merge`, { dryRun: true })
    assert.deepStrictEqual([dry.status, dry.body.status, dry.body.streams[0].status], [200, "mergeable", "mergeable"])
    assert.deepStrictEqual(await mainView(), before, "a dry run writes nothing")
    const merged = await api.post(`/v1/tenants/${tenant}/forks/${fork}/merge`, {})
    assert.deepStrictEqual([merged.status, merged.body.status], [200, "merged"])
    assert.deepStrictEqual(merged.body.streams.map((s: any) => [s.stream, s.appended, s.firstVersion, s.lastVersion]), [["cart-1", 2, 1, 2]])
    const main = await api.get(streams("cart-1"))
    assert.deepStrictEqual(main.body.events.map((e: any) => e.type), ["Added", "Added", "Removed"])
    assert.deepStrictEqual(main.body.events.slice(1).map((e: any) => e.eventId), read.body.events.slice(1).map((e: any) => e.eventId))

    const discarded = await request(api, "DELETE", `/v1/tenants/${tenant}/forks/${fork}`)
    assert.deepStrictEqual(discarded, { status: 200, body: { discarded: [fork] } })
    const gone = await api.get(streams("cart-1", fork))
    assert.deepStrictEqual([gone.status, gone.body._tag, gone.body.forkId], [404, "ForkNotFound", fork])
    assert.strictEqual((await api.get(`/v1/tenants/${tenant}/forks/${fork}`)).status, 404)
  })

  it("a conflicting merge is a 409 that reports each conflicting stream and writes nothing", async () => {
    await api.post(streams("inv-1"), { events: [{ type: "Stocked", data: 1 }] })
    await api.post(streams("inv-2"), { events: [{ type: "Stocked", data: 1 }] })
    const fork = (await api.post(`/v1/tenants/${tenant}/forks`, { ttlSeconds: 600 })).body.forkId
    await api.post(streams("inv-1", fork), { events: [{ type: "Sold", data: 1 }] })
    await api.post(streams("inv-2", fork), { events: [{ type: "Sold", data: 1 }] })
    await api.post(streams("inv-1"), { events: [{ type: "Recount", data: 2 }] })
    const before = await api.get(`/v1/tenants/${tenant}/events?limit=500`)
    const merge = await api.post(`/v1/tenants/${tenant}/forks/${fork}/merge`, {})
    assert.strictEqual(merge.status, 409)
    assert.strictEqual(merge.body._tag, "ForkMergeConflict")
    assert.isFalse(merge.body.partial)
    assert.deepStrictEqual(merge.body.streams.map((s: any) => [s.stream, s.status]), [["inv-1", "conflict"], ["inv-2", "mergeable"]])
    assert.deepStrictEqual(merge.body.streams[0].conflicts.map((e: any) => [e.type, e.streamVersion]), [["Recount", 1]])
    assert.deepStrictEqual(await api.get(`/v1/tenants/${tenant}/events?limit=500`), before)
  })

  it("unknown, other tenants' and expired forks are typed 404s on every endpoint", async () => {
    const unknown = "f0123456789abcdef"
    for (
      const [method, path] of [
        ["GET", streams("s", unknown)],
        ["POST", streams("s", unknown)],
        ["GET", `/v1/tenants/${tenant}/streams/s/state?fork=${unknown}`],
        ["GET", `/v1/tenants/${tenant}/events?fork=${unknown}`],
        ["GET", `/v1/tenants/${tenant}/partitions/0/events?fork=${unknown}`],
        ["GET", `/v1/tenants/${tenant}/forks/${unknown}`],
        ["GET", `/v1/tenants/${tenant}/forks/${unknown}/diff`],
        ["POST", `/v1/tenants/${tenant}/forks/${unknown}/merge`],
        ["DELETE", `/v1/tenants/${tenant}/forks/${unknown}`]
      ] as const
    ) {
      const res = await request(api, method, path, method === "POST" ? (path.includes("merge") ? {} : { events: [{ type: "A", data: 1 }] }) : undefined)
      assert.deepStrictEqual([res.status, res.body?._tag], [404, "ForkNotFound"], `${method} ${path}`)
    }
    const mine = (await api.post(`/v1/tenants/${tenant}/forks`, { ttlSeconds: 1 })).body.forkId
    assert.strictEqual((await api.get(`/v1/tenants/someone-else/streams/s/events?fork=${mine}`)).status, 404)
    assert.strictEqual((await api.post(streams("s", mine), { events: [{ type: "A", data: 1 }] })).status, 200)
    await sleep(1_100)
    const expired = await api.get(streams("s", mine))
    assert.deepStrictEqual([expired.status, expired.body._tag], [404, "ForkNotFound"])
  })

  it("validates create requests", async () => {
    const bad = async (body: unknown) => (await api.post(`/v1/tenants/${tenant}/forks`, body)).body
    assert.strictEqual((await bad({ ttlSeconds: 0 }))._tag, "InvalidRequest")
    assert.strictEqual((await bad({ ttlSeconds: 1, extra: 1 }))._tag, "InvalidRequest")
    assert.deepStrictEqual(await bad({ ttlSeconds: 1, asOf: "soon" }), { _tag: "InvalidRequest", field: "asOf", message: "expected an ISO-8601 timestamp or a position vector like 3:120,7:88" })
    const tooLong = await bad({ ttlSeconds: 10_000_000 })
    assert.deepStrictEqual([tooLong._tag, tooLong.limit], ["LimitExceeded", "forkTtlSecondsMax"])
    assert.strictEqual((await api.post(`/v1/tenants/${tenant}/forks`, { ttlSeconds: 5, parent: "nope" })).status, 404)
    const openapi = (await api.get("/openapi.json")).body
    for (const p of ["/v1/tenants/{tenant}/forks", "/v1/tenants/{tenant}/forks/{forkId}", "/v1/tenants/{tenant}/forks/{forkId}/merge"]) {
      assert.property(openapi.paths, p)
    }
  })
})

describe("Forks over HTTP on the file log", () => {
  it("keep their log under <dataDir>/forks/<forkId> and free it on DELETE; the store's files do not change", async () => {
    const fs = await import("node:fs")
    const os = await import("node:os")
    const path = await import("node:path")
    const { createHash } = await import("node:crypto")
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-forks-http-"))
    const fingerprint = (dir: string) => {
      const out: Array<[string, string]> = []
      const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const full = path.join(d, e.name)
          if (e.isDirectory()) walk(full)
          else out.push([path.relative(dir, full), createHash("sha256").update(fs.readFileSync(full)).digest("hex")])
        }
      }
      walk(dir)
      return out.sort()
    }
    const node = await startInProcess({ partitions: 4, logDriver: "file", dataDir })
    try {
      const api = node.client
      for (let i = 0; i < 20; i++) await api.post(`/v1/tenants/t/streams/s${i % 3}/events`, { events: [{ type: "A", data: i }] })
      const before = fingerprint(path.join(dataDir, "log"))
      const fork = (await api.post("/v1/tenants/t/forks", { ttlSeconds: 600 })).body.forkId
      for (let i = 0; i < 10; i++) {
        const res = await api.post(`/v1/tenants/t/streams/s${i % 3}/events?fork=${fork}`, { events: [{ type: "B", data: i }] })
        assert.strictEqual(res.status, 200)
      }
      assert.strictEqual((await api.get(`/v1/tenants/t/events?fork=${fork}&limit=100`)).body.events.length, 30)
      assert.deepStrictEqual(fingerprint(path.join(dataDir, "log")), before)
      assert.isTrue(fs.existsSync(path.join(dataDir, "forks", fork, "log")))
      assert.include(fs.readFileSync(path.join(dataDir, "forks", "forks.json"), "utf8"), fork)
      assert.strictEqual((await request(api, "DELETE", `/v1/tenants/t/forks/${fork}`)).status, 200)
      assert.isFalse(fs.existsSync(path.join(dataDir, "forks", fork)), "storage freed")
      assert.notInclude(fs.readFileSync(path.join(dataDir, "forks", "forks.json"), "utf8"), fork)
      assert.deepStrictEqual(fingerprint(path.join(dataDir, "log")), before)
    } finally {
      await node.stop()
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
