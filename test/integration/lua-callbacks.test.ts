// The Lua callbacks as clients experience them: rejections, Lua errors, bad return values, the
// client object's attributes, yielding callbacks and runaway callbacks.

import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { escapeRe, mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
  code?: string;
}

function guard<T>(p: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms);
    }),
  ]);
}

/** The first packet the proxy sends on a fresh connection to `socket` (the greeting or an ERR). */
function firstPacket(socket: string): Promise<{ seq: number; payload: Buffer }> {
  return guard(
    new Promise((resolve, reject) => {
      const s = net.connect(socket);
      let buf = Buffer.alloc(0);
      s.on('error', reject);
      s.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 4 && buf.length >= 4 + buf.readUIntLE(0, 3)) {
          const len = buf.readUIntLE(0, 3);
          s.destroy();
          resolve({ seq: buf[3]!, payload: buf.subarray(4, 4 + len) });
        }
      });
      s.on('close', () => reject(new Error(`closed after ${buf.length} bytes`)));
    }),
    'first packet',
  );
}

describe('Lua callbacks', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let configLines: string[] = [];
  const sock = (name: string): string => `${proxy!.dir}/${name}.sock`;
  /** 1-based line of the config line containing `marker`. */
  const lineOf = (marker: string): number => {
    const i = configLines.findIndex((l) => l.includes(marker));
    assert.ok(i >= 0, `marker ${marker} in config`);
    return i + 1;
  };

  before(async () => {
    db = await startMariaDB({ name: 'luacb' });
    await createTestUsers(db);
    const backend = JSON.stringify(db.socket);
    proxy = await startProxy({
      name: 'luacb',
      config: (dir) => {
        const text = `
local backend = ${backend}
local function pass(client, hr) return client:connect(backend, hr) end

mysql_listen('${dir}/proxy.sock', { on_handshake_response = pass })

mysql_listen('${dir}/reject-connect.sock', {
  on_connect = function(client) return client:err('nope') end,
  on_handshake_response = pass,
})

mysql_listen('${dir}/reject-hr.sock', {
  on_handshake_response = function(client, hr) return client:err('denied for ' .. hr.user) end,
})

mysql_listen('${dir}/error-hr.sock', {
  on_handshake_response = function(client, hr)
    error('boom in hr') -- MARK:error-hr
  end,
})

mysql_listen('${dir}/error-connect.sock', {
  on_connect = function(client)
    error('boom in connect') -- MARK:error-connect
  end,
  on_handshake_response = pass,
})

mysql_listen('${dir}/ret42.sock', { on_handshake_response = function(client, hr) return 42 end })
mysql_listen('${dir}/retnothing.sock', { on_handshake_response = function(client, hr) end })
mysql_listen('${dir}/connect-ret42.sock', {
  on_connect = function(client) return 42 end,
  on_handshake_response = pass,
})

mysql_listen('${dir}/cmdphase.sock', {
  on_handshake_response = pass,
  on_command_phase = function(client)
    print('COMMAND PHASE ' .. client.notes.who .. ' server_version=' .. client.server_version)
  end,
  on_connect = function(client) client.notes.who = 'cp-' .. tostring(client.pid) end,
})

mysql_listen('${dir}/cmdphase-error.sock', {
  on_handshake_response = pass,
  on_command_phase = function(client)
    error('boom in command phase') -- MARK:error-cp
  end,
})

mysql_listen('${dir}/notes.sock', {
  on_connect = function(client)
    client.notes.greeting = 'set in on_connect'
  end,
  on_handshake_response = function(client, hr)
    return client:err('notes=' .. tostring(client.notes.greeting) .. ' same=' .. tostring(client.notes == client.notes))
  end,
})

mysql_listen('${dir}/account.sock', {
  on_handshake_response = function(client, hr)
    client.account = 'acct-' .. hr.user
    print('ACCOUNT ' .. tostring(client.account))
    return client:connect(backend, hr)
  end,
})

mysql_listen('${dir}/version.sock', {
  on_connect = function(client)
    print('VERSION before=' .. client.server_version)
    client.server_version = '8.0.99-lua-test'
  end,
  on_handshake_response = function(client, hr)
    print('VERSION in hr=' .. client.server_version)
    return client:connect(backend, hr)
  end,
  on_command_phase = function(client)
    print('VERSION after login=' .. client.server_version)
  end,
})

mysql_listen('${dir}/unknown-attr.sock', {
  on_handshake_response = function(client, hr)
    local x = client.foo -- MARK:unknown-attr
    return client:connect(backend, hr)
  end,
})

mysql_listen('${dir}/unknown-set.sock', {
  on_handshake_response = function(client, hr)
    client.foo = 1
    return client:connect(backend, hr)
  end,
})

mysql_listen('${dir}/bad-key.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, { user = hr.user, password = hr.password, bogus = 'x' })
  end,
})

mysql_listen('${dir}/bad-sha1.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, { user = hr.user, password_sha1 = '0123456789' })
  end,
})

mysql_listen('${dir}/resolve.sock', {
  on_handshake_response = function(client, hr)
    local a, err = mysql_resolve('localhost:3306')
    print('RESOLVED ' .. tostring(a) .. ' ' .. tostring(err))
    return client:connect(backend, hr)
  end,
})

mysql_listen('${dir}/loop.sock', {
  on_handshake_response = function(client, hr)
    while true do end -- MARK:loop
  end,
})
`;
        configLines = text.split('\n');
        return text;
      },
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  const opts = (socketPath: string, extra: Partial<mysql.ConnectionOptions> = {}): mysql.ConnectionOptions => ({
    socketPath,
    user: USERS.native.user,
    password: USERS.native.password,
    enableCleartextPlugin: true,
    ...extra,
  });

  async function loginError(socketPath: string, extra: Partial<mysql.ConnectionOptions> = {}): Promise<MysqlError> {
    try {
      const c = await guard(mysql.createConnection(opts(socketPath, extra)), `mysql2 login on ${socketPath}`);
      await c.end();
    } catch (e) {
      return e as MysqlError;
    }
    assert.fail(`login on ${socketPath} succeeded but should have failed`);
  }

  async function assertLuaError(socketPath: string): Promise<void> {
    const e = await loginError(socketPath);
    assert.equal(e.message, 'Lua error');
    assert.equal(e.errno, 1043);
    assert.equal(e.sqlState, '08S01');
  }

  async function withConnection<T>(socketPath: string, fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
    const c = await guard(mysql.createConnection(opts(socketPath)), `mysql2 login on ${socketPath}`);
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  test('on_connect returning client:err("nope") → ERR 1043 08S01 "nope" instead of the greeting', async () => {
    const e = await loginError(sock('reject-connect'));
    assert.equal(e.errno, 1043, e.message);
    assert.equal(e.sqlState, '08S01');
    assert.equal(e.message, 'nope');
    const p = await firstPacket(sock('reject-connect'));
    assert.equal(p.seq, 0);
    assert.equal(p.payload[0], 0xff);
    assert.equal(p.payload.readUInt16LE(1), 1043);
    assert.equal(p.payload.subarray(3).toString('latin1'), '#08S01nope');
  });

  test('on_handshake_response returning client:err → 1043 08S01 with the message', async () => {
    const e = await loginError(sock('reject-hr'), { user: 'alice' });
    assert.equal(e.errno, 1043);
    assert.equal(e.sqlState, '08S01');
    assert.equal(e.message, 'denied for alice');
    const cli = await mariadbCli(sock('reject-hr'), 'bob', 'pw', 'SELECT 1');
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /ERROR 1043 \(08S01\).*denied for bob/);
  });

  test('a Lua runtime error → "Lua error" to the client, traceback with file:line in the log', async () => {
    await assertLuaError(sock('error-hr'));
    const line = lineOf('MARK:error-hr');
    const m = await proxy!.waitForLog(new RegExp(`config\\.lua:${line}: boom in hr`), 5000);
    const after = proxy!.logs().slice(m.index);
    assert.match(after, /stack traceback:/);
    assert.match(after, new RegExp(`config\\.lua:${line}: in function`));

    await assertLuaError(sock('error-connect'));
    const line2 = lineOf('MARK:error-connect');
    await proxy!.waitForLog(new RegExp(`config\\.lua:${line2}: boom in connect`), 5000);
    // on_connect failures come at sequence id 0, instead of the greeting.
    const p = await firstPacket(sock('error-connect'));
    assert.equal(p.seq, 0);
    assert.equal(p.payload[0], 0xff);
    assert.equal(p.payload.subarray(3).toString('latin1'), '#08S01Lua error');
  });

  test('bad return values (42, nothing) → "Lua error"', async () => {
    const since = proxy!.logs().length;
    await assertLuaError(sock('ret42'));
    await assertLuaError(sock('retnothing'));
    await assertLuaError(sock('connect-ret42'));
    await proxy!.waitForLog(/(?:Bad return value[\s\S]*?){3}/, 5000, since);
  });

  test('on_command_phase runs after login; notes persist from on_connect', async () => {
    const since = proxy!.logs().length;
    await withConnection(sock('cmdphase'), async (c) => {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
      assert.equal(rows[0]!['u'], 'native@%');
    });
    const m = await proxy!.waitForLog(/COMMAND PHASE cp-(\d+) server_version=(.*)$/m, 5000, since);
    assert.equal(m[1], String(process.pid), 'client.pid is the peer pid');
    assert.match(m[2]!, /MariaDB/);
    // It runs after the backend login (the login log line comes first).
    const log = proxy!.logs().slice(since);
    assert.ok(log.indexOf('handshake server_version=') < log.indexOf('COMMAND PHASE'), log);
  });

  test("an error in on_command_phase makes the client's next query fail", async () => {
    const since = proxy!.logs().length;
    let c: mysql.Connection | undefined;
    try {
      c = await guard(mysql.createConnection(opts(sock('cmdphase-error'))), 'login');
      c.on('error', () => undefined);
      await assert.rejects(guard(c.query('SELECT 1'), 'query after on_command_phase error'));
    } catch (e) {
      // Some clients already see the failure while logging in: still a failure, not a hang.
      if (c === undefined) assert.ok(e instanceof Error && /Lua error|closed|PROTOCOL/i.test(e.message), String(e));
      else throw e;
    } finally {
      c?.destroy();
    }
    await proxy!.waitForLog(new RegExp(`config\\.lua:${lineOf('MARK:error-cp')}: boom in command phase`), 5000, since);

    const cli = await mariadbCli(sock('cmdphase-error'), USERS.native.user, USERS.native.password, 'SELECT 1');
    assert.notEqual(cli.code, 0, cli.stdout);
    assert.equal(cli.stdout, '');
  });

  test('client.notes is the same table in on_connect and on_handshake_response', async () => {
    const e = await loginError(sock('notes'));
    assert.equal(e.errno, 1043);
    assert.equal(e.message, 'notes=set in on_connect same=true');
  });

  test('client.account changes the log prefix', async () => {
    const since = proxy!.logs().length;
    await withConnection(sock('account'), async (c) => {
      await c.query('SELECT 1');
    });
    await proxy!.waitForLog(/^ACCOUNT acct-native$/m, 5000, since);
    await proxy!.waitForLog(/^\[pid=\d+ uid=\d+ "acct-native"\] connecting to /m, 5000, since);
  });

  test('client.server_version from on_connect is in the greeting; after login it is the backend version', async () => {
    const since = proxy!.logs().length;
    const p = await firstPacket(sock('version'));
    assert.equal(p.payload[0], 10, 'protocol 10 greeting');
    const end = p.payload.indexOf(0, 1);
    assert.equal(p.payload.subarray(1, end).toString('latin1'), '8.0.99-lua-test');

    const seen = await withConnection(sock('version'), async (c) => {
      await c.query('SELECT 1');
      const inner = (c as unknown as { connection: { _handshakePacket: { serverVersion: string } } }).connection;
      return inner._handshakePacket.serverVersion;
    });
    assert.equal(seen, '8.0.99-lua-test');
    const backendVersion = (await db!.query('SELECT VERSION()')).trim();
    // The default is the version learned from the servers (5.7.30 while none is known).
    await proxy!.waitForLog(/^VERSION before=(5\.7\.30|5\.5\.5-10\.\d+\.\d+-MariaDB\S*)$/m, 5000, since);
    await proxy!.waitForLog(/^VERSION in hr=8\.0\.99-lua-test$/m, 5000, since);
    await proxy!.waitForLog(
      new RegExp(`^VERSION after login=(5\\.5\\.5-)?${escapeRe(backendVersion)}$`, 'm'),
      5000,
      since,
    );
  });

  test('unknown client attributes raise Lua errors (read and write)', async () => {
    const since = proxy!.logs().length;
    await assertLuaError(sock('unknown-attr'));
    await proxy!.waitForLog(
      new RegExp(`config\\.lua:${lineOf('MARK:unknown-attr')}: .*Unknown attribute`),
      5000,
      since,
    );
    await assertLuaError(sock('unknown-set'));
    await proxy!.waitForLog(/(?:Unknown attribute[\s\S]*?){2}/, 5000, since);
  });

  test('client:connect with an unknown credentials key → Lua error', async () => {
    const since = proxy!.logs().length;
    await assertLuaError(sock('bad-key'));
    await proxy!.waitForLog(/Unknown attribute 'bogus'/, 5000, since);
  });

  test('password_sha1 of the wrong length → Lua error', async () => {
    const since = proxy!.logs().length;
    await assertLuaError(sock('bad-sha1'));
    await proxy!.waitForLog(/Bad SHA1 length/, 5000, since);
  });

  test('a callback that yields (runtime mysql_resolve) still logs in', async () => {
    const since = proxy!.logs().length;
    const user = await withConnection(sock('resolve'), async (c) => {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
      return rows[0]!['u'] as unknown;
    });
    assert.equal(user, 'native@%');
    await proxy!.waitForLog(/^RESOLVED (127\.0\.0\.1|\[::1\]):3306 nil$/m, 5000, since);
  });

  test('an endless loop is stopped with "Lua error" while another session keeps working', async () => {
    const healthy = await guard(mysql.createConnection(opts(proxy!.socket)), 'healthy login');
    try {
      let stop = false;
      let queries = 0;
      const loop = (async () => {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the test body while this loop awaits
        while (!stop) {
          const [rows] = await healthy.query<mysql.RowDataPacket[]>('SELECT ? AS n', [queries]);
          assert.equal(rows[0]!['n'], queries);
          queries++;
          await new Promise((r) => setImmediate(r));
        }
      })();
      let looped: MysqlError;
      try {
        looped = await loginError(sock('loop'));
      } finally {
        stop = true;
        await loop;
      }
      assert.equal(looped.message, 'Lua error');
      assert.equal(looped.errno, 1043);
      assert.ok(queries > 0, 'the healthy session ran queries meanwhile');
      await proxy!.waitForLog(new RegExp(`config\\.lua:${lineOf('MARK:loop')}:`), 5000);
      // Still serving afterwards.
      const [rows] = await healthy.query<mysql.RowDataPacket[]>('SELECT 1 AS one');
      assert.equal(rows[0]!['one'], 1);
    } finally {
      await healthy.end();
    }
    const r = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'SELECT 5');
    assert.equal(r.stdout, '5\n', r.stderr);
  });
});
