/**
 * Test support for tests against a real local cluster (`LocalCluster`: nats-servers + runner processes): bringing
 * one up on a free port range, JSON over HTTP, bounded polling, and the runners' logs.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as LocalCluster from "../src/LocalCluster.ts"

/** `up` in `dir` on a random port range (retried when a port is taken). 3 nodes, 8 partitions unless overridden. */
export const upAnywhere = async (
  dir: string,
  options: { readonly runnerEnv?: Record<string, string> } = {}
) => {
  for (let attempt = 1;; attempt++) {
    const base = 20_000 + 50 * Math.floor(Math.random() * 800)
    const r = await Effect.runPromise(Effect.result(LocalCluster.up({
      dir,
      nodes: 3,
      partitions: 8,
      httpPortBase: base,
      runnerPortBase: base + 10,
      natsClientPortBase: base + 20,
      natsClusterPortBase: base + 30,
      natsMonitorPortBase: base + 40,
      ...(options.runnerEnv === undefined ? {} : { runnerEnv: options.runnerEnv })
    })))
    if (r._tag === "Success") return r.success
    if (attempt >= 3 || !r.failure.message.includes("is in use")) throw new Error(r.failure.message)
  }
}

/** Stops the cluster in `dir` (if any) and removes the directory. */
export const cleanUp = async (dir: string): Promise<void> => {
  await Effect.runPromise(LocalCluster.down({ dir })).catch(() => undefined)
  fs.rmSync(dir, { recursive: true, force: true })
}

export interface JsonResponse {
  readonly status: number
  readonly body: any
}

export const json = async (url: string, init?: RequestInit): Promise<JsonResponse> => {
  const res = await fetch(url, init)
  return { status: res.status, body: await res.json() }
}

export const post = (url: string, body: unknown): Promise<JsonResponse> =>
  json(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

export const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `f` until it returns a value (errors count as "not yet"), every 200 ms, at most `ms`. */
export const until = async <A>(what: string, ms: number, f: () => Promise<A | undefined>): Promise<A> => {
  const deadline = Date.now() + ms
  for (;;) {
    const a = await f().catch(() => undefined)
    if (a !== undefined) return a
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await pause(200)
  }
}

/** A runner's log so far ("" before it exists). */
export const logOf = (dir: string, name: string): string => {
  try {
    return fs.readFileSync(path.join(dir, "runners", `${name}.log`), "utf8")
  } catch {
    return ""
  }
}
