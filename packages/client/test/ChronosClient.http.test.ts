import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Random } from "effect"
import { HttpServer } from "effect/http"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as Node from "@chronos/server/Node"
import { ChronosClient } from "../src/index.ts"

/** A node on a free loopback port, over the memory log; the client points at it. */
const NodeLive = Node.layer({ httpHost: "127.0.0.1", httpPort: 0, logDriver: "memory", partitions: 4 })

const ClientOfNode = Layer.unwrap(Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const address = server.address
  if (address._tag === "UnixPathAddress") return yield* Effect.die("expected a TCP address")
  return ChronosClient.layerHttp({ url: `http://127.0.0.1:${address.port}`, retryBaseDelayMs: 5 })
}))

const id = (n: number) => `0b6a1f4e-3f7e-4a59-9a9e-${n.toString(16).padStart(12, "0")}`

// Live services: a real node runs timers (commit linger, cluster start-up) that a TestClock would never advance.
layer(ClientOfNode.pipe(Layer.provideMerge(NodeLive)), { timeout: 60_000, excludeTestServices: true })("ChronosClient (HTTP)", (it) => {
  it.effect("appends, reads, queries and folds state over HTTP", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      const first = yield* client.append("acme", "order-1", {
        expectedVersion: "no_stream",
        events: [{ type: "Placed", data: { total: 10 }, metadata: { correlationId: "c1" } }]
      })
      assert.deepStrictEqual([first.firstVersion, first.lastVersion], [0, 0])
      yield* client.append("acme", "order-1", {
        expectedVersion: 0,
        events: [{ type: "Paid", data: { paid: true } }, { type: "Shipped", data: { carrier: "ups" } }]
      })
      const events = yield* client.read("acme", "order-1")
      assert.deepStrictEqual(events.map((e) => [e.type, e.streamVersion]), [["Placed", 0], ["Paid", 1], ["Shipped", 2]])
      assert.deepStrictEqual(events[0]!.metadata, { correlationId: "c1" })
      const backward = yield* client.read("acme", "order-1", { direction: "backward", limit: 1 })
      assert.deepStrictEqual(backward.map((e) => e.streamVersion), [2])
      const page = yield* client.query("acme", { types: ["Placed", "Paid"], limit: 1 })
      assert.strictEqual(page.events.length, 1)
      assert.isDefined(page.next)
      const rest = yield* client.query("acme", { types: ["Placed", "Paid"], after: page.next })
      assert.deepStrictEqual(rest.events.map((e) => e.type), ["Paid"])
      const inPartition = yield* client.readPartition("acme", events[0]!.partition)
      assert.strictEqual(inPartition.filter((e) => e.stream === "order-1").length, 3)
      const state = yield* client.state("acme", "order-1", { reducer: "merge" })
      assert.deepStrictEqual(state.state, { total: 10, paid: true, carrier: "ups" })
      assert.deepStrictEqual(yield* client.health(), { status: "ok", partitions: 4 })
      assert.strictEqual((yield* client.partitions()).length, 4)
    }))

  it.effect("fails with the same typed errors as embedded mode", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      yield* client.append("acme", "errors", { events: [{ type: "A", data: 1 }] })
      const wrong = yield* Effect.flip(client.append("acme", "errors", { expectedVersion: 5, events: [{ type: "B", data: 1 }] }))
      assert.strictEqual(wrong._tag, "WrongExpectedVersion")
      if (wrong._tag === "WrongExpectedVersion") assert.strictEqual(wrong.actual, 0)
      const missing = yield* Effect.flip(client.state("acme", "nope"))
      assert.strictEqual(missing._tag, "StreamNotFound")
      const tooMany = yield* Effect.flip(client.read("acme", "errors", { limit: 1_000_000 }))
      assert.strictEqual(tooMany._tag, "LimitExceeded")
      // Checked by the server: named by the SDK argument (`limit`), not by its HTTP location (`query.limit`).
      const zero = yield* Effect.flip(client.read("acme", "errors", { limit: 0 }))
      assert.strictEqual(zero._tag === "InvalidRequest" && zero.field, "limit")
      const badAsOf = yield* Effect.flip(client.read("acme", "errors", { asOf: "yesterday" }))
      assert.strictEqual(badAsOf._tag === "InvalidRequest" && badAsOf.field, "asOf")
      const badType = yield* Effect.flip(client.append("acme", "errors", { events: [{ type: "A", data: 1 }, { type: "9", data: 1 }] }))
      assert.strictEqual(badType._tag === "InvalidRequest" && badType.field, "events[1].type")
      const excess = yield* Effect.flip(client.append("acme", "errors", { events: [{ type: "A", data: 1, extra: 1 } as never] }))
      assert.strictEqual(excess._tag === "InvalidRequest" && excess.field, "events[0].extra")
      const badTenant = yield* Effect.flip(client.read("a/b", "s"))
      assert.strictEqual(badTenant._tag === "InvalidRequest" && badTenant.field, "tenant")
      const fnReducer = yield* Effect.flip(
        client.state("acme", "errors", { reducer: { name: "n", initial: 0, step: (n: number) => n + 1 } })
      )
      assert.strictEqual(fnReducer._tag === "InvalidRequest" && fnReducer.field, "reducer")
    }))

  it.effect("gives every event without an id a UUID v4 before sending", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      yield* client.append("acme", "ids", { events: [{ type: "A", data: 1 }, { eventId: id(7), type: "B", data: 2 }] })
      const events = yield* client.read("acme", "ids")
      assert.match(events[0]!.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      assert.strictEqual(events[1]!.eventId, id(7))
    }))
})

