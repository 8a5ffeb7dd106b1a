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
  /** Account identifier set by policy; changes the log prefix and keys cluster node choice. */
  account: string | undefined;
  /** Announced in the greeting (as set by on_connect); after backend login, the backend's version. */
  serverVersion: Buffer;
  /** Log prefix, e.g. `pid=42 uid=1000 "acct"`. */
  readonly logName: string;
  /** True once the connection is gone: policy objects referring to it are stale. */
  readonly closed: boolean;
}

/**
 * How the proxy authenticates its clients (mysql_listen option `auth`): 'clear' asks for
 * mysql_clear_password and hands the password to policy; 'native' runs mysql_native_password with
 * a random scramble, so policy gets no password, only the answer to check against a stored hash.
 */
export type ClientAuthMode = 'clear' | 'native';

/** A client's mysql_native_password answer (auth = 'native'). */
export interface NativeAuthAnswer {
  /** The 20-byte scramble the client answered. */
  readonly scramble: Buffer;
  /** SHA1(password) XOR SHA1(scramble ‖ SHA1(SHA1(password))), or empty for an empty password. */
  readonly answer: Buffer;
}

/**
 * The login as the client presented it. Under auth = 'clear', `password` is the clear password;
 * under auth = 'native' it is undefined and `native` holds the scramble answer instead.
 */
export interface LoginRequest {
  readonly user: Buffer;
  readonly password: Buffer | undefined;
  readonly native?: NativeAuthAnswer;
  /** Empty when the client named no database. */
  readonly database: Buffer;
}

export interface ErrAction {
  readonly kind: 'err';
  readonly message: string;
  /** Error number and SQLSTATE for the client; default 1043 / 08S01 (client:deny() sets 1045 / 28000). */
  readonly errno?: number;
  readonly sqlState?: string;
}

/** The text of ER_ACCESS_DENIED_ERROR as myproxy sends it (no host part: the proxy has none to name). */
export function accessDeniedMessage(user: Uint8Array): string {
  return `Access denied for user '${Buffer.from(user).toString('utf8')}'`;
}

/** One backend a session may connect to, with what its selector wants to hear about it. */
export interface BackendCandidate {
  readonly address: SocketAddress;
  /** Connect (and login) timeout for this backend instead of the daemon's default. */
  readonly connectTimeoutMs?: number;
  /** Connecting or logging in failed before the backend answered the login; the next candidate is tried. */
  failed?(reason: string): void;
  /**
   * The session now runs on this backend. `onUnavailable` is called when the selector wants the
   * session closed (its node became unavailable); the returned function unsubscribes.
   */
  attach?(onUnavailable: () => void): () => void;
}

/** Something that chooses among backends at connect time (a cluster). */
export interface BackendSelector {
  readonly kind: 'selector';
  /** Backends in order of preference for this client: the session tries them in turn. */
  select(client: ClientSession, readOnly: boolean): Promise<readonly BackendCandidate[]>;
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
  /** How clients of this listener authenticate; default 'clear'. */
  readonly clientAuth?: ClientAuthMode;
  open(client: ClientSession): SessionHooks;
}
