// Follows the packet boundaries of a client's byte stream without copying it, to find command
// packets that must not be forwarded as they are (see CommandInterceptor in relay.ts). The native
// pump (native/pump.c, client_to_server) applies exactly the same rules.

import { MAX_PACKET_PAYLOAD } from '../protocol/constants.js';

export interface ScanResult {
  /** Bytes to forward now (a view of the input). */
  readonly forward: Buffer;
  /** An intercepted command packet and everything after it, when one starts in this input. */
  readonly held: Buffer | null;
}

export class ClientCommandScanner {
  readonly #commands: ReadonlySet<number>;
  /** Payload bytes of the current packet still to come. */
  #left = 0;
  /** The current packet continues a 0xFFFFFF one (its first byte is data, not a command). */
  #continued = false;
  /** An incomplete header (under 5 bytes) carried over to the next input. */
  #partial: Buffer | null = null;

  constructor(commands: readonly number[]) {
    this.#commands = new Set(commands);
  }

  scan(input: Buffer): ScanResult {
    let data = input;
    if (this.#partial !== null) {
      data = Buffer.concat([this.#partial, input]);
      this.#partial = null;
    }
    let pos = 0;
    while (pos < data.length) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, data.length - pos);
        pos += n;
        this.#left -= n;
        continue;
      }
      if (data.length - pos < 4) break;
      const length = data.readUIntLE(pos, 3);
      const command = !this.#continued && data[pos + 3] === 0 && length > 0;
      if (command && data.length - pos < 5) break;
      if (command && this.#commands.has(data[pos + 4]!)) {
        return { forward: data.subarray(0, pos), held: Buffer.from(data.subarray(pos)) };
      }
      this.#continued = length === MAX_PACKET_PAYLOAD;
      this.#left = length;
      pos += 4;
    }
    if (pos < data.length) this.#partial = Buffer.from(data.subarray(pos));
    return { forward: data.subarray(0, pos), held: null };
  }
}

/** Length of the whole physical packet at the start of `held`, or -1 while its header is incomplete. */
export function heldPacketLength(held: Buffer): number {
  return held.length < 4 ? -1 : 4 + held.readUIntLE(0, 3);
}
