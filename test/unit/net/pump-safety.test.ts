// What the relays must survive (issue "defects found by attacking it"): a pump handle used after
// its pump is gone (also when the close could not be reported), handles collected while their
// pump runs, pumps in several threads at once, a last packet bigger than a socket buffer, a
// server that sends an error and closes with our bytes unread, and a backend that stops reading
// while commands are being intercepted. Run under AddressSanitizer by `npm run test:asan`.
import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { addonFunctions, dupFd, fdOf } from '../../../src/net/native.js';
import { NativeRelay } from '../../../src/net/native-relay.js';
import { Relay } from '../../../src/net/relay.js';
import { Command } from '../../../src/protocol/constants.js';
import { framePayload } from '../../../src/protocol/writer.js';
import { readToEnd, rig } from '../../helpers/relay-rig.js';

const addon = addonFunctions();
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Two connected Unix socket pairs; returns [outer client, inner client, outer server, inner server]. */
async function pairs(): Promise<{ sockets: net.Socket[]; cleanup: () => void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-pump-'));
  const pair = async (name: string): Promise<[net.Socket, net.Socket]> => {
    const server = net.createServer({ pauseOnConnect: true });
    const p = path.join(dir, name);
    await new Promise<void>((r) => server.listen(p, r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const outer = net.connect(p);
    await new Promise((r) => outer.once('connect', r));
    const inner = await accepted;
    server.close();
    return [outer, inner];
  };
  const [c, ci] = await pair('c.sock');
  const [s, si] = await pair('s.sock');
  return {
    sockets: [c, ci, s, si],
    cleanup: () => {
      for (const x of [c, ci, s, si]) x.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('pump handles', () => {
  test('a handle outliving its pump is harmless, also when the close could not be reported', async () => {
    const { sockets, cleanup } = await pairs();
    try {
      const before = addon.addonLivePumps();
      const events: number[] = [];
      const handle = addon.pumpStart(
        dupFd(fdOf(sockets[1]!)),
        dupFd(fdOf(sockets[3]!)),
        null,
        null,
        new Uint8Array(48),
        null,
        null,
        null,
        (type) => events.push(type),
      );
      assert.equal(addon.addonLivePumps(), before + 1);
      addon.addonTestFail(1); // the close callback's handle scope cannot be opened
      addon.pumpAbort(handle);
      await until(() => addon.addonLivePumps() === before);
      assert.deepEqual(events, []); // the close could not be reported ...
      assert.equal(addon.pumpStalledMs(handle), -1); // ... and the handle says the pump is gone
      assert.equal(addon.pumpInfo(handle), null);
      addon.pumpClose(handle, Buffer.from('late'));
      addon.pumpAbort(handle);
      addon.pumpResume(handle, null, null);
    } finally {
      cleanup();
    }
  });

  test('a collected handle does not stop its pump, which still reports its end', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const { sockets, cleanup } = await pairs();
    try {
      let closed = '';
      (() => {
        addon.pumpStart(
          dupFd(fdOf(sockets[1]!)),
          dupFd(fdOf(sockets[3]!)),
          null,
          null,
          new Uint8Array(48),
          null,
          null,
          null,
          (type, reason) => {
            if (type === 0) closed = reason as string;
          },
        );
      })();
      sockets[1]!.destroy();
      sockets[3]!.destroy();
      gc();
      await new Promise((r) => setTimeout(r, 20));
      gc();
      const got = new Promise<Buffer>((resolve) => sockets[2]!.once('data', resolve));
      sockets[2]!.resume();
      sockets[0]!.write('through');
      assert.equal((await got).toString(), 'through');
      sockets[0]!.end();
      await until(() => closed !== '');
      assert.equal(closed, 'client');
    } finally {
      cleanup();
    }
  });
});

describe('pumps in worker threads', () => {
  test('three threads and the main thread pump at once without mixing their bytes', async () => {
    const addonPath = path.resolve(process.env['MYPROXY_NATIVE_ADDON'] ?? 'build/Release/myproxy_native.node');
    const workerSource = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.addon);
      const net = require('node:net'); const fs = require('node:fs'); const path = require('node:path');
      const crypto = require('node:crypto');
      (async () => {
        const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'myproxy-w-'));
        const pair = async (name) => {
          const server = net.createServer({ pauseOnConnect: true });
          const p = path.join(dir, name);
          await new Promise((r) => server.listen(p, r));
          const accepted = new Promise((r) => server.once('connection', r));
          const outer = net.connect(p);
          await new Promise((r) => outer.once('connect', r));
          const inner = await accepted; server.close(); return [outer, inner];
        };
        const [c, ci] = await pair('c'); const [s, si] = await pair('s');
        const fd = (x) => addon.dupFd(x._handle.fd);
        addon.pumpStart(fd(ci), fd(si), null, null, new Uint8Array(48), null, null, null, () => {});
        ci.destroy(); si.destroy();
        const data = crypto.randomBytes(workerData.bytes);
        const parts = []; let n = 0;
        const done = new Promise((r) => s.on('data', (d) => { parts.push(d); n += d.length; if (n >= data.length) r(); }));
        c.write(data);
        await done;
        const same = crypto.createHash('sha256').update(Buffer.concat(parts)).digest('hex') ===
          crypto.createHash('sha256').update(data).digest('hex');
        c.destroy(); s.destroy(); fs.rmSync(dir, { recursive: true, force: true });
        parentPort.postMessage(same);
      })().catch((e) => parentPort.postMessage(String(e)));`;
    const run = (): Promise<unknown> =>
      new Promise((resolve, reject) => {
        const w = new Worker(workerSource, { eval: true, workerData: { addon: addonPath, bytes: 8 * 1024 * 1024 } });
        w.once('message', (m) => {
          resolve(m);
          void w.terminate();
        });
        w.once('error', reject);
      });
    const main = (async (): Promise<boolean> => {
      const r = await rig(NativeRelay);
      try {
        const data = randomBytes(8 * 1024 * 1024);
        const parts: Buffer[] = [];
        let n = 0;
        const done = new Promise<void>((res) =>
          r.server.on('data', (d: Buffer) => {
            parts.push(d);
            n += d.length;
            if (n >= data.length) res();
          }),
        );
        r.server.resume();
        r.client.write(data);
        await done;
        return sha(Buffer.concat(parts)) === sha(data);
      } finally {
        r.cleanup();
      }
    })();
    assert.deepEqual(await Promise.all([run(), run(), run(), main]), [true, true, true, true]);
  });
});

for (const [name, Impl] of [
  ['native pump', NativeRelay],
  ['JavaScript relay', Relay],
] as const) {
  describe(name, () => {
    test('close() delivers a last packet bigger than any socket buffer in full', async () => {
      const r = await rig(Impl);
      try {
        const last = framePayload(randomBytes(3 * 1024 * 1024), 1);
        r.client.pause();
        r.relay.close(last);
        await new Promise((res) => setTimeout(res, 50));
        const got = await readToEnd(r.client);
        assert.equal(got.length, last.length);
        assert.equal(sha(got), sha(last));
        assert.equal(await r.ended, 'shutdown');
      } finally {
        r.cleanup();
      }
    });

    test("a server's last packet arrives although it closed with our bytes unread", async () => {
      const r = await rig(Impl);
      try {
        const err = framePayload(
          Buffer.from('\xff\x81\x04#08S01Got a packet bigger than max_allowed_packet', 'latin1'),
          1,
        );
        r.server.once('data', () => {
          // Answer the first bytes with an ERR and go away without reading the rest.
          r.server.write(err, () => r.server.destroy());
        });
        r.server.resume();
        const got = readToEnd(r.client);
        const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
        big.writeUIntLE(0xffffff, 0, 3);
        big[3] = 0;
        big[4] = Command.COM_QUERY;
        r.client.write(big, () => undefined);
        r.client.on('error', () => undefined);
        assert.equal(sha(await got), sha(err));
      } finally {
        r.cleanup();
      }
    });

    test('a backend that stops reading is noticed, and holds the client back, while commands are intercepted', async () => {
      const answered: number[] = [];
      const r = await rig(Impl, null, null, {
        intercept: {
          commands: [Command.COM_CHANGE_USER],
          onCommand: (packet) => {
            answered.push(packet[4]!);
            return Promise.resolve({
              toClient: framePayload(
                Buffer.from([0xff, 0xd3, 0x04, 0x23, 0x34, 0x32, 0x30, 0x30, 0x30]),
                packet[3]! + 1,
              ),
            });
          },
        },
      });
      try {
        r.server.pause(); // the backend reads nothing
        r.client.on('data', () => undefined); // the client takes its answers
        const changeUser = framePayload(Buffer.from([Command.COM_CHANGE_USER, 0x78, 0]), 0);
        const query = framePayload(
          Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.alloc(1024 * 1024, 0x20)]),
          0,
        );
        let accepted = 0;
        const deadline = Date.now() + 1500;
        while (Date.now() < deadline && accepted < 200 * 1024 * 1024) {
          const chunk = Buffer.concat([changeUser, query]);
          if (!r.client.write(chunk)) {
            const drained = await Promise.race([
              new Promise<boolean>((res) => r.client.once('drain', () => res(true))),
              new Promise<boolean>((res) => setTimeout(() => res(false), 300)),
            ]);
            if (!drained) break;
          }
          accepted += chunk.length;
        }
        assert.ok(answered.length >= 1, 'at least one command was intercepted');
        assert.ok(
          accepted < 64 * 1024 * 1024,
          `the relay took ${accepted} bytes from a client whose backend reads nothing`,
        );
        await until(() => r.relay.stalledMs() > 100);
      } finally {
        r.cleanup();
      }
    });
  });
}
