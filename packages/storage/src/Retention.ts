/**
 * Per-stream retention and deletion, as events in the stream itself. It owns the system event types and the one
 * rule that says which events a stream still shows:
 *  - `$metadata` — data `{ maxAgeMs?, maxCount?, truncateBefore? }`: the stream's retention settings; the latest one
 *    replaces earlier ones;
 *  - `$deleted` — data `{ hard?: boolean }`: the stream is deleted up to and including this event (a tombstone). The
 *    stream's versions continue: a later append starts a new life of the stream. Soft: hidden from reads. Hard:
 *    also erased physically at the next compaction;
 *  - `$erased`: what compaction leaves of an event whose payload it removed (see below).
 *
 * An event is hidden when its version is below `truncateBefore` (or the last tombstone's version + 1), when it is
 * not among the last `maxCount` versions, or when it is older than `maxAgeMs`; `$erased` placeholders are always
 * hidden. `$metadata` and `$deleted` are never hidden: they carry the rules.
 *
 * Enforcement, at three points:
 *  - reads: `enforce(engine)` (the node's `Engine`, see `layerEnforced`) hides what the rule hides from every read
 *    and query at once — not only after compaction: `readStream`, `query`, `readPartition` and `state` (the state
 *    folds only the visible events). A page is filled across hidden events (reads continue past them), so `limit`
 *    and `next` keep their meaning;
 *  - sealing: `Sealer.seal` erases the erasable events of the range it seals (see `erasing`), so a hard-deleted or
 *    expired event in the log tail never reaches a segment;
 *  - compaction: `Compact.run` erases hidden events in sealed segments.
 * Erasing replaces payload (data, metadata) and type, while the event id, stream, version, sequence and timestamp
 * stay, so every stream's versions and every partition's sequence remain gapless and a retried append of an erased
 * event still answers as a duplicate.
 *
 * Rules are read as they are now, also for `asOf` reads (retention is not time-travelled: what is deleted is gone).
 * Reads through a fork apply the store's rules (`enforceFork`, installed on every fork engine by
 * `layerForkReadPolicy`: HTTP `?fork=`, MCP tools with `fork`, search's fork filter). Subscriptions do
 * not apply them (a subscriber sees the log as written, tombstones included).
 */
import { Clock, Context, Effect, Exit, Layer, Option, Schema, SchemaIssue } from "effect"
import { Errors, type Event, type ExpectedVersion, Ids, Reducer, RetentionApi } from "@chronos/domain"
import { Engine, type EngineShape } from "@chronos/engine/Engine"
import { ForkReadPolicy } from "@chronos/engine/ForkReadPolicy"

export const metadataType = "$metadata"
export const deletedType = "$deleted"
export const erasedType = "$erased"

export const isSystemType = (type: string): boolean => type === metadataType || type === deletedType || type === erasedType

export interface Settings {
  readonly maxAgeMs?: number | undefined
  readonly maxCount?: number | undefined
  readonly truncateBefore?: number | undefined
}

export interface StreamRules {
  readonly maxAgeMs: number | undefined
  readonly maxCount: number | undefined
  /** From the settings: versions below it are hidden, and erased by compaction. */
  readonly truncateBefore: number
  /** The last tombstone's version + 1 (0: never deleted): versions below it are hidden. */
  readonly deletedBefore: number
  /** The last hard tombstone's version + 1: versions below it are also erased by compaction. */
  readonly hardDeletedBefore: number
}

export const noRules: StreamRules = {
  maxAgeMs: undefined,
  maxCount: undefined,
  truncateBefore: 0,
  deletedBefore: 0,
  hardDeletedBefore: 0
}

const nonNegative = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined

