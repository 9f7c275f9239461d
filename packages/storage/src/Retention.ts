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
 * Enforcement: `visible` applies the rule to any list of a stream's events (callers that read through it never see
 * hidden events); `Compact.run` erases hidden events in sealed segments — payload (data, metadata) and type are
 * replaced, while the event id, stream, version, sequence and timestamp stay, so every stream's versions and every
 * partition's sequence remain gapless and a retried append of an erased event still answers as a duplicate.
 * Not done: the engine's hot-index reads do not apply these rules yet, and the log tail (unsealed) is not compacted.
 */
import { Effect } from "effect"
import type { Errors, Event } from "@chronos/domain"
import type { EngineShape } from "@chronos/engine/Engine"

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

/** Deletes the stream (a `$deleted` tombstone); `hard` also erases its events at the next compaction. */
export const deleteStream = (
  engine: EngineShape,
  tenant: string,
  stream: string,
  options: { readonly hard: boolean }
): Effect.Effect<Event.AppendResult, Errors.AppendError> =>
  engine.append(tenant, stream, { events: [{ type: deletedType, data: { hard: options.hard } }] } as never)
