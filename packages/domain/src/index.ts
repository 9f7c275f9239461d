/** The shared vocabulary of Chronos: identifiers, events, errors, partitioning and the HTTP API definition. */
export * as Api from "./Api.ts"
export * as AsOf from "./AsOf.ts"
export * as Errors from "./Errors.ts"
export * as Event from "./Event.ts"
export * as ExpectedVersion from "./ExpectedVersion.ts"
export * as Ids from "./Ids.ts"
export * as Partitioning from "./Partitioning.ts"
export * as Reducer from "./Reducer.ts"
