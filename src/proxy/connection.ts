// The session engine: one accepted client from greeting to relay. Policy (Lua) is reached only
// through SessionHooks; everything it decides comes back as an action that this file carries out.
// The steps live beside it: client-login.ts (greeting, password), backend/connector.ts (failover
// and backend login), command-filter.ts (the commands the relay takes out of the stream).

import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Capability, Command, ServerStatus } from '../protocol/constants.js';
import { framePayload } from '../protocol/writer.js';
import type { HandshakeV10 } from '../protocol/packets/handshake.js';
import { formatAddress, type SocketAddress } from '../net/address.js';
import {
  PacketChannel,
  ChannelClosedError,
  ChannelTimeoutError,
  FdPacketChannel,
  type LoginChannel,
} from '../net/packet-channel.js';
import { NativeRelay, RelayStartError } from '../net/native-relay.js';
import { closePidfd } from '../net/peer-identity.js';
import { Relay, type ByteRelay, type InterceptReply, type RelayEnd, type RelayKind } from '../net/relay.js';
import { commandName, type ResponseRecord } from '../net/tracking.js';
import { tlsInfo, TlsHandshakeError, type ServerTls, type TlsInfo } from '../net/tls.js';
import {
  BackendConnectError,
  connectToBackend,
  MAX_LOGIN_PAYLOAD,
  type BackendLogin,
  type BackendSocket,
  type ConnectorHost,
} from '../backend/connector.js';
import type { BackendCandidate } from '../backend/selector.js';
import { addressPool, poolKey, type BackendPool, type PooledServer } from '../backend/pool.js';
import type { ChangeUserRequest } from '../backend/login.js';
import { closeFd } from '../net/native.js';
import { ClientErrors, type ClientErrorSpec, errorMessage, isParseError } from '../util/errors.js';
import { LogRateLimit, logError, logErrorBlock, logInfo, logLimited, quote, quoteBytes } from '../util/log.js';
import type { AccountMetrics, ProxyMetrics, ServerMetrics } from '../util/metrics.js';
import { sharedCopy } from '../util/bytes.js';
import { ShareSession, clientCanShare, type OpenedServer } from './share.js';
import { mayBeKill } from '../net/tracking.js';
import { AbortSession, clientLogin, errPacket } from './client-login.js';
import { greetingCapabilities, ListenerServers, type GreetingProfile } from '../backend/capabilities.js';
import { PROBE_TIMEOUT_MS, probeServers } from '../backend/probe.js';
import { CommandFilter, filteredCommands, interceptLimit, type KillableSession } from './command-filter.js';
import { MAX_LOCAL_COMMAND, serveLocally } from './local-session.js';
import { writeOkPacket } from '../protocol/packets/local-reply.js';
import type { KillTarget } from './kill.js';
import {
  PolicyError,
  accessDeniedMessage,
  type ClientAuthMode,
  type ErrAction,
  type PeerIdentity,
  type SessionHandler,
  type SessionHooks,
} from './handler.js';
import type { SessionRegistry } from './registry.js';

export const DEFAULT_SERVER_VERSION = '5.7.30';
/** Shared by all connections (never written to: a new version replaces the Buffer). */
const DEFAULT_SERVER_VERSION_BYTES = Buffer.from(DEFAULT_SERVER_VERSION);

export interface ConnectionOptions {
  /** How long a client may take to send each login packet. */
  readonly clientTimeoutMs: number;
  /** Backend connect + login timeout. */
  readonly connectTimeoutMs: number;
  readonly metrics: ProxyMetrics;
  readonly registry: SessionRegistry<KillableSession>;
  /** Which relay forwards the command phase: the native byte pump (default) or the JS one. */
  readonly relay: RelayKind;
  /** Follow responses in the relay (default true; false measures what tracking costs). */
  readonly responseTracking?: boolean;
  /** Log a line for every finished response (--log-responses). */
  readonly logResponses?: boolean;
  /**
   * From accept to the end of the HandshakeResponse, TLS handshake included (the listener's
   * handshake_timeout); 0 or absent: only the per-packet clientTimeoutMs.
   */
  readonly handshakeTimeoutMs?: number;
  /** A failed handshake (timeout, garbage, TLS failure): for max_connect_errors. */
  readonly onHandshakeFailed?: (peer: PeerIdentity, reason: HandshakeFailure) => void;
  /** A complete HandshakeResponse arrived (the address's failures are forgiven). */
  readonly onHandshakeDone?: (peer: PeerIdentity) => void;
}

/** Why a client's handshake failed (the label of myproxy_handshake_failures_total). */
export type HandshakeFailure = 'timeout' | 'malformed' | 'tls';

/** Where the session is, for an ERR sent from outside the normal flow (shutdown). */
type Phase = 'connect' | 'login' | 'command';

/** A session that runs on a backend: where, as whom, and its thread id there. */
interface Backend {
  readonly label: string;
  readonly address: SocketAddress;
  /** -1 while a sharing session has no server connection (between statements). */
  threadId: number;
  /**
   * The login's credentials, for KILL (which logs in as this user). Kept as latin1 text, one
   * character per byte: a short string costs a few bytes, while the Buffers of the login action
   * are slices of Node's pool that would keep whole 8 KiB blocks alive for the session's life.
   */
  readonly user: string;
  readonly password: string | undefined;
  readonly passwordSha1: string | undefined;
  readonly server: ServerMetrics;
  /** Per-account counters, when they are on and the account is within the limit. */
  account?: AccountMetrics | undefined;
}

/** Where a session's server connection goes back to when the session ends (pooling is on). */
interface PoolSlot {
  readonly pool: BackendPool;
  readonly key: string;
  /** What the connection's login established (kept with it in the pool). */
  serverVersion: Buffer;
  capabilities: number;
  extendedCapabilities: number;
  /** The same login again (COM_CHANGE_USER), for servers without COM_RESET_CONNECTION. */
  relogin?: ChangeUserRequest | undefined;
  /**
   * Sharing: the server connection the login took or opened counts against the key's
   * max_connections until the session's ShareSession owns it (or the login fails).
   */
  shareCounted?: boolean;
  /** Sharing: the pooled connection the login took (its state), if any. */
  pooled?: PooledServer;
  /** Sharing: the session (made when the relay starts). */
  share?: ShareSession;
  /** Sharing: how to open another server connection for the session (its login, the key's node). */
  shareLogin?: { readonly login: BackendLogin; readonly candidate: BackendCandidate };
}

