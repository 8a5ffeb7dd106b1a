// The relay's response tracking against a real MariaDB and real clients, on both relays: every item
// of the grammar recorded with the right figures (seen through --log-responses), and a server
// stream that fits no grammar leaves the session untracked but relayed byte for byte.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { Capability, Command } from '../../src/protocol/constants.js';
import { PacketFramer } from '../../src/protocol/framer.js';
import { writeOk } from '../../src/protocol/packets/generic.js';
import { writeHandshakeV10 } from '../../src/protocol/packets/handshake.js';
import { framePayload } from '../../src/protocol/writer.js';
import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';
import { BASIC_CAPABILITIES, RawClient } from '../helpers/wire.js';

interface Logged {
  command: string;
  outcome: string;
  error: number;
  rows: number;
  affected_rows: number;
  results: number;
  bytes_in: number;
  bytes_out: number;
}

/** The --log-responses lines logged after character offset `since`. */
function responses(p: Proxy, since: number): Logged[] {
  const out: Logged[] = [];
  for (const m of p
    .logs()
    .slice(since)
    .matchAll(
      /response command=(\S+) outcome=(\S+) error=(\d+) rows=(\d+) affected_rows=(\d+) warnings=\d+ results=(\d+) status=\S+ duration_us=\d+ bytes_in=(\d+) bytes_out=(\d+)/g,
    )) {
    out.push({
      command: m[1]!,
      outcome: m[2]!,
      error: Number(m[3]),
      rows: Number(m[4]),
      affected_rows: Number(m[5]),
      results: Number(m[6]),
      bytes_in: Number(m[7]),
      bytes_out: Number(m[8]),
    });
  }
  return out;
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
}

