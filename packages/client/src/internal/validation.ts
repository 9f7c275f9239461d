/**
 * Request validation of the SDK, shared by both modes so that a request is accepted or rejected the same way in
 * process and over HTTP: inputs are decoded with the domain schemas (`Event.AppendRequest`, …) with
 * `onExcessProperty: "error"`, and a failure becomes an `InvalidRequest` naming the offending field
 * (`events[3].type`, `limit`, …).
 *
 * Appends are the hot path of embedded mode, and a full `Schema` decode of an append costs ~1.5 µs per event, most
 * of it in building the decoded struct (measured on effect 4.1). So appends first go through `fastAppend`, a
 * hand-written check that accepts only inputs it can prove the schema accepts (it is deliberately conservative:
 * plain objects, finite numbers, known keys). Anything else — including every invalid input — goes to the schema,
 * which is the authority: it produces the error, or the decoded value when the fast check was merely too strict.
 * The property test in `test/validation.test.ts` checks "fast accepts ⇒ schema accepts" on generated inputs.
 */
import { Exit, Schema, SchemaIssue } from "effect"
import { Errors, Event, ExpectedVersion, Fork, Ids, RetentionApi, SearchApi, SubscriptionsApi } from "@chronos/domain"

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** `["events", 3, "type"]` → `events[3].type`; the root is `body`. */
export const fieldOf = (path: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined): string => {
  if (path === undefined || path.length === 0) return "body"
  let out = ""
  for (const segment of path) {
    const key = typeof segment === "object" && segment !== null ? segment.key : segment
    if (typeof key === "number") out += `[${key}]`
    else out += out === "" ? String(key) : `.${String(key)}`
  }
  return out
}

/** Messages for fields whose schema is a union (the raw union message lists only some members); as the server's. */
const hints = new Map<string, string>([
  ["expectedVersion", "expectedVersion must be \"any\", \"no_stream\", \"stream_exists\" or a non-negative integer"]
])

/** The first issue of a schema failure as an `InvalidRequest`; `prefix` scopes the field (`options.limit`). */
export const invalidFromIssue = (issue: SchemaIssue.Issue, prefix?: string): Errors.InvalidRequest => {
  const first = formatter(issue).issues[0]
  const path = fieldOf(first?.path)
  const field = prefix === undefined ? path : path === "body" ? prefix : `${prefix}.${path}`
  return new Errors.InvalidRequest({ field, message: hints.get(field) ?? first?.message ?? "invalid request" })
}

const parseOptions = { onExcessProperty: "error" } as const

/**
 * A compiled, synchronous decoder (built once per schema) that fails with `InvalidRequest`.
 * Returns the decoded value or the error (no Effect allocation on the hot path).
 */
export const decoder = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, prefix?: string) => {
  const decode = Schema.decodeUnknownExit(schema, parseOptions)
  return (input: unknown): S["Type"] | Errors.InvalidRequest => {
    const exit = decode(input)
    if (Exit.isSuccess(exit)) return exit.value
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    return error !== undefined && Schema.isSchemaError(error.error)
      ? invalidFromIssue(error.error.issue, prefix)
      : new Errors.InvalidRequest({ field: prefix ?? "body", message: "invalid request" })
  }
}

// ---- appends ------------------------------------------------------------------------------------------------------

const decodeAppendSchema = decoder(Event.AppendRequest)

const isPlainObject = (u: unknown): u is Record<string, unknown> => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) return false
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

/** Beyond this depth the fast check gives up (and the schema decides): bounds recursion and catches cycles. */
const jsonDepthFast = 32

