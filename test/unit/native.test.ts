// Unit tests for the N-API addon (native/myproxy_native.c) via src/net/native.ts.
// Run: node --import tsx --test test/unit/native.test.ts

import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { closeFd, connectUnix, fdOf, listenUnix, peerCredentials } from '../../src/net/native.js';

const execFileAsync = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const SOCKET_FILE_MODE = 0o666;

let tmpDir = '';
let nameCounter = 0;
const servers: net.Server[] = [];
const children: ChildProcess[] = [];

before(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-native-'));
});

after(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

function abstractName(): string {
  nameCounter += 1;
  return `myproxy-test-${process.pid}-${nameCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

function socketPath(base: string): string {
  return path.join(tmpDir, base);
}

/** Asserts that fn throws a plain Error with the given errno code (and message). */
function assertErrno(fn: () => unknown, code: string, message?: RegExp): Error {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, `expected an Error with code ${code}, got ${String(caught)}`);
  assert.equal((caught as Error & { code?: unknown }).code, code, caught.message);
  if (message !== undefined) assert.match(caught.message, message);
  return caught;
}

/** net.Server on an fd from listenUnix; replies "pong:<everything received>" at EOF. */
async function pongServerOnFd(fd: number, onConnection?: (socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    onConnection?.(socket);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => socket.end(`pong:${Buffer.concat(chunks).toString()}`));
    socket.on('error', () => undefined);
  });
  servers.push(server);
  server.listen({ fd });
  await once(server, 'listening');
  return server;
}

/** Sends `payload` on a connected socket, half-closes, returns all it receives. */
async function exchange(socket: net.Socket, payload: string): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = once(socket, 'end');
  socket.end(payload);
  await ended;
  socket.destroy();
  return Buffer.concat(chunks).toString();
}

/** Python client (not Node/libuv): connects to \0name with the exact length. */
const PY_ABSTRACT_CLIENT = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(b"\\0" + sys.argv[1].encode())
s.sendall(sys.argv[2].encode())
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
`;

/** Lists the bound names in /proc/net/unix ("@name" for abstract ones). */
function boundUnixNames(): string[] {
  return fs
    .readFileSync('/proc/net/unix', 'latin1')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/)[7])
    .filter((name): name is string => name !== undefined);
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Open-file flags (octal in /proc/self/fdinfo) of one of our fds. */
function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const match = /^flags:\s*([0-7]+)$/m.exec(info);
  assert.ok(match?.[1] !== undefined, info);
  return parseInt(match[1], 8);
}

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

