// Client identity as config.lua sees it, with real client processes: pid/uid/gid of a client
// running as another user (setpriv + the mariadb CLI), client.cgroup.path compared with the
// client's own /proc/PID/cgroup, the parent chain, xattrs of a cgroup created for the test, and
// stale cgroup objects. No backend is needed: every login is answered by Lua.

import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';

import { guard, runCommand, startProxy, type CliResult, type Proxy } from '../helpers/proxy.js';

const PYTHON = '/usr/bin/python3';
const NOBODY = 65534;

/** Run a command to completion (killed after 30 s). */
function run(cmd: string, args: readonly string[], onSpawn?: (child: ChildProcess) => void): Promise<CliResult> {
  return runCommand(cmd, args, onSpawn === undefined ? {} : { onSpawn });
}

/** The mariadb CLI against `socket` (it gets an ERR from Lua; the message is in stderr). */
function mariadbArgs(socket: string): string[] {
  return ['--no-defaults', '--protocol=socket', '-S', socket, '-u', 'someone', '-ppw', '-e', 'SELECT 1'];
}

/** The path of the `0::` line of /proc/<pid>/cgroup (read by the test itself). */
function procCgroupV2(pid: number): string {
  const line = fs
    .readFileSync(`/proc/${pid}/cgroup`, 'latin1')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  assert.ok(line !== undefined, `/proc/${pid}/cgroup has a 0:: line`);
  return line.slice(3);
}

/** Where cgroup v2 is mounted (first cgroup2 line of /proc/self/mountinfo), or undefined. */
function cgroup2Mount(): string | undefined {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'latin1').split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined || !right.startsWith('cgroup2 ')) continue;
    const fields = left.split(' ');
    if (fields[3] === '/')
      return fields[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  }
  return undefined;
}

/** All prefixes of a cgroup path, from itself up to "/". */
function chainOf(p: string): string[] {
  const chain = [p];
  while (p !== '/') {
    p = p.slice(0, p.lastIndexOf('/')) || '/';
    chain.push(p);
  }
  return chain;
}

/**
 * A python3 client that (optionally) moves itself into a cgroup, connects to `socket`, sends
 * nothing and waits until stdin closes. Resolves once it is connected.
 */
async function idleClient(socket: string, cgroupProcs = ''): Promise<ChildProcess> {
  const script =
    'import os, socket, sys\n' +
    'if sys.argv[2]:\n' +
    '    with open(sys.argv[2], "w") as f:\n' +
    '        f.write(str(os.getpid()))\n' +
    's = socket.socket(socket.AF_UNIX)\n' +
    's.connect(sys.argv[1])\n' +
    'print("connected", flush=True)\n' +
    'sys.stdin.read()\n';
  const child = spawn(PYTHON, ['-c', script, socket, cgroupProcs], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  await guard(
    new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.includes('connected')) resolve();
      });
      child.once('exit', (code) =>
        reject(new Error(`client exited (${String(code)}) before connecting: ${err.trim()}`)),
      );
    }),
    'python client connect',
  );
  return child;
}

