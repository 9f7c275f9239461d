/**
 * What the CLI tests share: the real `chronos` executable run as a process (as `npx chronos` would run it), and a
 * node started with `chronos start` on a free port, found by its "listening on" line.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export const bin = fileURLToPath(new URL("../bin/chronos.mjs", import.meta.url))

export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `chronos args` with the Node running the tests (or `node`), to its end. */
export const chronos = (args: ReadonlyArray<string>, node = process.execPath): Promise<Result> =>
  new Promise((resolve) => {
    execFile(node, [bin, ...args], { timeout: 60_000, env: { ...process.env, NO_COLOR: "1" } }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resolve({ code, stdout, stderr })
    })
  })

/** JSON lines of an output. */
export const lines = (text: string) => text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))

export interface NodeProcess {
  readonly server: ChildProcess
  readonly url: string
  /** SIGTERM, then waits for the process to exit. */
  readonly stop: () => Promise<void>
}

/** `chronos start --log memory --port 0 --partitions <partitions>` with `env` added to the environment. */
export const startNode = async (partitions: number, env: Readonly<Record<string, string>> = {}): Promise<NodeProcess> => {
  const server = spawn(process.execPath, [bin, "start", "--log", "memory", "--port", "0", "--partitions", String(partitions)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env }
  })
  const url = await new Promise<string>((resolve, reject) => {
    let output = ""
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const m = /listening on (http:\/\/[^\s]+)/.exec(output)
      if (m !== null) resolve(m[1]!)
    }
    server.stdout!.on("data", onData)
    server.stderr!.on("data", onData)
    server.on("exit", (code) => reject(new Error(`chronos start exited with ${code}: ${output}`)))
  })
  return {
    server,
    url,
    stop: async () => {
      if (server.exitCode !== null) return
      const exited = new Promise((resolve) => server.on("exit", resolve))
      server.kill("SIGTERM")
      await exited
    }
  }
}
