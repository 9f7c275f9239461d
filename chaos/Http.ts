/**
 * JSON over HTTP for the fault tests: one keep-alive agent per base URL, a hard timeout per request, and transport
 * failures (refused, reset, timed out — a runner being killed or paused) as rejections the callers retry.
 */
import * as http from "node:http"

export interface Response {
  readonly status: number
  readonly body: any
}

const agents = new Map<string, http.Agent>()
const agentFor = (base: string): http.Agent => {
  let agent = agents.get(base)
  if (agent === undefined) agents.set(base, agent = new http.Agent({ keepAlive: true, maxSockets: 32 }))
  return agent
}

/** Closes every pooled connection (at the end of a test, so no socket keeps the process alive). */
export const closeAll = (): void => {
  for (const agent of agents.values()) agent.destroy()
  agents.clear()
}

export const request = (
  base: string,
  method: "GET" | "POST",
  path: string,
  body: unknown,
  timeoutMs: number
): Promise<Response> =>
  new Promise((resolve, reject) => {
    const url = new URL(path, base)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const req = http.request({
      host: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      method,
      agent: agentFor(base),
      timeout: timeoutMs,
      headers: payload === undefined ? {} : { "content-type": "application/json", "content-length": payload.length }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (d: Buffer) => chunks.push(d))
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString()
        try {
          resolve({ status: res.statusCode ?? 0, body: text === "" ? undefined : JSON.parse(text) })
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text })
        }
      })
      res.on("error", reject)
    })
    // A socket timeout only fires after `timeoutMs` of silence; a paused server sends nothing, so this bounds it.
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`)), timeoutMs)
    req.on("close", () => clearTimeout(timer))
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: socket idle for ${timeoutMs} ms`)))
    req.on("error", reject)
    req.end(payload)
  })

export const get = (base: string, path: string, timeoutMs: number) => request(base, "GET", path, undefined, timeoutMs)
export const post = (base: string, path: string, body: unknown, timeoutMs: number) =>
  request(base, "POST", path, body, timeoutMs)

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
