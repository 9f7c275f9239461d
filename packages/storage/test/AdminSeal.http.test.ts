import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime } from "effect"
import { HttpServer } from "effect/http"
import * as fs from "node:fs"
import * as path from "node:path"
import { ChronosConfig } from "@chronos/config"
import * as Node from "@chronos/server/Node"
import { listFiles, smallLimits, tempDir } from "./support.ts"

const startNode = (dataDir: string) =>
  Effect.promise(async () => {
    const runtime = ManagedRuntime.make(
      Node.layerFromConfig().pipe(
        Layer.provideMerge(ChronosConfig.layer({ ...smallLimits, httpHost: "127.0.0.1", httpPort: 0, logDriver: "file", dataDir }))
      )
    )
    const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    return { url: `http://127.0.0.1:${address.port}`, stop: () => runtime.dispose() }
  })

const call = (url: string, method: string, body?: unknown) =>
  Effect.promise(async () => {
    const res = await fetch(url, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: res.status, body: (await res.json()) as any }
  })

describe("POST /v1/admin/seal", () => {
  it.live("seals a running node's partitions into segments; after a restart the node serves the same events", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-admin-")
      const node = yield* startNode(dataDir)
      for (let i = 0; i < 40; i++) {
        const r = yield* call(`${node.url}/v1/tenants/acme/streams/order-${i % 8}/events`, "POST", {
          events: [{ type: "Placed", data: { i } }]
        })
        assert.strictEqual(r.status, 200)
      }
      const sealed = yield* call(`${node.url}/v1/admin/seal`, "POST")
      assert.strictEqual(sealed.status, 200)
      const rows = sealed.body.partitions.flatMap((p: any) => p.segments).reduce((n: number, s: any) => n + s.rows, 0)
      assert.strictEqual(rows, 40)
      for (const s of sealed.body.partitions.flatMap((p: any) => p.segments)) assert.isTrue(fs.existsSync(s.location))
      const before = yield* call(`${node.url}/v1/tenants/acme/events?limit=100`, "GET")
      yield* Effect.promise(() => node.stop())
      assert.strictEqual(listFiles(path.join(dataDir, "segments"), ".parquet").length, sealed.body.partitions.filter((p: any) => p.segments.length > 0).length)

      const again = yield* startNode(dataDir)
      const after = yield* call(`${again.url}/v1/tenants/acme/events?limit=100`, "GET")
      assert.deepStrictEqual(after.body, before.body)
      assert.strictEqual(after.body.events.length, 40)
      yield* Effect.promise(() => again.stop())
    }).pipe(Effect.scoped))
})
