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

  /** The limit now (read each time: `prlimit` can change it while the daemon runs). */
  get limit(): number {
    return fdLimit();
  }

  /** Takes the real count now (at startup, and when the estimate comes close). */
  measure(sessions: number, now = Date.now()): void {
    this.#measured = openFdCount();
    this.#measuredSessions = sessions;
    this.#measuredAt = now;
  }

  /** Whether one more session fits (the accepted client socket is already counted by the kernel). */
  admits(sessions: number, now = Date.now()): boolean {
    const headroom = fdLimit() - this.#reserve;
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
