// Connection sharing (issue 14, part 2) against a real MariaDB: two clients interleave on a pool of
// ONE server connection (max_connections = 1). What can be restored (SET NAMES, USE, session
// variables) follows each client onto the connection; what cannot (user variables, temporary
// tables, LAST_INSERT_ID(), prepared statements, GET_LOCK) pins the client, so the other one waits
// until it ends and then sees nothing of it; a transaction holds the connection until COMMIT. A
// connection that dies while parked is replaced without the client noticing; one that dies under a
// statement's session ends it with an error; a drain lets sharing sessions finish.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';

async function settle(ms = 200): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

describe('connection sharing (pool = {share = true, max_connections = 1})', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let metricsPort = 0;

  before(async () => {
    db = await startMariaDB({ name: 'pool-share' });
    await createTestUsers(db);
    await db.query('CREATE TABLE IF NOT EXISTS test.share_ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT)');
    await db.query('CREATE TABLE IF NOT EXISTS test.share_t (v INT)');
    metricsPort = await freeTcpPort();
    proxy = await startProxy({
      name: 'pool-share',
      config: (dir) => `
local backend = mysql_resolve(${JSON.stringify(db!.socket)},
  {pool = {share = true, max_connections = 1, queue_timeout = 20, max_idle = 8, idle_timeout = 30}})
prometheus_listen('127.0.0.1:${metricsPort}')
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, hr)
  end,
})
-- A second pool of one connection whose statements wait at most half a second.
local tight = mysql_resolve(${JSON.stringify(db!.socket)},
  {pool = {share = true, max_connections = 1, queue_timeout = 0.5}})
mysql_listen('${dir}/tight.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(tight, hr)
  end,
})
`,
    });
    // The listener's first greeting differs from later ones (another pool key): one login first.
    const c = await connect();
    await c.end();
    await settle();
  });

  after(async () => {
    if (process.env['SHARE_DEBUG'] !== undefined) console.log(proxy?.logs());
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

  const one = async (c: mysql.Connection, sql: string): Promise<unknown> => {
    const [rows] = await c.query<mysql.RowDataPacket[]>(sql);
    return Object.values(rows[0]!)[0];
  };
  const threadId = async (c: mysql.Connection): Promise<number> => Number(await one(c, 'SELECT CONNECTION_ID()'));

  const metric = async (name: string): Promise<number> => {
    await settle(300); // the exporter shares a render among scrapes within 250 ms
    const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
    return m === null ? NaN : Number(m[1]);
  };

  /** Whether `p` is still pending after `ms`. */
  const pending = async (p: Promise<unknown>, ms = 300): Promise<boolean> => {
    const mark = Symbol('pending');
    return (await Promise.race([p, settle(ms).then(() => mark)])) === mark;
  };

  const serverConnections = async (): Promise<number> =>
    Number((await db!.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'native'")).trim());

  test('two clients run their statements on one server connection', async () => {
    const takes = await metric('myproxy_pool_shared_takes_total');
    const a = await connect();
    const b = await connect();
    try {
      const ia = await threadId(a);
      const ib = await threadId(b);
      assert.equal(ia, ib, 'both ran on the one server connection');
      assert.equal(await one(a, 'SELECT 1 + 1'), 2);
      assert.equal(await one(b, 'SELECT 2 + 2'), 4);
    } finally {
      await a.end();
      await b.end();
    }
    assert.ok((await metric('myproxy_pool_shared_takes_total')) >= takes + 4);
    assert.equal(await metric('myproxy_pool_pinned_sessions'), 0);
  });

  test('SET NAMES, session variables and USE follow each client onto the shared connection', async () => {
    const a = await connect();
    const b = await connect();
    try {
      const before = String(await one(b, 'SELECT @@character_set_client'));
      await a.query('SET NAMES latin1');
      await a.query("SET SESSION sql_mode = 'ANSI_QUOTES'");
      await a.query('USE information_schema');
      // b on the same connection: its own state.
      assert.equal(await one(b, 'SELECT @@character_set_client'), before);
      assert.equal(await one(b, 'SELECT DATABASE()'), 'test');
      assert.doesNotMatch(String(await one(b, 'SELECT @@sql_mode')), /ANSI_QUOTES/);
      // a back: its state again.
      assert.equal(await one(a, 'SELECT @@character_set_client'), 'latin1');
      assert.equal(await one(a, 'SELECT DATABASE()'), 'information_schema');
      assert.match(String(await one(a, 'SELECT @@sql_mode')), /ANSI_QUOTES/);
      await a.query('USE test');
      await b.query('USE information_schema');
      assert.equal(await one(a, 'SELECT DATABASE()'), 'test');
      assert.equal(await one(b, 'SELECT DATABASE()'), 'information_schema');
      assert.equal(await threadId(a), await threadId(b), 'still one server connection');
      assert.equal(await metric('myproxy_pool_pinned_sessions'), 0, 'nothing pinned');
    } finally {
      await a.end();
      await b.end();
    }
  });

  /**
   * `a` does something that pins it: `b`'s statement waits for the one connection until `a` ends,
   * and then finds nothing `a` left behind (`check` runs on b).
   */
  const pinsAndIsolates = async (
    setup: (a: mysql.Connection) => Promise<void>,
    stillThere: (a: mysql.Connection) => Promise<void>,
    check: (b: mysql.Connection) => Promise<void>,
  ): Promise<void> => {
    const pins = await metric('myproxy_pool_pins_total');
    const a = await connect();
    const b = await connect();
    try {
      await setup(a);
      assert.equal(await metric('myproxy_pool_pinned_sessions'), 1, 'a is pinned');
      assert.equal(await metric('myproxy_pool_pins_total'), pins + 1);
      const waiting = b.query('SELECT 1');
      assert.ok(await pending(waiting), "b waits: the one connection is a's");
      await stillThere(a);
      await a.end();
      await waiting;
      await check(b);
    } finally {
      a.destroy();
      await b.end();
    }
    assert.equal(await metric('myproxy_pool_pinned_sessions'), 0);
  };

  test('a user variable pins the client; the other never sees it', async () => {
    await pinsAndIsolates(
      async (a) => {
        await a.query('SET @secret = 42');
      },
      async (a) => assert.equal(await one(a, 'SELECT @secret'), 42),
      async (b) => assert.equal(await one(b, 'SELECT @secret'), null),
    );
  });

  test('a temporary table pins the client; the other never sees it', async () => {
    await pinsAndIsolates(
      async (a) => {
        await a.query('CREATE TEMPORARY TABLE tmp_share (a INT)');
      },
      async (a) => {
        await a.query('INSERT INTO tmp_share VALUES (1)');
      },
      async (b) => await assert.rejects(b.query('SELECT * FROM tmp_share'), /doesn't exist/),
    );
  });

  test('LAST_INSERT_ID() pins the client that inserted; the other gets its own (0)', async () => {
    let id = 0;
    await pinsAndIsolates(
      async (a) => {
        const [r] = await a.query<mysql.ResultSetHeader>('INSERT INTO share_ai (v) VALUES (1)');
        id = r.insertId;
        assert.ok(id > 0);
      },
      async (a) => assert.equal(Number(await one(a, 'SELECT LAST_INSERT_ID()')), id),
      async (b) => assert.equal(Number(await one(b, 'SELECT LAST_INSERT_ID()')), 0),
    );
  });

  test('a prepared statement pins the client', async () => {
    await pinsAndIsolates(
      async (a) => {
        const [rows] = await a.execute<mysql.RowDataPacket[]>('SELECT ? + 1 AS x', [41]);
        assert.equal(Number(rows[0]!['x']), 42);
      },
      async (a) => {
        const [rows] = await a.execute<mysql.RowDataPacket[]>('SELECT ? + 1 AS x', [1]);
        assert.equal(Number(rows[0]!['x']), 2);
      },
      async (b) => assert.equal(await one(b, 'SELECT 3'), 3),
    );
  });

  test('GET_LOCK pins the client; the lock is gone when it ends', async () => {
    await pinsAndIsolates(
      async (a) => assert.equal(Number(await one(a, "SELECT GET_LOCK('share_lock', 0)")), 1),
      async (a) => assert.equal(Number(await one(a, "SELECT IS_USED_LOCK('share_lock') = CONNECTION_ID()")), 1),
      async (b) => assert.equal(await one(b, "SELECT IS_USED_LOCK('share_lock')"), null),
    );
  });

  test('a transaction holds the connection until COMMIT, then it is shared again', async () => {
    const a = await connect();
    const b = await connect();
    try {
      await a.query('BEGIN');
      await a.query('INSERT INTO share_t VALUES (7)');
      const waiting = b.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS n FROM share_t WHERE v = 7');
      assert.ok(await pending(waiting), 'b waits during the transaction');
      await a.query('COMMIT');
      const [rows] = await waiting;
      assert.equal(Number(rows[0]!['n']), 1, 'b runs after the commit and sees the row');
      assert.equal(await threadId(a), await threadId(b));
      assert.equal(await metric('myproxy_pool_pinned_sessions'), 0, 'a transaction does not pin');
    } finally {
      await a.end();
      await b.end();
    }
  });

  test('a client without CLIENT_SESSION_TRACK is pinned from its login and works', async () => {
    const a = await connect({ flags: ['-SESSION_TRACK'] });
    try {
      assert.equal(await metric('myproxy_pool_pinned_sessions'), 1);
      assert.equal(await one(a, 'SELECT 5'), 5);
    } finally {
      await a.end();
    }
    await settle();
    assert.equal(await metric('myproxy_pool_pinned_sessions'), 0);
  });

  test('a connection that dies while parked is replaced without the client noticing', async () => {
    const a = await connect();
    try {
      await a.query('USE information_schema');
      const id = await threadId(a);
      await db!.query(`KILL ${id}`);
      await settle();
      assert.notEqual(await threadId(a), id, 'a new server connection');
      assert.equal(await one(a, 'SELECT DATABASE()'), 'information_schema', 'with the state restored');
    } finally {
      await a.end();
    }
  });

  test('a connection that dies under a transaction ends that session with an error, and no other', async () => {
    const a = await connect();
    const b = await connect();
    try {
      await a.query('BEGIN');
      const id = await threadId(a);
      await db!.query(`KILL ${id}`);
      await assert.rejects(a.query('SELECT 1'));
      assert.equal(await one(b, 'SELECT 6'), 6, 'b goes on, on a new connection');
    } finally {
      a.destroy();
      await b.end();
    }
  });

  test('a statement that finds no connection within queue_timeout fails with 1040; the session goes on', async () => {
    const tight = (): Promise<mysql.Connection> => connect({ socketPath: `${proxy!.dir}/tight.sock` });
    const warm = await tight(); // the listener's first greeting: another key
    await warm.end();
    await settle();
    const a = await tight();
    const b = await tight();
    try {
      await a.query('SET @pin = 1'); // a keeps the one connection
      const timeouts = await metric('myproxy_pool_shared_wait_timeouts_total');
      await assert.rejects(b.query('SELECT 1'), (e: { errno?: number; message: string }) => {
        assert.equal(e.errno, 1040);
        assert.match(e.message, /queue_timeout/);
        return true;
      });
      assert.equal(await metric('myproxy_pool_shared_wait_timeouts_total'), timeouts + 1);
      await a.end();
      await settle();
      assert.equal(await one(b, 'SELECT 9'), 9, 'b goes on once the connection is free');
    } finally {
      a.destroy();
      await b.end();
    }
  });

  test('a client that leaves while it waits for a connection does not take one with it', async () => {
    const tight = (): Promise<mysql.Connection> => connect({ socketPath: `${proxy!.dir}/tight.sock` });
    const a = await tight();
    const b = await tight();
    await a.query('BEGIN'); // a holds the one connection
    // mysql2 settles no query of a destroyed connection: not awaited.
    void b.query('SELECT 1').catch(() => undefined);
    await settle(100);
    b.destroy(); // gone while its statement waits
    await a.query('COMMIT');
    await a.end();
    await settle(800); // past b's queue_timeout
    const c = await tight();
    try {
      assert.equal(await one(c, 'SELECT 10'), 10, 'the one connection is still there for c');
    } finally {
      await c.end();
    }
  });

  test('SIGTERM: sharing sessions finish their work, parked connections close', async () => {
    const a = await connect();
    await one(a, 'SELECT 1');
    process.kill(proxy!.pid, 'SIGTERM');
    await settle(300);
    assert.equal(await one(a, 'SELECT 8'), 8, 'the session still runs during the drain');
    await a.end();
    await proxy!.exited;
    assert.equal(await serverConnections(), 0);
  });
});
