/**
 * Reference servers for measuring what HttpApi costs on the hot paths, started like `main.ts` and loaded with
 * `httpLoad.ts --url`:
 *   --kind raw     node:http with no engine (fixed answers): the floor of the transport on this machine;
 *   --kind engine  node:http calling the same `Engine` directly (JSON.parse + Engine + JSON.stringify): the
 *                  ceiling of any faster path that keeps the engine.
 */
import { Effect, Exit, Layer, ManagedRuntime } from "effect"
import { createServer } from "node:http"
import { ChronosConfig } from "@chronos/config"
import { Event } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"

const args = new Map<string, string>()
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1]!)
const kind = args.get("kind") ?? "raw"
const port = Number(args.get("port") ?? 3999)

const runtime = ManagedRuntime.make(
  Engine.layerLocal.pipe(Layer.provide(EventLog.layerMemory), Layer.provide(ChronosConfig.layer({ partitions: 32 })))
)
const engine = await runtime.runPromise(Effect.gen(function*() { return yield* Engine }))

if (kind === "router") {
  // Effect's HttpServer + HttpRouter with plain routes (no HttpApi): the cost of the Effect HTTP stack alone.
  const { NodeHttpServer } = await import("@effect/platform-node")
  const { HttpRouter, HttpServerRequest, HttpServerResponse } = await import("effect/http")
  const Routes = HttpRouter.use(Effect.fnUntraced(function*(router) {
    yield* router.add("POST", "/v1/tenants/:tenant/streams/:stream/events", Effect.gen(function*() {
      const req = yield* HttpServerRequest.HttpServerRequest
      const params = yield* HttpRouter.params
      const body = yield* Effect.orDie(req.json)
      const result = yield* Effect.orDie(engine.append(params.tenant!, params.stream!, body as Event.AppendRequest) /* trusted benchmark input */)
      return HttpServerResponse.jsonUnsafe(result)
    }))
    yield* router.add("GET", "/v1/tenants/:tenant/streams/:stream/events", Effect.gen(function*() {
      const params = yield* HttpRouter.params
      const events = yield* Effect.orDie(engine.readStream(params.tenant!, params.stream!, {}))
      return HttpServerResponse.jsonUnsafe({ events: events.map(Event.toRecorded) })
    }))
  }))
  const { createServer: cs } = await import("node:http")
  Layer.launch(HttpRouter.serve(Routes, { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provide(NodeHttpServer.layer(cs, { host: "127.0.0.1", port }))
  )).pipe(Effect.runFork)
  console.log(`baseline ${kind} listening on http://127.0.0.1:${port}`)
} else {
const route = /^\/v1\/tenants\/([^/]+)\/streams\/([^/]+)\/events$/

createServer((req, res) => {
  const m = route.exec(req.url!.split("?")[0]!)
  const send = (status: number, body: string) => {
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
    res.end(body)
  }
  if (req.method === "POST") {
    const chunks: Array<Buffer> = []
    req.on("data", (c) => chunks.push(c))
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString())
      if (kind === "raw") return send(200, `{"firstVersion":0,"lastVersion":0,"positions":[{"partition":1,"seq":1}]}`)
      runtime.runCallback(engine.append(m![1]!, m![2]!, body), {
        onExit: (exit) => Exit.isSuccess(exit) ? send(200, JSON.stringify(exit.value)) : send(500, "{}")
      })
    })
    return
  }
  if (kind === "raw") return send(200, `{"status":"ok","partitions":32}`)
  runtime.runCallback(Effect.map(engine.readStream(m![1]!, m![2]!, {}), (events) => ({ events: events.map(Event.toRecorded) })), {
    onExit: (exit) => Exit.isSuccess(exit) ? send(200, JSON.stringify(exit.value)) : send(500, "{}")
  })
}).listen(port, "127.0.0.1", () => console.log(`baseline ${kind} listening on http://127.0.0.1:${port}`))
}
