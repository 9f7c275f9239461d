/**
 * Test support for subscriptions over real HTTP: an SSE client that parses the wire format as a browser would
 * (events, ids, comments), can stop reading (TCP backpressure) and resume, and reconnects with `Last-Event-ID`;
 * the node process and JSON requests come from `support.ts`.
 */
import * as http from "node:http"

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
