/**
 * Runs the myproxy daemon from the TypeScript source (through tsx) for integration tests.
 *
 * - startProxy(): writes config.lua into a fresh temp dir, spawns the daemon, waits for its
 *   `listening on ...` line(s) and returns a handle (logs, waitForLog, stop).
 * - runProxy(): a one-shot run (`--check`, bad usage, failing configs) with exit code and output.
 * - mariadbCli(): the real `mariadb` command line client against a socket.
 *
 * Daemons still running when the test process exits are SIGKILLed and their dirs removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Repository root (cwd of every daemon, so `--import tsx` resolves). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN_URL = pathToFileURL(path.join(REPO_ROOT, 'src', 'main.ts')).href;

/** Runs src/main.ts's main() with the arguments after `--`, like bin/myproxy.js does with dist/. */
const BOOTSTRAP =
  `import(${JSON.stringify(MAIN_URL)}).then((m) => m.main(process.argv.slice(1))).then(` +
  `(c) => process.exit(c), ` +
  `(e) => { process.stderr.write('myproxy: fatal: ' + (e && e.stack || String(e)) + '\\n'); process.exit(70); })`;

/** The argv (after process.execPath) that runs the daemon from source with `args`. */
export function daemonArgv(args: readonly string[]): string[] {
  return ['--import', 'tsx', '-e', BOOTSTRAP, '--', ...args];
}

export type ConfigSource = string | ((dir: string) => string);

