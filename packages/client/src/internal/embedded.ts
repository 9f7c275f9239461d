/**
 * The in-process implementation of `ChronosClient`: a thin adapter over an `Engine` that adds only the SDK's
 * request validation (`validation.ts`) and the conversion of engine events to wire events. The append path is
 * one synchronous validation and one call: no extra fibers, no re-encoding.
 */
import { Effect } from "effect"
import type { ChronosConfigShape } from "@chronos/config"
import { Errors, Event, type Reducer } from "@chronos/domain"
import type { EngineShape } from "@chronos/engine/Engine"
import { EventLog } from "@chronos/engine/EventLog"
import type { ChronosClientShape } from "../ChronosClient.ts"
import {
  decodeAppend,
  decodePartitionReadOptions,
  decodeQueryOptions,
  decodeReadOptions,
  decodeStateOptions,
  isInvalid
} from "./validation.ts"

const recordedAll = (events: ReadonlyArray<Event.StoredEvent>): Array<Event.RecordedEvent> => {
  const out = new Array<Event.RecordedEvent>(events.length)
  for (let i = 0; i < events.length; i++) out[i] = Event.toRecorded(events[i]!)
  return out
}

const isReducerObject = (u: unknown): boolean =>
  typeof u === "object" && u !== null && typeof (u as { name?: unknown }).name === "string" &&
  typeof (u as { step?: unknown }).step === "function" && "initial" in u

const badReducer = new Errors.InvalidRequest({
  field: "reducer",
  message: "expected a reducer name (merge, count, last, sum:<field>) or a reducer object { name, initial, step }"
})

export const make = (engine: EngineShape): ChronosClientShape => ({
  append: (tenant, stream, request) => {
    const decoded = decodeAppend(request)
    return isInvalid(decoded) ? Effect.fail(decoded) : engine.append(tenant, stream, decoded)
  },

  read: (tenant, stream, options = {}) => {
    const decoded = decodeReadOptions(options)
    return isInvalid(decoded) ? Effect.fail(decoded) : Effect.map(engine.readStream(tenant, stream, decoded), recordedAll)
  },

  query: (tenant, options = {}) => {
    const decoded = decodeQueryOptions(options)
    return isInvalid(decoded)
      ? Effect.fail(decoded)
      : Effect.map(engine.query(tenant, decoded), (page) =>
        page.next === undefined
          ? { events: recordedAll(page.events) }
          : { events: recordedAll(page.events), next: page.next })
  },

  readPartition: (tenant, partition, options = {}) => {
    const decoded = decodePartitionReadOptions(options)
    return isInvalid(decoded)
      ? Effect.fail(decoded)
      : Effect.map(engine.readPartition(tenant, partition, decoded), recordedAll)
  },

  state: (tenant, stream, options = {}) => {
    const decoded = decodeStateOptions(options)
    if (isInvalid(decoded)) return Effect.fail(decoded)
    const reducer = decoded.reducer
    if (reducer !== undefined && typeof reducer !== "string" && !isReducerObject(reducer)) {
      return Effect.fail(badReducer)
    }
    return engine.state(tenant, stream, reducer as string | Reducer.Reducer | undefined, decoded.asOf)
  },

  partitions: () => engine.partitions,

  health: () => Effect.succeed({ status: "ok" as const, partitions: engine.config.partitions })
})

/** The durable file log of `config.dataDir` (segments rolled at `config.logSegmentBytesMax`). */
export const fileLog = (config: ChronosConfigShape) =>
  EventLog.layerFile({ dataDir: config.dataDir, segmentBytesMax: config.logSegmentBytesMax, partitions: config.partitions })
