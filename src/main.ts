// Command line entry point: myproxy [--config PATH] [--check]

import { Instance, DEFAULT_INSTANCE_OPTIONS } from './instance.js';
import { runSupervisor, WorkerChannel, workerFromEnvironment } from './workers.js';
import type { RelayKind } from './net/relay.js';
import { ConfigError, errorMessage } from './util/errors.js';
import { logError, logInfo, setLogPrefix } from './util/log.js';
import {
  notifyEnabled,
  notifyReady,
  notifyReloading,
  notifyStopping,
  startWatchdog,
  StatusThrottle,
} from './util/sd-notify.js';

/** sysexits.h */
export const ExitCode = { OK: 0, SOFTWARE: 70, USAGE: 64, CONFIG: 78 } as const;

const USAGE =
  'Usage: myproxy [--config PATH] [--check] [--shutdown-grace SECONDS] [--write-timeout SECONDS] [--relay native|js]\n' +
  '               [--lua-budget MS] [--lua-memory MB] [--no-response-tracking] [--log-responses]\n' +
  '               [--max-connections N] [--workers N]';
/** More worker processes than this is a typo, not a plan (each holds a Lua VM and a Node heap). */
const MAX_WORKERS = 256;
export const DEFAULT_CONFIG_PATH = '/etc/myproxy/config.lua';
const DEFAULT_SHUTDOWN_GRACE_S = 30;

interface CommandLine {
  readonly configPath: string;
  readonly check: boolean;
  readonly shutdownGraceMs: number;
  readonly writeTimeoutMs: number;
  readonly relay: RelayKind;
  readonly luaBudgetMs: number;
  readonly luaMemoryBytes: number;
  readonly responseTracking: boolean;
  readonly logResponses: boolean;
  /** Worker processes (1: this process serves, no supervisor). */
  readonly workers: number;
  /** The arguments without --workers (what each worker is started with). */
  readonly workerArgs: readonly string[];
  readonly maxConnections: number;
}

