// KILL through the proxy. A client's connection id (from the greeting) is the proxy's, not the
// server's thread id, so `KILL [QUERY|CONNECTION] <id>` and COM_PROCESS_KILL must be translated:
// the proxy finds the session with that id and kills its thread on its own server, through a
// short connection of its own that logs in with that session's credentials (a user may always
// kill its own threads). Whether the asking client may do that is decided first (same backend
// user, as the server's own rule, or what the handler's on_kill says).

import type { Socket } from 'node:net';
import { sha1 } from '../auth/native-password.js';
import { loginToBackend } from '../backend/login.js';
import { Capability, DEFAULT_CHARSET, PacketHeader } from '../protocol/constants.js';
import { writeComQuery, writeComQuit } from '../protocol/packets/text-resultset.js';
import { formatAddress, type SocketAddress } from '../net/address.js';
import { connectSocket } from '../net/connect.js';
import { PacketChannel } from '../net/packet-channel.js';

/** A KILL statement the proxy can translate (one that names a connection by number). */
export interface KillStatement {
  /** 'connection' for plain KILL and KILL CONNECTION. */
  readonly kind: 'connection' | 'query';
  /** MariaDB's HARD/SOFT, kept when the statement is passed on ('' when absent). */
  readonly modifier: '' | 'HARD' | 'SOFT';
  readonly id: number;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b;
}

function isIdent(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x5f ||
    c === 0x24 ||
    c >= 0x80
  );
}

/** `KILL` (any case) as a whole word at `i`. */
function startsKill(sql: Uint8Array, i: number): boolean {
  return (
    i + 4 <= sql.length &&
    (sql[i]! | 0x20) === 0x6b &&
    (sql[i + 1]! | 0x20) === 0x69 &&
    (sql[i + 2]! | 0x20) === 0x6c &&
    (sql[i + 3]! | 0x20) === 0x6c &&
    (i + 4 === sql.length || !isIdent(sql[i + 4]!))
  );
}

/**
 * Parses `KILL [HARD|SOFT] [CONNECTION|QUERY] <number>` (comments and whitespace allowed between
 * the words, a trailing `;`). Null for anything else: other statements, KILL USER, KILL QUERY ID
 * (a query id, not a connection), executable comments. Those go to the server unchanged.
 */
export function parseKillStatement(sql: Uint8Array): KillStatement | null {
  let i = 0;
  const n = sql.length;
  const skip = (): boolean => {
    for (;;) {
      while (i < n && isSpace(sql[i]!)) i++;
      if (i + 1 < n && sql[i] === 0x2f && sql[i + 1] === 0x2a) {
        if (i + 2 < n && (sql[i + 2] === 0x21 || sql[i + 2] === 0x4d)) return false; // executable comment
        let j = i + 2;
        while (j + 1 < n && !(sql[j] === 0x2a && sql[j + 1] === 0x2f)) j++;
        if (j + 1 >= n) return false;
        i = j + 2;
        continue;
      }
      if (i < n && (sql[i] === 0x23 || (i + 2 < n && sql[i] === 0x2d && sql[i + 1] === 0x2d && sql[i + 2]! <= 0x20))) {
        while (i < n && sql[i] !== 0x0a) i++;
        continue;
      }
      return true;
    }
  };
  const word = (): string | null => {
    if (!skip()) return null;
    const start = i;
    while (i < n && isIdent(sql[i]!)) i++;
    return i > start ? Buffer.from(sql.subarray(start, i)).toString('latin1').toUpperCase() : null;
  };
  // Every forwarded query of a hooked session comes here: anything but KILL is turned away
  // without making a string of its first word.
  if (!skip() || !startsKill(sql, i)) return null;
  i += 4;
  let w = word();
  let modifier: KillStatement['modifier'] = '';
  if (w === 'HARD' || w === 'SOFT') {
    modifier = w;
    w = word();
  }
  let kind: KillStatement['kind'] = 'connection';
  if (w === 'CONNECTION' || w === 'QUERY') {
    kind = w === 'QUERY' ? 'query' : 'connection';
    w = word();
  }
  if (w === null || !/^[0-9]+$/.test(w)) return null; // ID <query id>, USER <name>, expressions
  const id = Number(w);
  if (!Number.isSafeInteger(id)) return null;
  if (!skip()) return null;
  if (i < n && sql[i] === 0x3b) {
    i++;
    if (!skip()) return null;
  }
  return i === n ? { kind, modifier, id } : null;
}

/** The statement to run on the target's server. */
export function killSql(statement: KillStatement, threadId: number): string {
  const modifier = statement.modifier === '' ? '' : `${statement.modifier} `;
  return `KILL ${modifier}${statement.kind === 'query' ? 'QUERY' : 'CONNECTION'} ${threadId}`;
}

