/**
 * The reconnect logic of HTTP subscriptions over scripted connections: which `Last-Event-ID` each reconnect sends,
 * one `CaughtUp` however many connections announce one, `lagging` as a typed item, `error` frames and failures as
 * reconnects, and the bound on reconnects that deliver nothing. (The same logic against a real node and real cut
 * sockets: `ChronosClient.features.http.test.ts`.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { Errors, type SubscriptionsApi } from "@chronos/domain"
import * as ResumingSubscription from "../src/internal/resumingSubscription.ts"

const event = (version: number, id: string): SubscriptionsApi.SubscriptionEvent => ({
  event: "message",
  id,
  data: {
    eventId: `e${version}`,
    stream: "s",
    type: "T",
    data: {},
    metadata: {},
    timestamp: "2026-11-23T00:00:00.000Z",
    streamVersion: version,
    partition: 1,
    seq: version + 1
  }
})
const caughtUp = (position: string): SubscriptionsApi.SubscriptionEvent => ({ event: "caught-up", id: position, data: { position } })
const drop = new Errors.Unavailable({ message: "socket closed", retryable: true })

/** Connections played in order; records the `Last-Event-ID` each was opened with. */
const scripted = (connections: ReadonlyArray<Stream.Stream<SubscriptionsApi.SubscriptionEvent, Errors.Unavailable | Errors.InvalidRequest>>) => {
  const opened: Array<string | undefined> = []
  const connect = (lastEventId: string | undefined) => {
    const next = connections[opened.length] ?? Stream.fail(drop)
    opened.push(lastEventId)
    return next
  }
  return { opened, connect }
}

const options = { isRetryable: (e: { _tag: string }) => e._tag === "Unavailable", reconnectsMax: 3, delayMs: 1, delayMsMax: 2 }

describe("ResumingSubscription", () => {
  it.live("resumes after the last delivered item, delivers one CaughtUp, maps lagging", () =>
    Effect.gen(function*() {
      const { opened, connect } = scripted([
        Stream.concat(Stream.make(event(0, "1:1"), event(1, "1:2"), caughtUp("1:2")), Stream.fail(drop)),
        // The server's `error` frame ends a connection too.
        Stream.make(caughtUp("1:2"), event(2, "1:3"), { event: "error", data: { _tag: "Unavailable", message: "moving" } }),
        Stream.make(
          caughtUp("1:3"),
          { event: "lagging", data: { lag: 120, max: 100, position: "1:3" } },
          event(3, "1:4")
        )
      ])
      const items = yield* ResumingSubscription.make({ ...options, connect }).pipe(Stream.take(6), Stream.runCollect)
      assert.deepStrictEqual(items.map((i) => i._tag === "Event" ? i.event.streamVersion : i._tag), [
        0, 1, "CaughtUp", 2, "Lagging", 3
      ])
      assert.deepStrictEqual(items[4], { _tag: "Lagging", lag: 120, max: 100, position: "1:3" })
      assert.deepStrictEqual(opened, [undefined, "1:2", "1:3"])
    }))

  it.live("a drop before anything arrived resumes from the request's own `from`; an empty catch-up from start", () =>
    Effect.gen(function*() {
      const { opened, connect } = scripted([
        Stream.fail(drop),
        Stream.concat(Stream.make(caughtUp("")), Stream.fail(drop)),
        Stream.make(event(0, "1:1"))
      ])
      const items = yield* ResumingSubscription.make({ ...options, connect }).pipe(Stream.take(2), Stream.runCollect)
      assert.deepStrictEqual(items.map((i) => i._tag), ["CaughtUp", "Event"])
      // Nothing existed at the catch-up: resuming from `start` is exact (from `now` again could skip events).
      assert.deepStrictEqual(opened, [undefined, undefined, "start"])
    }))

  it.live("fails with Unavailable after reconnectsMax connections that deliver nothing", () =>
    Effect.gen(function*() {
      const { opened, connect } = scripted([Stream.make(event(0, "1:1"))])
      const error = yield* Effect.flip(Stream.runDrain(ResumingSubscription.make({ ...options, connect })))
      assert.strictEqual(error._tag, "Unavailable")
      // One that delivered, then the first connection's successors: 3 reconnects that delivered nothing.
      assert.deepStrictEqual(opened, [undefined, "1:1", "1:1", "1:1"])
    }))

  it.live("an error a reconnect cannot fix fails at once", () =>
    Effect.gen(function*() {
      const bad = new Errors.InvalidRequest({ field: "from", message: "bad" })
      const { opened, connect } = scripted([Stream.fail(bad)])
      const error = yield* Effect.flip(Stream.runDrain(ResumingSubscription.make({ ...options, connect })))
      assert.strictEqual(error, bad)
      assert.strictEqual(opened.length, 1)
    }))
})
