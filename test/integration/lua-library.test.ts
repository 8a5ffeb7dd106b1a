// The daemon's Lua library (lua/): myproxy.rules against a real MariaDB, with its hit counters in
// the Prometheus exposition (prometheus_counter), and its checks failing config.lua at the caller's line.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { runProxy, startProxy, type Proxy } from '../helpers/proxy.js';

const RULES = `
local rules = require('myproxy.rules')
local r = rules.new{
  {name = 'no-drop', match = '^%s*drop%s', case_insensitive = true, action = 'err', message = 'DROP is not allowed here'},
  {name = 'audit-updates', match = '^%s*update%s', case_insensitive = true, action = 'log'},
  {name = 'answer', prefix = 'select proxy_answer', case_insensitive = true, action = 'result',
   columns = {'answer'}, rows = {{42}}},
  {name = 'hide-secret', match = 'secret_table', accounts = {'other'}, action = 'rewrite',
   pattern = 'secret_table', replacement = 'public_table'},
  {name = 'set-ok', prefix = 'set fancy', case_insensitive = true, action = 'ok', info = 'ignored'},
  {name = 'by-user', prefix = 'SELECT whoami', users = {'native'}, action = 'result', columns = {'who'},
   rows = {{'native user'}}},
  {name = 'coded', prefix = 'SELECT coded', action = 'err', message = 'no such table', code = 1146, sqlstate = '42S02'},
}
`;

describe('lua/myproxy/rules.lua', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let port = 0;

  before(async () => {
    db = await startMariaDB({ name: 'rules' });
    await createTestUsers(db);
    await db.query(
      "CREATE OR REPLACE USER 'other'@'%' IDENTIFIED BY 'otherpw'; GRANT ALL ON test.* TO 'other'@'%'; " +
        "CREATE OR REPLACE TABLE test.public_table (v VARCHAR(10)); INSERT INTO test.public_table VALUES ('public'); " +
        "CREATE OR REPLACE TABLE test.secret_table (v VARCHAR(10)); INSERT INTO test.secret_table VALUES ('secret')",
    );
    port = await freeTcpPort();
    proxy = await startProxy({
      name: 'rules',
      config: (dir) => `${RULES}
prometheus_listen('127.0.0.1:${port}')
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    client.account = hr.user
    return client:connect(${JSON.stringify(db!.socket)}, hr)
  end,
  on_query = r:on_query(),
})`,
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
    } as mysql.ConnectionOptions);

  test('err, ok, result, log and rewrite rules, per account and per user, in order', async () => {
    const native = await connect();
    const other = await connect({ user: 'other', password: 'otherpw' });
    try {
      await assert.rejects(native.query('  drop table public_table'), (e: mysql.QueryError & { sqlState?: string }) => {
        assert.equal(e.errno, 1148);
        assert.equal(e.message, 'DROP is not allowed here');
        return true;
      });
      await assert.rejects(native.query('SELECT coded'), (e: mysql.QueryError & { sqlState?: string }) => {
        assert.equal(e.errno, 1146);
        assert.equal(e.sqlState, '42S02');
        return true;
      });
      const [answer] = await native.query<mysql.RowDataPacket[]>('SELECT proxy_answer');
      assert.equal(answer[0]!['answer'], 42);
      const [ok] = await native.query<mysql.ResultSetHeader>('SET fancy = 1');
      assert.equal(ok.info, 'ignored');
      await native.query("UPDATE public_table SET v = 'public'");
      await proxy!.waitForLog(/rule audit-updates: account=native sql=UPDATE public_table/);
      // The rewrite applies to the account 'other' only.
      const [mine] = await native.query<mysql.RowDataPacket[]>('SELECT v FROM secret_table');
      assert.equal(mine[0]!['v'], 'secret');
      const [theirs] = await other.query<mysql.RowDataPacket[]>('SELECT v FROM secret_table');
      assert.equal(theirs[0]!['v'], 'public');
      const [who] = await native.query<mysql.RowDataPacket[]>('SELECT whoami');
      assert.equal(who[0]!['who'], 'native user');
      // For another user, the rule does not match and the server answers (unknown column).
      await assert.rejects(other.query('SELECT whoami'), /Unknown column/);
    } finally {
      await native.end();
      await other.end();
    }
  });

  test('hit counters show up as myproxy_rule_hits_total{rule=...}', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    const body = await res.text();
    assert.match(body, /# HELP myproxy_rule_hits_total Query rule hits \(myproxy\.rules\), by rule/);
    assert.match(body, /# TYPE myproxy_rule_hits_total counter/);
    assert.match(body, /^myproxy_rule_hits_total\{rule="no-drop"\} 1$/m);
    assert.match(body, /^myproxy_rule_hits_total\{rule="hide-secret"\} 1$/m);
    assert.match(body, /^myproxy_rule_hits_total\{rule="answer"\} 1$/m);
    assert.doesNotMatch(body, /rule="by-user"\} 2/);
  });

  for (const [rules, message] of [
    ["{{name = 'a', action = 'err'}}", 'rule "a": err needs a message'],
    ["{{name = 'a', action = 'teleport'}}", 'rule "a": action must be err, ok, result, forward, rewrite or log'],
    ["{{name = 'a', action = 'log', colour = 'red'}}", 'rule "a": unknown field "colour"'],
    ["{{name = 'a', action = 'log', match = '%'}}", 'rule "a": bad pattern'],
    ["{{name = 'a', action = 'log'}, {name = 'a', action = 'log'}}", 'rule name "a" is used twice'],
    ["{{action = 'log'}}", 'rule 1 has no name'],
  ] as const) {
    test(`a bad rule fails config.lua at the line of rules.new: ${message}`, async () => {
      const r = await runProxy(['--check'], {
        name: 'rules-bad',
        config: `local rules = require('myproxy.rules')\nlocal r = rules.new(${rules})\nmysql_listen('\${dir}/proxy.sock', {on_handshake_response = function() end})\n`,
      });
      assert.equal(r.code, 78, r.stderr);
      assert.ok(r.stderr.includes(`${r.configPath}:2: ${message}`), r.stderr);
    });
  }
});
