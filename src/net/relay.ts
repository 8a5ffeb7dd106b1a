// The command-phase relay: bytes flow client <-> backend with backpressure both ways (a slow
// reader pauses the other side instead of growing a buffer), followed by the response tracker
// (tracking.ts), which knows where each command and each response ends without changing a byte.
// Two implementations keep one contract: NativeRelay (native-relay.ts, the byte pump in C) and
// Relay below (JavaScript sockets, the same native tracker), used where the pump cannot be
// (TLS sessions) and with --relay js.

import type { Socket } from 'node:net';
import { logError } from '../util/log.js';
import { ownCopy } from '../util/bytes.js';
import { addonFunctions, closeFd, dupFd, fdOf, type TrackerHandle } from './native.js';
import {
  PumpEvent,
  TrackerStop,
  UNTRACKED_REASONS,
  decodeRecord,
  encodeTrackerConfig,
  newRecordArray,
  type TrackingOptions,
} from './tracking.js';
import { FdPacketChannel } from './packet-channel.js';

export interface RelayCounters {
  /** Bytes received from the client since the relay started. */
  clientBytes: number;
  /** Bytes received from the server since the relay started. */
  serverBytes: number;
}

export interface RelayOptions {
  /** Client bytes received during login but not yet forwarded (tracked: may hold a command). */
  readonly clientLeftover: Buffer | null;
  /** Bytes owed to the client before anything else: the login OK and what the server sent after it. */
  readonly serverLeftover: Buffer | null;
  /**
   * Called once when both sockets are finished (closed or destroyed). With `keepServer`, a client
   * that left while the server connection could be reused leaves it open: `keptServerFd` is then
   * its fd, the caller's from now on.
   */
  readonly onClose: (reason: RelayEnd, keptServerFd?: number) => void;
  /**
   * Pooling: when the client leaves (its end, or release() after a COM_QUIT) while the server owes
   * nothing, every byte sent to it was tracked and no transaction is open, keep the server open.
   */
  readonly keepServer?: boolean;
  /** Client commands to take out of the stream and hand to `intercept.onCommand`. */
  readonly intercept?: CommandInterceptor;
  /** What the tracker is told (default: follow responses, count nowhere). */
  readonly tracking?: TrackingOptions;
  /** Written to the client instead, if the relay cannot start (e.g. no file descriptors left). */
  readonly failurePacket?: Buffer;
  /** Connection sharing (JavaScript relay only): the server connection may leave between commands. */
  readonly share?: ShareHooks;
}

/**
 * Connection sharing: after each response that leaves nothing in flight, the relay asks `idle()`
 * whether the server connection may go; if so it lets go of the socket (paused, its listeners
 * removed) and hands it to `released()`. A later command must be intercepted (all commands are, under sharing),
 * and the interceptor calls `Relay.attachServer()` with the connection to use before it answers.
 */
export interface ShareHooks {
  /**
   * A response ended; `lastPacket` is its final packet (payload only; null when it was too big to
   * keep). The tracker's record was reported just before. `alone` is false when the server's bytes
   * held the end of more than one response (pipelined commands): the earlier ones' records and
   * final packets were not told apart.
   */
  response(lastPacket: Buffer | null, alone: boolean): void;
  /** Nothing is in flight or held: may the server connection go now? */
  idle(): boolean;
  /** The server connection was let go: `socket` (paused, without listeners) is the hook's. */
  released(socket: Socket): void;
}

/** The largest final packet of a response kept for ShareHooks.idle() (an OK with session state fits). */
const MAX_KEPT_PACKET = 64 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Takes chosen client commands out of the relayed stream. A command packet whose first payload
 * byte is in `commands` (or, with `tracking.killFilter`, a COM_QUERY that may be a KILL) is held,
 * not forwarded; the relay reads nothing more from the client until `onCommand` has answered.
 * Server traffic keeps flowing; a local reply is delivered after the responses still in flight.
 */
export interface CommandInterceptor {
  readonly commands: readonly number[];
  /** A longer packet is handed over truncated to this size (`truncated`), its rest dropped. Default 64 KiB. */
  readonly maxPacket?: number;
  /**
   * `packet` is the whole logical packet (headers included). A reply given at once (not a promise)
   * lets the native relay go on without waiting for a microtask.
   */
  onCommand(packet: Buffer, truncated: boolean): InterceptReply | Promise<InterceptReply>;
}

