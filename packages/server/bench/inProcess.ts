/**
 * Per-request CPU cost of the HTTP layers without sockets (stable on a noisy machine, unlike loopback load):
 * the same append / read requests through
 *   - the engine alone,
 *   - plain `HttpRouter` routes over the engine (Effect's HTTP stack, no HttpApi),
 *   - the node's HttpApi application (`HttpApp.layer`: decoding, validation middleware, handlers, encoding),
 * each driven by `HttpRouter.toWebHandler` with Web `Request`s (a cost common to both HTTP variants).
 *
 *     node packages/server/bench/inProcess.ts [requests]
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "effect/http"
import { ChronosConfig } from "@chronos/config"
import { Event } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import * as HttpApp from "../src/HttpApp.ts"

const n = Number(process.argv[2] ?? 20_000)
const Config = ChronosConfig.layer({ partitions: 32 })
const EngineLive = Engine.layerLocal.pipe(Layer.provide(EventLog.layerMemory), Layer.provideMerge(Config))

const PlainRoutes = HttpRouter.use(Effect.fnUntraced(function*(router) {
  const engine = yield* Engine
  yield* router.add("POST", "/v1/tenants/:tenant/streams/:stream/events", Effect.gen(function*() {
    const req = yield* HttpServerRequest.HttpServerRequest
    const params = yield* HttpRouter.params
    const body = yield* Effect.orDie(req.json)
    const result = yield* Effect.orDie(engine.append(params.tenant!, params.stream!, body as any))
    return HttpServerResponse.jsonUnsafe(result)
  }))
  yield* router.add("GET", "/v1/tenants/:tenant/streams/:stream/events", Effect.gen(function*() {
    const params = yield* HttpRouter.params
    const events = yield* Effect.orDie(engine.readStream(params.tenant!, params.stream!, {}))
    return HttpServerResponse.jsonUnsafe({ events: events.map(Event.toRecorded) })
  }))
}))

const body = (i: number) => JSON.stringify({ events: [{ type: "Deposited", data: { amount: 10, account: `acct-${i}`, note: "bench" } }] })

const measure = async (name: string, call: (i: number) => Promise<unknown>, count = n) => {
  for (let i = 0; i < count / 5; i++) await call(i)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < count; i++) await call(i)
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  console.log(
    `${name.padEnd(34)} ${((wall * 1000) / count).toFixed(1).padStart(7)} µs wall  ` +
      `${((cpu.user + cpu.system) / count).toFixed(1).padStart(7)} µs cpu`
  )
}

const web = (layer: Layer.Layer<never, never, any>) =>
  HttpRouter.toWebHandler(layer.pipe(Layer.provide(EngineLive), Layer.provide(HttpServer.layerServices)) as any, {
    disableLogger: true
  })

const main = async () => {
  const runtime = ManagedRuntime.make(EngineLive)
  const engine = await runtime.runPromise(Effect.gen(function*() { return yield* Engine }))
  await runtime.runPromise(engine.append("bench", "read-1", { events: Array.from({ length: 10 }, (_, k) => ({ type: "A", data: { k } })) as any }))

  const plain = web(PlainRoutes)
  const api = web(HttpApp.layer)
  await api.handler(new Request("http://x/v1/tenants/bench/streams/read-1/events", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ events: Array.from({ length: 10 }, (_, k) => ({ type: "A", data: { k } })) })
  }))
  await plain.handler(new Request("http://x/v1/tenants/bench/streams/read-1/events", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ events: Array.from({ length: 10 }, (_, k) => ({ type: "A", data: { k } })) })
  }))
  const post = (h: typeof api.handler) => (i: number) =>
    h(new Request(`http://x/v1/tenants/bench/streams/s-${i % 10_000}/events`, {
      method: "POST", headers: { "content-type": "application/json" }, body: body(i)
    })).then((r) => r.text())
  const get = (h: typeof api.handler) => () => h(new Request("http://x/v1/tenants/bench/streams/read-1/events")).then((r) => r.text())

  for (let round = 0; round < 2; round++) {
    await measure("append: engine only", (i) => runtime.runPromise(engine.append("bench", `e-${i % 10_000}`, JSON.parse(body(i)))))
    await measure("append: HttpRouter + engine", post(plain.handler))
    await measure("append: HttpApi (HttpApp.layer)", post(api.handler))
    await measure("read 10: engine only", () => runtime.runPromise(Effect.map(engine.readStream("bench", "read-1", {}), (es) => JSON.stringify({ events: es.map(Event.toRecorded) }))))
    await measure("read 10: HttpRouter + engine", get(plain.handler))
    await measure("read 10: HttpApi (HttpApp.layer)", get(api.handler))
    await measure("web Request/Response only", () => Promise.resolve(new Response(body(1), { headers: { "content-type": "application/json" } }).text()))
  }
  await plain.dispose()
  await api.dispose()
  await runtime.dispose()
}
main()
