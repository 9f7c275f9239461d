/**
 * Projections: a reducer folded over a filtered subscription, in two forms.
 *
 *  - SDK / embedded, unmanaged: `fold(engine, tenant, options, reducer)` — a `Stream` of states, one per page read,
 *    with the position each state is exact at; any function reducer.
 *  - Managed (`Projections` service): named projections with their state and checkpoint stored durably, started,
 *    stopped, reset and rebuilt on request, with progress (events/s, ETA, position vs head). A projection is either
 *    declarative — `{ kind: count | sum | last, field?, groupBy: stream | type | { dataField } }` plus a filter, safe
 *    to run on the server because no user code runs — or, in the embedded SDK, a function reducer registered by the
 *    application (`register`), whose state must be JSON.
 *
 * Consistency: a managed projection's state and its position are one document, written by one atomic put (a file
 * write + fsync + rename, or one NATS KV message), and the in-memory state and position change together, within
 * one synchronous step per page. After a crash the projection resumes from a (state, position) pair that belong
 * together, so no event is ever applied twice or skipped. `last` keeps, per key, the order of the event it holds
 * ((timestamp, partition, seq)), so its state does not depend on how reads interleaved partitions: a rebuild
 * gives the same state as the original run.
 *
 * Ownership: one process folds a projection at a time. The document names its owner and when it last wrote; every
 * write is a compare-and-swap, so a process that lost the document stops, and a projection whose owner has not
 * written for `projectionLeaseMs` is taken over by another process (cluster failover; in a single node the owner is
 * the node itself, so it resumes at once after a restart). Control requests (stop, reset, …) may be served by any
 * process: they change the document, and the owner follows.
 */
import { Clock, Context, Effect, Fiber, Layer, Option, Scope, Semaphore, Stream } from "effect"
import { hostname } from "node:os"
import { ChronosConfig, type ChronosConfigShape } from "@chronos/config"
import { Errors, type Event, SubscriptionsApi } from "@chronos/domain"
import { CheckpointStore, type CheckpointStoreShape } from "./CheckpointStore.ts"
import { normalizeFilter, storeUnavailable, validName } from "./ConsumerGroup.ts"
import { Engine, type EngineShape } from "./Engine.ts"
import * as Subscription from "./Subscription.ts"

type StoredEvent = Event.StoredEvent

export interface Filter {
  readonly types?: ReadonlyArray<string> | undefined
  readonly stream?: string | undefined
  readonly streamPrefix?: string | undefined
}

/** A function reducer (SDK). `name` identifies it in the stored definition; change it when `step` changes meaning. */
export interface Reducer<S> {
  readonly name: string
  readonly initial: S
  readonly step: (state: S, event: StoredEvent) => S
}

export type Declarative = SubscriptionsApi.ProjectionDefinition

export type Definition = Declarative | ({ readonly kind: "custom"; readonly reducer: string } & Filter)

// ---- SDK: an unmanaged fold ---------------------------------------------------------------------------------------

export interface Folded<S> {
  readonly state: S
  /** The state folds exactly the matching events up to this position token. */
  readonly position: string
  /** Matching events folded so far. */
  readonly events: number
  /** True from the page at which the history that existed at the start was folded. */
  readonly caughtUp: boolean
}

/**
 * Folds `reducer` over a subscription: one state per page read (history first, then live). Resume a fold with
 * `from` = a previous `position` and `initial` = its state.
 */
export const fold = <S>(
  engine: EngineShape,
  tenant: string,
  options: Filter & { readonly from?: string | undefined },
  reducer: Pick<Reducer<S>, "initial" | "step">
): Stream.Stream<Folded<S>, Errors.InvalidRequest | Errors.Unavailable> =>
  Stream.unwrap(Effect.map(engine.subscribePages(tenant, options), ({ pages }) => {
    let state = reducer.initial
    let events = 0
    let caughtUp = false
    return Stream.map(pages, (page): Folded<S> => {
      for (const event of page.events) state = reducer.step(state, event)
      events += page.events.length
      caughtUp = caughtUp || page.caughtUp
      return { state, position: Subscription.formatPositions(page.positions), events, caughtUp }
    })
  }))

// ---- folders: a definition's state, applied a page at a time -------------------------------------------------------

/** Thrown by a folder when the state would exceed `projectionStateKeysMax` (the page is then not applied). */
class KeysExceeded extends Error {}

