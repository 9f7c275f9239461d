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
import { ChronosClient } from "@chronos/client/ChronosClient"
import type { Errors } from "@chronos/domain"
import { CheckpointStore } from "@chronos/engine/CheckpointStore"
import { ConsumerGroups } from "@chronos/engine/ConsumerGroup"
import { ForkRegistry } from "@chronos/engine/ForkRegistry"
import { Forks } from "@chronos/engine/Forks"
import { Projections } from "@chronos/engine/Projection"
import { ColdTier } from "./ColdTier.ts"
import * as Retention from "./Retention.ts"
import * as RetentionClient from "./RetentionClient.ts"

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

/**
 * The SDK (`ChronosClient`) over `dataDir` in this process, served as a node would serve it: the cold tier, reads
 * that apply each stream's retention and deletions, `setRetention`/`deleteStream`, forks (whose reads apply the
 * store's rules), consumer groups and projections (their state next to the log; `owner` names this process's
 * projection leases, so a node later started on the directory takes them over after their lease). Not search: its
 * indexes and embedder are a node's. Prefer it to `ChronosClient.layerEmbedded` (which `@chronos/client` cannot
 * build with a cold tier) for any store that may have been sealed or given retention rules.
 */
export const clientLayer = (
  options: Options & { readonly owner?: string | undefined }
): Layer.Layer<ChronosClient, LogError | Config.ConfigError | Errors.Unavailable> => {
  const { owner, ...rest } = options
  return ChronosClient.layerEngine.pipe(
    Layer.provide(Layer.mergeAll(
      ConsumerGroups.layer,
      Projections.layer(owner === undefined ? {} : { owner })
    ).pipe(Layer.provide(CheckpointStore.layerConfig))),
    Layer.provide(Forks.layer.pipe(
      Layer.provide(Layer.merge(ForkRegistry.layerFile(options.dataDir), Retention.layerForkReadPolicy))
    )),
    Layer.provide(RetentionClient.layer),
    Layer.provideMerge(Retention.layerEnforced),
    Layer.provideMerge(layer(rest))
  )
}