/** What to do with an intercepted command: send bytes either way, or end the session with `close`. */
export interface InterceptReply {
  /** Command packet(s) for the server (the original, or a rewrite); tracked as commands. */
  readonly toServer?: Buffer;
  /** A complete local reply for the client, delivered in the order of responses. */
  readonly toClient?: Buffer;
  /** End the session after writing these bytes to the client. */
  readonly close?: Buffer;
}

/** Default largest intercepted command handed over whole. */
export const DEFAULT_MAX_INTERCEPTED_PACKET = 64 * 1024;

/** How long close() waits for the last bytes to reach the client before it gives up. */
export const CLOSE_DEADLINE_MS = 5_000;

/**
 * After the server went away, how long the client's further input is read and dropped (so that
 * closing does not reset its connection before it has read the server's last packet).
 */
export const LINGER_MS = 2_000;

/** What a server that went away may still have for us (its last packets, not a result). */
const MAX_SALVAGE = 1024 * 1024;

export type RelayEnd =
  | 'client'
  | 'server'
  | 'client-error'
  | 'server-error'
  | 'shutdown'
  | 'client-malformed'
  | 'out-of-memory'
  | 'poll-error'
  | 'internal-error';

/** Where a relay is in the protocol (null: no tracker state to report). */
export interface RelayState {
  /** Responses the server still owes. */
  readonly inFlight: number;
  /** The tracker lost the grammar; relaying goes on byte-exact. */
  readonly untracked: boolean;
  /** The server stream is between packets. */
  readonly atBoundary: boolean;
  /**
   * Status flags of the last finished response (autocommit, in transaction), for a reply the
   * daemon makes itself; SERVER_STATUS_AUTOCOMMIT until a response tells.
   */
  readonly serverStatus: number;
}

/** What the session engine needs from a relay implementation (this one, or the native pump). */
export interface ByteRelay {
  readonly counters: RelayCounters;
  /**
   * End the session: read nothing more, deliver what is owed to the client and then `lastClientPacket`
   * (its sequence id adjusted to the response in flight; left out in the middle of a server packet),
   * then close both sides. Bounded by CLOSE_DEADLINE_MS.
   */
  close(lastClientPacket?: Buffer): void;
  /**
   * How long (ms) bytes for one side have waited without that side taking any; 0 when none wait;
   * -1 when the relay is gone without having reported its end.
   */
  stalledMs(): number;
  /** Close both sides now without writing anything more (a peer that stopped reading). */
  abort(): void;
  /**
   * The client quit (an intercepted COM_QUIT, nothing after it): close the client side and, with
   * `keepServer`, hand the server back through onClose when it can be reused; otherwise close it.
   */
  release(): void;
  state(): RelayState | null;
}

export type RelayKind = 'native' | 'js';

const MAX_PAYLOAD = 0xffffff;

/** Length of the logical packet (with its 0xFFFFFF continuations) at the start of `b`, or -1. */
export function logicalPacketLength(b: Buffer): number {
  let pos = 0;
  for (;;) {
    if (b.length - pos < 4) return -1;
    const len = b.readUIntLE(pos, 3);
    if (b.length - pos - 4 < len) return -1;
    pos += 4 + len;
    if (len !== MAX_PAYLOAD) return pos;
  }
}

