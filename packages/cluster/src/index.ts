/**
 * `@chronos/cluster`: Chronos as a cluster of runners, coordinated with `effect/cluster` and no SQL —
 *  - `ClusterConfig`: the cluster-wide sharding settings and failover knobs (identical on every runner and client);
 *  - `NatsRunnerStorage`: the runner registry and shard leases on NATS JetStream KV;
 *  - `Runner` / `RunnerArgs`: one runner process (a node on the JetStream log, a member of the cluster) and its
 *    command line (`cluster/runner.ts`);
 *  - `LocalCluster`: N nats-servers + N runners on loopback (`chronos cluster up|down|status`, `cluster/cli.ts`).
 */
export * as ClusterConfig from "./ClusterConfig.ts"
export * as LocalCluster from "./LocalCluster.ts"
export * as NatsRunnerStorage from "./NatsRunnerStorage.ts"
export * as Runner from "./Runner.ts"
export * as RunnerArgs from "./RunnerArgs.ts"
