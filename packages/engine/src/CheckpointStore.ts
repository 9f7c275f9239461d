/**
 * Durable documents for server-side state that is not the event log: consumer group checkpoints and projection
 * state + checkpoint. This module owns where such a document lives, that writing one is atomic (a reader or a
 * restart sees the old document or the new one, never a mix), and compare-and-swap on revisions, so two processes
 * that both think they own a document cannot silently overwrite each other.
 *
 * Drivers (same contract, same tests):
 *  - `layerMemory`: process memory (tests; a node on the memory log);
 *  - `layerFile`: one JSON file per document under `<dataDir>/<kind>/<tenant>/<name>.json` (e.g.
 *    `<dataDir>/consumers/acme/billing.json`), written as a temporary file, fsync'd, renamed over the old one, and the
 *    directory fsync'd: the embedded default;
 *  - `layerNatsKv`: one key per document (`<kind>.<tenant>.<name>`) in a JetStream KV bucket (R3 in a cluster): the
 *    state outlives the runner that wrote it, and a put is one message, so it is atomic by construction.
 *
 * A key is a short list of segments, each `[A-Za-z0-9_-]+` (tenant ids and consumer/projection names are validated
 * to that before they get here; anything else is a defect). A document is any JSON value, at most
 * `checkpointBytesMax` bytes once serialized.
 */
import { Context, Duration, Effect, Layer, Schema, Semaphore } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { connect } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { JetStreamApiCodes, JetStreamApiError, jetstream, StorageType } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import type { KV } from "@nats-io/kv"
import { ChronosConfig } from "@chronos/config"
import { Errors } from "@chronos/domain"
import * as DurableFile from "./DurableFile.ts"

export type Key = ReadonlyArray<string>

/** The document's revision is not the one the writer expected: another writer got there first. */
export class CheckpointConflict extends Schema.TaggedError<CheckpointConflict>()("CheckpointConflict", {
  key: Schema.String,
  expected: Schema.Number,
  message: Schema.String
}) {}

/** The store could not be read or written (disk, NATS); retryable. */
export class CheckpointStoreError extends Schema.TaggedError<CheckpointStoreError>()("CheckpointStoreError", {
  key: Schema.String,
  message: Schema.String
}) {}

export interface StoredDocument {
  readonly value: unknown
  /** Increases with every write of this key; 0 is never used (it means "absent" to `put`). */
  readonly revision: number
}

export interface CheckpointStoreShape {
  readonly driver: "memory" | "file" | "nats-kv"
  readonly get: (key: Key) => Effect.Effect<StoredDocument | undefined, CheckpointStoreError>
  /**
   * Replaces the document atomically if its current revision is `expectedRevision` (0: it must not exist) and
   * returns the new revision.
   */
  readonly put: (
    key: Key,
    value: unknown,
    expectedRevision: number
  ) => Effect.Effect<number, CheckpointStoreError | CheckpointConflict | Errors.LimitExceeded>
  /** Every key that starts with `prefix`, in no particular order. */
  readonly list: (prefix: Key) => Effect.Effect<ReadonlyArray<Key>, CheckpointStoreError>
}

export interface NatsKvOptions {
  readonly servers: ReadonlyArray<string>
  /** Bucket replicas: 1 on one NATS server, 3 in a NATS cluster. */
  readonly replicas: number
  readonly bucket?: string | undefined
  readonly bytesMax: number
  /** Timeout of one KV request. */
  readonly requestTimeoutMs?: number | undefined
}

export class CheckpointStore extends Context.Service<CheckpointStore, CheckpointStoreShape>()(
  "chronos/engine/CheckpointStore"
) {
  static readonly layerMemory = (options: { readonly bytesMax: number }): Layer.Layer<CheckpointStore> =>
    Layer.sync(CheckpointStore, () => makeMemory(options.bytesMax))

  static readonly layerFile = (options: { readonly dataDir: string; readonly bytesMax: number }): Layer.Layer<CheckpointStore> =>
    Layer.sync(CheckpointStore, () => makeFile(options.dataDir, options.bytesMax))

  static readonly layerNatsKv = (options: NatsKvOptions): Layer.Layer<CheckpointStore, CheckpointStoreError> =>
    Layer.effect(CheckpointStore, makeNatsKv(options))

  /**
   * The driver that goes with the configured log: files under `dataDir` next to the file log, NATS KV next to
   * JetStream (so groups and projections outlive a runner), memory with the memory log. A store that cannot be
   * reached at start-up is a defect: a node must not serve without it (as without its log).
   */
  static readonly layerConfig: Layer.Layer<CheckpointStore, never, ChronosConfig> = Layer.unwrap(
    Effect.gen(function*() {
      const config = yield* ChronosConfig
      switch (config.logDriver) {
        case "memory":
          return CheckpointStore.layerMemory({ bytesMax: config.checkpointBytesMax })
        case "file":
          return CheckpointStore.layerFile({ dataDir: config.dataDir, bytesMax: config.checkpointBytesMax })
        case "jetstream":
          return Layer.orDie(CheckpointStore.layerNatsKv({
            servers: config.natsUrls.split(",").map((s) => s.trim()).filter((s) => s !== ""),
            replicas: config.natsReplicas,
            bytesMax: config.checkpointBytesMax
          }))
      }
    })
  )
}

