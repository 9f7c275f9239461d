/**
 * Test support: an engine over the memory (or file) log with the search service on top, and small helpers to
 * append events and search. Every runtime is disposed by the test that made it.
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import type { Event } from "@chronos/domain"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import { Embedder } from "../src/Embedder.ts"
import { Search } from "../src/Search.ts"
import { SearchConfig, type SearchConfigShape } from "../src/SearchConfig.ts"

export interface Options {
  readonly chronos?: Partial<ChronosConfigShape>
  readonly search?: Partial<SearchConfigShape>
  /** Persist indexes and the log under this directory (file log); memory otherwise. */
  readonly dataDir?: string
  readonly embedder?: Layer.Layer<Embedder>
}

export const makeRuntime = (options: Options = {}) => {
  const chronos = ChronosConfig.layer({
    partitions: 4,
    ...(options.dataDir === undefined ? { logDriver: "memory" as const } : { dataDir: options.dataDir }),
    ...options.chronos
  })
  const log = options.dataDir === undefined
    ? EventLog.layerMemory
    : EventLog.layerFile({ dataDir: options.dataDir, segmentBytesMax: 64 * 1_048_576, partitions: options.chronos?.partitions ?? 4 })
  const engine = Engine.layerLocal.pipe(Layer.provide(log), Layer.provide(chronos))
  const search = (options.dataDir === undefined ? Search.layerMemory : Search.layer).pipe(
    Layer.provide(options.embedder ?? Embedder.layerTest(64)),
    Layer.provide(SearchConfig.layer({ indexIdleWaitMs: 20, ...options.search }))
  )
  return ManagedRuntime.make(search.pipe(Layer.provideMerge(engine), Layer.provideMerge(chronos)))
}

export type Runtime = ReturnType<typeof makeRuntime>

export interface NewEvent {
  readonly stream: string
  readonly type: string
  readonly data: unknown
}

/** Appends events one stream at a time; returns the position vector after the last (a `waitFor` token). */
export const append = (tenant: string, events: ReadonlyArray<NewEvent>) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const last = new Map<number, number>()
    for (const e of events) {
      const result = yield* engine.append(tenant, e.stream, { events: [{ type: e.type, data: e.data }] } as never)
      for (const p of result.positions) last.set(p.partition, Math.max(last.get(p.partition) ?? 0, p.seq))
    }
    return [...last].map(([p, s]) => `${p}:${s}`).join(",")
  })

export const streamsOf = (hits: ReadonlyArray<{ readonly event: Event.StoredEvent }>) => hits.map((h) => h.event.stream)
