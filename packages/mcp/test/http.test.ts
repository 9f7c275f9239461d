/**
 * The MCP server over Streamable HTTP at `/mcp` on a real node, driven by the official SDK client: the catalogue,
 * every tool, the multi-turn session memory (next_page, refine, tenant) per MCP session, and the output bounds
 * (compact lines, payload truncation, the byte budget, cursors that skip nothing).
 */
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { call, checkCatalogue, type Connected, connectHttp, exerciseEveryTool, fails, ok, startNode } from "./support.ts"

describe("Streamable HTTP at /mcp on a node", () => {
  let node: { url: string; stop: () => Promise<void> }
  let c: Connected

  beforeAll(async () => {
    node = await startNode()
    c = await connectHttp(node.url)
  })
  afterAll(async () => {
    await c?.close()
    await node?.stop()
  })

  it("negotiates a session and lists tools, guides and prompts", async () => {
    assert.match(c.sessionId() ?? "", /^[0-9a-f-]{36}$/)
    await checkCatalogue(c)
  })

  it("calls every tool, and returns fixable errors as isError results", async () => {
    await exerciseEveryTool(c, "http")
  })

  it("pages with next_page, refines, and keeps each session's memory apart", async () => {
    const events = Array.from({ length: 7 }, (_, i) => ({ type: i % 2 === 0 ? "Deposited" : "Withdrawn", data: { amount: i } }))
    await ok(c, "append_events", { tenant: "paging", stream: "acct-1", expectedVersion: "no_stream", events })
    await ok(c, "append_events", {
      stream: "acct-2",
      expectedVersion: "no_stream",
      events: [{ type: "Deposited", data: { amount: 100 }, metadata: { correlationId: "c-9" } }]
    })

    const first = await ok(c, "query_events", { types: ["Deposited"], limit: 2 })
    assert.strictEqual(first.structured.count, 2)
    assert.isTrue(first.structured.more)
    const seen: Array<string> = [...first.structured.events]
    for (let page = 0; page < 5; page++) {
      const next = await ok(c, "next_page")
      seen.push(...next.structured.events)
      if (!next.structured.more) break
    }
    assert.strictEqual(seen.length, 5, "4 Deposited in acct-1 + 1 in acct-2, each exactly once")
    assert.strictEqual(new Set(seen).size, 5)

    // "same but only acct-2's journey": refine keeps types, adds metadata.
    const refined = await ok(c, "query_events", { refine: true, metadata: { correlationId: "c-9" } })
    assert.deepStrictEqual(refined.structured.query.types, ["Deposited"])
    assert.strictEqual(refined.structured.count, 1)
    assert.match(refined.structured.events[0], /acct-2 Deposited \{"amount":100\}/)
    // "same but since yesterday" keeps the filters and resolves the phrase against the clock.
    const sinceYesterday = await ok(c, "query_events", { refine: true, since: "yesterday" })
    assert.strictEqual(sinceYesterday.structured.count, 1)
    assert.match(sinceYesterday.structured.query.since, /T00:00:00Z$/)
    // Dropping a filter: an empty value.
    const dropped = await ok(c, "query_events", { refine: true, metadata: {}, since: "" , limit: 50 })
    assert.strictEqual(dropped.structured.count, 5)

    // A second MCP session has its own memory: no tenant, no query to continue.
    const other = await connectHttp(node.url)
    try {
      await fails(other, "next_page", {}, /no earlier query_events or get_stream in this session/)
      await fails(other, "query_events", { refine: true }, /needs an earlier query_events/)
      const described = await ok(other, "describe_store")
      assert.strictEqual(described.structured.tenant, "default")
    } finally {
      await other.close()
    }
    // …and the first session still has its own.
    const again = await ok(c, "describe_store")
    assert.strictEqual(again.structured.tenant, "paging")
  })

  it("filters by stream prefix and metadata with a bounded scan, and by exact stream", async () => {
    const prefixed = await ok(c, "query_events", { tenant: "paging", stream: "acct-*", types: ["Withdrawn"] })
    assert.strictEqual(prefixed.structured.count, 3)
    const exact = await ok(c, "query_events", { stream: "acct-1", types: ["Deposited"], limit: 2 })
    assert.strictEqual(exact.structured.count, 2)
    assert.match(exact.structured.cursor, /^v:\d+$/)
    const rest = await ok(c, "query_events", { stream: "acct-1", types: ["Deposited"], cursor: exact.structured.cursor })
    assert.strictEqual(rest.structured.count, 2)
    assert.isFalse(rest.structured.more)
    await fails(c, "query_events", { cursor: "bogus" }, /not one this server returned/)
  })

  it("keeps results compact: payloads cut with a marker, results within the byte budget, nothing skipped", async () => {
    const big = "x".repeat(5_000)
    const events = Array.from({ length: 80 }, (_, i) => ({ type: "Noted", data: { i, note: big } }))
    await ok(c, "append_events", { tenant: "big", stream: "doc-1", expectedVersion: "no_stream", events })
    const page = await ok(c, "get_stream", { stream: "doc-1", limit: 200 })
    assert.match(page.structured.events[0], /…\[\+\d+ bytes\]$/)
    assert.isBelow(Buffer.byteLength(page.text), 24_000)
    assert.isBelow(Buffer.byteLength(JSON.stringify(page.structured)), 24_000)
    assert.isTrue(page.structured.more)
    let versions = page.structured.events.map((line: string) => Number(line.split(" ")[0]!.slice(1)))
    while (true) {
      const next = await ok(c, "next_page")
      versions = versions.concat(next.structured.events.map((line: string) => Number(line.split(" ")[0]!.slice(1))))
      if (!next.structured.more) break
    }
    assert.deepStrictEqual(versions, Array.from({ length: 80 }, (_, i) => i), "every version exactly once, in order")

    const json = await ok(c, "get_stream", { stream: "doc-1", limit: 1, format: "json" })
    assert.deepInclude(json.structured.events[0].data, { bytes: Buffer.byteLength(JSON.stringify({ i: 0, note: big })) })
    const state = await ok(c, "reconstruct_state", { stream: "doc-1", path: "i" })
    assert.strictEqual(state.structured.state, 79)
  })

  it("dry-runs appends with a state preview and makes retries idempotent", async () => {
    await ok(c, "append_events", {
      tenant: "bank",
      stream: "account-9",
      expectedVersion: "no_stream",
      events: [{ type: "Deposited", data: { amount: 50 } }]
    })
    const dry = await ok(c, "append_events", {
      stream: "account-9",
      expectedVersion: 0,
      dryRun: true,
      previewReducer: "sum:amount",
      events: [{ type: "Withdrawn", data: { amount: -20 } }]
    })
    assert.deepInclude(dry.structured, { dryRun: true, currentVersion: 0, firstVersion: 1, stateBefore: 50, stateAfter: 30 })
    const unchanged = await ok(c, "get_stream", { stream: "account-9" })
    assert.strictEqual(unchanged.structured.version, 0, "a dry run writes nothing")
    await fails(c, "append_events", {
      stream: "account-9",
      expectedVersion: 5,
      dryRun: true,
      events: [{ type: "Withdrawn", data: { amount: -20 } }]
    }, /dry run: this append would fail.*at version 0/)

    const args = { stream: "account-9", expectedVersion: 0, events: [{ type: "Withdrawn", data: { amount: -20 } }] }
    const first = await ok(c, "append_events", args)
    const retry = await ok(c, "append_events", args)
    assert.deepStrictEqual(retry.structured.positions, first.structured.positions)
    assert.match(retry.text, /already appended/)
    const balance = await ok(c, "reconstruct_state", { stream: "account-9", reducer: "sum:amount" })
    assert.strictEqual(balance.structured.state, 30)
    await fails(c, "append_events", { stream: "account-9", expectedVersion: "no_stream", events: [{ type: "9bad", data: 1 }] }, /invalid|not valid/i)
  })

  it("time travel: asOf phrases, compare_states across time, timelines by bucket", async () => {
    const now = await ok(c, "reconstruct_state", { tenant: "bank", stream: "account-9", reducer: "sum:amount", asOf: "now" })
    assert.strictEqual(now.structured.state, 30)
    await fails(c, "reconstruct_state", { stream: "account-9", asOf: "yesterday" }, /no stream account-9 .*Folded as of/)
    const compared = await ok(c, "compare_states", { stream: "account-9", from: "yesterday", reducer: "sum:amount" })
    assert.strictEqual(compared.structured.from.version, -1)
    assert.deepInclude(compared.structured.changes[0], { change: "changed", before: null, after: 30 })
    const hourly = await ok(c, "event_timeline", { groupBy: "hour", time: "last 24 hours" })
    assert.strictEqual(hourly.structured.entries.reduce((n: number, e: any) => n + e.count, 0), 2)
    await fails(c, "event_timeline", {}, /needs a stream, metadata, types or a time range/)
  })

  it("forks: isolation, conflicts reported with the parent's events, unknown forks", async () => {
    await ok(c, "append_events", {
      tenant: "forks",
      stream: "order-1",
      expectedVersion: "no_stream",
      events: [{ type: "Placed", data: { total: 10 } }]
    })
    const fork = await ok(c, "create_fork", { ttlMinutes: 5 })
    const forkId = fork.structured.forkId
    await ok(c, "append_events", { stream: "order-1", fork: forkId, expectedVersion: 0, events: [{ type: "Discounted", data: { total: 8 } }] })
    const listed = await ok(c, "list_forks")
    assert.include(listed.structured.forks.map((f: any) => f.forkId), forkId)
    const inFork = await ok(c, "get_stream", { stream: "order-1", fork: forkId })
    assert.strictEqual(inFork.structured.version, 1)
    const nextInFork = await ok(c, "query_events", { fork: forkId, types: ["Discounted"] })
    assert.strictEqual(nextInFork.structured.count, 1)
    // Main moves the same stream: the merge must refuse, naming the event in the way.
    await ok(c, "append_events", { stream: "order-1", expectedVersion: 0, events: [{ type: "Cancelled", data: {} }] })
    await fails(c, "merge_fork", { fork: forkId }, /Main changed under the fork in order-1 \(main moved to v1 .*v1 Cancelled/)
    const discarded = await ok(c, "discard_fork", { fork: forkId })
    assert.deepStrictEqual(discarded.structured.discarded, [forkId])
    await fails(c, "get_stream", { stream: "order-1", fork: forkId }, /no fork .* list_forks/)
    await fails(c, "fork_diff", { fork: "nope" }, /no fork nope in tenant forks|invalid/)
  })

  it("search_events finds events by their words (the node's search service)", async () => {
    const { tools } = await c.client.listTools()
    assert.include(tools.map((t) => t.name), "search_events")
    const appended = await ok(c, "append_events", {
      tenant: "support",
      stream: "ticket-1",
      expectedVersion: "no_stream",
      events: [
        { type: "TicketOpened", data: { text: "The parcel arrived broken, I want a refund" } },
        { type: "TicketNoted", data: { text: "Customer called about the invoice address" } }
      ]
    })
    const found = await ok(c, "search_events", {
      query: "refund parcel",
      mode: "keyword",
      waitFor: appended.structured.positions.join(",")
    })
    assert.isAtLeast(found.structured.count, 1)
    assert.match(found.structured.hits[0].event, /ticket-1 TicketOpened .*refund/)
    assert.include(found.structured.hits[0].matchedBy, "keyword")
  })

  it("refuses browser origins that are not allowed", async () => {
    const response = await fetch(`${node.url}/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", origin: "http://evil.example" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "x", version: "1" } } })
    })
    assert.isAtLeast(response.status, 400)
    void call
  })
})
