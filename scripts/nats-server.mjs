#!/usr/bin/env node
// Locate (or fetch, without root) a nats-server binary >= 2.10 for Chronos' tests and tools.
//
// Resolution order:
//   1. $CHRONOS_NATS_SERVER (explicit override; must be >= 2.10),
//   2. a `nats-server` on PATH whose version is >= 2.10 (2.9.x is refused: R3 fencing is racy there),
//   3. the project-local cache <repo>/.cache/nats-server/bin/nats-server,
//   4. a download of the Debian package (sid, then trixie) with apt-get into the project-local cache,
//      unpacked with dpkg-deb -x. Nothing outside <repo>/.cache is written; no root needed.
//
// Usage:  import { ensureNatsServer } from "./scripts/nats-server.mjs"; const bin = await ensureNatsServer();
//         node scripts/nats-server.mjs          # prints the path and version
//
// Plain JavaScript ESM: runs on Node 20 and 22.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CACHE_DIR = path.join(REPO_ROOT, ".cache", "nats-server");
const BIN_DIR = path.join(CACHE_DIR, "bin");
const CACHED_BIN = path.join(BIN_DIR, "nats-server");
const STAMP = path.join(BIN_DIR, "VERSION");
const LOCK = path.join(CACHE_DIR, "download.lock");

const MIN_VERSION = [2, 10, 0];
/** Debian suites tried in order: sid has the newest (2.15.x), trixie has 2.10.x. */
const SUITES = ["sid", "trixie"];
const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";
const DEFAULT_MIRROR = "http://deb.debian.org/debian";
const LOCK_STALE_MS = 10 * 60_000;
const LOCK_WAIT_MS = 10 * 60_000;
const APT_TIMEOUT_MS = 5 * 60_000;

const INSTALL_HINT =
  "Install nats-server >= 2.10 yourself, then either put it on PATH or point Chronos at it with\n" +
  "  export CHRONOS_NATS_SERVER=/path/to/nats-server\n" +
  "Ways to get it: a release archive from https://github.com/nats-io/nats-server/releases (a single static binary),\n" +
  "`brew install nats-server` (macOS/Linuxbrew), `go install github.com/nats-io/nats-server/v2@latest`,\n" +
  "or the Debian trixie/sid package (bookworm's 2.9.10 is too old).";

const progress = (msg) => process.stderr.write(`[nats-server] ${msg}\n`);

function run(cmd, args, { cwd, timeout = 30_000 } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, LC_ALL: "C" } },
      (error, stdout, stderr) => resolve({ error, code: error ? (error.code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) }));
  });
}

function parseVersion(text) {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? { text: `${m[1]}.${m[2]}.${m[3]}`, parts: [Number(m[1]), Number(m[2]), Number(m[3])] } : undefined;
}

function versionAtLeast(parts, min) {
  for (let i = 0; i < 3; i++) if (parts[i] !== min[i]) return parts[i] > min[i];
  return true;
}

/** Runs `<bin> --version`; returns e.g. "2.15.1", or throws with a clear message. */
export async function natsServerVersion(bin) {
  const r = await run(bin, ["--version"], { timeout: 15_000 });
  const v = parseVersion(r.stdout + r.stderr);
  if (r.code !== 0 || !v) {
    throw new Error(`cannot run "${bin} --version": ${(r.error && r.error.message) || r.stderr.trim() || "no version in output"}`);
  }
  return v.text;
}

async function checkedVersion(bin) {
  const v = await natsServerVersion(bin);
  return { version: v, ok: versionAtLeast(parseVersion(v).parts, MIN_VERSION) };
}

