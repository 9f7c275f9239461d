/**
 * Test support: a node on a free loopback port (in this process, or as a child process running `main.ts`) and a
 * tiny JSON-over-HTTP client that returns status and body as they are on the wire.
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import { HttpServer } from "effect/http"
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import * as Node from "../src/Node.ts"

export interface Response {
  readonly status: number
  readonly body: any
}

export interface Client {
  readonly url: string
  readonly get: (path: string) => Promise<Response>
  readonly post: (path: string, body: unknown, headers?: Record<string, string>) => Promise<Response>
}

const parse = async (res: globalThis.Response): Promise<Response> => {
  const text = await res.text()
  let body: unknown = text
  try {
    body = text === "" ? undefined : JSON.parse(text)
  } catch {
    // not JSON: keep the text, the assertion will show it
  }
  return { status: res.status, body }
}

export const client = (url: string): Client => ({
  url,
  get: (p) => fetch(url + p).then(parse),
  post: (p, body, headers = {}) =>
    fetch(url + p, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body)
    }).then(parse)
})

/** A node in this process over the memory log (the environment is ignored), on a free port. */
export const startInProcess = async (overrides: Partial<ChronosConfigShape>, options: Node.Options = {}) => {
  const runtime = ManagedRuntime.make(
    Node.layerFromConfig(options).pipe(
      Layer.provideMerge(ChronosConfig.layer({ httpHost: "127.0.0.1", httpPort: 0, logDriver: "memory", ...overrides }))
    )
  )
  const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
  if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
  return { client: client(`http://127.0.0.1:${address.port}`), stop: () => runtime.dispose() }
}

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer().once("error", reject).listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
const nodeBin = path.join(repoRoot, "node_modules/.bin/node")
const mainTs = path.join(repoRoot, "packages/server/src/main.ts")

/** `main.ts` as a child process with extra environment (`CHRONOS_*`); resolves once it logged that it listens. */
export const startNode = async (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Promise<{ child: ChildProcess; output: () => string }> => {
  const child = spawn(nodeBin, [mainTs, ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } })
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
  new Promise<number | string | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? child.signalCode)
    child.once("exit", (code, signal) => resolve(code ?? signal))
  })

/** JSON over a keep-alive agent; rejects on transport errors (a node that is down or being killed). */
export const request = (
  agent: http.Agent,
  port: number,
  method: string,
  p: string,
  body?: unknown
): Promise<Response> =>
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

export interface RawResponse {
  readonly status: number
  readonly contentType: string | undefined
  readonly body: string
}

/** One request exactly as given (no default headers besides host and content-length), for wire-level checks. */
export const raw = (
  url: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string | Buffer
): Promise<RawResponse> =>
  new Promise((resolve, reject) => {
    const target = new URL(url)
    const req = http.request({
      host: target.hostname,
      port: target.port,
      method,
      path,
      headers: body === undefined ? headers : { "content-length": String(Buffer.byteLength(body)), ...headers }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (d: Buffer) => chunks.push(d))
      res.on("end", () =>
        resolve({
          status: res.statusCode!,
          contentType: res.headers["content-type"],
          body: Buffer.concat(chunks).toString()
        }))
      res.on("error", reject)
    })
    req.on("error", reject)
    req.end(body)
  })
