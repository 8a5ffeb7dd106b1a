// One health check of a cluster node (myproxy's CheckServer, bounded by one deadline): connect,
// read the greeting, optionally log in and ask `SELECT @@global.read_only`, then COM_QUIT.

import type { Socket } from 'node:net';
import { sha1 } from '../auth/native-password.js';
import { Capability, DEFAULT_CHARSET, PacketHeader } from '../protocol/constants.js';
import { parseErr } from '../protocol/packets/generic.js';
import { parseHandshakeV10 } from '../protocol/packets/handshake.js';
import {
  isEofPacket,
  parseColumnCount,
  parseTextRow,
  writeComQuery,
  writeComQuit,
} from '../protocol/packets/text-resultset.js';
import { formatAddress, type SocketAddress } from '../net/address.js';
import { connectSocket } from '../net/connect.js';
import { PacketChannel } from '../net/packet-channel.js';
import { loginToBackend } from '../backend/login.js';
import { serverProfiles } from '../backend/capabilities.js';
import { rsaLoginOptions, startBackendTls } from '../backend/tls.js';
import { errorMessage } from '../util/errors.js';

/** Health states, worst first (the order is the preference order: see docs/cluster.md). */
export const NODE_STATES = ['dead', 'auth_failed', 'unknown', 'read_only', 'alive'] as const;
export type NodeState = (typeof NODE_STATES)[number];

export interface CheckOptions {
  /** Log in as this user (otherwise the greeting alone counts as alive). */
  readonly user: Buffer | undefined;
  readonly password: Buffer | undefined;
  /** Ask `SELECT @@global.read_only` after login (needs `user`). */
  readonly noReadOnly: boolean;
  /** Bounds the whole check: connect, greeting, login, query. */
  readonly timeoutMs: number;
}

export interface CheckResult {
  readonly state: NodeState;
  /** Why, for the log: "ok", "read only", or the error. */
  readonly detail: string;
}

/** Capabilities of the check's login: plain 4.1 protocol, classic EOF packets (parsed below). */
const CHECK_CAPABILITIES =
  Capability.CLIENT_LONG_PASSWORD |
  Capability.CLIENT_PROTOCOL_41 |
  Capability.CLIENT_IGNORE_SIGPIPE |
  Capability.CLIENT_SECURE_CONNECTION |
  Capability.CLIENT_PLUGIN_AUTH;

const MAX_CHECK_PAYLOAD = 64 * 1024;
const READ_ONLY_QUERY = 'SELECT @@global.read_only';

/** Never rejects: every failure is a result ("dead", with the reason). */
export async function checkServer(address: SocketAddress, options: CheckOptions): Promise<CheckResult> {
  const deadline = Date.now() + options.timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  let socket: Socket | undefined;
  let deadlineTimer: NodeJS.Timeout | undefined;
  let timedOut = false;
  try {
    socket = await connectSocket(address, left());
    socket.on('error', () => undefined);
    // One deadline for everything after the connect: each read below also has its own timeout,
    // but a server that answers slowly at every step must not stretch the check beyond it.
    const connected = socket;
    deadlineTimer = setTimeout(() => {
      timedOut = true;
      connected.destroy();
    }, left());
    let channel = new PacketChannel(socket, MAX_CHECK_PAYLOAD);
    if (options.user === undefined) {
      const first = await channel.next(left());
      if (first.payload[0] === PacketHeader.ERR)
        return dead(`greeting is an error: ${parseErr(first.payload).message}`);
      serverProfiles.note(formatAddress(address), parseHandshakeV10(first.payload));
      return { state: 'alive', detail: 'ok' };
    }
    const password = options.password ?? Buffer.alloc(0);
    const login = await loginToBackend(
      channel,
      {
        clientCapabilities: CHECK_CAPABILITIES,
        maxPacketSize: 0x1000000,
        characterSet: DEFAULT_CHARSET,
        user: options.user,
        credentials: { password, passwordSha1: sha1(password) },
        database: Buffer.alloc(0),
        secureTransport: address.kind !== 'tcp',
        backendKey: formatAddress(address),
        // The check logs in the way sessions do: inside TLS where the address says so.
        ...(address.kind === 'tcp' && address.tls !== undefined
          ? {
              startTls: async () => {
                channel.detach();
                const secured = await startBackendTls(channel.socket, address.tls!, left());
                socket = secured;
                channel = new PacketChannel(secured, MAX_CHECK_PAYLOAD);
                return channel;
              },
            }
          : {}),
        ...rsaLoginOptions(address),
      },
      left(),
      // Monitoring keeps the greeting the proxy offers clients current (a server upgraded in place).
      (greeting) => serverProfiles.note(formatAddress(address), greeting),
    );
    if (login.kind === 'err') {
      return { state: 'auth_failed', detail: `login refused: ${login.err.errno} ${login.err.message}` };
    }
    let result: CheckResult = { state: 'alive', detail: 'ok' };
    if (options.noReadOnly) {
      channel.send(writeComQuery(READ_ONLY_QUERY));
      const value = await readSingleValue(channel, left);
      if (value === '1') result = { state: 'read_only', detail: 'read only' };
      else if (value !== '0') return dead(`unexpected @@global.read_only value ${JSON.stringify(value)}`);
    }
    socket.end(writeComQuit());
    return result;
  } catch (e) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the deadline timer while we awaited
    return dead(timedOut ? `timed out after ${options.timeoutMs} ms` : errorMessage(e));
  } finally {
    clearTimeout(deadlineTimer);
    // end() above lets COM_QUIT go out first; destroySoon closes once it is written.
    socket?.destroySoon();
  }
}

function dead(detail: string): CheckResult {
  return { state: 'dead', detail };
}

/** The first value of the first row of a one-row text resultset (classic EOF packets). */
async function readSingleValue(channel: PacketChannel, left: () => number): Promise<string | null> {
  const head = await channel.next(left());
  if (head.payload[0] === PacketHeader.ERR) throw new Error(`query failed: ${parseErr(head.payload).message}`);
  if (head.payload[0] === PacketHeader.OK) throw new Error('query returned no resultset');
  const columns = parseColumnCount(head.payload);
  for (let i = 0; i < columns; i++) await channel.next(left());
  if (!isEofPacket((await channel.next(left())).payload)) throw new Error('malformed resultset (no EOF after columns)');
  let value: string | null | undefined;
  for (;;) {
    const p = await channel.next(left());
    if (p.payload[0] === PacketHeader.ERR) throw new Error(`query failed: ${parseErr(p.payload).message}`);
    if (isEofPacket(p.payload)) break;
    const row = parseTextRow(p.payload, columns);
    if (value === undefined) value = row[0] === null ? null : row[0]!.toString('utf8');
  }
  if (value === undefined) throw new Error('query returned no rows');
  return value;
}
