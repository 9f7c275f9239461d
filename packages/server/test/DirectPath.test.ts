/**
 * The direct path (plain appends and stream reads answered before HttpApi) must be indistinguishable from HttpApi
 * on the wire: the same requests, sent to a node with it and to a node without it, get the same status,
 * content-type and body.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { raw, type RawResponse, startInProcess } from "./support.ts"

const limits = { partitions: 4, eventBytesMax: 2_000, appendEventsMax: 5, readEventsMax: 50, readEventsDefault: 20 }

let direct: { client: { url: string }; stop: () => Promise<void> }
let viaApi: { client: { url: string }; stop: () => Promise<void> }

beforeAll(async () => {
  direct = await startInProcess(limits, { directPath: true })
  viaApi = await startInProcess(limits, { directPath: false })
})
afterAll(async () => {
  await direct.stop()
  await viaApi.stop()
})

/** Timestamps differ between the two nodes (and eventIds when the server generates them). */
const normalize = (r: RawResponse) => ({
  ...r,
  body: r.body
    .replace(/"timestamp":"[^"]*"/g, "\"timestamp\":\"T\"")
    .replace(/"eventId":"[0-9a-f-]{36}"/g, (m) => (m.includes("0b6a1f4e") ? m : "\"eventId\":\"ID\""))
})

const json = { "content-type": "application/json" }
const id = (n: number) => `0b6a1f4e-3f7e-4a59-9a9e-${n.toString(16).padStart(12, "0")}`
const s = "/v1/tenants/d/streams/s-1/events"
const ev = (n: number) => ({ eventId: id(n), type: "A", data: { n } })

type Case = readonly [method: string, path: string, headers?: Record<string, string>, body?: string | Buffer]

const cases: ReadonlyArray<Case> = [
  ["POST", s, json, JSON.stringify({ expectedVersion: "no_stream", events: [ev(1), ev(2)] })],
  ["POST", s, json, JSON.stringify({ expectedVersion: 0, events: [ev(3)] })], // wrong expected version
  ["POST", s, json, JSON.stringify({ expectedVersion: 1, events: [ev(3)] })],
  ["POST", s, json, JSON.stringify({ events: [ev(1)] })], // duplicate id: original positions
  ["POST", s, { "content-type": "application/json; charset=utf-8" }, JSON.stringify({ events: [ev(4)] })],
  ["POST", s, { "content-type": "Application/JSON" }, JSON.stringify({ events: [ev(5)] })],
  ["POST", s, {}, JSON.stringify({ events: [ev(6)] })], // no content-type
  ["POST", s, { "content-type": "text/plain" }, JSON.stringify({ events: [ev(7)] })],
  ["POST", s, json, JSON.stringify({ events: [{ type: "A", data: null }] })], // generated event id
  ["POST", s, json, ""],
  ["POST", s, json, "null"],
  ["POST", s, json, " \n "],
  ["POST", s, json, "{\"events\": ["],
  ["POST", s, json, "[]"],
  ["POST", s, json, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
  ["POST", s, json, JSON.stringify({ events: [ev(8)], extra: true })],
  ["POST", s, json, JSON.stringify({ events: [{ ...ev(9), extra: true }] })],
  ["POST", s, json, JSON.stringify({ events: [{ ...ev(10), metadata: { a: { b: [1] } } }] })],
  ["POST", s, json, JSON.stringify({ events: [{ type: "A" }] })],
  ["POST", s, json, JSON.stringify({ events: [{ type: "1x", data: 1 }] })],
  ["POST", s, json, JSON.stringify({ events: [{ eventId: "nope", type: "A", data: 1 }] })],
  ["POST", s, json, JSON.stringify({ expectedVersion: "1", events: [ev(11)] })],
  ["POST", s, json, JSON.stringify({ expectedVersion: 1e300, events: [ev(11)] })],
  ["POST", s, json, JSON.stringify({ events: [] })],
  ["POST", s, json, JSON.stringify({ events: Array.from({ length: 6 }, (_, i) => ev(20 + i)) })],
  ["POST", s, json, JSON.stringify({ events: [{ type: "A", data: "x".repeat(3_000) }] })],
  ["POST", "/v1/tenants/D/streams/s-1/events", json, JSON.stringify({ events: [ev(12)] })],
  ["POST", "/v1/tenants/d/streams/-s/events", json, JSON.stringify({ events: [ev(13)] })],
  ["POST", "/v1/tenants/d/streams/s%2D2/events", json, JSON.stringify({ events: [ev(14)] })],
  ["POST", `${s}?limit=3`, json, JSON.stringify({ events: [ev(15)] })],
  ["POST", `${s}/`, json, JSON.stringify({ events: [ev(16)] })],
  ["GET", s],
  ["GET", `${s}?`],
  ["GET", `${s}?limit=2`],
  ["GET", `${s}?limit=`],
  ["GET", `${s}?limit`],
  ["GET", `${s}?limit=abc`],
  ["GET", `${s}?limit=51`],
  ["GET", `${s}?limit=1&limit=2`],
  ["GET", `${s}?fromVersion=2&limit=2&direction=forward`],
  ["GET", `${s}?fromVersion=3&direction=backward`],
  ["GET", `${s}?direction=sideways`],
  ["GET", `${s}?direction=`],
  ["GET", `${s}?asOf=2020-01-01T00:00:00Z`],
  ["GET", `${s}?asOf=2020-01-01T00:00:00%2B00:00`],
  ["GET", `${s}?asOf=2020-01-01T00:00:00+00:00`],
  ["GET", `${s}?asOf=0:100,1:100,2:100,3:100`],
  ["GET", `${s}?asOf=nonsense`],
  ["GET", `${s}?unknown=1&limit=1`],
  ["GET", `${s}?&&limit=1&`],
  ["GET", "/v1/tenants/d/streams/s%2D1/events"],
  ["GET", "/v1/tenants/d/streams/nothing/events"],
  ["GET", "/v1/tenants/D/streams/s-1/events"],
  ["GET", "/v1/tenants/d/streams/s-1/event"],
  ["PUT", s, json, JSON.stringify({ events: [ev(17)] })],
  ["DELETE", s]
]

describe("direct path", () => {
  it("answers exactly like HttpApi", async () => {
    for (const [method, path, headers, body] of cases) {
      const a = normalize(await raw(direct.client.url, method, path, headers, body))
      const b = normalize(await raw(viaApi.client.url, method, path, headers, body))
      assert.deepStrictEqual(a, b, `${method} ${path} ${body === undefined ? "" : String(body).slice(0, 80)}`)
    }
    // and the stream ended up the same on both
    const a = normalize(await raw(direct.client.url, "GET", s))
    const b = normalize(await raw(viaApi.client.url, "GET", s))
    assert.deepStrictEqual(a, b)
    assert.isAbove(JSON.parse(a.body).events.length, 5)
  })
})
