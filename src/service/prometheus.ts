// The Prometheus exporter (prometheus_listen): CM4all myproxy's metrics with their exact names,
// types, HELP texts and labels, so a dashboard built for it works unchanged, and beyond them
// metrics that follow Prometheus' naming conventions (never renaming myproxy's). Everything is
// read at scrape time from the counters the relay, sessions, clusters and Lua keep (nothing is
// counted per request here); prom-client formats the exposition and adds the process metrics.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { addonFunctions } from '../net/native.js';
import { commandName } from '../net/tracking.js';
import { logError, logLimited } from '../util/log.js';
import {
  COMMAND_SLOTS,
  DURATION_BOUNDS,
  StatSlot,
  type Histogram,
  type ProxyMetrics,
  type ServerMetrics,
} from '../util/metrics.js';

type Labels = Record<string, string>;
interface Sample {
  readonly labels?: Labels;
  readonly value: number;
  readonly metricName?: string;
}
type MetricType = 'counter' | 'gauge' | 'histogram';

/** What the exporter reads besides the counters. */
export interface ExporterSources {
  readonly metrics: ProxyMetrics;
  /** Sessions relayed now (the registry's size). */
  sessions(): number;
  /** The pg binding's connections, by state ("total", "idle", "waiting"). */
  pgPools?(): Record<string, number>;
  /** Client addresses blocked now (max_connect_errors). */
  blockedHosts?(): number;
}

/** Work a registry needs done before each render (registering metrics created since the last). */
const beforeScrape = new WeakMap<object, () => void>();

/** A metric computed at scrape time, in the shape prom-client's Registry formats. */
function snapshot(registry: Registry, name: string, help: string, type: MetricType, read: () => Sample[]): void {
  registry.registerMetric({
    name,
    get: () => Promise.resolve({ name, help, type, values: read(), aggregator: 'sum' }),
    reset: () => undefined,
  } as unknown as Parameters<Registry['registerMetric']>[0]);
}

/** Samples of a histogram kept as per-bucket counts (not cumulative) plus sum and count. */
function histogramSamples(
  name: string,
  labels: Labels,
  bounds: readonly number[],
  counts: ArrayLike<number>,
  sum: number,
  count: number,
): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  for (let i = 0; i <= bounds.length; i++) {
    cumulative += counts[i] ?? 0;
    out.push({
      metricName: `${name}_bucket`,
      labels: { ...labels, le: i < bounds.length ? String(bounds[i]) : '+Inf' },
      value: cumulative,
    });
  }
  out.push({ metricName: `${name}_sum`, labels, value: sum });
  out.push({ metricName: `${name}_count`, labels, value: count });
  return out;
}