/**
 * The accepting side passes every connection an options object of its own, all alike as a rule:
 * sessions keep one shared object instead (what an idle session holds is what it costs).
 */
let lastOptions: ConnectionOptions | undefined;
function sharedOptions(options: ConnectionOptions): ConnectionOptions {
  const last = lastOptions;
  if (last !== undefined) {
    const keys = Object.keys(options) as (keyof ConnectionOptions)[];
    if (keys.length === Object.keys(last).length && keys.every((k) => last[k] === options[k])) return last;
  }
  lastOptions = options;
  return options;
}

/** Sharing intercepts every command (0 to 255). */
const ALL_COMMANDS: readonly number[] = Array.from({ length: 256 }, (_, i) => i);

/** Sharing holds a whole command before it goes (MySQL's largest max_allowed_packet). */
const SHARED_MAX_PACKET = 1024 * 1024 * 1024;

/** The TOO_MANY_CONNECTIONS ERR for each sequence id, made on first use (only a failing relay start sends it). */
const tooManyBySeq: Buffer[] = [];
function tooManyConnections(seq: number): Buffer {
  return (tooManyBySeq[seq & 0xff] ??= errPacket(seq, ClientErrors.TOO_MANY_CONNECTIONS));
}

/**
 * The commands a relay takes out of the stream depend only on which of three hooks exist: made
 * once for each combination instead of for each session (the arrays are only read).
 */
const commandsByHooks: (readonly number[] | undefined)[] = [];
function relayedCommandFilter(hooks: SessionHooks, pooled: boolean): readonly number[] {
  const key =
    (hooks.onInitDb !== undefined ? 1 : 0) |
    (hooks.onQuery !== undefined ? 2 : 0) |
    (hooks.onCommand !== undefined ? 4 : 0) |
    (pooled ? 8 : 0);
  return (commandsByHooks[key] ??= pooled
    ? [...new Set([...filteredCommands(hooks), Command.COM_QUIT])]
    : filteredCommands(hooks));
}

interface GreetingOffer {
  readonly capabilities: number;
  readonly extendedCapabilities: number;
  readonly characterSet: number;
}

/** Each listener's servers (by its handler: one per mysql_listen()). */
const serversByListener = new WeakMap<SessionHandler, ListenerServers>();
function listenerServers(handler: SessionHandler): ListenerServers {
  let s = serversByListener.get(handler);
  if (s === undefined) serversByListener.set(handler, (s = new ListenerServers(handler.destinations ?? [])));
  return s;
}

/** The greeting for each profile and listener option, remade only when the profile changed. */
const offers = new WeakMap<GreetingProfile, Map<number, GreetingOffer>>();
function greetingOffer(servers: ListenerServers, listenerCapabilities: number): GreetingOffer {
  const shared = servers.profile();
  let byExtra = offers.get(shared);
  if (byExtra === undefined) offers.set(shared, (byExtra = new Map<number, GreetingOffer>()));
  let offer = byExtra.get(listenerCapabilities);
  if (offer === undefined) {
    offer = { ...greetingCapabilities(shared, listenerCapabilities), characterSet: shared.characterSet };
    byExtra.set(listenerCapabilities, offer);
  }
  return offer;
}

/** The session is also its connector's host: no object of closures per login. */
export class Connection implements KillableSession, ConnectorHost {
  readonly id: number;
  readonly peer: PeerIdentity;
  /** What the greeting announces: the known servers' version (see backend/capabilities.ts), else 5.7.30. */
  serverVersion: Buffer;
  #account: string | undefined;
  #closed = false;
  /**
   * The client until the relay takes it over (then null, so it can be collected): a Unix client's
   * bare fd as a packet channel, or a network client's net.Socket (TLS needs one).
   */
  #socket: Socket | FdPacketChannel | null;
  #database: Buffer | undefined;
  readonly #options: ConnectionOptions;
  readonly #hooks: SessionHooks;
  #auth: ClientAuthMode;
  readonly #listener: string | undefined;
  readonly #serverTls: ServerTls | undefined;
  #tls: TlsInfo | undefined;
  /** The handshake deadline (accept to HandshakeResponse), until it is met. */
  #handshakeTimer: NodeJS.Timeout | undefined;
  /** Capabilities a listener adds to what the servers share (CLIENT_LOCAL_FILES with local_infile). */
  readonly #listenerCapabilities: number;
  readonly #listenerServers: ListenerServers;
  /** The backend socket during its login (reachable from #finish), until the relay owns it. */
  #backendSocket: BackendSocket | null = null;
  #backend: Backend | undefined;
  #relay: ByteRelay | null = null;
  /** The intercepted commands' handler, made when the first one arrives (most sessions see none). */
  #filter: CommandFilter | null = null;
  /** Sequence id of the client's last login packet; our reply uses the next one. */
  #clientSeq = 0;
  #phase: Phase = 'connect';
  #inLogin = false;
  readonly #onFinished: (c: Connection) => void;
  /** Unsubscribes from the cluster node this session runs on (disconnect_unavailable). */
  #detachFromNode: (() => void) | undefined;
  /** Per-kind limits for lines that can repeat (created on first use). */
  #logLimits: Map<string, LogRateLimit> | undefined;
  /** Set when the session's server connection may go back to a pool at its end. */
  #poolSlot: PoolSlot | undefined;

  constructor(
    client: Socket | number,
    peer: PeerIdentity,
    handler: SessionHandler,
    options: ConnectionOptions,
    onFinished: (c: Connection) => void,
  ) {
    this.id = options.registry.allocateId();
    this.peer = peer;
    this.#socket = typeof client === 'number' ? new FdPacketChannel(client, MAX_LOGIN_PAYLOAD) : client;
    this.#options = sharedOptions(options);
    this.#onFinished = onFinished;
    this.#auth = handler.clientAuth ?? 'clear';
    this.#listener = handler.listener;
    this.#serverTls = handler.tls;
    this.#listenerCapabilities = handler.localInfile === true ? Capability.CLIENT_LOCAL_FILES : 0;
    this.#listenerServers = listenerServers(handler);
    this.serverVersion = this.#listenerServers.profile().serverVersion ?? DEFAULT_SERVER_VERSION_BYTES;
    options.registry.add(this);
    this.#hooks = handler.open(this);
  }

