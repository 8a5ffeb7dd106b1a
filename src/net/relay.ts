// The command-phase relay: bytes flow client <-> backend unparsed, with backpressure both ways
// (a slow reader pauses the other side instead of growing a buffer). This stage is deliberately
// self-contained so that a faster pump can replace it without touching the protocol core.

import type { Socket } from 'node:net';
import { ClientCommandScanner, heldPacketLength } from './command-scanner.js';

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
  /** Client commands to take out of the stream and hand to `intercept.onCommand`. */
  readonly intercept?: CommandInterceptor;
}

/**
 * Takes chosen client commands out of the relayed stream. A command packet (sequence id 0, not a
 * continuation) whose first payload byte is in `commands` is held, not forwarded; the relay reads
 * nothing more from the client until `onCommand` has answered. Server traffic keeps flowing.
 */
export interface CommandInterceptor {
  readonly commands: readonly number[];
  /** `packet` is the whole physical packet (header + payload, at most 64 KiB of payload). */
  onCommand(packet: Buffer): Promise<InterceptReply>;
}

/** What to do with an intercepted command: send bytes either way, or end the session with `close`. */
export interface InterceptReply {
  readonly toServer?: Buffer;
  readonly toClient?: Buffer;
  /** End the session after writing these bytes to the client. */
  readonly close?: Buffer;
}

/** Largest intercepted command payload (COM_INIT_DB, COM_CHANGE_USER are small). */
export const MAX_INTERCEPTED_PAYLOAD = 64 * 1024;

export type RelayEnd = 'client' | 'server' | 'client-error' | 'server-error' | 'shutdown';

/** What the session engine needs from a relay implementation (this one, or the native pump). */
export interface ByteRelay {
  readonly counters: RelayCounters;
  close(lastClientPacket?: Buffer): void;
  /** How long (ms) bytes for one side have waited without that side taking any; 0 when none wait. */
  stalledMs(): number;
  /** Close both sides now without writing anything more (a peer that stopped reading). */
  abort(): void;
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
  /** Per destination socket: when its buffer last went over the mark without draining since. */
  readonly #stalledSince = new Map<Socket, number>();

  constructor(client: Socket, server: Socket, options: RelayOptions) {
    this.#client = client;
    this.#server = server;
    this.#onClose = options.onClose;
    if (options.clientLeftover !== null && options.clientLeftover.length > 0) server.write(options.clientLeftover);
    if (options.serverLeftover !== null && options.serverLeftover.length > 0) client.write(options.serverLeftover);
    this.#pump(client, server, 'client');
    this.#pump(server, client, 'server');
    if (options.intercept !== undefined) this.#interceptClientCommands(client, server, options.intercept);
  }

  /**
   * Replace the plain client -> server forwarding with one that takes intercepted commands out of
   * the stream (same rules as the native pump).
   */
  #interceptClientCommands(client: Socket, server: Socket, intercept: CommandInterceptor): void {
    client.removeAllListeners('data');
    const scanner = new ClientCommandScanner(intercept.commands);
    let held: Buffer | null = null;
    let waiting = false;
    const counters = this.counters;
    const onBytes = (chunk: Buffer): void => {
      if (held !== null) {
        held = Buffer.concat([held, chunk]);
      } else {
        const r = scanner.scan(chunk);
        if (r.forward.length > 0 && !server.write(r.forward)) client.pause();
        held = r.held;
      }
      if (held === null || waiting) return;
      const total = heldPacketLength(held);
      if (total > 4 + MAX_INTERCEPTED_PAYLOAD || held.length > 4 + 2 * MAX_INTERCEPTED_PAYLOAD) {
        this.close();
        return;
      }
      if (total < 0 || held.length < total) return;
      waiting = true;
      client.pause();
      const packet = held.subarray(0, total);
      intercept.onCommand(Buffer.from(packet)).then(
        (reply) => {
          if (this.#end !== null) return;
          if (reply.close !== undefined) {
            this.close(reply.close);
            return;
          }
          if (reply.toServer !== undefined) server.write(reply.toServer);
          if (reply.toClient !== undefined) client.write(reply.toClient);
          const rest = held!.subarray(total);
          held = null;
          waiting = false;
          if (rest.length > 0) onBytes(Buffer.from(rest));
          if (!waiting) client.resume();
        },
        () => this.close(),
      );
    };
    client.on('data', (chunk: Buffer) => {
      counters.clientBytes += chunk.length;
      onBytes(chunk);
    });
  }

  #pump(from: Socket, to: Socket, side: 'client' | 'server'): void {
    const counters = this.counters;
    const onDrain = (): void => {
      this.#stalledSince.delete(to);
      from.resume();
    };
    to.on('drain', onDrain);
    from.on('data', (chunk: Buffer) => {
      if (side === 'client') counters.clientBytes += chunk.length;
      else counters.serverBytes += chunk.length;
      if (!to.write(chunk)) {
        from.pause();
        if (!this.#stalledSince.has(to)) this.#stalledSince.set(to, Date.now());
      }
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

  stalledMs(): number {
    let since = Infinity;
    for (const t of this.#stalledSince.values()) since = Math.min(since, t);
    return since === Infinity ? 0 : Date.now() - since;
  }

  abort(): void {
    this.#finish('shutdown');
    this.#client.destroy();
    this.#server.destroy();
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