interface Folder {
  /** Applies a page; throws (leaving the folder unusable) when the definition cannot fold it. */
  readonly apply: (events: ReadonlyArray<StoredEvent>) => void
  /** The state and any bookkeeping stored with it. */
  readonly toJson: () => { readonly state: unknown; readonly aux?: unknown }
  readonly keys: () => number
  readonly get: (key: string | undefined) => unknown
}

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const keyFunction = (groupBy: Declarative["groupBy"]): (e: StoredEvent) => string | undefined => {
  if (groupBy === "stream") return (e) => e.stream
  if (groupBy === "type") return (e) => e.type
  const field = groupBy.dataField
  return (e) => {
    const v = isObject(e.data) ? e.data[field] : undefined
    return typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : undefined
  }
}

/**
 * A declarative definition's folder. The state is a Map (never a plain object: a key such as `__proto__` must be
 * data, not a prototype), written as an object.
 */
const declarativeFolder = (def: Declarative, stored: { state?: unknown; aux?: unknown }, keysMax: number): Folder => {
  const values = new Map<string, unknown>(isObject(stored.state) ? Object.entries(stored.state) : [])
  /** `last` only: key → [timestamp, partition, seq] of the event whose value the key holds. */
  const order = new Map<string, readonly [number, number, number]>(
    def.kind === "last" && isObject(stored.aux) ? Object.entries(stored.aux) as Array<[string, [number, number, number]]> : []
  )
  const keyOf = keyFunction(def.groupBy)
  const field = def.field
  const room = (key: string) => {
    if (!values.has(key) && values.size >= keysMax) {
      throw new KeysExceeded(`the state would have more than ${keysMax} keys (projectionStateKeysMax)`)
    }
  }
  const later = (a: readonly [number, number, number], b: readonly [number, number, number]) =>
    a[0] > b[0] || (a[0] === b[0] && (a[1] > b[1] || (a[1] === b[1] && a[2] > b[2])))
  const step: (e: StoredEvent) => void = def.kind === "count"
    ? (e) => {
      const key = keyOf(e)
      if (key === undefined) return
      room(key)
      values.set(key, ((values.get(key) as number | undefined) ?? 0) + 1)
    }
    : def.kind === "sum"
    ? (e) => {
      const key = keyOf(e)
      const v = field !== undefined && isObject(e.data) ? e.data[field] : undefined
      if (key === undefined || typeof v !== "number" || !Number.isFinite(v)) return
      room(key)
      values.set(key, ((values.get(key) as number | undefined) ?? 0) + v)
    }
    : (e) => {
      const key = keyOf(e)
      if (key === undefined) return
      let value: unknown = e.data
      if (field !== undefined) {
        if (!isObject(e.data) || !(field in e.data)) return
        value = e.data[field]
      }
      const at = [e.timestamp, e.partition, e.seq] as const
      const held = order.get(key)
      if (held !== undefined && !later(at, held)) return
      room(key)
      values.set(key, value)
      order.set(key, at)
    }
  return {
    apply: (events) => {
      for (const e of events) step(e)
    },
    toJson: () =>
      def.kind === "last"
        ? { state: Object.fromEntries(values), aux: Object.fromEntries(order) }
        : { state: Object.fromEntries(values) },
    keys: () => values.size,
    get: (key) => key === undefined ? Object.fromEntries(values) : (values.get(key) ?? null)
  }
}

const customFolder = (reducer: Reducer<unknown>, stored: { state?: unknown }, fresh: boolean): Folder => {
  let state = fresh ? reducer.initial : stored.state
  return {
    apply: (events) => {
      for (const e of events) state = reducer.step(state, e)
    },
    toJson: () => ({ state }),
    keys: () => isObject(state) ? Object.keys(state).length : 0,
    get: (key) => key === undefined ? state : isObject(state) ? (state[key] ?? null) : null
  }
}

// ---- the stored document ------------------------------------------------------------------------------------------

interface ProjectionDocument {
  readonly format: 1
  readonly tenant: string
  readonly name: string
  readonly definition: Definition
  /** What was asked for; `status` is what happened (a failure stops a projection until started again). */
  readonly desired: "running" | "stopped"
  readonly status: "running" | "stopped" | "failed"
  readonly error?: string | undefined
  /** Bumped by reset, rebuild and replace: a fold of an older generation must not be written back. */
  readonly generation: number
  /** `undefined` after a reset: the state is the definition's initial state. */
  readonly state: unknown
  readonly aux?: unknown
  readonly position: Record<string, number>
  readonly processedEvents: number
  readonly owner?: string | undefined
  /** Epoch ms of the owner's last write (lease). */
  readonly heartbeatAt: number
  readonly checkpointedAt: number
}

