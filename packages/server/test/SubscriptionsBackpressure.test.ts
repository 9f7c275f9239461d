/**
 * A slow consumer never slows writers: SSE subscribers that stop reading (TCP backpressure) with a large history
 * still to deliver do not reduce the write throughput of a node by more than 10%, and a subscriber that reads keeps
 * receiving live events meanwhile.
 *
 * Method (robust on a small shared machine): one node (child process, memory log, so the disk does not add noise),
 * writers in this process; phases of the same length alternate without and with 4 stalled subscribers (each opened
 * from the start of a 12 000-event history and never read), in both orders, at least three rounds of each (up to seven
 * while the comparison is unsettled). Two measures:
 *  - writer throughput (appends/s, wall clock, best phase of each kind): what the requirement states, within 10%;
 *  - the node's CPU time per append (from /proc): what a stalled subscriber could steal from writers, within 10%:
 *    the median, over rounds, of the ratio of two back-to-back phases;
 *  - the node's resident memory, which must not grow by the history the stalled subscribers did not read, and a
 *    reading subscriber that keeps receiving: asserted always.
 * On a loaded machine the first two are noise (rates of identical phases differ by 2–6× when other test files run
 * beside it; CPU per append moves with the rate, as group commit amortizes less at low rates): when the best phase
 * without subscribers is more than 25% faster than their median, neither 10% comparison is made, and the test says
 * so. The suite runs this file alone, after the others (vitest.config.ts), so that CI measures it.
 * (Checked against an unbounded window — `CHRONOS_SUBSCRIPTION_WINDOW_EVENTS_MAX=100000` — which fails both: 2.6×
 * the CPU per append and ~100 MB more memory.)
 * Stalled subscribers are opened before their phase starts, and the phase waits until the node is idle again: what
 * they cost while their socket buffers fill is the work of serving a reading subscriber; what is measured is what a
 * stalled one costs afterwards.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import type { ChildProcess } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import * as http from "node:http"
import { exited, freePort, request, startNode } from "./support.ts"
import { sleep, sse, type SseConnection } from "./subscriptionSupport.ts"

const children: Array<ChildProcess> = []
afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
})

const phaseMs = 1_500
const writers = 8

/** CPU time (user + system) of a process so far, in ms, from /proc (Linux); undefined elsewhere. */
const cpuMs = (pid: number): number | undefined => {
  const file = `/proc/${pid}/stat`
  if (!existsSync(file)) return undefined
  const fields = readFileSync(file, "utf8").split(") ")[1]!.split(" ")
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after "pid (comm) ", in clock ticks (100 Hz).
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Resident memory of a process, MB (Linux; 0 elsewhere). */
const rssMb = (pid: number): number => {
  const file = `/proc/${pid}/status`
  if (!existsSync(file)) return 0
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(file, "utf8"))
  return m === null ? 0 : Number(m[1]) / 1024
}

/** Waits until the process uses less than 10% of a CPU over 300 ms (at most `maxMs`). */
const idle = async (pid: number, maxMs = 5_000) => {
  const deadline = performance.now() + maxMs
  while (performance.now() < deadline) {
    const before = cpuMs(pid)
    await sleep(300)
    const after = cpuMs(pid)
    if (before === undefined || after === undefined || after - before <= 30) return
  }
}

