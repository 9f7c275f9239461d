import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { chronos, lines, type NodeProcess, startNode } from "./support.ts"

describe("chronos CLI", () => {
  let node: NodeProcess
  let url: string
  const dataDirs: Array<string> = []
  const tempDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-cli-"))
    dataDirs.push(dir)
    return dir
  }

  beforeAll(async () => {
    // A node on a free port (`--port 0`); its address comes from the "listening on" line.
    node = await startNode(4)
    url = node.url
  })

  afterAll(async () => {
    await node?.stop()
    for (const dir of dataDirs) fs.rmSync(dir, { recursive: true, force: true })
  })

  it("prints help and exits 0", async () => {
    const result = await chronos(["--help"])
    expect(result.code).toBe(0)
    for (const command of ["start", "append", "read", "query", "state", "partitions"]) {
      expect(result.stdout).toContain(command)
    }
  })

  it("exits 2 on a usage error", async () => {
    const unknownFlag = await chronos(["read", "acme", "s", "--bogus"])
    expect(unknownFlag.code).toBe(2)
    const missingArgument = await chronos(["read", "acme"])
    expect(missingArgument.code).toBe(2)
    const badJson = await chronos(["append", "acme", "s", "--type", "A", "--data", "{nope", "--url", url])
    expect(badJson.code).toBe(2)
    expect(badJson.stderr).toContain("--data")
    const noData = await chronos(["append", "acme", "s", "--type", "A", "--url", url])
    expect(noData.code).toBe(2)
    expect(noData.stderr).toMatch(/^error: /m)
  })

  it("appends to and reads from a node", async () => {
    const first = await chronos(["append", "acme", "order-1", "--type", "Placed", "--data", "{\"total\":10}", "--expected-version", "no_stream", "--url", url])
    expect(first.stderr).toBe("")
    expect(first.code).toBe(0)
    expect(JSON.parse(first.stdout)).toMatchObject({ firstVersion: 0, lastVersion: 0 })
    const id = "0b6a1f4e-3f7e-4a59-9a9e-6f1a2d3c4b5e"
    const second = await chronos(["append", "acme", "order-1", "--type", "Paid", "--data", "{\"paid\":true}", "--metadata", "{\"by\":\"cli\"}", "--event-id", id, "--expected-version", "0", "--url", url])
    expect(second.code).toBe(0)

    const read = await chronos(["read", "acme", "order-1", "--url", url])
    expect(read.code).toBe(0)
    const events = lines(read.stdout)
    expect(events.map((e) => [e.type, e.streamVersion])).toEqual([["Placed", 0], ["Paid", 1]])
    expect(events[1]).toMatchObject({ eventId: id, metadata: { by: "cli" }, data: { paid: true } })

    const backward = await chronos(["read", "acme", "order-1", "--backward", "--limit", "1", "--url", url])
    expect(lines(backward.stdout).map((e) => e.type)).toEqual(["Paid"])
    const query = await chronos(["query", "acme", "--types", "Placed,Paid", "--url", url])
    expect(lines(query.stdout)).toHaveLength(2)
    const state = await chronos(["state", "acme", "order-1", "--url", url])
    expect(JSON.parse(state.stdout)).toMatchObject({ version: 1, state: { total: 10, paid: true } })
    const partitions = await chronos(["partitions", "--url", url])
    expect(lines(partitions.stdout)).toHaveLength(4)

    // A failed request: one line on stderr naming the error, exit 1.
    const conflict = await chronos(["append", "acme", "order-1", "--type", "X", "--data", "1", "--expected-version", "no_stream", "--url", url])
    expect(conflict.code).toBe(1)
    expect(conflict.stderr).toMatch(/^error: WrongExpectedVersion: /)
    const invalid = await chronos(["append", "acme", "order-1", "--type", "9x", "--data", "1", "--url", url])
    expect(invalid.code).toBe(1)
    expect(invalid.stderr).toMatch(/^error: InvalidRequest: events\[0\]\.type: /)
  })

  it("appends an NDJSON file in batches, with progress on stderr", async () => {
    const file = path.join(tempDir(), "events.ndjson")
    const count = 2_500
    fs.writeFileSync(file, Array.from({ length: count }, (_, i) => JSON.stringify({ type: "Tick", data: { i } })).join("\n") + "\n")
    const result = await chronos(["append", "acme", "ticks", "--file", file, "--expected-version", "no_stream", "--url", url])
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({ events: count, appends: 3, firstVersion: 0, lastVersion: count - 1 })
    expect(result.stderr).toMatch(/appended 2500 events in 3 appends/)
    const read = await chronos(["read", "acme", "ticks", "--from", "2499", "--url", url])
    expect(lines(read.stdout)).toMatchObject([{ streamVersion: 2499, data: { i: 2499 } }])
  })

  it("runs embedded over a data dir with --data-dir", async () => {
    const dataDir = tempDir()
    const append = await chronos(["append", "acme", "s1", "--type", "A", "--data", "{\"a\":1}", "--data-dir", dataDir])
    expect(append.stderr).toBe("")
    expect(append.code).toBe(0)
    const read = await chronos(["read", "acme", "s1", "--data-dir", dataDir])
    expect(read.code).toBe(0)
    expect(lines(read.stdout)).toMatchObject([{ type: "A", data: { a: 1 }, streamVersion: 0 }])
    const both = await chronos(["read", "acme", "s1", "--data-dir", dataDir, "--url", url])
    expect(both.code).toBe(2)
  })

  // The shim re-executes itself with the project's Node 22 when started by an older Node.
  const oldNode = ["/usr/bin/node", "/usr/local/bin/node"].find((candidate) => {
    if (!fs.existsSync(candidate)) return false
    const version = execFileSync(candidate, ["--version"]).toString()
    return Number(/^v(\d+)/.exec(version)?.[1] ?? 99) < 22
  })
  it.skipIf(oldNode === undefined)("works when started by a Node older than 22", async () => {
    const result = await chronos(["--version"], oldNode)
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("0.1.0")
    const usage = await chronos(["read"], oldNode)
    expect(usage.code).toBe(2)
  })
})
