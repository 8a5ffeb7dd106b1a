// Hostile and broken clients on the proxy socket, while a healthy session keeps querying: every
// bad connection gets an ERR or is closed, the log names the malformed packets, the healthy
// session never notices, and the daemon keeps accepting logins.

import { randomBytes } from 'node:crypto';
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { packet as frame } from '../helpers/bytes.js';
import { guard, mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';

const PROTOCOL_41 = 0x200;
const SECURE_CONNECTION = 0x8000;
const PLUGIN_AUTH = 0x80000;
const SSL = 0x800;

/** The fixed 32-byte head of a HandshakeResponse41. */
function hrHead(caps: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(caps >>> 0, 0);
  b.writeUInt32LE(0xffffff, 4);
  b[8] = 0x21;
  return b;
}

interface Outcome {
  /** Packets received (after the greeting, which is checked). */
  packets: { seq: number; payload: Buffer }[];
  /** Bytes that did not form a whole packet. */
  rest: number;
  greeting: boolean;
}

/**
 * Connect to `socket`, wait for the greeting (unless `waitGreeting` is false), run `act`, and
 * collect everything the proxy sends until it closes the connection.
 */
function hostile(socket: string, act: (s: net.Socket) => void, waitGreeting = true): Promise<Outcome> {
  return guard(
    new Promise<Outcome>((resolve, reject) => {
      const s = net.connect(socket);
      let buf = Buffer.alloc(0);
      const packets: { seq: number; payload: Buffer }[] = [];
      let acted = false;
      let greeting = false;
      const parse = (): void => {
        while (buf.length >= 4 && buf.length >= 4 + buf.readUIntLE(0, 3)) {
          const len = buf.readUIntLE(0, 3);
          const p = { seq: buf[3]!, payload: buf.subarray(4, 4 + len) };
          buf = buf.subarray(4 + len);
          if (!greeting && p.payload[0] === 10 && p.seq === 0) greeting = true;
          else packets.push(p);
        }
        if (greeting && !acted) {
          acted = true;
          act(s);
        }
      };
      s.on('connect', () => {
        if (!waitGreeting) {
          acted = true;
          act(s);
        }
      });
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        parse();
      });
      s.on('error', (e: NodeJS.ErrnoException) => {
        // EPIPE/ECONNRESET when the proxy has already closed: that is an outcome too.
        if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
      });
      s.on('close', () => resolve({ packets, rest: buf.length, greeting }));
    }),
    'hostile connection',
  );
}

function assertErr(o: Outcome, what: string, message?: string): void {
  assert.ok(o.greeting, `${what}: greeting received`);
  assert.equal(o.packets.length, 1, `${what}: exactly one packet after the greeting`);
  const p = o.packets[0]!.payload;
  assert.equal(p[0], 0xff, `${what}: ERR`);
  assert.equal(p.readUInt16LE(1), 1043, `${what}: errno`);
  assert.equal(p.subarray(3, 9).toString('latin1'), '#08S01', `${what}: SQLSTATE`);
  if (message !== undefined) assert.equal(p.subarray(9).toString('utf8'), message, what);
}