/** A conservative JSON check: finite numbers, strings, booleans, null, arrays and plain objects. */
const isJsonFast = (u: unknown, depth: number): boolean => {
  switch (typeof u) {
    case "string":
    case "boolean":
      return true
    case "number":
      return Number.isFinite(u)
    case "object": {
      if (u === null) return true
      if (depth >= jsonDepthFast) return false
      if (Array.isArray(u)) {
        for (let i = 0; i < u.length; i++) {
          if (!(i in u) || !isJsonFast(u[i], depth + 1)) return false
        }
        return true
      }
      if (!isPlainObject(u)) return false
      for (const key in u) {
        if (!Object.hasOwn(u, key) || !isJsonFast(u[key], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/**
 * Event types seen valid by the schema itself. Types have low cardinality, so a bounded memo turns a regex and
 * length check per event into a map lookup without restating the rule here.
 */
const knownTypes = new Set<string>()
const knownTypesMax = 4_096
const isEventType = Schema.is(Ids.EventType)
const isEventId = Schema.is(Ids.EventId)

const isEventTypeFast = (u: unknown): boolean => {
  if (typeof u !== "string") return false
  if (knownTypes.has(u)) return true
  if (!isEventType(u)) return false
  if (knownTypes.size < knownTypesMax) knownTypes.add(u)
  return true
}

const isExpectedVersionFast = (u: unknown): boolean =>
  u === "any" || u === "no_stream" || u === "stream_exists" ||
  (typeof u === "number" && Number.isSafeInteger(u) && u >= 0)

const isProposedEventFast = (u: unknown): boolean => {
  if (!isPlainObject(u)) return false
  let keys = 0
  let hasData = false
  for (const key in u) {
    if (!Object.hasOwn(u, key)) return false
    keys++
    switch (key) {
      case "type":
        if (!isEventTypeFast(u.type)) return false
        break
      case "data":
        hasData = true
        if (!isJsonFast(u.data, 0)) return false
        break
      case "eventId":
        if (!isEventId(u.eventId)) return false
        break
      case "metadata":
        // A symbol key is an excess key of the metadata record (the schema rejects it).
        if (!isPlainObject(u.metadata) || !isJsonFast(u.metadata, 0)) return false
        if (Object.getOwnPropertySymbols(u.metadata).length > 0) return false
        break
      default:
        return false
    }
  }
  // Symbol keys are not visited by `for…in`; the schema decides about those.
  return hasData && keys >= 2 && Object.getOwnPropertySymbols(u).length === 0 && "type" in u
}

/** The fast, conservative check: `true` only if `Event.AppendRequest` accepts `u` as it is. */
export const fastAppend = (u: unknown): boolean => {
  if (!isPlainObject(u)) return false
  for (const key in u) {
    if (!Object.hasOwn(u, key)) return false
    if (key === "events") continue
    if (key !== "expectedVersion" || !isExpectedVersionFast(u.expectedVersion)) return false
  }
  const events = u.events
  if (!Array.isArray(events) || events.length === 0) return false
  for (let i = 0; i < events.length; i++) {
    if (!(i in events) || !isProposedEventFast(events[i])) return false
  }
  return Object.getOwnPropertySymbols(u).length === 0
}

/**
 * Validates an append request exactly as the server does. When the fast check passes the input is returned as is
 * (no copy: `data` values are shared with the caller either way, as with a schema decode).
 */
export const decodeAppend = (input: unknown): Event.AppendRequest | Errors.InvalidRequest =>
  fastAppend(input) ? input as Event.AppendRequest : decodeAppendSchema(input)

// ---- options of reads -----------------------------------------------------------------------------------------------

// Options accept `undefined` for an absent key: it is what callers building options from optional values pass.
const opt = <S extends Schema.Top>(schema: S) => Schema.optional(schema)

export const ReadOptions = Schema.Struct({
  fromVersion: opt(Schema.Int),
  limit: opt(Schema.Int),
  direction: opt(Schema.Literals(["forward", "backward"])),
  asOf: opt(Schema.String),
  fork: opt(Schema.String)
})

export const QueryOptions = Schema.Struct({
  types: opt(Schema.Array(Schema.String)),
  since: opt(Schema.String),
  until: opt(Schema.String),
  asOf: opt(Schema.String),
  limit: opt(Schema.Int),
  after: opt(Schema.String),
  fork: opt(Schema.String)
})

export const PartitionReadOptions = Schema.Struct({
  fromSeq: opt(Schema.Int),
  types: opt(Schema.Array(Schema.String)),
  asOf: opt(Schema.String),
  limit: opt(Schema.Int),
  fork: opt(Schema.String)
})

/** `reducer` is a name or (embedded mode) a reducer object; checked by the caller. */
export const StateOptions = Schema.Struct({
  reducer: opt(Schema.Unknown),
  asOf: opt(Schema.String),
  fork: opt(Schema.String)
})

export const decodeReadOptions = decoder(ReadOptions)
export const decodeQueryOptions = decoder(QueryOptions)
export const decodePartitionReadOptions = decoder(PartitionReadOptions)
export const decodeStateOptions = decoder(StateOptions)

export const AppendOptions = Schema.Struct({ fork: opt(Schema.String) })
export const decodeAppendOptions = decoder(AppendOptions)

// ---- requests of search, forks, subscriptions, groups and projections ----------------------------------------------

/**
 * The SDK accepts `undefined` for an absent key, the wire schemas do not (`optionalKey`): drop such keys, then decode
 * with the very schema the server decodes the body with, so both modes accept and reject the same requests.
 */
const withoutUndefined = (input: unknown): unknown => {
  if (!isPlainObject(input)) return input
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(input)) if (input[key] !== undefined) out[key] = input[key]
  return out
}

const wireDecoder = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, prefix?: string) => {
  const decode = decoder(schema, prefix)
  return (input: unknown): S["Type"] | Errors.InvalidRequest => decode(withoutUndefined(input))
}

export const decodeSearchRequest = wireDecoder(SearchApi.SearchRequest)
export const decodeCreateFork = wireDecoder(Fork.CreateForkRequest)
export const decodeMergeRequest = wireDecoder(Fork.MergeRequest)
export const decodeCreateConsumer = wireDecoder(SubscriptionsApi.CreateConsumerRequest)
export const decodeAck = wireDecoder(SubscriptionsApi.AckRequest)
export const decodeNack = wireDecoder(SubscriptionsApi.NackRequest)
export const decodeReplay = wireDecoder(SubscriptionsApi.ReplayRequest)
export const decodeDefineProjection = wireDecoder(SubscriptionsApi.DefineProjectionRequest)
export const decodeRetentionSettings = wireDecoder(RetentionApi.RetentionSettings)
export const DeleteStreamOptions = Schema.Struct({
  hard: opt(Schema.Boolean),
  expectedVersion: opt(ExpectedVersion.ExpectedVersion)
})
export const decodeDeleteStreamOptions = decoder(DeleteStreamOptions)

export const SubscribeOptions = Schema.Struct({
  from: opt(Schema.String),
  types: opt(Schema.Array(Schema.String)),
  stream: opt(Schema.String),
  streamPrefix: opt(Schema.String)
})
export const decodeSubscribeOptions = decoder(SubscribeOptions)

export const NextOptions = Schema.Struct({ max: opt(Schema.Int), waitMs: opt(Schema.Int) })
export const decodeNextOptions = decoder(NextOptions)
export const LimitOptions = Schema.Struct({ limit: opt(Schema.Int) })
export const decodeLimitOptions = decoder(LimitOptions)

export const isInvalid = (u: unknown): u is Errors.InvalidRequest => u instanceof Errors.InvalidRequest

// ---- identifiers ----------------------------------------------------------------------------------------------------

const isTenant = Schema.is(Ids.TenantId)
const isStream = Schema.is(Ids.StreamId)

/** Same field and message as the engine's gateway, so both modes report a bad id identically. */
const invalidId = (field: string, value: unknown) =>
  new Errors.InvalidRequest({ field, message: `invalid ${field}: ${JSON.stringify(value)?.slice(0, 300)}` })

export const checkTenant = (tenant: string): Errors.InvalidRequest | undefined =>
  isTenant(tenant) ? undefined : invalidId("tenant", tenant)

export const checkStream = (stream: string): Errors.InvalidRequest | undefined =>
  isStream(stream) ? undefined : invalidId("stream", stream)
