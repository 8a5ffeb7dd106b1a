// Races around the hand-over from login to relay, against a small fake backend written with
// the project's own protocol code (the timing cannot be forced with a real server).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Capability } from '../../src/protocol/constants.js';
import { PacketFramer, type Packet } from '../../src/protocol/framer.js';
import { writeOk } from '../../src/protocol/packets/generic.js';
import { writeHandshakeV10 } from '../../src/protocol/packets/handshake.js';
import { PacketWriter } from '../../src/protocol/writer.js';
import { guard, startProxy, type Proxy } from '../helpers/proxy.js';
import { clearPasswordLogin } from '../helpers/wire.js';

const CAPS =
  Capability.CLIENT_PROTOCOL_41 |
  Capability.CLIENT_SECURE_CONNECTION |
  Capability.CLIENT_PLUGIN_AUTH |
  Capability.CLIENT_LONG_PASSWORD;
const PING = new PacketWriter().int1(0x0e).finish(0);

/** A backend that greets, accepts any login with OK and answers every command with OK. */
function fakeBackend(listen: string | net.ListenOptions, afterLogin?: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write(
      writeHandshakeV10({
        serverVersion: Buffer.from('5.5.5-10.11.99-Fake'),
        connectionId: 1,
        scramble: Buffer.alloc(20, 0x41),
        capabilities: CAPS | Capability.CLIENT_TRANSACTIONS | Capability.CLIENT_LONG_FLAG,
        characterSet: 0x21,
        statusFlags: 2,
        authPluginName: 'mysql_native_password',
      }),
    );
    const framer = new PacketFramer(1 << 20);
    let loggedIn = false;
    s.on('data', (chunk: Buffer) => {
      for (const p of framer.push(chunk)) {
        s.write(writeOk(p.seq + 1, 2));
        if (!loggedIn) {
          loggedIn = true;
          afterLogin?.(s);
        }
      }
    });
  });
  return new Promise((resolve) => server.listen(listen, () => resolve(server)));
}

/** Reads packets from a socket; next() resolves with a packet, or 'closed' / 'timeout'. */
function packets(s: net.Socket): { next(ms?: number): Promise<Packet | 'closed' | 'timeout'> } {
  const framer = new PacketFramer(1 << 20);
  const queue: Packet[] = [];
  let closed = false;
  let wake: (() => void) | null = null;
  s.on('data', (d: Buffer) => {
    queue.push(...framer.push(d));
    wake?.();
  });
  s.on('close', () => {
    closed = true;
    wake?.();
  });
  s.on('error', () => undefined);
  return {
    next(ms = 5000) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          wake = null;
          resolve('timeout');
        }, ms);
        const check = (): void => {
          const p = queue.shift();
          if (p !== undefined || closed) {
            clearTimeout(timer);
            wake = null;
            resolve(p ?? 'closed');
          }
        };
        wake = check;
        check();
      });
    },
  };
}

const loginPacket = (): Buffer => clearPasswordLogin();

describe('hand-over from login to relay', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-races-'));
  const backendPath = path.join(dir, 'backend.sock');
  let backend: net.Server | undefined;
  const proxies: Proxy[] = [];

  before(async () => {
    backend = await fakeBackend(backendPath);
  });
  after(async () => {
    for (const p of proxies) await p.stop();
    backend?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const relay of ['native', 'js'] as const) {
    for (const variant of [
      'a command pipelined right after the login',
      'a command sent while on_command_phase waits',
    ] as const) {
      test(`${variant} is not lost (--relay ${relay})`, async () => {
        const pipelined = variant.startsWith('a command pipelined');
        const commandPhase = pipelined
          ? ''
          : "on_command_phase = function(c) for i = 1, 5 do mysql_resolve('localhost:3306') end end,";
        const proxy = await startProxy({
          name: 'races',
          args: ['--relay', relay],
          config: (d) => `
mysql_listen('${d}/proxy.sock', { ${commandPhase}
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(backendPath)}, hr) end })`,
        });
        proxies.push(proxy);
        for (let i = 0; i < 10; i++) {
          const s = net.connect(proxy.socket);
          const r = packets(s);
          assert.notEqual(typeof (await r.next()), 'string', 'greeting');
          s.write(loginPacket());
          if (pipelined) {
            await new Promise((res) => setTimeout(res, 1));
            s.write(PING);
          }
          const ok = await r.next();
          assert.ok(typeof ok !== 'string' && ok.payload[0] === 0, `login OK, got ${JSON.stringify(ok)}`);
          if (!pipelined) s.write(PING);
          const reply = await r.next();
          assert.ok(
            typeof reply !== 'string' && reply.payload[0] === 0,
            `round ${i}: the PING was answered (${JSON.stringify(reply)})`,
          );
          s.destroy();
        }
      });
    }
  }

  test('a backend that resets the connection while on_command_phase waits does not take the daemon down', async () => {
    const resetting = await fakeBackend({ host: '127.0.0.1', port: 0 }, (s) =>
      setTimeout(() => s.resetAndDestroy(), 5),
    );
    const port = (resetting.address() as net.AddressInfo).port;
    try {
      const proxy = await startProxy({
        name: 'rst',
        config: (d) => `
mysql_listen('${d}/proxy.sock', {
  on_command_phase = function(c) for i = 1, 50 do mysql_resolve('localhost:3306') end end,
  on_handshake_response = function(client, hr)
    if hr.user == 'good' then return client:connect(${JSON.stringify(backendPath)}, hr) end
    return client:connect('127.0.0.1:${port}', hr)
  end })`,
      });
      proxies.push(proxy);
      const s = net.connect(proxy.socket);
      const r = packets(s);
      await r.next();
      s.write(loginPacket());
      await r.next(); // the login OK
      assert.equal(await r.next(), 'closed', 'the session ends with its backend');
      assert.ok(proxy.alive(), proxy.logs());
      assert.doesNotMatch(proxy.logs(), /internal error|ECONNRESET.*\n\s+at /);
    } finally {
      resetting.close();
    }
  });
});

describe('a client that leaves while the backend login is under way', () => {
  test('ends that login at once instead of letting it run for nobody', async () => {
    // A backend that accepts and never greets: the proxy's login would wait 10 s for it.
    const accepted: net.Socket[] = [];
    const silent = net.createServer((s) => {
      s.on('error', () => undefined);
      accepted.push(s);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    const proxy = await startProxy({
      name: 'leave',
      config: (d) => `
mysql_listen('${d}/proxy.sock', { on_handshake_response = function(client, hr)
  return client:connect('127.0.0.1:${port}', hr)
end })`,
    });
    try {
      const s = net.connect(proxy.socket);
      s.on('error', () => undefined);
      const r = packets(s);
      await r.next();
      s.write(loginPacket());
      while (accepted.length === 0) await new Promise((res) => setTimeout(res, 10));
      const backendClosed = new Promise<void>((res) => accepted[0]!.once('close', () => res()));
      s.destroy();
      // Well before the 10 s greeting timeout.
      await guard(backendClosed, 'backend connection closed after the client left', 5_000);
      assert.ok(proxy.alive());
    } finally {
      await proxy.stop();
      silent.close();
    }
  });
});
