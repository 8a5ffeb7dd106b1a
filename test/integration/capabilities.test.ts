// Capability transparency (issue 11 §4): what client and server share passes through the proxy,
// MariaDB's extended capabilities included, and the client's connect attributes reach the server.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runCommand, runProxy, startProxy, type Proxy } from '../helpers/proxy.js';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PASS_THROUGH_CAPABILITIES, PROXY_OWN_CAPABILITIES } from '../../src/backend/capabilities.js';
import { Capability } from '../../src/protocol/constants.js';
import { PacketFramer } from '../../src/protocol/framer.js';
import { writeOk } from '../../src/protocol/packets/generic.js';
import { writeHandshakeV10 } from '../../src/protocol/packets/handshake.js';
import { parseHandshakeResponse } from '../../src/protocol/packets/handshake-response.js';

/**
 * A server without CLIENT_SESSION_TRACK (a MySQL 5.6-like one, or one where it is masked): any
 * login is OK, every command gets OK. Records the capabilities of each HandshakeResponse.
 */
async function startNoTrackServer(socketPath: string): Promise<{ logins: number[]; server: net.Server }> {
  const caps = (PASS_THROUGH_CAPABILITIES | PROXY_OWN_CAPABILITIES) & ~Capability.CLIENT_SESSION_TRACK;
  const logins: number[] = [];
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined);
    const framer = new PacketFramer(1 << 20);
    let loggedIn = false;
    sock.write(
      writeHandshakeV10({
        serverVersion: Buffer.from('5.6.51-notrack'),
        connectionId: 7,
        scramble: Buffer.alloc(20, 0x61),
        capabilities: caps >>> 0,
        characterSet: 0x21,
        statusFlags: 2,
        authPluginName: 'mysql_native_password',
      }),
    );
    sock.on('data', (chunk: Buffer) => {
      for (const p of framer.push(chunk)) {
        if (!loggedIn) {
          logins.push(parseHandshakeResponse(p.payload, caps >>> 0).capabilities);
          loggedIn = true;
          sock.write(writeOk(p.seq + 1, 2));
        } else if (p.payload[0] === 0x01) sock.end();
        else sock.write(writeOk(p.seq + 1, 2));
      }
    });
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  return { logins, server };
}

const { user, password } = USERS.native;

