// myproxy --workers N: two worker processes serve one socket with the same config. Connections
// land on both (their connection ids come from each worker's own range), the exporter labels every
// worker's samples, a control datagram reaches every worker, SIGHUP runs reload() in each, a
// worker that dies is started again without disturbing the other's sessions, and SIGTERM drains
// them all and removes the socket file only at the very end.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { ControlCommand, ControlDatagramBuilder } from '../../src/protocol/control.js';
import { CONNECTION_ID_BASE } from '../../src/proxy/registry.js';
import { sendUdp } from '../helpers/wire.js';
import { createTestUsers, freeTcpPort, startMariaDB, type MariaDB } from '../helpers/mariadb.js';
import { guard, runProxy, startProxy, type Proxy } from '../helpers/proxy.js';

/** Which worker handed out a connection id (each has a range of 2^24 ids). */
const workerOf = (id: number): number => Math.floor((id - CONNECTION_ID_BASE) / (1 << 24));

const config = (db: MariaDB, metricsPort: number, controlPort: number): string => `
mysql_listen('\${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    client.account = hr.user
    return client:connect(${JSON.stringify(db.socket)}, { user = 'native', password = 'nativepw' })
  end,
})
prometheus_listen('127.0.0.1:${metricsPort}')
control_listen('127.0.0.1:${controlPort}')
function reload() print('reload() ran here') end
`;

