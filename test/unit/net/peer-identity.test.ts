// Unit tests for src/net/peer-identity.ts (and the addon functions it uses) with real sockets and
// real processes: credentials + pidfd at accept, the pidfd check around /proc reads (an exited
// process's data is rejected), cgroup parsing, mount points and xattrs.
// Run: node --import tsx --test test/unit/net/peer-identity.test.ts

import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { fdOf, getXattr, listenUnix, peerCredentials, peerPidfd, pidfdOpen } from '../../../src/net/native.js';
import {
  cgroupDirectory,
  cgroupParentPath,
  closePidfd,
  hasDotDotSegment,
  parseCgroupFile,
  parseCgroupMounts,
  pidfdPid,
  readCgroupXattr,
  readPeerCgroup,
  readPeerIdentity,
  readProcFile,
  type CgroupRef,
} from '../../../src/net/peer-identity.js';

const PYTHON = '/usr/bin/python3';

let tmpDir = '';
const children: ChildProcess[] = [];
const pidfds: number[] = [];

before(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-peerid-'));
});

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const fd of pidfds) closePidfd(fd);
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

const b = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));
const ref = (hierarchy: CgroupRef['hierarchy'], p: string): CgroupRef => ({ hierarchy, path: b(p) });

/** Spawn and remember a child (killed at the end). */
function track(child: ChildProcess): ChildProcess {
  children.push(child);
  return child;
}

async function killAndReap(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited; // Node has waitpid()ed the child by now: its PID is free
}

/** A Unix socket server in tmpDir; resolves with the server and its path. */
async function unixServer(name: string): Promise<{ server: net.Server; file: string; accepted: Promise<net.Socket> }> {
  const file = path.join(tmpDir, name);
  const server = net.createServer({ pauseOnConnect: true });
  const accepted = once(server, 'connection').then(([s]) => s as net.Socket);
  server.listen(file);
  await once(server, 'listening');
  return { server, file, accepted };
}

/** A python3 child that connects to `file`, prints "connected" and then waits for stdin to close. */
async function pythonPeer(file: string): Promise<ChildProcess> {
  const child = track(
    spawn(
      PYTHON,
      [
        '-c',
        'import socket, sys\n' +
          's = socket.socket(socket.AF_UNIX)\n' +
          's.connect(sys.argv[1])\n' +
          'print("connected", flush=True)\n' +
          'sys.stdin.read()\n',
        file,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    ),
  );
  let out = '';
  child.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (s: string) => {
      out += s;
      if (out.includes('connected')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`python3 exited (${String(code)}) before connecting`)));
  });
  return child;
}

describe('parseCgroupFile', () => {
  test('cgroup v2: the 0:: line', () => {
    assert.deepEqual(
      parseCgroupFile(b('0::/user.slice/user-1000.slice/session-42.scope\n')),
      ref('unified', '/user.slice/user-1000.slice/session-42.scope'),
    );
  });

  test('hybrid layout: the 0:: line wins over name=systemd', () => {
    const text = '9:name=systemd:/system.slice/a.service\n8:pids:/\n4:memory:/x\n0::/system.slice/b.service\n';
    assert.deepEqual(parseCgroupFile(b(text)), ref('unified', '/system.slice/b.service'));
  });

  test('cgroup v1 only: falls back to the name=systemd line', () => {
    const text = '12:cpu,cpuacct:/\n1:name=systemd:/system.slice/mariadb.service\n';
    assert.deepEqual(parseCgroupFile(b(text)), ref('systemd', '/system.slice/mariadb.service'));
  });

  test('no usable line: null', () => {
    assert.equal(parseCgroupFile(b('')), null);
    assert.equal(parseCgroupFile(b('3:cpuset:/\n2:memory:/foo\n')), null);
    assert.equal(parseCgroupFile(b('0::relative\n')), null, 'a path must start with /');
    assert.equal(parseCgroupFile(b('garbage\n0:\n')), null);
  });

  test('paths are bytes: colons and non-UTF-8 bytes survive', () => {
    const raw = Buffer.concat([b('0::/a:b/'), b([0xff, 0xfe, 0x20]), b('c\n')]);
    const r = parseCgroupFile(raw);
    assert.equal(r?.hierarchy, 'unified');
    assert.deepEqual(r.path, Buffer.concat([b('/a:b/'), b([0xff, 0xfe, 0x20]), b('c')]));
  });

  test('no trailing newline', () => {
    assert.deepEqual(parseCgroupFile(b('0::/x')), ref('unified', '/x'));
  });
});

