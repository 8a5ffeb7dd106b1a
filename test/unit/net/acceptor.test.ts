// Unit tests for the addon's acceptor (acceptWatch): connections arrive as bare fds, and out of
// file descriptors a waiting client is refused with the given packet from the reserve descriptor
// instead of being left in the backlog while the loop spins.
// Run: node --import tsx --test test/unit/net/acceptor.test.ts

import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { addonFunctions, closeFd, listenUnix, peerCredentials } from '../../../src/net/native.js';

let tmpDir = '';

before(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-acceptor-'));
});

after(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

function readSome(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('close', () => resolve(Buffer.concat(parts)));
    socket.on('error', (e) => (parts.length > 0 ? resolve(Buffer.concat(parts)) : reject(e)));
  });
}

describe('acceptWatch', { timeout: 30_000 }, () => {
  test('connections arrive as non-blocking fds of the peer, until acceptUnwatch', async () => {
    const sock = path.join(tmpDir, 'a.sock');
    const listenFd = listenUnix(Buffer.from(sock), false, 16, 0o600);
    const addon = addonFunctions();
    const accepted: number[] = [];
    let notify: (() => void) | undefined;
    const handle = addon.acceptWatch(listenFd, Buffer.from('refused'), (fd, code) => {
      assert.equal(code, null);
      accepted.push(fd);
      notify?.();
    });
    try {
      const clients = [net.connect(sock), net.connect(sock), net.connect(sock)];
      while (accepted.length < 3) await new Promise<void>((r) => (notify = r));
      for (const fd of accepted) {
        assert.equal(peerCredentials(fd)?.pid, process.pid);
        // Non-blocking: sending on a full buffer must not block the loop (one send, short count).
        assert.equal(addon.sendOn(fd, Buffer.from('hi')), 2);
      }
      const replies = clients.map((c) => readSome(c));
      for (const fd of accepted) closeFd(fd);
      for (const r of await Promise.all(replies)) assert.equal(r.toString(), 'hi');

      addon.acceptUnwatch(handle);
      const late = net.connect(sock);
      await once(late, 'connect');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(accepted.length, 3, 'nothing is accepted after acceptUnwatch');
      late.destroy();
    } finally {
      addon.acceptUnwatch(handle);
      closeFd(listenFd);
    }
  });

  test('out of descriptors: the waiting client gets the refusal, and accepting goes on once fds are free', async () => {
    const sock = path.join(tmpDir, 'emfile.sock');
    // A child process whose every descriptor is in use (RLIMIT_NOFILE lowered by prlimit): only
    // the acceptor's reserve is left to take a connection with.
    const script = `
      const { addonFunctions, listenUnix, closeFd } = await import(${JSON.stringify(
        path.resolve('src/net/native.ts'),
      )});
      const fs = await import('node:fs');
      const addon = addonFunctions();
      const listenFd = listenUnix(Buffer.from(${JSON.stringify(sock)}), false, 16, 0o600);
      const fillers = [];
      addon.acceptWatch(listenFd, Buffer.from('TOO MANY'), (fd, code, halted) => {
        if (fd >= 0) { process.stdout.write('accepted\\n'); closeFd(fd); }
        else process.stdout.write(code + (halted ? ' halted' : ' refused') + '\\n');
      });
      process.stdin.on('data', (d) => {
        const cmd = d.toString().trim();
        if (cmd === 'fill') {
          try { for (;;) fillers.push(fs.openSync('/dev/null', 'r')); } catch { process.stdout.write('full\\n'); }
        } else if (cmd === 'free') {
          for (const fd of fillers.splice(0)) fs.closeSync(fd);
          process.stdout.write('freed\\n');
        }
      });
      process.stdout.write('ready\\n');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    let wake: (() => void) | undefined;
    child.stdout.on('data', (d: Buffer) => {
      lines.push(
        ...d
          .toString()
          .split('\n')
          .filter((l) => l !== ''),
      );
      wake?.();
    });
    const waitFor = async (line: string): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!lines.includes(line)) {
        assert.ok(Date.now() < deadline, `no "${line}" from the child: ${JSON.stringify(lines)}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
      lines.splice(lines.indexOf(line), 1);
    };
    try {
      await waitFor('ready');
      const limit = await new Promise<number>((resolve, reject) => {
        const p = spawn('prlimit', ['--pid', String(child.pid), '--nofile=64:64']);
        p.on('exit', (code) => (code === 0 ? resolve(64) : reject(new Error(`prlimit: ${String(code)}`))));
      });
      assert.equal(limit, 64);
      child.stdin.write('fill\n');
      await waitFor('full');

      const refused = net.connect(sock);
      const reply = await readSome(refused);
      assert.equal(reply.toString(), 'TOO MANY');
      await waitFor('EMFILE refused');

      child.stdin.write('free\n');
      await waitFor('freed');
      const served = net.connect(sock);
      await waitFor('accepted');
      served.destroy();
    } finally {
      child.kill('SIGKILL');
    }
  });
});
