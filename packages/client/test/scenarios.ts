/**
 * Scenarios of the SDK's search, fork, subscription, consumer-group and projection surface, written once over
 * `ChronosClient` and run against every driver (memory, HTTP against a real node), so both answer alike.
 * Each takes its own tenant, so the scenarios of one store do not see each other's events.
 */
import { assert } from "@effect/vitest"
import { Effect, Fiber, Option, Queue, Stream } from "effect"
import { ChronosClient, type SubscriptionItem } from "../src/index.ts"

/** Polls `check` until it returns a value, every 20 ms, at most `timeoutMs`; fails the test otherwise. */
export const eventually = <A, E>(
  what: string,
  check: Effect.Effect<A | undefined, E>,
  timeoutMs = 10_000
): Effect.Effect<A, E> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (true) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      yield* Effect.sleep(20)
    }
  })

export const searchRoundTrip = (tenant: string) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    yield* client.append(tenant, "ticket-1", { events: [{ type: "TicketOpened", data: { text: "printer on fire in room 12" } }] })
    yield* client.append(tenant, "ticket-2", { events: [{ type: "TicketOpened", data: { text: "password reset request" } }] })
    const last = yield* client.append(tenant, "note-1", { events: [{ type: "NoteAdded", data: { text: "the printer was replaced" } }] })
    // Read-your-writes: wait for the indexes to have the last append.
    const waitFor = last.positions.map((p) => `${p.partition}:${p.seq}`).join(",")
    const hits = yield* client.search(tenant, { query: "printer", mode: "keyword", waitFor })
    assert.deepStrictEqual(hits.map((h) => h.event.stream).sort(), ["note-1", "ticket-1"])
    for (const hit of hits) {
      assert.isAbove(hit.score, 0)
      assert.deepStrictEqual(hit.matchedBy, ["keyword"])
    }
    const typed = yield* client.search(tenant, { query: "printer", mode: "keyword", types: ["TicketOpened"], limit: 5 })
    assert.deepStrictEqual(typed.map((h) => h.event.stream), ["ticket-1"])
    const prefixed = yield* client.search(tenant, { query: "printer", mode: "keyword", streamPrefix: "note-" })
    assert.deepStrictEqual(prefixed.map((h) => h.event.stream), ["note-1"])
    const status = yield* client.searchStatus(tenant)
    assert.strictEqual(status.tenant, tenant)
    assert.isAtLeast(status.keyword.documents, 3)
    assert.isString(status.keyword.position)
    // Validated as the server's body: an unknown mode is an `InvalidRequest` naming the field.
    const bad = yield* Effect.flip(client.search(tenant, { query: "x", mode: "fuzzy" as never }))
    assert.strictEqual(bad._tag === "InvalidRequest" && bad.field, "mode")
  })