describe('cgroup paths and mounts', () => {
  test('cgroupParentPath walks up to / and then gives null', () => {
    const chain: string[] = [];
    for (let p: Buffer | null = b('/a/b.slice/c.scope'); p !== null; p = cgroupParentPath(p)) chain.push(p.toString());
    assert.deepEqual(chain, ['/a/b.slice/c.scope', '/a/b.slice', '/a', '/']);
    assert.equal(cgroupParentPath(b('/')), null);
  });

  test('hasDotDotSegment', () => {
    assert.equal(hasDotDotSegment(b('/a/../b')), true);
    assert.equal(hasDotDotSegment(b('/..')), true);
    assert.equal(hasDotDotSegment(b('/a..b/..c/.')), false);
    assert.equal(hasDotDotSegment(b('/')), false);
  });

  test('readCgroupXattr refuses paths with .. segments', () => {
    assert.throws(() => readCgroupXattr(ref('unified', '/../../etc'), b('x')), /"\.\." segment/);
  });

  test('parseCgroupMounts: pure v2, hybrid, escapes, non-root mounts', () => {
    const pure = '30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
    assert.deepEqual(parseCgroupMounts(pure), { unified: b('/sys/fs/cgroup') });
    const hybrid =
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n' +
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n' +
      '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n' +
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n';
    assert.deepEqual(parseCgroupMounts(hybrid), {
      unified: b('/sys/fs/cgroup/unified'),
      systemd: b('/sys/fs/cgroup/systemd'),
    });
    const odd =
      '50 23 0:40 /sub /mnt/sub rw - cgroup2 cgroup2 rw\n' + // not the hierarchy's root: ignored
      '51 23 0:40 / /mnt/my\\040cg rw shared:9 master:2 - cgroup2 cgroup2 rw\n';
    assert.deepEqual(parseCgroupMounts(odd), { unified: b('/mnt/my cg') });
  });

  test('cgroupDirectory joins the mount point of this machine and the path', () => {
    const mounts = parseCgroupMounts(fs.readFileSync('/proc/self/mountinfo', 'latin1'));
    const root = mounts.unified?.toString() ?? '/sys/fs/cgroup';
    assert.equal(cgroupDirectory(ref('unified', '/')).toString(), root);
    assert.equal(cgroupDirectory(ref('unified', '/a/b')).toString(), `${root}/a/b`);
  });
});

