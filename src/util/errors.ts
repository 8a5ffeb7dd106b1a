// The one catalogue of errors: what a client can be sent (ClientErrors: code, MySQL error number,
// SQLSTATE, text) and the codes every error object of the daemon carries (ErrorCodes, ProxyError).
// docs/errors.md is held to ClientErrors by test/unit/util/errors.test.ts, and no code outside this
// file writes an error number or SQLSTATE of its own.

/** MySQL's general SQLSTATE, for an error number that comes without one (client:err(message, code)). */
export const GENERAL_SQLSTATE = 'HY000';

/** An ERR the daemon itself sends: `message` is the text, or '' where the caller supplies it. */
export interface ClientErrorSpec {
  readonly code: string;
  readonly errno: number;
  readonly sqlState: string;
  readonly message: string;
}

function spec(code: string, errno: number, sqlState: string, message = ''): ClientErrorSpec {
  return { code, errno, sqlState, message };
}

/**
 * Every ERR the daemon sends of its own (the server's errors are relayed unchanged). Error numbers
 * and SQLSTATEs are MySQL's and MariaDB's, as their servers would send them, except where myproxy
 * (the C++ model) chose otherwise and configs or clients may depend on it (1043 for Lua's refusals,
 * 1047 for the daemon closing a session).
 */
export const ClientErrors = {
  /** The fd budget is spent (before the greeting), or the relay could not start (instead of the OK). */
  TOO_MANY_CONNECTIONS: spec('MYP_TOO_MANY_CONNECTIONS', 1040, '08004', 'Too many connections'),
  /** Connection sharing: no server connection of the key became free within the pool's queue_timeout. */
  POOL_QUEUE_TIMEOUT: spec(
    'MYP_POOL_QUEUE_TIMEOUT',
    1040,
    '08004',
    "Too many connections: no server connection free within the pool's queue_timeout",
  ),
  /**
   * Connection sharing: the server connection a statement was to run on could not be opened or
   * given the session's state (schema, variables); the session ends (the text says why).
   */
  POOL_SHARE_FAILED: spec('MYP_POOL_SHARE_FAILED', 1105, 'HY000'),
  /** A login packet could not be parsed, was too large, or did not come in time. */
  BAD_HANDSHAKE: spec('MYP_BAD_HANDSHAKE', 1043, '08S01', 'Bad handshake'),
  /** A Lua callback of the login raised an error, returned what it may not, or ran out of budget. */
  LUA_ERROR: spec('MYP_LUA_ERROR', 1043, '08S01', 'Lua error'),
  /** client:err(message) in on_connect or on_handshake_response: the script's message. */
  LUA_REFUSED: spec('MYP_LUA_REFUSED', 1043, '08S01'),
  TLS_NOT_SUPPORTED: spec('MYP_TLS_NOT_SUPPORTED', 1043, '08S01', 'TLS is not supported'),
  PROTOCOL_320: spec('MYP_PROTOCOL_320', 1043, '08S01', 'Protocol 3.20 clients are not supported'),
  /** No backend could be logged in to; the text says why ('Connection error', 'Server closed the connection'...). */
  BACKEND_FAILED: spec('MYP_BACKEND_FAILED', 1043, '08S01', 'Connection error'),
  /** on_init_db refused the database (its message) or failed ('Lua error'). */
  INIT_DB_REFUSED: spec('MYP_INIT_DB_REFUSED', 1044, '42000'),
  /** Too long a user name, no credential under auth=native, or client:deny(). */
  ACCESS_DENIED: spec('MYP_ACCESS_DENIED', 1045, '28000'),
  SHUTDOWN: spec('MYP_SHUTDOWN', 1047, '08S01', 'Server shutdown in progress'),
  NODE_UNAVAILABLE: spec('MYP_NODE_UNAVAILABLE', 1047, '08S01', 'Node is unavailable'),
  UNKNOWN_THREAD: spec('MYP_UNKNOWN_THREAD', 1094, 'HY000'),
  KILL_DENIED: spec('MYP_KILL_DENIED', 1095, 'HY000'),
  WRONG_DB_NAME: spec('MYP_WRONG_DB_NAME', 1102, '42000', 'Incorrect database name'),
  KILL_FAILED: spec('MYP_KILL_FAILED', 1105, 'HY000'),
  /** on_query or on_command raised an error, returned what it may not, or ran out of budget. */
  HOOK_LUA_ERROR: spec('MYP_HOOK_LUA_ERROR', 1105, 'HY000', 'Lua error'),
  /** Too many failed handshakes from one address (max_connect_errors): MySQL's ER_HOST_IS_BLOCKED. */
  HOST_BLOCKED: spec('MYP_HOST_BLOCKED', 1129, 'HY000'),
  /** client:err(message) in on_query or on_command without a code of its own (ProxySQL's choice for a blocked query). */
  QUERY_REFUSED: spec('MYP_QUERY_REFUSED', 1148, '42000'),
  /** A command for on_query or on_command larger than the daemon holds (64 MiB). */
  COMMAND_TOO_LARGE: spec(
    'MYP_COMMAND_TOO_LARGE',
    1153,
    '08S01',
    "Got a packet bigger than 'max_allowed_packet' bytes",
  ),
  /** A backend-less session (client:accept()): a command that neither Lua nor the daemon answers. */
  COMMAND_UNANSWERED: spec('MYP_COMMAND_UNANSWERED', 1235, '42000'),
  CHANGE_USER_REFUSED: spec(
    'MYP_CHANGE_USER_REFUSED',
    1235,
    '42000',
    'COM_CHANGE_USER is not supported by myproxy: connect again as the other user',
  ),
  AUTH_METHOD_UNSUPPORTED: spec(
    'MYP_AUTH_METHOD_UNSUPPORTED',
    1251,
    '08004',
    'Client does not support authentication protocol requested by server; consider upgrading MySQL client',
  ),
  /** A DISCONNECT_DATABASE control datagram named the session's account. */
  CONNECTION_KILLED: spec('MYP_CONNECTION_KILLED', 1927, '70100', 'Connection was killed'),
  /** A plain (non-TLS) client on a listener with `tls = {require = true}`: MySQL's ER_SECURE_TRANSPORT_REQUIRED. */
  INSECURE_TRANSPORT: spec(
    'MYP_INSECURE_TRANSPORT',
    3159,
    'HY000',
    'Connections using insecure transport are prohibited while --require_secure_transport=ON.',
  ),
} as const satisfies Record<string, ClientErrorSpec>;

