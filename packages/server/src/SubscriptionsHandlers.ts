/**
 * The handlers of the `subscriptions` group of `ChronosApi` — Server-Sent Events subscriptions, consumer groups,
 * projections — and the node services behind them. Like `HttpHandlers`, this module owns only the HTTP-to-engine
 * translation (query strings to numbers and lists, engine values to wire values, engine field names to HTTP
 * locations); the SSE framing, window and lag live in `internal/sse.ts`.
 *
 * It also owns `LongRequests`: SSE streams and long polls would otherwise hold a graceful shutdown for as long as
 * they last, so the node signals it when it starts draining, and they end (an SSE client reconnects elsewhere with
 * `Last-Event-ID`; a long poll answers an empty batch).
 */
import { Context, Effect, Latch, Layer } from "effect"
import { Sharding } from "effect/cluster"
import { HttpServerResponse } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { ChronosConfig } from "@chronos/config"
import { Errors, Event, SubscriptionsApi } from "@chronos/domain"
import { CheckpointStore } from "@chronos/engine/CheckpointStore"
import { ConsumerGroups, parkedToWire, statusToWire } from "@chronos/engine/ConsumerGroup"
import { Engine } from "@chronos/engine/Engine"
import { ForkHost } from "@chronos/engine/PartitionEntity"
import { Projections } from "@chronos/engine/Projection"
import { Api } from "./HttpHandlers.ts"
import { locate, optionalInt, typeList } from "./internal/httpInput.ts"
import * as Sse from "./internal/sse.ts"

/** Signals long-lived requests (SSE streams, long polls) that the node is shutting down. */
export class LongRequests extends Context.Service<LongRequests, {
  /** Completes once the node drains. */
  readonly closing: Effect.Effect<void>
  readonly close: Effect.Effect<void>
}>()("chronos/server/SubscriptionsHandlers/LongRequests") {
  static readonly layer: Layer.Layer<LongRequests> = Layer.sync(LongRequests, () => {
    const latch = Latch.makeUnsafe(false)
    return { closing: latch.await, close: Effect.asVoid(latch.open) }
  })
}

/** The runner's `Sharding`, as the engine exports it (`ForkHost`: forks find it there too). */
const runnerSharding: Layer.Layer<Sharding.Sharding, never, ForkHost> = Layer.effect(
  Sharding.Sharding,
  Effect.map(ForkHost, (host) => host.sharding)
)

/**
 * Consumer groups: on the JetStream log (a cluster, whose runners share the groups' documents in NATS KV) each group
 * is served by one runner at a time (`ConsumerGroups.layerCluster`); on the other logs, the only process that can
 * serve a group is this one (`ConsumerGroups.layer`, without the entity hop and the write per `next` that moving
 * groups need).
 */
const groupsLayer: Layer.Layer<ConsumerGroups, never, Engine | ChronosConfig | ForkHost | CheckpointStore> = Layer.unwrap(
  Effect.map(ChronosConfig, (config) =>
    config.logDriver === "jetstream"
      ? ConsumerGroups.layerCluster.pipe(Layer.provide(runnerSharding))
      : ConsumerGroups.layer)
)

/**
 * Consumer groups, projections and `LongRequests` over the node's `Engine`, their state stored with the configured
 * log (`CheckpointStore.layerConfig`: `<dataDir>/consumers|projections/`, NATS KV, or memory).
 */
export const layerServices: Layer.Layer<
  ConsumerGroups | Projections | LongRequests,
  never,
  Engine | ChronosConfig | ForkHost
> = Layer.mergeAll(groupsLayer, Projections.layer(), LongRequests.layer).pipe(
  Layer.provide(CheckpointStore.layerConfig)
)

/** Engine field names of subscription options → where they are in the HTTP request. */
const subscribeLocations: Record<string, string> = {
  from: "query.from",
  stream: "query.stream",
  streamPrefix: "query.streamPrefix",
  max: "query.max",
  waitMs: "query.waitMs",
  limit: "query.limit",
  name: "params.name",
  delayMs: "delayMs"
}

const relocate = <A, E, R>(effect: Effect.Effect<A, E, R>, fromHeader = false): Effect.Effect<A, E, R> =>
  locate(Effect.mapErrorEager(effect, (error) => {
    if (!(error instanceof Errors.InvalidRequest)) return error
    const field = error.field === "from" && fromHeader ? "headers.last-event-id" : subscribeLocations[error.field]
    return (field === undefined ? error : new Errors.InvalidRequest({ field, message: error.message })) as E
  }))

