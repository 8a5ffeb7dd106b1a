// --write-timeout: a client that stops reading while the backend sends it a large result is
// disconnected once it has taken no data for the timeout, on both relays; its backend connection
// is closed too, and the daemon serves other clients meanwhile. The backend is a small fake written
// with the project's own protocol code (it must send more than any socket buffer holds).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PacketFramer } from '../../src/protocol/framer.js';
import { writeOk } from '../../src/protocol/packets/generic.js';
import { writeHandshakeV10 } from '../../src/protocol/packets/handshake.js';
import { writeComQuery } from '../../src/protocol/packets/text-resultset.js';
import { guard, startProxy } from '../helpers/proxy.js';
import { BASIC_CAPABILITIES, clearPasswordLogin } from '../helpers/wire.js';

const CAPS = BASIC_CAPABILITIES;
/** Far more than the kernel buffers of both socket pairs together. */
const FLOOD_BYTES = 32 * 1024 * 1024;

/** A backend that logs anyone in and answers the first command with FLOOD_BYTES of data. */
function floodingBackend(socketPath: string, closed: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.on('close', () => closed(s));
    s.write(
      writeHandshakeV10({
        serverVersion: Buffer.from('5.5.5-10.11.99-Fake'),
        connectionId: 1,
        scramble: Buffer.alloc(20, 0x41),
        capabilities: CAPS,
        characterSet: 0x21,
        statusFlags: 2,
        authPluginName: 'mysql_native_password',
      }),
    );
    const framer = new PacketFramer(1 << 20);
    let packets = 0;
    s.on('data', (chunk: Buffer) => {
      for (const p of framer.push(chunk)) {
        packets++;
        // The relay forwards server bytes unparsed: any bytes do.
        if (packets === 1) s.write(writeOk(p.seq + 1, 2));
        else if (packets === 2) s.write(Buffer.alloc(FLOOD_BYTES, 0x78));
      }
    });
  });
  return new Promise((resolve) => server.listen(socketPath, () => resolve(server)));
}

const LOGIN = clearPasswordLogin();

/** Log in through the proxy, send a query, and from then on read nothing. */
async function loginAndStopReading(proxySocket: string): Promise<net.Socket> {
  const s = net.connect(proxySocket);
  s.on('error', () => undefined);
  const framer = new PacketFramer(1 << 20);
  let seen = 0;
  await new Promise<void>((resolve, reject) => {
    s.on('data', (chunk: Buffer) => {
      for (const p of framer.push(chunk)) {
        seen++;
        if (seen === 1) s.write(LOGIN);
        else if (p.payload[0] === 0xff) reject(new Error(`login refused: ${p.payload.subarray(9).toString()}`));
        else resolve();
      }
    });
    s.on('close', () => reject(new Error('closed during login')));
  });
  s.removeAllListeners('data');
  s.pause();
  s.write(writeComQuery('SELECT flood'));
  return s;
}

describe('--write-timeout', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir().length > 60 ? '/tmp' : os.tmpdir(), 'myproxy-wto-'));
  const backendPath = path.join(dir, 'backend.sock');
  let backend: net.Server | undefined;
  const backendClosed: net.Socket[] = [];

  before(async () => {
    backend = await floodingBackend(backendPath, (s) => backendClosed.push(s));
  });
  after(() => {
    backend?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const relay of ['native', 'js'] as const) {
    test(`a client that stops reading is closed after the timeout, with its backend (--relay ${relay})`, async () => {
      const proxy = await startProxy({
        name: `wto-${relay}`,
        args: ['--write-timeout', '1', '--relay', relay],
        config: `mysql_listen('\${dir}/proxy.sock', { on_handshake_response = function(client, hr)
  return client:connect(${JSON.stringify(backendPath)}, hr)
end })`,
      });
      try {
        const closedBefore = backendClosed.length;
        const client = await loginAndStopReading(proxy.socket);
        const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));
        await proxy.waitForLog(/write timeout: a peer took no data for \d+ s, closing/, 20_000);
        await guard(
          (async () => {
            while (backendClosed.length === closedBefore) await new Promise((r) => setTimeout(r, 20));
          })(),
          'the backend connection is closed too',
          10_000,
        );
        // The client learns it, too, once it looks again.
        client.resume();
        await guard(clientClosed, 'client socket closed', 10_000);
        // Meanwhile and afterwards the daemon serves others.
        const other = await loginAndStopReading(proxy.socket);
        other.destroy();
        assert.ok(proxy.alive(), proxy.logs());
      } finally {
        await proxy.stop();
      }
    });
  }

  test('--write-timeout 0 turns it off; a bad value is a usage error', async () => {
    const { runProxy } = await import('../helpers/proxy.js');
    const bad = await runProxy(['--write-timeout', 'soon', '--check', '--config', 'examples/basic.lua']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /--write-timeout needs a number of seconds/);
    const off = await runProxy(['--write-timeout', '0', '--check', '--config', 'examples/basic.lua'], {
      env: { MYPROXY_SOCKET: path.join(dir, 'x.sock') },
    });
    assert.equal(off.code, 0, off.stderr);
  });
});
