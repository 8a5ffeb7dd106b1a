// The session engine: one accepted client from greeting to relay. Policy (Lua) is reached only
// through SessionHooks; everything it decides comes back as an action that this file carries out.

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { Capability, Command, DEFAULT_CHARSET, ErrorNumber, ServerStatus, AuthPluginName } from '../protocol/constants.js';
import { PacketWriter, framePayload } from '../protocol/writer.js';
import type { Packet } from '../protocol/framer.js';
import { writeErr, writeAuthSwitchRequest } from '../protocol/packets/generic.js';
import { writeHandshakeV10 } from '../protocol/packets/handshake.js';
import { isSslRequest, parseHandshakeResponse, type HandshakeResponse } from '../protocol/packets/handshake-response.js';
import { formatAddress } from '../net/address.js';
import { connectSocket } from '../net/connect.js';
import { PacketChannel, ChannelClosedError, ChannelTimeoutError } from '../net/packet-channel.js';
import { NativeRelay } from '../net/native-relay.js';
import { closePidfd } from '../net/peer-identity.js';
import { Relay, type ByteRelay, type InterceptReply, type RelayKind } from '../net/relay.js';
import { sha1 } from '../auth/native-password.js';
import { ClientError, MalformedPacketError, ProxyError, errorMessage } from '../util/errors.js';
import { logError, logInfo, quote } from '../util/log.js';
import { loginToBackend, BackendLoginError, AuthPluginError, type BackendLoginResult } from './backend-login.js';
import {
  PolicyError,
  type ClientSession,
  type BackendCandidate,
  type ConnectAction,
  type ClientAuthMode,
  accessDeniedMessage,
  type ErrAction,
  type NativeAuthAnswer,
  type PeerIdentity,
  type SessionHandler,
  type SessionHooks,
} from './handler.js';
import type { Stats } from './stats.js';

/** What the proxy offers clients in its greeting (see docs/protocol.md for why each is there). */
export const GREETING_CAPABILITIES =
  Capability.CLIENT_LONG_PASSWORD |
  Capability.CLIENT_FOUND_ROWS |
  Capability.CLIENT_LONG_FLAG |
  Capability.CLIENT_CONNECT_WITH_DB |
  Capability.CLIENT_NO_SCHEMA |
  Capability.CLIENT_ODBC |
  Capability.CLIENT_IGNORE_SPACE |
  Capability.CLIENT_PROTOCOL_41 |
  Capability.CLIENT_INTERACTIVE |
  Capability.CLIENT_IGNORE_SIGPIPE |
  Capability.CLIENT_TRANSACTIONS |
  Capability.CLIENT_RESERVED |
  Capability.CLIENT_SECURE_CONNECTION |
  Capability.CLIENT_MULTI_STATEMENTS |
  Capability.CLIENT_MULTI_RESULTS |
  Capability.CLIENT_PS_MULTI_RESULTS |
  Capability.CLIENT_PLUGIN_AUTH |
  Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
  Capability.CLIENT_SESSION_TRACK |
  Capability.CLIENT_DEPRECATE_EOF |
  Capability.CLIENT_REMEMBER_OPTIONS;

export const DEFAULT_SERVER_VERSION = '5.7.30';
/** Shared by all connections (never written to: a new version replaces the Buffer). */
const DEFAULT_SERVER_VERSION_BYTES = Buffer.from(DEFAULT_SERVER_VERSION);

export interface ConnectionOptions {
  /** How long a client may take to send each login packet. */
  readonly clientTimeoutMs: number;
  /** Backend connect + login timeout. */
  readonly connectTimeoutMs: number;
  readonly stats: Stats;
  /** Which relay forwards the command phase: the native byte pump (default) or the JS one. */
  readonly relay: RelayKind;
}

/** Login packets are small; anything bigger is hostile or broken. */
const MAX_LOGIN_PAYLOAD = 64 * 1024;

let nextConnectionId = 1;

/** Connecting or logging in to one backend failed before it answered the login. */
class BackendUnreachable extends Error {
  readonly detail: string;
  /** What the client is told if no other backend is left to try. */
  readonly clientMessage: string;
  constructor(detail: string, clientMessage: string) {
    super(detail);
    this.detail = detail;
    this.clientMessage = clientMessage;
  }
}

