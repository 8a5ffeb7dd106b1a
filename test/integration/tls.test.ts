// Client TLS termination on TCP listeners: real clients (mariadb CLI, mysql2, PyMySQL, PHP mysqli)
// through `mysql_listen(addr, handler, {tls = ...})`; CLIENT_SSL only where TLS is configured; the
// sequence ids around the SSLRequest; 3159 for plain clients under require; client.tls and client
// certificates; certificates read again on SIGHUP without dropping sessions; the rule that no
// clear-text password is asked for over plain TCP; bad files at startup (exit 78).
import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { runCommand, runProxy, startProxy, type Proxy } from '../helpers/proxy.js';
import { makeTestCertificates, type TestCertificates } from '../helpers/tls-certs.js';
import { PacketChannel } from '../../src/net/packet-channel.js';
import { AuthPluginName, Capability } from '../../src/protocol/constants.js';
import { parseHandshakeV10, type HandshakeV10 } from '../../src/protocol/packets/handshake.js';
import { writeHandshakeResponse41 } from '../../src/protocol/packets/handshake-response.js';
import { parseErr } from '../../src/protocol/packets/generic.js';
import { framePayload } from '../../src/protocol/writer.js';
import { BASIC_CAPABILITIES } from '../helpers/wire.js';

const NATIVE_HASH = '';

function cli(port: number, args: string[], sql = 'SELECT CONNECTION_ID() > 0') {
  return runCommand('mariadb', [
    '--no-defaults',
    '--protocol=tcp',
    '-h',
    '127.0.0.1',
    '-P',
    String(port),
    '-u',
    USERS.native.user,
    `-p${USERS.native.password}`,
    '--batch',
    '--skip-column-names',
    ...args,
    '-e',
    sql,
  ]);
}

/** A TCP client that reads the greeting and, if asked, switches to TLS the way clients do. */
async function rawGreeting(
  port: number,
): Promise<{ socket: net.Socket; channel: PacketChannel; greeting: HandshakeV10 }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const channel = new PacketChannel(socket, 1 << 24);
  const p = await channel.next(5000);
  assert.equal(p.seq, 0);
  return { socket, channel, greeting: parseHandshakeV10(p.payload) };
}

function sslRequest(seq: number): Buffer {
  const payload = Buffer.alloc(32);
  payload.writeUInt32LE((BASIC_CAPABILITIES | Capability.CLIENT_SSL) >>> 0, 0);
  payload.writeUInt32LE(1 << 24, 4);
  payload[8] = 0x21;
  return framePayload(payload, seq);
}

