/**
 * myproxy benchmark: `npm run bench` (builds dist/, then runs this file).
 *
 * In one run it starts a throwaway MariaDB (test/helpers/mariadb.ts), loads
 * the sysbench oltp_point_select tables directly, starts the built daemon
 * (bin/myproxy.js) on a temporary socket and measures, interleaving direct and
 * proxied runs:
 *   1. sysbench oltp_point_select QPS, prepared (--db-ps-mode=auto) and text
 *      (--db-ps-mode=disable) protocol; optionally through a socat
 *      fork-per-connection byte relay as well;
 *   2. logins per second from separate client processes (bench/login-worker.ts),
 *      direct, through the daemon connecting to the MariaDB socket, and
 *      (unless BENCH_CLUSTER=0) through a second daemon that connects via
 *      mysql_cluster() over three symlinks to that socket (three nodes for the
 *      rendezvous hashing, monitored with a login and read_only check), to
 *      show what the cluster path costs per login;
 *   3. the daemon's RSS per idle, logged-in proxied connection (connections
 *      held by bench/conn-holder.ts, measured on a fresh daemon);
 * and prints a Markdown summary for docs/benchmarks.md.
 *
 * With BENCH_PEER=/path/to/binary it also measures another myproxy-compatible
 * daemon (e.g. CM4all's C++ cm4all-myproxy), run as `BIN --config FILE` with
 * the same generated Lua configuration as ours, in the same interleaved rounds:
 * throughput (its CPU per query), logins (its CPU per login) and, on a fresh
 * daemon of its own, memory per idle connection; the summary gives ratios to
 * direct and ours ÷ peer.
 *
 * Settings (environment):
 *   BENCH_ROUNDS        rounds of every interleaved comparison     (3)
 *   BENCH_TIME          seconds per sysbench run                   (10)
 *   BENCH_THREADS       sysbench threads                           (8)
 *   BENCH_WARMUP        seconds of unrecorded warm-up per target   (3; 0 = none)
 *   BENCH_LOGIN_WARMUP  seconds of unrecorded login loops per target before the login rounds
 *                       (10; 0 = none): V8 compiles the login path over its first ~10,000
 *                       logins, and a long-running daemon is measured warm (BENCH_WARMUP=0: none)
 *   BENCH_LOGIN_TIME    seconds per login run                      (BENCH_TIME)
 *   BENCH_LOGIN_CLIENTS login client processes                     (4)
 *   BENCH_CONNECTIONS   idle connections for the memory test       (1000)
 *   BENCH_SETTLE        idle seconds before the memory samples     (15)
 *   BENCH_MEMORY_BURST  seconds of logins (BENCH_LOGIN_CLIENTS loops) before the baseline of a
 *                       second memory test on another fresh daemon: idle memory once the login
 *                       path is compiled and the allocators have grown (10; 0 = skip)
 *   BENCH_SOCAT         1 = also measure a socat relay, 0 = skip   (1 if socat is installed)
 *   BENCH_RELAY         native (default) or js: the daemon's --relay
 *   BENCH_CLUSTER       1 = also measure logins through mysql_cluster(), 0 = skip (1)
 *   BENCH_TRACKING      1 = also measure a daemon with --no-response-tracking (what tracking costs) (1)
 *   BENCH_HOOKS         1 = also measure a daemon whose handler has an on_query that returns nothing (0)
 *   BENCH_WORKERS       N ≥ 2 = also measure `myproxy --workers N` (throughput and logins in the same rounds,
 *                       idle memory on a fresh one: the RSS of all its processes)                   (0)
 *   BENCH_QUICK         1 = only the sysbench runs (no logins, memory, cluster), then the medians
 *                       of QPS and daemon CPU per query and, with BENCH_HOOKS, what the empty
 *                       on_query adds per query (0); `npm run bench:hooks` runs it that way
 *   BENCH_POOL          1 = also measure logins through a daemon whose backend has a warm connection
 *                       pool (mysql_resolve(socket, {pool = ...}); every login still runs Lua) (0)
 *   BENCH_TLS           1 = also measure sysbench with TLS clients (--mysql-ssl=on) in the same rounds:
 *                       MariaDB gets certificates (made with openssl as the tests make them) and a
 *                       TCP port; a daemon with a TLS TCP listener (its backend: the MariaDB socket)
 *                       is compared with the same TLS client directly to MariaDB over TCP ("TLS
 *                       through proxy / TLS direct", and the daemon's CPU per query) (0)
 *   BENCH_SHARE         1 = instead of everything above: connection sharing. sysbench oltp_read_only
 *                       (text protocol) with BENCH_SHARE_THREADS client threads (256), direct vs
 *                       through a daemon whose backend has pool = {share = true, max_connections =
 *                       BENCH_SHARE_CONNECTIONS (32)}: throughput, latency, errors, the server
 *                       connections seen during the run, the daemon's CPU per query (0)
 *   BENCH_KEEP_LOGS     copy the daemons' logs to this directory   (unset)
 *   BENCH_PEER          path of a myproxy-compatible daemon to measure beside ours,
 *                       started as `BIN --config FILE`              (unset = none)
 *
 * Everything (daemons, clients, MariaDB, temp dirs) is cleaned up on normal
 * exit, on errors and on SIGINT/SIGTERM/SIGHUP.
 */
import { BenchCleanup } from './cleanup.js';
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../test/helpers/mariadb.js';
import { makeTestCertificates } from '../test/helpers/tls-certs.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const DAEMON = path.join(ROOT, 'bin', 'myproxy.js');
const LOGIN_WORKER = path.join(BENCH_DIR, 'login-worker.ts');
const CONN_HOLDER = path.join(BENCH_DIR, 'conn-holder.ts');

const SB_TABLES = 4;
const SB_TABLE_SIZE = 10_000;
const SB_DB = 'sbtest';

/** Reference figures (CM4all's C++ myproxy on the same kind of 2-core machine). */
const REFERENCE = {
  preparedRatio: 0.49,
  textRatio: 0.58,
  socatRatio: 0.48,
  loginRatio: 0.57,
  kibPerConn: 2.6,
  kibPerConnTarget: 8,
} as const;

// ---------------------------------------------------------------------------
// Settings

function envInt(name: string, dflt: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) {
    throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function haveBinary(name: string): boolean {
  return (process.env['PATH'] ?? '')
    .split(path.delimiter)
    .some((dir) => dir !== '' && fs.existsSync(path.join(dir, name)));
}

const ROUNDS = envInt('BENCH_ROUNDS', 3, 1);
const TIME = envInt('BENCH_TIME', 10, 1);
const THREADS = envInt('BENCH_THREADS', 8, 1);
const WARMUP = envInt('BENCH_WARMUP', 3, 0);
const LOGIN_TIME = envInt('BENCH_LOGIN_TIME', TIME, 1);
const LOGIN_WARMUP = WARMUP > 0 ? envInt('BENCH_LOGIN_WARMUP', 10, 0) : 0;
const LOGIN_CLIENTS = envInt('BENCH_LOGIN_CLIENTS', 4, 1);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 1000, 1);
/** Which relay the daemon uses after login (`--relay`): the native pump (default) or `js`. */
const RELAY = process.env['BENCH_RELAY'] === 'js' ? 'js' : 'native';
/** Seconds of idleness before the memory samples that count (V8's memory reducer waits 8 s). */
const SETTLE = envInt('BENCH_SETTLE', 15, 3);
/** Seconds of login loops before the baseline of the second memory test (0: no such test). */
const MEMORY_BURST = envInt('BENCH_MEMORY_BURST', 10, 0);
const SOCAT = envInt('BENCH_SOCAT', haveBinary('socat') ? 1 : 0, 0) !== 0;
const CLUSTER = envInt('BENCH_CLUSTER', 1, 0) !== 0;
/** Also measure a second daemon with --no-response-tracking, in the same rounds. */
const TRACKING = envInt('BENCH_TRACKING', 1, 0) !== 0;
const HOOKS = envInt('BENCH_HOOKS', 0, 0) !== 0;
const WORKERS = envInt('BENCH_WORKERS', 0, 0);
/** Logins counted in "daemon CPU for the same login and idle work" (with each daemon's CPU per login). */
const SAME_WORK_LOGINS = 10_000;
/** Only section 1 (sysbench), for a quick look at one change: e.g. what a hook costs per query. */
const QUICK = envInt('BENCH_QUICK', 0, 0) !== 0;
/** Measure logins through a daemon with a backend connection pool as well (issue 14: ≥ 1.5 × direct). */
const POOL = envInt('BENCH_POOL', 0, 0) !== 0;
/** TLS clients through a TLS TCP listener vs the same clients directly to MariaDB's TLS port. */
const TLS = envInt('BENCH_TLS', 0, 0) !== 0;
/** Connection sharing: many sysbench threads over few server connections (its own run). */
const SHARE = envInt('BENCH_SHARE', 0, 0) !== 0;
const SHARE_THREADS = envInt('BENCH_SHARE_THREADS', 256, 1);
const SHARE_CONNECTIONS = envInt('BENCH_SHARE_CONNECTIONS', 32, 1);

/**
 * BENCH_PEER: the executable of a myproxy-compatible daemon (e.g. CM4all's C++
 * `cm4all-myproxy`) to measure in the same rounds as ours, run as `BIN --config FILE`.
 */
function peerBinary(): string | undefined {
  const raw = process.env['BENCH_PEER'];
  if (raw === undefined || raw.trim() === '') return undefined;
  const file = path.resolve(raw.trim());
  try {
    fs.accessSync(file, fs.constants.X_OK);
    if (!fs.statSync(file).isFile()) throw new Error('not a file');
  } catch {
    throw new Error(`BENCH_PEER must name an executable file, got ${JSON.stringify(raw)}`);
  }
  return file;
}
const PEER = peerBinary();
/** How the peer is named in the output. */
const PEER_LABEL = PEER === undefined ? 'peer' : `peer (${path.basename(PEER)})`;

// ---------------------------------------------------------------------------
// Child processes and cleanup

const cleanup = new BenchCleanup('bench');
const track = (child: ChildProcess, group = false): ChildProcess => cleanup.track(child, group);
let tmpDir: string | undefined;
let db: MariaDB | undefined;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopChild(child: ChildProcess, group: boolean, graceMs: number): Promise<void> {
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (group && child.pid !== undefined) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch {
      /* gone */
    }
  };
  if (child.exitCode === null && child.signalCode === null) {
    signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited(child), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the child may have exited while we awaited
    if (child.exitCode === null && child.signalCode === null) {
      signal('SIGKILL');
      await exited(child);
    }
  }
  if (group) signal('SIGKILL'); // leftover forks of a fork-per-connection relay
  cleanup.untrack(child);
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runCommand(
  file: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string | undefined } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = track(
      spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd }),
    );
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Shell prefix raising the soft open-files limit to the hard limit, then exec'ing "$0" "$@". */
const RAISE_NOFILE = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"';

function softNofileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (m === null) return undefined;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return undefined;
  }
}

function tailOf(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(none)';
  }
}

// ---------------------------------------------------------------------------
// The daemon under test

/** `ours`: bin/myproxy.js; `peer`: the BENCH_PEER executable. */
type DaemonKind = 'ours' | 'peer';

