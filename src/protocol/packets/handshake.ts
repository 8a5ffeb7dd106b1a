// Initial handshake packet (HandshakeV10), written by the proxy to clients and parsed from backends.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html

import { MalformedPacketError, ProxyError, ErrorCodes } from '../../util/errors.js';
import { Capability } from '../constants.js';
import { PacketReader } from '../reader.js';
import { PacketWriter } from '../writer.js';

export interface HandshakeV10 {
  readonly protocolVersion: number;
  readonly serverVersion: Buffer;
  readonly connectionId: number;
  /** Auth plugin data (scramble), both parts joined, without the trailing NUL of part 2. */
  readonly authPluginData: Buffer;
  readonly capabilities: number;
  /** MariaDB's extended capabilities (0 unless the server cleared CLIENT_LONG_PASSWORD, i.e. is MariaDB). */
  readonly extendedCapabilities: number;
  readonly characterSet: number;
  readonly statusFlags: number;
  /** Empty when the server does not announce one (no CLIENT_PLUGIN_AUTH). */
  readonly authPluginName: string;
}

export interface GreetingOptions {
  readonly serverVersion: Uint8Array;
  readonly connectionId: number;
  /** 20 bytes of scramble. */
  readonly scramble: Uint8Array;
  readonly capabilities: number;
  /** MariaDB extended capabilities; written only when CLIENT_LONG_PASSWORD is clear (else must be 0). */
  readonly extendedCapabilities?: number;
  readonly characterSet: number;
  readonly statusFlags: number;
  readonly authPluginName: string;
}

/** Serialise a HandshakeV10 (sequence id 0). The server version must not contain NUL. */
export function writeHandshakeV10(o: GreetingOptions): Buffer {
  const caps = o.capabilities >>> 0;
  const w = new PacketWriter(128);
  w.int1(10);
  w.nulString(o.serverVersion);
  w.int4(o.connectionId);
  w.bytes(o.scramble.subarray(0, 8));
  w.int1(0); // filler
  w.int2(caps & 0xffff);
  w.int1(o.characterSet);
  w.int2(o.statusFlags);
  w.int2(caps >>> 16);
  w.int1(o.scramble.length + 1); // auth_plugin_data_len includes part 2's terminating NUL
  // Reserved: 6 zero bytes, then MariaDB's extended capabilities (zero for a MySQL-style greeting).
  w.zeros(6);
  w.int4((caps & Capability.CLIENT_LONG_PASSWORD) === 0 ? (o.extendedCapabilities ?? 0) >>> 0 : 0);
  w.bytes(o.scramble.subarray(8));
  w.int1(0);
  w.nulString(o.authPluginName);
  return w.finish(0);
}

/**
 * Parse a backend's first packet as HandshakeV10. Protocol 9 and unknown versions are rejected:
 * every server we can log in to speaks v10.
 */
export function parseHandshakeV10(payload: Buffer): HandshakeV10 {
  const r = new PacketReader(payload);
  const protocolVersion = r.int1();
  if (protocolVersion !== 10) {
    throw new ProxyError(ErrorCodes.UNSUPPORTED_PROTOCOL, `Unsupported protocol version ${protocolVersion}`);
  }
  const serverVersion = r.nulBytes();
  const connectionId = r.int4();
  const part1 = r.bytes(8);
  r.skip(1);
  let capabilities = r.int2();
  if (r.remaining === 0) {
    return {
      protocolVersion,
      serverVersion,
      connectionId,
      authPluginData: Buffer.from(part1),
      capabilities,
      extendedCapabilities: 0,
      characterSet: 0,
      statusFlags: 0,
      authPluginName: '',
    };
  }
  const characterSet = r.int1();
  const statusFlags = r.int2();
  capabilities = (capabilities | (r.int2() << 16)) >>> 0;
  const authDataLength = r.int1();
  r.skip(6);
  const reservedTail = r.int4();
  // MariaDB clears CLIENT_LONG_PASSWORD ("CLIENT_MYSQL") to say the tail holds its extended capabilities.
  const extendedCapabilities = (capabilities & Capability.CLIENT_LONG_PASSWORD) === 0 ? reservedTail >>> 0 : 0;
  let part2: Buffer = Buffer.alloc(0);
  if (capabilities & Capability.CLIENT_SECURE_CONNECTION) {
    // Part 2 is max(13, len - 8) bytes, the last of which is a NUL terminator. Only that
    // terminator may be missing (at the end of the packet): a scramble cut shorter would not be
    // noticed here and only surface later as a wrong auth response.
    const n = Math.max(13, authDataLength - 8);
    part2 = r.bytes(r.remaining === n - 1 ? n - 1 : n);
    if (part2.length === n && part2[n - 1] === 0) part2 = part2.subarray(0, n - 1);
  }
  let authPluginName = '';
  if (capabilities & Capability.CLIENT_PLUGIN_AUTH) {
    authPluginName = r.nulOrRestBytes().toString('latin1');
  }
  if (part1.length + part2.length === 0) throw new MalformedPacketError();
  return {
    protocolVersion,
    serverVersion,
    connectionId,
    authPluginData: Buffer.concat([part1, part2]),
    capabilities,
    extendedCapabilities,
    characterSet,
    statusFlags,
    authPluginName,
  };
}
