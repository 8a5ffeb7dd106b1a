// Backend-less sessions: examples/virtual-server.lua serves a PostgreSQL table over the MySQL
// protocol with client:accept() and on_query, no MySQL server anywhere. Five real client libraries
// log in and query it; the daemon's own answers (ping, USE, unanswered commands) keep them going.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { startPostgres, type Postgres } from '../helpers/postgres.js';
import { mariadbCli, REPO_ROOT, startProxy, type Proxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/wire.js';
import { Command, PacketHeader } from '../../src/protocol/constants.js';
import { parseErr } from '../../src/protocol/packets/generic.js';

const run = promisify(execFile);
const READER = { user: 'reader', password: 'reader-secret' };
const ALL_ROWS = '1\tapple\t1.25\n2\tbanana\t0.50\n3\tcherry\tNULL\n';

describe('examples/virtual-server.lua: a MySQL front with no MySQL server', () => {
  let pgServer: Postgres | undefined;
  let proxy: Proxy | undefined;
  let socket = '';
  let socketDir = '';

  before(async () => {
    pgServer = await startPostgres('virtual');
    await pgServer.query(
      "CREATE TABLE products (id integer PRIMARY KEY, name text NOT NULL, price numeric(10,2)); INSERT INTO products VALUES (1, 'apple', 1.25), (2, 'banana', 0.5), (3, 'cherry', NULL)",
    );
    socketDir = fs.mkdtempSync('/tmp/myproxy-vs-');
    fs.chmodSync(socketDir, 0o755);
    socket = `${socketDir}/virtual.sock`;
    proxy = await startProxy({
      name: 'virtual',
      config: fs.readFileSync(path.join(REPO_ROOT, 'examples', 'virtual-server.lua'), 'utf8'),
      env: { MYPROXY_PG: pgServer.conninfo, MYPROXY_SOCKET: socket },
    });
  });

  after(async () => {
    await proxy?.stop();
    await pgServer?.stop();
    if (socketDir !== '') fs.rmSync(socketDir, { recursive: true, force: true });
  });

  test('the mariadb CLI logs in and reads the table, one row and all of them', async () => {
    const all = await mariadbCli(socket, READER.user, READER.password, 'SELECT * FROM products');
    assert.equal(all.stderr, '');
    assert.equal(all.stdout, ALL_ROWS);
    const one = await mariadbCli(socket, READER.user, READER.password, 'select id, name from products where id = 2;');
    assert.equal(one.stdout, '2\tbanana\t0.50\n');
    const tables = await mariadbCli(socket, READER.user, READER.password, 'SHOW TABLES');
    assert.equal(tables.stdout, 'products\n');
  });

  test('a wrong password and an unknown user are refused with 1045', async () => {
    const r = await mariadbCli(socket, READER.user, 'wrong', 'SELECT 1');
    assert.match(r.stderr, /ERROR 1045 \(28000\)/);
    const u = await mariadbCli(socket, 'nobody', 'x', 'SELECT 1');
    assert.match(u.stderr, /ERROR 1045 \(28000\)/);
  });

  test('SQL the script does not answer is refused as a server would (1064), and the session goes on', async () => {
    const r = await mariadbCli(socket, READER.user, READER.password, 'DELETE FROM products; SELECT 1');
    assert.match(r.stderr, /ERROR 1064 \(42000\).*answers SELECT \.\.\. FROM products only/);
  });

  test('mysql2: query, execute is refused by name, ping, USE, and the session stays usable', async () => {
    const c = await mysql.createConnection({ socketPath: socket, user: READER.user, password: READER.password });
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT * FROM products WHERE id = 1');
      assert.deepEqual({ ...rows[0] }, { id: 1, name: 'apple', price: '1.25' });
      await c.ping();
      await c.query('SET NAMES utf8mb4');
      await assert.rejects(c.changeUser({ user: 'other' }), /COM_CHANGE_USER is not supported/);
      // Prepared statements are not answered by this script: an ERR naming the command, no hang.
      await assert.rejects(c.execute('SELECT * FROM products WHERE id = ?', [1]), /'stmt_prepare'/);
      const [again] = await c.query<mysql.RowDataPacket[]>('SELECT * FROM products');
      assert.equal(again.length, 3);
    } finally {
      await c.end();
    }
  });

  test('COM_INIT_DB is answered and sets client.database (USE, SELECT DATABASE())', async () => {
    const r = await mariadbCli(socket, READER.user, READER.password, 'USE shop; SELECT DATABASE()');
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, 'shop\n');
  });

  test('PyMySQL, PHP mysqli and DBD::MariaDB log in and read the table', async () => {
    const py = await run('/usr/bin/python3', [
      '-c',
      `import pymysql
c = pymysql.connect(unix_socket=${JSON.stringify(socket)}, user='reader', password='reader-secret')
cur = c.cursor()
cur.execute('SELECT * FROM products WHERE id = 3')
print(cur.fetchall())
c.ping()
c.close()`,
    ]);
    assert.equal(py.stdout.trim(), "((3, 'cherry', None),)");
    const php = await run('php', [
      '-r',
      `$m = new mysqli('localhost', 'reader', 'reader-secret', '', 0, ${JSON.stringify(socket)});
$r = $m->query('SELECT * FROM products');
while ($row = $r->fetch_row()) echo implode(',', array_map(fn($v) => $v ?? 'NULL', $row)), "\\n";`,
    ]);
    assert.equal(php.stdout, '1,apple,1.25\n2,banana,0.50\n3,cherry,NULL\n');
    const perl = await run('perl', [
      '-MDBI',
      '-e',
      `my $d = DBI->connect("DBI:MariaDB:mariadb_socket=${socket}", "reader", "reader-secret", {RaiseError => 1});
my $rows = $d->selectall_arrayref("SELECT * FROM products WHERE id = 2");
print join(",", @{$rows->[0]}), "\\n";
$d->disconnect;`,
    ]);
    assert.equal(perl.stdout, '2,banana,0.50\n');
  });

  test('a raw client: unanswered commands get an ERR naming them, COM_PING an OK, COM_QUIT closes', async () => {
    // A session of the test's own handler (clear passwords) against the same daemon code path.
    const local = await startProxy({
      name: 'virtual-raw',
      config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:accept() end,
})`,
    });
    try {
      const c = await RawClient.connect(local.socket);
      const ok = await c.login('anyone', 'pw');
      assert.equal(ok.payload[0], PacketHeader.OK);
      const pong = await c.command(Buffer.from([Command.COM_PING]));
      assert.equal(pong.payload[0], PacketHeader.OK);
      assert.equal(pong.seq, 1);
      const q = await c.command(Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.from('SELECT 1')]));
      assert.deepEqual(parseErr(q.payload), {
        errno: 1235,
        sqlState: '42000',
        message: "myproxy does not answer 'query' in this session",
      });
      const stats = await c.command(Buffer.from([Command.COM_STATISTICS]));
      assert.equal(parseErr(stats.payload).message, "myproxy does not answer 'statistics' in this session");
      c.send(Buffer.from([1, 0, 0, 0, Command.COM_QUIT]));
      await c.closed;
    } finally {
      await local.stop();
    }
  });
});