describe("ChronosClient (HTTP) transient failures", () => {
  /** A server that fails the first `failures` requests with a proxy-like 502 page, then forwards to `target`. */
  const flakyProxy = (target: string, failures: number) =>
    Effect.acquireRelease(
      Effect.promise(() => {
        let remaining = failures
        const bodies: Array<string> = []
        const server = createServer(async (req, res) => {
          const chunks: Array<Buffer> = []
          for await (const chunk of req) chunks.push(chunk as Buffer)
          const body = Buffer.concat(chunks)
          bodies.push(body.toString())
          if (remaining-- > 0) {
            res.writeHead(502, { "content-type": "text/html" }).end("<html>bad gateway</html>")
            return
          }
          const upstream = await fetch(`${target}${req.url}`, {
            method: req.method!,
            headers: { "content-type": String(req.headers["content-type"] ?? "application/json") },
            ...(body.length > 0 ? { body } : {})
          })
          res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "" })
          res.end(Buffer.from(await upstream.arrayBuffer()))
        })
        return new Promise<{ readonly url: string; readonly bodies: Array<string>; readonly close: () => void }>(
          (resolve) =>
            server.listen(0, "127.0.0.1", () =>
              resolve({
                url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
                bodies,
                close: () => server.close()
              }))
        )
      }),
      (proxy) => Effect.sync(proxy.close)
    )

  // Live clock: the backoff really sleeps (a few ms here).
  it.live("retries transient failures with the same event ids, and gives up with Unavailable", () =>
    Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const address = server.address
      if (address._tag === "UnixPathAddress") return yield* Effect.die("expected a TCP address")
      const target = `http://127.0.0.1:${address.port}`

      // Two 502s, then success: one append, sent three times with identical bodies.
      const proxy = yield* flakyProxy(target, 2)
      const result = yield* Effect.gen(function*() {
        const client = yield* ChronosClient
        return yield* client.append("acme", "retried", { events: [{ type: "A", data: 1 }] })
      }).pipe(Effect.provide(ChronosClient.layerHttp({ url: proxy.url, retryBaseDelayMs: 1 })))
      assert.strictEqual(result.firstVersion, 0)
      assert.strictEqual(proxy.bodies.length, 3)
      assert.strictEqual(new Set(proxy.bodies).size, 1)
      assert.match(proxy.bodies[0]!, /"eventId":"[0-9a-f-]{36}"/)

      // Always 502: Unavailable after the bounded number of attempts (1 + retriesMax).
      const broken = yield* flakyProxy(target, 1_000)
      const error = yield* Effect.gen(function*() {
        const client = yield* ChronosClient
        return yield* Effect.flip(client.append("acme", "retried", { events: [{ type: "A", data: 1 }] }))
      }).pipe(Effect.provide(ChronosClient.layerHttp({ url: broken.url, retriesMax: 2, retryBaseDelayMs: 1 })))
      assert.strictEqual(error._tag, "Unavailable")
      assert.strictEqual(broken.bodies.length, 3)

      // Nothing listening: Unavailable (a connection error), not a defect.
      const refused = yield* Effect.gen(function*() {
        const client = yield* ChronosClient
        return yield* Effect.flip(client.health())
      }).pipe(Effect.provide(ChronosClient.layerHttp({ url: "http://127.0.0.1:9", retriesMax: 1, retryBaseDelayMs: 1 })))
      assert.strictEqual(refused._tag, "Unavailable")
      assert.isTrue(refused.retryable)

      // A response the API does not declare (here the node's JSON 404 for an unknown path): Unavailable, not retried.
      const undeclared = yield* Effect.gen(function*() {
        const client = yield* ChronosClient
        return yield* Effect.flip(client.health())
      }).pipe(Effect.provide(ChronosClient.layerHttp({ url: `${target}/not-chronos`, retryBaseDelayMs: 1 })))
      assert.strictEqual(undeclared._tag, "Unavailable")
      assert.isFalse(undeclared.retryable)
      assert.match(undeclared.message, /HTTP 404/)
    }).pipe(Effect.scoped, Effect.provide(NodeLive), Random.withSeed("chronos")), { timeout: 60_000 })
})
