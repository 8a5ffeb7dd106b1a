// systemd integration with real processes: socket activation through `systemd-socket-activate`
// (one socket, a path and an abstract name, none at all), sd_notify messages received by a
// NOTIFY_SOCKET stand-in (READY=1, WATCHDOG=1, RELOADING=1 + MONOTONIC_USEC, STATUS=, STOPPING=1),
// and the drain after SIGTERM (a running query finishes, new logins are refused, exit 0).
//
// systemd-socket-activate binds the sockets, waits for the first connection and then execs the
// daemon in its own process (so its pid is the daemon's). It passes only TERM, PATH, USER, HOME
// and the variables named with -E. Node cannot receive AF_UNIX datagrams, so the stand-in for
// systemd's notification socket is a few lines of Python printing each datagram as JSON.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, freeTcpPort, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { makeTestCertificates } from '../helpers/tls-certs.js';
import {
  daemonArgv,
  guard,
  mariadbCli,
  REPO_ROOT,
  runCommand,
  runProxy,
  startProxy,
  type CliResult,
  type ExitStatus,
} from '../helpers/proxy.js';
import { StatusThrottle } from '../../src/util/sd-notify.js';

const EX_CONFIG = 78;
const PYTHON = '/usr/bin/python3';

// ---------------------------------------------------------------------------
// The NOTIFY_SOCKET stand-in

/** One datagram: the receiver's CLOCK_MONOTONIC (µs) at arrival and the KEY=value fields. */
interface Notification {
  readonly atUsec: number;
  readonly text: string;
  readonly fields: ReadonlyMap<string, string>;
}

interface NotifyListener {
  readonly path: string;
  messages(): readonly Notification[];
  /** Resolves with the first message (at index `from` or later) that has `key` (= `value` if given). */
  waitFor(key: string, value?: string | RegExp, from?: number, timeoutMs?: number): Promise<Notification>;
  /** Index of the first message at or after `from` with `key`, or -1. */
  indexOf(key: string, from?: number): number;
  close(): Promise<void>;
}

const RECEIVER = `
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"bound": True}), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({"t": time.monotonic_ns() // 1000, "d": data.decode("utf-8", "replace")}), flush=True)
`;

async function startNotifyListener(dir: string): Promise<NotifyListener> {
  const sockPath = path.join(dir, 'notify.sock');
  const child = spawn(PYTHON, ['-c', RECEIVER, sockPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const messages: Notification[] = [];
  const watchers = new Set<() => void>();
  let buffered = '';
  let stderr = '';
  let bound!: () => void;
  const isBound = new Promise<void>((r) => (bound = r));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    buffered += s;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const j = JSON.parse(line) as { bound?: boolean; t?: number; d?: string };
      if (j.bound === true) {
        bound();
        continue;
      }
      const fields = new Map<string, string>();
      for (const assignment of j.d!.split('\n')) {
        const eq = assignment.indexOf('=');
        if (eq > 0) fields.set(assignment.slice(0, eq), assignment.slice(eq + 1));
      }
      messages.push({ atUsec: j.t!, text: j.d!, fields });
      for (const w of [...watchers]) w();
    }
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await guard(
    Promise.race([isBound, exited.then(() => Promise.reject(new Error(`notify receiver died: ${stderr}`)))]),
    'notify receiver start',
    10_000,
  );

  const matches = (m: Notification, key: string, value?: string | RegExp): boolean => {
    const v = m.fields.get(key);
    if (v === undefined) return false;
    if (value === undefined) return true;
    return typeof value === 'string' ? v === value : value.test(v);
  };
  const dump = (): string => messages.map((m) => JSON.stringify(m.text)).join('\n');
  return {
    path: sockPath,
    messages: () => messages,
    indexOf: (key, from = 0) => messages.findIndex((m, i) => i >= from && m.fields.has(key)),
    waitFor: (key, value, from = 0, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const m = messages.find((n, i) => i >= from && matches(n, key, value));
          if (m === undefined) return;
          watchers.delete(check);
          clearTimeout(timer);
          resolve(m);
        };
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`no ${key}=${String(value ?? '')} notification within ${timeoutMs} ms; got:\n${dump()}`));
        }, timeoutMs);
        watchers.add(check);
        check();
      }),
    close: async () => {
      child.kill('SIGKILL');
      await exited;
      live.delete(child);
    },
  };
}

