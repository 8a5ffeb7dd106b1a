// The `pg` library through the real daemon, against a throwaway PostgreSQL 15 and MariaDB:
// routing logins by a PostgreSQL table (many at once), parameter and result conversions,
// errors, timeouts, a PostgreSQL outage, and LISTEN/NOTIFY (also across a restart).

import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { startMariaDB, type MariaDB } from '../helpers/mariadb.js';
import { havePostgres, startPostgres, type Postgres } from '../helpers/postgres.js';
import { guard, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
}

const USERS = 60;

describe('pg library', { skip: havePostgres() ? false : 'PostgreSQL 15 is not installed' }, () => {
  let pg: Postgres | undefined;
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;

  const login = async (sock: string, user: string): Promise<string> => {
    const c = await mysql.createConnection({
      socketPath: `${proxy!.dir}/${sock}`,
      user,
      password: 'ignored',
      enableCleartextPlugin: true,
    });
    try {
      const [rows] = await c.query('SELECT CURRENT_USER() AS u');
      return (rows as { u: string }[])[0]!.u;
    } finally {
      await c.end();
    }
  };
  /** The message of the ERR a login gets (fails the test if the login succeeds). */
  const loginError = async (sock: string, user: string): Promise<MysqlError> => {
    try {
      await login(sock, user);
    } catch (e) {
      return e as MysqlError;
    }
    assert.fail(`login as ${user} on ${sock} succeeded`);
  };

  before(async () => {
    [pg, db] = await Promise.all([startPostgres('pgtest'), startMariaDB({ name: 'pgtest' })]);
    const mariaUsers: string[] = [];
    const rows: string[] = [];
    for (let i = 0; i < USERS; i++) {
      mariaUsers.push(`CREATE OR REPLACE USER 'm${i}'@'%' IDENTIFIED BY 'pw${i}'`);
      rows.push(`('c${i}', '${db.socket}', 'm${i}', 'pw${i}')`);
    }
    await db.query(mariaUsers.join(';\n') + ';');
    await pg.query(
      `CREATE SCHEMA routing; CREATE TABLE routing.accounts (login text PRIMARY KEY, backend text, db_user text, db_password text);` +
        `INSERT INTO routing.accounts VALUES ${rows.join(',')};`,
    );
    const conninfo = JSON.stringify(`host='${pg.dir}' user=postgres dbname=postgres application_name=myproxy-test`);
    proxy = await startProxy({
      name: 'pgtest',
      config: (dir) => `
local db = pg:new(${conninfo}, 'routing')
local quick = pg:new(${conninfo}, nil, 0.5)

db:listen('events', function(payload) print('NOTIFY events: ' .. payload) end)
db:listen('boom', function(payload) error('handler failed on ' .. payload) end)

mysql_listen('${dir}/route.sock', {
  on_handshake_response = function(client, hr)
    local res, err = db:execute('SELECT backend, db_user, db_password FROM accounts WHERE login = $1', {hr.user})
    if not res then
      print('PGERR ' .. err)
      return client:err('lookup failed: ' .. err)
    end
    local row = res:fetch()
    if not row then return client:err('unknown user ' .. hr.user) end
    return client:connect(row.backend, {user = row.db_user, password = row.db_password})
  end,
})

local function one(conn, sql, params)
  local r, e = conn:execute(sql, params)
  if not r then return 'ERR:' .. tostring(e) end
  local row = r:fetch({}, 'n')
  if not row then return 'NOROW' end
  if row[1] == nil then return 'NULL' end
  return row[1]
end

mysql_listen('${dir}/selftest.sock', {
  on_handshake_response = function(client, hr)
    local out = {}
    local function add(v) out[#out + 1] = v end
    add(one(db, 'SELECT $1::text', {'h\\195\\169llo'}))
    add(one(db, 'SELECT ($1::text IS NULL)::text', table.pack(nil)))
    add(one(db, 'SELECT $1::boolean::text || $2::boolean::text', {true, false}))
    add(one(db, 'SELECT $1::int::text || $2::int::text', {2147483647, -2147483648}))
    add(one(db, 'SELECT ($1::bigint + 1)::text', {2^40}))
    add(one(db, 'SELECT $1::bigint::text', {'9223372036854775807'}))
    add(one(db, 'SELECT $1::float8::text', {0.1}))
    add(one(db, 'SELECT $1::text', {1.5}))
    add(one(db, "SELECT encode($1::bytea, 'hex')", {'\\0\\255\\1'}))
    add(one(db, "SELECT coalesce($1::text, 'x') || coalesce($2::text, 'y') || $3::text", {nil, nil, 'z'}))
    add(one(db, 'SELEC 1'))
    local r = db:execute("SELECT 1 AS a, NULL::text AS b UNION ALL SELECT 2, 'x' ORDER BY 1")
    add(tostring(r:numrows()) .. ',' .. table.concat(r:getcolnames(), ','))
    local row = r:fetch()
    add(row.a .. ',' .. tostring(row.b))
    local row2 = r:fetch(nil, 'n')
    add(row2[1] .. ',' .. row2[2])
    add(tostring(r:fetch() == nil) .. ',' .. select('#', r:fetch()))
    add(tostring(select(2, pcall(r.fetch, r, nil, 'x'))):match('Bad mode') or 'no Bad mode')
    add(tostring(select(2, pcall(db.execute, db, 'SELECT $1', {{}}))):match('Unsupported query parameter type: table') or 'no type error')
    local t = pg:decode_array(one(db, [[SELECT ARRAY['a"b', NULL, '', 'x,y', 'NULL', 'back\\slash', '{}']::text[]::text]]))
    add(t[1] .. '|' .. tostring(t[2]) .. '|[' .. t[3] .. ']|' .. t[4] .. '|' .. t[5] .. '|' .. t[6] .. '|' .. t[7])
    add(one(db, 'SELECT array_length($1::text[], 1)::text || (($1::text[])[2] IS NULL)::text || ($1::text[])[3]',
      {pg:encode_array({'a"\\\\', nil, 'c,}'})}))
    add(one(db, 'SELECT current_schema()'))
    add(one(quick, 'SELECT pg_sleep(5)::text'))
    add(one(quick, "SELECT 'after timeout'"))
    return client:err('SELFTEST ' .. table.concat(out, ' ; '))
  end,
})

mysql_listen('${dir}/plain.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(${JSON.stringify(db!.socket)}, {user = 'm0', password = 'pw0'})
  end,
})
`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([pg?.destroy(), db?.stop()]);
  });

  test('parameters and results convert as documented', async () => {
    const e = await guard(loginError('selftest.sock', 'x'), 'selftest');
    const m = /SELFTEST (.*)$/s.exec(e.message);
    assert.ok(m, e.message);
    assert.deepEqual(m[1]!.split(' ; '), [
      'héllo',
      'true',
      'truefalse',
      '2147483647-2147483648',
      '1099511627777',
      '9223372036854775807',
      '0.1',
      '1.5',
      '00ff01',
      'xyz',
      'ERR:syntax error at or near "SELEC"',
      '2,a,b',
      '1,nil',
      '2,x',
      'true,0',
      'Bad mode',
      'Unsupported query parameter type: table',
      'a"b|nil|[]|x,y|NULL|back\\slash|{}',
      '3truec,}',
      'routing',
      'ERR:timeout',
      'after timeout',
    ]);
  });

  test(`${USERS} concurrent logins are routed by the PostgreSQL table`, async () => {
    const results = await guard(
      Promise.all(Array.from({ length: USERS }, (_, i) => login('route.sock', `c${i}`))),
      'concurrent logins',
      60_000,
    );
    results.forEach((u, i) => assert.equal(u, `m${i}@%`));
    const e = await loginError('route.sock', 'nobody');
    assert.match(e.message, /unknown user nobody/);
  });

  test('LISTEN/NOTIFY runs the handler with the payload', async () => {
    await proxy!.waitForLog(/pg: listening for notifications on events, boom/, 20_000);
    const since = proxy!.logs().length;
    await pg!.query(`NOTIFY boom, 'x1'; NOTIFY events, 'hello-1'`);
    await proxy!.waitForLog(/NOTIFY events: hello-1/, 10_000, since);
    await proxy!.waitForLog(/handler failed on x1/, 10_000, since);
  });

  test('PostgreSQL outage: clean ERR, daemon keeps serving, recovers afterwards (LISTEN too)', async () => {
    await pg!.stop();
    const since = proxy!.logs().length;
    const e = await guard(loginError('route.sock', 'c1'), 'login during outage');
    assert.match(e.message, /^lookup failed: /);
    assert.equal(e.errno, 1043);
    await proxy!.waitForLog(/PGERR /, 5_000, since);
    assert.equal(await login('plain.sock', 'any'), 'm0@%');
    assert.ok(proxy!.alive());

    const sinceStart = proxy!.logs().length;
    await pg!.start();
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        assert.equal(await login('route.sock', 'c2'), 'm2@%');
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const all = await guard(
      Promise.all(Array.from({ length: 10 }, (_, i) => login('route.sock', `c${i}`))),
      'logins after restart',
    );
    all.forEach((u, i) => assert.equal(u, `m${i}@%`));

    await proxy!.waitForLog(/pg: listening for notifications on events, boom/, 40_000, sinceStart);
    const sinceNotify = proxy!.logs().length;
    await pg!.query(`NOTIFY events, 'hello-2'`);
    await proxy!.waitForLog(/NOTIFY events: hello-2/, 10_000, sinceNotify);
  });
});