async function stopClient(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** Lua: hex of a string, or "nil". */
const LUA_HEX = `local function hex(s)
  if s == nil then return 'nil' end
  return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))
end`;

/** Parse the `CG pid=... path=...|chain=...|...` line the cgroup listener prints. */
function cgLine(log: string, pid: number): Record<string, string> {
  const m = new RegExp(`^CG pid=${pid} (.*)$`, 'm').exec(log);
  assert.ok(m !== null, `a CG line for pid ${pid} in:\n${log}`);
  return Object.fromEntries(
    m[1]!.split('|').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

describe('client identity', () => {
  let proxy: Proxy | undefined;
  const sock = (name: string): string => `${proxy!.dir}/${name}.sock`;

  before(async () => {
    proxy = await startProxy({
      name: 'ident',
      // The clients run as nobody: they must be able to reach the sockets.
      prepare: (dir) => fs.chmodSync(dir, 0o755),
      config: (dir) => `
${LUA_HEX}

mysql_listen('${dir}/ident.sock', {
  on_handshake_response = function(client, hr)
    return client:err('IDENT ' .. tostring(client.pid) .. ' ' .. tostring(client.uid) .. ' ' .. tostring(client.gid))
  end,
})

mysql_listen('${dir}/cgroup.sock', {
  on_connect = function(client)
    local cg = client.cgroup
    if cg == nil then
      print('CG pid=' .. tostring(client.pid) .. ' nil')
      return
    end
    local chain, c = {}, cg
    while c do chain[#chain + 1] = c.path; c = c.parent end
    local x = cg.xattr
    local parent = cg.parent
    print('CG pid=' .. tostring(client.pid)
      .. ' path=' .. cg.path
      .. '|chain=' .. table.concat(chain, ',')
      .. '|unknown=' .. tostring(cg.no_such_key) .. ',' .. tostring(cg[1])
      .. '|type=' .. type(cg) .. ',' .. tostring(cg)
      .. '|short=' .. hex(x.myproxy_account)
      .. '|full=' .. hex(x['user.myproxy_account'])
      .. '|eq=' .. tostring(x.myproxy_account == 'acct' and x['user.myproxy_account'] == 'acct')
      .. '|absent=' .. hex(x.myproxy_absent)
      .. '|bin=' .. hex(x.myproxy_bin)
      .. '|parent=' .. hex(parent and parent.xattr.myproxy_parent))
  end,
  on_handshake_response = function(client, hr) return client:err('no') end,
})

mysql_listen('${dir}/stale.sock', {
  on_handshake_response = function(client, hr)
    local msg
    if saved_cgroup then
      local _, e1 = pcall(function() return saved_cgroup.path end)
      local _, e2 = pcall(function() return saved_xattr.myproxy_account end)
      msg = 'STALE ' .. tostring(e1) .. ' / ' .. tostring(e2)
    else
      msg = 'FIRST ' .. tostring(client.cgroup ~= nil)
    end
    saved_cgroup = client.cgroup
    saved_xattr = saved_cgroup and saved_cgroup.xattr
    return client:err(msg)
  end,
})
`,
    });
  });

  after(async () => {
    await proxy?.stop();
  });

  test('a client running as nobody (setpriv): Lua sees exactly its pid, uid 65534, gid 65534', async () => {
    let pid = 0;
    const r = await run(
      'setpriv',
      [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'mariadb', ...mariadbArgs(sock('ident'))],
      (child) => (pid = child.pid ?? 0),
    );
    const m = /IDENT (\S+) (\S+) (\S+)/.exec(r.stderr);
    assert.ok(m !== null, `client:err message in the CLI's stderr: ${r.stderr}`);
    // setpriv execs mariadb: the spawned child's pid is the client's.
    assert.deepEqual(m.slice(1), [String(pid), String(NOBODY), String(NOBODY)]);
  });

  test('a client running as root: uid 0, gid 0', async () => {
    let pid = 0;
    const r = await run('mariadb', mariadbArgs(sock('ident')), (child) => (pid = child.pid ?? 0));
    assert.match(r.stderr, new RegExp(`IDENT ${pid} 0 0\\b`));
  });

  test("client.cgroup.path is the 0:: path of the client's /proc/PID/cgroup; parent walks up to / then nil", async () => {
    const since = proxy!.logs().length;
    const child = await idleClient(sock('cgroup'));
    try {
      await proxy!.waitForLog(new RegExp(`^CG pid=${child.pid!} `, 'm'), 10_000, since);
      const expected = procCgroupV2(child.pid!); // read while the client is still connected
      const f = cgLine(proxy!.logs().slice(since), child.pid!);
      assert.equal(f['path'], expected);
      assert.deepEqual(f['chain']!.split(','), chainOf(expected));
      assert.equal(f['unknown'], 'nil,nil', 'unknown keys of a cgroup are nil');
      assert.equal(f['type'], `userdata,cgroup(${expected})`);
    } finally {
      await stopClient(child);
    }
  });

  test('cgroup.xattr of a cgroup made for the test (user.myproxy_account = "acct")', async (t) => {
    const env = prepareCgroup(t);
    if (env === undefined) return;
    const since = proxy!.logs().length;
    let child: ChildProcess | undefined;
    try {
      try {
        child = await idleClient(sock('cgroup'), path.join(env.leaf, 'cgroup.procs'));
      } catch (e) {
        skipBecause(t, `cannot move a process into ${env.leaf}: ${(e as Error).message}`);
        return;
      }
      await proxy!.waitForLog(new RegExp(`^CG pid=${child.pid!} `, 'm'), 10_000, since);
      const expected = procCgroupV2(child.pid!);
      assert.equal(expected, `${env.relative}/leaf`, 'the client runs in the test cgroup');
      const f = cgLine(proxy!.logs().slice(since), child.pid!);
      assert.equal(f['path'], expected);
      assert.deepEqual(f['chain']!.split(','), chainOf(expected));
      const hexOf = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
      assert.equal(f['short'], hexOf('acct'), 'xattr.myproxy_account → user.myproxy_account');
      assert.equal(f['full'], hexOf('acct'), "xattr['user.myproxy_account']");
      assert.equal(f['eq'], 'true', "client.cgroup.xattr.myproxy_account == 'acct' in Lua");
      assert.equal(f['absent'], 'nil');
      assert.equal(f['bin'], '00ff0a41', 'binary values arrive byte for byte');
      assert.equal(f['parent'], hexOf('par'), "the parent's own xattr");
    } finally {
      if (child !== undefined) await stopClient(child);
      await env.cleanup();
    }
  });

  test('cgroup objects kept beyond their connection are stale', async () => {
    const first = await run('mariadb', mariadbArgs(sock('stale')));
    assert.match(first.stderr, /FIRST true/);
    const second = await run('mariadb', mariadbArgs(sock('stale')));
    assert.match(second.stderr, /STALE .*Stale object \/ .*Stale object/);
  });

  test('the pidfd taken at accept is closed when the connection ends', async () => {
    const daemon = proxy!.pid;
    const pidfdsOf = (): number[] =>
      fs
        .readdirSync(`/proc/${daemon}/fdinfo`)
        .filter((fd) => {
          try {
            return /^Pid:/m.test(fs.readFileSync(`/proc/${daemon}/fdinfo/${fd}`, 'latin1'));
          } catch {
            return false; // closed meanwhile
          }
        })
        .map(Number);
    const waitFor = async (want: (n: number) => boolean, what: string): Promise<number[]> => {
      for (let i = 0; ; i++) {
        const fds = pidfdsOf();
        if (want(fds.length)) return fds;
        if (i >= 100) assert.fail(`${what}: the daemon holds pidfds ${fds.join(',')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const before = await waitFor((n) => n === 0, 'no client connected');
    assert.deepEqual(before, []);
    const child = await idleClient(sock('cgroup'));
    try {
      await waitFor((n) => n === 1, 'one client connected');
    } finally {
      await stopClient(child);
    }
    await waitFor((n) => n === 0, 'after the client went away');
  });

  test('the proxy logged no errors', () => {
    assert.doesNotMatch(proxy!.logs(), /internal error|Lua error/);
  });
});

interface TestCgroup {
  /** The test cgroup's directory (in the cgroup2 mount) and its leaf child. */
  readonly dir: string;
  readonly leaf: string;
  /** The test cgroup's path as /proc/PID/cgroup shows it, e.g. "/myproxy-test-123-ab". */
  readonly relative: string;
  cleanup(): Promise<void>;
}

function skipBecause(t: TestContext, reason: string): undefined {
  // The only reason to skip: this machine does not let us create cgroups or set their xattrs.
  console.log(`# identity.test.ts: cgroup xattr test skipped: ${reason}`);
  t.diagnostic(reason);
  t.skip(reason);
  return undefined;
}

/**
 * Create <cgroup2 mount>/myproxy-test-X/leaf with user.myproxy_account="acct" and
 * user.myproxy_bin="\0\xff\nA" on the leaf and user.myproxy_parent="par" on the parent. Skips
 * the test (saying why) when the machine does not allow it.
 */
function prepareCgroup(t: TestContext): TestCgroup | undefined {
  const mount = cgroup2Mount();
  if (mount === undefined) {
    skipBecause(t, 'no cgroup2 file system is mounted (/proc/self/mountinfo)');
    return;
  }
  const relative = `/myproxy-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const dir = mount + relative;
  const leaf = path.join(dir, 'leaf');
  try {
    fs.mkdirSync(dir);
  } catch (e) {
    skipBecause(t, `cannot create a cgroup (mkdir ${dir}): ${(e as Error).message}`);
    return;
  }
  const cleanup = async (): Promise<void> => {
    // A killed process leaves its cgroup shortly after it was reaped: retry for a while.
    for (const d of [leaf, dir]) {
      for (let i = 0; ; i++) {
        try {
          fs.rmdirSync(d);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (i >= 50) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  };
  try {
    fs.mkdirSync(leaf);
  } catch (e) {
    void cleanup();
    skipBecause(t, `cannot create a child cgroup (mkdir ${leaf}): ${(e as Error).message}`);
    return;
  }
  const set = spawnSyncPython(
    'import os, sys\n' +
      'os.setxattr(sys.argv[1], "user.myproxy_account", b"acct")\n' +
      'os.setxattr(sys.argv[1], "user.myproxy_bin", b"\\x00\\xff\\nA")\n' +
      'os.setxattr(sys.argv[2], "user.myproxy_parent", b"par")\n',
    [leaf, dir],
  );
  if (set !== '') {
    void cleanup();
    skipBecause(t, `cannot set user xattrs on cgroup directories: ${set}`);
    return;
  }
  return { dir, leaf, relative, cleanup };
}

/** Run a python3 snippet synchronously; "" on success, else its last stderr line. */
function spawnSyncPython(script: string, args: readonly string[]): string {
  const r = spawnSync(PYTHON, ['-c', script, ...args], { encoding: 'utf8' });
  if (r.status === 0) return '';
  return (r.stderr || String(r.error ?? `exit ${String(r.status)}`)).trim().split('\n').pop() ?? 'failed';
}
