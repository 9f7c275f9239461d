/**
 * The durability contract over HTTP (a product requirement): a node on the file log is killed with SIGKILL while 8
 * writers append with expected versions; after a restart on the same data directory every acknowledged event is
 * there exactly once at its acknowledged version, stream versions are gapless from 0, and partition sequences are
 * gapless from 1. Appends that were in flight at the kill may or may not have been committed — both are fine.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import * as http from "node:http"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { EventLog } from "@chronos/engine/EventLog"
import { exited, freePort, request, startNode } from "./support.ts"

const tenant = "t"
const partitions = 8
const writers = 8
const streamsPerWriter = 12

const hasFileLog = typeof (EventLog as { readonly layerFile?: unknown }).layerFile === "function"

interface Ack {
  readonly stream: string
  readonly version: number
  readonly eventId: string
}


const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/**
 * 8 writers, each the only writer of its streams (so it always knows the expected version), appending batches of
 * 1–3 events with fresh ids until `stop()` or, once `expectStop()` was called, until the connection fails (the node
 * was stopped under it). Every acknowledged event is recorded; any other failure fails the test.
 */
const startWriters = (port: number) => {
  const acks: Array<Ack> = []
  const agent = new http.Agent({ keepAlive: true, maxSockets: writers })
  let stopped = false
  let stopExpected = false
  let inFlightAtStop = 0
  const writer = async (w: number) => {
    const versions = new Map<string, number>()
    for (let i = 0; !stopped; i++) {
      const stream = `w${w}-s${i % streamsPerWriter}`
      const current = versions.get(stream) ?? -1
      const batch = Array.from({ length: 1 + (i % 3) }, (_, k) => ({ eventId: randomUUID(), type: "Written", data: { w, i, k } }))
      let response: { status: number; body: any }
      try {
        response = await request(agent, port, "POST", `/v1/tenants/${tenant}/streams/${stream}/events`, {
          expectedVersion: current === -1 ? "no_stream" : current,
          events: batch
        })
      } catch (error) {
        if (!stopExpected) throw error
        inFlightAtStop++
        return
      }
      const { status, body } = response
      assert.strictEqual(status, 200, JSON.stringify(body))
      assert.strictEqual(body.firstVersion, current + 1)
      assert.strictEqual(body.lastVersion, current + batch.length)
      batch.forEach((e, k) => acks.push({ stream, version: current + 1 + k, eventId: e.eventId }))
      versions.set(stream, body.lastVersion)
    }
  }
  // Settled eagerly so a failing writer is reported by `done`, not as an unhandled rejection.
  const running = Promise.all(Array.from({ length: writers }, (_, w) => writer(w))).then(
    () => undefined,
    (error: unknown) => error
  )
  return {
    acks,
    /** Resolves once `n` events are acknowledged (or after 30 s). */
    acked: async (n: number) => {
      const deadline = Date.now() + 30_000
      while (acks.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    },
    /** From now on a failed connection ends a writer instead of failing the test. */
    expectStop: () => {
      stopExpected = true
    },
    stop: () => {
      stopExpected = true
      stopped = true
    },
    done: async () => {
      const error = await running
      agent.destroy()
      if (error !== undefined) throw error
      return { inFlightAtStop }
    }
  }
}

/**
 * Reads everything back and checks the durability contract; returns the number of events found. Every
 * acknowledged event is present exactly once at its acknowledged version; stream versions are gapless from 0;
 * partition sequences are gapless from 1 and account for every event.
 */
const verify = async (port: number, acks: ReadonlyArray<Ack>) => {
  const reader = new http.Agent({ keepAlive: true, maxSockets: 4 })
  try {
    const acked = new Map<string, Ack>()
    for (const a of acks) acked.set(a.eventId, a)
    const seen = new Set<string>()
    let found = 0
    for (let w = 0; w < writers; w++) {
      for (let k = 0; k < streamsPerWriter; k++) {
        const stream = `w${w}-s${k}`
        const { status, body } = await request(reader, port, "GET", `/v1/tenants/${tenant}/streams/${stream}/events?limit=10000`)
        assert.strictEqual(status, 200)
        body.events.forEach((e: any, v: number) => {
          assert.strictEqual(e.streamVersion, v, `${stream}: versions are gapless from 0`)
          assert.isFalse(seen.has(e.eventId), `event ${e.eventId} appears once`)
          seen.add(e.eventId)
          const ack = acked.get(e.eventId)
          if (ack !== undefined) {
            assert.strictEqual(ack.stream, stream)
            assert.strictEqual(ack.version, v, `${e.eventId} is at its acknowledged version`)
            found++
          }
        })
      }
    }
    assert.strictEqual(found, acked.size, "every acknowledged event is present")

    let total = 0
    for (let p = 0; p < partitions; p++) {
      let next = 1
      for (;;) {
        const { status, body } = await request(reader, port, "GET", `/v1/tenants/${tenant}/partitions/${p}/events?fromSeq=${next}&limit=1000`)
        assert.strictEqual(status, 200)
        for (const e of body.events) {
          assert.strictEqual(e.seq, next, `partition ${p}: sequences are gapless from 1`)
          assert.strictEqual(e.partition, p)
          next++
        }
        total += body.events.length
        if (body.events.length < 1000) break
      }
    }
    assert.strictEqual(total, seen.size, "partition reads and stream reads see the same events")

    // The recovered log takes new appends where the streams left off.
    const stream = "w0-s0"
    const before = (await request(reader, port, "GET", `/v1/tenants/${tenant}/streams/${stream}/events?limit=10000`)).body.events.length
    const after = await request(reader, port, "POST", `/v1/tenants/${tenant}/streams/${stream}/events`, {
      expectedVersion: before - 1,
      events: [{ type: "AfterRestart", data: {} }]
    })
    assert.deepStrictEqual([after.status, after.body.firstVersion], [200, before])
    return seen.size
  } finally {
    reader.destroy()
  }
}

const nodeArgs = (dataDir: string, port: number) =>
  ["--log", "file", "--data-dir", dataDir, "--port", String(port), "--partitions", String(partitions)]

const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), "chronos-crash-"))
  dirs.push(dir)
  return dir
}

