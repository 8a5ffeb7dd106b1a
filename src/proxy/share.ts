// Connection sharing for one session (`pool = { share = true }`, see docs/pooling.md): between
// statements the session's server connection goes back to the pool when its state allows, and the
// next statement takes any idle connection of the same key (the same proven credential), on which
// the session's schema and tracked variables are restored first. What cannot be restored pins the
// session to its connection for good. The session runs on the JavaScript relay, which asks this
// object after each response whether the connection may go (ShareHooks), and hands every command
// here first (all commands are intercepted), so a connection is attached before any byte goes.

import type { Socket } from 'node:net';
import { Capability, PacketHeader } from '../protocol/constants.js';
import { parseOkSessionInfo, type OkSessionInfo } from '../protocol/packets/session-track.js';
import type { BackendPool, PooledServer } from '../backend/pool.js';
import { resetConnectionState, restoreCommands, runCommands, setUpTracking } from '../backend/sharing.js';
import {
  commandPinReason,
  copySessionVariables,
  judgeResponse,
  newSessionVariables,
  type SessionVariables,
} from '../backend/session-state.js';
import { MAX_LOGIN_PAYLOAD } from '../backend/connector.js';
import { FdPacketChannel, PacketChannel } from '../net/packet-channel.js';
import { fdOf } from '../net/native.js';
import type { InterceptReply, Relay, ShareHooks } from '../net/relay.js';
import type { ResponseRecord } from '../net/tracking.js';
import { ClientErrors, errorMessage } from '../util/errors.js';
import type { ProxyMetrics } from '../util/metrics.js';
import { errPacket } from './client-login.js';

/** A server connection opened for the session (a server login with its credentials). */
export interface OpenedServer {
  readonly channel: PacketChannel | FdPacketChannel;
  /** The socket for the relay, after the channel is done (detached). */
  toSocket(): Socket;
  readonly threadId: number;
}

export interface ShareSessionOptions {
  readonly pool: BackendPool;
  readonly key: string;
  readonly metrics: ProxyMetrics;
  /** Capabilities in effect between the proxy and the server (and the client). */
  readonly capabilities: number;
  /** The handshake's character set (the login value of the charset variables). */
  readonly characterSet: number;
  /** The database of the login (latin1), or null. */
  readonly loginSchema: string | null;
  readonly timeoutMs: number;
  /** What every connection of the key shares (version, capabilities, how to re-login). */
  readonly serverInfo: Omit<PooledServer, 'fd' | 'threadId' | 'shared'>;
  /** A server login with the session's credentials (at most max_connections of the key). */
  open(): Promise<OpenedServer>;
  /** The thread id of the connection the session runs on now (-1: none between statements). */
  onThread(threadId: number): void;
  log(line: string): void;
}

/** What a session on a sharing pool knows and decides. */
export class ShareSession implements ShareHooks {
  readonly #o: ShareSessionOptions;
  /** The session's state, which the attached connection has too. */
  readonly #state: SessionVariables;
  readonly #trx = { characteristics: false, active: false };
  #relay: Relay | null = null;
  #record: ResponseRecord | null = null;
  /** Pinned (the reason): the connection stays the session's until it ends. */
  #pinned: string | undefined;
  #threadId = -1;
  /** Holding a connection now (attached), as opposed to between statements. */
  #attached = false;
  /** The session ended (a statement waiting for a connection gives it back). */
  #over = false;
  /** Kept when the last response said so (a transaction, warnings): not released at the session's end either. */
  #holding = false;

  constructor(options: ShareSessionOptions, pinned?: string) {
    this.#o = options;
    this.#state = newSessionVariables(options.loginSchema);
    if (pinned !== undefined) this.#pin(pinned);
  }

  get pinned(): boolean {
    return this.#pinned !== undefined;
  }

  get attached(): boolean {
    return this.#attached;
  }

