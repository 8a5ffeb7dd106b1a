// The command-phase relay: bytes flow client <-> backend unparsed, with backpressure both ways
// (a slow reader pauses the other side instead of growing a buffer). This stage is deliberately
// self-contained so that a faster pump can replace it without touching the protocol core.

import type { Socket } from 'node:net';

export interface RelayCounters {
  clientBytes: number;
  serverBytes: number;
}

export interface RelayOptions {
  /** Bytes from the client received during login but not yet forwarded. */
  readonly clientLeftover: Buffer | null;
  /** Bytes from the backend received during login but not yet forwarded. */
  readonly serverLeftover: Buffer | null;
  /** Called once when both sockets are finished (closed or destroyed). */
  readonly onClose: (reason: RelayEnd) => void;
}

export type RelayEnd = 'client' | 'server' | 'client-error' | 'server-error' | 'shutdown';

/** What the session engine needs from a relay implementation (this one, or the native pump). */
export interface ByteRelay {
  readonly counters: RelayCounters;
  close(lastClientPacket?: Buffer): void;
}

export type RelayKind = 'native' | 'js';

/** Relay between `client` and `server` until either side closes (the portable, JavaScript relay). */
export class Relay implements ByteRelay {
  readonly counters: RelayCounters = { clientBytes: 0, serverBytes: 0 };
  readonly #client: Socket;
  readonly #server: Socket;
  readonly #onClose: (reason: RelayEnd) => void;
  #end: RelayEnd | null = null;
  #open = 2;

  constructor(client: Socket, server: Socket, options: RelayOptions) {
    this.#client = client;
    this.#server = server;
    this.#onClose = options.onClose;
    if (options.clientLeftover !== null && options.clientLeftover.length > 0) server.write(options.clientLeftover);
    if (options.serverLeftover !== null && options.serverLeftover.length > 0) client.write(options.serverLeftover);
    this.#pump(client, server, 'client');
    this.#pump(server, client, 'server');
  }

  #pump(from: Socket, to: Socket, side: 'client' | 'server'): void {
    const counters = this.counters;
    const onDrain = (): void => {
      from.resume();
    };
    to.on('drain', onDrain);
    from.on('data', (chunk: Buffer) => {
      if (side === 'client') counters.clientBytes += chunk.length;
      else counters.serverBytes += chunk.length;
      if (!to.write(chunk)) from.pause();
    });
    from.on('end', () => {
      this.#finish(side);
      endOnce(to);
    });
    from.on('error', () => {
      this.#finish(side === 'client' ? 'client-error' : 'server-error');
      to.destroy();
      from.destroy();
    });
    from.on('close', () => {
      this.#finish(side);
      // Let queued bytes reach the other side, then close it too.
      endOnce(to);
      if (--this.#open === 0) this.#onClose(this.#end ?? side);
    });
    from.resume();
  }

  #finish(reason: RelayEnd): void {
    if (this.#end === null) this.#end = reason;
  }

  /** Close both sides now (shutdown), optionally writing a last packet to the client first. */
  close(lastClientPacket?: Buffer): void {
    this.#finish('shutdown');
    if (lastClientPacket !== undefined && !this.#client.writableEnded && !this.#client.destroyed) {
      this.#client.end(lastClientPacket);
    } else {
      endOnce(this.#client);
    }
    this.#server.destroy();
  }
}

/** end() a socket unless it is ended already (a second end() builds an Error with a stack trace). */
function endOnce(socket: Socket): void {
  if (!socket.writableEnded && !socket.destroyed) socket.end();
}