describe('peer identity at accept', () => {
  test('TCP: no credentials, no pidfd', async () => {
    const server = net.createServer({ pauseOnConnect: true });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection').then(([s]) => s as net.Socket);
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const socket = await accepted;
    try {
      const fd = fdOf(socket);
      assert.equal(peerCredentials(fd), null);
      assert.equal(peerPidfd(fd), null);
      assert.equal(readPeerIdentity(fd), null);
    } finally {
      socket.destroy();
      client.destroy();
      server.close();
    }
  });

  test('Unix socket, peer in this process: our pid/uid/gid and a pidfd of us', async () => {
    const { server, file, accepted } = await unixServer('self.sock');
    const client = net.connect(file);
    const socket = await accepted;
    try {
      const id = readPeerIdentity(fdOf(socket));
      assert.ok(id !== null);
      assert.equal(id.pid, process.pid);
      assert.equal(id.uid, process.getuid!());
      assert.equal(id.gid, process.getgid!());
      assert.ok(id.pidfd !== undefined, 'a pidfd (SO_PEERPIDFD or pidfd_open)');
      pidfds.push(id.pidfd);
      assert.equal(pidfdPid(id.pidfd), process.pid);
      const own = parseCgroupFile(fs.readFileSync('/proc/self/cgroup'));
      assert.deepEqual(readPeerCgroup(id.pid, id.pidfd), own);
    } finally {
      socket.destroy();
      client.destroy();
      server.close();
    }
  });

  test('Unix socket, peer in another process: its pid; once it has exited, its /proc data is rejected', async () => {
    const { server, file, accepted } = await unixServer('child.sock');
    const child = await pythonPeer(file);
    const socket = await accepted;
    try {
      const id = readPeerIdentity(fdOf(socket));
      assert.ok(id !== null && id.pidfd !== undefined);
      pidfds.push(id.pidfd);
      assert.equal(id.pid, child.pid);
      assert.equal(pidfdPid(id.pidfd), child.pid);
      const alive = readPeerCgroup(id.pid, id.pidfd);
      assert.deepEqual(alive, parseCgroupFile(fs.readFileSync(`/proc/${child.pid!}/cgroup`)));
      assert.ok(readProcFile(id.pid, id.pidfd, 'status')?.toString().includes(`Pid:\t${child.pid!}\n`));

      await killAndReap(child);
      assert.equal(pidfdPid(id.pidfd), undefined, 'fdinfo Pid: -1 after exit');
      assert.equal(readProcFile(id.pid, id.pidfd, 'cgroup'), null);
      assert.equal(readPeerCgroup(id.pid, id.pidfd), null);
    } finally {
      socket.destroy();
      server.close();
    }
  });

  test('peer exited before accept: its pid from SO_PEERCRED, but no usable pidfd', async () => {
    const file = path.join(tmpDir, 'early.sock');
    // A listening socket nobody accepts on yet: the connection waits in the backlog.
    const listenFd = listenUnix(b(file), false, 16, 0o600);
    const child = await pythonPeer(file);
    const childPid = child.pid!;
    await killAndReap(child);

    const server = net.createServer({ pauseOnConnect: true });
    const accepted = once(server, 'connection').then(([s]) => s as net.Socket);
    server.listen({ fd: listenFd });
    const socket = await accepted;
    try {
      const id = readPeerIdentity(fdOf(socket));
      assert.ok(id !== null);
      assert.equal(id.pid, childPid, 'SO_PEERCRED keeps the pid of connect()');
      if (id.pidfd !== undefined) {
        // Newer kernels hand out a pidfd of the exited process; it shows Pid: -1.
        pidfds.push(id.pidfd);
        assert.equal(pidfdPid(id.pidfd), undefined);
        assert.equal(readPeerCgroup(id.pid, id.pidfd), null);
      }
    } finally {
      socket.destroy();
      server.close();
      fs.rmSync(file, { force: true });
    }
  });
});

describe('pidfd checks (recycled / exited PIDs)', () => {
  test('pidfd of `sleep 10`: data while it lives, rejected after it exited', async () => {
    const child = track(spawn('sleep', ['10'], { stdio: 'ignore' }));
    await once(child, 'spawn');
    const pid = child.pid!;
    const pidfd = pidfdOpen(pid);
    assert.ok(pidfd !== null);
    pidfds.push(pidfd);
    assert.equal(pidfdPid(pidfd), pid);
    assert.ok(readProcFile(pid, pidfd, 'cgroup') !== null);
    assert.ok(readPeerCgroup(pid, pidfd) !== null);

    await killAndReap(child);
    // The PID is free now and may belong to another process at any moment: not the same process.
    assert.equal(pidfdPid(pidfd), undefined);
    assert.equal(readProcFile(pid, pidfd, 'cgroup'), null);
    assert.equal(readPeerCgroup(pid, pidfd), null);
  });

  test('a PID that now belongs to another process is not attributed to the pidfd', async () => {
    const child = track(spawn('sleep', ['10'], { stdio: 'ignore' }));
    await once(child, 'spawn');
    const pidfd = pidfdOpen(child.pid!);
    assert.ok(pidfd !== null);
    pidfds.push(pidfd);
    // As if the client's PID had been recycled by this very (live) test process:
    assert.equal(readProcFile(process.pid, pidfd, 'cgroup'), null);
    assert.equal(readPeerCgroup(process.pid, pidfd), null);
    await killAndReap(child);
  });

  test('pidfdOpen of a PID nobody has: null; pidfdPid of a non-pidfd: undefined', () => {
    assert.equal(pidfdOpen(0x3fffffff), null);
    const fd = fs.openSync('/dev/null', 'r');
    try {
      assert.equal(pidfdPid(fd), undefined);
      assert.equal(readProcFile(process.pid, fd, 'cgroup'), null);
    } finally {
      fs.closeSync(fd);
    }
    assert.equal(pidfdPid(-1), undefined);
  });

  test('closePidfd never throws', () => {
    const pidfd = pidfdOpen(process.pid);
    assert.ok(pidfd !== null);
    closePidfd(pidfd);
    closePidfd(pidfd);
  });
});

