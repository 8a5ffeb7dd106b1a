// The session engine: one accepted client from greeting to relay. Policy (Lua) is reached only
// through SessionHooks; everything it decides comes back as an action that this file carries out.
// The steps live beside it: client-login.ts (greeting, password), backend/connector.ts (failover
// and backend login), command-filter.ts (the commands the relay takes out of the stream).

import type { Socket } from 'node:net';
import { Capability, Command, ServerStatus } from '../protocol/constants.js';
import { framePayload } from '../protocol/writer.js';
import type { HandshakeV10 } from '../protocol/packets/handshake.js';
import { formatAddress, type SocketAddress } from '../net/address.js';
import { PacketChannel, ChannelClosedError, ChannelTimeoutError } from '../net/packet-channel.js';
import { NativeRelay, RelayStartError } from '../net/native-relay.js';
import { closePidfd } from '../net/peer-identity.js';
import { Relay, type ByteRelay, type RelayKind } from '../net/relay.js';
import { commandName, type ResponseRecord } from '../net/tracking.js';
import { BackendConnectError, connectToBackend, MAX_LOGIN_PAYLOAD } from '../backend/connector.js';
import type { BackendCandidate } from '../backend/selector.js';
import { ClientErrors, type ClientErrorSpec, errorMessage, isParseError } from '../util/errors.js';
import { LogRateLimit, logError, logErrorBlock, logInfo, logLimited, quote, quoteBytes } from '../util/log.js';
import type { AccountMetrics, ProxyMetrics, ServerMetrics } from '../util/metrics.js';
import { AbortSession, GREETING_CAPABILITIES, clientLogin, errPacket } from './client-login.js';
import { CommandFilter, filteredCommands, interceptLimit, type KillableSession } from './command-filter.js';
import { MAX_LOCAL_COMMAND, serveLocally } from './local-session.js';
import { writeOkPacket } from '../protocol/packets/local-reply.js';
import type { KillTarget } from './kill.js';
import {
  PolicyError,
  accessDeniedMessage,
  type ClientAuthMode,
  type ConnectAction,
  type ErrAction,
  type PeerIdentity,
  type SessionHandler,
  type SessionHooks,
} from './handler.js';
import type { SessionRegistry } from './registry.js';

export { GREETING_CAPABILITIES } from './client-login.js';

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
}

/** Where the session is, for an ERR sent from outside the normal flow (shutdown). */
type Phase = 'connect' | 'login' | 'command';

/** A session that runs on a backend: where, as whom, and its thread id there. */
interface Backend {
  readonly label: string;
  readonly address: SocketAddress;
  readonly threadId: number;
  readonly login: ConnectAction;
  readonly server: ServerMetrics;
  /** Per-account counters, when they are on and the account is within the limit. */
  account?: AccountMetrics | undefined;
}

export class Connection implements KillableSession {
  readonly id: number;
  readonly peer: PeerIdentity;
  serverVersion: Buffer = DEFAULT_SERVER_VERSION_BYTES;
  #account: string | undefined;
  #logName: string;
  #closed = false;
  /** The client socket until the relay takes it over (then null, so it can be collected). */
  #socket: Socket | null;
  #database: Buffer | undefined;
  readonly #options: ConnectionOptions;
  readonly #hooks: SessionHooks;
  readonly #auth: ClientAuthMode;
  readonly #greetingCapabilities: number;
  /** The backend socket during its login (reachable from #finish), until the relay owns it. */
  #backendSocket: Socket | null = null;
  #backend: Backend | undefined;
  #relay: ByteRelay | null = null;
  /** Sequence id of the client's last login packet; our reply uses the next one. */
  #clientSeq = 0;
  #phase: Phase = 'connect';
  #inLogin = false;
  readonly #onFinished: (c: Connection) => void;
  /** Unsubscribes from the cluster node this session runs on (disconnect_unavailable). */
  #detachFromNode: (() => void) | undefined;
  /** Per-kind limits for lines that can repeat (created on first use). */
  #logLimits: Map<string, LogRateLimit> | undefined;