export const SubscriptionsHandlers = HttpApiBuilder.group(
  Api,
  "subscriptions",
  Effect.fnUntraced(function*(handlers) {
    const engine = yield* Engine
    const config = yield* ChronosConfig
    const groups = yield* ConsumerGroups
    const projections = yield* Projections
    const longRequests = yield* LongRequests
    const heads = Sse.watermarkCache(engine, config.subscriptionLagCheckMs)

    return handlers.handleAll({
      subscribe: ({ headers, params, query }) =>
        relocate(
          Effect.map(
            engine.subscribePages(params.tenant, {
              // `Last-Event-ID` is how an SSE client resumes: it wins over the `from` of the URL it reconnects to.
              from: headers["last-event-id"] ?? query.from,
              types: typeList(query.types),
              stream: query.stream,
              streamPrefix: query.streamPrefix,
              stepEventsMax: config.subscriptionWindowEventsMax
            }),
            (subscription) =>
              HttpServerResponse.stream(
                Sse.body(subscription, {
                  windowEventsMax: config.subscriptionWindowEventsMax,
                  lagEventsMax: config.subscriberLagEventsMax,
                  lagCheckMs: config.subscriptionLagCheckMs,
                  keepaliveMs: config.subscriptionKeepaliveMs,
                  heads,
                  closing: longRequests.closing
                }),
                {
                  contentType: "text/event-stream",
                  headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
                }
              )
          ),
          headers["last-event-id"] !== undefined
        ),

      listConsumers: ({ params }) => relocate(Effect.map(groups.list(params.tenant), (names) => ({ names }))),

      createConsumer: ({ params, payload }) =>
        relocate(Effect.map(groups.create(params.tenant, params.name, payload), statusToWire)),

      consumer: ({ params }) => relocate(Effect.map(groups.status(params.tenant, params.name), statusToWire)),

      next: ({ params, query }) =>
        relocate(Effect.gen(function*() {
          const max = yield* optionalInt(query.max, "query.max")
          const waitMs = yield* optionalInt(query.waitMs, "query.waitMs")
          // A long poll ends (empty) when the node drains; what it had taken stays in flight and is redelivered.
          // Its connection is closed after the answer: left idle in keep-alive, it would hold the shutdown.
          const deliveries = yield* Effect.raceFirst(
            groups.next(params.tenant, params.name, { max, waitMs }),
            Effect.as(longRequests.closing, undefined)
          )
          if (deliveries === undefined) {
            return HttpServerResponse.jsonUnsafe({ deliveries: [] }, { headers: { connection: "close" } })
          }
          return {
            deliveries: deliveries.map((d) => ({
              deliveryId: d.deliveryId,
              attempt: d.attempt,
              event: Event.toRecorded(d.event)
            }))
          }
        })),

      ack: ({ params, payload }) => relocate(groups.ack(params.tenant, params.name, payload.ids)),

      nack: ({ params, payload }) =>
        relocate(groups.nack(params.tenant, params.name, payload.ids, { delayMs: payload.delayMs })),

      parked: ({ params, query }) =>
        relocate(Effect.gen(function*() {
          const limit = yield* optionalInt(query.limit, "query.limit")
          const parked = yield* groups.parked(params.tenant, params.name, { limit })
          return {
            parked: parked.map(parkedToWire)
          }
        })),

      replayParked: ({ params, payload }) => relocate(groups.replayParked(params.tenant, params.name, payload.ids)),

      listProjections: ({ params }) => relocate(Effect.map(projections.list(params.tenant), (names) => ({ names }))),

      defineProjection: ({ params, payload }) => {
        const { replace, start, ...definition } = payload
        return relocate(projections.define(params.tenant, params.name, definition, { replace, start }))
      },

      projection: ({ params }) => relocate(projections.status(params.tenant, params.name, { withState: true })),

      projectionState: ({ params, query }) => relocate(projections.state(params.tenant, params.name, query.key)),

      startProjection: ({ params }) => relocate(projections.start(params.tenant, params.name)),
      stopProjection: ({ params }) => relocate(projections.stop(params.tenant, params.name)),
      resetProjection: ({ params }) => relocate(projections.reset(params.tenant, params.name)),
      rebuildProjection: ({ params }) => relocate(projections.rebuild(params.tenant, params.name))
    })
  })
)

/** The handlers over the node's engine and services. */
export const layer = SubscriptionsHandlers
