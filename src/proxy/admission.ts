// Admission before any Lua runs: a connection that would take the process to its file-descriptor
// limit is refused with the server's own error (1040 Too many connections) while there is still a
// descriptor to say so with. At the real limit accept() fails and libuv drops connections without
// a word; staying below it keeps every refusal visible.

import {} from '../protocol/constants.js';
import { fdLimit, openFdCount } from '../net/native.js';
import { errPacket } from './client-login.js';
import { ClientErrors } from '../util/errors.js';

/**
 * Descriptors a relayed session holds: the client, the backend and the client's pidfd. While its
 * relay starts it briefly holds two more (the pump's copies of both sockets).
 */
export const FDS_PER_SESSION = 3;
const FDS_WHILE_STARTING = 2;

/** Left free for everything else (listeners, PostgreSQL, health checks, logs, the refusals). */
const DEFAULT_RESERVE = 32;
/** How often the file descriptor limit is read again. */
const LIMIT_READ_EVERY_MS = 1000;
/** How often the real count is taken when the estimate is close to the limit. */
const MEASURE_EVERY_MS = 100;

export class FdBudget {
  readonly #reserve: number;
  #measured = 0;
  #measuredSessions = 0;
  #measuredAt = -Infinity;

  constructor(reserve = DEFAULT_RESERVE) {
    this.#reserve = reserve;
  }

  #limit = 0;
  #limitReadAt = -Infinity;

  /**
   * The limit now: read again at most every LIMIT_READ_EVERY_MS (`prlimit` can change it while the
   * daemon runs; a system call per accept for that is more than it is worth).
   */
  get limit(): number {
    return this.#currentLimit(Date.now());
  }

  #currentLimit(now: number): number {
    if (now - this.#limitReadAt >= LIMIT_READ_EVERY_MS) {
      this.#limit = fdLimit();
      this.#limitReadAt = now;
    }
    return this.#limit;
  }

  /** Takes the real count now (at startup, and when the estimate comes close). */
  measure(sessions: number, now = Date.now()): void {
    this.#measured = openFdCount();
    this.#measuredSessions = sessions;
    this.#measuredAt = now;
  }

  /** Whether one more session fits (the accepted client socket is already counted by the kernel). */
  admits(sessions: number, now = Date.now()): boolean {
    const headroom = this.#currentLimit(now) - this.#reserve;
    const need = FDS_PER_SESSION - 1 + FDS_WHILE_STARTING;
    let estimate = this.#measured + (sessions - this.#measuredSessions) * FDS_PER_SESSION;
    if (estimate + need <= headroom * 0.8) return true;
    if (now - this.#measuredAt >= MEASURE_EVERY_MS) {
      this.measure(sessions, now);
      estimate = this.#measured;
    }
    return estimate + need <= headroom;
  }
}

/** The refusal a client gets instead of a greeting. */
export function tooManyConnections(): Buffer {
  return errPacket(0, ClientErrors.TOO_MANY_CONNECTIONS);
}

/**
 * Failed handshakes per client address (MySQL's and Router's max_connect_errors): an address with
 * `limit` failures in a row (timeouts, garbage, failed TLS handshakes) is refused for `blockMs`. A
 * complete HandshakeResponse forgives the address. Entries go when their address is forgiven or
 * its block ends, and the table is capped, so a scan from many addresses cannot grow it without
 * bound.
 */
export class ConnectErrorBudget {
  readonly #entries = new Map<string, { failures: number; blockedUntil: number }>();
  readonly #maxEntries: number;

  constructor(maxEntries = 100_000) {
    this.#maxEntries = maxEntries;
  }

  /** Addresses blocked now. */
  blockedCount(now = Date.now()): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.blockedUntil > now) n++;
    return n;
  }

  /** Whether `host` is blocked now (an expired block is lifted here). */
  blocked(host: string, now = Date.now()): boolean {
    const e = this.#entries.get(host);
    if (e === undefined || e.blockedUntil === 0) return false;
    if (e.blockedUntil > now) return true;
    this.#entries.delete(host);
    return false;
  }

  /** One more failure; true when it makes the address blocked. */
  failed(host: string, limit: number, blockMs: number, now = Date.now()): boolean {
    if (limit <= 0) return false;
    let e = this.#entries.get(host);
    if (e === undefined) {
      if (this.#entries.size >= this.#maxEntries) this.#evict(now);
      e = { failures: 0, blockedUntil: 0 };
      this.#entries.set(host, e);
    }
    if (e.blockedUntil > now) return false;
    e.failures++;
    if (e.failures < limit) return false;
    e.blockedUntil = now + blockMs;
    e.failures = 0;
    return true;
  }

  /** The address completed a handshake: its failures are forgotten. */
  succeeded(host: string): void {
    const e = this.#entries.get(host);
    if (e !== undefined && e.blockedUntil === 0) this.#entries.delete(host);
  }

  /** Make room: expired blocks first, then the oldest entries that are not blocked. */
  #evict(now: number): void {
    for (const [host, e] of this.#entries) {
      if (this.#entries.size < this.#maxEntries) return;
      if (e.blockedUntil <= now) this.#entries.delete(host);
    }
  }
}

/** The host part of a peer's "ip:port" / "[ip6]:port" text (the key of the connect-error budget). */
export function hostOfAddress(address: string): string {
  if (address.startsWith('[')) return address.slice(1, address.indexOf(']'));
  const colon = address.lastIndexOf(':');
  return colon < 0 ? address : address.slice(0, colon);
}

/** The refusal of a blocked address (MySQL's text, without its mysqladmin advice: a restart or the block time lifts it). */
export function hostBlocked(host: string): Buffer {
  return errPacket(0, ClientErrors.HOST_BLOCKED, `Host '${host}' is blocked because of many connection errors`);
}
