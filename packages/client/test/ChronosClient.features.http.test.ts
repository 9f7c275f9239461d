/**
 * Search, forks, subscriptions, consumer groups and projections through `layerHttp` against a real node (in this
 * process, memory log, real HTTP on a loopback port): the same scenarios as the memory driver, plus what only HTTP
 * has — a subscription that survives dropped connections (through a TCP proxy whose sockets the test destroys)
 * with no gap and no duplicate, and the `ForkNotFound` that stream endpoints answer undeclared.
 */
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Queue, Stream } from "effect"
import { HttpServer } from "effect/http"
import * as net from "node:net"
import * as Node from "@chronos/server/Node"
import { ChronosClient, type SubscriptionItem } from "../src/index.ts"
import * as Scenarios from "./scenarios.ts"

const attemptsMax = 3

const NodeLive = Node.layer({
  httpHost: "127.0.0.1",
  httpPort: 0,
  logDriver: "memory",
  partitions: 4,
  subscriptionIdleWaitMs: 50,
  subscriptionKeepaliveMs: 200,
  subscriberLagEventsMax: 50,
  subscriptionLagCheckMs: 20,
  subscriptionWindowEventsMax: 64,
  consumerAttemptsMax: attemptsMax,
  consumerRetryBackoffMs: 10,
  consumerRetryBackoffMsMax: 40,
  projectionCheckpointIntervalMs: 50
}, { search: { embedder: "test", testEmbedderDimension: 64, indexIdleWaitMs: 20 } })

/** A TCP proxy in front of the node whose open connections can be cut at once (a network failure). */
class Proxy extends Context.Service<Proxy, {
  readonly url: string
  /** Destroys every open connection (the peers see a reset). */
  readonly cut: () => number
  /** Stops forwarding on every open connection without closing it (a half-open connection: nothing arrives). */
  readonly freeze: () => number
  /** Connections accepted so far. */
  readonly accepted: () => number
}>()("test/Proxy") {}

const ProxyLive = Layer.effect(Proxy, Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const address = server.address
  if (address._tag === "UnixPathAddress") return yield* Effect.die("expected a TCP address")
  const sockets = new Set<net.Socket>()
  const pairs = new Set<readonly [net.Socket, net.Socket]>()
  let accepted = 0
  const proxy = net.createServer((inbound) => {
    accepted++
    const outbound = net.connect(address.port, "127.0.0.1")
    sockets.add(inbound)
    sockets.add(outbound)
    const pair = [inbound, outbound] as const
    pairs.add(pair)
    inbound.on("close", () => pairs.delete(pair))
    inbound.pipe(outbound).pipe(inbound)
    const close = () => {
      inbound.destroy()
      outbound.destroy()
      sockets.delete(inbound)
      sockets.delete(outbound)
    }
    inbound.on("error", close).on("close", close)
    outbound.on("error", close).on("close", close)
  })
  yield* Effect.acquireRelease(
    Effect.callback<void>((resume) => void proxy.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () => Effect.sync(() => {
      for (const s of sockets) s.destroy()
      proxy.close()
    })
  )
  const port = (proxy.address() as net.AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    cut: () => {
      const n = sockets.size
      for (const s of sockets) s.destroy()
      sockets.clear()
      return n
    },
    accepted: () => accepted,
    freeze: () => {
      const n = pairs.size
      for (const [inbound, outbound] of pairs) {
        inbound.unpipe(outbound)
        outbound.unpipe(inbound)
        inbound.pause()
        outbound.pause()
      }
      pairs.clear()
      return n
    }
  }
}))

const ClientOfNode = Layer.unwrap(Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const address = server.address
  if (address._tag === "UnixPathAddress") return yield* Effect.die("expected a TCP address")
  return ChronosClient.layerHttp({ url: `http://127.0.0.1:${address.port}`, retryBaseDelayMs: 5 })
}))

/** A second client, through the proxy, reconnecting fast. */
const viaProxy = Effect.gen(function*() {
  const proxy = yield* Proxy
  return yield* Effect.map(
    Layer.build(ChronosClient.layerHttp({
      url: proxy.url,
      retryBaseDelayMs: 5,
      subscribeReconnectDelayMs: 10,
      subscribeReconnectDelayMsMax: 50,
      // Five times the node's keepalive (200 ms): a healthy idle connection is never taken for dead.
      subscribeIdleTimeoutMs: 1_000
    })),
    (context) => Context.get(context, ChronosClient)
  )
})

const Live = Layer.mergeAll(ClientOfNode, ProxyLive).pipe(Layer.provideMerge(NodeLive))

