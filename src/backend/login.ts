// Logging in to a backend as a MySQL client: read its greeting, send a HandshakeResponse41 with
// the credentials Lua chose, follow AuthSwitchRequests, and end with the backend's OK or ERR.

import {
  backendAuthPlugin,
  AuthPluginError,
  type BackendAuthContext,
  type BackendAuthPlugin,
  type BackendCredentials,
} from '../auth/backend-auth.js';
import { Capability, Command, DEFAULT_CHARSET, PacketHeader } from '../protocol/constants.js';
import type { Packet } from '../protocol/framer.js';
import { parseErr, parseAuthSwitchRequest, type ErrPacket } from '../protocol/packets/generic.js';
import { parseHandshakeV10, type HandshakeV10 } from '../protocol/packets/handshake.js';
import { writeHandshakeResponse41 } from '../protocol/packets/handshake-response.js';
import { framePayload, PacketWriter } from '../protocol/writer.js';
import type { PacketChannel } from '../net/packet-channel.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';

/**
 * Capabilities passed from the client to the backend when both have them. CLIENT_LOCAL_FILES is
 * in the client's set only when its listener allows LOCAL INFILE (mysql_listen option local_infile).
 */
export const PASS_THROUGH_CAPABILITIES =
  Capability.CLIENT_LONG_PASSWORD |
  Capability.CLIENT_LOCAL_FILES |
  Capability.CLIENT_FOUND_ROWS |
  Capability.CLIENT_LONG_FLAG |
  Capability.CLIENT_NO_SCHEMA |
  Capability.CLIENT_ODBC |
  Capability.CLIENT_IGNORE_SPACE |
  Capability.CLIENT_INTERACTIVE |
  Capability.CLIENT_IGNORE_SIGPIPE |
  Capability.CLIENT_TRANSACTIONS |
  Capability.CLIENT_MULTI_STATEMENTS |
  Capability.CLIENT_MULTI_RESULTS |
  Capability.CLIENT_PS_MULTI_RESULTS |
  Capability.CLIENT_SESSION_TRACK |
  Capability.CLIENT_DEPRECATE_EOF |
  Capability.CLIENT_REMEMBER_OPTIONS;

/**
 * Capabilities that change the wire format of command-phase traffic. The relay forwards bytes
 * unchanged, so client and backend must agree on each of these exactly; a backend lacking one the
 * client negotiated fails the login with a clear error instead of corrupting result sets later.
 */
export const WIRE_FORMAT_CAPABILITIES =
  Capability.CLIENT_LONG_FLAG |
  Capability.CLIENT_TRANSACTIONS |
  Capability.CLIENT_MULTI_RESULTS |
  Capability.CLIENT_PS_MULTI_RESULTS |
  Capability.CLIENT_SESSION_TRACK |
  Capability.CLIENT_DEPRECATE_EOF;

export interface BackendLoginRequest {
  /** The capabilities in effect between the client and the proxy. */
  readonly clientCapabilities: number;
  readonly maxPacketSize: number;
  readonly characterSet: number;
  readonly user: Buffer;
  readonly credentials: BackendCredentials;
  readonly database: Buffer;
  /** True when the backend socket may carry a clear password (Unix socket). Default false. */
  readonly secureTransport?: boolean;
  /** The backend's address text (keys the caching_sha2_password public-key cache). */
  readonly backendKey?: string;
}

export type BackendLoginResult =
  | {
      readonly kind: 'ok';
      readonly greeting: HandshakeV10;
      readonly packet: Packet;
      /** Capabilities in effect between the proxy (for the client) and the backend. */
      readonly capabilities: number;
    }
  | { readonly kind: 'err'; readonly greeting: HandshakeV10; readonly err: ErrPacket; readonly packet: Packet };

