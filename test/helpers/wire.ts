// Packets a raw test client sends to the proxy, built with the project's own protocol code.
import { Capability } from '../../src/protocol/constants.js';
import { writeHandshakeResponse41 } from '../../src/protocol/packets/handshake-response.js';

/** Plain 4.1 capabilities of a minimal client (and of the fake backends that greet it). */
export const BASIC_CAPABILITIES =
  Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_SECURE_CONNECTION | Capability.CLIENT_PLUGIN_AUTH | Capability.CLIENT_LONG_PASSWORD;

/** A HandshakeResponse41 answering the proxy's greeting with mysql_clear_password (sequence id 1). */
export function clearPasswordLogin(user = 'u', password = 'pw'): Buffer {
  return writeHandshakeResponse41(
    {
      capabilities: BASIC_CAPABILITIES,
      maxPacketSize: 1 << 24,
      characterSet: 0x21,
      user: Buffer.from(user),
      authResponse: Buffer.from(`${password}\0`),
      database: Buffer.alloc(0),
      authPluginName: 'mysql_clear_password',
    },
    1,
  );
}
