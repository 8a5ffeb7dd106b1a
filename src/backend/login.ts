// Logging in to a backend as a MySQL client: read its greeting, send a HandshakeResponse41 with
// the credentials Lua chose, follow AuthSwitchRequests, and end with the backend's OK or ERR.

import {
  backendAuthPlugin,
  AuthPluginError,
  type BackendAuthContext,
  type BackendAuthPlugin,
  type BackendCredentials,
} from '../auth/backend-auth.js';
import { Capability, Command, DEFAULT_CHARSET, MariaDbCapability, PacketHeader } from '../protocol/constants.js';
import type { Packet } from '../protocol/framer.js';
import { parseErr, parseAuthSwitchRequest, type ErrPacket } from '../protocol/packets/generic.js';
import { parseHandshakeV10, type HandshakeV10 } from '../protocol/packets/handshake.js';
import { writeHandshakeResponse41, writeSslRequest } from '../protocol/packets/handshake-response.js';
import { framePayload, PacketWriter } from '../protocol/writer.js';
import type { PacketChannel } from '../net/packet-channel.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';
import {
  PASS_THROUGH_CAPABILITIES,
  PASS_THROUGH_EXTENDED,
  WIRE_FORMAT_CAPABILITIES,
  WIRE_FORMAT_EXTENDED,
} from './capabilities.js';

