// The beng-proxy control protocol that CM4all myproxy listens to (control_listen) and that its
// control_client library sends: a datagram is a 4-byte big-endian magic, then commands, each a
// big-endian u16 payload length, a big-endian u16 command number, and the payload padded with
// zeros to a multiple of 4. myproxy acts on DISCONNECT_DATABASE only.

export const CONTROL_MAGIC = 0x63046101;
export const CONTROL_DEFAULT_PORT = 5478;

/** Command numbers (the protocol's own names). */
export const ControlCommand = {
  NOP: 0,
  TCACHE_INVALIDATE: 1,
  ENABLE_NODE: 2,
  FADE_NODE: 3,
  NODE_STATUS: 4,
  DUMP_POOLS: 5,
  STATS: 6,
  VERBOSE: 7,
  FADE_CHILDREN: 8,
  DISABLE_ZEROCONF: 9,
  ENABLE_ZEROCONF: 10,
  FLUSH_NFS_CACHE: 11,
  FLUSH_FILTER_CACHE: 12,
  STOPWATCH_PIPE: 13,
  DISCARD_SESSION: 14,
  FLUSH_HTTP_CACHE: 15,
  TERMINATE_CHILDREN: 16,
  DISABLE_QUEUE: 17,
  ENABLE_QUEUE: 18,
  RELOAD_STATE: 19,
  DISCONNECT_DATABASE: 20,
  DISABLE_URING: 21,
  RESET_LIMITER: 22,
  REJECT_CLIENT: 23,
  TARPIT_CLIENT: 24,
  CANCEL_JOB: 25,
  EXPIRE_TCACHE_TAG: 26,
} as const;

export interface ControlCommandPacket {
  readonly command: number;
  /** A view into the datagram (copy it to keep it). */
  readonly payload: Buffer;
}

export interface ParsedDatagram {
  /** The commands before the first malformed one (they are carried out, as myproxy does). */
  readonly commands: readonly ControlCommandPacket[];
  /** Why the rest of the datagram was refused (myproxy's messages), if it was. */
  readonly error: string | undefined;
}

const padded = (n: number): number => (n + 3) & ~3;

/** Splits a datagram into its commands; never throws. */
export function parseControlDatagram(datagram: Buffer): ParsedDatagram {
  if (datagram.length < 4 || datagram.readUInt32BE(0) !== CONTROL_MAGIC) return { commands: [], error: 'wrong magic' };
  let length = datagram.length - 4;
  if (length % 4 !== 0) return { commands: [], error: `odd control packet (length=${length})` };
  const commands: ControlCommandPacket[] = [];
  let pos = 4;
  while (length > 0) {
    const payloadLength = datagram.readUInt16BE(pos);
    const command = datagram.readUInt16BE(pos + 2);
    pos += 4;
    length -= 4;
    if (length < payloadLength) {
      return { commands, error: `partial payload (length=${length}, expected=${payloadLength})` };
    }
    commands.push({ command, payload: datagram.subarray(pos, pos + payloadLength) });
    const step = Math.min(padded(payloadLength), length);
    pos += step;
    length -= step;
  }
  return { commands, error: undefined };
}

/** Builds a datagram command by command (control_client's builder). */
export class ControlDatagramBuilder {
  readonly #parts: Buffer[] = [];
  #length = 4;

  constructor() {
    const magic = Buffer.alloc(4);
    magic.writeUInt32BE(CONTROL_MAGIC, 0);
    this.#parts.push(magic);
  }

  /** Adds one command; the payload length is written modulo 2^16, as myproxy's builder does. */
  add(command: number, payload: Uint8Array): this {
    const header = Buffer.alloc(4);
    header.writeUInt16BE(payload.length & 0xffff, 0);
    header.writeUInt16BE(command & 0xffff, 2);
    const padding = padded(payload.length) - payload.length;
    this.#parts.push(header, Buffer.from(payload), Buffer.alloc(padding));
    this.#length += 4 + payload.length + padding;
    return this;
  }

  get length(): number {
    return this.#length;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#parts, this.#length);
  }
}
