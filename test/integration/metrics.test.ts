// prometheus_listen(): a real Prometheus scrapes the daemon while known traffic runs through it,
// and the figures are checked through Prometheus' HTTP API; promtool lints the exposition; and
// garbage, slow and 1,000 concurrent scrapes cost bounded memory and never touch MySQL sessions.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';
import { startPrometheus, type Prometheus } from '../helpers/prometheus.js';

/** myproxy's metric names: promtool's "_total suffix" lint is expected for exactly these. */
const MYPROXY_COUNTERS = [
  'event_loop_iterations',
  'event_loop_idle_duration',
  'event_loop_busy_duration',
  'myproxy_connections_accepted',
  'myproxy_connections_rejected',
  'myproxy_client_bytes_received',
  'myproxy_client_packets_received',
  'myproxy_client_malformed_packets',
  'myproxy_client_handshake_responses',
  'myproxy_client_auth_ok',
  'myproxy_client_auth_err',
  'myproxy_client_queries',
  'myproxy_lua_errors',
  'myproxy_server_connects',
  'myproxy_server_connect_errors',
  'myproxy_server_bytes_received',
  'myproxy_server_packets_received',
  'myproxy_server_malformed_packets',
  'myproxy_server_queries',
  'myproxy_server_query_errors',
  'myproxy_server_query_warnings',
  'myproxy_server_no_good_index_queries',
  'myproxy_server_no_index_queries',
  'myproxy_server_slow_queries',
  'myproxy_server_affected_rows',
  'myproxy_server_query_wait',
];

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

