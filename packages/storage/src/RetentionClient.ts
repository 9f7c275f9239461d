/**
 * The SDK's `StreamRetention` service over the provided `Engine`: `Retention`'s public operations, for in-process
 * clients (`ChronosClient.layerEngine`), such as the CLI over a data directory. Provide it with an engine that applies
 * retention to its reads (`Retention.layerEnforced`), as a node's does, or reads ignore the rules written here.
 */
import { Effect, Layer } from "effect"
import { StreamRetention, type StreamRetentionShape } from "@chronos/client/ChronosClient"
import { Engine } from "@chronos/engine/Engine"
import * as Retention from "./Retention.ts"

export const layer: Layer.Layer<StreamRetention, never, Engine> = Layer.effect(
  StreamRetention,
  Effect.gen(function*() {
    const engine = yield* Engine
    const shape: StreamRetentionShape = {
      set: (tenant, stream, settings) => Retention.setRetention(engine, tenant, stream, settings),
      get: (tenant, stream) => Retention.getRetention(engine, tenant, stream),
      delete: (tenant, stream, options) => Retention.deleteExisting(engine, tenant, stream, options)
    }
    return shape
  })
)
