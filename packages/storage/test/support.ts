/**
 * Shared helpers of the storage tests: temporary data dirs, an embedded store with its cold tier, snapshots, a node
 * over HTTP with typed answers, and damage to files.
 */
import { Context, Effect, Exit, Layer, ManagedRuntime, Scope } from "effect"
import { HttpServer } from "effect/http"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import * as Node from "@chronos/server/Node"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Event } from "@chronos/domain"
import { Engine, type EngineShape } from "@chronos/engine/Engine"
import { ColdTier, type ColdTierShape } from "../src/ColdTier.ts"
import * as Embedded from "../src/Embedded.ts"

export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** Small files and row groups, so that few events exercise log rolling, truncation and pruning. */
export const smallLimits = {
  partitions: 4,
  logSegmentBytesMax: 8 * 1024,
  segmentRowGroupRowsMax: 64,
  // The policy must not seal behind a test's back unless the test asks for it.
  coldSealBytesMin: 1e12,
  coldSealAgeMs: 1e12,
  coldSealCheckIntervalMs: 60_000
}

export interface Store {
  readonly engine: EngineShape
  readonly tier: ColdTierShape
  readonly close: Effect.Effect<void>
}

/** Opens the embedded store over `dataDir` in its own scope (closed by `close`, e.g. to reopen it). */
export const open = (dataDir: string, overrides: Partial<Embedded.Options> = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(Embedded.layer({ ...smallLimits, ...overrides, dataDir }), scope).pipe(Effect.orDie)
    return {
      engine: Context.get(context, Engine),
      tier: Context.get(context, ColdTier),
      close: Scope.close(scope, Exit.void)
    } satisfies Store
  })

export const tenants = ["acme", "beta"]

/** `count` events over `streams` streams per tenant, appended in pipelined batches; returns the stream ids used. */
export const populate = (engine: EngineShape, count: number, streams: number, offset = 0) =>
  Effect.gen(function*() {
    const appends = Array.from({ length: count }, (_, i) => {
      const n = i + offset
      const tenant = tenants[n % tenants.length]!
      const stream = `order-${(n * 7919) % streams}`
      return {
        tenant,
        stream,
        request: {
          events: [{
            type: n % 3 === 0 ? "OrderPlaced" : "ItemAdded",
            data: { n, sku: `sku-${n % 17}`, note: "é ünïcode ✓", nested: { list: [n, n + 1], flag: n % 2 === 0 } },
            metadata: { correlationId: `c-${n}` }
          }]
        }
      } as const
    })
    for (let i = 0; i < appends.length; i += 200) {
      const exits = yield* engine.appendMany(appends.slice(i, i + 200) as never)
      for (const exit of exits) if (exit._tag === "Failure") return yield* Effect.die(exit.cause)
    }
  })

/** Every answer a client could get about the data: streams, tenant queries, partition reads, states, statuses. */
export const snapshot = (engine: EngineShape, streams: number) =>
  Effect.gen(function*() {
    const out: Record<string, unknown> = {}
    for (const tenant of tenants) {
      for (let s = 0; s < streams; s++) {
        const stream = `order-${s}`
        out[`${tenant}/${stream}`] = yield* engine.readStream(tenant, stream, { limit: 10_000 })
        out[`${tenant}/${stream}/back`] = yield* engine.readStream(tenant, stream, { limit: 5, direction: "backward" })
        out[`${tenant}/${stream}/state`] = yield* engine.state(tenant, stream, "count", undefined).pipe(
          Effect.catchTag("StreamNotFound", () => Effect.succeed("none"))
        )
      }
      const all: Array<Event.StoredEvent> = []
      let after: string | undefined
      do {
        const page = yield* engine.query(tenant, { limit: 500, ...(after === undefined ? {} : { after }) })
        all.push(...page.events)
        after = page.next
      } while (after !== undefined)
      out[`${tenant}/all`] = all
      out[`${tenant}/types`] = yield* engine.query(tenant, { types: ["OrderPlaced"], limit: 10_000 })
      for (let p = 0; p < engine.config.partitions; p++) {
        out[`${tenant}/p${p}`] = yield* engine.readPartition(tenant, p, { limit: 10_000 })
      }
    }
    out["partitions"] = (yield* engine.partitions).map((p) => ({ ...p, owner: "-" }))
    return out
  })

export const listFiles = (dir: string, suffix: string): Array<string> => {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(suffix)).map((f) => path.join(dir, f)).sort()
}

/** Damages `file` in place: flips the bits `mask` of the byte at `offset` (default: the middle of the file). */
export const flipByte = (file: string, offset = Math.floor(fs.statSync(file).size / 2), mask = 0x01) => {
  const fd = fs.openSync(file, "r+")
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, offset)
  b[0] = b[0]! ^ mask
  fs.writeSync(fd, b, 0, 1, offset)
  fs.closeSync(fd)
}

/** A node on a free port over `config` (on top of `smallLimits`), served over HTTP until `stop`. */
export const startNode = (config: Partial<ChronosConfigShape>) =>
  Effect.promise(async () => {
    const runtime = ManagedRuntime.make(
      Node.layerFromConfig().pipe(
        Layer.provideMerge(ChronosConfig.layer({ ...smallLimits, httpHost: "127.0.0.1", httpPort: 0, ...config }))
      )
    )
    const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    return { url: `http://127.0.0.1:${address.port}`, stop: () => runtime.dispose() }
  })

/**
 * The fields the storage tests read of a node's JSON answers: an append's positions, a read's events, a seal's
 * partitions, an error's tag and location (each present only in its kind of answer).
 */
export interface Body {
  readonly positions: ReadonlyArray<{ readonly partition: number; readonly seq: number }>
  readonly events: ReadonlyArray<{ readonly eventId: string; readonly type: string }>
  readonly partitions: ReadonlyArray<{ readonly partition: number; readonly segments: ReadonlyArray<{ readonly location: string }> }>
  readonly _tag: string
  readonly location: string
  readonly message: string
}

/** One HTTP request with a JSON body; the answer's status and JSON body (`{}` when empty). */
export const call = (url: string, method: string, body?: unknown) =>
  Effect.promise(async () => {
    const res = await fetch(url, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.text()
    return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as Body }
  })
