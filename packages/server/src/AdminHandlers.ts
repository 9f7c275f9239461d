/**
 * The handler of the `admin` API group: `POST /v1/admin/seal` seals, now, every partition this node owns into
 * cold-tier segments (`ColdTier.sealNow`) and reports what it wrote. A node without a cold tier (memory or
 * JetStream log: no segment store is configured there yet) answers a non-retryable `Unavailable` saying so.
 */
import { Effect, Option } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Errors } from "@chronos/domain"
import { ColdTier } from "@chronos/storage/ColdTier"
import { Api } from "./HttpHandlers.ts"

export const AdminHandlers = HttpApiBuilder.group(
  Api,
  "admin",
  Effect.fnUntraced(function*(handlers) {
    const tier = yield* Effect.serviceOption(ColdTier)
    return handlers.handleAll({
      seal: () =>
        Option.isNone(tier)
          ? Effect.fail(new Errors.Unavailable({
            message: "this node has no cold tier (segments are configured for the file log only)",
            retryable: false
          }))
          : tier.value.sealNow().pipe(
            Effect.map((reports) => ({
              partitions: reports.map((r) => ({
                partition: r.partition,
                sealedThrough: r.sealedThrough,
                segments: r.segments.map((s) => ({
                  location: s.location,
                  fromSeq: s.fromSeq,
                  toSeq: s.toSeq,
                  rows: s.rows,
                  bytes: s.bytes
                }))
              }))
            })),
            Effect.catchTags({
              SegmentStoreError: (e) =>
                Effect.fail(new Errors.Unavailable({ message: `segment store: ${e.location}: ${e.message}`, retryable: true })),
              LogUnavailable: (e) => Effect.fail(new Errors.Unavailable({ message: e.message, retryable: true })),
              LogFenced: (e) => Effect.fail(new Errors.Unavailable({ message: e.message, retryable: true }))
            })
          )
    })
  })
)
