// How the session engine and backend selectors (clusters) meet: a selector turns a client into an
// ordered list of candidate backends; the engine tries them in turn and reports back. Neither side
// knows the other's internals (the engine knows no nodes, the cluster knows no sessions).

import type { SocketAddress } from '../net/address.js';
import type { BackendPool } from './pool.js';

/** One backend a session may connect to, with what its selector wants to hear about it. */
export interface BackendCandidate {
  readonly address: SocketAddress;
  /** Connect (and login) timeout for this backend instead of the daemon's default. */
  readonly connectTimeoutMs?: number;
  /** Logged-in connections to this backend are kept here between sessions (the `pool` option). */
  readonly pool?: BackendPool;
  /** Connecting or logging in failed before the backend answered the login; the next candidate is tried. */
  failed?(reason: string): void;
  /**
   * The session now runs on this backend. `onUnavailable` is called when the selector wants the
   * session closed (its node became unavailable); the returned function unsubscribes.
   */
  attach?(onUnavailable: () => void): () => void;
}

/** What a selector may know of the client it chooses for. */
export interface SelectingClient {
  /** Keys the choice (rendezvous hashing); undefined hashes like the empty string. */
  readonly account: string | undefined;
}

/** Something that chooses among backends at connect time (a cluster). */
export interface BackendSelector {
  readonly kind: 'selector';
  /** Backends in order of preference for this client: the session tries them in turn. */
  select(client: SelectingClient, readOnly: boolean): Promise<readonly BackendCandidate[]>;
}
