/**
 * The engine side of the two hottest endpoints — append to a stream and read a stream — as functions from HTTP
 * inputs to the JSON body of the 200 response. Shared by the HttpApi handlers and the node's direct path
 * (`directPath.ts`), so both answer every request identically.
 */
import { Effect } from "effect"
import { type Errors, Event } from "@chronos/domain"
import type { EngineShape } from "@chronos/engine/Engine"
import { locate, optionalInt } from "./httpInput.ts"

export const recordedAll = (events: ReadonlyArray<Event.StoredEvent>): Array<Event.RecordedEvent> => {
  const out = new Array<Event.RecordedEvent>(events.length)
  for (let i = 0; i < events.length; i++) out[i] = Event.toRecorded(events[i]!)
  return out
}

/**
 * The body of a 200, serialized directly. `AppendResult` and `ReadResult` have no encoding transformations (their
 * encoded form is their type), so this is what HttpApi's success encoder would send — without walking every
 * event through the schema, which cost more than the read itself. The parameter type ties it to the schemas.
 */
export const json = (body: Event.AppendResult | Event.ReadResult): string => JSON.stringify(body)

export const readResultJson = (events: ReadonlyArray<Event.StoredEvent>, next?: string): string =>
  json(next === undefined ? { events: recordedAll(events) } : { events: recordedAll(events), next })

export const append = (
  engine: EngineShape,
  tenant: string,
  stream: string,
  payload: Event.AppendRequest
): Effect.Effect<string, Errors.AppendError> => locate(Effect.map(engine.append(tenant, stream, payload), json))

export interface ReadQuery {
  readonly fromVersion?: string | undefined
  readonly limit?: string | undefined
  readonly direction?: "forward" | "backward" | undefined
  readonly asOf?: string | undefined
}

export const read = (
  engine: EngineShape,
  tenant: string,
  stream: string,
  query: ReadQuery
): Effect.Effect<string, Errors.InvalidRequest | Errors.LimitExceeded | Errors.Unavailable> =>
  locate(Effect.flatMap(
    Effect.all([optionalInt(query.fromVersion, "query.fromVersion"), optionalInt(query.limit, "query.limit")]),
    ([fromVersion, limit]) =>
      Effect.map(
        engine.readStream(tenant, stream, { fromVersion, limit, direction: query.direction, asOf: query.asOf }),
        (events) => readResultJson(events)
      )
  ))
