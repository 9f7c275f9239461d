/**
 * `cluster_status`: the health of the store as an agent needs it — partitions, who owns them, how much each holds,
 * and whether writes are waiting for durability (a partition whose assigned sequence runs ahead of its watermark has
 * commits in flight; one that stays ahead is stuck). This module owns that summary; per-partition detail is opt-in
 * because it is long on a 32-partition store and rarely what the question is.
 */
import { Effect, Schema } from "effect"
import * as ChronosTool from "./ChronosTool.ts"
import type { McpConfigShape } from "./McpConfig.ts"
import * as Render from "./Render.ts"
import { fromDomain } from "./ToolError.ts"

const PartitionOut = Schema.Struct({
  partition: Schema.Int,
  owner: Schema.String,
  events: Schema.Int,
  streams: Schema.Int,
  seq: Schema.Int,
  watermark: Schema.Int,
  inFlight: Schema.Int.annotate({ description: "seq - watermark: events accepted but not yet durable" })
})

export const ClusterStatusResult = Schema.Struct({
  partitions: Schema.Int,
  owners: Schema.Array(Schema.Struct({ owner: Schema.String, partitions: Schema.Int })),
  events: Schema.Int.annotate({ description: "Durable events in all tenants" }),
  streams: Schema.Int,
  inFlight: Schema.Int,
  detail: Schema.optionalKey(Schema.Array(PartitionOut)),
  note: Schema.optionalKey(Schema.String)
})
type ClusterStatusResult = typeof ClusterStatusResult.Type

export const clusterStatus = (_config: McpConfigShape) =>
  ChronosTool.make({
    name: "cluster_status",
    title: "Cluster status",
    description: `The store's health: partitions, which node owns each, events and streams held (all tenants), and writes in flight (accepted, not yet durable).

Use it when calls fail with Unavailable, when appends seem slow, or to report on the deployment. Not about a tenant's data (describe_store).
Reading it: inFlight > 0 for a moment is normal under writes; a partition that keeps a large inFlight is stuck or its log is slow. An error result (Unavailable) means a partition did not answer — retry shortly; in a cluster its shard may be moving to another node.
detail: true lists every partition.`,
    parameters: Schema.Struct({
      detail: Schema.optionalKey(Schema.Boolean.annotate({ description: "List every partition. Default false.", default: false }))
    }),
    output: ClusterStatusResult,
    hints: { readOnly: true, destructive: false, idempotent: true },
    run: (params, context) =>
      Effect.gen(function*() {
        const statuses = yield* Effect.mapError(context.engine.partitions, fromDomain)
        const owners = new Map<string, number>()
        let events = 0
        let streams = 0
        let inFlight = 0
        for (const s of statuses) {
          owners.set(s.owner, (owners.get(s.owner) ?? 0) + 1)
          events += s.events
          streams += s.streams
          inFlight += s.seq - s.watermark
        }
        const lagging = statuses.filter((s) => s.seq > s.watermark)
        const note = lagging.length > 0
          ? `${lagging.length} partitions have writes in flight: ${lagging.slice(0, 8).map((s) => `p${s.partition} (+${s.seq - s.watermark})`).join(", ")}`
          : undefined
        const detail = params.detail === true
          ? statuses.map((s) => ({ ...s, inFlight: s.seq - s.watermark }))
          : undefined
        const structured: ClusterStatusResult = Render.defined({
          partitions: statuses.length,
          owners: [...owners].map(([owner, partitions]) => ({ owner, partitions })),
          events,
          streams,
          inFlight,
          detail,
          note
        })
        const text = [
          `${statuses.length} partitions · ${events} events · ${streams} streams · in flight ${inFlight} · owners ` +
          [...owners].map(([o, n]) => `${o} (${n})`).join(", "),
          ...(detail === undefined ? [] : detail.map((p) =>
            `p${p.partition} ${p.owner} events ${p.events} streams ${p.streams} seq ${p.seq} watermark ${p.watermark}`
          )),
          ...(note === undefined ? [] : [`note: ${note}`])
        ].join("\n")
        return { structured, text }
      })
  })