interface Proxy {
  name: string;
  kind: DaemonKind;
  pid: number;
  socket: string;
  outLog: string;
  errLog: string;
  /** Set when the daemon exited although nobody asked it to. */
  unexpectedExit(): string | undefined;
  stop(): Promise<void>;
}

/**
 * What a daemon's handler connects to, when it is more than a plain socket
 * path: Lua lines before the handler (e.g. `local c = mysql_cluster(...)`),
 * lines in on_handshake_response before the connect, and the Lua expression
 * passed to client:connect().
 */
interface ProxyTarget {
  prelude: string[];
  beforeConnect: string[];
  targetLua: string;
  /** Lua lines after the handler table is built, before mysql_listen() (e.g. more callbacks). */
  handlerExtra?: string[];
  /** A TCP listener instead of the socket: mysql_listen's address and its options table (Lua). */
  listen?: { address: string; optionsLua: string };
}

/**
 * The environment for the peer daemon: without systemd's notify, socket
 * activation and watchdog variables, should the benchmark itself run under
 * systemd (sd_notify() is a no-op without NOTIFY_SOCKET, which is what we want).
 */
function peerEnv(): NodeJS.ProcessEnv {
  const drop = new Set([
    'NOTIFY_SOCKET',
    'LISTEN_FDS',
    'LISTEN_PID',
    'LISTEN_FDNAMES',
    'WATCHDOG_USEC',
    'WATCHDOG_PID',
  ]);
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !drop.has(k)));
}

async function startProxy(
  name: string,
  backend: string | ProxyTarget,
  extraArgs: readonly string[] = [],
  kind: DaemonKind = 'ours',
): Promise<Proxy> {
  const target: ProxyTarget =
    typeof backend === 'string' ? { prelude: [], beforeConnect: [], targetLua: JSON.stringify(backend) } : backend;
  const dir = path.join(tmpDir!, name);
  fs.mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'proxy.sock');
  const config = path.join(dir, 'config.lua');
  const outLog = path.join(dir, 'out.log');
  const errLog = path.join(dir, 'err.log');
  fs.writeFileSync(
    config,
    [
      ...target.prelude,
      'handler = {}',
      'function handler.on_handshake_response(client, hr)',
      ...target.beforeConnect.map((l) => `  ${l}`),
      `  return client:connect(${target.targetLua}, hr)`,
      'end',
      ...(target.handlerExtra ?? []),
      target.listen === undefined
        ? `mysql_listen(${JSON.stringify(socket)}, handler)`
        : `mysql_listen(${JSON.stringify(target.listen.address)}, handler, ${target.listen.optionsLua})`,
      '',
    ].join('\n'),
  );
  const outFd = fs.openSync(outLog, 'a');
  const errFd = fs.openSync(errLog, 'a');
  // The same configuration file for both kinds: CM4all's C++ myproxy accepts it as it is
  // (client:connect() takes an address string or a mysql_cluster, and the handshake_response table).
  const argv =
    kind === 'peer'
      ? [PEER!, '--config', config, ...extraArgs]
      : // The executable itself (not `node bin/myproxy.js`), so its shebang's V8 flags apply.
        [DAEMON, '--config', config, '--shutdown-grace', '2', '--relay', RELAY, ...extraArgs];
  let child: ChildProcess;
  try {
    child = track(
      spawn('/bin/sh', ['-c', RAISE_NOFILE, ...argv], {
        stdio: ['ignore', outFd, errFd],
        cwd: kind === 'peer' ? dir : ROOT,
        env: kind === 'peer' ? peerEnv() : process.env,
      }),
    );
  } finally {
    fs.closeSync(outFd);
    fs.closeSync(errFd);
  }
  let stopping = false;
  let exitInfo: string | undefined;
  child.once('exit', (code, signal) => {
    if (!stopping) exitInfo = `exited unexpectedly (code ${String(code)}, signal ${String(signal)})`;
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exitInfo !== undefined || child.exitCode !== null) {
      throw new Error(
        `myproxy "${name}" ${exitInfo ?? 'exited'} during startup\n--- stdout ---\n${tailOf(outLog)}\n--- stderr ---\n${tailOf(errLog)}`,
      );
    }
    // No probe connection: a client hanging up before the greeting is logged by the daemon.
    // The peer prints nothing when ready; it binds and listens while loading its
    // configuration, so its socket existing is the sign (the sanity login checks the rest).
    if (
      (kind === 'peer' || fs.readFileSync(outLog, 'utf8').includes('listening on')) &&
      (target.listen !== undefined || fs.existsSync(socket))
    )
      break;
    if (Date.now() > deadline) {
      await stopChild(child, false, 1000);
      throw new Error(`myproxy "${name}" not listening after 30 s\n--- stderr ---\n${tailOf(errLog)}`);
    }
    await sleep(50);
  }
  return {
    name,
    kind,
    pid: child.pid!,
    socket,
    outLog,
    errLog,
    unexpectedExit: () => exitInfo,
    stop: async () => {
      stopping = true;
      await stopChild(child, false, 10_000);
    },
  };
}

/**
 * A daemon whose handler connects through `mysql_cluster()` with monitoring
 * (login as the native test user, read_only check). The three nodes are three
 * symlinks to the one MariaDB socket: distinct paths, so three distinct nodes
 * for the hashing, all reaching the same server. Returns once the daemon's log
 * shows every node `-> alive`.
 */
async function startClusterProxy(name: string, backendSocket: string): Promise<Proxy> {
  const dir = path.join(tmpDir!, `${name}-nodes`);
  fs.mkdirSync(dir, { recursive: true });
  const nodes = [1, 2, 3].map((i) => {
    const link = path.join(dir, `db${i}.sock`);
    fs.symlinkSync(backendSocket, link);
    return link;
  });
  const options =
    `{monitoring = true, user = ${JSON.stringify(USERS.native.user)}, ` +
    `password = ${JSON.stringify(USERS.native.password)}, no_read_only = true}`;
  const proxy = await startProxy(name, {
    prelude: [`local c = mysql_cluster({${nodes.map((n) => JSON.stringify(n)).join(', ')}}, ${options})`],
    beforeConnect: ['client.account = hr.user'],
    targetLua: 'c',
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    let log = '';
    try {
      log = fs.readFileSync(proxy.outLog, 'utf8') + fs.readFileSync(proxy.errLog, 'utf8');
    } catch {
      /* not there yet */
    }
    const lines = log.split('\n');
    const missing = nodes.filter((n) => !lines.some((l) => l.includes(`node ${n}: `) && l.includes('-> alive')));
    if (missing.length === 0) break;
    const exit = proxy.unexpectedExit();
    if (exit !== undefined || Date.now() > deadline) {
      await proxy.stop();
      throw new Error(
        `myproxy "${name}" ${exit ?? 'did not see every cluster node alive within 30 s'} ` +
          `(not alive: ${missing.join(', ')})\n--- stdout ---\n${tailOf(proxy.outLog)}\n--- stderr ---\n${tailOf(proxy.errLog)}`,
      );
    }
    await sleep(50);
  }
  return proxy;
}

/**
 * Distinct messages of a daemon's stderr ("[peer] message" lines, the peer
 * prefix removed; stack-trace lines skipped), with their counts.
 */
function summariseErrLog(file: string): Map<string, number> {
  const counts = new Map<string, number>();
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return counts;
  }
  for (const line of text.split('\n')) {
    if (line.trim() === '' || /^\s+at /.test(line)) continue;
    // The C++ myproxy's notice of the SIGTERM that stopped it.
    if (/^caught signal \d+, shutting down/.test(line)) continue;
    const msg = line.replace(/^\[[^\]]*\]\s*/, '').replace(/"[^"]*"/g, '"…"');
    counts.set(msg, (counts.get(msg) ?? 0) + 1);
  }
  return counts;
}

/** With BENCH_KEEP_LOGS=DIR, copies a daemon's stdout/stderr logs there. */
function keepLogs(proxy: Proxy): void {
  const dest = process.env['BENCH_KEEP_LOGS'];
  if (dest === undefined || dest === '') return;
  fs.mkdirSync(dest, { recursive: true });
  fs.copyFileSync(proxy.outLog, path.join(dest, `${proxy.name}.out.log`));
  fs.copyFileSync(proxy.errLog, path.join(dest, `${proxy.name}.err.log`));
}

interface RelayHandle {
  socket: string;
  stop(): Promise<void>;
}

async function startSocat(backendSocket: string): Promise<RelayHandle> {
  const dir = path.join(tmpDir!, 'socat');
  fs.mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'relay.sock');
  const child = track(
    spawn('socat', [`UNIX-LISTEN:${socket},fork,backlog=128`, `UNIX-CONNECT:${backendSocket}`], {
      stdio: ['ignore', 'ignore', 'inherit'],
      detached: true,
    }),
    true,
  );
  // Wait for the socket file only: a probe connection would make socat log a broken pipe.
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('socat relay did not start');
    await sleep(50);
  }
  await sleep(200);
  return { socket, stop: () => stopChild(child, true, 2000) };
}

interface BenchCertificates {
  ca: string;
  serverCert: string;
  serverKey: string;
  /** The client's certificate, key and CA under the names sysbench 1.0's --mysql-ssl=on reads. */
  clientDir: string;
}

/** The tests' certificates (test/helpers/tls-certs.ts), plus sysbench's copies of the client's. */
function benchCertificates(): BenchCertificates {
  const dir = path.join(tmpDir!, 'tls');
  fs.mkdirSync(dir, { recursive: true });
  const certs = makeTestCertificates(dir);
  const clientDir = path.join(dir, 'sysbench');
  fs.mkdirSync(clientDir);
  fs.copyFileSync(certs.clientCert, path.join(clientDir, 'client-cert.pem'));
  fs.copyFileSync(certs.clientKey, path.join(clientDir, 'client-key.pem'));
  fs.copyFileSync(certs.caCert, path.join(clientDir, 'cacert.pem'));
  return { ca: certs.caCert, serverCert: certs.serverCert, serverKey: certs.serverKey, clientDir };
}

// ---------------------------------------------------------------------------
// Statistics and formatting

function median(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

const fmtInt = (v: number | null): string => (v === null ? 'FAIL' : String(Math.round(v)));
const fmtRatio = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(2));
const ratio = (a: number | null, b: number | null): number | null =>
  a === null || b === null || b === 0 ? null : a / b;

// ---------------------------------------------------------------------------
// 1. sysbench

type PsMode = 'auto' | 'disable';
type Target = 'direct' | 'myproxy' | 'peer' | 'untracked' | 'hooked' | 'workers' | 'socat' | 'tls-direct' | 'tls-proxy';

/**
 * Where sysbench connects: a Unix socket, or TCP with TLS. sysbench 1.0's --mysql-ssl=on takes
 * its files from the working directory by fixed names (client-key.pem, client-cert.pem,
 * cacert.pem), so a TLS run works in `certDir`, which holds them under those names.
 */
type Endpoint = string | { host: string; port: number; certDir: string };

interface SysbenchRun {
  qps: number | null;
  queries: number | null;
  ignoredErrors: number | null;
  reconnects: number | null;
  problem?: string;
}

