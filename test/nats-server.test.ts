// Real nats-server smoke tests: the binary we get must fence writes (expected last sequence) and an R3 stream
// must keep every acknowledged message through a kill -9 of its leader.
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamApiCodes, JetStreamApiError, StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JetStreamClient, JetStreamManager, PubAck } from "@nats-io/jetstream";
import { startNatsCluster, startNatsServer } from "./support/NatsServer.ts";
import type { NatsClusterHandle, NatsServerHandle } from "./support/NatsServer.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Retries `f` until it succeeds or `timeoutMs` passes (the last error is rethrown). */
async function retry<A>(f: () => Promise<A>, timeoutMs: number, pauseMs = 200): Promise<A> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(pauseMs);
    }
  }
}

/** The stored error of a rejected promise (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    const v = await p;
    throw new Error(`expected a rejection, got ${JSON.stringify(v)}`);
  } catch (e) {
    return e;
  }
}

async function monitorJson<A>(port: number, pathAndQuery: string): Promise<A> {
  const res = await fetch(`http://127.0.0.1:${port}${pathAndQuery}`);
  if (!res.ok) throw new Error(`GET ${pathAndQuery}: HTTP ${res.status}`);
  return (await res.json()) as A;
}

describe("nats-server (single node)", () => {
  let server: NatsServerHandle | undefined;
  let nc: NatsConnection | undefined;
  afterAll(async () => {
    await nc?.close().catch(() => {});
    await server?.stop();
  });

  it("fences publishes with expected last sequence on a file stream, and keeps them through kill -9", async () => {
    server = await startNatsServer();
    const varz = await monitorJson<{ version: string; max_payload: number; jetstream: { config: { sync_always?: boolean } } }>(
      server.monitorPort,
      "/varz",
    );
    const [major = 0, minor = 0] = varz.version.split(".").map(Number);
    expect(major * 100 + minor).toBeGreaterThanOrEqual(210);
    expect(varz.max_payload).toBe(8 * 1024 * 1024);
    expect(varz.jetstream.config.sync_always).toBe(true);

    nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const jsm: JetStreamManager = await jetstreamManager(nc);
    const js: JetStreamClient = jetstream(nc);
    await jsm.streams.add({ name: "FENCE", subjects: ["fence.>"], storage: StorageType.File, num_replicas: 1 });

    // Whole-stream fencing: expect.lastSequence.
    const a1 = await js.publish("fence.a", enc.encode("a1"), { expect: { lastSequence: 0 } });
    const a2 = await js.publish("fence.a", enc.encode("a2"), { expect: { lastSequence: a1.seq } });
    expect([a1.seq, a2.seq]).toEqual([1, 2]);
    const stale = await rejection(js.publish("fence.a", enc.encode("stale"), { expect: { lastSequence: a1.seq } }));
    expect(stale).toBeInstanceOf(JetStreamApiError);
    expect((stale as JetStreamApiError).code).toBe(JetStreamApiCodes.StreamWrongLastSequence);

    // Per-subject fencing (one entity = one subject): expect.lastSubjectSequence.
    const b1 = await js.publish("fence.b", enc.encode("b1"), { expect: { lastSubjectSequence: 0 } });
    expect(b1.seq).toBe(3);
    const staleSubject = await rejection(js.publish("fence.a", enc.encode("stale"), { expect: { lastSubjectSequence: a1.seq } }));
    expect(staleSubject).toBeInstanceOf(JetStreamApiError);

    // Of 20 concurrent writers with the same expectation exactly one wins.
    const race = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => js.publish("fence.b", enc.encode(`r${i}`), { expect: { lastSubjectSequence: b1.seq } })),
    );
    expect(race.filter((r) => r.status === "fulfilled")).toHaveLength(1);

    // Rejected publishes consume no sequence.
    let info = await jsm.streams.info("FENCE");
    expect(info.state.messages).toBe(4);
    expect(info.state.last_seq).toBe(4);

    // A crash (kill -9) and a restart on the same ports and store keep every acknowledged message.
    const oldPid = server.pid;
    server.kill("SIGKILL");
    await server.restart();
    expect(server.pid).not.toBe(oldPid);
    // A fresh connection: with the v3 client, a request issued while the old connection is still
    // reconnecting is lost and only fails after its 5 s timeout.
    await nc.close();
    nc = await connect({ servers: server.url });
    const jsm2 = await jetstreamManager(nc);
    info = await jsm2.streams.info("FENCE");
    expect(info.state.messages).toBe(4);
    const a = await jsm2.streams.getMessage("FENCE", { last_by_subj: "fence.a" });
    expect(a && dec.decode(a.data)).toBe("a2");
  });
});

describe("nats-server (3-node cluster)", () => {
  let cluster: NatsClusterHandle | undefined;
  let nc: NatsConnection | undefined;
  afterAll(async () => {
    await nc?.close().catch(() => {});
    await cluster?.stop();
  });

  it("keeps every acknowledged message of an R3 stream through kill -9 of the stream leader", async () => {
    const c = (cluster = await startNatsCluster({ size: 3 }));
    expect(c.urls).toHaveLength(3);
    // A short ping interval: a connection to a frozen (SIGSTOP) or killed server is noticed in ~2 s, not 4 minutes.
    nc = await connect({ servers: [...c.urls], maxReconnectAttempts: -1, reconnectTimeWait: 100, pingInterval: 1_000, maxPingOut: 2 });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await retry(
      () => jsm.streams.add({ name: "CHAOS", subjects: ["chaos.>"], storage: StorageType.File, num_replicas: 3 }),
      15_000,
    );

    // R3 fencing is correct on >= 2.10 (2.9.10 let all concurrent writers win).
    const first = await retry(() => js.publish("chaos.race", enc.encode("first"), { msgID: "race-first" }), 10_000);
    const race = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => js.publish("chaos.race", enc.encode(`r${i}`), { expect: { lastSubjectSequence: first.seq } })),
    );
    expect(race.filter((r) => r.status === "fulfilled")).toHaveLength(1);

    // Writers: every key is retried (same Msg-Id) until acknowledged.
    const acked = new Map<string, PubAck>();
    let errors = 0;
    const publishKey = (key: string): Promise<void> =>
      retry(
        async () => {
          try {
            acked.set(key, await js.publish(`chaos.${key}`, enc.encode(key), { msgID: key, timeout: 2_000 }));
          } catch (e) {
            errors++;
            throw e;
          }
        },
        // Generous: a leader election takes 4–8 s here, and much longer when the 2 cores are saturated.
        60_000,
        100,
      );
    const publishRange = async (from: number, to: number, inFlight = 16): Promise<void> => {
      let next = from;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < to) await publishKey(`k${next++}`);
        }),
      );
    };

    await publishRange(0, 100);
    const leaderName = (await jsm.streams.info("CHAOS")).cluster?.leader;
    const victim = c.nodes.find((n) => n.name === leaderName);
    expect(victim, `stream leader ${leaderName}`).toBeDefined();
    victim!.kill("SIGKILL");
    const t0 = Date.now();
    await publishRange(100, 250);
    const failoverMs = Date.now() - t0;

    // Restart the killed node; it must catch up.
    await victim!.restart();
    await retry(
      async () => {
        const jsz = await monitorJson<{ account_details?: Array<{ stream_detail?: Array<{ name: string; state: { last_seq: number } }> }> }>(
          victim!.monitorPort,
          "/jsz?streams=true",
        );
        const st = jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === "CHAOS");
        if (!st || st.state.last_seq < 251) throw new Error(`${victim!.name} not caught up: ${JSON.stringify(st?.state)}`);
      },
      15_000,
    );

    // Pause one follower (SIGSTOP): the other two still form a quorum. Not the server this client is connected to:
    // that would test the client's stale-connection detection, not the stream's quorum.
    const leaderNow = (await retry(() => jsm.streams.info("CHAOS"), 10_000)).cluster?.leader;
    const connectedTo = nc.info?.server_name;
    const follower = c.nodes.find((n) => n.name !== leaderNow && n.name !== connectedTo) ?? c.nodes.find((n) => n.name !== leaderNow)!;
    follower.kill("SIGSTOP");
    try {
      await publishRange(250, 300);
    } finally {
      follower.kill("SIGCONT");
    }

    // Every acknowledged key is stored exactly once.
    expect(acked.size).toBe(300);
    const info = await retry(() => jsm.streams.info("CHAOS"), 10_000);
    expect(info.state.messages).toBe(1 + 1 + 300); // "first", the race winner, the keys
    const seen = new Map<string, number>();
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await retry(() => jsm.streams.getMessage("CHAOS", { seq }), 10_000);
      if (m && m.subject.startsWith("chaos.k")) seen.set(dec.decode(m.data), (seen.get(dec.decode(m.data)) ?? 0) + 1);
    }
    const lost = [...acked.keys()].filter((k) => !seen.has(k));
    const duplicated = [...seen].filter(([, n]) => n > 1);
    expect({ lost, duplicated }).toEqual({ lost: [], duplicated: [] });
    console.info(`R3 failover: leader ${leaderName} killed; 150 publishes took ${failoverMs} ms with ${errors} retried errors`);
  });
});
