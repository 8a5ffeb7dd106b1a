// mysql_listen() on TCP: '127.0.0.1:PORT', '[::1]:PORT' and '*:PORT' listeners serve real clients,
// whose client.address is their "ip:port" and whose pid/uid/gid are nil; the rule that tells a TCP
// address from a socket path; bad TCP addresses are configuration errors naming the line.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { runCommand, runProxy, startProxy, type Proxy } from '../helpers/proxy.js';
import { tcpListenAddress } from '../../src/bindings/listen.js';

function cliTcp(host: string, port: number, sql: string) {
  return runCommand('mariadb', [
    '--no-defaults',
    '--protocol=tcp',
    '-h',
    host,
    '-P',
    String(port),
    '-u',
    USERS.native.user,
    `-p${USERS.native.password}`,
    '--batch',
    '--skip-column-names',
    '-e',
    sql,
  ]);
}

describe('mysql_listen() on TCP', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let v4 = 0;
  let v6 = 0;
  let any = 0;
  let storedHash = '';

  before(async () => {
    db = await startMariaDB({ name: 'tcp-listen' });
    await createTestUsers(db);
    storedHash = (await db.query(`SELECT authentication_string FROM mysql.user WHERE user = 'native'`)).trim();
    [v4, v6, any] = [await freeTcpPort(), await freeTcpPort(), await freeTcpPort()];
    proxy = await startProxy({
      name: 'tcp-listen',
      config: (dir) => `
local handler = {
  on_handshake_response = function(client, hr)
    print(string.format('PEER address=%s pid=%s uid=%s listener=%s password=%s', tostring(client.address),
      tostring(client.pid), tostring(client.uid), client.listener, hr.password and 'clear' or 'nil'))
    if hr.password == nil then
      -- Plain TCP: the daemon asked for no clear-text password, only a mysql_native_password answer.
      local verified = client:verify_native_password(${JSON.stringify(storedHash)})
      if not verified then return client:deny() end
      return client:connect(${JSON.stringify(db!.socket)}, {user = hr.user, password_sha1 = verified})
    end
    return client:connect(${JSON.stringify(db!.socket)}, hr)
  end,
}
mysql_listen('127.0.0.1:${v4}', handler)
mysql_listen('[::1]:${v6}', handler)
mysql_listen('*:${any}', handler)
mysql_listen('${dir}/proxy.sock', handler)`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  test('the mariadb CLI over IPv4: client.address is ip:port, pid and uid are nil', async () => {
    const r = await cliTcp('127.0.0.1', v4, 'SELECT 1 + 1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '2\n');
    await proxy!.waitForLog(
      new RegExp(`PEER address=127\\.0\\.0\\.1:\\d+ pid=nil uid=nil listener=127\\.0\\.0\\.1:${v4} password=nil`),
    );
    assert.match(proxy!.logs(), new RegExp(`listening on 127\\.0\\.0\\.1:${v4}`));
  });

  test('over IPv6 loopback, and on the wildcard through both families; client.listener as written', async () => {
    const r6 = await cliTcp('::1', v6, 'SELECT 6');
    assert.equal(r6.stdout, '6\n', r6.stderr);
    await proxy!.waitForLog(new RegExp(`PEER address=\\[::1\\]:\\d+ pid=nil uid=nil listener=\\[::1\\]:${v6} `));
    const a4 = await cliTcp('127.0.0.1', any, 'SELECT 4');
    assert.equal(a4.stdout, '4\n', a4.stderr);
    const a6 = await cliTcp('::1', any, 'SELECT 16');
    assert.equal(a6.stdout, '16\n', a6.stderr);
    await proxy!.waitForLog(new RegExp(`listener=\\*:${any} `));
  });

  test('plain TCP never asks for a clear-text password: a wrong one is refused by the native check', async () => {
    const r = await runCommand('mariadb', [
      '--no-defaults',
      '--protocol=tcp',
      '-h',
      '127.0.0.1',
      '-P',
      String(v4),
      '-u',
      'native',
      '-pwrong',
      '-e',
      'SELECT 1',
    ]);
    assert.match(r.stderr, /ERROR 1045/);
  });

  test('the rule: HOST:PORT with * or a numeric address is TCP, anything else a path', () => {
    assert.deepEqual(tcpListenAddress('127.0.0.1:3307'), { kind: 'tcp', host: '127.0.0.1', port: 3307 });
    assert.deepEqual(tcpListenAddress('[::1]:3306'), { kind: 'tcp', host: '::1', port: 3306 });
    assert.deepEqual(tcpListenAddress('*:3306'), { kind: 'tcp', host: '', port: 3306 });
    for (const path of ['myproxy.sock', '/run/x.sock', './127.0.0.1:3306', '@name', 'db.example:3306', '*', '3306']) {
      assert.equal(tcpListenAddress(path), null, path);
    }
    assert.throws(() => tcpListenAddress('999.1.1.1:3306'));
    assert.throws(() => tcpListenAddress('127.0.0.1:99999'));
  });

  for (const [address, message] of [
    ['999.1.1.1:3306', 'Failed to listen on 999.1.1.1:3306'],
    ['127.0.0.1:70000', 'Failed to listen on 127.0.0.1:70000'],
  ] as const) {
    test(`a bad TCP address is a configuration error: ${address}`, async () => {
      const r = await runProxy([], {
        name: 'tcp-bad',
        config: `local h = {on_handshake_response = function() end}\nmysql_listen('${address}', h)\n`,
      });
      assert.equal(r.code, 78, r.stderr);
      assert.ok(r.stderr.includes(`${r.configPath}:2: ${message}`), r.stderr);
    });
  }
});