/** A failure that is the backend's or ours, not the client's: the client gets 1043 + `clientMessage`. */
export class BackendLoginError extends ProxyError {
  readonly clientMessage: string;
  /**
   * True when the failure comes from the login itself (an auth method we cannot speak for this
   * user), not from the server being unwell: another node of a cluster would fail the same way.
   */
  readonly sameOnEveryNode: boolean;
  constructor(message: string, clientMessage = 'Connection error', sameOnEveryNode = false) {
    super(ErrorCodes.UPSTREAM_PROTOCOL, message);
    this.clientMessage = clientMessage;
    this.sameOnEveryNode = sameOnEveryNode;
  }
}

const MAX_AUTH_ROUNDS = 8;
/** AuthMoreData (caching_sha2_password's fast/full auth status, public key). */
const AUTH_MORE_DATA = 0x01;

/** Hears the backend's greeting before the login goes on (e.g. to take its server version). */
export interface GreetingListener {
  onGreeting(greeting: HandshakeV10): void;
}

/** What the login reads from and writes to (a PacketChannel or an FdPacketChannel). */
export type LoginChannel = Pick<PacketChannel, 'next' | 'send'>;

export async function loginToBackend(
  channel: LoginChannel,
  req: BackendLoginRequest,
  timeoutMs: number,
  listener: ((greeting: HandshakeV10) => void) | GreetingListener,
): Promise<BackendLoginResult> {
  const first = await channel.next(timeoutMs);
  if (first.payload[0] === PacketHeader.ERR) {
    const err = parseErr(first.payload);
    throw new BackendLoginError(`Connection rejected by server: ${err.message}`);
  }
  const greeting = parseHandshakeV10(first.payload);
  if (typeof listener === 'function') listener(greeting);
  else listener.onGreeting(greeting);

  const serverCaps = greeting.capabilities;
  if ((serverCaps & Capability.CLIENT_PROTOCOL_41) === 0) {
    throw new BackendLoginError('Server does not support protocol 4.1');
  }
  const missing = req.clientCapabilities & WIRE_FORMAT_CAPABILITIES & ~serverCaps;
  if (missing !== 0) {
    throw new BackendLoginError(
      `Server lacks capabilities the client negotiated (0x${(missing >>> 0).toString(16)})`,
      'Server lacks capabilities the client requires',
    );
  }
  let caps =
    (req.clientCapabilities & PASS_THROUGH_CAPABILITIES & serverCaps) |
    Capability.CLIENT_PROTOCOL_41 |
    Capability.CLIENT_SECURE_CONNECTION;
  // MariaDB reads CLIENT_LONG_PASSWORD as "CLIENT_MYSQL": keep it set so no extended
  // MariaDB capabilities come into play (the client was offered none).
  caps |= Capability.CLIENT_LONG_PASSWORD;
  if (req.database.length > 0) caps |= Capability.CLIENT_CONNECT_WITH_DB;
  caps |= serverCaps & (Capability.CLIENT_PLUGIN_AUTH | Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA);

  const ctx: BackendAuthContext = {
    secureTransport: req.secureTransport ?? false,
    backendKey: req.backendKey ?? '',
  };
  const plugin: BackendAuthPlugin = backendAuthPlugin(greeting.authPluginName, false)!;
  const scramble = greeting.authPluginData;
  const authResponse = plugin.initialResponse(greeting.authPluginData, req.credentials);
  channel.send(
    writeHandshakeResponse41(
      {
        capabilities: caps,
        maxPacketSize: req.maxPacketSize || 0x1000000,
        characterSet: req.characterSet || DEFAULT_CHARSET,
        user: req.user,
        authResponse,
        database: req.database,
        authPluginName: plugin.name,
      },
      (first.seq + 1) & 0xff,
    ),
  );

  const end = await authRounds(channel, plugin, scramble, req.credentials, ctx, timeoutMs);
  if (end.payload[0] === PacketHeader.OK) {
    return { kind: 'ok', greeting, packet: end, capabilities: (caps & serverCaps) >>> 0 };
  }
  return { kind: 'err', greeting, err: parseErr(end.payload), packet: end };
}

