// The backend connection pool (issue 14, part 1) against a real MariaDB, on both relays: a session
// that ends cleanly leaves its server connection reset and parked, the next login with the same key
// takes it (on_handshake_response still runs), a wrong password never does, an open transaction or
// a server that closed the parked connection keeps it out, and a drain closes parked connections.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import * as net from 'node:net';
import mysql from 'mysql2/promise';

import { Command, PacketHeader } from '../../src/protocol/constants.js';
import { framePayload } from '../../src/protocol/writer.js';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';

async function settle(ms = 200): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

for (const relayKind of ['native', 'js'] as const) {
  describe(`backend connection pool (--relay ${relayKind})`, () => {
    let db: MariaDB | undefined;
    let proxy: Proxy | undefined;
    let metricsPort = 0;

    before(async () => {
      db = await startMariaDB({ name: `pool-${relayKind}` });
      await createTestUsers(db);
      metricsPort = await freeTcpPort();
      proxy = await startProxy({
        name: `pool-${relayKind}`,
        args: ['--relay', relayKind],
        config: (dir) => `
local backend = mysql_resolve(${JSON.stringify(db!.socket)}, {pool = {max_idle = 8, idle_timeout = 30, max_per_key = 4}})
local logins = 0
prometheus_listen('127.0.0.1:${metricsPort}')
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    logins = logins + 1
    print('policy login ' .. logins .. ' user=' .. hr.user)
    if hr.user == 'blocked' then return client:err('blocked by policy') end
    return client:connect(backend, hr)
  end,
})
`,
      });
      // A listener greets its first client before it has met its server and later ones with what
      // the server offers: logins under the two greetings have different pool keys. One login first,
      // so every test below sees the greeting that stays.
      await warmGreeting(proxy.socket);
    });

    after(async () => {
      await proxy?.stop();
      await db?.stop();
    });

    const connect = (over: Partial<mysql.ConnectionOptions> = {}): Promise<mysql.Connection> =>
      mysql.createConnection({
        socketPath: proxy!.socket,
        user: USERS.native.user,
        password: USERS.native.password,
        database: 'test',
        enableCleartextPlugin: true,
        ...over,
      });

    const threadId = async (c: mysql.Connection): Promise<number> => {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CONNECTION_ID() AS id');
      return Number(rows[0]!['id']);
    };

    /** A session that sets session state, then quits: its server connection gets parked. */
    const warm = async (over: Partial<mysql.ConnectionOptions> = {}): Promise<number> => {
      const c = await connect(over);
      const id = await threadId(c);
      await c.query('SET @marker = 42');
      await c.query('CREATE TEMPORARY TABLE tmp_pool (a INT)');
      await c.end();
      await settle();
      return id;
    };

    const metric = async (name: string): Promise<number> => {
      await settle(300); // the exporter shares a render among scrapes within 250 ms
      const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
      return m === null ? NaN : Number(m[1]);
    };

    test('a clean session parks its connection; the next login takes it, reset', async () => {
      const hits = await metric('myproxy_pool_hits_total');
      const since = proxy!.logs().length;
      const idle = await metric('myproxy_pool_idle_connections');
      const id = await warm();
      assert.equal(await metric('myproxy_pool_idle_connections'), idle + 1);
      const c = await connect();
      try {
        assert.equal(await threadId(c), id, 'the parked server connection is reused');
        const [vars] = await c.query<mysql.RowDataPacket[]>('SELECT @marker AS m');
        assert.equal(vars[0]!['m'], null, 'user variables were reset');
        await c.query('CREATE TEMPORARY TABLE tmp_pool (a INT)'); // gone with the reset
        await c.query('INSERT INTO tmp_pool VALUES (1)');
      } finally {
        await c.end();
      }
      await settle();
      assert.equal(await metric('myproxy_pool_hits_total'), hits + 1);
      // Policy ran for both logins.
      assert.equal(
        (
          proxy!
            .logs()
            .slice(since)
            .match(/policy login \d+ user=native/g) ?? []
        ).length,
        2,
      );
      assert.match(proxy!.logs().slice(since), /pooled server connection/);
    });

    test("a session's USE does not follow its parked connection to the next login", async () => {
      const a = await connect();
      const id = await threadId(a);
      await a.query('USE information_schema');
      await a.end();
      await settle();
      const b = await connect();
      try {
        assert.equal(await threadId(b), id, 'the parked connection is reused');
        const [rows] = await b.query<mysql.RowDataPacket[]>('SELECT DATABASE() AS d');
        assert.equal(rows[0]!['d'], 'test', "the login's database, not the last session's");
      } finally {
        await b.end();
      }
      await settle();
    });

    test('a wrong password against a warm pool falls through to the server and is refused', async () => {
      const id = await warm();
      const misses = await metric('myproxy_pool_misses_total');
      await assert.rejects(connect({ password: 'wrong' }), /Access denied/);
      await assert.rejects(connect({ password: '' }), /Access denied/);
      assert.equal(await metric('myproxy_pool_misses_total'), misses + 2);
      // The parked connection is still there for the right password.
      const c = await connect();
      assert.equal(await threadId(c), id);
      await c.end();
      await settle();
    });

    test('a login refused by policy never reaches the pool', async () => {
      await warm();
      const idle = await metric('myproxy_pool_idle_connections');
      await assert.rejects(connect({ user: 'blocked' }), /blocked by policy/);
      assert.equal(await metric('myproxy_pool_idle_connections'), idle);
    });

    test('another database is another key', async () => {
      const id = await warm();
      const c = await connect({ database: 'sbtest' });
      assert.notEqual(await threadId(c), id);
      await c.end();
      await settle();
      const d = await connect();
      assert.equal(await threadId(d), id);
      await d.end();
      await settle();
    });

    test('a session that leaves inside a transaction is not pooled', async () => {
      // Empty the pool for this key first.
      const first = await connect();
      await first.query('SELECT 1');
      const c = await connect();
      const id = await threadId(c);
      await c.query('CREATE TABLE IF NOT EXISTS pool_t (a INT) ENGINE=InnoDB');
      await c.query('BEGIN');
      await c.query('INSERT INTO pool_t VALUES (1)');
      await c.end();
      await settle();
      const d = await connect();
      assert.notEqual(await threadId(d), id, 'a connection with an open transaction was handed out');
      await d.end();
      await first.end();
      await settle();
    });

    test('a client that closes without COM_QUIT leaves its connection parked too', async () => {
      const c = await connect();
      const id = await threadId(c);
      // Several of the earlier sessions' connections may be parked: take them out of the way.
      const others: mysql.Connection[] = [];
      c.destroy();
      await settle();
      for (;;) {
        const o = await connect();
        others.push(o);
        if ((await threadId(o)) === id) break;
        assert.ok(others.length < 8, 'the connection of the client that went away was never handed out');
      }
      for (const o of others) await o.end();
      await settle();
    });

    test('a parked connection the server closed is not handed out', async () => {
      const id = await warm();
      await db!.query(`KILL ${id}`);
      await settle();
      const c = await connect();
      assert.notEqual(await threadId(c), id);
      await c.query('SELECT 1');
      await c.end();
      await settle();
    });

    test('SIGTERM closes parked connections at once, while sessions drain', async () => {
      const busy = await connect();
      await warm();
      const count = async (): Promise<number> =>
        Number((await db!.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'native'")).trim());
      assert.ok((await count()) >= 2);
      process.kill(proxy!.pid, 'SIGTERM');
      await settle(500);
      assert.equal(await count(), 1, 'only the busy session is left on the server');
      busy.destroy();
      await proxy!.exited;
    });
  });
}

/**
 * A server without COM_RESET_CONNECTION (MySQL before 5.7.3; MariaDB has it): a TCP stand-in in
 * front of MariaDB that answers that command with ER_UNKNOWN_COM_ERROR and relays everything else.
 */
async function withoutReset(backendSocket: string): Promise<{ port: number; refused: () => number; close(): void }> {
  const reset = framePayload(Buffer.of(Command.COM_RESET_CONNECTION), 0);
  const unknown = framePayload(
    Buffer.concat([Buffer.of(PacketHeader.ERR, 1047 & 0xff, 1047 >> 8), Buffer.from('#08S01Unknown command')]),
    1,
  );
  let refused = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(backendSocket);
    sockets.add(client).add(upstream);
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('data', (d: Buffer) => {
      if (d.equals(reset)) {
        refused++;
        client.write(unknown);
      } else upstream.write(d);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    refused: () => refused,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe('backend connection pool: a server without COM_RESET_CONNECTION', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let standIn: Awaited<ReturnType<typeof withoutReset>> | undefined;

  before(async () => {
    db = await startMariaDB({ name: 'pool-noreset' });
    await createTestUsers(db);
    standIn = await withoutReset(db.socket);
    proxy = await startProxy({
      name: 'pool-noreset',
      config: (dir) => `
local backend = mysql_resolve('127.0.0.1:${standIn!.port}', {pool = true})
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(backend, hr) end,
})
`,
    });
    // A listener greets its first client before it has met its server and later ones with what
    // the server offers: logins under the two greetings have different pool keys. One login first,
    // so every test below sees the greeting that stays.
    await warmGreeting(proxy.socket);
  });

  after(async () => {
    await proxy?.stop();
    standIn?.close();
    await db?.stop();
  });

  test('the connection is reset with COM_CHANGE_USER to the same user and reused', async () => {
    const connect = (): Promise<mysql.Connection> =>
      mysql.createConnection({
        socketPath: proxy!.socket,
        user: USERS.native.user,
        password: USERS.native.password,
        database: 'test',
        enableCleartextPlugin: true,
      });
    const refusedBefore = standIn!.refused();
    const a = await connect();
    const [ids] = await a.query<mysql.RowDataPacket[]>('SELECT CONNECTION_ID() AS id');
    await a.query('SET @marker = 42');
    await a.end();
    await settle(300);
    assert.equal(standIn!.refused(), refusedBefore + 1, 'the proxy tried COM_RESET_CONNECTION first');
    const b = await connect();
    try {
      const [rows] = await b.query<mysql.RowDataPacket[]>(
        'SELECT CONNECTION_ID() AS id, @marker AS m, CURRENT_USER() AS u, DATABASE() AS d',
      );
      assert.equal(rows[0]!['id'], ids[0]!['id'], 'the parked connection was reused');
      assert.equal(rows[0]!['m'], null, 'COM_CHANGE_USER reset the session');
      assert.equal(rows[0]!['u'], 'native@%');
      assert.equal(rows[0]!['d'], 'test');
    } finally {
      await b.end();
    }
    assert.match(proxy!.logs(), /pooled server connection/);
  });
});

/** One login and quit (see the callers). */
async function warmGreeting(socketPath: string): Promise<void> {
  const c = await mysql.createConnection({
    socketPath,
    user: USERS.native.user,
    password: USERS.native.password,
    enableCleartextPlugin: true,
  });
  await c.end();
  await new Promise((r) => setTimeout(r, 200));
}
