/**
 * Subscriptions and projections benchmark (standalone; prints JSON on stdout, progress on stderr):
 *
 *  - delivery rate: a catch-up subscription from the start over a preloaded history, events/s until `CaughtUp`:
 *    (a) in-process, `Engine.subscribe` (the SDK's stream), (b) over HTTP, SSE from an in-process node on loopback,
 *    parsed by a minimal client;
 *  - end-to-end latency: a writer appends single events at a steady rate while one live subscriber listens;
 *    per event, `appendToDelivery` = delivery time − time the append was sent, and `ackToDelivery` = delivery time −
 *    time the writer got its acknowledgement (negative when the subscriber had the event before the writer had its
 *    ack: the watermark moves, and live subscribers are woken, before the response is written). In-process
 *    (engine append + `Engine.subscribe`) and over HTTP (POST + SSE);
 *  - projection rebuild rate over 1M events: in-process, memory log (so the log's replay is not what is measured),
 *    1M events appended first; then a managed declarative projection (`count` grouped by stream, 10 000 streams,
 *    memory checkpoint store, default checkpoint cadence) is defined and timed until it has folded every event,
 *    and the same fold through the SDK (`Projection.fold`) without checkpoints.
 *
 *     node bench/subscriptions.ts [--quick]      (--quick: 100k events for the rebuild, shorter phases)
 */
import { Effect, Layer, ManagedRuntime, Stream } from "effect"
import * as http from "node:http"
import { ChronosConfig } from "@chronos/config"
import { Event as DomainEvent, Ids } from "@chronos/domain"
import { CheckpointStore } from "@chronos/engine/CheckpointStore"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import * as Projection from "@chronos/engine/Projection"
import type * as Subscription from "@chronos/engine/Subscription"
import * as Node from "@chronos/server/Node"
import { HttpServer } from "effect/http"

const quick = process.argv.includes("--quick")
const log = (line: string) => process.stderr.write(`${line}\n`)
const type = Ids.EventType.make("Deposited")
const payload = { text: "x".repeat(160), amount: 42, currency: "EUR" } // ~200 B as JSON

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const summary = (samplesMs: Array<number>) => {
  const s = samplesMs.sort((a, b) => a - b)
  return {
    samples: s.length,
    p50_ms: +percentile(s, 50).toFixed(3),
    p99_ms: +percentile(s, 99).toFixed(3),
    max_ms: +s[s.length - 1]!.toFixed(3)
  }
}

/** Appends `n` events over `streams` streams: 20 events per append, 50 appends per `appendMany`. */
const preload = (engine: typeof Engine.Service, tenant: string, n: number, streams: number) =>
  Effect.gen(function*() {
    const perAppend = 20
    for (let i = 0; i < n; i += perAppend * 50) {
      const appends = []
      for (let a = i; a < Math.min(n, i + perAppend * 50); a += perAppend) {
        appends.push({
          tenant,
          stream: `s-${(a / perAppend) % streams}`,
          request: {
            events: Array.from({ length: Math.min(perAppend, n - a) }, (_, k) => ({ type, data: { ...payload, i: a + k } as never }))
          }
        })
      }
      const exits = yield* engine.appendMany(appends)
      for (const exit of exits) if (exit._tag === "Failure") return yield* Effect.die(new Error(String(exit.cause)))
    }
  })

const engineLayer = (partitions: number) =>
  Engine.layerLocal.pipe(Layer.provide(EventLog.layerMemory), Layer.provideMerge(ChronosConfig.layer({ partitions })))

// ---- delivery rate and latency, in-process -----------------------------------------------------------------------