/** The metrics of one daemon, in a prom-client registry of their own. */
export function buildRegistry(sources: ExporterSources): Registry {
  const registry = new Registry();
  const m = sources.metrics;
  const servers = (): ServerMetrics[] => [...m.servers()];
  const perServer = (read: (s: ServerMetrics) => number) => (): Sample[] =>
    servers().map((s) => ({ labels: { server: s.label }, value: read(s) }));
  const stat = (slot: number) => perServer((s) => s.stats[slot]!);
  const single = (read: () => number) => (): Sample[] => [{ value: read() }];
  const loop = { process: 'myproxy' };

  // --- CM4all myproxy's metrics: names, types, HELP texts and labels exactly as it exports them.
  snapshot(registry, 'event_loop_iterations', 'Total number of EventLoop iterations', 'counter', () => [
    { labels: loop, value: addonFunctions().loopMetrics()[0] },
  ]);
  snapshot(registry, 'event_loop_idle_duration', 'Total duration waiting for events', 'counter', () => [
    { labels: loop, value: performance.eventLoopUtilization().idle / 1000 },
  ]);
  snapshot(registry, 'event_loop_busy_duration', 'Total duration handling events', 'counter', () => [
    { labels: loop, value: performance.eventLoopUtilization().active / 1000 },
  ]);
  const global: [string, string, () => number][] = [
    [
      'myproxy_connections_accepted',
      'Number of accepted MySQL connections (including those that were rejected later)',
      () => m.connectionsAccepted,
    ],
    ['myproxy_connections_rejected', 'Number of rejected MySQL connections', () => m.connectionsRejected],
    [
      'myproxy_client_bytes_received',
      'Number of bytes received from clients',
      () => m.sumServers(StatSlot.CLIENT_BYTES),
    ],
    [
      'myproxy_client_packets_received',
      'Number of packets received from clients',
      () => m.clientLoginPackets + m.sumServers(StatSlot.CLIENT_PACKETS),
    ],
    [
      'myproxy_client_malformed_packets',
      'Number of malformed packets received from clients',
      () => m.clientMalformedPackets + m.sumServers(StatSlot.CLIENT_MALFORMED),
    ],
    [
      'myproxy_client_handshake_responses',
      'Number of handshake responses received from clients',
      () => m.clientHandshakeResponses,
    ],
    ['myproxy_client_auth_ok', 'Number of successful authentications', () => m.clientAuthOk],
    ['myproxy_client_auth_err', 'Number of failed authentication attempts', () => m.clientAuthErr],
    ['myproxy_client_queries', 'Number of queries received from clients', () => m.sumServers(StatSlot.CLIENT_QUERIES)],
    ['myproxy_lua_errors', 'Number of Lua errors', () => m.luaErrors],
  ];
  for (const [name, help, read] of global) snapshot(registry, name, help, 'counter', single(read));
  snapshot(registry, 'myproxy_server_state', 'Monitoring state of the server', 'gauge', () =>
    servers()
      .filter((s) => s.state !== undefined)
      .map((s) => ({ labels: { server: s.label, state: s.state! }, value: 1 })),
  );
  const server: [string, string, () => Sample[]][] = [
    ['myproxy_server_connects', 'Number of connection attempts to this server', perServer((s) => s.connects)],
    [
      'myproxy_server_connect_errors',
      'Number of failed connection attempts to this server',
      perServer((s) => s.connectErrors),
    ],
    ['myproxy_server_bytes_received', 'Number of bytes received from this server', stat(StatSlot.SERVER_BYTES)],
    ['myproxy_server_packets_received', 'Number of packets received from this server', stat(StatSlot.SERVER_PACKETS)],
    [
      'myproxy_server_malformed_packets',
      'Number of malformed packets received from this server',
      stat(StatSlot.SERVER_MALFORMED),
    ],
    ['myproxy_server_queries', 'Number of queries sent to this server', stat(StatSlot.QUERIES)],
    // The HELP text is myproxy's, typo included: dashboards and alerts may quote it.
    ['myproxy_server_query_errors', 'Number of query warnigs received from this server', stat(StatSlot.QUERY_ERRORS)],
    [
      'myproxy_server_query_warnings',
      'Number of query warnings received from this server',
      stat(StatSlot.QUERY_WARNINGS),
    ],
    [
      'myproxy_server_no_good_index_queries',
      'Number of queries which used no good index',
      stat(StatSlot.NO_GOOD_INDEX),
    ],
    ['myproxy_server_no_index_queries', 'Number of queries which used no index', stat(StatSlot.NO_INDEX)],
    ['myproxy_server_slow_queries', 'Number of slow queries', stat(StatSlot.SLOW)],
    ['myproxy_server_affected_rows', 'Number of affected rows by INSERT, UPDATE etc.', stat(StatSlot.AFFECTED_ROWS)],
    ['myproxy_server_query_wait', 'Total wait time for query results', stat(StatSlot.QUERY_WAIT)],
  ];
  for (const [name, help, read] of server) snapshot(registry, name, help, 'counter', read);

  // --- Beyond myproxy (Prometheus naming conventions).
  snapshot(
    registry,
    'myproxy_sessions',
    'Client connections now (logging in or relayed)',
    'gauge',
    single(() => sources.sessions()),
  );
  snapshot(
    registry,
    'myproxy_logins_in_progress',
    'Logins waiting for Lua or a backend now',
    'gauge',
    single(() => m.loginsInProgress),
  );
  snapshot(
    registry,
    'myproxy_server_sessions',
    'Sessions relayed to this server now',
    'gauge',
    perServer((s) => s.sessions),
  );
  snapshot(
    registry,
    'myproxy_server_commands_total',
    'Commands whose response ended, by server and command',
    'counter',
    () =>
      servers().flatMap((s) => {
        const out: Sample[] = [];
        for (let i = 0; i < COMMAND_SLOTS; i++) {
          const v = s.stats[StatSlot.COMMAND_COUNTS + i]!;
          if (v > 0) out.push({ labels: { server: s.label, command: i < 0x20 ? commandName(i) : 'other' }, value: v });
        }
        return out;
      }),
  );
  snapshot(
    registry,
    'myproxy_server_command_errors_total',
    'Commands answered with an ERR, by server',
    'counter',
    stat(StatSlot.COMMAND_ERRORS),
  );
  snapshot(
    registry,
    'myproxy_server_rows_total',
    'Result set rows sent to clients, by server',
    'counter',
    stat(StatSlot.ROWS),
  );
  snapshot(
    registry,
    'myproxy_server_untracked_sessions_total',
    'Sessions whose responses could no longer be followed (relayed unchanged)',
    'counter',
    stat(StatSlot.UNTRACKED),
  );
  snapshot(
    registry,
    'myproxy_query_duration_seconds',
    'Time from a COM_QUERY or COM_STMT_EXECUTE to the end of its response, by server',
    'histogram',
    () =>
      servers().flatMap((s) =>
        histogramSamples(
          'myproxy_query_duration_seconds',
          { server: s.label },
          DURATION_BOUNDS,
          s.stats.subarray(StatSlot.DURATION_BUCKETS, StatSlot.DURATION_SUM),
          s.stats[StatSlot.DURATION_SUM]!,
          s.stats[StatSlot.DURATION_COUNT]!,
        ),
      ),
  );
  snapshot(
    registry,
    'myproxy_lua_callback_duration_seconds',
    'Time a Lua callback took (waiting included), by callback',
    'histogram',
    () =>
      [...m.callbackDurations].flatMap(([callback, h]: [string, Histogram]) =>
        histogramSamples('myproxy_lua_callback_duration_seconds', { callback }, h.bounds, h.counts, h.sum, h.count),
      ),
  );
  snapshot(
    registry,
    'myproxy_connections_refused_total',
    'Connections refused before any Lua ran, by reason',
    'counter',
    () => [...m.refused].map(([reason, value]) => ({ labels: { reason }, value })),
  );
  snapshot(
    registry,
    'myproxy_handshake_failures_total',
    'Client handshakes that failed before the HandshakeResponse, by reason (timeout, malformed, tls)',
    'counter',
    () => [...m.handshakeFailures].map(([reason, value]) => ({ labels: { reason }, value })),
  );
  snapshot(
    registry,
    'myproxy_tls_handshakes_total',
    'Clients that completed a TLS handshake',
    'counter',
    single(() => m.tlsHandshakes),
  );
  snapshot(
    registry,
    'myproxy_blocked_hosts',
    'Client addresses refused now for too many failed handshakes (max_connect_errors)',
    'gauge',
    single(() => sources.blockedHosts?.() ?? 0),
  );
  snapshot(
    registry,
    'myproxy_accept_errors_total',
    'accept() failures, by error code (EMFILE: out of file descriptors)',
    'counter',
    () => [...m.acceptErrors].map(([code, value]) => ({ labels: { code }, value })),
  );
  snapshot(
    registry,
    'myproxy_write_timeouts_total',
    'Sessions closed because a peer took no data (--write-timeout)',
    'counter',
    single(() => m.writeTimeouts),
  );
  snapshot(
    registry,
    'myproxy_commands_answered_total',
    "Commands on_query or on_command answered in the server's place",
    'counter',
    single(() => m.commandsAnswered),
  );
  snapshot(
    registry,
    'myproxy_local_sessions',
    'Backend-less sessions (client:accept()) open now',
    'gauge',
    single(() => m.localSessions),
  );
  snapshot(
    registry,
    'myproxy_pool_idle_connections',
    'Logged-in server connections parked in the pool now',
    'gauge',
    single(() => m.poolIdle),
  );
  snapshot(
    registry,
    'myproxy_pool_hits_total',
    'Logins that took a pooled server connection',
    'counter',
    single(() => m.poolHits),
  );
  snapshot(
    registry,
    'myproxy_pool_misses_total',
    'Logins to a pooled address that found no connection to take (a server login followed)',
    'counter',
    single(() => m.poolMisses),
  );
  snapshot(
    registry,
    'myproxy_pool_returns_total',
    'Server connections reset and parked after their session ended',
    'counter',
    single(() => m.poolReturns),
  );
  snapshot(
    registry,
    'myproxy_pool_discarded_total',
    'Server connections the pool closed instead of keeping or handing out, by reason',
    'counter',
    () => [...m.poolDiscarded].map(([reason, value]) => ({ labels: { reason }, value })),
  );
  const shared: readonly (readonly [string, string, 'counter' | 'gauge', () => number])[] = [
    [
      'myproxy_pool_shared_takes_total',
      'Statements of sharing sessions that took a server connection',
      'counter',
      () => m.poolShareTakes,
    ],
    [
      'myproxy_pool_shared_releases_total',
      'Server connections sharing sessions let go between statements',
      'counter',
      () => m.poolShareReleases,
    ],
    [
      'myproxy_pool_shared_waits_total',
      'Statements that waited for a server connection (max_connections busy)',
      'counter',
      () => m.poolShareWaits,
    ],
    [
      'myproxy_pool_shared_wait_timeouts_total',
      'Statements that found no server connection within queue_timeout',
      'counter',
      () => m.poolShareWaitTimeouts,
    ],
    [
      'myproxy_pool_pinned_sessions',
      'Sessions of sharing pools pinned to their server connection now',
      'gauge',
      () => m.poolPinnedSessions,
    ],
    [
      'myproxy_pool_pins_total',
      'Sessions of sharing pools that became pinned to their server connection',
      'counter',
      () => m.poolPins,
    ],
  ];
  for (const [name, help, type, value] of shared) snapshot(registry, name, help, type, single(value));
  snapshot(registry, 'myproxy_kills_total', 'KILL statements and COM_PROCESS_KILL, by outcome', 'counter', () =>
    [...m.kills].map(([outcome, value]) => ({ labels: { outcome }, value })),
  );
  snapshot(
    registry,
    'myproxy_control_datagrams_total',
    'Control datagrams received',
    'counter',
    single(() => m.controlDatagrams),
  );
  snapshot(
    registry,
    'myproxy_control_malformed_total',
    'Control datagrams refused (malformed or from a sender not allowed)',
    'counter',
    single(() => m.controlMalformed),
  );
  snapshot(
    registry,
    'myproxy_control_disconnects_total',
    'Sessions closed by DISCONNECT_DATABASE',
    'counter',
    single(() => m.controlDisconnects),
  );
  if (sources.pgPools !== undefined) {
    const pg = (): Record<string, number> => sources.pgPools?.() ?? {};
    snapshot(registry, 'myproxy_pg_connections', 'Connections of the Lua pg binding, by state', 'gauge', () =>
      Object.entries(pg()).map(([state, value]) => ({ labels: { state }, value })),
    );
  }
  snapshot(
    registry,
    'myproxy_account_sessions',
    'Sessions relayed now, by account (--prometheus account labels)',
    'gauge',
    () => [...m.accounts.values()].map((a) => ({ labels: { account: a.account }, value: a.sessions })),
  );
  snapshot(registry, 'myproxy_account_logins_total', 'Successful logins, by account', 'counter', () =>
    [...m.accounts.values()].map((a) => ({ labels: { account: a.account }, value: a.logins })),
  );
  snapshot(registry, 'myproxy_account_queries_total', 'COM_QUERY responses completed, by account', 'counter', () =>
    [...m.accounts.values()].map((a) => ({ labels: { account: a.account }, value: a.stats[StatSlot.QUERIES]! })),
  );
  snapshot(
    registry,
    'myproxy_account_commands_total',
    'Responses completed for every command, by account',
    'counter',
    () => [...m.accounts.values()].map((a) => ({ labels: { account: a.account }, value: a.stats[StatSlot.COMMANDS]! })),
  );
  snapshot(
    registry,
    'myproxy_account_bytes_received_total',
    "Bytes received from the servers for the account's sessions",
    'counter',
    () =>
      [...m.accounts.values()].map((a) => ({ labels: { account: a.account }, value: a.stats[StatSlot.SERVER_BYTES]! })),
  );
  snapshot(
    registry,
    'myproxy_accounts_dropped_total',
    'Sessions of accounts beyond the account label limit',
    'counter',
    single(() => m.accountsDropped),
  );
  // Counters config.lua defines (prometheus_counter) appear at the first scrape after their creation.
  const luaCounters = new Set<string>();
  beforeScrape.set(registry, () => {
    for (const c of m.luaCounters.values()) {
      if (luaCounters.has(c.name)) continue;
      luaCounters.add(c.name);
      if (registry.getSingleMetric(c.name) !== undefined) {
        logError(`prometheus_counter: ${c.name} is one of the daemon's own metrics, not exported`);
        continue;
      }
      snapshot(registry, c.name, c.help, 'counter', () =>
        [...c.values].map(([value, n]) => ({
          ...(c.label !== undefined ? { labels: { [c.label]: value } } : {}),
          value: n,
        })),
      );
    }
  });
  collectDefaultMetrics({ register: registry });
  // Gauges whose names end in _total (prom-client's naming) would fail promtool's lint.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  return registry;
}

