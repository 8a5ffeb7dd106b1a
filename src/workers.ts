// `myproxy --workers N`: one supervisor process and N workers that serve the same sockets.
//
// The supervisor runs config.lua once to bind every socket it names (so a bad address is still
// a configuration error naming the line, before any worker starts), then starts N copies of the
// daemon with those sockets as inherited fds. Each worker runs the same config in a Lua VM of its
// own and accepts on the shared listening sockets (the kernel hands each new connection to one
// of them). Cluster routing needs no coordination: rendezvous hashing gives every worker the same
// answer. The supervisor keeps what must be one per daemon: systemd's notifications and watchdog,
// the socket files (removed only when the whole daemon stops), the Prometheus exporter (it asks
// every worker and labels their samples worker="N") and the control protocol (each datagram goes
// to every worker).

import { spawn, type ChildProcess } from 'node:child_process';
import type { Instance } from './instance.js';
import { RemoteSession, type SessionSnapshot } from './proxy/kill.js';
import { workerOfId } from './proxy/registry.js';
import { mergeExpositions, startExporter, type MetricsSource } from './service/prometheus.js';
import { startControlReceiver } from './service/control.js';
import { errorMessage } from './util/errors.js';
import { logError, logInfo } from './util/log.js';
import { notifyReady, notifyReloading, notifyStopping } from './util/sd-notify.js';

/** The environment a worker finds its index and sockets in. */
const WORKER_ENV = 'MYPROXY_WORKER';
const SOCKETS_ENV = 'MYPROXY_WORKER_SOCKETS';
/** The first inherited socket's fd in a worker (0-2 are stdio, 3 the channel to the supervisor). */
const FIRST_SOCKET_FD = 4;
/** How long a scrape waits for a worker's metrics. */
const METRICS_TIMEOUT_MS = 5_000;
/** A worker that dies is started again after this long (doubling up to a minute while it keeps dying). */
const RESTART_DELAY_MS = 1_000;
const MAX_RESTART_DELAY_MS = 60_000;
/** A worker that ran this long before dying restarts after the base delay again. */
const STABLE_RUN_MS = 30_000;

/** Messages from the supervisor to a worker. */
export type SupervisorMessage =
  | { readonly type: 'metrics'; readonly id: number }
  | { readonly type: 'control'; readonly label: string; readonly datagram: Buffer }
  /** Describe your session `session` (another worker's KILL names it). */
  | { readonly type: 'session?'; readonly id: number; readonly session: number }
  /** The answer to this worker's 'session?' number `id`. */
  | { readonly type: 'session'; readonly id: number; readonly snapshot: SessionSnapshot | null };

/** Messages from a worker to the supervisor. */
export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'reloaded' }
  | { readonly type: 'metrics'; readonly id: number; readonly body: string }
  /** Which worker has session `session`, and what is it? (answered with 'session' and this `id`) */
  | { readonly type: 'session?'; readonly id: number; readonly session: number }
  /** This worker's answer to the supervisor's 'session?' number `id`. */
  | { readonly type: 'session'; readonly id: number; readonly snapshot: SessionSnapshot | null };

/** How long a KILL waits for another worker to describe the session it names. */
const SESSION_LOOKUP_TIMEOUT_MS = 2_000;

/** The worker this process is (from the supervisor's environment), or undefined. */
export function workerFromEnvironment(
  env: NodeJS.ProcessEnv = process.env,
): { index: number; sockets: Map<string, number> } | undefined {
  const index = env.MYPROXY_WORKER;
  const sockets = env.MYPROXY_WORKER_SOCKETS;
  delete env.MYPROXY_WORKER;
  delete env.MYPROXY_WORKER_SOCKETS;
  if (index === undefined || sockets === undefined || process.send === undefined) return undefined;
  return { index: Number(index), sockets: new Map(JSON.parse(sockets) as [string, number][]) };
}

/** A worker's side of the channel: answer scrapes and control datagrams, report start and reloads. */
export class WorkerChannel {
  readonly #instance: Instance;

  readonly #lookups = new Map<number, (snapshot: SessionSnapshot | null) => void>();
  #nextLookup = 1;

  constructor(instance: Instance) {
    this.#instance = instance;
    process.on('message', (message: SupervisorMessage) => this.#receive(message));
    // KILL <id> of a session another worker serves (the CLI's Ctrl-C lands on any worker).
    instance.registry.setElsewhere(
      (session) =>
        new Promise((resolve) => {
          if (!process.connected) {
            resolve(undefined);
            return;
          }
          const id = this.#nextLookup++;
          const timer = setTimeout(() => done(null), SESSION_LOOKUP_TIMEOUT_MS);
          const done = (snapshot: SessionSnapshot | null): void => {
            clearTimeout(timer);
            this.#lookups.delete(id);
            resolve(snapshot === null ? undefined : new RemoteSession(snapshot));
          };
          this.#lookups.set(id, done);
          this.#send({ type: 'session?', id, session });
        }),
    );
    // The supervisor went away (killed hard): drain as on SIGTERM rather than serve on alone.
    process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  }

  ready(): void {
    this.#send({ type: 'ready' });
  }

  reloaded(): void {
    this.#send({ type: 'reloaded' });
  }

  #send(message: WorkerMessage): void {
    if (process.connected) process.send?.(message);
  }