const inProcess = async (historyEvents: number, latencyMs: number) => {
  const runtime = ManagedRuntime.make(engineLayer(32))
  const engine = await runtime.runPromise(Effect.gen(function*() { return yield* Engine }))
  await runtime.runPromise(preload(engine, "bench", historyEvents, 1_000))
  // Catch-up rate.
  const t0 = performance.now()
  const count = await runtime.runPromise(Effect.gen(function*() {
    const stream = yield* engine.subscribe("bench", { from: "start" })
    return yield* stream.pipe(
      Stream.takeUntil((item: Subscription.Item) => item._tag === "CaughtUp"),
      Stream.runFold(() => 0, (n, item) => item._tag === "Event" ? n + 1 : n)
    )
  }))
  const catchUpSeconds = (performance.now() - t0) / 1_000
  // Latency: one live subscriber, one paced writer.
  const sent = new Map<string, number>()
  const acked = new Map<string, number>()
  const toDelivery: Array<number> = []
  const ackToDelivery: Array<number> = []
  const subscriber = runtime.runFork(Effect.gen(function*() {
    const stream = yield* engine.subscribe("bench", { from: "now", stream: "latency" })
    yield* Stream.runForEach(stream, (item) =>
      Effect.sync(() => {
        if (item._tag !== "Event") return
        const now = performance.now()
        const id = item.event.eventId
        toDelivery.push(now - sent.get(id)!)
        const a = acked.get(id)
        if (a !== undefined) ackToDelivery.push(now - a)
        else acked.set(id, -now) // delivered first: the ack will record its (negative) difference
      }))
  }))
  await new Promise((r) => setTimeout(r, 100))
  const until = performance.now() + latencyMs
  for (let i = 0; performance.now() < until; i++) {
    const eventId = crypto.randomUUID()
    sent.set(eventId, performance.now())
    await runtime.runPromise(engine.append("bench", "latency", { events: [{ eventId: eventId as never, type, data: payload as never }] }))
    const now = performance.now()
    const delivered = acked.get(eventId)
    if (delivered !== undefined && delivered < 0) ackToDelivery.push(-delivered - now)
    else acked.set(eventId, now)
    await new Promise((r) => setTimeout(r, 2))
  }
  await new Promise((r) => setTimeout(r, 100))
  subscriber.interruptUnsafe()
  await runtime.dispose()
  return {
    catchUp: { events: count, seconds: +catchUpSeconds.toFixed(3), eventsPerSecond: Math.round(count / catchUpSeconds) },
    latency: { appendToDelivery: summary(toDelivery), ackToDelivery: summary(ackToDelivery) }
  }
}

// ---- delivery rate and latency, HTTP + SSE -----------------------------------------------------------------------

/** A minimal SSE reader: calls `onEvent` with each event's data (and the receive time), ends on `caught-up` if asked. */
const sseRead = (
  port: number,
  p: string,
  onEvent: (event: string, data: string, at: number) => boolean | void
): { done: Promise<void>; close: () => void } => {
  let req: http.ClientRequest | undefined
  const done = new Promise<void>((resolve, reject) => {
    req = http.get({ host: "127.0.0.1", port, path: p, agent: false }, (res) => {
      res.setEncoding("utf8")
      let buffer = ""
      res.on("data", (chunk: string) => {
        const at = performance.now()
        buffer += chunk
        let i: number
        while ((i = buffer.indexOf("\n\n")) !== -1) {
          const block = buffer.slice(0, i)
          buffer = buffer.slice(i + 2)
          let event = "message"
          let data = ""
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7)
            else if (line.startsWith("data: ")) data = line.slice(6)
          }
          if (data !== "" && onEvent(event, data, at) === true) {
            res.destroy()
            return resolve()
          }
        }
      })
      res.on("end", () => resolve())
      res.on("error", () => resolve())
    })
    req.on("error", reject)
  })
  return { done, close: () => req?.destroy() }
}

const overHttp = async (historyEvents: number, latencyMs: number) => {
  const runtime = ManagedRuntime.make(
    Node.layerFromConfig().pipe(
      Layer.provideMerge(ChronosConfig.layer({ httpHost: "127.0.0.1", httpPort: 0, logDriver: "memory", partitions: 32 }))
    )
  )
  const address = await runtime.runPromise(Effect.map(Effect.gen(function*() { return yield* HttpServer.HttpServer }), (s) => s.address))
  if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
  const port = address.port
  const engine = await runtime.runPromise(Effect.gen(function*() { return yield* Engine }))
  await runtime.runPromise(preload(engine, "bench", historyEvents, 1_000))
  // Catch-up rate over SSE.
  let count = 0
  const t0 = performance.now()
  await sseRead(port, "/v1/tenants/bench/subscribe?from=start", (event) => {
    if (event === "message") count++
    return event === "caught-up"
  }).done
  const catchUpSeconds = (performance.now() - t0) / 1_000
  // Latency: POST + SSE.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const sent = new Map<string, number>()
  const acked = new Map<string, number>()
  const delivered = new Map<string, number>()
  const live = sseRead(port, "/v1/tenants/bench/subscribe?from=now&stream=latency", (event, data, at) => {
    if (event !== "message") return
    delivered.set((JSON.parse(data) as DomainEvent.RecordedEvent).eventId, at)
  })
  await new Promise((r) => setTimeout(r, 200))
  const post = (body: string) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request({
        host: "127.0.0.1",
        port,
        path: "/v1/tenants/bench/streams/latency/events",
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
      }, (res) => {
        res.resume()
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`append ${res.statusCode}`))))
      })
      req.on("error", reject)
      req.end(body)
    })
  const until = performance.now() + latencyMs
  while (performance.now() < until) {
    const eventId = crypto.randomUUID()
    sent.set(eventId, performance.now())
    await post(JSON.stringify({ events: [{ eventId, type: "Deposited", data: payload }] }))
    acked.set(eventId, performance.now())
    await new Promise((r) => setTimeout(r, 2))
  }
  await new Promise((r) => setTimeout(r, 200))
  live.close()
  agent.destroy()
  await runtime.dispose()
  const toDelivery: Array<number> = []
  const ackToDelivery: Array<number> = []
  for (const [id, at] of delivered) {
    toDelivery.push(at - sent.get(id)!)
    ackToDelivery.push(at - acked.get(id)!)
  }
  return {
    catchUp: { events: count, seconds: +catchUpSeconds.toFixed(3), eventsPerSecond: Math.round(count / catchUpSeconds) },
    latency: { appends: sent.size, appendToDelivery: summary(toDelivery), ackToDelivery: summary(ackToDelivery) }
  }
}