export function parseCommandLine(argv: readonly string[]): CommandLine | string {
  let configPath = DEFAULT_CONFIG_PATH;
  let check = false;
  let graceS = DEFAULT_SHUTDOWN_GRACE_S;
  let writeTimeoutS = DEFAULT_INSTANCE_OPTIONS.writeTimeoutMs / 1000;
  let relay: RelayKind = DEFAULT_INSTANCE_OPTIONS.relay;
  let luaBudgetMs: number = DEFAULT_INSTANCE_OPTIONS.callbackBudgetMs;
  let luaMemoryBytes: number = DEFAULT_INSTANCE_OPTIONS.luaMemoryBytes;
  let responseTracking = true;
  let logResponses = false;
  let workers = 1;
  const workerArgs: string[] = [];
  let maxConnections = 0;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string | undefined => argv[++i];
    if (arg === '--workers' || arg.startsWith('--workers=')) {
      const v = Number(arg === '--workers' ? value() : arg.slice('--workers='.length));
      if (!Number.isInteger(v) || v < 1 || v > MAX_WORKERS) return `--workers needs a number from 1 to ${MAX_WORKERS}`;
      workers = v;
      continue;
    }
    const first = i;
    if (arg === '--config') {
      const v = value();
      if (v === undefined || v === '') return '--config needs a path';
      configPath = v;
    } else if (arg.startsWith('--config=')) {
      configPath = arg.slice('--config='.length);
    } else if (arg === '--check') {
      check = true;
    } else if (arg === '--shutdown-grace') {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 0) return '--shutdown-grace needs a number of seconds';
      graceS = v;
    } else if (arg === '--write-timeout') {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 0) return '--write-timeout needs a number of seconds (0 = none)';
      writeTimeoutS = v;
    } else if (arg === '--relay') {
      const v = value();
      if (v !== 'native' && v !== 'js') return '--relay needs "native" or "js"';
      relay = v;
    } else if (arg === '--lua-budget') {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 0) return '--lua-budget needs a number of milliseconds (0 = no limit)';
      luaBudgetMs = v;
    } else if (arg === '--lua-memory') {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 1) return '--lua-memory needs a number of megabytes (at least 1)';
      luaMemoryBytes = v * 1024 * 1024;
    } else if (arg === '--no-response-tracking') {
      responseTracking = false;
    } else if (arg === '--log-responses') {
      logResponses = true;
    } else if (arg === '--max-connections') {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 0) return '--max-connections needs a number of sessions (0 = no limit)';
      maxConnections = v;
    } else {
      return `unknown argument ${JSON.stringify(arg)}`;
    }
    workerArgs.push(...argv.slice(first, i + 1));
  }
  return {
    configPath,
    check,
    shutdownGraceMs: graceS * 1000,
    writeTimeoutMs: writeTimeoutS * 1000,
    relay,
    luaBudgetMs,
    luaMemoryBytes,
    responseTracking,
    logResponses,
    workers,
    workerArgs,
    maxConnections,
  };
}

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return ExitCode.OK;
  }
  const cmd = parseCommandLine(argv);
  if (typeof cmd === 'string') {
    process.stderr.write(`myproxy: ${cmd}\n${USAGE}\n`);
    return ExitCode.USAGE;
  }
  process.on('SIGPIPE', () => undefined);
  const worker = workerFromEnvironment();
  if (worker !== undefined) {
    // journald credits every line to the supervisor (the stream is inherited): say whose it is.
    setLogPrefix(`[worker ${worker.index}] `);
  }
  const supervising = cmd.workers > 1 && !cmd.check && worker === undefined;
  // systemd STATUS=: the number of connections, at most once a second (only under systemd).
  let started = false;
  let stopping = false;
  const status = new StatusThrottle();
  const statusText = (n: number): string => (stopping ? `draining ${connections(n)}` : connections(n));
  const instance = new Instance({
    ...DEFAULT_INSTANCE_OPTIONS,
    configPath: cmd.configPath,
    checkOnly: cmd.check,
    relay: cmd.relay,
    writeTimeoutMs: cmd.writeTimeoutMs,
    callbackBudgetMs: cmd.luaBudgetMs,
    luaMemoryBytes: cmd.luaMemoryBytes,
    responseTracking: cmd.responseTracking,
    logResponses: cmd.logResponses,
    maxConnections: cmd.maxConnections,
    ...(!cmd.check && notifyEnabled() ? { onConnectionCount: (n: number) => status.update(statusText(n)) } : {}),
    ...(worker !== undefined ? { worker } : {}),
    ...(supervising ? { supervisor: true } : {}),
  });
  // WATCHDOG=1 from the start: loading the config may take a while (host name lookups).
  if (!cmd.check) startWatchdog();
  if (supervising) logInfo(`starting ${cmd.workers} workers (pid=${process.pid} supervises)`);
  try {
    await instance.load();
  } catch (e) {
    if (e instanceof ConfigError) {
      logError(`myproxy: configuration error: ${e.message}`);
      return ExitCode.CONFIG;
    }
    throw e;
  }
  if (cmd.check) {
    logInfo(`${cmd.configPath}: configuration OK`);
    return ExitCode.OK;
  }
  if (supervising) {
    // The script that runs main() (none under `node -e`, where `--` ends Node's own options).
    const entry = process.argv.slice(1, process.argv.length - argv.length);
    const workerArgs = [...(entry.length > 0 ? entry : ['--']), ...cmd.workerArgs];
    return runSupervisor({ count: cmd.workers, workerArgs, instance });
  }
  const channel = worker !== undefined ? new WorkerChannel(instance) : undefined;
  // Signal handlers go in before the listeners start, so that a signal sent as soon as the
  // "listening on" line appears is never met by Node's default action (which would kill us).
  const stopped = new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logInfo(`caught ${signal} again, exiting now (pid=${process.pid})`);
        resolve(ExitCode.OK);
        return;
      }
      stopping = true;
      const text = statusText(instance.activeConnections);
      notifyStopping(text);
      status.sentElsewhere(text);
      logInfo(`caught ${signal}, shutting down (pid=${process.pid})`);
      instance.shutdown(cmd.shutdownGraceMs).then(
        () => resolve(ExitCode.OK),
        (e: unknown) => {
          logError(`shutdown: ${errorMessage(e)}`);
          resolve(ExitCode.SOFTWARE);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGQUIT', onSignal);
    // systemd learns about the reload: RELOADING=1 now, READY=1 once reload() is over (whether
    // it failed or not). A SIGHUP during a reload joins it (one more run, the same READY=1).
    let reloading: Promise<void> | null = null;
    process.on('SIGHUP', () => {
      logInfo('caught SIGHUP, running reload()');
      const run = instance.reload();
      if (run === reloading) return;
      reloading = run;
      // Before READY=1 (still starting), systemd hears nothing about it.
      const notify = started && !stopping;
      if (notify) notifyReloading();
      const done = (): void => {
        reloading = null;
        channel?.reloaded();
        if (!notify || stopping) return;
        const text = statusText(instance.activeConnections);
        notifyReady(text);
        status.sentElsewhere(text);
      };
      run.then(done, (e: unknown) => {
        logError(`reload: ${errorMessage(e)}`);
        done();
      });
    });
  });
  await instance.start();
  started = true;
  channel?.ready();
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a stop signal may have arrived while start() ran
  if (!stopping) {
    const text = statusText(instance.activeConnections);
    notifyReady(text);
    status.sentElsewhere(text);
  }
  return stopped;
}

function connections(n: number): string {
  return n === 1 ? '1 connection' : `${n} connections`;
}
