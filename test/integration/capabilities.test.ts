// Capability transparency (issue 11 §4): what client and server share passes through the proxy,
// MariaDB's extended capabilities included, and the client's connect attributes reach the server.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';

const { user, password } = USERS.native;

/** `mariadb --column-type-info` of a query over `socket`. */
async function typeInfo(socket: string, sql: string): Promise<string> {
  // Not --batch: the CLI prints type information only in table mode.
  const r = await runCommand('mariadb', [
    '--no-defaults',
    '-S',
    socket,
    '-u',
    user,
    `-p${password}`,
    '--table',
    '--column-type-info',
    'captest',
    '-e',
    sql,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe('capabilities and connect attributes', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    db = await startMariaDB({ name: 'caps', extraArgs: ['--performance-schema=ON'] });
    await createTestUsers(db);
    await db.query(`
CREATE DATABASE captest;
CREATE TABLE captest.t (j JSON, a INET6, u UUID, n INT);
INSERT INTO captest.t VALUES ('{"k": 1}', '::1', '123e4567-e89b-12d3-a456-426655440000', 7);
GRANT SELECT ON captest.* TO 'native'@'%';
GRANT SELECT ON performance_schema.* TO 'native'@'%';`);
    proxy = await startProxy({
      name: 'caps',
      config: (dir) => `
local backend = mysql_resolve('${db!.socket}')
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    return client:connect(backend, hr)
  end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  test('the startup probe learned the server greeting', () => {
    assert.match(
      proxy!.logs(),
      /server .*: version="5\.5\.5-10\.\d+\.\d+-MariaDB[^"]*" capabilities=0x[0-9a-f]+ extended=0x1[0-9a-f]/,
    );
  });

  test('mariadb --column-type-info: the same metadata through the proxy as directly (JSON, INET6, UUID)', async () => {
    const sql = 'SELECT j, a, u, n FROM t';
    const direct = await typeInfo(db!.socket, sql);
    const proxied = await typeInfo(proxy!.socket, sql);
    // The extended type metadata is there (MARIADB_CLIENT_EXTENDED_METADATA passed through) ...
    assert.match(direct, /Type: +BLOB \(format=json\)/);
    assert.match(direct, /Type: +STRING \(type=inet6\)/);
    assert.match(direct, /Type: +STRING \(type=uuid\)/);
    // ... and identical through the proxy.
    assert.equal(proxied, direct);
  });

  test('connect attributes reach the server (performance_schema.session_connect_attrs)', async () => {
    const sql =
      "SELECT ATTR_NAME, ATTR_VALUE FROM performance_schema.session_connect_attrs WHERE PROCESSLIST_ID = CONNECTION_ID() AND ATTR_NAME IN ('_client_name', 'program_name') ORDER BY ATTR_NAME";
    const direct = await mariadbCli(db!.socket, user, password, sql);
    const proxied = await mariadbCli(proxy!.socket, user, password, sql);
    assert.equal(direct.code, 0, direct.stderr);
    assert.equal(proxied.code, 0, proxied.stderr);
    assert.match(proxied.stdout, /^_client_name\tlibmariadb\nprogram_name\tmysql\n$/);
    assert.equal(proxied.stdout, direct.stdout);

    // mysql2 sends its own attributes, among them one of the application's.
    const c = await mysql.createConnection({
      socketPath: proxy!.socket,
      user,
      password,
      enableCleartextPlugin: true,
      connectAttributes: { app_name: 'captest' },
    });
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>(
        "SELECT ATTR_VALUE AS v FROM performance_schema.session_connect_attrs WHERE PROCESSLIST_ID = CONNECTION_ID() AND ATTR_NAME = 'app_name'",
      );
      assert.deepEqual(
        rows.map((r) => r['v'] as string),
        ['captest'],
      );
    } finally {
      await c.end();
    }
  });
});