// ---------------------------------------------------------------------------
// The daemon under systemd-socket-activate

interface Activated {
  /** The daemon's pid (systemd-socket-activate execs it in its own process). */
  readonly pid: number;
  logs(): string;
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  readonly exited: Promise<ExitStatus>;
  kill(signal: NodeJS.Signals): void;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * `systemd-socket-activate -l A [-l B ...] -E NAME... node <daemon> --config CONFIG ARGS`.
 * Resolves once every socket is bound (the daemon itself starts at the first connection).
 */
async function startActivated(opts: {
  listen: readonly string[];
  configPath: string;
  args?: readonly string[];
  env?: Readonly<Record<string, string>>;
}): Promise<Activated> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  const argv = [
    ...opts.listen.flatMap((l) => ['-l', l]),
    ...Object.keys(opts.env ?? {}).flatMap((k) => ['-E', k]),
    process.execPath,
    ...daemonArgv(['--config', opts.configPath, ...(opts.args ?? [])]),
  ];
  const child = spawn('systemd-socket-activate', argv, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let log = '';
  const watchers = new Set<() => void>();
  const onData = (b: Buffer): void => {
    log += b.toString('utf8');
    for (const w of [...watchers]) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let status: ExitStatus | null = null;
  const exited = new Promise<ExitStatus>((resolve) =>
    child.once('close', (code, signal) => {
      status = { code, signal };
      live.delete(child);
      for (const w of [...watchers]) w();
      resolve(status);
    }),
  );
  const waitForLog = (re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(log);
        if (m !== null) {
          done();
          resolve(m);
        } else if (status !== null) {
          done();
          reject(new Error(`exited (${JSON.stringify(status)}) before ${String(re)}; output:\n${log}`));
        }
      };
      const done = (): void => {
        watchers.delete(check);
        clearTimeout(timer);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${String(re)}; output:\n${log}`));
      }, timeoutMs);
      watchers.add(check);
      check();
    });
  const bound = new RegExp(Array(opts.listen.length).fill('Listening on [^\\n]*').join('[\\s\\S]*'));
  await waitForLog(bound, 10_000);
  return {
    pid: child.pid!,
    logs: () => log,
    waitForLog,
    exited,
    kill: (signal) => {
      if (status === null) child.kill(signal);
    },
  };
}

/** Wait until `pred` holds (polling), or fail naming `what`. */
async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// A socket holder that behaves like systemd (PID 1): it keeps its own copy of the listening
// socket for as long as it runs and starts daemon instances on request (`start` on stdin), each
// with the socket as fd 3 and LISTEN_FDS/LISTEN_PID set. So a connection that arrives while no
// instance accepts waits in the socket's backlog for the next instance, as under systemd.

const HOLDER = `
import os, socket, sys, threading
path, cmd = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(64)
def say(line):
    sys.stdout.write("HOLDER " + line + "\\n")
    sys.stdout.flush()
def reap():
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            threading.Event().wait(0.05)
            continue
        say("exit %d %d" % (pid, os.waitstatus_to_exitcode(st)))
threading.Thread(target=reap, daemon=True).start()
say("bound")
for line in sys.stdin:
    if line.strip() != "start":
        continue
    pid = os.fork()
    if pid == 0:
        os.dup2(s.fileno(), 3)
        os.set_inheritable(3, True)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.execv(cmd[0], cmd)
    say("started %d" % pid)
`;

interface Holder {
  /** Start an instance; resolves with its pid once it logged `listening on`. */
  start(): Promise<number>;
  /** Resolves with the exit code of instance `pid`. */
  exitCode(pid: number): Promise<number>;
  logs(): string;
  close(): Promise<void>;
}

async function startHolder(sock: string, configPath: string, args: readonly string[]): Promise<Holder> {
  const child = spawn(
    PYTHON,
    ['-c', HOLDER, sock, process.execPath, ...daemonArgv(['--config', configPath, ...args])],
    { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  live.add(child);
  let log = '';
  const watchers = new Set<() => void>();
  const onData = (b: Buffer): void => {
    log += b.toString('utf8');
    for (const w of [...watchers]) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const waitFor = (re: RegExp, from: number, timeoutMs = 20_000): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(log.slice(from));
        if (m === null) return;
        watchers.delete(check);
        clearTimeout(timer);
        resolve(m);
      };
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`timed out waiting for ${String(re)}; output:\n${log}`));
      }, timeoutMs);
      watchers.add(check);
      check();
    });
  await waitFor(/^HOLDER bound$/m, 0, 10_000);
  return {
    start: async () => {
      const from = log.length;
      child.stdin.write('start\n');
      const m = await waitFor(/^HOLDER started (\d+)$/m, from);
      await waitFor(/^listening on systemd fd 3$/m, from);
      return Number(m[1]);
    },
    exitCode: async (pid) => Number((await waitFor(new RegExp(`^HOLDER exit ${pid} (-?\\d+)$`, 'm'), 0, 30_000))[1]),
    logs: () => log,
    close: async () => {
      const gone = new Promise((r) => child.once('close', r));
      child.kill('SIGKILL');
      await gone;
      live.delete(child);
    },
  };
}

// ---------------------------------------------------------------------------

describe('systemd: socket activation, sd_notify, drain', () => {
  let db: MariaDB | undefined; // undefined if before() failed
  const dirs: string[] = [];

  before(async () => {
    db = await startMariaDB({ name: 'systemd' });
    await createTestUsers(db);
  });

  after(async () => {
    for (const c of live) c.kill('SIGKILL');
    await db?.stop();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** A fresh dir under /tmp (socket paths must fit into sun_path). */
  const tempDir = (label: string): string => {
    const d = fs.mkdtempSync(`/tmp/myproxy-sd-${label}-`);
    dirs.push(d);
    return d;
  };

  /** config.lua with mysql_listen(systemd, ...) passing every login to MariaDB; `extra` appended. */
  const writeConfig = (dir: string, extra = ''): string => {
    const file = path.join(dir, 'config.lua');
    fs.writeFileSync(
      file,
      `mysql_listen(systemd, {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})
${extra}`,
    );
    return file;
  };

  const login = (socket: string, sql: string): Promise<CliResult> =>
    guard(mariadbCli(socket, USERS.native.user, USERS.native.password, sql), `login via ${socket}`);

  test('one socket: the first login starts the daemon, logins work, SIGTERM leaves the socket file to systemd', async () => {
    const dir = tempDir('one');
    const sock = path.join(dir, 'activated.sock');
    const d = await startActivated({ listen: [sock], configPath: writeConfig(dir) });
    assert.ok(fs.statSync(sock).isSocket());
    // This connection waits in the backlog while node starts, then is served.
    const r = await login(sock, 'SELECT CURRENT_USER()');
    assert.equal(r.stdout, 'native@%\n', r.stderr + d.logs());
    await d.waitForLog(/^listening on systemd fd 3$/m);
    const r2 = await login(sock, 'SELECT 2');
    assert.equal(r2.stdout, '2\n', r2.stderr);
    d.kill('SIGTERM');
    // No session is open, so there is nothing to wait for (the grace period is the default 30 s):
    // a session left open after its client went away would show as a wait in the log.
    assert.deepEqual(await guard(d.exited, 'exit after SIGTERM', 20_000), { code: 0, signal: null }, d.logs());
    assert.doesNotMatch(d.logs(), /waiting up to/, 'no session was left open');
    assert.ok(fs.statSync(sock).isSocket(), 'the systemd-owned socket file is not removed by the daemon');
  });

  test('two sockets, a path and an abstract name: logins work on each', async () => {
    const dir = tempDir('two');
    const sock = path.join(dir, 'a.sock');
    const abstract = `@myproxy-sd-${randomBytes(6).toString('hex')}`;
    const d = await startActivated({ listen: [sock, abstract], configPath: writeConfig(dir) });
    const first = await login(abstract, 'SELECT 1');
    assert.equal(first.stdout, '1\n', first.stderr + d.logs());
    await d.waitForLog(/^listening on systemd fd 3$[\s\S]*^listening on systemd fd 4$/m);
    const [a, b] = await Promise.all([
      login(sock, 'SELECT CURRENT_USER(), 3'),
      login(abstract, 'SELECT CURRENT_USER(), 4'),
    ]);
    assert.equal(a.stdout, 'native@%\t3\n', a.stderr);
    assert.equal(b.stdout, 'native@%\t4\n', b.stderr);
    d.kill('SIGTERM');
    assert.deepEqual(await d.exited, { code: 0, signal: null }, d.logs());
    assert.ok(fs.statSync(sock).isSocket(), 'socket file still there');
  });

  test('a TCP socket from systemd: client.address and client.listener, TLS for TCP clients, none for the Unix socket', async () => {
    const dir = tempDir('tcp');
    const certs = makeTestCertificates(dir);
    const sock = path.join(dir, 'a.sock');
    const port = await freeTcpPort();
    const file = path.join(dir, 'config.lua');
    fs.writeFileSync(
      file,
      `mysql_listen(systemd, {
  on_handshake_response = function(client, hr)
    print(string.format('PEER address=%s listener=%s tls=%s', tostring(client.address), client.listener,
      client.tls and client.tls.version or 'nil'))
    return client:connect(${JSON.stringify(db!.socket)}, hr)
  end,
}, {tls = {cert = ${JSON.stringify(certs.serverCert)}, key = ${JSON.stringify(certs.serverKey)}}})
`,
    );
    const d = await startActivated({ listen: [`127.0.0.1:${port}`, sock], configPath: file });
    const tcp = await guard(
      runCommand('mariadb', [
        '--no-defaults',
        '--protocol=tcp',
        '-h',
        '127.0.0.1',
        '-P',
        String(port),
        '-u',
        USERS.native.user,
        `-p${USERS.native.password}`,
        '--ssl',
        `--ssl-ca=${certs.caCert}`,
        '--batch',
        '--skip-column-names',
        '-e',
        'SELECT 5',
      ]),
      'TCP login',
    );
    assert.equal(tcp.stdout, '5\n', tcp.stderr + d.logs());
    await d.waitForLog(/PEER address=127\.0\.0\.1:\d+ listener=systemd tls=TLSv1\.[23]/);
    const unix = await login(sock, 'SELECT 6');
    assert.equal(unix.stdout, '6\n', unix.stderr);
    await d.waitForLog(/PEER address=nil listener=systemd tls=nil/);
    d.kill('SIGTERM');
    assert.deepEqual(await d.exited, { code: 0, signal: null }, d.logs());
  });

  test('examples/systemd/config.lua: --check passes, and it serves the activated socket', async () => {
    const example = path.join(REPO_ROOT, 'examples', 'systemd', 'config.lua');
    const check = await runProxy(['--check', '--config', example], { env: { MYPROXY_BACKEND: db!.socket } });
    assert.equal(check.code, 0, check.stderr);
    const dir = tempDir('example');
    const sock = path.join(dir, 'myproxy.sock');
    const d = await startActivated({ listen: [sock], configPath: example, env: { MYPROXY_BACKEND: db!.socket } });
    const r = await login(sock, 'SELECT CURRENT_USER()');
    assert.equal(r.stdout, 'native@%\n', r.stderr + d.logs());
    process.kill(d.pid, 'SIGHUP');
    await d.waitForLog(/reload: nothing to do[\s\S]*reload\(\) finished/);
    d.kill('SIGTERM');
    assert.deepEqual(await d.exited, { code: 0, signal: null }, d.logs());
  });

  test('mysql_listen(systemd, ...) without sockets from systemd → 78 "No systemd socket"', async () => {
    const config = `mysql_listen(systemd, { on_handshake_response = function(c, hr) return c:err('x') end })\n`;
    const [none, otherPid] = await Promise.all([
      runProxy([], { config, name: 'nosd' }),
      // LISTEN_FDS meant for another process is ignored.
      runProxy([], { config, name: 'nosd2', env: { LISTEN_PID: '1', LISTEN_FDS: '1' } }),
    ]);
    for (const r of [none, otherPid]) {
      assert.equal(r.code, EX_CONFIG, r.stderr);
      assert.match(r.stderr, /config\.lua:1:.*No systemd socket/);
    }
  });

  test('READY=1 with STATUS, WATCHDOG=1 every WATCHDOG_USEC/2, RELOADING=1 + MONOTONIC_USEC then READY=1, STOPPING=1', async () => {
    const dir = tempDir('notify');
    const sock = path.join(dir, 'activated.sock');
    const notify = await startNotifyListener(dir);
    try {
      const configPath = writeConfig(
        dir,
        `reloads = 0
function reload()
  reloads = reloads + 1
  print('reload number ' .. reloads)
  mysql_resolve('localhost') -- yields: READY=1 must wait for the end
  if reloads == 2 then error('the second reload fails') end
end
`,
      );
      const d = await startActivated({
        listen: [sock],
        configPath,
        env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '400000' },
      });
      const r = await login(sock, 'SELECT 1');
      assert.equal(r.stdout, '1\n', r.stderr + d.logs());
      const ready = await notify.waitFor('READY', '1');
      assert.match(ready.fields.get('STATUS') ?? '', /^\d+ connections?$/, ready.text);
      const readyAt = notify.messages().indexOf(ready);

      // Watchdog: 400 ms → every 200 ms, so several within a second.
      await sleep(1100);
      const watchdogs = notify.messages().filter((m) => m.fields.get('WATCHDOG') === '1');
      assert.ok(watchdogs.length >= 4, `WATCHDOG=1 count ${watchdogs.length}`);
      const lastSecond = watchdogs.filter((m) => m.atUsec >= watchdogs.at(-1)!.atUsec - 1_000_000);
      assert.ok(
        lastSecond.length >= 4 && lastSecond.length <= 7,
        `WATCHDOG=1 in the last second: ${lastSecond.length}`,
      );

      // SIGHUP: RELOADING=1 (with our CLOCK_MONOTONIC), reload() runs, then READY=1.
      let from = notify.messages().length;
      process.kill(d.pid, 'SIGHUP');
      const reloading = await notify.waitFor('RELOADING', '1', from);
      const mono = Number(reloading.fields.get('MONOTONIC_USEC'));
      assert.ok(Number.isSafeInteger(mono), reloading.text);
      assert.ok(
        Math.abs(reloading.atUsec - mono) < 2_000_000,
        `MONOTONIC_USEC ${mono} vs receiver ${reloading.atUsec}`,
      );
      const again = await notify.waitFor('READY', '1', notify.messages().indexOf(reloading) + 1);
      assert.ok(again.atUsec >= reloading.atUsec);
      await d.waitForLog(/reload number 1[\s\S]*reload\(\) finished/);

      // A failing reload() also ends with READY=1.
      from = notify.messages().length;
      process.kill(d.pid, 'SIGHUP');
      const reloading2 = await notify.waitFor('RELOADING', '1', from);
      await notify.waitFor('READY', '1', notify.messages().indexOf(reloading2) + 1);
      await d.waitForLog(/reload\(\) failed: .*the second reload fails/);
      assert.ok(notify.messages().indexOf(ready) === readyAt);

      // Still serving.
      const r2 = await login(sock, 'SELECT 5');
      assert.equal(r2.stdout, '5\n', r2.stderr);

      from = notify.messages().length;
      d.kill('SIGTERM');
      const stopping = await notify.waitFor('STOPPING', '1', from);
      assert.match(stopping.fields.get('STATUS') ?? '', /^draining \d+ connections?$/, stopping.text);
      assert.deepEqual(await d.exited, { code: 0, signal: null }, d.logs());
      assert.ok(fs.statSync(sock).isSocket(), 'socket file left to systemd');
    } finally {
      await notify.close();
    }
  });

  test('STATUS= follows the number of connections, at most once a second', async () => {
    const dir = tempDir('status');
    const sock = path.join(dir, 'activated.sock');
    const notify = await startNotifyListener(dir);
    const clients: mysql.Connection[] = [];
    const connect = async (): Promise<mysql.Connection> => {
      const c = await mysql.createConnection({
        socketPath: sock,
        user: USERS.native.user,
        password: USERS.native.password,
        enableCleartextPlugin: true,
      });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    };
    try {
      const d = await startActivated({
        listen: [sock],
        configPath: writeConfig(dir),
        env: { NOTIFY_SOCKET: notify.path },
      });
      const first = await connect(); // starts the daemon
      await first.query('SELECT 1');
      await notify.waitFor('STATUS', '1 connection', 0, 5000);
      await Promise.all([connect(), connect()]);
      await notify.waitFor('STATUS', '3 connections', 0, 5000);
      await Promise.all(clients.splice(0).map((c) => c.end()));
      await notify.waitFor('STATUS', '0 connections', notify.indexOf('STATUS') + 1, 5000);
      // Rate limit: STATUS-only messages are at least ~1 s apart.
      const statusOnly = notify.messages().filter((m) => m.fields.size === 1 && m.fields.has('STATUS'));
      for (let i = 1; i < statusOnly.length; i++) {
        const gap = statusOnly[i]!.atUsec - statusOnly[i - 1]!.atUsec;
        assert.ok(gap >= 900_000, `STATUS updates ${gap} µs apart`);
      }
      // Without WATCHDOG_USEC there is no watchdog.
      assert.equal(notify.indexOf('WATCHDOG'), -1);
      d.kill('SIGTERM');
      assert.deepEqual(await d.exited, { code: 0, signal: null }, d.logs());
    } finally {
      for (const c of clients) c.destroy();
      await notify.close();
    }
  });

  test('WATCHDOG_PID of another process: no WATCHDOG=1', async () => {
    const dir = tempDir('wdpid');
    const sock = path.join(dir, 'activated.sock');
    const notify = await startNotifyListener(dir);
    try {
      const d = await startActivated({
        listen: [sock],
        configPath: writeConfig(dir),
        env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' },
      });
      await login(sock, 'SELECT 1');
      await notify.waitFor('READY', '1');
      await sleep(600);
      assert.equal(
        notify.indexOf('WATCHDOG'),
        -1,
        notify
          .messages()
          .map((m) => m.text)
          .join('\n'),
      );
      d.kill('SIGTERM');
      assert.deepEqual(await d.exited, { code: 0, signal: null }, d.logs());
    } finally {
      await notify.close();
    }
  });

  test('an unusable NOTIFY_SOCKET does not disturb the daemon', async () => {
    for (const bad of ['relative/notify.sock', '/nonexistent/dir/notify.sock', '@myproxy-nobody-listens']) {
      const proxy = await startProxy({
        name: 'badnotify',
        config: `mysql_listen('\${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})
function reload() end
`,
        env: { NOTIFY_SOCKET: bad, WATCHDOG_USEC: '100000' },
      });
      try {
        const r = await login(proxy.socket, 'SELECT 6');
        assert.equal(r.stdout, '6\n', r.stderr + proxy.logs());
        process.kill(proxy.pid, 'SIGHUP');
        await proxy.waitForLog(/reload\(\) finished/);
        await sleep(300); // a few watchdog ticks
        assert.ok(proxy.alive(), proxy.logs());
        assert.deepEqual(await proxy.stop(), { code: 0, signal: null }, proxy.logs());
      } finally {
        await proxy.stop('SIGKILL');
      }
    }
  });

  test('drain: a running query finishes, a new login is refused, exit 0 when the last session ends', async () => {
    const dir = tempDir('drain');
    const sock = path.join(dir, 'activated.sock');
    const notify = await startNotifyListener(dir);
    try {
      const d = await startActivated({
        listen: [sock],
        configPath: writeConfig(dir),
        args: ['--shutdown-grace', '5'],
        env: { NOTIFY_SOCKET: notify.path },
      });
      const warm = await login(sock, 'SELECT 1');
      assert.equal(warm.stdout, '1\n', warm.stderr + d.logs());
      await notify.waitFor('READY', '1');

      const marker = `drain_${randomBytes(4).toString('hex')}`;
      const slow = login(sock, `SELECT SLEEP(1), '${marker}'`);
      await until(async () => (await db!.query('SHOW PROCESSLIST')).includes(marker), 'the slow query to run');
      d.kill('SIGTERM');
      await d.waitForLog(/caught SIGTERM, shutting down/, 5000);
      const stopping = await notify.waitFor('STOPPING', '1');
      assert.equal(stopping.fields.get('STATUS'), 'draining 1 connection');

      // A login during the drain is refused at once (the listening socket is closed), not queued.
      const refused = await guard(
        mariadbCli(sock, USERS.native.user, USERS.native.password, 'SELECT 1'),
        'login during drain',
        5000,
      );
      assert.notEqual(refused.code, 0, refused.stdout);
      assert.match(refused.stderr, /Can't connect|Lost connection|refused|ERROR 20(02|13)/, refused.stderr);

      // The query that was running at SIGTERM gets its result.
      const r = await slow;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `0\t${marker}\n`);

      // The last session ended: the daemon exits 0 without ending anyone's session (no ERR).
      const status = await guard(d.exited, 'daemon exit after the drain', 10_000);
      assert.deepEqual(status, { code: 0, signal: null }, d.logs());
      assert.doesNotMatch(d.logs(), /Server shutdown in progress/);
      assert.ok(fs.statSync(sock).isSocket(), 'socket file left to systemd');
    } finally {
      await notify.close();
    }
  });

  test('socket held by systemd: the draining daemon accepts nothing; the next instance serves the waiting login', async () => {
    const dir = tempDir('held');
    const sock = path.join(dir, 'held.sock');
    const holder = await startHolder(sock, writeConfig(dir), ['--shutdown-grace', '5']);
    try {
      const a = await holder.start();
      const r = await login(sock, 'SELECT 1');
      assert.equal(r.stdout, '1\n', r.stderr + holder.logs());

      const marker = `held_${randomBytes(4).toString('hex')}`;
      const slow = login(sock, `SELECT SLEEP(1), '${marker}'`);
      await until(async () => (await db!.query('SHOW PROCESSLIST')).includes(marker), 'the slow query to run');
      process.kill(a, 'SIGTERM');
      await until(() => /caught SIGTERM, shutting down/.test(holder.logs()), 'SIGTERM logged');

      // A login during the drain: the old instance no longer accepts, so it waits in the backlog.
      let waiting: CliResult | undefined;
      const next = login(sock, 'SELECT CURRENT_USER(), 9').then((x) => (waiting = x));
      assert.equal((await slow).stdout, `0\t${marker}\n`, 'the running query finished');
      assert.equal(await holder.exitCode(a), 0, holder.logs());
      assert.equal(waiting, undefined, 'not served (nor cut off) by the draining instance');

      // systemd would start the service again for the waiting connection; do that by hand.
      const b = await holder.start();
      assert.notEqual(a, b);
      const served = await next;
      assert.equal(served.stdout, 'native@%\t9\n', served.stderr + holder.logs());
      process.kill(b, 'SIGTERM');
      assert.equal(await holder.exitCode(b), 0, holder.logs());
    } finally {
      await holder.close();
    }
  });

  test('a second SIGTERM during the drain exits at once', async () => {
    const dir = tempDir('drain2');
    const sock = path.join(dir, 'activated.sock');
    const d = await startActivated({ listen: [sock], configPath: writeConfig(dir), args: ['--shutdown-grace', '30'] });
    const c = await mysql.createConnection({
      socketPath: sock,
      user: USERS.native.user,
      password: USERS.native.password,
      enableCleartextPlugin: true,
    });
    c.on('error', () => undefined);
    try {
      await c.query('SELECT 1');
      d.kill('SIGTERM');
      await d.waitForLog(/caught SIGTERM, shutting down/, 5000);
      await sleep(200);
      d.kill('SIGTERM');
      const status = await guard(d.exited, 'exit after the second SIGTERM', 5000);
      assert.deepEqual(status, { code: 0, signal: null }, d.logs());
      assert.match(d.logs(), /caught SIGTERM again, exiting now/);
    } finally {
      c.destroy();
    }
  });
});

describe('StatusThrottle', () => {
  test('sends at once, then at most once per interval with the latest text; skips repeats', async () => {
    const sent: string[] = [];
    const t = new StatusThrottle(100, (s) => sent.push(s));
    t.update('1 connection');
    assert.deepEqual(sent, ['1 connection']);
    t.update('2 connections');
    t.update('3 connections');
    assert.deepEqual(sent, ['1 connection']);
    await sleep(150);
    assert.deepEqual(sent, ['1 connection', '3 connections']);
    await sleep(150);
    t.update('3 connections'); // unchanged: nothing
    assert.deepEqual(sent, ['1 connection', '3 connections']);
    t.sentElsewhere('0 connections');
    t.update('0 connections');
    await sleep(150);
    assert.deepEqual(sent, ['1 connection', '3 connections']);
  });
});