interface BackendAttempt {
  readonly socket: Socket;
  readonly channel: PacketChannel;
  readonly result: BackendLoginResult;
}

/** Thrown to end a session with an ERR to the client (already decided, nothing more to log). */
class AbortSession extends Error {
  readonly packet: Buffer | undefined;
  constructor(packet?: Buffer) {
    super('abort');
    this.packet = packet;
  }
}

export class Connection implements ClientSession {
  readonly id: number;
  readonly peer: PeerIdentity;
  serverVersion: Buffer = DEFAULT_SERVER_VERSION_BYTES;
  #account: string | undefined;
  #logName: string;
  #closed = false;
  /** The client socket until the relay takes it over (then null, so it can be collected). */
  #socket: Socket | null;
  readonly #options: ConnectionOptions;
  readonly #hooks: SessionHooks;
  readonly #auth: ClientAuthMode;
  #backend: Socket | null = null;
  #relay: ByteRelay | null = null;
  /** Sequence id of the client's last login packet; our reply uses the next one. */
  #clientSeq = 0;
  /**
   * Where the session is, for an ERR sent from outside the normal flow (shutdown): before the
   * greeting it is packet 0; during login it answers the client's last packet (1043); in the
   * command phase it answers the client's next command (1047, sequence id 1).
   */
  #phase: 'connect' | 'login' | 'command' = 'connect';
  readonly #onFinished: (c: Connection) => void;
  /** Unsubscribes from the cluster node this session runs on (disconnect_unavailable). */
  #detachFromNode: (() => void) | undefined;

  constructor(
    socket: Socket,
    peer: PeerIdentity,
    handler: SessionHandler,
    options: ConnectionOptions,
    onFinished: (c: Connection) => void,
  ) {
    this.id = nextConnectionId++;
    if (nextConnectionId > 0xffffffff) nextConnectionId = 1;
    this.peer = peer;
    this.#socket = socket;
    this.#options = options;
    this.#onFinished = onFinished;
    this.#logName = this.#makeLogName();
    this.#hooks = handler.open(this);
    this.#auth = handler.clientAuth ?? 'clear';
  }

  get account(): string | undefined {
    return this.#account;
  }

  set account(value: string | undefined) {
    this.#account = value;
    this.#logName = this.#makeLogName();
  }

  get #client(): Socket {
    if (this.#socket === null) throw new Error('client socket used after the relay took it over');
    return this.#socket;
  }

  get logName(): string {
    return this.#logName;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #makeLogName(): string {
    const p = this.peer;
    let name = p.pid !== undefined ? `pid=${p.pid} uid=${p.uid}` : (p.address ?? '?');
    if (this.#account !== undefined) name += ` ${quote(this.#account)}`;
    return name;
  }

  #log(line: string): void {
    logInfo(`[${this.#logName}] ${line}`);
  }

