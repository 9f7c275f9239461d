/**
 * The retention endpoints over real HTTP, on a node with the file log and its local cold tier: settings hide events
 * from reads at once, soft deletion hides and versions continue, hard deletion erases payloads at the next seal
 * (read back from the Parquet segments), invalid requests are 400s naming the field, `?fork=` is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SegmentFormat from "@chronos/storage/SegmentFormat"
import { type Client, type Response, startInProcess } from "./support.ts"

const send = (url: string, method: string, body?: unknown): Promise<Response> =>
  fetch(url, {
    method,
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  }).then(async (res) => {
    const text = await res.text()
    return { status: res.status, body: text === "" ? undefined : JSON.parse(text) }
  })

const secret = "card 4111-1111-1111-1111"

/** Every row of every segment under `dataDir`, as `stream/version:type` with its data. */
const segmentRows = (dataDir: string) => {
  const dir = path.join(dataDir, "segments")
  const files = fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".parquet"))
  const rows: Array<{ label: string; data: string }> = []
  for (const f of files) {
    const c = SegmentFormat.decode(new Uint8Array(fs.readFileSync(path.join(dir, f))))
    for (let i = 0; i < c.rows; i++) rows.push({ label: `${c.stream[i]}/${c.streamVersion[i]}:${c.type[i]}`, data: c.data[i]! })
  }
  return rows
}