describe('prometheus_listen', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let prometheus: Prometheus | undefined;
  let port = 0;
  let server = '';

  before(async () => {
    db = await startMariaDB({ name: 'metrics', extraArgs: ['--long-query-time=0.3'] });
    await createTestUsers(db);
    server = db.socket;
    port = await freeTcpPort();
    proxy = await startProxy({
      name: 'metrics',
      config: (dir) => `
prometheus_listen('127.0.0.1:${port}')
local cluster = mysql_cluster({ ${JSON.stringify(db!.socket)} },
  { monitoring = true, user = 'native', password = 'nativepw', check_interval = 1 })
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    if hr.user == 'reject' then return client:err('not you') end
    if hr.user == 'luaerr' then error('policy bug') end
    return client:connect(cluster, hr)
  end,
})`,
    });
    prometheus = await startPrometheus([`127.0.0.1:${port}`]);
  });

  after(async () => {
    await prometheus?.stop();
    await proxy?.stop();
    await db?.stop();
  });

  test("known traffic shows up in Prometheus with myproxy's names", async () => {
    const c = await mysql.createConnection({
      socketPath: proxy!.socket,
      user: USERS.native.user,
      password: USERS.native.password,
      database: 'test',
      authPlugins: {},
      enableCleartextPlugin: true,
    } as mysql.ConnectionOptions);
    const queries: [string, 'ok' | 'err'][] = [['CREATE OR REPLACE TABLE m (a INT)', 'ok']];
    for (let i = 0; i < 20; i++) queries.push(['SELECT 1', 'ok']);
    for (let i = 0; i < 3; i++) queries.push(['SELECT nosuchcolumn', 'err']);
    queries.push(['INSERT INTO m VALUES (1), (2), (3), (4), (5)', 'ok']);
    queries.push(['SELECT * FROM m WHERE a > 2', 'ok']); // no index: a full scan
    queries.push(['SELECT SLEEP(0.4)', 'ok']); // longer than long_query_time
    for (const [sql, expect] of queries) {
      if (expect === 'ok') await c.query(sql);
      else await assert.rejects(c.query(sql));
    }
    await c.end();
    assert.match((await mariadbCli(proxy!.socket, 'reject', 'x', 'SELECT 1')).stderr, /not you/);
    assert.match((await mariadbCli(proxy!.socket, 'luaerr', 'x', 'SELECT 1')).stderr, /Lua error/);

    const p = prometheus!;
    const s = `server=${JSON.stringify(server)}`;
    const total = queries.length;
    assert.equal(await p.waitFor(`myproxy_server_queries{${s}}`, (v) => v >= total), total);
    assert.equal(await p.waitFor(`myproxy_client_queries`, (v) => v >= total), total);
    assert.equal(await p.waitFor(`myproxy_server_query_errors{${s}}`, (v) => v >= 3), 3);
    assert.equal(await p.waitFor(`myproxy_server_affected_rows{${s}}`, (v) => v >= 5), 5);
    assert.ok((await p.waitFor(`myproxy_server_slow_queries{${s}}`, (v) => v >= 1)) >= 1);
    assert.ok((await p.waitFor(`myproxy_server_no_index_queries{${s}}`, (v) => v >= 1)) >= 1);
    assert.equal(await p.waitFor('myproxy_connections_rejected', (v) => v >= 1), 1);
    assert.equal(await p.waitFor('myproxy_lua_errors', (v) => v >= 1), 1);
    assert.ok((await p.waitFor('myproxy_client_auth_ok', (v) => v >= 1)) >= 1);
    assert.ok((await p.waitFor(`myproxy_server_query_wait{${s}}`, (v) => v >= 0.4)) >= 0.4);
    assert.ok((await p.waitFor(`myproxy_server_bytes_received{${s}}`, (v) => v > 0)) > 0);
    assert.equal(await p.waitFor(`myproxy_server_state{${s},state="alive"}`, (v) => v === 1), 1);
    assert.ok((await p.waitFor(`myproxy_query_duration_seconds_count{${s}}`, (v) => v >= total)) >= total);
    assert.ok((await p.waitFor(`myproxy_query_duration_seconds_bucket{${s},le="+Inf"}`, (v) => v >= total)) >= total);
    assert.equal(await p.waitFor(`myproxy_server_commands_total{${s},command="query"}`, (v) => v >= total), total);
    assert.ok((await p.waitFor('event_loop_iterations{process="myproxy"}', (v) => v > 0)) > 0);
    assert.ok((await p.waitFor('process_resident_memory_bytes', (v) => v > 0)) > 0);
    assert.ok(
      (await p.waitFor(
        'myproxy_lua_callback_duration_seconds_count{callback="on_handshake_response"}',
        (v) => v >= 3,
      )) >= 3,
    );
  });

  test("the exposition has myproxy's HELP texts, and promtool's only lint is the _total suffix myproxy's names lack", async () => {
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(
      body,
      /# HELP myproxy_server_query_errors Number of query warnigs received from this server\n# TYPE myproxy_server_query_errors counter/,
    );
    assert.match(
      body,
      /# HELP myproxy_connections_accepted Number of accepted MySQL connections \(including those that were rejected later\)/,
    );
    assert.match(body, /# TYPE myproxy_server_state gauge/);
    let lint = '';
    try {
      execFileSync('promtool', ['check', 'metrics'], {
        input: body,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    } catch (e) {
      const err = e as { status: number; stdout: string; stderr: string };
      assert.equal(err.status, 3, `promtool failed: ${err.stderr}${err.stdout}`); // 3: lint findings, not errors
      lint = err.stdout + err.stderr;
    }
    const findings = lint.split('\n').filter((l) => l.trim() !== '');
    for (const line of findings) {
      const m = /^(\S+) counter metrics should have "_total" suffix$/.exec(line);
      assert.ok(m !== null && MYPROXY_COUNTERS.includes(m[1]!), `unexpected promtool finding: ${line}`);
    }
  });

  test('garbage, slow and 1,000 concurrent scrapes: bounded memory, MySQL sessions unaffected', async () => {
    const c = await mysql.createConnection({
      socketPath: proxy!.socket,
      user: USERS.native.user,
      password: USERS.native.password,
      authPlugins: {},
      enableCleartextPlugin: true,
    } as mysql.ConnectionOptions);
    // Garbage.
    const garbage = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () =>
        s.end(Buffer.from('\x00\x01\x02 not http at all\r\n\r\n', 'latin1')),
      );
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('close', () => resolve(got));
      s.on('error', () => undefined);
    });
    assert.match(garbage, /^HTTP\/1\.1 400/);
    // Slow: a request that never ends, held open while MySQL traffic goes on.
    const slow = net.connect(port, '127.0.0.1', () => slow.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'));
    slow.on('error', () => undefined);
    const before = rssMb(proxy!.pid);
    const results = await Promise.allSettled(
      Array.from({ length: 1000 }, async () => {
        const r = await fetch(`http://127.0.0.1:${port}/metrics`);
        await r.text();
        return r.status;
      }),
    );
    const t = Date.now();
    await c.query('SELECT 1');
    const queryMs = Date.now() - t;
    const ok = results.filter((r) => r.status === 'fulfilled' && r.value === 200).length;
    assert.ok(ok >= 200, `${ok} scrapes answered`);
    assert.ok(rssMb(proxy!.pid) - before < 100, `RSS grew by ${rssMb(proxy!.pid) - before} MB`);
    assert.ok(queryMs < 1000, `a query waited ${queryMs} ms`);
    slow.destroy();
    await c.end();
    assert.ok(proxy!.alive());
  });
});
