/**
 * The fork part of the HTTP API: create, list, get, diff, merge and discard copy-on-write forks of a tenant's
 * history (`Fork` has the shapes). Reads and appends *through* a fork are the ordinary stream and query endpoints
 * with `?fork=<forkId>`; this group only manages forks. Kept in its own group; `Api.ChronosApi` only adds it.
 */
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "effect/http-api"
import { InvalidRequest, LimitExceeded, Unavailable } from "./Errors.ts"
import {
  CreateForkRequest,
  DiffResult,
  DiscardResult,
  ForkInfo,
  ForkList,
  ForkMergeConflict,
  ForkNotFound,
  MergeRequest,
  MergeResult
} from "./Fork.ts"

const tenantParams = { tenant: Schema.String }
const forkParams = { tenant: Schema.String, forkId: Schema.String }

export class ForksGroup extends HttpApiGroup.make("forks")
  .add(
    HttpApiEndpoint.post("create", "/v1/tenants/:tenant/forks", {
      params: tenantParams,
      payload: CreateForkRequest,
      success: ForkInfo.pipe(HttpApiSchema.status(201)),
      error: [InvalidRequest, LimitExceeded, ForkNotFound, Unavailable]
    }),
    HttpApiEndpoint.get("list", "/v1/tenants/:tenant/forks", {
      params: tenantParams,
      success: ForkList,
      error: [InvalidRequest, Unavailable]
    }),
    HttpApiEndpoint.get("get", "/v1/tenants/:tenant/forks/:forkId", {
      params: forkParams,
      success: ForkInfo,
      error: [InvalidRequest, ForkNotFound, Unavailable]
    }),
    HttpApiEndpoint.get("diff", "/v1/tenants/:tenant/forks/:forkId/diff", {
      params: forkParams,
      success: DiffResult,
      error: [InvalidRequest, ForkNotFound, Unavailable]
    }),
    HttpApiEndpoint.post("merge", "/v1/tenants/:tenant/forks/:forkId/merge", {
      params: forkParams,
      payload: MergeRequest,
      success: MergeResult,
      error: [ForkMergeConflict, InvalidRequest, LimitExceeded, ForkNotFound, Unavailable]
    }),
    HttpApiEndpoint.delete("discard", "/v1/tenants/:tenant/forks/:forkId", {
      params: forkParams,
      success: DiscardResult,
      error: [InvalidRequest, ForkNotFound, Unavailable]
    })
  )
  .annotateMerge(OpenApi.annotations({
    title: "Forks",
    description: "Copy-on-write sandboxes of a tenant's history: reads see the parent at `base` plus the fork's own " +
      "events (`?fork=<forkId>` on any stream or query endpoint); an explicit merge brings the fork's events back"
  })) {}
