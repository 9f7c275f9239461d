import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Retention from "../src/Retention.ts"

describe("Retention.validSettings", () => {
  it.effect("accepts positive integers and names the offending field otherwise, like the HTTP body", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Retention.validSettings({ maxCount: 3, maxAgeMs: 1000 }), { maxCount: 3, maxAgeMs: 1000 })
      assert.deepStrictEqual(yield* Retention.validSettings({}), {})
      const cases: Array<[unknown, string]> = [
        [{ maxCount: 0 }, "maxCount"],
        [{ maxAgeMs: -1 }, "maxAgeMs"],
        [{ truncateBefore: 2.5 }, "truncateBefore"],
        [{ maxCount: "3" }, "maxCount"],
        [{ maxCuont: 3 }, "maxCuont"],
        ["nope", "body"]
      ]
      for (const [input, field] of cases) {
        const error = yield* Effect.flip(Retention.validSettings(input))
        assert.strictEqual(error._tag, "InvalidRequest")
        assert.strictEqual(error.field, field, JSON.stringify(input))
      }
    }))
})
