import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime } from "effect"
import { HttpServer } from "effect/http"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import * as Node from "@chronos/server/Node"
import * as Retention from "../src/Retention.ts"
import { smallLimits, tempDir } from "./support.ts"

const startNode = (dataDir: string) =>
  Effect.promise(async () => {
    const runtime = ManagedRuntime.make(
      Node.layerFromConfig().pipe(
        Layer.provideMerge(ChronosConfig.layer({ ...smallLimits, httpHost: "127.0.0.1", httpPort: 0, logDriver: "file", dataDir }))
      )
    )
    const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    return { runtime, url: `http://127.0.0.1:${address.port}`, stop: () => runtime.dispose() }
  })

const get = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url)
    return { status: res.status, body: (await res.json()) as any }
  })

const post = (url: string, body: unknown) =>
  Effect.promise(async () => {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
    return { status: res.status, body: (await res.json()) as any }
  })

const labels = (events: ReadonlyArray<{ streamVersion: number; type: string }>) => events.map((e) => `${e.streamVersion}:${e.type}`)

describe("Retention on reads over HTTP", () => {
  it.live("maxCount, truncateBefore, maxAge and soft deletion hide events from reads, queries and state at once", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("chronos-retention-http-")
      const node = yield* startNode(dataDir)
      const engine = yield* Effect.promise(() => node.runtime.runPromise(Effect.gen(function*() {
        return yield* Engine
      })))
      const base = `${node.url}/v1/tenants/acme`
      const put = (stream: string, n: number) =>
        Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
          Effect.tap(post(`${base}/streams/${stream}/events`, { events: [{ type: "Data", data: { amount: i + 1 } }] }), (r) =>
            Effect.sync(() => assert.strictEqual(r.status, 200))), { discard: true })
      yield* put("counted", 10)
      yield* put("truncated", 5)
      yield* put("deleted", 4)
      yield* put("aging", 3)
      yield* put("plain", 3)
      const read = (stream: string, query = "limit=1000") =>
        Effect.map(get(`${base}/streams/${stream}/events?${query}`), (r) => {
          assert.strictEqual(r.status, 200, JSON.stringify(r.body))
          return labels(r.body.events)
        })
      assert.deepStrictEqual(yield* read("counted"), Array.from({ length: 10 }, (_, v) => `${v}:Data`))

      // Rules are events of the stream (the engine's own API: system types are not accepted over HTTP).
      yield* Retention.setSettings(engine, "acme", "counted", { maxCount: 3 })
      yield* Retention.setSettings(engine, "acme", "truncated", { truncateBefore: 3 })
      yield* Retention.deleteStream(engine, "acme", "deleted", { hard: false })
      yield* put("deleted", 1) // a new life: versions continue

      // Visible at once, with no seal or compaction.
      assert.deepStrictEqual(yield* read("counted"), ["8:Data", "9:Data", "10:$metadata"])
      assert.deepStrictEqual(yield* read("truncated"), ["3:Data", "4:Data", "5:$metadata"])
      assert.deepStrictEqual(yield* read("deleted"), ["4:$deleted", "5:Data"])
      assert.deepStrictEqual(yield* read("plain"), ["0:Data", "1:Data", "2:Data"])
      // Paging and direction keep their meaning across hidden events.
      assert.deepStrictEqual(yield* read("counted", "limit=2"), ["8:Data", "9:Data"])
      assert.deepStrictEqual(yield* read("counted", "fromVersion=0&limit=1"), ["8:Data"])
      assert.deepStrictEqual(yield* read("counted", "direction=backward&limit=2"), ["10:$metadata", "9:Data"])
      assert.deepStrictEqual(yield* read("counted", "direction=backward&fromVersion=9&limit=5"), ["9:Data", "8:Data"])
      assert.deepStrictEqual(yield* read("truncated", "direction=backward&limit=10"), ["5:$metadata", "4:Data", "3:Data"])
      // The HttpApi path (an escaped query) answers like the direct path.
      assert.deepStrictEqual(yield* read("counted", "asOf=2999-01-01T00%3A00%3A00Z&limit=100"), ["8:Data", "9:Data", "10:$metadata"])

      // Rules replaced by a later $metadata; system events below the cutoff stay visible, in both directions.
      yield* put("layered", 2)
      yield* Retention.setSettings(engine, "acme", "layered", { maxCount: 100 })
      yield* Retention.deleteStream(engine, "acme", "layered", { hard: false })
      yield* put("layered", 2)
      yield* Retention.setSettings(engine, "acme", "layered", { truncateBefore: 6 })
      yield* put("layered", 1)
      const layered = ["2:$metadata", "3:$deleted", "6:$metadata", "7:Data"]
      assert.deepStrictEqual(yield* read("layered"), layered)
      assert.deepStrictEqual(yield* read("layered", "limit=3"), layered.slice(0, 3))
      assert.deepStrictEqual(yield* read("layered", "fromVersion=3&limit=2"), ["3:$deleted", "6:$metadata"])
      for (const limit of [1, 2, 3, 4, 10]) {
        assert.deepStrictEqual(yield* read("layered", `direction=backward&limit=${limit}`), layered.slice().reverse().slice(0, limit))
      }
      assert.deepStrictEqual(yield* read("layered", "direction=backward&fromVersion=5&limit=10"), ["3:$deleted", "2:$metadata"])

      // State folds only what is visible: amounts 9 + 10 of "counted", 4 + 5 of "truncated", 1 after the tombstone.
      const sum = (stream: string) => Effect.map(get(`${base}/streams/${stream}/state?reducer=sum:amount`), (r) => r.body)
      assert.deepInclude(yield* sum("counted"), { state: 19, version: 10 })
      assert.deepInclude(yield* sum("truncated"), { state: 9, version: 5 })
      assert.deepInclude(yield* sum("deleted"), { state: 1, version: 5 })
      assert.deepInclude(yield* sum("plain"), { state: 6, version: 2 })

      // Tenant queries and partition reads, paged two at a time: exactly the visible events, none hidden.
      const expected = new Set([
        ...["8:Data", "9:Data", "10:$metadata"].map((l) => `counted/${l}`),
        ...["3:Data", "4:Data", "5:$metadata"].map((l) => `truncated/${l}`),
        ...["4:$deleted", "5:Data"].map((l) => `deleted/${l}`),
        ...["0:Data", "1:Data", "2:Data"].map((l) => `aging/${l}`),
        ...["0:Data", "1:Data", "2:Data"].map((l) => `plain/${l}`),
        ...layered.map((l) => `layered/${l}`)
      ])
      const queried: Array<string> = []
      let after: string | undefined
      do {
        const r = yield* get(`${base}/events?limit=2${after === undefined ? "" : `&after=${encodeURIComponent(after)}`}`)
        assert.strictEqual(r.status, 200)
        assert.isAtMost(r.body.events.length, 2)
        if (r.body.next !== undefined) assert.strictEqual(r.body.events.length, 2)
        for (const e of r.body.events) queried.push(`${e.stream}/${e.streamVersion}:${e.type}`)
        after = r.body.next
      } while (after !== undefined)
      assert.deepStrictEqual(new Set(queried), expected)
      assert.strictEqual(queried.length, expected.size)
      const byPartition: Array<string> = []
      for (let p = 0; p < smallLimits.partitions; p++) {
        let fromSeq = 1
        while (true) {
          const r = yield* get(`${base}/partitions/${p}/events?limit=2&fromSeq=${fromSeq}`)
          assert.strictEqual(r.status, 200)
          for (const e of r.body.events) byPartition.push(`${e.stream}/${e.streamVersion}:${e.type}`)
          if (r.body.events.length < 2) break
          fromSeq = r.body.events[1].seq + 1
        }
      }
      assert.deepStrictEqual(new Set(byPartition), expected)

      // maxAge: events older than 300 ms disappear by themselves (polled, bounded); the $metadata stays.
      yield* Retention.setSettings(engine, "acme", "aging", { maxAgeMs: 300 })
      const deadline = Date.now() + 10_000
      let aging = yield* read("aging")
      while (aging.length > 1 && Date.now() < deadline) {
        yield* Effect.sleep(50)
        aging = yield* read("aging")
      }
      assert.deepStrictEqual(aging, ["3:$metadata"])
      yield* Effect.promise(() => node.stop())
    }).pipe(Effect.scoped))
})