describe.skipIf(!hasFileLog)("crash safety (file log)", () => {
  it("kill -9 mid-stream: every acknowledged append survives exactly once, versions and sequences gapless", async () => {
    const dataDir = tempDir()
    const port = await freePort()
    const first = await startNode(nodeArgs(dataDir, port))
    const load = startWriters(port)
    await load.acked(1_500)
    load.expectStop()
    first.child.kill("SIGKILL")
    assert.strictEqual(await exited(first.child), "SIGKILL")
    load.stop()
    const { inFlightAtStop } = await load.done()
    assert.isAtLeast(load.acks.length, 100, "the writers got acknowledgements before the kill")

    const second = await startNode(nodeArgs(dataDir, port))
    try {
      const recovered = await verify(port, load.acks)
      console.log(
        `kill -9: ${load.acks.length} acknowledged events, ${recovered} recovered ` +
          `(${recovered - load.acks.length} committed without acknowledgement), ${inFlightAtStop} appends in flight`
      )
    } finally {
      second.child.kill("SIGTERM")
      assert.strictEqual(await exited(second.child), 0, second.output())
    }
  })

  it("SIGTERM mid-stream: in-flight appends are answered, the node exits 0 promptly, nothing is lost", async () => {
    const dataDir = tempDir()
    const port = await freePort()
    const first = await startNode(nodeArgs(dataDir, port))
    const load = startWriters(port)
    await load.acked(800)
    load.expectStop()
    const t0 = Date.now()
    first.child.kill("SIGTERM")
    const code = await exited(first.child)
    const stoppedIn = Date.now() - t0
    // Writers keep going until their connection fails: every request before that must have been a 200.
    const { inFlightAtStop } = await load.done()
    assert.strictEqual(inFlightAtStop, writers)
    assert.strictEqual(code, 0, first.output())
    assert.isBelow(stoppedIn, 10_000, "keep-alive clients are drained, not waited out")

    const second = await startNode(nodeArgs(dataDir, port))
    try {
      const recovered = await verify(port, load.acks)
      console.log(`SIGTERM: stopped in ${stoppedIn} ms; ${load.acks.length} acknowledged, ${recovered} recovered`)
      assert.strictEqual(recovered, load.acks.length, "a graceful stop commits nothing it did not acknowledge")
    } finally {
      second.child.kill("SIGTERM")
      assert.strictEqual(await exited(second.child), 0, second.output())
    }
  })
})
