// A backend-less session (client:accept() in on_handshake_response): the daemon is the whole
// server. Every command goes to on_query / on_command; what Lua leaves unanswered gets the answer
// a client needs to go on (COM_PING, COM_INIT_DB, COM_RESET_CONNECTION), or an ERR naming the
// command, never silence. One command at a time, in order, like a server thread.

import { PacketChannel } from '../net/packet-channel.js';
import { commandName } from '../net/tracking.js';
import { Command, ServerStatus } from '../protocol/constants.js';
import { logicalPayload, writeOkPacket } from '../protocol/packets/local-reply.js';
import { framePayload } from '../protocol/writer.js';
import { ClientErrors } from '../util/errors.js';
import { errPacket } from './client-login.js';
import { MAX_HOOKED_COMMAND, type CommandFilter } from './command-filter.js';
import type { InterceptReply } from '../net/relay.js';

/** How long a backend-less session may sit idle between commands (MariaDB's wait_timeout default). */
export const LOCAL_IDLE_TIMEOUT_MS = 8 * 3600 * 1000;

/** Commands that get no answer from a server, so none from us either. */
const SILENT = new Set<number>([Command.COM_STMT_SEND_LONG_DATA, Command.COM_STMT_CLOSE]);

export interface LocalHost {
  readonly filter: CommandFilter;
  readonly capabilities: number;
  /** COM_INIT_DB switched the database (no on_init_db refused it). */
  setDatabase(database: Buffer): void;
  /** True once the session is being closed from elsewhere (shutdown, control, KILL). */
  readonly closed: boolean;
}

/** Serves commands from `socket` until the client quits or goes away. `leftover`: bytes already read. */
export async function serveLocally(channel: PacketChannel, host: LocalHost): Promise<void> {
  const socket = channel.socket;
  const ok = (seq: number): Buffer =>
    writeOkPacket(
      seq,
      {
        affectedRows: 0,
        insertId: 0,
        status: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
        warnings: 0,
        info: Buffer.alloc(0),
      },
      host.capabilities,
    );
  for (;;) {
    const packet = await channel.next(LOCAL_IDLE_TIMEOUT_MS);
    if (host.closed) return;
    const payload = packet.payload;
    const command = payload[0];
    // The sequence id of a command is 0 (its last physical packet: the count of 16 MiB parts).
    const seq = packet.seq;
    if (command === undefined) {
      channel.send(errPacket(seq + 1, ClientErrors.BAD_HANDSHAKE, 'Empty command packet'));
      continue;
    }
    if (command === Command.COM_QUIT) return;
    const framed = framePayload(payload, (seq - Math.floor(payload.length / 0xffffff)) & 0xff);
    let reply: InterceptReply | Buffer = await host.filter.decide(framed, false, true);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- closed from elsewhere while Lua ran
    if (host.closed) return;
    if (Buffer.isBuffer(reply)) {
      // Lua left it to us (returned nothing, or forwarded it: there is no server to forward to).
      const body = logicalPayload(reply).subarray(1);
      switch (command) {
        case Command.COM_PING:
        case Command.COM_RESET_CONNECTION:
          reply = { toClient: ok(seq + 1) };
          break;
        case Command.COM_INIT_DB:
          host.setDatabase(Buffer.from(body));
          reply = { toClient: ok(seq + 1) };
          break;
        default:
          reply = SILENT.has(command)
            ? {}
            : {
                toClient: errPacket(
                  seq + 1,
                  ClientErrors.COMMAND_UNANSWERED,
                  `myproxy does not answer '${commandName(command)}' in this session`,
                ),
              };
      }
    }
    if (reply.close !== undefined) {
      channel.send(reply.close);
      return;
    }
    if (reply.toClient !== undefined && !socket.destroyed && !socket.write(reply.toClient)) {
      // A client that does not read its answers gets no more of them until it does.
      await new Promise<void>((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
    }
  }
}

/** The largest command a backend-less session reads (the hooks' limit). */
export const MAX_LOCAL_COMMAND = MAX_HOOKED_COMMAND;
