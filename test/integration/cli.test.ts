// The daemon as a program: --check, configuration errors (exit 78 with file:line), usage errors
// (64), signals, socket files (stale, live, abstract).

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runProxy, startProxy, type Proxy } from '../helpers/proxy.js';

const EX_USAGE = 64;
const EX_CONFIG = 78;

const HANDLER = `{ on_handshake_response = function(client, hr) return client:err('x') end }`;

/** 1-based number of the first line of `source` containing `marker`. */
function lineOf(source: string, marker: string): number {
  const i = source.split('\n').findIndex((l) => l.includes(marker));
  assert.ok(i >= 0, marker);
  return i + 1;
}

/** Run `--check` on `config` and expect exit 78 with `config.lua:<line of marker>:` and `re` on stderr. */
async function expectConfigError(config: string, marker: string, re: RegExp): Promise<string> {
  const r = await runProxy(['--check'], { config, name: 'cfgerr' });
  assert.equal(r.code, EX_CONFIG, `exit code; stderr: ${r.stderr}; stdout: ${r.stdout}`);
  const line = lineOf(config.split('${dir}').join('X'), marker);
  assert.match(r.stderr, new RegExp(`config\\.lua:${line}:`), r.stderr);
  assert.match(r.stderr, re);
  assert.doesNotMatch(r.stdout + r.stderr, /configuration OK/);
  return r.stderr;
}

