import { defineConfig } from "vitest/config"

// Tests start real nats-server processes and child processes; files run in parallel workers (2 cores), and the
// long-running fault tests sit behind CHRONOS_SOAK=1.
export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "chaos/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", "./scripts/summaryReporter.ts"]
  }
})