// ---- projection rebuild ------------------------------------------------------------------------------------------

const rebuild = async (events: number) => {
  const layer = Layer.effect(Projection.Projections, Effect.gen(function*() {
    return yield* Projection.make(yield* Engine, yield* CheckpointStore, yield* ChronosConfig, { owner: "bench" })
  })).pipe(
    Layer.provideMerge(engineLayer(32)),
    Layer.provideMerge(CheckpointStore.layerMemory({ bytesMax: 64 * 1_048_576 }))
  )
  const runtime = ManagedRuntime.make(layer)
  const engine = await runtime.runPromise(Effect.gen(function*() { return yield* Engine }))
  const projections = await runtime.runPromise(Effect.gen(function*() { return yield* Projection.Projections }))
  const l0 = performance.now()
  await runtime.runPromise(preload(engine, "bench", events, 10_000))
  log(`  preloaded ${events} events in ${((performance.now() - l0) / 1_000).toFixed(1)} s`)
  // Managed: define, then poll until every event is folded.
  const t0 = performance.now()
  await runtime.runPromise(projections.define("bench", "by-stream", { kind: "count", groupBy: "stream" }))
  let status = await runtime.runPromise(projections.status("bench", "by-stream"))
  let peakRate = 0
  while (status.processedEvents < events) {
    await new Promise((r) => setTimeout(r, 20))
    status = await runtime.runPromise(projections.status("bench", "by-stream"))
    peakRate = Math.max(peakRate, status.progress.eventsPerSecond)
  }
  const managedSeconds = (performance.now() - t0) / 1_000
  // SDK fold, no checkpoints.
  const f0 = performance.now()
  const folded = await runtime.runPromise(
    Projection.fold(engine, "bench", {}, { initial: 0, step: (n: number) => n + 1 }).pipe(
      Stream.takeUntil((f) => f.caughtUp),
      Stream.runLast
    )
  )
  const foldSeconds = (performance.now() - f0) / 1_000
  await runtime.dispose()
  return {
    events,
    managed: {
      definition: "count by stream (10 000 keys), memory checkpoint store",
      seconds: +managedSeconds.toFixed(3),
      eventsPerSecond: Math.round(events / managedSeconds),
      reportedPeakEventsPerSecond: peakRate
    },
    sdkFold: {
      seconds: +foldSeconds.toFixed(3),
      eventsPerSecond: Math.round(events / foldSeconds),
      folded: folded._tag === "Some" ? folded.value.state : 0
    }
  }
}

const main = async () => {
  const history = quick ? 50_000 : 200_000
  const latencyMs = quick ? 1_500 : 5_000
  const rebuildEvents = quick ? 100_000 : 1_000_000
  log(`» in-process: catch-up over ${history} events, latency for ${latencyMs} ms`)
  const engine = await inProcess(history, latencyMs)
  log(`» HTTP + SSE: catch-up over ${history} events, latency for ${latencyMs} ms`)
  const sse = await overHttp(history, latencyMs)
  log(`» projection rebuild over ${rebuildEvents} events`)
  const projection = await rebuild(rebuildEvents)
  const result = {
    machine: { cpus: (await import("node:os")).cpus().length, node: process.version },
    subscription: { inProcess: engine, sse },
    projectionRebuild: projection
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
