// COM_QUERY and the text resultset, just enough for the proxy's own queries (the cluster health
// check's `SELECT @@global.read_only`). Client traffic is never parsed this way: it is relayed as bytes.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html

import { MalformedPacketError } from '../../util/errors.js';
import { Command, PacketHeader } from '../constants.js';
import { PacketReader } from '../reader.js';
import { PacketWriter } from '../writer.js';

export function writeComQuery(sql: string): Buffer {
  const text = Buffer.from(sql, 'utf8');
  return new PacketWriter(5 + text.length).int1(Command.COM_QUERY).bytes(text).finish(0);
}

export function writeComQuit(): Buffer {
  return new PacketWriter(5).int1(Command.COM_QUIT).finish(0);
}

/** The first packet of a query response: a column count, or OK/ERR (told apart by the caller). */
export function parseColumnCount(payload: Buffer): number {
  const r = new PacketReader(payload);
  const n = r.lenencInt();
  r.expectEnd();
  if (n === 0) throw new MalformedPacketError('column count 0');
  return n;
}

/**
 * True for the EOF packet that ends column definitions or rows when CLIENT_DEPRECATE_EOF is off.
 * A row whose first value is 0xFE-prefixed (a lenenc integer ≥ 2^24) is at least 9 bytes long.
 */
export function isEofPacket(payload: Buffer): boolean {
  return payload[0] === PacketHeader.EOF && payload.length < 9;
}

/** One text-protocol row: each value as bytes, or null for SQL NULL (0xFB). */
export function parseTextRow(payload: Buffer, columns: number): (Buffer | null)[] {
  const r = new PacketReader(payload);
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < columns; i++) {
    if (r.peek1() === 0xfb) {
      r.skip(1);
      values.push(null);
    } else {
      values.push(r.lenencBytes());
    }
  }
  r.expectEnd();
  return values;
}
