/**
 * Model-based test of the partition: random sequences of appends (single, multi-event, pipelined bursts, retries
 * with reused event ids, every expected-version mode), reads, time-travel reads and reopen-from-log, checked step
 * by step against a plain in-memory model that is obviously correct.
 */
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { defaults } from "@chronos/config"
import { AsOf } from "@chronos/domain"
import type { Commit } from "../src/Commit.ts"
import { EventLog, makeMemory } from "../src/EventLog.ts"
import * as Partition from "../src/Partition.ts"

type Expected = "any" | "no_stream" | "stream_exists" | number

interface ModelEvent {
  readonly eventId: string
  readonly stream: string
  readonly type: string
  readonly version: number
  readonly seq: number
}

/** The model: a list of events per stream and the global order. Nothing clever. */
class Model {
  readonly all: Array<ModelEvent> = []
  version(stream: string) {
    return this.all.filter((e) => e.stream === stream).length - 1
  }
  append(stream: string, expected: Expected, events: ReadonlyArray<{ eventId: string; type: string }>) {
    if (new Set(events.map((e) => e.eventId)).size !== events.length) return { ok: false as const, tag: "InvalidRequest" }
    const known = events.map((e) => this.all.find((x) => x.eventId === e.eventId))
    if (known.some((k) => k !== undefined)) {
      if (known.every((k) => k !== undefined && k.stream === stream)) {
        const first = known[0]!
        const consecutive = known.every((k, i) => k!.version === first.version + i)
        if (consecutive) return { ok: true as const, firstVersion: first.version, seqs: known.map((k) => k!.seq) }
      }
      return { ok: false as const, tag: "InvalidRequest" }
    }
    const current = this.version(stream)
    const satisfied = expected === "any" || (expected === "no_stream" && current === -1) ||
      (expected === "stream_exists" && current >= 0) || expected === current
    if (!satisfied) return { ok: false as const, tag: "WrongExpectedVersion", actual: current }
    const seqs: Array<number> = []
    events.forEach((e, i) => {
      const seq = this.all.length + 1
      this.all.push({ eventId: e.eventId, stream, type: e.type, version: current + 1 + i, seq })
      seqs.push(seq)
    })
    return { ok: true as const, firstVersion: current + 1, seqs }
  }
}

const streams = ["a", "b", "c"]
const types = ["Created", "Updated", "Deleted"]

const eventArb = fc.record({ id: fc.integer({ min: 0, max: 40 }), type: fc.constantFrom(...types) })
const expectedArb: fc.Arbitrary<Expected> = fc.oneof(
  fc.constantFrom<Expected>("any", "no_stream", "stream_exists"),
  fc.integer({ min: -1, max: 6 }).map((n) => (n < 0 ? "any" : n))
)
const appendArb: fc.Arbitrary<AppendOp> = fc.record({
  kind: fc.constant("append" as const),
  stream: fc.constantFrom(...streams),
  expected: expectedArb,
  events: fc.array(eventArb, { minLength: 1, maxLength: 3 })
})
const opArb = fc.oneof(
  { weight: 6, arbitrary: appendArb },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("burst" as const), appends: fc.array(appendArb, { minLength: 2, maxLength: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reopen" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("asOf" as const), stream: fc.constantFrom(...streams), at: fc.nat(30) }) }
)

interface AppendOp {
  readonly kind: "append"
  readonly stream: string
  readonly expected: Expected
  readonly events: ReadonlyArray<{ readonly id: number; readonly type: string }>
}

const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`

describe("Partition against a model", () => {
  it("agrees with the model on every step (appends, bursts, retries, reopen, asOf)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
        const store = new Map<number, Array<Commit>>()
        const log = Layer.succeed(EventLog, makeMemory(store))
        const limits = { ...defaults, commitEventsMax: 4, snapshotEveryEvents: 2 }
        const open = async () => {
          const scope = await Effect.runPromise(Scope.make())
          const p = await Effect.runPromise(
            Partition.make(0, limits).pipe(Effect.provide(log), Effect.provideService(Scope.Scope, scope))
          )
          return { p, scope }
        }
        const model = new Model()
        let { p, scope } = await open()
        const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(Effect.exit(e))

        const check = async (op: AppendOp, exit: Exit.Exit<Partition.AppendOutput, Partition.AppendFailure>) => {
          const events = op.events.map((e) => ({ eventId: uuid(e.id), type: e.type }))
          const expected = model.append(op.stream, op.expected, events)
          if (expected.ok) {
            expect(Exit.isSuccess(exit), JSON.stringify(exit)).toBe(true)
            if (Exit.isSuccess(exit)) {
              expect(exit.value.firstVersion).toBe(expected.firstVersion)
              expect(exit.value.positions.map((x) => x.seq)).toEqual(expected.seqs)
            }
          } else {
            expect(Exit.isFailure(exit)).toBe(true)
            if (Exit.isFailure(exit)) {
              const error = exit.cause.reasons[0]
              expect(error?._tag === "Fail" ? error.error._tag : String(exit.cause)).toBe(expected.tag)
            }
          }
        }
        const input = (op: AppendOp): Partition.AppendInput => ({
          tenant: "t",
          stream: op.stream,
          expectedVersion: op.expected,
          events: op.events.map((e) => ({ eventId: uuid(e.id), type: e.type, data: { id: e.id }, metadata: {}, bytes: 10 }))
        })

        for (const op of ops) {
          if (op.kind === "append") {
            await check(op, await run(p.append(input(op))))
          } else if (op.kind === "burst") {
            // Pipelined: all submitted before any is acknowledged; the model applies them in submission order.
            const exits = await Promise.all(op.appends.map((a) => run(p.append(input(a)))))
            for (let i = 0; i < op.appends.length; i++) await check(op.appends[i]!, exits[i]!)
          } else if (op.kind === "reopen") {
            await Effect.runPromise(Scope.close(scope, Exit.void))
            ;({ p, scope } = await open())
          } else {
            const read = await Effect.runPromise(
              p.readStream("t", op.stream, { limit: 1000, direction: "forward", asOf: AsOf.parse(`0:${op.at}`).pipe((o) => o._tag === "Some" ? o.value : undefined) })
            )
            expect(read.map((e) => e.seq)).toEqual(model.all.filter((e) => e.stream === op.stream && e.seq <= op.at).map((e) => e.seq))
          }
          // After every step: full agreement on every stream, and on the partition's gapless sequence.
          for (const s of streams) {
            const read = await Effect.runPromise(p.readStream("t", s, { limit: 1000, direction: "forward" }))
            const want = model.all.filter((e) => e.stream === s)
            expect(read.map((e) => [e.eventId, e.streamVersion, e.seq, e.type])).toEqual(
              want.map((e) => [e.eventId, e.version, e.seq, e.type])
            )
            const count = await Effect.runPromise(p.reconstruct("t", s, { name: "count", initial: 0, step: (n: number) => n + 1 }, undefined))
            expect(count).toEqual({ version: want.length - 1, state: want.length })
          }
          const all = await Effect.runPromise(p.scan("t", { limit: 10_000 }))
          expect(all.map((e) => e.seq)).toEqual(model.all.map((e) => e.seq))
          const status = await Effect.runPromise(p.status)
          expect(status.watermark).toBe(model.all.length)
        }
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }),
      { numRuns: 150 }
    )
  })
})
