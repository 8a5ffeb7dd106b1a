// PacketChannel: a socket read as packets, one at a time, for the phases the proxy inspects
// (greeting, login, authentication). The socket stays paused unless a reader waits, so a peer
// cannot make us queue packets while a policy callback runs. detach() hands the socket and any
// unread bytes to the relay.

import type { Socket } from 'node:net';
import { MAX_PACKET_PAYLOAD } from '../protocol/constants.js';
import { PacketFramer, type Packet } from '../protocol/framer.js';
import { framePayload } from '../protocol/writer.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';

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

export class PacketChannel {
  readonly socket: Socket;
  readonly #framer: PacketFramer;
  readonly #queue: Packet[] = [];
  #failure: Error | null = null;
  #waiter: { resolve: (p: Packet) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | undefined } | null =
    null;
  readonly #onData = (chunk: Buffer): void => this.#receive(chunk);
  readonly #onEnd = (): void => this.#fail(new ChannelClosedError());
  // ECONNRESET, EPIPE and the like mean the peer went away: the same as a close for the login.
  readonly #onError = (e: Error): void => this.#fail(new ChannelClosedError(`Connection lost: ${e.message}`));
  readonly #onClose = (): void => this.#fail(new ChannelClosedError());

  /** `initial`: bytes already read from the socket (what an earlier channel's detach() returned). */
  constructor(socket: Socket, maxPayload: number, initial: Buffer | null = null) {
    this.socket = socket;
    this.#framer = new PacketFramer(maxPayload);
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.pause();
    if (initial !== null && initial.length > 0) this.#receive(initial);
    if (socket.destroyed) this.#fail(new ChannelClosedError());
  }

  #receive(chunk: Buffer): void {
    try {
      for (const p of this.#framer.push(chunk)) this.#queue.push(p);
    } catch (e) {
      this.#fail(e as Error);
      return;
    }
    this.#deliver();
  }

  #deliver(): void {
    const w = this.#waiter;
    if (w === null) {
      this.socket.pause();
      return;
    }
    const p = this.#queue.shift();
    if (p !== undefined) {
      this.#waiter = null;
      if (w.timer !== undefined) clearTimeout(w.timer);
      this.socket.pause();
      w.resolve(p);
    } else if (this.#failure !== null) {
      this.#waiter = null;
      if (w.timer !== undefined) clearTimeout(w.timer);
      w.reject(this.#failure);
    }
  }

  #fail(e: Error): void {
    if (this.#failure === null) this.#failure = e;
    this.#deliver();
  }

  /** The next packet; rejects when the peer closes, errs, sends garbage framing or times out. */
  next(timeoutMs: number): Promise<Packet> {
    if (this.#waiter !== null) throw new Error('PacketChannel.next() while already waiting');
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return new Promise<Packet>((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => this.#fail(new ChannelTimeoutError()), timeoutMs) : undefined;
      this.#waiter = { resolve, reject, timer };
      this.socket.resume();
    });
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
    this.socket.off('close', this.#onClose);
    const queued = this.#queue.splice(0);
    const rest = this.#framer.takeBuffered();
    if (queued.length === 0) return rest;
    // Packets queued after login (a pipelining client) are re-framed byte-exactly.
    const parts: Buffer[] = [];
    for (const p of queued) parts.push(reframe(p));
    if (rest !== null) parts.push(rest);
    return Buffer.concat(parts);
  }
}

function reframe(p: Packet): Buffer {
  // A payload of 0xFFFFFF bytes or more arrived as several physical packets with consecutive
  // sequence ids ending at p.seq (a single header cannot even hold its length), so re-split it
  // the same way; smaller payloads get their one original header back.
  const parts = Math.floor(p.payload.length / MAX_PACKET_PAYLOAD) + 1;
  return framePayload(p.payload, (p.seq - (parts - 1)) & 0xff);
}
