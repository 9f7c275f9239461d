/**
 * HTTP client choice for `ChronosClient.layerHttp`: single-event appends per second through the generated client
 * over `fetch` (FetchHttpClient), undici (NodeHttpClient.layerUndici) and node:http with keep-alive
 * (NodeHttpClient.layerNodeHttp), against a node on `--url`.
 *
 *   node packages/client/bench/httpClient.ts http://127.0.0.1:3900 [appends] [concurrency]
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Effect, Layer } from "effect"
import { FetchHttpClient, type HttpClient } from "effect/http"
import { ChronosClient } from "../src/ChronosClient.ts"
import * as Http from "../src/internal/http.ts"

const url = process.argv[2] ?? "http://127.0.0.1:3900"
const appends = Number(process.argv[3] ?? 5_000)
const concurrency = Number(process.argv[4] ?? 64)

const clients: Record<string, Layer.Layer<HttpClient.HttpClient>> = {
  fetch: FetchHttpClient.layer,
  undici: NodeHttpClient.layerUndici,
  nodeHttp: NodeHttpClient.layerNodeHttp
}

const run = (name: string, round: number) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    const data = { text: "x".repeat(150), n: 1 }
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    yield* Effect.forEach(
      Array.from({ length: appends }, (_, i) => i),
      (i) => client.append("bench", `${name}-${round}-${i % 1_000}`, { events: [{ type: "E", data }] }),
      { concurrency, discard: true }
    )
    const cpu = process.cpuUsage(cpu0)
    return {
      perSec: Math.round(appends / ((performance.now() - t0) / 1000)),
      // Client CPU per append: what the choice of HTTP client changes, independent of the server's speed.
      clientCpuMicros: Math.round((cpu.user + cpu.system) / appends)
    }
  }).pipe(Effect.provide(Layer.effect(ChronosClient, Http.make({ url })).pipe(Layer.provide(clients[name]!))))

const main = Effect.gen(function*() {
  const results: Record<string, Array<{ perSec: number; clientCpuMicros: number }>> = { fetch: [], undici: [], nodeHttp: [] }
  for (let round = 0; round < 3; round++) {
    for (const name of Object.keys(clients)) results[name]!.push(yield* run(name, round))
  }
  console.log(JSON.stringify({ appends, concurrency, appendsPerSec: results }))
})

Effect.runPromise(main)
