/**
 * Fork creation on a large store: `node bench/forks.ts [--events N] [--forks N]` prints JSON.
 *
 * Method: a store of N events (default 1,000,000: 10,000 streams × 100 events of ~60 B, 32 partitions) is built on
 * the memory log — fast to fill, and fork creation never touches the log: it reads each partition's watermark from
 * its in-memory index and writes one registry record. Then `--forks` forks (default 100) are created one after the
 * other and each `Forks.create` call is timed (wall clock, `process.hrtime`), with the registry in memory and then
 * with the file registry (`<dataDir>/forks/forks.json`, write + fsync + rename + fsync of the directory, on this
 * machine's temporary directory). For context it also times, per fork: the first read through it (which opens the
 * fork's partitions lazily), a first append, and a discard (close + delete of its log + registry record).
 * Target (issue 6): creating a fork on a 1M-event store takes under 50 ms.
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ChronosConfig } from "@chronos/config"
import { Event } from "@chronos/domain"
import { Engine, type AppendCommand } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import { ForkRegistry } from "@chronos/engine/ForkRegistry"
import { Forks } from "@chronos/engine/Forks"

const argValue = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const EVENTS = argValue("--events", 1_000_000)
const FORKS = argValue("--forks", 100)
const PER_STREAM = 100
const PER_APPEND = 100
const PARTITIONS = 32
const log = (line: string) => process.stderr.write(`${line}\n`)

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const summary = (ms: Array<number>) => {
  const sorted = [...ms].sort((a, b) => a - b)
  const round = (x: number) => +x.toFixed(3)
  return {
    samples: sorted.length,
    mean_ms: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    p50_ms: round(percentile(sorted, 50)),
    p99_ms: round(percentile(sorted, 99)),
    max_ms: round(sorted[sorted.length - 1]!)
  }
}
const timed = async <A>(run: () => Promise<A>): Promise<[A, number]> => {
  const start = process.hrtime.bigint()
  const a = await run()
  return [a, Number(process.hrtime.bigint() - start) / 1e6]
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-bench-forks-"))
const config = ChronosConfig.layer({ partitions: PARTITIONS, dataDir, forksPerTenantMax: FORKS + 1, logDriver: "memory" })
const EngineLive = Engine.layerLocal.pipe(Layer.provideMerge(EventLog.layerMemory), Layer.provideMerge(config))
const runtime = ManagedRuntime.make(Layer.mergeAll(
  Layer.provide(Forks.layer, ForkRegistry.layerMemory).pipe(Layer.provideMerge(EngineLive)),
  EngineLive
))

const main = async () => {
  const engine = await runtime.runPromise(Effect.service(Engine))
  // ---- the store --------------------------------------------------------------------------------------------
  const streams = Math.ceil(EVENTS / PER_STREAM)
  const [, buildMs] = await timed(async () => {
    const batch: Array<AppendCommand> = []
    const flush = async () => {
      const exits = await runtime.runPromise(engine.appendMany(batch.splice(0)))
      for (const exit of exits) if (exit._tag === "Failure") throw new Error(String(exit.cause))
    }
    for (let round = 0; round < PER_STREAM / PER_APPEND; round++) {
      for (let s = 0; s < streams; s++) {
        batch.push({
          tenant: "bench",
          stream: `account-${s}`,
          request: { events: Array.from({ length: PER_APPEND }, (_, i) => Event.propose("Deposited", { amount: i, note: "bench" })) }
        })
        if (batch.length === 200) await flush()
      }
    }
    if (batch.length > 0) await flush()
  })
  const status = await runtime.runPromise(engine.partitions)
  const events = status.reduce((n, p) => n + p.watermark, 0)
  log(`store: ${events} events in ${(buildMs / 1000).toFixed(1)} s`)

  // ---- fork creation -------------------------------------------------------------------------------------------
  const measure = async (forks: Forks["Service"], label: string) => {
    const create: Array<number> = []
    const firstRead: Array<number> = []
    const firstAppend: Array<number> = []
    const discard: Array<number> = []
    for (let i = 0; i < FORKS; i++) {
      const [fork, ms] = await timed(() => runtime.runPromise(forks.create("bench", { ttlSeconds: 3600 })))
      create.push(ms)
      const f = await runtime.runPromise(forks.engine("bench", fork.forkId))
      const [read, readMs] = await timed(() => runtime.runPromise(f.readStream("bench", `account-${i}`, { limit: 1000 })))
      if (read.length !== PER_STREAM) throw new Error(`a fork read ${read.length} events of account-${i}, expected ${PER_STREAM}`)
      firstRead.push(readMs)
      const [, appendMs] = await timed(() =>
        runtime.runPromise(f.append("bench", `account-${i}`, { expectedVersion: PER_STREAM - 1, events: [Event.propose("Withdrawn", { amount: 1 })] }))
      )
      firstAppend.push(appendMs)
    }
    for (const fork of await runtime.runPromise(forks.list("bench"))) {
      const [, ms] = await timed(() => runtime.runPromise(forks.discard("bench", fork.forkId)))
      discard.push(ms)
    }
    log(`${label}: create p50 ${summary(create).p50_ms} ms, max ${summary(create).max_ms} ms`)
    return {
      create: summary(create),
      first_read_through_fork: summary(firstRead),
      first_append_to_fork: summary(firstAppend),
      discard: summary(discard)
    }
  }

  const memoryRegistry = await measure(await runtime.runPromise(Effect.service(Forks)), "registry memory")
  // The same store with the file registry: another Forks service over the same, already built, engine.
  const context = await runtime.runPromise(Effect.context<Engine | EventLog | ChronosConfig>())
  const fileRuntime = ManagedRuntime.make(
    Layer.provide(Forks.layer, Layer.orDie(ForkRegistry.layerFile(dataDir))).pipe(Layer.provide(Layer.succeedContext(context)))
  )
  let fileRegistry: Awaited<ReturnType<typeof measure>>
  try {
    fileRegistry = await measure(await fileRuntime.runPromise(Effect.service(Forks)), "registry file")
  } finally {
    await fileRuntime.dispose()
  }

  const result = {
    benchmark: "fork creation on a large store",
    method: "memory log, 32 partitions; each Forks.create timed with process.hrtime over sequential creations",
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", node: process.version },
    store: { events, streams, partitions: PARTITIONS, build_s: +(buildMs / 1000).toFixed(1) },
    target_ms: 50,
    registry_memory: memoryRegistry,
    registry_file: fileRegistry
  }
  process.stdout.write(JSON.stringify(result, null, 2) + "\n")
}

main().then(
  () => runtime.dispose().then(() => fs.rmSync(dataDir, { recursive: true, force: true })),
  (error) => {
    log(String(error?.stack ?? error))
    process.exitCode = 1
    return runtime.dispose()
  }
)