describe('--workers 2', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let metricsPort = 0;
  let controlPort = 0;
  const pids = new Map<number, number>();

  before(async () => {
    db = await startMariaDB({ name: 'workers', extraArgs: ['--max-connections=300'] });
    await createTestUsers(db);
    metricsPort = await freeTcpPort();
    controlPort = await freeTcpPort();
    proxy = await startProxy({
      name: 'workers',
      config: config(db, metricsPort, controlPort),
      args: ['--workers', '2'],
      listeners: 0,
    });
    for (let i = 0; i < 2; i++) {
      const m = await proxy.waitForLog(new RegExp(`^worker ${i} \\(pid=(\\d+)\\) is serving`, 'm'));
      pids.set(i, Number(m[1]));
    }
  });

  after(async () => {
    await proxy?.stop('SIGKILL');
    await db?.stop();
  });

  const connect = (user = 'native'): Promise<mysql.Connection> =>
    mysql.createConnection({
      socketPath: proxy!.socket,
      user,
      password: user === 'native' ? 'nativepw' : 'x',
      enableCleartextPlugin: true,
    });

  test('connections land on both workers, each with ids from its own range', async () => {
    const seen = new Set<number>();
    for (let round = 0; round < 10 && seen.size < 2; round++) {
      const conns = await Promise.all(Array.from({ length: 20 }, () => connect()));
      for (const c of conns) {
        const [rows] = await c.query('SELECT 1 AS one');
        assert.deepEqual(rows, [{ one: 1 }]);
        seen.add(workerOf(c.threadId));
      }
      await Promise.all(conns.map((c) => c.end()));
    }
    assert.deepEqual([...seen].sort(), [0, 1]);
  });

  test('one exporter: every family once, samples labelled per worker', async () => {
    const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.equal(body.match(/^# TYPE myproxy_connections_accepted counter$/gm)?.length, 1, body.slice(0, 2000));
    const accepted = [...body.matchAll(/^myproxy_connections_accepted\{worker="(\d)"\} (\d+)$/gm)];
    assert.deepEqual(accepted.map((m) => m[1]).sort(), ['0', '1']);
    // The first test's 40+ logins, split between the two.
    const total = accepted.reduce((n, m) => n + Number(m[2]), 0);
    assert.ok(total >= 20, `accepted ${total}`);
  });

  test('a control datagram reaches the sessions of every worker', async () => {
    // Hold sessions until both workers have some.
    const held: mysql.Connection[] = [];
    for (let i = 0; i < 60 && new Set(held.map((c) => workerOf(c.threadId))).size < 2; i++) held.push(await connect());
    assert.equal(new Set(held.map((c) => workerOf(c.threadId))).size, 2);
    for (const c of held) c.on('error', () => undefined);
    const b = new ControlDatagramBuilder();
    b.add(ControlCommand.DISCONNECT_DATABASE, Buffer.from('native'));
    await sendUdp(controlPort, b.toBuffer());
    // Every held session, on either worker, is closed by its worker.
    for (const c of held) {
      await guard(
        (async () => {
          for (;;) {
            try {
              await c.query('SELECT 1');
            } catch {
              return;
            }
            await new Promise((r) => setTimeout(r, 50));
          }
        })(),
        `session ${c.threadId} closed`,
        10_000,
      );
    }
  });

  test('KILL QUERY reaches a session that another worker serves', async () => {
    const conns: mysql.Connection[] = [];
    try {
      while (new Set(conns.map((c) => workerOf(c.threadId))).size < 2 && conns.length < 60) conns.push(await connect());
      const victim = conns.find((c) => workerOf(c.threadId) === 0)!;
      const killer = conns.find((c) => workerOf(c.threadId) === 1)!;
      const started = Date.now();
      const sleeping = victim.query('SELECT SLEEP(30) AS s').then(
        () => 'finished',
        (e: unknown) => (e as Error).message,
      );
      await new Promise((r) => setTimeout(r, 300));
      await killer.query(`KILL QUERY ${victim.threadId}`);
      assert.equal(await guard(sleeping, 'the killed query', 10_000), 'Query execution was interrupted');
      assert.ok(Date.now() - started < 20_000);
      // An id no worker has is still unknown.
      await assert.rejects(
        killer.query(`KILL QUERY ${CONNECTION_ID_BASE + (1 << 24) * 1 + 999_999}`),
        /Unknown thread id/,
      );
    } finally {
      await Promise.all(conns.map((c) => c.end()));
    }
  });

  test('SIGHUP runs reload() in every worker', async () => {
    const from = proxy!.logs().length;
    process.kill(proxy!.pid, 'SIGHUP');
    await proxy!.waitForLog(/^\[worker 0\] reload\(\) ran here$/m, 10_000, from);
    await proxy!.waitForLog(/^\[worker 1\] reload\(\) ran here$/m, 10_000, from);
  });

  test('a worker that dies is started again; the other one serves on undisturbed', async () => {
    // A session on worker 1 that must outlive worker 0's death.
    let survivor: mysql.Connection | undefined;
    const others: mysql.Connection[] = [];
    for (let i = 0; i < 60 && survivor === undefined; i++) {
      const c = await connect();
      if (workerOf(c.threadId) === 1) survivor = c;
      else others.push(c);
    }
    assert.ok(survivor !== undefined, 'no connection reached worker 1');
    await Promise.all(others.map((c) => c.end()));
    const from = proxy!.logs().length;
    process.kill(pids.get(0)!, 'SIGKILL');
    await proxy!.waitForLog(/^worker 0 \(pid=\d+\) exited \(signal SIGKILL\); starting it again/m, 10_000, from);
    const m = await proxy!.waitForLog(/^worker 0 \(pid=(\d+)\) is serving/m, 20_000, from);
    assert.notEqual(Number(m[1]), pids.get(0));
    pids.set(0, Number(m[1]));
    const [rows] = await survivor.query('SELECT 2 AS two');
    assert.deepEqual(rows, [{ two: 2 }]);
    await survivor.end();
    // The socket still exists and serves (the dead worker did not remove it).
    const c = await connect();
    await c.query('SELECT 1');
    await c.end();
  });

  test('SIGTERM drains every worker; the socket file goes only when all are gone', async () => {
    const held = await connect();
    const from = proxy!.logs().length;
    process.kill(proxy!.pid, 'SIGTERM');
    await proxy!.waitForLog(/caught SIGTERM, shutting down 2 workers/, 10_000, from);
    // A session still draining keeps being served, and the socket file is still there.
    const [rows] = await held.query('SELECT 3 AS three');
    assert.deepEqual(rows, [{ three: 3 }]);
    assert.ok(fs.existsSync(proxy!.socket), 'socket removed while a worker still drains');
    await held.end();
    const status = await guard(proxy!.exited, 'daemon exit', 20_000);
    assert.equal(status.code, 0);
    assert.ok(!fs.existsSync(proxy!.socket), 'socket file left behind');
    assert.match(proxy!.logs(), /^worker 0 \(pid=\d+\) exited \(status 0\)$/m);
    assert.match(proxy!.logs(), /^worker 1 \(pid=\d+\) exited \(status 0\)$/m);
  });
});

describe('--workers on the command line', () => {
  test('a bad count is a usage error; --check runs no workers', async () => {
    const bad = await runProxy(['--workers', '0', '--config', '/nonexistent']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /--workers needs a number from 1 to 256/);
    const dir = fs.mkdtempSync('/tmp/myproxy-workers-check-');
    try {
      fs.writeFileSync(
        `${dir}/config.lua`,
        `mysql_listen('${dir}/proxy.sock', { on_handshake_response = function(c) return c:err('no') end })`,
      );
      const check = await runProxy(['--check', '--workers', '4', '--config', `${dir}/config.lua`]);
      assert.equal(check.code, 0, check.stderr);
      assert.doesNotMatch(check.stdout + check.stderr, /starting \d+ workers|\[worker/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
