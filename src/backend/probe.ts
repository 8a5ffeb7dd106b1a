// The startup probe: read the greeting of every server the configuration names, so the proxy's
// first greeting to clients already offers what those servers share (backend/capabilities.ts).

import type { Socket } from 'node:net';
import { formatAddress, type SocketAddress } from '../net/address.js';
import { connectSocket } from '../net/connect.js';
import { PacketChannel } from '../net/packet-channel.js';
import { PacketHeader } from '../protocol/constants.js';
import { parseHandshakeV10 } from '../protocol/packets/handshake.js';
import { errorMessage } from '../util/errors.js';
import { serverProfiles } from './capabilities.js';

const MAX_GREETING_PAYLOAD = 64 * 1024;
/** At most this long per server (or the connect timeout, if shorter): a greeting comes at once. */
export const PROBE_TIMEOUT_MS = 2000;

/**
 * Connects to each address once (in parallel), reads its greeting and closes. A server that cannot
 * be reached is only logged: sessions and monitoring learn its greeting later. Never rejects.
 */
export async function probeServers(
  addresses: readonly SocketAddress[],
  timeoutMs: number,
  log: (line: string) => void,
): Promise<void> {
  const unique = new Map<string, SocketAddress>();
  for (const a of addresses) unique.set(formatAddress(a), a);
  await Promise.all(
    [...unique].map(async ([label, address]) => {
      let socket: Socket | undefined;
      try {
        socket = await connectSocket(address, timeoutMs);
        socket.on('error', () => undefined);
        const channel = new PacketChannel(socket, MAX_GREETING_PAYLOAD);
        const first = await channel.next(timeoutMs);
        if (first.payload[0] === PacketHeader.ERR) throw new Error('the server answered with an error');
        const greeting = parseHandshakeV10(first.payload);
        serverProfiles.note(label, greeting);
        log(
          `server ${label}: version=${JSON.stringify(greeting.serverVersion.toString('latin1'))} ` +
            `capabilities=0x${greeting.capabilities.toString(16)} extended=0x${greeting.extendedCapabilities.toString(16)}`,
        );
      } catch (e) {
        log(`server ${label}: greeting not learned at startup (${errorMessage(e)})`);
      } finally {
        socket?.destroy();
      }
    }),
  );
}
