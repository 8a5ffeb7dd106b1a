// TLS to backends (issue 11 §3): a real MariaDB that requires secure transport, reached through
// mysql_resolve(addr, {tls = ...}); verified login, wrong CA and wrong host name, and monitoring.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runProxy, startProxy, type Proxy } from '../helpers/proxy.js';
import { makeTestCertificates, type TestCertificates } from '../helpers/tls-certs.js';

const { user, password } = USERS.native;

describe('TLS to backends', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let certs: TestCertificates | undefined;
  let tmp = '';

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'btls-'));
    certs = makeTestCertificates(tmp);
    db = await startMariaDB({
      name: 'btls',
      tcpPort: 0,
      extraArgs: [
        '--bind-address=127.0.0.1,::1',
        `--ssl-ca=${certs.caCert}`,
        `--ssl-cert=${certs.localhostOnlyCert}`,
        `--ssl-key=${certs.localhostOnlyKey}`,
        '--require-secure-transport=ON',
      ],
    });
    await createTestUsers(db);
    const port = db.tcpPort!;
    const c = certs;
    proxy = await startProxy({
      name: 'btls',
      config: (dir) => `
local function via(backend)
  return { on_handshake_response = function(client, hr) return client:connect(backend, hr) end }
end
mysql_listen('${dir}/verified.sock', via(mysql_resolve('localhost:${port}', { tls = { ca = '${c.caCert}', verify = 'full' } })))
mysql_listen('${dir}/wrongca.sock', via(mysql_resolve('localhost:${port}', { tls = { ca = '${c.otherCaCert}' } })))
mysql_listen('${dir}/wrongname.sock', via(mysql_resolve('127.0.0.1:${port}', { tls = { ca = '${c.caCert}', verify = 'full' } })))
mysql_listen('${dir}/caonly.sock', via(mysql_resolve('127.0.0.1:${port}', { tls = { ca = '${c.caCert}', verify = 'ca' } })))
mysql_listen('${dir}/plain.sock', via('127.0.0.1:${port}'))
local cluster = mysql_cluster({ mysql_resolve('localhost:${port}', { tls = { ca = '${c.caCert}' } }) },
  { monitoring = true, user = '${user}', password = '${password}', check_interval = 0.2 })
mysql_listen('${dir}/cluster.sock', via(cluster))
`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
    if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true });
  });

  const sock = (name: string): string => path.join(proxy!.dir, `${name}.sock`);

  test('verified TLS login (CA and host name), queries inside TLS through the JS relay', async () => {
    const r = await mariadbCli(sock('verified'), user, password, "SHOW STATUS LIKE 'Ssl_version'");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Ssl_version\tTLSv1\.[23]\n$/);
    const c = await mysql.createConnection({
      socketPath: sock('verified'),
      user,
      password,
      enableCleartextPlugin: true,
    });
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT REPEAT(?, 100000) AS big, 1 + 1 AS two', ['x']);
      assert.equal((rows[0]!['big'] as string).length, 100000);
      assert.equal(rows[0]!['two'], 2);
    } finally {
      await c.end();
    }
    assert.match(proxy!.logs(), /TLS to 127\.0\.0\.1:\d+: TLSv1\.[23] /);
  });

  test('verify = ca: the chain is checked, not the name', async () => {
    const r = await mariadbCli(sock('caonly'), user, password, 'SELECT 1');
    assert.equal(r.code, 0, r.stderr);
  });

  test('wrong CA: 1043 (08S01) for the client, the cause in the log', async () => {
    const r = await mariadbCli(sock('wrongca'), user, password, 'SELECT 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ERROR 1043 \(08S01\).*Connection error/);
    await proxy!.waitForLog(/TLS handshake with the server failed: .*(self[- ]signed|unable to (get|verify))/i, 5000);
  });

  test('wrong host name: 1043 (08S01) for the client, the cause in the log', async () => {
    const r = await mariadbCli(sock('wrongname'), user, password, 'SELECT 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ERROR 1043 \(08S01\).*Connection error/);
    await proxy!.waitForLog(/TLS handshake with the server failed: .*(Hostname|IP).*does not match/i, 5000);
  });

  test('without TLS the server refuses (require_secure_transport): the test is real', async () => {
    const r = await mariadbCli(sock('plain'), user, password, 'SELECT 1');
    assert.notEqual(r.code, 0);
    // MariaDB 10.11 answers a login over plain TCP under require_secure_transport with 1045.
    assert.match(r.stderr, /ERROR (1045|3159)/);
  });

  test('a TLS cluster node: monitoring logs in inside TLS, sessions reach it', async () => {
    const r = await mariadbCli(sock('cluster'), user, password, "SHOW STATUS LIKE 'Ssl_cipher'");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Ssl_cipher\t\S+\n$/);
    // The check logs in with the cluster's user: over plain TCP that would be refused (3159).
    await proxy!.waitForLog(/node 127\.0\.0\.1:\d+: unknown -> alive \(ok\)/, 5000);
    assert.doesNotMatch(proxy!.logs(), /auth_failed/);
  });
});

describe('mysql_resolve options are checked at startup', () => {
  const bad: [string, RegExp][] = [
    [
      `mysql_resolve('10.0.0.1', { tls = { ca = '/nonexistent/ca.pem' } })`,
      /cannot read tls\.ca "\/nonexistent\/ca\.pem": ENOENT/,
    ],
    [`mysql_resolve('10.0.0.1', { tls = { verify = 'maybe' } })`, /tls\.verify must be 'full', 'ca' or 'none'/],
    [`mysql_resolve('10.0.0.1', { tls = { cert = '/etc/hostname' } })`, /tls\.cert and tls\.key go together/],
    [`mysql_resolve('/run/x.sock', { tls = {} })`, /tls is for TCP addresses/],
    [`mysql_resolve('10.0.0.1', { tsl = {} })`, /Unknown option 'tsl'/],
    [`mysql_resolve('10.0.0.1', { get_server_public_key = 'yes' })`, /get_server_public_key must be a boolean/],
  ];
  for (const [call, re] of bad) {
    test(call, async () => {
      const config = `\n${call} -- MARK\nmysql_listen('\${dir}/p.sock', { on_handshake_response = function() end })\n`;
      const r = await runProxy(['--check'], { config, name: 'resolveopt' });
      assert.equal(r.code, 78, r.stderr);
      assert.match(r.stderr, /config\.lua:2:/);
      assert.match(r.stderr, re);
    });
  }
});
