// examples/sealed-credentials.lua against a throwaway PostgreSQL 15 and MariaDB: the backend
// password is stored sealed to the proxy's key pair (generated here), the client is identified
// by its Unix uid, a row for another uid is denied and a tampered sealed value gives
// 'credential error'. Also: a runtime mysql_resolve() failure returns nil, message.

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sodium from 'libsodium-wrappers';
import mysql from 'mysql2/promise';

import { startMariaDB, type MariaDB } from '../helpers/mariadb.js';
import { havePostgres, startPostgres, type Postgres } from '../helpers/postgres.js';
import { guard, REPO_ROOT, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
}

const EXAMPLE = fs.readFileSync(path.join(REPO_ROOT, 'examples', 'sealed-credentials.lua'), 'utf8');
const myUid = process.getuid?.() ?? 0;

async function login(socket: string, user: string, password: string): Promise<string> {
  const c = await mysql.createConnection({ socketPath: socket, user, password, enableCleartextPlugin: true });
  try {
    const [rows] = await c.query('SELECT CURRENT_USER() AS u');
    return (rows as { u: string }[])[0]!.u;
  } finally {
    await c.end();
  }
}

async function loginError(socket: string, user: string): Promise<MysqlError> {
  try {
    await login(socket, user, 'whatever');
  } catch (e) {
    return e as MysqlError;
  }
  assert.fail(`login as ${user} succeeded`);
}

describe('examples/sealed-credentials.lua', { skip: havePostgres() ? false : 'PostgreSQL 15 is not installed' }, () => {
  let pg: Postgres | undefined;
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir().length > 60 ? '/tmp' : os.tmpdir(), 'myproxy-sealed-sock-'));
  const socket = path.join(sockDir, 'proxy.sock');

  before(async () => {
    await sodium.ready;
    const keys = sodium.crypto_box_keypair();
    const seal = (pw: string): string => sodium.to_hex(sodium.crypto_box_seal(pw, keys.publicKey));
    const tampered = Buffer.from(sodium.crypto_box_seal('tamper-secret', keys.publicKey));
    tampered[tampered.length - 1]! ^= 0x01;

    [pg, db] = await Promise.all([startPostgres('sealed'), startMariaDB({ name: 'sealed' })]);
    await db.query(
      [
        "CREATE OR REPLACE USER 'sealme'@'%' IDENTIFIED BY 'sealed-secret'",
        "CREATE OR REPLACE USER 'other'@'%' IDENTIFIED BY 'other-secret'",
        "CREATE OR REPLACE USER 'tamper'@'%' IDENTIFIED BY 'tamper-secret'",
        '',
      ].join(';\n'),
    );
    await pg.query(
      'CREATE TABLE sealed_accounts (username text PRIMARY KEY, backend text NOT NULL, sealed_password bytea NOT NULL, uid integer NOT NULL);' +
        'INSERT INTO sealed_accounts VALUES ' +
        [
          `('sealme', '${db.socket}', decode('${seal('sealed-secret')}', 'hex'), ${myUid})`,
          `('other', '${db.socket}', decode('${seal('other-secret')}', 'hex'), ${myUid + 4242})`,
          `('tamper', '${db.socket}', decode('${tampered.toString('hex')}', 'hex'), ${myUid})`,
        ].join(',') +
        ';',
    );
    proxy = await startProxy({
      name: 'sealed',
      config: () => EXAMPLE,
      listeners: 1,
      env: {
        MYPROXY_PG: `host='${pg.dir}' user=postgres dbname=postgres application_name=sealed-test`,
        MYPROXY_SOCKET: socket,
        MYPROXY_SEAL_PK: sodium.to_hex(keys.publicKey),
        MYPROXY_SEAL_SK: sodium.to_hex(keys.privateKey),
      },
    });
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([pg?.destroy(), db?.stop()]);
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  test('the row for our uid: any client password logs in as that user', async () => {
    assert.equal(await guard(login(socket, 'sealme', 'anything'), 'login'), 'sealme@%');
    assert.equal(await guard(login(socket, 'sealme', ''), 'login without password'), 'sealme@%');
  });

  test('a row for another uid is denied', async () => {
    const e = await guard(loginError(socket, 'other'), 'other uid');
    assert.equal(e.errno, 1045);
    assert.equal(e.sqlState, '28000');
    assert.match(e.message, /^Access denied for user 'other'/);
    const unknown = await guard(loginError(socket, 'nobody'), 'unknown user');
    assert.equal(unknown.errno, 1045);
  });

  test('a tampered sealed value gives credential error', async () => {
    const since = proxy!.logs().length;
    const e = await guard(loginError(socket, 'tamper'), 'tampered');
    assert.equal(e.message, 'credential error');
    await proxy!.waitForLog(/account "tamper": sealed_password does not open/, 5_000, since);
    assert.ok(proxy!.alive());
  });
});

describe('mysql_resolve() at runtime', () => {
  let proxy: Proxy | undefined;

  after(async () => {
    await proxy?.stop();
  });

  test('an unresolvable host name returns nil, message inside a callback', async () => {
    proxy = await startProxy({
      name: 'resolve',
      config: [
        'local handler = {}',
        'function handler.on_handshake_response(client, hr)',
        "  local a, err = mysql_resolve('no-such-host.invalid:3306')",
        "  return client:err('resolve: ' .. tostring(err))",
        'end',
        "mysql_listen('${dir}/proxy.sock', handler)",
        '',
      ].join('\n'),
    });
    const e = await guard(loginError(proxy.socket, 'anyone'), 'resolve failure');
    assert.match(e.message, /^resolve: cannot resolve/);
    assert.ok(proxy.alive());
  });
});
