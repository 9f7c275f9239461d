/**
 * Where segment files and manifests live: a byte store keyed by (partition, file name), with durable writes. It owns
 * durability and atomicity only — not formats, not checksums (see `SegmentReader`) — so that every driver is small:
 *  - `layerLocal({ dataDir })`: plain files, the embedded default.
 *
 *        <dataDir>/segments/p<NNN>/<fromSeq>-<toSeq>.parquet   readable by any Parquet tool (DuckDB, pyarrow, …)
 *        <dataDir>/segments/p<NNN>/MANIFEST.json               the partition's manifest
 *
 *    A file is written to `<name>.tmp`, fsync'd, renamed into place and its directory fsync'd: a reader sees the
 *    whole file or none, and a put that returned survives a crash. The manifest is written the same way.
 *  - `layerNats({ servers, replicas, … })`: the cluster driver (`internal/natsSegmentStore.ts`): segments in a NATS
 *    Object Store bucket, one manifest per partition in a NATS KV bucket (written by compare-and-swap on its
 *    revision), both replicated like the log, so the next owner of a partition finds what the last one sealed;
 *  - `layerMemory`: process memory (tests).
 */
import { Context, Effect, Layer, Schema } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { Errors } from "@chronos/domain"
import * as DurableFile from "@chronos/engine/DurableFile"
import * as Manifest from "./Manifest.ts"
import * as NatsSegmentStore from "./internal/natsSegmentStore.ts"

/** The store cannot be read or written (I/O, permissions, space): retryable by an operator, not corruption. */
export class SegmentStoreError extends Schema.TaggedError<SegmentStoreError>()("SegmentStoreError", {
  location: Schema.String,
  message: Schema.String
}) {}

export const manifestFile = "MANIFEST.json"

export interface SegmentStoreShape {
  readonly driver: "local" | "memory" | "nats"
  /** Where a file of a partition lives, for reports and errors (a path, or a bucket and key). */
  readonly location: (partition: number, file: string) => string
  /** Stores a segment durably; it is visible whole or not at all. */
  readonly put: (partition: number, file: string, bytes: Uint8Array) => Effect.Effect<void, SegmentStoreError>
  /**
   * A segment's bytes; `undefined` when there is no such file. `CorruptData` when the store itself detects damage
   * (the NATS object store checks its own digest); every other check is the reader's (see `SegmentReader`).
   */
  readonly get: (
    partition: number,
    file: string
  ) => Effect.Effect<Uint8Array | undefined, SegmentStoreError | Errors.CorruptData>
  readonly remove: (partition: number, file: string) => Effect.Effect<void, SegmentStoreError>
  /** Names of the segment files of a partition (manifest excluded), sorted. */
  readonly list: (partition: number) => Effect.Effect<ReadonlyArray<string>, SegmentStoreError>
  /** Partitions that have a manifest or segment files, ascending. */
  readonly partitions: Effect.Effect<ReadonlyArray<number>, SegmentStoreError>
  /** The partition's manifest (`undefined`: none yet); `CorruptData` when it exists but does not parse. */
  readonly readManifest: (
    partition: number
  ) => Effect.Effect<Manifest.Manifest | undefined, SegmentStoreError | Errors.CorruptData>
  /**
   * Replaces the manifest atomically and durably. The NATS driver replaces only the revision it last read or wrote
   * (compare-and-swap) and fails with a `SegmentStoreError` when another writer got there first.
   */
  readonly writeManifest: (partition: number, manifest: Manifest.Manifest) => Effect.Effect<void, SegmentStoreError>
}

export class SegmentStore extends Context.Service<SegmentStore, SegmentStoreShape>()("chronos/storage/SegmentStore") {
  /** Plain files under `<dataDir>/segments/` (embedded mode). */
  static readonly layerLocal = (options: { readonly dataDir: string }): Layer.Layer<SegmentStore> =>
    Layer.sync(SegmentStore, () => makeLocal(options.dataDir))
  /**
   * The cluster driver: NATS Object Store (segments) and KV (manifests) buckets `<bucketPrefix>_SEGMENTS` and
   * `<bucketPrefix>_MANIFESTS`, created when missing with `replicas` replicas, over a connection of its own.
   */
  static readonly layerNats = (options: NatsSegmentStore.Options): Layer.Layer<SegmentStore, SegmentStoreError> =>
    Layer.effect(SegmentStore, NatsSegmentStore.make(options))
  /** Process memory; each build is an independent, empty store. */
  static readonly layerMemory: Layer.Layer<SegmentStore> = Layer.sync(SegmentStore, () => makeMemory())
}

export const partitionDirName = (partition: number): string => `p${String(partition).padStart(3, "0")}`

