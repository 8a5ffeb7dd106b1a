// Regressions of defects `npm run fuzz` found (see docs/robustness.md), on both relays:
// the ERR that ends a session while a command's answer has not begun carries sequence id 1 (not
// the one after the previous answer), and in a session the tracker no longer follows, a reply the
// daemon makes itself goes out between server packets and then ends the session (before, it was
// written into the middle of a server packet and the client waited for ever).
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { Capability } from '../../src/protocol/constants.js';
import { ControlDatagramBuilder } from '../../src/protocol/control.js';
import { framePayload } from '../../src/protocol/writer.js';
import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';
import { clearPasswordLogin } from '../helpers/wire.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const query = (sql: string): Buffer => framePayload(Buffer.concat([Buffer.of(3), Buffer.from(sql)]), 0);

/** A raw client that keeps every byte and can list the packets as a client would read them. */
class Client {
  readonly socket: net.Socket;
  bytes = Buffer.alloc(0);
  closed = false;

  constructor(path: string) {
    this.socket = net.connect(path);
    this.socket.on('data', (d: Buffer) => (this.bytes = Buffer.concat([this.bytes, d])));
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('error', () => undefined);
  }

  async login(): Promise<void> {
    await sleep(100);
    this.socket.write(
      clearPasswordLogin(USERS.native.user, USERS.native.password, '', Capability.CLIENT_DEPRECATE_EOF),
    );
    await sleep(200);
    this.take();
  }

  /** The packets received since the last call (seq:first byte, ERRs with their number). */
  take(): string {
    const out: string[] = [];
    let pos = 0;
    while (pos + 4 <= this.bytes.length) {
      const len = this.bytes.readUIntLE(pos, 3);
      const seq = this.bytes[pos + 3]!;
      if (pos + 4 + len > this.bytes.length) {
        out.push(`<seq ${seq} announces ${len} bytes, ${this.bytes.length - pos - 4} came: the client waits forever>`);
        pos = this.bytes.length;
        break;
      }
      const p = this.bytes.subarray(pos + 4, pos + 4 + len);
      out.push(
        p[0] === 0xff
          ? `${seq}:ERR ${p.readUInt16LE(1)} ${p.subarray(9).toString()}`
          : `${seq}:${len > 64 ? `${len} bytes` : p[0]!.toString(16)}`,
      );
      pos += 4 + len;
    }
    this.bytes = this.bytes.subarray(pos);
    return out.join(' | ') + (this.closed ? ' | <closed>' : '');
  }
}

for (const relay of ['native', 'js'] as const) {
  describe(`closing and local replies at the right place (--relay ${relay})`, () => {
    let db: MariaDB | undefined;
    let proxy: Proxy | undefined;
    let port = 0;

    before(async () => {
      db = await startMariaDB({ name: `fuzzreg-${relay}` });
      await createTestUsers(db);
      port = await freeTcpPort();
      proxy = await startProxy({
        name: `fuzzreg-${relay}`,
        args: ['--relay', relay],
        listeners: 1,
        config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) client.account = hr.user return client:connect(${JSON.stringify(db!.socket)}, hr) end,
  on_init_db = function(client, database) return client:init_db(database) end,
})
control_listen('127.0.0.1:${port}')`,
      });
    });

    after(async () => {
      await proxy?.stop();
      await db?.stop();
    });

    test('a Lua error behind a pipelined query: the closing ERR has sequence id 1', async () => {
      const c = new Client(proxy!.socket);
      await c.login();
      c.socket.write(query("SELECT 'previous answer'"));
      await sleep(300);
      assert.equal(c.take(), '1:1 | 2:3 | 3:f | 4:fe');
      // COM_INIT_DB '' makes client:init_db('') raise: the daemon ends the session with ERR 1044.
      c.socket.write(Buffer.concat([query('SELECT SLEEP(0.5)'), framePayload(Buffer.of(2), 0)]));
      await sleep(2000);
      assert.equal(c.take(), '1:ERR 1044 Lua error | <closed>');
    });

    test('DISCONNECT_DATABASE during a query: the closing ERR has sequence id 1', async () => {
      const c = new Client(proxy!.socket);
      await c.login();
      c.socket.write(query("SELECT 'a', 'b', 'c'"));
      await sleep(300);
      assert.equal(c.take(), '1:3 | 2:3 | 3:3 | 4:3 | 5:1 | 6:fe');
      c.socket.write(query('SELECT SLEEP(1)'));
      await sleep(200);
      const s = dgram.createSocket('udp4');
      await new Promise<void>((resolve) =>
        s.send(new ControlDatagramBuilder().add(20, Buffer.from(USERS.native.user)).toBuffer(), port, '127.0.0.1', () =>
          resolve(),
        ),
      );
      s.close();
      await sleep(1500);
      assert.equal(c.take(), '1:ERR 1927 Connection was killed | <closed>');
    });

    test('untracked: a reply of the daemon waits for the end of the server packet, then the session ends', async () => {
      const c = new Client(proxy!.socket);
      await c.login();
      c.socket.write(framePayload(Buffer.of(0xa3), 0)); // an unknown command: the tracker stops following
      await sleep(300);
      c.take();
      c.socket.pause(); // a slow reader: the 4 MB row stops half-way in the relay
      c.socket.write(query("SELECT REPEAT('x', 4000000)"));
      await sleep(500);
      c.socket.write(Buffer.concat([query('KILL 999999'), query("SELECT 'after'")]));
      await sleep(500);
      c.socket.resume();
      await sleep(2000);
      assert.equal(c.take(), '1:1 | 2:3 | 3:4000004 bytes | 1:ERR 1094 Unknown thread id: 999999 | <closed>');
    });
  });
}