export const defaultBucket = "chronos_checkpoints"

const segment = /^[A-Za-z0-9_-]+$/

const keyText = (key: Key): string => {
  if (key.length === 0 || !key.every((s) => segment.test(s))) {
    throw new Error(`CheckpointStore: invalid key ${JSON.stringify(key)} (segments are [A-Za-z0-9_-]+)`)
  }
  return key.join(".")
}

/** Serializes a document and checks its size: the same limit for every driver. */
const serialize = (key: Key, value: unknown, bytesMax: number): string | Errors.LimitExceeded => {
  const json = JSON.stringify(value)
  const bytes = Buffer.byteLength(json)
  return bytes > bytesMax
    ? new Errors.LimitExceeded({
      limit: "checkpointBytesMax",
      max: bytesMax,
      actual: bytes,
      message: `the document ${keyText(key)} is ${bytes} bytes serialized, over ${bytesMax}`
    })
    : json
}

const conflict = (key: Key, expected: number, actual: number) =>
  new CheckpointConflict({
    key: keyText(key),
    expected,
    message: `${keyText(key)} is at revision ${actual}, the writer expected ${expected}`
  })

// ---- memory -------------------------------------------------------------------------------------------------------

export const makeMemory = (bytesMax: number): CheckpointStoreShape => {
  const docs = new Map<string, { json: string; revision: number }>()
  return {
    driver: "memory",
    get: (key) =>
      Effect.sync(() => {
        const doc = docs.get(keyText(key))
        // Stored as text, like the real drivers: a caller can never mutate the stored document through a reference.
        return doc === undefined ? undefined : { value: JSON.parse(doc.json), revision: doc.revision }
      }),
    put: (key, value, expectedRevision) =>
      Effect.suspend((): Effect.Effect<number, CheckpointConflict | Errors.LimitExceeded> => {
        const json = serialize(key, value, bytesMax)
        if (typeof json !== "string") return Effect.fail(json)
        const k = keyText(key)
        const current = docs.get(k)?.revision ?? 0
        if (current !== expectedRevision) return Effect.fail(conflict(key, expectedRevision, current))
        docs.set(k, { json, revision: current + 1 })
        return Effect.succeed(current + 1)
      }),
    list: (prefix) =>
      Effect.sync(() => {
        const p = prefix.length === 0 ? "" : `${keyText(prefix)}.`
        return [...docs.keys()].filter((k) => k.startsWith(p)).map((k) => k.split("."))
      })
  }
}

// ---- file ---------------------------------------------------------------------------------------------------------

const storeError = (key: Key | string, cause: unknown) =>
  new CheckpointStoreError({
    key: typeof key === "string" ? key : keyText(key),
    message: cause instanceof Error ? cause.message : String(cause)
  })

/**
 * The file driver. This process is the only writer of its data directory (the event log's partition locks make
 * sure of that), so revisions are checked against what this process last read or wrote, one write at a time per
 * key; the file itself carries the revision, so it survives restarts.
 */
export const makeFile = (dataDir: string, bytesMax: number): CheckpointStoreShape => {
  const locks = new Map<string, Semaphore.Semaphore>()
  const lockOf = (k: string) => {
    let lock = locks.get(k)
    if (lock === undefined) locks.set(k, lock = Semaphore.makeUnsafe(1))
    return lock
  }
  const fileOf = (key: Key) => {
    keyText(key)
    return path.join(dataDir, ...key.slice(0, -1), `${key[key.length - 1]}.json`)
  }

  const read = (key: Key) =>
    Effect.tryPromise({
      try: async (): Promise<StoredDocument | undefined> => {
        let text: string
        try {
          text = await fsp.readFile(fileOf(key), "utf8")
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
          throw e
        }
        const doc = JSON.parse(text) as { revision?: unknown; value?: unknown }
        if (typeof doc.revision !== "number" || !("value" in doc)) {
          throw new Error(`${fileOf(key)} is not a checkpoint document`)
        }
        return { value: doc.value, revision: doc.revision }
      },
      catch: (e) => storeError(key, e)
    })

  return {
    driver: "file",
    get: read,
    put: (key, value, expectedRevision) =>
      Effect.suspend(() => {
        const k = keyText(key)
        return Semaphore.withPermit(lockOf(k))(Effect.gen(function*() {
          const current = (yield* read(key))?.revision ?? 0
          if (current !== expectedRevision) return yield* conflict(key, expectedRevision, current)
          const revision = current + 1
          const text = serialize(key, { revision, value }, bytesMax)
          if (typeof text !== "string") return yield* text
          yield* Effect.tryPromise({ try: () => DurableFile.writeAtomic(fileOf(key), text), catch: (e) => storeError(key, e) })
          return revision
        }))
      }),
    list: (prefix) =>
      Effect.tryPromise({
        try: async () => {
          keyText(prefix.length === 0 ? ["x"] : prefix)
          const out: Array<Key> = []
          const walk = async (dir: string, at: Key): Promise<void> => {
            let entries: Array<import("node:fs").Dirent>
            try {
              entries = await fsp.readdir(dir, { withFileTypes: true })
            } catch (e) {
              if ((e as NodeJS.ErrnoException).code === "ENOENT") return
              throw e
            }
            for (const entry of entries) {
              if (entry.isDirectory() && segment.test(entry.name)) await walk(path.join(dir, entry.name), [...at, entry.name])
              else if (entry.isFile() && /^[A-Za-z0-9_-]+\.json$/.test(entry.name)) out.push([...at, entry.name.slice(0, -5)])
            }
          }
          await walk(path.join(dataDir, ...prefix), prefix)
          return out
        },
        catch: (e) => storeError(prefix.join("."), e)
      })
  }
}

