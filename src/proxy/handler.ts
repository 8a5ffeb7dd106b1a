// The only interface between the session engine and whatever decides policy (the Lua bindings,
// or a few lines of TypeScript in tests). Decisions come back as plain data (actions).

import type { SocketAddress } from '../net/address.js';
import type { ResponseRecord } from '../net/tracking.js';
import type { BackendSelector } from '../backend/selector.js';
import type { ServerTls, TlsInfo } from '../net/tls.js';
import type { DeclaredDestination } from '../backend/capabilities.js';
import { type ClientErrorSpec, ErrorCodes, ProxyError } from '../util/errors.js';

export type { BackendCandidate, BackendSelector, SelectingClient } from '../backend/selector.js';

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
  /** The database named at login (or by COM_INIT_DB in a backend-less session); undefined for none. */
  readonly database?: Buffer | undefined;
  /** The listen address the client came through, as the config wrote it ('systemd' for systemd's). */
  readonly listener?: string | undefined;
  /** The client's TLS (after its SSLRequest); undefined on a plain connection. */
  readonly tls?: TlsInfo | undefined;
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
  /** The catalogue's entry; default LUA_REFUSED, 1043 / 08S01 (client:deny() sets ACCESS_DENIED, 1045 / 28000). */
  readonly error?: ClientErrorSpec;
}

/** The text of ER_ACCESS_DENIED_ERROR as myproxy sends it (no host part: the proxy has none to name). */
export function accessDeniedMessage(user: Uint8Array): string {
  return `Access denied for user '${Buffer.from(user).toString('utf8')}'`;
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

/** client:accept(): log the client in with no server behind it; Lua answers every command. */
export interface AcceptAction {
  readonly kind: 'accept';
}

export type LoginAction = ErrAction | ConnectAction | AcceptAction;

/** COM_INIT_DB allowed: forward it, with this database name (possibly renamed). */
export interface InitDbAction {
  readonly kind: 'init_db';
  readonly database: Buffer;
}

/** What on_query and on_command answer for one command. `undefined`: forward it unchanged. */
export type CommandAction = ForwardAction | ErrAction | OkAction | ResultAction;

/** Forward the command with this payload instead (for COM_QUERY: the SQL). */
export interface ForwardAction {
  readonly kind: 'forward';
  readonly payload: Buffer;
}

/** Answer with an OK packet; the server never sees the command. */
export interface OkAction {
  readonly kind: 'ok';
  readonly affectedRows: number;
  readonly insertId: number;
  readonly warnings: number;
  readonly info: Buffer;
}

/** Answer with a text result set; the server never sees the command. */
export interface ResultAction {
  readonly kind: 'result';
  readonly columns: readonly { readonly name: Buffer; readonly type: number }[];
  /** Each value as text bytes, or null for SQL NULL. */
  readonly rows: readonly (readonly (Buffer | null)[])[];
}

/** A forwarded command's response ended (on_result). */
export interface CommandResult {
  readonly record: ResponseRecord;
  /** The SQL as the server got it (COM_QUERY, when on_query saw it), else undefined. */
  readonly sql: Buffer | undefined;
}

/**
 * Thrown by hooks when policy code failed (a Lua runtime error, a bad return value). The message
 * and the traceback go to the log only; the client receives a generic "Lua error".
 */
export class PolicyError extends ProxyError {
  /** Further lines for the log (a Lua stack traceback), if any. */
  readonly detail: string | undefined;
  constructor(message: string, detail?: string) {
    super(ErrorCodes.POLICY, message);
    this.detail = detail;
  }
}

/** Per-connection callbacks. Absent hooks are skipped without any cost. */
export interface SessionHooks {
  onConnect?(): Promise<ErrAction | undefined>;
  onHandshakeResponse(login: LoginRequest): Promise<LoginAction>;
  onCommandPhase?(): Promise<void>;
  /** The client sent COM_INIT_DB (`database` as sent); present only when policy wants to decide. */
  onInitDb?(database: Buffer): Promise<InitDbAction | ErrAction>;
  /**
   * The client asks to kill `target`'s query (or connection). Present only when policy decides;
   * otherwise only a client logged in to the server as the same user may.
   */
  onKill?(target: ClientSession, query: boolean): Promise<boolean>;
  /**
   * COM_QUERY with its SQL; present only when policy wants every query (the relay hands each one
   * over). `sql` is the hook's to keep: nothing writes to it afterwards. The answer comes without a
   * promise when policy has it at once (no microtask per query), or as a promise when it must wait.
   */
  onQuery?(sql: Buffer): CommandAction | undefined | Promise<CommandAction | undefined>;
  /**
   * Any other command (by its name, e.g. 'ping', 'stmt_prepare') with its payload after the
   * command byte; like onQuery.
   */
  onCommand?(name: string, payload: Buffer): CommandAction | undefined | Promise<CommandAction | undefined>;
  /** The response to a forwarded command ended (the relay does not wait for the promise). */
  onResult?(result: CommandResult): Promise<void>;
  /**
   * A response to a forwarded command ended (only when policy wants every one: it costs a call
   * into JavaScript per command).
   */
  onResponse?(record: ResponseRecord): void;
  /** The connection is gone; release everything policy code kept for it. */
  onClose(): void;
}

/** One per listener: creates the hooks of each accepted connection. */
export interface SessionHandler {
  /** How clients of this listener authenticate; default 'clear'. */
  readonly clientAuth?: ClientAuthMode;
  /** Offer CLIENT_LOCAL_FILES (LOAD DATA LOCAL INFILE) to clients that ask; default false. */
  readonly localInfile?: boolean;
  /** The listen address as the config wrote it (client.listener). */
  readonly listener?: string | undefined;
  /** TLS for clients that ask (SSLRequest); undefined: the greeting offers none. */
  readonly tls?: ServerTls | undefined;
  /**
   * The servers this listener's clients are connected to, stated in advance: the greeting offers
   * what exactly those share from the first client on (backend/capabilities.ts).
   */
  readonly destinations?: readonly DeclaredDestination[] | undefined;
  open(client: ClientSession): SessionHooks;
}