  /**
   * Before the relay starts: give the login's connection the session's state. `pooled`: it came
   * from the pool (its `shared` state, or none after a reset); undefined: a fresh login. The error
   * text when it cannot be used.
   */
  async prepareFirst(
    channel: PacketChannel | FdPacketChannel,
    threadId: number,
    pooled: PooledServer | undefined,
  ): Promise<string | undefined> {
    this.#attached = true;
    this.#threadId = threadId;
    // A session pinned from the start (a client without session tracking) is never shared.
    if (this.#pinned !== undefined && pooled?.shared === undefined) return undefined;
    return this.#prepare(channel, pooled);
  }

  startRelay(relay: Relay): void {
    this.#relay = relay;
  }

  // ShareHooks

  /** Every finished response (the tracker's record), before idle(). */
  noteResponse(record: ResponseRecord): void {
    this.#record = record;
  }

  response(lastPacket: Buffer | null, alone: boolean): void {
    const record = this.#record;
    this.#record = null;
    if (this.#pinned !== undefined) return;
    if (!alone) {
      // The state changes of all but the last response would go unseen.
      this.#pin('pipelined commands');
      return;
    }
    if (record !== null) {
      let ok: OkSessionInfo | null = null;
      if (lastPacket !== null && record.outcome === 'ok' && isOkPacket(lastPacket)) {
        try {
          ok = parseOkSessionInfo(lastPacket, this.#o.capabilities);
        } catch {
          ok = null;
        }
      }
      const verdict = judgeResponse(record, ok, this.#state, this.#trx);
      if (verdict.pin !== undefined) {
        this.#pin(verdict.pin);
        return;
      }
      if (this.#state.schema !== this.#o.loginSchema && this.#o.loginSchema === null) {
        // No statement can take a connection back to "no default database".
        this.#pin('USE without a database at login');
        return;
      }
      this.#holding = verdict.hold;
    }
  }

  idle(): boolean {
    // During a drain connections are not parked: the session keeps its own until it ends.
    return this.#pinned === undefined && !this.#holding && !this.#o.pool.closed;
  }

  released(socket: Socket): void {
    this.#attached = false;
    // A socket kept between statements has nobody listening: an error there is found when it is taken.
    socket.on('error', ignoreError);
    const server: PooledServer = { ...this.#server(fdOf(socket)), socket };
    this.#threadId = -1;
    this.#o.onThread(-1);
    this.#o.metrics.poolShareReleases++;
    this.#o.pool.putBack(this.#o.key, server, this.#o.metrics);
  }

  /**
   * A command of the session (every command is intercepted). `filter` is the command filter's
   * part (KILL, hooks), or undefined when it does not take this command. Resolves with the bytes
   * for the server once a connection is attached, or with an ERR that ends the session.
   */
  async onCommand(
    packet: Buffer,
    truncated: boolean,
    filter: (() => InterceptReply | Promise<InterceptReply>) | undefined,
  ): Promise<InterceptReply> {
    let reply: InterceptReply = { toServer: packet };
    if (filter !== undefined) {
      reply = await filter();
      if (reply.toServer === undefined || reply.toServer.length === 0) return reply;
    }
    const toServer = reply.toServer!;
    if (truncated) {
      return { close: errPacket(packet[3]! + 1, ClientErrors.COMMAND_TOO_LARGE) };
    }
    const reason = this.#pinned === undefined ? commandPinReason(toServer.subarray(4)) : undefined;
    const relay = this.#relay!;
    if (!relay.hasServer) {
      const failure = await this.#attach(relay, packet[3]!);
      // The statement fails; the session, whose state lives here, goes on without a connection.
      if (failure !== undefined) return { toClient: failure };
    }
    if (reason !== undefined) this.#pin(reason);
    return reply;
  }

  /** The session ended with its connection (`fd`) reusable: shared on, reset, or closed. */
  end(fd: number, park: (server: PooledServer) => void, close: () => void): void {
    const server = this.#server(fd);
    this.#attached = false;
    const pinned = this.#pinned !== undefined;
    this.#done();
    if (!pinned && !this.#holding && !this.#o.pool.closed) {
      this.#o.pool.putBack(this.#o.key, server, this.#o.metrics);
      return;
    }
    // A reset keeps the default database: one the key's sessions could not get rid of is closed.
    if (this.#o.loginSchema === null && this.#state.schema !== null) {
      close();
      this.#o.pool.connectionGone();
      return;
    }
    park(server);
  }

  /** The session ended without handing its connection back (it was closed, or it had none). */
  ended(): void {
    if (this.#attached) this.#o.pool.connectionGone();
    this.#attached = false;
    this.#done();
  }

  #done(): void {
    this.#over = true;
    if (this.#pinned !== undefined) this.#o.metrics.poolPinnedSessions--;
    this.#pinned = undefined;
  }

  #server(fd: number): PooledServer {
    return { ...this.#o.serverInfo, fd, threadId: this.#threadId, shared: copySessionVariables(this.#state) };
  }

  #pin(reason: string): void {
    if (this.#pinned !== undefined) return;
    this.#pinned = reason;
    this.#o.metrics.poolPins++;
    this.#o.metrics.poolPinnedSessions++;
    this.#o.log(`pinned to its server connection: ${reason}`);
  }

  /** `pooled` as for prepareFirst(). */
  async #prepare(
    channel: PacketChannel | FdPacketChannel,
    pooled: PooledServer | undefined,
  ): Promise<string | undefined> {
    const o = this.#o;
    try {
      let have = pooled?.shared;
      if (have === undefined) {
        have = pooled === undefined ? newSessionVariables(o.loginSchema) : resetConnectionState();
        const failure = await setUpTracking(channel, have, o.capabilities, o.timeoutMs);
        if (failure !== undefined) return failure;
        // What a connection of this key has after its login, for variables a session never set.
        if (pooled === undefined && o.pool.baseline(o.key) === undefined) o.pool.setBaseline(o.key, new Map(have.vars));
        // The charset variables are the login's as reported: the session's too, unless it set them.
        if (pooled === undefined) {
          for (const [name, value] of have.vars) if (!this.#state.vars.has(name)) this.#state.vars.set(name, value);
        }
      }
      const commands = restoreCommands(this.#state, have, o.pool.baseline(o.key) ?? NO_BASELINE);
      return commands.length === 0 ? undefined : await runCommands(channel, commands, o.timeoutMs);
    } catch (e) {
      return errorMessage(e);
    }
  }

  /**
   * Take a connection for the next statement and give it the session's state; on failure an ERR
   * for the statement (`seq`: the command's), after which the session goes on without a connection.
   */
  async #attach(relay: Relay, seq: number): Promise<Buffer | undefined> {
    const o = this.#o;
    o.metrics.poolShareTakes++;
    for (;;) {
      const got = await o.pool.acquire(o.key, o.metrics);
      if (got.kind === 'timeout') return errPacket(seq + 1, ClientErrors.POOL_QUEUE_TIMEOUT);
      if (this.#isOver()) {
        // The client left while it waited: the connection goes to the next one.
        if (got.kind === 'server') o.pool.putBack(o.key, got.server, o.metrics);
        else o.pool.connectionGone();
        return undefined;
      }
      let channel: PacketChannel | FdPacketChannel;
      let toSocket: () => Socket;
      let threadId: number;
      let pooled: PooledServer | undefined;
      if (got.kind === 'server') {
        const kept = got.server.socket;
        const shared = got.server.shared;
        if (
          kept !== undefined &&
          shared !== undefined &&
          restoreCommands(this.#state, shared, o.pool.baseline(o.key) ?? NO_BASELINE).length === 0
        ) {
          // The common case: a connection in the session's state already (most sessions never
          // change it): nothing to send first.
          kept.off('error', ignoreError);
          this.#use(relay, kept, got.server.threadId);
          return undefined;
        }
        if (kept !== undefined) {
          kept.off('error', ignoreError);
          channel = new PacketChannel(kept, MAX_LOGIN_PAYLOAD);
          toSocket = () => kept;
        } else {
          const fd = new FdPacketChannel(got.server.fd, MAX_LOGIN_PAYLOAD);
          channel = fd;
          toSocket = () => fd.toSocket();
        }
        threadId = got.server.threadId;
        pooled = got.server;
      } else {
        let opened: OpenedServer;
        try {
          opened = await o.open();
        } catch (e) {
          o.pool.connectionGone();
          return errPacket(seq + 1, ClientErrors.POOL_SHARE_FAILED, `No server connection: ${errorMessage(e)}`);
        }
        ({ channel, threadId } = opened);
        toSocket = () => opened.toSocket();
      }
      const failure = await this.#prepare(channel, pooled);
      const extra = failure === undefined ? channel.detach() : null;
      if (failure !== undefined || extra !== null || this.#isOver()) {
        // A connection that cannot take the session's state is closed; a parked one may simply
        // have died (the server closed it): the next one is tried.
        if (channel instanceof FdPacketChannel) channel.destroy();
        else channel.socket.destroy();
        o.pool.connectionGone();
        if (failure === undefined && extra === null) return undefined; // the client left meanwhile
        const why = failure ?? 'unexpected bytes from the server';
        o.log(`shared server connection thread ${threadId} not usable: ${why}`);
        if (got.kind === 'server') continue;
        return errPacket(seq + 1, ClientErrors.POOL_SHARE_FAILED, `Server connection setup failed: ${why}`);
      }
      this.#use(relay, toSocket(), threadId);
      return undefined;
    }
  }

  /** A method, not the field: the session may end while #attach() awaits. */
  #isOver(): boolean {
    return this.#over;
  }

  #use(relay: Relay, socket: Socket, threadId: number): void {
    this.#attached = true;
    this.#threadId = threadId;
    this.#o.onThread(threadId);
    relay.attachServer(socket);
  }
}

const NO_BASELINE: ReadonlyMap<string, string> = new Map();

function ignoreError(): void {
  // See released().
}

/** An OK packet (0x00), or the OK that ends a result set under CLIENT_DEPRECATE_EOF (0xFE, longer than an EOF). */
function isOkPacket(payload: Buffer): boolean {
  return payload[0] === PacketHeader.OK || (payload[0] === PacketHeader.EOF && payload.length >= 7);
}

/** Whether a client can share: it must read session-state information in OK packets. */
export function clientCanShare(capabilities: number): boolean {
  return (capabilities & Capability.CLIENT_SESSION_TRACK) !== 0 && (capabilities & Capability.CLIENT_PROTOCOL_41) !== 0;
}
