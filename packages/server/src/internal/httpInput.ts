/**
 * Turning HTTP inputs (strings from the path and the query) into the engine's request values, and naming every
 * failure by where the caller put the value (`query.limit`, `params.partition`), so a client can point at the
 * offending part of its own request.
 */
import { Effect } from "effect"
import { Errors } from "@chronos/domain"

const integer = /^-?\d{1,15}$/

/** An optional integer query/path value; `field` is the HTTP location used in the error. */
export const optionalInt = (
  value: string | undefined,
  field: string
): Effect.Effect<number | undefined, Errors.InvalidRequest> => {
  if (value === undefined) return Effect.succeed(undefined)
  const text = value.trim()
  return integer.test(text)
    ? Effect.succeed(Number(text))
    : Effect.fail(new Errors.InvalidRequest({ field, message: `${field} must be an integer, got ${quote(value)}` }))
}

export const requiredInt = (value: string, field: string): Effect.Effect<number, Errors.InvalidRequest> =>
  optionalInt(value, field) as Effect.Effect<number, Errors.InvalidRequest>

/** `types=a,b` → `["a", "b"]` (absent or empty → no filter). */
export const typeList = (value: string | undefined): ReadonlyArray<string> | undefined => {
  if (value === undefined) return undefined
  const types = value.split(",").map((t) => t.trim())
  return types.length === 1 && types[0] === "" ? undefined : types
}

const quote = (value: string) => JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value)

/**
 * Where each engine-level field name comes from in an HTTP request. The engine names fields by its own request
 * shape (`limit`, `tenant`); over HTTP the caller should see the location it can fix (`query.limit`).
 */
const locations: Record<string, string> = {
  tenant: "params.tenant",
  stream: "params.stream",
  partition: "params.partition",
  limit: "query.limit",
  fromVersion: "query.fromVersion",
  direction: "query.direction",
  fromSeq: "query.fromSeq",
  asOf: "query.asOf",
  since: "query.since",
  until: "query.until",
  after: "query.after",
  reducer: "query.reducer"
}

/**
 * A read of a partition whose stored data failed verification dies with the partition's `CorruptData` (the
 * engine's read signatures have no channel for it; see `Partition.quarantined`), and a read that needed sealed
 * events while the segment store was unreachable dies with a retryable `Unavailable` (`Partition`'s cold fetch):
 * here each becomes the typed failure the endpoints declare, so the caller gets a 502 `CorruptData` naming the
 * damage, or a 503 it retries, instead of an empty 500. A defect that crossed a runner boundary may arrive as a
 * plain object with the same fields. Every other defect stays one.
 */
export const surfaceReadDefects = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | Errors.CorruptData | Errors.Unavailable, R> =>
  Effect.catchDefect(effect, (defect): Effect.Effect<never, Errors.CorruptData | Errors.Unavailable> => {
    const d = defect as {
      readonly _tag?: unknown
      readonly location?: unknown
      readonly message?: unknown
      readonly retryable?: unknown
    } | null
    if (typeof d !== "object" || d === null) return Effect.die(defect)
    if (d._tag === "CorruptData" && typeof d.location === "string") {
      return Effect.fail(
        defect instanceof Errors.CorruptData
          ? defect
          : new Errors.CorruptData({ location: d.location, message: String(d.message) })
      )
    }
    if (d._tag === "Unavailable" && typeof d.retryable === "boolean") {
      return Effect.fail(
        defect instanceof Errors.Unavailable
          ? defect
          : new Errors.Unavailable({ message: String(d.message), retryable: d.retryable })
      )
    }
    return Effect.die(defect)
  })

/** Re-homes an engine `InvalidRequest` to the HTTP location of its field; every other error passes through. */
export const locate = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapErrorEager(effect, (error) => {
    if (!(error instanceof Errors.InvalidRequest)) return error
    const field = error.field.startsWith("types[") ? `query.${error.field}` : locations[error.field]
    return (field === undefined ? error : new Errors.InvalidRequest({ field, message: error.message })) as E
  })
