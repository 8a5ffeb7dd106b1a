// OK, ERR and AuthSwitchRequest packets.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_err_packet.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_switch_request.html

import { MalformedPacketError } from '../../util/errors.js';
import { PacketHeader } from '../constants.js';
import { PacketReader } from '../reader.js';
import { PacketWriter } from '../writer.js';

export interface ErrPacket {
  readonly errno: number;
  /** "HY000" when the server sent no SQL state. */
  readonly sqlState: string;
  readonly message: string;
}

/** ERR packets are always written in the 4.1 format (all current clients parse it). */
export function writeErr(seq: number, err: ErrPacket): Buffer {
  const sqlState = Buffer.from(err.sqlState.padEnd(5, '0').slice(0, 5), 'latin1');
  return new PacketWriter(64 + err.message.length)
    .int1(PacketHeader.ERR)
    .int2(err.errno)
    .int1(0x23) // '#'
    .bytes(sqlState)
    .bytes(err.message)
    .finish(seq);
}

export function parseErr(payload: Buffer): ErrPacket {
  const r = new PacketReader(payload);
  if (r.int1() !== PacketHeader.ERR) throw new MalformedPacketError();
  const errno = r.int2();
  let sqlState = 'HY000';
  if (r.remaining > 0 && r.peek1() === 0x23) {
    r.skip(1);
    sqlState = r.bytes(5).toString('latin1');
  }
  return { errno, sqlState, message: r.rest().toString('utf8') };
}

export function writeOk(seq: number, statusFlags: number): Buffer {
  return new PacketWriter(16).int1(PacketHeader.OK).int1(0).int1(0).int2(statusFlags).int2(0).finish(seq);
}

export interface AuthSwitchRequest {
  readonly pluginName: string;
  /** Plugin data with a trailing NUL removed (native password sends 20 bytes + NUL). */
  readonly pluginData: Buffer;
}

export function parseAuthSwitchRequest(payload: Buffer): AuthSwitchRequest {
  const r = new PacketReader(payload);
  if (r.int1() !== PacketHeader.EOF) throw new MalformedPacketError();
  const pluginName = r.nulBytes().toString('latin1');
  if (pluginName.length === 0) throw new MalformedPacketError();
  let pluginData = r.rest();
  if (pluginData.length > 0 && pluginData[pluginData.length - 1] === 0) {
    pluginData = pluginData.subarray(0, pluginData.length - 1);
  }
  return { pluginName, pluginData };
}

export function writeAuthSwitchRequest(seq: number, pluginName: string, pluginData: Uint8Array): Buffer {
  return new PacketWriter(64).int1(PacketHeader.EOF).nulString(pluginName).bytes(pluginData).int1(0).finish(seq);
}