const keyOf = (tenant: string, name: string) => ["projections", tenant, name] as const

const filterOf = (d: Definition): Filter => normalizeFilter(d)

const sameDefinition = (a: Definition, b: Definition) => {
  const canon = (d: Definition) =>
    JSON.stringify([
      d.kind,
      d.kind === "custom" ? d.reducer : [d.field ?? null, d.groupBy],
      filterOf(d)
    ])
  return canon(a) === canon(b)
}

const positionsOf = (record: Record<string, number>) => new Map(Object.entries(record).map(([p, s]) => [Number(p), s]))

const recordOf = (positions: ReadonlyMap<number, number>) =>
  Object.fromEntries([...positions].filter(([, s]) => s > 0).map(([p, s]) => [String(p), s]))

// ---- the managed form ---------------------------------------------------------------------------------------------

export interface ProjectionsShape {
  /** Defines a declarative projection (idempotent for the same definition) and, unless `start: false`, runs it. */
  readonly define: (
    tenant: string,
    name: string,
    definition: Declarative,
    options?: { readonly start?: boolean | undefined; readonly replace?: boolean | undefined }
  ) => Effect.Effect<
    SubscriptionsApi.ProjectionStatus,
    Errors.InvalidRequest | Errors.LimitExceeded | SubscriptionsApi.DefinitionConflict | Errors.Unavailable
  >
  /**
   * Registers a function reducer (SDK, embedded) under `name` and runs it, resuming from its stored state and
   * checkpoint when one exists for the same `reducer.name` and filter. Register again after every restart.
   */
  readonly register: <S>(
    tenant: string,
    name: string,
    options: Filter & { readonly reducer: Reducer<S>; readonly start?: boolean | undefined; readonly replace?: boolean | undefined }
  ) => Effect.Effect<
    SubscriptionsApi.ProjectionStatus,
    Errors.InvalidRequest | Errors.LimitExceeded | SubscriptionsApi.DefinitionConflict | Errors.Unavailable
  >
  readonly status: (
    tenant: string,
    name: string,
    options?: { readonly withState?: boolean | undefined }
  ) => Effect.Effect<SubscriptionsApi.ProjectionStatus, ProjectionError>
  /** The state (or one key's value) and the position it is exact at. */
  readonly state: (
    tenant: string,
    name: string,
    key?: string | undefined
  ) => Effect.Effect<SubscriptionsApi.ProjectionStateResult, ProjectionError>
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<string>, Errors.InvalidRequest | Errors.Unavailable>
  readonly start: (tenant: string, name: string) => Effect.Effect<SubscriptionsApi.ProjectionStatus, ProjectionError>
  /** Stops after writing the state and checkpoint reached. */
  readonly stop: (tenant: string, name: string) => Effect.Effect<SubscriptionsApi.ProjectionStatus, ProjectionError>
  /** Stops, and discards the state and checkpoint. */
  readonly reset: (tenant: string, name: string) => Effect.Effect<SubscriptionsApi.ProjectionStatus, ProjectionError>
  /** Reset, then run from the start of the log (progress shows how far the rebuild is). */
  readonly rebuild: (tenant: string, name: string) => Effect.Effect<SubscriptionsApi.ProjectionStatus, ProjectionError>
}

type ProjectionError = SubscriptionsApi.ProjectionNotFound | Errors.InvalidRequest | Errors.Unavailable

export class Projections extends Context.Service<Projections, ProjectionsShape>()("chronos/engine/Projection/Projections") {
  /**
   * Projections over the `Engine`, stored in the provided `CheckpointStore`. `owner` names this process in the
   * documents (default `node:<hostname>:<httpPort>`: stable across restarts, distinct between the runners of a
   * cluster). Projections this process owns are resumed when the layer is built; running ones write their
   * checkpoint when it is released.
   */
  static readonly layer = (
    options: { readonly owner?: string | undefined } = {}
  ): Layer.Layer<Projections, never, Engine | CheckpointStore | ChronosConfig> =>
    Layer.effect(
      Projections,
      Effect.gen(function*() {
        const config = yield* ChronosConfig
        return yield* make(yield* Engine, yield* CheckpointStore, config, {
          owner: options.owner ?? `node:${hostname()}:${config.httpPort}`
        })
      })
    )
}