for (const relayKind of ['native', 'js'] as const) {
  describe(`response tracking (--relay ${relayKind})`, () => {
    let db: MariaDB | undefined;
    let proxy: Proxy | undefined;

    before(async () => {
      db = await startMariaDB({
        name: `track-${relayKind}`,
        extraArgs: ['--max-allowed-packet=64M', '--log-bin=binlog', '--server-id=1', '--binlog-format=ROW'],
      });
      await createTestUsers(db);
      await db.query("GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR ON *.* TO 'native'@'%'");
      await db.query(
        'DELIMITER //\nCREATE OR REPLACE PROCEDURE test.three() BEGIN SELECT 1 AS a; SELECT 2 AS b UNION SELECT 3; END //\nDELIMITER ;',
      );
      proxy = await startProxy({
        name: `track-${relayKind}`,
        args: ['--relay', relayKind, '--log-responses'],
        config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})`,
      });
    });

    after(async () => {
      await proxy?.stop();
      await db?.stop();
    });

    const connect = (extra: Partial<mysql.ConnectionOptions> = {}) =>
      mysql.createConnection({
        socketPath: proxy!.socket,
        user: USERS.native.user,
        password: USERS.native.password,
        database: 'test',
        authPlugins: {},
        enableCleartextPlugin: true,
        ...extra,
      } as mysql.ConnectionOptions);

    test('the mariadb CLI: a result set and an error', async () => {
      const since = proxy!.logs().length;
      const r = await mariadbCli(
        proxy!.socket,
        USERS.native.user,
        USERS.native.password,
        'SELECT 1 UNION SELECT 2; SELECT nosuch',
        ['--force'],
      );
      assert.match(r.stderr, /1054/);
      await settle();
      const rs = responses(proxy!, since).filter((x) => x.command === 'query');
      assert.ok(rs.some((x) => x.outcome === 'ok' && x.rows === 2));
      assert.ok(rs.some((x) => x.outcome === 'err' && x.error === 1054));
    });

    test("mysql2's execute(): COM_STMT_PREPARE and COM_STMT_EXECUTE with binary rows", async () => {
      const c = await connect();
      const since = proxy!.logs().length;
      const [rows] = await c.execute('SELECT ? + 1 AS x UNION SELECT ?', [1, 5]);
      assert.deepEqual(rows, [{ x: 2 }, { x: 5 }]);
      await c.end();
      await settle();
      const rs = responses(proxy!, since);
      assert.ok(
        rs.some((x) => x.command === 'stmt_prepare' && x.outcome === 'ok'),
        JSON.stringify(rs),
      );
      assert.ok(
        rs.some((x) => x.command === 'stmt_execute' && x.outcome === 'ok' && x.rows === 2),
        JSON.stringify(rs),
      );
    });

    test('CALL with several result sets is one response; an error in a multi-statement ends it', async () => {
      const c = await connect({ multipleStatements: true });
      const since = proxy!.logs().length;
      await c.query('CALL three()');
      await assert.rejects(c.query('SELECT 1; SELECT nosuch; SELECT 2'));
      await c.query('SELECT 3');
      await c.end();
      await settle();
      const rs = responses(proxy!, since).filter((x) => x.command === 'query');
      assert.deepEqual(
        rs.map((x) => [x.outcome, x.error, x.rows, x.results]),
        [
          ['ok', 0, 3, 3],
          ['err', 1054, 1, 1],
          ['ok', 0, 1, 1],
        ],
      );
    });

    test('a cursor (PHP mysqli): COM_STMT_EXECUTE ends at the metadata, COM_STMT_FETCH brings the rows', async () => {
      const php = `<?php
$m = new mysqli(null, 'native', 'nativepw', 'test', 0, $argv[1]);
$s = $m->prepare('SELECT 1 AS a UNION SELECT 2 UNION SELECT 3');
$s->attr_set(MYSQLI_STMT_ATTR_CURSOR_TYPE, MYSQLI_CURSOR_TYPE_READ_ONLY);
$s->execute();
$s->bind_result($a);
$n = 0; while ($s->fetch()) { $n += $a; }
echo $n, "\\n";`;
      const file = path.join(os.tmpdir(), `cursor-${process.pid}.php`);
      fs.writeFileSync(file, php);
      const since = proxy!.logs().length;
      const r = await runCommand('php', [file, proxy!.socket]);
      fs.rmSync(file, { force: true });
      assert.equal(r.stdout.trim(), '6', r.stderr + r.stdout);
      await settle();
      const rs = responses(proxy!, since);
      assert.ok(
        rs.some((x) => x.command === 'stmt_execute' && x.outcome === 'ok' && x.rows === 0),
        JSON.stringify(rs),
      );
      assert.equal(
        rs.filter((x) => x.command === 'stmt_fetch').reduce((n, x) => n + x.rows, 0),
        3,
        JSON.stringify(rs),
      );
      assert.doesNotMatch(proxy!.logs().slice(since), /tracking stopped/);
    });

    test('mariadb-binlog --read-from-remote-server: the replication stream', async () => {
      await db!.query('CREATE OR REPLACE TABLE test.events (a INT); INSERT INTO test.events VALUES (1), (2)');
      const binlogs = (await db!.query('SHOW BINARY LOGS')).split('\n')[0]!.split('\t')[0]!;
      const since = proxy!.logs().length;
      const r = await runCommand('mariadb-binlog', [
        '--no-defaults',
        '--read-from-remote-server',
        `--socket=${proxy!.socket}`,
        '-u',
        'native',
        '-pnativepw',
        binlogs,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /CREATE OR REPLACE TABLE test.events/);
      await settle();
      const rs = responses(proxy!, since);
      assert.ok(
        rs.some((x) => x.command === 'binlog_dump' && x.outcome === 'ok' && x.bytes_out > 1000),
        JSON.stringify(rs),
      );
      assert.doesNotMatch(proxy!.logs().slice(since), /tracking stopped/);
    });

    test('16 MiB and more in both directions', async () => {
      const c = await connect();
      const since = proxy!.logs().length;
      const big = 'y'.repeat(17 * 1024 * 1024);
      const [rows] = (await c.query('SELECT LENGTH(?) AS n, REPEAT(?, 1) AS s', [
        big,
        'z'.repeat(17 * 1024 * 1024),
      ])) as unknown as [{ n: number; s: string }[]];
      assert.equal(rows[0]!.n, big.length);
      assert.equal(rows[0]!.s.length, 17 * 1024 * 1024);
      await c.end();
      await settle();
      const rs = responses(proxy!, since).filter((x) => x.command === 'query');
      assert.equal(rs.length, 1);
      assert.equal(rs[0]!.rows, 1);
      assert.ok(rs[0]!.bytes_in > 2 * 17 * 1024 * 1024 && rs[0]!.bytes_out > 17 * 1024 * 1024);
    });

    test('pipelined commands: three queries sent at once, three responses in order', async () => {
      const c = await RawClient.connect(proxy!.socket);
      assert.equal((await c.login(USERS.native.user, USERS.native.password)).payload[0], 0);
      const since = proxy!.logs().length;
      c.send(
        Buffer.concat([
          framePayload(Buffer.from([Command.COM_QUERY, ...Buffer.from('SELECT 1')]), 0),
          framePayload(Buffer.from([Command.COM_QUERY, ...Buffer.from('SELECT nosuch')]), 0),
          framePayload(Buffer.from([Command.COM_PING]), 0),
        ]),
      );
      // Drain: result set (count, def, row, end), ERR, OK.
      const firsts: number[] = [];
      for (let i = 0; i < 6; i++) firsts.push((await c.next()).payload[0]!);
      c.close();
      await settle();
      assert.deepEqual(
        responses(proxy!, since).map((x) => [x.command, x.outcome]),
        [
          ['query', 'ok'],
          ['query', 'err'],
          ['ping', 'ok'],
        ],
      );
      assert.equal(firsts.at(-1), 0x00);
    });
  });
}

describe('a server stream that fits no grammar', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir().length > 60 ? '/tmp' : os.tmpdir(), 'myproxy-untracked-'));
  const backendPath = path.join(dir, 'backend.sock');
  const garbage = Buffer.concat([Buffer.from([0x05, 0x00, 0x00, 0x01, 0x00]), randomBytes(200_000)]);
  let backend: net.Server | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    backend = net.createServer((s) => {
      s.on('error', () => undefined);
      s.write(
        writeHandshakeV10({
          serverVersion: Buffer.from('5.5.5-10.11.99-Fake'),
          connectionId: 7,
          scramble: Buffer.alloc(20, 0x41),
          capabilities: BASIC_CAPABILITIES | Capability.CLIENT_DEPRECATE_EOF,
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
          if (packets === 1) s.write(writeOk(p.seq + 1, 2));
          else if (packets === 2) s.write(garbage); // "answers" the first query with noise
        }
      });
    });
    await new Promise<void>((r) => backend!.listen(backendPath, () => r()));
    proxy = await startProxy({
      name: 'untracked',
      config: (d) => `
mysql_listen('${d}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(backendPath)}, hr) end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    backend?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('is relayed byte for byte, and the session is counted and logged as untracked', async () => {
    const c = await RawClient.connect(proxy!.socket);
    assert.equal((await c.login('u', 'pw')).payload[0], 0);
    c.socket.removeAllListeners('data');
    const got: Buffer[] = [];
    let n = 0;
    const all = new Promise<void>((resolve) =>
      c.socket.on('data', (d: Buffer) => {
        got.push(d);
        n += d.length;
        if (n >= garbage.length) resolve();
      }),
    );
    c.socket.resume();
    c.send(framePayload(Buffer.from([Command.COM_QUERY, ...Buffer.from('SELECT 1')]), 0));
    await all;
    assert.ok(Buffer.concat(got).equals(garbage), 'the bytes arrived unchanged');
    await proxy!.waitForLog(
      /response tracking stopped: (malformed|unexpected) server packet \(relaying goes on unchanged\)/,
    );
    c.close();
  });
});