export interface BackendLoginRequest {
  /** The capabilities in effect between the client and the proxy. */
  readonly clientCapabilities: number;
  /** MariaDB extended capabilities in effect between the client and the proxy (default 0). */
  readonly clientExtendedCapabilities?: number;
  /** The client's connect attributes, forwarded as they are (with CLIENT_CONNECT_ATTRS). */
  readonly connectAttributes?: Buffer;
  readonly maxPacketSize: number;
  readonly characterSet: number;
  readonly user: Buffer;
  readonly credentials: BackendCredentials;
  readonly database: Buffer;
  /** True when the backend socket may carry a clear password (Unix socket). Default false. */
  readonly secureTransport?: boolean;
  /**
   * TLS to this backend: called after the SSLRequest went out; resolves with the channel inside
   * TLS (rejects with a BackendLoginError naming the cause).
   */
  readonly startTls?: () => Promise<LoginChannel>;
  /** caching_sha2_password over plain TCP: a pinned key, or permission to ask the server for one. */
  readonly serverPublicKey?: Buffer;
  readonly getServerPublicKey?: boolean;
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
      /** MariaDB extended capabilities in effect (0 with a MySQL server or client). */
      readonly extendedCapabilities: number;
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
  loginChannel: LoginChannel,
  req: BackendLoginRequest,
  timeoutMs: number,
  listener: ((greeting: HandshakeV10) => void) | GreetingListener,
): Promise<BackendLoginResult> {
  let channel = loginChannel;
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
  const clientExt = req.clientExtendedCapabilities ?? 0;
  // A MariaDB server clears CLIENT_LONG_PASSWORD ("CLIENT_MYSQL"); a MySQL one has no extended set.
  const serverExt = (serverCaps & Capability.CLIENT_LONG_PASSWORD) === 0 ? greeting.extendedCapabilities : 0;
  const missing = req.clientCapabilities & WIRE_FORMAT_CAPABILITIES & ~serverCaps;
  const missingExt = clientExt & WIRE_FORMAT_EXTENDED & ~serverExt;
  if (missing !== 0 || missingExt !== 0) {
    throw new BackendLoginError(
      `Server lacks capabilities the client negotiated (${missingNames(missing, missingExt)}); ` +
        'the greeting offered them because no greeting of this server was known yet',
      'Server lacks capabilities the client requires',
    );
  }
  let caps =
    (req.clientCapabilities & PASS_THROUGH_CAPABILITIES & serverCaps) |
    Capability.CLIENT_PROTOCOL_41 |
    Capability.CLIENT_SECURE_CONNECTION;
  const ext = (clientExt & serverExt & PASS_THROUGH_EXTENDED) >>> 0;
  // MariaDB reads CLIENT_LONG_PASSWORD as "CLIENT_MYSQL": clear it only to send extended
  // capabilities, i.e. when client and server are both MariaDB and share some.
  if (ext === 0) caps |= Capability.CLIENT_LONG_PASSWORD;
  else caps &= ~Capability.CLIENT_LONG_PASSWORD;
  if (req.database.length > 0) caps |= Capability.CLIENT_CONNECT_WITH_DB;
  caps |= serverCaps & (Capability.CLIENT_PLUGIN_AUTH | Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA);
  caps >>>= 0;

  const maxPacketSize = req.maxPacketSize || 0x1000000;
  const characterSet = req.characterSet || DEFAULT_CHARSET;
  let seq = (first.seq + 1) & 0xff;
  let secureTransport = req.secureTransport ?? false;
  if (req.startTls !== undefined) {
    if ((serverCaps & Capability.CLIENT_SSL) === 0) {
      throw new BackendLoginError('TLS is configured but the server does not offer it (no CLIENT_SSL)');
    }
    channel.send(writeSslRequest(caps, maxPacketSize, characterSet, seq));
    channel = await req.startTls();
    caps |= Capability.CLIENT_SSL;
    seq = (seq + 1) & 0xff;
    secureTransport = true;
  }
  const ctx: BackendAuthContext = {
    secureTransport,
    backendKey: req.backendKey ?? '',
    ...(req.serverPublicKey !== undefined ? { serverPublicKey: req.serverPublicKey } : {}),
    ...(req.getServerPublicKey === true ? { getServerPublicKey: true } : {}),
  };
  const plugin: BackendAuthPlugin = backendAuthPlugin(greeting.authPluginName, false)!;
  const scramble = greeting.authPluginData;
  const authResponse = plugin.initialResponse(greeting.authPluginData, req.credentials);
  channel.send(
    writeHandshakeResponse41(
      {
        capabilities: caps,
        maxPacketSize,
        characterSet,
        user: req.user,
        authResponse,
        database: req.database,
        authPluginName: plugin.name,
        extendedCapabilities: ext,
        ...(caps & Capability.CLIENT_CONNECT_ATTRS
          ? { connectAttributes: req.connectAttributes ?? NO_ATTRIBUTES }
          : {}),
      },
      seq,
    ),
  );

  const end = await authRounds(channel, plugin, scramble, req.credentials, ctx, timeoutMs);
  if (end.payload[0] === PacketHeader.OK) {
    return {
      kind: 'ok',
      greeting,
      packet: end,
      // CLIENT_SSL belongs to this hop only (the client's transport is its own matter).
      capabilities: (caps & serverCaps & ~Capability.CLIENT_SSL) >>> 0,
      extendedCapabilities: ext,
    };
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
  // With CLIENT_CONNECT_ATTRS in effect the server reads an attribute block here: an empty one.
  if ((req.capabilities & Capability.CLIENT_CONNECT_ATTRS) !== 0) w.int1(0);
  channel.send(w.finish(0));
  const ctx: BackendAuthContext = { secureTransport: req.secureTransport, backendKey: req.backendKey };
  const end = await authRounds(channel, plugin, req.scramble, req.credentials, ctx, timeoutMs);
  if (end.payload[0] === PacketHeader.OK) return undefined;
  const err = parseErr(end.payload);
  return `COM_CHANGE_USER failed: ${err.errno} ${err.message}`;
}

const NO_ATTRIBUTES = Buffer.alloc(0);

/** Capability names for the log ("CLIENT_SESSION_TRACK, MARIADB_CLIENT_CACHE_METADATA"). */
function missingNames(caps: number, ext: number): string {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(Capability)) if ((caps & bit) !== 0) names.push(name);
  for (const [name, bit] of Object.entries(MariaDbCapability)) if ((ext & bit) !== 0) names.push(name);
  return names.join(', ');
}

export { AuthPluginError };
