// examples/pg-routing.lua against a throwaway PostgreSQL 15 and two MariaDB instances: logins
// are routed by the `accounts` table (200 at once, each landing on its own server as its own
// user), unknown users are denied, and a PostgreSQL outage gives a clean ERR while the daemon
// keeps running and recovers once PostgreSQL is back.

import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { startMariaDB, type MariaDB } from '../helpers/mariadb.js';
import { havePostgres, startPostgres, type Postgres } from '../helpers/postgres.js';
import { guard, REPO_ROOT, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
}

const ACCOUNTS = 100;
const EXAMPLE = fs.readFileSync(path.join(REPO_ROOT, 'examples', 'pg-routing.lua'), 'utf8');

describe('examples/pg-routing.lua', { skip: havePostgres() ? false : 'PostgreSQL 15 is not installed' }, () => {
  let pg: Postgres | undefined;
  const dbs: MariaDB[] = [];
  let proxy: Proxy | undefined;
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir().length > 60 ? '/tmp' : os.tmpdir(), 'myproxy-pgroute-sock-'));
  const socket = path.join(sockDir, 'proxy.sock');

  /** The MariaDB instance account `i` lives on. */
  const home = (i: number): MariaDB => dbs[i % 2]!;

  const login = async (user: string, password = 'typed-by-client'): Promise<{ u: string; s: string }> => {
    const c = await mysql.createConnection({ socketPath: socket, user, password, enableCleartextPlugin: true });
    try {
      const [rows] = await c.query('SELECT CURRENT_USER() AS u, @@socket AS s');
      return (rows as { u: string; s: string }[])[0]!;
    } finally {
      await c.end();
    }
  };
  const loginError = async (user: string): Promise<MysqlError> => {
    try {
      await login(user);
    } catch (e) {
      return e as MysqlError;
    }
    assert.fail(`login as ${user} succeeded`);
  };

  before(async () => {
    const [p, a, b] = await Promise.all([
      startPostgres('pgroute'),
      startMariaDB({ name: 'pgroute-a' }),
      startMariaDB({ name: 'pgroute-b' }),
    ]);
    pg = p;
    dbs.push(a, b);
    const perDb: string[][] = [[], []];
    const rows: string[] = [];
    for (let i = 0; i < ACCOUNTS; i++) {
      perDb[i % 2]!.push(`CREATE OR REPLACE USER 'acct${i}'@'%' IDENTIFIED BY 'pw-${i}'`);
      rows.push(
        `('acct${i}', '${home(i).socket}', decode('${createHash('sha1').update(`pw-${i}`).digest('hex')}', 'hex'))`,
      );
    }
    await Promise.all(dbs.map((db, k) => db.query(perDb[k]!.join(';\n') + ';')));
    await pg.query(
      'CREATE TABLE accounts (username text PRIMARY KEY, backend text NOT NULL, password_sha1 bytea NOT NULL);' +
        `INSERT INTO accounts VALUES ${rows.join(',')};`,
    );
    proxy = await startProxy({
      name: 'pgroute',
      config: () => EXAMPLE,
      listeners: 1,
      env: {
        MYPROXY_PG: `host='${pg.dir}' user=postgres dbname=postgres application_name=pg-routing-test`,
        MYPROXY_SOCKET: socket,
      },
    });
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([pg?.destroy(), ...dbs.map((db) => db.stop())]);
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  test('200 concurrent logins land on the right MariaDB as the right user', async () => {
    const users = Array.from({ length: 2 * ACCOUNTS }, (_, k) => k % ACCOUNTS);
    const results = await guard(Promise.all(users.map((i) => login(`acct${i}`))), '200 logins', 40_000);
    results.forEach((r, k) => {
      const i = users[k]!;
      assert.equal(r.u, `acct${i}@%`);
      assert.equal(r.s, home(i).socket, `acct${i} landed on the wrong server`);
    });
    assert.match(proxy!.logs(), /"acct\d+"\]/);
  });

  test('an unknown user is denied', async () => {
    const e = await guard(loginError('nobody'), 'unknown user');
    assert.equal(e.errno, 1045);
    assert.equal(e.sqlState, '28000');
    assert.match(e.message, /^Access denied for user 'nobody'/);
  });

  test('PostgreSQL outage: clean ERR, daemon keeps running, logins work again afterwards', async () => {
    await pg!.stop();
    const since = proxy!.logs().length;
    for (const user of ['acct1', 'acct2']) {
      const e = await guard(loginError(user), `login as ${user} during outage`);
      assert.equal(e.message, 'account lookup failed');
      assert.equal(e.errno, 1043);
    }
    await proxy!.waitForLog(/account lookup for "acct1" failed: \S/, 5_000, since);
    assert.ok(proxy!.alive());

    await pg!.start();
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const r = await login('acct3');
        assert.equal(r.u, 'acct3@%');
        assert.equal(r.s, home(3).socket);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const again = await guard(
      Promise.all(Array.from({ length: 10 }, (_, i) => login(`acct${i}`))),
      'logins after restart',
    );
    again.forEach((r, i) => {
      assert.equal(r.u, `acct${i}@%`);
      assert.equal(r.s, home(i).socket);
    });
    assert.ok(proxy!.alive());
  });
});