/** Folds one event into the rules (events of one stream, in version order; only system events change them). */
export const step = (
  rules: StreamRules,
  event: { readonly type: string; readonly data: unknown; readonly streamVersion: number }
): StreamRules => {
  const data = (typeof event.data === "object" && event.data !== null ? event.data : {}) as Record<string, unknown>
  if (event.type === metadataType) {
    return {
      ...rules,
      maxAgeMs: nonNegative(data["maxAgeMs"]),
      maxCount: nonNegative(data["maxCount"]),
      truncateBefore: nonNegative(data["truncateBefore"]) ?? 0
    }
  }
  if (event.type === deletedType) {
    const before = event.streamVersion + 1
    return {
      ...rules,
      deletedBefore: Math.max(rules.deletedBefore, before),
      hardDeletedBefore: data["hard"] === true ? Math.max(rules.hardDeletedBefore, before) : rules.hardDeletedBefore
    }
  }
  return rules
}

/** The rules of a stream from its events (any order; only system events matter). */
export const rulesOf = (
  events: ReadonlyArray<{ readonly type: string; readonly data: unknown; readonly streamVersion: number }>
): StreamRules =>
  events.filter((e) => e.type === metadataType || e.type === deletedType)
    .sort((a, b) => a.streamVersion - b.streamVersion)
    .reduce(step, noRules)

type Positioned = { readonly type: string; readonly streamVersion: number; readonly timestamp: number }

const expired = (event: Positioned, rules: StreamRules, lastVersion: number, nowMs: number): boolean =>
  event.streamVersion < rules.truncateBefore ||
  (rules.maxCount !== undefined && event.streamVersion <= lastVersion - rules.maxCount) ||
  (rules.maxAgeMs !== undefined && event.timestamp < nowMs - rules.maxAgeMs)

/** Is this event hidden from readers, for a stream whose last version is `lastVersion`, at `nowMs`? */
export const isHidden = (event: Positioned, rules: StreamRules, lastVersion: number, nowMs: number): boolean =>
  event.type === erasedType ||
  (!isSystemType(event.type) && (event.streamVersion < rules.deletedBefore || expired(event, rules, lastVersion, nowMs)))

/** Does compaction erase this event? Retention and hard deletion; a soft tombstone only hides. */
export const isErasable = (event: Positioned, rules: StreamRules, lastVersion: number, nowMs: number): boolean =>
  !isSystemType(event.type) && (event.streamVersion < rules.hardDeletedBefore || expired(event, rules, lastVersion, nowMs))

/** The events of one stream a reader may see (input: all the stream's events; its rules come from them). */
export const visible = <E extends Event.StoredEvent>(events: ReadonlyArray<E>, nowMs: number): Array<E> => {
  const rules = rulesOf(events)
  const last = events.reduce((v, e) => Math.max(v, e.streamVersion), -1)
  return events.filter((e) => !isHidden(e, rules, last, nowMs))
}

/** Appends the stream's retention settings (a `$metadata` event). */
export const setSettings = (
  engine: EngineShape,
  tenant: string,
  stream: string,
  settings: Settings
): Effect.Effect<Event.AppendResult, Errors.AppendError> =>
  engine.append(tenant, stream, { events: [{ type: metadataType, data: { ...settings } }] } as never)

/**
 * Deletes the stream (a `$deleted` tombstone); `hard` also erases its events at the next compaction. With
 * `expectedVersion`, only if the stream is at that version (the append's optimistic concurrency).
 */
export const deleteStream = (
  engine: EngineShape,
  tenant: string,
  stream: string,
  options: DeleteOptions
): Effect.Effect<Event.AppendResult, Errors.AppendError> =>
  engine.append(tenant, stream, {
    ...(options.expectedVersion === undefined ? {} : { expectedVersion: options.expectedVersion }),
    events: [{ ...(options.eventId === undefined ? {} : { eventId: options.eventId }), type: deletedType, data: { hard: options.hard } }]
  } as never)

export interface DeleteOptions {
  readonly hard: boolean
  readonly expectedVersion?: ExpectedVersion.ExpectedVersion | undefined
  /** The tombstone's event id: a retried deletion with the same id is answered with the original tombstone. */
  readonly eventId?: string | undefined
}

/** The rules in effect for one stream, as the public API reports them (`RetentionApi.StreamRetention`). */
export interface Current {
  readonly settings: RetentionApi.RetentionSettings
  readonly rules: StreamRules
  /** The stream's last version, system events included (-1: no stream). */
  readonly lastVersion: number
}

