import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Client, startInProcess } from "./support.ts"

const events = (tenant: string, stream: string) => `/v1/tenants/${tenant}/streams/${stream}/events`
const search = (tenant: string) => `/v1/tenants/${tenant}/search`

/** The position vector after an append's events: a `waitFor` token. */
const tokenOf = (body: any) => body.positions.map((p: any) => `${p.partition}:${p.seq}`).join(",")

describe("search over HTTP", () => {
  let api: Client
  let stop: () => Promise<void>
  let token: string

  beforeAll(async () => {
    const node = await startInProcess({ partitions: 4 }, {
      search: { embedder: "test", testEmbedderDimension: 64, hitsMax: 20, indexIdleWaitMs: 20 }
    })
    api = node.client
    stop = node.stop
    await api.post(events("acme", "order-1"), { events: [{ type: "OrderPlaced", data: { customer: "Ada", item: "laptop" } }] })
    const last = await api.post(events("acme", "order-2"), {
      events: [{ type: "PaymentFailed", data: { reason: "card declined", ref: "PX-5521" } }]
    })
    token = tokenOf(last.body)
  })
  afterAll(() => stop())

  it("POST /v1/tenants/{tenant}/search returns events with score and matchedBy", async () => {
    const { body, status } = await api.post(search("acme"), { query: "PX-5521", mode: "keyword", waitFor: token })
    assert.strictEqual(status, 200)
    assert.strictEqual(body.hits.length, 1)
    const [hit] = body.hits
    assert.deepStrictEqual(hit.matchedBy, ["keyword"])
    assert.isAbove(hit.score, 0)
    assert.deepInclude(hit.event, { stream: "order-2", type: "PaymentFailed", data: { reason: "card declined", ref: "PX-5521" } })
    assert.match(hit.event.timestamp, /^\d{4}-\d\d-\d\dT/)
  })

  it("hybrid is the default mode; filters apply", async () => {
    const { body } = await api.post(search("acme"), { query: "laptop card", waitFor: token })
    assert.sameMembers(body.hits.map((h: any) => h.event.stream), ["order-1", "order-2"])
    const typed = await api.post(search("acme"), { query: "laptop card", types: ["OrderPlaced"], waitFor: token })
    assert.deepStrictEqual(typed.body.hits.map((h: any) => h.event.type), ["OrderPlaced"])
    const prefixed = await api.post(search("acme"), { query: "laptop card", streamPrefix: "nope", waitFor: token })
    assert.deepStrictEqual(prefixed.body.hits, [])
  })

  it("limits and typed errors", async () => {
    const over = await api.post(search("acme"), { query: "x", limit: 21 })
    assert.strictEqual(over.status, 400)
    assert.deepInclude(over.body, { _tag: "LimitExceeded", limit: "hitsMax", max: 20, actual: 21 })
    const fork = await api.post(search("acme"), { query: "x", fork: "f1" })
    assert.strictEqual(fork.status, 404)
    assert.deepStrictEqual(fork.body, { _tag: "ForkNotFound", tenant: "acme", forkId: "f1" })
    const mode = await api.post(search("acme"), { query: "x", mode: "fuzzy" })
    assert.strictEqual(mode.status, 400)
    assert.strictEqual(mode.body.field, "mode")
    const unknown = await api.post(search("acme"), { query: "x", limt: 3 })
    assert.strictEqual(unknown.status, 400)
    const tenant = await api.post(search("Bad%20Tenant"), { query: "x" })
    assert.strictEqual(tenant.status, 400)
    assert.strictEqual(tenant.body.field, "params.tenant")
  })

  it("GET /v1/tenants/{tenant}/search/status reports positions and lag per partition", async () => {
    await api.post(search("acme"), { query: "laptop", waitFor: token })
    const { body, status } = await api.get("/v1/tenants/acme/search/status")
    assert.strictEqual(status, 200)
    assert.strictEqual(body.tenant, "acme")
    for (const index of [body.keyword, body.semantic]) {
      assert.strictEqual(index.documents, 2)
      assert.strictEqual(index.lag, 0)
      assert.strictEqual(index.partitions.length, 4)
    }
    assert.strictEqual(body.semantic.embedder, "hashing-v1-64")
    assert.strictEqual(body.semantic.dimension, 64)
  })

  it("is documented in /openapi.json", async () => {
    const { body } = await api.get("/openapi.json")
    assert.property(body.paths, "/v1/tenants/{tenant}/search")
    assert.property(body.paths, "/v1/tenants/{tenant}/search/status")
  })
})
