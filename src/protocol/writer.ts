// PacketWriter: builds one logical packet (header + payload) in a growable buffer and splits
// payloads of 0xFFFFFF bytes or more into continuation packets on finish().
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html

import { MAX_PACKET_PAYLOAD } from './constants.js';

export class PacketWriter {
  #buf: Buffer;
  #len = 0;

  constructor(initialCapacity = 256) {
    this.#buf = Buffer.allocUnsafe(initialCapacity);
  }

  /**
   * Make room for `n` bytes and return their offset. Callers must call this before reading
   * `this.#buf`: it may replace the buffer, and `this.#buf.write…(v, this.#reserve(n))` would
   * evaluate the old buffer first and write into it.
   */
  #reserve(n: number): number {
    const at = this.#len;
    if (at + n > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, at + n));
      this.#buf.copy(grown, 0, 0, at);
      this.#buf = grown;
    }
    this.#len = at + n;
    return at;
  }

  int1(v: number): this {
    const at = this.#reserve(1);
    this.#buf[at] = v & 0xff;
    return this;
  }

  int2(v: number): this {
    const at = this.#reserve(2);
    this.#buf.writeUInt16LE(v & 0xffff, at);
    return this;
  }

  int3(v: number): this {
    const at = this.#reserve(3);
    this.#buf.writeUIntLE(v & 0xffffff, at, 3);
    return this;
  }

  int4(v: number): this {
    const at = this.#reserve(4);
    this.#buf.writeUInt32LE(v >>> 0, at);
    return this;
  }

  int8(v: number): this {
    const at = this.#reserve(8);
    this.#buf.writeUInt32LE((v % 2 ** 32) >>> 0, at);
    this.#buf.writeUInt32LE(Math.floor(v / 2 ** 32) >>> 0, at + 4);
    return this;
  }

  lenencInt(v: number): this {
    if (v < 0xfb) return this.int1(v);
    if (v <= 0xffff) return this.int1(0xfc).int2(v);
    if (v <= 0xffffff) return this.int1(0xfd).int3(v);
    return this.int1(0xfe).int8(v);
  }

  bytes(data: Uint8Array | string): this {
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const at = this.#reserve(b.length);
    this.#buf.set(b, at);
    return this;
  }

  zeros(n: number): this {
    const at = this.#reserve(n);
    this.#buf.fill(0, at, this.#len);
    return this;
  }

  nulString(data: Uint8Array | string): this {
    return this.bytes(data).int1(0);
  }

  lenencBytes(data: Uint8Array | string): this {
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    return this.lenencInt(b.length).bytes(b);
  }

  get length(): number {
    return this.#len;
  }

  /** The payload written so far (a view). */
  payload(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }

  /** Frames the payload with sequence id `seq`, splitting at 0xFFFFFF (the trailing empty packet included). */
  finish(seq: number): Buffer {
    return framePayload(this.payload(), seq);
  }
}

/**
 * Frame a payload as one or more physical packets starting at sequence id `seq`.
 * A payload that is an exact multiple of 0xFFFFFF ends with an empty packet, as the protocol requires.
 */
export function framePayload(payload: Uint8Array, seq: number): Buffer {
  const chunks = Math.floor(payload.length / MAX_PACKET_PAYLOAD) + 1;
  const out = Buffer.allocUnsafe(payload.length + 4 * chunks);
  let src = 0;
  let dst = 0;
  for (let i = 0; i < chunks; i++) {
    const n = Math.min(MAX_PACKET_PAYLOAD, payload.length - src);
    out.writeUIntLE(n, dst, 3);
    out[dst + 3] = (seq + i) & 0xff;
    out.set(payload.subarray(src, src + n), dst + 4);
    src += n;
    dst += 4 + n;
  }
  return out;
}