/**
 * The authentication exchange after the first auth response (of a HandshakeResponse or a
 * COM_CHANGE_USER): AuthSwitchRequests and AuthMoreData until the server's OK or ERR packet.
 */
async function authRounds(
  channel: LoginChannel,
  first: BackendAuthPlugin,
  firstScramble: Buffer,
  credentials: BackendCredentials,
  ctx: BackendAuthContext,
  timeoutMs: number,
): Promise<Packet> {
  let plugin = first;
  let scramble = firstScramble;
  for (let round = 0; round < MAX_AUTH_ROUNDS; round++) {
    const p = await channel.next(timeoutMs);
    switch (p.payload[0]) {
      case PacketHeader.OK:
      case PacketHeader.ERR:
        return p;
      case PacketHeader.EOF: {
        const sw = parseAuthSwitchRequest(p.payload);
        const next = backendAuthPlugin(sw.pluginName, true);
        if (next === undefined) {
          throw new BackendLoginError(
            `Unsupported auth plugin ${JSON.stringify(sw.pluginName)}`,
            'Unsupported auth_plugin',
            true,
          );
        }
        plugin = next;
        scramble = sw.pluginData;
        channel.send(framePayload(next.initialResponse(sw.pluginData, credentials), p.seq + 1));
        break;
      }
      case AUTH_MORE_DATA: {
        if (plugin.moreData === undefined) throw new BackendLoginError('Unexpected server reply to HandshakeResponse');
        const reply = plugin.moreData(p.payload.subarray(1), scramble, credentials, ctx);
        if (reply !== null) channel.send(framePayload(reply, p.seq + 1));
        break;
      }
      default:
        throw new BackendLoginError('Unexpected server reply to HandshakeResponse');
    }
  }
  throw new BackendLoginError('Too many authentication rounds');
}

/** What COM_CHANGE_USER needs to log a connection in again as the same user. */
export interface ChangeUserRequest {
  readonly user: Buffer;
  readonly credentials: BackendCredentials;
  readonly database: Buffer;
  readonly characterSet: number;
  /** The scramble of the connection's greeting (the server checks the first answer against it). */
  readonly scramble: Buffer;
  readonly authPluginName: string;
  /** Capabilities in effect on the connection. */
  readonly capabilities: number;
  readonly secureTransport: boolean;
  readonly backendKey: string;
}

/**
 * COM_CHANGE_USER with the same credentials: the session is reset as by a new login (for servers
 * without COM_RESET_CONNECTION). Resolves with the ERR text, or undefined after the server's OK.
 * @see https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_change_user.html
 */
export async function changeUser(
  channel: LoginChannel,
  req: ChangeUserRequest,
  timeoutMs: number,
): Promise<string | undefined> {
  const plugin = backendAuthPlugin(req.authPluginName, false)!;
  const authResponse = plugin.initialResponse(req.scramble, req.credentials);
  const w = new PacketWriter(64 + req.user.length + req.database.length + authResponse.length)
    .int1(Command.COM_CHANGE_USER)
    .nulString(req.user)
    .int1(authResponse.length)
    .bytes(authResponse)
    .nulString(req.database)
    .int2(req.characterSet || DEFAULT_CHARSET);
  if ((req.capabilities & Capability.CLIENT_PLUGIN_AUTH) !== 0) w.nulString(plugin.name);
  channel.send(w.finish(0));
  const ctx: BackendAuthContext = { secureTransport: req.secureTransport, backendKey: req.backendKey };
  const end = await authRounds(channel, plugin, req.scramble, req.credentials, ctx, timeoutMs);
  if (end.payload[0] === PacketHeader.OK) return undefined;
  const err = parseErr(end.payload);
  return `COM_CHANGE_USER failed: ${err.errno} ${err.message}`;
}

export { AuthPluginError };