layer(Live, { timeout: 120_000, excludeTestServices: true })("ChronosClient (HTTP): search, forks, subscriptions, groups, projections", (it) => {
  it.effect("search round trip", () => Scenarios.searchRoundTrip("search"))
  it.effect("fork create, append in fork, diff, dry run, merge, discard", () => Scenarios.forkLifecycle("forks"))
  it.effect("a conflicting merge", () => Scenarios.forkConflict("conflict"))
  it.effect("subscribe: history, caught-up, live, resume", () => Scenarios.subscribeHistoryThenLive("subs"))
  it.effect("consumer group ack and park", () => Scenarios.consumerGroupAckAndPark("groups", attemptsMax))
  it.effect("projection state", () => Scenarios.projectionState("proj"))

  it.effect("a subscription resumes after dropped connections with no gap and no duplicate", () =>
    Effect.scoped(Effect.gen(function*() {
      const client = yield* ChronosClient
      const proxy = yield* Proxy
      const remote = yield* viaProxy
      const tenant = "resume"
      const append = (i: number) => client.append(tenant, "s", { events: [{ type: "Tick", data: { i } }] })
      for (let i = 0; i < 5; i++) yield* append(i)

      const queue = yield* Queue.unbounded<SubscriptionItem>()
      const fiber = yield* remote.subscribe(tenant, { from: "start" }).pipe(
        Stream.runForEach((item) => Queue.offer(queue, item)),
        Effect.forkChild
      )
      const received: Array<unknown> = []
      const take = (n: number) =>
        Effect.forEach(Array.from({ length: n }), () =>
          Queue.take(queue).pipe(
            Effect.tap((item) => Effect.sync(() => received.push(item._tag === "Event" ? item.event.streamVersion : item._tag))),
            Effect.timeoutOrElse({
              duration: "20 seconds",
              orElse: () =>
                Effect.flatMap(Fiber.await(fiber).pipe(Effect.timeoutOption("10 millis")), (exit) =>
                  Effect.die(new Error(`no item within 20 s; received ${JSON.stringify(received)}; subscription: ${String(exit)}`)))
            })
          ))
      const versions = (items: ReadonlyArray<SubscriptionItem>) =>
        items.map((i) => i._tag === "Event" ? i.event.streamVersion : i._tag)

      const history = yield* take(6)
      assert.deepStrictEqual(versions(history), [0, 1, 2, 3, 4, "CaughtUp"])
      // Each event's position is the vector right after it: its own partition at its sequence (other partitions at
      // what the subscription examined of them, other tenants' events included).
      const vector = (position: string) => new Map(position.split(",").map((pair) => pair.split(":").map(Number) as [number, number]))
      const assertPositions = (items: ReadonlyArray<SubscriptionItem>) => {
        let previous = new Map<number, number>()
        for (const item of items) {
          if (item._tag !== "Event") continue
          const position = vector(item.position)
          assert.strictEqual(position.get(item.event.partition), item.event.seq)
          for (const [p, seq] of previous) assert.isAtLeast(position.get(p) ?? 0, seq, `partition ${p} went back`)
          previous = position
        }
      }
      assertPositions(history)

      // Drop 1: after the catch-up, then events appended while the subscriber is disconnected.
      assert.isAbove(proxy.cut(), 0)
      for (let i = 5; i < 8; i++) yield* append(i)
      const afterFirstDrop = yield* take(3)
      assert.deepStrictEqual(versions(afterFirstDrop), [5, 6, 7], "no second CaughtUp, no gap, no duplicate")

      // Drop 2 and 3 in quick succession, with events in between.
      assert.isAbove(proxy.cut(), 0)
      yield* append(8)
      assert.deepStrictEqual(versions(yield* take(1)), [8])
      proxy.cut()
      yield* append(9)
      yield* append(10)
      const rest = yield* take(2)
      assert.deepStrictEqual(versions(rest), [9, 10])
      // Exact positions: the sequence of each event follows the previous one (one stream, one partition).
      const all = [...history.slice(0, 5), ...afterFirstDrop, ...rest]
      const seqs = all.map((i) => i._tag === "Event" ? i.event.seq : -1)
      for (let k = 1; k < seqs.length; k++) assert.isAbove(seqs[k]!, seqs[k - 1]!)
      assertPositions(all)
      // Nothing else was delivered in between: the next item is the next event appended.
      yield* append(11)
      assert.deepStrictEqual(versions(yield* take(1)), [11])
      yield* Fiber.interrupt(fiber)
    })))

  it.effect("a subscription whose connection goes silent (half-open) is replaced after the idle timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const client = yield* ChronosClient
      const proxy = yield* Proxy
      const remote = yield* viaProxy
      const tenant = "silent"
      const append = (i: number) => client.append(tenant, "s", { events: [{ type: "Tick", data: { i } }] })
      yield* append(0)
      const queue = yield* Queue.unbounded<SubscriptionItem>()
      const fiber = yield* remote.subscribe(tenant).pipe(Stream.runForEach((item) => Queue.offer(queue, item)), Effect.forkChild)
      const take = (n: number) =>
        Effect.forEach(Array.from({ length: n }), () =>
          Queue.take(queue).pipe(Effect.timeoutOrElse({
            duration: "20 seconds",
            orElse: () => Effect.die(new Error("no item within 20 s"))
          })))
      const versions = (items: ReadonlyArray<SubscriptionItem>) =>
        items.map((i) => i._tag === "Event" ? i.event.streamVersion : i._tag)
      assert.deepStrictEqual(versions(yield* take(2)), [0, "CaughtUp"])
      // An idle healthy connection stays: the node's keepalives keep it alive past the idle timeout. (A deliberate
      // observation window longer than the timeout, not a wait for a condition.)
      const connections = proxy.accepted()
      yield* Effect.sleep("1500 millis")
      assert.strictEqual(proxy.accepted(), connections, "no reconnect of a healthy idle subscription")
      yield* append(1)
      assert.deepStrictEqual(versions(yield* take(1)), [1])
      assert.isAbove(proxy.freeze(), 0)
      yield* append(2)
      yield* append(3)
      assert.deepStrictEqual(versions(yield* take(2)), [2, 3])
      yield* Fiber.interrupt(fiber)
    })), { timeout: 60_000 })

  it.effect("a subscriber that stops reading gets a Lagging item when it reads again, and misses nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const client = yield* ChronosClient
      const pull = yield* Stream.toPull(client.subscribe("lag", { from: "now" }))
      let caughtUp = false
      while (!caughtUp) caughtUp = (yield* pull).some((item) => item._tag === "CaughtUp")
      // ~30 MB while nothing is pulled: more than the socket buffers hold, so the node sees the subscriber stop.
      const big = "x".repeat(10_000)
      const total = 3_000
      for (let i = 0; i < total; i += 50) {
        yield* client.append("lag", `s-${i % 9}`, {
          events: Array.from({ length: 50 }, (_, k) => ({ type: "Filler", data: { i: i + k, big } }))
        })
      }
      const seen = new Set<number>()
      const lagging: Array<SubscriptionItem> = []
      while (seen.size < total) {
        for (const item of yield* pull) {
          if (item._tag === "Lagging") lagging.push(item)
          else if (item._tag === "Event") {
            const i = (item.event.data as { i: number }).i
            assert.isFalse(seen.has(i), `event ${i} delivered twice`)
            seen.add(i)
          }
        }
      }
      assert.isAtLeast(lagging.length, 1, "told at least once")
      const notice = lagging[0]!
      assert.isTrue(notice._tag === "Lagging" && notice.max === 50 && notice.lag > 50, JSON.stringify(notice))
    })), { timeout: 120_000 })

  it.effect("a subscription fails with Unavailable once its reconnects run out", () =>
    Effect.gen(function*() {
      // Nothing listens on this port: every connection attempt fails.
      const port = yield* Effect.promise(() =>
        new Promise<number>((resolve) => {
          const s = net.createServer().listen(0, "127.0.0.1", () => {
            const p = (s.address() as net.AddressInfo).port
            s.close(() => resolve(p))
          })
        })
      )
      const dead = yield* Effect.map(
        Layer.build(ChronosClient.layerHttp({
          url: `http://127.0.0.1:${port}`,
          retriesMax: 0,
          subscribeReconnectsMax: 3,
          subscribeReconnectDelayMs: 5,
          subscribeReconnectDelayMsMax: 10
        })),
        (context) => Context.get(context, ChronosClient)
      )
      const error = yield* Effect.flip(Stream.runDrain(dead.subscribe("acme")))
      assert.strictEqual(error._tag, "Unavailable")
      assert.include(error.message, "after 3 reconnects")
    }).pipe(Effect.scoped))

  it.effect("bad subscription options fail at once, without reconnects", () =>
    Effect.gen(function*() {
      const client = yield* ChronosClient
      const error = yield* Effect.flip(Stream.runDrain(client.subscribe("acme", { from: "yesterday" })))
      assert.strictEqual(error._tag, "InvalidRequest")
      if (error._tag === "InvalidRequest") assert.strictEqual(error.field, "from")
    }))
})
