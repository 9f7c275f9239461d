/**
 * The configuration's resolution rules that are not plain defaults: a limit whose default depends on another
 * setting, and the precedence of defaults, `CHRONOS_*` environment variables and explicit overrides.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { ChronosConfig, defaults, make } from "@chronos/config"

describe("ChronosConfig", () => {
  it("commitLingerMs defaults to jetStreamCommitLingerMs with the JetStream log, 0 otherwise, and a set value wins", () => {
    assert.strictEqual(make({ logDriver: "jetstream" }).commitLingerMs, defaults.jetStreamCommitLingerMs)
    assert.isAbove(defaults.jetStreamCommitLingerMs, 0)
    assert.strictEqual(make({ logDriver: "file" }).commitLingerMs, 0)
    assert.strictEqual(make({ logDriver: "memory" }).commitLingerMs, 0)
    assert.strictEqual(make({ logDriver: "jetstream", commitLingerMs: 0 }).commitLingerMs, 0)
    assert.strictEqual(make({ logDriver: "jetstream", jetStreamCommitLingerMs: 12 }).commitLingerMs, 12)
  })

  it.effect("an environment variable counts as set: CHRONOS_COMMIT_LINGER_MS=0 keeps JetStream commits unlingered", () =>
    Effect.gen(function*() {
      const config = yield* ChronosConfig
      assert.strictEqual(config.commitLingerMs, 0)
    }).pipe(
      Effect.provide(ChronosConfig.layerConfig({ logDriver: "jetstream" })),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ CHRONOS_COMMIT_LINGER_MS: "0" })))
    ))
})