export const forkLifecycle = (tenant: string) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    yield* client.append(tenant, "cart-1", { events: [{ type: "Added", data: { sku: "a" } }] })
    const fork = yield* client.forks.create(tenant, { ttlSeconds: 600, labels: { by: "sdk-test" } })
    assert.match(fork.forkId, /^[a-z0-9-]+$/)
    assert.isString(fork.base)
    assert.isString(fork.expiresAt)
    assert.deepStrictEqual(fork.labels, { by: "sdk-test" })

    // Writes through the fork stay in the fork.
    const inFork = yield* client.append(tenant, "cart-1", {
      expectedVersion: 0,
      events: [{ type: "Added", data: { sku: "b" } }]
    }, { fork: fork.forkId })
    assert.strictEqual(inFork.firstVersion, 1)
    yield* client.append(tenant, "cart-2", { events: [{ type: "Added", data: { sku: "c" } }] }, { fork: fork.forkId })
    const forkRead = yield* client.read(tenant, "cart-1", { fork: fork.forkId })
    assert.deepStrictEqual(forkRead.map((e) => (e.data as { sku: string }).sku), ["a", "b"])
    assert.strictEqual((yield* client.read(tenant, "cart-1")).length, 1)
    const forkQuery = yield* client.query(tenant, { types: ["Added"], fork: fork.forkId })
    assert.strictEqual(forkQuery.events.length, 3)
    assert.strictEqual((yield* client.query(tenant, { types: ["Added"] })).events.length, 1)
    const forkState = yield* client.state(tenant, "cart-1", { reducer: "count", fork: fork.forkId })
    assert.strictEqual(forkState.state, 2)

    assert.deepStrictEqual((yield* client.forks.list(tenant)).map((f) => f.forkId), [fork.forkId])
    assert.strictEqual((yield* client.forks.get(tenant, fork.forkId)).base, fork.base)
    const diff = yield* client.forks.diff(tenant, fork.forkId)
    assert.strictEqual(diff.events, 2)
    assert.deepStrictEqual(
      diff.streams.map((s) => [s.stream, s.baseVersion, s.events.length]).sort(),
      [["cart-1", 0, 1], ["cart-2", -1, 1]]
    )

    const dry = yield* client.forks.merge(tenant, fork.forkId, { dryRun: true })
    assert.strictEqual(dry.status, "mergeable")
    assert.deepStrictEqual(dry.streams.map((s) => s.status), ["mergeable", "mergeable"])
    assert.strictEqual((yield* client.read(tenant, "cart-1")).length, 1, "a dry run writes nothing")

    const merged = yield* client.forks.merge(tenant, fork.forkId)
    assert.strictEqual(merged.status, "merged")
    assert.deepStrictEqual(merged.streams.map((s) => [s.stream, s.status, s.appended]).sort(), [
      ["cart-1", "merged", 1],
      ["cart-2", "merged", 1]
    ])
    assert.deepStrictEqual((yield* client.read(tenant, "cart-1")).map((e) => (e.data as { sku: string }).sku), ["a", "b"])

    const discarded = yield* client.forks.discard(tenant, fork.forkId)
    assert.deepStrictEqual(discarded.discarded, [fork.forkId])
    const gone = yield* Effect.flip(client.read(tenant, "cart-1", { fork: fork.forkId }))
    assert.strictEqual(gone._tag, "ForkNotFound")
    const goneAppend = yield* Effect.flip(client.append(tenant, "cart-1", { events: [{ type: "X", data: 1 }] }, { fork: fork.forkId }))
    assert.strictEqual(goneAppend._tag, "ForkNotFound")
    assert.strictEqual((yield* client.read(tenant, "cart-1")).length, 2, "an append to a discarded fork writes nothing")
    const getGone = yield* Effect.flip(client.forks.get(tenant, fork.forkId))
    assert.strictEqual(getGone._tag, "ForkNotFound")
  })

/** A conflicting merge: the parent changed the stream after the fork's base. */
export const forkConflict = (tenant: string) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    yield* client.append(tenant, "acct", { events: [{ type: "Opened", data: {} }] })
    const fork = yield* client.forks.create(tenant, { ttlSeconds: 60 })
    yield* client.append(tenant, "acct", { events: [{ type: "InFork", data: {} }] }, { fork: fork.forkId })
    yield* client.append(tenant, "acct", { events: [{ type: "InParent", data: {} }] })
    const dry = yield* client.forks.merge(tenant, fork.forkId, { dryRun: true })
    assert.strictEqual(dry.status, "conflict")
    assert.strictEqual(dry.streams[0]!.conflicts?.[0]?.type, "InParent")
    const conflict = yield* Effect.flip(client.forks.merge(tenant, fork.forkId))
    assert.strictEqual(conflict._tag, "ForkMergeConflict")
    if (conflict._tag === "ForkMergeConflict") assert.strictEqual(conflict.streams[0]!.status, "conflict")
  })

const eventPositions = (items: ReadonlyArray<SubscriptionItem>) =>
  items.filter((i) => i._tag === "Event").map((i) => i._tag === "Event" ? `${i.event.stream}@${i.event.streamVersion}` : "")

