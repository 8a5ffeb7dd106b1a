// The backend connection pool: a server connection whose session ended in a clean state (nothing
// owed, no transaction open) is reset with COM_RESET_CONNECTION and parked, keyed by everything
// its login depended on; the next login with the same key takes it instead of a server login.
//
// Security rule: the key holds a digest of the credential the backend login would have used (the
// client's clear password, or the verified SHA1(password) under auth='native'), so a pooled
// connection only goes to a login that would have logged in with the same credential. A wrong
// password makes another key and falls through to a real server login, which rejects it.

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { hmacSha256Under } from '../util/hmac.js';
import { Command, PacketHeader } from '../protocol/constants.js';
import { parseErr } from '../protocol/packets/generic.js';
import { framePayload } from '../protocol/writer.js';
import { ChannelClosedError, ChannelTimeoutError, FdPacketChannel } from '../net/packet-channel.js';
import type { SocketAddress } from '../net/address.js';
import type { BackendLogin } from './connector.js';
import { addonFunctions, closeFd } from '../net/native.js';
import { errorMessage } from '../util/errors.js';
import { logInfo } from '../util/log.js';
import type { ProxyMetrics } from '../util/metrics.js';
import { MAX_LOGIN_PAYLOAD } from './connector.js';
import { PASS_THROUGH_CAPABILITIES, PASS_THROUGH_EXTENDED } from './capabilities.js';
import { changeUser, type ChangeUserRequest } from './login.js';
import type { SessionVariables } from './session-state.js';

/** `pool = { max_idle, idle_timeout, max_per_key }` of mysql_resolve() and mysql_cluster(). */
export interface PoolOptions {
  /** Parked connections of this pool at most (all keys together). */
  readonly maxIdle: number;
  /** A connection parked this long is closed. */
  readonly idleTimeoutMs: number;
  /** Parked connections of one key at most. */
  readonly maxPerKey: number;
  /**
   * Connection sharing: a session's server connection goes back to the pool between statements
   * (when its state allows) and its next statement takes any idle one of the same key.
   */
  readonly share: boolean;
  /** With share: server connections of this pool at most, busy and idle, all keys together (0: no limit). */
  readonly maxConnections: number;
  /** With share: how long a statement waits for a connection when maxConnections are busy. */
  readonly queueTimeoutMs: number;
}

export const DEFAULT_POOL_OPTIONS: PoolOptions = Object.freeze({
  maxIdle: 64,
  idleTimeoutMs: 60_000,
  maxPerKey: 16,
  share: false,
  maxConnections: 0,
  queueTimeoutMs: 10_000,
});

/**
 * What a pooled connection's key is made of: the server and everything its login depended on
 * (of the capabilities, only those passed on to the server count).
 */
export type PoolKeyParts = Pick<
  BackendLogin,
  | 'user'
  | 'password'
  | 'passwordSha1'
  | 'database'
  | 'clientCapabilities'
  | 'clientExtendedCapabilities'
  | 'characterSet'
> & {
  /** The server's address text. */
  readonly server: string;
};

/**
 * Keyed with a secret of this process: the key of a session is a digest of its password, and a
 * plain SHA-256 of a password kept in memory would be a fast-to-guess hash of it.
 */
const keyMac = hmacSha256Under(randomBytes(32));
/** What the credential is: a clear password, a SHA1(password), or none. */
const TAG_PASSWORD = Buffer.from('p');
const TAG_SHA1 = Buffer.from('s');
const TAG_NONE = Buffer.from('n');

/**
 * The pool key of a login. The credential enters as HMAC-SHA-256 (a clear password and a
 * SHA1(password) are told apart); the user and database as hex, so no separator can be forged.
 */