const invalidName = (tenant: string, stream: string): Errors.InvalidRequest | undefined =>
  !Schema.is(Ids.TenantId)(tenant)
    ? new Errors.InvalidRequest({ field: "tenant", message: "a tenant id is lowercase letters, digits, '_' or '-'" })
    : !Schema.is(Ids.StreamId)(stream)
    ? new Errors.InvalidRequest({
      field: "stream",
      message: "a stream id is letters, digits and _ . : @ + = -, starting with a letter or digit"
    })
    : undefined

/**
 * The stream's current rules, from its partition's system events (read through the type index, a page at a time:
 * the cost is the partition's system events, not the stream's length). Reads the log as written (not `enforce`d).
 */
export const current = (
  engine: EngineShape,
  tenant: string,
  stream: string
): Effect.Effect<Current, Errors.InvalidRequest | Errors.Unavailable> =>
  Effect.gen(function*() {
    const bad = invalidName(tenant, stream)
    if (bad !== undefined) return yield* bad
    const partition = engine.partitionOf(tenant, stream)
    const pageMax = engine.config.readEventsMax
    const system: Array<Event.StoredEvent> = []
    let fromSeq = 1
    while (true) {
      const page = yield* engine.router.scan(partition, tenant, { types: ruleTypes, fromSeq, limit: pageMax })
      for (const e of page) if (e.stream === stream) system.push(e)
      const last = page[page.length - 1]
      if (page.length < pageMax || last === undefined) break
      fromSeq = last.seq + 1
    }
    const rules = rulesOf(system)
    const lastVersion = yield* lastVersionOf(engine, tenant, stream)
    const settings: RetentionApi.RetentionSettings = {
      ...(rules.maxAgeMs === undefined ? {} : { maxAgeMs: rules.maxAgeMs }),
      ...(rules.maxCount === undefined ? {} : { maxCount: rules.maxCount }),
      ...(rules.truncateBefore === 0 ? {} : { truncateBefore: rules.truncateBefore })
    }
    return { settings, rules, lastVersion }
  })

// --- the public operations (HTTP `RetentionApi`, the SDK) -----------------------------------------------------------

/** The rules in effect, as `RetentionApi` reports them. */
export const report = (stream: string, c: Current): RetentionApi.StreamRetention => ({
  stream,
  ...c.settings,
  ...(c.rules.deletedBefore === 0 ? {} : { deletedBefore: c.rules.deletedBefore }),
  ...(c.rules.hardDeletedBefore === 0 ? {} : { hardDeletedBefore: c.rules.hardDeletedBefore }),
  lastVersion: c.lastVersion
})

/** A one-event system append without an expected version cannot fail otherwise: a broken invariant if it does. */
const systemAppend = <A>(
  effect: Effect.Effect<A, Errors.AppendError>
): Effect.Effect<A, Errors.InvalidRequest | Errors.Unavailable | Errors.WrongExpectedVersion> =>
  Effect.catchTag(effect, "LimitExceeded", (e) => Effect.die(e))

const existing = (engine: EngineShape, tenant: string, stream: string) =>
  Effect.flatMap(current(engine, tenant, stream), (c) =>
    c.lastVersion === -1 ? Effect.fail(new Errors.StreamNotFound({ tenant, stream })) : Effect.succeed(c))

const decodeSettings = Schema.decodeUnknownExit(RetentionApi.RetentionSettings, { onExcessProperty: "error" })
const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * Settings from an untyped source (a CLI, a tool) checked like the HTTP body: positive integers, no other key; the
 * `InvalidRequest` names the field (`maxCount`).
 */
export const validSettings = (input: unknown): Effect.Effect<RetentionApi.RetentionSettings, Errors.InvalidRequest> => {
  const exit = decodeSettings(input)
  if (Exit.isSuccess(exit)) return Effect.succeed(exit.value)
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  const first = failure !== undefined && Schema.isSchemaError(failure.error)
    ? formatIssue(failure.error.issue).issues[0]
    : undefined
  const key = first?.path?.[0]
  const field = key === undefined ? "body" : String(typeof key === "object" && key !== null ? key.key : key)
  return Effect.fail(new Errors.InvalidRequest({ field, message: first?.message ?? "invalid retention settings" }))
}

