import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ChronosClient } from "../src/index.ts"

describe("ChronosClient (embedded, file log)", () => {
  it.live("keeps appended events across a close and a reopen of the data dir", () =>
    Effect.gen(function*() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chronos-client-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
      const layer = ChronosClient.layerEmbedded({ dataDir, partitions: 4 })

      // First life: append, then close the layer (flushes and closes the log).
      const scope = yield* Scope.make()
      const first = Context.get(yield* Layer.buildWithScope(layer, scope), ChronosClient)
      yield* first.append("acme", "order-1", { expectedVersion: "no_stream", events: [{ type: "Placed", data: { total: 10 } }] })
      yield* first.append("acme", "order-1", {
        expectedVersion: 0,
        events: [{ type: "Paid", data: { paid: true }, metadata: { by: "card" } }]
      })
      yield* first.append("acme", "order-2", { events: [{ type: "Placed", data: { total: 3 } }] })
      const before = yield* first.read("acme", "order-1")
      yield* Scope.close(scope, Exit.void)

      // Second life over the same directory: the same events, and the stream continues at the next version.
      const second = yield* Effect.gen(function*() {
        const client = yield* ChronosClient
        const after = yield* client.read("acme", "order-1")
        const next = yield* client.append("acme", "order-1", { expectedVersion: 1, events: [{ type: "Shipped", data: {} }] })
        const state = yield* client.state("acme", "order-1")
        const all = yield* client.query("acme")
        return { after, next, state, all }
      }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(second.after, before)
      assert.deepStrictEqual(second.after.map((e) => e.type), ["Placed", "Paid"])
      assert.deepStrictEqual(second.after[1]!.metadata, { by: "card" })
      assert.strictEqual(second.next.firstVersion, 2)
      assert.deepStrictEqual(second.state.state, { total: 10, paid: true })
      assert.strictEqual(second.all.events.length, 4)
    }).pipe(Effect.scoped))
})
