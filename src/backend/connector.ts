// Connecting a session to a backend: try the candidates a selector gave (or the one address) in
// order, connect and log in to each until one answers the login. A node that cannot be reached or
// fails before it answers hands over to the next one; the backend's answer to the login (OK or
// ERR) is final, and so is a failure that every node would repeat (an auth method we cannot use).

import type { Socket } from 'node:net';
import { AuthPluginError } from '../auth/backend-auth.js';
import type { HandshakeV10 } from '../protocol/packets/handshake.js';
import { formatAddress } from '../net/address.js';
import { connectSocket, connectUnixFd } from '../net/connect.js';
import { ChannelClosedError, FdPacketChannel, PacketChannel } from '../net/packet-channel.js';
import { ErrorCodes, errorMessage, MalformedPacketError, ProxyError } from '../util/errors.js';
import { StatSlot, type ServerMetrics } from '../util/metrics.js';
import { BackendLoginError, loginToBackend, type BackendLoginResult } from './login.js';
import type { BackendCandidate } from './selector.js';
import { serverProfiles } from './capabilities.js';
import { rsaLoginOptions, startBackendTls } from './tls.js';

const NO_DATABASE = Buffer.alloc(0);

/** Login packets are small; anything bigger is hostile or broken. */
export const MAX_LOGIN_PAYLOAD = 64 * 1024;

/** The credentials and client properties a backend login uses. */
export interface BackendLogin {
  readonly user: Buffer;
  readonly password: Buffer | undefined;
  readonly passwordSha1: Buffer | undefined;
  readonly database: Buffer | undefined;
  /** Capabilities in effect between the client and the proxy. */
  readonly clientCapabilities: number;
  /** MariaDB extended capabilities in effect between the client and the proxy. */
  readonly clientExtendedCapabilities: number;
  /** The client's connect attributes (forwarded to the server). */
  readonly connectAttributes: Buffer;
  readonly maxPacketSize: number;
  readonly characterSet: number;
}

/**
 * The connection to a backend during its login: a net.Socket (TCP), or for a Unix socket its bare
 * fd read by an FdPacketChannel (no net.Socket is built for the three or four packets of a login;
 * the fd goes to the byte pump as it is). Either can be destroyed.
 */
export type BackendSocket = Socket | FdPacketChannel;

/** A backend that answered the login (OK or ERR). */
export interface ConnectedBackend {
  /** The same object as `channel` for a Unix socket. */
  readonly socket: BackendSocket;
  readonly channel: PacketChannel | FdPacketChannel;
  readonly result: BackendLoginResult;
  readonly candidate: BackendCandidate;
}

/** What the connector needs from the session it works for. */
export interface ConnectorHost {
  readonly connectTimeoutMs: number;
  log(line: string): void;
  logErr(line: string): void;
  /** True once the client went away: stop, and do not blame the node. */
  readonly closed: boolean;
  /** The backend socket in flight (null when there is none), so the session can end it at once. */
  setBackendSocket(socket: BackendSocket | null): void;
  /** A server's greeting arrived (`label`: its address text). */
  onGreeting(greeting: HandshakeV10, label: string): void;
  /** Counters of the server at `label` (connects, connect errors). */
  serverMetrics(label: string): ServerMetrics;
}

/** No candidate answered the login: the client gets 1043 with `clientMessage`. */
export class BackendConnectError extends ProxyError {
  readonly clientMessage: string;
  constructor(detail: string, clientMessage: string) {
    super(ErrorCodes.CONNECT_FAILED, detail);
    this.clientMessage = clientMessage;
  }
}

/** One candidate failed before it answered the login: try the next one. */
class BackendUnreachable extends ProxyError {
  readonly clientMessage: string;
  constructor(detail: string, clientMessage: string) {
    super(ErrorCodes.BACKEND_UNREACHABLE, detail);
    this.clientMessage = clientMessage;
  }
}

/**
 * Tries the candidates in order. Resolves undefined when the client went away meanwhile; throws
 * BackendConnectError when none could be used.
 */
export async function connectToBackend(
  candidates: readonly BackendCandidate[],
  login: BackendLogin,
  host: ConnectorHost,
): Promise<ConnectedBackend | undefined> {
  if (candidates.length === 0) throw new BackendConnectError('no backend to connect to', 'Connection error');
  for (let i = 0; ; i++) {
    const candidate = candidates[i]!;
    try {
      return await loginAt(candidate, login, host);
    } catch (e) {
      if (!(e instanceof BackendUnreachable)) throw e;
      candidate.failed?.(e.message);
      if (host.closed) return undefined;
      if (i + 1 >= candidates.length) throw new BackendConnectError(e.message, e.clientMessage);
      host.log(`trying the next node: ${formatAddress(candidates[i + 1]!.address)}`);
    }
  }
}