// ---- NATS KV ------------------------------------------------------------------------------------------------------

const isConflict = (e: unknown): boolean =>
  e instanceof JetStreamApiError &&
  (e.code === JetStreamApiCodes.StreamWrongLastSequence || e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)

/**
 * The NATS KV driver: one bucket (`chronos_checkpoints` by default, file storage, history 1), reads through the
 * stream leader (`allow_direct: false`) so a process never acts on a lagging replica's copy, and every put a
 * compare-and-swap on the key's last sequence (`Nats-Expected-Last-Subject-Sequence`).
 */
export const makeNatsKvOn = (nc: NatsConnection, options: Omit<NatsKvOptions, "servers">) =>
  Effect.gen(function*() {
    const bucket = options.bucket ?? defaultBucket
    const timeoutMs = options.requestTimeoutMs ?? 5_000
    const request = <A>(key: string, f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (e) => storeError(key, e) })
    const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }))
    const create = request(bucket, () =>
      kvm.create(bucket, { history: 1, replicas: options.replicas, storage: StorageType.File, allow_direct: false }))
    // Two processes creating the bucket at once: the loser's create fails, the retry binds to the winner's.
    const kv: KV = yield* Effect.catch(create, () => create)
    const shape: CheckpointStoreShape = {
      driver: "nats-kv",
      get: (key) =>
        Effect.suspend(() => {
          const k = keyText(key)
          return Effect.flatMap(request(k, () => kv.get(k)), (entry) => {
            if (entry === null || entry.operation !== "PUT") return Effect.succeed(undefined)
            return Effect.try({
              try: () => ({ value: JSON.parse(entry.string()) as unknown, revision: entry.revision }),
              catch: (e) => storeError(k, e)
            })
          })
        }),
      put: (key, value, expectedRevision) =>
        Effect.suspend((): Effect.Effect<number, CheckpointConflict | CheckpointStoreError | Errors.LimitExceeded> => {
          const k = keyText(key)
          const json = serialize(key, value, options.bytesMax)
          if (typeof json !== "string") return Effect.fail(json)
          return Effect.tryPromise({
            try: () => kv.put(k, json, { previousSeq: expectedRevision }),
            catch: (e) => isConflict(e) ? conflict(key, expectedRevision, -1) : storeError(k, e)
          })
        }),
      list: (prefix) =>
        Effect.suspend(() => {
          const filter = prefix.length === 0 ? ">" : `${keyText(prefix)}.>`
          return request(filter, async () => {
            const out: Array<Key> = []
            for await (const k of await kv.keys(filter)) out.push(k.split("."))
            return out
          })
        })
    }
    return shape
  })

/** The NATS KV driver on a connection of its own, drained when the layer's scope closes. */
export const makeNatsKv = (options: NatsKvOptions) =>
  Effect.gen(function*() {
    const timeoutMs = options.requestTimeoutMs ?? 5_000
    const nc = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          connect({
            servers: [...options.servers],
            name: "chronos-checkpoints",
            noAsyncTraces: true,
            // A node lives for days: never give up reconnecting (the default stops after 10 attempts).
            maxReconnectAttempts: -1,
            reconnectTimeWait: 250,
            timeout: timeoutMs
          }),
        catch: (e) => storeError(options.bucket ?? defaultBucket, e)
      }),
      (nc) =>
        Effect.promise(() => nc.drain().catch(() => nc.close())).pipe(
          Effect.timeoutOrElse({ duration: Duration.millis(timeoutMs), orElse: () => Effect.promise(() => nc.close()) })
        )
    )
    return yield* makeNatsKvOn(nc, options)
  })
