/**
 * Offline sealing (`chronos seal --data-dir <dir>`): seals every partition's durable log into segments under
 * `<dataDir>/segments/` and truncates the logs below them, with no node running. It takes each partition's log lock
 * like a node would, so it refuses (with `LogFenced`) a data directory that a running node holds — seal that one
 * online with `POST /v1/admin/seal`. The sealing itself is `Sealer.seal`, the same as online.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { make as makeConfig, type ChronosConfigShape } from "@chronos/config"
import type { Event } from "@chronos/domain"
import type { SealTarget } from "@chronos/engine/ColdStore"
import * as FileLog from "@chronos/engine/internal/fileLog"
import { recordedPartitions } from "./Embedded.ts"
import * as Manifest from "./Manifest.ts"
import { type SealError, type SealReport, seal } from "./Sealer.ts"
import { makeLocal } from "./SegmentStore.ts"

export interface Progress {
  readonly partition: number
  readonly done: number
  readonly total: number
  readonly report: SealReport
}

export interface Options {
  readonly dataDir: string
  /** Only these partitions (default: all of the store). */
  readonly partitions?: ReadonlyArray<number> | undefined
  /** Limits (`segmentRowGroupRowsMax`, `segmentEventsMax`, `logSegmentBytesMax`); defaults otherwise. */
  readonly config?: Partial<ChronosConfigShape> | undefined
  readonly onProgress?: ((progress: Progress) => void) | undefined
}

/** The partition count recorded in `<dataDir>/log/STORE.json`, else the partition directories found. */
export const storePartitions = (dataDir: string): number => {
  const recorded = recordedPartitions(dataDir)
  if (recorded !== undefined) return recorded
  try {
    const ids = fs.readdirSync(path.join(dataDir, "log")).flatMap((n) => /^p(\d{3,})$/.exec(n)?.[1] ?? []).map(Number)
    return ids.length === 0 ? 0 : Math.max(...ids) + 1
  } catch {
    return 0
  }
}

/** Seals one partition from its log (which this call opens, and so locks). */
export const sealPartition = (
  dataDir: string,
  partition: number,
  config: ChronosConfigShape
): Effect.Effect<SealReport, SealError> =>
  Effect.scoped(Effect.gen(function*() {
    const store = makeLocal(dataDir)
    const fileLog = yield* FileLog.make({ dataDir, segmentBytesMax: config.logSegmentBytesMax })
    const log = yield* fileLog.open(partition)
    const manifest = (yield* store.readManifest(partition)) ?? Manifest.empty(partition)
    const from = Manifest.sealedThrough(manifest) + 1
    const events: Array<Event.StoredEvent> = []
    const last = yield* log.replay(from, (commit) => {
      let s = commit.firstSeq
      for (const e of commit.events) {
        if (s >= from) {
          events.push({ ...e, timestamp: commit.timestamp, partition, seq: s })
        }
        s++
      }
    })
    if (events.length > 0 && events[0]!.seq !== from) {
      return yield* Effect.die(new Error(`partition ${partition}: the log resumes at seq ${events[0]!.seq}, segments end at ${from - 1}`))
    }
    const target: SealTarget = {
      partition,
      watermark: () => Math.max(last, from - 1),
      readRange: (a, b) => events.slice(a - from, b - from + 1),
      readHeads: (a, b) => events.slice(a - from, b - from + 1),
      truncateLog: (below) => log.truncateBefore?.(below) ?? Effect.void
    }
    return yield* seal(store, target, {
      rowGroupRowsMax: config.segmentRowGroupRowsMax,
      segmentEventsMax: config.segmentEventsMax,
      // Only the log tail is in memory here: rules set in earlier segments are applied by `Compact.run`.
      indexFromSeq: from
    })
  }))

/** Seals every partition of the store in `dataDir` (one at a time: memory is bounded by one partition's log). */
export const run = (options: Options): Effect.Effect<ReadonlyArray<SealReport>, SealError> =>
  Effect.gen(function*() {
    const dataDir = path.resolve(options.dataDir)
    const config = makeConfig({ ...options.config, dataDir })
    const all = Array.from({ length: storePartitions(dataDir) }, (_, p) => p)
    const chosen = options.partitions ?? all
    const reports: Array<SealReport> = []
    for (const partition of chosen) {
      const report = yield* sealPartition(dataDir, partition, config)
      reports.push(report)
      options.onProgress?.({ partition, done: reports.length, total: chosen.length, report })
    }
    return reports
  })