/** `mariadb --column-type-info` of a query over `socket`. */
async function typeInfo(socket: string, sql: string): Promise<string> {
  // Not --batch: the CLI prints type information only in table mode.
  const r = await runCommand('mariadb', [
    '--no-defaults',
    '-S',
    socket,
    '-u',
    user,
    `-p${password}`,
    '--table',
    '--column-type-info',
    'captest',
    '-e',
    sql,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe('capabilities and connect attributes', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    db = await startMariaDB({ name: 'caps', extraArgs: ['--performance-schema=ON'] });
    await createTestUsers(db);
    await db.query(`
CREATE DATABASE captest;
CREATE TABLE captest.t (j JSON, a INET6, u UUID, n INT);
INSERT INTO captest.t VALUES ('{"k": 1}', '::1', '123e4567-e89b-12d3-a456-426655440000', 7);
GRANT SELECT ON captest.* TO 'native'@'%';
GRANT SELECT ON performance_schema.* TO 'native'@'%';`);
    proxy = await startProxy({
      name: 'caps',
      config: (dir) => `
local backend = mysql_resolve('${db!.socket}')
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, hr)
  end,
})
-- The same, with its server stated in advance.
mysql_listen('${dir}/stated.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, hr)
  end,
}, { destinations = { backend } })
-- A plain string destination, connected to by a string: probed at startup all the same.
mysql_listen('${dir}/stated-string.sock', {
  on_handshake_response = function(client, hr)
    return client:connect('${db!.socket}', hr)
  end,
}, { destinations = '${db!.socket}' })`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  test('the startup probe learned the server greeting', () => {
    assert.match(
      proxy!.logs(),
      /server .*: version="5\.5\.5-10\.\d+\.\d+-MariaDB[^"]*" capabilities=0x[0-9a-f]+ extended=0x1[0-9a-f]/,
    );
  });

  test('mariadb --column-type-info: the same metadata through the proxy as directly (JSON, INET6, UUID)', async () => {
    const sql = 'SELECT j, a, u, n FROM t';
    const direct = await typeInfo(db!.socket, sql);
    // The listener's first client: which server Lua routes it to is not known yet, so the greeting
    // has none of MariaDB's extended capabilities (a MySQL server reached first would lack them).
    const first = await typeInfo(proxy!.socket, sql);
    assert.doesNotMatch(first, /format=json/);
    // From then on the listener greets with what its server has.
    const proxied = await typeInfo(proxy!.socket, sql);
    // The extended type metadata is there (MARIADB_CLIENT_EXTENDED_METADATA passed through) ...
    assert.match(direct, /Type: +BLOB \(format=json\)/);
    assert.match(direct, /Type: +STRING \(type=inet6\)/);
    assert.match(direct, /Type: +STRING \(type=uuid\)/);
    // ... and identical through the proxy.
    assert.equal(proxied, direct);
  });

  test('destinations: the very first client of a listener that states its server gets the extended metadata', async () => {
    const sql = 'SELECT j, a, u, n FROM t';
    const direct = await typeInfo(db!.socket, sql);
    for (const sock of ['stated.sock', 'stated-string.sock']) {
      const first = await typeInfo(path.join(proxy!.dir, sock), sql);
      assert.match(first, /Type: +BLOB \(format=json\)/, sock);
      assert.equal(first, direct, sock);
    }
  });

  test('connect attributes reach the server (performance_schema.session_connect_attrs)', async () => {
    const sql =
      "SELECT ATTR_NAME, ATTR_VALUE FROM performance_schema.session_connect_attrs WHERE PROCESSLIST_ID = CONNECTION_ID() AND ATTR_NAME IN ('_client_name', 'program_name') ORDER BY ATTR_NAME";
    const direct = await mariadbCli(db!.socket, user, password, sql);
    const proxied = await mariadbCli(proxy!.socket, user, password, sql);
    assert.equal(direct.code, 0, direct.stderr);
    assert.equal(proxied.code, 0, proxied.stderr);
    assert.match(proxied.stdout, /^_client_name\tlibmariadb\nprogram_name\tmysql\n$/);
    assert.equal(proxied.stdout, direct.stdout);

    // mysql2 sends its own attributes, among them one of the application's.
    const c = await mysql.createConnection({
      socketPath: proxy!.socket,
      user,
      password,
      enableCleartextPlugin: true,
      connectAttributes: { app_name: 'captest' },
    });
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>(
        "SELECT ATTR_VALUE AS v FROM performance_schema.session_connect_attrs WHERE PROCESSLIST_ID = CONNECTION_ID() AND ATTR_NAME = 'app_name'",
      );
      assert.deepEqual(
        rows.map((r) => r['v'] as string),
        ['captest'],
      );
    } finally {
      await c.end();
    }
  });
});

describe('a server without CLIENT_SESSION_TRACK', () => {
  let proxy: Proxy | undefined;
  let lateProxy: Proxy | undefined;
  let fake: Awaited<ReturnType<typeof startNoTrackServer>> | undefined;
  let late: Awaited<ReturnType<typeof startNoTrackServer>> | undefined;
  let tmp = '';

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'notrack-'));
    fake = await startNoTrackServer(path.join(tmp, 'probed.sock'));
    late = await startNoTrackServer(path.join(tmp, 'late.sock'));
    proxy = await startProxy({
      name: 'notrack',
      config: (dir) => `
local probed = mysql_resolve('${tmp}/probed.sock') -- probed at startup
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(probed, hr) end,
})`,
    });
    // A proxy of its own: it knows no server at startup.
    lateProxy = await startProxy({
      name: 'notrack-late',
      config: (dir) => `
-- a plain string: the proxy meets this server only when a session goes there
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect('${tmp}/late.sock', hr) end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await lateProxy?.stop();
    await new Promise<void>((r) => (fake ? fake.server.close(() => r()) : r()));
    await new Promise<void>((r) => (late ? late.server.close(() => r()) : r()));
    if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a configured server: the greeting leaves the capability out, the client logs in', async () => {
    const r = await mariadbCli(proxy!.socket, 'u', 'pw', 'DO 1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fake!.logins.length, 1);
    assert.equal(fake!.logins[0]! & Capability.CLIENT_SESSION_TRACK, 0);
  });

  test('a server met only at login: that login fails clearly, the listener greets without it from then on', async () => {
    const sock = lateProxy!.socket;
    // The proxy knows no server without session tracking yet: the client took it.
    const first = await mariadbCli(sock, 'u', 'pw', 'DO 1');
    assert.notEqual(first.code, 0);
    assert.match(first.stderr, /ERROR 1043 \(08S01\).*Server lacks capabilities the client requires/);
    await lateProxy!.waitForLog(/Server lacks capabilities the client negotiated \(CLIENT_SESSION_TRACK\)/, 5000);
    const second = await mariadbCli(sock, 'u', 'pw', 'DO 1');
    assert.equal(second.code, 0, second.stderr);
    assert.equal(late!.logins.at(-1)! & Capability.CLIENT_SESSION_TRACK, 0);
  });
});

describe('mysql_listen destinations', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let tmp = '';

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dest-'));
    db = await startMariaDB({ name: 'dest' });
    await createTestUsers(db);
    await db.query(`
CREATE DATABASE captest;
CREATE TABLE captest.t (j JSON);
GRANT SELECT ON captest.* TO 'native'@'%';`);
    const cluster =
      `mysql_cluster({ '${tmp}/node1.sock', '${tmp}/node2.sock' }, ` +
      `{ monitoring = true, user = '${user}', password = '${password}', check_interval = 0.2 })`;
    fs.symlinkSync(db.socket, path.join(tmp, 'node1.sock'));
    fs.symlinkSync(db.socket, path.join(tmp, 'node2.sock'));
    proxy = await startProxy({
      name: 'dest',
      config: (dir) => `
local function via(target)
  return { on_handshake_response = function(client, hr) return client:connect(target, hr) end }
end
local db = '${db!.socket}'
-- Not there at startup: the first client waits for its greeting (created by the test).
mysql_listen('${dir}/late.sock', via(db), { destinations = { '${tmp}/late.sock' } })
-- Never there: clients are greeted with what is known, logged once.
mysql_listen('${dir}/never.sock', via(db), { destinations = { '${tmp}/never.sock' } })
local c = ${cluster}
mysql_listen('${dir}/cluster.sock', via(c), { destinations = { c } })`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
    if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a cluster as destination: its nodes are probed at startup, the first client gets the extended metadata', async () => {
    const first = await typeInfo(path.join(proxy!.dir, 'cluster.sock'), 'SELECT j FROM t');
    assert.match(first, /format=json/);
  });

  test('a destination unreachable at startup: the first client waits for its greeting', async () => {
    assert.match(proxy!.logs(), /server .*late\.sock: greeting not learned at startup/);
    fs.symlinkSync(db!.socket, path.join(tmp, 'late.sock'));
    const first = await typeInfo(path.join(proxy!.dir, 'late.sock'), 'SELECT j FROM t');
    assert.match(first, /format=json/);
  });

  test('a destination never reachable: clients log in without the wait, the listener logs it once', async () => {
    const sock = path.join(proxy!.dir, 'never.sock');
    const first = await typeInfo(sock, 'SELECT j FROM t');
    assert.doesNotMatch(first, /format=json/);
    await proxy!.waitForLog(
      /greeting clients without the capabilities of .*never\.sock \(greeting not learned\)/,
      5000,
    );
    const t0 = Date.now();
    const r = await mariadbCli(sock, user, password, 'DO 1');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 1500, 'the second client waited again');
    assert.equal(proxy!.logs().match(/greeting clients without the capabilities of/g)?.length, 1);
  });

  const bad: [string, RegExp][] = [
    [`{ destinations = {} }`, /Option 'destinations' must not be empty/],
    [
      `{ destinations = { 42 } }`,
      /Option 'destinations': an address, mysql_resolve\(\) or mysql_cluster\(\) expected, got number/,
    ],
    [`{ destinations = { '10.0.0.1:99999' } }`, /Option 'destinations': .*port/i],
  ];
  for (const [options, re] of bad) {
    test(`config error: ${options}`, async () => {
      const config = `\nmysql_listen('\${dir}/p.sock', { on_handshake_response = function() end }, ${options}) -- MARK\n`;
      const r = await runProxy(['--check'], { config, name: 'destopt' });
      assert.equal(r.code, 78, r.stderr);
      assert.match(r.stderr, /config\.lua:2:/);
      assert.match(r.stderr, re);
    });
  }
});