/**
 * Replaces the stream's retention settings (validated: `RetentionApi.RetentionSettings`) and reports the rules in
 * effect. A stream with no events gets one (its `$metadata`).
 */
export const setRetention = (
  engine: EngineShape,
  tenant: string,
  stream: string,
  settings: RetentionApi.RetentionSettings
): Effect.Effect<RetentionApi.StreamRetention, Errors.InvalidRequest | Errors.Unavailable> =>
  Effect.gen(function*() {
    // Names first: an invalid id must not reach the append as a system event of an unnamed stream.
    yield* current(engine, tenant, stream)
    yield* systemAppend(setSettings(engine, tenant, stream, settings)).pipe(
      Effect.catchTag("WrongExpectedVersion", (e) => Effect.die(e))
    )
    return report(stream, yield* current(engine, tenant, stream))
  })

/** The rules in effect for the stream; `StreamNotFound` when it has no events. */
export const getRetention = (
  engine: EngineShape,
  tenant: string,
  stream: string
): Effect.Effect<RetentionApi.StreamRetention, Errors.InvalidRequest | Errors.StreamNotFound | Errors.Unavailable> =>
  Effect.map(existing(engine, tenant, stream), (c) => report(stream, c))

/**
 * Deletes an existing stream (soft, or `hard`: erased at the next seal or compaction), optionally only at
 * `expectedVersion`. A stream with no events is `StreamNotFound` (deleting it would create one holding a tombstone).
 */
export const deleteExisting = (
  engine: EngineShape,
  tenant: string,
  stream: string,
  options: DeleteOptions
): Effect.Effect<
  RetentionApi.DeleteStreamResult,
  Errors.InvalidRequest | Errors.WrongExpectedVersion | Errors.StreamNotFound | Errors.Unavailable
> =>
  Effect.gen(function*() {
    yield* existing(engine, tenant, stream)
    const result = yield* systemAppend(deleteStream(engine, tenant, stream, options))
    return {
      stream,
      hard: options.hard,
      version: result.lastVersion,
      position: result.positions[result.positions.length - 1]!
    }
  })

// --- enforcement on reads ------------------------------------------------------------------------------------------

const ruleTypes = [metadataType, deletedType]

/** Versions below this are hidden unless they are system events (the rules other than `maxAgeMs`). */
const cutoffOf = (rules: StreamRules, lastVersion: number): number =>
  Math.max(
    rules.truncateBefore,
    rules.deletedBefore,
    rules.maxCount === undefined ? 0 : lastVersion - rules.maxCount + 1
  )

interface StreamView {
  readonly rules: StreamRules
  readonly lastVersion: number
  /** The stream's `$metadata` / `$deleted` events in version order. */
  readonly system: ReadonlyArray<Event.StoredEvent>
}

const lastVersionOf = (engine: EngineShape, tenant: string, stream: string) =>
  Effect.map(
    engine.router.readStream(engine.partitionOf(tenant, stream), tenant, stream, {
      fromVersion: undefined,
      limit: 1,
      direction: "backward",
      asOf: undefined
    }),
    (events) => events[0]?.streamVersion ?? -1
  )

const streamKey = (tenant: string, stream: string) => `${tenant}\u0000${stream}`

/** The system events of one tenant in one partition, by stream, complete through sequence `through`. */
interface PartitionRules {
  through: number
  /** The partition's watermark before the last complete scan: no rule event at or below it is missing. */
  scanned: number
  readonly byStream: Map<string, Array<Event.StoredEvent>>
}

/**
 * Which streams have rules, kept incrementally: each read asks its partition's type index only for the system events
 * after the last one it has seen (a binary search and usually nothing), instead of rescanning a stream or a
 * partition. Sound because the scan serves only durable events (at or below the watermark), which never change or
 * disappear, and a stream's system events arrive in sequence order, which is its version order.
 */