  get account(): string | undefined {
    return this.#account;
  }

  set account(value: string | undefined) {
    this.#account = value;
  }

  get #client(): Socket | FdPacketChannel {
    if (this.#socket === null) throw new Error('client socket used after the relay took it over');
    return this.#socket;
  }

  get logName(): string {
    return this.#makeLogName();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get listener(): string | undefined {
    return this.#listener;
  }

  get tls(): TlsInfo | undefined {
    return this.#tls;
  }

  /** The server this session is relayed to (its address text), once logged in. */
  /** The database named at login, or by COM_INIT_DB in a backend-less session. */
  get database(): Buffer | undefined {
    return this.#database;
  }

  get backendLabel(): string | undefined {
    return this.#backend?.label;
  }

  /** The session's thread id on its server (what CONNECTION_ID() returns there). */
  get serverThreadId(): number | undefined {
    const id = this.#backend?.threadId;
    return id === undefined || id < 0 ? undefined : id;
  }

  get killTarget(): KillTarget | undefined {
    const b = this.#backend;
    // A sharing session between statements runs nowhere: its last thread is another session's now.
    if (b === undefined || this.#relay === null || b.threadId < 0) return undefined;
    return {
      address: b.address,
      user: Buffer.from(b.user, 'latin1'),
      password: b.password === undefined ? undefined : Buffer.from(b.password, 'latin1'),
      passwordSha1: b.passwordSha1 === undefined ? undefined : Buffer.from(b.passwordSha1, 'latin1'),
      threadId: b.threadId,
    };
  }

  // ConnectorHost: what the backend connector asks of the session while it logs in.

  get connectTimeoutMs(): number {
    return this.#options.connectTimeoutMs;
  }

  log(line: string): void {
    this.#log(line);
  }

  logErr(line: string): void {
    this.#logErr(line);
  }

  setBackendSocket(socket: BackendSocket | null): void {
    this.#backendSocket = socket;
  }

  onGreeting(greeting: HandshakeV10, label: string): void {
    // The listener's next greetings offer what the servers its sessions reach share.
    this.#listenerServers.add(label);
    this.serverVersion = sharedCopy(greeting.serverVersion);
    this.#log(`handshake server_version=${quoteBytes(greeting.serverVersion)}`);
  }

  serverMetrics(label: string): ServerMetrics {
    return this.#options.metrics.server(label);
  }

  /** Where the relay is in the protocol (tests, the control protocol), or null. */
  relayState(): ReturnType<ByteRelay['state']> {
    return this.#relay?.state() ?? null;
  }

  /**
   * Made for each line rather than kept: a session logs a few lines at login and then mostly
   * nothing, while a kept name would be a string (of several parts) per idle session.
   */
  #makeLogName(): string {
    const p = this.peer;
    let name = p.pid !== undefined ? `pid=${p.pid} uid=${p.uid ?? '?'}` : (p.address ?? '?');
    if (this.#account !== undefined) name += ` ${quote(this.#account)}`;
    return name;
  }

  #log(line: string): void {
    logInfo(`[${this.#makeLogName()}] ${line}`);
  }