/** History, exactly one caught-up marker, then live events; resuming from a position delivers exactly the rest. */
export const subscribeHistoryThenLive = (tenant: string) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    for (let i = 0; i < 3; i++) yield* client.append(tenant, "s", { events: [{ type: "Tick", data: { i } }] })
    yield* client.append(tenant, "other", { events: [{ type: "Tock", data: {} }] })

    const queue = yield* Queue.unbounded<SubscriptionItem>()
    const fiber = yield* client.subscribe(tenant, { from: "start", types: ["Tick"] }).pipe(
      Stream.runForEach((item) => Queue.offer(queue, item)),
      Effect.forkChild
    )
    const take = (n: number) => Effect.forEach(Array.from({ length: n }), () => Queue.take(queue))
    const history = yield* take(4)
    assert.deepStrictEqual(history.map((i) => i._tag), ["Event", "Event", "Event", "CaughtUp"])
    assert.deepStrictEqual(eventPositions(history), ["s@0", "s@1", "s@2"])

    for (let i = 3; i < 5; i++) yield* client.append(tenant, "s", { events: [{ type: "Tick", data: { i } }] })
    yield* client.append(tenant, "other", { events: [{ type: "Tock", data: {} }] })
    const live = yield* take(2)
    assert.deepStrictEqual(eventPositions(live), ["s@3", "s@4"])
    yield* Fiber.interrupt(fiber)
    assert.isTrue(Option.isNone(yield* Queue.poll(queue)), "nothing but the filtered events")

    // Resume from the second event's position: exactly the events after it.
    const second = history[1]!
    const resumed = yield* client.subscribe(tenant, { from: second.position, types: ["Tick"] }).pipe(
      Stream.takeUntil((i) => i._tag === "CaughtUp"),
      Stream.runCollect
    )
    assert.deepStrictEqual(eventPositions(resumed), ["s@2", "s@3", "s@4"])

    const bad = yield* Effect.flip(Stream.runDrain(client.subscribe(tenant, { from: "yesterday" })))
    assert.strictEqual(bad._tag, "InvalidRequest")
  })

/** A consumer group: deliveries, ack, a poison event nacked until parked, the parked list, replay. */
export const consumerGroupAckAndPark = (tenant: string, attemptsMax: number) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    for (let i = 0; i < 4; i++) {
      yield* client.append(tenant, `o-${i}`, { events: [{ type: i === 2 ? "Poison" : "Order", data: { i } }] })
    }
    const created = yield* client.consumers.create(tenant, "billing", { types: ["Order", "Poison"] })
    assert.strictEqual(created.name, "billing")
    assert.deepStrictEqual(created.filter, { types: ["Order", "Poison"] })
    const conflict = yield* Effect.flip(client.consumers.create(tenant, "billing", { types: ["Order"] }))
    assert.strictEqual(conflict._tag, "DefinitionConflict")
    assert.deepStrictEqual(yield* client.consumers.list(tenant), ["billing"])

    const attempts: Array<number> = []
    let acked = 0
    let poison = ""
    for (let round = 0; round < 50 && attempts.length < attemptsMax; round++) {
      const deliveries = yield* client.consumers.next(tenant, "billing", { max: 10, waitMs: 300 })
      const good = deliveries.filter((d) => d.event.type === "Order")
      if (good.length > 0) {
        const ack = yield* client.consumers.ack(tenant, "billing", good.map((d) => d.deliveryId))
        assert.deepStrictEqual(ack, { acked: good.length, unknown: [] })
        acked += good.length
      }
      for (const d of deliveries.filter((d) => d.event.type === "Poison")) {
        poison = d.deliveryId
        attempts.push(d.attempt)
        yield* client.consumers.nack(tenant, "billing", [d.deliveryId])
      }
    }
    assert.strictEqual(acked, 3)
    assert.deepStrictEqual(attempts, Array.from({ length: attemptsMax }, (_, i) => i + 1))
    const status = yield* eventually("the poison event parked", Effect.map(
      client.consumers.get(tenant, "billing"),
      (s) => s.parked === 1 ? s : undefined
    ))
    assert.strictEqual(status.stats.acked, 3)
    const parked = yield* client.consumers.parked(tenant, "billing")
    assert.deepStrictEqual(parked.map((p) => [p.deliveryId, p.attempts, p.event?.type]), [[poison, attemptsMax, "Poison"]])
    const unknownAck = yield* client.consumers.ack(tenant, "billing", ["9999:1"])
    assert.deepStrictEqual(unknownAck, { acked: 0, unknown: ["9999:1"] })
    assert.deepStrictEqual(yield* client.consumers.replayParked(tenant, "billing"), { replayed: 1, unknown: [] })
    const again = yield* client.consumers.next(tenant, "billing", { max: 10, waitMs: 2_000 })
    assert.deepStrictEqual(again.map((d) => [d.deliveryId, d.attempt]), [[poison, 1]])
    yield* client.consumers.ack(tenant, "billing", [poison])
    assert.strictEqual((yield* client.consumers.get(tenant, "billing")).parked, 0)

    const missing = yield* Effect.flip(client.consumers.get(tenant, "nobody"))
    assert.strictEqual(missing._tag, "ConsumerGroupNotFound")
    const emptyAck = yield* Effect.flip(client.consumers.ack(tenant, "billing", []))
    assert.strictEqual(emptyAck._tag, "InvalidRequest")
  })