function sysbenchCommon(endpoint: Endpoint): string[] {
  return [
    'oltp_point_select',
    '--db-driver=mysql',
    ...(typeof endpoint === 'string'
      ? [`--mysql-socket=${endpoint}`]
      : [`--mysql-host=${endpoint.host}`, `--mysql-port=${endpoint.port}`, '--mysql-ssl=on']),
    `--mysql-user=${USERS.native.user}`,
    `--mysql-password=${USERS.native.password}`,
    `--mysql-db=${SB_DB}`,
    `--tables=${SB_TABLES}`,
    `--table-size=${SB_TABLE_SIZE}`,
  ];
}

const SYSBENCH_ENV: NodeJS.ProcessEnv = { ...process.env, LIBMYSQL_PLUGINS: 'mysql_clear_password' };

async function sysbenchRun(endpoint: Endpoint, mode: PsMode, seconds: number): Promise<SysbenchRun> {
  const r = await runCommand(
    'sysbench',
    [...sysbenchCommon(endpoint), `--threads=${THREADS}`, `--time=${seconds}`, `--db-ps-mode=${mode}`, 'run'],
    {
      env: SYSBENCH_ENV,
      timeoutMs: (seconds + 120) * 1000,
      cwd: typeof endpoint === 'string' ? undefined : endpoint.certDir,
    },
  );
  const q = /queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)/.exec(r.stdout);
  const ign = /ignored errors:\s+(\d+)/.exec(r.stdout);
  const rec = /reconnects:\s+(\d+)/.exec(r.stdout);
  const res: SysbenchRun = {
    qps: q === null ? null : Number(q[2]),
    queries: q === null ? null : Number(q[1]),
    ignoredErrors: ign === null ? null : Number(ign[1]),
    reconnects: rec === null ? null : Number(rec[1]),
  };
  const fatal = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .filter((l) => /FATAL|error|warning/i.test(l) && !/ignored errors:/.test(l))
    .slice(0, 8);
  if (r.code !== 0 || res.qps === null || fatal.length > 0) {
    res.problem =
      `exit code ${String(r.code)}${r.signal === null ? '' : ` signal ${r.signal}`}` +
      (fatal.length > 0 ? `: ${fatal.join(' | ')}` : res.qps === null ? `: ${r.stderr.trim().slice(-500)}` : '');
    if (r.code !== 0) res.qps = null;
  }
  return res;
}

// ---------------------------------------------------------------------------
// IPC helpers for the client processes

function waitMessage<T>(child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: { type?: string }): void => {
      if (msg.type !== type) return;
      cleanup();
      resolve(msg as T);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      cleanup();
      reject(new Error(`client process exited (code ${String(code)}, signal ${String(signal)}) waiting for ${type}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${type} from a client process`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/**
 * Sends an IPC message; a client that has gone away is an Error thrown here
 * (or ignored with `ignoreGone`), never an unhandled 'error' event.
 */
function send(child: ChildProcess, msg: object, ignoreGone = false): void {
  if (!child.connected) {
    if (ignoreGone) return;
    throw new Error(`client process ${String(child.pid)} is gone (exit code ${String(child.exitCode)})`);
  }
  child.send(msg, (e) => {
    if (e !== null && !ignoreGone) process.stderr.write(`bench: IPC send failed: ${e.message}\n`);
  });
}

function forkClient(script: string, raiseNofile: boolean): ChildProcess {
  if (raiseNofile) {
    // exec through sh to raise RLIMIT_NOFILE; the IPC fd and NODE_CHANNEL_FD survive the exec.
    return track(
      spawn('/bin/sh', ['-c', RAISE_NOFILE, process.execPath, '--import', 'tsx', script], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        cwd: ROOT,
      }),
    );
  }
  return track(
    fork(script, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: ROOT }),
  );
}

// ---------------------------------------------------------------------------
// 2. logins

interface LoginResult {
  type: 'result';
  ok: number;
  failed: number;
  elapsedMs: number;
  errors: string[];
}

interface LoginRun {
  perSec: number;
  ok: number;
  failed: number;
  errors: string[];
}

async function loginRun(workers: ChildProcess[], socket: string, seconds: number): Promise<LoginRun> {
  const results = workers.map((w) => waitMessage<LoginResult>(w, 'result', (seconds + 120) * 1000));
  for (const w of workers) {
    send(w, {
      type: 'run',
      socket,
      user: USERS.native.user,
      password: USERS.native.password,
      database: SB_DB,
      seconds,
    });
  }
  const all = await Promise.all(results);
  const ok = all.reduce((s, r) => s + r.ok, 0);
  const failed = all.reduce((s, r) => s + r.failed, 0);
  const elapsed = Math.max(...all.map((r) => r.elapsedMs)) / 1000;
  const errors = [...new Set(all.flatMap((r) => r.errors))].slice(0, 5);
  return { perSec: ok / elapsed, ok, failed, errors };
}

// ---------------------------------------------------------------------------
// 3. memory

function readStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  // With --workers the daemon is a process tree: its live children count too (for VmHWM the sum
  // of each process's peak, an upper bound of the tree's).
  let children = 0;
  for (const child of childPids(pid)) children += readStatusKiB(child, field);
  return Number(m[1]) + children;
}

let clockTicks: number | undefined;

/** User + system CPU seconds a process has used so far (NaN if it is gone). */
function cpuSeconds(pid: number): number {
  clockTicks ??= Number(tryExec('getconf', ['CLK_TCK'])) || 100;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state is field 3, utime field 14, stime field 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // With --workers the daemon is a process tree: its live children count too.
    let children = 0;
    for (const child of childPids(pid)) children += cpuSeconds(child);
    return (Number(f[11]) + Number(f[12])) / clockTicks + children;
  } catch {
    return NaN;
  }
}

/** The live child processes of `pid` (from every thread's children list). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const list = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (list !== '') out.push(...list.split(' ').map(Number));
    }
  } catch {
    // gone, or not Linux
  }
  return out;
}

/** Waits until every worker of a `--workers N` daemon says it is serving. */
async function waitForWorkers(p: Proxy, n: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((fs.readFileSync(p.outLog, 'utf8').match(/^worker \d+ \(pid=\d+\) is serving/gm) ?? []).length < n) {
    if (Date.now() > deadline) throw new Error(`myproxy "${p.name}": not all ${n} workers serving after 30 s`);
    await sleep(100);
  }
}

/** CPU microseconds per operation of `pid` between two cpuSeconds() readings. */
const usPer = (before: number, after: number, ops: number | null): number | null =>
  ops === null || ops <= 0 || !Number.isFinite(after - before) ? null : ((after - before) * 1e6) / ops;

const fmtUs = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(1));

/** Median of a few VmRSS samples, `spacingMs` apart. */
async function sampleRss(pid: number, samples = 5, spacingMs = 300): Promise<number> {
  const v: number[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await sleep(spacingMs);
    v.push(readStatusKiB(pid, 'VmRSS'));
  }
  return median(v)!;
}

interface MemoryResult {
  connections: number;
  opened: number;
  failed: number;
  alive: number;
  openMs: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  rssSettledKiB: number;
  rssAfterCloseKiB: number;
  hwmKiB: number;
  /** From the settled samples: what idle sessions cost once V8 has collected the login garbage. */
  kibPerConn: number;
  /** From the sample 3 s after opening: includes garbage of the 1,000 logins not yet collected. */
  kibPerConnEarly: number;
  /** The daemon's CPU seconds from before opening the connections to after closing them. */
  idleWorkCpuSeconds: number;
  errors: string[];
}

/**
 * On a fresh daemon of the given kind (ours, or the BENCH_PEER one), with its own conn-holder
 * process. With `burstSeconds`, the baseline is taken after that many seconds of login loops (and
 * the settle time): what idle sessions cost once the login path is compiled and the heaps and
 * allocators have grown to what a busy daemon has; without, after 50 logins.
 */
async function memoryTest(
  backendSocket: string,
  kind: DaemonKind | 'workers' = 'ours',
  burstSeconds = 0,
): Promise<MemoryResult> {
  const need = CONNECTIONS + 200;
  const limit = softNofileLimit();
  if (limit !== undefined && limit < need) {
    console.log(`  note: soft RLIMIT_NOFILE is ${limit}; the daemon and the holder raise theirs to the hard limit`);
  }
  const workers = kind === 'workers';
  const proxy = await startProxy(
    kind === 'peer' ? 'peer-mem' : workers ? 'workers-mem' : 'mem',
    backendSocket,
    workers ? ['--workers', String(WORKERS)] : [],
    workers ? 'ours' : kind,
  );
  if (workers) await waitForWorkers(proxy, WORKERS);
  const holder = forkClient(CONN_HOLDER, true);
  try {
    await waitMessage(holder, 'ready', 60_000);
    const open = (count: number): Promise<{ ok: number; failed: number; errors: string[]; ms: number }> => {
      const p = waitMessage<{ ok: number; failed: number; errors: string[]; ms: number }>(holder, 'opened', 600_000);
      send(holder, {
        type: 'open',
        socket: proxy.socket,
        user: USERS.native.user,
        password: USERS.native.password,
        database: SB_DB,
        count,
        concurrency: 16,
      });
      return p;
    };
    const close = async (): Promise<void> => {
      const p = waitMessage(holder, 'closed', 120_000);
      send(holder, { type: 'close' });
      await p;
    };
    // Warm-up: load and compile the login path before the baseline.
    const warm = await open(50);
    if (warm.ok === 0) throw new Error(`warm-up logins through the proxy failed: ${warm.errors.join('; ')}`);
    await close();
    if (burstSeconds > 0) {
      const workers = Array.from({ length: LOGIN_CLIENTS }, () => forkClient(LOGIN_WORKER, false));
      try {
        await Promise.all(workers.map((w) => waitMessage(w, 'ready', 60_000)));
        const burst = await loginRun(workers, proxy.socket, burstSeconds);
        console.log(`  login burst before the baseline: ${burst.ok} logins in ${burstSeconds} s`);
      } finally {
        for (const w of workers) {
          send(w, { type: 'exit' }, true);
          await Promise.race([exited(w), sleep(5000)]);
          await stopChild(w, false, 1000);
        }
      }
    }
    await sleep(SETTLE * 1000);
    if (burstSeconds > 0) {
      // After a burst, V8's memory reducer shrinks the heap only some 15-30 s later, in steps: the
      // baseline waits 30 s more, then until the RSS holds still (within 1 % over 10 s, at most 60 s).
      await sleep(30_000);
      let last = readStatusKiB(proxy.pid, 'VmRSS');
      for (let waited = 0; waited < 60_000; waited += 10_000) {
        await sleep(10_000);
        const now = readStatusKiB(proxy.pid, 'VmRSS');
        if (Math.abs(now - last) <= last * 0.01) break;
        last = now;
      }
    }
    const rssBeforeKiB = await sampleRss(proxy.pid);
    console.log(
      `  daemon RSS before (${burstSeconds > 0 ? 'settled after the warm-up and the burst' : `${SETTLE} s after the warm-up`}): ${rssBeforeKiB} KiB`,
    );

    const cpuBefore = cpuSeconds(proxy.pid);
    const opened = await open(CONNECTIONS);
    console.log(
      `  opened ${opened.ok}/${CONNECTIONS} idle proxied connections in ${(opened.ms / 1000).toFixed(1)} s` +
        (opened.failed > 0 ? ` (${opened.failed} FAILED: ${opened.errors.join('; ')})` : ''),
    );
    await sleep(3000);
    const rssAfterKiB = await sampleRss(proxy.pid);
    console.log(`  daemon RSS with ${opened.ok} connections, 3 s after opening: ${rssAfterKiB} KiB`);
    // V8's memory reducer collects idle garbage only some seconds after the last activity.
    await sleep(Math.max(0, SETTLE - 3) * 1000);
    const rssSettledKiB = await sampleRss(proxy.pid);
    const hwmKiB = readStatusKiB(proxy.pid, 'VmHWM');
    console.log(
      `  daemon RSS with ${opened.ok} connections, ${SETTLE} s after opening: ${rssSettledKiB} KiB (peak ${hwmKiB} KiB)`,
    );

    const checkP = waitMessage<{ alive: number; dead: number; errors: string[] }>(holder, 'checked', 120_000);
    send(holder, { type: 'check' });
    const checked = await checkP;
    console.log(
      `  COM_PING on every held connection: ${checked.alive} alive, ${checked.dead} dead` +
        (checked.errors.length > 0 ? ` (${checked.errors.join('; ')})` : ''),
    );

    await close();
    const idleWorkCpuSeconds = cpuSeconds(proxy.pid) - cpuBefore;
    await sleep(2000);
    const rssAfterCloseKiB = await sampleRss(proxy.pid);
    console.log(`  daemon RSS after closing them: ${rssAfterCloseKiB} KiB`);
    return {
      connections: CONNECTIONS,
      opened: opened.ok,
      failed: opened.failed,
      alive: checked.alive,
      openMs: opened.ms,
      rssBeforeKiB,
      rssAfterKiB,
      rssSettledKiB,
      rssAfterCloseKiB,
      hwmKiB,
      kibPerConn: opened.ok === 0 ? NaN : (rssSettledKiB - rssBeforeKiB) / opened.ok,
      kibPerConnEarly: opened.ok === 0 ? NaN : (rssAfterKiB - rssBeforeKiB) / opened.ok,
      idleWorkCpuSeconds,
      errors: [...opened.errors, ...checked.errors],
    };
  } finally {
    send(holder, { type: 'exit' }, true);
    await Promise.race([exited(holder), sleep(5000)]);
    await stopChild(holder, false, 1000);
    await proxy.stop();
    for (const [msg, n] of summariseErrLog(proxy.errLog)) console.log(`  daemon logged: ${n} × ${msg}`);
    keepLogs(proxy);
  }
}

