/**
 * Test support: real MCP clients (the official TypeScript SDK) connected to the Chronos MCP server over stdio (a
 * child process running `main.ts`) and over Streamable HTTP (a real node in this process, serving `/mcp`), and
 * helpers that check a tool result the way an agent would read it.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { Effect, Layer, ManagedRuntime } from "effect"
import { HttpServer } from "effect/http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assert } from "vitest"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import * as Node from "@chronos/server/Node"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
const nodeBin = path.join(repoRoot, "node_modules/.bin/node")
const mainTs = path.join(repoRoot, "packages/mcp/src/main.ts")

/** A node in this process over the memory log, on a free loopback port. */
export const startNode = async (overrides: Partial<ChronosConfigShape> = {}) => {
  const runtime = ManagedRuntime.make(
    Node.layerFromConfig({}).pipe(
      Layer.provideMerge(ChronosConfig.layer({
        httpHost: "127.0.0.1",
        httpPort: 0,
        logDriver: "memory",
        partitions: 4,
        ...overrides
      }))
    )
  )
  const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
  if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
  return { url: `http://127.0.0.1:${address.port}`, stop: () => runtime.dispose() }
}

export interface Connected {
  readonly client: Client
  readonly close: () => Promise<void>
  readonly sessionId: () => string | undefined
  readonly stderr: () => string
}

const newClient = () => new Client({ name: "chronos-mcp-test", version: "1.0.0" })

