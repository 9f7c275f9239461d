/**
 * The cluster driver of `SegmentStore`: segment files in a NATS Object Store bucket and one manifest per partition in
 * a NATS KV bucket, both JetStream streams replicated like the log (`replicas`, file storage), so that whichever
 * node owns a partition next finds the same segments.
 *
 *  - Segments: object `p<NNN>/<file>` of bucket `<prefix>_SEGMENTS`. The object store writes the chunks first and the
 *    object's meta entry last, so a reader sees the whole object or the previous one (a put is atomic), and every
 *    chunk is acknowledged by a JetStream quorum before `put` returns (durable). The store's own SHA-256 digest is
 *    checked on every read; a mismatch is `CorruptData` (the manifest's digest is checked again by `SegmentReader`).
 *  - Manifests: key `p<NNN>` of bucket `<prefix>_MANIFESTS`, written with compare-and-swap on the revision this
 *    driver last read or wrote (`create` when it knew of none). A write that loses the race — a former owner of the
 *    partition still sealing after the partition moved — fails with a `SegmentStoreError` saying so, and the seal is
 *    retried from a fresh read: a manifest is never overwritten blindly, so no listed segment is ever lost.
 *
 * Every request is bounded by `requestTimeoutMs` (small ones by `metadataTimeoutMs`); a request that times out, or
 * any NATS error, is a retryable `SegmentStoreError`. Both buckets read through their stream leader (not direct gets from replicas), so a new
 * owner reads what the previous one wrote. The KV bucket keeps one revision per key (`history: 1`): the manifest is
 * replaced whole, and a manifest's size bounds it (~250 bytes a segment, within the server's max_payload).
 */
import { Effect, Schedule, type Scope } from "effect"
import { type NatsConnection } from "@nats-io/nats-core"
import { connect } from "@nats-io/transport-node"
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream"
import { type KV, Kvm } from "@nats-io/kv"
import { type ObjectStore, Objm } from "@nats-io/obj"
import { Errors } from "@chronos/domain"
import * as Manifest from "../Manifest.ts"
import {
  manifestFile,
  partitionDirName,
  SegmentStoreError,
  type SegmentStoreShape
} from "../SegmentStore.ts"

export interface Options {
  /** NATS server URLs. */
  readonly servers: ReadonlyArray<string>
  /** Replication factor of both buckets: the log's (`natsReplicas`). */
  readonly replicas: number
  /** Bucket name prefix: buckets are `<prefix>_SEGMENTS` and `<prefix>_MANIFESTS`. Default `CHRONOS`. */
  readonly bucketPrefix?: string | undefined
  /** Bound of every NATS request (`segmentStoreTimeoutMs`). */
  readonly requestTimeoutMs: number
  /**
   * Bound of the small requests — manifest reads and writes, object info, listings, removals — when shorter than
   * `requestTimeoutMs` (a node passes `natsRequestTimeoutMs`). A partition's activation reads its manifest: during a
   * NATS leader election that read must fail fast and be retried (the activation retries `LogUnavailable`), not wait
   * out a bound sized for moving a segment (measured: one 37 s writer stall in the fault test's NATS-node-loss phase,
   * against 6–8 s otherwise).
   */
  readonly metadataTimeoutMs?: number | undefined
  /**
   * Open existing buckets only (`replicas` is then unused): a scrub (`Verify.runNats`) must not create an empty
   * store where it expected one. Default false: create them when missing.
   */
  readonly openOnly?: boolean | undefined
}

export const defaultBucketPrefix = "CHRONOS"

export const bucketNames = (prefix: string) => ({ segments: `${prefix}_SEGMENTS`, manifests: `${prefix}_MANIFESTS` })

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Object names within the segments bucket: `p<NNN>/<file>`. */
const objectName = (partition: number, file: string) => `${partitionDirName(partition)}/${file}`

/**
 * Opens a connection (closed with the scope) and both buckets (created when missing, unless `openOnly`), and returns
 * the driver.
 */
