/**
 * `@chronos/cluster`: coordination of Chronos runners with `effect/cluster` and no SQL — the cluster-wide sharding
 * settings (`ClusterConfig`) and the runner registry + shard leases on NATS JetStream KV (`NatsRunnerStorage`).
 */
export * as ClusterConfig from "./ClusterConfig.ts"
export * as NatsRunnerStorage from "./NatsRunnerStorage.ts"