export interface StartProxyOptions {
  /**
   * config.lua source. A string may contain the placeholder `${dir}` (literally, not a JS
   * template substitution) for the temp dir; the function form gets the dir.
   */
  config: ConfigSource;
  /** Label for the temp dir name. */
  name?: string;
  /** Extra daemon arguments (after `--config FILE`). */
  args?: string[];
  /** Extra environment variables (merged over process.env). */
  env?: NodeJS.ProcessEnv;
  /** How many `listening on` lines to wait for; default: the number of mysql_listen( calls. */
  listeners?: number;
  /** Called with the dir after config.lua is written and before the daemon starts. */
  prepare?: (dir: string) => void | Promise<void>;
  /** Startup timeout (ms), default 20000. */
  startTimeoutMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Proxy {
  /** The temp dir holding config.lua (and, by convention, proxy.sock). */
  readonly dir: string;
  /** `dir + '/proxy.sock'` (the conventional listener path; configs choose it themselves). */
  readonly socket: string;
  readonly configPath: string;
  readonly pid: number;
  /** stdout + stderr so far, interleaved in arrival order. */
  logs(): string;
  /**
   * Resolves with the first match of `re` in the log (searching from character offset `since`,
   * e.g. an earlier `logs().length`). Rejects after `timeoutMs` or when the daemon exits first.
   */
  waitForLog(re: RegExp, timeoutMs?: number, since?: number): Promise<RegExpExecArray>;
  /** True until the process has exited. */
  alive(): boolean;
  /** Resolves when the process exits (by itself or through stop()). */
  readonly exited: Promise<ExitStatus>;
  /** Send `signal` (default SIGTERM), wait for exit (SIGKILL after 15 s), remove dir. Idempotent. */
  stop(signal?: NodeJS.Signals): Promise<ExitStatus>;
}

// ---------------------------------------------------------------------------

interface Live {
  child: ChildProcess;
  dir: string;
}
const live = new Set<Live>();
let cleanupInstalled = false;

function killAllSync(): void {
  for (const l of live) {
    try {
      l.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
    fs.rmSync(l.dir, { recursive: true, force: true });
  }
  live.clear();
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', killAllSync);
}

function makeDir(name: string | undefined): string {
  const label = (name ?? '').replace(/[^A-Za-z0-9_-]/g, '').slice(0, 16);
  let base = os.tmpdir();
  // dir + '/proxy.sock' must fit into sun_path (108 bytes).
  if (Buffer.byteLength(base) > 60) base = '/tmp';
  return fs.mkdtempSync(path.join(base, `myproxy-${label === '' ? '' : `${label}-`}`));
}

function renderConfig(config: ConfigSource, dir: string): string {
  return typeof config === 'function' ? config(dir) : config.split('${dir}').join(dir);
}

function countListeners(source: string): number {
  const code = source.replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, '').replace(/--[^\n]*/g, '');
  return (code.match(/\bmysql_listen\s*\(/g) ?? []).length;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export async function startProxy(opts: StartProxyOptions): Promise<Proxy> {
  installCleanup();
  const dir = makeDir(opts.name);
  const configPath = path.join(dir, 'config.lua');
  const source = renderConfig(opts.config, dir);
  try {
    fs.writeFileSync(configPath, source);
    await opts.prepare?.(dir);
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const expected = opts.listeners ?? countListeners(source);

  const child = spawn(process.execPath, daemonArgv(['--config', configPath, ...(opts.args ?? [])]), {
    cwd: REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const entry: Live = { child, dir };
  live.add(entry);

  let log = '';
  const watchers = new Set<() => void>();
  const onOutput = (b: Buffer): void => {
    log += b.toString('utf8');
    for (const w of [...watchers]) w();
  };
  child.stdout.on('data', onOutput);
  child.stderr.on('data', onOutput);

  let exitStatus: ExitStatus | null = null;
  const exited = new Promise<ExitStatus>((resolve) => {
    // 'close' (not 'exit'): all output has been read by then.
    child.once('close', (code, signal) => {
      exitStatus = { code, signal };
      live.delete(entry);
      for (const w of [...watchers]) w();
      resolve(exitStatus);
    });
  });
  let spawnError: Error | undefined;
  child.once('error', (e) => {
    spawnError = e;
  });

  const waitForLog = (re: RegExp, timeoutMs = 10_000, since = 0): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const flags = re.flags.replace('g', '').replace('y', '');
      const matcher = new RegExp(re.source, flags);
      const check = (): void => {
        const m = matcher.exec(log.slice(since));
        if (m !== null) {
          done();
          resolve(m);
        } else if (exitStatus !== null || spawnError !== undefined) {
          done();
          reject(
            new Error(
              `myproxy exited (${JSON.stringify(exitStatus ?? spawnError?.message)}) before ${String(re)} was logged; output:\n${log}`,
            ),
          );
        }
      };
      const done = (): void => {
        watchers.delete(check);
        clearTimeout(timer);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(re)} in the myproxy log:\n${log}`));
      }, timeoutMs);
      watchers.add(check);
      check();
    });

  let stopped: Promise<ExitStatus> | undefined;
  const stop = (signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitStatus> => {
    stopped ??= (async () => {
      if (exitStatus === null && spawnError === undefined) {
        child.kill(signal);
        let timer: NodeJS.Timeout | undefined;
        const killed = new Promise<void>((r) => {
          timer = setTimeout(r, 15_000);
        });
        await Promise.race([exited, killed]);
        clearTimeout(timer);
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the 'close' handler while we awaited
        if (exitStatus === null) child.kill('SIGKILL');
      }
      const status = spawnError !== undefined ? { code: null, signal: null } : await exited;
      live.delete(entry);
      fs.rmSync(dir, { recursive: true, force: true });
      return status;
    })();
    return stopped;
  };

  const proxy: Proxy = {
    dir,
    socket: path.join(dir, 'proxy.sock'),
    configPath,
    get pid(): number {
      return child.pid ?? -1;
    },
    logs: () => log,
    waitForLog,
    alive: () => exitStatus === null && spawnError === undefined,
    exited,
    stop,
  };

  try {
    let from = 0;
    for (let i = 0; i < expected; i++) {
      const m = await waitForLog(/^listening on .*$/m, opts.startTimeoutMs ?? 20_000, from);
      from += m.index + m[0].length;
    }
  } catch (e) {
    await stop('SIGKILL');
    throw new Error(`myproxy did not start: ${(e as Error).message}`);
  }
  return proxy;
}

// ---------------------------------------------------------------------------

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The temp dir config.lua was written to (already removed). */
  dir: string;
  configPath: string;
}

export interface RunProxyOptions {
  /** When given, written to DIR/config.lua and `--config DIR/config.lua` is put before `args`. */
  config?: ConfigSource;
  name?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the run after this many ms (default 30000). */
  timeoutMs?: number;
}

/** One-shot daemon run: `args` may contain `${dir}` / `${config}` placeholders (literally). */
export async function runProxy(args: readonly string[], opts: RunProxyOptions = {}): Promise<RunResult> {
  const dir = makeDir(opts.name);
  const configPath = path.join(dir, 'config.lua');
  try {
    const argv = args.map((a) => a.split('${dir}').join(dir).split('${config}').join(configPath));
    if (opts.config !== undefined) {
      fs.writeFileSync(configPath, renderConfig(opts.config, dir));
      argv.unshift('--config', configPath);
    }
    const r = await new Promise<Omit<RunResult, 'dir' | 'configPath'>>((resolve, reject) => {
      const child = spawn(process.execPath, daemonArgv(argv), {
        cwd: REPO_ROOT,
        env: { ...process.env, ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
    return { ...r, dir, configPath };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The `mariadb` CLI as `user` over the Unix socket `socket`: `--batch --skip-column-names -e sql`.
 * An empty password sends none (no -p). Killed after 30 s.
 */
export function mariadbCli(
  socket: string,
  user: string,
  password: string,
  sql: string,
  extraArgs: readonly string[] = [],
  opts: { readonly uid?: number } = {},
): Promise<CliResult> {
  const args = [
    '--no-defaults',
    '--protocol=socket',
    '-S',
    socket,
    '-u',
    user,
    ...(password === '' ? [] : [`-p${password}`]),
    '--batch',
    '--skip-column-names',
    ...extraArgs,
    '-e',
    sql,
  ];
  // With `uid`, the client runs as that user (and group), so peer credentials differ from ours.
  return runCommand('mariadb', args, opts.uid === undefined ? {} : { uid: opts.uid });
}

export interface RunCommandOptions {
  /** Run as this uid (and gid), with a minimal environment. */
  readonly uid?: number;
  /** Written to the child's stdin (otherwise stdin is empty). */
  readonly input?: string;
  /** Called with the child right after it was spawned (e.g. to learn its pid). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

/** Run a command to its end and collect its output; killed after 30 s. */
export function runCommand(cmd: string, args: readonly string[], opts: RunCommandOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const asUser =
      opts.uid === undefined
        ? {}
        : { uid: opts.uid, gid: opts.uid, cwd: '/', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/' } };
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...asUser });
    opts.onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** A Lua string literal holding exactly `bytes` ("\xNN" escapes). */
export function luaBytes(bytes: Uint8Array): string {
  return '"' + Array.from(bytes, (b) => '\\x' + b.toString(16).padStart(2, '0')).join('') + '"';
}

/** A Lua string literal for `text` (UTF-8, every byte escaped, so any content is safe). */
export function luaString(text: string): string {
  return luaBytes(Buffer.from(text, 'utf8'));
}

export { escapeRe };

/** Reject if `p` does not settle within `ms`: turns a hang into a test failure that says what hung. */
export function guard<T>(p: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms);
    }),
  ]);
}
