/**
 * Throwaway MariaDB (Debian's 10.11) instances for tests and benchmarks.
 *
 * Every instance lives in its own fresh temporary directory (datadir, socket,
 * pid file, error log) and is started with `--no-defaults`, so the system's
 * /etc/mysql configuration and any system server in /run/mysqld are never
 * touched. Instances still running when the Node process exits (or is killed
 * by SIGINT/SIGTERM/SIGHUP) are SIGKILLed and their directories removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface MariaDB {
  /** Temporary directory holding everything (datadir in `dir/data`). */
  dir: string;
  /** Absolute path of the server's Unix socket. */
  socket: string;
  /** TCP port on 127.0.0.1, only when TCP was requested. */
  tcpPort?: number;
  /** PID of the current mariadbd process (updated by {@link MariaDB.resume}). */
  pid: number;
  /** Path of the server's error log. */
  errorLog: string;
  /**
   * Runs `sql` (may hold several `;`-separated statements) through the
   * `mariadb` CLI as the MariaDB user root over the socket, with `--batch
   * --skip-column-names`. Resolves with the CLI's raw stdout (rows separated
   * by "\n", columns by "\t", trailing "\n" included; "" for no rows).
   * Rejects with an Error whose message is the CLI's stderr.
   */
  query(sql: string): Promise<string>;
  /**
   * SIGTERM, wait for exit (SIGKILL after 20 s) but KEEP `dir`, so that
   * {@link MariaDB.resume} can bring the same server back. Resolves once
   * nothing listens any more (with TCP: once the port refuses connections).
   * Idempotent; a no-op after `stop()`.
   */
  halt(): Promise<void>;
  /**
   * Starts mariadbd again after {@link MariaDB.halt} with exactly the same
   * arguments (same datadir, socket and TCP port) and waits until it is ready;
   * updates `pid`. Idempotent while running; rejects after `stop()`.
   */
  resume(): Promise<void>;
  /** SIGTERM, wait for exit (SIGKILL after 20 s), remove `dir`. Idempotent; works halted too. */
  stop(): Promise<void>;
}

export interface StartMariaDBOptions {
  /** Listen on 127.0.0.1:tcpPort as well as the socket; 0 picks a free port. */
  tcpPort?: number;
  /** Extra mariadbd arguments, appended last. */
  extraArgs?: string[];
  /** Label used in the temp dir name and in error messages. */
  name?: string;
}

export const USERS = {
  native: { user: 'native', password: 'nativepw' },
  nopw: { user: 'nopw', password: '' },
  ed: { user: 'ed', password: 'edpw' },
} as const;

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;
const SUN_PATH_MAX = 107;

// ---------------------------------------------------------------------------
// Binaries

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

const binaryCache = new Map<string, string>();

function findBinary(name: string, fallbackDirs: readonly string[]): string {
  const cached = binaryCache.get(name);
  if (cached !== undefined) return cached;
  const dirs = (process.env['PATH'] ?? '').split(path.delimiter).filter((d) => d !== '');
  for (const dir of [...dirs, ...fallbackDirs]) {
    const candidate = path.resolve(dir, name);
    if (isExecutable(candidate)) {
      binaryCache.set(name, candidate);
      return candidate;
    }
  }
  throw new Error(
    `${name} not found in PATH or ${fallbackDirs.join(', ')}; install the Debian packages ` +
      'mariadb-server and mariadb-client (bash scripts/install-deps.sh)',
  );
}

const mariadbdBin = (): string => findBinary('mariadbd', ['/usr/sbin']);
const installDbBin = (): string => findBinary('mariadb-install-db', ['/usr/bin']);
const clientBin = (): string => findBinary('mariadb', ['/usr/bin']);

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

// ---------------------------------------------------------------------------
// Cleanup of instances left running

interface Live {
  /** The current mariadbd process; undefined before the first spawn and while halted. */
  child: ChildProcess | undefined;
  dir: string;
}

const live = new Set<Live>();
let cleanupInstalled = false;

