import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as http from "node:http"
import { type Client, startInProcess } from "./support.ts"

const limits = {
  partitions: 4,
  eventBytesMax: 2_000,
  appendEventsMax: 5,
  readEventsDefault: 20,
  readEventsMax: 50,
  requestBodyBytesMax: 64_000
}

const id = (n: number) => `0b6a1f4e-3f7e-4a59-9a9e-${n.toString(16).padStart(12, "0")}`
const events = (tenant: string, stream: string) => `/v1/tenants/${tenant}/streams/${stream}/events`
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// Every test runs twice: with the direct path for plain appends and reads (the default), and with every request
// through HttpApi. Both must answer identically.
describe.each([true, false])("HTTP API (direct path: %s)", (directPath) => {
  let api: Client
  let stop: () => Promise<void>

  beforeAll(async () => {
    const node = await startInProcess(limits, { directPath })
    api = node.client
    stop = node.stop
  })
  afterAll(() => stop())

  describe("system", () => {
    it("GET /health", async () => {
      assert.deepStrictEqual(await api.get("/health"), { status: 200, body: { status: "ok", partitions: 4 } })
    })

    it("GET /openapi.json documents every path", async () => {
      const { status, body } = await api.get("/openapi.json")
      assert.strictEqual(status, 200)
      for (
        const p of [
          "/health",
          "/v1/partitions",
          "/v1/tenants/{tenant}/streams/{stream}/events",
          "/v1/tenants/{tenant}/streams/{stream}/state",
          "/v1/tenants/{tenant}/events",
          "/v1/tenants/{tenant}/partitions/{partition}/events"
        ]
      ) assert.property(body.paths, p)
      assert.property(body.paths["/v1/tenants/{tenant}/streams/{stream}/events"], "post")
    })

    it("GET /v1/partitions lists every partition", async () => {
      await api.post(events("sys", "s"), { events: [{ type: "A", data: 1 }] })
      const { status, body } = await api.get("/v1/partitions")
      assert.strictEqual(status, 200)
      assert.deepStrictEqual(body.partitions.map((p: any) => p.partition), [0, 1, 2, 3])
      for (const p of body.partitions) {
        assert.hasAllKeys(p, ["partition", "seq", "watermark", "owner", "events", "streams", "replicas"])
        // The memory log: one replica, this process, current.
        assert.deepStrictEqual(p.replicas.length, 1)
      }
      assert.isAtLeast(body.partitions.reduce((n: number, p: any) => n + p.events, 0), 1)
    })

    it("an unknown route is a JSON 404", async () => {
      const { status, body } = await api.get("/v1/nope?x=1")
      assert.strictEqual(status, 404)
      assert.strictEqual(body._tag, "RouteNotFound")
      assert.strictEqual(body.path, "/v1/nope")
    })
  })

  describe("append", () => {
    it("answers firstVersion, lastVersion and positions", async () => {
      const { status, body } = await api.post(events("t1", "order-1"), {
        expectedVersion: "no_stream",
        events: [{ type: "Placed", data: { total: 10 } }, { type: "Paid", data: { paid: true }, metadata: { by: "x" } }]
      })
      assert.strictEqual(status, 200)
      assert.strictEqual(body.firstVersion, 0)
      assert.strictEqual(body.lastVersion, 1)
      assert.strictEqual(body.positions.length, 2)
      assert.strictEqual(body.positions[1].seq, body.positions[0].seq + 1)
      assert.strictEqual(body.positions[0].partition, body.positions[1].partition)
    })

    it("a wrong expected version is a 409 and writes nothing", async () => {
      await api.post(events("t1", "wev"), { events: [{ type: "A", data: 1 }] })
      const { status, body } = await api.post(events("t1", "wev"), { expectedVersion: 5, events: [{ type: "B", data: 2 }] })
      assert.strictEqual(status, 409)
      assert.deepStrictEqual(body, { _tag: "WrongExpectedVersion", stream: "wev", expected: 5, actual: 0 })
      const noStream = await api.post(events("t1", "wev"), { expectedVersion: "no_stream", events: [{ type: "B", data: 2 }] })
      assert.strictEqual(noStream.status, 409)
      assert.deepStrictEqual([noStream.body.expected, noStream.body.actual], ["no_stream", 0])
      const read = await api.get(events("t1", "wev"))
      assert.deepStrictEqual(read.body.events.map((e: any) => e.type), ["A"])
    })

    it("re-sending an event id returns the original version and writes nothing", async () => {
      const first = await api.post(events("t1", "idem"), { events: [{ eventId: id(1), type: "A", data: { n: 1 } }] })
      await api.post(events("t1", "idem"), { events: [{ eventId: id(2), type: "B", data: { n: 2 } }] })
      const again = await api.post(events("t1", "idem"), {
        expectedVersion: "no_stream",
        events: [{ eventId: id(1), type: "A", data: { n: 1 } }]
      })
      assert.strictEqual(again.status, 200)
      assert.deepStrictEqual(again.body, first.body)
      const read = await api.get(events("t1", "idem"))
      assert.deepStrictEqual(read.body.events.map((e: any) => [e.eventId, e.streamVersion]), [[id(1), 0], [id(2), 1]])
    })
  })

  describe("read one stream", () => {
    const s = events("r", "acct-1")
    let stamps: Array<string> = []

    beforeAll(async () => {
      for (let i = 0; i < 6; i++) {
        const { status } = await api.post(s, { expectedVersion: i === 0 ? "no_stream" : i - 1, events: [{ type: "Deposited", data: { amount: i, x: 2 } }] })
        assert.strictEqual(status, 200)
        await sleep(3) // distinct commit timestamps, for asOf
      }
      stamps = (await api.get(s)).body.events.map((e: any) => e.timestamp)
    })

    it("forward, with the recorded event shape", async () => {
      const { status, body } = await api.get(s)
      assert.strictEqual(status, 200)
      assert.deepStrictEqual(body.events.map((e: any) => e.streamVersion), [0, 1, 2, 3, 4, 5])
      const e = body.events[0]
      assert.hasAllKeys(e, ["eventId", "stream", "type", "data", "metadata", "timestamp", "streamVersion", "partition", "seq"])
      assert.deepStrictEqual([e.stream, e.type, e.data, e.metadata], ["acct-1", "Deposited", { amount: 0, x: 2 }, {}])
      assert.match(e.timestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
      assert.notProperty(body, "next")
    })

    it("backward, fromVersion and limit", async () => {
      assert.deepStrictEqual((await api.get(`${s}?direction=backward`)).body.events.map((e: any) => e.streamVersion), [5, 4, 3, 2, 1, 0])
      assert.deepStrictEqual((await api.get(`${s}?fromVersion=2&limit=3`)).body.events.map((e: any) => e.streamVersion), [2, 3, 4])
      assert.deepStrictEqual(
        (await api.get(`${s}?direction=backward&fromVersion=3&limit=2`)).body.events.map((e: any) => e.streamVersion),
        [3, 2]
      )
      assert.deepStrictEqual((await api.get(`${s}?fromVersion=99`)).body.events, [])
    })

    it("asOf an ISO timestamp sees the stream as it was", async () => {
      const { body } = await api.get(`${s}?asOf=${encodeURIComponent(stamps[2]!)}`)
      assert.deepStrictEqual(body.events.map((e: any) => e.streamVersion), [0, 1, 2])
    })

    it("a stream with no events reads empty", async () => {
      assert.deepStrictEqual(await api.get(events("r", "nothing-here")), { status: 200, body: { events: [] } })
    })

    it("state with merge, count, sum:<field>, and asOf", async () => {
      const state = (q: string) => api.get(`/v1/tenants/r/streams/acct-1/state${q}`)
      assert.deepStrictEqual((await state("")).body, { stream: "acct-1", reducer: "merge", version: 5, state: { amount: 5, x: 2 } })
      assert.deepStrictEqual((await state("?reducer=count")).body.state, 6)
      assert.deepStrictEqual((await state("?reducer=sum:amount")).body.state, 15)
      const past = await state(`?reducer=sum:amount&asOf=${encodeURIComponent(stamps[2]!)}`)
      assert.deepStrictEqual([past.body.version, past.body.state], [2, 3])
      const missing = await api.get("/v1/tenants/r/streams/nope/state")
      assert.deepStrictEqual(missing, { status: 404, body: { _tag: "StreamNotFound", tenant: "r", stream: "nope" } })
      const bad = await state("?reducer=median")
      assert.deepStrictEqual([bad.status, bad.body._tag, bad.body.field], [400, "InvalidRequest", "query.reducer"])
    })
  })

  describe("tenant and partition reads", () => {
    const tenant = "q"
    let stamps: Array<string> = []

    beforeAll(async () => {
      for (let i = 0; i < 9; i++) {
        const type = ["Opened", "Deposited", "Closed"][i % 3]!
        await api.post(events(tenant, `acct-${i % 4}`), { events: [{ type, data: { i } }] })
        await sleep(3) // distinct commit timestamps
      }
      stamps = (await api.get(`/v1/tenants/${tenant}/events`)).body.events.map((e: any) => e.timestamp)
    })

    it("filters by types (comma separated)", async () => {
      const { status, body } = await api.get(`/v1/tenants/${tenant}/events?types=Opened,Closed`)
      assert.strictEqual(status, 200)
      assert.deepStrictEqual(body.events.map((e: any) => e.data.i), [0, 2, 3, 5, 6, 8])
    })

    it("since and until", async () => {
      const since = await api.get(`/v1/tenants/${tenant}/events?since=${encodeURIComponent(stamps[5]!)}`)
      assert.deepStrictEqual(since.body.events.map((e: any) => e.data.i), [5, 6, 7, 8])
      const until = await api.get(`/v1/tenants/${tenant}/events?until=${encodeURIComponent(stamps[4]!)}`)
      assert.deepStrictEqual(until.body.events.map((e: any) => e.data.i), [0, 1, 2, 3, 4])
      const both = `since=${encodeURIComponent(stamps[2]!)}&until=${encodeURIComponent(stamps[3]!)}`
      assert.deepStrictEqual((await api.get(`/v1/tenants/${tenant}/events?${both}`)).body.events.map((e: any) => e.data.i), [2, 3])
    })

    it("pages with next", async () => {
      const seen: Array<number> = []
      let next: string | undefined
      let pages = 0
      do {
        const { status, body } = await api.get(`/v1/tenants/${tenant}/events?limit=4${next ? `&after=${encodeURIComponent(next)}` : ""}`)
        assert.strictEqual(status, 200)
        seen.push(...body.events.map((e: any) => e.data.i))
        next = body.next
        pages++
      } while (next !== undefined && pages < 10)
      assert.deepStrictEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8])
      assert.isAtLeast(pages, 3)
      const bad = await api.get(`/v1/tenants/${tenant}/events?after=garbage`)
      assert.deepStrictEqual([bad.status, bad.body.field], [400, "query.after"])
    })

    it("reads one partition in sequence order, from a sequence, by type", async () => {
      const one = (await api.get(events(tenant, "acct-1"))).body.events[0]
      const p = one.partition
      const { status, body } = await api.get(`/v1/tenants/${tenant}/partitions/${p}/events`)
      assert.strictEqual(status, 200)
      const seqs = body.events.map((e: any) => e.seq)
      assert.deepStrictEqual(seqs, [...seqs].sort((a: number, b: number) => a - b))
      assert.isTrue(body.events.every((e: any) => e.partition === p))
      assert.isTrue(body.events.some((e: any) => e.eventId === one.eventId))
      const from = await api.get(`/v1/tenants/${tenant}/partitions/${p}/events?fromSeq=${one.seq}&limit=1`)
      assert.deepStrictEqual(from.body.events.map((e: any) => e.seq), [one.seq])
      const typed = await api.get(`/v1/tenants/${tenant}/partitions/${p}/events?types=Closed`)
      assert.isTrue(typed.body.events.every((e: any) => e.type === "Closed"))
      const out = await api.get(`/v1/tenants/${tenant}/partitions/4/events`)
      assert.deepStrictEqual([out.status, out.body.field], [400, "params.partition"])
    })
  })

  describe("bad input is a typed 400", () => {
    const s = events("bad", "s-1")
    const expectInvalid = async (response: Promise<{ status: number; body: any }>, field: string) => {
      const { status, body } = await response
      assert.strictEqual(status, 400, JSON.stringify(body))
      assert.strictEqual(body._tag, "InvalidRequest", JSON.stringify(body))
      assert.strictEqual(body.field, field, JSON.stringify(body))
      assert.isString(body.message)
      assert.isAbove(body.message.length, 5)
    }
    const expectLimit = async (response: Promise<{ status: number; body: any }>, limit: string) => {
      const { status, body } = await response
      assert.strictEqual(status, 400, JSON.stringify(body))
      assert.strictEqual(body._tag, "LimitExceeded", JSON.stringify(body))
      assert.strictEqual(body.limit, limit)
      assert.isNumber(body.max)
      assert.isNumber(body.actual)
    }
    const ev = { type: "A", data: { x: 1 } }

    it("identifiers", async () => {
      await expectInvalid(api.post(events("Bad!", "s"), { events: [ev] }), "params.tenant")
      await expectInvalid(api.post(events("bad", "-s"), { events: [ev] }), "params.stream")
      await expectInvalid(api.get(events("bad", "-s")), "params.stream")
      await expectInvalid(api.post(s, { events: [ev, { type: "9lives", data: 1 }] }), "events[1].type")
      await expectInvalid(api.post(s, { events: [{ ...ev, eventId: "not-a-uuid" }] }), "events[0].eventId")
    })

    it("body shape", async () => {
      await expectInvalid(api.post(s, "{\"events\": [", {}), "body")
      await expectInvalid(api.post(s, "[1,2]"), "body")
      await expectInvalid(api.post(s, { events: [ev], expectedVerison: 1 }), "expectedVerison")
      await expectInvalid(api.post(s, { events: [{ ...ev, tpye: "B" }] }), "events[0].tpye")
      // Keys that name Object.prototype members are unknown fields like any other (once a 500).
      await expectInvalid(api.post(s, "{\"__proto__\":1,\"events\":[{\"type\":\"A\",\"data\":1}]}"), "__proto__")
      await expectInvalid(api.post(s, { constructor: 1, events: [ev] }), "constructor")
      await expectInvalid(api.post(s, { events: [{ type: "A" }] }), "events[0].data")
      await expectInvalid(api.post(s, { events: [] }), "events")
      await expectInvalid(api.post(s, { expectedVersion: "3", events: [ev] }), "expectedVersion")
      await expectInvalid(api.post(s, { expectedVersion: -2, events: [ev] }), "expectedVersion")
      await expectInvalid(api.post(s, { expectedVersion: 1.5, events: [ev] }), "expectedVersion")
      await expectInvalid(api.post(s, { events: [{ ...ev, metadata: [1] }] }), "events[0].metadata")
      await expectInvalid(api.post(s, JSON.stringify({ events: [ev] }), { "content-type": "text/plain" }), "headers.content-type")
      assert.deepStrictEqual((await api.get(s)).body.events, [], "nothing was written")
    })

    it("query values", async () => {
      await expectInvalid(api.get(`${s}?limit=abc`), "query.limit")
      await expectInvalid(api.get(`${s}?limit=0`), "query.limit")
      await expectInvalid(api.get(`${s}?fromVersion=x`), "query.fromVersion")
      await expectInvalid(api.get(`${s}?fromVersion=-1`), "query.fromVersion")
      await expectInvalid(api.get(`${s}?direction=sideways`), "query.direction")
      await expectInvalid(api.get(`${s}?asOf=yesterday`), "query.asOf")
      await expectInvalid(api.get(`/v1/tenants/bad/events?types=A,,B`), "query.types[1]")
      await expectInvalid(api.get(`/v1/tenants/bad/events?since=soon`), "query.since")
      await expectInvalid(api.get(`/v1/tenants/bad/events?limit=1e3`), "query.limit")
      await expectInvalid(api.get(`/v1/tenants/bad/partitions/x/events`), "params.partition")
      await expectInvalid(api.get(`/v1/tenants/bad/partitions/0/events?fromSeq=0`), "query.fromSeq")
      await expectLimit(api.get(`${s}?limit=51`), "readEventsMax")
      await expectLimit(api.get(`/v1/tenants/bad/events?limit=1000`), "readEventsMax")
    })

    it("limits", async () => {
      await expectLimit(api.post(s, { events: [{ type: "A", data: { blob: "x".repeat(2_000) } }] }), "eventBytesMax")
      await expectLimit(api.post(s, { events: Array.from({ length: 6 }, () => ev) }), "appendEventsMax")
      await expectLimit(api.post(s, { events: [{ type: "A", data: { blob: "x".repeat(70_000) } }] }), "requestBodyBytesMax")
      assert.deepStrictEqual((await api.get(s)).body.events, [], "nothing was written")
    })

    it("a chunked body over requestBodyBytesMax is cut off, not buffered", async () => {
      const url = new URL(api.url + s)
      const { status, body } = await new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = http.request(url, { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
          let text = ""
          res.on("data", (d) => (text += d))
          res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }))
        })
        req.on("error", reject)
        // No content-length: Node sends it chunked. 16 × 8 KiB = 128 KiB, twice the limit.
        req.write("{\"events\":[{\"type\":\"A\",\"data\":\"")
        for (let i = 0; i < 16; i++) req.write("x".repeat(8192))
        req.end("\"}]}")
      })
      assert.strictEqual(status, 400)
      assert.deepStrictEqual([body._tag, body.limit, body.max], ["LimitExceeded", "requestBodyBytesMax", 64_000])
    })
  })
})