describe("retention and deletion over HTTP", () => {
  let dataDir: string
  let node: { client: Client; stop: () => Promise<void> }
  const base = "/v1/tenants/acme/streams"
  const url = (p: string) => node.client.url + base + p

  const put = async (stream: string, n: number) => {
    for (let i = 0; i < n; i++) {
      const r = await node.client.post(`${base}/${stream}/events`, { events: [{ type: "Data", data: { i, secret } }] })
      expect(r.status, JSON.stringify(r.body)).toBe(200)
    }
  }
  const read = async (stream: string, query = "limit=1000") => {
    const r = await node.client.get(`${base}/${stream}/events?${query}`)
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    return (r.body.events as Array<{ streamVersion: number; type: string }>).map((e) => `${e.streamVersion}:${e.type}`)
  }

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-retention-api-"))
    node = await startInProcess({
      logDriver: "file",
      dataDir,
      partitions: 2,
      // Seals only when asked (POST /v1/admin/seal).
      coldSealBytesMin: 1e12,
      coldSealAgeMs: 1e12
    })
  })
  afterAll(async () => {
    await node?.stop()
    fs.rmSync(dataDir, { recursive: true, force: true })
  })

  it("PUT retention: maxCount hides older events from reads at once; GET reports the settings; {} clears them", async () => {
    await put("counted", 6)
    // maxCount keeps the stream's last versions, its `$metadata` included (Retention's rule).
    const set = await send(url("/counted/retention"), "PUT", { maxCount: 3 })
    expect(set.status, JSON.stringify(set.body)).toBe(200)
    expect(set.body).toEqual({ stream: "counted", maxCount: 3, lastVersion: 6 })
    expect(await read("counted")).toEqual(["4:Data", "5:Data", "6:$metadata"])
    const state = await node.client.get(`${base}/counted/state?reducer=count`)
    expect(state.status).toBe(200)
    expect(state.body.state).toBe(2)

    const got = await node.client.get(`${base}/counted/retention`)
    expect(got.status).toBe(200)
    expect(got.body).toEqual({ stream: "counted", maxCount: 3, lastVersion: 6 })

    // A PUT replaces every setting.
    const replaced = await send(url("/counted/retention"), "PUT", { truncateBefore: 3, maxAgeMs: 86_400_000 })
    expect(replaced.body).toEqual({ stream: "counted", truncateBefore: 3, maxAgeMs: 86_400_000, lastVersion: 7 })
    expect(await read("counted")).toEqual(["3:Data", "4:Data", "5:Data", "6:$metadata", "7:$metadata"])
    const cleared = await send(url("/counted/retention"), "PUT", {})
    expect(cleared.body).toEqual({ stream: "counted", lastVersion: 8 })
    expect((await read("counted")).filter((l) => l.endsWith(":Data"))).toHaveLength(6)
  })

  it("GET retention of a stream with no events is 404 StreamNotFound", async () => {
    const r = await node.client.get(`${base}/nothing-here/retention`)
    expect(r.status).toBe(404)
    expect(r.body._tag).toBe("StreamNotFound")
  })

  it("soft DELETE: reads show only the tombstone, state is empty; an append continues the versions", async () => {
    await put("soft", 3)
    const del = await send(url("/soft"), "DELETE")
    expect(del.status, JSON.stringify(del.body)).toBe(200)
    expect(del.body).toMatchObject({ stream: "soft", hard: false, version: 3 })
    expect(await read("soft")).toEqual(["3:$deleted"])
    const state = await node.client.get(`${base}/soft/state?reducer=count`)
    expect(state.body).toMatchObject({ state: 0, version: 3 })
    const info = await node.client.get(`${base}/soft/retention`)
    expect(info.body).toEqual({ stream: "soft", deletedBefore: 4, lastVersion: 3 })

    const again = await node.client.post(`${base}/soft/events`, { events: [{ type: "Data", data: { again: true } }] })
    expect(again.status).toBe(200)
    expect(again.body.firstVersion).toBe(4)
    expect(await read("soft")).toEqual(["3:$deleted", "4:Data"])
    // A tenant query does not see the deleted events either.
    const q = await node.client.get(`/v1/tenants/acme/events?types=Data&limit=1000`)
    expect(q.body.events.filter((e: { stream: string }) => e.stream === "soft").map((e: { streamVersion: number }) => e.streamVersion))
      .toEqual([4])
  })

  it("DELETE with an eventId is idempotent: a retry answers the original tombstone, even after the stream lived on", async () => {
    await put("retried", 2)
    const id = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    const first = await send(url(`/retried?eventId=${id}`), "DELETE")
    expect(first.status, JSON.stringify(first.body)).toBe(200)
    expect(first.body).toMatchObject({ stream: "retried", version: 2 })
    // The stream starts a new life; then the first call's retry arrives (its response had been lost).
    const alive = await node.client.post(`${base}/retried/events`, { events: [{ type: "Data", data: { after: true } }] })
    expect(alive.status).toBe(200)
    const retry = await send(url(`/retried?eventId=${id}`), "DELETE")
    expect(retry.status, JSON.stringify(retry.body)).toBe(200)
    expect(retry.body).toEqual(first.body)
    expect(await read("retried")).toEqual(["2:$deleted", "3:Data"])
    const bad = await send(url("/retried?eventId=not-a-uuid"), "DELETE")
    expect(bad.status).toBe(400)
    expect(bad.body).toMatchObject({ _tag: "InvalidRequest", field: "query.eventId" })
  })

  it("DELETE checks expectedVersion and refuses streams that do not exist", async () => {
    await put("guarded", 2)
    const stale = await send(url("/guarded?expectedVersion=0"), "DELETE")
    expect(stale.status).toBe(409)
    expect(stale.body).toMatchObject({ _tag: "WrongExpectedVersion", actual: 1 })
    expect(await read("guarded")).toEqual(["0:Data", "1:Data"])
    const ok = await send(url("/guarded?expectedVersion=1"), "DELETE")
    expect(ok.status).toBe(200)
    const bad = await send(url("/guarded?expectedVersion=soon"), "DELETE")
    expect(bad.status).toBe(400)
    expect(bad.body).toMatchObject({ _tag: "InvalidRequest", field: "query.expectedVersion" })
    const missing = await send(url("/never-written"), "DELETE")
    expect(missing.status).toBe(404)
    expect(missing.body._tag).toBe("StreamNotFound")
  })

  it("invalid bodies and queries are 400 InvalidRequest naming the field; ?fork= is refused", async () => {
    const cases: Array<[unknown, string]> = [
      [{ maxCount: 0 }, "maxCount"],
      [{ maxCount: -3 }, "maxCount"],
      [{ maxAgeMs: 1.5 }, "maxAgeMs"],
      [{ truncateBefore: "5" }, "truncateBefore"],
      [{ maxCount: 2, maxCuont: 3 }, "maxCuont"]
    ]
    for (const [body, field] of cases) {
      const r = await send(url("/counted/retention"), "PUT", body)
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(r.body, JSON.stringify(body)).toMatchObject({ _tag: "InvalidRequest", field })
    }
    const hard = await send(url("/counted?hard=yes"), "DELETE")
    expect(hard.status).toBe(400)
    expect(hard.body).toMatchObject({ _tag: "InvalidRequest", field: "query.hard" })
    const badStream = await send(url("/-bad/retention"), "PUT", { maxCount: 1 })
    expect(badStream.status).toBe(400)
    expect(badStream.body).toMatchObject({ _tag: "InvalidRequest", field: "params.stream" })
    for (const [method, p] of [["PUT", "/counted/retention"], ["GET", "/counted/retention"], ["DELETE", "/counted"]] as const) {
      const r = await send(url(`${p}?fork=f1`), method, method === "PUT" ? { maxCount: 1 } : undefined)
      expect(r.status, `${method} ${p}`).toBe(400)
      expect(r.body).toMatchObject({ _tag: "InvalidRequest", field: "query.fork" })
    }
    // Nothing of the refused requests was written: the settings are those of the last valid PUT.
    expect((await node.client.get(`${base}/counted/retention`)).body).toEqual({ stream: "counted", lastVersion: 8 })
  })

  it("reads through a fork hide what the store's retention and deletions hide, also those made after the fork", async () => {
    await put("forked", 3)
    const created = await node.client.post("/v1/tenants/acme/forks", { ttlSeconds: 600 })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const fork = created.body.forkId as string
    // Before: a soft-deleted and a counted stream read the same through the fork as in the store.
    expect(await read("soft", `fork=${fork}&limit=100`)).toEqual(await read("soft"))
    expect(await read("counted", `fork=${fork}&limit=100`)).toEqual(await read("counted"))
    expect(await read("forked", `fork=${fork}&limit=100`)).toEqual(["0:Data", "1:Data", "2:Data"])
    // Deleted in the store after the fork was made: gone from the fork too (its tombstone is the store's, after
    // the fork's base, so the fork shows nothing of the stream, in either direction).
    expect((await send(url("/forked"), "DELETE")).status).toBe(200)
    expect(await read("forked", `fork=${fork}&limit=100`)).toEqual([])
    expect(await read("forked", `fork=${fork}&limit=100&direction=backward`)).toEqual([])
    expect(await read("soft", `fork=${fork}&limit=100&direction=backward`)).toEqual(["4:Data", "3:$deleted"])
    const q = await node.client.get(`/v1/tenants/acme/events?types=Data&limit=1000&fork=${fork}`)
    expect(q.status).toBe(200)
    expect(q.body.events.filter((e: { stream: string }) => e.stream === "forked" || e.stream === "soft")
      .map((e: { stream: string; streamVersion: number }) => `${e.stream}/${e.streamVersion}`)).toEqual(["soft/4"])
  })

  it("hard DELETE + POST /v1/admin/seal: the segments hold no payload of the deleted events", async () => {
    await put("hard", 4)
    await put("kept", 2)
    const del = await send(url("/hard?hard=true"), "DELETE")
    expect(del.status, JSON.stringify(del.body)).toBe(200)
    expect(del.body).toMatchObject({ stream: "hard", hard: true, version: 4 })
    expect((await node.client.get(`${base}/hard/retention`)).body)
      .toEqual({ stream: "hard", deletedBefore: 5, hardDeletedBefore: 5, lastVersion: 4 })
    const sealed = await node.client.post("/v1/admin/seal", {})
    expect(sealed.status, JSON.stringify(sealed.body)).toBe(200)
    const rows = segmentRows(dataDir)
    const hardRows = rows.filter((r) => r.label.startsWith("hard/")).map((r) => r.label).sort()
    expect(hardRows).toEqual(["hard/0:$erased", "hard/1:$erased", "hard/2:$erased", "hard/3:$erased", "hard/4:$deleted"])
    for (const r of rows) if (r.label.startsWith("hard/")) expect(r.data, r.label).not.toContain("4111")
    expect(rows.filter((r) => r.label.startsWith("kept/") && r.data.includes(secret))).toHaveLength(2)
    // A soft deletion is not erased: its payloads stay in the segments (hidden from reads only).
    expect(rows.filter((r) => r.label.startsWith("soft/") && r.label.endsWith(":Data") && r.data.includes(secret))).toHaveLength(3)
    // Reads after the seal agree with reads before it.
    expect(await read("hard")).toEqual(["4:$deleted"])
    expect(await read("kept")).toEqual(["0:Data", "1:Data"])
  })
})