function killAllSync(): void {
  for (const inst of live) {
    try {
      inst.child?.kill('SIGKILL');
    } catch {
      /* already gone */
    }
    try {
      fs.rmSync(inst.dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      /* best effort */
    }
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  killAllSync();
  // If nobody else handles this signal, restore the default behaviour
  // (terminate) that our listener suppressed.
  if (process.listenerCount(signal) <= 1) {
    process.removeListener(signal, onSignal);
    process.kill(process.pid, signal);
  }
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
}

// ---------------------------------------------------------------------------
// Helpers

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: readonly string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    // The child may exit before reading all of stdin (e.g. on a login error).
    child.stdin.on('error', () => {});
    child.on('close', (code, signal) => {
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.end(input ?? '');
  });
}

function tail(file: string, lines = 30): string {
  try {
    const text = fs.readFileSync(file, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no error log)';
  }
}

export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function makeTempDir(name: string | undefined): string {
  const label = (name ?? '').replace(/[^A-Za-z0-9_-]/g, '').slice(0, 16);
  const prefix = `myproxy-mariadb-${label === '' ? '' : `${label}-`}`;
  const sockSuffix = `${path.sep}XXXXXX${path.sep}mysqld.sock`;
  let base = os.tmpdir();
  if (Buffer.byteLength(base + path.sep + prefix + sockSuffix) > SUN_PATH_MAX) base = '/tmp';
  return fs.mkdtempSync(path.join(base, prefix));
}

/**
 * Connects to the Unix socket and resolves true once the server sends its
 * greeting (a protocol-10 handshake packet), false on any other outcome.
 */
function probeGreeting(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      conn.destroy();
      resolve(ok);
    };
    const conn = net.connect(socket);
    let buf = Buffer.alloc(0);
    conn.setTimeout(2000, () => finish(false));
    conn.on('error', () => finish(false));
    conn.on('close', () => finish(false));
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 5) finish(buf[4] === 0x0a);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once a TCP connect to 127.0.0.1:port is refused (ECONNREFUSED). */
async function waitTcpRefused(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const refused = await new Promise<boolean>((resolve) => {
      const conn = net.connect(port, '127.0.0.1');
      conn.setTimeout(1000, () => {
        conn.destroy();
        resolve(false);
      });
      conn.once('connect', () => {
        conn.destroy();
        resolve(false);
      });
      conn.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
    });
    if (refused) return;
    if (Date.now() > deadline) throw new Error(`127.0.0.1:${port} still accepts connections`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------
// One mariadbd process

interface Proc {
  child: ChildProcess;
  pid: number;
  exited: () => boolean;
  exitPromise: Promise<void>;
}

/**
 * Spawns mariadbd with `args`, makes it the current child of `entry` (for the
 * exit cleanup) and waits until it greets on `socket`. On failure the process
 * is SIGKILLed and the promise rejects with the tail of `errorLog`; the
 * caller decides what to do with the directory and the `live` entry.
 */
async function launch(
  args: readonly string[],
  entry: Live,
  socket: string,
  errorLog: string,
  label: string,
): Promise<Proc> {
  installCleanup();
  const child = spawn(mariadbdBin(), args, { stdio: 'ignore' });
  // An instance a test forgets to stop must not keep the event loop alive;
  // the 'exit' handler kills it.
  child.unref();
  entry.child = child;

  let exited = false;
  let exitInfo = '';
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      exitInfo = `code ${String(code)}, signal ${String(signal)}`;
      resolve();
    });
  });
  let spawnError: Error | undefined;
  child.once('error', (e) => {
    spawnError = e;
    exited = true;
  });

  const fail = async (why: string): Promise<never> => {
    const log = tail(errorLog);
    if (!exited) {
      child.kill('SIGKILL');
      await Promise.race([exitPromise, sleep(5000)]);
    }
    throw new Error(`${label} ${why}\n--- tail of err.log ---\n${log}`);
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (spawnError !== undefined) return fail(`could not be spawned: ${spawnError.message}`);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the 'exit'/'error' handlers while we awaited
    if (exited) return fail(`exited during startup (${exitInfo})`);
    if (fs.existsSync(socket) && (await probeGreeting(socket))) break;
    if (Date.now() > deadline) return fail(`not ready after ${START_TIMEOUT_MS / 1000} s`);
    await sleep(50);
  }

  const pid = child.pid;
  if (pid === undefined) return fail('has no pid');
  return { child, pid, exited: () => exited, exitPromise };
}

/** SIGTERM `proc` and wait for its exit, SIGKILL after STOP_TIMEOUT_MS. */
async function terminate(proc: Proc): Promise<void> {
  if (proc.exited()) return;
  proc.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([proc.exitPromise, new Promise<void>((r) => (timer = setTimeout(r, STOP_TIMEOUT_MS)))]);
  clearTimeout(timer);
  if (!proc.exited()) {
    proc.child.kill('SIGKILL');
    await proc.exitPromise;
  }
}

// ---------------------------------------------------------------------------

let installQueue: Promise<unknown> = Promise.resolve();

/** Run `fn` after every install started before it has finished (one bootstrap at a time). */
function serializedInstall<T>(fn: () => Promise<T>): Promise<T> {
  const result = installQueue.then(fn, fn);
  installQueue = result.catch(() => undefined);
  return result;
}