// ---------------------------------------------------------------------------
// Machine description

interface Machine {
  date: string;
  nproc: string;
  cpu: string;
  kernel: string;
  node: string;
  mariadb: string;
  sysbench: string;
  commit: string;
  loadBefore: string;
}

function tryExec(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd: ROOT }).trim();
  } catch {
    return '?';
  }
}

async function describeMachine(mariadb: MariaDB): Promise<Machine> {
  let cpu = '?';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? '?';
  } catch {
    /* not Linux */
  }
  const commit = tryExec('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = tryExec('git', ['status', '--porcelain', '--untracked-files=no']);
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    nproc: tryExec('nproc', []),
    cpu,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    mariadb: (await mariadb.query('SELECT VERSION()')).trim(),
    sysbench: tryExec('sysbench', ['--version']),
    loadBefore: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    commit: commit + (dirty !== '' && dirty !== '?' ? ' + uncommitted changes' : ''),
  };
}

// ---------------------------------------------------------------------------
// Connection sharing (BENCH_SHARE=1)

interface ReadOnlyRun {
  tps: number | null;
  qps: number | null;
  queries: number | null;
  latencyAvgMs: number | null;
  latency95Ms: number | null;
  errors: number | null;
  problem?: string;
}

/** sysbench oltp_read_only, text protocol (a prepared statement pins a sharing session for good). */
async function readOnlyRun(socket: string, threads: number, seconds: number): Promise<ReadOnlyRun> {
  const args = [...sysbenchCommon(socket)];
  args[0] = 'oltp_read_only';
  const r = await runCommand(
    'sysbench',
    [...args, `--threads=${threads}`, `--time=${seconds}`, '--db-ps-mode=disable', 'run'],
    { env: SYSBENCH_ENV, timeoutMs: (seconds + 180) * 1000 },
  );
  const num = (re: RegExp): number | null => {
    const m = re.exec(r.stdout);
    return m === null ? null : Number(m[1]);
  };
  const q = /queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)/.exec(r.stdout);
  const res: ReadOnlyRun = {
    tps: num(/transactions:\s+\d+\s+\(([\d.]+) per sec\.\)/),
    qps: q === null ? null : Number(q[2]),
    queries: q === null ? null : Number(q[1]),
    latencyAvgMs: num(/avg:\s+([\d.]+)/),
    latency95Ms: num(/95th percentile:\s+([\d.]+)/),
    errors: num(/ignored errors:\s+(\d+)/),
  };
  const fatal = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .filter((l) => /FATAL|error|warning/i.test(l) && !/ignored errors:/.test(l))
    .slice(0, 8);
  if (r.code !== 0 || res.qps === null || fatal.length > 0) {
    res.problem = `exit code ${String(r.code)}${fatal.length > 0 ? `: ${fatal.join(' | ')}` : ''}`;
  }
  return res;
}

async function shareBench(mariadb: MariaDB): Promise<void> {
  const shared = await startProxy('shared', {
    prelude: [
      `local b = mysql_resolve(${JSON.stringify(mariadb.socket)}, {pool = {share = true, ` +
        `max_connections = ${SHARE_CONNECTIONS}, queue_timeout = 60, max_idle = ${SHARE_CONNECTIONS * 2}, ` +
        `max_per_key = ${SHARE_CONNECTIONS * 2}}})`,
    ],
    beforeConnect: [],
    targetLua: 'b',
  });
  // The same daemon without a pool (one server connection per client), for what sharing adds.
  const plain = await startProxy('plain', mariadb.socket);
  console.log(
    `connection sharing: sysbench oltp_read_only (text), ${SHARE_THREADS} threads, ${TIME} s per run; ` +
      `myproxy pid ${shared.pid} with pool = {share = true, max_connections = ${SHARE_CONNECTIONS}}`,
  );
  const serverConnections = async (): Promise<number> =>
    Number(
      (
        await mariadb.query(
          `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ${JSON.stringify(USERS.native.user)}`,
        )
      ).trim(),
    );
  // The listener greets its first clients before it has met the server, under another pool key:
  // one short run first, so that the measured clients share one key.
  await readOnlyRun(shared.socket, 1, 1);
  type T = 'direct' | 'plain' | 'shared';
  const TARGETS = ['direct', 'plain', 'shared'] as const;
  const socketOf = (t: T): string => (t === 'direct' ? mariadb.socket : t === 'plain' ? plain.socket : shared.socket);
  const daemonOf = (t: T): Proxy | undefined => (t === 'direct' ? undefined : t === 'plain' ? plain : shared);
  const runs: Record<T, ReadOnlyRun[]> = { direct: [], plain: [], shared: [] };
  const cpu: Record<T, (number | null)[]> = { direct: [], plain: [], shared: [] };
  const peakConnections: Record<T, number> = { direct: 0, plain: 0, shared: 0 };
  if (WARMUP > 0) {
    for (const t of TARGETS) await readOnlyRun(socketOf(t), SHARE_THREADS, WARMUP);
  }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const t of TARGETS) {
      const daemon = daemonOf(t);
      const p0 = daemon === undefined ? 0 : cpuSeconds(daemon.pid);
      // The server connections in use, sampled while the run goes on.
      const sampling = { on: true };
      const sampler = (async (): Promise<void> => {
        await sleep(Math.min(2000, (TIME * 1000) / 3));
        while (sampling.on) {
          peakConnections[t] = Math.max(peakConnections[t], await serverConnections());
          await sleep(500);
        }
      })();
      const r = await readOnlyRun(socketOf(t), SHARE_THREADS, TIME);
      sampling.on = false;
      await sampler;
      runs[t].push(r);
      const us = daemon === undefined ? null : usPer(p0, cpuSeconds(daemon.pid), r.queries);
      cpu[t].push(us);
      console.log(
        `  round ${round} ${t.padEnd(6)} ${fmtInt(r.tps).padStart(6)} TPS ${fmtInt(r.qps).padStart(7)} QPS` +
          `  latency avg ${r.latencyAvgMs ?? '?'} ms, 95th ${r.latency95Ms ?? '?'} ms, errors ${r.errors ?? '?'}` +
          (us !== null ? `, myproxy CPU ${fmtUs(us)} µs/query` : '') +
          (r.problem !== undefined ? `  PROBLEM: ${r.problem}` : ''),
      );
    }
  }
  const med = (t: T, f: (r: ReadOnlyRun) => number | null): number | null => median(runs[t].map(f));
  console.log('');
  console.log(
    `| oltp_read_only, ${SHARE_THREADS} threads | TPS | QPS | latency avg (ms) | 95th (ms) | errors | server connections (peak seen) | myproxy CPU µs/query |`,
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const t of TARGETS) {
    const label =
      t === 'direct'
        ? 'direct'
        : t === 'plain'
          ? `myproxy, no pool (--relay ${RELAY})`
          : `myproxy, share, max_connections = ${SHARE_CONNECTIONS}`;
    console.log(
      `| ${label} | ${fmtInt(med(t, (r) => r.tps))} | ${fmtInt(med(t, (r) => r.qps))} | ` +
        `${med(t, (r) => r.latencyAvgMs) ?? '?'} | ${med(t, (r) => r.latency95Ms) ?? '?'} | ` +
        `${runs[t].reduce((n, r) => n + (r.errors ?? 0), 0)} | ${peakConnections[t]} | ` +
        `${t === 'direct' ? '' : fmtUs(median(cpu[t]))} |`,
    );
  }
  for (const t of TARGETS) {
    for (const r of runs[t]) if (r.problem !== undefined) console.log(`  problem: ${t}: ${r.problem}`);
  }
  keepLogs(shared);
  await shared.stop();
  await plain.stop();
}

// ---------------------------------------------------------------------------
// Main

interface Problem {
  what: string;
  detail: string;
}