export function poolKey(k: PoolKeyParts): string {
  const mac =
    k.password !== undefined
      ? keyMac(TAG_PASSWORD, k.password)
      : k.passwordSha1 !== undefined
        ? keyMac(TAG_SHA1, k.passwordSha1)
        : keyMac(TAG_NONE);
  const caps = (k.clientCapabilities & PASS_THROUGH_CAPABILITIES) >>> 0;
  const ext = (k.clientExtendedCapabilities & PASS_THROUGH_EXTENDED) >>> 0;
  return (
    `${k.server}\0${k.user.toString('hex')}\0${k.database?.toString('hex') ?? ''}\0` +
    `${caps.toString(16)}\0${ext.toString(16)}\0${k.characterSet}\0${mac.toString('base64')}`
  );
}

/** A logged-in server connection without a session: a bare fd and what its login established. */
export interface PooledServer {
  readonly fd: number;
  /** Its thread id on the server (CONNECTION_ID() there). */
  readonly threadId: number;
  readonly serverVersion: Buffer;
  /** Capabilities in effect between the proxy and the server. */
  readonly capabilities: number;
  readonly extendedCapabilities: number;
  /** For COM_CHANGE_USER, where the server lacks COM_RESET_CONNECTION. */
  readonly relogin?: ChangeUserRequest | undefined;
  /**
   * Sharing: the connection's session tracking is set up and this is its state (schema, changed
   * variables), which the next session restores its own over. Absent after a reset.
   */
  readonly shared?: SessionVariables | undefined;
  /**
   * Sharing: the connection's socket, kept paused between statements (making and tearing down a
   * net.Socket per transaction costs more than the transaction's relaying). `fd` is its fd then.
   */
  readonly socket?: Socket | undefined;
}

/** What acquire() found: a connection, leave to open one (a slot is reserved), or nothing in time. */
export type Acquired =
  { readonly kind: 'server'; readonly server: PooledServer } | { readonly kind: 'open' } | { readonly kind: 'timeout' };

interface Waiter {
  readonly key: string;
  readonly resolve: (a: Acquired) => void;
  readonly timer: NodeJS.Timeout;
}

interface Parked {
  readonly server: PooledServer;
  readonly since: number;
}

/**
 * The pool of an address made by mysql_resolve(addr, { pool = ... }). Kept beside the address (a
 * plain value that travels through policy as the connect target) rather than in it.
 */
const poolsByAddress = new WeakMap<SocketAddress, BackendPool>();

export function setAddressPool(address: SocketAddress, pool: BackendPool): void {
  poolsByAddress.set(address, pool);
}

export function addressPool(address: SocketAddress): BackendPool | undefined {
  return poolsByAddress.get(address);
}

/** Every pool of the process, so a drain or shutdown closes all parked connections. */
const livePools = new Set<BackendPool>();

/** Close every parked connection, and park none from now on (SIGTERM's drain, shutdown). */
export function closeAllPools(): void {
  for (const pool of livePools) pool.close();
}

/** ER_UNKNOWN_COM_ERROR: a server without COM_RESET_CONNECTION (MySQL before 5.7.3). */
const UNKNOWN_COMMAND = 1047;

/**
 * Reset a connection with COM_RESET_CONNECTION, or where the server does not know that command,
 * with COM_CHANGE_USER to the same user and credentials. The error text when it cannot be reused.
 */