describe('listenUnix (abstract)', () => {
  it('binds the exact name: a Python client reaches it and data round-trips through net.Server', async () => {
    const name = abstractName();
    const fd = listenUnix(Buffer.from(name), true, 16, SOCKET_FILE_MODE);
    assert.ok(Number.isInteger(fd) && fd > 2);
    // The kernel lists exactly "@name", not "@name" followed by NUL padding.
    assert.ok(boundUnixNames().includes(`@${name}`), 'exact abstract name in /proc/net/unix');
    await pongServerOnFd(fd);

    const { stdout } = await execFileAsync(PYTHON, ['-c', PY_ABSTRACT_CLIENT, name, 'ping'], { timeout: 10_000 });
    assert.equal(stdout, 'pong:ping');
  });

  it('creates a non-blocking, close-on-exec socket with SO_PASSCRED and the exact address', async () => {
    const name = abstractName();
    const fd = listenUnix(new TextEncoder().encode(name), true, 8, 0);
    try {
      const flags = fdFlags(fd);
      assert.equal(flags & O_NONBLOCK, O_NONBLOCK, 'O_NONBLOCK');
      assert.equal(flags & O_CLOEXEC, O_CLOEXEC, 'O_CLOEXEC');
      // Hand the fd to Python as its fd 3 to inspect it with getsockopt/getsockname.
      const script = `
import socket, sys
s = socket.socket(fileno=3)
sys.stdout.write(repr((s.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED),
                       s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
                       s.getsockname())))
s.detach()
`;
      const child = spawn(PYTHON, ['-c', script], { stdio: ['ignore', 'pipe', 'inherit', fd] });
      children.push(child);
      let out = '';
      child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const [exitCode] = (await once(child, 'exit')) as [number | null];
      assert.equal(exitCode, 0);
      assert.equal(out, `(1, 1, b'\\x00${name}')`);
    } finally {
      closeFd(fd);
    }
  });

  it('fails with EADDRINUSE when the abstract name is taken', () => {
    const name = abstractName();
    const fd = listenUnix(Buffer.from(name), true, 8, 0);
    try {
      assertErrno(() => listenUnix(Buffer.from(name), true, 8, 0), 'EADDRINUSE', new RegExp(`^bind\\("@${name}"\\): `));
    } finally {
      closeFd(fd);
    }
    // Released by close: can be bound again.
    closeFd(listenUnix(Buffer.from(name), true, 8, 0));
  });

  it('accepts 107-byte names and rejects longer ones with ENAMETOOLONG', () => {
    const base = abstractName();
    const ok = (base + 'x'.repeat(107)).slice(0, 107);
    closeFd(listenUnix(Buffer.from(ok), true, 8, 0));
    const tooLong = ok + 'y';
    assertErrno(() => listenUnix(Buffer.from(tooLong), true, 8, 0), 'ENAMETOOLONG', /^bind\("@myproxy-test-/);
    assertErrno(() => connectUnix(Buffer.from(tooLong), true), 'ENAMETOOLONG', /^connect\("@/);
  });

  it('rejects an empty name with EINVAL', () => {
    assertErrno(() => listenUnix(Buffer.alloc(0), true, 8, 0), 'EINVAL');
    assertErrno(() => listenUnix(Buffer.alloc(0), false, 8, 0), 'EINVAL');
    assertErrno(() => connectUnix(Buffer.alloc(0), true), 'EINVAL');
  });
});

describe('listenUnix (path)', () => {
  it('chmods the socket file to the requested mode', async () => {
    const p666 = socketPath('mode666.sock');
    const fd = listenUnix(Buffer.from(p666), false, 16, 0o666);
    const st = fs.statSync(p666);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o7777, 0o666);
    await pongServerOnFd(fd);
    assert.equal(await exchange(net.createConnection(p666), 'hi'), 'pong:hi');

    const p600 = socketPath('mode600.sock');
    closeFd(listenUnix(Buffer.from(p600), false, 16, 0o600));
    assert.equal(fs.statSync(p600).mode & 0o7777, 0o600);
  });

  it('replaces a stale socket file left by a closed listener', async () => {
    const p = socketPath('stale.sock');
    closeFd(listenUnix(Buffer.from(p), false, 16, 0o666)); // closed without unlink
    assert.ok(fs.lstatSync(p).isSocket(), 'stale socket file left behind');
    assertErrno(() => connectUnix(Buffer.from(p), false), 'ECONNREFUSED');
    // A second link keeps the old inode alive, so its number cannot be reused.
    const oldLink = socketPath('stale.sock.old');
    fs.linkSync(p, oldLink);

    const fd = listenUnix(Buffer.from(p), false, 16, 0o640);
    const st = fs.lstatSync(p);
    assert.ok(st.isSocket());
    assert.notEqual(st.ino, fs.lstatSync(oldLink).ino, 'a new socket file');
    assert.equal(fs.lstatSync(oldLink).nlink, 1, 'the stale file was unlinked');
    assert.equal(st.mode & 0o7777, 0o640);
    await pongServerOnFd(fd);
    assert.equal(await exchange(net.createConnection(p), 'again'), 'pong:again');
  });

  it('does not steal a live socket (EADDRINUSE)', async () => {
    const p = socketPath('live.sock');
    const fd = listenUnix(Buffer.from(p), false, 16, 0o666);
    await pongServerOnFd(fd);
    const before = fs.lstatSync(p);

    assertErrno(
      () => listenUnix(Buffer.from(p), false, 16, 0o666),
      'EADDRINUSE',
      /^bind\(".*live\.sock"\): .*in use by another process/,
    );
    assert.equal(fs.lstatSync(p).ino, before.ino, 'socket file untouched');
    assert.equal(await exchange(net.createConnection(p), 'still'), 'pong:still');
  });

  it('does not steal a socket another process listens on (EADDRINUSE)', async () => {
    const p = socketPath('socat.sock');
    const child = spawn('socat', [`UNIX-LISTEN:${p},fork`, 'EXEC:cat'], { stdio: 'ignore' });
    children.push(child);
    await waitFor(() => boundUnixNames().includes(p), 'socat to listen');
    assertErrno(() => listenUnix(Buffer.from(p), false, 16, 0o666), 'EADDRINUSE', /in use by another process/);
    assert.ok(fs.lstatSync(p).isSocket());
    child.kill('SIGTERM');
    await once(child, 'exit');
  });

  it('never deletes a regular file or a directory at the path (EEXIST)', () => {
    const file = socketPath('regular-file');
    fs.writeFileSync(file, 'keep me');
    assertErrno(
      () => listenUnix(Buffer.from(file), false, 16, 0o666),
      'EEXIST',
      /^bind\(".*regular-file"\): .*exists and is not a socket$/,
    );
    assert.equal(fs.readFileSync(file, 'utf8'), 'keep me');

    const dir = socketPath('a-directory');
    fs.mkdirSync(dir);
    assertErrno(() => listenUnix(Buffer.from(dir), false, 16, 0o666), 'EEXIST', /not a socket/);
    assert.ok(fs.statSync(dir).isDirectory());
  });

  it('accepts a 107-byte path and rejects a 108-byte one with ENAMETOOLONG', () => {
    const prefix = path.join(tmpDir, 'n');
    assert.ok(prefix.length < 100, `tmpdir too long for this test: ${prefix}`);
    const p107 = prefix + 'x'.repeat(107 - prefix.length);
    assert.equal(Buffer.byteLength(p107), 107);
    closeFd(listenUnix(Buffer.from(p107), false, 8, 0o600));
    assert.ok(fs.lstatSync(p107).isSocket());

    const p108 = p107 + 'y';
    assertErrno(() => listenUnix(Buffer.from(p108), false, 8, 0o600), 'ENAMETOOLONG', /File name too long/);
    assert.equal(fs.existsSync(p108), false);
  });

  it('rejects a path containing a NUL byte (EINVAL) and reports errors with the path', () => {
    assertErrno(() => listenUnix(Buffer.from(socketPath('a\0b')), false, 8, 0o600), 'EINVAL', /\\x00/);
    const missingDir = socketPath('no-such-dir/x.sock');
    const err = assertErrno(() => listenUnix(Buffer.from(missingDir), false, 8, 0o600), 'ENOENT');
    assert.equal(err.message, `bind("${missingDir}"): No such file or directory`);
    assert.equal((err as Error & { syscall?: unknown }).syscall, 'bind');
  });

  it('throws TypeError/RangeError for bad arguments', () => {
    const call = listenUnix as unknown as (...args: unknown[]) => number;
    assert.throws(() => call('/tmp/x', false, 8, 0), TypeError);
    assert.throws(() => call(Buffer.from('x'), 'no', 8, 0), TypeError);
    assert.throws(() => call(Buffer.from('x'), true, 8, 0o10000), RangeError);
    assert.throws(() => call(Buffer.from('x'), true, 1.5, 0), RangeError);
  });
});

describe('connectUnix', () => {
  it('connects to an abstract name and works with net.Socket({ fd })', async () => {
    const name = abstractName();
    await pongServerOnFd(listenUnix(Buffer.from(name), true, 16, 0));
    const fd = connectUnix(Buffer.from(name), true);
    const socket = new net.Socket({ fd, readable: true, writable: true });
    assert.equal(await exchange(socket, 'hello'), 'pong:hello');
  });

  it('reaches a non-Node abstract listener (socat) by its exact name', async () => {
    const name = abstractName();
    const child = spawn('socat', [`ABSTRACT-LISTEN:${name},fork`, 'EXEC:cat'], { stdio: 'ignore' });
    children.push(child);
    await waitFor(() => boundUnixNames().includes(`@${name}`), 'socat to listen');
    const socket = new net.Socket({ fd: connectUnix(Buffer.from(name), true), readable: true, writable: true });
    assert.equal(await exchange(socket, 'echo me'), 'echo me');
    child.kill('SIGTERM');
    await once(child, 'exit');
  });

  it('connects to a path socket', async () => {
    const p = socketPath('connect.sock');
    await pongServerOnFd(listenUnix(Buffer.from(p), false, 16, 0o600));
    const socket = new net.Socket({ fd: connectUnix(Buffer.from(p), false), readable: true, writable: true });
    assert.equal(await exchange(socket, 'via path'), 'pong:via path');
  });

  it('fails with ECONNREFUSED / ENOENT when nobody listens', () => {
    const name = abstractName();
    assertErrno(
      () => connectUnix(Buffer.from(name), true),
      'ECONNREFUSED',
      new RegExp(`^connect\\("@${name}"\\): Connection refused$`),
    );
    const missing = socketPath('nobody-here.sock');
    assertErrno(
      () => connectUnix(Buffer.from(missing), false),
      'ENOENT',
      /^connect\(".*nobody-here\.sock"\): No such file or directory$/,
    );
  });
});

describe('peerCredentials', () => {
  it('returns the pid/uid/gid of a connecting process (this process)', async () => {
    const name = abstractName();
    let serverSide: ReturnType<typeof peerCredentials> | undefined;
    await pongServerOnFd(listenUnix(Buffer.from(name), true, 16, 0), (socket) => {
      serverSide = peerCredentials(fdOf(socket));
    });
    const fd = connectUnix(Buffer.from(name), true);
    // Client side: the peer is the listener, i.e. also this process.
    assert.deepEqual(peerCredentials(fd), { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
    const socket = new net.Socket({ fd, readable: true, writable: true });
    assert.equal(await exchange(socket, 'creds'), 'pong:creds');
    assert.deepEqual(serverSide, { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  });

  it('returns the pid of another connecting process', async () => {
    const name = abstractName();
    let serverSide: ReturnType<typeof peerCredentials> | undefined;
    await pongServerOnFd(listenUnix(Buffer.from(name), true, 16, 0), (socket) => {
      serverSide = peerCredentials(fdOf(socket));
    });
    const child = execFile(PYTHON, ['-c', PY_ABSTRACT_CLIENT, name, 'who'], { timeout: 10_000 });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (chunk: string) => (out += chunk));
    const [exitCode] = (await once(child, 'exit')) as [number | null];
    assert.equal(exitCode, 0);
    assert.equal(out, 'pong:who');
    assert.ok(child.pid !== undefined && child.pid !== process.pid);
    assert.deepEqual(serverSide, { pid: child.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  });

  it('returns null for TCP sockets', async () => {
    let accepted: ReturnType<typeof peerCredentials> | undefined;
    const server = net.createServer((socket) => {
      accepted = peerCredentials(fdOf(socket));
      socket.end();
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    assert.equal(peerCredentials(fdOf(server)), null);
    const { port } = server.address() as net.AddressInfo;
    const client = net.createConnection(port, '127.0.0.1');
    await once(client, 'connect');
    assert.equal(peerCredentials(fdOf(client)), null);
    await once(client, 'end');
    client.destroy();
    assert.equal(accepted, null);
  });

  it('throws ENOTSOCK for a non-socket fd and EBADF for a closed fd', () => {
    const fd = fs.openSync(socketPath('not-a-socket'), 'w');
    try {
      assertErrno(() => peerCredentials(fd), 'ENOTSOCK', new RegExp(`^getsockname\\(fd ${fd}\\): `));
    } finally {
      fs.closeSync(fd);
    }
    assertErrno(() => peerCredentials(fd), 'EBADF');
  });
});

describe('closeFd / fdOf', () => {
  it('closes an fd once and then reports EBADF', () => {
    const fd = listenUnix(Buffer.from(abstractName()), true, 8, 0);
    closeFd(fd);
    assert.equal(fs.existsSync(`/proc/self/fd/${fd}`), false);
    assertErrno(() => closeFd(fd), 'EBADF', new RegExp(`^close\\(fd ${fd}\\): Bad file descriptor$`));
  });

  it('fdOf returns the handle fd and throws without one', async () => {
    const fd = listenUnix(Buffer.from(abstractName()), true, 8, 0);
    const server = await pongServerOnFd(fd);
    assert.equal(fdOf(server), fd);
    assert.throws(() => fdOf(new net.Socket()), /no file descriptor/);
  });
});
