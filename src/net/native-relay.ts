// The command-phase relay in native code: both sockets are handed to the byte pump in
// native/pump.c, which forwards on Node's own event loop without running JavaScript per packet,
// and follows the protocol with the response tracker. Same contract as Relay (relay.ts).

import type { Socket } from 'node:net';
import { addonFunctions, closeFd, dupFd, fdOf, type PumpHandle } from './native.js';
import { logError } from '../util/log.js';
import { ownCopy } from '../util/bytes.js';
import {
  CLOSE_DEADLINE_MS,
  DEFAULT_MAX_INTERCEPTED_PACKET,
  type ByteRelay,
  type CommandInterceptor,
  type InterceptReply,
  type RelayCounters,
  type RelayEnd,
  type RelayOptions,
  type RelayState,
} from './relay.js';
import { PumpEvent, UNTRACKED_REASONS, decodeRecord, encodeTrackerConfig, newRecordArray } from './tracking.js';
import { FdPacketChannel } from './packet-channel.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';

const REASONS: Readonly<Record<string, RelayEnd>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, RelayEnd>, {
    client: 'client',
    server: 'server',
    'client-error': 'client-error',
    'server-error': 'server-error',
    shutdown: 'shutdown',
    'client-malformed': 'client-malformed',
    'out-of-memory': 'out-of-memory',
    'poll-error': 'poll-error',
    'internal-error': 'internal-error',
  }),
);

/** The relay could not start (no file descriptor for the pump's copies, a socket already gone). */
export class RelayStartError extends ProxyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.RELAY_START, message, options);
  }
}

/**
 * Where the pump puts an intercepted packet for JavaScript (one for every pump of this Node
 * environment: the packet is copied out at once), made when the first relay that intercepts
 * starts. A bigger packet comes as a Buffer of its own.
 */
const INBOX_BYTES = 16 * 1024;
let inbox: Buffer | null = null;

export class NativeRelay implements ByteRelay {
  readonly counters: RelayCounters = { clientBytes: 0, serverBytes: 0 };
  #handle: PumpHandle | null = null;
  /** null: no close requested; otherwise close() came before the pump started (with this packet). */
  #closeRequested: Buffer | undefined | null = null;
  #done = false;
  #deadline: NodeJS.Timeout | undefined;
  readonly #onClose: (reason: RelayEnd, keptServerFd?: number) => void;
  /** release() came before the pump started. */
  #releaseRequested = false;

