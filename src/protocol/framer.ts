// PacketFramer: turns a byte stream into logical packets. Used only while the proxy inspects
// traffic (greeting, login, authentication); after login the relay forwards bytes unparsed.
// Continuation packets (payload length 0xFFFFFF) are joined into one logical payload, bounded
// by `maxPayload` so a hostile peer cannot make us buffer without limit.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html

import { PacketTooLargeError } from '../util/errors.js';
import { MAX_PACKET_PAYLOAD } from './constants.js';

export interface Packet {
  /** Sequence id of the last physical packet of this logical packet. */
  readonly seq: number;
  /** The payload; a view that stays valid (the framer never writes into handed-out memory). */
  readonly payload: Buffer;
}

export class PacketFramer {
  readonly #maxPayload: number;
  /**
   * Received chunks not yet consumed, oldest first. They are kept as a list and only joined once
   * a whole physical packet is there: joining on every push would copy a large packet that
   * arrives in small chunks over and over (quadratic in its size).
   */
  #pending: Buffer[] = [];
  #pendingLength = 0;
  /** Offset of the first unconsumed byte in #pending[0]. */
  #offset = 0;
  /** Physical packets (header included, for takeBuffered()) of an unfinished multi-packet logical packet. */
  #parts: Buffer[] = [];
  #partsLength = 0;
  /** Once the limit was exceeded the stream cannot be resynchronised: every later push() fails too. */
  #error: PacketTooLargeError | null = null;

  constructor(maxPayload: number) {
    this.#maxPayload = maxPayload;
  }

  /**
   * Bytes received but not yet returned as a packet (handed to the relay after login), exactly as
   * they arrived, including the physical packets of an unfinished multi-packet payload.
   */
  takeBuffered(): Buffer | null {
    const pending = this.#consume(this.#pendingLength);
    const parts = this.#parts;
    this.#pending = [];
    this.#pendingLength = 0;
    this.#offset = 0;
    this.#parts = [];
    this.#partsLength = 0;
    if (parts.length === 0) return pending.length > 0 ? pending : null;
    return Buffer.concat([...parts, pending]);
  }

  /** Append a chunk and return every logical packet it completes, in order. */
  push(chunk: Buffer): Packet[] {
    if (this.#error !== null) throw this.#error;
    const packets: Packet[] = [];
    if (chunk.length === 0) return packets;
    this.#pending.push(chunk);
    this.#pendingLength += chunk.length;
    while (this.#pendingLength >= 4) {
      const len = this.#byteAt(0) | (this.#byteAt(1) << 8) | (this.#byteAt(2) << 16);
      const seq = this.#byteAt(3);
      if (this.#partsLength + len > this.#maxPayload) {
        this.#error = new PacketTooLargeError(this.#maxPayload);
        throw this.#error;
      }
      if (this.#pendingLength - 4 < len) break;
      const raw = this.#consume(4 + len);
      const payload = raw.subarray(4);
      if (len === MAX_PACKET_PAYLOAD) {
        this.#parts.push(raw);
        this.#partsLength += len;
        continue;
      }
      if (this.#parts.length > 0) {
        const joined = Buffer.allocUnsafe(this.#partsLength + len);
        let at = 0;
        for (const part of this.#parts) at += part.copy(joined, at, 4);
        payload.copy(joined, at);
        this.#parts = [];
        this.#partsLength = 0;
        packets.push({ seq, payload: joined });
      } else {
        packets.push({ seq, payload });
      }
    }
    return packets;
  }

  /** The unconsumed byte at index `i` (callers ensure i < #pendingLength). */
  #byteAt(i: number): number {
    let at = this.#offset + i;
    for (const c of this.#pending) {
      if (at < c.length) return c[at]!;
      at -= c.length;
    }
    throw new Error('PacketFramer: read past buffered data');
  }

  /** Remove and return the next `n` unconsumed bytes: a view when they lie in one chunk, else a copy. */
  #consume(n: number): Buffer {
    const first = this.#pending[0];
    if (first === undefined || n === 0) return Buffer.alloc(0);
    this.#pendingLength -= n;
    if (first.length - this.#offset >= n) {
      const view = first.subarray(this.#offset, this.#offset + n);
      this.#offset += n;
      if (this.#offset === first.length) {
        this.#pending.shift();
        this.#offset = 0;
      }
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let used = 0; // chunks used up entirely (removed with one splice, not one shift each)
    while (filled < n) {
      const c = this.#pending[used]!;
      const take = Math.min(n - filled, c.length - this.#offset);
      c.copy(out, filled, this.#offset, this.#offset + take);
      filled += take;
      this.#offset += take;
      if (this.#offset === c.length) {
        used++;
        this.#offset = 0;
      }
    }
    this.#pending.splice(0, used);
    return out;
  }
}
