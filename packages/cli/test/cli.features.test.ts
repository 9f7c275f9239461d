/**
 * The `chronos` commands of search, forks, subscriptions, consumer groups and projections, run as real processes
 * against a real node (a child process on a free port, memory log): JSON output checked field by field, text output
 * checked for what a user reads, exit codes and typed errors, and `subscribe` following live events until SIGINT.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { bin, chronos, lines, type NodeProcess, startNode } from "./support.ts"

/** Resolves once `predicate` holds for the text collected so far; rejects after `timeoutMs`. */
const waitFor = (what: string, get: () => string, predicate: (text: string) => boolean, timeoutMs = 20_000) =>
  new Promise<void>((resolve, reject) => {
    const started = Date.now()
    const poll = () => {
      if (predicate(get())) return resolve()
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}; got:\n${get()}`))
      setTimeout(poll, 25)
    }
    poll()
  })

describe("chronos CLI: search, forks, subscribe, consumer groups, projections", () => {
  let node: NodeProcess
  let url: string
  const ok = async (args: ReadonlyArray<string>) => {
    const result = await chronos([...args, "--url", url])
    expect(result.stderr === "" || result.code === 0 ? result.code : result.stderr).toBe(0)
    return result
  }
  const append = async (tenant: string, stream: string, type: string, data: unknown, extra: ReadonlyArray<string> = []) =>
    JSON.parse((await ok(["append", tenant, stream, "--type", type, "--data", JSON.stringify(data), ...extra])).stdout)

  beforeAll(async () => {
    node = await startNode(4, {
      // Named limits through the environment (`ChronosConfig.layerConfig`): a poison event parks after 2 attempts.
      CHRONOS_CONSUMER_ATTEMPTS_MAX: "2",
      CHRONOS_CONSUMER_RETRY_BACKOFF_MS: "10",
      CHRONOS_CONSUMER_RETRY_BACKOFF_MS_MAX: "20",
      CHRONOS_SEARCH_EMBEDDER: "test"
    })
    url = node.url
  }, 60_000)

  afterAll(async () => {
    await node?.stop()
  })

  it("lists the new commands in the help", async () => {
    const help = await chronos(["--help"])
    for (const command of ["search", "fork", "subscribe", "consumer", "projection"]) expect(help.stdout).toContain(command)
  })

  it("search: JSON hits and text, filtered by type and stream prefix", async () => {
    await append("srch", "ticket-1", "TicketOpened", { text: "printer on fire" })
    await append("srch", "ticket-2", "TicketOpened", { text: "password reset" })
    const last = await append("srch", "note-1", "NoteAdded", { text: "printer replaced" })
    const waitFor = last.positions.map((p: { partition: number; seq: number }) => `${p.partition}:${p.seq}`).join(",")
    const hits = lines((await ok(["search", "srch", "printer", "--mode", "keyword", "--wait-for", waitFor, "--json"])).stdout)
    expect(hits.map((h) => h.event.stream).sort()).toEqual(["note-1", "ticket-1"])
    expect(hits[0]).toMatchObject({ matchedBy: ["keyword"] })
    const typed = lines((await ok(["search", "srch", "printer", "--mode", "keyword", "--types", "TicketOpened", "--json"])).stdout)
    expect(typed.map((h) => h.event.stream)).toEqual(["ticket-1"])
    const prefixed = lines((await ok(["search", "srch", "printer", "--mode", "keyword", "--stream-prefix", "note-", "--json"])).stdout)
    expect(prefixed.map((h) => h.event.stream)).toEqual(["note-1"])
    const text = await ok(["search", "srch", "printer", "--mode", "keyword", "--limit", "1"])
    expect(text.stdout).toMatch(/^\d+\.\d{4} +keyword +\S+@0 +\w+ +\{"text":"printer/)
    const bad = await chronos(["search", "srch", "x", "--mode", "fuzzy", "--url", url])
    expect(bad.code).toBe(2)
  })

  it("fork: create, append and read in the fork, diff, merge --dry-run, merge, discard", async () => {
    await append("frk", "cart-1", "Added", { sku: "a" })
    const created = JSON.parse((await ok(["fork", "create", "frk", "--ttl", "600", "--label", "by=cli", "--json"])).stdout)
    expect(created).toMatchObject({ parent: "main", ttlSeconds: 600, labels: { by: "cli" } })
    const fork = created.forkId as string

    expect(await append("frk", "cart-1", "Added", { sku: "b" }, ["--fork", fork, "--expected-version", "0"])).toMatchObject({ firstVersion: 1 })
    expect(lines((await ok(["read", "frk", "cart-1", "--fork", fork])).stdout).map((e) => e.data.sku)).toEqual(["a", "b"])
    expect(lines((await ok(["read", "frk", "cart-1"])).stdout).map((e) => e.data.sku)).toEqual(["a"])
    expect(lines((await ok(["query", "frk", "--types", "Added", "--fork", fork])).stdout)).toHaveLength(2)
    expect(JSON.parse((await ok(["state", "frk", "cart-1", "--reducer", "count", "--fork", fork])).stdout).state).toBe(2)

    expect(lines((await ok(["fork", "list", "frk", "--json"])).stdout)[0].forks.map((f: { forkId: string }) => f.forkId)).toEqual([fork])
    const diff = JSON.parse((await ok(["fork", "diff", "frk", fork, "--json"])).stdout)
    expect(diff.streams.map((s: any) => [s.stream, s.baseVersion, s.events.length])).toEqual([["cart-1", 0, 1]])
    const diffText = await ok(["fork", "diff", "frk", fork])
    expect(diffText.stdout).toContain("+ cart-1@1  Added")

    const dry = JSON.parse((await ok(["fork", "merge", "frk", fork, "--dry-run", "--json"])).stdout)
    expect(dry).toMatchObject({ dryRun: true, status: "mergeable" })
    expect(lines((await ok(["read", "frk", "cart-1"])).stdout)).toHaveLength(1)
    const merged = await ok(["fork", "merge", "frk", fork])
    expect(merged.stdout).toContain("cart-1: merged, 1 events, 1 appended")
    expect(lines((await ok(["read", "frk", "cart-1"])).stdout).map((e) => e.data.sku)).toEqual(["a", "b"])

    expect((await ok(["fork", "discard", "frk", fork])).stdout).toBe(`discarded ${fork}\n`)
    const gone = await chronos(["read", "frk", "cart-1", "--fork", fork, "--url", url])
    expect(gone.code).toBe(1)
    expect(gone.stderr).toMatch(/^error: ForkNotFound: frk\//)
  }, 120_000)

  it("fork merge that conflicts exits 1 and names the stream in the way", async () => {
    await append("frk2", "acct", "Opened", {})
    const fork = JSON.parse((await ok(["fork", "create", "frk2", "--json"])).stdout).forkId as string
    await append("frk2", "acct", "InFork", {}, ["--fork", fork])
    await append("frk2", "acct", "InParent", {})
    const conflict = await chronos(["fork", "merge", "frk2", fork, "--url", url])
    expect(conflict.code).toBe(1)
    expect(conflict.stderr).toMatch(/^error: ForkMergeConflict: .*streams: acct \(conflict: InParent@1\)/)
  }, 60_000)

  it("subscribe: the history with --until-caught-up, then live events until SIGINT", async () => {
    for (let i = 0; i < 3; i++) await append("sub", "s", "Tick", { i })
    const history = lines((await ok(["subscribe", "sub", "--json", "--until-caught-up"])).stdout)
    expect(history.map((item) => item._tag === "Event" ? item.event.streamVersion : item._tag)).toEqual([0, 1, 2, "CaughtUp"])
    // Resuming from the second event's position prints exactly the rest.
    const resumed = lines((await ok(["subscribe", "sub", "--json", "--until-caught-up", "--from", history[1].position])).stdout)
    expect(resumed.map((item) => item._tag === "Event" ? item.event.streamVersion : item._tag)).toEqual([2, "CaughtUp"])

    const child = spawn(process.execPath, [bin, "subscribe", "sub", "--types", "Tick", "--url", url], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal === null ? null : 128))))
    await waitFor("the caught-up line", () => err, (t) => t.includes("caught up"))
    await append("sub", "s", "Tick", { i: 3 })
    await append("sub", "s", "Tock", {})
    await append("sub", "s", "Tick", { i: 5 })
    await waitFor("the live events", () => out, (t) => t.includes("s@5"))
    child.kill("SIGINT")
    expect(await exited).toBe(130)
    expect(err).not.toContain("error")
    const printed = out.trim().split("\n").map((l) => /\ss@(\d+)\s/.exec(l)?.[1])
    expect(printed).toEqual(["0", "1", "2", "3", "5"])
  }, 120_000)

  it("consumer: create, next, ack, nack until parked, parked, replay", async () => {
    await append("grp", "o-1", "Order", { n: 1 })
    await append("grp", "o-2", "Poison", { n: 2 })
    const created = JSON.parse((await ok(["consumer", "create", "grp", "billing", "--types", "Order,Poison", "--json"])).stdout)
    expect(created).toMatchObject({ name: "billing", filter: { types: ["Order", "Poison"] } })
    const deliveries = lines((await ok(["consumer", "next", "grp", "billing", "--max", "10", "--wait-ms", "2000", "--json"])).stdout)
    expect(deliveries.map((d) => [d.event.type, d.attempt]).sort()).toEqual([["Order", 1], ["Poison", 1]])
    const order = deliveries.find((d) => d.event.type === "Order").deliveryId
    const poison = deliveries.find((d) => d.event.type === "Poison").deliveryId
    expect((await ok(["consumer", "ack", "grp", "billing", order])).stdout).toBe("acked 1\n")
    expect(JSON.parse((await ok(["consumer", "nack", "grp", "billing", poison, "--json"])).stdout)).toEqual({ retrying: 1, parked: 0, unknown: [] })
    const again = lines((await ok(["consumer", "next", "grp", "billing", "--wait-ms", "5000", "--json"])).stdout)
    expect(again.map((d) => [d.deliveryId, d.attempt])).toEqual([[poison, 2]])
    expect(JSON.parse((await ok(["consumer", "nack", "grp", "billing", poison, "--json"])).stdout)).toEqual({ retrying: 0, parked: 1, unknown: [] })
    const parked = lines((await ok(["consumer", "parked", "grp", "billing", "--json"])).stdout)
    expect(parked.map((p) => [p.deliveryId, p.attempts, p.type])).toEqual([[poison, 2, "Poison"]])
    const status = await ok(["consumer", "get", "grp", "billing"])
    expect(status.stdout).toContain("parked    1")
    expect((await ok(["consumer", "replay", "grp", "billing"])).stdout).toBe("replayed 1\n")
    const missing = await chronos(["consumer", "get", "grp", "nobody", "--url", url])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^error: ConsumerGroupNotFound/)
  }, 120_000)

  it("consumer groups over --data-dir keep their position between invocations; forks live in the data dir too", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-cli-"))
    try {
      const local = async (args: ReadonlyArray<string>) => {
        const result = await chronos([...args, "--data-dir", dir])
        expect(result.code === 0 ? 0 : result.stderr).toBe(0)
        return result
      }
      await local(["append", "acme", "a", "--type", "T", "--data", "1"])
      await local(["append", "acme", "b", "--type", "T", "--data", "2"])
      await local(["consumer", "create", "acme", "g"])
      const first = lines((await local(["consumer", "next", "acme", "g", "--max", "1", "--wait-ms", "2000", "--json"])).stdout)
      expect(first).toHaveLength(1)
      await local(["consumer", "ack", "acme", "g", first[0].deliveryId])
      const second = lines((await local(["consumer", "next", "acme", "g", "--max", "10", "--wait-ms", "2000", "--json"])).stdout)
      expect(second.map((d) => d.event.data)).toEqual([first[0].event.data === 1 ? 2 : 1])
      // Forks are recorded in the data dir (as a node records them): one created here is listed by the next process.
      const created = JSON.parse((await local(["fork", "create", "acme", "--json"])).stdout)
      const listed = lines((await local(["fork", "list", "acme", "--json"])).stdout)[0].forks
      expect(listed.map((f: { forkId: string }) => f.forkId)).toEqual([created.forkId])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)

  it("projection: define, state, rebuild with progress", async () => {
    await append("prj", "acct-1", "Deposited", { amount: 5 })
    await append("prj", "acct-1", "Deposited", { amount: 7 })
    await append("prj", "acct-2", "Deposited", { amount: 1 })
    const defined = JSON.parse((await ok(["projection", "define", "prj", "balances", "--kind", "sum", "--field", "amount", "--types", "Deposited", "--json"])).stdout)
    expect(defined).toMatchObject({ name: "balances", definition: { kind: "sum", field: "amount", groupBy: "stream" } })
    // The rebuild returns once the projection reached the head, so the state is then complete.
    const rebuilt = await ok(["projection", "rebuild", "prj", "balances", "--json"])
    expect(rebuilt.stderr).toMatch(/rebuilt balances in \d+\.\d s: 3 events folded, running \(live\)/)
    expect(JSON.parse(rebuilt.stdout)).toMatchObject({ status: "running", phase: "live", state: { "acct-1": 12, "acct-2": 1 } })
    expect(JSON.parse((await ok(["projection", "state", "prj", "balances", "--key", "acct-1", "--json"])).stdout)).toMatchObject({ key: "acct-1", value: 12 })
    const text = await ok(["projection", "get", "prj", "balances"])
    expect(text.stdout).toContain("projection balances: running (live), 3 events folded, 2 keys")
    const badGroup = await chronos(["projection", "define", "prj", "x", "--kind", "count", "--group-by", "nope", "--url", url])
    expect(badGroup.code).toBe(2)
  }, 120_000)
})
