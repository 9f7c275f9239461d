/**
 * Per-append overhead of the embedded SDK over calling `Engine.append` directly, on the benchmark's shape:
 * 8 writers, each pipelining up to 256 single-event appends, over the memory log (so the log does not dominate).
 *
 *   node packages/client/bench/appendOverhead.ts [rounds]
 *
 * Prints the validation cost alone (fast path vs a full schema decode), then alternating end-to-end runs.
 */
import { Effect, Layer, Schema } from "effect"
import { ChronosConfig } from "@chronos/config"
import { Event } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import { ChronosClient } from "../src/ChronosClient.ts"
import { decodeAppend } from "../src/internal/validation.ts"

const rounds = Number(process.argv[2] ?? 3)
const data = { text: "x".repeat(150), n: 1 }

const micro = (name: string, f: (i: number) => unknown) => {
  const n = 500_000
  for (let i = 0; i < 100_000; i++) f(i)
  const t0 = performance.now()
  for (let i = 0; i < n; i++) f(i)
  const us = ((performance.now() - t0) * 1000) / n
  console.log(JSON.stringify({ micro: name, microsPerAppend: Number(us.toFixed(3)) }))
}
const schemaDecode = Schema.decodeUnknownExit(Event.AppendRequest, { onExcessProperty: "error" })
micro("sdk validation (fast path)", (i) => decodeAppend({ expectedVersion: i, events: [{ type: "E", data }] }))
micro("full schema decode", (i) => schemaDecode({ expectedVersion: i, events: [{ type: "E", data }] }))

const streams = 8_000
const perStream = 10
const writers = 8
const depth = 256
type Append = (tenant: string, stream: string, request: Event.AppendRequest) => Effect.Effect<unknown, unknown>

const load = (append: Append) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    yield* Effect.forEach(Array.from({ length: writers }, (_, w) => w), (w) =>
      Effect.gen(function*() {
        const mine: Array<number> = []
        for (let s = w; s < streams; s += writers) mine.push(s)
        for (let round = 0; round < perStream; round++) {
          yield* Effect.forEach(
            mine,
            (s) =>
              append("bench", `s-${s}`, {
                expectedVersion: round === 0 ? "no_stream" : round - 1,
                events: [Event.propose("E", data)]
              }),
            { concurrency: depth, discard: true }
          )
        }
      }), { concurrency: "unbounded", discard: true })
    const cpu = process.cpuUsage(cpu0)
    const appends = streams * perStream
    return {
      perSec: appends / ((performance.now() - t0) / 1000),
      // CPU time per append: less sensitive than wall time to other processes on a shared machine.
      cpuMicros: (cpu.user + cpu.system) / appends
    }
  })

const run = (viaSdk: boolean) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const client = yield* ChronosClient
    return yield* load(viaSdk ? client.append : engine.append)
  }).pipe(
    Effect.provide(
      ChronosClient.layerEngine.pipe(
        Layer.provideMerge(Engine.layerLocal),
        Layer.provide(EventLog.layerMemory),
        Layer.provide(ChronosConfig.layer({}))
      )
    )
  )

const main = Effect.gen(function*() {
  const direct: Array<{ perSec: number; cpuMicros: number }> = []
  const sdk: Array<{ perSec: number; cpuMicros: number }> = []
  yield* run(true) // warm-up
  yield* run(false)
  // Alternating order (ABBA) so that drift in machine load and heap state hits both sides alike.
  for (let i = 0; i < rounds; i++) {
    const sdkFirst = i % 2 === 1
    if (sdkFirst) sdk.push(yield* run(true))
    direct.push(yield* run(false))
    if (!sdkFirst) sdk.push(yield* run(true))
  }
  const median = (xs: Array<number>) => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!
  const round3 = (x: number) => Number(x.toFixed(3))
  console.log(JSON.stringify({
    samples: { directCpuMicros: direct.map((r) => round3(r.cpuMicros)), sdkCpuMicros: sdk.map((r) => round3(r.cpuMicros)) }
  }))
  const d = median(direct.map((r) => r.cpuMicros))
  const s = median(sdk.map((r) => r.cpuMicros))
  console.log(JSON.stringify({
    appendsPerSecDirect: Math.round(median(direct.map((r) => r.perSec))),
    appendsPerSecSdk: Math.round(median(sdk.map((r) => r.perSec))),
    cpuMicrosPerAppendDirect: round3(d),
    cpuMicrosPerAppendSdk: round3(s),
    overheadCpuMicrosPerAppend: round3(s - d),
    overheadPercent: Number((100 * (s - d) / d).toFixed(1))
  }))
})

Effect.runPromise(main)
