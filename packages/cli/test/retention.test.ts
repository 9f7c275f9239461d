// `chronos retention set|get`, `chronos delete-stream` (over a node and over --data-dir) and `chronos verify --nats`,
// through the real executable.
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as NatsSegmentStore from "@chronos/storage/internal/natsSegmentStore"
import { startNatsServer } from "../../../test/support/NatsServer.ts"
import type { NatsServerHandle } from "../../../test/support/NatsServer.ts"
import { chronos, type NodeProcess, startNode } from "./support.ts"

const labels = (stdout: string) =>
  stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { streamVersion: number; type: string })
    .map((e) => `${e.streamVersion}:${e.type}`)

describe("chronos retention, delete-stream and verify --nats", () => {
  let node: NodeProcess
  let url: string
  let nats: NatsServerHandle
  const dirs: Array<string> = []

  beforeAll(async () => {
    node = await startNode(2)
    url = node.url
    nats = await startNatsServer()
  }, 60_000)

  afterAll(async () => {
    await node?.stop()
    await nats?.stop()
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  })

  it("over a node: set and get retention, invalid settings exit 1 naming the field, soft delete", async () => {
    for (let i = 0; i < 4; i++) {
      expect((await chronos(["append", "acme", "s1", "--type", "Data", "--data", `{"i":${i}}`, "--url", url])).code).toBe(0)
    }
    const set = await chronos(["retention", "set", "acme", "s1", "--max-count", "3", "--json", "--url", url])
    expect(set.code, set.stderr).toBe(0)
    expect(JSON.parse(set.stdout)).toEqual({ stream: "s1", maxCount: 3, lastVersion: 4 })
    expect(labels((await chronos(["read", "acme", "s1", "--url", url])).stdout)).toEqual(["2:Data", "3:Data", "4:$metadata"])
    const got = await chronos(["retention", "get", "acme", "s1", "--url", url])
    expect(got.code).toBe(0)
    expect(got.stdout).toContain("maxCount        3")
    const bad = await chronos(["retention", "set", "acme", "s1", "--max-count", "0", "--url", url])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("InvalidRequest: maxCount")
    const stale = await chronos(["delete-stream", "acme", "s1", "--expected-version", "2", "--url", url])
    expect(stale.code).toBe(1)
    expect(stale.stderr).toContain("WrongExpectedVersion")
    const del = await chronos(["delete-stream", "acme", "s1", "--expected-version", "4", "--json", "--url", url])
    expect(del.code, del.stderr).toBe(0)
    expect(JSON.parse(del.stdout)).toMatchObject({ stream: "s1", hard: false, version: 5 })
    expect(labels((await chronos(["read", "acme", "s1", "--url", url])).stdout)).toEqual(["4:$metadata", "5:$deleted"])
    const missing = await chronos(["delete-stream", "acme", "nothing", "--url", url])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("StreamNotFound")
  }, 120_000)

  it("over --data-dir: hard delete, then seal; get reports it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-cli-retention-"))
    dirs.push(dir)
    for (let i = 0; i < 3; i++) {
      expect((await chronos(["append", "acme", "gone", "--type", "Data", "--data", `{"i":${i}}`, "--data-dir", dir])).code).toBe(0)
    }
    const del = await chronos(["delete-stream", "acme", "gone", "--hard", "--json", "--data-dir", dir])
    expect(del.code, del.stderr).toBe(0)
    expect(JSON.parse(del.stdout)).toMatchObject({ hard: true, version: 3 })
    expect((await chronos(["seal", "--data-dir", dir])).code).toBe(0)
    const got = await chronos(["retention", "get", "acme", "gone", "--json", "--data-dir", dir])
    expect(got.code, got.stderr).toBe(0)
    // The last line: the cold boot's log line comes first on stdout after a seal (the CLI's logger, not this command).
    const last = got.stdout.trim().split("\n").pop()!
    expect(JSON.parse(last)).toEqual({ stream: "gone", deletedBefore: 4, hardDeletedBefore: 4, lastVersion: 3 })
    expect((await chronos(["verify", "--data-dir", dir])).code).toBe(0)
  }, 120_000)

  it("verify --nats scrubs a NATS segment store; a missing store exits 1", async () => {
    const missing = await chronos(["verify", "--nats", nats.url])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("corrupt")
    // An (empty) store: its buckets exist.
    await Effect.runPromise(Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* NatsSegmentStore.make({ servers: [nats.url], replicas: 1, requestTimeoutMs: 10_000 }).pipe(
        Effect.provideService(Scope.Scope, scope)
      )
      yield* Scope.close(scope, Exit.void)
    }))
    const ok = await chronos(["verify", "--nats", nats.url])
    expect(ok.code, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, partitions: 0, problems: 0 })
  }, 120_000)
})
