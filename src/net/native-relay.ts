// The command-phase relay in native code: both sockets are handed to the byte pump in
// native/pump.c, which forwards on Node's own event loop without running JavaScript per packet.
// Same contract as Relay (relay.ts), which stays available as the portable implementation.

import type { Socket } from 'node:net';
import { closeFd, dupFd, fdOf, pumpClose, pumpResume, pumpStalledMs, pumpStart, type PumpHandle } from './native.js';
import { logError } from '../util/log.js';
import type { ByteRelay, CommandInterceptor, RelayCounters, RelayEnd, RelayOptions } from './relay.js';

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
    let started = false;
    const startOnce = (): void => {
      if (started) return;
      started = true;
      this.#start(client, server, options);
    };
    for (const s of pending) {
      s.once('drain', () => {
        if (--waiting === 0) startOnce();
      });
      // A socket that closes instead of draining never emits 'drain': #start finds it gone and
      // ends the session (otherwise it would stay open until a shutdown's grace period ran out).
      s.once('close', startOnce);
    }
  }

  #start(client: Socket, server: Socket, givenOptions: RelayOptions): void {
    let options = givenOptions;
    let clientFd = -1;
    let serverFd = -1;
    try {
      // Node may have read bytes from the kernel into its own buffer even while paused: they go
      // first, or they would be lost with the socket object.
      const toServer = concatDefined(options.clientLeftover, drainReadable(client));
      const toClient = concatDefined(options.serverLeftover, drainReadable(server));
      options = { ...options, clientLeftover: toServer, serverLeftover: toClient };
      clientFd = dupFd(fdOf(client));
      serverFd = dupFd(fdOf(server));
      const intercept = options.intercept;
      this.#handle = pumpStart(
        clientFd,
        serverFd,
        options.clientLeftover,
        options.serverLeftover,
        (reason, c, s) => {
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
        },
        intercept === undefined ? null : Uint8Array.from(intercept.commands),
        intercept === undefined ? null : (packet) => this.#intercepted(intercept, packet),
      );
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

  #intercepted(intercept: CommandInterceptor, packet: Buffer): void {
    // Called from inside the pump: answer from a later turn of the event loop, never re-entrantly.
    setImmediate(() => {
      intercept.onCommand(packet).then(
        (reply) => {
          if (this.#done || this.#handle === null) return;
          if (reply.close !== undefined) pumpClose(this.#handle, reply.close);
          else pumpResume(this.#handle, reply.toServer ?? null, reply.toClient ?? null);
        },
        (e: unknown) => {
          logError(`command interception failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
          if (!this.#done && this.#handle !== null) pumpClose(this.#handle);
        },
      );
    });
  }

  stalledMs(): number {
    return this.#done || this.#handle === null ? 0 : pumpStalledMs(this.#handle);
  }

  abort(): void {
    this.close();
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

/** Everything a paused socket has buffered (socket.read() until it has nothing more). */
function drainReadable(socket: Socket): Buffer | null {
  const parts: Buffer[] = [];
  for (;;) {
    const chunk = socket.read() as Buffer | null;
    if (chunk === null) break;
    parts.push(chunk);
  }
  return parts.length === 0 ? null : Buffer.concat(parts);
}

function concatDefined(a: Buffer | null, b: Buffer | null): Buffer | null {
  if (a === null || a.length === 0) return b;
  if (b === null) return a;
  return Buffer.concat([a, b]);
}
