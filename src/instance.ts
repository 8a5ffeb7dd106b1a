// The daemon instance: owns the Lua state, the listeners and the live connections.

import { unlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { dirname, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lua, lauxlib, type LuaState } from './lua/fengari.js';
import { installAddress, resolvePending } from './bindings/address.js';
import { installClient, LuaSessionHandler } from './bindings/client.js';
import { installCluster, type ClusterBindings } from './bindings/cluster.js';
import { installListen, takeSystemdFds, type ListenerSpec } from './bindings/listen.js';
import { installServices, type ServiceBindings } from './bindings/services.js';
import { installControlClient } from './bindings/control-client.js';
import { installSocket } from './bindings/socket.js';
import { installLuaMetrics } from './bindings/lua-metrics.js';
import { installNodeInterop } from './bindings/node-interop.js';
import type { Registry } from 'prom-client';
import { buildRegistry, renderRegistry, startExporter } from './service/prometheus.js';
import { handleControlDatagram, startControl } from './service/control.js';
import sodium from 'libsodium-wrappers';
import { installJson } from './bindings/json.js';
import { installJwt } from './bindings/jwt.js';
import { installSleep } from './bindings/sleep.js';
import { installSodium } from './bindings/sodium.js';
import { installPg, pgPoolStats } from './bindings/pg.js';
import { CallbackRunner } from './lua/coroutine.js';
import { DEFAULT_LUA_MEMORY_BYTES, configureLuaMemory } from './lua/limits.js';
import { addPackagePath, newLuaState, runFile, LuaScriptError } from './lua/state.js';
import { addonFunctions, closeFd, type AcceptWatchHandle } from './net/native.js';
import { readPeerIdentity } from './net/peer-identity.js';
import { Connection, type ConnectionOptions } from './proxy/connection.js';
import type { RelayKind } from './net/relay.js';
import { checkTrackerLayout } from './net/tracking.js';
import { ConnectErrorBudget, FdBudget, hostBlocked, hostOfAddress, tooManyConnections } from './proxy/admission.js';
import type { KillableSession } from './proxy/command-filter.js';
import type { PeerIdentity } from './proxy/handler.js';
import { snapshotSession, type SessionSnapshot } from './proxy/kill.js';
import { SessionRegistry } from './proxy/registry.js';
import { ClientErrors, ConfigError, errorMessage } from './util/errors.js';
import { PROBE_TIMEOUT_MS, probeServers } from './backend/probe.js';
import { logError, logErrorBlock, logInfo, logLimited } from './util/log.js';
import { ProxyMetrics } from './util/metrics.js';
import { closeAllPools } from './backend/pool.js';
import { CallbackFailed } from './lua/coroutine.js';

export interface InstanceOptions {
  readonly configPath: string;
  /** Backend connect + login timeout (ms). */
  readonly connectTimeoutMs: number;
  /** How long a client may take for each login packet (ms). */
  readonly clientTimeoutMs: number;
  /** Close a session whose peer takes no data for this long (ms); 0 disables. */
  readonly writeTimeoutMs?: number;
  /** How long a Lua callback may compute without yielding (ms); reload() gets ten times that. */
  readonly callbackBudgetMs: number;
  /** Memory limit of the Lua VM (bytes). */
  readonly luaMemoryBytes?: number;
  /** Command-phase relay: the native byte pump, or the portable JavaScript one. */
  readonly relay: RelayKind;
  /** Follow responses in the relay (default true; off only to measure what tracking costs). */
  readonly responseTracking?: boolean;
  /** Log every finished response (--log-responses). */
  readonly logResponses?: boolean;
  /** `--check`: run the config without binding sockets. */
  readonly checkOnly?: boolean;
  /** Sessions the whole daemon serves at once (--max-connections; 0 or absent: only the fd budget). */
  readonly maxConnections?: number;
  /** Called whenever the number of live connections changes (e.g. for systemd's STATUS=). */
  readonly onConnectionCount?: (count: number) => void;
  /**
   * This process is worker `index` of a `--workers N` daemon: its listening sockets come from the
   * supervisor (by ListenerSpec.key), and the supervisor serves prometheus_listen and
   * control_listen (the worker answers its requests through renderMetrics() and handleControl()).
   */
  readonly worker?: { readonly index: number; readonly sockets: ReadonlyMap<string, number> };
  /** The supervisor of `--workers N`: load() binds the sockets; nothing is served or monitored here. */
  readonly supervisor?: boolean;
}

export const DEFAULT_INSTANCE_OPTIONS = {
  connectTimeoutMs: 10_000,
  clientTimeoutMs: 10_000,
  writeTimeoutMs: 60_000,
  callbackBudgetMs: 100,
  luaMemoryBytes: DEFAULT_LUA_MEMORY_BYTES,
  relay: 'native',
} as const;

/** reload() may compute this many times the callback budget (it typically rebuilds tables). */
const RELOAD_BUDGET_FACTOR = 10;
/** How long a listener whose accept() failed waits before it accepts again. */
const ACCEPT_PAUSE_MS = 100;

/** The daemon's Lua library (lua/ at the package root): `require('myproxy.rules')` and the like. */
const SHIPPED_LUA_DIR = resolvePath(dirname(fileURLToPath(import.meta.url)), '..', 'lua');

export class Instance {
  readonly metrics = new ProxyMetrics();
  readonly registry: SessionRegistry<KillableSession>;
  #fdBudget: FdBudget | null = null;
  /** Failed handshakes by client address (max_connect_errors). */
  readonly connectErrors = new ConnectErrorBudget();
  readonly #options: InstanceOptions;
  #L: LuaState | null = null;
  #listeners: ListenerSpec[] = [];
  /** The native acceptors of the listeners (see #startAccepting). */
  readonly #acceptors: AcceptWatchHandle[] = [];
  readonly #connections = new Set<Connection>();
  #stopping = false;
  #runner: CallbackRunner | null = null;
  #reloadRunner: CallbackRunner | null = null;
  #clusters: ClusterBindings | null = null;
  #services: ServiceBindings | null = null;
  readonly #serviceStops: (() => void)[] = [];
  /** 'idle', 'running', or 'again' (a SIGHUP arrived while reload() ran: run it once more). */
  #reloadState: 'idle' | 'running' | 'again' = 'idle';
  /** The reload in progress (settles after the last coalesced run), or null. */
  #reloading: Promise<void> | null = null;
  /** A worker's metrics registry (built at the supervisor's first scrape). */
  #workerRegistry: Registry | null = null;

  constructor(options: InstanceOptions) {
    this.#options = options;
    // Each worker hands out connection ids from a range of its own: KILL and logs stay unambiguous.
    this.registry = new SessionRegistry<KillableSession>(options.worker?.index ?? 0);
  }

  get activeConnections(): number {
    return this.#connections.size;
  }

  /** Run config.lua and bind its listeners. Throws ConfigError (file:line in the message). */
  async load(): Promise<void> {
    const configPath = resolvePath(this.#options.configPath);
    const baseDir = dirname(configPath);
    await sodium.ready;
    const L = newLuaState();
    addPackagePath(L, [baseDir, SHIPPED_LUA_DIR]);
    installClient(L);
    installSodium(L, sodium);
    installJson(L);
    installJwt(L, sodium);
    installSleep(L);
    installPg(L, () => this.#runner);
    const address = installAddress(L);
    const check = this.#options.checkOnly === true;
    const clusters = installCluster(L, { monitor: !check && this.#options.supervisor !== true, metrics: this.metrics });
    const worker = this.#options.worker;
    const listen = installListen(L, {
      baseDir,
      systemdFds: () => (check ? [] : worker !== undefined ? inheritedSystemdFds(worker.sockets) : takeSystemdFds()),
      bind: !check,
      ...(worker !== undefined ? { inherited: (key: string) => worker.sockets.get(key) } : {}),
    });
    // A worker does not bind the exporter's and the control protocol's sockets: the supervisor
    // serves them for all workers.
    const services = installServices(L, { bind: !check && worker === undefined });
    installControlClient(L);
    installSocket(L);
    installLuaMetrics(L, this.metrics);
    installNodeInterop(L, configPath);
    try {
      runFile(L, configPath);
      if (listen.declared === 0) throw new ConfigError(`${configPath}: No listeners configured`);
      await resolvePending(address.pending);
      clusters.enterRuntime();
    } catch (e) {
      listen.closeAll();
      services.closeAll();
      if (e instanceof ConfigError) throw e;
      if (e instanceof LuaScriptError) throw new ConfigError(e.message);
      throw new ConfigError(errorMessage(e), { cause: e });
    }
    address.enterRuntime();
    // The supervisor of --workers greets no client: its workers learn the greetings themselves.
    if (!check && this.#options.supervisor !== true) {
      // Learn the servers' greetings before the first client is greeted (docs/protocol.md).
      await probeServers(
        [
          ...address.configured.map((b) => b.address),
          ...clusters.nodeAddresses(),
          // Listeners' destinations given as address strings are in neither list.
          ...listen.listeners.flatMap((l) => (l.refs.destinations ?? []).map((d) => d.address)),
        ],
        Math.min(this.#options.connectTimeoutMs, PROBE_TIMEOUT_MS),
        logInfo,
      );
    }
    listen.enterRuntime(L);
    services.enterRuntime(L);
    lua.lua_getglobal(L, 'populate_io_buffers');
    if (lua.lua_toboolean(L, -1)) {
      // myproxy pre-faults its I/O buffer pool; here Node allocates per read and the pump reads
      // into one buffer per process: there is nothing to populate.
      logInfo('populate_io_buffers: accepted (nothing to pre-fault in this daemon)');
    }
    lua.lua_pop(L, 1);
    this.metrics.accountLimit = services.accountLimit;
    this.#services = services;
    this.#clusters = clusters;
    this.#L = L;
    this.#listeners = listen.listeners;
  }

  /** Start accepting connections on every listener bound by load(). */
  async start(): Promise<void> {
    const L = this.#L;
    if (L === null) throw new Error('Instance.start() before load()');
    const runner = new CallbackRunner(L, { budgetMs: this.#options.callbackBudgetMs });
    this.#runner = runner;
    this.#reloadRunner = new CallbackRunner(L, { budgetMs: this.#options.callbackBudgetMs * RELOAD_BUDGET_FACTOR });
    // What the configuration keeps is the baseline; callbacks are limited beyond it.
    configureLuaMemory(this.#options.luaMemoryBytes ?? DEFAULT_LUA_MEMORY_BYTES);
    checkTrackerLayout();
    this.#fdBudget = new FdBudget();
    this.#fdBudget.measure(0);
    this.#startWriteTimeoutSweep();
    for (const spec of this.#listeners) {
      if (this.#stopping) return; // a signal arrived while we were starting
      const listener = this.#listenerState(spec, new LuaSessionHandler(L, runner, spec.refs, this.metrics));
      this.#acceptors.push(this.#startAccepting(listener));
      logInfo(`listening on ${spec.label}`);
    }
    await this.#startServices();
  }

  /** The Prometheus exporters and control listeners config.lua asked for. */
  async #startServices(): Promise<void> {
    const services = this.#services;
    if (services === null) return;
    if (services.prometheus.length > 0) {
      const registry = buildRegistry({
        metrics: this.metrics,
        sessions: () => this.registry.size,
        pgPools: () => pgPoolStats(),
        blockedHosts: () => this.connectErrors.blockedCount(),
      });
      for (const spec of services.prometheus) {
        const server = await startExporter(spec.fd, spec.label, registry);
        this.#serviceStops.push(() => server.close());
        logInfo(`prometheus exporter listening on ${spec.label}`);
      }
    }
    for (const spec of services.control) {
      this.#serviceStops.push(
        startControl(spec, {
          metrics: this.metrics,
          sessionsOf: (account) => this.registry.byAccount(account),
        }),
      );
      logInfo(`control listening on ${spec.label}`);
    }
  }

  /**
   * One timer for all sessions (no timer per connection): every few seconds, each relayed session
   * is asked how long its pending bytes have waited. The timeout is thus enforced within a sweep
   * interval (a quarter of it, at most 5 s).
   */
  #startWriteTimeoutSweep(): void {
    const limitMs = this.#options.writeTimeoutMs ?? DEFAULT_INSTANCE_OPTIONS.writeTimeoutMs;
    if (limitMs <= 0) return;
    const everyMs = Math.min(5_000, Math.max(100, Math.floor(limitMs / 4)));
    // Unref'd, and kept through a shutdown's grace period (a stalled session must not hold it).
    setInterval(() => {
      for (const c of this.#connections) c.closeIfStalled(limitMs);
    }, everyMs).unref();
  }

  /** What accepting on one listener needs, made once (sessions share its options object). */
  #listenerState(spec: ListenerSpec, handler: LuaSessionHandler): ListenerState {
    const limits = spec.limits;
    const budget = this.connectErrors;
    const options: ConnectionOptions = {
      clientTimeoutMs: this.#options.clientTimeoutMs,
      connectTimeoutMs: this.#options.connectTimeoutMs,
      metrics: this.metrics,
      registry: this.registry,
      relay: this.#options.relay,
      responseTracking: this.#options.responseTracking !== false,
      logResponses: this.#options.logResponses === true,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      onHandshakeFailed: (peer, reason) => {
        if (peer.address === undefined) return;
        const host = hostOfAddress(peer.address);
        if (budget.failed(host, limits.maxConnectErrors, limits.connectErrorBlockMs)) {
          logInfo(
            `blocking ${host} for ${limits.connectErrorBlockMs / 1000} s: ${limits.maxConnectErrors} failed ` +
              `handshakes in a row (max_connect_errors; the last: ${reason})`,
          );
        }
      },
      onHandshakeDone: (peer) => {
        if (peer.address !== undefined) budget.succeeded(hostOfAddress(peer.address));
      },
    };
    return { spec, handler, options, sessions: 0 };
  }

  /**
   * Connections arrive as bare fds from the addon's acceptor: a Unix client's login then runs on
   * its fd without a net.Socket (FdPacketChannel), and the fd goes to the pump as it is. A TCP
   * client gets a net.Socket around its fd (TLS and the JavaScript relay need one).
   */
  #startAccepting(listener: ListenerState): AcceptWatchHandle {
    const addon = addonFunctions();
    const handle: AcceptWatchHandle = addon.acceptWatch(listener.spec.fd, tooManyConnections(), (fd, code, halted) => {
      if (fd >= 0) this.#accept(fd, listener);
      else this.#acceptFailed(listener.spec, code ?? 'EIO', halted, handle);
    });
    return handle;
  }

  /**
   * accept() failed. Out of descriptors, the acceptor refuses the waiting client with 1040 from a
   * descriptor it keeps in reserve, so it neither spins nor leaves the client hanging; when even
   * that fails, or on another error, it halts and is started again after a pause.
   */
  #acceptFailed(spec: ListenerSpec, code: string, halted: boolean, handle: AcceptWatchHandle): void {
    this.metrics.acceptFailed(code);
    if (code === 'EMFILE' || code === 'ENFILE') {
      logLimited(
        'accept_emfile',
        `listener ${spec.label}: accept: ${code} (out of file descriptors): ` +
          (halted ? 'pausing accepting' : 'refusing with 1040'),
      );
    } else {
      logLimited(`accept_${code}`, `listener ${spec.label}: accept: ${code}${halted ? ': pausing accepting' : ''}`);
    }
    if (!halted) return;
    // Not unref'd: while every listener pauses, this timer is what keeps the daemon's loop alive.
    setTimeout(() => {
      if (!this.#stopping && this.#acceptors.includes(handle)) addonFunctions().acceptWatchRun(handle, true);
    }, ACCEPT_PAUSE_MS);
  }

  #accept(fd: number, listener: ListenerState): void {
    this.metrics.connectionsAccepted++;
    if (this.#stopping) {
      closeQuietly(fd);
      return;
    }
    const limits = listener.spec.limits;
    const maxConnections = this.#options.maxConnections ?? 0;
    if (maxConnections > 0 && this.#connections.size >= maxConnections) {
      this.#refuse(fd, 'max_connections', `--max-connections ${maxConnections} reached`);
      return;
    }
    if (limits.maxConnections > 0 && listener.sessions >= limits.maxConnections) {
      this.#refuse(
        fd,
        'listener_max_connections',
        `max_connections ${limits.maxConnections} of ${listener.spec.label} reached`,
      );
      return;
    }
    if (this.#fdBudget !== null && !this.#fdBudget.admits(this.#connections.size)) {
      this.#refuse(fd, 'fd_limit', `near the file descriptor limit (${this.#fdBudget.limit})`);
      return;
    }
    let peer: PeerIdentity;
    let client: number | Socket = fd;
    try {
      const cred = readPeerIdentity(fd);
      if (cred !== null) {
        peer = { pid: cred.pid, uid: cred.uid, gid: cred.gid, address: undefined, pidfd: cred.pidfd };
      } else {
        // A network client: TLS and the JavaScript relay work on a net.Socket.
        const socket = new Socket({ fd, readable: true, writable: true });
        socket.pause();
        socket.on('error', () => undefined); // errors are handled by whoever reads the socket
        socket.setNoDelay(true);
        client = socket;
        peer = { pid: undefined, uid: undefined, gid: undefined, address: remoteAddressText(socket) };
      }
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === 'EMFILE' || code === 'ENFILE') {
        this.#refuse(client, 'fd_limit', `no file descriptor for the client's pidfd (${code})`);
        return;
      }
      logLimited('peer_credentials', `accept: cannot read peer credentials: ${errorMessage(e)}`);
      if (typeof client === 'number') closeQuietly(client);
      else client.destroy();
      return;
    }
    if (peer.address !== undefined && typeof client !== 'number') {
      const host = hostOfAddress(peer.address);
      if (this.connectErrors.blocked(host)) {
        this.metrics.refuse('host_blocked');
        logLimited('refused_host_blocked', `refusing ${peer.address} with 1129: blocked for failed handshakes`);
        client.end(hostBlocked(host));
        client.destroySoon();
        return;
      }
    }
    listener.sessions++;
    const connection = new Connection(client, peer, listener.handler, listener.options, (c) => {
      listener.sessions--;
      if (this.#connections.delete(c)) this.#options.onConnectionCount?.(this.#connections.size);
    });
    this.#connections.add(connection);
    this.#options.onConnectionCount?.(this.#connections.size);
    void connection.run();
  }

  /** Refuse a connection before any Lua runs: ERR 1040 instead of the greeting, counted and logged. */
  #refuse(client: number | Socket, reason: string, detail: string): void {
    this.metrics.refuse(reason);
    logLimited(`refused_${reason}`, `refusing a connection with 1040 Too many connections: ${detail}`);
    if (typeof client !== 'number') {
      client.end(tooManyConnections());
      client.destroySoon();
      return;
    }
    try {
      // A new connection's send buffer is empty: the short ERR goes out at once or not at all.
      addonFunctions().sendOn(client, tooManyConnections());
    } catch {
      // the client is gone already
    }
    closeQuietly(client);
  }

  /**
   * SIGHUP: run the config's global `reload()` (if defined) in its own coroutine. A SIGHUP that
   * arrives while it runs makes it run once more afterwards. Errors are logged; the daemon goes on.
   * The promise (the same one for coalesced requests) settles when no run is left; it never rejects.
   */
  reload(): Promise<void> {
    if (this.#reloading !== null) {
      this.#reloadState = 'again';
      return this.#reloading;
    }
    const p = this.#runReload().finally(() => {
      this.#reloading = null;
    });
    this.#reloading = p;
    return p;
  }

  /**
   * SIGHUP: every TLS listener reads its certificate files again. New sessions get the new
   * certificate, running ones keep theirs; a bad file is logged and the old certificate stays.
   */
  #reloadCertificates(): void {
    const seen = new Set<unknown>();
    for (const spec of this.#listeners) {
      const tls = spec.refs.tls;
      if (tls === undefined || seen.has(tls)) continue;
      seen.add(tls);
      try {
        tls.reload();
        logInfo(`listener ${spec.label}: TLS certificate reloaded from ${tls.files.cert}`);
      } catch (e) {
        logError(`listener ${spec.label}: TLS certificate not reloaded, keeping the old one: ${errorMessage(e)}`);
      }
    }
  }

  /** Read through a method: the state changes while reload() awaits (TS cannot see that). */
  #reloadRequestedAgain(): boolean {
    return this.#reloadState === 'again';
  }

  async #runReload(): Promise<void> {
    const L = this.#L;
    const runner = this.#reloadRunner;
    if (L === null || runner === null) return;
    do {
      this.#reloadState = 'running';
      this.#reloadCertificates();
      lua.lua_getglobal(L, 'reload');
      if (lua.lua_type(L, -1) !== lua.LUA_TFUNCTION) {
        lua.lua_pop(L, 1);
        logInfo('SIGHUP: no reload() function in the config, nothing to do');
        break;
      }
      const ref = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
      try {
        await runner.call(
          ref,
          () => 0,
          () => undefined,
          () => this.#stopping,
        );
        logInfo('reload() finished');
      } catch (e) {
        logErrorBlock('', `reload() failed: ${errorMessage(e)}`, e instanceof CallbackFailed ? e.traceback : undefined);
      } finally {
        lauxlib.luaL_unref(L, lua.LUA_REGISTRYINDEX, ref);
      }
    } while (this.#reloadRequestedAgain() && !this.#stopping);
    this.#reloadState = 'idle';
  }

  /**
   * Stop accepting, remove our socket files, give sessions `graceMs` to finish, then close the
   * rest with an ERR. Resolves when every connection is gone.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.#clusters?.stopAll();
    // Parked server connections are closed now, and sessions that end during the drain close
    // theirs instead of parking them.
    closeAllPools();
    const addon = this.#acceptors.length > 0 ? addonFunctions() : null;
    for (const acceptor of this.#acceptors.splice(0)) addon!.acceptUnwatch(acceptor);
    for (const l of this.#listeners) if (l.ownedPath !== undefined) unlinkQuietly(l.ownedPath);
    // Metrics and the control protocol keep working while sessions drain.
    if (this.#connections.size > 0) {
      logInfo(`waiting up to ${graceMs} ms for ${this.#connections.size} connection(s) to finish`);
      const deadline = Date.now() + graceMs;
      while (this.#connections.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const c of [...this.#connections]) c.close(ClientErrors.SHUTDOWN);
    }
    closeAllPools();
    this.stopServices();
  }

  /** The listening sockets load() bound (the supervisor of `--workers N` passes them down). */
  get listenerSockets(): readonly { readonly key: string; readonly fd: number }[] {
    return this.#listeners;
  }

  /** The exporters' and control listeners' sockets load() bound (served by a supervisor itself). */
  get serviceSockets(): ServiceBindings | null {
    return this.#services;
  }

  /**
   * The supervisor of `--workers N` at its end: remove the socket files load() created and close
   * every socket (the workers, which shared them, are gone).
   */
  releaseSockets(): void {
    for (const l of this.#listeners) if (l.ownedPath !== undefined) unlinkQuietly(l.ownedPath);
    this.#services?.closeAll();
    for (const l of this.#listeners.splice(0)) closeQuietly(l.fd);
  }

  /** This worker's metrics as an exposition, every sample labelled worker="N" (for the supervisor). */
  renderMetrics(): Promise<string> {
    if (this.#workerRegistry === null) {
      this.#workerRegistry = buildRegistry({
        metrics: this.metrics,
        sessions: () => this.registry.size,
        pgPools: () => pgPoolStats(),
      });
      this.#workerRegistry.setDefaultLabels({ worker: String(this.#options.worker?.index ?? 0) });
    }
    return renderRegistry(this.#workerRegistry);
  }

  /** One of this worker's relayed sessions, described for another worker's KILL. */
  sessionSnapshot(id: number): SessionSnapshot | undefined {
    const session = this.registry.get(id);
    return session === undefined ? undefined : snapshotSession(session);
  }

  /** A control datagram the supervisor received and passed on. */
  handleControl(datagram: Buffer, label: string): void {
    handleControlDatagram(datagram, { metrics: this.metrics, sessionsOf: (a) => this.registry.byAccount(a) }, label);
  }

  /** After the drain: stop the exporters and control listeners, remove their socket files. */
  stopServices(): void {
    for (const stop of this.#serviceStops.splice(0)) stop();
    for (const s of [...(this.#services?.prometheus ?? []), ...(this.#services?.control ?? [])]) {
      if (s.ownedPath !== undefined) unlinkQuietly(s.ownedPath);
    }
  }
}

/** The systemd sockets a supervisor passed down, in systemd's order. */
function inheritedSystemdFds(sockets: ReadonlyMap<string, number>): number[] {
  const fds: number[] = [];
  for (let i = 0; sockets.has(`systemd:${i}`); i++) fds.push(sockets.get(`systemd:${i}`)!);
  return fds;
}

function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // already closed
  }
}

/** One listener as the accepting side keeps it. */
interface ListenerState {
  readonly spec: ListenerSpec;
  readonly handler: LuaSessionHandler;
  readonly options: ConnectionOptions;
  /** Its sessions now (for its max_connections). */
  sessions: number;
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function remoteAddressText(socket: Socket): string | undefined {
  const a = socket.remoteAddress;
  if (a === undefined) return undefined;
  const port = socket.remotePort ?? 0;
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}
