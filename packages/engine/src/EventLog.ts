/**
 * The replicated log of commits, one log per partition: the durable truth from which every partition rebuilds its
 * state. Three drivers share this interface:
 *  - `layerMemory`: process memory, for fast unit tests (same fencing rules as the real drivers);
 *  - `layerFile`: the embedded default, append-only segment files per partition with CRC32C per record, fsync
 *    before acknowledging, group commit, torn-tail recovery (`internal/fileLog.ts`);
 *  - `layerJetStream`: one JetStream stream per partition, each commit one message published with
 *    `expect.lastSequence` so a stale writer can never append (`internal/jetStreamLog.ts`).
 *
 * Contract of `PartitionLog.append` (all drivers; the partition relies on it):
 *  - precondition: `commit.firstSeq` is exactly one past the last sequence of the previous append on this handle
 *    (including appends still in flight) — or of the log at open time, for the first one;
 *  - appends may be pipelined; they become durable and resolve in the order they were called; a driver takes its
 *    place in that order synchronously, when the `append` effect starts running (the partition starts appends
 *    with `startImmediately`, so call order is start order);
 *  - when one append fails, every later append on the same handle fails too (the caller must reopen and reload);
 *  - `LogFenced` means another writer appended to this partition: this handle's view is stale.
 */
import { Context, Effect, Layer, Schema, type Scope } from "effect"
import type { Event } from "@chronos/domain"
import { type Commit, lastSeq } from "./Commit.ts"
import * as FileLog from "./internal/fileLog.ts"
import * as JetStreamLog from "./internal/jetStreamLog.ts"

/** Another writer has appended to the partition's log: the caller's view is stale and it must reload. */
export class LogFenced extends Schema.TaggedError<LogFenced>()("LogFenced", {
  partition: Schema.Int,
  message: Schema.String
}) {}

/** The log cannot be reached or did not acknowledge in time; retryable. */
export class LogUnavailable extends Schema.TaggedError<LogUnavailable>()("LogUnavailable", {
  partition: Schema.Int,
  message: Schema.String
}) {}

export type LogError = LogFenced | LogUnavailable

export interface PartitionLog {
  readonly partition: number
  /**
   * Calls `onCommit` for every commit whose events reach `fromSeq` or beyond, in order, and returns the last
   * sequence in the log (0 when empty). A callback rather than a Stream: recovery of millions of events must not
   * pay for a fiber hop per commit.
   */
  readonly replay: (fromSeq: number, onCommit: (commit: Commit) => void) => Effect.Effect<number, LogError>
  /** Appends one commit durably (see the module contract). */
  readonly append: (commit: Commit) => Effect.Effect<void, LogError>
  /**
   * Drops whole units of the log (files, messages) that hold only sequences below `seq`, once they are sealed in
   * the cold tier (see `ColdStore`); the last unit is always kept, so the log still knows its last sequence.
   * Afterwards `replay` starts at the first kept unit (the base); a `replay` from below the base cannot return the
   * dropped events: the JetStream driver dies naming the base, the file log starts at its base (which the partition
   * detects as a gap). Optional: a driver without it keeps everything.
   */
  readonly truncateBefore?: (seq: number) => Effect.Effect<void, LogError>
  /**
   * How many commits this log writes at once (absent: as many as it is given). A partition keeps no more than this
   * in flight: a commit cut while the log could not start writing it would only wait, holding appends that could
   * have joined a fuller commit. The JetStream driver writes one at a time (fencing, see its module doc).
   */
  readonly commitsInFlightMax?: number | undefined
}

export interface EventLogShape {
  /** Driver name, for status output and benchmarks. */
  readonly driver: "memory" | "file" | "jetstream"
  /**
   * Opens the log of one partition; closed with the scope. `namespace` (a fork id: `[a-z0-9][a-z0-9-]*`) selects a
   * separate set of logs beside the store's own — a fork's partitions — that share nothing with it; absent, the
   * store's own log.
   */
  readonly open: (partition: number, namespace?: string) => Effect.Effect<PartitionLog, LogError, Scope.Scope>
  /**
   * Deletes every log of `namespace` (a discarded fork's), freeing its storage; deleting a namespace that holds
   * nothing succeeds. Its partitions must be closed first. Optional: a driver without it cannot free a fork's
   * storage (every driver here has it).
   */
  readonly drop?: (namespace: string) => Effect.Effect<void, LogError>
  /**
   * The replicas of a partition's log as its leader reports them (leader first), for `GET /v1/partitions`; empty
   * when the log does not exist yet. Optional: a driver without it keeps one local copy (memory, file).
   */
  readonly replicas?: (partition: number) => Effect.Effect<ReadonlyArray<Event.ReplicaStatus>, LogError>
}