describe('command line and lifecycle', () => {
  let db: MariaDB | undefined;
  const proxies: Proxy[] = [];

  before(async () => {
    db = await startMariaDB({ name: 'cli' });
    await createTestUsers(db);
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.stop('SIGKILL')));
    await db?.stop();
  });

  const passConfig = (listen: string): string => `
mysql_listen(${JSON.stringify(listen)}, {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})
`;

  test('--check on a good config: exit 0 and "configuration OK"', async () => {
    const r = await runProxy(['--check'], { config: passConfig('${dir}/proxy.sock') });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /config\.lua: configuration OK/);
    assert.doesNotMatch(r.stdout, /listening on/);
  });

  test('Lua syntax error → 78 with config.lua:<line>', async () => {
    await expectConfigError(
      `-- a comment
local ok = 1
local broken = = 2 -- MARK
mysql_listen('\${dir}/p.sock', ${HANDLER})
`,
      'MARK',
      /unexpected symbol near '='/,
    );
  });

  test('runtime error at the top level → 78 with file:line', async () => {
    await Promise.all([
      expectConfigError(
        `mysql_listen('\${dir}/p.sock', ${HANDLER})
local t = {}
error('top level boom') -- MARK
`,
        'MARK',
        /top level boom/,
      ),
      expectConfigError(
        `mysql_listen('\${dir}/p.sock', ${HANDLER})

no_such_function() -- MARK
`,
        'MARK',
        /attempt to call a nil value \(global 'no_such_function'\)/,
      ),
    ]);
  });

  test("bad handler tables → 78 with myproxy's messages", async () => {
    await Promise.all([
      expectConfigError(
        `
mysql_listen('\${dir}/p.sock', { -- MARK
  on_handshake_response = function(client, hr) return client:err('x') end,
  on_foo = function() end,
})`,
        'MARK',
        /Unrecognized key 'on_foo'/,
      ),
      expectConfigError(
        `local handler = { on_handshake_response = 'not a function' }
mysql_listen('\${dir}/p.sock', handler) -- MARK
`,
        'MARK',
        /Value is not a function/,
      ),
      expectConfigError(
        `
mysql_listen('\${dir}/p.sock', { on_connect = function() end }) -- MARK
`,
        'MARK',
        /No on_handshake_response handler/,
      ),
    ]);
  });

  test('no mysql_listen → 78 "No listeners configured"', async () => {
    const r = await runProxy(['--check'], { config: `local x = 1\n` });
    assert.equal(r.code, EX_CONFIG, r.stderr);
    assert.match(r.stderr, /No listeners configured/);
  });

  test('a socket that cannot be bound (directory missing) → 78 naming the line', async () => {
    const stderr = await expectConfigError(
      `local x = 1
mysql_listen('\${dir}/no/such/dir/p.sock', ${HANDLER}) -- MARK
`,
      'MARK',
      /no\/such\/dir\/p\.sock/,
    );
    assert.match(stderr, /ENOENT|No such file/);
  });

  test('mysql_resolve of an unknown host at the top level → 78 naming the line', async () => {
    await expectConfigError(
      `mysql_listen('\${dir}/p.sock', ${HANDLER})
local a = mysql_resolve('host.invalid:3306') -- MARK
`,
      'MARK',
      /host\.invalid/,
    );
  });

  test('bad usage → 64', async () => {
    const [r, r2] = await Promise.all([runProxy(['--bogus']), runProxy(['--config'])]);
    assert.equal(r.code, EX_USAGE, r.stderr);
    assert.match(r.stderr, /--bogus/);
    assert.match(r.stderr, /Usage: myproxy/);
    assert.equal(r2.code, EX_USAGE, r2.stderr);
  });

  test('SIGTERM → exit 0 and the socket file is removed', async () => {
    const proxy = await startProxy({ name: 'sigterm', config: passConfig('${dir}/proxy.sock') });
    proxies.push(proxy);
    assert.ok(fs.statSync(proxy.socket).isSocket());
    const r = await mariadbCli(proxy.socket, USERS.native.user, USERS.native.password, 'SELECT 1');
    assert.equal(r.stdout, '1\n', r.stderr);
    process.kill(proxy.pid, 'SIGTERM');
    const status = await proxy.exited;
    assert.deepEqual(status, { code: 0, signal: null }, proxy.logs());
    assert.equal(fs.existsSync(proxy.socket), false, 'socket file removed');
    assert.ok(fs.existsSync(proxy.configPath), 'other files untouched');
    await proxy.stop();
  });

  test('SIGTERM with an idle session: the session is ended after the grace period, exit 0', async () => {
    const proxy = await startProxy({
      name: 'grace',
      config: passConfig('${dir}/proxy.sock'),
      args: ['--shutdown-grace', '0.2'],
    });
    proxies.push(proxy);
    const c = await mysql.createConnection({
      socketPath: proxy.socket,
      user: USERS.native.user,
      password: USERS.native.password,
      enableCleartextPlugin: true,
    });
    c.on('error', () => undefined);
    try {
      await c.query('SELECT 1');
      process.kill(proxy.pid, 'SIGTERM');
      const status = await proxy.exited;
      assert.deepEqual(status, { code: 0, signal: null }, proxy.logs());
      await assert.rejects(c.query('SELECT 1'));
    } finally {
      c.destroy();
    }
    await proxy.stop();
  });

  test('a stale socket file is replaced on start', async () => {
    const proxy = await startProxy({
      name: 'stale',
      config: passConfig('${dir}/proxy.sock'),
      prepare: async (dir) => {
        // A socket file whose owner died without removing it.
        const sock = path.join(dir, 'proxy.sock');
        const child = spawn(process.execPath, [
          '-e',
          `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`,
        ]);
        await new Promise((r) => child.once('exit', r));
        assert.ok(fs.statSync(sock).isSocket(), 'stale socket exists');
      },
    });
    proxies.push(proxy);
    const r = await mariadbCli(proxy.socket, USERS.native.user, USERS.native.password, 'SELECT CURRENT_USER()');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'native@%\n');
    await proxy.stop();
  });

  test('a live socket or a regular file at the listen path is not replaced → 78', async () => {
    const dir = fs.mkdtempSync('/tmp/myproxy-live-');
    const sock = path.join(dir, 'live.sock');
    const file = path.join(dir, 'file.sock');
    const srv = net.createServer((s) => {
      s.on('error', () => undefined); // the proxy's liveness probe hangs up at once
      s.end('still mine');
    });
    try {
      await new Promise<void>((r) => srv.listen(sock, r));
      fs.writeFileSync(file, 'keep me');
      const live = await runProxy([], { config: `mysql_listen(${JSON.stringify(sock)}, ${HANDLER})\n` });
      assert.equal(live.code, EX_CONFIG, live.stderr);
      assert.match(live.stderr, /config\.lua:1:/);
      const reg = await runProxy([], { config: `mysql_listen(${JSON.stringify(file)}, ${HANDLER})\n` });
      assert.equal(reg.code, EX_CONFIG, reg.stderr);
      assert.equal(fs.readFileSync(file, 'utf8'), 'keep me');
      // The live server still owns its socket.
      const text = await new Promise<string>((resolve, reject) => {
        const c = net.connect(sock);
        let t = '';
        c.setEncoding('utf8').on('data', (d: string) => (t += d));
        c.on('end', () => resolve(t));
        c.on('error', reject);
      });
      assert.equal(text, 'still mine');
    } finally {
      await new Promise((r) => srv.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an abstract socket (@name) is reachable under its exact name by the mariadb CLI', async () => {
    const name = `@myproxy-test-${randomBytes(6).toString('hex')}`;
    const proxy = await startProxy({ name: 'abstract', config: passConfig(name) });
    proxies.push(proxy);
    await proxy.waitForLog(new RegExp(`listening on ${name}`), 1000);
    // libmariadb connects to "@name" with the exact address length (no NUL padding).
    const r = await mariadbCli(name, USERS.native.user, USERS.native.password, 'SELECT CURRENT_USER(), DATABASE()', [
      '-D',
      'test',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'native@%\ttest\n');
    // No file appears for an abstract socket.
    assert.deepEqual(fs.readdirSync(proxy.dir).sort(), ['config.lua']);
    await proxy.stop();
  });

  test('--check binds nothing: it passes while the daemon serves the same socket and leaves no file', async () => {
    const proxy = await startProxy({ name: 'checklive', config: passConfig('${dir}/proxy.sock') });
    proxies.push(proxy);
    const r = await runProxy(['--check', '--config', proxy.configPath]);
    assert.equal(r.code, 0, r.stderr);
    // The serving daemon still owns its socket.
    const q = await mariadbCli(proxy.socket, USERS.native.user, USERS.native.password, 'SELECT 7');
    assert.equal(q.stdout, '7\n', q.stderr);
    await proxy.stop();
    const dir = fs.mkdtempSync('/tmp/myproxy-check-');
    try {
      const cfg = path.join(dir, 'config.lua');
      fs.writeFileSync(cfg, passConfig(path.join(dir, 'p.sock')));
      const c = await runProxy(['--check', '--config', cfg]);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(fs.existsSync(path.join(dir, 'p.sock')), false, '--check created no socket file');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a config that fails after mysql_listen() removes the socket file it created', async () => {
    const dir = fs.mkdtempSync('/tmp/myproxy-fail-');
    try {
      const cfg = path.join(dir, 'config.lua');
      fs.writeFileSync(cfg, passConfig(path.join(dir, 'p.sock')) + "error('late failure')\n");
      const r = await runProxy(['--config', cfg]);
      assert.equal(r.code, EX_CONFIG, r.stderr);
      assert.match(r.stderr, /late failure/);
      assert.equal(fs.existsSync(path.join(dir, 'p.sock')), false, 'socket file removed');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SIGHUP runs reload() in a coroutine and the daemon keeps serving, also when it fails', async () => {
    const proxy = await startProxy({
      name: 'sighup',
      config:
        passConfig('${dir}/proxy.sock') +
        `
reloads = 0
function reload()
  reloads = reloads + 1
  print('reload number ' .. reloads)
  mysql_resolve('localhost') -- yields (host name at runtime)
  if reloads == 2 then error('reload failure is only logged') end
end
`,
    });
    proxies.push(proxy);
    process.kill(proxy.pid, 'SIGHUP');
    await proxy.waitForLog(/reload\(\) finished/);
    assert.match(proxy.logs(), /reload number 1/);
    process.kill(proxy.pid, 'SIGHUP');
    await proxy.waitForLog(/reload\(\) failed: .*reload failure is only logged/);
    assert.ok(proxy.alive());
    const q = await mariadbCli(proxy.socket, USERS.native.user, USERS.native.password, 'SELECT 8');
    assert.equal(q.stdout, '8\n', q.stderr);
    await proxy.stop();
  });
});
