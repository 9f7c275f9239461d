/**
 * The engine in this process over a data directory with its cold tier: the file log of `<dataDir>/log/` and the
 * segments of `<dataDir>/segments/`. This is what every in-process tool over a data directory must use once
 * segments exist (export, tests, and `ChronosClient.layerEmbedded`, which should provide `ColdTier.layerLocal` the
 * same way): a partition opened without its cold tier refuses a log that was truncated below its segments.
 */
import { type Config, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import { EventLog, type LogError } from "@chronos/engine/EventLog"
import { ColdTier } from "./ColdTier.ts"

/** The partition count recorded in `<dataDir>/log/STORE.json` when the store was created, if any. */
export const recordedPartitions = (dataDir: string): number | undefined => {
  try {
    const recorded = JSON.parse(fs.readFileSync(path.join(dataDir, "log", "STORE.json"), "utf8")) as { partitions?: unknown }
    return typeof recorded.partitions === "number" ? recorded.partitions : undefined
  } catch {
    return undefined
  }
}

export interface Options extends Partial<Omit<ChronosConfigShape, "dataDir" | "logDriver">> {
  readonly dataDir: string
}

/**
 * `Engine` + `ColdTier` + `EventLog` + `ChronosConfig` over `dataDir` (config: defaults, `CHRONOS_*` environment,
 * `options`).
 */
export const layer = (
  options: Options
): Layer.Layer<Engine | ColdTier | EventLog | ChronosConfig, LogError | Config.ConfigError> => {
  const { dataDir, ...overrides } = options
  // An existing store's partition count is fixed (see `STORE.json`): tools opening it need not be told.
  const recorded = overrides.partitions === undefined ? recordedPartitions(dataDir) : undefined
  const config = ChronosConfig.layerConfig({
    ...overrides,
    ...(recorded === undefined ? {} : { partitions: recorded }),
    dataDir,
    logDriver: "file"
  })
  const fileLog = Layer.unwrap(Effect.map(ChronosConfig, (c) =>
    EventLog.layerFile({ dataDir: c.dataDir, segmentBytesMax: c.logSegmentBytesMax, partitions: c.partitions })))
  return Engine.layerLocal.pipe(
    Layer.provideMerge(ColdTier.layerLocal({ dataDir })),
    // Exported too: forks keep their own logs in the same store (`Forks.layer` needs it).
    Layer.provideMerge(fileLog),
    Layer.provideMerge(config)
  )
}