export const make = (options: Options): Effect.Effect<SegmentStoreShape, SegmentStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.bucketPrefix ?? defaultBucketPrefix
    const buckets = bucketNames(prefix)
    const where = `nats:${options.servers.join(",")}`
    const setup = <A>(what: string, run: () => Promise<A>) =>
      Effect.tryPromise({
        try: run,
        catch: (e) => new SegmentStoreError({ location: where, message: `${what}: ${errorText(e)}` })
      })
    const nc: NatsConnection = yield* Effect.acquireRelease(
      setup("cannot connect to NATS", () =>
        connect({
          servers: [...options.servers],
          name: "chronos-segments",
          // No async stack trace built per request (see the JetStream log driver's connection).
          noAsyncTraces: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          timeout: options.requestTimeoutMs
        })),
      (nc) =>
        Effect.promise(() => nc.drain().catch(() => undefined)).pipe(
          Effect.timeoutOption(options.requestTimeoutMs),
          Effect.andThen(Effect.promise(() => nc.close().catch(() => undefined)))
        )
    )
    const js = jetstream(nc, { timeout: options.requestTimeoutMs })
    // Creating an R3 bucket waits for a Raft election: slower than a request, so it is retried within a bound.
    const createBuckets = Effect.all([
      setup(`object store ${buckets.segments}`, () =>
        new Objm(js).create(buckets.segments, {
          replicas: options.replicas,
          storage: StorageType.File,
          description: "Chronos cold tier: sealed Parquet segments"
        })),
      setup(`KV ${buckets.manifests}`, () =>
        new Kvm(js).create(buckets.manifests, {
          replicas: options.replicas,
          storage: StorageType.File,
          history: 1,
          allow_direct: false,
          description: "Chronos cold tier: one segment manifest per partition"
        }))
    ])
    const openBuckets = Effect.all([
      setup(`object store ${buckets.segments}`, () => new Objm(js).open(buckets.segments)),
      setup(`KV ${buckets.manifests}`, async () => {
        // `Kvm.open` does not check that the bucket exists; its stream does.
        await (await jetstreamManager(nc, { timeout: options.requestTimeoutMs })).streams.info(`KV_${buckets.manifests}`)
        return new Kvm(js).open(buckets.manifests)
      })
    ])
    const [os, kv] = options.openOnly === true
      ? yield* openBuckets
      : yield* createBuckets.pipe(Effect.retry({ times: 10, schedule: Schedule.spaced(500) }))
    return makeDriver(os, kv, prefix, options.requestTimeoutMs, Math.min(options.metadataTimeoutMs ?? options.requestTimeoutMs, options.requestTimeoutMs))
  })

