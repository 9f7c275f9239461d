/**
 * The HTTP API of a Chronos node, defined once and shared: the server implements it, the client SDK is derived
 * from it (`HttpApiClient`), and `/openapi.json` is generated from it, so server, client and docs cannot drift.
 */
import { Schema } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, OpenApi } from "effect/http-api"
import { InvalidRequest, LimitExceeded, StreamNotFound, Unavailable, WrongExpectedVersion, CorruptData } from "./Errors.ts"
import { AppendRequest, AppendResult, PartitionsResult, ReadResult, StateResult } from "./Event.ts"
import { ForksGroup } from "./ForksApi.ts"
import { AdminGroup } from "./AdminApi.ts"
import { SubscriptionsGroup } from "./SubscriptionsApi.ts"
import { SearchGroup } from "./SearchApi.ts"
import { RetentionGroup } from "./RetentionApi.ts"

/**
 * Turns request decoding failures (malformed JSON, unknown fields, invalid ids, wrong types) into a typed
 * `InvalidRequest` that names the field, instead of an empty 400. Implemented by the server only.
 */
export class RequestValidation extends HttpApiMiddleware.Service<RequestValidation>()(
  "chronos/domain/Api/RequestValidation",
  { error: InvalidRequest }
) {}

const tenantParams = { tenant: Schema.String }
const streamParams = { tenant: Schema.String, stream: Schema.String }
/**
 * `?fork=<forkId>`: the request goes to that fork of the tenant (see `ForksApi`). An unknown, discarded or expired
 * fork is a 404 `ForkNotFound`. (The append endpoint takes `?fork=` too, read from the URL: declaring a query there,
 * or `ForkNotFound` among these endpoints' errors, would change the SDK's types, which must change with it.)
 */
const fork = Schema.optionalKey(Schema.String)

export class SystemGroup extends HttpApiGroup.make("system", { topLevel: true })
  .add(
    HttpApiEndpoint.get("health", "/health", {
      success: Schema.Struct({
        status: Schema.Literal("ok"),
        partitions: Schema.Int,
        /** The runner address of this gateway when it is a cluster runner (how `/v1/partitions` names owners). */
        runner: Schema.optionalKey(Schema.String)
      })
    }),
    HttpApiEndpoint.get("partitions", "/v1/partitions", {
      success: PartitionsResult,
      error: [Unavailable]
    })
  ) {}

export class StreamsGroup extends HttpApiGroup.make("streams")
  .add(
    HttpApiEndpoint.post("append", "/v1/tenants/:tenant/streams/:stream/events", {
      params: streamParams,
      payload: AppendRequest,
      success: AppendResult,
      error: [WrongExpectedVersion, InvalidRequest, LimitExceeded, Unavailable]
    }),
    HttpApiEndpoint.get("read", "/v1/tenants/:tenant/streams/:stream/events", {
      params: streamParams,
      query: {
        fromVersion: Schema.optionalKey(Schema.String),
        limit: Schema.optionalKey(Schema.String),
        direction: Schema.optionalKey(Schema.Literals(["forward", "backward"])),
        asOf: Schema.optionalKey(Schema.String),
        fork
      },
      success: ReadResult,
      error: [InvalidRequest, LimitExceeded, Unavailable, CorruptData]
    }),
    HttpApiEndpoint.get("state", "/v1/tenants/:tenant/streams/:stream/state", {
      params: streamParams,
      query: {
        asOf: Schema.optionalKey(Schema.String),
        reducer: Schema.optionalKey(Schema.String),
        fork
      },
      success: StateResult,
      error: [InvalidRequest, StreamNotFound, Unavailable, CorruptData]
    })
  )
  .annotateMerge(OpenApi.annotations({ title: "Streams", description: "Append to and read one stream" })) {}

export class QueriesGroup extends HttpApiGroup.make("queries")
  .add(
    HttpApiEndpoint.get("events", "/v1/tenants/:tenant/events", {
      params: tenantParams,
      query: {
        types: Schema.optionalKey(Schema.String),
        since: Schema.optionalKey(Schema.String),
        until: Schema.optionalKey(Schema.String),
        asOf: Schema.optionalKey(Schema.String),
        limit: Schema.optionalKey(Schema.String),
        after: Schema.optionalKey(Schema.String),
        fork
      },
      success: ReadResult,
      error: [InvalidRequest, LimitExceeded, Unavailable, CorruptData]
    }),
    HttpApiEndpoint.get("partitionEvents", "/v1/tenants/:tenant/partitions/:partition/events", {
      params: { tenant: Schema.String, partition: Schema.String },
      query: {
        fromSeq: Schema.optionalKey(Schema.String),
        types: Schema.optionalKey(Schema.String),
        asOf: Schema.optionalKey(Schema.String),
        limit: Schema.optionalKey(Schema.String),
        fork
      },
      success: ReadResult,
      error: [InvalidRequest, LimitExceeded, Unavailable, CorruptData]
    })
  )
  .annotateMerge(OpenApi.annotations({ title: "Queries", description: "Cross-stream reads with filters and time travel" })) {}

export class ChronosApi extends HttpApi.make("chronos")
  .add(SystemGroup)
  .add(StreamsGroup)
  .add(QueriesGroup)
  .add(ForksGroup)
  .add(SubscriptionsGroup)
  .add(SearchGroup)
  .add(RetentionGroup)
  .add(AdminGroup)
  .middleware(RequestValidation)
  .annotateMerge(OpenApi.annotations({
    title: "Chronos",
    description: "An AI-native, distributed event store: append-only streams with optimistic concurrency, " +
      "gapless versions and time travel."
  })) {}