describe('client TLS termination', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let certs: TestCertificates;
  let certDir = '';
  let tlsPort = 0;
  let requirePort = 0;
  let mtlsPort = 0;
  let plainPort = 0;
  let storedHash = NATIVE_HASH;

  before(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'myproxy-certs-'));
    certs = makeTestCertificates(certDir);
    // The listener reads copies, so the reload test can replace them.
    copyFileSync(certs.serverCert, join(certDir, 'live.pem'));
    copyFileSync(certs.serverKey, join(certDir, 'live.key'));
    db = await startMariaDB({ name: 'tls' });
    await createTestUsers(db);
    storedHash = (await db.query(`SELECT authentication_string FROM mysql.user WHERE user = 'native'`)).trim();
    [tlsPort, requirePort, mtlsPort, plainPort] = [
      await freeTcpPort(),
      await freeTcpPort(),
      await freeTcpPort(),
      await freeTcpPort(),
    ];
    const live = { cert: join(certDir, 'live.pem'), key: join(certDir, 'live.key') };
    proxy = await startProxy({
      name: 'tls',
      config: (dir) => `
local backend = ${JSON.stringify(db!.socket)}
local handler = {
  on_handshake_response = function(client, hr)
    local t = client.tls
    local cert = t and t.peer_certificate
    print(string.format('LOGIN listener=%s tls=%s cipher=%s password=%s cert=%s issuer=%s fp=%s not_after=%s',
      client.listener, t and t.version or 'nil', t and t.cipher or 'nil', hr.password and 'clear' or 'nil',
      cert and cert.subject or 'nil', cert and cert.issuer or 'nil', cert and cert.fingerprint_sha256 or 'nil',
      cert and cert.not_after or 'nil'))
    if hr.password == nil then
      -- A plain TCP client: no clear password, only the mysql_native_password answer.
      local verified = client:verify_native_password(${JSON.stringify(storedHash)})
      if not verified then return client:deny() end
      return client:connect(backend, {user = hr.user, password_sha1 = verified, database = hr.database})
    end
    return client:connect(backend, hr)
  end,
}
mysql_listen('127.0.0.1:${tlsPort}', handler, {tls = {cert = ${JSON.stringify(live.cert)}, key = ${JSON.stringify(live.key)}}})
mysql_listen('127.0.0.1:${requirePort}', handler, {tls = {cert = ${JSON.stringify(certs.serverCert)}, key = ${JSON.stringify(certs.serverKey)}, require = true}})
mysql_listen('127.0.0.1:${mtlsPort}', handler, {tls = {cert = ${JSON.stringify(certs.serverCert)}, key = ${JSON.stringify(certs.serverKey)}, ca = ${JSON.stringify(certs.caCert)}}})
mysql_listen('127.0.0.1:${plainPort}', handler)
mysql_listen('${dir}/proxy.sock', handler)`,
    });
  });

  after(async () => {
    if (process.env['TLS_TEST_LOGS'] !== undefined) process.stderr.write(proxy?.logs() ?? '');
    await proxy?.stop();
    await db?.stop();
    rmSync(certDir, { recursive: true, force: true });
  });

  test('the greeting offers CLIENT_SSL only where TLS is configured, and over TCP names mysql_native_password', async () => {
    for (const [port, ssl] of [
      [tlsPort, true],
      [plainPort, false],
    ] as const) {
      const { socket, greeting } = await rawGreeting(port);
      assert.equal((greeting.capabilities & Capability.CLIENT_SSL) !== 0, ssl, `port ${port}`);
      assert.equal(greeting.authPluginName, AuthPluginName.NATIVE_PASSWORD);
      socket.destroy();
    }
  });

  test('the mariadb CLI with --ssl-ca: TLS, the clear password inside it, client.tls and client.listener', async () => {
    const r = await cli(
      tlsPort,
      ['--ssl', `--ssl-ca=${certs.caCert}`, '--ssl-verify-server-cert'],
      "SHOW STATUS LIKE 'Ssl_version'",
    );
    assert.equal(r.code, 0, r.stderr);
    await proxy!.waitForLog(
      new RegExp(`LOGIN listener=127\\.0\\.0\\.1:${tlsPort} tls=TLSv1\\.[23] cipher=TLS_\\S+ password=clear cert=nil`),
    );
  });

  test('SSLRequest, TLS, HandshakeResponse: the sequence ids go on (1, then 2, the answer 3)', async () => {
    const { socket, channel } = await rawGreeting(tlsPort);
    socket.write(sslRequest(1));
    const leftover = channel.detach();
    assert.equal(leftover, null);
    const secure = tls.connect({ socket, ca: readFileSync(certs.caCert), servername: 'localhost' });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const inner = new PacketChannel(secure, 1 << 24);
    // Answering with mysql_native_password (as the greeting asked): the daemon switches to clear text.
    secure.write(
      writeHandshakeResponse41(
        {
          capabilities: (BASIC_CAPABILITIES | Capability.CLIENT_SSL) >>> 0,
          maxPacketSize: 1 << 24,
          characterSet: 0x21,
          user: Buffer.from('native'),
          authResponse: Buffer.alloc(20, 1),
          database: Buffer.alloc(0),
          authPluginName: AuthPluginName.NATIVE_PASSWORD,
        },
        2,
      ),
    );
    const sw = await inner.next(5000);
    assert.equal(sw.seq, 3);
    assert.equal(sw.payload[0], 0xfe, 'AuthSwitchRequest');
    assert.ok(sw.payload.includes(Buffer.from(AuthPluginName.CLEAR_PASSWORD)));
    secure.write(framePayload(Buffer.from('nativepw\0'), 4));
    const ok = await inner.next(10_000);
    assert.equal(ok.seq, 5);
    assert.equal(ok.payload[0], 0x00, 'OK');
    secure.destroy();
  });

  test("require = true: a plain client gets 3159 with MySQL's text; a TLS client is served", async () => {
    const plain = await cli(requirePort, ['--skip-ssl']);
    assert.notEqual(plain.code, 0);
    assert.match(
      plain.stderr,
      /ERROR 3159 \(HY000\).*Connections using insecure transport are prohibited while --require_secure_transport=ON\./,
    );
    const secure = await cli(requirePort, ['--ssl', `--ssl-ca=${certs.caCert}`]);
    assert.equal(secure.code, 0, secure.stderr);
  });

  test('plain TCP: no clear-text password is asked for; policy gets the native answer (verify_native_password)', async () => {
    const r = await cli(plainPort, ['--skip-ssl']);
    assert.equal(r.code, 0, r.stderr);
    await proxy!.waitForLog(new RegExp(`LOGIN listener=127\\.0\\.0\\.1:${plainPort} tls=nil cipher=nil password=nil`));
    // A wrong password is refused by the check, not forwarded.
    const bad = await runCommand('mariadb', [
      '--no-defaults',
      '--protocol=tcp',
      '-h',
      '127.0.0.1',
      '-P',
      String(plainPort),
      '-u',
      'native',
      '-pwrong',
      '-e',
      'SELECT 1',
    ]);
    assert.match(bad.stderr, /ERROR 1045/);
  });

  test('a Unix socket client still gets mysql_clear_password, and client.listener is the path', async () => {
    const r = await runCommand('mariadb', [
      '--no-defaults',
      '-S',
      proxy!.socket,
      '-u',
      USERS.native.user,
      `-p${USERS.native.password}`,
      '-e',
      'SELECT 1',
    ]);
    assert.equal(r.code, 0, r.stderr);
    await proxy!.waitForLog(
      new RegExp(
        `LOGIN listener=${proxy!.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/proxy\\.sock tls=nil cipher=nil password=clear`,
      ),
    );
  });

  test('client certificates: subject, issuer, fingerprint and expiry reach Lua; one from an unknown CA is refused', async () => {
    const r = await cli(mtlsPort, [
      '--ssl',
      `--ssl-ca=${certs.caCert}`,
      `--ssl-cert=${certs.clientCert}`,
      `--ssl-key=${certs.clientKey}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const x = new X509Certificate(readFileSync(certs.clientCert));
    const fp = x.fingerprint256.replace(/:/g, '').toLowerCase();
    const notAfter = new Date(x.validTo).toISOString().replace(/\.\d{3}Z$/, 'Z');
    await proxy!.waitForLog(
      new RegExp(
        `LOGIN listener=127\\.0\\.0\\.1:${mtlsPort} tls=\\S+ cipher=\\S+ password=clear cert=O=Example,CN=app1 issuer=CN=Test CA fp=${fp} not_after=${notAfter}`,
      ),
    );
    const stranger = await cli(mtlsPort, [
      '--ssl',
      `--ssl-ca=${certs.caCert}`,
      `--ssl-cert=${certs.strangerCert}`,
      `--ssl-key=${certs.strangerKey}`,
    ]);
    assert.notEqual(stranger.code, 0);
    await proxy!.waitForLog(/client certificate refused/);
    // Without a certificate: served, and peer_certificate is nil (policy decides).
    const none = await cli(mtlsPort, ['--ssl', `--ssl-ca=${certs.caCert}`]);
    assert.equal(none.code, 0, none.stderr);
  });

  test('mysql2 with ssl, PyMySQL with ssl, PHP mysqli with MYSQLI_CLIENT_SSL', async () => {
    const c = await mysql.createConnection({
      host: '127.0.0.1',
      port: tlsPort,
      user: USERS.native.user,
      password: USERS.native.password,
      ssl: { ca: readFileSync(certs.caCert, 'utf8') },
      enableCleartextPlugin: true,
    } as mysql.ConnectionOptions);
    try {
      // A result larger than one TLS record, through the session's relay.
      const [rows] = await c.query('SELECT REPEAT(?, 100000) AS s', ['x']);
      assert.equal((rows as { s: string }[])[0]!.s.length, 100000);
      const [prepared] = await c.execute('SELECT ? + 1 AS n', [41]);
      assert.equal((prepared as { n: number }[])[0]!.n, 42);
    } finally {
      await c.end();
    }
    const py = await runCommand('/usr/bin/python3', [
      '-c',
      `import pymysql
c = pymysql.connect(host='127.0.0.1', port=${tlsPort}, user='native', password='nativepw', ssl={'ca': ${JSON.stringify(certs.caCert)}})
cur = c.cursor()
cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
cur.execute('SELECT 7 * 6')
print(cur.fetchone()[0])
c.close()`,
    ]);
    assert.equal(py.stdout.trim(), '42', py.stderr);
    const php = await runCommand('php', [
      '-r',
      `$m = mysqli_init();
$m->ssl_set(NULL, NULL, ${JSON.stringify(certs.caCert)}, NULL, NULL);
$m->real_connect('127.0.0.1', 'native', 'nativepw', '', ${tlsPort}, NULL, MYSQLI_CLIENT_SSL);
echo $m->query('SELECT 6 * 7')->fetch_row()[0], "\\n";`,
    ]);
    assert.equal(php.stdout.trim(), '42', php.stderr);
  });

  test('SIGHUP reads the certificate again without dropping sessions; a bad file is logged and the old one stays', async () => {
    const session = await mysql.createConnection({
      host: '127.0.0.1',
      port: tlsPort,
      user: USERS.native.user,
      password: USERS.native.password,
      ssl: { ca: readFileSync(certs.caCert, 'utf8') },
      enableCleartextPlugin: true,
    } as mysql.ConnectionOptions);
    const served = async (): Promise<string> => {
      const { socket, channel } = await rawGreeting(tlsPort);
      socket.write(sslRequest(1));
      channel.detach();
      const secure = tls.connect({ socket, rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
      const fp = secure.getPeerCertificate().fingerprint256;
      secure.destroy();
      return fp;
    };
    try {
      const before = await served();
      // A new certificate for the same key (another serial): what a renewal looks like.
      const other = makeTestCertificates(mkdtempSync(join(certDir, 'renewed-')));
      copyFileSync(other.serverCert, join(certDir, 'live.pem'));
      copyFileSync(other.serverKey, join(certDir, 'live.key'));
      let since = proxy!.logs().length;
      process.kill(proxy!.pid, 'SIGHUP');
      await proxy!.waitForLog(/TLS certificate reloaded/, 10_000, since);
      const renewed = await served();
      assert.notEqual(renewed, before);
      assert.equal(renewed, new X509Certificate(readFileSync(other.serverCert)).fingerprint256);
      // The session from before the reload goes on.
      const [rows] = await session.query('SELECT 1 AS one');
      assert.equal((rows as { one: number }[])[0]!.one, 1);

      writeFileSync(join(certDir, 'live.pem'), 'not a certificate\n');
      since = proxy!.logs().length;
      process.kill(proxy!.pid, 'SIGHUP');
      await proxy!.waitForLog(
        /TLS certificate not reloaded, keeping the old one: TLS certificate file \S+live\.pem/,
        10_000,
        since,
      );
      assert.equal(await served(), renewed);
      assert.ok(proxy!.alive());
    } finally {
      await session.end();
    }
  });

  test('SSLRequest on a listener without TLS: the old refusal', async () => {
    const { socket, channel } = await rawGreeting(plainPort);
    socket.write(sslRequest(1));
    const p = await channel.next(5000);
    assert.equal(p.seq, 2);
    assert.equal(parseErr(p.payload).message, 'TLS is not supported');
    socket.destroy();
  });
});

describe('TLS configuration errors', () => {
  let certDir = '';
  let certs: TestCertificates;
  before(() => {
    certDir = mkdtempSync(join(tmpdir(), 'myproxy-certs-'));
    certs = makeTestCertificates(certDir);
  });
  after(() => rmSync(certDir, { recursive: true, force: true }));

  for (const [what, files, message] of [
    [
      'a missing certificate',
      () => ({ cert: join(certDir, 'nope.pem'), key: certs.serverKey }),
      /Cannot read TLS certificate file \S+nope\.pem/,
    ],
    [
      'a key that is no key',
      () => ({ cert: certs.serverCert, key: certs.caCert }),
      /TLS key file \S+ca\.pem holds no usable private key/,
    ],
    [
      'a key of another certificate',
      () => ({ cert: certs.serverCert, key: certs.clientKey }),
      /TLS key file \S+client\.key does not fit certificate \S+server\.pem/,
    ],
    [
      'a CA file that is no certificate',
      () => ({ cert: certs.serverCert, key: certs.serverKey, ca: certs.serverKey }),
      /TLS CA file \S+server\.key holds no usable certificate/,
    ],
  ] as const) {
    test(`${what} stops the daemon with exit 78, naming the file and the config line`, async () => {
      const f = files();
      const r = await runProxy([], {
        name: 'tls-bad',
        config: `local h = {on_handshake_response = function() end}\nmysql_listen('127.0.0.1:1', h, {tls = ${luaTable(f)}})\n`,
      });
      assert.equal(r.code, 78, r.stderr);
      assert.ok(r.stderr.includes(`${r.configPath}:2: `), r.stderr);
      assert.match(r.stderr, message);
    });
  }

  test('bad tls options are configuration errors', async () => {
    for (const [table, message] of [
      ['{cert = "x"}', 'tls needs both cert and key'],
      ['{cert = "x", key = "y", verify = true}', "Unknown tls option 'verify'"],
      ['{cert = "x", key = "y", require = "yes"}', 'tls.require must be a boolean'],
      ['"on"', "Option 'tls' must be a table"],
    ] as const) {
      const r = await runProxy(['--check'], {
        name: 'tls-bad',
        config: `local h = {on_handshake_response = function() end}\nmysql_listen('127.0.0.1:1', h, {tls = ${table}})\n`,
      });
      assert.equal(r.code, 78, r.stderr);
      assert.ok(r.stderr.includes(message), r.stderr);
    }
  });
});

function luaTable(o: Record<string, string>): string {
  return `{${Object.entries(o)
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
    .join(', ')}}`;
}