async function isExecutable(p) {
  try {
    const st = await fsp.stat(p);
    if (!st.isFile()) return false;
    await fsp.access(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function findOnPath(name) {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.resolve(dir, name);
    if (await isExecutable(p)) return p;
  }
  return undefined;
}

async function readCached() {
  if (!(await isExecutable(CACHED_BIN))) return undefined;
  try {
    const stamp = (await fsp.readFile(STAMP, "utf8")).trim();
    const st = await fsp.stat(CACHED_BIN);
    const [version, size] = stamp.split(/\s+/);
    if (version && Number(size) === st.size) return version;
  } catch {
    // no or bad stamp: fall through to running the binary
  }
  try {
    const { version, ok } = await checkedVersion(CACHED_BIN);
    if (!ok) return undefined;
    await writeStamp(version);
    return version;
  } catch {
    return undefined;
  }
}

async function writeStamp(version) {
  const st = await fsp.stat(CACHED_BIN);
  const tmp = `${STAMP}.${process.pid}.tmp`;
  await fsp.writeFile(tmp, `${version} ${st.size}\n`);
  await fsp.rename(tmp, STAMP);
}

// ---------------------------------------------------------------------------------------------
// Lock: an exclusively created file holding "pid host time". A lock whose process is gone (same
// host) or that is older than LOCK_STALE_MS is taken over.

async function acquireLock() {
  await fsp.mkdir(CACHE_DIR, { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;
  let announced = false;
  for (;;) {
    try {
      const fh = await fsp.open(LOCK, "wx");
      await fh.writeFile(`${process.pid} ${os.hostname()} ${new Date().toISOString()}\n`);
      await fh.close();
      return async () => { await fsp.rm(LOCK, { force: true }); };
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
    }
    if (await lockIsStale()) {
      await fsp.rm(LOCK, { force: true });
      continue;
    }
    // Someone else is downloading: wait for them, and use their result as soon as it appears.
    if (!announced) {
      progress(`waiting for another process downloading nats-server (lock ${LOCK})`);
      announced = true;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${LOCK_WAIT_MS / 1000}s waiting for the lock ${LOCK}; remove it if no download is running`);
    }
    await new Promise((r) => setTimeout(r, 250));
    if (await readCached()) return undefined; // the other process finished
  }
}

async function lockIsStale() {
  try {
    const [st, text] = await Promise.all([fsp.stat(LOCK), fsp.readFile(LOCK, "utf8")]);
    if (Date.now() - st.mtimeMs > LOCK_STALE_MS) return true;
    const [pidText, host] = text.trim().split(/\s+/);
    const pid = Number(pidText);
    if (host === os.hostname() && Number.isInteger(pid) && pid > 0) {
      try {
        process.kill(pid, 0);
      } catch (e) {
        return e.code === "ESRCH";
      }
    }
    return false;
  } catch {
    return false; // vanished or being written: retry the open
  }
}

// ---------------------------------------------------------------------------------------------
// Download via apt-get into <repo>/.cache/nats-server/apt/<suite>, unpack with dpkg-deb -x.

async function debianMirror() {
  if (process.env.CHRONOS_DEBIAN_MIRROR) return process.env.CHRONOS_DEBIAN_MIRROR;
  // Prefer the machine's own Debian mirror (it may be the only one reachable).
  const candidates = [];
  try {
    for (const f of await fsp.readdir("/etc/apt/sources.list.d")) {
      if (f.endsWith(".sources")) candidates.push(path.join("/etc/apt/sources.list.d", f));
    }
  } catch {
    // none
  }
  for (const f of candidates) {
    try {
      const text = await fsp.readFile(f, "utf8");
      for (const stanza of text.split(/\n\s*\n/)) {
        const uris = /^URIs:\s*(.+)$/m.exec(stanza);
        const suites = /^Suites:\s*(.+)$/m.exec(stanza);
        if (!uris || !suites || /-security/.test(suites[1])) continue;
        for (const uri of uris[1].trim().split(/\s+/)) if (/\/debian\/?$/.test(uri)) return uri.replace(/\/$/, "");
      }
    } catch {
      // unreadable
    }
  }
  try {
    const text = await fsp.readFile("/etc/apt/sources.list", "utf8");
    for (const line of text.split("\n")) {
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+(\S+)/.exec(line);
      if (m && !/-security/.test(m[2])) return m[1];
    }
  } catch {
    // none
  }
  return DEFAULT_MIRROR;
}

async function debianPreflight() {
  const missing = [];
  for (const tool of ["apt-get", "dpkg-deb", "dpkg"]) if (!(await findOnPath(tool))) missing.push(tool);
  if (missing.length) return `this machine has no ${missing.join("/")} (not Debian-family), so nats-server cannot be fetched automatically`;
  if (!fs.existsSync(DEBIAN_KEYRING)) {
    return `${DEBIAN_KEYRING} is missing (not a Debian system? On Ubuntu: apt-get install debian-archive-keyring), so Debian packages cannot be verified`;
  }
  return undefined;
}

function aptOptions(dir, sourcesDir, arch) {
  const o = [
    `Dir::Etc::SourceList=/dev/null`,
    `Dir::Etc::SourceParts=${sourcesDir}`,
    `Dir::Etc::Preferences=/dev/null`,
    `Dir::Etc::PreferencesParts=${path.join(dir, "preferences")}`,
    `Dir::State::Lists=${path.join(dir, "lists")}`,
    `Dir::Cache=${path.join(dir, "cache")}`,
    `Dir::Cache::archives=${path.join(dir, "cache", "archives")}`,
    `Dir::Cache::pkgcache=`,
    `Dir::Cache::srcpkgcache=`,
    `APT::Architecture=${arch}`,
    `APT::Architectures=${arch}`,
    `Acquire::Languages=none`,
    `Debug::NoLocking=1`,
  ];
  // As root apt drops privileges to _apt, which cannot write our cache: keep the current user.
  if (typeof process.getuid === "function" && process.getuid() === 0) o.push("APT::Sandbox::User=root");
  return o.flatMap((x) => ["-o", x]);
}

function tail(text, n = 15) {
  return text.trim().split("\n").slice(-n).join("\n");
}

async function downloadFromSuite(suite, mirror, arch) {
  const dir = path.join(CACHE_DIR, "apt", suite);
  const sourcesDir = path.join(dir, "sources");
  await fsp.rm(dir, { recursive: true, force: true });
  for (const d of ["lists/partial", "cache/archives/partial", "sources", "preferences", "debs"]) await fsp.mkdir(path.join(dir, d), { recursive: true });
  await fsp.writeFile(
    path.join(sourcesDir, `${suite}.sources`),
    `Types: deb\nURIs: ${mirror}\nSuites: ${suite}\nComponents: main\nSigned-By: ${DEBIAN_KEYRING}\n`,
  );
  const opts = aptOptions(dir, sourcesDir, arch);

  progress(`apt-get update (Debian ${suite} from ${mirror}) ...`);
  const up = await run("apt-get", [...opts, "-q", "update"], { timeout: APT_TIMEOUT_MS });
  if (up.code !== 0 || /^(E|Err):/m.test(up.stdout + up.stderr)) {
    throw new Error(`apt-get update for ${suite} failed:\n${tail(up.stdout + up.stderr)}`);
  }
  progress(`apt-get download nats-server (${suite}) ...`);
  const debs = path.join(dir, "debs");
  const dl = await run("apt-get", [...opts, "-q", "download", "nats-server"], { cwd: debs, timeout: APT_TIMEOUT_MS });
  const deb = (await fsp.readdir(debs)).find((f) => /^nats-server_.*\.deb$/.test(f));
  if (dl.code !== 0 || !deb) throw new Error(`apt-get download nats-server (${suite}) failed:\n${tail(dl.stdout + dl.stderr)}`);

  progress(`unpacking ${deb} ...`);
  const x = path.join(dir, "x");
  const ex = await run("dpkg-deb", ["-x", path.join(debs, deb), x], { timeout: 120_000 });
  if (ex.code !== 0) throw new Error(`dpkg-deb -x ${deb} failed:\n${tail(ex.stderr)}`);
  const inside = ["usr/sbin/nats-server", "usr/bin/nats-server"].map((p) => path.join(x, p)).find((p) => fs.existsSync(p));
  if (!inside) throw new Error(`${deb} does not contain usr/sbin/nats-server`);
  const { version, ok } = await checkedVersion(inside);
  if (!ok) throw new Error(`Debian ${suite} has nats-server ${version}, older than ${MIN_VERSION.join(".")}`);

  await fsp.mkdir(BIN_DIR, { recursive: true });
  const tmp = `${CACHED_BIN}.${process.pid}.tmp`;
  await fsp.copyFile(inside, tmp);
  await fsp.chmod(tmp, 0o755);
  await fsp.rename(tmp, CACHED_BIN);
  await writeStamp(version);
  await fsp.writeFile(path.join(BIN_DIR, "SOURCE"), `${deb} from ${mirror} ${suite} at ${new Date().toISOString()}\n`);
  // The apt indexes are tens of MB: keep only the binary.
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.rmdir(path.join(CACHE_DIR, "apt")).catch(() => {});
  return version;
}

async function download() {
  const problem = await debianPreflight();
  if (problem) throw new Error(`nats-server >= ${MIN_VERSION.join(".")} not found: ${problem}.\n${INSTALL_HINT}`);
  const arch = (await run("dpkg", ["--print-architecture"])).stdout.trim() || "amd64";
  const mirror = await debianMirror();
  const failures = [];
  const t0 = Date.now();
  for (const suite of SUITES) {
    try {
      const version = await downloadFromSuite(suite, mirror, arch);
      progress(`nats-server ${version} (Debian ${suite}) cached in ${CACHED_BIN} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      return version;
    } catch (e) {
      failures.push(`- ${suite}: ${e.message}`);
      progress(`Debian ${suite} did not work: ${e.message.split("\n").filter(Boolean).slice(0, 2).join(" | ")}`);
    }
  }
  throw new Error(
    `could not download nats-server >= ${MIN_VERSION.join(".")} from Debian (${mirror}):\n${failures.join("\n")}\n${INSTALL_HINT}`,
  );
}

// ---------------------------------------------------------------------------------------------

let memo;

/** Returns the absolute path of a nats-server binary >= 2.10, downloading it into <repo>/.cache if needed. */
export async function ensureNatsServer() {
  memo ??= resolveNatsServer().catch((e) => {
    memo = undefined;
    throw e;
  });
  return memo;
}

async function resolveNatsServer() {
  const override = process.env.CHRONOS_NATS_SERVER;
  if (override) {
    const p = path.resolve(override);
    if (!(await isExecutable(p))) throw new Error(`CHRONOS_NATS_SERVER=${override}: not an executable file`);
    const { version, ok } = await checkedVersion(p);
    if (!ok) {
      throw new Error(`CHRONOS_NATS_SERVER=${override} is nats-server ${version}; Chronos needs >= ${MIN_VERSION.join(".")} (2.9.x has racy R3 fencing and no sync_interval)`);
    }
    return p;
  }

  const onPath = await findOnPath("nats-server");
  if (onPath) {
    try {
      const { version, ok } = await checkedVersion(onPath);
      if (ok) return onPath;
      if (!(await readCached())) progress(`ignoring ${onPath} (version ${version} < ${MIN_VERSION.join(".")})`);
    } catch (e) {
      progress(`ignoring ${onPath}: ${e.message}`);
    }
  }

  if (await readCached()) return CACHED_BIN;

  const release = await acquireLock();
  if (!release) return CACHED_BIN; // another process downloaded it while we waited
  try {
    if (await readCached()) return CACHED_BIN;
    await download();
    return CACHED_BIN;
  } finally {
    await release();
  }
}

// ---------------------------------------------------------------------------------------------

const invokedDirectly = (() => {
  if (!process.argv[1]) return false;
  try {
    return import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  try {
    const bin = await ensureNatsServer();
    console.log(`${bin}\nnats-server ${await natsServerVersion(bin)}`);
  } catch (e) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exitCode = 1;
  }
}
