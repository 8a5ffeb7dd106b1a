// The client side of the login: our greeting, the client's HandshakeResponse, and the password
// (clear text, or a mysql_native_password answer under auth = 'native'), with an AuthSwitchRequest
// for clients that answered with another plugin. Field sizes are checked before any Lua runs.

import { randomFillSync } from 'node:crypto';
import { AuthPluginName, Capability, ServerStatus } from '../protocol/constants.js';
import type { Packet } from '../protocol/framer.js';
import { writeAuthSwitchRequest, writeErr } from '../protocol/packets/generic.js';
import { writeHandshakeV10 } from '../protocol/packets/handshake.js';
import {
  isSslRequest,
  parseHandshakeResponse,
  type HandshakeResponse,
} from '../protocol/packets/handshake-response.js';
import type { LoginChannel } from '../net/packet-channel.js';
import type { ProxyMetrics } from '../util/metrics.js';
import { accessDeniedMessage, type ClientAuthMode, type LoginRequest, type NativeAuthAnswer } from './handler.js';
import { ClientErrors, type ClientErrorSpec, ErrorCodes, ProxyError } from '../util/errors.js';

/**
 * Limits on handshake fields, no looser than the servers': MariaDB keeps user names in
 * USERNAME_LENGTH (128 characters of utf8mb3 = 384 bytes) and database names in NAME_LEN (64
 * characters = 192 bytes). Authentication data has no use beyond a few hundred bytes.
 */
export const MAX_USER_BYTES = 384;
export const MAX_DATABASE_BYTES = 192;
export const MAX_AUTH_BYTES = 4096;

/** Ends the session with an ERR to the client (already decided, nothing more to log). */
export class AbortSession extends ProxyError {
  readonly packet: Buffer | undefined;
  constructor(packet?: Buffer) {
    super(ErrorCodes.SESSION_ABORTED, 'abort');
    this.packet = packet;
  }
}

/** An ERR of the catalogue; `message` replaces the catalogue's text (or supplies it where it has none). */
export function errPacket(seq: number, error: ClientErrorSpec, message = error.message): Buffer {
  return writeErr(seq & 0xff, { errno: error.errno, sqlState: error.sqlState, message });
}

export interface ClientLoginOptions {
  readonly auth: ClientAuthMode;
  /** What the greeting offers (backend/capabilities.ts: what the known servers share). */
  readonly greetingCapabilities: number;
  /** MariaDB extended capabilities offered (only with CLIENT_LONG_PASSWORD clear). */
  readonly greetingExtendedCapabilities: number;
  /** The greeting's character set (the servers' default collation when they agree). */
  readonly characterSet: number;
  /** How long the client may take for each login packet. */
  readonly timeoutMs: number;
  /**
   * The client is on a network socket (TCP): it is never asked for a clear-text password outside
   * TLS. Such a connection is greeted with mysql_native_password and, without TLS, stays in the
   * auth = 'native' mode whatever the listener says.
   */
  readonly network: boolean;
  /** The listener's TLS; the greeting offers CLIENT_SSL only with it. */
  readonly tls?: ClientTlsSwitch | undefined;
}

/** What the login needs of the connection to switch to TLS. */
export interface ClientTlsSwitch {
  /** Refuse clients that do not ask for TLS (3159). */
  readonly require: boolean;
  /** TLS over the client's socket after its SSLRequest; the channel to read the rest of the login from. */
  start(plain: LoginChannel): Promise<LoginChannel>;
}

export interface ClientLoginResult {
  readonly hr: HandshakeResponse;
  /** Capabilities in effect between the client and the proxy (CLIENT_SSL is the daemon's alone: not among them). */
  readonly clientCapabilities: number;
  /** MariaDB extended capabilities in effect between the client and the proxy. */
  readonly clientExtendedCapabilities: number;
  readonly request: LoginRequest;
  /** The channel the login ended on (a TLS one after an SSLRequest). */
  readonly channel: LoginChannel;
  /** How the password was taken: the listener's mode, or 'native' for a plain network client. */
  readonly auth: ClientAuthMode;
}