async function main(): Promise<void> {
  cleanup.install();
  cleanup.tmpDir = tmpDir = fs.mkdtempSync('/tmp/myproxy-bench-');
  const problems: Problem[] = [];
  const t0 = Date.now();

  const targets: Target[] = ['direct', 'myproxy'];
  if (PEER !== undefined) targets.push('peer');
  if (TRACKING) targets.push('untracked');
  if (HOOKS) targets.push('hooked');
  if (WORKERS >= 2) targets.push('workers');
  if (SOCAT) targets.push('socat');
  if (TLS) targets.push('tls-direct', 'tls-proxy');
  console.log(
    `myproxy benchmark: ${ROUNDS} rounds, sysbench ${TIME} s × ${THREADS} threads, ` +
      `logins ${LOGIN_TIME} s × ${LOGIN_CLIENTS} processes, ${CONNECTIONS} idle connections` +
      (SOCAT ? ', socat relay included' : '') +
      (TLS ? ', TLS clients included' : '') +
      (CLUSTER ? ', logins through mysql_cluster() included' : '') +
      (PEER !== undefined ? `, peer daemon ${PEER} included` : ''),
  );

  console.log('starting MariaDB …');
  const tls = TLS ? benchCertificates() : undefined;
  // Sharing's direct runs hold one server connection per sysbench thread.
  const shareArgs = SHARE ? [`--max-connections=${SHARE_THREADS + 64}`] : [];
  db = await startMariaDB({
    name: 'bench',
    ...(tls === undefined
      ? { extraArgs: shareArgs }
      : {
          tcpPort: 0,
          // Secure transport required, so a client that fell back to plain TCP fails loudly (the
          // socket counts as secure: the other measurements are unaffected).
          extraArgs: [
            `--ssl-ca=${tls.ca}`,
            `--ssl-cert=${tls.serverCert}`,
            `--ssl-key=${tls.serverKey}`,
            '--require-secure-transport=ON',
            ...shareArgs,
          ],
        }),
  });
  await createTestUsers(db);
  const machine = await describeMachine(db);
  console.log(`  ${machine.mariadb} on ${db.socket}`);

  console.log(`sysbench prepare (${SB_TABLES} tables × ${SB_TABLE_SIZE} rows, direct) …`);
  const prep = await runCommand('sysbench', [...sysbenchCommon(db.socket), 'prepare'], {
    env: SYSBENCH_ENV,
    timeoutMs: 600_000,
  });
  if (prep.code !== 0) throw new Error(`sysbench prepare failed:\n${prep.stdout}\n${prep.stderr}`);
  if (SHARE) {
    await shareBench(db);
    return;
  }

  console.log('starting myproxy (dist/) …');
  const proxy = await startProxy('main', db.socket);
  console.log(`  pid ${proxy.pid}, listening on ${proxy.socket}`);
  const untracked = TRACKING ? await startProxy('untracked', db.socket, ['--no-response-tracking']) : undefined;
  if (untracked !== undefined)
    console.log(`  pid ${untracked.pid}: the same with --no-response-tracking, listening on ${untracked.socket}`);
  const hooked = HOOKS
    ? await startProxy('hooked', {
        prelude: [],
        beforeConnect: [],
        targetLua: JSON.stringify(db.socket),
        handlerExtra: ['function handler.on_query(client, sql) end'],
      })
    : undefined;
  if (hooked !== undefined)
    console.log(`  pid ${hooked.pid}: the same with an on_query that returns nothing, listening on ${hooked.socket}`);
  const multi = WORKERS >= 2 ? await startProxy('workers', db.socket, ['--workers', String(WORKERS)]) : undefined;
  if (multi !== undefined) {
    await waitForWorkers(multi, WORKERS);
    console.log(`  pid ${multi.pid}: the same with --workers ${WORKERS}, listening on ${multi.socket}`);
  }
  let peer: Proxy | undefined;
  if (PEER !== undefined) {
    console.log(`starting the peer daemon ${PEER} (same configuration) …`);
    peer = await startProxy('peer', db.socket, [], 'peer');
    console.log(`  pid ${peer.pid}, listening on ${peer.socket}`);
  }
  const relay = SOCAT ? await startSocat(db.socket) : undefined;
  let tlsProxy: Proxy | undefined;
  let tlsProxyPort = 0;
  if (tls !== undefined) {
    tlsProxyPort = await freeTcpPort();
    const files = `cert = ${JSON.stringify(tls.serverCert)}, key = ${JSON.stringify(tls.serverKey)}, ca = ${JSON.stringify(tls.ca)}`;
    tlsProxy = await startProxy('tls', {
      prelude: [],
      beforeConnect: [],
      targetLua: JSON.stringify(db.socket),
      listen: { address: `127.0.0.1:${tlsProxyPort}`, optionsLua: `{tls = {${files}, require = true}}` },
    });
    console.log(
      `  pid ${tlsProxy.pid}: the same with a TLS listener on 127.0.0.1:${tlsProxyPort}; ` +
        `MariaDB's TLS port: 127.0.0.1:${String(db.tcpPort)}`,
    );
  }
  const daemons: Partial<Record<Target, Proxy | undefined>> = {
    myproxy: proxy,
    peer,
    untracked,
    hooked,
    workers: multi,
    'tls-proxy': tlsProxy,
  };
  const socketOf = (t: Target): string =>
    t === 'direct' ? db!.socket : t === 'socat' ? relay!.socket : daemons[t]!.socket;
  const endpointOf = (t: Target): Endpoint =>
    t === 'tls-direct'
      ? { host: '127.0.0.1', port: db!.tcpPort!, certDir: tls!.clientDir }
      : t === 'tls-proxy'
        ? { host: '127.0.0.1', port: tlsProxyPort, certDir: tls!.clientDir }
        : socketOf(t);
  const throughputDaemon = (t: Target): Proxy | undefined => daemons[t];

  // Logins only: the pool's max_per_key covers every login client, so the pool stays warm.
  const pooledProxy = POOL
    ? await startProxy('pooled', {
        prelude: [
          `local b = mysql_resolve(${JSON.stringify(db.socket)}, {pool = {max_idle = ${Math.max(64, LOGIN_CLIENTS * 2)}, ` +
            `max_per_key = ${Math.max(16, LOGIN_CLIENTS * 2)}}})`,
        ],
        beforeConnect: [],
        targetLua: 'b',
      })
    : undefined;
  if (pooledProxy !== undefined)
    console.log(
      `  pid ${pooledProxy.pid}: the same with a backend connection pool, listening on ${pooledProxy.socket}`,
    );

  let clusterProxy: Proxy | undefined;
  if (CLUSTER && !QUICK) {
    console.log('starting myproxy with mysql_cluster() over 3 symlinks to the MariaDB socket …');
    clusterProxy = await startClusterProxy('cluster', db.socket);
    console.log(`  pid ${clusterProxy.pid}, listening on ${clusterProxy.socket}, all 3 nodes alive`);
  }

  // Sanity check: one login through each proxy before measuring anything.
  for (const p of [proxy, peer, clusterProxy].filter((x): x is Proxy => x !== undefined)) {
    const sanity = forkClient(LOGIN_WORKER, false);
    await waitMessage(sanity, 'ready', 60_000);
    const r = await loginRun([sanity], p.socket, 1);
    send(sanity, { type: 'exit' }, true);
    await exited(sanity);
    if (r.ok === 0) {
      throw new Error(
        `cannot log in through the proxy "${p.name}": ${r.errors.join('; ')}\n--- daemon stderr ---\n${tailOf(p.errLog)}`,
      );
    }
  }

  // ---- 1. sysbench
  const modes: { mode: PsMode; label: string }[] = [
    { mode: 'auto', label: 'prepared (`--db-ps-mode=auto`)' },
    { mode: 'disable', label: 'text (`--db-ps-mode=disable`)' },
  ];
  const qps = new Map<string, (number | null)[]>();
  const key = (m: PsMode, t: Target): string => `${m}/${t}`;
  const cpuQ = new Map<string, { proxy: (number | null)[]; db: (number | null)[] }>();
  for (const { mode } of modes) {
    for (const t of targets) {
      qps.set(key(mode, t), []);
      cpuQ.set(key(mode, t), { proxy: [], db: [] });
    }
  }

  if (WARMUP > 0) {
    console.log(`sysbench warm-up (${WARMUP} s per target and mode, not recorded) …`);
    for (const { mode } of modes) {
      for (const t of targets) {
        const r = await sysbenchRun(endpointOf(t), mode, WARMUP);
        if (r.problem !== undefined) problems.push({ what: `sysbench warm-up ${mode} ${t}`, detail: r.problem });
      }
    }
  }

  console.log(`sysbench oltp_point_select, ${THREADS} threads, ${TIME} s per run:`);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const { mode } of modes) {
      for (const t of targets) {
        const daemon = throughputDaemon(t);
        const p0 = daemon === undefined ? 0 : cpuSeconds(daemon.pid);
        const d0 = cpuSeconds(db.pid);
        const r = await sysbenchRun(endpointOf(t), mode, TIME);
        const proxyUs = daemon !== undefined ? usPer(p0, cpuSeconds(daemon.pid), r.queries) : null;
        const dbUs = usPer(d0, cpuSeconds(db.pid), r.queries);
        qps.get(key(mode, t))!.push(r.qps);
        cpuQ.get(key(mode, t))!.proxy.push(proxyUs);
        cpuQ.get(key(mode, t))!.db.push(dbUs);
        const extra =
          (r.ignoredErrors !== null && r.ignoredErrors > 0 ? ` ignored errors ${r.ignoredErrors}` : '') +
          (r.reconnects !== null && r.reconnects > 0 ? ` reconnects ${r.reconnects}` : '');
        console.log(
          `  round ${round} ${mode.padEnd(7)} ${t.padEnd(7)} ${fmtInt(r.qps).padStart(7)} QPS` +
            `  CPU µs/query: mariadbd ${fmtUs(dbUs)}` +
            (daemon !== undefined ? `, ${t === 'peer' ? 'peer' : 'myproxy'} ${fmtUs(proxyUs)}` : '') +
            extra +
            (r.problem !== undefined ? `  PROBLEM: ${r.problem}` : ''),
        );
        if (r.problem !== undefined) problems.push({ what: `sysbench round ${round} ${mode} ${t}`, detail: r.problem });
        if (extra !== '') problems.push({ what: `sysbench round ${round} ${mode} ${t}`, detail: extra.trim() });
      }
    }
  }
  for (const { mode } of modes) {
    const direct = median(qps.get(key(mode, 'direct'))!);
    const peerQps = peer === undefined ? null : median(qps.get(key(mode, 'peer'))!);
    for (const t of targets) {
      const m = median(qps.get(key(mode, t))!);
      console.log(
        `  median ${mode.padEnd(7)} ${t.padEnd(7)} ${fmtInt(m).padStart(7)} QPS` +
          (t === 'direct' ? '' : `  ratio ${fmtRatio(ratio(m, direct))}`) +
          (t === 'myproxy' && peer !== undefined ? `, ours ÷ peer ${fmtRatio(ratio(m, peerQps))}` : '') +
          (t === 'tls-proxy'
            ? `, TLS through proxy / TLS direct ${fmtRatio(ratio(m, median(qps.get(key(mode, 'tls-direct'))!)))}`
            : ''),
      );
    }
  }
  if (relay !== undefined) await relay.stop();
  if (untracked !== undefined) await untracked.stop();
  if (hooked !== undefined) await hooked.stop();
  if (tlsProxy !== undefined) {
    const exit = tlsProxy.unexpectedExit();
    if (exit !== undefined) problems.push({ what: 'myproxy (tls)', detail: exit });
    await tlsProxy.stop();
    for (const [msg, n] of summariseErrLog(tlsProxy.errLog))
      problems.push({ what: 'myproxy (tls) logged', detail: `${n} × ${msg}` });
    keepLogs(tlsProxy);
  }
  if (QUICK) {
    quickSummary(
      modes.map(({ mode }) => mode),
      targets,
      (mode, t) => ({ qps: median(qps.get(key(mode, t))!), cpu: median(cpuQ.get(key(mode, t))!.proxy) }),
    );
    for (const p of problems) console.log(`  problem: ${p.what}: ${p.detail.replace(/\n/g, ' ')}`);
    await proxy.stop();
    if (peer !== undefined) await peer.stop();
    if (multi !== undefined) await multi.stop();
    if (pooledProxy !== undefined) await pooledProxy.stop();
    return;
  }

  // ---- 2. logins
  console.log(`logins: ${LOGIN_CLIENTS} client processes × ${LOGIN_TIME} s (connect → SELECT 1 → quit):`);
  const workers = Array.from({ length: LOGIN_CLIENTS }, () => forkClient(LOGIN_WORKER, false));
  type LoginTarget = 'direct' | 'myproxy' | 'workers' | 'peer' | 'cluster' | 'pooled';
  const loginTargets: LoginTarget[] = ['direct', 'myproxy'];
  if (multi !== undefined) loginTargets.push('workers');
  if (peer !== undefined) loginTargets.push('peer');
  if (clusterProxy !== undefined) loginTargets.push('cluster');
  if (pooledProxy !== undefined) loginTargets.push('pooled');
  /** The daemon a login target goes through (none for direct). */
  const daemonOf = (t: LoginTarget): Proxy | undefined =>
    t === 'myproxy'
      ? proxy
      : t === 'peer'
        ? peer
        : t === 'cluster'
          ? clusterProxy
          : t === 'workers'
            ? multi
            : t === 'pooled'
              ? pooledProxy
              : undefined;
  const daemonLabel = (t: LoginTarget): string =>
    t === 'cluster'
      ? 'myproxy (cluster)'
      : t === 'peer'
        ? 'peer'
        : t === 'workers'
          ? `myproxy --workers ${WORKERS}`
          : t === 'pooled'
            ? 'myproxy (pooled)'
            : 'myproxy';
  const loginSocketOf = (t: LoginTarget): string =>
    t === 'cluster' ? clusterProxy!.socket : t === 'pooled' ? pooledProxy!.socket : socketOf(t);
  const perTarget = <T>(make: () => T): Record<LoginTarget, T> => ({
    direct: make(),
    myproxy: make(),
    workers: make(),
    peer: make(),
    cluster: make(),
    pooled: make(),
  });
  const logins = perTarget(() => [] as (number | null)[]);
  const loginFailures = perTarget(() => 0);
  const loginOk = perTarget(() => 0);
  const loginCpu = perTarget(() => ({ proxy: [] as (number | null)[], db: [] as (number | null)[] }));
  try {
    await Promise.all(workers.map((w) => waitMessage(w, 'ready', 60_000)));
    if (LOGIN_WARMUP > 0) {
      for (const t of loginTargets) await loginRun(workers, loginSocketOf(t), LOGIN_WARMUP);
    }
    for (let round = 1; round <= ROUNDS; round++) {
      for (const t of loginTargets) {
        const daemon = daemonOf(t);
        const p0 = daemon === undefined ? NaN : cpuSeconds(daemon.pid);
        const d0 = cpuSeconds(db.pid);
        const r = await loginRun(workers, loginSocketOf(t), LOGIN_TIME);
        const proxyUs = daemon === undefined ? null : usPer(p0, cpuSeconds(daemon.pid), r.ok);
        const dbUs = usPer(d0, cpuSeconds(db.pid), r.ok);
        loginCpu[t].proxy.push(proxyUs);
        loginCpu[t].db.push(dbUs);
        logins[t].push(r.ok > 0 ? r.perSec : null);
        loginFailures[t] += r.failed;
        loginOk[t] += r.ok;
        console.log(
          `  round ${round} ${t.padEnd(7)} ${r.perSec.toFixed(0).padStart(6)} logins/s (${r.ok} ok` +
            (r.failed > 0 ? `, ${r.failed} FAILED: ${r.errors.join('; ')}` : '') +
            `)  CPU µs/login: mariadbd ${fmtUs(dbUs)}` +
            (t === 'direct' ? '' : `, ${daemonLabel(t)} ${fmtUs(proxyUs)}`),
        );
        if (r.failed > 0) {
          problems.push({ what: `logins round ${round} ${t}`, detail: `${r.failed} failed: ${r.errors.join('; ')}` });
        }
      }
    }
  } finally {
    for (const w of workers) send(w, { type: 'exit' }, true);
    await Promise.all(workers.map((w) => Promise.race([exited(w), sleep(5000)])));
    for (const w of workers) await stopChild(w, false, 1000);
  }
  const loginDirect = median(logins.direct);
  const loginProxy = median(logins.myproxy);
  const loginCluster = median(logins.cluster);
  const loginPeer = median(logins.peer);
  console.log(
    `  median direct ${fmtInt(loginDirect)}/s, myproxy ${fmtInt(loginProxy)}/s, ratio ${fmtRatio(ratio(loginProxy, loginDirect))}`,
  );
  if (peer !== undefined) {
    console.log(
      `  median peer ${fmtInt(loginPeer)}/s, ratio ${fmtRatio(ratio(loginPeer, loginDirect))}; ` +
        `ours ÷ peer ${fmtRatio(ratio(loginProxy, loginPeer))}; CPU µs/login (median): ` +
        `myproxy ${fmtUs(median(loginCpu.myproxy.proxy))}, peer ${fmtUs(median(loginCpu.peer.proxy))}`,
    );
  }
  if (clusterProxy !== undefined) {
    console.log(
      `  median cluster ${fmtInt(loginCluster)}/s, ratio vs direct ${fmtRatio(ratio(loginCluster, loginDirect))}, ` +
        `vs myproxy ${fmtRatio(ratio(loginCluster, loginProxy))}; CPU µs/login (median): ` +
        `myproxy ${fmtUs(median(loginCpu.myproxy.proxy))}, myproxy (cluster) ${fmtUs(median(loginCpu.cluster.proxy))}`,
    );
  }

  // Stops a daemon that was only measured for throughput and logins, noting what went wrong.
  const retire = async (p: Proxy | undefined, label: string): Promise<void> => {
    if (p === undefined) return;
    const exit = p.unexpectedExit();
    if (exit !== undefined) problems.push({ what: label, detail: exit });
    await p.stop();
    for (const [msg, n] of summariseErrLog(p.errLog))
      problems.push({ what: `${label} logged`, detail: `${n} × ${msg}` });
    keepLogs(p);
  };
  if (pooledProxy !== undefined) {
    const loginPooled = median(logins.pooled);
    console.log(
      `  median pooled ${fmtInt(loginPooled)}/s, ratio vs direct ${fmtRatio(ratio(loginPooled, loginDirect))} ` +
        `(goal ≥ 1.5), vs myproxy ${fmtRatio(ratio(loginPooled, loginProxy))}; CPU µs/login (median): ` +
        `mariadbd ${fmtUs(median(loginCpu.pooled.db))}, myproxy (pooled) ${fmtUs(median(loginCpu.pooled.proxy))}`,
    );
  }
  await retire(pooledProxy, 'myproxy (pooled)');

  const mainRssKiB = proxy.unexpectedExit() === undefined ? readStatusKiB(proxy.pid, 'VmRSS') : NaN;
  const mainHwmKiB = proxy.unexpectedExit() === undefined ? readStatusKiB(proxy.pid, 'VmHWM') : NaN;
  const exitInfo = proxy.unexpectedExit();
  if (exitInfo !== undefined) problems.push({ what: 'myproxy (main)', detail: exitInfo });
  await proxy.stop();
  for (const [msg, n] of summariseErrLog(proxy.errLog)) {
    problems.push({ what: 'myproxy (main) logged', detail: `${n} × ${msg}` });
  }
  keepLogs(proxy);
  let peerRssKiB = NaN;
  let peerHwmKiB = NaN;
  if (peer !== undefined) {
    const peerExit = peer.unexpectedExit();
    if (peerExit === undefined) {
      peerRssKiB = readStatusKiB(peer.pid, 'VmRSS');
      peerHwmKiB = readStatusKiB(peer.pid, 'VmHWM');
    } else {
      problems.push({ what: PEER_LABEL, detail: peerExit });
    }
    await peer.stop();
    for (const [msg, n] of summariseErrLog(peer.errLog)) {
      problems.push({ what: `${PEER_LABEL} logged`, detail: `${n} × ${msg}` });
    }
    keepLogs(peer);
  }
  await retire(clusterProxy, 'myproxy (cluster)');
  await retire(multi, `myproxy --workers ${WORKERS}`);

  // ---- 3. memory
  console.log(`memory: ${CONNECTIONS} idle logged-in connections through a fresh daemon:`);
  const mem = await memoryTest(db.socket);
  if (mem.failed > 0 || mem.alive !== mem.opened) {
    problems.push({
      what: 'memory test connections',
      detail: `${mem.opened} opened, ${mem.failed} failed, ${mem.alive} answered COM_PING; ${mem.errors.join('; ')}`,
    });
  }
  let peerMem: MemoryResult | undefined;
  if (PEER !== undefined) {
    console.log(`memory (${PEER_LABEL}): ${CONNECTIONS} idle logged-in connections through a fresh peer daemon:`);
    peerMem = await memoryTest(db.socket, 'peer');
    if (peerMem.failed > 0 || peerMem.alive !== peerMem.opened) {
      problems.push({
        what: `memory test connections (${PEER_LABEL})`,
        detail:
          `${peerMem.opened} opened, ${peerMem.failed} failed, ${peerMem.alive} answered COM_PING; ` +
          peerMem.errors.join('; '),
      });
    }
  }
  let workersMem: MemoryResult | undefined;
  if (WORKERS >= 2) {
    console.log(`memory (--workers ${WORKERS}): ${CONNECTIONS} idle logged-in connections, RSS of all its processes:`);
    workersMem = await memoryTest(db.socket, 'workers');
    if (workersMem.failed > 0 || workersMem.alive !== workersMem.opened) {
      problems.push({
        what: `memory test connections (--workers ${WORKERS})`,
        detail:
          `${workersMem.opened} opened, ${workersMem.failed} failed, ${workersMem.alive} answered COM_PING; ` +
          workersMem.errors.join('; '),
      });
    }
  }
  // The same on fresh daemons that first served a login burst (BENCH_MEMORY_BURST).
  let burstMem: MemoryResult | undefined;
  let peerBurstMem: MemoryResult | undefined;
  if (MEMORY_BURST > 0) {
    for (const kind of PEER !== undefined ? (['ours', 'peer'] as const) : (['ours'] as const)) {
      const label = kind === 'peer' ? ` (${PEER_LABEL})` : '';
      console.log(`memory${label}: the same after a ${MEMORY_BURST} s login burst on a fresh daemon:`);
      const m = await memoryTest(db.socket, kind, MEMORY_BURST);
      if (m.failed > 0 || m.alive !== m.opened) {
        problems.push({
          what: `memory test connections after a login burst${label}`,
          detail: `${m.opened} opened, ${m.failed} failed, ${m.alive} answered COM_PING; ${m.errors.join('; ')}`,
        });
      }
      if (kind === 'peer') peerBurstMem = m;
      else burstMem = m;
    }
  }

  // ---- 4. summary
  const elapsedMin = (Date.now() - t0) / 60_000;
  const out: string[] = [];
  const round = (n: number): string => Array.from({ length: n }, (_, i) => `round ${i + 1}`).join(' | ');
  const dashes = (n: number): string => Array.from({ length: n }, () => '---:').join('|');
  out.push(`### Run of ${machine.date}`);
  out.push('');
  out.push(
    `- Command: \`npm run bench\` (BENCH_ROUNDS=${ROUNDS}, BENCH_TIME=${TIME}, BENCH_THREADS=${THREADS}, ` +
      `BENCH_WARMUP=${WARMUP}, BENCH_LOGIN_WARMUP=${LOGIN_WARMUP}, BENCH_LOGIN_TIME=${LOGIN_TIME}, BENCH_LOGIN_CLIENTS=${LOGIN_CLIENTS}, ` +
      `BENCH_CONNECTIONS=${CONNECTIONS}, BENCH_SETTLE=${SETTLE}, BENCH_MEMORY_BURST=${MEMORY_BURST}, ` +
      `BENCH_SOCAT=${SOCAT ? 1 : 0}, BENCH_CLUSTER=${CLUSTER ? 1 : 0}` +
      `${PEER !== undefined ? `, BENCH_PEER=${PEER}` : ''}); took ${elapsedMin.toFixed(1)} min`,
  );
  out.push(`- Machine: \`nproc\` = ${machine.nproc}, ${machine.cpu}, ${machine.kernel}`);
  out.push(
    `- Load average (1/5/15 min) before the run: ${machine.loadBefore}; after: ` +
      os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' '),
  );
  out.push(`- Software: Node ${machine.node}, MariaDB ${machine.mariadb}, ${machine.sysbench}`);
  out.push(`- myproxy: \`bin/myproxy.js --relay ${RELAY}\` (its shebang runs Node with \`--max-semi-space-size=2\`)`);
  out.push(
    `- myproxy: commit ${machine.commit}, built \`dist/\`, one process, minimal config (connect every login to the MariaDB socket)`,
  );
  if (PEER !== undefined) {
    out.push(
      `- peer: \`${PEER} --config FILE\`, one process, the same generated config file as myproxy, ` +
        'measured in the same interleaved rounds; memory on a fresh daemon of its own',
    );
  }
  out.push('');
  out.push(`#### sysbench oltp_point_select, ${THREADS} threads, ${TIME} s per run, queries per second`);
  out.push('');
  out.push(`| protocol | path | ${round(ROUNDS)} | median | × direct |`);
  out.push(`|---|---|${dashes(ROUNDS)}|---:|---:|`);
  const summaryRatios = new Map<string, number | null>();
  for (const { mode, label } of modes) {
    const direct = median(qps.get(key(mode, 'direct'))!);
    for (const t of targets) {
      const vals = qps.get(key(mode, t))!;
      const m = median(vals);
      const r = t === 'direct' ? null : ratio(m, direct);
      summaryRatios.set(key(mode, t), r);
      const name =
        t === 'direct'
          ? 'direct'
          : t === 'myproxy'
            ? 'myproxy'
            : t === 'peer'
              ? PEER_LABEL
              : t === 'untracked'
                ? 'myproxy --no-response-tracking'
                : t === 'hooked'
                  ? 'myproxy with an empty on_query'
                  : t === 'workers'
                    ? `myproxy --workers ${WORKERS}`
                    : t === 'tls-direct'
                      ? 'direct over TCP, TLS client'
                      : t === 'tls-proxy'
                        ? 'myproxy TLS listener, TLS client'
                        : 'socat relay (fork per connection)';
      out.push(
        `| ${t === 'direct' ? label : ''} | ${name} | ${vals.map(fmtInt).join(' | ')} | ${fmtInt(m)} | ${t === 'direct' ? '1' : fmtRatio(r)} |`,
      );
    }
  }
  out.push('');
  out.push(
    'CPU time per query (median over the rounds, from /proc/PID/stat utime+stime; unlike QPS this barely ' +
      'depends on what else the machine is doing):',
  );
  out.push('');
  out.push('| protocol | path | mariadbd µs/query | daemon µs/query |');
  out.push('|---|---|---:|---:|');
  for (const { mode } of modes) {
    for (const t of targets) {
      const c = cpuQ.get(key(mode, t))!;
      out.push(
        `| ${t === 'direct' ? (mode === 'auto' ? 'prepared' : 'text') : ''} | ${t} | ${fmtUs(median(c.db))} | ` +
          `${t !== 'direct' && t !== 'socat' && t !== 'tls-direct' ? fmtUs(median(c.proxy)) : ''} |`,
      );
    }
  }
  out.push('');
  out.push(
    `#### Logins per second (${LOGIN_CLIENTS} client processes, mysql2: connect → \`SELECT 1\` → quit, ${LOGIN_TIME} s per run)`,
  );
  out.push('');
  out.push(`| path | ${round(ROUNDS)} | median | × direct |`);
  out.push(`|---|${dashes(ROUNDS)}|---:|---:|`);
  out.push(`| direct | ${logins.direct.map(fmtInt).join(' | ')} | ${fmtInt(loginDirect)} | 1 |`);
  out.push(
    `| myproxy | ${logins.myproxy.map(fmtInt).join(' | ')} | ${fmtInt(loginProxy)} | ${fmtRatio(ratio(loginProxy, loginDirect))} |`,
  );
  if (multi !== undefined) {
    const m = median(logins.workers);
    out.push(
      `| myproxy --workers ${WORKERS} | ${logins.workers.map(fmtInt).join(' | ')} | ${fmtInt(m)} | ` +
        `${fmtRatio(ratio(m, loginDirect))} |`,
    );
  }
  if (clusterProxy !== undefined) {
    out.push(
      `| myproxy, \`mysql_cluster()\` of 3 nodes | ${logins.cluster.map(fmtInt).join(' | ')} | ${fmtInt(loginCluster)} | ` +
        `${fmtRatio(ratio(loginCluster, loginDirect))} |`,
    );
  }
  if (peer !== undefined) {
    out.push(
      `| ${PEER_LABEL} | ${logins.peer.map(fmtInt).join(' | ')} | ${fmtInt(loginPeer)} | ` +
        `${fmtRatio(ratio(loginPeer, loginDirect))} |`,
    );
  }
  out.push('');
  out.push(
    `CPU time per login (median): mariadbd ${fmtUs(median(loginCpu.direct.db))} µs direct, ` +
      `${fmtUs(median(loginCpu.myproxy.db))} µs proxied; myproxy ${fmtUs(median(loginCpu.myproxy.proxy))} µs` +
      (multi !== undefined
        ? `; myproxy --workers ${WORKERS} ${fmtUs(median(loginCpu.workers.proxy))} µs (all processes)`
        : '') +
      (peer !== undefined
        ? `; through the peer: mariadbd ${fmtUs(median(loginCpu.peer.db))} µs, peer ${fmtUs(median(loginCpu.peer.proxy))} µs.`
        : '.'),
  );
  if (clusterProxy !== undefined) {
    out.push('');
    out.push(
      'Through `mysql_cluster()` (a second daemon; the three nodes are symlinks to the one MariaDB socket, ' +
        'monitored with login and `no_read_only`, all alive; the handler sets `client.account`): ' +
        `${fmtInt(loginCluster)} logins/s, × direct ${fmtRatio(ratio(loginCluster, loginDirect))}, ` +
        `× myproxy (plain address) ${fmtRatio(ratio(loginCluster, loginProxy))}; CPU per login (median): ` +
        `mariadbd ${fmtUs(median(loginCpu.cluster.db))} µs, myproxy ${fmtUs(median(loginCpu.cluster.proxy))} µs ` +
        `(plain address: ${fmtUs(median(loginCpu.myproxy.proxy))} µs).`,
    );
  }
  out.push('');
  out.push(
    `Failed logins: direct ${loginFailures.direct} of ${loginOk.direct + loginFailures.direct}, ` +
      `myproxy ${loginFailures.myproxy} of ${loginOk.myproxy + loginFailures.myproxy}` +
      (peer !== undefined ? `, peer ${loginFailures.peer} of ${loginOk.peer + loginFailures.peer}` : '') +
      (clusterProxy !== undefined
        ? `, cluster ${loginFailures.cluster} of ${loginOk.cluster + loginFailures.cluster}.`
        : '.'),
  );
  out.push('');
  out.push(`#### Memory: daemon RSS (VmRSS) with ${CONNECTIONS} idle, logged-in proxied connections`);
  out.push('');
  out.push(
    `| daemon | RSS before | with connections, 3 s | with connections, ${SETTLE} s | peak (VmHWM) | RSS after closing | per connection, 3 s | per connection, ${SETTLE} s |`,
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  const memRow = (name: string, m: MemoryResult): string =>
    `| ${name} | ${m.rssBeforeKiB} KiB | ${m.rssAfterKiB} KiB | ${m.rssSettledKiB} KiB | ${m.hwmKiB} KiB | ${m.rssAfterCloseKiB} KiB | ` +
    `${m.kibPerConnEarly.toFixed(1)} KiB | **${m.kibPerConn.toFixed(1)} KiB** |`;
  out.push(memRow('myproxy', mem));
  if (peerMem !== undefined) out.push(memRow(PEER_LABEL, peerMem));
  if (workersMem !== undefined) out.push(memRow(`myproxy --workers ${WORKERS} (all processes)`, workersMem));
  if (burstMem !== undefined) out.push(memRow(`myproxy, after a ${MEMORY_BURST} s login burst`, burstMem));
  if (peerBurstMem !== undefined)
    out.push(memRow(`${PEER_LABEL}, after a ${MEMORY_BURST} s login burst`, peerBurstMem));
  out.push('');
  out.push(
    `${mem.opened} of ${CONNECTIONS} connections opened (${(mem.openMs / 1000).toFixed(1)} s, 16 at a time), ` +
      `${mem.alive} answered COM_PING afterwards` +
      (peerMem !== undefined
        ? `; through the peer ${peerMem.opened} opened (${(peerMem.openMs / 1000).toFixed(1)} s), ${peerMem.alive} answered COM_PING`
        : '') +
      '. Fresh daemon, warmed up with 50 logins before the baseline' +
      (MEMORY_BURST > 0
        ? ` (the "after a login burst" rows: another fresh daemon each, ${LOGIN_CLIENTS} login loops for ${MEMORY_BURST} s after those 50 logins, then idle until the RSS held still, at least ${SETTLE + 30} s, before the baseline)`
        : '') +
      '. ' +
      `The benchmark daemon's RSS after the throughput and login runs: ${mainRssKiB} KiB (peak ${mainHwmKiB} KiB)` +
      (peer !== undefined ? `; the peer's: ${peerRssKiB} KiB (peak ${peerHwmKiB} KiB).` : '.'),
  );
  out.push('');
  if (peer !== undefined && peerMem !== undefined) {
    // Ours against the peer, both measured in this run.
    out.push(`#### Against ${PEER_LABEL}, measured in the same rounds`);
    out.push('');
    out.push('| figure | direct | myproxy | peer | myproxy × direct | peer × direct | ours ÷ peer |');
    out.push('|---|---:|---:|---:|---:|---:|---:|');
    const row = (
      figure: string,
      direct: number | null,
      ours: number | null,
      theirs: number | null,
      fmt: (v: number | null) => string,
    ): string =>
      `| ${figure} | ${direct === null ? '' : fmt(direct)} | ${fmt(ours)} | ${fmt(theirs)} | ` +
      `${direct === null ? '' : fmtRatio(ratio(ours, direct))} | ${direct === null ? '' : fmtRatio(ratio(theirs, direct))} | ` +
      `${fmtRatio(ratio(ours, theirs))} |`;
    for (const { mode } of modes) {
      const name = mode === 'auto' ? 'prepared' : 'text';
      out.push(
        row(
          `sysbench ${name}, QPS (median)`,
          median(qps.get(key(mode, 'direct'))!),
          median(qps.get(key(mode, 'myproxy'))!),
          median(qps.get(key(mode, 'peer'))!),
          fmtInt,
        ),
      );
      if (WORKERS >= 2) {
        out.push(
          row(
            `sysbench ${name}, QPS (median), ours with --workers ${WORKERS}`,
            median(qps.get(key(mode, 'direct'))!),
            median(qps.get(key(mode, 'workers'))!),
            median(qps.get(key(mode, 'peer'))!),
            fmtInt,
          ),
        );
      }
    }
    out.push(row(`logins/s (${LOGIN_CLIENTS} loops, median)`, loginDirect, loginProxy, loginPeer, fmtInt));
    if (WORKERS >= 2) {
      out.push(
        row(
          `logins/s (${LOGIN_CLIENTS} loops, median), ours with --workers ${WORKERS}`,
          loginDirect,
          median(logins.workers),
          loginPeer,
          fmtInt,
        ),
      );
    }
    for (const { mode } of modes) {
      out.push(
        row(
          `daemon CPU µs/query, ${mode === 'auto' ? 'prepared' : 'text'} (median)`,
          null,
          median(cpuQ.get(key(mode, 'myproxy'))!.proxy),
          median(cpuQ.get(key(mode, 'peer'))!.proxy),
          fmtUs,
        ),
      );
    }
    out.push(
      row('daemon CPU µs/login (median)', null, median(loginCpu.myproxy.proxy), median(loginCpu.peer.proxy), fmtUs),
    );
    const kibOf = (m: MemoryResult): number | null => (Number.isFinite(m.kibPerConn) ? m.kibPerConn : null);
    out.push(row(`KiB per idle connection (${SETTLE} s)`, null, kibOf(mem), kibOf(peerMem), fmtUs));
    if (workersMem !== undefined) {
      out.push(
        row(
          `KiB per idle connection (${SETTLE} s), ours with --workers ${WORKERS} (all processes)`,
          null,
          kibOf(workersMem),
          kibOf(peerMem),
          fmtUs,
        ),
      );
    }
    if (burstMem !== undefined && peerBurstMem !== undefined) {
      out.push(
        row(
          `KiB per idle connection after a login burst (${SETTLE} s)`,
          null,
          kibOf(burstMem),
          kibOf(peerBurstMem),
          fmtUs,
        ),
      );
    }
    out.push(row('fresh daemon RSS before, KiB', null, mem.rssBeforeKiB, peerMem.rssBeforeKiB, fmtInt));
    // The issue's "daemon CPU for the same login and idle work": the same number of logins for
    // every daemon (its median CPU per login times a fixed count) plus the idle test's open, hold,
    // ping and close of the same connections.
    const sameWork = (usPerLogin: number | null, m: MemoryResult | undefined): number | null =>
      usPerLogin === null || m === undefined ? null : (usPerLogin * SAME_WORK_LOGINS) / 1e6 + m.idleWorkCpuSeconds;
    const fmtSeconds = (v: number | null): string => (v === null ? 'n/a' : `${v.toFixed(1)} s`);
    out.push(
      row(
        `daemon CPU for ${fmtInt(SAME_WORK_LOGINS)} logins and the idle test`,
        null,
        sameWork(median(loginCpu.myproxy.proxy), mem),
        sameWork(median(loginCpu.peer.proxy), peerMem),
        fmtSeconds,
      ),
    );
    if (workersMem !== undefined) {
      out.push(
        row(
          `daemon CPU for ${fmtInt(SAME_WORK_LOGINS)} logins and the idle test, ours with --workers ${WORKERS}`,
          null,
          sameWork(median(loginCpu.workers.proxy), workersMem),
          sameWork(median(loginCpu.peer.proxy), peerMem),
          fmtSeconds,
        ),
      );
    }
    out.push('');
    out.push('ours ÷ peer: above 1 is better for ours in the QPS and login rows, below 1 in the CPU and memory rows.');
    out.push('');
  }
  out.push('#### Against the reference figures (CM4all C++ myproxy, same kind of 2-core machine)');
  out.push('');
  const meets = (ok: boolean | null): string => (ok === null ? 'n/a' : ok ? 'yes' : 'no');
  const vs = (ours: number | null, ref: number): string => meets(ours === null ? null : ours >= ref);
  const prepR = summaryRatios.get(key('auto', 'myproxy')) ?? null;
  const textR = summaryRatios.get(key('disable', 'myproxy')) ?? null;
  const loginR = ratio(loginProxy, loginDirect);
  out.push('| figure | reference | this run | meets it? |');
  out.push('|---|---:|---:|---|');
  out.push(
    `| prepared statements, × direct | ${REFERENCE.preparedRatio} | ${fmtRatio(prepR)} | ${vs(prepR, REFERENCE.preparedRatio)} |`,
  );
  out.push(
    `| text protocol, × direct | ${REFERENCE.textRatio} | ${fmtRatio(textR)} | ${vs(textR, REFERENCE.textRatio)} |`,
  );
  if (SOCAT) {
    out.push(
      `| socat relay, text, × direct | ~${REFERENCE.socatRatio} | ${fmtRatio(summaryRatios.get(key('disable', 'socat')) ?? null)} | (comparison only) |`,
    );
  }
  out.push(
    `| logins (${LOGIN_CLIENTS} loops), × direct | ${REFERENCE.loginRatio} | ${fmtRatio(loginR)} | ${vs(loginR, REFERENCE.loginRatio)} |`,
  );
  if (TRACKING) {
    for (const { mode } of modes) {
      const withTracking = median(qps.get(key(mode, 'myproxy'))!);
      const without = median(qps.get(key(mode, 'untracked'))!);
      out.push(
        `| response tracking, ${mode === 'auto' ? 'prepared' : 'text'}: QPS with / without (\`--no-response-tracking\`) | ≥ 0.97 | ` +
          `${fmtRatio(ratio(withTracking, without))} | ${vs(ratio(withTracking, without), 0.97)} |`,
      );
    }
  }
  if (TLS) {
    for (const { mode } of modes) {
      const r = ratio(median(qps.get(key(mode, 'tls-proxy'))!), median(qps.get(key(mode, 'tls-direct'))!));
      out.push(
        `| TLS client, ${mode === 'auto' ? 'prepared' : 'text'}: QPS through the proxy / directly over TCP | ` +
          `(comparison only) | ${fmtRatio(r)} | daemon ${fmtUs(median(cpuQ.get(key(mode, 'tls-proxy'))!.proxy))} µs/query |`,
      );
    }
  }
  if (HOOKS) {
    for (const { mode } of modes) {
      const plain = summaryRatios.get(key(mode, 'myproxy')) ?? null;
      const hookedRatio = summaryRatios.get(key(mode, 'hooked')) ?? null;
      const r = plain === null || hookedRatio === null ? null : hookedRatio / plain;
      out.push(
        `| on_query returning nothing, ${mode === 'auto' ? 'prepared' : 'text'}: × direct ratio / plain relay's | ≥ 0.8 | ` +
          `${fmtRatio(r)} | ${vs(r, 0.8)} |`,
      );
    }
  }
  const kib = Number.isFinite(mem.kibPerConn) ? mem.kibPerConn : null;
  out.push(
    `| KiB per idle connection | ${REFERENCE.kibPerConn} (target ≤ ${REFERENCE.kibPerConnTarget}) | ` +
      `${kib === null ? 'n/a' : kib.toFixed(1)} | ${meets(kib === null ? null : kib <= REFERENCE.kibPerConn)} (C++); ` +
      `${meets(kib === null ? null : kib <= REFERENCE.kibPerConnTarget)} (target) |`,
  );
  if (problems.length > 0) {
    out.push('');
    out.push('#### Problems seen during the run');
    out.push('');
    for (const p of problems) out.push(`- ${p.what}: ${p.detail.replace(/\n/g, ' ')}`);
  }

  console.log('\n===== Markdown summary (paste into docs/benchmarks.md) =====\n');
  console.log(out.join('\n'));
  console.log('\n===== end of summary =====');
}

