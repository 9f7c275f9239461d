/**
 * The durable record of every fork: which forks exist, of which tenant, on which parent and base, until when.
 * It owns only storage and its atomicity; what a fork *is* (its partitions, reads, merge, expiry) is `Forks`.
 *
 * Drivers:
 *  - `layerMemory`: process memory (tests, the memory log);
 *  - `layerFile`: `<dataDir>/forks/forks.json`, the whole registry rewritten on every change by write + fsync +
 *    rename + fsync of the directory, so a crash leaves either the old file or the new one, never a torn one. The
 *    registry is small (at most `forksPerTenantMax` records per tenant), and changes are rare next to appends;
 *  - `layerNatsKv`: one key per fork in a NATS KV bucket (`chronos_forks`, file storage, history 1), beside the
 *    JetStream log: each change is one atomic, replicated put or delete of that key.
 *
 * Writes are serialized by the driver. With the memory and file drivers one process owns the registry: `Forks`
 * loads it once and keeps the records in memory, writing every change through before acting on it. The NATS KV
 * driver is shared by every runner of a cluster: `Forks` re-reads a record (`get`) before it serves a fork and the
 * whole registry (`load`) before it counts, lists or expires, since any runner may have changed it.
 */
import { Context, Duration, Effect, Layer, Schema, Semaphore } from "effect"
import { jetstream, StorageType } from "@nats-io/jetstream"
import { type KV, Kvm } from "@nats-io/kv"
import { connect } from "@nats-io/transport-node"
import * as fs from "node:fs"
import * as path from "node:path"
import { Errors } from "@chronos/domain"
import * as DurableFile from "./DurableFile.ts"

/** One fork, as stored. Times are epoch ms. */
export const ForkRecord = Schema.Struct({
  id: Schema.String,
  tenant: Schema.String,
  /** `main` or the parent fork's id. */
  parent: Schema.String,
  /** `base[p]`: the parent's sequence in partition p the fork continues from (one entry per partition). */
  base: Schema.Array(Schema.Int),
  ttlSeconds: Schema.Int,
  createdAtMs: Schema.Number,
  expiresAtMs: Schema.Number,
  labels: Schema.Record(Schema.String, Schema.String),
  /**
   * Set (durably) before a discard starts closing and deleting the fork's log: a fork marked so serves nothing, and
   * a discard interrupted by a crash is finished at the next start.
   */
  discarding: Schema.Boolean
})
export type ForkRecord = typeof ForkRecord.Type

const RegistryFile = Schema.Struct({
  formatVersion: Schema.Literal(1),
  forks: Schema.Array(ForkRecord)
})
const decodeFile = Schema.decodeUnknownSync(Schema.fromJsonString(RegistryFile))

export interface ForkRegistryShape {
  readonly driver: "memory" | "file" | "nats-kv"
  /** Every stored record. */
  readonly load: Effect.Effect<ReadonlyArray<ForkRecord>, Errors.Unavailable>
  /** The stored record of one fork, if any. */
  readonly get: (id: string) => Effect.Effect<ForkRecord | undefined, Errors.Unavailable>
  /** Creates or replaces the record with `record.id`; durable when it succeeds. */
  readonly put: (record: ForkRecord) => Effect.Effect<void, Errors.Unavailable>
  /** Removes a record (absent: nothing to do); durable when it succeeds. */
  readonly remove: (id: string) => Effect.Effect<void, Errors.Unavailable>
}

export class ForkRegistry extends Context.Service<ForkRegistry, ForkRegistryShape>()("chronos/engine/ForkRegistry") {
  /** Records in process memory: each layer build is an independent, empty registry. */
  static readonly layerMemory: Layer.Layer<ForkRegistry> = Layer.sync(ForkRegistry, () => makeMemory())
  /** Records in `<dataDir>/forks/forks.json` (see the module doc). */
  static readonly layerFile = (dataDir: string): Layer.Layer<ForkRegistry, Errors.Unavailable> =>
    Layer.effect(ForkRegistry, makeFile(dataDir))
  /** Records in a NATS KV bucket (see the module doc), on a connection of the layer's own. */
  static readonly layerNatsKv = (options: NatsKvOptions): Layer.Layer<ForkRegistry, Errors.Unavailable> =>
    Layer.effect(ForkRegistry, makeNatsKv(options))
}

export const makeMemory = (): ForkRegistryShape => {
  const records = new Map<string, ForkRecord>()
  return {
    driver: "memory",
    load: Effect.sync(() => [...records.values()]),
    get: (id) => Effect.sync(() => records.get(id)),
    put: (record) => Effect.sync(() => void records.set(record.id, record)),
    remove: (id) => Effect.sync(() => void records.delete(id))
  }
}

/** The registry file of a data directory. */
export const registryFile = (dataDir: string): string => path.join(path.resolve(dataDir), "forks", "forks.json")

const unavailable = (what: string, error: unknown) =>
  new Errors.Unavailable({
    message: `fork registry: ${what}: ${error instanceof Error ? error.message : String(error)}`,
    retryable: true
  })

/**
 * The file driver. Reads the file once (a missing file is an empty registry; a file that does not decode is a
 * defect naming it: the registry is never silently reset), then rewrites it whole on every change.
 */
