/**
 * A scripted agent on a real node over Streamable HTTP, with the official SDK client: "find why account-7 has a
 * negative balance, and fix it safely". Every step reads what it needs from the previous results (nothing about the
 * cause is hard-coded), and no tool call may fail.
 */
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { type Connected, connectHttp, ok, startNode } from "./support.ts"

const post = async (url: string, stream: string, events: ReadonlyArray<unknown>, metadata?: Record<string, string>) => {
  const response = await fetch(`${url}/v1/tenants/bank/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ events: events.map((e) => (metadata === undefined ? e : { ...(e as object), metadata })) })
  })
  assert.strictEqual(response.status, 200, await response.text())
}

describe("agent scenario: a negative balance", () => {
  let node: { url: string; stop: () => Promise<void> }
  let agent: Connected

  beforeAll(async () => {
    node = await startNode()
    // The bank, written through the HTTP API (not through MCP): healthy accounts, and account-7, where an ATM
    // retried a withdrawal without idempotency, so it was booked twice under one correlation id.
    for (let i = 1; i <= 6; i++) {
      await post(node.url, `account-${i}`, [
        { type: "Opened", data: { owner: `owner-${i}` } },
        { type: "Deposited", data: { amount: 100 * i } }
      ])
      await post(node.url, `account-${i}`, [{ type: "Withdrawn", data: { amount: -10 * i, atm: "atm-1" } }], {
        correlationId: `tx-${i}`
      })
    }
    await post(node.url, "account-7", [{ type: "Opened", data: { owner: "owner-7" } }, { type: "Deposited", data: { amount: 100 } }])
    await post(node.url, "account-7", [{ type: "Withdrawn", data: { amount: -80, atm: "atm-3" } }], { correlationId: "tx-42" })
    await post(node.url, "account-7", [{ type: "Withdrawn", data: { amount: -80, atm: "atm-3" } }], { correlationId: "tx-42" })
    agent = await connectHttp(node.url)
  })
  afterAll(async () => {
    await agent?.close()
    await node?.stop()
  })

  it("finds the duplicate withdrawal, corrects it in a fork, merges, and the balance is positive", async () => {
    // 1. Orient: which types exist, what their data looks like, which field carries money.
    const store = await ok(agent, "describe_store", { tenant: "bank" })
    const withdrawn = store.structured.types.find((t: any) => t.type === "Withdrawn")
    assert.match(withdrawn.shape, /amount: number/)
    assert.include(withdrawn.metadataKeys, "correlationId")
    const reducer = "sum:amount" // the balance is the sum of the signed amounts (Deposited +, Withdrawn -)

    // 2. The symptom.
    const balance = await ok(agent, "reconstruct_state", { stream: "account-7", reducer })
    assert.isBelow(balance.structured.state, 0)
    const version = balance.structured.version

    // 3. The story of the account: a run of two withdrawals.
    const timeline = await ok(agent, "event_timeline", { stream: "account-7" })
    const run = timeline.structured.entries.find((e: any) => e.type === "Withdrawn")
    assert.strictEqual(run.count, 2)

    // 4. The withdrawals with their metadata: the same correlation id twice = one request booked twice.
    const withdrawals = await ok(agent, "query_events", {
      stream: "account-7",
      types: ["Withdrawn"],
      format: "json",
      withMetadata: true
    })
    const [original, duplicate] = withdrawals.structured.events
    assert.strictEqual(original.metadata.correlationId, duplicate.metadata.correlationId)
    assert.deepStrictEqual(original.data, duplicate.data)

    // 5. The whole journey of that request across the tenant: only these two events.
    const journey = await ok(agent, "query_events", { refine: false, metadata: { correlationId: duplicate.metadata.correlationId } })
    assert.strictEqual(journey.structured.count, 2)

    // 6. What the duplicate did to the balance.
    const before = await ok(agent, "compare_states", { stream: "account-7", from: `v${original.version}`, reducer })
    assert.deepInclude(before.structured.changes[0], { delta: duplicate.data.amount })

    // 7. A safe experiment: the compensating event in a fork, checked there before main is touched.
    const fork = await ok(agent, "create_fork", { labels: { purpose: "reverse duplicate withdrawal" } })
    const forkId = fork.structured.forkId
    const correction = {
      stream: "account-7",
      fork: forkId,
      expectedVersion: version,
      events: [{
        type: "WithdrawalReversed",
        data: { amount: -duplicate.data.amount, reason: "duplicate booking" },
        metadata: { correlationId: duplicate.metadata.correlationId, causationId: duplicate.eventId }
      }]
    }
    const preview = await ok(agent, "append_events", { ...correction, dryRun: true, previewReducer: reducer })
    assert.isAtLeast(preview.structured.stateAfter, 0)
    await ok(agent, "append_events", correction)
    const inFork = await ok(agent, "reconstruct_state", { stream: "account-7", reducer, fork: forkId })
    assert.strictEqual(inFork.structured.state, preview.structured.stateAfter)
    const stillMain = await ok(agent, "reconstruct_state", { stream: "account-7", reducer })
    assert.strictEqual(stillMain.structured.state, balance.structured.state, "the fork did not touch main")
    const diff = await ok(agent, "fork_diff", { fork: forkId })
    assert.deepStrictEqual(diff.structured.streams.map((s: any) => [s.stream, s.count]), [["account-7", 1]])

    // 8. Merge (checked first), verify, clean up.
    const check = await ok(agent, "merge_fork", { fork: forkId })
    assert.strictEqual(check.structured.status, "mergeable")
    const merged = await ok(agent, "merge_fork", { fork: forkId, dryRun: false })
    assert.strictEqual(merged.structured.status, "merged")
    const after = await ok(agent, "reconstruct_state", { stream: "account-7", reducer })
    assert.isAtLeast(after.structured.state, 0)
    assert.strictEqual(after.structured.state, 20)
    const audit = await ok(agent, "get_stream", { stream: "account-7", direction: "backward", limit: 1, withMetadata: true })
    assert.match(audit.structured.events[0], /WithdrawalReversed \{"amount":80,"reason":"duplicate booking"\} meta=.*causationId/)
    await ok(agent, "discard_fork", { fork: forkId })
  })
})
