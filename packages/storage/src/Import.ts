/**
 * `chronos import --from file.parquet`: appends the events of a Parquet file in the segment format (an `Export`, or
 * sealed segments) to a node (`url`) or a data directory (`dataDir`). Idempotent by event id: every event keeps its
 * id, so importing a file twice — or again after an interrupted import — appends nothing the store already has.
 *
 * Rows are read one row group at a time (bounded memory) and appended stream by stream in version order, in
 * batches bounded by `batchEventsMax` and `batchBytesMax` (well under the append limits); different streams are
 * appended concurrently. A batch that is partly known (an earlier import cut it differently) falls back to one
 * append per event, each of which is either new or an exact retry.
 *
 * What an import does not keep: timestamps and positions are assigned by the receiving store (the originals are
 * in the file); stream versions are the receiving stream's next ones (equal to the originals when the stream is
 * imported into an empty store).
 */
import { Effect, Schema } from "effect"
import * as fsp from "node:fs/promises"
import { ChronosClient, type EventInput } from "@chronos/client"
import * as SegmentFormat from "./SegmentFormat.ts"
import { clientLayer, type Target } from "./Transfer.ts"

export interface Progress {
  readonly events: number
  readonly total: number
  readonly appends: number
}

export type Options = Target & {
  readonly from: string
  /** Import into this tenant instead of the file's. */
  readonly tenant?: string | undefined
  /** Streams appended at once. */
  readonly concurrency?: number | undefined
  readonly onProgress?: ((progress: Progress) => void) | undefined
}

export interface ImportReport {
  readonly file: string
  readonly events: number
  readonly appends: number
  readonly streams: number
}

export const batchEventsMax = 1_000
export const batchBytesMax = 1_048_576

interface Batch {
  readonly tenant: string
  readonly stream: string
  readonly events: Array<EventInput>
  bytes: number
}

export const run = (options: Options) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    const bytes = yield* Effect.promise(() => fsp.readFile(options.from))
    const file = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const { header, rowGroups } = yield* Effect.try({
      try: () => SegmentFormat.inspect(file),
      catch: (error) => new ImportFormatError({ file: options.from, message: String((error as Error).message) })
    })
    let events = 0
    let appends = 0
    const streams = new Set<string>()

    const appendBatch = (batch: Batch) =>
      client.append(batch.tenant, batch.stream, { events: batch.events }).pipe(
        Effect.catchTag("InvalidRequest", (error) =>
          // Partly known: an earlier import cut this stream differently. One event at a time is always exact.
          error.message.includes("appended before")
            ? Effect.forEach(batch.events, (e) => client.append(batch.tenant, batch.stream, { events: [e] }), { discard: true })
            : Effect.fail(error)),
        Effect.tap(() =>
          Effect.sync(() => {
            appends++
            events += batch.events.length
            options.onProgress?.({ events, total: header.rows, appends })
          })
        )
      )

    // The last stream's open batch carries over into the next row group (a stream may span row groups).
    let open: Batch | undefined
    for (const rg of rowGroups) {
      const c = yield* Effect.try({
        try: () => SegmentFormat.decode(file, [rg.index]),
        catch: (error) => new ImportFormatError({ file: options.from, message: String((error as Error).message) })
      })
      const jobs = new Map<string, Array<Batch>>()
      const push = (batch: Batch) => {
        const key = `${batch.tenant}\u0000${batch.stream}`
        let list = jobs.get(key)
        if (list === undefined) jobs.set(key, list = [])
        list.push(batch)
      }
      for (let i = 0; i < c.rows; i++) {
        const e = yield* Effect.try({
          try: () => SegmentFormat.eventAt(c, i),
          catch: (error) => new ImportFormatError({ file: options.from, message: `row ${rg.firstRow + i}: ${(error as Error).message}` })
        })
        const tenant = options.tenant ?? e.tenant
        const size = c.data[i]!.length + c.metadata[i]!.length + 200
        if (
          open === undefined || open.tenant !== tenant || open.stream !== e.stream ||
          open.events.length >= batchEventsMax || open.bytes + size > batchBytesMax
        ) {
          if (open !== undefined) push(open)
          open = { tenant, stream: e.stream, events: [], bytes: 0 }
          streams.add(`${tenant}\u0000${e.stream}`)
        }
        open.events.push({ eventId: e.eventId, type: e.type, data: e.data, metadata: e.metadata })
        open.bytes += size
      }
      // Every stream's batches in order; streams side by side. A row group completes before the next one starts,
      // so a stream continued by the next row group keeps its order.
      yield* Effect.forEach([...jobs.values()], (list) => Effect.forEach(list, appendBatch, { discard: true }), {
        concurrency: options.concurrency ?? 8,
        discard: true
      })
    }
    if (open !== undefined) yield* appendBatch(open)
    return { file: options.from, events, appends, streams: streams.size } satisfies ImportReport
  }).pipe(Effect.provide(clientLayer(options)))

/** The file is not in the segment format (not Parquet, other columns, unparsable JSON in a row). */
export class ImportFormatError extends Schema.TaggedError<ImportFormatError>()("ImportFormatError", {
  file: Schema.String,
  message: Schema.String
}) {}
