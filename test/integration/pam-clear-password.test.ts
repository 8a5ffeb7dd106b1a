// A backend that demands mysql_clear_password: MariaDB with the PAM plugin and
// --pam-use-cleartext-plugin=ON sends an AuthSwitchRequest to mysql_clear_password for a user
// IDENTIFIED VIA pam. The PAM service is a throwaway file in /etc/pam.d whose pam_exec check
// script accepts exactly one user/password pair (pam_exec with expose_authtok passes the password
// on stdin, the user in PAM_USER). Needs root (for /etc/pam.d and for MariaDB's PAM helper); the
// service file is removed afterwards, also when the test fails.

import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { startMariaDB, type MariaDB } from '../helpers/mariadb.js';
import { guard, luaBytes, mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
}

const PAM_USER = 'pamuser';
const PAM_PASSWORD = 'pampw';
const PAM_PLUGIN = '/usr/lib/mysql/plugin/auth_pam.so';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const skip = !isRoot
  ? 'needs root (a service file in /etc/pam.d and MariaDB PAM accounts)'
  : !fs.existsSync(PAM_PLUGIN)
    ? `the MariaDB package has no PAM plugin (${PAM_PLUGIN} is missing)`
    : false;

async function loginError(opts: mysql.ConnectionOptions): Promise<MysqlError> {
  try {
    const c = await guard(mysql.createConnection(opts), 'mysql2 login', 20_000);
    await c.end();
  } catch (e) {
    return e as MysqlError;
  }
  assert.fail('login succeeded but should have failed');
}

describe('backend demanding mysql_clear_password (MariaDB PAM)', { skip }, () => {
  const service = `myproxy-test-${randomBytes(6).toString('hex')}`;
  const pamFile = path.join('/etc/pam.d', service);
  let tmp = '';
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-pam-'));
    fs.chmodSync(tmp, 0o755);
    const check = path.join(tmp, 'check.sh');
    // pam_exec's expose_authtok writes the password NUL-terminated to stdin.
    fs.writeFileSync(
      check,
      [
        '#!/bin/sh',
        `[ "$PAM_USER" = '${PAM_USER}' ] || exit 1`,
        `pw=$(tr -d '\\000')`,
        `[ "$pw" = '${PAM_PASSWORD}' ] || exit 1`,
        'exit 0',
        '',
      ].join('\n'),
    );
    fs.chmodSync(check, 0o755);
    fs.writeFileSync(
      pamFile,
      `auth required pam_exec.so expose_authtok quiet ${check}\naccount required pam_permit.so\n`,
    );

    db = await startMariaDB({
      name: 'pam',
      extraArgs: ['--plugin-load-add=auth_pam', '--pam-use-cleartext-plugin=ON'],
    });
    await db.query(
      [
        `CREATE OR REPLACE USER '${PAM_USER}'@'%' IDENTIFIED VIA pam USING '${service}'`,
        `CREATE DATABASE IF NOT EXISTS \`test\``,
        `GRANT ALL ON \`test\`.* TO '${PAM_USER}'@'%'`,
        '',
      ].join(';\n'),
    );
    const dbSock = db.socket;
    const digest = createHash('sha1').update(PAM_PASSWORD).digest();
    proxy = await startProxy({
      name: 'pam',
      config: (dir) => `
local backend = ${JSON.stringify(dbSock)}
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(backend, hr) end,
})
-- Only SHA1(password): a backend asking for the clear password cannot be served.
mysql_listen('${dir}/sha1.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, { user = '${PAM_USER}', password_sha1 = ${luaBytes(digest)} })
  end,
})
`,
    });
  });

  after(async () => {
    try {
      await proxy?.stop();
      await db?.stop();
    } finally {
      fs.rmSync(pamFile, { force: true });
      if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  const viaProxy = (sock: string, password: string): mysql.ConnectionOptions => ({
    socketPath: path.join(proxy!.dir, sock),
    user: PAM_USER,
    password,
    enableCleartextPlugin: true,
  });

  test('the server itself demands mysql_clear_password and checks through PAM', async () => {
    const plugin = await db!.query(`SELECT plugin FROM mysql.user WHERE user = '${PAM_USER}'`);
    assert.equal(plugin.trim(), 'pam');
    const direct = await mariadbCli(db!.socket, PAM_USER, PAM_PASSWORD, 'SELECT CURRENT_USER()');
    assert.equal(direct.code, 0, direct.stderr);
    assert.equal(direct.stdout, `${PAM_USER}@%\n`);
  });

  test('mariadb CLI logs in through the proxy; a wrong password gets 1045', async () => {
    const r = await mariadbCli(proxy!.socket, PAM_USER, PAM_PASSWORD, 'SELECT CURRENT_USER()');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${PAM_USER}@%\n`);
    const bad = await mariadbCli(proxy!.socket, PAM_USER, 'wrong', 'SELECT 1');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /ERROR 1045 \(28000\)/);
  });

  test('mysql2 (enableCleartextPlugin) logs in through the proxy; a wrong password gets 1045', async () => {
    const c = await guard(
      mysql.createConnection({ ...viaProxy('proxy.sock', PAM_PASSWORD), database: 'test' }),
      'login',
    );
    try {
      const [rows] = await c.query('SELECT CURRENT_USER() AS u, DATABASE() AS d');
      assert.deepEqual(rows, [{ u: `${PAM_USER}@%`, d: 'test' }]);
    } finally {
      await c.end();
    }
    const e = await loginError(viaProxy('proxy.sock', 'pampw2'));
    assert.equal(e.errno, 1045, e.message);
    assert.equal(e.sqlState, '28000');
  });

  test('password_sha1 only: the client gets "backend requires the clear-text password"', async () => {
    const e = await loginError(viaProxy('sha1.sock', 'whatever'));
    assert.equal(e.errno, 1043, e.message);
    assert.match(e.message, /backend requires the clear-text password/);
    await proxy!.waitForLog(/backend requires the clear-text password/, 5000);
  });
});