/** Relay between `client` and `server` until either side closes (the JavaScript relay). */
export class Relay implements ByteRelay {
  readonly counters: RelayCounters = { clientBytes: 0, serverBytes: 0 };
  readonly #client: Socket;
  /** Null while a sharing session has no server connection (between commands). */
  #server: Socket | null;
  readonly #onClose: (reason: RelayEnd, keptServerFd?: number) => void;
  readonly #keepServer: boolean;
  /** The server's fd kept for the pool (a duplicate: the socket itself is destroyed). */
  #keptFd = -1;
  readonly #tracker: TrackerHandle;
  readonly #intercept: CommandInterceptor | undefined;
  readonly #maxHold: number;
  #end: RelayEnd | null = null;
  #open = 2;
  #closed = false;
  /** Per destination socket: when its buffer last went over the mark without draining since. */
  readonly #stalledSince = new Map<Socket, number>();
  /** Client bytes whose fate needs more bytes (a header, or the start of a query). */
  #undecided: Buffer | null = null;
  /** An intercepted packet and what the client sent after it. */
  #held: Buffer | null = null;
  #delivered = false;
  /** Bytes of #held the delivered packet takes. */
  #deliverLen = 0;
  #discardLeft = 0;
  #discardContinued = false;
  /** Local replies waiting behind responses in flight. */
  readonly #replies: Buffer[] = [];
  #deadline: NodeJS.Timeout | undefined;
  /**
   * A second descriptor of the server socket: Node destroys a socket (and the input still in the
   * kernel) when a write fails, so a server's last packet before it closed is read through this.
   */
  #serverCopy = -1;
  readonly #share: ShareHooks | undefined;
  /** Sharing: responses that ended in the server bytes being handled (counted by the tracker's event). */
  #responsesEnded = 0;
  /** Sharing: a response ended since the last release check. */
  #releaseCheck = false;
  /** Sharing: the server packet being received (its payload, while small) and the last complete one. */
  #pktNeed = 0;
  #pktHeader: Buffer | null = null;
  #pktParts: Buffer[] | null = null;
  /** The packet being received is too big to keep. */
  #pktBig = false;
  /** Where the packet being received starts in the chunk being walked. */
  #pktStart = 0;
  #pktLast: Buffer | null = null;

