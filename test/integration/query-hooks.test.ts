// on_query, on_command and on_result against a real MariaDB and real clients, on both relays:
// queries answered by Lua (OK, result sets with and without CLIENT_DEPRECATE_EOF, ERR with the
// default and a chosen code), rewritten (also past 16 MiB), refused, a hook that fails, yields or
// returns garbage, pipelined commands kept in order, prepared statements, and on_result's figures.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/wire.js';
import { Command, PacketHeader } from '../../src/protocol/constants.js';
import { parseErr } from '../../src/protocol/packets/generic.js';
import { framePayload } from '../../src/protocol/writer.js';

const CONFIG = (dbSocket: string, dir: string): string => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    client.account = hr.user
    return client:connect(${JSON.stringify(dbSocket)}, hr)
  end,
  on_query = function(client, sql)
    if sql == 'SELECT local_ok' then
      return client:ok{affected_rows = 7, insert_id = 3, warnings = 1, info = 'done by lua'}
    end
    if sql == 'SELECT local_rows' then
      return client:result{
        columns = {'id', {name = 'name', type = 'var_string'}, 'f', 'n'},
        rows = {{1, 'one', 1.5, mysql_null}, {2, 'two', 2.25, nil}, {-3, '', 0.125, 'x'}},
      }
    end
    if sql:find('forbidden', 1, true) then return client:err('no forbidden tables') end
    if sql == 'SELECT custom_err' then return client:err('custom refusal', 1234, '42S02') end
    if sql:find('REWRITE_ME', 1, true) then return client:forward((sql:gsub('REWRITE_ME', '41 + 1'))) end
    if sql == 'SELECT boom' then error('hook failed on purpose') end
    if sql == 'SELECT garbage' then return 42 end
    if sql == 'SELECT sleepy' then
      sleep(0.2)
      return client:result{columns = {'slept'}, rows = {{1}}}
    end
    if #sql > 1000000 then
      -- a big query, rewritten: its first comment becomes a number the test can see
      return client:forward((sql:gsub('^SELECT /%*', 'SELECT 7 AS seven, /*', 1)))
    end
  end,
  on_command = function(client, name, payload)
    if name == 'ping' and client.account == 'other' then return client:err('no pings for you') end
    if name == 'stmt_prepare' and payload:find('forbidden', 1, true) then return client:err('no forbidden prepare') end
    if name == 'stmt_close' then return client:ok() end
  end,
  on_result = function(client, info)
    print(string.format('RESULT command=%s sql=%s outcome=%s affected=%d err=%d rows=%d tx=%s',
      info.command, tostring(info.sql), info.outcome, info.affected_rows, info.error_code, info.rows,
      tostring(info.in_transaction)))
  end,
})`;

for (const relayKind of ['native', 'js'] as const) {
  describe(`on_query, on_command, on_result (--relay ${relayKind})`, () => {
    let db: MariaDB | undefined;
    let proxy: Proxy | undefined;

    before(async () => {
      db = await startMariaDB({ name: `hooks-${relayKind}`, extraArgs: ['--max-allowed-packet=64M'] });
      await createTestUsers(db);
      await db.query(
        "CREATE OR REPLACE USER 'other'@'%' IDENTIFIED BY 'otherpw'; GRANT ALL ON test.* TO 'other'@'%'; CREATE OR REPLACE TABLE test.t (id INT PRIMARY KEY, v VARCHAR(20))",
      );
      proxy = await startProxy({
        name: `hooks-${relayKind}`,
        args: ['--relay', relayKind],
        config: (dir) => CONFIG(db!.socket, dir),
      });
    });

    after(async () => {
      await proxy?.stop();
      await db?.stop();
    });

    const connect = (who: { user: string; password: string } = USERS.native) =>
      mysql.createConnection({
        socketPath: proxy!.socket,
        user: who.user,
        password: who.password,
        database: 'test',
        authPlugins: {},
        enableCleartextPlugin: true,
        multipleStatements: true,
      } as mysql.ConnectionOptions);

    test('client:ok{} answers in the server place, with the counters and info', async () => {
      const c = await connect();
      try {
        const [r] = await c.query<mysql.ResultSetHeader>('SELECT local_ok');
        assert.equal(r.affectedRows, 7);
        assert.equal(r.insertId, 3);
        assert.equal(r.warningStatus, 1);
        assert.equal(r.info, 'done by lua');
        // The session goes on with the server.
        const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT 1 + 1 AS two');
        assert.equal(rows[0]!['two'], 2);
      } finally {
        await c.end();
      }
    });

    test("a local OK carries the server's latest status flags (in a transaction, after it)", async () => {
      const c = await connect();
      try {
        const IN_TRANS = 0x0001;
        const AUTOCOMMIT = 0x0002;
        const status = async (): Promise<number> =>
          (await c.query<mysql.ResultSetHeader>('SELECT local_ok'))[0].serverStatus;
        assert.equal((await status()) & (IN_TRANS | AUTOCOMMIT), AUTOCOMMIT);
        await c.query('BEGIN');
        assert.equal((await status()) & (IN_TRANS | AUTOCOMMIT), IN_TRANS | AUTOCOMMIT);
        // An ERR carries no status flags: the transaction is still open after it.
        await assert.rejects(c.query('SELECT * FROM no_such_table_here'), /doesn't exist/);
        assert.equal((await status()) & (IN_TRANS | AUTOCOMMIT), IN_TRANS | AUTOCOMMIT);
        await c.query('SET autocommit = 0');
        await c.query('COMMIT');
        assert.equal((await status()) & (IN_TRANS | AUTOCOMMIT), 0);
      } finally {
        await c.end();
      }
    });

    test('client:result{} is a text result set the mariadb CLI and mysql2 read, NULL by sentinel and by nil', async () => {
      const r = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'SELECT local_rows', [
        '--column-names',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'id\tname\tf\tn\n1\tone\t1.5\tNULL\n2\ttwo\t2.25\tNULL\n-3\t\t0.125\tx\n');
      const c = await connect();
      try {
        const [rows, fields] = await c.query<mysql.RowDataPacket[]>('SELECT local_rows');
        assert.deepEqual(
          rows.map((row) => ({ ...row })),
          [
            { id: 1, name: 'one', f: 1.5, n: null },
            { id: 2, name: 'two', f: 2.25, n: null },
            { id: -3, name: '', f: 0.125, n: 'x' },
          ],
        );
        assert.deepEqual(
          fields.map((f) => f.name),
          ['id', 'name', 'f', 'n'],
        );
      } finally {
        await c.end();
      }
    });

    for (const deprecateEof of [true, false]) {
      test(`a local result set is framed right with CLIENT_DEPRECATE_EOF ${deprecateEof ? 'on' : 'off'}`, async () => {
        const c = await RawClient.connect(proxy!.socket);
        try {
          const ok = await c.login(USERS.native.user, USERS.native.password, 'test', deprecateEof ? 1 << 24 : 0);
          assert.equal(ok.payload[0], PacketHeader.OK);
          const first = await c.command(
            Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.from('SELECT local_rows')]),
          );
          assert.equal(first.seq, 1);
          assert.deepEqual([...first.payload], [4]);
          const packets = [];
          let eofs = 0;
          while (eofs < (deprecateEof ? 1 : 2)) {
            const p = await c.next();
            packets.push(p);
            if (p.payload[0] === 0xfe && p.payload.length < 9) eofs++;
          }
          // 4 column definitions, (EOF), 3 rows, then the end.
          assert.equal(packets.length, deprecateEof ? 4 + 3 + 1 : 4 + 1 + 3 + 1);
          packets.forEach((p, i) => assert.equal(p.seq, 2 + i));
          const end = packets.at(-1)!.payload;
          if (deprecateEof) assert.equal(end.length, 7, 'an OK with the 0xFE header');
          else assert.equal(end.length, 5, 'an EOF');
          // The next command goes to the server and its answer has the right sequence id.
          const pong = await c.command(Buffer.from([Command.COM_PING]));
          assert.equal(pong.payload[0], PacketHeader.OK);
          assert.equal(pong.seq, 1);
        } finally {
          c.close();
        }
      });
    }

    test("client:err() refuses with ProxySQL's 1148 by default, or the code and SQLSTATE given", async () => {
      const c = await connect();
      try {
        await assert.rejects(c.query('SELECT * FROM forbidden'), (e: mysql.QueryError & { sqlState?: string }) => {
          assert.equal(e.errno, 1148);
          assert.equal(e.sqlState, '42000');
          assert.equal(e.message, 'no forbidden tables');
          return true;
        });
        await assert.rejects(c.query('SELECT custom_err'), (e: mysql.QueryError & { sqlState?: string }) => {
          assert.equal(e.errno, 1234);
          assert.equal(e.sqlState, '42S02');
          return true;
        });
        const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT 5 AS five');
        assert.equal(rows[0]!['five'], 5);
      } finally {
        await c.end();
      }
    });

    test('client:forward() rewrites the query the server gets', async () => {
      const c = await connect();
      try {
        const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT REWRITE_ME AS answer');
        assert.equal(rows[0]!['answer'], 42);
      } finally {
        await c.end();
      }
    });

    test('a query of more than 16 MiB reaches the hook whole and is rewritten and forwarded', async () => {
      const c = await connect();
      try {
        const filler = 'x'.repeat(20 * 1024 * 1024);
        const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT /* ${filler} */ 1 AS one`);
        assert.equal(rows[0]!['seven'], 7);
        assert.equal(rows[0]!['one'], 1);
      } finally {
        await c.end();
      }
    });

    test('a hook that fails or returns garbage gives 1105 Lua error, the session goes on', async () => {
      const c = await connect();
      try {
        for (const sql of ['SELECT boom', 'SELECT garbage']) {
          await assert.rejects(c.query(sql), (e: mysql.QueryError & { sqlState?: string }) => {
            assert.equal(e.errno, 1105);
            assert.equal(e.sqlState, 'HY000');
            assert.equal(e.message, 'Lua error');
            return true;
          });
        }
        const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT 6 AS six');
        assert.equal(rows[0]!['six'], 6);
        await proxy!.waitForLog(/on_query: .*hook failed on purpose/);
        await proxy!.waitForLog(/on_query: Bad return value \(number\)/);
      } finally {
        await c.end();
      }
    });

    test('pipelined commands behind a hook that yields keep their order', async () => {
      const c = await RawClient.connect(proxy!.socket);
      try {
        await c.login(USERS.native.user, USERS.native.password, 'test');
        const q = (sql: string) => framePayload(Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.from(sql)]), 0);
        // Three commands in one write: answered by Lua after a sleep, by the server, by Lua at once.
        c.send(Buffer.concat([q('SELECT sleepy'), q('SELECT 12345'), q('SELECT local_ok')]));
        const seen: string[] = [];
        let results = 0;
        while (results < 3) {
          const p = await c.next();
          if (p.payload[0] === PacketHeader.OK && p.seq === 1) {
            seen.push('ok');
            results++;
          } else if (p.seq === 1) {
            seen.push(`columns:${p.payload[0]!}`);
          } else if (p.payload[0] === 0xfe && p.payload.length < 9) {
            results++;
          } else if (p.seq >= 3 && p.payload[0] !== 0xfe) {
            seen.push(`row:${p.payload.subarray(1).toString()}`);
          }
        }
        assert.deepEqual(seen, ['columns:1', 'row:1', 'columns:1', 'row:12345', 'ok']);
      } finally {
        c.close();
      }
    });

    test('on_command: a ping refused for one account, a prepared statement refused, prepared statements work', async () => {
      const other = await connect({ user: 'other', password: 'otherpw' });
      const c = await connect();
      try {
        await assert.rejects(other.ping(), /no pings for you/);
        await c.ping();
        await assert.rejects(c.prepare('SELECT * FROM forbidden WHERE id = ?'), /no forbidden prepare/);
        await c.query("INSERT INTO t VALUES (1, 'a'), (2, 'b') ON DUPLICATE KEY UPDATE v = VALUES(v)");
        const [rows] = await c.execute<mysql.RowDataPacket[]>('SELECT v FROM t WHERE id = ?', [2]);
        assert.equal(rows[0]!['v'], 'b');
        // COM_STMT_CLOSE has no response: client:ok() there is a Lua error, and the command goes on as it was.
        const stmt = await c.prepare('SELECT 1');
        void stmt.close();
        await proxy!.waitForLog(/'stmt_close' has no response/);
        const [again] = await c.query<mysql.RowDataPacket[]>('SELECT 3 AS three');
        assert.equal(again[0]!['three'], 3);
      } finally {
        await other.end();
        await c.end();
      }
    });

    test('on_result reports each forwarded command with its SQL and figures', async () => {
      const c = await connect();
      try {
        await c.query("UPDATE t SET v = 'z' WHERE id IN (1, 2)");
        await assert.rejects(c.query('SELECT * FROM no_such_table'));
        await c.query('SELECT id FROM t');
        await proxy!.waitForLog(
          /RESULT command=query sql=UPDATE t SET v = 'z' WHERE id IN \(1, 2\) outcome=ok affected=2 err=0 rows=0 tx=false/,
        );
        await proxy!.waitForLog(
          /RESULT command=query sql=SELECT \* FROM no_such_table outcome=err affected=0 err=1146/,
        );
        await proxy!.waitForLog(/RESULT command=query sql=SELECT id FROM t outcome=ok affected=0 err=0 rows=2/);
        // Answers made by Lua are no server results.
        await c.query('SELECT local_ok');
        await c.query('SELECT 99');
        await proxy!.waitForLog(/RESULT command=query sql=SELECT 99 /);
        assert.doesNotMatch(proxy!.logs(), /sql=SELECT local_ok/);
      } finally {
        await c.end();
      }
    });

    test('an ERR packet from a local refusal parses as the catalogue says', async () => {
      const c = await RawClient.connect(proxy!.socket);
      try {
        await c.login(USERS.native.user, USERS.native.password, 'test');
        const p = await c.command(Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.from('SELECT forbidden')]));
        assert.deepEqual(parseErr(p.payload), { errno: 1148, sqlState: '42000', message: 'no forbidden tables' });
        assert.equal(p.seq, 1);
      } finally {
        c.close();
      }
    });
  });
}