/** The official SDK client over Streamable HTTP at `<url>/mcp`. */
export const connectHttp = async (url: string): Promise<Connected> => {
  const client = newClient()
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`))
  await client.connect(transport)
  // Listing the tools makes the SDK validate every later structuredContent against the tool's outputSchema.
  await client.listTools()
  return {
    client,
    sessionId: () => transport.sessionId,
    stderr: () => "",
    close: async () => {
      await transport.terminateSession().catch(() => undefined)
      await client.close()
    }
  }
}

/** The official SDK client over stdio, spawning `node packages/mcp/src/main.ts <args>`. */
export const connectStdio = async (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Connected> => {
  const client = newClient()
  const transport = new StdioClientTransport({
    command: nodeBin,
    args: [mainTs, ...args],
    cwd: repoRoot,
    env: { ...(process.env as Record<string, string>), ...env },
    stderr: "pipe"
  })
  let stderr = ""
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString()))
  await client.connect(transport)
  await client.listTools()
  return { client, sessionId: () => undefined, stderr: () => stderr, close: () => client.close() }
}

export interface Result {
  readonly text: string
  readonly structured: any
  readonly isError: boolean
}

export const call = async (connected: Connected, name: string, args: Record<string, unknown> = {}): Promise<Result> => {
  const result = await connected.client.callTool({ name, arguments: args })
  const content = result.content as Array<{ type: string; text: string }>
  assert.strictEqual(content[0]?.type, "text", `${name}: a text content block`)
  return { text: content[0]!.text, structured: result.structuredContent, isError: result.isError === true }
}

/** A successful call: structured content present (the SDK validated it against the tool's outputSchema). */
export const ok = async (connected: Connected, name: string, args: Record<string, unknown> = {}): Promise<Result> => {
  const result = await call(connected, name, args)
  assert.isFalse(result.isError, `${name} failed: ${result.text}`)
  assert.isDefined(result.structured, `${name}: structuredContent`)
  return result
}

/** A failed call: an `isError` result (not a protocol error) whose message matches. */
export const fails = async (
  connected: Connected,
  name: string,
  args: Record<string, unknown>,
  message: RegExp
): Promise<Result> => {
  const result = await call(connected, name, args)
  assert.isTrue(result.isError, `${name} should fail, got: ${result.text}`)
  assert.isUndefined(result.structured)
  assert.match(result.text, message)
  return result
}

export const toolNames = [
  "describe_store",
  "query_events",
  "next_page",
  "get_stream",
  "reconstruct_state",
  "compare_states",
  "event_timeline",
  "sample_events",
  "append_events",
  "cluster_status"
]

export const guideUris = [
  "chronos://guides/event-sourcing-basics",
  "chronos://guides/time-travel",
  "chronos://guides/debugging-state",
  "chronos://guides/query-patterns",
  "chronos://guides/errors",
  "chronos://guides/forks"
]

export const promptNames = ["investigate_entity", "run_safe_experiment", "audit_trail", "compliance_as_of"]

/** Lists everything and checks the catalogue: tools with annotations and schemas, guides, prompts. */
export const checkCatalogue = async (connected: Connected) => {
  const { tools } = await connected.client.listTools()
  assert.includeMembers(tools.map((t) => t.name), toolNames)
  for (const tool of tools) {
    assert.isAbove(tool.description?.length ?? 0, 200, `${tool.name}: a description with guidance`)
    const a = tool.annotations!
    assert.isBoolean(a.readOnlyHint, `${tool.name}: readOnlyHint`)
    assert.isBoolean(a.destructiveHint, `${tool.name}: destructiveHint`)
    assert.isBoolean(a.idempotentHint, `${tool.name}: idempotentHint`)
    assert.strictEqual(tool.inputSchema.type, "object")
    assert.isDefined(tool.outputSchema, `${tool.name}: outputSchema`)
    const limit = (tool.inputSchema.properties as Record<string, any> | undefined)?.["limit"] ??
      (tool.inputSchema.properties as Record<string, any> | undefined)?.["size"]
    if (limit !== undefined) {
      assert.isNumber(limit.default, `${tool.name}: limit default`)
      assert.isNumber(limit.maximum, `${tool.name}: limit maximum`)
    }
  }
  const byName = new Map(tools.map((t) => [t.name, t]))
  assert.isTrue(byName.get("query_events")!.annotations!.readOnlyHint)
  assert.isFalse(byName.get("append_events")!.annotations!.readOnlyHint)
  assert.isFalse(byName.get("append_events")!.annotations!.destructiveHint)

  const { resources } = await connected.client.listResources()
  assert.includeMembers(resources.map((r) => r.uri), guideUris)
  const guide = await connected.client.readResource({ uri: "chronos://guides/debugging-state" })
  assert.match((guide.contents[0] as { text: string }).text, /compensating event/)

  const { prompts } = await connected.client.listPrompts()
  assert.includeMembers(prompts.map((p) => p.name), promptNames)
  const prompt = await connected.client.getPrompt({
    name: "investigate_entity",
    arguments: { stream: "account-7", question: "why is the balance negative?" }
  })
  assert.match((prompt.messages[0]!.content as { text: string }).text, /reconstruct_state \(stream account-7/)
  const experiment = await connected.client.getPrompt({ name: "run_safe_experiment", arguments: { change: "reverse it" } })
  assert.match((experiment.messages[0]!.content as { text: string }).text, /dryRun/)
}

/**
 * Calls every tool once on a seeded tenant and checks what an agent relies on; shared by the stdio and HTTP suites.
 * The tenant `tenant` must be empty.
 */
export const exerciseEveryTool = async (c: Connected, tenant: string) => {
  const opened = await ok(c, "append_events", {
    tenant,
    stream: "account-1",
    expectedVersion: "no_stream",
    events: [{ type: "Opened", data: { owner: "ann" } }, { type: "Deposited", data: { amount: 100 } }]
  })
  assert.deepInclude(opened.structured, { firstVersion: 0, lastVersion: 1, dryRun: false })
  assert.match(opened.text, /appended · account-1 .* v0-v1/)
  await ok(c, "append_events", {
    stream: "account-2",
    expectedVersion: "no_stream",
    events: [{ type: "Opened", data: { owner: "bob" } }]
  })

  const described = await ok(c, "describe_store", {})
  assert.strictEqual(described.structured.tenant, tenant, "the session remembered the tenant")
  assert.isTrue(described.structured.exact)
  assert.strictEqual(described.structured.events, 3)
  const opens = described.structured.types.find((t: any) => t.type === "Opened")
  assert.deepInclude(opens, { count: 2, streams: 2, shape: "{owner: string}" })
  assert.deepStrictEqual(opens.streamPatterns, ["account-{n}"])

  const queried = await ok(c, "query_events", { types: ["Opened"] })
  assert.strictEqual(queried.structured.count, 2)
  assert.match(queried.structured.events[0], /^v0 \S+ account-\d Opened \{"owner":"(ann|bob)"\}$/)

  const stream = await ok(c, "get_stream", { stream: "account-1", format: "json", withMetadata: true })
  assert.strictEqual(stream.structured.version, 1)
  assert.deepInclude(stream.structured.events[1], { type: "Deposited", version: 1, data: { amount: 100 } })

  const state = await ok(c, "reconstruct_state", { stream: "account-1" })
  assert.deepStrictEqual(state.structured.state, { owner: "ann", amount: 100 })
  assert.deepInclude(state.structured.lastEvent, { version: 1, type: "Deposited" })

  const compared = await ok(c, "compare_states", { stream: "account-1", from: "v0" })
  assert.deepStrictEqual(compared.structured.changes, [{ path: "amount", change: "added", after: 100 }])
  assert.strictEqual(compared.structured.eventsBetween, 1)

  const timeline = await ok(c, "event_timeline", { stream: "account-1" })
  assert.deepStrictEqual(timeline.structured.entries.map((e: any) => e.type), ["Opened", "Deposited"])

  const sample = await ok(c, "sample_events", { size: 5 })
  assert.strictEqual(sample.structured.count, 3)
  assert.deepStrictEqual(sample.structured.typesCovered, ["Deposited", "Opened"])

  const status = await ok(c, "cluster_status", { detail: true })
  assert.isAtLeast(status.structured.events, 3)
  assert.strictEqual(status.structured.detail.length, status.structured.partitions)

  await ok(c, "get_stream", { stream: "account-1", limit: 1 })
  const next = await ok(c, "next_page", {})
  assert.strictEqual(next.structured.events[0].split(" ")[0], "v1", "next_page continues get_stream")

  // Errors the model can fix: isError results with the store's numbers and the next step.
  await fails(c, "append_events", {
    stream: "account-1",
    expectedVersion: 0,
    events: [{ type: "Deposited", data: { amount: 1 } }]
  }, /at version 1, not 0.*retry with expectedVersion 1/)
  await fails(c, "get_stream", { stream: "account-404" }, /no stream account-404 in tenant/)
  await fails(c, "query_events", { type: "Opened" }, /Accepted arguments: .*types/)
  await fails(c, "query_events", { since: "the day before the war" }, /cannot read .* as a time/)
  await fails(c, "query_events", { limit: 100_000 }, /between 1 and 200/)
  await fails(c, "reconstruct_state", { stream: "account-1", reducer: "avg" }, /unknown reducer/)
}
