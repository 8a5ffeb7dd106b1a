// The session-state information a server appends to an OK packet when the client asked for
// CLIENT_SESSION_TRACK and the status has SERVER_SESSION_STATE_CHANGED: a list of entries (type,
// length-encoded data). Connection sharing reads it to learn what a statement changed in the
// session (see docs/pooling.md#connection-sharing).

import { Capability, ServerStatus } from '../constants.js';
import { PacketReader } from '../reader.js';

/** `enum_session_state_type` (MySQL and MariaDB agree on 0 to 5). */
export const SessionTrackType = {
  SYSTEM_VARIABLES: 0,
  SCHEMA: 1,
  STATE_CHANGE: 2,
  GTIDS: 3,
  TRANSACTION_CHARACTERISTICS: 4,
  TRANSACTION_STATE: 5,
} as const;

export interface SessionTrackEntry {
  readonly type: number;
  /** System variables: the name; schema: the database; otherwise empty. */
  readonly name: Buffer;
  /** System variables: the value; state change: '1'; transaction entries: their text. */
  readonly value: Buffer;
}

/** What an OK packet (0x00, or 0xFE ending a result set under CLIENT_DEPRECATE_EOF) says. */
export interface OkSessionInfo {
  readonly affectedRows: number;
  readonly insertId: number;
  readonly status: number;
  readonly warnings: number;
  /** The session-state entries (empty when the status does not announce any). */
  readonly entries: readonly SessionTrackEntry[];
}

/**
 * Parse an OK packet's payload with its session-state entries. `capabilities` are those in effect
 * (CLIENT_SESSION_TRACK makes the info field length-encoded and the state block possible).
 * Throws the reader's parse error on a malformed packet.
 */
export function parseOkSessionInfo(payload: Buffer, capabilities: number): OkSessionInfo {
  const r = new PacketReader(payload);
  r.skip(1);
  const affectedRows = r.lenencInt();
  const insertId = r.lenencInt();
  const status = r.int2();
  const warnings = r.int2();
  const entries: SessionTrackEntry[] = [];
  if ((capabilities & Capability.CLIENT_SESSION_TRACK) !== 0 && r.remaining > 0) {
    r.lenencBytes(); // info
    if ((status & ServerStatus.SERVER_SESSION_STATE_CHANGED) !== 0 && r.remaining > 0) {
      const block = r.lenencBytes();
      const b = new PacketReader(block);
      while (b.remaining > 0) {
        const type = b.int1();
        const data = new PacketReader(b.lenencBytes());
        if (type === SessionTrackType.SYSTEM_VARIABLES) {
          const name = data.lenencBytes();
          entries.push({ type, name, value: data.lenencBytes() });
        } else if (type === SessionTrackType.SCHEMA) {
          entries.push({ type, name: data.lenencBytes(), value: Buffer.alloc(0) });
        } else if (type === SessionTrackType.GTIDS || type === SessionTrackType.STATE_CHANGE) {
          // MariaDB sends the state change's '1' bare (02 01 31), MySQL length-encoded (02 02 01 31):
          // only its presence counts.
          entries.push({ type, name: Buffer.alloc(0), value: data.rest() });
        } else {
          // Transaction characteristics and state: one length-encoded string.
          entries.push({
            type,
            name: Buffer.alloc(0),
            value: data.remaining > 0 ? data.lenencBytes() : Buffer.alloc(0),
          });
        }
      }
    }
  }
  return { affectedRows, insertId, status, warnings, entries };
}
