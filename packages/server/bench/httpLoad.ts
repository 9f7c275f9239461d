/**
 * A small HTTP/1.1 load generator for the node's hot paths, with the least client-side CPU possible (the client
 * shares the machine with the server): raw keep-alive sockets, one request in flight per connection, responses
 * framed by content-length only (the server always sends it).
 *
 *     node packages/server/bench/httpLoad.ts [--url http://127.0.0.1:3900] [--mode append|read|both]
 *         [--connections 64] [--seconds 10] [--log memory|file] [--partitions 32] [--streams 10000]
 *
 * Without --url it starts a node (`main.ts`) in a child process on a free port, with a temporary data dir.
 * Appends: one event per request to a random stream of `--streams`, expectedVersion "any".
 * Reads: `GET …/streams/<s>/events` of a stream with 10 events (seeded first).
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const args = new Map<string, string>()
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1]!)
const connections = Number(args.get("connections") ?? 64)
const seconds = Number(args.get("seconds") ?? 10)
const mode = args.get("mode") ?? "both"
const streams = Number(args.get("streams") ?? 10_000)

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const startNode = async (): Promise<{ url: string; child: ChildProcess; cleanup: () => void }> => {
  const port = await freePort()
  const dataDir = mkdtempSync(path.join(tmpdir(), "chronos-bench-"))
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "src", "main.ts")
  const child = spawn(process.execPath, [
    ...(args.get("cpu-prof") ? ["--cpu-prof", `--cpu-prof-dir=${args.get("cpu-prof")}`] : []),
    main, "--port", String(port), "--log", args.get("log") ?? "memory", "--data-dir", dataDir,
    "--partitions", args.get("partitions") ?? "32", "--direct-path", args.get("direct-path") ?? "on"
  ], { stdio: ["ignore", "pipe", "inherit"] })
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      process.stderr.write(d)
      if (d.toString().includes("listening on")) resolve()
    })
    child.once("exit", (code) => reject(new Error(`node exited with ${code}`)))
  })
  return { url: `http://127.0.0.1:${port}`, child, cleanup: () => rmSync(dataDir, { recursive: true, force: true }) }
}

/** One keep-alive connection; `send` resolves with (status, body) of the response. */
const connect = (host: string, port: number) =>
  new Promise<{ send: (req: Buffer) => Promise<[number, string]>; close: () => void }>((resolve, reject) => {
    const socket = net.connect(port, host, () => resolve({ send, close: () => socket.destroy() }))
    socket.setNoDelay(true)
    socket.once("error", reject)
    let pending: ((r: [number, string]) => void) | undefined
    let buf: Buffer = Buffer.alloc(0)
    socket.on("data", (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      const headerEnd = buf.indexOf("\r\n\r\n")
      if (headerEnd === -1) return
      const head = buf.subarray(0, headerEnd).toString("latin1")
      const m = /content-length: *(\d+)/i.exec(head)
      const length = m ? Number(m[1]) : 0
      if (buf.length < headerEnd + 4 + length) return
      const status = Number(head.slice(9, 12))
      const body = buf.subarray(headerEnd + 4, headerEnd + 4 + length).toString()
      buf = buf.subarray(headerEnd + 4 + length)
      const p = pending!
      pending = undefined
      p([status, body])
    })
    const send = (req: Buffer) =>
      new Promise<[number, string]>((res) => {
        pending = res
        socket.write(req)
      })
  })

const post = (host: string, p: string, body: string) => {
  const b = Buffer.from(body)
  return Buffer.concat([
    Buffer.from(`POST ${p} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${b.length}\r\n\r\n`),
    b
  ])
}
const get = (host: string, p: string) => Buffer.from(`GET ${p} HTTP/1.1\r\nhost: ${host}\r\n\r\n`)