/**
 * The client login. `onSeq` learns the sequence id of each client packet (the reply to it uses the
 * next one). Throws AbortSession for refusals, and the channel's errors for a client that leaves,
 * stalls or sends garbage.
 */
export async function clientLogin(
  client: LoginChannel,
  greeting: { readonly serverVersion: Buffer; readonly connectionId: number },
  options: ClientLoginOptions,
  metrics: ProxyMetrics,
  onSeq: (seq: number) => void,
): Promise<ClientLoginResult> {
  const scramble = makeScramble();
  const tls = options.tls;
  const caps =
    tls !== undefined ? (options.greetingCapabilities | Capability.CLIENT_SSL) >>> 0 : options.greetingCapabilities;
  // A clear password asked for in the greeting could come back before the client says whether it
  // wants TLS: network clients are greeted with mysql_native_password (switched after TLS).
  const greetNative = options.auth === 'native' || options.network;
  client.send(
    writeHandshakeV10({
      serverVersion: greeting.serverVersion,
      connectionId: greeting.connectionId,
      scramble,
      capabilities: caps,
      extendedCapabilities: options.greetingExtendedCapabilities,
      characterSet: options.characterSet,
      statusFlags: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
      authPluginName: greetNative ? AuthPluginName.NATIVE_PASSWORD : AuthPluginName.CLEAR_PASSWORD,
    }),
  );
  let hrPacket = await client.next(options.timeoutMs);
  metrics.clientLoginPackets++;
  onSeq(hrPacket.seq);
  let secure = false;
  if (isSslRequest(hrPacket.payload)) {
    if (tls === undefined) throw new AbortSession(errPacket(hrPacket.seq + 1, ClientErrors.TLS_NOT_SUPPORTED));
    // The SSLRequest (seq 1) has no answer: the TLS handshake follows, then the HandshakeResponse
    // with the next sequence id, read from the TLS channel from here on.
    client = await tls.start(client);
    secure = true;
    hrPacket = await client.next(options.timeoutMs);
    metrics.clientLoginPackets++;
    onSeq(hrPacket.seq);
    if (isSslRequest(hrPacket.payload)) throw new AbortSession(errPacket(hrPacket.seq + 1, ClientErrors.BAD_HANDSHAKE));
  } else if (tls?.require === true) {
    throw new AbortSession(errPacket(hrPacket.seq + 1, ClientErrors.INSECURE_TRANSPORT));
  }
  metrics.clientHandshakeResponses++;
  const hr = parseHandshakeResponse(hrPacket.payload, caps);
  checkFieldSizes(hr, hrPacket.seq + 1);
  const clientCapabilities = (hr.capabilities & caps & ~Capability.CLIENT_SSL) >>> 0;
  const clientExtendedCapabilities = (hr.extendedCapabilities & options.greetingExtendedCapabilities) >>> 0;
  const auth: ClientAuthMode = options.auth === 'native' || (options.network && !secure) ? 'native' : 'clear';
  const next = async (): Promise<Packet> => {
    const p = await client.next(options.timeoutMs);
    metrics.clientLoginPackets++;
    onSeq(p.seq);
    if (p.payload.length > MAX_AUTH_BYTES) {
      throw new AbortSession(errPacket(p.seq + 1, ClientErrors.BAD_HANDSHAKE));
    }
    return p;
  };
  let request: LoginRequest;
  if (auth === 'native') {
    const native = await nativeAnswer(client, hr, clientCapabilities, hrPacket, scramble, next);
    request = { user: hr.user, password: undefined, native, database: hr.database };
  } else {
    const password = await clearPassword(client, hr, clientCapabilities, hrPacket, next);
    request = { user: hr.user, password, database: hr.database };
  }
  return { hr, clientCapabilities, clientExtendedCapabilities, request, channel: client, auth };
}

