/**
 * The pieces under the tools, in isolation: the time grammar against a fixed clock, session bounds (LRU and idle
 * TTL under the TestClock), rendering bounds, shapes, diffs — and the tools' bounded-cost paths on a store larger
 * than their windows, through `McpTest` (the in-memory MCP client of effect/ai) over the memory engine.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { McpTest } from "effect/ai"
import { TestClock } from "effect/testing"
import { ChronosConfig } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import * as ChronosMcp from "../src/ChronosMcp.ts"
import * as Diff from "../src/Diff.ts"
import { McpConfig } from "../src/McpConfig.ts"
import * as McpSessions from "../src/McpSessions.ts"
import { McpStore } from "../src/McpStore.ts"
import * as Render from "../src/Render.ts"
import * as Shape from "../src/Shape.ts"
import * as TimeExpression from "../src/TimeExpression.ts"

// Wednesday 2026-11-25 15:30:00Z
const now = Date.UTC(2026, 10, 25, 15, 30, 0)
const at = (iso: string) => Date.parse(iso)

describe("TimeExpression", () => {
  it("reads instants", () => {
    assert.strictEqual(TimeExpression.parseInstant("2026-11-23T10:00:00Z", now), at("2026-11-23T10:00:00Z"))
    assert.strictEqual(TimeExpression.parseInstant("2026-11-23T10:00", now), at("2026-11-23T10:00:00Z"), "no zone: UTC")
    assert.strictEqual(TimeExpression.parseInstant("2026-11-23", now), at("2026-11-23T00:00:00Z"))
    assert.strictEqual(TimeExpression.parseInstant("now", now), now)
    assert.strictEqual(TimeExpression.parseInstant("yesterday", now), at("2026-11-24T00:00:00Z"))
    assert.strictEqual(TimeExpression.parseInstant("end of yesterday", now), at("2026-11-25T00:00:00Z") - 1)
    assert.strictEqual(TimeExpression.parseInstant("start of today", now), at("2026-11-25T00:00:00Z"))
    assert.strictEqual(TimeExpression.parseInstant("3 hours ago", now), now - 3 * 3_600_000)
    assert.strictEqual(TimeExpression.parseInstant("an hour ago", now), now - 3_600_000)
    assert.strictEqual(TimeExpression.parseInstant("last 24 hours", now), now - 24 * 3_600_000)
    assert.strictEqual(TimeExpression.parseInstant("As of Yesterday", now), at("2026-11-24T00:00:00Z"))
    assert.strictEqual(TimeExpression.parseInstant("this week", now), at("2026-11-23T00:00:00Z"), "Monday")
    assert.isUndefined(TimeExpression.parseInstant("the day before the war", now))
    assert.isUndefined(TimeExpression.parseInstant("2026-13-45", now))
  })

  it("reads ranges", () => {
    assert.deepStrictEqual(TimeExpression.parseRange("last 24 hours", now), { since: now - 24 * 3_600_000 })
    assert.deepStrictEqual(TimeExpression.parseRange("past 7 days", now), { since: now - 7 * 86_400_000 })
    assert.deepStrictEqual(TimeExpression.parseRange("yesterday", now), {
      since: at("2026-11-24T00:00:00Z"),
      until: at("2026-11-25T00:00:00Z") - 1
    })
    assert.deepStrictEqual(TimeExpression.parseRange("today", now), { since: at("2026-11-25T00:00:00Z") })
    assert.deepStrictEqual(TimeExpression.parseRange("since yesterday", now), { since: at("2026-11-24T00:00:00Z") })
    assert.deepStrictEqual(TimeExpression.parseRange("before 2026-11-01", now), { until: at("2026-11-01T00:00:00Z") })
    assert.deepStrictEqual(TimeExpression.parseRange("between 2026-11-01 and 2026-11-03", now), {
      since: at("2026-11-01T00:00:00Z"),
      until: at("2026-11-04T00:00:00Z") - 1
    })
    assert.deepStrictEqual(TimeExpression.parseRange("2026-11-20", now), {
      since: at("2026-11-20T00:00:00Z"),
      until: at("2026-11-21T00:00:00Z") - 1
    })
    assert.isUndefined(TimeExpression.parseRange("whenever", now))
  })

  it("prints exact, short ISO", () => {
    assert.strictEqual(TimeExpression.iso(at("2026-11-23T10:00:00Z")), "2026-11-23T10:00:00Z")
    assert.strictEqual(TimeExpression.iso(at("2026-11-23T10:00:00.500Z")), "2026-11-23T10:00:00.500Z")
  })
})

describe("McpSessions", () => {
  it.effect("forgets idle sessions and the least recently used beyond the maximum", () =>
    Effect.gen(function*() {
      const sessions = McpSessions.make(2, 60_000)
      yield* sessions.update("a", (s) => ({ ...s, tenant: "ta" }))
      yield* sessions.update("b", (s) => ({ ...s, tenant: "tb" }))
      assert.strictEqual((yield* sessions.get("a")).tenant, "ta") // a is now the most recent
      yield* sessions.update("c", (s) => ({ ...s, tenant: "tc" })) // evicts b
      assert.strictEqual(yield* sessions.size, 2)
      assert.isUndefined((yield* sessions.get("b")).tenant)
      yield* TestClock.adjust("61 seconds")
      assert.strictEqual(yield* sessions.size, 0, "idle past the TTL")
      assert.isUndefined((yield* sessions.get("a")).tenant)
    }))
})

describe("Render, Shape, Diff", () => {
  it("cuts on a character boundary with a marker", () => {
    assert.strictEqual(Render.cut("abcdef", 10), "abcdef")
    assert.strictEqual(Render.cut("abcdef", 3), "abc…[+3 bytes]")
    assert.strictEqual(Render.cut("ééé", 3), "é…[+4 bytes]")
  })

  it("fits items to a budget, always taking one", () => {
    const items = Array.from({ length: 10 }, (_, i) => "x".repeat(100) + i)
    const fitted = Render.fit(items, (s) => ({ line: s, value: s }), 350)
    assert.strictEqual(fitted.lines.length, 3)
    assert.isTrue(fitted.cut)
    assert.strictEqual(Render.fit(["y".repeat(1_000)], (s) => ({ line: s, value: s }), 10).lines.length, 1)
  })

  it("bounds a large state and keeps its structure", () => {
    const state = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, "v".repeat(50)]))
    const { cut, value } = Render.bounded(state, 2_000)
    assert.isTrue(cut)
    assert.isBelow(JSON.stringify(value).length, 2_200)
    assert.match((value as Record<string, string>)["…"]!, /^\+\d+ more keys$/)
  })

  it("infers shapes without values", () => {
    assert.strictEqual(
      Shape.of([{ amount: 5, note: "x" }, { amount: 7, lines: [{ sku: "a" }] }, { amount: null }]),
      "{amount: number | null, note?: string, lines?: [{sku: string}]}"
    )
  })

  it("diffs structurally with deltas", () => {
    const d = Diff.diff({ balance: 10, tags: ["a"], owner: "x" }, { balance: 4, tags: ["a", "b"], city: "y" }, 10)
    assert.deepStrictEqual(d.changes, [
      { path: "balance", change: "changed", before: 10, after: 4, delta: -6 },
      { path: "tags[1]", change: "added", after: "b" },
      { path: "owner", change: "removed", before: "x" },
      { path: "city", change: "added", after: "y" }
    ])
    assert.strictEqual(Diff.diff([1, 2, 3], [4, 5, 6], 1).total, 3)
  })
})

// What the MCP registrations run over, in memory, with small windows so a modest store exceeds them.
const Base = McpSessions.McpSessions.layer.pipe(
  Layer.provideMerge(McpConfig.layer({ describeWindowEvents: 20, describeScanEventsMax: 160, queryScanEventsMax: 100, sampleScanEventsMax: 80 })),
  Layer.provideMerge(McpStore.layerEngine),
  Layer.provideMerge(Engine.layerLocal),
  Layer.provide(EventLog.layerMemory),
  Layer.provide(ChronosConfig.layer({ partitions: 4, logDriver: "memory" })),
  Layer.orDie
)

const structured = (result: { readonly structuredContent?: unknown; readonly isError?: boolean | undefined; readonly content: ReadonlyArray<unknown> }) => {
  assert.notStrictEqual(result.isError, true, JSON.stringify(result.content))
  return result.structuredContent as any
}

describe("bounded tools on a store larger than their windows", () => {
  it.live("describe_store estimates, a prefix scan stops and continues, sample_events spreads over types", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      // 400 events in 40 streams of two kinds; many more than the describe windows (4 partitions × 2 × 20).
      for (let s = 0; s < 40; s++) {
        const stream = s % 2 === 0 ? `order-${s}` : `user-${s}`
        yield* engine.append("big", stream, {
          events: Array.from({ length: 10 }, (_, i) => ({
            type: (s % 2 === 0 ? (i === 9 ? "Shipped" : "LineAdded") : "Visited") as never,
            data: s % 2 === 0 ? { sku: `sku-${i}`, qty: i } : { page: `/p/${i}` }
          }))
        })
      }
      const client = yield* McpTest.makeClient(ChronosMcp.registrations(), { protocols: ChronosMcp.protocols })
      const call = (name: string, args: Record<string, unknown>) =>
        client.callTool({ name, arguments: args }).pipe(Effect.map(structured))

      const described = yield* call("describe_store", { tenant: "big" })
      assert.isFalse(described.exact)
      assert.isAtMost(described.scanned, 160)
      assert.isAtLeast(described.events, 250)
      assert.isAtMost(described.events, 550)
      assert.deepStrictEqual(new Set(described.types.map((t: any) => t.type)), new Set(["LineAdded", "Shipped", "Visited"]))
      const lines = described.types.find((t: any) => t.type === "LineAdded")
      assert.strictEqual(lines.shape, "{sku: string, qty: number}")
      assert.deepStrictEqual(lines.streamPatterns, ["order-{n}"])

      const first = yield* call("query_events", { stream: "nobody-*", limit: 5 })
      assert.strictEqual(first.count, 0, "no such stream")
      assert.strictEqual(first.scanned, 100)
      assert.isTrue(first.more, "but the scan stopped at its bound, so absence is not proven yet")
      assert.match(first.note, /stopped after examining/)
      let more = first.more
      let pages = 0
      while (more && pages < 10) {
        const next = yield* call("next_page", {})
        more = next.more
        pages++
      }
      assert.isFalse(more, "continued to the end")

      const sample = yield* call("sample_events", { size: 6 })
      assert.strictEqual(sample.count, 6)
      assert.deepStrictEqual(sample.typesCovered, ["LineAdded", "Shipped", "Visited"])
    }).pipe(Effect.scoped, Effect.provide(Base)))
})
