#!/usr/bin/env node
// The whole test suite, as CI runs it (`npm test`): type-check with TypeScript 5.9.3, provision nats-server, then
// every vitest test on Node 22 (the project brings Node 22 as a dev dependency; npm puts it first on PATH).
// The last line printed is `N passed, N failed`, which CI reads.
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import path from "node:path"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const bin = (name) => path.join(root, "node_modules", ".bin", name)
const run = (cmd, args) => spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: process.env }).status ?? 1

const major = Number(process.versions.node.split(".")[0])
if (major < 22) {
  console.error(`npm test needs Node >= 22 on PATH (got ${process.version}); run it through npm so node_modules/.bin/node is used`)
  console.log("0 passed, 1 failed")
  process.exit(1)
}

console.log("» type-check (tsc 5.9.3)")
if (run(bin("tsc"), ["-p", "tsconfig.json"]) !== 0) {
  console.log("\n0 passed, 1 failed")
  process.exit(1)
}
console.log("» nats-server")
if (run(process.execPath, [path.join(root, "scripts", "nats-server.mjs")]) !== 0) {
  console.log("\n0 passed, 1 failed")
  process.exit(1)
}
console.log("» vitest")
// vitest runs on this same Node 22 (its .bin shim would pick whatever `node` is first on PATH).
process.exit(run(process.execPath, [path.join(root, "node_modules", "vitest", "vitest.mjs"), "run", ...process.argv.slice(2)]))
