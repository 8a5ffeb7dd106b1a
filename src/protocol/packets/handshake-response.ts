// HandshakeResponse41 / HandshakeResponse320: parsed from clients, written to backends.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_response.html

import { MalformedPacketError } from '../../util/errors.js';
import { Capability } from '../constants.js';
import { PacketReader } from '../reader.js';
import { PacketWriter } from '../writer.js';

export interface HandshakeResponse {
  readonly capabilities: number;
  /** MariaDB extended capabilities (0 unless the client cleared CLIENT_LONG_PASSWORD). */
  readonly extendedCapabilities: number;
  readonly maxPacketSize: number;
  readonly characterSet: number;
  readonly user: Buffer;
  readonly authResponse: Buffer;
  /** Empty when the client sent none. */
  readonly database: Buffer;
  /** Empty when the client does not use CLIENT_PLUGIN_AUTH. */
  readonly authPluginName: string;
  /**
   * The connect attributes as sent (key/value lenenc strings, without the block's own length), or
   * empty. Kept as bytes: they are forwarded to the server, not interpreted.
   */
  readonly connectAttributes: Buffer;
}

/** The client asked for TLS (SSLRequest: a short HandshakeResponse41 with CLIENT_SSL). */
export function isSslRequest(payload: Buffer): boolean {
  if (payload.length !== 32) return false;
  const caps = payload.readUInt32LE(0);
  return (caps & Capability.CLIENT_PROTOCOL_41) !== 0 && (caps & Capability.CLIENT_SSL) !== 0;
}

/** An SSLRequest (what a client sends before its TLS handshake): a HandshakeResponse41 cut after the filler. */
export function writeSslRequest(
  capabilities: number,
  maxPacketSize: number,
  characterSet: number,
  seq: number,
): Buffer {
  return new PacketWriter(32)
    .int4((capabilities | Capability.CLIENT_SSL) >>> 0)
    .int4(maxPacketSize)
    .int1(characterSet)
    .zeros(23)
    .finish(seq);
}

/**
 * Parse a client's HandshakeResponse. `serverCapabilities` are what our greeting offered: fields
 * are only present when both sides have the capability.
 */
export function parseHandshakeResponse(payload: Buffer, serverCapabilities: number): HandshakeResponse {
  const r = new PacketReader(payload);
  if (payload.length < 2) throw new MalformedPacketError();
  const low = payload.readUInt16LE(0);
  if ((low & Capability.CLIENT_PROTOCOL_41) === 0) return parse320(r, serverCapabilities);

  const clientCaps = r.int4();
  const caps = (clientCaps & serverCapabilities) >>> 0;
  const maxPacketSize = r.int4();
  const characterSet = r.int1();
  r.skip(19);
  const reservedTail = r.int4();
  const extendedCapabilities = (clientCaps & Capability.CLIENT_LONG_PASSWORD) === 0 ? reservedTail >>> 0 : 0;
  const user = r.nulBytes();
  let authResponse: Buffer;
  if (caps & Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
    authResponse = r.lenencBytes();
  } else if (caps & Capability.CLIENT_SECURE_CONNECTION) {
    authResponse = r.bytes(r.int1());
  } else {
    authResponse = r.nulBytes();
  }
  let database: Buffer = Buffer.alloc(0);
  if (caps & Capability.CLIENT_CONNECT_WITH_DB && r.remaining > 0) database = r.nulOrRestBytes();
  let authPluginName = '';
  if (caps & Capability.CLIENT_PLUGIN_AUTH && r.remaining > 0) {
    authPluginName = r.nulOrRestBytes().toString('latin1');
  }
  let connectAttributes: Buffer = NO_BYTES;
  if (caps & Capability.CLIENT_CONNECT_ATTRS && r.remaining > 0) connectAttributes = r.lenencBytes();
  // Anything after that (a zstd level byte) is ignored; we never offer compression.
  return {
    capabilities: clientCaps >>> 0,
    extendedCapabilities,
    maxPacketSize,
    characterSet,
    user,
    authResponse,
    database,
    authPluginName,
    connectAttributes,
  };
}

function parse320(r: PacketReader, serverCapabilities: number): HandshakeResponse {
  const clientCaps = r.int2();
  const maxPacketSize = r.int3();
  const user = r.nulBytes();
  let authResponse: Buffer;
  let database: Buffer = Buffer.alloc(0);
  if (clientCaps & serverCapabilities & Capability.CLIENT_CONNECT_WITH_DB) {
    authResponse = r.nulBytes();
    database = r.nulOrRestBytes();
  } else {
    authResponse = r.nulOrRestBytes();
  }
  return {
    capabilities: clientCaps,
    extendedCapabilities: 0,
    maxPacketSize,
    characterSet: 0,
    user,
    authResponse,
    database,
    authPluginName: '',
    connectAttributes: NO_BYTES,
  };
}

const NO_BYTES = Buffer.alloc(0);

export interface HandshakeResponseOptions {
  readonly capabilities: number;
  readonly maxPacketSize: number;
  readonly characterSet: number;
  readonly user: Uint8Array;
  readonly authResponse: Uint8Array;
  readonly database: Uint8Array;
  readonly authPluginName: string;
  /** MariaDB extended capabilities: written when CLIENT_LONG_PASSWORD is clear. */
  readonly extendedCapabilities?: number;
  /** Connect attributes (the block's content): written when CLIENT_CONNECT_ATTRS is set. */
  readonly connectAttributes?: Uint8Array;
}

/** Serialise a HandshakeResponse41 with the given capabilities (PROTOCOL_41 must be among them). */
export function writeHandshakeResponse41(o: HandshakeResponseOptions, seq: number): Buffer {
  const caps = o.capabilities >>> 0;
  const w = new PacketWriter(128);
  w.int4(caps);
  w.int4(o.maxPacketSize);
  w.int1(o.characterSet);
  w.zeros(19);
  w.int4((caps & Capability.CLIENT_LONG_PASSWORD) === 0 ? (o.extendedCapabilities ?? 0) >>> 0 : 0);
  w.nulString(o.user);
  if (caps & Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
    w.lenencBytes(o.authResponse);
  } else if (caps & Capability.CLIENT_SECURE_CONNECTION) {
    if (o.authResponse.length > 255) throw new MalformedPacketError('auth response too long');
    w.int1(o.authResponse.length).bytes(o.authResponse);
  } else {
    // Without either capability servers (and parseHandshakeResponse) read a NUL-terminated string.
    if (o.authResponse.includes(0)) throw new MalformedPacketError('auth response contains NUL');
    w.nulString(o.authResponse);
  }
  if (caps & Capability.CLIENT_CONNECT_WITH_DB) w.nulString(o.database);
  if (caps & Capability.CLIENT_PLUGIN_AUTH) w.nulString(o.authPluginName);
  if (caps & Capability.CLIENT_CONNECT_ATTRS) w.lenencBytes(o.connectAttributes ?? NO_BYTES);
  return w.finish(seq);
}