export async function startMariaDB(opts: StartMariaDBOptions = {}): Promise<MariaDB> {
  mariadbdBin(); // fail early, before the install, when the server is missing
  const installDb = installDbBin();
  const label = opts.name === undefined ? 'MariaDB' : `MariaDB "${opts.name}"`;

  const dir = makeTempDir(opts.name);
  const dataDir = path.join(dir, 'data');
  const socket = path.join(dir, 'mysqld.sock');
  const pidFile = path.join(dir, 'mysqld.pid');
  const errorLog = path.join(dir, 'err.log');
  if (Buffer.byteLength(socket) > SUN_PATH_MAX) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`socket path too long for sun_path (${SUN_PATH_MAX} bytes): ${socket}`);
  }

  const userArgs = isRoot() ? ['--user=root'] : [];
  try {
    // Installs run one at a time: two bootstraps at once failed now and then on a loaded CI
    // machine ("Installation of system tables failed"). A failed install is tried once more.
    const install = () =>
      run(installDb, [
        '--no-defaults',
        `--datadir=${dataDir}`,
        ...userArgs,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        '--innodb-log-file-size=16M',
      ]);
    let inst = await serializedInstall(install);
    if (inst.code !== 0) {
      fs.rmSync(dataDir, { recursive: true, force: true });
      inst = await serializedInstall(install);
    }
    if (inst.code !== 0) {
      throw new Error(
        `mariadb-install-db failed twice (code ${String(inst.code)}, signal ${String(inst.signal)}):\n` +
          `${inst.stdout}\n${inst.stderr}`.trim(),
      );
    }
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  let tcpPort: number | undefined;
  if (opts.tcpPort !== undefined) tcpPort = opts.tcpPort === 0 ? await freeTcpPort() : opts.tcpPort;
  const netArgs = tcpPort === undefined ? ['--skip-networking'] : ['--bind-address=127.0.0.1', `--port=${tcpPort}`];

  const args = [
    '--no-defaults',
    `--datadir=${dataDir}`,
    `--socket=${socket}`,
    `--pid-file=${pidFile}`,
    `--log-error=${errorLog}`,
    ...userArgs,
    ...netArgs,
    '--plugin-load-add=auth_ed25519',
    '--max-allowed-packet=64M',
    '--innodb-buffer-pool-size=64M',
    '--skip-log-bin',
    '--innodb-flush-log-at-trx-commit=0',
    '--max-connections=2000',
    ...(opts.extraArgs ?? []),
  ];

  const entry: Live = { child: undefined, dir };
  live.add(entry);
  let current: Proc | undefined;
  try {
    current = await launch(args, entry, socket, errorLog, label);
  } catch (e) {
    live.delete(entry);
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    throw e;
  }

  // halt/resume/stop run one at a time, in call order.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = (fn: () => Promise<void>): Promise<void> => {
    const result = queue.then(fn, fn);
    queue = result.catch(() => undefined);
    return result;
  };
  let removed = false;

  const halt = (): Promise<void> =>
    serial(async () => {
      if (current === undefined) return;
      await terminate(current);
      current = undefined;
      entry.child = undefined;
      if (tcpPort !== undefined) await waitTcpRefused(tcpPort, STOP_TIMEOUT_MS);
    });

  const resume = (): Promise<void> =>
    serial(async () => {
      if (removed) throw new Error(`${label} was stopped; it cannot be resumed`);
      if (current !== undefined && !current.exited()) return;
      current = undefined;
      const proc = await launch(args, entry, socket, errorLog, label);
      current = proc;
      db.pid = proc.pid;
    });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= serial(async () => {
      if (current !== undefined) await terminate(current);
      current = undefined;
      removed = true;
      live.delete(entry);
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    });
    return stopped;
  };

  const query = async (sql: string): Promise<string> => {
    const r = await run(
      clientBin(),
      [
        '--no-defaults',
        '--protocol=socket',
        `--socket=${socket}`,
        '--user=root',
        '--batch',
        '--skip-column-names',
        '--default-character-set=utf8mb4',
      ],
      sql,
    );
    if (r.code !== 0) {
      const msg = r.stderr.trim();
      throw new Error(msg === '' ? `mariadb CLI failed (code ${String(r.code)}, signal ${String(r.signal)})` : msg);
    }
    return r.stdout;
  };

  const db: MariaDB = { dir, socket, pid: current.pid, errorLog, query, halt, resume, stop };
  if (tcpPort !== undefined) db.tcpPort = tcpPort;
  return db;
}

/**
 * Creates databases `test` and `sbtest` and the users of {@link USERS}
 * (`native` and `nopw` with mysql_native_password, `ed` with ed25519), each
 * with ALL on `test`.* and `sbtest`.*. Safe to call more than once.
 */
export async function createTestUsers(db: MariaDB): Promise<void> {
  const { native, nopw, ed } = USERS;
  const users = [native.user, nopw.user, ed.user];
  const sql = [
    'CREATE DATABASE IF NOT EXISTS `test`',
    'CREATE DATABASE IF NOT EXISTS `sbtest`',
    `CREATE OR REPLACE USER '${native.user}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('${native.password}')`,
    `CREATE OR REPLACE USER '${nopw.user}'@'%' IDENTIFIED VIA mysql_native_password USING ''`,
    `CREATE OR REPLACE USER '${ed.user}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('${ed.password}')`,
    ...users.flatMap((u) => [`GRANT ALL ON \`test\`.* TO '${u}'@'%'`, `GRANT ALL ON \`sbtest\`.* TO '${u}'@'%'`]),
    '',
  ].join(';\n');
  await db.query(sql);
}
