// What attacking the daemon found (issue "defects found by attacking it"), each against a real
// MariaDB: forged log lines, the server's last packet before it closes (1153, 1156), an oversized
// COM_CHANGE_USER, repeated refusals flooding the log, handshake fields no server accepts, Lua
// callbacks that hog memory or escape the compute budget, and the file-descriptor limit.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { Command } from '../../src/protocol/constants.js';
import { framePayload } from '../../src/protocol/writer.js';
import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { guard, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/wire.js';

const connect = (p: Proxy) =>
  mysql.createConnection({
    socketPath: p.socket,
    user: USERS.native.user,
    password: USERS.native.password,
    database: 'test',
    authPlugins: {},
    enableCleartextPlugin: true,
  } as mysql.ConnectionOptions);

const errnoOf = (payload: Buffer): number => (payload[0] === 0xff ? payload.readUInt16LE(1) : -1);

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

let db: MariaDB | undefined;

before(async () => {
  db = await startMariaDB({ name: 'attacks', extraArgs: ['--max-allowed-packet=1M'] });
  await createTestUsers(db);
});

after(async () => {
  await db?.stop();
});

const policy = (dir: string): string => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    local u = hr.user
    if u:sub(1, 3) == 'lua' then error('refusing ' .. u) end
    if u:sub(1, 5) == 'print' then print('user ' .. u) end
    if u == 'hog' then local s = string.rep('x', 2^30) end
    if u == 'concat' then local s = 'x' for i = 1, 40 do s = s .. s end end
    if u == 'tostr' then error(setmetatable({}, { __tostring = function() while true do end end })) end
    if u == 'regex' then local x = ('a'):rep(3000):find(('a*'):rep(12) .. 'b') end
    if u == 'spin' then while true do end end
    if u == 'split' then local a, b = u:match('(.+)@(.+)') end
    print('handshake for ' .. #u .. ' bytes')
    return client:connect(${JSON.stringify(db!.socket)}, hr)
  end,
})`;

for (const relayKind of ['native', 'js'] as const) {
  describe(`attacks (--relay ${relayKind})`, () => {
    let proxy: Proxy | undefined;

    before(async () => {
      proxy = await startProxy({ name: `attack-${relayKind}`, args: ['--relay', relayKind], config: policy });
    });

    after(async () => {
      await proxy?.stop();
    });

    test('no client- or server-controlled text can forge a log line', async () => {
      const hostile = [
        Buffer.from('x\nFORGED line from the user name'),
        Buffer.from('red\x1b[31m\x1b]0;title\x07'),
        Buffer.from([0x62, 0xff, 0xfe, 0x0a, 0x46, 0x4f, 0x52, 0x47, 0x45, 0x44, 0xc2, 0x9b]),
        Buffer.from('lua\nFORGED from a Lua error'),
        Buffer.from('print\nFORGED from print'),
        Buffer.from('\u2028FORGED after a line separator'),
      ];
      for (const user of hostile) {
        const c = await RawClient.connect(proxy!.socket);
        const reply = await c.login(user, 'pw', 'db\nFORGED from the database name');
        assert.equal(reply.payload[0], 0xff);
        c.close();
      }
      const log = proxy!.logs();
      for (const line of log.split('\n')) {
        assert.ok(!line.startsWith('FORGED') && !line.startsWith('  FORGED'), `a forged line: ${JSON.stringify(line)}`);
      }
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(log, /[\u001b\u0007\u009b\u2028]/, 'raw escape sequences in the log');
      assert.match(log, /login user="b\\xff\\xfe\\nFORGED\\x9b"/); // invalid UTF-8 byte by byte, C1 escaped
      assert.match(log, /backend refused login: 1045 "Access denied for user 'x\\nFORGED line from the user name'/);
      assert.match(log, /refusing lua\\nFORGED from a Lua error/);
      assert.match(log, /user print\\nFORGED from print/);
    });

    test("a server's ERR before it closes reaches the client: 1153 (packet too large)", async () => {
      const c = await connect(proxy!);
      await assert.rejects(
        c.query('SELECT ? AS big', ['x'.repeat(2 * 1024 * 1024)]),
        (e: { errno?: number }) => e.errno === 1153,
      );
      c.destroy();
    });

    test("a server's ERR before it closes reaches the client: 1156 (packets out of order)", async () => {
      const c = await RawClient.connect(proxy!.socket);
      const ok = await c.login(USERS.native.user, USERS.native.password);
      assert.equal(ok.payload[0], 0x00);
      c.send(framePayload(Buffer.from([Command.COM_QUERY, ...Buffer.from('SELECT 1')]), 5));
      const reply = await c.next();
      assert.equal(errnoOf(reply.payload), 1156);
      c.close();
    });

    test('a COM_CHANGE_USER over 64 KiB gets 1235 and the session goes on; repeated refusals are rate-limited in the log', async () => {
      const c = await RawClient.connect(proxy!.socket);
      await c.login(USERS.native.user, USERS.native.password);
      const big = Buffer.concat([Buffer.from([Command.COM_CHANGE_USER]), Buffer.alloc(100 * 1024, 0x41)]);
      assert.equal(errnoOf((await c.command(big)).payload), 1235);
      for (let i = 0; i < 30; i++) {
        assert.equal(errnoOf((await c.command(Buffer.from([Command.COM_CHANGE_USER, 0x78, 0]))).payload), 1235);
      }
      const select = await c.command(Buffer.from([Command.COM_QUERY, ...Buffer.from('SELECT 1')]));
      assert.equal(select.payload[0], 1, 'a result set with one column');
      c.close();
      const lines = proxy!
        .logs()
        .split('\n')
        .filter((l) => l.includes('COM_CHANGE_USER refused'));
      assert.ok(lines.length >= 1 && lines.length <= 5, `${lines.length} refusal lines logged`);
    });

    test('handshake fields no server accepts are refused before any Lua runs', async () => {
      const before = proxy!.logs().length;
      const long = await RawClient.connect(proxy!.socket);
      const started = Date.now();
      const r1 = await long.login('split@' + 'a'.repeat(60_000), 'pw');
      assert.equal(errnoOf(r1.payload), 1045);
      assert.ok(Date.now() - started < 2000);
      long.close();
      const db2 = await RawClient.connect(proxy!.socket);
      assert.equal(errnoOf((await db2.login('native', 'nativepw', 'd'.repeat(1000))).payload), 1102);
      db2.close();
      assert.doesNotMatch(proxy!.logs().slice(before), /handshake for/);
    });
  });
}

describe('Lua resource limits in the daemon', () => {
  let proxy: Proxy | undefined;

  before(async () => {
    proxy = await startProxy({ name: 'lualimits', args: ['--lua-memory', '128'], config: policy });
  });

  after(async () => {
    await proxy?.stop();
  });

  for (const user of ['hog', 'concat', 'tostr', 'regex', 'spin']) {
    test(`'${user}': the callback fails with "Lua error" while another client is served at once`, async () => {
      const healthy = await connect(proxy!);
      let slowest = 0;
      let running = true;
      const probe = (async () => {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- cleared by the test body while this loop awaits
        while (running) {
          const t = Date.now();
          await healthy.query('SELECT 1');
          slowest = Math.max(slowest, Date.now() - t);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const c = await RawClient.connect(proxy!.socket);
      const reply = await guard(c.login(user, 'pw'), `the login of ${user}`, 20_000);
      running = false;
      await probe;
      await healthy.end();
      c.close();
      assert.equal(errnoOf(reply.payload), 1043);
      assert.match(reply.payload.subarray(9).toString(), /Lua error/);
      assert.ok(slowest < 1000, `a healthy query waited ${slowest} ms`);
      assert.ok(rssMb(proxy!.pid) < 700, `RSS ${Math.round(rssMb(proxy!.pid))} MB`);
    });
  }

  test('the log names the limits that were hit', () => {
    const log = proxy!.logs();
    assert.match(log, /not enough memory/);
    assert.match(log, /callback ran for more than 100 ms without waiting/);
  });
});

describe('near the file descriptor limit', () => {
  let proxy: Proxy | undefined;

  before(async () => {
    proxy = await startProxy({
      name: 'fdlimit',
      config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})`,
    });
    const open = fs.readdirSync(`/proc/${proxy.pid}/fd`).length;
    const limit = open + 32 + 3 * 15;
    const r = await runCommand('prlimit', ['--pid', String(proxy.pid), `--nofile=${limit}:${limit}`]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    await proxy?.stop();
  });

  test('every client gets a session or a readable 1040, never an OK and then a reset, and service recovers', async () => {
    const attempts = await Promise.allSettled(
      Array.from({ length: 120 }, async () => {
        const c = await connect(proxy!);
        try {
          await new Promise((r) => setTimeout(r, 300)); // hold the session while the others come
          await c.query('SELECT 1');
          return 'served';
        } finally {
          await c.end().catch(() => undefined);
        }
      }),
    );
    const outcomes = attempts.map((a) =>
      a.status === 'fulfilled'
        ? a.value
        : `errno ${String((a.reason as { errno?: number; code?: string }).errno ?? (a.reason as { code?: string }).code)}`,
    );
    const counts = outcomes.reduce<Record<string, number>>((m, o) => ((m[o] = (m[o] ?? 0) + 1), m), {});
    assert.ok((counts['served'] ?? 0) >= 5, JSON.stringify(counts));
    assert.ok((counts['errno 1040'] ?? 0) >= 1, JSON.stringify(counts));
    assert.deepEqual(
      Object.keys(counts).filter((k) => k !== 'served' && k !== 'errno 1040'),
      [],
      `unexpected outcomes: ${JSON.stringify(counts)}`,
    );
    assert.match(proxy!.logs(), /refusing a connection with 1040 Too many connections/);
    // Once the sessions are gone (their closes take a moment), new clients are served again.
    const end = Date.now() + 5000;
    for (;;) {
      try {
        const again = await connect(proxy!);
        await again.query('SELECT 1');
        await again.end();
        break;
      } catch (e) {
        if (Date.now() > end) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  });
});