/**
 * BENCH_QUICK's summary: per protocol and path the median QPS, its ratio to direct, the daemon's
 * median CPU µs per query; with BENCH_HOOKS, the empty on_query against the plain relay (issue
 * 12's bounds: ratio ≥ 0.8 × the plain relay's, CPU per query up by ≤ 15 µs).
 */
function quickSummary(
  modes: readonly PsMode[],
  targets: readonly Target[],
  medians: (mode: PsMode, t: Target) => { qps: number | null; cpu: number | null },
): void {
  console.log('\n| protocol | path | QPS | × direct | daemon CPU µs/query |');
  console.log('|---|---|---:|---:|---:|');
  for (const mode of modes) {
    const direct = medians(mode, 'direct').qps;
    for (const t of targets) {
      const m = medians(mode, t);
      console.log(
        `| ${mode === 'auto' ? 'prepared' : 'text'} | ${t} | ${fmtInt(m.qps)} | ` +
          `${t === 'direct' ? '1' : fmtRatio(ratio(m.qps, direct))} | ${t === 'direct' ? '' : fmtUs(m.cpu)} |`,
      );
    }
  }
  if (targets.includes('tls-proxy')) {
    console.log('');
    for (const mode of modes) {
      const m = medians(mode, 'tls-proxy');
      console.log(
        `TLS client, ${mode === 'auto' ? 'prepared' : 'text'}: TLS through proxy / TLS direct ` +
          `${fmtRatio(ratio(m.qps, medians(mode, 'tls-direct').qps))}, daemon CPU ${fmtUs(m.cpu)} µs/query`,
      );
    }
  }
  if (!targets.includes('hooked')) return;
  console.log('');
  for (const mode of modes) {
    const plain = medians(mode, 'myproxy');
    const hooked = medians(mode, 'hooked');
    const delta = plain.cpu === null || hooked.cpu === null ? null : hooked.cpu - plain.cpu;
    console.log(
      `empty on_query, ${mode === 'auto' ? 'prepared' : 'text'}: QPS ${fmtRatio(ratio(hooked.qps, plain.qps))} × the plain relay's ` +
        `(bound ≥ 0.8), daemon CPU ${delta === null ? 'n/a' : `${delta >= 0 ? '+' : ''}${delta.toFixed(1)}`} µs/query (bound ≤ +15)`,
    );
  }
}

let exitCode = 0;
try {
  await main();
} catch (e) {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  exitCode = 1;
} finally {
  cleanup.killAllSync();
  if (db !== undefined) await db.stop();
  cleanup.removeTmpSync();
}
process.exit(exitCode);
