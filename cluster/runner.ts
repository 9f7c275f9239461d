/**
 * The entry point of one Chronos cluster runner process (see `packages/cluster/src/Runner.ts`):
 *
 *   node cluster/runner.ts --name r1 --http-port 3900 --runner-port 3910 \
 *     --nats nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 [--replicas 3] [--partitions 32]
 *     [--host 127.0.0.1] [--runner-host 127.0.0.1] [--runner-listen-host 0.0.0.0] [--bucket-prefix chronos_cluster]
 *
 * `--host` is the HTTP interface; `--runner-host` the address other runners use to reach this one. Every other
 * setting comes from `CHRONOS_*` environment variables (config/ChronosConfig.ts). Runs until SIGINT/SIGTERM, then
 * hands its shards off and exits 0.
 */
import { parseRunnerArgs } from "../packages/cluster/src/RunnerArgs.ts"
import * as Runner from "../packages/cluster/src/Runner.ts"

const parsed = parseRunnerArgs(process.argv.slice(2))
if (parsed._tag === "Help") {
  process.stdout.write(`${parsed.usage}\n`)
  process.exit(0)
}
if (parsed._tag === "Invalid") {
  process.stderr.write(`${parsed.message}\n${parsed.usage}\n`)
  process.exit(2)
}
Runner.run(parsed.options)
