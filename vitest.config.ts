import { defineConfig } from "vitest/config"

/**
 * Tests that measure time or throughput, or that kill and freeze processes of a 3-node cluster, run alone, one file
 * at a time, after the rest: on a 2-core machine a neighbour compiling or replaying a log would make their elections
 * and their 10% comparisons measure the neighbour. Everything else runs two files at a time.
 * The long-running fault tests sit behind CHRONOS_SOAK=1.
 */
const serial = [
  "test/nats-server.test.ts",
  "chaos/cluster.test.ts",
  "packages/cluster/test/LocalCluster.test.ts",
  "packages/cluster/test/NatsRunnerStorage.test.ts",
  "packages/engine/test/JetStreamLog.test.ts",
  "packages/engine/test/JetStreamLogTruncate.test.ts",
  "packages/storage/test/NatsSegmentStore.test.ts",
  "packages/cluster/test/ClusterForks.test.ts",
  "packages/cluster/test/ClusterConsumers.test.ts",
  "packages/server/test/SubscriptionsBackpressure.test.ts"
]

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    reporters: ["default", "./scripts/summaryReporter.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "parallel",
          include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "chaos/**/*.test.ts"],
          exclude: serial,
          maxWorkers: 2,
          sequence: { groupOrder: 0 }
        }
      },
      {
        extends: true,
        test: { name: "serial", include: serial, maxWorkers: 1, sequence: { groupOrder: 1 } }
      }
    ]
  }
})