export const makeFile = (dataDir: string): Effect.Effect<ForkRegistryShape, Errors.Unavailable> =>
  Effect.gen(function*() {
    const file = registryFile(dataDir)
    const dir = path.dirname(file)
    const text = yield* Effect.try({
      try: () => {
        try {
          return fs.readFileSync(file, "utf8")
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined
          throw error
        }
      },
      catch: (error) => unavailable(`cannot read ${file}`, error)
    })
    const records = new Map<string, ForkRecord>()
    if (text !== undefined) {
      const decoded = yield* Effect.try({
        try: () => decodeFile(text),
        catch: (error) => new Error(`fork registry: ${file} is not a fork registry: ${String(error)}`)
      }).pipe(Effect.orDie)
      for (const record of decoded.forks) records.set(record.id, record)
    }
    // One writer at a time: two rewrites racing over the temporary file would interleave.
    const writing = Semaphore.makeUnsafe(1)

    /** Writes `next` durably, then makes it the in-memory state; on failure the old state (and file) stand. */
    const write = (next: Map<string, ForkRecord>) =>
      Effect.tryPromise({
        try: () => DurableFile.writeAtomic(file, JSON.stringify({ formatVersion: 1, forks: [...next.values()] }) + "\n"),
        catch: (error) => unavailable(`cannot write ${file}`, error)
      }).pipe(Effect.andThen(Effect.sync(() => {
        records.clear()
        for (const [id, record] of next) records.set(id, record)
      })))

    return {
      driver: "file",
      load: Effect.sync(() => [...records.values()]),
      get: (id) => Effect.sync(() => records.get(id)),
      put: (record) =>
        writing.withPermit(Effect.suspend(() => write(new Map(records).set(record.id, record)))),
      remove: (id) =>
        writing.withPermit(Effect.suspend(() => {
          if (!records.has(id)) return Effect.void
          const next = new Map(records)
          next.delete(id)
          return write(next)
        }))
    } satisfies ForkRegistryShape
  })

// ---- NATS KV ------------------------------------------------------------------------------------------------------

export interface NatsKvOptions {
  readonly servers: ReadonlyArray<string>
  /** Replicas of the bucket: 1 on one server, 3 in a cluster. */
  readonly replicas: number
  /** Default `chronos_forks`. */
  readonly bucket?: string | undefined
  /** How long one KV request may take, ms. Default 5000. */
  readonly requestTimeoutMs?: number | undefined
}

const decodeRecord = Schema.decodeUnknownSync(Schema.fromJsonString(ForkRecord))

/**
 * The NATS KV driver: a fork's record is the value of the key `<forkId>`. A value that does not decode is a defect
 * naming the key, as for the file driver.
 */
export const makeNatsKv = (options: NatsKvOptions) =>
  Effect.gen(function*() {
    const bucket = options.bucket ?? "chronos_forks"
    const timeoutMs = options.requestTimeoutMs ?? 5_000
    const request = <A>(what: string, f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (error) => unavailable(`${what} (bucket ${bucket})`, error) })
    const nc = yield* Effect.acquireRelease(
      request("cannot connect to NATS", () =>
        connect({
          servers: [...options.servers],
          name: "chronos-forks",
          noAsyncTraces: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          timeout: timeoutMs
        })),
      (nc) =>
        Effect.promise(() => nc.drain().catch(() => nc.close())).pipe(
          Effect.timeoutOrElse({ duration: Duration.millis(timeoutMs), orElse: () => Effect.promise(() => nc.close()) })
        )
    )
    const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }))
    const create = request("cannot open", () =>
      kvm.create(bucket, { history: 1, replicas: options.replicas, storage: StorageType.File, allow_direct: false }))
    // Two processes creating the bucket at once: the loser's create fails, the retry binds to the winner's.
    const kv: KV = yield* Effect.catch(create, () => create)
    return {
      driver: "nats-kv",
      load: Effect.flatMap(
        request("cannot list", async () => {
          const out: Array<[string, string]> = []
          for await (const key of await kv.keys()) {
            const entry = await kv.get(key)
            if (entry !== null && entry.operation === "PUT") out.push([key, entry.string()])
          }
          return out
        }),
        (entries) =>
          Effect.try({
            try: () => entries.map(([, json]) => decodeRecord(json)),
            catch: (error) => new Error(`fork registry: bucket ${bucket} holds a value that is not a fork record: ${String(error)}`)
          }).pipe(Effect.orDie)
      ),
      get: (id) =>
        Effect.flatMap(
          request(`cannot read ${id}`, async () => {
            const entry = await kv.get(id)
            return entry !== null && entry.operation === "PUT" ? entry.string() : undefined
          }),
          (json) =>
            json === undefined ? Effect.succeed(undefined) : Effect.try({
              try: () => decodeRecord(json),
              catch: (error) => new Error(`fork registry: key ${id} of bucket ${bucket} is not a fork record: ${String(error)}`)
            }).pipe(Effect.orDie)
        ),
      put: (record) => Effect.asVoid(request(`cannot write ${record.id}`, () => kv.put(record.id, JSON.stringify(record)))),
      remove: (id) => request(`cannot delete ${id}`, () => kv.purge(id))
    } satisfies ForkRegistryShape
  })
