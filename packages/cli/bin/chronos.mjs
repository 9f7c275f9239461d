#!/usr/bin/env node
// The `chronos` executable. Plain JavaScript so that any Node can start it: the CLI itself is TypeScript run by
// Node >= 22 (type stripping), so on an older Node this re-executes itself with the project's Node 22
// (<repo>/node_modules/.bin/node), forwarding arguments, stdio, signals and the exit code.
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const self = fileURLToPath(import.meta.url)
const major = Number(process.versions.node.split(".")[0])

if (major >= 22) {
  await import(pathToFileURL(resolve(dirname(self), "../src/main.ts")).href)
} else {
  const node = resolve(dirname(self), "../../../node_modules/.bin/node")
  if (!existsSync(node)) {
    process.stderr.write(`chronos needs Node >= 22 (this is ${process.version}) and found none at ${node}; run npm install\n`)
    process.exit(1)
  }
  const child = spawn(node, [self, ...process.argv.slice(2)], { stdio: "inherit" })
  // The child gets terminal signals itself (same process group); signals sent to this process alone are forwarded,
  // as SIGTERM: the CLI shuts down the same way on SIGINT and SIGTERM, and a child started from a non-interactive
  // shell's background job inherits SIGINT as ignored. Either way this process stays until the child has exited.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
    })
  }
  child.on("error", (error) => {
    process.stderr.write(`chronos: cannot start ${node}: ${error.message}\n`)
    process.exit(1)
  })
  child.on("exit", (code, signal) => {
    if (signal !== null) {
      // Die of the same signal, so a parent shell sees what happened to the child.
      process.removeAllListeners(signal)
      process.kill(process.pid, signal)
      return
    }
    process.exit(code ?? 1)
  })
}
