/**
 * The gateway's retry of calls to partitions (`GatewayRetry`, wired into `PartitionEntity.layerRouter`):
 *  - the failure it exists for: an append that committed but whose answer was lost (the owner died, the reply was
 *    dropped). Retried naively, an event the client sent without an id is written twice (the partition gives it a
 *    fresh id per attempt); through `GatewayRetry` it is written once and the retry gets the original positions;
 *  - retryable `Unavailable` is retried until `appendTimeoutMs` / `readTimeoutMs`; a remote attempt that does not
 *    answer (or answers with an interruption) is cut after `remoteCallTimeoutMs` and retried; a local partition
 *    closed under a pending append answers it (so no attempt hangs); everything else is answered at once.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schedule, Scope } from "effect"
import { defaults } from "@chronos/config"
import { Errors } from "@chronos/domain"
import * as GatewayRetry from "../src/GatewayRetry.ts"
import { localRouter, type PartitionRouter } from "../src/Engine.ts"
import { EventLog, makeMemory } from "../src/EventLog.ts"
import * as Partition from "../src/Partition.ts"

const input = (eventId?: string): Partition.AppendInput => ({
  tenant: "t",
  stream: "s",
  expectedVersion: "any",
  events: [{ eventId, type: "Deposited", data: { amount: 1 }, metadata: {}, bytes: 32 }]
})

const unavailable = (retryable = true) => new Errors.Unavailable({ message: "moving", retryable })

/** A real partition over the memory log, behind a router whose first `lostReplies` answers are lost. */
const losingReplies = (lostReplies: number) =>
  Effect.gen(function*() {
    const partition = yield* Partition.make(0, defaults).pipe(Effect.provide(Layer.succeed(EventLog, makeMemory())))
    const inner = localRouter([partition], "local")
    let lost = 0
    let attempts = 0
    const router: PartitionRouter = {
      ...inner,
      // The append reaches the partition and commits; only its answer does not come back.
      append: (p, i) =>
        Effect.suspend(() => {
          attempts++
          return lost++ < lostReplies ? Effect.andThen(inner.append(p, i), Effect.fail(unavailable())) : inner.append(p, i)
        })
    }
    const stored = partition.readStream("t", "s", { limit: 100, direction: "forward" })
    return { router, stored, attempts: () => attempts }
  })

const options = { appendTimeoutMs: 2_000, readTimeoutMs: 2_000, appendRetryIntervalMs: 10, remoteCallTimeoutMs: 500 }