async function loginAt(
  candidate: BackendCandidate,
  login: BackendLogin,
  host: ConnectorHost,
): Promise<ConnectedBackend | undefined> {
  const address = candidate.address;
  const label = formatAddress(address);
  const timeoutMs = candidate.connectTimeoutMs ?? host.connectTimeoutMs;
  const server = host.serverMetrics(label);
  host.log(`connecting to ${label}`);
  let socket: BackendSocket;
  let channel: PacketChannel | FdPacketChannel;
  try {
    if (address.kind === 'tcp') {
      socket = await connectSocket(address, timeoutMs);
      // An error after the login channel is detached (a reset while on_command_phase runs) must not
      // become an uncaught exception; whoever reads the socket next sees it.
      socket.on('error', () => undefined);
      channel = new PacketChannel(socket, MAX_LOGIN_PAYLOAD);
    } else {
      channel = socket = new FdPacketChannel(connectUnixFd(address), MAX_LOGIN_PAYLOAD);
    }
  } catch (e) {
    server.connectErrors++;
    host.logErr(errorMessage(e));
    throw new BackendUnreachable(errorMessage(e), 'Connection error');
  }
  server.connects++;
  if (host.closed) {
    socket.destroy();
    return undefined;
  }
  // Reachable from the session while the login runs: a client that goes away (or a shutdown)
  // ends the backend login at once instead of letting it complete for nobody.
  host.setBackendSocket(socket);
  try {
    const result = await loginToBackend(
      channel,
      {
        clientCapabilities: login.clientCapabilities,
        clientExtendedCapabilities: login.clientExtendedCapabilities,
        connectAttributes: login.connectAttributes,
        maxPacketSize: login.maxPacketSize,
        characterSet: login.characterSet,
        user: login.user,
        // SHA1(password) is derived by the plugin that needs it (mysql_native_password), not here.
        credentials: login,
        database: login.database ?? NO_DATABASE,
        secureTransport: address.kind !== 'tcp',
        backendKey: label,
        ...(address.kind === 'tcp' && address.tls !== undefined
          ? {
              startTls: async () => {
                const tlsOptions = address.tls!;
                const plain = channel as PacketChannel;
                plain.detach();
                const secured = await startBackendTls(plain.socket, tlsOptions, timeoutMs);
                host.log(`TLS to ${label}: ${secured.getProtocol() ?? '?'} ${secured.getCipher().name}`);
                socket = secured;
                channel = new PacketChannel(secured, MAX_LOGIN_PAYLOAD);
                host.setBackendSocket(secured);
                return channel;
              },
            }
          : {}),
        ...rsaLoginOptions(address),
      },
      timeoutMs,
      {
        onGreeting(greeting) {
          // Every login teaches the greeting the proxy offers its next clients.
          serverProfiles.note(label, greeting);
          host.onGreeting(greeting, label);
        },
      },
    );
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the client may have left while we awaited
    if (host.closed) {
      socket.destroy();
      return undefined;
    }
    return { socket, channel, result, candidate };
  } catch (e) {
    socket.destroy();
    host.setBackendSocket(null);
    // Our own destroy (the client left) is no failure of the node.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the client may have left while we awaited
    if (host.closed) return undefined;
    let message = 'Connection error';
    if (e instanceof BackendLoginError) message = e.clientMessage;
    else if (e instanceof AuthPluginError) message = e.message;
    else if (e instanceof MalformedPacketError) message = 'Malformed packet from server';
    else if (e instanceof ChannelClosedError) message = 'Server closed the connection';
    if (e instanceof MalformedPacketError || e instanceof BackendLoginError || e instanceof AuthPluginError) {
      server.stats[StatSlot.SERVER_MALFORMED]! += 1; // myproxy counts protocol errors of the login too
    }
    host.logErr(`backend login failed: ${errorMessage(e)}`);
    // A plugin we cannot speak, or one that needs what this login lacks, would fail on every node
    // alike: that is not the node's fault, so no other node is tried.
    if (e instanceof AuthPluginError || (e instanceof BackendLoginError && e.sameOnEveryNode)) {
      throw new BackendConnectError(errorMessage(e), message);
    }
    throw new BackendUnreachable(errorMessage(e), message);
  }
}
