// The daemon's counters, in one place: the relay (through the per-server blocks the native
// tracker adds to), sessions, clusters and Lua report here; the Prometheus exporter reads here at
// scrape time. Plain numbers and Float64Arrays: nothing here costs anything per packet.

/** Slots of a per-server counter block (Float64Array). Must match `enum trk_stat` in native/tracker.h. */
export const StatSlot = {
  SERVER_BYTES: 0,
  SERVER_PACKETS: 1,
  SERVER_MALFORMED: 2,
  QUERIES: 3,
  QUERY_ERRORS: 4,
  QUERY_WARNINGS: 5,
  NO_GOOD_INDEX: 6,
  NO_INDEX: 7,
  SLOW: 8,
  AFFECTED_ROWS: 9,
  QUERY_WAIT: 10,
  CLIENT_BYTES: 11,
  CLIENT_PACKETS: 12,
  CLIENT_MALFORMED: 13,
  CLIENT_QUERIES: 14,
  UNTRACKED: 15,
  COMMANDS: 16,
  COMMAND_ERRORS: 17,
  ROWS: 18,
  DURATION_BUCKETS: 19,
  DURATION_SUM: 19 + 17,
  DURATION_COUNT: 19 + 18,
  COMMAND_COUNTS: 19 + 19,
} as const;

/** Upper bounds (seconds) of the statement duration histogram; the last bucket is +Inf. */
export const DURATION_BOUNDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Per command byte 0x00..0x1f, then one slot for every other byte. */
export const COMMAND_SLOTS = 33;
export const STATS_LENGTH = StatSlot.COMMAND_COUNTS + COMMAND_SLOTS;

/** Counters of one backend server (by its address text, as myproxy's `server` label). */
export class ServerMetrics {
  readonly label: string;
  /** Added to by the relay's tracker of every session on this server. */
  readonly stats = new Float64Array(STATS_LENGTH);
  /** Successful connects (myproxy counts these, despite its HELP text saying "attempts"). */
  connects = 0;
  connectErrors = 0;
  /** Sessions relayed to this server now. */
  sessions = 0;
  /** Monitoring state ("alive", "read_only", ...), once a check has set one. */
  state: string | undefined;

  constructor(label: string) {
    this.label = label;
  }
}

/** Lua callback names that get a duration histogram. */
export type CallbackName = string;

/** Upper bounds (seconds) of the Lua callback duration histogram. */
export const CALLBACK_BOUNDS: readonly number[] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

export class Histogram {
  readonly bounds: readonly number[];
  /** Per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** Counters per account (an optional label, capped so that it cannot explode). */
export class AccountMetrics {
  readonly account: string;
  readonly stats = new Float64Array(STATS_LENGTH);
  logins = 0;
  sessions = 0;