  #logErr(line: string): void {
    logError(`[${this.#logName}] ${line}`);
  }

  /** Run the session; never rejects (every failure is handled and logged here). */
  async run(): Promise<void> {
    const client = new PacketChannel(this.#client, MAX_LOGIN_PAYLOAD);
    // A client that goes away while a callback or the backend login is pending ends the session
    // at once; the steps in flight notice `closed` and stop.
    this.#client.once('close', () => {
      if (this.#relay === null) this.#finish();
    });
    try {
      await this.#login(client);
    } catch (e) {
      this.#handleLoginFailure(e);
      this.#finish();
    }
  }

  async #login(client: PacketChannel): Promise<void> {
    const stats = this.#options.stats;
    const hooks = this.#hooks;
    if (hooks.onConnect !== undefined) {
      const action = await this.#callPolicy(() => hooks.onConnect!(), 0);
      if (action !== undefined) {
        stats.connectionsRejected++;
        throw new AbortSession(this.#errAction(0, action));
      }
    }
    if (this.#closed) return;

    const scramble = makeScramble();
    this.#phase = 'login';
    client.send(
      writeHandshakeV10({
        serverVersion: this.serverVersion,
        connectionId: this.id,
        scramble,
        capabilities: GREETING_CAPABILITIES,
        characterSet: DEFAULT_CHARSET,
        statusFlags: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
        authPluginName: this.#auth === 'native' ? AuthPluginName.NATIVE_PASSWORD : AuthPluginName.CLEAR_PASSWORD,
      }),
    );

    const hrPacket = await client.next(this.#options.clientTimeoutMs);
    this.#clientSeq = hrPacket.seq;
    if (isSslRequest(hrPacket.payload)) {
      throw new AbortSession(this.#err(hrPacket.seq + 1, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', 'TLS is not supported'));
    }
    const hr = parseHandshakeResponse(hrPacket.payload, GREETING_CAPABILITIES);
    stats.clientHandshakeResponses++;
    const clientCaps = (hr.capabilities & GREETING_CAPABILITIES) >>> 0;
    let password: Buffer | undefined;
    let native: NativeAuthAnswer | undefined;
    if (this.#auth === 'native') native = await this.#nativeAnswer(client, hr, clientCaps, hrPacket, scramble);
    else password = await this.#clearPassword(client, hr, clientCaps, hrPacket);

    this.#log(`login user=${quote(hr.user.toString('utf8'))} database=${quote(hr.database.toString('utf8'))}`);
    const action = await this.#callPolicy(
      () =>
        hooks.onHandshakeResponse(
          native === undefined
            ? { user: hr.user, password, database: hr.database }
            : { user: hr.user, password: undefined, native, database: hr.database },
        ),
      this.#clientSeq + 1,
    );
    if (this.#closed) return;
    if (action.kind === 'err') {
      stats.connectionsRejected++;
      throw new AbortSession(this.#errAction(this.#clientSeq + 1, action));
    }
    if (this.#auth === 'native' && action.password === undefined && action.passwordSha1 === undefined) {
      // The client's own scramble answer is never forwarded: without a credential from policy
      // (normally the one client:verify_native_password() returned) nobody vouched for the client.
      stats.connectionsRejected++;
      this.#log('no credential for the backend under auth=native: access denied');
      throw new AbortSession(
        this.#err(this.#clientSeq + 1, ErrorNumber.ER_ACCESS_DENIED_ERROR, '28000', accessDeniedMessage(hr.user)),
      );
    }
    if ((hr.capabilities & Capability.CLIENT_PROTOCOL_41) === 0) {
      throw new AbortSession(
        this.#err(this.#clientSeq + 1, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', 'Protocol 3.20 clients are not supported'),
      );
    }
    await this.#connect(client, hr, clientCaps, action);
  }

  /** The clear password: from the HandshakeResponse, or via an AuthSwitchRequest. */
  async #clearPassword(
    client: PacketChannel,
    hr: HandshakeResponse,
    clientCaps: number,
    hrPacket: Packet,
  ): Promise<Buffer> {
    if (hr.authPluginName === AuthPluginName.CLEAR_PASSWORD) return stripNul(hr.authResponse);
    if ((clientCaps & Capability.CLIENT_PLUGIN_AUTH) === 0) {
      throw new AbortSession(
        this.#err(
          hrPacket.seq + 1,
          ErrorNumber.ER_NOT_SUPPORTED_AUTH_MODE,
          '08004',
          'Client does not support authentication protocol requested by server; consider upgrading MySQL client',
        ),
      );
    }
    // mysql2 and others answer with their default plugin first: ask for the clear password.
    client.send(writeAuthSwitchRequest(hrPacket.seq + 1, AuthPluginName.CLEAR_PASSWORD, Buffer.alloc(0)));
    const reply = await client.next(this.#options.clientTimeoutMs);
    this.#clientSeq = reply.seq;
    return stripNul(reply.payload);
  }

  /**
   * auth = 'native': the client's mysql_native_password answer to `scramble`, from the
   * HandshakeResponse or, for a client that answered with another plugin, after an
   * AuthSwitchRequest with a fresh scramble.
   */
  async #nativeAnswer(
    client: PacketChannel,
    hr: HandshakeResponse,
    clientCaps: number,
    hrPacket: Packet,
    scramble: Buffer,
  ): Promise<NativeAuthAnswer> {
    const pluginAuth = (clientCaps & Capability.CLIENT_PLUGIN_AUTH) !== 0;
    // Clients without CLIENT_PLUGIN_AUTH answer the greeting's scramble the 4.1 way (native).
    if (!pluginAuth || hr.authPluginName === AuthPluginName.NATIVE_PASSWORD) {
      return { scramble, answer: hr.authResponse };
    }
    const fresh = makeScramble();
    client.send(writeAuthSwitchRequest(hrPacket.seq + 1, AuthPluginName.NATIVE_PASSWORD, fresh));
    const reply = await client.next(this.#options.clientTimeoutMs);
    this.#clientSeq = reply.seq;
    return { scramble: fresh, answer: reply.payload };
  }

  /** Run a policy hook; map policy failures to "Lua error" for the client. */
  async #callPolicy<T>(fn: () => Promise<T>, errSeq: number): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof PolicyError) {
        this.#options.stats.luaErrors++;
        this.#logErr(e.message);
        throw new AbortSession(this.#err(errSeq, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', 'Lua error'));
      }
      throw e;
    }
  }

  async #connect(client: PacketChannel, hr: HandshakeResponse, clientCaps: number, action: ConnectAction): Promise<void> {
    const replySeq = this.#clientSeq + 1;
    const stats = this.#options.stats;
    const candidates: readonly BackendCandidate[] =
      action.target.kind === 'selector'
        ? await action.target.select(this, action.readOnly)
        : [{ address: action.target }];
    if (this.#closed) return;
    if (candidates.length === 0) {
      throw new AbortSession(this.#err(replySeq, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', 'Connection error'));
    }
    // Try the candidates in order; a backend that cannot be reached or fails before answering the
    // login hands over to the next one. A login the backend refuses (ERR) is final.
    let attempt: BackendAttempt | undefined;
    let chosen: BackendCandidate | undefined;
    for (let i = 0; ; i++) {
      const candidate = candidates[i]!;
      chosen = candidate;
      try {
        attempt = await this.#loginAt(candidate, hr, clientCaps, action);
        break;
      } catch (e) {
        if (!(e instanceof BackendUnreachable)) throw e;
        candidate.failed?.(e.detail);
        if (this.#closed) return;
        if (i + 1 >= candidates.length) {
          throw new AbortSession(this.#err(replySeq, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', e.clientMessage));
        }
        this.#log(`trying the next node: ${formatAddress(candidates[i + 1]!.address)}`);
      }
    }
    if (attempt === undefined) return; // the client went away during the attempt
    const { socket: backendSocket, channel: backend, result } = attempt;
    this.#backend = backendSocket;

    if (result.kind === 'err') {
      stats.clientAuthErr++;
      this.#log(`backend refused login: ${result.err.errno} ${result.err.message}`);
      throw new AbortSession(framePayload(result.packet.payload, replySeq));
    }
    stats.clientAuthOk++;
    this.#client.write(framePayload(result.packet.payload, replySeq));
    this.#phase = 'command';
    this.#detachFromNode = chosen.attach?.(() => {
      this.#log('closing: node is unavailable');
      this.close('Node is unavailable');
    });
    // A backend that goes away before the relay takes over (during on_command_phase) ends the session.
    backendSocket.once('close', () => {
      if (this.#relay === null) this.#finish();
    });

    const clientLeftover = client.detach();
    const serverLeftover = backend.detach();
    if (this.#hooks.onCommandPhase !== undefined) {
      try {
        await this.#hooks.onCommandPhase();
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e;
        stats.luaErrors++;
        this.#logErr(e.message);
        // The login OK is out already; tell the client why its next command fails.
        throw new AbortSession(this.#err(1, ErrorNumber.ER_UNKNOWN_COM_ERROR, '08S01', 'Lua error'));
      }
      if (this.#closed) return;
    }
    const RelayImpl = this.#options.relay === 'native' ? NativeRelay : Relay;
    const commands: number[] = [Command.COM_CHANGE_USER];
    if (this.#hooks.onInitDb !== undefined) commands.push(Command.COM_INIT_DB);
    this.#relay = new RelayImpl(this.#client, backendSocket, {
      clientLeftover,
      serverLeftover,
      onClose: () => this.#finish(),
      intercept: { commands, onCommand: (packet) => this.#onCommand(packet) },
    });
    // The relay owns both sockets now; dropping ours lets the native relay's released sockets go.
    this.#socket = null;
    this.#backend = null;
  }

  /**
   * Connect to one backend and log in there. Resolves undefined when the client went away
   * meanwhile; throws BackendUnreachable when the next candidate should be tried.
   */
  async #loginAt(
    candidate: BackendCandidate,
    hr: HandshakeResponse,
    clientCaps: number,
    action: ConnectAction,
  ): Promise<BackendAttempt | undefined> {
    const stats = this.#options.stats;
    const address = candidate.address;
    const timeoutMs = candidate.connectTimeoutMs ?? this.#options.connectTimeoutMs;
    this.#log(`connecting to ${formatAddress(address)}`);
    stats.serverConnects++;
    let socket: Socket;
    try {
      socket = await connectSocket(address, timeoutMs);
    } catch (e) {
      stats.serverConnectErrors++;
      this.#logErr(errorMessage(e));
      throw new BackendUnreachable(errorMessage(e), 'Connection error');
    }
    if (this.#closed) {
      socket.destroy();
      return undefined;
    }
    // Reachable from #finish() while the login runs: a client that goes away (or a shutdown)
    // ends the backend login at once instead of letting it complete for nobody.
    this.#backend = socket;
    // An error after the login channel is detached (a reset while on_command_phase runs) must
    // not become an uncaught exception; whoever reads the socket next sees it.
    socket.on('error', () => undefined);
    const channel = new PacketChannel(socket, MAX_LOGIN_PAYLOAD);
    const password = action.password;
    try {
      const result = await loginToBackend(
        channel,
        {
          clientCapabilities: clientCaps,
          maxPacketSize: hr.maxPacketSize,
          characterSet: hr.characterSet,
          user: action.user,
          credentials: {
            password,
            passwordSha1: action.passwordSha1 ?? (password !== undefined ? sha1(password) : undefined),
          },
          database: action.database ?? Buffer.alloc(0),
          secureTransport: address.kind !== 'tcp',
          backendKey: formatAddress(address),
        },
        timeoutMs,
        (greeting) => {
          this.serverVersion = unpooledCopy(greeting.serverVersion);
          this.#log(`handshake server_version=${quote(greeting.serverVersion.toString('utf8'))}`);
        },
      );
      if (this.#closed) {
        socket.destroy();
        return undefined;
      }
      return { socket, channel, result };
    } catch (e) {
      socket.destroy();
      this.#backend = null;
      // Our own destroy (the client left) is no failure of the node.
      if (this.#closed) return undefined;
      let message = 'Connection error';
      if (e instanceof BackendLoginError) message = e.clientMessage;
      else if (e instanceof AuthPluginError) message = e.message;
      else if (e instanceof MalformedPacketError) message = 'Malformed packet from server';
      else if (e instanceof ChannelClosedError) message = 'Server closed the connection';
      this.#logErr(`backend login failed: ${errorMessage(e)}`);
      // A plugin we cannot speak, or one that needs what this login lacks, would fail on every
      // node alike: that is not the node's fault, so no other node is tried.
      if (e instanceof AuthPluginError || (e instanceof BackendLoginError && e.sameOnEveryNode)) {
        throw new AbortSession(this.#err(this.#clientSeq + 1, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', message));
      }
      throw new BackendUnreachable(errorMessage(e), message);
    }
  }

  /**
   * A command the relay took out of the stream. COM_CHANGE_USER is refused: forwarding it would
   * let a client become another user without the Lua login policy's consent. COM_INIT_DB goes to
   * on_init_db, which may allow it (possibly renamed) or reject just this request.
   */
  async #onCommand(packet: Buffer): Promise<InterceptReply> {
    const seq = packet[3]!;
    const command = packet[4];
    if (command === Command.COM_CHANGE_USER) {
      this.#log('COM_CHANGE_USER refused');
      return {
        toClient: this.#err(
          seq + 1,
          ErrorNumber.ER_NOT_SUPPORTED_YET,
          '42000',
          'COM_CHANGE_USER is not supported by myproxy: connect again as the other user',
        ),
      };
    }
    const database = packet.subarray(5);
    const onInitDb = this.#hooks.onInitDb;
    if (command !== Command.COM_INIT_DB || onInitDb === undefined) return { toServer: packet };
    let action;
    try {
      action = await onInitDb.call(this.#hooks, Buffer.from(database));
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      this.#options.stats.luaErrors++;
      this.#logErr(e.message);
      return { close: this.#err(seq + 1, ErrorNumber.ER_DBACCESS_DENIED_ERROR, '42000', 'Lua error') };
    }
    if (action.kind === 'err') {
      this.#options.stats.connectionsRejected++;
      this.#log(`init_db ${quote(database.toString('utf8'))} rejected`);
      return { toClient: this.#err(seq + 1, ErrorNumber.ER_DBACCESS_DENIED_ERROR, '42000', action.message) };
    }
    this.#log(`init_db ${quote(action.database.toString('utf8'))}`);
    return { toServer: new PacketWriter(8 + action.database.length).int1(Command.COM_INIT_DB).bytes(action.database).finish(seq) };
  }

  /** The ERR for a policy's err action (1043 / 08S01 unless it names its own, as client:deny() does). */
  #errAction(seq: number, action: ErrAction): Buffer {
    return this.#err(seq, action.errno ?? ErrorNumber.ER_HANDSHAKE_ERROR, action.sqlState ?? '08S01', action.message);
  }

  #err(seq: number, errno: number, sqlState: string, message: string): Buffer {
    return writeErr(seq & 0xff, { errno, sqlState, message });
  }

  #handleLoginFailure(e: unknown): void {
    if (this.#closed) return;
    if (e instanceof AbortSession) {
      if (e.packet !== undefined) this.#client.end(e.packet);
      else this.#client.end();
      return;
    }
    if (e instanceof ChannelClosedError) {
      this.#client.destroy();
      return;
    }
    if (e instanceof ChannelTimeoutError) {
      this.#log('client login timed out');
      this.#client.end(this.#err(this.#clientSeq + 1, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', 'Bad handshake'));
      return;
    }
    if (e instanceof ProxyError || e instanceof ClientError) {
      this.#options.stats.clientMalformedPackets++;
      this.#logErr(`Malformed packet from client: ${e.message}`);
      this.#client.end(this.#err(this.#clientSeq + 1, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', 'Bad handshake'));
      return;
    }
    this.#logErr(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    this.#client.destroy();
  }

  /**
   * Write timeout: a peer that has taken none of the bytes owed to it for `limitMs` (a client that
   * stopped reading) would hold its session, and the memory queued for it, forever. True when the
   * session was ended for that.
   */
  closeIfStalled(limitMs: number): boolean {
    const relay = this.#relay;
    if (relay === null || this.#closed) return false;
    const stalled = relay.stalledMs();
    if (stalled < limitMs) return false;
    this.#log(`write timeout: a peer took no data for ${Math.round(stalled / 1000)} s, closing`);
    this.#options.stats.writeTimeouts++;
    relay.abort();
    return true;
  }

  /** Shutdown: end the session now, with an ERR to the client. */
  close(message: string): void {
    if (this.#closed) return;
    const err =
      this.#phase === 'command'
        ? this.#err(1, ErrorNumber.ER_UNKNOWN_COM_ERROR, '08S01', message)
        : this.#err(this.#phase === 'connect' ? 0 : this.#clientSeq + 1, ErrorNumber.ER_HANDSHAKE_ERROR, '08S01', message);
    if (this.#relay !== null) this.#relay.close(err);
    else this.#client.end(err);
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#relay === null) {
      this.#backend?.destroy();
      if (!this.#client.destroyed && !this.#client.writableEnded) this.#client.end();
      this.#client.destroySoon();
    }
    this.#detachFromNode?.();
    try {
      this.#hooks.onClose();
    } finally {
      if (this.peer.pidfd !== undefined) closePidfd(this.peer.pidfd);
      this.#onFinished(this);
    }
  }
}

function makeScramble(): Buffer {
  // Printable, NUL-free bytes, as servers send (some clients stop at a NUL).
  const b = randomBytes(20);
  for (let i = 0; i < b.length; i++) b[i] = 0x21 + (b[i]! % 0x5e);
  return b;
}

function stripNul(b: Buffer): Buffer {
  return b.length > 0 && b[b.length - 1] === 0 ? b.subarray(0, b.length - 1) : b;
}

/**
 * A copy for something that lives as long as the session: Buffer.from() would take a slice of a
 * shared 8 KiB pool block and keep the whole block alive for the lifetime of the connection.
 */
function unpooledCopy(b: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(b.length);
  copy.set(b);
  return copy;
}
