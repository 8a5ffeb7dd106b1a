import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the mariadb CLI as `user` (never as root) with the given connection args. */
function cli(conn: string[], user: string, password: string, sql: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'mariadb',
      [
        '--no-defaults',
        ...conn,
        `--user=${user}`,
        `--password=${password}`,
        '--batch',
        '--skip-column-names',
        '-e',
        sql,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
  // Still a PID: acceptable only as a zombie.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Resolves once a TCP connection to 127.0.0.1:port is established; rejects with the socket error. */
function tcpConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(port, '127.0.0.1');
    conn.once('connect', () => {
      conn.destroy();
      resolve();
    });
    conn.once('error', reject);
  });
}

describe('MariaDB test harness', () => {
  const started: MariaDB[] = [];
  after(async () => {
    await Promise.all(started.map((db) => db.stop()));
  });

  test('socket instance: users, login, wrong password, stop', async () => {
    const db = await startMariaDB({ name: 'harness' });
    started.push(db);
    assert.ok(fs.existsSync(db.socket), 'socket exists');
    assert.equal(db.tcpPort, undefined);

    assert.equal(await db.query('SELECT 1'), '1\n');
    assert.match(await db.query('SELECT VERSION()'), /^10\.11\..*MariaDB/);
    await assert.rejects(db.query('SELEKT 1'), /ERROR 1064/);

    await createTestUsers(db);
    await createTestUsers(db); // idempotent
    const plugins = await db.query(
      "SELECT user, plugin FROM mysql.user WHERE user IN ('native','nopw','ed') ORDER BY user",
    );
    assert.equal(plugins, 'ed\ted25519\nnative\tmysql_native_password\nnopw\tmysql_native_password\n');
    assert.equal(await db.query("SHOW DATABASES LIKE 'sbtest'"), 'sbtest\n');

    const sock = ['--protocol=socket', `--socket=${db.socket}`];
    const ok = await cli([...sock, '--database=test'], USERS.native.user, USERS.native.password, 'SELECT 1');
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, '1\n');

    const who = await cli(sock, USERS.native.user, USERS.native.password, 'SELECT CURRENT_USER()');
    assert.equal(who.stdout, 'native@%\n', who.stderr);

    const bad = await cli(sock, USERS.native.user, 'wrongpw', 'SELECT 1');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /ERROR 1045 \(28000\)/);

    const nopw = await cli([...sock, '--database=sbtest'], USERS.nopw.user, USERS.nopw.password, 'SELECT 2');
    assert.equal(nopw.code, 0, nopw.stderr);
    assert.equal(nopw.stdout, '2\n');

    const ed = await cli([...sock, '--database=test'], USERS.ed.user, USERS.ed.password, 'SELECT 3');
    assert.equal(ed.code, 0, ed.stderr);
    assert.equal(ed.stdout, '3\n');
    const edBad = await cli(sock, USERS.ed.user, 'nope', 'SELECT 3');
    assert.match(edBad.stderr, /ERROR 1045/);

    const { dir, pid } = db;
    assert.ok(!processGone(pid), 'mariadbd runs before stop');
    await db.stop();
    assert.equal(fs.existsSync(dir), false, 'directory removed');
    assert.ok(processGone(pid), 'mariadbd gone after stop');
    await db.stop(); // idempotent
  });

  test('TCP instance on a free port', async () => {
    const db = await startMariaDB({ tcpPort: 0, name: 'tcp' });
    started.push(db);
    assert.equal(typeof db.tcpPort, 'number');
    await createTestUsers(db);
    const r = await cli(
      ['--protocol=tcp', '--host=127.0.0.1', `--port=${String(db.tcpPort)}`],
      USERS.native.user,
      USERS.native.password,
      'SELECT 42',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '42\n');
    await db.stop();
    assert.equal(fs.existsSync(db.dir), false);
  });

  test('halt and resume keep port, socket and data', async () => {
    const db = await startMariaDB({ tcpPort: 0, name: 'halt' });
    started.push(db);
    const port = db.tcpPort;
    assert.equal(typeof port, 'number');
    if (port === undefined) return;
    const { dir, socket } = db;
    await db.query(
      'CREATE DATABASE hr; CREATE TABLE hr.t (id INT PRIMARY KEY, v VARCHAR(20)); ' +
        "INSERT INTO hr.t VALUES (1, 'kept')",
    );
    await tcpConnect(port);

    const firstPid = db.pid;
    await db.halt();
    assert.ok(processGone(firstPid), 'mariadbd gone after halt');
    assert.ok(fs.existsSync(path.join(dir, 'data')), 'datadir kept');
    await assert.rejects(tcpConnect(port), { code: 'ECONNREFUSED' });
    await db.halt(); // idempotent
    await assert.rejects(db.query('SELECT 1'));

    await db.resume();
    assert.ok(!processGone(db.pid), 'mariadbd runs after resume');
    assert.equal(db.tcpPort, port);
    assert.equal(db.socket, socket);
    const pid = db.pid;
    await db.resume(); // idempotent
    assert.equal(db.pid, pid);
    assert.equal(await db.query('SELECT id, v FROM hr.t'), '1\tkept\n');
    await tcpConnect(port);

    await db.halt();
    await db.stop(); // from the halted state
    assert.equal(fs.existsSync(dir), false, 'directory removed');
    await assert.rejects(db.resume(), /stopped/);
    await db.halt(); // no-op after stop
  });

  test('startup failure rejects with the error log tail and cleans up', async () => {
    const before = new Set(fs.readdirSync('/tmp'));
    await assert.rejects(
      startMariaDB({ name: 'broken', extraArgs: ['--no-such-option-here'] }),
      /exited during startup[\s\S]*tail of err\.log[\s\S]*no-such-option-here/,
    );
    const leftover = fs
      .readdirSync('/tmp')
      .filter((n: string) => !before.has(n) && n.startsWith('myproxy-mariadb-broken-'));
    assert.deepEqual(leftover, []);
  });
});