  constructor(account: string) {
    this.account = account;
  }
}

/** A counter config.lua defined with prometheus_counter() (e.g. myproxy.rules' hits). */
export interface LuaCounter {
  readonly name: string;
  readonly help: string;
  /** The one label's name, or undefined for a counter without labels. */
  readonly label: string | undefined;
  /** Value by label value ('' without a label). */
  readonly values: Map<string, number>;
}

/** Most distinct label values a Lua counter keeps; further ones are counted as "_other". */
export const MAX_LUA_LABEL_VALUES = 1000;

export class ProxyMetrics {
  /** Counters defined by config.lua, by name. */
  readonly luaCounters = new Map<string, LuaCounter>();
  // myproxy's global counters
  connectionsAccepted = 0;
  connectionsRejected = 0;
  /** Login-phase packets from clients (the relay counts the command phase per server). */
  clientLoginPackets = 0;
  clientMalformedPackets = 0;
  clientHandshakeResponses = 0;
  clientAuthOk = 0;
  clientAuthErr = 0;
  luaErrors = 0;
  // beyond myproxy
  /** Sessions closed because a peer stopped taking data (--write-timeout). */
  writeTimeouts = 0;
  /** Client handshakes that failed before the HandshakeResponse, by reason ("timeout", "malformed", "tls"). */
  readonly handshakeFailures = new Map<string, number>();
  /** Clients that completed a TLS handshake. */
  tlsHandshakes = 0;
  /** accept() failures (EMFILE, ENFILE...), by error code. */
  readonly acceptErrors = new Map<string, number>();
  /** Connections refused before Lua ran, by reason ("fd_limit", "max_connections", ...). */
  readonly refused = new Map<string, number>();
  /** Sessions whose tracker lost the grammar. */
  untrackedSessions = 0;
  /** Backend-less sessions (client:accept()) open now. */
  localSessions = 0;
  /** Commands on_query / on_command answered in the server's place (ERR, OK or a result set). */
  commandsAnswered = 0;
  /** KILL statements and COM_PROCESS_KILL carried out, refused, forwarded. */
  readonly kills = new Map<string, number>();
  /** Logins waiting for Lua or a backend now. */
  loginsInProgress = 0;
  /** Backend connection pool: parked connections now, logins served from it or not, returns. */
  poolIdle = 0;
  poolHits = 0;
  poolMisses = 0;
  poolReturns = 0;
  /** Server connections the pool closed instead of keeping or handing out, by reason. */
  readonly poolDiscarded = new Map<string, number>();
  /** Connection sharing: statements that took a connection, connections let go between statements. */
  poolShareTakes = 0;
  poolShareReleases = 0;
  /** Statements that waited for a connection (max_connections busy), and those that waited in vain. */
  poolShareWaits = 0;
  poolShareWaitTimeouts = 0;
  /** Sessions of a sharing pool pinned to their connection now, and pins ever. */
  poolPinnedSessions = 0;
  poolPins = 0;
  /** Lua callback durations (wall time, including waits), by callback. */
  readonly callbackDurations = new Map<string, Histogram>();
  /** Malformed control datagrams (control_listen). */
  controlMalformed = 0;
  controlDatagrams = 0;
  /** Sessions closed by DISCONNECT_DATABASE. */
  controlDisconnects = 0;
  /** Accounts followed with per-account counters (0: none). */
  accountLimit = 0;
  readonly accounts = new Map<string, AccountMetrics>();
  /** Accounts beyond the limit (their sessions are counted under no account). */
  accountsDropped = 0;
  readonly #servers = new Map<string, ServerMetrics>();

  /** The counters of the server with this address text (created on first use; never removed). */
  server(label: string): ServerMetrics {
    let s = this.#servers.get(label);
    if (s === undefined) {
      s = new ServerMetrics(label);
      this.#servers.set(label, s);
    }
    return s;
  }

  servers(): IterableIterator<ServerMetrics> {
    return this.#servers.values();
  }

  /** Per-account counters for `account`, or undefined when they are off or the cap is reached. */
  account(account: string | undefined): AccountMetrics | undefined {
    if (this.accountLimit <= 0 || account === undefined) return undefined;
    let a = this.accounts.get(account);
    if (a === undefined) {
      if (this.accounts.size >= this.accountLimit) {
        this.accountsDropped++;
        return undefined;
      }
      a = new AccountMetrics(account);
      this.accounts.set(account, a);
    }
    return a;
  }

  refuse(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }

  handshakeFailed(reason: string): void {
    this.handshakeFailures.set(reason, (this.handshakeFailures.get(reason) ?? 0) + 1);
  }

  acceptFailed(code: string): void {
    this.acceptErrors.set(code, (this.acceptErrors.get(code) ?? 0) + 1);
  }

  kill(outcome: string): void {
    this.kills.set(outcome, (this.kills.get(outcome) ?? 0) + 1);
  }

  callbackDuration(name: CallbackName): Histogram {
    let h = this.callbackDurations.get(name);
    if (h === undefined) {
      h = new Histogram(CALLBACK_BOUNDS);
      this.callbackDurations.set(name, h);
    }
    return h;
  }

  /** Sum of one slot over every server (myproxy's client_* totals come from the command phase). */
  sumServers(slot: number): number {
    let total = 0;
    for (const s of this.#servers.values()) total += s.stats[slot]!;
    return total;
  }
}