describe('getXattr', () => {
  test('values, absent names, missing files, limits', async (t) => {
    const file = path.join(tmpDir, 'xattr-file');
    fs.writeFileSync(file, '');
    const set = spawn(
      PYTHON,
      ['-c', 'import os, sys\n' + 'os.setxattr(sys.argv[1], "user.myproxy_t", b"\\x00\\xffval")\n', file],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    set.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(set, 'exit')) as [number | null];
    if (code !== 0 && /Operation not supported/.test(err)) {
      const reason = `the file system of ${tmpDir} has no user xattrs: ${err.trim()}`;
      t.diagnostic(reason);
      t.skip(reason);
      return;
    }
    assert.equal(code, 0, err);

    assert.deepEqual(getXattr(file, 'user.myproxy_t'), b([0x00, 0xff, 0x76, 0x61, 0x6c]));
    assert.deepEqual(getXattr(b(file), b('user.myproxy_t')), b([0x00, 0xff, 0x76, 0x61, 0x6c]), 'Uint8Array arguments');
    assert.equal(getXattr(file, 'user.absent'), null);
    assert.equal(getXattr(path.join(tmpDir, 'no-such-file'), 'user.myproxy_t'), null);
    assert.throws(
      () => getXattr(file, 'user.a\0b'),
      (e: Error & { code?: string }) => e.code === 'EINVAL',
    );
    assert.throws(
      () => getXattr(file, 'x'.repeat(300)),
      (e: Error & { code?: string }) => e.code === 'ENAMETOOLONG',
    );
    assert.throws(() => getXattr(file, 42 as unknown as string), TypeError);
  });

  test('values up to 4096 bytes; a longer one throws ERANGE', async (t) => {
    // tmpfs takes large xattr values where ext4 may not; /dev/shm is a tmpfs on Debian.
    const dir = fs.mkdtempSync('/dev/shm/myproxy-xattr-');
    try {
      const file = path.join(dir, 'f');
      fs.writeFileSync(file, '');
      const set = spawn(
        PYTHON,
        [
          '-c',
          'import os, sys\n' +
            'os.setxattr(sys.argv[1], "user.myproxy_max", b"m" * 4096)\n' +
            'os.setxattr(sys.argv[1], "user.myproxy_big", b"v" * 5000)\n',
          file,
        ],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let err = '';
      set.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const [code] = (await once(set, 'exit')) as [number | null];
      if (code !== 0) {
        const reason = `cannot set 4096- and 5000-byte user xattrs on /dev/shm: ${err.trim().split('\n').pop() ?? ''}`;
        t.diagnostic(reason);
        t.skip(reason);
        return;
      }
      assert.deepEqual(getXattr(file, 'user.myproxy_max'), Buffer.alloc(4096, 'm'));
      assert.throws(
        () => getXattr(file, 'user.myproxy_big'),
        (e: Error & { code?: string; syscall?: string }) =>
          e.code === 'ERANGE' && e.syscall === 'lgetxattr' && /lgetxattr\(".*", "user\.myproxy_big"\)/.test(e.message),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
