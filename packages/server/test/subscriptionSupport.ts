/**
 * Test support for subscriptions over real HTTP: an SSE client that parses the wire format as a browser would
 * (events, ids, comments), can stop reading (TCP backpressure) and resume, and reconnects with `Last-Event-ID`;
 * a node as a child process with `CHRONOS_*` settings; JSON requests over a keep-alive agent.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export interface SseEvent {
  readonly event: string
  readonly id: string | undefined
  readonly data: string
}

export interface SseConnection {
  readonly status: Promise<number>
  readonly events: Array<SseEvent>
  /** Comments received (`: keepalive`). */
  readonly comments: () => number
  /** Waits until `count` events (in total) arrived; rejects after `timeoutMs` or when the connection ends first. */
  readonly waitFor: (predicate: (events: ReadonlyArray<SseEvent>) => boolean, timeoutMs?: number) => Promise<void>
  /** Stops reading from the socket: the server sees TCP backpressure once the buffers are full. */
  readonly pause: () => void
  readonly resume: () => void
  readonly close: () => void
  /** Resolves when the connection ended (server closed, error, or `close`). */
  readonly ended: Promise<void>
  readonly body: () => string
}

/** Opens `GET path` as an SSE stream. */
export const sse = (baseUrl: string, p: string, headers: Record<string, string> = {}): SseConnection => {
  const events: Array<SseEvent> = []
  let comments = 0
  let buffer = ""
  let raw = ""
  let ended = false
  let res: http.IncomingMessage | undefined
  const listeners = new Set<() => void>()
  const notify = () => {
    for (const l of listeners) l()
  }
  let resolveStatus!: (s: number) => void
  const status = new Promise<number>((r) => (resolveStatus = r))
  let resolveEnded!: () => void
  const endedPromise = new Promise<void>((r) => (resolveEnded = r))
  const finish = () => {
    if (ended) return
    ended = true
    resolveStatus(0)
    resolveEnded()
    notify()
  }
  const parse = (block: string) => {
    let event = "message"
    let id: string | undefined
    const data: Array<string> = []
    let any = false
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) {
        comments++
        continue
      }
      const colon = line.indexOf(":")
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "")
      if (field === "event") event = value
      else if (field === "id") id = value
      else if (field === "data") data.push(value)
      else continue
      any = true
    }
    if (any) events.push({ event, id, data: data.join("\n") })
  }
  const target = new URL(baseUrl)
  const req = http.get({
    host: target.hostname,
    port: target.port,
    path: p,
    headers: { accept: "text/event-stream", ...headers },
    agent: false
  }, (response) => {
    res = response
    resolveStatus(response.statusCode ?? 0)
    response.setEncoding("utf8")
    response.on("data", (chunk: string) => {
      raw += chunk
      buffer += chunk
      let i: number
      while ((i = buffer.indexOf("\n\n")) !== -1) {
        parse(buffer.slice(0, i))
        buffer = buffer.slice(i + 2)
      }
      notify()
    })
    response.on("end", finish)
    response.on("close", finish)
    response.on("error", finish)
  })
  req.on("error", finish)
  return {
    status,
    events,
    comments: () => comments,
    waitFor: (predicate, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (predicate(events)) {
            cleanup()
            resolve()
          } else if (ended) {
            cleanup()
            reject(new Error(`SSE connection ended; ${events.length} events`))
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`SSE wait timed out after ${timeoutMs} ms; ${events.length} events; last: ${JSON.stringify(events.at(-1))?.slice(0, 200)}`))
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
      }),
    pause: () => res?.pause(),
    resume: () => res?.resume(),
    close: () => {
      req.destroy()
      finish()
    },
    ended: endedPromise,
    body: () => raw
  }
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
const nodeBin = path.join(repoRoot, "node_modules/.bin/node")
const mainTs = path.join(repoRoot, "packages/server/src/main.ts")

/** `main.ts` as a child process with extra environment (`CHRONOS_*`); resolves once it listens. */
export const startNode = async (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Promise<{ child: ChildProcess; output: () => string }> => {
  const child = spawn(nodeBin, [mainTs, ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env }
  })
  let output = ""
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()))
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start in 60 s:\n${output}`)), 60_000)
    const onData = () => {
      if (output.includes("chronos listening on")) {
        clearTimeout(timer)
        child.stdout!.off("data", onData)
        child.off("exit", onExit)
        resolve()
      }
    }
    const onExit = (code: number | null, signal: string | null) => {
      clearTimeout(timer)
      reject(new Error(`node exited (${code ?? signal}) before listening:\n${output}`))
    }
    child.stdout!.on("data", onData)
    child.once("exit", onExit)
  })
  return { child, output: () => output }
}

export const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
  })

/** JSON over a keep-alive agent; rejects on transport errors (a node that is down). */
export const request = (
  agent: http.Agent,
  port: number,
  method: string,
  p: string,
  body?: unknown
): Promise<{ status: number; body: any }> =>
  new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: p,
      method,
      agent,
      headers: payload ? { "content-type": "application/json", "content-length": payload.length } : {}
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (d: Buffer) => chunks.push(d))
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString()
        try {
          resolve({ status: res.statusCode!, body: text === "" ? undefined : JSON.parse(text) })
        } catch (e) {
          reject(e)
        }
      })
      res.on("error", reject)
    })
    req.on("error", reject)
    req.end(payload)
  })

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Retries `f` until it resolves (e.g. while a node restarts), for at most `timeoutMs`. */
export const retrying = async <A>(f: () => Promise<A>, timeoutMs = 60_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await f()
    } catch (e) {
      if (Date.now() > deadline) throw e
      await sleep(50)
    }
  }
}