describe('hooks with LOAD DATA LOCAL INFILE, long data, multi-statements, a runaway hook, a client that leaves', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  const file = `/tmp/myproxy-hooks-infile-${process.pid}.tsv`;

  before(async () => {
    db = await startMariaDB({ name: 'hooks-more', extraArgs: ['--local-infile=1'] });
    await createTestUsers(db);
    await db.query(
      'CREATE OR REPLACE TABLE test.li (a VARCHAR(20), b INT); CREATE OR REPLACE TABLE test.blobs (id INT, data LONGBLOB)',
    );
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, Array.from({ length: 1000 }, (_, i) => `row${i}\t${i}`).join('\n') + '\n');
    proxy = await startProxy({
      name: 'hooks-more',
      args: ['--lua-budget', '50'],
      config: (dir) => `
local seen = {}
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
  on_query = function(client, sql)
    if sql == 'SELECT spin' then while true do end end
    if sql == 'SELECT nap' then sleep(1) return client:ok() end
  end,
  on_command = function(client, name, payload)
    seen[name] = (seen[name] or 0) + 1
    if name == 'ping' then print('COMMANDS long_data=' .. tostring(seen.stmt_send_long_data) .. ' execute=' .. tostring(seen.stmt_execute)) end
  end,
  on_result = function(client, info)
    print(string.format('RESULT %s results=%d outcome=%s affected=%d', tostring(info.sql), info.results, info.outcome, info.affected_rows))
  end,
}, {local_infile = true})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
    const { rmSync } = await import('node:fs');
    rmSync(file, { force: true });
  });

  test('LOAD DATA LOCAL INFILE passes through on_query, the file packets untouched', async () => {
    const r = await mariadbCli(
      proxy!.socket,
      USERS.native.user,
      USERS.native.password,
      `LOAD DATA LOCAL INFILE '${file}' INTO TABLE test.li (a, b)`,
      ['--local-infile=1'],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await db!.query('SELECT COUNT(*), SUM(b) FROM test.li'), '1000\t499500\n');
    await proxy!.waitForLog(/RESULT LOAD DATA LOCAL INFILE .* results=1 outcome=ok affected=1000/);
  });

  test('a multi-statement query: on_result counts its results', async () => {
    const c = await mysql.createConnection({
      socketPath: proxy!.socket,
      user: USERS.native.user,
      password: USERS.native.password,
      authPlugins: {},
      enableCleartextPlugin: true,
      multipleStatements: true,
    } as mysql.ConnectionOptions);
    try {
      const [results] = await c.query('SELECT 1; SELECT 2; DO 3');
      assert.equal((results as unknown[]).length, 3);
    } finally {
      await c.end();
    }
    await proxy!.waitForLog(/RESULT SELECT 1; SELECT 2; DO 3 results=3 outcome=ok/);
  });

  test('COM_STMT_SEND_LONG_DATA (PHP mysqli send_long_data) goes through on_command', async () => {
    const php = await runCommand('php', [
      '-r',
      `$m = new mysqli('localhost', 'native', 'nativepw', 'test', 0, ${JSON.stringify(proxy!.socket)});
$s = $m->prepare('INSERT INTO blobs VALUES (1, ?)');
$null = NULL;
$s->bind_param('b', $null);
$s->send_long_data(0, str_repeat('a', 100000));
$s->send_long_data(0, str_repeat('b', 100000));
$s->execute();
$m->query('SELECT 1');
echo "done\\n";`,
    ]);
    assert.equal(php.code, 0, php.stderr);
    assert.equal(
      await db!.query('SELECT LENGTH(data), LEFT(data, 1), RIGHT(data, 1) FROM test.blobs'),
      '200000\ta\tb\n',
    );
    const c = await mysql.createConnection({
      socketPath: proxy!.socket,
      user: USERS.native.user,
      password: USERS.native.password,
      authPlugins: {},
      enableCleartextPlugin: true,
    } as mysql.ConnectionOptions);
    try {
      await c.ping();
    } finally {
      await c.end();
    }
    await proxy!.waitForLog(/COMMANDS long_data=2 execute=1/);
  });

  test('a hook that never returns is cut by the compute budget: 1105, the session goes on', async () => {
    const r = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'SELECT spin; SELECT 7');
    assert.match(r.stderr, /ERROR 1105 \(HY000\) at line 1: Lua error/);
    const again = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'SELECT 8');
    assert.equal(again.stdout, '8\n');
  });

  test('a client that leaves while its hook waits: nothing breaks, the daemon serves on', async () => {
    const c = await RawClient.connect(proxy!.socket);
    await c.login(USERS.native.user, USERS.native.password);
    c.send(framePayload(Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.from('SELECT nap')]), 0));
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    await new Promise((r) => setTimeout(r, 1500));
    const r = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'SELECT 9');
    assert.equal(r.stdout, '9\n');
    assert.doesNotMatch(proxy!.logs(), /internal error|unhandled/i);
  });
});
