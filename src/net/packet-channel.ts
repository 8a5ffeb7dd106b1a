// PacketChannel: a socket read as packets, one at a time, for the phases the proxy inspects
// (greeting, login, authentication). The socket stays paused unless a reader waits, so a peer
// cannot make us queue packets while a policy callback runs. detach() hands the socket and any
// unread bytes to the relay.
//
// FdPacketChannel: the same over a bare socket fd read through the addon, for a backend's login
// over a Unix socket. A net.Socket costs more to build and tear down than everything else such a
// login does in JavaScript, for three or four small packets; the fd then goes to the byte pump as
// it is.

import { Socket } from 'node:net';
import { MAX_PACKET_PAYLOAD } from '../protocol/constants.js';
import { PacketFramer, type Packet } from '../protocol/framer.js';
import { framePayload } from '../protocol/writer.js';
import { ErrorCodes, PacketTooLargeError, ProxyError } from '../util/errors.js';
import { addonFunctions, closeFd, type StreamWatchHandle } from './native.js';

export class ChannelClosedError extends ProxyError {
  constructor(message = 'Connection closed') {
    super(ErrorCodes.CHANNEL_CLOSED, message);
  }
}

export class ChannelTimeoutError extends ProxyError {
  constructor() {
    super(ErrorCodes.CHANNEL_TIMEOUT, 'Timeout');
  }
}

/** Packets from bytes that arrive in chunks, one next() at a time; input pauses while nobody waits. */
abstract class PacketQueue {
  readonly #framer: PacketFramer;
  readonly #queue: Packet[] = [];
  #failure: Error | null = null;
  #waiter: { resolve: (p: Packet) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | undefined } | null =
    null;

  /**
   * Bytes after the first packet, kept unframed until the next next() (see holdAfterFirst), or
   * null. [] while the first packet has not come yet.
   */
  #held: Buffer[] | null;
  #firstTaken = false;
  readonly #maxPayload: number;

  constructor(maxPayload: number, holdAfterFirst = false) {
    this.#framer = new PacketFramer(maxPayload);
    this.#maxPayload = maxPayload;
    this.#held = holdAfterFirst ? [] : null;
  }

  /** Stop reading from the peer (nobody waits for a packet). */
  protected abstract pauseInput(): void;
  /** Read from the peer again. */
  protected abstract resumeInput(): void;

