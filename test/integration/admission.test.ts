// Admission before any Lua runs (issue 11 §5): the handshake timeout closes 1,000 silent clients
// while another logs in at once; global and per-listener connection limits (1040); the
// per-address budget of failed handshakes (max_connect_errors, 1129); a daemon out of file
// descriptors (prlimit) stays calm and serves again.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { runCommand, startProxy } from '../helpers/proxy.js';
import { PacketChannel } from '../../src/net/packet-channel.js';
import { parseErr } from '../../src/protocol/packets/generic.js';
import { framePayload } from '../../src/protocol/writer.js';

/** A policy for TCP clients: the native answer checked against the stored hash (plain TCP gives no password). */
function policy(db: MariaDB, storedHash: string): string {
  return `
local backend = ${JSON.stringify(db.socket)}
local handler = {
  on_handshake_response = function(client, hr)
    if hr.password ~= nil then return client:connect(backend, hr) end
    local verified = client:verify_native_password(${JSON.stringify(storedHash)})
    if not verified then return client:deny() end
    return client:connect(backend, {user = hr.user, password_sha1 = verified, database = hr.database})
  end,
}`;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => resolve(s)).once('error', reject);
  });
}

/** The first packet the daemon sends (greeting or ERR). */
async function firstPacket(port: number): Promise<{ socket: net.Socket; payload: Buffer }> {
  const socket = await connect(port);
  socket.on('error', () => undefined);
  const channel = new PacketChannel(socket, 1 << 20);
  const p = await channel.next(5000);
  channel.detach();
  return { socket, payload: p.payload };
}

async function login(port: number): Promise<number> {
  const started = performance.now();
  const c = await mysql.createConnection({
    host: '127.0.0.1',
    port,
    user: USERS.native.user,
    password: USERS.native.password,
  });
  try {
    await c.query('SELECT 1');
  } finally {
    await c.end();
  }
  return performance.now() - started;
}

async function metric(port: number, name: string): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