export const segmentsDir = (dataDir: string): string => path.join(dataDir, "segments")

const parseManifest = (location: string, text: string): Effect.Effect<Manifest.Manifest, Errors.CorruptData> => {
  const decoded = Manifest.decode(text)
  return "manifest" in decoded
    ? Effect.succeed(decoded.manifest)
    : Effect.fail(new Errors.CorruptData({ location, message: decoded.problem }))
}

// --- local directory -----------------------------------------------------------------------------------------------

const { fsyncDir, writeAtomic } = DurableFile

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code === "ENOENT"

export const makeLocal = (dataDir: string): SegmentStoreShape => {
  const root = segmentsDir(path.resolve(dataDir))
  const dirOf = (partition: number) => path.join(root, partitionDirName(partition))
  const location = (partition: number, file: string) => path.join(dirOf(partition), file)
  const io = <A>(where: string, run: () => Promise<A>): Effect.Effect<A, SegmentStoreError> =>
    Effect.tryPromise({
      try: run,
      catch: (error) =>
        new SegmentStoreError({ location: where, message: error instanceof Error ? error.message : String(error) })
    })
  return {
    driver: "local",
    location,
    put: (partition, file, bytes) => io(location(partition, file), () => writeAtomic(location(partition, file), bytes)),
    get: (partition, file) =>
      io(location(partition, file), async () => {
        try {
          const buffer = await fsp.readFile(location(partition, file))
          return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
        } catch (error) {
          if (isMissing(error)) return undefined
          throw error
        }
      }),
    remove: (partition, file) =>
      io(location(partition, file), async () => {
        await fsp.rm(location(partition, file), { force: true })
        await fsyncDir(dirOf(partition)).catch((error: unknown) => {
          if (!isMissing(error)) throw error
        })
      }),
    list: (partition) =>
      io(dirOf(partition), async () => {
        try {
          return (await fsp.readdir(dirOf(partition))).filter((name) => Manifest.fileNamePattern.test(name)).sort()
        } catch (error) {
          if (isMissing(error)) return []
          throw error
        }
      }),
    partitions: io(root, async () => {
      try {
        return (await fsp.readdir(root))
          .map((name) => /^p(\d{3,})$/.exec(name))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => Number(m[1]))
          .sort((a, b) => a - b)
      } catch (error) {
        if (isMissing(error)) return []
        throw error
      }
    }),
    readManifest: (partition) =>
      Effect.flatMap(
        io(location(partition, manifestFile), async () => {
          try {
            return await fsp.readFile(location(partition, manifestFile), "utf8")
          } catch (error) {
            if (isMissing(error)) return undefined
            throw error
          }
        }),
        (text) => text === undefined ? Effect.succeed(undefined) : parseManifest(location(partition, manifestFile), text)
      ),
    writeManifest: (partition, manifest) =>
      io(location(partition, manifestFile), () => writeAtomic(location(partition, manifestFile), Manifest.encode(manifest)))
  }
}

/** Whether `dataDir` holds any segment (used by tools that must not ignore a cold tier). */
export const hasSegments = (dataDir: string): boolean => fs.existsSync(segmentsDir(path.resolve(dataDir)))

// --- memory --------------------------------------------------------------------------------------------------------

export const makeMemory = (): SegmentStoreShape & {
  /** Test hook: the stored bytes, mutable (to model damage). */
  readonly files: Map<string, Uint8Array>
} => {
  const files = new Map<string, Uint8Array>()
  const manifests = new Map<number, string>()
  const key = (partition: number, file: string) => `${partitionDirName(partition)}/${file}`
  return {
    driver: "memory",
    files,
    location: (partition, file) => `memory:${key(partition, file)}`,
    put: (partition, file, bytes) => Effect.sync(() => void files.set(key(partition, file), bytes.slice())),
    get: (partition, file) => Effect.sync(() => files.get(key(partition, file))),
    remove: (partition, file) => Effect.sync(() => void files.delete(key(partition, file))),
    list: (partition) =>
      Effect.sync(() => {
        const prefix = `${partitionDirName(partition)}/`
        return [...files.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)).sort()
      }),
    partitions: Effect.sync(() => {
      const ps = new Set<number>(manifests.keys())
      for (const k of files.keys()) ps.add(Number(k.slice(1, k.indexOf("/"))))
      return [...ps].sort((a, b) => a - b)
    }),
    readManifest: (partition) =>
      Effect.suspend(() => {
        const text = manifests.get(partition)
        return text === undefined
          ? Effect.succeed(undefined)
          : parseManifest(`memory:${key(partition, manifestFile)}`, text)
      }),
    writeManifest: (partition, manifest) => Effect.sync(() => void manifests.set(partition, Manifest.encode(manifest)))
  }
}
