/**
 * The MCP server over stdio, driven by the official SDK client: `main.ts --data-dir` (the store opened in the server
 * process) and `main.ts --url` (a running node, through the HTTP client SDK).
 */
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { call, checkCatalogue, type Connected, connectStdio, exerciseEveryTool, fails, ok, startNode } from "./support.ts"

describe("stdio, embedded (--data-dir)", () => {
  let dataDir: string
  let c: Connected

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-mcp-"))
    c = await connectStdio(["--data-dir", dataDir, "--partitions", "4", "--tenant", "bank"])
  })
  afterAll(async () => {
    await c?.close()
    fs.rmSync(dataDir, { recursive: true, force: true })
  })

  it("lists tools with annotations and schemas, guides and prompts", async () => {
    await checkCatalogue(c)
    const initialize = c.client.getInstructions()
    assert.match(initialize ?? "", /describe_store/)
  })

  it("calls every tool, and returns fixable errors as isError results", async () => {
    await exerciseEveryTool(c, "stdio-embedded")
  })

  it("starts with the --tenant tenant, and writes nothing but MCP to stdout", async () => {
    const fresh = await connectStdio(["--data-dir", fs.mkdtempSync(path.join(os.tmpdir(), "chronos-mcp-")), "--tenant", "acme"])
    try {
      const described = await ok(fresh, "describe_store")
      assert.strictEqual(described.structured.tenant, "acme")
      assert.match(described.text, /no events/)
      // Any stray stdout line would have broken the SDK's JSON-RPC parsing before this point.
      assert.notMatch(fresh.stderr(), /Error/)
    } finally {
      await fresh.close()
    }
  })

  it("has forks in embedded mode", async () => {
    const fork = await ok(c, "create_fork", { tenant: "stdio-embedded" })
    const forkId = fork.structured.forkId
    await ok(c, "append_events", { stream: "account-2", fork: forkId, expectedVersion: 0, events: [{ type: "Closed", data: {} }] })
    const diff = await ok(c, "fork_diff", { fork: forkId })
    assert.strictEqual(diff.structured.events, 1)
    const main = await ok(c, "get_stream", { stream: "account-2" })
    assert.strictEqual(main.structured.version, 0)
    await ok(c, "discard_fork", { fork: forkId })
  })

  it("keeps the data: a new process over the same directory sees the events", async () => {
    await c.close()
    c = await connectStdio(["--data-dir", dataDir])
    const state = await ok(c, "reconstruct_state", { tenant: "stdio-embedded", stream: "account-1" })
    assert.deepStrictEqual(state.structured.state, { owner: "ann", amount: 100 })
  })
})

describe("stdio, embedded over a node's data directory", () => {
  it("applies the store's retention to reads, in main and in a fork, and reads sealed events back from segments", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-mcp-retention-"))
    const node = await startNode({ logDriver: "file", dataDir })
    const post = (p: string, body: unknown, method = "POST") =>
      fetch(`${node.url}${p}`, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
    try {
      for (let i = 0; i < 4; i++) {
        const res = await post("/v1/tenants/bank/streams/account-9/events", { events: [{ type: "Deposited", data: { i } }] })
        assert.strictEqual(res.status, 200)
      }
      // The last two versions only; then everything durable goes to a segment (bodies read back from Parquet).
      assert.strictEqual((await post("/v1/tenants/bank/streams/account-9/retention", { maxCount: 2 }, "PUT")).status, 200)
      assert.strictEqual((await post("/v1/admin/seal", {})).status, 200)
    } finally {
      await node.stop()
    }
    const c = await connectStdio(["--data-dir", dataDir, "--tenant", "bank"])
    try {
      const versionsOf = (r: { structured: { events: ReadonlyArray<{ version: number }> } }) =>
        r.structured.events.map((e) => e.version)
      // maxCount 2 keeps versions 3 and 4 (the `$metadata` event at 4 counts and stays visible).
      const main = await ok(c, "get_stream", { stream: "account-9", format: "json" })
      assert.deepStrictEqual(versionsOf(main), [3, 4])
      const fork = await ok(c, "create_fork", {})
      const inFork = await ok(c, "get_stream", { stream: "account-9", format: "json", fork: fork.structured.forkId })
      assert.deepStrictEqual(versionsOf(inFork), [3, 4])
    } finally {
      await c.close()
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

describe("stdio, remote (--url to a running node)", () => {
  let node: { url: string; stop: () => Promise<void> }
  let c: Connected

  beforeAll(async () => {
    node = await startNode()
    c = await connectStdio(["--url", node.url])
  })
  afterAll(async () => {
    await c?.close()
    await node?.stop()
  })

  it("calls every tool through the HTTP client SDK", async () => {
    await checkCatalogue(c)
    await exerciseEveryTool(c, "stdio-remote")
  })

  it("has no fork tools over a remote store, and says so when asked for a fork", async () => {
    const { tools } = await c.client.listTools()
    assert.notInclude(tools.map((t) => t.name), "create_fork")
    await fails(c, "get_stream", { stream: "account-1", fork: "f-1" }, /this server has no forks/)
    const guide = await c.client.readResource({ uri: "chronos://guides/forks" })
    assert.match((guide.contents[0] as { text: string }).text, /not available on this server/)
  })

  it("fails at start-up with a clear message when the node cannot be reached", async () => {
    const { spawnSync } = await import("node:child_process")
    const { repoRoot } = await import("./support.ts")
    const result = spawnSync(
      path.join(repoRoot, "node_modules/.bin/node"),
      [path.join(repoRoot, "packages/mcp/src/main.ts"), "--url", "http://127.0.0.1:9"],
      { input: "", encoding: "utf8", timeout: 60_000, env: { ...process.env } }
    )
    assert.notStrictEqual(result.status, 0)
    assert.match(result.stderr, /cannot reach the node/)
    assert.strictEqual(result.stdout, "")
  })

  it("rejects bad arguments with usage on stderr", async () => {
    const { spawnSync } = await import("node:child_process")
    const { repoRoot } = await import("./support.ts")
    const result = spawnSync(path.join(repoRoot, "node_modules/.bin/node"), [path.join(repoRoot, "packages/mcp/src/main.ts")], {
      encoding: "utf8",
      timeout: 60_000
    })
    assert.strictEqual(result.status, 2)
    assert.match(result.stderr, /exactly one of --url and --data-dir/)
    void call
  })
})
