// Commands that touch identity or state in the command phase: COM_INIT_DB through on_init_db
// (allow, rename, reject just the request), and COM_CHANGE_USER, which must never bypass the Lua
// login policy (it is refused). Run against both relays.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';

for (const relayKind of ['native', 'js'] as const) {
  describe(`command interception (--relay ${relayKind})`, () => {
    let db: MariaDB | undefined;
    let proxy: Proxy | undefined;
    let plain: Proxy | undefined;

    before(async () => {
      db = await startMariaDB({ name: `cmd-${relayKind}` });
      await createTestUsers(db);
      const backend = JSON.stringify(db.socket);
      proxy = await startProxy({
        name: `cmd-${relayKind}`,
        args: ['--relay', relayKind],
        config: (dir) => `
local aliases = { shop = 'test' }
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${backend}, hr) end,
  on_init_db = function(client, name)
    print('on_init_db ' .. name)
    if name == 'forbidden' then return client:err('database forbidden by policy') end
    if name == 'boom' then error('policy bug') end
    return client:init_db(aliases[name] or name)
  end,
})`,
      });
      plain = await startProxy({
        name: `cmdplain-${relayKind}`,
        args: ['--relay', relayKind],
        config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${backend}, hr) end,
})`,
      });
    });

    after(async () => {
      await proxy?.stop();
      await plain?.stop();
      await db?.stop();
    });

    const cli = (p: Proxy, sql: string, extra: string[] = []) =>
      mariadbCli(p.socket, USERS.native.user, USERS.native.password, sql, extra);

    const cliStdin = (p: Proxy, input: string) =>
      runCommand(
        'mariadb',
        [
          '--no-defaults',
          '-S',
          p.socket,
          '-u',
          USERS.native.user,
          `-p${USERS.native.password}`,
          '--batch',
          '--skip-column-names',
          '--force',
        ],
        { input },
      );

    test('on_init_db renames: `use shop` lands in database test', async () => {
      const r = await cli(proxy!, 'use shop; select database()');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'test\n');
      assert.match(proxy!.logs(), /on_init_db shop/);
    });

    test('a rejected INIT_DB fails only that request; the session goes on in its database', async () => {
      // Statements on stdin: with --force the CLI goes on after a failed `use` (with -e it stops).
      const r = await cliStdin(proxy!, 'use test;\nuse forbidden;\nselect database();\n');
      assert.match(r.stderr, /ERROR 1044 \(42000\).*database forbidden by policy/);
      assert.equal(r.stdout, 'test\n', 'the next statement ran, still in test');
    });

    test('a Lua error in on_init_db ends the session with "Lua error"', async () => {
      const r = await cli(proxy!, 'use boom; select 1', ['--force']);
      assert.match(r.stderr, /ERROR 1044 \(42000\).*Lua error/);
      assert.match(proxy!.logs(), /policy bug/);
    });

    test('USE by query, then INIT_DB back: the server, not a stale copy, decides', async () => {
      // "/*q*/ USE" is sent as COM_QUERY; the CLI's own `use` sends COM_INIT_DB.
      const r = await cli(proxy!, 'use test; /*q*/ USE sbtest; select database(); use test; select database()');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'sbtest\ntest\n');
    });

    test('without on_init_db, COM_INIT_DB goes to the server unchanged', async () => {
      const r = await cli(plain!, 'use sbtest; select database()');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'sbtest\n');
    });

    for (const [name, p] of [
      ['with on_init_db', () => proxy!],
      ['without on_init_db', () => plain!],
    ] as const) {
      test(`COM_CHANGE_USER is refused and the session stays who it was (${name})`, async () => {
        const c = await mysql.createConnection({
          socketPath: p().socket,
          user: USERS.native.user,
          password: USERS.native.password,
          enableCleartextPlugin: true,
        });
        try {
          await assert.rejects(c.changeUser({ user: USERS.nopw.user, password: '' }), (e: unknown) => {
            const err = e as { errno?: number; sqlState?: string; message?: string };
            return err.errno === 1235 && err.sqlState === '42000' && /COM_CHANGE_USER/.test(err.message ?? '');
          });
          const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
          assert.equal(rows[0]!['u'], 'native@%');
        } finally {
          c.destroy();
        }
      });
    }

    test('large queries around the intercepted commands are not mistaken for commands', async () => {
      const c = await mysql.createConnection({
        socketPath: proxy!.socket,
        user: USERS.native.user,
        password: USERS.native.password,
        database: 'test',
        enableCleartextPlugin: true,
      });
      try {
        // A 17 MiB query: its continuation packets have sequence ids > 0 and start with
        // arbitrary bytes (here 0x02 and 0x11, the intercepted command bytes).
        const prefix = "SELECT LENGTH('";
        const filler = Buffer.alloc(17 * 1024 * 1024, 0x41);
        // Payload = COM_QUERY byte + SQL; the second physical packet starts at payload offset
        // 0xFFFFFF: put the intercepted command bytes exactly there.
        const at = 0xffffff - 1 - prefix.length;
        filler[at] = 0x02;
        filler[at + 1] = 0x11;
        const sql = `${prefix}${filler.toString('latin1')}') AS n`;
        const [rows] = await c.query<mysql.RowDataPacket[]>(sql);
        assert.equal(Number(rows[0]!['n']), filler.length);
        const [again] = await c.query<mysql.RowDataPacket[]>('SELECT DATABASE() AS d');
        assert.equal(again[0]!['d'], 'test');
      } finally {
        c.destroy();
      }
    });
  });
}
