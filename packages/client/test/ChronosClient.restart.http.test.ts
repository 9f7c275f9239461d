/**
 * A subscription over HTTP across a restart of its node: a real node over the file log is shut down (gracefully:
 * the node ends its SSE bodies) and started again on the same port and data directory; the subscriber reconnects
 * by itself and receives exactly the events after the last one it had, including those appended while it was away.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, ManagedRuntime, Queue, Stream } from "effect"
import { HttpServer } from "effect/http"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Node from "@chronos/server/Node"
import { ChronosClient, type SubscriptionItem } from "../src/index.ts"

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer().once("error", reject).listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

describe("ChronosClient (HTTP): subscription across a node restart", () => {
  it.live("resumes after the restart with no gap and no duplicate", () =>
    Effect.gen(function*() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-restart-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
      const port = yield* Effect.promise(freePort)
      const startNode = Effect.promise(async () => {
        const runtime = ManagedRuntime.make(Node.layer(
          { httpHost: "127.0.0.1", httpPort: port, logDriver: "file", dataDir, partitions: 4, subscriptionIdleWaitMs: 50 },
          { search: { embedder: "test" } }
        ))
        await runtime.runPromise(Effect.asVoid(HttpServer.HttpServer))
        return runtime
      })
      let node = yield* startNode
      yield* Effect.addFinalizer(() => Effect.promise(() => node.dispose()))

      const client = yield* Layer.build(ChronosClient.layerHttp({
        url: `http://127.0.0.1:${port}`,
        retryBaseDelayMs: 20,
        retriesMax: 50,
        subscribeReconnectsMax: 100,
        subscribeReconnectDelayMs: 20,
        subscribeReconnectDelayMsMax: 200
      })).pipe(Effect.map((context) => Context.get(context, ChronosClient)))
      const append = (i: number) => client.append("acme", "s", { events: [{ type: "Tick", data: { i } }] })
      for (let i = 0; i < 3; i++) yield* append(i)

      const queue = yield* Queue.unbounded<SubscriptionItem>()
      const fiber = yield* client.subscribe("acme", { from: "start" }).pipe(
        Stream.runForEach((item) => Queue.offer(queue, item)),
        Effect.forkChild
      )
      const take = (n: number) =>
        Effect.forEach(Array.from({ length: n }), () =>
          Queue.take(queue).pipe(Effect.timeoutOrElse({
            duration: "30 seconds",
            orElse: () => Effect.die(new Error("no item within 30 s"))
          })))
      const versions = (items: ReadonlyArray<SubscriptionItem>) =>
        items.map((i) => i._tag === "Event" ? i.event.streamVersion : i._tag)

      const before = yield* take(4)
      assert.deepStrictEqual(versions(before), [0, 1, 2, "CaughtUp"])

      // Restart: graceful shutdown (SSE bodies end), then the same store on the same port.
      yield* Effect.promise(() => node.dispose())
      node = yield* startNode
      yield* append(3)
      yield* append(4)
      const after = yield* take(2)
      assert.deepStrictEqual(versions(after), [3, 4], "no gap, no duplicate, no second CaughtUp")
      yield* append(5)
      assert.deepStrictEqual(versions(yield* take(1)), [5])
      const seqs = [...before, ...after].flatMap((i) => i._tag === "Event" ? [i.event.seq] : [])
      assert.deepStrictEqual(seqs, [1, 2, 3, 4, 5])
      for (const item of [...before, ...after]) {
        if (item._tag === "Event") assert.include(item.position.split(","), `${item.event.partition}:${item.event.seq}`)
      }
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.scoped), 120_000)
})