/** What an exporter serves: a registry of this process, or the workers' merged (`--workers N`). */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** Renders a registry once (a worker answering its supervisor's scrape). */
export function renderRegistry(registry: Registry): Promise<string> {
  beforeScrape.get(registry)?.();
  return registry.metrics();
}

/**
 * The expositions of several workers (each sample labelled with its worker) as one: every metric
 * family once, with its HELP and TYPE lines, followed by the samples of every worker.
 */
export function mergeExpositions(texts: readonly string[]): string {
  const families = new Map<string, { meta: string[]; samples: string[] }>();
  for (const text of texts) {
    let family: { meta: string[]; samples: string[] } | undefined;
    let fromThisText = false;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta !== null) {
        const name = meta[2]!;
        if (family === undefined || families.get(name) !== family) {
          family = families.get(name);
          fromThisText = family === undefined;
          if (family === undefined) {
            family = { meta: [], samples: [] };
            families.set(name, family);
          }
        }
        if (fromThisText) family.meta.push(line);
        continue;
      }
      if (line.startsWith('#')) continue;
      if (family === undefined) {
        family = { meta: [], samples: [] };
        families.set(line.split(/[{ ]/)[0]!, family);
      }
      family.samples.push(line);
    }
  }
  let out = '';
  for (const { meta, samples } of families.values()) {
    for (const line of meta) out += line + '\n';
    for (const line of samples) out += line + '\n';
  }
  return out;
}

