// Backend auth plugins through the proxy: a real MariaDB ed25519 account, and caching_sha2_password
// against a MySQL-8-faithful test double (no MySQL 8 server can be installed here) built with the
// project's own protocol code. The double follows MySQL 8's rules: users who logged in before
// get fast auth (0x01 0x03); others get full auth (0x01 0x04), where a clear password is accepted
// only over the Unix socket or TLS, and plain TCP clients must use the server's RSA key (0x02
// requests it). Its TLS port offers CLIENT_SSL and switches to TLS after an SSLRequest, with the
// daemon's own ServerTls and the tests' certificates.

import { strict as assert } from 'node:assert';
import { constants, createHash, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import mysql from 'mysql2/promise';

import { Capability } from '../../src/protocol/constants.js';
import { PacketFramer } from '../../src/protocol/framer.js';
import { writeErr, writeOk } from '../../src/protocol/packets/generic.js';
import { writeHandshakeV10 } from '../../src/protocol/packets/handshake.js';
import { isSslRequest, parseHandshakeResponse } from '../../src/protocol/packets/handshake-response.js';
import { framePayload } from '../../src/protocol/writer.js';
import { PASS_THROUGH_CAPABILITIES, PROXY_OWN_CAPABILITIES } from '../../src/backend/capabilities.js';
import { ServerTls } from '../../src/net/tls.js';
import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { guard, mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';
import { makeTestCertificates } from '../helpers/tls-certs.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
}

async function loginError(opts: mysql.ConnectionOptions): Promise<MysqlError> {
  try {
    const c = await guard(mysql.createConnection(opts), 'mysql2 login', 20_000);
    await c.end();
  } catch (e) {
    return e as MysqlError;
  }
  assert.fail('login succeeded but should have failed');
}

async function loginOk(opts: mysql.ConnectionOptions): Promise<void> {
  const c = await guard(mysql.createConnection(opts), 'mysql2 login', 20_000);
  await c.end();
}

// ---------------------------------------------------------------------------
// The caching_sha2_password test double

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** A scramble as MySQL makes one: 20 bytes, no NUL (and no '$'). */
function mysqlScramble(): Buffer {
  const s = randomBytes(20);
  for (let i = 0; i < s.length; i++) {
    s[i] = s[i]! & 0x7f || 1;
    if (s[i] === 0x24) s[i] = 0x25;
  }
  return s;
}

interface Sha2Double {
  readonly socket: string;
  readonly port: number;
  /** TCP port that offers CLIENT_SSL (the same users and cache). */
  readonly tlsPort: number;
  /** Users that logged in before (MySQL 8 caches SHA256(SHA256(pw)) after a full auth). */
  readonly cache: Set<string>;
  readonly counts: {
    keyRequests: number;
    fastAuth: number;
    fullAuth: number;
    rsaLogins: number;
    clearLogins: number;
    clearOverTcpRejected: number;
    /** Clear passwords that arrived inside TLS (a subset of clearLogins). */
    tlsClearLogins: number;
  };
  /** The clear passwords received inside TLS, by user (what a full authentication sent). */
  readonly clearOverTls: Map<string, string>;
  close(): Promise<void>;
}

const DOUBLE_CAPS =
  (PASS_THROUGH_CAPABILITIES |
    PROXY_OWN_CAPABILITIES |
    Capability.CLIENT_PLUGIN_AUTH |
    Capability.CLIENT_SECURE_CONNECTION) >>>
  0;

/** The packets arriving on a stream, one at a time; detach() hands the stream over (TLS). */
function packetSource(stream: net.Socket): {
  next(): Promise<{ seq: number; payload: Buffer } | null>;
  detach(): Buffer | null;
} {
  const framer = new PacketFramer(1 << 20);
  const queue: { seq: number; payload: Buffer }[] = [];
  let wake: (() => void) | null = null;
  const onData = (chunk: Buffer): void => {
    try {
      queue.push(...framer.push(chunk));
    } catch {
      stream.destroy();
    }
    wake?.();
  };
  const onClose = (): void => wake?.();
  stream.on('data', onData);
  stream.on('close', onClose);
  stream.resume();
  return {
    async next() {
      while (queue.length === 0) {
        if (stream.destroyed || stream.readableEnded) return null;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
      return queue.shift()!;
    },
    detach() {
      stream.pause();
      stream.off('data', onData);
      stream.off('close', onClose);
      // The start of the ClientHello, sent right behind the SSLRequest.
      return framer.takeBuffered();
    },
  };
}

async function startSha2Double(users: ReadonlyMap<string, string>, dir: string, tls: ServerTls): Promise<Sha2Double> {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }));
  const cache = new Set<string>();
  const counts = {
    keyRequests: 0,
    fastAuth: 0,
    fullAuth: 0,
    rsaLogins: 0,
    clearLogins: 0,
    clearOverTcpRejected: 0,
    tlsClearLogins: 0,
  };
  const clearOverTls = new Map<string, string>();

  /** `offerTls`: the greeting offers CLIENT_SSL and an SSLRequest switches the connection to TLS. */
  const serve = (raw: net.Socket, unixSocket: boolean, offerTls: boolean): void => {
    raw.on('error', () => undefined);
    let source = packetSource(raw);
    let sock: net.Socket = raw;
    /** Unix socket or TLS: MySQL 8 then takes the clear password after 0x04. */
    let secure = unixSocket;
    const caps = offerTls ? (DOUBLE_CAPS | Capability.CLIENT_SSL) >>> 0 : DOUBLE_CAPS;
    const scramble = mysqlScramble();
    sock.write(
      writeHandshakeV10({
        serverVersion: Buffer.from('8.0.36-double'),
        connectionId: 42,
        scramble,
        capabilities: caps,
        characterSet: 0xff,
        statusFlags: 2,
        authPluginName: 'caching_sha2_password',
      }),
    );
    const run = async (): Promise<void> => {
      let hrPacket = await source.next();
      if (hrPacket === null) return;
      if (offerTls && isSslRequest(hrPacket.payload)) {
        const tlsSocket: TLSSocket = await tls.upgrade(raw, source.detach());
        tlsSocket.on('error', () => undefined);
        sock = tlsSocket;
        secure = tlsSocket.encrypted;
        source = packetSource(tlsSocket);
        hrPacket = await source.next();
        if (hrPacket === null) return;
      }
      let seq = hrPacket.seq;
      const hr = parseHandshakeResponse(hrPacket.payload, caps);
      const user = hr.user.toString('utf8');
      const deny = (): void => {
        sock.end(
          writeErr(seq + 1, {
            errno: 1045,
            sqlState: '28000',
            message: `Access denied for user '${user}'@'localhost' (using password: ${hr.authResponse.length > 0 ? 'YES' : 'NO'})`,
          }),
        );
      };
      const ok = (): void => {
        sock.write(writeOk(seq + 1, 2));
      };
      const password = users.get(user);
      if (password === undefined) {
        deny();
        return;
      }
      if (hr.authPluginName !== 'caching_sha2_password') {
        deny();
        return;
      }
      const stored = sha256(sha256(Buffer.from(password)));
      if (password === '' || hr.authResponse.length === 0) {
        if (password === '' && hr.authResponse.length === 0) ok();
        else {
          deny();
          return;
        }
      } else if (cache.has(user)) {
        const mask = sha256(stored, scramble);
        const stage1 = Buffer.from(hr.authResponse.map((b, i) => b ^ mask[i]!));
        if (hr.authResponse.length !== 32 || !sha256(stage1).equals(stored)) {
          deny();
          return;
        }
        counts.fastAuth++;
        sock.write(framePayload(Buffer.of(0x01, 0x03), ++seq));
        ok();
      } else {
        counts.fullAuth++;
        sock.write(framePayload(Buffer.of(0x01, 0x04), ++seq));
        let p = await source.next();
        if (p === null) return;
        seq = p.seq;
        let clear: Buffer;
        if (p.payload.length === 1 && p.payload[0] === 0x02 && !secure) {
          counts.keyRequests++;
          sock.write(framePayload(Buffer.concat([Buffer.of(0x01), pem]), ++seq));
          p = await source.next();
          if (p === null) return;
          seq = p.seq;
        }
        if (secure) {
          clear = p.payload;
          counts.clearLogins++;
          if (sock !== raw) {
            counts.tlsClearLogins++;
            clearOverTls.set(user, clear.subarray(0, Math.max(0, clear.length - 1)).toString('utf8'));
          }
        } else {
          // Plain TCP: only an RSA-encrypted password is acceptable.
          let plain: Buffer;
          try {
            plain = privateDecrypt(
              { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
              p.payload,
            );
          } catch {
            counts.clearOverTcpRejected++;
            deny();
            return;
          }
          clear = Buffer.from(plain.map((b, i) => b ^ scramble[i % scramble.length]!));
          counts.rsaLogins++;
        }
        if (clear.length === 0 || clear[clear.length - 1] !== 0) {
          deny();
          return;
        }
        if (!clear.subarray(0, clear.length - 1).equals(Buffer.from(password))) {
          deny();
          return;
        }
        cache.add(user);
        ok();
      }
      // Command phase: OK to every query, close on COM_QUIT.
      for (;;) {
        const c = await source.next();
        if (c === null || c.payload[0] === 0x01) {
          sock.end();
          return;
        }
        sock.write(writeOk(c.seq + 1, 2));
      }
    };
    run().catch(() => sock.destroy());
  };

  const socketPath = path.join(dir, 'sha2.sock');
  const unixServer = net.createServer((s) => serve(s, true, false));
  const tcpServer = net.createServer((s) => serve(s, false, false));
  const tlsServer = net.createServer({ pauseOnConnect: true }, (s) => serve(s, false, true));
  await new Promise<void>((r) => unixServer.listen(socketPath, r));
  await new Promise<void>((r) => tcpServer.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
  return {
    socket: socketPath,
    port: (tcpServer.address() as net.AddressInfo).port,
    tlsPort: (tlsServer.address() as net.AddressInfo).port,
    cache,
    counts,
    clearOverTls,
    async close() {
      await Promise.all(
        [unixServer, tcpServer, tlsServer].map((srv) => new Promise<void>((r) => srv.close(() => r()))),
      );
    },
  };
}

// ---------------------------------------------------------------------------

const SHA2_USERS = new Map([
  ['sockuser', 'sockpw'],
  ['tcpuser', 'tcppw-with-a-longer-password-than-the-20-byte-nonce'],
  ['empty', ''],
  ['direct', 'directpw'],
  ['tlsuser', 'tlspw-sent-as-is-inside-tls'],
]);

describe('backend auth plugins', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let dbl: Sha2Double | undefined;
  let tmp = '';

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sha2-'));
    const certs = makeTestCertificates(tmp);
    const double = await startSha2Double(
      SHA2_USERS,
      tmp,
      new ServerTls({ cert: certs.serverCert, key: certs.serverKey, ca: undefined, require: false }),
    );
    dbl = double;
    db = await startMariaDB({ name: 'authplugins', extraArgs: ['--plugin-load-add=auth_ed25519'] });
    await createTestUsers(db);
    const dbSock = db.socket;
    const sha1 = createHash('sha1').update('sockpw').digest('hex');
    proxy = await startProxy({
      name: 'authplugins',
      config: (dir) => `
local function pass(backend)
  return { on_handshake_response = function(client, hr) return client:connect(backend, hr) end }
end
mysql_listen('${dir}/proxy.sock', pass(${JSON.stringify(dbSock)}))
mysql_listen('${dir}/sha2unix.sock', pass(${JSON.stringify(double.socket)}))
mysql_listen('${dir}/sha2tcp.sock', pass(mysql_resolve('127.0.0.1:${double.port}', { get_server_public_key = true })))
-- TLS (verified): the full authentication sends the password inside TLS, no RSA
mysql_listen('${dir}/sha2tls.sock', pass(mysql_resolve('127.0.0.1:${double.tlsPort}',
  { tls = { ca = ${JSON.stringify(certs.caCert)}, verify = 'full' } })))
-- no key option: a full authentication over plain TCP is refused, never sent to a key from the network
mysql_listen('${dir}/sha2nokey.sock', pass('127.0.0.1:${double.port}'))
-- password_sha1 only: caching_sha2_password cannot use it.
mysql_listen('${dir}/sha1.sock', {
  on_handshake_response = function(client, hr)
    local h = ${JSON.stringify(sha1)}
    return client:connect(${JSON.stringify(double.socket)}, {
      user = 'sockuser',
      password_sha1 = (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end)),
    })
  end,
})
`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
    await dbl?.close();
    if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true });
  });

  const viaProxy = (sock: string, user: string, password: string): mysql.ConnectionOptions => ({
    socketPath: path.join(proxy!.dir, sock),
    user,
    password,
    enableCleartextPlugin: true,
  });

  describe('client_ed25519 (real MariaDB)', () => {
    test('mariadb CLI logs in as the ed25519 user; a wrong password gets 1045', async () => {
      const r = await mariadbCli(proxy!.socket, USERS.ed.user, USERS.ed.password, 'SELECT CURRENT_USER()');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'ed@%\n');
      const bad = await mariadbCli(proxy!.socket, USERS.ed.user, 'wrong', 'SELECT 1');
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /ERROR 1045 \(28000\)/);
    });

    test('mysql2 logs in as the ed25519 user; a wrong password gets 1045', async () => {
      const c = await guard(mysql.createConnection(viaProxy('proxy.sock', USERS.ed.user, USERS.ed.password)), 'login');
      const [rows] = await c.query('SELECT CURRENT_USER() AS u');
      assert.deepEqual(rows, [{ u: 'ed@%' }]);
      await c.end();
      const e = await loginError(viaProxy('proxy.sock', USERS.ed.user, 'edpw2'));
      assert.equal(e.errno, 1045, e.message);
      assert.equal(e.sqlState, '28000');
    });

    test('many logins in a row (a fresh random scramble each time)', async () => {
      for (let i = 0; i < 20; i++) await loginOk(viaProxy('proxy.sock', USERS.ed.user, USERS.ed.password));
    });
  });

  describe('caching_sha2_password (MySQL 8 test double)', () => {
    test('the double is faithful: mysql2 direct over TCP (RSA) works, a clear password over TCP is refused', async () => {
      await loginOk({ host: '127.0.0.1', port: dbl!.port, user: 'direct', password: 'directpw' });
      dbl!.cache.delete('direct');
      const before = dbl!.counts.clearOverTcpRejected;
      // libmariadb sends the clear password after 0x04 even over TCP: the double refuses it.
      const r = await runCommand('mariadb', [
        '--no-defaults',
        '--protocol=tcp',
        '-h',
        '127.0.0.1',
        '-P',
        String(dbl!.port),
        '-u',
        'direct',
        '-pdirectpw',
        '--batch',
        '-e',
        'DO 1',
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /1045/);
      assert.equal(dbl!.counts.clearOverTcpRejected, before + 1);
    });

    test('Unix socket: full auth with the clear password, then fast auth', async () => {
      const c0 = { ...dbl!.counts };
      const r = await mariadbCli(path.join(proxy!.dir, 'sha2unix.sock'), 'sockuser', 'sockpw', 'DO 1');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(dbl!.counts.fullAuth, c0.fullAuth + 1);
      assert.equal(dbl!.counts.clearLogins, c0.clearLogins + 1);
      assert.equal(dbl!.counts.keyRequests, c0.keyRequests);
      await loginOk(viaProxy('sha2unix.sock', 'sockuser', 'sockpw'));
      assert.equal(dbl!.counts.fastAuth, c0.fastAuth + 1);
      assert.equal(dbl!.counts.fullAuth, c0.fullAuth + 1);
    });

    test('TCP without TLS or a key option: the full authentication is refused with a clear error', async () => {
      dbl!.cache.delete('tcpuser');
      const c0 = { ...dbl!.counts };
      const e = await loginError(viaProxy('sha2nokey.sock', 'tcpuser', SHA2_USERS.get('tcpuser')!));
      assert.equal(e.errno, 1043, e.message);
      assert.match(e.message, /needs TLS, server_public_key or get_server_public_key/);
      assert.equal(dbl!.counts.keyRequests, c0.keyRequests);
    });

    test('TLS backend: full auth sends the clear password inside TLS (no RSA), then fast auth', async () => {
      const pw = SHA2_USERS.get('tlsuser')!;
      dbl!.cache.delete('tlsuser');
      dbl!.clearOverTls.clear();
      const c0 = { ...dbl!.counts };
      const c = await guard(mysql.createConnection(viaProxy('sha2tls.sock', 'tlsuser', pw)), 'login');
      await c.query('DO 1');
      await c.end();
      assert.equal(dbl!.counts.fullAuth, c0.fullAuth + 1);
      assert.equal(dbl!.counts.tlsClearLogins, c0.tlsClearLogins + 1, 'the password did not arrive inside TLS');
      assert.equal(dbl!.clearOverTls.get('tlsuser'), pw);
      assert.equal(dbl!.counts.keyRequests, c0.keyRequests, 'no public key request inside TLS');
      assert.equal(dbl!.counts.rsaLogins, c0.rsaLogins);
      // The next login is MySQL 8's fast path, also over TLS; the mariadb CLI works the same.
      const r = await mariadbCli(path.join(proxy!.dir, 'sha2tls.sock'), 'tlsuser', pw, 'DO 1');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(dbl!.counts.fastAuth, c0.fastAuth + 1);
      assert.equal(dbl!.counts.fullAuth, c0.fullAuth + 1);
      const e = await loginError(viaProxy('sha2tls.sock', 'tlsuser', 'wrong'));
      assert.equal(e.errno, 1045, e.message);
    });

    test('TCP: RSA key requested once, the cached key is used on the next full auth, then fast auth', async () => {
      const pw = SHA2_USERS.get('tcpuser')!;
      const c0 = { ...dbl!.counts };
      await loginOk(viaProxy('sha2tcp.sock', 'tcpuser', pw));
      assert.equal(dbl!.counts.keyRequests, c0.keyRequests + 1);
      assert.equal(dbl!.counts.rsaLogins, c0.rsaLogins + 1);
      // Like FLUSH PRIVILEGES on MySQL 8: the next login is a full auth again.
      dbl!.cache.delete('tcpuser');
      const r = await mariadbCli(path.join(proxy!.dir, 'sha2tcp.sock'), 'tcpuser', pw, 'DO 1');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(dbl!.counts.keyRequests, c0.keyRequests + 1, 'the key was requested again');
      assert.equal(dbl!.counts.rsaLogins, c0.rsaLogins + 2);
      assert.equal(dbl!.counts.fullAuth, c0.fullAuth + 2);
      await loginOk(viaProxy('sha2tcp.sock', 'tcpuser', pw));
      assert.equal(dbl!.counts.fastAuth, c0.fastAuth + 1);
      assert.equal(dbl!.counts.clearOverTcpRejected, c0.clearOverTcpRejected);
    });

    test('wrong password gets 1045 (full auth over both transports, and fast auth)', async () => {
      dbl!.cache.delete('sockuser');
      dbl!.cache.delete('tcpuser');
      for (const sock of ['sha2unix.sock', 'sha2tcp.sock']) {
        const e = await loginError(viaProxy(sock, sock === 'sha2tcp.sock' ? 'tcpuser' : 'sockuser', 'nope'));
        assert.equal(e.errno, 1045, e.message);
        assert.equal(e.sqlState, '28000');
      }
      await loginOk(viaProxy('sha2unix.sock', 'sockuser', 'sockpw'));
      const fast = dbl!.counts.fastAuth;
      const e = await loginError(viaProxy('sha2unix.sock', 'sockuser', 'nope'));
      assert.equal(e.errno, 1045, e.message);
      assert.equal(dbl!.counts.fastAuth, fast);
    });

    test('empty password: empty response over both transports', async () => {
      await loginOk(viaProxy('sha2unix.sock', 'empty', ''));
      await loginOk(viaProxy('sha2tcp.sock', 'empty', ''));
      const e = await loginError(viaProxy('sha2tcp.sock', 'empty', 'x'));
      assert.equal(e.errno, 1045, e.message);
    });

    test('password_sha1 only: the client gets "backend requires the clear-text password"', async () => {
      const e = await loginError(viaProxy('sha1.sock', 'whoever', 'whatever'));
      assert.equal(e.errno, 1043, e.message);
      assert.match(e.message, /backend requires the clear-text password/);
      await proxy!.waitForLog(/backend requires the clear-text password/, 5000);
    });
  });
});
