// The command-phase relay in native code: both sockets are handed to the byte pump in
// native/pump.c, which forwards on Node's own event loop without running JavaScript per packet.
// Same contract as Relay (relay.ts), which stays available as the portable implementation.

import type { Socket } from 'node:net';
import { closeFd, dupFd, fdOf, pumpClose, pumpStart, type PumpHandle } from './native.js';
import { logError } from '../util/log.js';
import type { ByteRelay, RelayCounters, RelayEnd, RelayOptions } from './relay.js';

const REASONS: Readonly<Record<string, RelayEnd>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, RelayEnd>, {
    client: 'client',
    server: 'server',
    'client-error': 'client-error',
    'server-error': 'server-error',
    shutdown: 'shutdown',
  }),
);

export class NativeRelay implements ByteRelay {
  readonly counters: RelayCounters = { clientBytes: 0, serverBytes: 0 };
  #handle: PumpHandle | null = null;
  /** null: no close requested; otherwise close() came before the pump started (with this packet). */
  #closeRequested: Buffer | undefined | null = null;
  #done = false;
  readonly #onClose: (reason: RelayEnd) => void;

  constructor(client: Socket, server: Socket, options: RelayOptions) {
    this.#onClose = options.onClose;
    // Bytes Node still queues for a socket (the login OK, normally written at once) must go out
    // before the pump takes over, or they would be lost with the handle.
    const pending = [client, server].filter((s) => s.writableLength > 0 && !s.destroyed);
    if (pending.length === 0) {
      this.#start(client, server, options);
      return;
    }
    let waiting = pending.length;
    for (const s of pending) {
      s.once('drain', () => {
        if (--waiting === 0) this.#start(client, server, options);
      });
    }
  }

  #start(client: Socket, server: Socket, options: RelayOptions): void {
    let clientFd = -1;
    let serverFd = -1;
    try {
      clientFd = dupFd(fdOf(client));
      serverFd = dupFd(fdOf(server));
      this.#handle = pumpStart(clientFd, serverFd, options.clientLeftover, options.serverLeftover, (reason, c, s) => {
        this.counters.clientBytes = c;
        this.counters.serverBytes = s;
        this.#done = true;
        this.#handle = null;
        // An exception thrown into the native callback would be fatal for the whole daemon.
        try {
          this.#onClose(REASONS[reason] ?? 'server-error');
        } catch (e) {
          logError(`relay close handler failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        }
      });
    } catch {
      // A socket already gone (the peer left while we waited): nothing to relay.
      if (clientFd >= 0) closeFd(clientFd);
      if (serverFd >= 0) closeFd(serverFd);
      client.destroy();
      server.destroy();
      this.#done = true;
      this.#onClose('client-error');
      return;
    }
    // The pump has its own copies of the fds; closing Node's handles releases only the originals.
    client.destroy();
    server.destroy();
    if (this.#closeRequested !== null) this.close(this.#closeRequested);
  }

  /** Close both sides now (shutdown), writing a last packet to the client if it can take it. */
  close(lastClientPacket?: Buffer): void {
    if (this.#done) return;
    if (this.#handle === null) {
      this.#closeRequested = lastClientPacket;
      return;
    }
    pumpClose(this.#handle, lastClientPacket);
  }
}