async function resetConnection(
  channel: FdPacketChannel,
  server: PooledServer,
  timeoutMs: number,
): Promise<string | undefined> {
  channel.send(framePayload(Buffer.of(Command.COM_RESET_CONNECTION), 0));
  const reply = await channel.next(timeoutMs);
  if (reply.payload[0] === PacketHeader.OK) {
    // COM_RESET_CONNECTION keeps the default database: a session's `USE other` would follow the
    // connection to the next login of the key. The key's database is selected again.
    const database = server.relogin?.database;
    if (database === undefined || database.length === 0) return undefined;
    channel.send(framePayload(Buffer.concat([Buffer.of(Command.COM_INIT_DB), database]), 0));
    const selected = await channel.next(timeoutMs);
    if (selected.payload[0] === PacketHeader.OK) return undefined;
    return selected.payload[0] === PacketHeader.ERR
      ? `COM_INIT_DB after the reset failed: ${parseErr(selected.payload).errno} ${parseErr(selected.payload).message}`
      : 'unexpected reply to COM_INIT_DB';
  }
  if (reply.payload[0] !== PacketHeader.ERR) return 'unexpected reply to COM_RESET_CONNECTION';
  const err = parseErr(reply.payload);
  if (err.errno === UNKNOWN_COMMAND && server.relogin !== undefined) {
    return changeUser(channel, server.relogin, timeoutMs);
  }
  return `COM_RESET_CONNECTION failed: ${err.errno} ${err.message}`;
}

/** One `pool` option: parked connections of one address (or of every node of one cluster). */
export class BackendPool {
  readonly options: PoolOptions;
  readonly #idle = new Map<string, Parked[]>();
  /** Sharing: server connections open (busy and idle, all keys), for maxConnections. */
  #live = 0;
  /** Sharing: the charset variables a fresh connection of a key reported (its login values). */
  readonly #baselines = new Map<string, ReadonlyMap<string, string>>();
  /** Sharing: statements waiting for a connection, first come first served. */
  readonly #waiters: Waiter[] = [];
  #count = 0;
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  /** Set by the first session that uses the pool: the daemon's counters. */
  #metrics: ProxyMetrics | undefined;

  constructor(options: PoolOptions) {
    this.options = options;
    livePools.add(this);
  }

  /** Closed by a drain or shutdown: nothing is parked any more. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Parked connections now (all keys). */
  get idle(): number {
    return this.#count;
  }

  /**
   * A parked connection for `key`, or undefined (a miss). The newest goes first (the most likely
   * to be alive); one the server closed or wrote to while parked, or one too old, is closed.
   */
  take(key: string, metrics: ProxyMetrics): PooledServer | undefined {
    this.#metrics = metrics;
    const server = this.#takeIdle(key);
    if (server !== undefined) metrics.poolHits++;
    else metrics.poolMisses++;
    return server;
  }

