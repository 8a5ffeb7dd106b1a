// Error classes with stable codes. Only ClientError is ever serialised to a MySQL client;
// everything else is logged and mapped to a generic ERR by the session engine.

/** Stable error codes carried by every ProxyError (grep-able in logs and tests). */
export const ErrorCodes = {
  MALFORMED_PACKET: 'MYP_MALFORMED_PACKET',
  PACKET_TOO_LARGE: 'MYP_PACKET_TOO_LARGE',
  UNSUPPORTED_PROTOCOL: 'MYP_UNSUPPORTED_PROTOCOL',
  UNSUPPORTED_AUTH_PLUGIN: 'MYP_UNSUPPORTED_AUTH_PLUGIN',
  UPSTREAM_PROTOCOL: 'MYP_UPSTREAM_PROTOCOL',
  CONNECT_FAILED: 'MYP_CONNECT_FAILED',
  CONNECT_TIMEOUT: 'MYP_CONNECT_TIMEOUT',
  CONFIG: 'MYP_CONFIG',
  LUA: 'MYP_LUA',
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

/** An error to be sent to the MySQL client as an ERR packet. */
export class ClientError extends Error {
  readonly errno: number;
  readonly sqlState: string;
  constructor(errno: number, sqlState: string, message: string) {
    super(message);
    this.errno = errno;
    this.sqlState = sqlState;
    this.name = 'ClientError';
  }
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