  constructor(
    socket: Socket,
    peer: PeerIdentity,
    handler: SessionHandler,
    options: ConnectionOptions,
    onFinished: (c: Connection) => void,
  ) {
    this.id = options.registry.allocateId();
    this.peer = peer;
    this.#socket = socket;
    this.#options = options;
    this.#onFinished = onFinished;
    this.#logName = this.#makeLogName();
    this.#auth = handler.clientAuth ?? 'clear';
    this.#greetingCapabilities =
      handler.localInfile === true ? GREETING_CAPABILITIES | Capability.CLIENT_LOCAL_FILES : GREETING_CAPABILITIES;
    options.registry.add(this);
    this.#hooks = handler.open(this);
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
    return this.#backend?.threadId;
  }

  get killTarget(): KillTarget | undefined {
    const b = this.#backend;
    if (b === undefined || this.#relay === null) return undefined;
    return {
      address: b.address,
      user: b.login.user,
      password: b.login.password,
      passwordSha1: b.login.passwordSha1,
      threadId: b.threadId,
    };
  }

  /** Where the relay is in the protocol (tests, the control protocol), or null. */
  relayState(): ReturnType<ByteRelay['state']> {
    return this.#relay?.state() ?? null;
  }

  #makeLogName(): string {
    const p = this.peer;
    let name = p.pid !== undefined ? `pid=${p.pid} uid=${p.uid ?? '?'}` : (p.address ?? '?');
    if (this.#account !== undefined) name += ` ${quote(this.#account)}`;
    return name;
  }

  #log(line: string): void {
    logInfo(`[${this.#logName}] ${line}`);
  }