  protected receive(chunk: Buffer): void {
    if (this.#held !== null) {
      this.#holdFirst(chunk);
      return;
    }
    try {
      for (const p of this.#framer.push(chunk)) this.#queue.push(p);
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    this.#deliver();
  }

  /**
   * holdAfterFirst: the first packet is cut out by hand and what follows it is not framed until
   * asked for. After an SSLRequest the client sends its TLS ClientHello at once, which framed as
   * a packet would be garbage (and fail the channel before the SSLRequest is even read).
   */
  #holdFirst(chunk: Buffer): void {
    const held = this.#held!;
    held.push(chunk);
    if (this.#firstTaken || this.#failure !== null) return; // the first packet is out: keep the rest
    const bytes = held.length === 1 ? held[0]! : Buffer.concat(held);
    held.length = 0;
    held.push(bytes);
    if (bytes.length < 4) return;
    const len = bytes.readUIntLE(0, 3);
    if (len > this.#maxPayload) {
      this.fail(new PacketTooLargeError(this.#maxPayload));
      return;
    }
    if (bytes.length < 4 + len) return;
    this.#queue.push({ seq: bytes[3]!, payload: bytes.subarray(4, 4 + len) });
    this.#firstTaken = true;
    held.length = 0;
    if (bytes.length > 4 + len) held.push(bytes.subarray(4 + len));
    this.#deliver();
  }

  /** Once the first packet was taken: the held bytes go to the framer (normal reading from now on). */
  #releaseHeld(): void {
    const held = this.#held;
    if (held === null || !this.#firstTaken || this.#queue.length > 0 || this.#failure !== null) return;
    this.#held = null;
    for (const b of held) this.receive(b);
  }

  #deliver(): void {
    const w = this.#waiter;
    if (w === null) {
      this.pauseInput();
      return;
    }
    const p = this.#queue.shift();
    if (p !== undefined) {
      this.#waiter = null;
      if (w.timer !== undefined) clearTimeout(w.timer);
      this.pauseInput();
      w.resolve(p);
    } else if (this.#failure !== null) {
      this.#waiter = null;
      if (w.timer !== undefined) clearTimeout(w.timer);
      w.reject(this.#failure);
    }
  }

  /** Packets (or their beginning) arrived that nobody has asked for yet. */
  protected get unread(): boolean {
    return this.#queue.length > 0;
  }

  protected fail(e: Error): void {
    if (this.#failure === null) this.#failure = e;
    this.#deliver();
  }

  /** The next packet; rejects when the peer closes, errs, sends garbage framing or times out. */
  next(timeoutMs: number): Promise<Packet> {
    if (this.#waiter !== null) throw new Error('PacketChannel.next() while already waiting');
    this.#releaseHeld();
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return new Promise<Packet>((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => this.fail(new ChannelTimeoutError()), timeoutMs) : undefined;
      this.#waiter = { resolve, reject, timer };
      this.resumeInput();
    });
  }

  /**
   * The bytes that arrived after the last packet returned (to be forwarded first), including whole
   * packets queued but not yet read.
   */
  protected takeUnread(): Buffer | null {
    const queued = this.#queue.splice(0);
    const held = this.#held;
    this.#held = null;
    if (held !== null && held.length > 0) {
      // Not framed: the bytes after the first packet as they came (nothing is in the framer).
      return Buffer.concat([...queued.map(reframe), ...held]);
    }
    const rest = this.#framer.takeBuffered();
    if (queued.length === 0) return rest;
    // Packets queued after login (a pipelining client) are re-framed byte-exactly.
    const parts: Buffer[] = [];
    for (const p of queued) parts.push(reframe(p));
    if (rest !== null) parts.push(rest);
    return Buffer.concat(parts);
  }
}

export class PacketChannel extends PacketQueue {
  readonly socket: Socket;
  readonly #onData = (chunk: Buffer): void => this.receive(chunk);
  readonly #onEnd = (): void => this.fail(new ChannelClosedError());
  // ECONNRESET, EPIPE and the like mean the peer went away: the same as a close for the login.
  readonly #onError = (e: Error): void => this.fail(new ChannelClosedError(`Connection lost: ${e.message}`));

  /**
   * `initial`: bytes already read from the socket (what an earlier channel's detach() returned).
   * `holdAfterFirst`: frame nothing after the first packet until the next next() (a client that
   * may switch to TLS right after it).
   */
  constructor(socket: Socket, maxPayload: number, initial: Buffer | null = null, holdAfterFirst = false) {
    super(maxPayload, holdAfterFirst);
    this.socket = socket;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onEnd);
    socket.pause();
    if (initial !== null && initial.length > 0) this.receive(initial);
    if (socket.destroyed) this.fail(new ChannelClosedError());
  }

  protected pauseInput(): void {
    this.socket.pause();
  }

  protected resumeInput(): void {
    this.socket.resume();
  }

  send(data: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /**
   * Stop reading packets: remove our listeners and return the bytes that arrived after the last
   * packet returned (to be forwarded first), including whole packets queued but not yet read.
   */
  detach(): Buffer | null {
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('error', this.#onError);
    this.socket.off('close', this.#onEnd);
    return this.takeUnread();
  }
}

/**
 * A connected stream socket's fd read as packets (see the top of this file). The fd is the
 * channel's until detach(), which leaves it open for the relay, or destroy(), which closes it.
 * Writes go out at once: a login packet always fits an idle socket's send buffer, so one that does
 * not is taken for a broken connection.
 */
export class FdPacketChannel extends PacketQueue {
  readonly fd: number;
  /** Made when the first packet is asked for: a pooled server's fd goes to the pump unread. */
  #watch: StreamWatchHandle | null = null;
  /** detach(), handOver() or destroy() came: nothing is read any more. */
  #unwatched = false;
  #reading = false;
  #fdOpen = true;
  /**
   * Called once when the peer is found gone (end of stream or a read error), whether or not a
   * reader waits: a client that leaves while its policy callback runs ends its session at once.
   */
  onPeerGone: (() => void) | undefined = undefined;

  constructor(fd: number, maxPayload: number) {
    super(maxPayload);
    this.fd = fd;
  }

  /** What the addon reports for the fd: bytes, or null at its end (code: why, for a read error). */
  readonly #onRead = (chunk: Buffer | null, code: string | null): void => {
    if (chunk === null) {
      // The end of the stream, or a read error (ECONNRESET and the like): the peer went away.
      this.fail(new ChannelClosedError(code === null ? undefined : `Connection lost: read ${code}`));
      const gone = this.onPeerGone;
      this.onPeerGone = undefined;
      gone?.();
      return;
    }
    this.receive(chunk);
    // Bytes nobody asked for stop the reading, so a peer cannot make us queue more of them.
    if (this.unread) this.#setReading(false);
  };

  /** True once destroy() closed the fd (for the relay: nothing to hand over). */
  get destroyed(): boolean {
    return !this.#fdOpen;
  }

  /**
   * Reading goes on after a packet was handed out: the next one is normally asked for at once, and
   * each stop and start of a uv_poll costs system calls. Unasked-for bytes stop it (see above).
   */
  protected pauseInput(): void {
    // see resumeInput() and the watch callback
  }

  protected resumeInput(): void {
    this.#setReading(true);
  }

  #setReading(on: boolean): void {
    if (this.#reading === on || this.#unwatched) return;
    // Nothing is read until the first next(), as with a PacketChannel's paused socket.
    this.#watch ??= addonFunctions().streamWatch(this.fd, this.#onRead);
    this.#reading = on;
    addonFunctions().streamWatchRead(this.#watch, on);
  }

  send(data: Buffer): void {
    if (!this.#fdOpen) return;
    let sent: number;
    try {
      sent = addonFunctions().sendOn(this.fd, data);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      this.fail(new ChannelClosedError(`Connection lost: write ${typeof code === 'string' ? code : String(e)}`));
      return;
    }
    if (sent < data.length) this.fail(new ChannelClosedError('Connection lost: write EAGAIN'));
  }

  /** Stop reading; the fd stays open. Returns what arrived after the last packet returned. */
  detach(): Buffer | null {
    this.#unwatch();
    return this.takeUnread();
  }

  /** The fd goes to a relay (after detach()): the channel forgets it and never closes it. */
  handOver(): number {
    this.#unwatch();
    this.#fdOpen = false;
    return this.fd;
  }

  /** A net.Socket that owns the fd from now on (for the JavaScript relay), after detach(). */
  toSocket(): Socket {
    const socket = new Socket({ fd: this.handOver(), readable: true, writable: true });
    socket.pause();
    return socket;
  }

  /** Send `data` (if any) as the last bytes, then close the fd (as net.Socket's end() and destroy). */
  end(data?: Buffer): void {
    if (data !== undefined) this.send(data);
    this.destroy();
  }

  /** Stop reading and close the fd (once); a reader waiting for a packet gets ChannelClosedError. */
  destroy(): void {
    this.#unwatch();
    if (this.#fdOpen) {
      this.#fdOpen = false;
      closeFd(this.fd);
    }
    this.fail(new ChannelClosedError());
  }

  #unwatch(): void {
    this.#unwatched = true;
    if (this.#watch === null) return;
    addonFunctions().streamUnwatch(this.#watch);
    this.#watch = null;
  }
}

/** What a login reads packets from: a net.Socket's channel, or a bare fd's. */
export type LoginChannel = PacketChannel | FdPacketChannel;

function reframe(p: Packet): Buffer {
  // A payload of 0xFFFFFF bytes or more arrived as several physical packets with consecutive
  // sequence ids ending at p.seq (a single header cannot even hold its length), so re-split it
  // the same way; smaller payloads get their one original header back.
  const parts = Math.floor(p.payload.length / MAX_PACKET_PAYLOAD) + 1;
  return framePayload(p.payload, (p.seq - (parts - 1)) & 0xff);
}