/** Refuse what no server would accept, before any Lua sees it, with the server's own errors. */
function checkFieldSizes(hr: HandshakeResponse, replySeq: number): void {
  if (hr.user.length > MAX_USER_BYTES) {
    throw new AbortSession(
      errPacket(replySeq, ClientErrors.ACCESS_DENIED, accessDeniedMessage(hr.user.subarray(0, 64))),
    );
  }
  if (hr.database.length > MAX_DATABASE_BYTES) {
    const shown = hr.database.subarray(0, 100).toString('utf8');
    throw new AbortSession(errPacket(replySeq, ClientErrors.WRONG_DB_NAME, `Incorrect database name '${shown}...'`));
  }
  if (hr.authResponse.length > MAX_AUTH_BYTES) {
    throw new AbortSession(errPacket(replySeq, ClientErrors.BAD_HANDSHAKE));
  }
}

/** The clear password: from the HandshakeResponse, or via an AuthSwitchRequest. */
async function clearPassword(
  client: LoginChannel,
  hr: HandshakeResponse,
  clientCaps: number,
  hrPacket: Packet,
  next: () => Promise<Packet>,
): Promise<Buffer> {
  if (hr.authPluginName === AuthPluginName.CLEAR_PASSWORD) return stripNul(hr.authResponse);
  if ((clientCaps & Capability.CLIENT_PLUGIN_AUTH) === 0) {
    throw new AbortSession(errPacket(hrPacket.seq + 1, ClientErrors.AUTH_METHOD_UNSUPPORTED));
  }
  // mysql2 and others answer with their default plugin first: ask for the clear password.
  client.send(writeAuthSwitchRequest(hrPacket.seq + 1, AuthPluginName.CLEAR_PASSWORD, NO_BYTES));
  const reply = await next();
  return stripNul(reply.payload);
}

/**
 * auth = 'native': the client's mysql_native_password answer to `scramble`, from the
 * HandshakeResponse or, for a client that answered with another plugin, after an
 * AuthSwitchRequest with a fresh scramble.
 */
async function nativeAnswer(
  client: LoginChannel,
  hr: HandshakeResponse,
  clientCaps: number,
  hrPacket: Packet,
  scramble: Buffer,
  next: () => Promise<Packet>,
): Promise<NativeAuthAnswer> {
  const pluginAuth = (clientCaps & Capability.CLIENT_PLUGIN_AUTH) !== 0;
  // Clients without CLIENT_PLUGIN_AUTH answer the greeting's scramble the 4.1 way (native).
  if (!pluginAuth || hr.authPluginName === AuthPluginName.NATIVE_PASSWORD) {
    return { scramble, answer: hr.authResponse };
  }
  const fresh = makeScramble();
  client.send(writeAuthSwitchRequest(hrPacket.seq + 1, AuthPluginName.NATIVE_PASSWORD, fresh));
  const reply = await next();
  return { scramble: fresh, answer: reply.payload };
}

const SCRAMBLE_BYTES = 20;
/**
 * Random bytes for scrambles, drawn from the CSPRNG a block at a time: one call per ~200 logins
 * instead of one (about 10 µs, a getpid() included) per login. Each scramble is copied out, so a
 * refill never changes one a login still uses.
 */
const scramblePool = Buffer.allocUnsafeSlow(4096);
let scramblePoolUsed = scramblePool.length;

function makeScramble(): Buffer {
  if (scramblePoolUsed + SCRAMBLE_BYTES > scramblePool.length) {
    randomFillSync(scramblePool);
    scramblePoolUsed = 0;
  }
  const b = Buffer.allocUnsafe(SCRAMBLE_BYTES);
  // Printable, NUL-free bytes, as servers send (some clients stop at a NUL).
  for (let i = 0; i < SCRAMBLE_BYTES; i++) b[i] = 0x21 + (scramblePool[scramblePoolUsed + i]! % 0x5e);
  scramblePoolUsed += SCRAMBLE_BYTES;
  return b;
}

const NO_BYTES = Buffer.alloc(0);

function stripNul(b: Buffer): Buffer {
  return b.length > 0 && b[b.length - 1] === 0 ? b.subarray(0, b.length - 1) : b;
}