const makeRuleIndex = (engine: EngineShape) => {
  const cache = new Map<string, PartitionRules>()
  const pageMax = engine.config.readEventsMax

  const systemOf = (tenant: string, partition: number): Effect.Effect<PartitionRules["byStream"], Errors.Unavailable> => {
    const key = `${tenant}\u0000${partition}`
    let entry = cache.get(key)
    if (entry === undefined) cache.set(key, entry = { through: 0, scanned: 0, byStream: new Map() })
    const known = entry
    // The hot path: a local partition whose watermark has not moved since the last scan has no new rule event,
    // known without a scan (most reads of a store that is read more than written).
    const local = engine.router.local?.(partition)
    const watermark = local?.lookup.positionAt(undefined)
    if (watermark !== undefined && watermark <= known.scanned) return Effect.succeed(known.byStream)
    return scanFrom(tenant, partition, known, watermark)
  }

  /** Scans for rule events after `known.through`; `watermark` (read before the scan) is then covered. */
  const scanFrom = (
    tenant: string,
    partition: number,
    known: PartitionRules,
    watermark: number | undefined
  ): Effect.Effect<PartitionRules["byStream"], Errors.Unavailable> =>
    Effect.flatMap(
      engine.router.scan(partition, tenant, { types: ruleTypes, fromSeq: known.through + 1, limit: pageMax }),
      (page) => {
        for (const e of page) {
          // Another read may have caught up meanwhile: each event is taken once.
          if (e.seq <= known.through) continue
          known.through = e.seq
          let list = known.byStream.get(e.stream)
          if (list === undefined) known.byStream.set(e.stream, list = [])
          list.push(e)
        }
        if (page.length >= pageMax) return scanFrom(tenant, partition, known, watermark)
        if (watermark !== undefined && watermark > known.scanned) known.scanned = watermark
        return Effect.succeed(known.byStream)
      }
    )

  const viewFrom = (tenant: string, stream: string, system: ReadonlyArray<Event.StoredEvent>) =>
    Effect.gen(function*() {
      const rules = rulesOf(system)
      // The last version matters only to maxCount: the other rules need no read.
      const lastVersion = rules.maxCount === undefined ? -1 : yield* lastVersionOf(engine, tenant, stream)
      return { rules, lastVersion, system } satisfies StreamView
    })

  /** The stream's rules; `undefined` when it has no system event (nothing but `$erased` is hidden). */
  const viewOf = (tenant: string, stream: string) =>
    Effect.flatMap(systemOf(tenant, engine.partitionOf(tenant, stream)), (byStream) => {
      const system = byStream.get(stream)
      return system === undefined ? Effect.succeed(undefined) : viewFrom(tenant, stream, system)
    })

  /** The views of every stream of `tenant` with rules, over the given partitions. */
  const tenantViews = (tenant: string, partitions: ReadonlyArray<number>) =>
    Effect.gen(function*() {
      const all = yield* Effect.forEach(partitions, (p) => systemOf(tenant, p), { concurrency: 8 })
      const views = new Map<string, StreamView>()
      yield* Effect.forEach(all.flatMap((byStream) => [...byStream]), ([stream, system]) =>
        Effect.map(viewFrom(tenant, stream, system), (view) => void views.set(streamKey(tenant, stream), view)), {
        concurrency: 8,
        discard: true
      })
      return views
    })

  return { viewOf, tenantViews }
}

const hiddenIn = (views: ReadonlyMap<string, StreamView>, nowMs: number) => (e: Event.StoredEvent): boolean => {
  if (e.type === erasedType) return true
  const view = views.get(streamKey(e.tenant, e.stream))
  return view !== undefined && isHidden(e, view.rules, view.lastVersion, nowMs)
}

/**
 * The engine with retention and deletion applied to its reads (see the module comment). Writes, subscriptions and
 * everything else are the engine's own.
 */
