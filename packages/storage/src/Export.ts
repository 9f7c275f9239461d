/**
 * `chronos export --tenant T --to file.parquet`: every event of one tenant, from a node (`url`) or a data directory
 * (`dataDir`), as one Parquet file in the segment format (`SegmentFormat`: same columns, rows sorted by stream and
 * version, ZSTD, row-group statistics), so the export is readable by any Parquet tool and by `Import`.
 *
 * Events are read partition by partition in sequence order (`readPartition`), so the export is consistent per
 * partition up to the watermark it read at. The file is written to `<to>.tmp` and renamed: a reader never sees a
 * half-written export. Memory: the tenant's events are held while the file is encoded (one Parquet write).
 */
import { Effect } from "effect"
import * as fsp from "node:fs/promises"
import { ChronosClient } from "@chronos/client"
import type { Errors, Event } from "@chronos/domain"
import * as SegmentFormat from "./SegmentFormat.ts"
import { clientLayer, type Target } from "./Transfer.ts"

export interface Progress {
  readonly phase: "read" | "write" | "done"
  readonly events: number
  readonly partitionsDone: number
  readonly partitions: number
  readonly bytes: number
}

export type Options = Target & {
  readonly tenant: string
  readonly to: string
  /** Rows per row group of the file (default 16,384, as `segmentRowGroupRowsMax`). */
  readonly rowGroupRowsMax?: number | undefined
  readonly onProgress?: ((progress: Progress) => void) | undefined
}

export interface ExportReport {
  readonly tenant: string
  readonly file: string
  readonly events: number
  readonly bytes: number
}

/** Events per page read from each partition. */
const pageEventsMax = 5_000

export const run = (options: Options) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    const partitions = (yield* client.partitions()).length
    const events: Array<Event.StoredEvent> = []
    const progress = (phase: Progress["phase"], partitionsDone: number, bytes = 0) =>
      options.onProgress?.({ phase, events: events.length, partitionsDone, partitions, bytes })
    for (let p = 0; p < partitions; p++) {
      let fromSeq = 1
      while (true) {
        const page = yield* client.readPartition(options.tenant, p, { fromSeq, limit: pageEventsMax })
        for (const e of page) {
          events.push({
            eventId: e.eventId,
            tenant: options.tenant,
            stream: e.stream,
            type: e.type,
            data: e.data,
            metadata: e.metadata as Record<string, unknown>,
            timestamp: Date.parse(e.timestamp),
            streamVersion: e.streamVersion,
            partition: e.partition,
            seq: e.seq
          })
        }
        if (page.length < pageEventsMax) break
        fromSeq = page[page.length - 1]!.seq + 1
        progress("read", p)
      }
      progress("read", p + 1)
    }
    progress("write", partitions)
    const bytes = SegmentFormat.encode(events, { rowGroupRowsMax: options.rowGroupRowsMax ?? 16_384 })
    yield* Effect.promise(async () => {
      const tmp = `${options.to}.tmp`
      await fsp.writeFile(tmp, bytes)
      await fsp.rename(tmp, options.to)
    })
    progress("done", partitions, bytes.length)
    return { tenant: options.tenant, file: options.to, events: events.length, bytes: bytes.length } satisfies ExportReport
  }).pipe(Effect.provide(clientLayer(options)))

export type ExportFailure = Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable | Errors.CorruptData