/** Renders the registry; scrapes that come while one render runs (or within 250 ms) share it. */
class ScrapeCache {
  readonly #registry: MetricsSource;
  #pending: Promise<string> | null = null;
  #body = '';
  #at = -Infinity;

  constructor(registry: MetricsSource) {
    this.#registry = registry;
  }

  render(): Promise<string> {
    if (performance.now() - this.#at < 250) return Promise.resolve(this.#body);
    if (this.#pending === null) beforeScrape.get(this.#registry)?.();
    this.#pending ??= this.#registry.metrics().then(
      (body) => {
        this.#body = body;
        this.#at = performance.now();
        this.#pending = null;
        return body;
      },
      (e: unknown) => {
        this.#pending = null;
        throw e;
      },
    );
    return this.#pending;
  }
}

/** How many scrapers may be connected at once (more wait in the listen backlog). */
const MAX_SCRAPE_CONNECTIONS = 256;

/** Serves the metrics on an HTTP listener (any path, GET or HEAD, as myproxy answers any request). */
export function startExporter(fd: number, label: string, registry: MetricsSource): Promise<Server> {
  const cache = new ScrapeCache(registry);
  const server = createServer(
    { requestTimeout: 10_000, headersTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 8192 },
    (req: IncomingMessage, res: ServerResponse) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
        return;
      }
      cache.render().then(
        (body) => {
          res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(body) });
          res.end(req.method === 'HEAD' ? undefined : body);
        },
        (e: unknown) => {
          logError(`prometheus ${label}: ${e instanceof Error ? e.message : String(e)}`);
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n');
        },
      );
    },
  );
  server.maxConnections = MAX_SCRAPE_CONNECTIONS;
  server.on('clientError', (e, socket) => {
    logLimited('prometheus_client_error', `prometheus ${label}: bad request: ${e.message}`);
    if (!socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });
  server.on('error', (e) => logError(`prometheus ${label}: ${e.message}`));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