/** CPU time (user + system, ms) of process `pid` so far, from /proc (Linux). */
const cpuMs = (pid: number | undefined): number => {
  if (pid === undefined) return NaN
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
  } catch {
    return NaN
  }
}
let serverPid: number | undefined = args.get("pid") === undefined ? undefined : Number(args.get("pid"))

const percentile = (sorted: Float64Array, q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

const run = async (
  name: string,
  url: URL,
  concurrency: number,
  makeRequest: (i: number) => Buffer,
  expectStatus = 200
) => {
  const conns = await Promise.all(Array.from({ length: concurrency }, () => connect(url.hostname, Number(url.port))))
  const latencies: Array<number> = []
  let errors = 0
  let sample = ""
  const deadline = performance.now() + seconds * 1000
  // Warm-up: a second of load whose numbers are discarded (JIT, pools).
  const warmUntil = performance.now() + 1000
  let n = 0
  let started = 0
  let cpuAtStart = NaN
  let countAtStart = 0
  await Promise.all(conns.map(async (c) => {
    while (performance.now() < deadline) {
      const t0 = performance.now()
      const [status, body] = await c.send(makeRequest(n++))
      const t1 = performance.now()
      if (status !== expectStatus) {
        errors++
        sample ||= `${status} ${body.slice(0, 200)}`
      }
      if (t0 >= warmUntil) {
        if (started === 0) {
          started = t0
          cpuAtStart = cpuMs(serverPid)
          countAtStart = latencies.length
        }
        latencies.push(t1 - t0)
      }
    }
  }))
  const cpu = cpuMs(serverPid) - cpuAtStart
  for (const c of conns) c.close()
  const elapsed = (deadline - started) / 1000
  const sorted = Float64Array.from(latencies).sort()
  const fmt = (x: number) => `${(x * 1000).toFixed(0)}µs`
  console.log(
    `${name}: c=${concurrency} ${(latencies.length / elapsed).toFixed(0)} req/s  ` +
      `p50 ${fmt(percentile(sorted, 0.5))} p90 ${fmt(percentile(sorted, 0.9))} p99 ${fmt(percentile(sorted, 0.99))} ` +
      `p99.9 ${fmt(percentile(sorted, 0.999))} max ${fmt(sorted[sorted.length - 1] ?? 0)}  errors ${errors}` +
      (Number.isNaN(cpu) ? "" : `  server cpu ${((cpu * 1000) / (latencies.length - countAtStart)).toFixed(0)}µs/req`) +
      (sample ? ` (${sample})` : "")
  )
}

const main = async () => {
  const started = args.get("url") === undefined ? await startNode() : undefined
  const url = new URL(args.get("url") ?? started!.url)
  serverPid ??= started?.child.pid
  const host = url.host
  try {
    if (mode === "append" || mode === "both") {
      await run("append 1 event", url, connections, (i) =>
        post(host, `/v1/tenants/bench/streams/s-${i % streams}/events`, JSON.stringify({
          events: [{ type: "Deposited", data: { amount: 10, account: `acct-${i % streams}`, note: "bench" } }]
        })))
    }
    if (mode === "read" || mode === "both") {
      const c = await connect(url.hostname, Number(url.port))
      const events = Array.from({ length: 10 }, (_, k) => ({ type: "Deposited", data: { amount: k, note: "read bench" } }))
      const [status, body] = await c.send(post(host, `/v1/tenants/bench/streams/read-1/events`, JSON.stringify({ events })))
      if (status !== 200) throw new Error(`seeding failed: ${status} ${body}`)
      c.close()
      const req = get(host, `/v1/tenants/bench/streams/read-1/events`)
      await run("read 10 events", url, 1, () => req)
      await run("read 10 events", url, Number(args.get("read-connections") ?? 16), () => req)
      const health = get(host, `/health`)
      await run("health", url, 1, () => health)
    }
  } finally {
    if (started) {
      started.child.kill("SIGTERM")
      await new Promise((r) => started.child.once("exit", r))
      started.cleanup()
    }
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