  #receive(message: SupervisorMessage): void {
    switch (message.type) {
      case 'metrics':
        this.#instance.renderMetrics().then(
          (body) => this.#send({ type: 'metrics', id: message.id, body }),
          (e: unknown) => {
            logError(`metrics: ${errorMessage(e)}`);
            this.#send({ type: 'metrics', id: message.id, body: '' });
          },
        );
        break;
      case 'control':
        this.#instance.handleControl(Buffer.from(message.datagram), message.label);
        break;
      case 'session?':
        this.#send({
          type: 'session',
          id: message.id,
          snapshot: this.#instance.sessionSnapshot(message.session) ?? null,
        });
        break;
      case 'session':
        this.#lookups.get(message.id)?.(message.snapshot);
        break;
    }
  }
}

interface Worker {
  readonly index: number;
  child: ChildProcess | null;
  ready: boolean;
  startedAt: number;
  restartDelayMs: number;
  restartTimer: NodeJS.Timeout | null;
  /** Called when this worker reports a finished reload (or dies). */
  onReloaded: (() => void) | null;
}

export interface SupervisorOptions {
  readonly count: number;
  /**
   * What runs a worker after Node's own options: the script and the daemon's arguments without
   * --workers (or `--` and the arguments, when the daemon runs from `node -e`).
   */
  readonly workerArgs: readonly string[];
  /** A loaded (not started) instance: its sockets are the ones the workers share. */
  readonly instance: Instance;
}

/**
 * Runs the workers until SIGTERM, SIGINT or SIGQUIT has drained them all; resolves with the
 * daemon's exit status. A worker that cannot start makes the whole daemon fail to start.
 */
