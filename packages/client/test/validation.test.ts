import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import fc from "fast-check"
import { Errors, Event } from "@chronos/domain"
import { decodeAppend, fastAppend } from "../src/internal/validation.ts"

const decodeExit = Schema.decodeUnknownExit(Event.AppendRequest, { onExcessProperty: "error" })
const schemaAccepts = (u: unknown) => decodeExit(u)._tag === "Success"

// ---- generators: valid appends, the same with one mutation, and junk --------------------------------------------

const json = fc.jsonValue({ maxDepth: 4 })
const weird = fc.oneof(
  fc.constantFrom<unknown>(undefined, Number.NaN, Infinity, -0, 1n, Symbol("s"), () => 1, new Date(0), new Map(), [, 1]),
  fc.anything({
    maxDepth: 3,
    withBigInt: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withSparseArray: true,
    withObjectString: true,
    withTypedArray: true
  })
)
const validType = fc.constantFrom("A", "OrderPlaced", "billing.invoice-sent", "x:y", "A".repeat(256))
const event = fc.record({
  type: validType,
  data: json,
  metadata: fc.dictionary(fc.string(), json),
  eventId: fc.uuid()
}, { requiredKeys: ["type", "data"] })
const valid = fc.record({
  expectedVersion: fc.oneof(fc.constantFrom("any", "no_stream", "stream_exists"), fc.nat()),
  events: fc.array(event, { minLength: 1, maxLength: 4 })
}, { requiredKeys: ["events"] })

const key = fc.constantFrom("type", "data", "metadata", "eventId", "events", "expectedVersion", "extra", "__proto__")
const badValue = fc.oneof(
  weird,
  fc.constantFrom<unknown>("9bad", "", "a b", "A".repeat(257), "not-a-uuid", -1, 1.5, 2 ** 60, "nope", [], {}),
  fc.string()
)
const setKey = (target: object, k: PropertyKey, value: unknown) =>
  Object.defineProperty({ ...target }, k, { value, enumerable: true, configurable: true, writable: true })

/** One mutation of a valid request: a key of the request or of one event set, deleted, or a symbol key added. */
const mutated = fc.tuple(valid, fc.nat(), fc.constantFrom("set", "delete", "symbol", "nested"), key, badValue).map(
  ([request, i, op, k, value]) => {
    const events = request.events.slice() as Array<object>
    const at = i % (events.length + 1)
    const mutate = (target: object): object => {
      switch (op) {
        case "set":
          return setKey(target, k, value)
        case "delete": {
          const copy: Record<string, unknown> = { ...target }
          delete copy[k]
          return copy
        }
        case "symbol":
          return setKey(target, Symbol("k"), value)
        case "nested":
          return setKey(target, k, { deep: [value] })
      }
    }
    if (at === events.length) return mutate(request)
    events[at] = mutate(events[at]!)
    return { ...request, events }
  }
)
const anyInput = fc.oneof(valid, mutated, mutated, weird)

describe("append validation", () => {
  it("the fast check accepts only what the schema accepts", () => {
    let fast = 0
    fc.assert(
      fc.property(anyInput, (input) => {
        if (!fastAppend(input)) return true
        fast++
        return schemaAccepts(input)
      }),
      { numRuns: 6_000 }
    )
    // The generators must reach the fast path often for the property to mean something.
    expect(fast).toBeGreaterThan(1_500)
  })

  it("accepts and rejects exactly as the schema does, and never throws", () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const ours = decodeAppend(input)
        return schemaAccepts(input) ? !(ours instanceof Errors.InvalidRequest) : ours instanceof Errors.InvalidRequest
      }),
      { numRuns: 6_000 }
    )
  })

  it("ordinary appends take the fast path", () => {
    fc.assert(fc.property(valid, (input) => fastAppend(input)), { numRuns: 5_000 })
  })
})
