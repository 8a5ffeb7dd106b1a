// Logging in through the proxy to a real MariaDB with mysql_native_password accounts: the mariadb
// CLI (asks for mysql_clear_password directly) and mysql2 (answers with mysql_native_password
// first, so the proxy has to send an AuthSwitchRequest for the clear password).

import { createHash } from 'node:crypto';
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { luaBytes, mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';

/** Fails (instead of hanging the suite) when `p` does not settle within `ms`. */
function guard<T>(p: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms);
    }),
  ]);
}

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
  code?: string;
  sqlMessage?: string;
}

async function loginError(opts: mysql.ConnectionOptions): Promise<MysqlError> {
  try {
    const c = await guard(mysql.createConnection(opts), 'mysql2 login');
    await c.end();
  } catch (e) {
    return e as MysqlError;
  }
  assert.fail('login succeeded but should have failed');
}

describe('login with mysql_native_password accounts', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let mainSock = '';
  let sha1Sock = '';
  let inspectSock = '';

  before(async () => {
    db = await startMariaDB({ name: 'login' });
    await createTestUsers(db);
    const sha1 = createHash('sha1').update(USERS.native.password).digest();
    const dbSock = db.socket;
    proxy = await startProxy({
      name: 'login',
      config: (dir) => `
local backend = ${JSON.stringify(dbSock)}

-- Pass the client's login through unchanged.
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, handshake_response)
    return client:connect(backend, handshake_response)
  end,
})

-- Log in as "native" with SHA1(password) only: the client's password does not matter.
mysql_listen('${dir}/sha1.sock', {
  on_handshake_response = function(client, handshake_response)
    return client:connect(backend, {
      user = 'native',
      password_sha1 = ${luaBytes(sha1)},
      database = handshake_response.database,
    })
  end,
})

-- Report what Lua sees in handshake_response (as the error message and in the log).
local function show(v)
  if v == nil then return 'nil' end
  return string.format('%q', v)
end
mysql_listen('${dir}/inspect.sock', {
  on_handshake_response = function(client, hr)
    local keys = {}
    for k in pairs(hr) do keys[#keys + 1] = k end
    table.sort(keys)
    local text = 'HR keys=' .. table.concat(keys, ',') .. ' user=' .. show(hr.user) ..
      ' password=' .. show(hr.password) .. ' database=' .. show(hr.database)
    print(text)
    return client:err(text)
  end,
})
`,
    });
    mainSock = proxy.socket;
    sha1Sock = `${proxy.dir}/sha1.sock`;
    inspectSock = `${proxy.dir}/inspect.sock`;
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  const m2 = (socketPath: string, extra: Partial<mysql.ConnectionOptions> = {}): mysql.ConnectionOptions => ({
    socketPath,
    user: USERS.native.user,
    password: USERS.native.password,
    enableCleartextPlugin: true,
    ...extra,
  });

  test('mariadb CLI logs in as native, with and without a database', async () => {
    const r = await mariadbCli(
      mainSock,
      USERS.native.user,
      USERS.native.password,
      'SELECT CURRENT_USER(), DATABASE()',
      ['-D', 'test'],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'native@%\ttest\n');

    const r2 = await mariadbCli(
      mainSock,
      USERS.native.user,
      USERS.native.password,
      'SELECT CURRENT_USER(), DATABASE()',
    );
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.stdout, 'native@%\tNULL\n');
    await proxy!.waitForLog(/login user="native" database="test"/, 5000);
  });

  test('mysql2 (native first, then AuthSwitchRequest to clear password) logs in as native', async () => {
    const c = await guard(mysql.createConnection(m2(mainSock, { database: 'sbtest' })), 'mysql2 login');
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u, DATABASE() AS d');
      assert.deepEqual(
        rows.map((r) => ({ ...r })),
        [{ u: 'native@%', d: 'sbtest' }],
      );
      // The session is the backend's: its connection id is MariaDB's, not the greeting's.
      const [ids] = await c.query<mysql.RowDataPacket[]>('SELECT CONNECTION_ID() AS id');
      const backendIds = await db!.query(`SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'native'`);
      assert.ok(backendIds.split('\n').includes(String(ids[0]!['id'])), `${String(ids[0]!['id'])} in ${backendIds}`);
    } finally {
      await c.end();
    }
  });

  test('password_sha1 from the config logs in; the client password is irrelevant', async () => {
    const r = await mariadbCli(sha1Sock, 'whoever', 'not-the-password', 'SELECT CURRENT_USER(), DATABASE()', [
      '-D',
      'test',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'native@%\ttest\n');

    const c = await guard(
      mysql.createConnection(m2(sha1Sock, { user: 'someone', password: 'wrong' })),
      'mysql2 login (password_sha1)',
    );
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u, DATABASE() AS d');
      assert.deepEqual(
        rows.map((r) => ({ ...r })),
        [{ u: 'native@%', d: null }],
      );
    } finally {
      await c.end();
    }
  });

  test('empty-password user nopw logs in with both clients', async () => {
    const r = await mariadbCli(mainSock, USERS.nopw.user, '', 'SELECT CURRENT_USER(), DATABASE()', ['-D', 'sbtest']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'nopw@%\tsbtest\n');

    const c = await guard(
      mysql.createConnection(m2(mainSock, { user: USERS.nopw.user, password: '' })),
      'mysql2 login (nopw)',
    );
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
      assert.equal(rows[0]!['u'], 'nopw@%');
    } finally {
      await c.end();
    }
  });

  test("wrong password: the client receives MariaDB's own 1045 (28000)", async () => {
    const r = await mariadbCli(mainSock, USERS.native.user, 'wrongpw', 'SELECT 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ERROR 1045 \(28000\)/);
    assert.match(r.stderr, /Access denied for user 'native'/);

    const e = await loginError(m2(mainSock, { password: 'wrongpw' }));
    assert.equal(e.errno, 1045, e.message);
    assert.equal(e.sqlState, '28000');
    assert.match(e.message, /Access denied for user 'native'/);
  });

  test('mysql2 without enableCleartextPlugin fails cleanly (no hang), the daemon keeps serving', async () => {
    const e = await loginError(m2(mainSock, { enableCleartextPlugin: false }));
    assert.equal(e.code, 'MYSQL_CLEAR_PASSWORD_NOT_ENABLED', e.message);
    const r = await mariadbCli(mainSock, USERS.native.user, USERS.native.password, 'SELECT 7');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '7\n');
  });

  test('handshake_response holds user, clear password, and database only when given', async () => {
    // mysql2 with a database (AuthSwitch path).
    const withDb = await loginError(m2(inspectSock, { database: 'test' }));
    assert.equal(withDb.errno, 1043);
    assert.equal(withDb.sqlState, '08S01');
    assert.equal(withDb.message, 'HR keys=database,password,user user="native" password="nativepw" database="test"');

    // mysql2 without a database: no database key at all.
    const noDb = await loginError(m2(inspectSock));
    assert.equal(noDb.message, 'HR keys=password,user user="native" password="nativepw" database=nil');

    // mysql2 with an empty password: empty string, not nil.
    const empty = await loginError(m2(inspectSock, { user: 'nopw', password: '' }));
    assert.equal(empty.message, 'HR keys=password,user user="nopw" password="" database=nil');

    // The CLI (clear password in the HandshakeResponse itself).
    const cli = await mariadbCli(inspectSock, 'native', 'p@ss word', 'SELECT 1', ['-D', 'sbtest']);
    assert.notEqual(cli.code, 0);
    assert.match(
      cli.stderr,
      /ERROR 1043 \(08S01\).*HR keys=database,password,user user="native" password="p@ss word" database="sbtest"/,
    );

    // print() from Lua goes to the proxy log.
    await proxy!.waitForLog(
      /^HR keys=database,password,user user="native" password="p@ss word" database="sbtest"$/m,
      5000,
    );
  });
});