/** Stable error codes carried by every ProxyError (grep-able in logs and tests). */
export const ErrorCodes = {
  MALFORMED_PACKET: 'MYP_MALFORMED_PACKET',
  PACKET_TOO_LARGE: 'MYP_PACKET_TOO_LARGE',
  UNSUPPORTED_PROTOCOL: 'MYP_UNSUPPORTED_PROTOCOL',
  UPSTREAM_PROTOCOL: 'MYP_UPSTREAM_PROTOCOL',
  CONNECT_FAILED: 'MYP_CONNECT_FAILED',
  CONNECT_TIMEOUT: 'MYP_CONNECT_TIMEOUT',
  CONFIG: 'MYP_CONFIG',
  LUA: 'MYP_LUA',
  /** A Lua callback was cancelled because its session went away. */
  LUA_CANCELLED: 'MYP_LUA_CANCELLED',
  /** A Lua callback failed (error, bad return value, budget, memory): PolicyError and its kin. */
  POLICY: 'MYP_POLICY',
  ADDRESS: 'MYP_ADDRESS',
  /** A login socket closed, or said nothing in time. */
  CHANNEL_CLOSED: 'MYP_CHANNEL_CLOSED',
  CHANNEL_TIMEOUT: 'MYP_CHANNEL_TIMEOUT',
  AUTH_PLUGIN: 'MYP_AUTH_PLUGIN',
  BACKEND_UNREACHABLE: 'MYP_BACKEND_UNREACHABLE',
  RELAY_START: 'MYP_RELAY_START',
  /** The session ends with a prepared ERR (or none) to the client: not a fault of its own. */
  SESSION_ABORTED: 'MYP_SESSION_ABORTED',
  JSON: 'MYP_JSON',
  /** A listener's TLS certificate, key or CA file cannot be read or used. */
  TLS_CONFIG: 'MYP_TLS_CONFIG',
  /** A client's TLS handshake failed (or its certificate did not verify). */
  TLS_HANDSHAKE: 'MYP_TLS_HANDSHAKE',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class ProxyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A packet violates the wire format (short read, bad length, trailing garbage). */
export class MalformedPacketError extends ProxyError {
  constructor(message = 'Malformed packet') {
    super(ErrorCodes.MALFORMED_PACKET, message);
  }
}

/** A peer sent a packet larger than the limit for the current protocol phase. */
export class PacketTooLargeError extends ProxyError {
  constructor(limit: number) {
    super(ErrorCodes.PACKET_TOO_LARGE, `Packet larger than ${limit} bytes`);
  }
}

/** The error a parser or the framer throws for bytes that break the wire format. */
export function isParseError(e: unknown): e is ProxyError {
  return e instanceof ProxyError && (e.code === ErrorCodes.MALFORMED_PACKET || e.code === ErrorCodes.PACKET_TOO_LARGE);
}

/** A config.lua problem: exits the daemon with EX_CONFIG. The message names file:line. */
export class ConfigError extends ProxyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.CONFIG, message, options);
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A system error's code (`ENOTFOUND`, `ECONNREFUSED`) where it has one, else its message. */
export function errnoOrMessage(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : errorMessage(e);
}