export function runSupervisor(options: SupervisorOptions): Promise<number> {
  const { count, instance } = options;
  const sockets = instance.listenerSockets;
  const stdio: (string | number)[] = ['inherit', 'inherit', 'inherit', 'ipc', ...sockets.map((s) => s.fd)];
  const socketMap = JSON.stringify(sockets.map((s, i) => [s.key, FIRST_SOCKET_FD + i]));
  // systemd talks to the supervisor only.
  const systemdNames = new Set([
    'NOTIFY_SOCKET',
    'WATCHDOG_USEC',
    'WATCHDOG_PID',
    'LISTEN_PID',
    'LISTEN_FDS',
    'LISTEN_FDNAMES',
  ]);
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !systemdNames.has(name)),
  );
  env[SOCKETS_ENV] = socketMap;
  const workers: Worker[] = Array.from({ length: count }, (_, index) => ({
    index,
    child: null,
    ready: false,
    startedAt: 0,
    restartDelayMs: RESTART_DELAY_MS,
    restartTimer: null,
    onReloaded: null,
  }));
  const scrapes = new Map<number, (body: string) => void>();
  let nextScrape = 1;
  const lookups = new Map<number, (snapshot: SessionSnapshot | null) => void>();
  let nextLookup = 1;
  let started = false;
  let stopping = false;
  let serviceStops: (() => void)[] = [];

  return new Promise<number>((resolve) => {
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      for (const stop of serviceStops) stop();
      serviceStops = [];
      instance.releaseSockets();
      resolve(code);
    };
    const allExited = (): boolean => workers.every((w) => w.child === null);

    const spawnWorker = (w: Worker): void => {
      w.restartTimer = null;
      w.ready = false;
      w.startedAt = Date.now();
      const child = spawn(process.execPath, [...process.execArgv, ...options.workerArgs], {
        stdio: stdio as never,
        env: { ...env, [WORKER_ENV]: String(w.index) },
        serialization: 'advanced',
        // A session of its own: a terminal's Ctrl-C reaches the supervisor, which drains the
        // workers once, instead of every process at the same time.
        detached: true,
      });
      w.child = child;
      child.on('message', (message: WorkerMessage) => {
        switch (message.type) {
          case 'ready':
            w.ready = true;
            logInfo(`worker ${w.index} (pid=${String(child.pid)}) is serving`);
            if (!started && workers.every((x) => x.ready)) {
              started = true;
              notifyReady(`${count} workers`);
            }
            break;
          case 'reloaded':
            w.onReloaded?.();
            break;
          case 'metrics':
            scrapes.get(message.id)?.(message.body);
            break;
          case 'session?': {
            // Ask the worker whose range the id is in; answer "none" when it is not there.
            const owner = workers[workerOfId(message.session)]?.child;
            const answer = (snapshot: SessionSnapshot | null): void => {
              if (child.connected)
                child.send({ type: 'session', id: message.id, snapshot } satisfies SupervisorMessage);
            };
            if (owner === null || owner === undefined || !owner.connected) {
              answer(null);
              break;
            }
            const id = nextLookup++;
            lookups.set(id, answer);
            setTimeout(() => {
              lookups.get(id)?.(null);
              lookups.delete(id);
            }, SESSION_LOOKUP_TIMEOUT_MS).unref();
            owner.send({ type: 'session?', id, session: message.session } satisfies SupervisorMessage);
            break;
          }
          case 'session': {
            const answer = lookups.get(message.id);
            lookups.delete(message.id);
            answer?.(message.snapshot);
            break;
          }
        }
      });
      child.on('exit', (code, signal) => {
        w.child = null;
        w.onReloaded?.();
        const how = signal !== null ? `signal ${signal}` : `status ${String(code)}`;
        if (stopping) {
          logInfo(`worker ${w.index} (pid=${String(child.pid)}) exited (${how})`);
          if (allExited()) finish(0);
          return;
        }
        if (!started && !w.ready) {
          // It never served: the same would happen again (a config that fails in a worker only).
          logError(`worker ${w.index} (pid=${String(child.pid)}) failed to start (${how}); stopping the others`);
          stopping = true;
          for (const x of workers) x.child?.kill('SIGTERM');
          const status = code === 78 ? 78 : 70;
          if (allExited()) finish(status);
          else
            for (const x of workers)
              x.child?.once('exit', () => {
                if (allExited()) finish(status);
              });
          return;
        }
        if (Date.now() - w.startedAt >= STABLE_RUN_MS) w.restartDelayMs = RESTART_DELAY_MS;
        logError(
          `worker ${w.index} (pid=${String(child.pid)}) exited (${how}); starting it again in ${w.restartDelayMs} ms`,
        );
        w.restartTimer = setTimeout(() => spawnWorker(w), w.restartDelayMs);
        w.restartDelayMs = Math.min(MAX_RESTART_DELAY_MS, w.restartDelayMs * 2);
      });
    };

    // One exporter for the daemon: every worker's samples, labelled with its index.
    const source: MetricsSource = {
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
      metrics: async () => {
        const bodies = await Promise.all(
          workers.map(
            (w) =>
              new Promise<string>((done) => {
                const child = w.child;
                if (child === null || !child.connected || !w.ready) {
                  done('');
                  return;
                }
                const id = nextScrape++;
                const timer = setTimeout(() => {
                  scrapes.delete(id);
                  done('');
                }, METRICS_TIMEOUT_MS);
                scrapes.set(id, (body) => {
                  clearTimeout(timer);
                  scrapes.delete(id);
                  done(body);
                });
                child.send({ type: 'metrics', id } satisfies SupervisorMessage);
              }),
          ),
        );
        return mergeExpositions(bodies);
      },
    };
    const startServices = async (): Promise<void> => {
      const services = instance.serviceSockets;
      if (services === null) return;
      for (const spec of services.prometheus) {
        const server = await startExporter(spec.fd, spec.label, source);
        serviceStops.push(() => server.close());
        logInfo(`prometheus exporter listening on ${spec.label} (all ${count} workers)`);
      }
      for (const spec of services.control) {
        serviceStops.push(
          startControlReceiver(spec, instance.metrics, (datagram) => {
            for (const w of workers) {
              if (w.child?.connected === true) {
                w.child.send({ type: 'control', label: spec.label, datagram } satisfies SupervisorMessage);
              }
            }
          }),
        );
        logInfo(`control listening on ${spec.label} (all ${count} workers)`);
      }
    };

    const onStop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logInfo(`caught ${signal} again, passing it on (pid=${process.pid})`);
        for (const w of workers) w.child?.kill(signal);
        return;
      }
      stopping = true;
      notifyStopping(`draining ${count} workers`);
      logInfo(`caught ${signal}, shutting down ${count} workers (pid=${process.pid})`);
      for (const w of workers) {
        if (w.restartTimer !== null) clearTimeout(w.restartTimer);
        w.restartTimer = null;
        w.child?.kill('SIGTERM');
      }
      if (allExited()) finish(0);
    };
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGQUIT', onStop);

    // SIGHUP: every worker runs reload(); systemd hears READY=1 when the last one is done.
    let reloading = false;
    process.on('SIGHUP', () => {
      if (stopping) return;
      logInfo(`caught SIGHUP, passing it on to ${count} workers`);
      const running = workers.filter((w) => w.child !== null && w.ready);
      const notify = started && !reloading;
      if (notify) notifyReloading();
      reloading = true;
      let left = running.length;
      const oneDone = (): void => {
        if (--left > 0) return;
        reloading = false;
        if (notify && !stopping) notifyReady(`${count} workers`);
      };
      if (left === 0) oneDone();
      for (const w of running) {
        w.onReloaded = () => {
          w.onReloaded = null;
          oneDone();
        };
        w.child!.kill('SIGHUP');
      }
    });

    startServices().then(
      () => {
        for (const w of workers) spawnWorker(w);
      },
      (e: unknown) => {
        logError(`supervisor: ${errorMessage(e)}`);
        finish(70);
      },
    );
  });
}
