import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Errors } from "@chronos/domain"
import { surfaceReadDefects } from "../src/internal/httpInput.ts"

// The engine's reads die (no error channel) when stored data is damaged or sealed events cannot be fetched; the
// HTTP layer turns exactly those defects into the declared 502/503 and leaves every other defect a defect.
describe("surfaceReadDefects", () => {
  it.effect("CorruptData and Unavailable defects (as classes or as plain objects from another runner) become failures", () =>
    Effect.gen(function*() {
      const corrupt = new Errors.CorruptData({ location: "segments/p001/x.parquet", message: "sha256 mismatch" })
      assert.strictEqual(yield* surfaceReadDefects(Effect.die(corrupt)).pipe(Effect.flip), corrupt)
      const unavailable = new Errors.Unavailable({ message: "segment store unreachable", retryable: true })
      assert.strictEqual(yield* surfaceReadDefects(Effect.die(unavailable)).pipe(Effect.flip), unavailable)
      const remote = yield* surfaceReadDefects(Effect.die({ _tag: "Unavailable", message: "remote", retryable: true })).pipe(Effect.flip)
      assert.instanceOf(remote, Errors.Unavailable)
      assert.isTrue((remote as Errors.Unavailable).retryable)
      const remoteCorrupt = yield* surfaceReadDefects(Effect.die({ _tag: "CorruptData", location: "l", message: "m" })).pipe(Effect.flip)
      assert.instanceOf(remoteCorrupt, Errors.CorruptData)
    }))

  it.effect("any other defect stays a defect", () =>
    Effect.gen(function*() {
      const exit = yield* surfaceReadDefects(Effect.die(new Error("bug"))).pipe(Effect.exit)
      assert.isTrue(exit._tag === "Failure" && exit.cause.reasons.some((r) => r._tag === "Die"))
      const shapeless = yield* surfaceReadDefects(Effect.die({ _tag: "Unavailable" })).pipe(Effect.exit)
      assert.isTrue(shapeless._tag === "Failure" && shapeless.cause.reasons.some((r) => r._tag === "Die"))
    }))
})