describe("GatewayRetry", () => {
  it.live("without ids fixed up front, retrying a committed append whose answer was lost writes it twice", () =>
    Effect.gen(function*() {
      const { router, stored } = yield* losingReplies(1)
      // What a gateway retry did before AppendRetry: the same request again, ids still unassigned.
      yield* router.append(0, input()).pipe(
        Effect.retry({ while: (e) => e._tag === "Unavailable", schedule: Schedule.spaced("10 millis"), times: 5 })
      )
      assert.strictEqual((yield* stored).length, 2) // the double write this module prevents
    }).pipe(Effect.scoped))

  it.live("ids assigned before the first attempt: the retry is answered with the original positions, written once", () =>
    Effect.gen(function*() {
      const { attempts, router, stored } = yield* losingReplies(2)
      const retrying = yield* GatewayRetry.make(router, options)
      const result = yield* retrying.append(0, input())
      const events = yield* stored
      assert.strictEqual(events.length, 1)
      assert.strictEqual(attempts(), 3)
      assert.deepStrictEqual(result.positions, [{ partition: 0, seq: events[0]!.seq }])
      assert.match(events[0]!.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      // A client-supplied id is kept as it is.
      yield* retrying.append(0, input("6f1c1d0e-8a8b-4b7e-9a53-0f6f1d2a9c11"))
      assert.strictEqual((yield* stored)[1]!.eventId, "6f1c1d0e-8a8b-4b7e-9a53-0f6f1d2a9c11")
    }).pipe(Effect.scoped))

  it.live("appendMany: the appends that failed retryably are retried with their ids; the others keep their answers", () =>
    Effect.gen(function*() {
      const partition = yield* Partition.make(0, defaults).pipe(Effect.provide(Layer.succeed(EventLog, makeMemory())))
      const inner = localRouter([partition], "local")
      let first = true
      const router: PartitionRouter = {
        ...inner,
        appendMany: (p, inputs) =>
          Effect.map(inner.appendMany(p, inputs), (exits) => {
            if (!first) return exits
            first = false
            // The first batch commits everything, but the answer of the second append is lost.
            return exits.map((exit, i) => i === 1 ? Exit.fail(unavailable()) : exit)
          })
      }
      const retrying = yield* GatewayRetry.make(router, options)
      const wrong = { ...input(), expectedVersion: "no_stream" as const, stream: "other" }
      const exits = yield* retrying.appendMany(0, [input(), input(), wrong, wrong])
      assert.isTrue(Exit.isSuccess(exits[0]!) && Exit.isSuccess(exits[1]!) && Exit.isSuccess(exits[2]!))
      assert.isTrue(Exit.isFailure(exits[3]!)) // WrongExpectedVersion: answered, not retried
      const events = yield* partition.readStream("t", "s", { limit: 100, direction: "forward" })
      assert.strictEqual(events.length, 2)
      const second = exits[1]!
      assert.isTrue(Exit.isSuccess(second) && second.value.positions[0]!.seq === events[1]!.seq)
    }).pipe(Effect.scoped))

  it.live("gives up with Unavailable once appendTimeoutMs has passed; cuts and retries an attempt that never answers", () =>
    Effect.gen(function*() {
      let attempts = 0
      const failing = { append: () => Effect.sync(() => attempts++).pipe(Effect.andThen(Effect.fail(unavailable()))) }
      const retrying = yield* GatewayRetry.make(failing as unknown as PartitionRouter, { ...options, appendTimeoutMs: 200, appendRetryIntervalMs: 20, remoteCallTimeoutMs: 200 })
      const t0 = performance.now()
      const error = yield* Effect.flip(retrying.append(0, input()))
      const took = performance.now() - t0
      assert.strictEqual(error._tag, "Unavailable")
      assert.isAtLeast(attempts, 3)
      assert.isBelow(took, 400)

      // An attempt that never answers is cut after remoteCallTimeoutMs and retried; the next one answers.
      let calls = 0
      const hangingOnce = { append: () => ++calls === 1 ? Effect.never : Effect.succeed({ firstVersion: 0, lastVersion: 0, positions: [] }) }
      const retried = yield* GatewayRetry.make(hangingOnce as unknown as PartitionRouter, {
        ...options,
        appendTimeoutMs: 1_000,
        appendRetryIntervalMs: 20,
        remoteCallTimeoutMs: 100
      })
      const t1 = performance.now()
      yield* retried.append(0, input())
      assert.strictEqual(calls, 2)
      assert.isBelow(performance.now() - t1, 500)

      // A remote partition stopped under the attempt answers with an interruption: retried like Unavailable.
      let tries = 0
      const interrupted = { append: () => ++tries === 1 ? Effect.interrupt : Effect.succeed({ firstVersion: 0, lastVersion: 0, positions: [] }) }
      yield* (yield* GatewayRetry.make(interrupted as unknown as PartitionRouter, options)).append(0, input())
      assert.strictEqual(tries, 2)

      const hanging = yield* GatewayRetry.make({ append: () => Effect.never } as unknown as PartitionRouter, {
        ...options,
        appendTimeoutMs: 150,
        appendRetryIntervalMs: 20,
        remoteCallTimeoutMs: 1_000
      })
      const cut = yield* Effect.flip(hanging.append(0, input()))
      assert.isTrue(cut._tag === "Unavailable" && cut.retryable && cut.message.includes("appendTimeoutMs"))
    }))

  it.live("reads of a remote partition: an unanswered or interrupted attempt is retried, a local one is left alone", () =>
    Effect.gen(function*() {
      let calls = 0
      const event = { eventId: "e", tenant: "t", stream: "s", type: "T", data: 1, metadata: {}, timestamp: 0, streamVersion: 0, partition: 0, seq: 1 }
      const flaky = {
        readStream: () => ++calls === 1 ? Effect.never : calls === 2 ? Effect.interrupt : Effect.succeed([event])
      }
      const remote = yield* GatewayRetry.make(flaky as unknown as PartitionRouter, { ...options, remoteCallTimeoutMs: 100 })
      const events = yield* remote.readStream(0, "t", "s", { limit: 10, direction: "forward" })
      assert.strictEqual(events.length, 1)
      assert.strictEqual(calls, 3)
      // Bounded by readTimeoutMs when the partition never answers.
      const dead = yield* GatewayRetry.make({ status: () => Effect.never } as unknown as PartitionRouter, {
        ...options,
        readTimeoutMs: 300,
        remoteCallTimeoutMs: 100
      })
      const error = yield* Effect.flip(dead.status(0))
      assert.isTrue(error._tag === "Unavailable" && error.retryable && error.message.includes("readTimeoutMs"))
      // A partition of this process is called as it is (it cannot hang: see the next test).
      calls = 0
      const local = yield* GatewayRetry.make(flaky as unknown as PartitionRouter, { ...options, remoteCallTimeoutMs: 100, isRemote: () => false })
      const exit = yield* Effect.exit(local.readStream(0, "t", "s", { limit: 10, direction: "forward" }).pipe(Effect.timeout("300 millis")))
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(calls, 1)
    }))

  it.live("a partition closed under a pending append answers it with a retryable Unavailable (no attempt hangs)", () =>
    Effect.gen(function*() {
      const memory = makeMemory()
      // A log that never acknowledges: the append stays pending until the partition's scope closes.
      const stalling = Layer.succeed(EventLog, {
        ...memory,
        open: (p: number) => Effect.map(memory.open(p), (log) => ({ ...log, append: () => Effect.never }))
      })
      const scope = yield* Scope.make()
      const partition = yield* Partition.make(0, defaults).pipe(Effect.provide(stalling), Scope.provide(scope))
      const pending = yield* Effect.forkChild(Effect.flip(partition.append(input())))
      yield* Effect.sleep("20 millis")
      yield* Scope.close(scope, Exit.void)
      const error = yield* Fiber.join(pending)
      assert.isTrue(error._tag === "Unavailable" && error.retryable)
      const after = yield* Effect.flip(partition.append(input()))
      assert.isTrue(after._tag === "Unavailable" && after.retryable)
    }))

  it.live("answers at once what retrying cannot fix: a stopped partition, a wrong expected version", () =>
    Effect.gen(function*() {
      let attempts = 0
      const errors: Array<Partition.AppendFailure> = [
        unavailable(false),
        new Errors.WrongExpectedVersion({ stream: "s", expected: 3, actual: 1 })
      ]
      for (const error of errors) {
        attempts = 0
        const router = { append: () => Effect.sync(() => attempts++).pipe(Effect.andThen(Effect.fail(error))) }
        const retrying = yield* GatewayRetry.make(router as unknown as PartitionRouter, options)
        assert.strictEqual((yield* Effect.flip(retrying.append(0, input())))._tag, error._tag)
        assert.strictEqual(attempts, 1)
      }
    }))
})
