// A raw test client and the packets it sends to the proxy, built with the project's own protocol code.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { Capability } from '../../src/protocol/constants.js';
import type { Packet } from '../../src/protocol/framer.js';
import { writeHandshakeResponse41 } from '../../src/protocol/packets/handshake-response.js';
import { PacketChannel } from '../../src/net/packet-channel.js';
import { framePayload } from '../../src/protocol/writer.js';

/** Plain 4.1 capabilities of a minimal client (and of the fake backends that greet it). */
export const BASIC_CAPABILITIES =
  Capability.CLIENT_PROTOCOL_41 |
  Capability.CLIENT_SECURE_CONNECTION |
  Capability.CLIENT_PLUGIN_AUTH |
  Capability.CLIENT_LONG_PASSWORD;

/** A HandshakeResponse41 answering the proxy's greeting with mysql_clear_password (sequence id 1). */
export function clearPasswordLogin(
  user: string | Uint8Array = 'u',
  password = 'pw',
  database: string | Uint8Array = '',
  extraCapabilities = 0,
): Buffer {
  const db = Buffer.from(database);
  return writeHandshakeResponse41(
    {
      capabilities: BASIC_CAPABILITIES | extraCapabilities | (db.length > 0 ? Capability.CLIENT_CONNECT_WITH_DB : 0),
      maxPacketSize: 1 << 24,
      characterSet: 0x21,
      user: Buffer.from(user),
      authResponse: Buffer.from(`${password}\0`),
      database: db,
      authPluginName: 'mysql_clear_password',
    },
    1,
  );
}

/** A client that speaks packets by hand: for inputs no real client sends. */
export class RawClient {
  readonly socket: net.Socket;
  readonly #channel: PacketChannel;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.#channel = new PacketChannel(socket, 1 << 30);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
  }

  static async connect(path: string): Promise<RawClient> {
    const socket = net.connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  next(timeoutMs = 10_000): Promise<Packet> {
    return this.#channel.next(timeoutMs);
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Reads the greeting, logs in with a clear password; resolves with the answer (OK or ERR). */
  async login(
    user: string | Uint8Array,
    password: string,
    database: string | Uint8Array = '',
    extraCapabilities: number = Capability.CLIENT_DEPRECATE_EOF,
  ): Promise<Packet> {
    await this.next();
    this.send(clearPasswordLogin(user, password, database, extraCapabilities));
    return this.next();
  }

  /** Sends one command (sequence id 0) and returns the first packet of the answer. */
  async command(payload: Buffer): Promise<Packet> {
    this.send(framePayload(payload, 0));
    return this.next();
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Sends one UDP datagram to 127.0.0.1:`port` (a control_listen socket). */
export function sendUdp(port: number, datagram: Buffer): Promise<void> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve, reject) =>
    s.send(datagram, port, '127.0.0.1', (e) => {
      s.close();
      if (e) reject(e);
      else resolve();
    }),
  );
}