describe('admission limits', () => {
  let db: MariaDB | undefined;
  let storedHash = '';

  before(async () => {
    db = await startMariaDB({ name: 'admission' });
    await createTestUsers(db);
    storedHash = (await db.query(`SELECT authentication_string FROM mysql.user WHERE user = 'native'`)).trim();
  });

  after(async () => {
    await db?.stop();
  });

  test('1,000 silent connections are closed at handshake_timeout while a normal client logs in at once', async () => {
    const port = await freeTcpPort();
    const metricsPort = await freeTcpPort();
    const proxy = await startProxy({
      name: 'adm-silent',
      config: `${policy(db!, storedHash)}
mysql_listen('127.0.0.1:${port}', handler, {handshake_timeout = 3, max_connect_errors = 0})
prometheus_listen('127.0.0.1:${metricsPort}')`,
    });
    const silent: net.Socket[] = [];
    try {
      const opened = performance.now();
      const closedAt: number[] = [];
      for (let i = 0; i < 1000; i += 100) {
        const batch = await Promise.all(Array.from({ length: 100 }, () => connect(port)));
        for (const s of batch) {
          s.on('error', () => undefined);
          s.resume();
          s.once('close', () => closedAt.push(performance.now() - opened));
          silent.push(s);
        }
      }
      // All 1,000 are open and waiting; a client that logs in now is not held up by them.
      const ms = await login(port);
      process.stdout.write(`# login beside 1,000 silent connections: ${ms.toFixed(1)} ms\n`);
      assert.ok(ms < 1000, `login took ${ms} ms`);
      assert.equal(closedAt.length, 0, 'nobody closed before the timeout');
      const deadline = Date.now() + 15_000;
      const closedCount = (): number => closedAt.length;
      while (closedCount() < 1000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal(closedAt.length, 1000, 'every silent connection was closed');
      assert.ok(Math.min(...closedAt) >= 2900, `closed at ${Math.min(...closedAt)} ms, before the timeout`);
      assert.match(
        await metric(metricsPort, 'myproxy_handshake_failures_total'),
        /myproxy_handshake_failures_total\{reason="timeout"\} 1000/,
      );
      await proxy.waitForLog(/handshake timed out: closing/);
      assert.ok(proxy.alive());
    } finally {
      for (const s of silent) s.destroy();
      await proxy.stop();
    }
  });

  test("--max-connections and a listener's max_connections: 1040 before any Lua runs", async () => {
    const [a, b] = [await freeTcpPort(), await freeTcpPort()];
    const proxy = await startProxy({
      name: 'adm-limits',
      args: ['--max-connections', '3'],
      config: `${policy(db!, storedHash)}
local counted = {on_connect = function() print('ON_CONNECT') end, on_handshake_response = handler.on_handshake_response}
mysql_listen('127.0.0.1:${a}', counted, {max_connections = 2})
mysql_listen('127.0.0.1:${b}', counted)`,
    });
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) held.push((await firstPacket(a)).socket);
      const third = await firstPacket(a);
      held.push(third.socket);
      assert.equal(third.payload[0], 0xff, 'ERR instead of the greeting');
      const err = parseErr(third.payload);
      assert.equal(err.errno, 1040);
      assert.equal(err.sqlState, '08004');
      assert.equal(err.message, 'Too many connections');
      // Listener b is not full, the daemon is not either: one more is served there.
      const onB = await firstPacket(b);
      held.push(onB.socket);
      assert.equal(onB.payload[0], 0x0a, 'a greeting');
      // Now the daemon holds 3: the global limit refuses on b too.
      const fourth = await firstPacket(b);
      held.push(fourth.socket);
      assert.equal(parseErr(fourth.payload).errno, 1040);
      await proxy.waitForLog(
        /refusing a connection with 1040 Too many connections: max_connections 2 of 127\.0\.0\.1:/,
      );
      await proxy.waitForLog(/refusing a connection with 1040 Too many connections: --max-connections 3 reached/);
      assert.equal(proxy.logs().match(/ON_CONNECT/g)?.length, 3, 'Lua ran for the admitted ones only');
      // Freed places are served again.
      for (const s of held.splice(0)) s.destroy();
      await new Promise((r) => setTimeout(r, 200));
      await login(a);
    } finally {
      for (const s of held) s.destroy();
      await proxy.stop();
    }
  });

  test('max_connect_errors: an address with too many failed handshakes gets 1129 until the block ends', async () => {
    const port = await freeTcpPort();
    const metricsPort = await freeTcpPort();
    const proxy = await startProxy({
      name: 'adm-errors',
      config: `${policy(db!, storedHash)}
mysql_listen('127.0.0.1:${port}', handler, {max_connect_errors = 3, connect_error_block_time = 2})
mysql_listen('\${dir}/proxy.sock', handler)
prometheus_listen('127.0.0.1:${metricsPort}')`,
    });
    try {
      // A login after failures forgives them: two failures, a login, three more are needed.
      const garbage = async (): Promise<void> => {
        const { socket } = await firstPacket(port);
        // A header announcing more than a login packet may hold: garbage.
        socket.resume();
        socket.write(framePayload(Buffer.alloc(1), 1).fill(0xff, 0, 3));
        await new Promise((r) => socket.once('close', r));
      };
      await garbage();
      await garbage();
      await login(port);
      await garbage();
      await garbage();
      const stillServed = await firstPacket(port);
      stillServed.socket.destroy();
      assert.equal(stillServed.payload[0], 0x0a);
      await garbage();
      await proxy.waitForLog(
        /blocking 127\.0\.0\.1 for 2 s: 3 failed handshakes in a row \(max_connect_errors; the last: malformed\)/,
      );
      const blocked = await firstPacket(port);
      blocked.socket.destroy();
      const err = parseErr(blocked.payload);
      assert.equal(err.errno, 1129);
      assert.equal(err.message, "Host '127.0.0.1' is blocked because of many connection errors");
      assert.match(await metric(metricsPort, 'myproxy_blocked_hosts'), /myproxy_blocked_hosts 1/);
      assert.match(
        await metric(metricsPort, 'myproxy_connections_refused_total'),
        /myproxy_connections_refused_total\{reason="host_blocked"\} 1/,
      );
      // Unix socket clients are not affected.
      const unix = await runCommand('mariadb', [
        '--no-defaults',
        '-S',
        proxy.socket,
        '-u',
        USERS.native.user,
        `-p${USERS.native.password}`,
        '-e',
        'SELECT 1',
      ]);
      assert.equal(unix.code, 0, unix.stderr);
      // The block ends.
      await new Promise((r) => setTimeout(r, 2100));
      await login(port);
    } finally {
      await proxy.stop();
    }
  });

  test('prlimit --nofile=200 and 400 connection attempts: little CPU, refusals, and service afterwards', async () => {
    const port = await freeTcpPort();
    const proxy = await startProxy({
      name: 'adm-prlimit',
      config: `${policy(db!, storedHash)}
mysql_listen('127.0.0.1:${port}', handler, {max_connect_errors = 0})`,
    });
    const held: net.Socket[] = [];
    try {
      const r = await runCommand('prlimit', ['--pid', String(proxy.pid), '--nofile=200:200']);
      assert.equal(r.code, 0, r.stderr);
      const cpuBefore = cpuSeconds(proxy.pid);
      const outcomes = { greeting: 0, refused: 0, dropped: 0 };
      await Promise.all(
        Array.from({ length: 400 }, async () => {
          try {
            const { socket, payload } = await firstPacket(port);
            held.push(socket);
            if (payload[0] === 0x0a) outcomes.greeting++;
            else if (parseErr(payload).errno === 1040) outcomes.refused++;
          } catch {
            outcomes.dropped++;
          }
        }),
      );
      // Hold them (silent) for a while: a spinning accept loop would burn CPU all along.
      await new Promise((r) => setTimeout(r, 3000));
      const cpu = cpuSeconds(proxy.pid) - cpuBefore;
      process.stdout.write(
        `# prlimit 200, 400 attempts: ${JSON.stringify(outcomes)}, daemon CPU ${cpu.toFixed(2)} s in ~3.5 s\n`,
      );
      assert.ok(outcomes.greeting > 50 && outcomes.greeting < 200, JSON.stringify(outcomes));
      assert.ok(outcomes.refused > 0, JSON.stringify(outcomes));
      assert.ok(cpu < 1.5, `daemon CPU ${cpu} s`);
      for (const s of held.splice(0)) s.destroy();
      await new Promise((r) => setTimeout(r, 500));
      await login(port);
      assert.ok(proxy.alive());
    } finally {
      for (const s of held) s.destroy();
      await proxy.stop();
    }
  });
});