  /**
   * Throws RelayStartError when the pump cannot start at once (the sockets are still the caller's).
   * A client or server given as an FdPacketChannel (detached) hands its fd to the pump as it is.
   */
  constructor(client: Socket | FdPacketChannel, server: Socket | FdPacketChannel, options: RelayOptions) {
    this.#onClose = options.onClose;
    // Bytes Node still queues for a socket must go out before the pump takes over, or they would be
    // lost with the handle (the login OK normally travels with the pump: serverLeftover). An
    // FdPacketChannel queues nothing: its writes are made at once.
    const pending: Socket[] = [];
    for (const s of [client, server]) {
      if (!(s instanceof FdPacketChannel) && s.writableLength > 0 && !s.destroyed) pending.push(s);
    }
    if (pending.length === 0) {
      this.#start(client, server, options, true);
      return;
    }
    let waiting = pending.length;
    let started = false;
    const startOnce = (): void => {
      if (started) return;
      started = true;
      try {
        this.#start(client, server, options, false);
      } catch {
        // reported through onClose by #start
      }
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

  #start(
    client: Socket | FdPacketChannel,
    server: Socket | FdPacketChannel,
    options: RelayOptions,
    synchronous: boolean,
  ): void {
    const bareFd = server instanceof FdPacketChannel;
    const bareClient = client instanceof FdPacketChannel;
    let clientFd = -1;
    let serverFd = -1;
    const addon = addonFunctions();
    const tracking = options.tracking ?? { capabilities: 0, track: true, stats: null };
    const intercept = options.intercept;
    const record = tracking.onResponse !== undefined ? newRecordArray() : null;
    if (intercept !== undefined && inbox === null) {
      inbox = Buffer.allocUnsafeSlow(INBOX_BYTES);
      addon.pumpInbox(inbox);
    }
    try {
      // Node may have read bytes from the kernel into its own buffer even while paused: they go
      // first, or they would be lost with the socket object.
      const toServer = bareClient
        ? options.clientLeftover
        : concatDefined(options.clientLeftover, drainReadable(client));
      const toClient = bareFd ? options.serverLeftover : concatDefined(options.serverLeftover, drainReadable(server));
      clientFd = bareClient ? client.fd : dupFd(fdOf(client));
      serverFd = bareFd ? server.fd : dupFd(fdOf(server));
      const maxHold = Math.max(64, intercept?.maxPacket ?? DEFAULT_MAX_INTERCEPTED_PACKET);
      this.#handle = addon.pumpStart(
        clientFd,
        serverFd,
        toServer,
        toClient,
        encodeTrackerConfig(tracking, intercept?.commands ?? [], maxHold),
        tracking.stats,
        tracking.accountStats ?? null,
        record,
        (type, a, b, c, d) => {
          // An exception thrown into the native callback would be fatal for the whole daemon.
          try {
            switch (type) {
              case PumpEvent.CLOSE:
                this.#closed(a as string, b as number, c as number, d as number | undefined);
                break;
              case PumpEvent.INTERCEPT:
                // A packet in the inbox (its length) is copied out before anything else runs.
                if (intercept !== undefined) {
                  this.#intercepted(
                    intercept,
                    typeof a === 'number' ? ownCopy(inbox!, 0, a) : (a as Buffer),
                    b as boolean,
                  );
                }
                break;
              case PumpEvent.UNTRACKED:
                tracking.onUntracked?.(UNTRACKED_REASONS[a as number] ?? `reason ${String(a)}`);
                break;
              case PumpEvent.RESPONSE:
                if (record !== null) tracking.onResponse?.(decodeRecord(record));
                break;
            }
          } catch (e) {
            logError(`relay event handler failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
          }
        },
        options.keepServer === true,
      );
    } catch (e) {
      if (clientFd >= 0 && !bareClient) closeFd(clientFd);
      if (serverFd >= 0 && !bareFd) closeFd(serverFd);
      const error = new RelayStartError(`cannot start the relay: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
      if (synchronous) throw error;
      // Deferred start (the sockets had to drain first): the client gets the failure packet if any.
      server.destroy();
      if (options.failurePacket !== undefined && !client.destroyed) client.end(options.failurePacket);
      else client.destroy();
      this.#done = true;
      this.#onClose('internal-error');
      return;
    }
    // The pump has its own copies of the fds; closing Node's handles releases only the originals.
    // A bare fd is the pump's own now.
    if (bareClient) client.handOver();
    else client.destroy();
    if (bareFd) server.handOver();
    else server.destroy();
    if (this.#closeRequested !== null) this.close(this.#closeRequested);
    else if (this.#releaseRequested) this.release();
  }

  #closed(reason: string, clientBytes: number, serverBytes: number, keptFd: number | undefined): void {
    this.counters.clientBytes = clientBytes;
    this.counters.serverBytes = serverBytes;
    this.#done = true;
    this.#handle = null;
    clearTimeout(this.#deadline);
    this.#onClose(REASONS[reason] ?? 'internal-error', keptFd !== undefined && keptFd >= 0 ? keptFd : undefined);
  }

  release(): void {
    if (this.#done) return;
    if (this.#handle === null) {
      this.#releaseRequested = true;
      return;
    }
    addonFunctions().pumpRelease(this.#handle);
  }

  #intercepted(intercept: CommandInterceptor, packet: Buffer, truncated: boolean): void {
    let reply: InterceptReply | Promise<InterceptReply>;
    try {
      reply = intercept.onCommand(packet, truncated);
    } catch (e) {
      this.#interceptFailed(e);
      return;
    }
    // A reply given at once is carried out at once: the pump defers a call that arrives while it
    // is busy (it is, inside this event) and runs it before it returns to the loop.
    if (reply instanceof Promise) {
      reply.then(
        (r) => this.#answer(r, packet, truncated),
        (e: unknown) => this.#interceptFailed(e),
      );
    } else {
      this.#answer(reply, packet, truncated);
    }
  }

  #answer(reply: InterceptReply, packet: Buffer, truncated: boolean): void {
    if (this.#done || this.#handle === null) return;
    if (reply.close !== undefined) {
      this.close(reply.close);
      return;
    }
    // The command going on as it came: the pump still holds it, no bytes need to go back.
    const toServer = reply.toServer === packet && !truncated ? true : (reply.toServer ?? null);
    addonFunctions().pumpResume(this.#handle, toServer, reply.toClient ?? null);
  }

  #interceptFailed(e: unknown): void {
    logError(`command interception failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    this.close();
  }

  stalledMs(): number {
    if (this.#done) return 0;
    if (this.#handle === null) return 0;
    return addonFunctions().pumpStalledMs(this.#handle);
  }

  state(): RelayState | null {
    if (this.#done || this.#handle === null) return null;
    const info = addonFunctions().pumpInfo(this.#handle);
    if (info === null) return null;
    return { inFlight: info[0], untracked: info[1], atBoundary: info[2], serverStatus: info[3] };
  }

  abort(): void {
    if (this.#done) return;
    if (this.#handle === null) {
      this.#closeRequested = undefined;
      return;
    }
    addonFunctions().pumpAbort(this.#handle);
  }

  /** Close both sides: the client gets what it is owed, then `lastClientPacket`, within a deadline. */
  close(lastClientPacket?: Buffer): void {
    if (this.#done) return;
    if (this.#handle === null) {
      this.#closeRequested = lastClientPacket;
      return;
    }
    const handle = this.#handle;
    addonFunctions().pumpClose(handle, lastClientPacket);
    if (this.#deadline === undefined) {
      this.#deadline = setTimeout(() => {
        if (!this.#done) addonFunctions().pumpAbort(handle);
      }, CLOSE_DEADLINE_MS);
      this.#deadline.unref();
    }
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
