/**
 * Where export and import find a store: a node's HTTP API (`url`) or a data directory opened in this process with
 * its cold tier (`dataDir`). Both give a `ChronosClient`, so export and import are written once over the SDK.
 */
import { type Config, Layer } from "effect"
import { ChronosClient } from "@chronos/client"
import type { LogError } from "@chronos/engine/EventLog"
import * as Embedded from "./Embedded.ts"

export type Target =
  | { readonly url: string; readonly dataDir?: undefined }
  | { readonly dataDir: string; readonly url?: undefined }

export const clientLayer = (target: Target): Layer.Layer<ChronosClient, LogError | Config.ConfigError> =>
  target.url !== undefined
    ? ChronosClient.layerHttp({ url: target.url })
    : ChronosClient.layerEngine.pipe(Layer.provide(Embedded.layer({ dataDir: target.dataDir })))