describe("backpressure", () => {
  it("stalled SSE subscribers do not reduce writer throughput by more than 10%", async () => {
    const port = await freePort()
    const node = await startNode(["--port", String(port), "--log", "memory", "--partitions", "8"], {
      CHRONOS_SUBSCRIPTION_WINDOW_EVENTS_MAX: "256"
    })
    children.push(node.child)
    const agent = new http.Agent({ keepAlive: true, maxSockets: writers })
    const url = `http://127.0.0.1:${port}`
    // History for the stalled subscribers: ~12 MB, far more than socket buffers hold.
    const filler = "x".repeat(1_000)
    for (let i = 0; i < 240; i++) {
      const r = await request(agent, port, "POST", `/v1/tenants/bp/streams/history-${i % 16}/events`, {
        events: Array.from({ length: 50 }, (_, k) => ({ type: "History", data: { i: i * 50 + k, filler } }))
      })
      assert.strictEqual(r.status, 200)
    }

    const pid = node.child.pid!
    /** Appends from `writers` concurrent loops for `phaseMs`: appends per second, and node CPU ms per append. */
    const measure = async () => {
      let appends = 0
      const cpu0 = cpuMs(pid)
      const t0 = performance.now()
      const until = t0 + phaseMs
      await Promise.all(Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; performance.now() < until; i++) {
          const r = await request(agent, port, "POST", `/v1/tenants/bp/streams/w${w}-${i % 20}/events`, {
            events: [{ type: "Written", data: { w, i } }]
          })
          if (r.status !== 200) throw new Error(JSON.stringify(r.body))
          appends++
        }
      }))
      const elapsed = performance.now() - t0
      const cpu1 = cpuMs(pid)
      return { rate: appends * 1_000 / elapsed, appends, cpuMs: cpu0 === undefined || cpu1 === undefined ? NaN : cpu1 - cpu0 }
    }

    // A subscriber that reads, live, for the whole test: it must keep receiving while others are stalled.
    const reader = sse(url, "/v1/tenants/bp/subscribe?from=now&types=Written")
    await reader.waitFor((es) => es.some((e) => e.event === "caught-up"))

    await measure() // warm-up
    type Sample = Awaited<ReturnType<typeof measure>>
    const baseline: Array<Sample> = []
    const stalled: Array<Sample> = []
    /** Growth of the node's resident memory over a stalled phase, MB: bounded windows, not whole histories. */
    const rss: Array<number> = []
    const best = (xs: ReadonlyArray<Sample>) => Math.max(...xs.map((x) => x.rate))
    /** CPU per append over all phases of a kind: many clock ticks, so the 10 ms tick resolution does not matter. */
    const cpuPerAppend = (xs: ReadonlyArray<Sample>) =>
      xs.reduce((n, x) => n + x.cpuMs, 0) / xs.reduce((n, x) => n + x.appends, 0)

    const withStalled = async () => {
      const rss0 = rssMb(pid)
      const subscribers: Array<SseConnection> = Array.from({ length: 4 }, () => sse(url, "/v1/tenants/bp/subscribe?from=start"))
      await Promise.all(subscribers.map((s) => s.status))
      for (const s of subscribers) s.pause()
      await idle(pid) // their socket buffers are full: from here on they are stalled
      const before = reader.events.length
      stalled.push(await measure())
      assert.isAbove(reader.events.length, before, "a reading subscriber is served while others are stalled")
      // Stalled for real: none got near the end of the history.
      for (const s of subscribers) assert.isBelow(s.events.length, 12_000)
      rss.push(rssMb(pid) - rss0)
      for (const s of subscribers) s.close()
    }
    const without = async () => {
      await idle(pid)
      baseline.push(await measure())
    }
    // Alternating, and in both orders, so that a trend in the machine's load favours neither kind. Each round pairs
    // a phase of each kind taken back to back; the median of the rounds' CPU ratios is what is compared, so one
    // round disturbed by a neighbour process does not decide the result.
    const cpuRatios: Array<number> = []
    const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const perAppend = (x: Sample) => x.cpuMs / x.appends
    for (let round = 0; round < 7; round++) {
      if (round % 2 === 0) {
        await without()
        await withStalled()
      } else {
        await withStalled()
        await without()
      }
      cpuRatios.push(perAppend(stalled.at(-1)!) / perAppend(baseline.at(-1)!))
      if (round >= 2 && median(cpuRatios) <= 1.1 && best(stalled) >= 0.9 * best(baseline)) break
    }
    // How much identical phases without subscribers differ: best against the median (one slow phase — the first
    // after start-up usually is — does not make a whole run unmeasurable; a machine busy throughout does).
    const spread = best(baseline) / median(baseline.map((x) => x.rate))
    const summary = {
      baseline: baseline.map((x) => Math.round(x.rate)),
      stalled: stalled.map((x) => Math.round(x.rate)),
      rateRatio: Number((best(stalled) / best(baseline)).toFixed(3)),
      baselineSpread: Number(spread.toFixed(2)),
      cpuPerAppendMs: {
        baseline: Number(cpuPerAppend(baseline).toFixed(3)),
        stalled: Number(cpuPerAppend(stalled).toFixed(3))
      },
      cpuRatioPerRound: cpuRatios.map((r) => Number(r.toFixed(3))),
      rssGrowthMb: rss.map(Math.round)
    }
    console.log(JSON.stringify(summary))
    // Bounded windows (256 events each) rather than the history: an unbounded buffer grows by ~100 MB here.
    if (rss.some((x) => x !== 0)) assert.isBelow(median(rss), 25, JSON.stringify(summary))
    // CPU per append also moves with the rate (group commit amortizes less at low rates): when identical phases
    // without subscribers differ by more than 25% in rate (best against median), the machine is too busy for a 10%
    // comparison of either.
    const measurable = cpuRatios.every(Number.isFinite) && summary.cpuPerAppendMs.baseline > 0
    const quiet = spread < 1.25
    if (quiet) {
      // Throughput within 10%: what the requirement states.
      assert.isAtLeast(summary.rateRatio, 0.9, JSON.stringify(summary))
      // What a stalled subscriber could take from writers: node CPU per append, within 10% (median of the rounds).
      if (measurable) assert.isAtMost(median(cpuRatios), 1.1, JSON.stringify(summary))
    } else {
      console.log(`machine too busy for a 10% comparison (identical phases differ ${summary.baselineSpread}×): only memory and the reading subscriber were asserted`)
    }
    reader.close()
    agent.destroy()
    node.child.kill("SIGTERM")
    await exited(node.child)
  })
})
