// The only interface between the session engine and whatever decides policy (the Lua bindings,
// or a few lines of TypeScript in tests). Decisions come back as plain data (actions).

import type { SocketAddress } from '../net/address.js';

/** Who is on the other end of the client socket, as far as the kernel tells us. */
export interface PeerIdentity {
  /** From SO_PEERCRED on Unix sockets; undefined on TCP sockets. */
  readonly pid: number | undefined;
  readonly uid: number | undefined;
  readonly gid: number | undefined;
  /** Peer address text on TCP sockets ("192.0.2.1:51234"); undefined on Unix sockets. */
  readonly address: string | undefined;
  /**
   * A pidfd of the process `pid` (taken at accept), so /proc/PID data is never attributed to a
   * recycled PID; undefined when none could be had. The connection closes it when it finishes.
   */
  readonly pidfd?: number | undefined;
}

/** The session engine's client, as policy code sees it. */
export interface ClientSession {
  readonly id: number;
  readonly peer: PeerIdentity;
  /** Account identifier set by policy; changes the log prefix (and, later, cluster hashing). */
  account: string | undefined;
  /** Announced in the greeting (as set by on_connect); after backend login, the backend's version. */
  serverVersion: Buffer;
  /** Log prefix, e.g. `pid=42 uid=1000 "acct"`. */
  readonly logName: string;
  /** True once the connection is gone: policy objects referring to it are stale. */
  readonly closed: boolean;
}

/** The login as the client presented it. `password` is undefined when the client sent none. */
export interface LoginRequest {
  readonly user: Buffer;
  readonly password: Buffer;
  /** Empty when the client named no database. */
  readonly database: Buffer;
}

export interface ErrAction {
  readonly kind: 'err';
  readonly message: string;
}

/** Something that chooses among backend addresses at connect time (a cluster). */
export interface BackendSelector {
  readonly kind: 'selector';
  /** Addresses in order of preference for this client. */
  select(client: ClientSession, readOnly: boolean): Promise<readonly SocketAddress[]>;
}

export type ConnectTarget = SocketAddress | BackendSelector;

export interface ConnectAction {
  readonly kind: 'connect';
  readonly target: ConnectTarget;
  readonly user: Buffer;
  readonly password: Buffer | undefined;
  /** SHA1(password), exactly 20 bytes. */
  readonly passwordSha1: Buffer | undefined;
  readonly database: Buffer | undefined;
  readonly readOnly: boolean;
}

export type LoginAction = ErrAction | ConnectAction;

/** COM_INIT_DB allowed: forward it, with this database name (possibly renamed). */
export interface InitDbAction {
  readonly kind: 'init_db';
  readonly database: Buffer;
}

/**
 * Thrown by hooks when policy code failed (a Lua runtime error, a bad return value). The message
 * (with traceback) goes to the log only; the client receives a generic "Lua error".
 */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** Per-connection callbacks. Absent hooks are skipped without any cost. */
export interface SessionHooks {
  onConnect?(): Promise<ErrAction | undefined>;
  onHandshakeResponse(login: LoginRequest): Promise<LoginAction>;
  onCommandPhase?(): Promise<void>;
  /** The client sent COM_INIT_DB (`database` as sent); present only when policy wants to decide. */
  onInitDb?(database: Buffer): Promise<InitDbAction | ErrAction>;
  /** The connection is gone; release everything policy code kept for it. */
  onClose(): void;
}

/** One per listener: creates the hooks of each accepted connection. */
export interface SessionHandler {
  open(client: ClientSession): SessionHooks;
}
