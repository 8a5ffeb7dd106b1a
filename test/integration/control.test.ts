// control_listen() and control_client: DISCONNECT_DATABASE datagrams over UDP and a Unix datagram
// socket close exactly one account's sessions (100 mariadb CLI sessions of three accounts), a
// daemon's reload() disconnects an account on another daemon through control_client, Unix senders
// are checked by uid, and 100,000 fuzzed datagrams leave the daemon serving.
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { ControlCommand, ControlDatagramBuilder } from '../../src/protocol/control.js';
import { sendUdp } from '../helpers/wire.js';
import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';

const disconnect = (...accounts: string[]): Buffer => {
  const b = new ControlDatagramBuilder();
  for (const a of accounts) b.add(ControlCommand.DISCONNECT_DATABASE, Buffer.from(a));
  return b.toBuffer();
};

/** Sends a datagram to a Unix datagram socket as `uid` (Node cannot send AF_UNIX datagrams). */
async function sendUnix(path: string, datagram: Buffer, uid?: number): Promise<void> {
  const script = `import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(bytes.fromhex(sys.argv[2]), sys.argv[1])`;
  const r = await runCommand(
    '/usr/bin/python3',
    ['-c', script, path, datagram.toString('hex')],
    uid === undefined ? {} : { uid },
  );
  assert.equal(r.code, 0, r.stderr);
}

const handler = (db: MariaDB): string => `{
  on_handshake_response = function(client, hr)
    client.account = hr.user
    return client:connect(${JSON.stringify(db.socket)}, { user = 'native', password = 'nativepw' })
  end,
}`;

describe('control protocol', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;
  let peer: Proxy | undefined;
  let udpPort = 0;
  let metricsPort = 0;

  before(async () => {
    db = await startMariaDB({ name: 'control', extraArgs: ['--max-connections=300'] });
    await createTestUsers(db);
    udpPort = await freeTcpPort();
    metricsPort = await freeTcpPort();
    proxy = await startProxy({
      name: 'control',
      config: (dir) => `
control_listen('127.0.0.1:${udpPort}')
control_listen('${dir}/control.sock', { allowed_uids = { 65534 } })
prometheus_listen('127.0.0.1:${metricsPort}')
mysql_listen('${dir}/proxy.sock', ${handler(db!)})`,
    });
    peer = await startProxy({
      name: 'controlpeer',
      config: (dir) => `
function reload()
  local c = assert(control_client:new('127.0.0.1:${udpPort}'))
  assert(c:send(c:build():disconnect_database('moved')))
  print('sent DISCONNECT_DATABASE moved')
end
mysql_listen('${dir}/proxy.sock', ${handler(db!)})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await peer?.stop();
    await db?.stop();
  });

  /** `count` CLI sessions of `account`, each in a long SLEEP. */
  function sessions(account: string, count: number, p: Proxy = proxy!): ChildProcess[] {
    return Array.from({ length: count }, () =>
      spawn('mariadb', ['--no-defaults', '-S', p.socket, '-u', account, '-pany', '-e', 'SELECT SLEEP(60)'], {
        stdio: 'ignore',
      }),
    );
  }

  async function waitForSleepers(n: number): Promise<void> {
    const end = Date.now() + 30_000;
    for (;;) {
      const count = Number(
        await db!.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(60)'"),
      );
      if (count >= n) return;
      if (Date.now() > end) throw new Error(`only ${count} of ${n} sessions are running`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;

  test("DISCONNECT_DATABASE over UDP closes exactly one account's sessions among 100", async () => {
    const a = sessions('acct1', 34);
    const b = sessions('acct2', 33);
    const c = sessions('acct3', 33);
    try {
      await waitForSleepers(100);
      await sendUdp(udpPort, disconnect('acct2'));
      const end = Date.now() + 10_000;
      while (!b.every(exited) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      assert.ok(b.every(exited), `${b.filter((x) => !exited(x)).length} acct2 sessions are still there`);
      assert.ok(!a.some(exited) && !c.some(exited), 'another account lost a session');
      const q = await mariadbCli(proxy!.socket, 'acct1', 'x', 'SELECT 42');
      assert.equal(q.stdout, '42\n', 'the other accounts keep querying');
      await proxy!.waitForLog(/Closed 33 connections for account "acct2"/);
    } finally {
      for (const x of [...a, ...b, ...c]) x.kill('SIGKILL');
    }
  });

  test('a Unix datagram socket accepts root and allowed_uids, and refuses other users', async () => {
    const path = `${proxy!.dir}/control.sock`;
    fs.chmodSync(proxy!.dir, 0o755); // other users may reach the socket (mode 0666) through the directory
    const refused = sessions('acct4', 1);
    const allowed = sessions('acct5', 1);
    const byRoot = sessions('acct6', 1);
    try {
      await waitForSleepers(3);
      await sendUnix(path, disconnect('acct4'), 65533);
      await proxy!.waitForLog(/datagram from uid 65533 refused/);
      await sendUnix(path, disconnect('acct5'), 65534);
      await sendUnix(path, disconnect('acct6'));
      await proxy!.waitForLog(/Closed 1 connections for account "acct5"/);
      await proxy!.waitForLog(/Closed 1 connections for account "acct6"/);
      assert.ok(!exited(refused[0]!), 'a refused datagram closed a session');
    } finally {
      for (const x of [...refused, ...allowed, ...byRoot]) x.kill('SIGKILL');
    }
  });

  test("one daemon's reload() disconnects an account on another through control_client", async () => {
    const moved = sessions('moved', 2);
    const stays = sessions('stays', 1);
    try {
      await waitForSleepers(3);
      process.kill(peer!.pid, 'SIGHUP');
      await peer!.waitForLog(/sent DISCONNECT_DATABASE moved/);
      await proxy!.waitForLog(/Closed 2 connections for account "moved"/);
      assert.ok(!exited(stays[0]!));
    } finally {
      for (const x of [...moved, ...stays]) x.kill('SIGKILL');
    }
  });

  test('100,000 fuzzed datagrams: counted as malformed, the daemon serves on', async () => {
    const s = dgram.createSocket('udp4');
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 100_000; i++) {
      let d: Buffer;
      switch (i % 5) {
        case 0:
          d = randomBytes(1 + (i % 64)); // no magic
          break;
        case 1:
          d = Buffer.concat([disconnect('nobody'), randomBytes(1 + (i % 3))]); // bad padding
          break;
        case 2: {
          d = disconnect('x');
          d.writeUInt16BE(0xffff, 4); // a length past the end
          break;
        }
        case 3:
          d = Buffer.from([0x63, 0x04, 0x61]); // short
          break;
        default:
          d = Buffer.concat([disconnect('nobody'), randomBytes(4 * (i % 8))]);
      }
      sends.push(new Promise((r) => s.send(d, udpPort, '127.0.0.1', () => r())));
      if (sends.length >= 2000) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);
    s.close();
    const q = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'SELECT 7');
    assert.equal(q.stdout, '7\n');
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const malformed = Number(/^myproxy_control_malformed_total (\d+)/m.exec(metrics)![1]);
    assert.ok(malformed > 10_000, `${malformed} malformed datagrams counted`);
    assert.ok(proxy!.alive());
  });
});