/** A projection folding in this process. */
interface Runtime {
  readonly generation: number
  readonly folder: Folder
  positions: ReadonlyMap<number, number>
  processed: number
  phase: "catching-up" | "live"
  /** Recent rate of log events examined, per second. */
  rate: number
  lastCheckpointAt: number
  readonly partitions: ReadonlyArray<number>
  /**
   * Stops the fold and writes a final checkpoint (unless the document was lost). `handOver`: also give up the
   * ownership (a graceful shutdown), so that another process can take over at once instead of after the lease.
   */
  readonly stop: (handOver: boolean) => Effect.Effect<void>
  readonly done: () => boolean
}

export const make = Effect.fnUntraced(function*(
  engine: EngineShape,
  store: CheckpointStoreShape,
  config: ChronosConfigShape,
  options: { readonly owner: string }
): Effect.fn.Return<ProjectionsShape, never, Scope.Scope> {
  const clock = yield* Clock.Clock
  const now = () => clock.currentTimeMillisUnsafe()
  const services = yield* Effect.context<never>()
  const scope = yield* Effect.scope
  const self = options.owner
  const runtimes = new Map<string, Runtime>()
  const reducers = new Map<string, Reducer<unknown>>()
  /** Control of one projection at a time per process: starting, stopping, writing a control change. */
  const locks = new Map<string, Semaphore.Semaphore>()
  const lockOf = (key: string) => {
    let lock = locks.get(key)
    if (lock === undefined) locks.set(key, lock = Semaphore.makeUnsafe(1))
    return lock
  }
  const idOf = (tenant: string, name: string) => `${tenant}/${name}`

  const read = (tenant: string, name: string) =>
    Effect.flatMap(store.get(keyOf(tenant, name)).pipe(Effect.mapError(storeUnavailable)), (stored) =>
      stored === undefined
        ? Effect.fail(new SubscriptionsApi.ProjectionNotFound({ tenant, name }))
        : Effect.succeed({ doc: stored.value as ProjectionDocument, revision: stored.revision }))

  /**
   * Read-modify-write of a document with compare-and-swap, retried on conflicts (the owner may be writing a
   * checkpoint at the same moment).
   */
  const update = (
    tenant: string,
    name: string,
    change: (doc: ProjectionDocument) => ProjectionDocument
  ): Effect.Effect<ProjectionDocument, ProjectionError> =>
    Effect.gen(function*() {
      for (let attempt = 0;; attempt++) {
        const { doc, revision } = yield* read(tenant, name)
        const next = change(doc)
        const written = yield* store.put(keyOf(tenant, name), next, revision).pipe(
          Effect.map(() => true),
          Effect.catchTags({
            CheckpointConflict: () => Effect.succeed(false),
            CheckpointStoreError: (e) => Effect.fail(storeUnavailable(e)),
            LimitExceeded: (e) => Effect.die(new Error(`projection ${name}: ${e.message}`))
          })
        )
        if (written) return next
        if (attempt >= 20) {
          return yield* new Errors.Unavailable({ message: `projection ${name} is being written concurrently; retry`, retryable: true })
        }
        yield* Effect.sleep(10 * (attempt + 1))
      }
    })

  const folderFor = (doc: ProjectionDocument): Folder | undefined => {
    const d = doc.definition
    if (d.kind === "custom") {
      const reducer = reducers.get(idOf(doc.tenant, doc.name))
      if (reducer === undefined || reducer.name !== d.reducer) return undefined
      return customFolder(reducer, doc, doc.state === undefined)
    }
    return declarativeFolder(d, doc, config.projectionStateKeysMax)
  }

  /** Starts folding `doc` here (the caller made this process its owner in `revision`). */
  const run = (doc: ProjectionDocument, revision: number): Effect.Effect<void> =>
    Effect.gen(function*() {
      const id = idOf(doc.tenant, doc.name)
      const folder = folderFor(doc)
      if (folder === undefined) return // an SDK projection whose reducer is not registered in this process
      const filter = filterOf(doc.definition)
      const from = Subscription.formatPositions(positionsOf(doc.position))
      const subscription = yield* engine.subscribePages(doc.tenant, { ...filter, from: from === "" ? "start" : from })
        .pipe(Effect.orDie)
      let rev = revision
      let lost = false
      let stopped = false
      let dirty = false
      let sinceCheckpoint = 0
      let rateAt = now()
      let ratePosition = -1
      const writeLock = Semaphore.makeUnsafe(1)
      const runtime: Runtime = {
        generation: doc.generation,
        folder,
        positions: positionsOf(doc.position),
        processed: doc.processedEvents,
        phase: "catching-up",
        rate: 0,
        lastCheckpointAt: now(),
        partitions: subscription.partitions,
        stop: (handOver) =>
          Effect.suspend(() => {
            stopped = true
            return Effect.andThen(
              Fiber.interrupt(fiber),
              Effect.andThen(Fiber.interrupt(ticker), checkpoint("stopped", undefined, handOver))
            )
          }),
        done: () => stopped || lost
      }

      /**
       * Writes state + position (one document, one atomic put). Consistent by construction: both are read here, in
       * one synchronous step, and the fold changes both in one synchronous step per page.
       */
      const checkpoint = (status: "running" | "stopped" | "failed", error: string | undefined, handOver = false) =>
        Semaphore.withPermit(writeLock)(Effect.suspend(() => {
          if (lost) return Effect.void
          const t = now()
          const json = folder.toJson()
          const next: ProjectionDocument = {
            ...doc,
            desired: status === "running" ? "running" : doc.desired,
            status,
            error,
            state: json.state,
            aux: json.aux,
            position: recordOf(runtime.positions),
            processedEvents: runtime.processed,
            owner: handOver ? undefined : self,
            heartbeatAt: handOver ? 0 : t,
            checkpointedAt: t
          }
          sinceCheckpoint = 0
          dirty = false
          return store.put(keyOf(doc.tenant, doc.name), next, rev).pipe(
            Effect.map((r) => {
              rev = r
              runtime.lastCheckpointAt = t
            }),
            // A put that lands must have its revision recorded: never interrupt between the two.
            Effect.uninterruptible,
            Effect.catchTags({
              CheckpointConflict: () =>
                Effect.suspend(() => {
                  // Someone else changed the document (a control request, or another owner): stop folding; the
                  // reconciler reads the document again and follows it.
                  lost = true
                  if (runtimes.get(id) === runtime) runtimes.delete(id)
                  Effect.runForkWith(services)(Effect.andThen(Fiber.interrupt(fiber), Effect.andThen(Effect.sleep(1), reconcileOne(doc.tenant, doc.name))))
                  return Effect.void
                }),
              CheckpointStoreError: (e) => Effect.logWarning(`projection ${id}: checkpoint not written (will retry)`, e.message),
              LimitExceeded: (e) => Effect.suspend(() => fail(e.message))
            })
          )
        }))

      /** The fold cannot continue: record why (state and position stay those of the last checkpoint). */
      const fail = (message: string): Effect.Effect<void> =>
        Effect.gen(function*() {
          if (lost) return
          lost = true
          if (runtimes.get(id) === runtime) runtimes.delete(id)
          yield* Effect.logWarning(`projection ${id} failed`, message)
          yield* Effect.ignore(update(doc.tenant, doc.name, (d) =>
            d.generation === doc.generation ? { ...d, status: "failed", error: message, desired: "stopped" } : d))
        })

      const onPage = (page: Subscription.Page): Effect.Effect<void> => {
        try {
          folder.apply(page.events)
        } catch (e) {
          return fail(e instanceof KeysExceeded ? e.message : `the reducer failed: ${e instanceof Error ? e.message : String(e)}`)
        }
        runtime.positions = page.positions
        runtime.processed += page.events.length
        sinceCheckpoint += page.events.length
        dirty = true
        const t = now()
        const position = Subscription.positionSum(page.positions)
        // Events/s over windows of at least 250 ms, smoothed.
        if (ratePosition < 0) {
          ratePosition = position
          rateAt = t
        } else if (t - rateAt >= 250 || (runtime.rate === 0 && t > rateAt)) {
          // The first estimate as soon as any time has passed: a fast rebuild must still report a rate (and ETA).
          const instant = (position - ratePosition) * 1000 / (t - rateAt)
          runtime.rate = runtime.rate === 0 ? instant : runtime.rate * 0.5 + instant * 0.5
          ratePosition = position
          rateAt = t
        }
        if (page.caughtUp) runtime.phase = "live"
        return sinceCheckpoint >= config.projectionCheckpointEveryEvents || page.caughtUp ||
            t - runtime.lastCheckpointAt >= config.projectionCheckpointIntervalMs
          ? checkpoint("running", undefined)
          : Effect.void
      }

      // A retryable read failure (a partition moving, reloading) resumes from the position reached; only a
      // permanent one fails the projection.
      const foldPages = (pages: Stream.Stream<Subscription.Page, Errors.Unavailable>): Effect.Effect<void> =>
        pages.pipe(
          Stream.runForEach((page) => lost ? Effect.interrupt : onPage(page)),
          Effect.catch((e) =>
            e.retryable
              ? Effect.logWarning(`projection ${id}: reading the log failed, resuming`, e.message).pipe(
                Effect.andThen(Effect.sleep(config.subscriptionIdleWaitMs)),
                Effect.andThen(Effect.suspend(() => {
                  const at = Subscription.formatPositions(runtime.positions)
                  return engine.subscribePages(doc.tenant, { ...filter, from: at === "" ? "start" : at }).pipe(
                    Effect.orDie,
                    Effect.flatMap((s) => foldPages(s.pages))
                  )
                }))
              )
              : fail(`reading the log failed: ${e.message}`)
          )
        )
      const fiber: Fiber.Fiber<void> = yield* Effect.forkIn(foldPages(subscription.pages), scope)
      // Time-driven writes: changes that arrived just before the log went quiet, and the owner's lease.
      const tick = Math.max(10, Math.min(config.projectionCheckpointIntervalMs, config.projectionLeaseMs / 3))
      const ticker: Fiber.Fiber<void> = yield* Effect.forkIn(
        Effect.forever(Effect.andThen(Effect.sleep(tick), Effect.suspend(() => {
          if (lost || stopped) return Effect.interrupt
          const t = now()
          if (runtime.phase === "live" && runtime.rate > 0 && t - rateAt > 2_000) runtime.rate = 0
          return (dirty && t - runtime.lastCheckpointAt >= config.projectionCheckpointIntervalMs) ||
              t - runtime.lastCheckpointAt >= config.projectionLeaseMs / 3
            ? checkpoint("running", undefined)
            : Effect.void
        }))),
        scope
      )
      runtimes.set(id, runtime)
    })

  const isStale = (doc: ProjectionDocument) => now() - doc.heartbeatAt > config.projectionLeaseMs

  /** Brings one projection in line with its document: runs it here if it should run and nobody else does. */
  const reconcileOne = (tenant: string, name: string): Effect.Effect<void> =>
    Semaphore.withPermit(lockOf(idOf(tenant, name)))(Effect.gen(function*() {
      const id = idOf(tenant, name)
      let found = yield* Effect.option(read(tenant, name))
      if (Option.isNone(found)) return
      const local = runtimes.get(id)
      if (local !== undefined && !local.done()) {
        const doc = found.value.doc
        if (doc.desired === "running" && doc.generation === local.generation && doc.owner === self) return
        // The document moved on (stopped, reset, taken over): stop folding here, then decide from what is stored.
        runtimes.delete(id)
        yield* local.stop(false)
        found = yield* Effect.option(read(tenant, name))
        if (Option.isNone(found)) return
      }
      const { doc, revision } = found.value
      if (doc.desired !== "running" || doc.status === "failed") return
      if (doc.owner !== undefined && doc.owner !== self && !isStale(doc)) return
      if (doc.definition.kind === "custom" && reducers.get(id)?.name !== doc.definition.reducer) return
      // Take the lease (compare-and-swap on the document we read), then fold from its state and position.
      const taken: ProjectionDocument = { ...doc, owner: self, heartbeatAt: now(), status: "running" }
      const won = yield* store.put(keyOf(tenant, name), taken, revision).pipe(Effect.option)
      if (Option.isNone(won)) return
      yield* run(taken, won.value)
    }).pipe(Effect.catchCause((cause) => Effect.logWarning(`projection ${tenant}/${name}: not started`, cause))))

  const reconcileAll = Effect.gen(function*() {
    const keys = yield* store.list(["projections"]).pipe(Effect.orElseSucceed(() => []))
    yield* Effect.forEach(keys.filter((k) => k.length === 3), (k) => reconcileOne(k[1]!, k[2]!), { concurrency: 4, discard: true })
  })

  yield* reconcileAll
  yield* Effect.forkIn(
    Effect.forever(Effect.andThen(Effect.sleep(Math.max(100, config.projectionLeaseMs / 3)), reconcileAll)),
    scope
  )
  yield* Effect.addFinalizer(() =>
    Effect.forEach([...runtimes.values()], (r) => r.stop(true), { concurrency: "unbounded", discard: true })
  )

  /** Stops a projection running here (writing its checkpoint) before a control change. */
  const stopLocal = (tenant: string, name: string) =>
    Effect.suspend(() => {
      const id = idOf(tenant, name)
      const local = runtimes.get(id)
      if (local === undefined) return Effect.void
      runtimes.delete(id)
      return local.stop(false)
    })

  const headSum = (partitions: ReadonlyArray<number>) =>
    Effect.map(engine.partitions, (all) => partitions.reduce((n, p) => n + (all[p]?.watermark ?? 0), 0))

  const describe = (
    doc: ProjectionDocument,
    withState: boolean
  ): Effect.Effect<SubscriptionsApi.ProjectionStatus, Errors.Unavailable> =>
    Effect.gen(function*() {
      const local = runtimes.get(idOf(doc.tenant, doc.name))
      const live = local !== undefined && !local.done() && local.generation === doc.generation ? local : undefined
      const partitions = live?.partitions ??
        (doc.definition.stream !== undefined
          ? [engine.partitionOf(doc.tenant, doc.definition.stream)]
          : Array.from({ length: config.partitions }, (_, p) => p))
      const positions = live?.positions ?? positionsOf(doc.position)
      const position = Subscription.positionSum(positions)
      const head = yield* headSum(partitions)
      const remaining = Math.max(0, head - position)
      const rate = live?.rate ?? 0
      const keys = live !== undefined ? live.folder.keys() : isObject(doc.state) ? Object.keys(doc.state).length : 0
      let state: unknown = null
      if (withState) {
        const folder = live?.folder ?? folderFor(doc)
        state = folder !== undefined ? folder.toJson().state : (doc.state ?? null)
      }
      return {
        tenant: doc.tenant,
        name: doc.name,
        definition: doc.definition,
        status: live !== undefined ? "running" : doc.status,
        phase: live?.phase ?? "idle",
        ...(doc.error === undefined ? {} : { error: doc.error }),
        position: Subscription.formatPositions(positions),
        processedEvents: live?.processed ?? doc.processedEvents,
        keys,
        progress: {
          positionEvents: position,
          headEvents: head,
          remainingEvents: remaining,
          eventsPerSecond: Math.round(rate),
          ...(rate > 0 ? { etaMs: Math.round(remaining * 1000 / rate) } : remaining === 0 ? { etaMs: 0 } : {}),
          fraction: head === 0 ? 1 : Math.min(1, position / head)
        },
        ...(doc.checkpointedAt > 0 ? { checkpointedAt: new Date(doc.checkpointedAt).toISOString() } : {}),
        ...(doc.owner === undefined ? {} : { owner: doc.owner }),
        ...(withState ? { state } : {})
      }
    })

  const validate = (tenant: string, name: string) =>
    Effect.andThen(validName(name, config), Effect.asVoid(engine.subscribePages(tenant, {})))

  const status: ProjectionsShape["status"] = (tenant, name, opts = {}) =>
    Effect.gen(function*() {
      yield* validate(tenant, name)
      const { doc } = yield* read(tenant, name)
      return yield* describe(doc, opts.withState ?? false)
    })

  const defineAny = (
    tenant: string,
    name: string,
    definition: Definition,
    opts: { readonly start?: boolean | undefined; readonly replace?: boolean | undefined }
  ) =>
    Effect.gen(function*() {
      yield* validName(name, config)
      // Validates the tenant and the filter as a subscription would (nothing is read).
      yield* engine.subscribePages(tenant, filterOf(definition))
      const id = idOf(tenant, name)
      yield* Semaphore.withPermit(lockOf(id))(Effect.gen(function*() {
        const existing = yield* store.get(keyOf(tenant, name)).pipe(Effect.mapError(storeUnavailable))
        const start = opts.start ?? true
        if (existing !== undefined) {
          const doc = existing.value as ProjectionDocument
          if (sameDefinition(doc.definition, definition)) {
            if (start && doc.desired !== "running") {
              yield* update(tenant, name, (d) => ({ ...d, desired: "running", status: "running", error: undefined }))
            }
            return
          }
          if (opts.replace !== true) {
            return yield* new SubscriptionsApi.DefinitionConflict({
              kind: "projection",
              name,
              message: `projection ${name} exists with definition ${JSON.stringify(doc.definition)}; pass replace: true to discard its state and rebuild`
            })
          }
          yield* stopLocal(tenant, name)
          yield* update(tenant, name, (d) => ({
            ...fresh(d.tenant, d.name, definition, start, d.generation + 1)
          }))
          return
        }
        const count = (yield* store.list(["projections"]).pipe(Effect.mapError(storeUnavailable))).length
        if (count >= config.projectionsMax) {
          return yield* new Errors.LimitExceeded({
            limit: "projectionsMax",
            max: config.projectionsMax,
            actual: count + 1,
            message: `at most ${config.projectionsMax} projections can be defined`
          })
        }
        yield* store.put(keyOf(tenant, name), fresh(tenant, name, definition, start, 0), 0).pipe(
          Effect.catchTags({
            CheckpointConflict: () =>
              Effect.fail(new SubscriptionsApi.DefinitionConflict({ kind: "projection", name, message: `projection ${name} was just defined concurrently` })),
            CheckpointStoreError: (e) => Effect.fail(storeUnavailable(e))
          })
        )
      }))
      yield* reconcileOne(tenant, name)
      const { doc } = yield* read(tenant, name)
      return yield* describe(doc, false)
    }).pipe(Effect.catchTag("ProjectionNotFound", () => Effect.die(new Error(`projection ${name} vanished while defined`))))

  const fresh = (
    tenant: string,
    name: string,
    definition: Definition,
    start: boolean,
    generation: number
  ): ProjectionDocument => ({
    format: 1,
    tenant,
    name,
    definition,
    desired: start ? "running" : "stopped",
    status: start ? "running" : "stopped",
    generation,
    state: undefined,
    position: {},
    processedEvents: 0,
    owner: undefined,
    heartbeatAt: 0,
    checkpointedAt: 0
  })

  const define: ProjectionsShape["define"] = (tenant, name, definition, opts = {}) =>
    Effect.gen(function*() {
      if ((definition.kind === "sum") && (definition.field === undefined || definition.field === "")) {
        return yield* new Errors.InvalidRequest({ field: "field", message: "a sum projection needs `field`: the numeric data field to add" })
      }
      if (typeof definition.groupBy === "object" && definition.groupBy.dataField === "") {
        return yield* new Errors.InvalidRequest({ field: "groupBy.dataField", message: "dataField must not be empty" })
      }
      const clean: Declarative = {
        kind: definition.kind,
        ...(definition.field === undefined ? {} : { field: definition.field }),
        groupBy: typeof definition.groupBy === "object" ? { dataField: definition.groupBy.dataField } : definition.groupBy,
        ...normalizeFilter(definition)
      }
      return yield* defineAny(tenant, name, clean, opts)
    })

  const register: ProjectionsShape["register"] = (tenant, name, opts) =>
    Effect.suspend(() => {
      reducers.set(idOf(tenant, name), opts.reducer as Reducer<unknown>)
      return defineAny(tenant, name, { kind: "custom", reducer: opts.reducer.name, ...normalizeFilter(opts) }, opts)
    })

  const control = (
    tenant: string,
    name: string,
    change: (doc: ProjectionDocument) => ProjectionDocument
  ): Effect.Effect<SubscriptionsApi.ProjectionStatus, ProjectionError> =>
    Effect.gen(function*() {
      yield* validate(tenant, name)
      yield* read(tenant, name)
      const id = idOf(tenant, name)
      yield* Semaphore.withPermit(lockOf(id))(Effect.andThen(stopLocal(tenant, name), update(tenant, name, change)))
      yield* reconcileOne(tenant, name)
      const { doc } = yield* read(tenant, name)
      return yield* describe(doc, false)
    })

  const cleared = (d: ProjectionDocument, desired: "running" | "stopped"): ProjectionDocument => ({
    ...fresh(d.tenant, d.name, d.definition, desired === "running", d.generation + 1),
    owner: d.owner
  })

  return {
    define,
    register,
    status,
    state: (tenant, name, key) =>
      Effect.gen(function*() {
        yield* validate(tenant, name)
        const { doc } = yield* read(tenant, name)
        const local = runtimes.get(idOf(tenant, name))
        const live = local !== undefined && !local.done() && local.generation === doc.generation ? local : undefined
        const folder = live?.folder ?? folderFor(doc) ?? (doc.definition.kind === "custom"
          ? customFolder({ name: doc.definition.reducer, initial: null, step: (s) => s }, doc, false)
          : undefined)
        const positions = live?.positions ?? positionsOf(doc.position)
        const value = folder === undefined ? null : folder.get(key)
        return {
          name,
          position: Subscription.formatPositions(positions),
          ...(key === undefined ? {} : { key }),
          value
        }
      }),
    list: (tenant) =>
      Effect.gen(function*() {
        yield* Effect.asVoid(engine.subscribePages(tenant, {}))
        const keys = yield* store.list(["projections", tenant]).pipe(Effect.mapError(storeUnavailable))
        return keys.filter((k) => k.length === 3).map((k) => k[2]!).sort()
      }),
    start: (tenant, name) => control(tenant, name, (d) => ({ ...d, desired: "running", status: "running", error: undefined })),
    stop: (tenant, name) => control(tenant, name, (d) => ({ ...d, desired: "stopped", status: d.status === "failed" ? "failed" : "stopped" })),
    reset: (tenant, name) => control(tenant, name, (d) => cleared(d, "stopped")),
    rebuild: (tenant, name) => control(tenant, name, (d) => cleared(d, "running"))
  }
})
