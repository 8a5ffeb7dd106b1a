// Backends over TCP: IPv4 and IPv6 literals, and a host name resolved at startup.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';

describe('TCP backends', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    // Both loopback addresses (MariaDB 10.11 takes a list).
    db = await startMariaDB({ name: 'tcp', tcpPort: 0, extraArgs: ['--bind-address=127.0.0.1,::1'] });
    await createTestUsers(db);
    const port = db.tcpPort!;
    proxy = await startProxy({
      name: 'tcp',
      config: (dir) => `
local by_name = mysql_resolve('localhost:${port}') -- a host name: resolved after the config ran
local v6 = mysql_resolve('[::1]:${port}')
local targets = { v4 = '127.0.0.1:${port}', v6 = v6, name = by_name }
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    print('addresses: ' .. tostring(v6) .. ' ' .. tostring(by_name))
    local target = targets[hr.database]
    hr.database = nil
    return client:connect(target, hr)
  end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  for (const via of ['v4', 'v6', 'name'] as const) {
    test(`login and queries through ${via}`, async () => {
      const c = await mysql.createConnection({
        socketPath: proxy!.socket,
        user: USERS.native.user,
        password: USERS.native.password,
        database: via, // used by the config above to pick the address
        enableCleartextPlugin: true,
      });
      try {
        const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT @@port AS port, USER() AS u');
        assert.equal(rows[0]!['port'], db!.tcpPort);
        // A TCP session: the server sees a network peer, not localhost over the socket.
        assert.match(
          String(rows[0]!['u']),
          via === 'v6' ? /^native@(::1|localhost)$/ : /^native@(127\.0\.0\.1|localhost)$/,
        );
      } finally {
        await c.end();
      }
    });
  }

  test('tostring() shows the address a host name resolved to', () => {
    assert.match(
      proxy!.logs(),
      new RegExp(`addresses: \\[::1\\]:${db!.tcpPort!} (127\\.0\\.0\\.1|\\[::1\\]):${db!.tcpPort!}`),
    );
  });
});