  #logErr(line: string): void {
    logError(`[${this.#logName}] ${line}`);
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
    if (suffix !== undefined) logLimited(kind, `[${this.#logName}] ${line}${suffix}`);
  }

  #policyFailed(e: PolicyError): void {
    this.#options.metrics.luaErrors++;
    logErrorBlock(`[${this.#logName}] `, e.message, e.detail);
  }

  /** Run the session; never rejects (every failure is handled and logged here). */
  async run(): Promise<void> {
    const client = new PacketChannel(this.#client, MAX_LOGIN_PAYLOAD);
    // A client that goes away while a callback or the backend login is pending ends the session
    // at once; the steps in flight notice `closed` and stop.
    this.#client.once('close', () => {
      if (this.#relay === null) this.#finish();
    });
    this.#inLogin = true;
    this.#options.metrics.loginsInProgress++;
    try {
      await this.#login(client);
    } catch (e) {
      this.#handleLoginFailure(e);
      this.#finish();
    } finally {
      this.#endLogin();
    }
  }

  #endLogin(): void {
    if (!this.#inLogin) return;
    this.#inLogin = false;
    this.#options.metrics.loginsInProgress--;
  }

  async #login(client: PacketChannel): Promise<void> {
    const metrics = this.#options.metrics;
    const hooks = this.#hooks;
    if (hooks.onConnect !== undefined) {
      const action = await this.#callPolicy(() => hooks.onConnect!(), 0);
      if (action !== undefined) {
        metrics.connectionsRejected++;
        throw new AbortSession(this.#errAction(0, action));
      }
    }
    if (this.#closed) return;

    this.#phase = 'login';
    const { hr, clientCapabilities, request } = await clientLogin(
      client,
      { serverVersion: this.serverVersion, connectionId: this.id },
      { auth: this.#auth, greetingCapabilities: this.#greetingCapabilities, timeoutMs: this.#options.clientTimeoutMs },
      metrics,
      (seq) => (this.#clientSeq = seq),
    );

    this.#log(`login user=${quoteBytes(hr.user)} database=${quoteBytes(hr.database)}`);
    const action = await this.#callPolicy(() => hooks.onHandshakeResponse(request), this.#clientSeq + 1);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the client may have left while we awaited
    if (this.#closed) return;
    const replySeq = this.#clientSeq + 1;
    if (action.kind === 'err') {
      metrics.connectionsRejected++;
      throw new AbortSession(this.#errAction(replySeq, action));
    }
    this.#database = hr.database.length > 0 ? unpooledCopy(hr.database) : undefined;
    if (action.kind === 'accept') {
      await this.#serveLocally(client, clientCapabilities, replySeq);
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
    // The getter below lives in an object literal, whose `this` is not the session.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const session = this;
    let connected;
    try {
      connected = await connectToBackend(
        candidates,
        {
          user: action.user,
          password: action.password,
          passwordSha1: action.passwordSha1,
          database: action.database,
          clientCapabilities,
          maxPacketSize: hr.maxPacketSize,
          characterSet: hr.characterSet,
        },
        {
          connectTimeoutMs: this.#options.connectTimeoutMs,
          log: (line) => this.#log(line),
          logErr: (line) => this.#logErr(line),
          get closed(): boolean {
            return session.#closed;
          },
          setBackendSocket: (s) => (this.#backendSocket = s),
          onGreeting: (greeting: HandshakeV10) => {
            this.serverVersion = unpooledCopy(greeting.serverVersion);
            this.#log(`handshake server_version=${quoteBytes(greeting.serverVersion)}`);
          },
          serverMetrics: (label) => metrics.server(label),
        },
      );
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
    const label = formatAddress(candidate.address);
    const server = metrics.server(label);
    this.#backend = {
      label,
      address: candidate.address,
      threadId: result.greeting.connectionId,
      login: action,
      server,
    };
    // A backend that goes away before the relay takes over (during on_command_phase) ends the session.
    backendSocket.once('close', () => {
      if (this.#relay === null) this.#finish();
    });
    // The login OK goes out with the relay (first bytes to the client), so no client is told OK
    // unless its relay is running.
    const ok = framePayload(result.packet.payload, replySeq);
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
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the client may have left while we awaited
      if (this.#closed) return;
    }
    this.#endLogin();
    if (!this.#startRelay(backendSocket, ok, clientLeftover, serverLeftover, result.capabilities, replySeq)) return;
    this.#phase = 'command';
    metrics.clientAuthOk++;
    server.sessions++;
    const account = this.#backend.account;
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
   * client:accept(): the login succeeds with no server behind it, and the session's commands are
   * answered here (by on_query / on_command, or the defaults of serveLocally) until the client quits.
   */
  async #serveLocally(login: PacketChannel, capabilities: number, replySeq: number): Promise<void> {
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
    const channel = new PacketChannel(this.#client, MAX_LOCAL_COMMAND, login.detach());
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
    const filter = new CommandFilter({
      capabilities,
      serverStatus: () => ServerStatus.SERVER_STATUS_AUTOCOMMIT,
      session: this,
      hooks: this.#hooks,
      metrics,
      registry: this.#options.registry,
      connectTimeoutMs: this.#options.connectTimeoutMs,
      log: (line) => this.#log(line),
      logLimited: (kind, line) => this.#logLimited(kind, line),
      policyFailed: (e) => this.#policyFailed(e),
    });
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

  /** Hand both sockets to a relay; false (the client got an ERR) when it cannot start. */
  #startRelay(
    backendSocket: Socket,
    ok: Buffer,
    clientLeftover: Buffer | null,
    serverLeftover: Buffer | null,
    capabilities: number,
    replySeq: number,
  ): boolean {
    const metrics = this.#options.metrics;
    const server = this.#backend!.server;
    const account = metrics.account(this.#account);
    this.#backend!.account = account;
    // Status flags for replies the daemon makes itself: the server's latest, once responses tell.
    let serverStatus: number = ServerStatus.SERVER_STATUS_AUTOCOMMIT;
    const filter = new CommandFilter({
      capabilities,
      serverStatus: () => serverStatus,
      session: this,
      hooks: this.#hooks,
      metrics,
      registry: this.#options.registry,
      connectTimeoutMs: this.#options.connectTimeoutMs,
      log: (line) => this.#log(line),
      logLimited: (kind, line) => this.#logLimited(kind, line),
      policyFailed: (e) => this.#policyFailed(e),
    });
    const tooMany = errPacket(replySeq, ClientErrors.TOO_MANY_CONNECTIONS);
    const RelayImpl = this.#options.relay === 'native' ? NativeRelay : Relay;
    const hooks = this.#hooks;
    const logResponses = this.#options.logResponses === true;
    // Responses are reported only where something uses them: each report is a call into JavaScript.
    const commandHooks = hooks.onQuery !== undefined || hooks.onCommand !== undefined;
    const onResponse =
      hooks.onResponse === undefined && hooks.onResult === undefined && !logResponses && !commandHooks
        ? undefined
        : (r: ResponseRecord): void => {
            if (r.outcome !== 'none') serverStatus = r.status;
            if (logResponses) this.#log(responseLogLine(r));
            hooks.onResponse?.(r);
            if (hooks.onResult !== undefined) {
              const sql = r.command === Command.COM_QUERY ? filter.takeSql() : undefined;
              hooks.onResult({ record: r, sql }).catch((e: unknown) => {
                if (e instanceof PolicyError) this.#policyFailed(e);
                // A callback cancelled because the session went away needs no line.
                else if (!this.#closed) this.#logErr(`on_result: ${errorMessage(e)}`);
              });
            }
          };
    const maxPacket = interceptLimit(hooks);
    try {
      this.#relay = new RelayImpl(this.#client, backendSocket, {
        clientLeftover,
        serverLeftover: serverLeftover === null ? ok : Buffer.concat([ok, serverLeftover]),
        onClose: (reason) => {
          if (reason === 'out-of-memory' || reason === 'poll-error' || reason === 'internal-error') {
            this.#logLimited('relay_failure', `relay ended: ${reason}`);
          }
          this.#finish();
        },
        intercept: {
          commands: filteredCommands(hooks),
          onCommand: (p, t) => filter.onCommand(p, t),
          ...(maxPacket !== undefined ? { maxPacket } : {}),
        },
        tracking: {
          capabilities,
          track: this.#options.responseTracking !== false,
          killFilter: true,
          stats: server.stats,
          accountStats: this.#backend!.account?.stats ?? null,
          onUntracked: (reason) => {
            metrics.untrackedSessions++;
            filter.forgetSql();
            this.#log(`response tracking stopped: ${reason} (relaying goes on unchanged)`);
          },
          ...(onResponse !== undefined ? { onResponse } : {}),
        },
        failurePacket: tooMany,
      });
    } catch (e) {
      if (!(e instanceof RelayStartError)) throw e;
      metrics.refuse('fd_limit');
      this.#logLimited('relay_start', `${e.message}: refused with 1040`);
      backendSocket.destroy();
      this.#client.end(tooMany);
      this.#finish();
      return false;
    }
    // The relay owns both sockets now; dropping ours lets the native relay's released sockets go.
    this.#socket = null;
    this.#backendSocket = null;
    return true;
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
    if (e instanceof ChannelTimeoutError) {
      this.#log('client login timed out');
      client.end(errPacket(this.#clientSeq + 1, ClientErrors.BAD_HANDSHAKE));
      return;
    }
    if (isParseError(e)) {
      this.#options.metrics.clientMalformedPackets++;
      this.#logLimited('malformed', `Malformed packet from client: ${e.message}`);
      client.end(errPacket(this.#clientSeq + 1, ClientErrors.BAD_HANDSHAKE));
      return;
    }
    this.#logErr(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    client.destroy();
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
    if (this.#relay === null) {
      this.#backendSocket?.destroy();
      const client = this.#socket;
      if (client !== null) {
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

/**
 * A copy for something that lives as long as the session: Buffer.from() would take a slice of a
 * shared 8 KiB pool block and keep the whole block alive for the lifetime of the connection.
 */
function unpooledCopy(b: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(b.length);
  copy.set(b);
  return copy;
}