/** A declarative projection: state per key, stop / start, rebuild with progress. */
export const projectionState = (tenant: string) =>
  Effect.gen(function*() {
    const client = yield* ChronosClient
    yield* client.append(tenant, "acct-1", { events: [{ type: "Deposited", data: { amount: 5 } }, { type: "Deposited", data: { amount: 7 } }] })
    yield* client.append(tenant, "acct-2", { events: [{ type: "Deposited", data: { amount: 1 } }, { type: "Withdrawn", data: { amount: 100 } }] })
    const defined = yield* client.projections.define(tenant, "balances", {
      kind: "sum",
      field: "amount",
      groupBy: "stream",
      types: ["Deposited"]
    })
    assert.strictEqual(defined.name, "balances")
    assert.deepStrictEqual(yield* client.projections.list(tenant), ["balances"])
    const one = yield* eventually("acct-1 folded", Effect.map(
      client.projections.state(tenant, "balances", "acct-1"),
      (s) => s.value === 12 ? s : undefined
    ))
    assert.strictEqual(one.key, "acct-1")
    const whole = yield* eventually("both accounts folded", Effect.map(
      client.projections.state(tenant, "balances"),
      (s) => (s.value as Record<string, number> | null)?.["acct-2"] === 1 ? s : undefined
    ))
    assert.deepStrictEqual(whole.value, { "acct-1": 12, "acct-2": 1 })

    const stopped = yield* client.projections.stop(tenant, "balances")
    assert.strictEqual(stopped.status, "stopped")
    yield* client.append(tenant, "acct-1", { events: [{ type: "Deposited", data: { amount: 100 } }] })
    const started = yield* client.projections.start(tenant, "balances")
    assert.strictEqual(started.status, "running")
    yield* eventually("the deposit made while stopped folded", Effect.map(
      client.projections.state(tenant, "balances", "acct-1"),
      (s) => s.value === 112 ? s : undefined
    ))
    const rebuilt = yield* client.projections.rebuild(tenant, "balances")
    assert.strictEqual(rebuilt.status, "running")
    const done = yield* eventually("the rebuild reached the head", Effect.map(
      client.projections.get(tenant, "balances"),
      (s) => s.progress.fraction === 1 && s.phase === "live" ? s : undefined
    ))
    assert.deepStrictEqual(done.state, { "acct-1": 112, "acct-2": 1 })
    const missing = yield* Effect.flip(client.projections.get(tenant, "nothing"))
    assert.strictEqual(missing._tag, "ProjectionNotFound")
  })