/** How the proxy logs in to the target's server to kill there. */
export interface KillTarget {
  readonly address: SocketAddress;
  readonly user: Buffer;
  readonly password: Buffer | undefined;
  readonly passwordSha1: Buffer | undefined;
  readonly threadId: number;
}

const KILL_CAPABILITIES =
  Capability.CLIENT_LONG_PASSWORD |
  Capability.CLIENT_PROTOCOL_41 |
  Capability.CLIENT_SECURE_CONNECTION |
  Capability.CLIENT_PLUGIN_AUTH |
  Capability.CLIENT_TRANSACTIONS;

/**
 * Runs `sql` (a KILL) on the target's server as the target's user. Resolves with the payload of
 * the server's answer (OK or ERR); rejects when the server cannot be reached or refuses the login.
 */
export async function runKill(target: KillTarget, sql: string, timeoutMs: number): Promise<Buffer> {
  let socket: Socket | undefined;
  const deadline = Date.now() + timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  try {
    socket = await connectSocket(target.address, left());
    socket.on('error', () => undefined);
    const channel = new PacketChannel(socket, 64 * 1024);
    const password = target.password;
    const login = await loginToBackend(
      channel,
      {
        clientCapabilities: KILL_CAPABILITIES,
        maxPacketSize: 0x1000000,
        characterSet: DEFAULT_CHARSET,
        user: target.user,
        credentials: {
          password,
          passwordSha1: target.passwordSha1 ?? (password !== undefined ? sha1(password) : undefined),
        },
        database: Buffer.alloc(0),
        secureTransport: target.address.kind !== 'tcp',
        backendKey: formatAddress(target.address),
      },
      left(),
      () => undefined,
    );
    if (login.kind === 'err') throw new Error(`login refused: ${login.err.errno} ${login.err.message}`);
    channel.send(writeComQuery(sql));
    const reply = await channel.next(left());
    if (reply.payload[0] !== PacketHeader.OK && reply.payload[0] !== PacketHeader.ERR) {
      throw new Error('unexpected answer to KILL');
    }
    socket.end(writeComQuit());
    return Buffer.from(reply.payload);
  } finally {
    socket?.destroySoon();
  }
}

/** What a worker of `--workers N` tells another about one of its relayed sessions (for KILL). */
export interface SessionSnapshot {
  readonly id: number;
  readonly account: string | undefined;
  readonly logName: string;
  readonly backendLabel: string | undefined;
  readonly serverThreadId: number | undefined;
  readonly killTarget: KillTarget;
}

/** The snapshot of a relayed session (undefined for one that is not relayed). */
export function snapshotSession(s: {
  readonly id: number;
  readonly account: string | undefined;
  readonly logName: string;
  readonly closed: boolean;
  readonly backendLabel: string | undefined;
  readonly serverThreadId: number | undefined;
  readonly killTarget: KillTarget | undefined;
}): SessionSnapshot | undefined {
  const killTarget = s.killTarget;
  if (s.closed || killTarget === undefined) return undefined;
  const { id, account, logName, backendLabel, serverThreadId } = s;
  return { id, account, logName, backendLabel, serverThreadId, killTarget };
}

/**
 * A session of another worker, as KILL sees it: where it runs and as whom. It has no Lua client
 * object here (on_kill gets nil for it), and closing it from here is not possible.
 */
export class RemoteSession {
  readonly id: number;
  account: string | undefined;
  readonly logName: string;
  readonly backendLabel: string | undefined;
  readonly serverThreadId: number | undefined;
  readonly killTarget: KillTarget;
  readonly peer = { pid: undefined, uid: undefined, gid: undefined, address: undefined };
  serverVersion = Buffer.alloc(0);
  readonly closed = false;

  constructor(snapshot: SessionSnapshot) {
    this.id = snapshot.id;
    this.account = snapshot.account;
    this.logName = snapshot.logName;
    this.backendLabel = snapshot.backendLabel;
    this.serverThreadId = snapshot.serverThreadId;
    // Buffers come through the IPC channel as Uint8Arrays.
    const t = snapshot.killTarget;
    const buffer = (b: Uint8Array | undefined): Buffer | undefined => (b === undefined ? undefined : Buffer.from(b));
    this.killTarget = {
      address: t.address,
      user: Buffer.from(t.user),
      password: buffer(t.password),
      passwordSha1: buffer(t.passwordSha1),
      threadId: t.threadId,
    };
  }

  close(): void {
    // A session of another worker is killed on its server (KILL CONNECTION), not closed here.
  }
}
