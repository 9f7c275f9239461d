/**
 * The operator part of the HTTP API: `POST /v1/admin/seal` seals every partition this node owns into cold-tier
 * segments now (see `@chronos/storage`). Kept in its own group so that admin endpoints can be secured and grown
 * apart from the data API; `Api.ChronosApi` only adds it.
 */
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "effect/http-api"
import { CorruptData, Unavailable } from "./Errors.ts"

export const SealedSegment = Schema.Struct({
  /** Where the segment is (a path under `<dataDir>/segments/` in embedded mode). */
  location: Schema.String,
  fromSeq: Schema.Int,
  toSeq: Schema.Int,
  rows: Schema.Int,
  bytes: Schema.Int
})
export type SealedSegment = typeof SealedSegment.Type

export const SealResult = Schema.Struct({
  partitions: Schema.Array(Schema.Struct({
    partition: Schema.Int,
    /** The last sealed sequence after the seal (0: nothing sealed). The log below it was truncated. */
    sealedThrough: Schema.Int,
    /** Segments written by this call (empty when nothing new was durable). */
    segments: Schema.Array(SealedSegment)
  }))
})
export type SealResult = typeof SealResult.Type

export class AdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("seal", "/v1/admin/seal", {
      success: SealResult,
      error: [Unavailable, CorruptData]
    })
  )
  .annotateMerge(OpenApi.annotations({
    title: "Admin",
    description: "Operator actions: seal the durable log of every partition owned by this node into Parquet segments"
  })) {}