  /**
   * A session ended with its server connection reusable: reset it and park it under `key`, or
   * close it (the pool is full or closed, the reset failed). The fd is the pool's from now on.
   */
  async park(key: string, server: PooledServer, timeoutMs: number, metrics: ProxyMetrics): Promise<void> {
    this.#metrics = metrics;
    if (this.#closed) {
      this.#discard(server, 'shutdown');
      return;
    }
    if (
      !this.#hasWaiter(key) &&
      (this.#count >= this.options.maxIdle || (this.#idle.get(key)?.length ?? 0) >= this.options.maxPerKey)
    ) {
      this.#discard(server, 'full');
      return;
    }
    const channel = new FdPacketChannel(server.fd, MAX_LOGIN_PAYLOAD);
    let failure: string | undefined;
    try {
      failure = await resetConnection(channel, server, timeoutMs);
    } catch (e) {
      failure =
        e instanceof ChannelTimeoutError
          ? 'no answer to COM_RESET_CONNECTION'
          : e instanceof ChannelClosedError
            ? 'server closed the connection'
            : errorMessage(e);
    }
    const extra = channel.destroyed ? null : channel.detach();
    if (failure === undefined && extra !== null) failure = 'unexpected bytes after the reset';
    if (failure !== undefined || channel.destroyed) {
      if (!channel.destroyed) channel.destroy();
      metrics.poolDiscarded.set('reset_failed', (metrics.poolDiscarded.get('reset_failed') ?? 0) + 1);
      logInfo(`pool: not kept (thread ${server.threadId}): ${failure ?? 'closed'}`);
      if (this.options.share) this.connectionGone();
      return;
    }
    channel.handOver();
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- close() may have run while we awaited
    if (!this.#closed && this.#handToWaiter(key, { ...server, shared: undefined })) {
      metrics.poolReturns++;
      return;
    }
    // Checked again: the pool may have filled up or closed while the reset ran.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- close() may have run while we awaited
    if (this.#closed || this.#count >= this.options.maxIdle) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- as above
      this.#discard(server, this.#closed ? 'shutdown' : 'full');
      return;
    }
    let list = this.#idle.get(key);
    if (list === undefined) this.#idle.set(key, (list = []));
    if (list.length >= this.options.maxPerKey) {
      this.#discard(server, 'full');
      return;
    }
    // After a reset the session tracking sharing set up is gone: the next taker sets it again.
    list.push({ server: { ...server, shared: undefined }, since: Date.now() });
    this.#count++;
    metrics.poolIdle++;
    metrics.poolReturns++;
    this.#startSweeper();
  }

  /**
   * Sharing: a connection for the next statement of a session with `key`: an idle one (the newest),
   * else leave to open one while the key has fewer than maxConnections, else wait for one to come
   * back, up to queueTimeoutMs.
   */
  acquire(key: string, metrics: ProxyMetrics): Acquired | Promise<Acquired> {
    this.#metrics = metrics;
    const server = this.#takeIdle(key);
    if (server !== undefined) return { kind: 'server', server };
    if (this.#closed || this.options.maxConnections === 0 || this.#live < this.options.maxConnections) {
      this.opened();
      return { kind: 'open' };
    }
    // At the limit: an idle connection of another key makes room for one of this key.
    if (this.#closeIdleOfAnotherKey(key)) {
      this.opened();
      return { kind: 'open' };
    }
    metrics.poolShareWaits++;
    return new Promise<Acquired>((resolve) => {
      const waiter: Waiter = {
        key,
        resolve,
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          metrics.poolShareWaitTimeouts++;
          resolve({ kind: 'timeout' });
        }, this.options.queueTimeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /** A server connection was opened (a login under sharing): it counts against maxConnections. */
  opened(): void {
    if (this.options.share) this.#live++;
  }

  /** A server connection was closed (or never opened): the first waiter may open one instead. */
  connectionGone(): void {
    if (!this.options.share) return;
    if (this.#live > 0) this.#live--;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      clearTimeout(waiter.timer);
      this.opened();
      waiter.resolve({ kind: 'open' });
    }
  }

  /** Server connections open now (sharing), busy and idle. */
  get liveConnections(): number {
    return this.#live;
  }

  baseline(key: string): ReadonlyMap<string, string> | undefined {
    return this.#baselines.get(key);
  }

  setBaseline(key: string, vars: ReadonlyMap<string, string>): void {
    this.#baselines.set(key, vars);
  }

  /**
   * Sharing: a session let its connection go between statements; its state (`server.shared`)
   * stays, no reset. A waiting statement takes it at once; otherwise it is parked.
   */
  putBack(key: string, server: PooledServer, metrics: ProxyMetrics): void {
    this.#metrics = metrics;
    if (this.#closed) {
      this.#discard(server, 'shutdown');
      return;
    }
    if (this.#handToWaiter(key, server)) return;
    if (this.#count >= this.options.maxIdle) {
      this.#discard(server, 'full');
      return;
    }
    let list = this.#idle.get(key);
    if (list === undefined) this.#idle.set(key, (list = []));
    list.push({ server, since: Date.now() });
    this.#count++;
    metrics.poolIdle++;
    this.#startSweeper();
  }

  #hasWaiter(key: string): boolean {
    return this.#waiters.some((w) => w.key === key);
  }

  /**
   * A connection of `key` for the first waiter of that key. With waiters of other keys only (and
   * the pool at its limit), it is closed instead, so that the first of them may open one.
   */
  #handToWaiter(key: string, server: PooledServer): boolean {
    if (this.#waiters.length === 0) return false;
    const i = this.#waiters.findIndex((w) => w.key === key);
    if (i < 0) {
      this.#discard(server, 'full');
      return true;
    }
    const [waiter] = this.#waiters.splice(i, 1);
    clearTimeout(waiter!.timer);
    waiter!.resolve({ kind: 'server', server });
    return true;
  }

  /** Close the oldest idle connection of a key other than `key`; false if there is none. */
  #closeIdleOfAnotherKey(key: string): boolean {
    for (const [other, list] of this.#idle) {
      if (other === key || list.length === 0) continue;
      const parked = list.shift()!;
      this.#forget(other, list);
      this.#closeServer(parked.server);
      if (this.#live > 0) this.#live--;
      const m = this.#metrics;
      if (m !== undefined) m.poolDiscarded.set('full', (m.poolDiscarded.get('full') ?? 0) + 1);
      return true;
    }
    return false;
  }

  /** take() without counting a hit or miss (sharing counts its own). */
  #takeIdle(key: string): PooledServer | undefined {
    const list = this.#idle.get(key);
    const now = Date.now();
    while (list !== undefined && list.length > 0) {
      const parked = list.pop()!;
      this.#forget(key, list);
      if (now - parked.since >= this.options.idleTimeoutMs) {
        this.#discard(parked.server, 'timeout');
        continue;
      }
      if (!addonFunctions().fdQuiet(parked.server.fd)) {
        this.#discard(parked.server, 'stale');
        continue;
      }
      return parked.server;
    }
    return undefined;
  }

  /** Close every parked connection; park none from now on. */
  close(): void {
    this.#closed = true;
    for (const [key, list] of this.#idle) {
      for (const parked of list.splice(0)) this.#discard(parked.server, 'shutdown');
      this.#idle.delete(key);
    }
    if (this.#metrics !== undefined) this.#metrics.poolIdle -= this.#count;
    this.#count = 0;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    livePools.delete(this);
    // Statements waiting for a shared connection open their own now (the drain lets sessions finish).
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      this.opened();
      w.resolve({ kind: 'open' });
    }
  }

  /** One connection left `list` (taken or discarded): counts and an empty list go. */
  #forget(key: string, list: Parked[]): void {
    this.#count--;
    if (this.#metrics !== undefined) this.#metrics.poolIdle--;
    if (list.length === 0) this.#idle.delete(key);
  }

  #discard(server: PooledServer, reason: string): void {
    this.#closeServer(server);
    if (this.options.share) this.connectionGone();
    const m = this.#metrics;
    if (m !== undefined) m.poolDiscarded.set(reason, (m.poolDiscarded.get(reason) ?? 0) + 1);
  }

  #closeServer(server: PooledServer): void {
    if (server.socket !== undefined) server.socket.destroy();
    else closeFd(server.fd);
  }

  /** Ages parked connections out while there are any (no timer runs for an empty pool). */
  #startSweeper(): void {
    if (this.#sweeper !== undefined) return;
    const every = Math.max(100, Math.min(5_000, Math.floor(this.options.idleTimeoutMs / 2)));
    this.#sweeper = setInterval(() => this.#sweep(), every);
    this.#sweeper.unref();
  }

  #sweep(): void {
    const limit = Date.now() - this.options.idleTimeoutMs;
    for (const [key, list] of this.#idle) {
      // Oldest first: stop at the first one young enough.
      while (list.length > 0 && list[0]!.since <= limit) {
        const parked = list.shift()!;
        this.#forget(key, list);
        this.#discard(parked.server, 'timeout');
      }
      // A connection the server closed while parked is let go at once, not at its timeout.
      for (let i = list.length - 1; i >= 0; i--) {
        const parked = list[i]!;
        if (addonFunctions().fdQuiet(parked.server.fd)) continue;
        list.splice(i, 1);
        this.#forget(key, list);
        this.#discard(parked.server, 'stale');
      }
    }
    if (this.#count === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }
}
