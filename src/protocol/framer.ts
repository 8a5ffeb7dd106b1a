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
  #pending: Buffer | null = null;
  /** Physical payloads of an unfinished multi-packet logical packet. */
  #parts: Buffer[] = [];
  #partsLength = 0;

  constructor(maxPayload: number) {
    this.#maxPayload = maxPayload;
  }

  /** Bytes received but not yet returned as a packet (handed to the relay after login). */
  takeBuffered(): Buffer | null {
    const rest = this.#pending;
    this.#pending = null;
    if (this.#parts.length > 0) {
      // Re-frame is not possible without sequence ids; callers only take after a complete packet.
      throw new Error('takeBuffered() inside a multi-packet payload');
    }
    return rest;
  }

  /** Append a chunk and return every logical packet it completes, in order. */
  push(chunk: Buffer): Packet[] {
    let buf = chunk;
    if (this.#pending !== null) {
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = null;
    }
    const packets: Packet[] = [];
    let at = 0;
    while (buf.length - at >= 4) {
      const len = buf.readUIntLE(at, 3);
      const seq = buf[at + 3]!;
      if (this.#partsLength + len > this.#maxPayload) throw new PacketTooLargeError(this.#maxPayload);
      if (buf.length - at - 4 < len) break;
      const payload = buf.subarray(at + 4, at + 4 + len);
      at += 4 + len;
      if (len === MAX_PACKET_PAYLOAD) {
        this.#parts.push(payload);
        this.#partsLength += len;
        continue;
      }
      if (this.#parts.length > 0) {
        this.#parts.push(payload);
        const joined = Buffer.concat(this.#parts, this.#partsLength + len);
        this.#parts = [];
        this.#partsLength = 0;
        packets.push({ seq, payload: joined });
      } else {
        packets.push({ seq, payload });
      }
    }
    if (at < buf.length) this.#pending = buf.subarray(at);
    return packets;
  }
}
