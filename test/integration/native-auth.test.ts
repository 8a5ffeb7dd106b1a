// mysql_listen(..., { auth = 'native' }): the proxy greets with mysql_native_password and a random
// scramble, Lua checks the answer against a stored hash with client:verify_native_password() and
// logs in to a real MariaDB with the verified credential. No clear password anywhere.

import { createHash } from 'node:crypto';
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { guard, luaBytes, mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
  code?: string;
}

const sha1 = (b: Uint8Array | string): Buffer => createHash('sha1').update(b).digest();
const authString = (pw: string): string => '*' + sha1(sha1(pw)).toString('hex').toUpperCase();

async function loginError(opts: mysql.ConnectionOptions): Promise<MysqlError> {
  try {
    const c = await guard(mysql.createConnection(opts), 'mysql2 login');
    await c.end();
  } catch (e) {
    return e as MysqlError;
  }
  assert.fail('login succeeded but should have failed');
}

async function currentUser(opts: mysql.ConnectionOptions): Promise<string> {
  const c = await guard(mysql.createConnection(opts), 'mysql2 login');
  try {
    const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
    return String(rows[0]!['u']);
  } finally {
    await c.end();
  }
}

describe("mysql_listen auth = 'native'", () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let sock = '';
  let rawSock = '';
  let forgotSock = '';
  let inspectSock = '';

  before(async () => {
    db = await startMariaDB({ name: 'nativeauth' });
    await createTestUsers(db);
    // The stored hash is MariaDB's own authentication_string.
    const stored = (
      await db.query(`SELECT authentication_string FROM mysql.user WHERE user = '${USERS.native.user}'`)
    ).trim();
    assert.equal(stored, authString(USERS.native.password));
    const dbSock = db.socket;
    proxy = await startProxy({
      name: 'nativeauth',
      config: (dir) => `
local backend = ${JSON.stringify(dbSock)}
local accounts = { ${USERS.native.user} = '${stored.toLowerCase()}', ${USERS.nopw.user} = '' }
local raw = { ${USERS.native.user} = ${luaBytes(sha1(sha1(USERS.native.password)))} }

local function handler(store)
  return {
    on_handshake_response = function(client, hr)
      assert(hr.password == nil and hr.verify == nil)
      local stored = store[hr.user]
      if stored == nil then return client:deny() end
      local verified = client:verify_native_password(stored)
      if not verified then return client:deny() end
      return client:connect(backend, { user = hr.user, password_sha1 = verified, database = hr.database })
    end,
  }
end

mysql_listen('${dir}/proxy.sock', handler(accounts), { auth = 'native' })
mysql_listen('${dir}/raw.sock', handler(raw), { auth = 'native' })

-- Forgets to verify and passes no credential: must be refused, never forwarded.
mysql_listen('${dir}/forgot.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, { user = hr.user, database = hr.database })
  end,
}, { auth = 'native' })

mysql_listen('${dir}/inspect.sock', {
  on_handshake_response = function(client, hr)
    local keys = {}
    for k in pairs(hr) do keys[#keys + 1] = k end
    table.sort(keys)
    return client:err('keys=' .. table.concat(keys, ','))
  end,
}, { auth = 'native' })
`,
    });
    sock = proxy.socket;
    rawSock = `${proxy.dir}/raw.sock`;
    forgotSock = `${proxy.dir}/forgot.sock`;
    inspectSock = `${proxy.dir}/inspect.sock`;
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  const m2 = (socketPath: string, user: string, password: string, extra: Partial<mysql.ConnectionOptions> = {}) => ({
    socketPath,
    user,
    password,
    ...extra,
  });

  test('mysql2 without enableCleartextPlugin logs in with the right password', async () => {
    assert.equal(
      await currentUser(m2(sock, USERS.native.user, USERS.native.password, { database: 'test' })),
      'native@%',
    );
  });

  test('mariadb CLI logs in with the right password', async () => {
    const r = await mariadbCli(sock, USERS.native.user, USERS.native.password, 'SELECT CURRENT_USER(), DATABASE()', [
      '-D',
      'test',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'native@%\ttest\n');
  });

  test('mariadb CLI answering with another plugin gets an AuthSwitchRequest to native', async () => {
    const r = await mariadbCli(sock, USERS.native.user, USERS.native.password, 'SELECT CURRENT_USER()', [
      '--default-auth=client_ed25519',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'native@%\n');
  });

  test('wrong password gets 1045 (28000) from client:deny()', async () => {
    const e = await loginError(m2(sock, USERS.native.user, 'wrongpw'));
    assert.equal(e.errno, 1045, e.message);
    assert.equal(e.sqlState, '28000');
    assert.match(e.message, /Access denied for user 'native'/);
    const r = await mariadbCli(sock, USERS.native.user, 'wrongpw', 'SELECT 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ERROR 1045 \(28000\).*Access denied for user 'native'/);
    const empty = await loginError(m2(sock, USERS.native.user, ''));
    assert.equal(empty.errno, 1045);
    const unknown = await loginError(m2(sock, 'nobody', 'x'));
    assert.equal(unknown.errno, 1045);
  });

  test("empty password: nopw with '' logs in with both clients; a password for nopw is refused", async () => {
    assert.equal(await currentUser(m2(sock, USERS.nopw.user, '')), 'nopw@%');
    const r = await mariadbCli(sock, USERS.nopw.user, '', 'SELECT CURRENT_USER()');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'nopw@%\n');
    const e = await loginError(m2(sock, USERS.nopw.user, 'notempty'));
    assert.equal(e.errno, 1045);
  });

  test('the raw 20-byte stored digest works', async () => {
    assert.equal(await currentUser(m2(rawSock, USERS.native.user, USERS.native.password)), 'native@%');
    const e = await loginError(m2(rawSock, USERS.native.user, 'wrongpw'));
    assert.equal(e.errno, 1045);
  });

  test('a config that forgets to verify and passes no credential: 1045 even with the right password', async () => {
    const e = await loginError(m2(forgotSock, USERS.native.user, USERS.native.password));
    assert.equal(e.errno, 1045, e.message);
    assert.equal(e.sqlState, '28000');
    const r = await mariadbCli(forgotSock, USERS.nopw.user, '', 'SELECT 1');
    assert.match(r.stderr, /ERROR 1045 \(28000\)/);
  });

  test('Lua sees no clear password (handshake_response holds only user and database)', async () => {
    const e = await loginError(m2(inspectSock, USERS.native.user, USERS.native.password, { database: 'test' }));
    assert.equal(e.errno, 1043);
    assert.equal(e.message, 'keys=database,user');
  });
});