  #logErr(line: string): void {
    logError(`[${this.#makeLogName()}] ${line}`);
  }

  /** A line that can repeat: at most 5 a minute per session and kind, and globally limited. */
  #logLimited(kind: string, line: string): void {
    this.#logLimits ??= new Map();
    let limit = this.#logLimits.get(kind);
    if (limit === undefined) {
      limit = new LogRateLimit(5, 60_000);
      this.#logLimits.set(kind, limit);
    }
    const suffix = limit.take();
    if (suffix !== undefined) logLimited(kind, `[${this.#makeLogName()}] ${line}${suffix}`);
  }

  #policyFailed(e: PolicyError): void {
    this.#options.metrics.luaErrors++;
    logErrorBlock(`[${this.#makeLogName()}] `, e.message, e.detail);
  }

  /** Run the session; never rejects (every failure is handled and logged here). */
  async run(): Promise<void> {
    // A client that may switch to TLS sends its ClientHello right after the SSLRequest: nothing
    // after the first packet is framed until the login asks for it.
    const raw = this.#client;
    const mayTls = this.#serverTls !== undefined && this.peer.address !== undefined;
    // A client that goes away while a callback or the backend login is pending ends the session
    // at once; the steps in flight notice `closed` and stop.
    const gone = (): void => {
      if (this.#relay === null) this.#finish();
    };
    let client: LoginChannel;
    if (raw instanceof FdPacketChannel) {
      client = raw;
      raw.onPeerGone = gone;
    } else {
      client = new PacketChannel(raw, MAX_LOGIN_PAYLOAD, null, mayTls);
      raw.once('close', gone);
    }
    this.#inLogin = true;
    this.#options.metrics.loginsInProgress++;
    const limitMs = this.#options.handshakeTimeoutMs ?? 0;
    if (limitMs > 0) this.#handshakeTimer = setTimeout(() => this.#handshakeExpired(), limitMs);
    try {
      await this.#login(client);
    } catch (e) {
      this.#handleLoginFailure(e);
      this.#finish();
    } finally {
      this.#endLogin();
    }
  }

  /** The client has not finished its handshake in time: closed, counted, held against its address. */
  #handshakeExpired(): void {
    this.#handshakeTimer = undefined;
    if (this.#closed) return;
    this.#handshakeFailed('timeout');
    logLimited('handshake_timeout', `[${this.#makeLogName()}] handshake timed out: closing`);
    const client = this.#socket;
    // In the middle of a TLS handshake there is no channel to say anything on.
    if (client !== null && this.#phase === 'login' && (this.#serverTls === undefined || this.#tls !== undefined)) {
      client.end(errPacket(this.#clientSeq + 1, ClientErrors.BAD_HANDSHAKE));
    } else client?.destroy();
    this.#finish();
  }

  #handshakeDone(): void {
    if (this.#handshakeTimer !== undefined) {
      clearTimeout(this.#handshakeTimer);
      this.#handshakeTimer = undefined;
    }
    this.#options.onHandshakeDone?.(this.peer);
  }

  /** After the SSLRequest: TLS over the client socket, and a channel over it for the rest of the login. */
  async #startTls(plain: LoginChannel): Promise<PacketChannel> {
    const raw = this.#client;
    // TLS is offered to network clients only, which come as net.Sockets.
    if (raw instanceof FdPacketChannel) throw new Error('TLS requested on a bare client fd');
    const tlsSocket = await this.#serverTls!.upgrade(raw, plain.detach());
    this.#socket = tlsSocket;
    // Errors after the handshake are the login's (the channel's) or the relay's to handle.
    tlsSocket.on('error', () => undefined);
    this.#tls = tlsInfo(tlsSocket);
    this.#options.metrics.tlsHandshakes++;
    this.#log(`TLS ${this.#tls.version} ${this.#tls.cipher}`);
    return new PacketChannel(tlsSocket, MAX_LOGIN_PAYLOAD);
  }

  #endLogin(): void {
    if (!this.#inLogin) return;
    this.#inLogin = false;
    this.#options.metrics.loginsInProgress--;
  }

  async #login(plain: LoginChannel): Promise<void> {
    let client = plain;
    const metrics = this.#options.metrics;
    const hooks = this.#hooks;
    const servers = this.#listenerServers;
    // A listener that states its destinations greets with what they share: a greeting not learned
    // at startup is fetched first (one bounded wait for all clients arriving meanwhile).
    if (servers.pending) {
      await servers.ready(
        (addresses) =>
          probeServers(addresses, Math.min(this.#options.connectTimeoutMs, PROBE_TIMEOUT_MS), (line) =>
            this.#log(line),
          ),
        (missing) =>
          this.#logErr(
            `listener ${this.#listener ?? '?'}: greeting clients without the capabilities of ${missing.join(', ')} (greeting not learned)`,
          ),
      );
      if (this.#closed) return;
      this.serverVersion = servers.profile().serverVersion ?? DEFAULT_SERVER_VERSION_BYTES;
    }
    if (hooks.onConnect !== undefined) {
      const action = await this.#callPolicy(() => hooks.onConnect!(), 0);
      if (action !== undefined) {
        metrics.connectionsRejected++;
        throw new AbortSession(this.#errAction(0, action));
      }
    }
    if (this.#closed) return;

    this.#phase = 'login';
    // TLS is for network clients: a Unix socket (also one passed by systemd) is offered none.
    const network = this.peer.address !== undefined;
    const serverTls = network ? this.#serverTls : undefined;
    const offer = greetingOffer(this.#listenerServers, this.#listenerCapabilities);
    const login = await clientLogin(
      client,
      { serverVersion: this.serverVersion, connectionId: this.id },
      {
        auth: this.#auth,
        greetingCapabilities: offer.capabilities,
        greetingExtendedCapabilities: offer.extendedCapabilities,
        characterSet: offer.characterSet,
        timeoutMs: this.#options.clientTimeoutMs,
        network,
        tls:
          serverTls === undefined ? undefined : { require: serverTls.require, start: (plain) => this.#startTls(plain) },
      },
      metrics,
      (seq) => (this.#clientSeq = seq),
    );
    const { hr, clientCapabilities, clientExtendedCapabilities, request } = login;
    client = login.channel;
    this.#auth = login.auth;
    this.#handshakeDone();

    this.#log(`login user=${quoteBytes(hr.user)} database=${quoteBytes(hr.database)}`);
    const action = await this.#callPolicy(() => hooks.onHandshakeResponse(request), this.#clientSeq + 1);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the client may have left while we awaited
    if (this.#closed) return;
    const replySeq = this.#clientSeq + 1;
    if (action.kind === 'err') {
      metrics.connectionsRejected++;
      throw new AbortSession(this.#errAction(replySeq, action));
    }
    this.#database = hr.database.length > 0 ? sharedCopy(hr.database) : undefined;
    if (action.kind === 'accept') {
      await this.#serveLocally(client, clientCapabilities, clientExtendedCapabilities, replySeq);
      return;
    }
    if (this.#auth === 'native' && action.password === undefined && action.passwordSha1 === undefined) {
      // The client's own scramble answer is never forwarded: without a credential from policy
      // (normally the one client:verify_native_password() returned) nobody vouched for the client.
      metrics.connectionsRejected++;
      this.#log('no credential for the backend under auth=native: access denied');
      throw new AbortSession(errPacket(replySeq, ClientErrors.ACCESS_DENIED, accessDeniedMessage(hr.user)));
    }
    if ((hr.capabilities & Capability.CLIENT_PROTOCOL_41) === 0) {
      throw new AbortSession(errPacket(replySeq, ClientErrors.PROTOCOL_320));
    }

    // The backend: the one address, or a selector's candidates in order.
    const candidates: readonly BackendCandidate[] =
      action.target.kind === 'selector'
        ? await action.target.select(this, action.readOnly)
        : [{ address: action.target }];
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the client may have left while we awaited
    if (this.#closed) return;
    const backendLogin: BackendLogin = {
      user: action.user,
      password: action.password,
      passwordSha1: action.passwordSha1,
      database: action.database,
      clientCapabilities,
      clientExtendedCapabilities,
      connectAttributes: hr.connectAttributes,
      maxPacketSize: hr.maxPacketSize,
      characterSet: hr.characterSet,
    };
    // The pool of the preferred candidate: a login with the same key takes a parked connection.
    const first = candidates[0];
    // Not for a backend inside TLS: its connection state lives in this process's TLS socket, not
    // in a bare fd that could be parked.
    const pool =
      first === undefined || (first.address.kind === 'tcp' && first.address.tls !== undefined)
        ? undefined
        : (first.pool ?? addressPool(first.address));
    if (pool !== undefined && first !== undefined) {
      const key = poolKey({ ...backendLogin, server: formatAddress(first.address) });
      let pooled: PooledServer | undefined;
      if (pool.options.share) {
        // Sharing: an idle connection, or one to open (within max_connections), or a wait.
        const got = await pool.acquire(key, metrics);
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the client may have left while we waited
        if (this.#closed) {
          if (got.kind === 'server') pool.putBack(key, got.server, metrics);
          else if (got.kind === 'open') pool.connectionGone();
          return;
        }
        if (got.kind === 'timeout') throw new AbortSession(errPacket(replySeq, ClientErrors.POOL_QUEUE_TIMEOUT));
        if (got.kind === 'server') {
          metrics.poolHits++;
          pooled = got.server;
        } else metrics.poolMisses++;
      } else pooled = pool.take(key, metrics);
      this.#poolSlot = {
        pool,
        key,
        serverVersion: this.serverVersion,
        capabilities: 0,
        extendedCapabilities: 0,
        ...(pool.options.share
          ? {
              shareCounted: true,
              shareLogin: { login: backendLogin, candidate: first },
              ...(pooled !== undefined ? { pooled } : {}),
            }
          : {}),
      };
      if (pooled !== undefined) {
        await this.#runPooled(client, pooled, first, action.user, action.password, action.passwordSha1, {
          clientCapabilities,
          replySeq,
        });
        return;
      }
    }
    let connected;
    try {
      connected = await connectToBackend(candidates, backendLogin, this);
    } catch (e) {
      if (e instanceof BackendConnectError) {
        throw new AbortSession(errPacket(replySeq, ClientErrors.BACKEND_FAILED, e.clientMessage));
      }
      throw e;
    }
    if (connected === undefined) return; // the client went away meanwhile
    const { socket: backendSocket, channel: backend, result, candidate } = connected;
    this.#backendSocket = backendSocket;
    if (result.kind === 'err') {
      metrics.clientAuthErr++;
      this.#log(`backend refused login: ${result.err.errno} ${quote(result.err.message)}`);
      throw new AbortSession(framePayload(result.packet.payload, replySeq));
    }
    const server = metrics.server(formatAddress(candidate.address));
    this.#backend = {
      label: server.label,
      address: candidate.address,
      threadId: result.greeting.connectionId,
      user: action.user.toString('latin1'),
      password: action.password?.toString('latin1'),
      passwordSha1: action.passwordSha1?.toString('latin1'),
      server,
      account: undefined, // set when the relay starts (declared here: fields added later cost more)
    };
    const slot = this.#poolSlot;
    if (slot !== undefined) {
      // Only the node the key names may take the connection back (failover may have picked another).
      if (candidate !== first) {
        if (slot.shareCounted === true) slot.pool.connectionGone();
        this.#poolSlot = undefined;
      } else {
        slot.serverVersion = this.serverVersion;
        slot.capabilities = result.capabilities;
        slot.extendedCapabilities = result.extendedCapabilities;
        // Copies: the action's Buffers are slices of Node's pool, which would stay alive with them.
        slot.relogin = {
          user: Buffer.from(action.user),
          credentials: {
            password: action.password && Buffer.from(action.password),
            passwordSha1: action.passwordSha1 && Buffer.from(action.passwordSha1),
          },
          database: Buffer.from(action.database ?? Buffer.alloc(0)),
          characterSet: hr.characterSet,
          scramble: Buffer.from(result.greeting.authPluginData),
          authPluginName: result.greeting.authPluginName,
          capabilities: result.capabilities,
          secureTransport: candidate.address.kind !== 'tcp',
          backendKey: formatAddress(candidate.address),
        };
      }
    }
    // A backend socket that closes before the relay takes over (during on_command_phase) ends the
    // session. (A bare fd, read by nobody until the relay starts, has no such event to tell.)
    if (!(backendSocket instanceof FdPacketChannel)) {
      backendSocket.once('close', () => {
        if (this.#relay === null) this.#finish();
      });
    }
    // The login OK goes out with the relay (first bytes to the client), so no client is told OK
    // unless its relay is running.
    const ok = framePayload(result.packet.payload, replySeq);
    await this.#enterCommandPhase(
      client,
      backendSocket,
      backend,
      ok,
      result.capabilities,
      result.extendedCapabilities,
      replySeq,
      candidate,
    );
  }

  /**
   * A login that found a parked connection in the pool: no server login; the daemon answers the
   * client with its own OK (policy ran as for any login).
   */
  async #runPooled(
    client: LoginChannel,
    pooled: PooledServer,
    candidate: BackendCandidate,
    user: Buffer,
    password: Buffer | undefined,
    passwordSha1: Buffer | undefined,
    login: { clientCapabilities: number; replySeq: number },
  ): Promise<void> {
    const metrics = this.#options.metrics;
    // A sharing pool keeps connections as sockets between statements; others as bare fds.
    const kept = pooled.socket;
    let channel: PacketChannel | FdPacketChannel;
    let backendSocket: BackendSocket;
    if (kept === undefined) backendSocket = channel = new FdPacketChannel(pooled.fd, MAX_LOGIN_PAYLOAD);
    else {
      channel = new PacketChannel(kept, MAX_LOGIN_PAYLOAD);
      backendSocket = kept;
    }
    this.#backendSocket = backendSocket;
    this.serverVersion = pooled.serverVersion;
    const server = metrics.server(formatAddress(candidate.address));
    this.#backend = {
      label: server.label,
      address: candidate.address,
      threadId: pooled.threadId,
      user: user.toString('latin1'),
      password: password?.toString('latin1'),
      passwordSha1: passwordSha1?.toString('latin1'),
      server,
      account: undefined,
    };
    const slot = this.#poolSlot!;
    slot.serverVersion = pooled.serverVersion;
    slot.capabilities = pooled.capabilities;
    slot.extendedCapabilities = pooled.extendedCapabilities;
    slot.relogin = pooled.relogin;
    this.#log(`pooled server connection ${formatAddress(candidate.address)} thread ${pooled.threadId}`);
    const ok = writeOkPacket(
      login.replySeq,
      {
        affectedRows: 0,
        insertId: 0,
        status: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
        warnings: 0,
        info: Buffer.alloc(0),
      },
      login.clientCapabilities,
    );
    await this.#enterCommandPhase(
      client,
      backendSocket,
      channel,
      ok,
      pooled.capabilities,
      pooled.extendedCapabilities,
      login.replySeq,
      candidate,
    );
  }

  /** After the backend login (or a pooled connection): on_command_phase, then the relay. */
  async #enterCommandPhase(
    client: LoginChannel,
    backendSocket: BackendSocket,
    backend: PacketChannel | FdPacketChannel,
    ok: Buffer,
    capabilities: number,
    extendedCapabilities: number,
    replySeq: number,
    candidate: BackendCandidate,
  ): Promise<void> {
    const metrics = this.#options.metrics;
    const server = this.#backend!.server;
    const slot = this.#poolSlot;
    if (slot?.shareCounted === true) {
      const share = this.#shareSession(slot, capabilities);
      const failure = await share.prepareFirst(backend, this.#backend!.threadId, slot.pooled);
      if (failure !== undefined) {
        throw new AbortSession(
          errPacket(replySeq, ClientErrors.POOL_SHARE_FAILED, `Server connection setup failed: ${failure}`),
        );
      }
      if (this.#closed) return;
    }
    const clientLeftover = client.detach();
    const serverLeftover = backend.detach();
    if (this.#hooks.onCommandPhase !== undefined) {
      try {
        await this.#hooks.onCommandPhase();
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e;
        this.#policyFailed(e);
        // The client has not had its OK: answer the login with the Lua error.
        throw new AbortSession(errPacket(replySeq, ClientErrors.LUA_ERROR));
      }
      if (this.#closed) return;
    }
    this.#endLogin();
    if (
      !this.#startRelay(backendSocket, ok, clientLeftover, serverLeftover, capabilities, extendedCapabilities, replySeq)
    )
      return;
    this.#phase = 'command';
    metrics.clientAuthOk++;
    server.sessions++;
    const account = this.#backend!.account;
    if (account !== undefined) {
      account.logins++;
      account.sessions++;
    }
    this.#detachFromNode = candidate.attach?.(() => {
      this.#log('closing: node is unavailable');
      this.close(ClientErrors.NODE_UNAVAILABLE);
    });
  }

  /**
   * Sharing: the session's ShareSession. A client that cannot read session-state information in
   * OK packets is pinned from the start (it runs as a pooled session of the sharing pool).
   */
  #shareSession(slot: PoolSlot, capabilities: number): ShareSession {
    const { login, candidate } = slot.shareLogin!;
    const open = async (): Promise<OpenedServer> => {
      const host = {
        connectTimeoutMs: this.#options.connectTimeoutMs,
        log: (line: string) => this.#log(line),
        logErr: (line: string) => this.#logErr(line),
        closed: false,
        setBackendSocket: () => undefined,
        onGreeting: () => undefined,
        serverMetrics: (label: string) => this.#options.metrics.server(label),
      };
      let connected;
      try {
        connected = await connectToBackend([candidate], login, host);
      } catch (e) {
        throw new Error(e instanceof BackendConnectError ? e.clientMessage : errorMessage(e));
      }
      if (connected === undefined) throw new Error('no server connection');
      const { socket, channel, result } = connected;
      if (result.kind === 'err') {
        socket.destroy();
        throw new Error(`server refused the login: ${result.err.errno} ${result.err.message}`);
      }
      return {
        channel,
        threadId: result.greeting.connectionId,
        toSocket: () => (socket instanceof FdPacketChannel ? socket.toSocket() : socket),
      };
    };
    const share = new ShareSession(
      {
        pool: slot.pool,
        key: slot.key,
        metrics: this.#options.metrics,
        capabilities,
        characterSet: login.characterSet,
        loginSchema:
          login.database === undefined || login.database.length === 0 ? null : login.database.toString('latin1'),
        timeoutMs: this.#options.connectTimeoutMs,
        serverInfo: {
          serverVersion: slot.serverVersion,
          capabilities: slot.capabilities,
          extendedCapabilities: slot.extendedCapabilities,
          relogin: slot.relogin,
        },
        open,
        onThread: (threadId) => {
          if (this.#backend !== undefined) this.#backend.threadId = threadId;
        },
        log: (line) => this.#log(line),
      },
      clientCanShare(capabilities) ? undefined : 'client without CLIENT_SESSION_TRACK',
    );
    slot.share = share;
    return share;
  }

  /**
   * client:accept(): the login succeeds with no server behind it, and the session's commands are
   * answered here (by on_query / on_command, or the defaults of serveLocally) until the client quits.
   */
  async #serveLocally(
    login: LoginChannel,
    capabilities: number,
    extendedCapabilities: number,
    replySeq: number,
  ): Promise<void> {
    const metrics = this.#options.metrics;
    if (this.#hooks.onCommandPhase !== undefined) {
      try {
        await this.#hooks.onCommandPhase();
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e;
        this.#policyFailed(e);
        throw new AbortSession(errPacket(replySeq, ClientErrors.LUA_ERROR));
      }
      if (this.#closed) return;
    }
    this.#endLogin();
    const leftover = login.detach();
    // Local sessions answer with whole result sets: a net.Socket queues what the client is slow to take.
    let socket = this.#client;
    if (socket instanceof FdPacketChannel) this.#socket = socket = socket.toSocket();
    const channel = new PacketChannel(socket, MAX_LOCAL_COMMAND, leftover);
    this.#phase = 'command';
    metrics.clientAuthOk++;
    metrics.localSessions++;
    this.#log('accepted without a server');
    channel.send(
      writeOkPacket(
        replySeq,
        {
          affectedRows: 0,
          insertId: 0,
          status: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
          warnings: 0,
          info: Buffer.alloc(0),
        },
        capabilities,
      ),
    );
    const filter = this.#commandFilter(capabilities, extendedCapabilities);
    // The getter below lives in an object literal, whose `this` is not the session.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const session = this;
    try {
      await serveLocally(channel, {
        filter,
        capabilities,
        setDatabase: (database) => (this.#database = database),
        get closed(): boolean {
          return session.#closed;
        },
      });
    } catch (e) {
      if (e instanceof ChannelTimeoutError) this.#log('idle timeout: closing');
      else if (isParseError(e)) {
        metrics.clientMalformedPackets++;
        this.#logLimited('malformed', `Malformed packet from client: ${e.message}`);
      } else if (!(e instanceof ChannelClosedError)) {
        this.#logErr(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }
    } finally {
      metrics.localSessions--;
      channel.detach();
      this.#finish();
    }
  }

  /** The filter for intercepted commands (made on first use: most sessions never need one). */
  #commandFilter(capabilities: number, extendedCapabilities: number): CommandFilter {
    return (this.#filter ??= new CommandFilter({
      capabilities,
      extendedCapabilities,
      // The server's latest status flags, asked of the relay's tracker only when a hook answers a
      // command itself: no response has to be reported to JavaScript for them.
      serverStatus: () => this.#relay?.state()?.serverStatus ?? ServerStatus.SERVER_STATUS_AUTOCOMMIT,
      session: this,
      hooks: this.#hooks,
      metrics: this.#options.metrics,
      registry: this.#options.registry,
      connectTimeoutMs: this.#options.connectTimeoutMs,
      log: (line) => this.#log(line),
      logLimited: (kind, line) => this.#logLimited(kind, line),
      policyFailed: (e) => this.#policyFailed(e),
    }));
  }

  /**
   * Hand both sockets to a relay; false (the client got an ERR) when it cannot start. What the
   * relay keeps of the session is a few closures over `this`: the session stays a small record.
   */
  #startRelay(
    backendSocket: BackendSocket,
    ok: Buffer,
    clientLeftover: Buffer | null,
    serverLeftover: Buffer | null,
    capabilities: number,
    extendedCapabilities: number,
    replySeq: number,
  ): boolean {
    const metrics = this.#options.metrics;
    const backend = this.#backend!;
    const account = metrics.account(this.#account);
    backend.account = account;
    const hooks = this.#hooks;
    // on_result needs the filter from the first query on (it keeps each forwarded query's SQL).
    if (hooks.onResult !== undefined) this.#commandFilter(capabilities, extendedCapabilities);
    // Chosen per session: the native pump moves plain bytes between fds, so a session with TLS on
    // either side (a client of a TLS listener, a backend with mysql_resolve's tls) is relayed by the
    // JavaScript relay whatever the process default.
    // A sharing session changes server connections under the relay: the JavaScript relay does that.
    const share = this.#poolSlot?.share;
    const RelayImpl =
      this.#options.relay === 'native' &&
      share === undefined &&
      !(this.#client instanceof TLSSocket) &&
      !(backendSocket instanceof TLSSocket)
        ? NativeRelay
        : Relay;
    // Responses are reported only where something uses them: each report is a call into JavaScript.
    const wantResponses =
      hooks.onResponse !== undefined || hooks.onResult !== undefined || this.#options.logResponses === true;
    const maxPacket = interceptLimit(hooks);
    const pooled = this.#poolSlot !== undefined;
    const filtered = relayedCommandFilter(hooks, pooled);
    const filter = (p: Buffer, t: boolean): InterceptReply | Promise<InterceptReply> =>
      pooled && p[4] === Command.COM_QUIT
        ? this.#quit(p, t, capabilities, extendedCapabilities)
        : this.#commandFilter(capabilities, extendedCapabilities).onCommand(p, t);
    try {
      this.#relay = new RelayImpl(this.#client, backendSocket, {
        clientLeftover,
        serverLeftover: serverLeftover === null ? ok : Buffer.concat([ok, serverLeftover]),
        onClose: (reason, keptFd) => this.#relayEnded(reason, keptFd),
        keepServer: pooled,
        intercept:
          share === undefined
            ? { commands: filtered, onCommand: filter, ...(maxPacket !== undefined ? { maxPacket } : {}) }
            : {
                // Sharing: every command comes here first, to attach a connection before it goes.
                commands: ALL_COMMANDS,
                maxPacket: SHARED_MAX_PACKET,
                onCommand: (p, t) =>
                  p[4] === Command.COM_QUIT
                    ? filter(p, t)
                    : share.onCommand(
                        p,
                        t,
                        filtered.includes(p[4]!) || (p[4] === Command.COM_QUERY && mayBeKill(p.subarray(5), !t))
                          ? () => filter(p, t)
                          : undefined,
                      ),
              },
        tracking: {
          capabilities,
          extendedCapabilities,
          track: this.#options.responseTracking !== false || share !== undefined,
          killFilter: share === undefined,
          stats: backend.server.stats,
          accountStats: account?.stats ?? null,
          onUntracked: (reason) => this.#relayUntracked(reason),
          ...(share !== undefined
            ? {
                onResponse: (r: ResponseRecord) => {
                  share.noteResponse(r);
                  if (wantResponses) this.#relayResponse(r);
                },
              }
            : wantResponses
              ? { onResponse: (r: ResponseRecord) => this.#relayResponse(r) }
              : {}),
        },
        failurePacket: tooManyConnections(replySeq),
        ...(share !== undefined ? { share } : {}),
      });
      if (share !== undefined && this.#relay instanceof Relay) share.startRelay(this.#relay);
    } catch (e) {
      if (!(e instanceof RelayStartError)) throw e;
      metrics.refuse('fd_limit');
      this.#logLimited('relay_start', `${e.message}: refused with 1040`);
      backendSocket.destroy();
      this.#client.end(tooManyConnections(replySeq));
      this.#finish();
      return false;
    }
    // The relay owns both sockets now; dropping ours lets the native relay's released sockets go.
    this.#socket = null;
    this.#backendSocket = null;
    return true;
  }

  /**
   * COM_QUIT in a pooled session: on_command still sees it (whatever it answers, the client is
   * leaving), then the relay ends, keeping the server connection if it can be reused.
   */
  async #quit(
    packet: Buffer,
    truncated: boolean,
    capabilities: number,
    extendedCapabilities: number,
  ): Promise<InterceptReply> {
    if (this.#hooks.onCommand !== undefined) {
      await this.#commandFilter(capabilities, extendedCapabilities).onCommand(packet, truncated);
    }
    this.#relay?.release();
    // The relay is ending: its answer to this command is never used.
    return new Promise<InterceptReply>(() => undefined);
  }

  #relayEnded(reason: RelayEnd, keptFd?: number): void {
    if (reason === 'out-of-memory' || reason === 'poll-error' || reason === 'internal-error') {
      this.#logLimited('relay_failure', `relay ended: ${reason}`);
    }
    const share = this.#poolSlot?.share;
    if (share !== undefined) {
      if (keptFd === undefined) share.ended();
      else
        share.end(
          keptFd,
          (server) => this.#park(server),
          () => closeFd(keptFd),
        );
    } else if (keptFd !== undefined) this.#returnToPool(keptFd);
    this.#finish();
  }

  /** The session ended cleanly: its server connection is reset and parked (or closed). */
  #returnToPool(fd: number): void {
    const slot = this.#poolSlot;
    const backend = this.#backend;
    if (slot === undefined || backend === undefined) {
      closeFd(fd);
      return;
    }
    this.#park({
      fd,
      threadId: backend.threadId,
      serverVersion: slot.serverVersion,
      capabilities: slot.capabilities,
      extendedCapabilities: slot.extendedCapabilities,
      relogin: slot.relogin,
    });
  }

  /** Reset a server connection and park it in the session's pool. */
  #park(server: PooledServer): void {
    const slot = this.#poolSlot!;
    slot.pool.park(slot.key, server, this.#options.connectTimeoutMs, this.#options.metrics).catch((e: unknown) => {
      this.#logErr(`pool: ${errorMessage(e)}`);
    });
  }

  #relayUntracked(reason: string): void {
    this.#options.metrics.untrackedSessions++;
    this.#filter?.forgetSql();
    this.#log(`response tracking stopped: ${reason} (relaying goes on unchanged)`);
  }

  /** A finished response, reported only when a hook or --log-responses wants it. */
  #relayResponse(r: ResponseRecord): void {
    if (this.#options.logResponses === true) this.#log(responseLogLine(r));
    const hooks = this.#hooks;
    hooks.onResponse?.(r);
    if (hooks.onResult !== undefined) {
      const sql = r.command === Command.COM_QUERY ? this.#filter?.takeSql() : undefined;
      hooks.onResult({ record: r, sql }).catch((e: unknown) => {
        if (e instanceof PolicyError) this.#policyFailed(e);
        // A callback cancelled because the session went away needs no line.
        else if (!this.#closed) this.#logErr(`on_result: ${errorMessage(e)}`);
      });
    }
  }

  /** Run a policy hook; map policy failures to "Lua error" for the client. */
  async #callPolicy<T>(fn: () => Promise<T>, errSeq: number): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof PolicyError) {
        this.#policyFailed(e);
        throw new AbortSession(errPacket(errSeq, ClientErrors.LUA_ERROR));
      }
      throw e;
    }
  }

  /** The ERR for a policy's err action (1043 / 08S01 unless it names its own, as client:deny() does). */
  #errAction(seq: number, action: ErrAction): Buffer {
    return errPacket(seq, action.error ?? ClientErrors.LUA_REFUSED, action.message);
  }

  #handleLoginFailure(e: unknown): void {
    if (this.#closed) return;
    const client = this.#client;
    if (e instanceof AbortSession) {
      if (e.packet !== undefined) client.end(e.packet);
      else client.end();
      return;
    }
    if (e instanceof ChannelClosedError) {
      client.destroy();
      return;
    }
    if (e instanceof TlsHandshakeError) {
      this.#handshakeFailed('tls');
      this.#logLimited('tls', e.message);
      client.destroy();
      return;
    }
    if (e instanceof ChannelTimeoutError) {
      if (this.#handshakeTimer !== undefined) this.#handshakeFailed('timeout');
      this.#log('client login timed out');
      client.end(errPacket(this.#clientSeq + 1, ClientErrors.BAD_HANDSHAKE));
      return;
    }
    if (isParseError(e)) {
      if (this.#handshakeTimer !== undefined) this.#handshakeFailed('malformed');
      this.#options.metrics.clientMalformedPackets++;
      this.#logLimited('malformed', `Malformed packet from client: ${e.message}`);
      client.end(errPacket(this.#clientSeq + 1, ClientErrors.BAD_HANDSHAKE));
      return;
    }
    this.#logErr(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    client.destroy();
  }

  #handshakeFailed(reason: HandshakeFailure): void {
    this.#options.metrics.handshakeFailed(reason);
    this.#options.onHandshakeFailed?.(this.peer, reason);
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
    if (stalled < 0) {
      // The relay is gone without having said so (its end could not be reported): finish here.
      this.#finish();
      return true;
    }
    if (stalled < limitMs) return false;
    this.#log(`write timeout: a peer took no data for ${Math.round(stalled / 1000)} s, closing`);
    this.#options.metrics.writeTimeouts++;
    relay.abort();
    return true;
  }

  /** End the session now, with an ERR to the client (shutdown, an unavailable node, a KILL). */
  close(error: ClientErrorSpec, message = error.message): void {
    if (this.#closed) return;
    const seq = this.#phase === 'command' ? 1 : this.#phase === 'connect' ? 0 : this.#clientSeq + 1;
    const err = errPacket(seq, error, message);
    if (this.#relay !== null) this.#relay.close(err);
    else this.#client.end(err);
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#endLogin();
    const slot = this.#poolSlot;
    if (slot?.shareCounted === true && this.#relay === null) {
      // A sharing login that never reached its relay: its server connection is closed below.
      slot.shareCounted = false;
      if (slot.share !== undefined) slot.share.ended();
      else slot.pool.connectionGone();
    }
    if (this.#handshakeTimer !== undefined) clearTimeout(this.#handshakeTimer);
    if (this.#relay === null) {
      this.#backendSocket?.destroy();
      const client = this.#socket;
      if (client instanceof FdPacketChannel) client.destroy();
      else if (client !== null) {
        if (!client.destroyed && !client.writableEnded) client.end();
        client.destroySoon();
      }
    } else if (this.#backend !== undefined) {
      this.#backend.server.sessions--;
      if (this.#backend.account !== undefined) this.#backend.account.sessions--;
    }
    this.#detachFromNode?.();
    this.#options.registry.delete(this);
    try {
      this.#hooks.onClose();
    } finally {
      if (this.peer.pidfd !== undefined) closePidfd(this.peer.pidfd);
      this.#onFinished(this);
    }
  }
}

/** The --log-responses line of a finished response. */
export function responseLogLine(r: ResponseRecord): string {
  return (
    `response command=${commandName(r.command)} outcome=${r.outcome} error=${r.errorCode} rows=${r.rows} ` +
    `affected_rows=${r.affectedRows} warnings=${r.warnings} results=${r.results} ` +
    `status=0x${r.status.toString(16).padStart(4, '0')} duration_us=${Math.round(r.durationUs)} ` +
    `bytes_in=${r.bytesIn} bytes_out=${r.bytesOut}`
  );
}