const makeDriver = (
  os: ObjectStore,
  kv: KV,
  prefix: string,
  timeoutMs: number,
  metadataTimeoutMs: number
): SegmentStoreShape => {
  const buckets = bucketNames(prefix)
  const location = (partition: number, file: string) =>
    file === manifestFile
      ? `nats-kv:${buckets.manifests}/${partitionDirName(partition)}`
      : `nats-obj:${buckets.segments}/${objectName(partition, file)}`
  const io = <A>(where: string, run: () => Promise<A>, boundMs = metadataTimeoutMs): Effect.Effect<A, SegmentStoreError> =>
    Effect.tryPromise({
      try: run,
      catch: (e) => new SegmentStoreError({ location: where, message: errorText(e) })
    }).pipe(
      Effect.timeoutOrElse({
        duration: boundMs,
        orElse: () => Effect.fail(new SegmentStoreError({ location: where, message: `no answer within ${boundMs} ms` }))
      })
    )
  /** The manifest revision this driver last read or wrote, per partition: what its next write must replace. */
  const revisions = new Map<number, number>()

  const listNames = io(`nats-obj:${buckets.segments}`, async () =>
    (await os.list()).filter((info) => !info.deleted).map((info) => info.name), timeoutMs)

  return {
    driver: "nats",
    location,
    put: (partition, file, bytes) =>
      Effect.asVoid(io(location(partition, file), () => os.putBlob({ name: objectName(partition, file) }, bytes), timeoutMs)),
    get: (partition, file) =>
      Effect.tryPromise({
        try: () => os.getBlob(objectName(partition, file)),
        catch: (e) =>
          // The object store checks its own SHA-256 of the chunks: a mismatch is damage, not an outage.
          /digests do not match|corrupt object/.test(errorText(e))
            ? new Errors.CorruptData({ location: location(partition, file), message: errorText(e) })
            : new SegmentStoreError({ location: location(partition, file), message: errorText(e) })
      }).pipe(
        Effect.timeoutOrElse({
          duration: timeoutMs,
          orElse: () =>
            Effect.fail(new SegmentStoreError({ location: location(partition, file), message: `no answer within ${timeoutMs} ms` }))
        }),
        // A plain Uint8Array of its own: the client returns Buffers, small ones views into a shared pool.
        Effect.map((bytes) => bytes === null ? undefined : Buffer.isBuffer(bytes) ? new Uint8Array(bytes) : bytes)
      ),
    remove: (partition, file) =>
      Effect.asVoid(io(location(partition, file), async () => {
        // Deleting a missing object is not an error: removal is idempotent, like the local driver's.
        if ((await os.info(objectName(partition, file))) !== null) await os.delete(objectName(partition, file))
      })),
    list: (partition) =>
      Effect.map(listNames, (names) => {
        const dir = `${partitionDirName(partition)}/`
        return names.filter((n) => n.startsWith(dir)).map((n) => n.slice(dir.length))
          .filter((n) => Manifest.fileNamePattern.test(n)).sort()
      }),
    partitions: Effect.gen(function*() {
      const found = new Set<number>()
      for (const name of yield* listNames) {
        const m = /^p(\d{3,})\//.exec(name)
        if (m !== null) found.add(Number(m[1]))
      }
      const keys = yield* io(`nats-kv:${buckets.manifests}`, async () => {
        const out: Array<string> = []
        for await (const k of await kv.keys()) out.push(k)
        return out
      }, timeoutMs)
      for (const k of keys) {
        const m = /^p(\d{3,})$/.exec(k)
        if (m !== null) found.add(Number(m[1]))
      }
      return [...found].sort((a, b) => a - b)
    }),
    readManifest: (partition) =>
      Effect.flatMap(io(location(partition, manifestFile), () => kv.get(partitionDirName(partition))), (entry) => {
        if (entry === null || entry.operation !== "PUT") {
          revisions.delete(partition)
          if (entry !== null) revisions.set(partition, entry.revision)
          return Effect.succeed(undefined)
        }
        revisions.set(partition, entry.revision)
        const decoded = Manifest.decode(entry.string())
        return "manifest" in decoded
          ? Effect.succeed(decoded.manifest)
          : Effect.fail(new Errors.CorruptData({ location: location(partition, manifestFile), message: decoded.problem }))
      }),
    writeManifest: (partition, manifest) =>
      Effect.flatMap(
        io(location(partition, manifestFile), async () => {
          const key = partitionDirName(partition)
          const value = Manifest.encode(manifest)
          const known = revisions.get(partition)
          try {
            return { revision: known === undefined ? await kv.create(key, value) : await kv.update(key, value, known) }
          } catch (e) {
            if (/wrong last sequence|key exists/i.test(errorText(e))) return { conflict: errorText(e) }
            throw e
          }
        }),
        (result) => {
          if ("revision" in result) {
            revisions.set(partition, result.revision)
            return Effect.void
          }
          // Forget the revision: the next seal re-reads the manifest and continues from what the other writer left.
          revisions.delete(partition)
          return Effect.fail(
            new SegmentStoreError({
              location: location(partition, manifestFile),
              message: `the manifest changed since this node read it (another writer sealed partition ${partition}): ` +
                `${result.conflict}; not overwritten, the seal is retried from a fresh read`
            })
          )
        }
      )
  }
}
