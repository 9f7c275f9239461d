/** The Chronos engine: partitions, their logs, and the gateway that validates, routes and merges. */
export * as Commit from "./Commit.ts"
export * as Engine from "./Engine.ts"
export * as EventLog from "./EventLog.ts"
export * as Partition from "./Partition.ts"
export * as PartitionEntity from "./PartitionEntity.ts"
