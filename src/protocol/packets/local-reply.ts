// Answers the daemon writes itself in the command phase, instead of the server: OK packets and
// complete text result sets (what on_query's client:ok{} and client:result{} send), and the
// payload of a command that arrived as several physical packets.
// https://mariadb.com/kb/en/result-set-packets/
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html

import { MalformedPacketError } from '../../util/errors.js';
import { Capability, MariaDbCapability, PacketHeader } from '../constants.js';
import { PacketWriter, framePayload } from '../writer.js';

/** Column types by the names Lua uses (MySQL's `enum_field_types`, lower case, without MYSQL_TYPE_). */
export const COLUMN_TYPES: Readonly<Record<string, number>> = Object.freeze({
  decimal: 0x00,
  tiny: 0x01,
  short: 0x02,
  long: 0x03,
  float: 0x04,
  double: 0x05,
  null: 0x06,
  timestamp: 0x07,
  longlong: 0x08,
  int24: 0x09,
  date: 0x0a,
  time: 0x0b,
  datetime: 0x0c,
  year: 0x0d,
  varchar: 0x0f,
  bit: 0x10,
  json: 0xf5,
  newdecimal: 0xf6,
  enum: 0xf7,
  set: 0xf8,
  tiny_blob: 0xf9,
  medium_blob: 0xfa,
  long_blob: 0xfb,
  blob: 0xfc,
  var_string: 0xfd,
  string: 0xfe,
  geometry: 0xff,
});

const NUMERIC_TYPES = new Set([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0d, 0xf6]);
const BINARY_CHARSET = 63;
const UTF8MB4_CHARSET = 45;
const ColumnFlag = { BINARY: 0x0080, NUM: 0x8000 } as const;

export interface LocalColumn {
  readonly name: Buffer;
  readonly type: number;
}

export interface OkFields {
  readonly affectedRows: number;
  readonly insertId: number;
  readonly status: number;
  readonly warnings: number;
  readonly info: Buffer;
}

/**
 * An OK packet (header 0x00) with the counters a client shows. The info text is length-encoded
 * where CLIENT_SESSION_TRACK is in effect (and no session state follows), else the packet's rest.
 */
export function writeOkPacket(seq: number, ok: OkFields, capabilities: number): Buffer {
  const w = new PacketWriter(24 + ok.info.length)
    .int1(PacketHeader.OK)
    .lenencInt(ok.affectedRows)
    .lenencInt(ok.insertId)
    .int2(ok.status)
    .int2(ok.warnings);
  if ((capabilities & Capability.CLIENT_SESSION_TRACK) !== 0) {
    w.lenencBytes(ok.info);
  } else {
    w.bytes(ok.info);
  }
  return w.finish(seq);
}

function columnDefinition(c: LocalColumn, extendedMetadata: boolean): Buffer {
  const numeric = NUMERIC_TYPES.has(c.type);
  const w = new PacketWriter(33 + c.name.length * 2)
    .lenencBytes('def')
    .lenencBytes('')
    .lenencBytes('')
    .lenencBytes('')
    .lenencBytes(c.name)
    .lenencBytes(c.name);
  // MARIADB_CLIENT_EXTENDED_METADATA: a block of (type, value) pairs here, empty for our columns.
  if (extendedMetadata) w.lenencInt(0);
  return w
    .lenencInt(0x0c)
    .int2(numeric ? BINARY_CHARSET : UTF8MB4_CHARSET)
    .int4(numeric ? 21 : 1024)
    .int1(c.type)
    .int2(numeric ? ColumnFlag.BINARY | ColumnFlag.NUM : 0)
    .int1(c.type === 0x04 || c.type === 0x05 ? 31 : 0)
    .int2(0)
    .payload();
}

/** The end of a result set: EOF, or OK with the 0xFE header under CLIENT_DEPRECATE_EOF. */
function endPacket(deprecateEof: boolean, status: number): Buffer {
  const w = new PacketWriter(12).int1(PacketHeader.EOF);
  if (deprecateEof) w.lenencInt(0).lenencInt(0).int2(status).int2(0);
  else w.int2(0).int2(status);
  return w.payload();
}

/**
 * A complete text result set starting at sequence id `seq`: column count, definitions, (EOF),
 * rows (each value text bytes or null for SQL NULL), EOF or OK. `capabilities` and
 * `extendedCapabilities` (MariaDB's) are the session's.
 */
export function writeResultSet(
  seq: number,
  columns: readonly LocalColumn[],
  rows: readonly (readonly (Buffer | null)[])[],
  capabilities: number,
  status: number,
  extendedCapabilities = 0,
): Buffer {
  if (columns.length === 0) throw new RangeError('a result set needs at least one column');
  const deprecateEof = (capabilities & Capability.CLIENT_DEPRECATE_EOF) !== 0;
  const extendedMetadata = (extendedCapabilities & MariaDbCapability.MARIADB_CLIENT_EXTENDED_METADATA) !== 0;
  const payloads: Buffer[] = [new PacketWriter(9).lenencInt(columns.length).payload()];
  for (const c of columns) payloads.push(columnDefinition(c, extendedMetadata));
  if (!deprecateEof) payloads.push(new PacketWriter(5).int1(PacketHeader.EOF).int2(0).int2(status).payload());
  for (const row of rows) {
    let size = 0;
    for (const v of row) size += v === null ? 1 : 9 + v.length;
    const w = new PacketWriter(size);
    for (const v of row) {
      if (v === null) w.int1(0xfb);
      else w.lenencBytes(v);
    }
    payloads.push(w.payload());
  }
  payloads.push(endPacket(deprecateEof, status));
  const framed: Buffer[] = [];
  let s = seq;
  for (const p of payloads) {
    framed.push(framePayload(p, s));
    s += Math.floor(p.length / 0xffffff) + 1;
  }
  return Buffer.concat(framed);
}

/** The payload of a logical packet given with its headers (several physical packets past 16 MiB). */
export function logicalPayload(packet: Buffer): Buffer {
  if (packet.length < 4) throw new MalformedPacketError('short packet');
  const first = packet.readUIntLE(0, 3);
  if (first < 0xffffff && first + 4 === packet.length) return packet.subarray(4);
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    if (at + 4 > packet.length) throw new MalformedPacketError('truncated packet header');
    const n = packet.readUIntLE(at, 3);
    if (at + 4 + n > packet.length) throw new MalformedPacketError('truncated packet');
    parts.push(packet.subarray(at + 4, at + 4 + n));
    at += 4 + n;
    if (n < 0xffffff) break;
  }
  if (at !== packet.length) throw new MalformedPacketError('bytes after the packet');
  return Buffer.concat(parts);
}
