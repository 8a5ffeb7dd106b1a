// Backends that fail: missing socket, no greeting, garbage, ERR instead of a greeting, closing
// after the greeting. Each client gets an ERR, and the daemon keeps serving everybody else.

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { packet as frame } from '../helpers/bytes.js';
import { guard, mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
  code?: string;
}

/** A plausible MariaDB HandshakeV10 (mysql_native_password). */
function greeting(): Buffer {
  const caps = 0xf7fe | (0x81bf << 16); // typical MariaDB server capabilities, PROTOCOL_41 included
  const p = Buffer.concat([
    Buffer.from([10]),
    Buffer.from('5.5.5-10.11.99-FakeDB\0', 'latin1'),
    Buffer.from([1, 0, 0, 0]),
    Buffer.from('abcdefgh', 'latin1'),
    Buffer.from([0]),
    Buffer.from([caps & 0xff, (caps >>> 8) & 0xff]),
    Buffer.from([0x21]),
    Buffer.from([2, 0]),
    Buffer.from([(caps >>> 16) & 0xff, (caps >>> 24) & 0xff]),
    Buffer.from([21]),
    Buffer.alloc(10),
    Buffer.from('ijklmnopqrst\0', 'latin1'),
    Buffer.from('mysql_native_password\0', 'latin1'),
  ]);
  return frame(0, p);
}

function errPacket(seq: number, errno: number, sqlState: string, message: string): Buffer {
  const p = Buffer.alloc(3);
  p[0] = 0xff;
  p.writeUInt16LE(errno, 1);
  return frame(seq, Buffer.concat([p, Buffer.from(`#${sqlState}${message}`, 'latin1')]));
}

describe('backend failures', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  const fakeDir = fs.mkdtempSync(path.join(os.tmpdir().length > 60 ? '/tmp' : os.tmpdir(), 'myproxy-fakebe-'));
  const servers: net.Server[] = [];
  const accepted: net.Socket[] = [];
  const counts = new Map<string, number>();

  /** A Unix socket server at fakeDir/name.sock that treats each connection with `behave`. */
  async function fakeBackend(name: string, behave: (s: net.Socket) => void): Promise<string> {
    const p = path.join(fakeDir, `${name}.sock`);
    const srv = net.createServer((s) => {
      accepted.push(s);
      counts.set(name, (counts.get(name) ?? 0) + 1);
      s.on('error', () => undefined);
      behave(s);
    });
    servers.push(srv);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(p, () => resolve());
    });
    return p;
  }

  before(async () => {
    db = await startMariaDB({ name: 'beerr' });
    await createTestUsers(db);
    const silent = await fakeBackend('silent', () => undefined);
    const garbage = await fakeBackend('garbage', (s) => s.write(frame(0, Buffer.from('\x0athis is no greeting'))));
    const noise = await fakeBackend('noise', (s) => s.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')));
    const rejecting = await fakeBackend('rejecting', (s) => s.end(errPacket(0, 1040, '08004', 'Too many connections')));
    const closing = await fakeBackend('closing', (s) => s.end(greeting()));
    const backends = {
      'proxy.sock': db.socket,
      'missing.sock': path.join(fakeDir, 'does-not-exist.sock'),
      'silent.sock': silent,
      'garbage.sock': garbage,
      'noise.sock': noise,
      'rejecting.sock': rejecting,
      'closing.sock': closing,
    };
    proxy = await startProxy({
      name: 'beerr',
      config: (dir) =>
        Object.entries(backends)
          .map(
            ([sock, target]) => `
mysql_listen('${dir}/${sock}', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(target)}, hr) end,
})`,
          )
          .join('\n'),
    });
  });

  after(async () => {
    await proxy?.stop();
    for (const s of accepted) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    fs.rmSync(fakeDir, { recursive: true, force: true });
    await db?.stop();
  });

  const opts = (socketPath: string): mysql.ConnectionOptions => ({
    socketPath,
    user: USERS.native.user,
    password: USERS.native.password,
    enableCleartextPlugin: true,
    // Longer than the proxy's backend timeout: the error must come from the proxy.
    connectTimeout: 60_000,
  });

  async function loginError(name: string): Promise<MysqlError> {
    const socketPath = `${proxy!.dir}/${name}`;
    try {
      const c = await guard(mysql.createConnection(opts(socketPath)), `login on ${name}`);
      await c.end();
    } catch (e) {
      return e as MysqlError;
    }
    assert.fail(`login on ${name} succeeded`);
  }

  async function assertHealthy(): Promise<void> {
    const c = await guard(mysql.createConnection(opts(proxy!.socket)), 'healthy login');
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
      assert.equal(rows[0]!['u'], 'native@%');
    } finally {
      await c.end();
    }
    assert.ok(proxy!.alive(), 'daemon alive');
  }

  test('backend socket path does not exist → 1043 "Connection error"', async () => {
    const since = proxy!.logs().length;
    const e = await loginError('missing.sock');
    assert.equal(e.errno, 1043, e.message);
    assert.equal(e.sqlState, '08S01');
    assert.equal(e.message, 'Connection error');
    await proxy!.waitForLog(/does-not-exist\.sock.*ENOENT|ENOENT.*does-not-exist\.sock/, 5000, since);
    const cli = await mariadbCli(`${proxy!.dir}/missing.sock`, 'native', 'nativepw', 'SELECT 1');
    assert.match(cli.stderr, /ERROR 1043 \(08S01\).*Connection error/);
    await assertHealthy();
  });

  test('backend accepts but never greets → "Connection error" after the connect timeout; others are served meanwhile', async () => {
    const pending = loginError('silent.sock');
    // While that login waits for the silent backend, other sessions work normally.
    await assertHealthy();
    await assertHealthy();
    const e = await pending;
    assert.equal(e.errno, 1043, e.message);
    assert.equal(e.sqlState, '08S01');
    assert.equal(e.message, 'Connection error');
    assert.equal(counts.get('silent'), 1);
    await assertHealthy();
  });

  test('backend sends a framed non-greeting → ERR "Malformed packet from server"', async () => {
    const e = await loginError('garbage.sock');
    assert.equal(e.errno, 1043, e.message);
    assert.equal(e.sqlState, '08S01');
    assert.equal(e.message, 'Malformed packet from server');
    await assertHealthy();
  });

  test('backend sends unframed noise → ERR 1043, daemon keeps serving', async () => {
    const e = await loginError('noise.sock');
    assert.equal(e.errno, 1043, e.message);
    assert.equal(e.sqlState, '08S01');
    assert.ok(
      ['Malformed packet from server', 'Connection error', 'Server closed the connection'].includes(e.message),
      e.message,
    );
    await assertHealthy();
  });

  test('backend answers with ERR instead of a greeting → "Connection error", log says rejected', async () => {
    const since = proxy!.logs().length;
    const e = await loginError('rejecting.sock');
    assert.equal(e.errno, 1043, e.message);
    assert.equal(e.sqlState, '08S01');
    assert.equal(e.message, 'Connection error');
    await proxy!.waitForLog(/Connection rejected by server: Too many connections/, 5000, since);
    await assertHealthy();
  });

  test('backend closes right after its greeting → "Server closed the connection"', async () => {
    const since = proxy!.logs().length;
    const e = await loginError('closing.sock');
    assert.equal(e.errno, 1043, e.message);
    assert.equal(e.sqlState, '08S01');
    assert.equal(e.message, 'Server closed the connection');
    await proxy!.waitForLog(/handshake server_version="5\.5\.5-10\.11\.99-FakeDB"/, 5000, since);
    await assertHealthy();
  });
});