export const enforce = (
  engine: EngineShape,
  /**
   * The rules come from another view of the streams than `engine`'s (a fork's, see `enforceFork`): a system event
   * below a cutoff is returned only when `engine` itself has it (one read per such event).
   */
  options: { readonly foreignRules?: boolean } = {}
): EngineShape => {
  const { tenantViews, viewOf } = makeRuleIndex(engine)
  /** Keeps the system events `engine` has (same event at the same version). */
  const ownSystem = (tenant: string, stream: string, events: Array<Event.StoredEvent>) =>
    options.foreignRules !== true ? Effect.succeed(events) : Effect.filter(events, (e) =>
      Effect.map(
        engine.readStream(tenant, stream, { fromVersion: e.streamVersion, limit: 1 }),
        (found) => found[0]?.eventId === e.eventId
      ))
  // The hottest read: a stream without rules costs one index probe more than the engine's read, without a generator.
  const readStream: EngineShape["readStream"] = (tenant, stream, request) =>
    Effect.flatMap(viewOf(tenant, stream), (view) =>
      view !== undefined
        ? readWithRules(tenant, stream, request, view)
        : Effect.flatMap(engine.readStream(tenant, stream, request), (events) =>
          // Only `$erased` placeholders can be hidden: rare, so the engine's answer is used as it is when it has none.
          events.some((e) => e.type === erasedType)
            ? readWithRules(tenant, stream, request, undefined)
            : Effect.succeed(events)))

  const readWithRules = (
    tenant: string,
    stream: string,
    request: Parameters<EngineShape["readStream"]>[2],
    view: StreamView | undefined
  ) =>
    Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      const rules = view?.rules ?? noRules
      const last = view?.lastVersion ?? Number.MAX_SAFE_INTEGER
      const hidden = (e: Event.StoredEvent) => isHidden(e, rules, last, nowMs)
      const limit = request.limit ?? engine.config.readEventsDefault
      const backward = request.direction === "backward"
      const cutoff = view === undefined || request.asOf !== undefined ? 0 : cutoffOf(rules, last)
      const out: Array<Event.StoredEvent> = []
      // Below the cutoff only system events are visible: they are known without reading what lies between them.
      const systemBelow = (from: number, to: number) =>
        (view?.system ?? []).filter((e) => e.streamVersion >= from && e.streamVersion < to && !hidden(e))
      let cursor: number | undefined = request.fromVersion
      if (!backward && cutoff > 0 && (cursor ?? 0) < cutoff) {
        out.push(...(yield* ownSystem(tenant, stream, systemBelow(cursor ?? 0, cutoff))).slice(0, limit))
        cursor = cutoff
      }
      // Backward: the system events below this version are the last ones to return (below the cutoff).
      let systemTop = cutoff
      while (out.length < limit) {
        if (backward && cursor !== undefined && cursor < cutoff) {
          systemTop = cursor + 1
          break
        }
        const page = yield* engine.readStream(tenant, stream, { ...request, fromVersion: cursor, limit })
        let reachedCutoff = false
        for (const e of page) {
          if (backward && e.streamVersion < cutoff) {
            reachedCutoff = true
            break
          }
          if (!hidden(e) && out.length < limit) out.push(e)
        }
        if (reachedCutoff) break
        const lastRead = page[page.length - 1]
        if (page.length < limit || lastRead === undefined) break
        cursor = backward ? lastRead.streamVersion - 1 : lastRead.streamVersion + 1
        if (cursor < 0) break
      }
      if (backward && cutoff > 0 && out.length < limit) {
        out.push(...(yield* ownSystem(tenant, stream, systemBelow(0, systemTop))).reverse().slice(0, limit - out.length))
      }
      return out
    })

  const query: EngineShape["query"] = (tenant, request) =>
    Effect.gen(function*() {
      const views = yield* tenantViews(tenant, Array.from({ length: engine.config.partitions }, (_, p) => p))
      const hidden = hiddenIn(views, yield* Clock.currentTimeMillis)
      const limit = request.limit ?? engine.config.readEventsDefault
      const out: Array<Event.StoredEvent> = []
      let after = request.after
      // Each page asks for what is still missing, so every event of a page fits and `next` stays exact.
      while (true) {
        const page = yield* engine.query(tenant, { ...request, after, limit: limit - out.length })
        for (const e of page.events) if (!hidden(e)) out.push(e)
        if (page.next === undefined) return { events: out, next: undefined }
        if (out.length >= limit) return { events: out, next: page.next }
        after = page.next
      }
    })

  const readPartition: EngineShape["readPartition"] = (tenant, partition, request) =>
    Effect.gen(function*() {
      // The engine validates the request (tenant, partition, limit) before anything else is read.
      const first = yield* engine.readPartition(tenant, partition, request)
      const views = yield* tenantViews(tenant, [partition])
      const hidden = hiddenIn(views, yield* Clock.currentTimeMillis)
      const limit = request.limit ?? engine.config.readEventsDefault
      const out: Array<Event.StoredEvent> = []
      let page = first
      let requested = limit
      while (true) {
        for (const e of page) if (!hidden(e)) out.push(e)
        const lastRead = page[page.length - 1]
        if (out.length >= limit || lastRead === undefined || page.length < requested) return out
        requested = limit - out.length
        page = yield* engine.readPartition(tenant, partition, { ...request, fromSeq: lastRead.seq + 1, limit: requested })
      }
    })

  const state: EngineShape["state"] = (tenant, stream, reducerOrName, asOf) =>
    Effect.gen(function*() {
      const view = yield* viewOf(tenant, stream)
      if (view === undefined) return yield* engine.state(tenant, stream, reducerOrName, asOf)
      const reducer = typeof reducerOrName === "object" ? Option.some(reducerOrName) : Reducer.fromName(reducerOrName ?? "merge")
      // An unknown reducer name: the engine's own answer (InvalidRequest).
      if (Option.isNone(reducer)) return yield* engine.state(tenant, stream, reducerOrName, asOf)
      const events: Array<Event.StoredEvent> = []
      let fromVersion = 0
      while (true) {
        const page = yield* readStream(tenant, stream, { fromVersion, limit: engine.config.readEventsMax, asOf }).pipe(
          // readEventsMax is within the limit by definition: exceeding it would be a broken invariant.
          Effect.catchTag("LimitExceeded", (e) => Effect.die(e))
        )
        events.push(...page)
        if (page.length < engine.config.readEventsMax) break
        fromVersion = page[page.length - 1]!.streamVersion + 1
      }
      if (events.length === 0) return yield* new Errors.StreamNotFound({ tenant, stream })
      let folded = reducer.value.initial
      for (const e of events) if (!isSystemType(e.type)) folded = reducer.value.step(folded, e)
      return { stream, reducer: reducer.value.name, version: events[events.length - 1]!.streamVersion, state: folded }
    })

  return { ...engine, readStream, query, readPartition, state }
}