  /** A server given as an FdPacketChannel (detached) is made a net.Socket here. */
  constructor(clientSide: Socket | FdPacketChannel, serverSide: Socket | FdPacketChannel, options: RelayOptions) {
    const client = clientSide instanceof FdPacketChannel ? clientSide.toSocket() : clientSide;
    const server = serverSide instanceof FdPacketChannel ? serverSide.toSocket() : serverSide;
    this.#client = client;
    this.#server = server;
    this.#onClose = options.onClose;
    this.#keepServer = options.keepServer === true;
    this.#intercept = options.intercept;
    this.#share = options.share;
    this.#maxHold = Math.max(64, options.intercept?.maxPacket ?? DEFAULT_MAX_INTERCEPTED_PACKET);
    const tracking: TrackingOptions = options.tracking ?? { capabilities: 0, track: true, stats: null };
    const record = tracking.onResponse !== undefined ? newRecordArray() : null;
    const addon = addonFunctions();
    this.#tracker = addon.trackerNew(
      encodeTrackerConfig(tracking, options.intercept?.commands ?? [], this.#maxHold),
      tracking.stats,
      tracking.accountStats ?? null,
      record,
      (type, arg) => {
        if (type === PumpEvent.RESPONSE) this.#responsesEnded++;
        if (type === PumpEvent.RESPONSE && record !== null) tracking.onResponse?.(decodeRecord(record));
        else if (type === PumpEvent.UNTRACKED) tracking.onUntracked?.(UNTRACKED_REASONS[arg] ?? `reason ${arg}`);
      },
    );
    this.#copyServerFd(server);
    this.#watch(client, 'client');
    this.#watch(server, 'server');
    server.on('data', (chunk: Buffer) => this.#serverInput(chunk));
    client.on('data', (chunk: Buffer) => this.#clientData(chunk));
    if (options.serverLeftover !== null && options.serverLeftover.length > 0) this.#toClient(options.serverLeftover);
    if (options.clientLeftover !== null && options.clientLeftover.length > 0) this.#clientInput(options.clientLeftover);
    server.resume();
    if (!this.#waitingForAnswer() && !this.#stalledSince.has(server)) client.resume();
    // A sharing session starts without a response to wait for: its connection may go at once.
    if (this.#share !== undefined) {
      this.#releaseCheck = true;
      this.#maybeRelease();
    }
  }

  #copyServerFd(server: Socket): void {
    try {
      this.#serverCopy = dupFd(fdOf(server));
    } catch {
      // No descriptor to spare (or no plain socket): the salvage is skipped.
    }
  }

  #watch(socket: Socket, side: 'client' | 'server'): void {
    // The server side may change under sharing: the client's other side is looked up each time.
    const otherSide = (): Socket | null => (side === 'client' ? this.#server : this.#client);
    socket.on('drain', () => {
      this.#stalledSince.delete(socket);
      if (side === 'server' && this.#waitingForAnswer()) return;
      if (!this.#closed) otherSide()?.resume();
    });
    socket.on('end', () => {
      if (side === 'client' && this.#keptServer()) return;
      // An orderly close: what is owed to the other side is delivered, then it is closed too.
      // Undecided client bytes (a header cut short) still go to the server as they are.
      if (side === 'client' && this.#undecided !== null) {
        this.#toServer(this.#undecided);
        this.#undecided = null;
      }
      this.#finish(side);
      if (side === 'server') this.#serverGone();
      else endOnce(otherSide());
    });
    socket.on('error', () => {
      if (side === 'client' && this.#keptServer()) return;
      this.#finish(side === 'client' ? 'client-error' : 'server-error');
      socket.destroy();
      if (side === 'server') this.#serverGone();
      else endOnce(otherSide());
    });
    socket.on('close', () => {
      if (side !== 'client' || !this.#keptServer()) {
        this.#finish(side);
        if (side === 'server') this.#serverGone();
        else endOnce(otherSide());
      }
      if (--this.#open === 0) {
        clearTimeout(this.#deadline);
        if (this.#serverCopy >= 0) closeFd(this.#serverCopy);
        this.#serverCopy = -1;
        this.#onClose(this.#end ?? side, this.#keptFd >= 0 ? this.#keptFd : undefined);
      }
    });
  }

  /**
   * The client is leaving: with keepServer and a server connection that can be reused, keep a
   * duplicate of its fd and let both sockets go. True when the server was kept (or already was).
   */
  #keptServer(): boolean {
    if (this.#keptFd >= 0) return true;
    // An end already under way (#end set) has sent the server bytes the tracker never saw, or closed it.
    if (!this.#keepServer || this.#closed || this.#end !== null) return false;
    if (this.#undecided !== null || this.#discardLeft > 0) return false;
    if (this.#discardContinued || this.#replies.length > 0) return false;
    // Only an answered-for COM_QUIT may be held, with nothing after it.
    if (this.#held !== null && !(this.#delivered && this.#held.length === this.#deliverLen)) return false;
    const server = this.#server;
    if (server === null) return false; // a sharing session between commands: nothing to keep
    if (server.destroyed || server.writableLength > 0 || server.readableLength > 0) return false;
    if (!addonFunctions().trackerInfo(this.#tracker)[5]) return false;
    let fd: number;
    try {
      fd = dupFd(fdOf(server));
    } catch {
      return false;
    }
    this.#keptFd = fd;
    this.#finish('client');
    this.#closed = true;
    server.removeAllListeners('data');
    server.removeAllListeners('end');
    server.removeAllListeners('error');
    server.on('error', () => undefined);
    server.destroy();
    if (!this.#client.destroyed) this.#client.destroy();
    return true;
  }

  #waitingForAnswer(): boolean {
    return this.#held !== null && this.#delivered;
  }

  #toServer(bytes: Buffer): void {
    const server = this.#server;
    if (server === null) {
      // Sharing attaches a connection before any command goes: bytes without one are a bug here.
      if (bytes.length > 0) {
        logError('relay: client bytes for a shared session without a server connection');
        this.close();
      }
      return;
    }
    if (bytes.length === 0 || server.destroyed || server.writableEnded) return;
    if (!server.write(bytes)) {
      this.#client.pause();
      if (!this.#stalledSince.has(server)) this.#stalledSince.set(server, Date.now());
    }
  }

  #toClient(bytes: Buffer): void {
    if (bytes.length === 0 || this.#client.destroyed || this.#client.writableEnded) return;
    if (!this.#client.write(bytes)) {
      this.#server?.pause();
      if (!this.#stalledSince.has(this.#client)) this.#stalledSince.set(this.#client, Date.now());
    }
  }

  #clientData(chunk: Buffer): void {
    this.counters.clientBytes += chunk.length;
    if (this.#closed) return;
    if (this.#held !== null) {
      this.#held = Buffer.concat([this.#held, chunk]);
      this.#tryDeliver();
      return;
    }
    const input = this.#undecided === null ? chunk : Buffer.concat([this.#undecided, chunk]);
    this.#undecided = null;
    this.#clientInput(input);
  }

  /** Client bytes: forward what the tracker lets through; hold an intercepted or undecided packet. */
  #clientInput(buf: Buffer): void {
    const addon = addonFunctions();
    let pos = 0;
    while (pos < buf.length) {
      if (this.#discardLeft > 0) {
        const n = Math.min(this.#discardLeft, buf.length - pos);
        pos += n;
        this.#discardLeft -= n;
        continue;
      }
      if (this.#discardContinued) {
        if (buf.length - pos < 4) break;
        const len = buf.readUIntLE(pos, 3);
        this.#discardLeft = len;
        this.#discardContinued = len === MAX_PAYLOAD;
        pos += 4;
        continue;
      }
      const view = pos === 0 ? buf : buf.subarray(pos);
      const r = addon.trackerClient(this.#tracker, view);
      const stop = r % 4;
      const n = (r - stop) / 4;
      if (n > 0) this.#toServer(view.subarray(0, n));
      pos += n;
      if (stop === TrackerStop.GO) continue;
      if (stop === TrackerStop.INTERCEPT) {
        this.#held = Buffer.from(buf.subarray(pos));
        this.#delivered = false;
        this.#tryDeliver();
        return;
      }
      break;
    }
    if (pos < buf.length) this.#undecided = Buffer.from(buf.subarray(pos));
  }

  /** Hand the held packet over once it is complete, or truncated once it is too big. */
  #tryDeliver(): void {
    const held = this.#held;
    const intercept = this.#intercept;
    if (held === null || this.#delivered || intercept === undefined) return;
    const max = this.#maxHold;
    const total = logicalPacketLength(held);
    let packet: Buffer;
    let truncated = false;
    if (total >= 0 && total <= max) {
      packet = held.subarray(0, total);
      this.#deliverLen = total;
    } else if (total >= 0) {
      truncated = true;
      packet = held.subarray(0, max);
      this.#deliverLen = total;
    } else if (held.length >= max) {
      truncated = true;
      packet = held.subarray(0, max);
      let pos = 0;
      for (;;) {
        const len = held.readUIntLE(pos, 3);
        if (held.length - pos - 4 < len) {
          this.#discardLeft = len - (held.length - pos - 4);
          this.#discardContinued = len === MAX_PAYLOAD;
          this.#deliverLen = held.length;
          break;
        }
        pos += 4 + len;
        if (held.length - pos < 4) {
          this.#discardLeft = 0;
          this.#discardContinued = true;
          this.#deliverLen = pos;
          break;
        }
      }
    } else {
      return;
    }
    this.#delivered = true;
    this.#client.pause();
    // Always answered from a microtask, as before: a reply given at once would recurse through
    // #clientInput once per pipelined command.
    new Promise<InterceptReply>((resolve) => resolve(intercept.onCommand(ownCopy(packet), truncated))).then(
      (reply) => this.#answer(reply),
      (e: unknown) => {
        logError(`command interception failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        this.close();
      },
    );
  }

  #answer(reply: InterceptReply): void {
    if (this.#closed || this.#held === null) return;
    if (reply.close !== undefined) {
      this.close(reply.close);
      return;
    }
    const addon = addonFunctions();
    const rest = this.#held.subarray(this.#deliverLen);
    this.#held = null;
    this.#delivered = false;
    if (reply.toServer !== undefined && reply.toServer.length > 0) {
      addon.trackerClientForced(this.#tracker, reply.toServer);
      this.#toServer(reply.toServer);
    }
    if (reply.toClient !== undefined && reply.toClient.length > 0) {
      if (addon.trackerPushLocal(this.#tracker)) this.#replies.push(reply.toClient);
      else if (this.#untracked()) {
        this.#closeWithReply(reply.toClient);
        return;
      } else this.#toClient(reply.toClient); // nothing in flight: it goes now
    }
    if (rest.length > 0) this.#clientInput(Buffer.from(rest));
    this.#flushDueReplies();
    const server = this.#server;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a handler above may have closed the relay
    if (!this.#waitingForAnswer() && !(server !== null && this.#stalledSince.has(server)) && !this.#closed) {
      this.#client.resume();
    }
  }

  /** The tracker lost the server's grammar (local replies can no longer be placed). */
  #untracked(): boolean {
    return addonFunctions().trackerInfo(this.#tracker)[1];
  }

  /**
   * Untracked, a reply of ours could land inside a server packet or a result set, and the client
   * would wait forever for the rest of a packet it misreads: the session ends with the reply
   * instead (close() delivers it only between server packets).
   */
  #closeWithReply(reply: Buffer): void {
    this.#replies.length = 0;
    this.close(reply);
  }

  #flushDueReplies(): void {
    const addon = addonFunctions();
    const first = this.#replies[0];
    if (first !== undefined && this.#untracked()) {
      // After the server packet under way (#serverInput stops at its end).
      if (addon.trackerInfo(this.#tracker)[2]) this.#closeWithReply(first);
      return;
    }
    while (addon.trackerLocalDue(this.#tracker)) {
      addon.trackerPopLocal(this.#tracker);
      const reply = this.#replies.shift();
      if (reply !== undefined) this.#toClient(reply);
    }
  }

  #serverInput(chunk: Buffer): void {
    this.counters.serverBytes += chunk.length;
    if (this.#closed) return;
    const addon = addonFunctions();
    let pos = 0;
    while (pos < chunk.length) {
      const view = pos === 0 ? chunk : chunk.subarray(pos);
      const n = addon.trackerServer(this.#tracker, view);
      if (n > 0) this.#toClient(view.subarray(0, n));
      const share = this.#share;
      if (share !== undefined) {
        this.#followPackets(n === view.length ? view : view.subarray(0, n));
        // One response that ended with nothing more in flight ended with these bytes: its final
        // packet is the last one followed. Anything else (pipelined commands) is not told apart.
        const ended = this.#responsesEnded;
        if (ended > 0) {
          this.#responsesEnded = 0;
          this.#releaseCheck = true;
          share.response(this.#pktLast, ended === 1 && addon.trackerInfo(this.#tracker)[0] === 0);
        }
      }
      pos += n;
      this.#flushDueReplies();
      if (n === 0) break; // cannot happen: the tracker stops only after a response
    }
    if (this.#share !== undefined) this.#maybeRelease();
  }

  /**
   * Sharing: frame the server stream to know the last complete packet (a response's final OK).
   * Packets are walked by their headers; only a packet cut by the end of `bytes` is copied (its
   * part so far), and a packet that ends here is kept as a view.
   */
  #followPackets(bytes: Buffer): void {
    let pos = 0;
    while (pos < bytes.length) {
      if (this.#pktNeed === 0) {
        // A header, possibly split across chunks.
        const have = this.#pktHeader?.length ?? 0;
        const take = Math.min(4 - have, bytes.length - pos);
        const part = bytes.subarray(pos, pos + take);
        this.#pktHeader = have === 0 ? part : Buffer.concat([this.#pktHeader!, part]);
        pos += take;
        if (this.#pktHeader.length < 4) {
          this.#pktHeader = Buffer.from(this.#pktHeader); // kept beyond this chunk
          return;
        }
        const len = this.#pktHeader.readUIntLE(0, 3);
        this.#pktHeader = null;
        this.#pktNeed = len;
        this.#pktParts = null;
        this.#pktBig = len > MAX_KEPT_PACKET;
        this.#pktStart = pos;
        if (len === 0) this.#pktLast = EMPTY;
        // The payload starts in the next chunk: collected from there.
        else if (pos === bytes.length) this.#pktParts = [];
        continue;
      }
      const take = Math.min(this.#pktNeed, bytes.length - pos);
      this.#pktNeed -= take;
      if (this.#pktBig) {
        if (this.#pktNeed === 0) this.#pktLast = null;
      } else if (this.#pktNeed === 0) {
        const tail = bytes.subarray(this.#pktParts === null ? this.#pktStart : pos, pos + take);
        this.#pktLast = this.#pktParts === null ? tail : Buffer.concat([...this.#pktParts, tail]);
        this.#pktParts = null;
      } else {
        // Cut by the end of the chunk: keep what there is of it.
        const from = this.#pktParts === null ? this.#pktStart : pos;
        (this.#pktParts ??= []).push(Buffer.from(bytes.subarray(from, pos + take)));
      }
      pos += take;
    }
  }

  /**
   * Sharing: after a response that leaves the session between commands, let the server connection
   * go if the hook agrees. Every byte the server sent was tracked and nothing is owed either way.
   */
  #maybeRelease(): void {
    const share = this.#share;
    const server = this.#server;
    if (share === undefined || !this.#releaseCheck || server === null) return;
    this.#releaseCheck = false;
    if (this.#closed || this.#end !== null || this.#held !== null || this.#undecided !== null) return;
    if (this.#discardLeft > 0 || this.#discardContinued || this.#replies.length > 0 || this.#pktNeed > 0) return;
    if (this.#pktHeader !== null || server.destroyed || server.writableLength > 0 || server.readableLength > 0) return;
    const [inFlight, untracked, atBoundary] = addonFunctions().trackerInfo(this.#tracker);
    if (inFlight > 0 || untracked || !atBoundary) return;
    if (!share.idle()) return;
    this.#dropServer(server);
    share.released(server);
  }

  /** Let go of the server socket without ending the session: it stays open, paused, for the pool. */
  #dropServer(server: Socket): void {
    server.pause();
    for (const event of ['data', 'end', 'error', 'close', 'drain']) server.removeAllListeners(event);
    this.#stalledSince.delete(server);
    if (this.#serverCopy >= 0) closeFd(this.#serverCopy);
    this.#serverCopy = -1;
    this.#server = null;
    this.#pktLast = null;
    this.#open--;
  }

  /**
   * Sharing: the server connection for the command being intercepted (set up and restored by the
   * caller). It replaces none: the relay has none between commands.
   */
  attachServer(server: Socket): void {
    if (this.#server !== null) throw new Error('relay: a server connection is attached already');
    this.#server = server;
    this.#open++;
    this.#copyServerFd(server);
    this.#watch(server, 'server');
    server.on('data', (chunk: Buffer) => this.#serverInput(chunk));
    server.resume();
  }

  /** Sharing: whether the session has a server connection now. */
  get hasServer(): boolean {
    return this.#server !== null;
  }

  #finish(reason: RelayEnd): void {
    if (this.#end === null) this.#end = reason;
  }

  /**
   * The server went away (its end, an error, a failed write): deliver what it still had for us,
   * then a FIN to the client, whose further input is dropped for LINGER_MS.
   */
  #serverGone(): void {
    if (this.#serverCopy >= 0 && !this.#closed) {
      const rest = addonFunctions().recvAvailable(this.#serverCopy, MAX_SALVAGE);
      if (rest !== null) this.#serverInput(rest);
    }
    if (this.#serverCopy >= 0) closeFd(this.#serverCopy);
    this.#serverCopy = -1;
    const client = this.#client;
    if (client.destroyed || client.writableEnded) return;
    client.end();
    if (this.#closed) return;
    this.#closed = true; // nothing more goes to the server
    client.removeAllListeners('data');
    client.on('data', () => undefined);
    client.resume();
    this.#deadline = setTimeout(() => client.destroy(), LINGER_MS);
    this.#deadline.unref();
  }

  stalledMs(): number {
    let since = Infinity;
    for (const t of this.#stalledSince.values()) since = Math.min(since, t);
    return since === Infinity ? 0 : Date.now() - since;
  }

  state(): RelayState | null {
    const [inFlight, untracked, atBoundary, , serverStatus] = addonFunctions().trackerInfo(this.#tracker);
    return { inFlight, untracked, atBoundary, serverStatus };
  }

  abort(): void {
    this.#finish('shutdown');
    this.#closed = true;
    this.#client.destroy();
    this.#server?.destroy();
  }

  release(): void {
    if (this.#closed) return;
    if (this.#keptServer()) return;
    this.#finish('client');
    this.close();
  }

  close(lastClientPacket?: Buffer): void {
    if (this.#closed) return;
    this.#finish('shutdown');
    this.#closed = true;
    this.#server?.destroy();
    this.#client.pause();
    let last = lastClientPacket;
    if (last !== undefined && last.length >= 4) {
      const [inFlight, , atBoundary, nextSeq] = addonFunctions().trackerInfo(this.#tracker);
      if (!atBoundary) last = undefined;
      else if (inFlight > 0) {
        last = Buffer.from(last);
        last[3] = nextSeq;
      }
    }
    if (last !== undefined && !this.#client.writableEnded && !this.#client.destroyed) this.#client.end(last);
    else endOnce(this.#client);
    this.#deadline = setTimeout(() => this.#client.destroy(), CLOSE_DEADLINE_MS);
    this.#deadline.unref();
  }
}

/** end() a socket unless it is ended already (a second end() builds an Error with a stack trace). */
function endOnce(socket: Socket | null): void {
  if (socket === null) return;
  if (!socket.writableEnded && !socket.destroyed) socket.end();
}
