// PacketReader: the one bounds-checked cursor over a packet payload. Every read that would run
// past the end throws MalformedPacketError; length fields from the wire are never trusted.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html

import { MalformedPacketError } from '../util/errors.js';

export class PacketReader {
  readonly #buf: Buffer;
  #pos: number;
  readonly #end: number;

  /** `buf` is viewed, not copied: values returned by bytes()/rest() are views into it. */
  constructor(buf: Buffer, start = 0, end = buf.length) {
    // A window reaching outside `buf` would defeat the bounds checks below (Buffer reads past its
    // end yield undefined or RangeError, not MalformedPacketError).
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > buf.length) {
      throw new RangeError(`PacketReader window [${start}, ${end}) outside a buffer of ${buf.length} bytes`);
    }
    this.#buf = buf;
    this.#pos = start;
    this.#end = end;
  }

  get remaining(): number {
    return this.#end - this.#pos;
  }

  get position(): number {
    return this.#pos;
  }

  #need(n: number): number {
    const at = this.#pos;
    if (n < 0 || this.#end - at < n) throw new MalformedPacketError();
    this.#pos = at + n;
    return at;
  }

  int1(): number {
    return this.#buf[this.#need(1)]!;
  }

  peek1(): number {
    if (this.#pos >= this.#end) throw new MalformedPacketError();
    return this.#buf[this.#pos]!;
  }

  int2(): number {
    return this.#buf.readUInt16LE(this.#need(2));
  }

  int3(): number {
    return this.#buf.readUIntLE(this.#need(3), 3);
  }

  int4(): number {
    return this.#buf.readUInt32LE(this.#need(4));
  }

  /** 8-byte integer as a JS number (exact up to 2^53; callers only use it for counters). */
  int8(): number {
    const at = this.#need(8);
    return this.#buf.readUInt32LE(at) + this.#buf.readUInt32LE(at + 4) * 2 ** 32;
  }

  /** Length-encoded integer. 0xFB (NULL) and 0xFF are not valid integers here. */
  lenencInt(): number {
    const first = this.int1();
    if (first < 0xfb) return first;
    switch (first) {
      case 0xfc:
        return this.int2();
      case 0xfd:
        return this.int3();
      case 0xfe:
        return this.int8();
      default:
        throw new MalformedPacketError();
    }
  }

  bytes(n: number): Buffer {
    const at = this.#need(n);
    return this.#buf.subarray(at, at + n);
  }

  lenencBytes(): Buffer {
    return this.bytes(this.lenencInt());
  }

  /** NUL-terminated string; a missing terminator is malformed (never scan past the payload). */
  nulBytes(): Buffer {
    const at = this.#pos;
    const nul = this.#buf.indexOf(0, at);
    if (nul < 0 || nul >= this.#end) throw new MalformedPacketError();
    this.#pos = nul + 1;
    return this.#buf.subarray(at, nul);
  }

  /** NUL-terminated string, or the rest of the payload when no terminator is present. */
  nulOrRestBytes(): Buffer {
    const at = this.#pos;
    const nul = this.#buf.indexOf(0, at);
    if (nul < 0 || nul >= this.#end) {
      this.#pos = this.#end;
      return this.#buf.subarray(at, this.#end);
    }
    this.#pos = nul + 1;
    return this.#buf.subarray(at, nul);
  }

  rest(): Buffer {
    const at = this.#pos;
    this.#pos = this.#end;
    return this.#buf.subarray(at, this.#end);
  }

  skip(n: number): void {
    this.#need(n);
  }

  /** Mirrors myproxy's MustBeEmpty(): trailing bytes mean the packet is not what we think it is. */
  expectEnd(): void {
    if (this.#pos !== this.#end) throw new MalformedPacketError();
  }
}