/**
 * A fork's engine (`Forks.engine`) with the store's retention applied. A fork reads the store up to its base plus its
 * own events, and holds no rules of its own (appends refuse `$`-types, merges copy only ordinary events), so the rules
 * are the store's as they are now (`store`: the store's engine; its router's type index is scanned): what is deleted
 * or expired in the store is hidden in its forks too, also in a fork created before. Rules apply by stream version,
 * so a fork's own events below a tombstone the store wrote later are hidden as well.
 */
export const enforceFork = (fork: EngineShape, store: EngineShape): EngineShape =>
  enforce({ ...fork, router: { ...fork.router, scan: store.router.scan } }, { foreignRules: true })

/**
 * The store's rules on every fork engine `Forks` hands out (HTTP `?fork=`, MCP tools, search's fork filter): provide
 * it wherever `Forks.layer` is built over an engine that applies retention.
 */
export const layerForkReadPolicy: Layer.Layer<ForkReadPolicy> = Layer.succeed(ForkReadPolicy, { wrap: enforceFork })

/** Replaces the provided `Engine` by `enforce(engine)` (the node's: every HTTP read goes through it). */
export const layerEnforced: Layer.Layer<Engine, never, Engine> = Layer.effect(
  Engine,
  Effect.gen(function*() {
    return enforce(yield* Engine)
  })
)