describe('hostile clients', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    db = await startMariaDB({ name: 'hostile' });
    await createTestUsers(db);
    proxy = await startProxy({
      name: 'hostile',
      config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})
mysql_listen('${dir}/marker.sock', {
  on_handshake_response = function(client, hr) error('END-OF-VANISH-MARKER') end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  test('malformed logins get an ERR or are closed; a healthy session is unaffected; the daemon survives', async () => {
    const sock = proxy!.socket;
    const since = proxy!.logs().length;
    const healthy = await guard(
      mysql.createConnection({
        socketPath: sock,
        user: USERS.native.user,
        password: USERS.native.password,
        enableCleartextPlugin: true,
      }),
      'healthy login',
    );
    healthy.on('error', (e: Error) => assert.fail(`healthy session error: ${e.message}`));
    let stop = false;
    let queries = 0;
    const loop = (async () => {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the test body while this loop awaits
      while (!stop) {
        const [rows] = await healthy.query<mysql.RowDataPacket[]>('SELECT ? AS n, REPEAT(?, 100) AS pad', [
          queries,
          'x',
        ]);
        assert.equal(rows[0]!['n'], queries);
        assert.equal(rows[0]!['pad'], 'x'.repeat(100));
        queries++;
      }
    })();

    try {
      // Random payload in a well-formed frame: all capability bits set, and no NUL where the
      // user name should end, so it cannot parse.
      const junk = randomBytes(200);
      junk.writeUInt32LE(0xffffffff, 0);
      for (let i = 32; i < junk.length; i++) if (junk[i] === 0) junk[i] = 1;
      const garbage = hostile(sock, (s) => s.write(frame(1, junk)));

      // Unframed random noise whose header claims a packet far too large for a login.
      const noise = randomBytes(300);
      noise[2] = 0x40 | noise[2]!;
      const noisy = hostile(sock, (s) => s.write(noise));

      // A HandshakeResponse41 cut off inside the user name.
      const truncated = hostile(sock, (s) =>
        s.write(frame(1, Buffer.concat([hrHead(PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH), Buffer.from('nati')]))),
      );

      // A header claiming a 16 MiB payload, followed by a few bytes.
      const huge = hostile(sock, (s) => s.write(Buffer.from([0xff, 0xff, 0xff, 0x01, 1, 2, 3, 4])));

      // An empty packet.
      const empty = hostile(sock, (s) => s.write(Buffer.from([0, 0, 0, 1])));

      // SSLRequest (TLS is not offered).
      const ssl = hostile(sock, (s) => s.write(frame(1, hrHead(PROTOCOL_41 | SECURE_CONNECTION | SSL))));

      // A half-sent packet, then the client goes away.
      const halfSent = hostile(sock, (s) => {
        s.write(Buffer.from([100, 0, 0, 1, 1, 2, 3]));
        s.end();
      });

      // Connects and closes at once (without waiting for the greeting).
      const closer = hostile(sock, (s) => s.destroy(), false);

      // Connects and never answers the greeting: the login timeout ends it.
      const silent = hostile(sock, () => undefined);

      const garbageOut = await garbage;
      assertErr(garbageOut, 'random garbage', 'Bad handshake');
      assertErr(await noisy, 'unframed noise', 'Bad handshake');
      assertErr(await truncated, 'truncated handshake response', 'Bad handshake');
      assertErr(await huge, '16 MiB header', 'Bad handshake');
      assertErr(await empty, 'empty packet', 'Bad handshake');
      assertErr(await ssl, 'SSLRequest');
      const half = await halfSent;
      assert.ok(half.greeting);
      assert.ok(
        half.packets.every((p) => p.payload[0] === 0xff),
        'half-sent: nothing but an ERR',
      );
      const closed = await closer;
      assert.equal(closed.packets.length, 0);
      assertErr(await silent, 'silent client');

      // The log names the malformed packets (garbage, noise, truncated, 16 MiB header, empty).
      await proxy!.waitForLog(/(?:Malformed packet from client[\s\S]*?){5}/, 5000, since);
      assert.match(proxy!.logs().slice(since), /Malformed packet from client: Packet larger than \d+ bytes/);
    } finally {
      stop = true;
      await loop;
    }
    assert.ok(queries > 10, `healthy session ran ${queries} queries`);
    const [rows] = await healthy.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
    assert.equal(rows[0]!['u'], 'native@%');
    await healthy.end();

    assert.ok(proxy!.alive(), 'daemon still running');
    const r = await mariadbCli(sock, USERS.native.user, USERS.native.password, 'SELECT CURRENT_USER()');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'native@%\n');
  });

  test('clients that vanish during login are not logged as internal errors', async () => {
    const since = proxy!.logs().length;
    // Connect and close at once, without reading the greeting: the greeting is left unread in
    // the socket buffer, so the proxy's next read fails with ECONNRESET (or sees EOF).
    for (let i = 0; i < 5; i++) {
      const closed = await hostile(proxy!.socket, (s) => s.destroy(), false);
      assert.equal(closed.packets.length, 0);
    }
    // Read the greeting, then go away while the proxy waits for the HandshakeResponse.
    for (let i = 0; i < 5; i++) {
      const closed = await hostile(proxy!.socket, (s) => s.destroy());
      assert.equal(closed.packets.length, 0);
    }
    // Still serving; a disconnect is the client's business, not an internal error with a stack.
    const r = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'SELECT 1');
    assert.equal(r.stdout, '1\n', r.stderr);
    // A Lua error is logged on stderr, like the errors in question: once it is in, they are too.
    const login = Buffer.concat([
      hrHead(PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH),
      Buffer.from('u\0'),
      Buffer.from([1, 0]),
      Buffer.from('mysql_clear_password\0'),
    ]);
    const marker = await hostile(`${proxy!.dir}/marker.sock`, (s) => s.write(frame(1, login)));
    assertErr(marker, 'marker', 'Lua error');
    await proxy!.waitForLog(/END-OF-VANISH-MARKER/, 5000, since);
    const log = proxy!.logs().slice(since);
    assert.doesNotMatch(log, /internal error/, log);
  });
});