/** A namespace name as `open` and `drop` accept it: it becomes a directory name and part of a stream name. */
export const isNamespace = (namespace: string): boolean => /^[a-z0-9][a-z0-9-]{0,63}$/.test(namespace)

export class EventLog extends Context.Service<EventLog, EventLogShape>()("chronos/engine/EventLog") {
  /** A log in process memory. Each layer build is an independent, empty store. */
  static readonly layerMemory: Layer.Layer<EventLog> = Layer.sync(EventLog, () => makeMemory())
  /** Segment files under `<dataDir>/log/p<NNN>/`, a fork's under `<dataDir>/forks/<forkId>/log/p<NNN>/` (see `internal/fileLog.ts`). */
  static readonly layerFile = (options: FileLog.Options) =>
    Layer.effect(EventLog, FileLog.make(options))
  /** One JetStream stream per partition, on one NATS connection per layer (see `internal/jetStreamLog.ts`). */
  static readonly layerJetStream = (options: JetStreamLog.Options) => Layer.effect(EventLog, JetStreamLog.make(options))
}

/**
 * The memory driver. `store` may be shared between several drivers to model several writers of one log.
 * Appends are acknowledged on the next microtask, so callers see real asynchrony and pipelining.
 */
export const makeMemory = (
  store: Map<number, Array<Commit>> = new Map(),
  /** The logs of each namespace (fork), kept apart from `store`. */
  namespaces: Map<string, Map<number, Array<Commit>>> = new Map()
): EventLogShape => ({
  driver: "memory",
  drop: (namespace) =>
    Effect.suspend(() => {
      if (!isNamespace(namespace)) return Effect.die(new Error(`EventLog: invalid namespace ${JSON.stringify(namespace)}`))
      namespaces.delete(namespace)
      return Effect.void
    }),
  open: (partition, namespace) =>
    Effect.sync(() => {
      if (namespace !== undefined && !isNamespace(namespace)) {
        throw new Error(`EventLog: invalid namespace ${JSON.stringify(namespace)}`)
      }
      let logs = store
      if (namespace !== undefined) {
        let found = namespaces.get(namespace)
        if (found === undefined) namespaces.set(namespace, found = new Map())
        logs = found
      }
      let commits = logs.get(partition)
      if (commits === undefined) {
        commits = []
        logs.set(partition, commits)
      }
      const log = commits
      // The sequence this handle expects next; a mismatch with the shared store means another writer appended.
      let expectedNext = log.length === 0 ? 1 : lastSeq(log[log.length - 1]!) + 1
      let broken = false
      return {
        partition,
        replay: (fromSeq, onCommit) =>
          Effect.sync(() => {
            for (const commit of log) if (lastSeq(commit) >= fromSeq) onCommit(commit)
            return log.length === 0 ? 0 : lastSeq(log[log.length - 1]!)
          }),
        truncateBefore: (seq) =>
          Effect.sync(() => {
            let drop = 0
            while (drop < log.length - 1 && lastSeq(log[drop]!) < seq) drop++
            log.splice(0, drop)
          }),
        append: (commit) =>
          Effect.suspend(() => {
            if (commit.firstSeq !== expectedNext) {
              return Effect.die(new Error(
                `EventLog precondition: partition ${partition} append at seq ${commit.firstSeq}, expected ${expectedNext}`
              ))
            }
            expectedNext = lastSeq(commit) + 1
            const storeLast = log.length === 0 ? 0 : lastSeq(log[log.length - 1]!)
            if (broken || storeLast + 1 !== commit.firstSeq) {
              broken = true
              return Effect.fail(new LogFenced({
                partition,
                message: `log is at seq ${storeLast}, this writer expected it at ${commit.firstSeq - 1}`
              }))
            }
            log.push(commit)
            return Effect.promise(() => Promise.resolve())
          })
      } satisfies PartitionLog
    })
})
