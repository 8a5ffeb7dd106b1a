// Both relay implementations (the native byte pump and the JavaScript relay) against the same
// contract: bytes arrive intact both ways, leftovers go first, a slow reader pauses the sender
// instead of being buffered for, an end on either side closes both, and close() ends everything.
import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { NativeRelay } from '../../../src/net/native-relay.js';
import { Relay } from '../../../src/net/relay.js';
import { readN, readToEnd, rig } from '../../helpers/relay-rig.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

for (const [name, Impl] of [
  ['native pump', NativeRelay],
  ['JavaScript relay', Relay],
] as const) {
  describe(name, () => {
    test('leftovers from login go first, then traffic flows both ways intact', async () => {
      const r = await rig(Impl, Buffer.from('to-server-first|'), Buffer.from('to-client-first|'));
      try {
        const up = randomBytes(3 * 1024 * 1024);
        const down = randomBytes(5 * 1024 * 1024);
        const gotAtServer = readN(r.server, 16 + up.length);
        const gotAtClient = readN(r.client, 16 + down.length);
        r.client.write(up);
        r.server.write(down);
        const [s, c] = await Promise.all([gotAtServer, gotAtClient]);
        assert.equal(s.subarray(0, 16).toString(), 'to-server-first|');
        assert.equal(c.subarray(0, 16).toString(), 'to-client-first|');
        assert.equal(sha(s.subarray(16)), sha(up));
        assert.equal(sha(c.subarray(16)), sha(down));
      } finally {
        r.cleanup();
      }
    });

    test('a client that does not read makes the backend wait instead of filling our memory', async () => {
      const r = await rig(Impl);
      try {
        const chunk = randomBytes(256 * 1024);
        const sent: Buffer[] = [];
        // Keep writing while the path drains. Without backpressure the relay would accept (and
        // buffer) all 64 MiB; with it, the backend is held back once the socket buffers are full.
        let heldBack = false;
        while (sent.length < 256) {
          sent.push(chunk);
          if (r.server.write(chunk)) continue;
          const drained = await Promise.race([
            new Promise<boolean>((res) => r.server.once('drain', () => res(true))),
            new Promise<boolean>((res) => setTimeout(() => res(false), 300)),
          ]);
          if (!drained) {
            heldBack = true;
            break;
          }
        }
        assert.ok(heldBack, `the backend was held back (it could write ${sent.length * 256} KiB)`);
        assert.ok(r.server.writableLength > 0);
        const total = sent.length * chunk.length;
        const got = await readN(r.client, total);
        assert.equal(sha(got), sha(Buffer.concat(sent)));
      } finally {
        r.cleanup();
      }
    });

    test('the backend closing delivers what it sent, then closes the client', async () => {
      const r = await rig(Impl);
      try {
        const last = randomBytes(1024 * 1024);
        const all = readToEnd(r.client);
        r.server.end(last);
        assert.equal(sha(await all), sha(last));
        assert.equal(await r.ended, 'server');
      } finally {
        r.cleanup();
      }
    });

    test('the client leaving closes the backend connection', async () => {
      const r = await rig(Impl);
      try {
        const serverSees = readToEnd(r.server);
        r.client.end(Buffer.from([1, 0, 0, 0, 1])); // COM_QUIT, then FIN
        assert.deepEqual([...(await serverSees)], [1, 0, 0, 0, 1]);
        assert.equal(await r.ended, 'client');
      } finally {
        r.cleanup();
      }
    });

    test('a client that vanishes in the middle of a large result ends the pair cleanly', async () => {
      const r = await rig(Impl);
      try {
        const firstBytes = readN(r.client, 1);
        r.server.on('error', () => undefined);
        const big = randomBytes(8 * 1024 * 1024);
        r.server.write(big);
        await firstBytes;
        r.client.destroy(); // with unread data: the relay's next write gets ECONNRESET or EPIPE
        const reason = await r.ended;
        assert.ok(reason === 'client' || reason === 'client-error', reason);
        // The backend connection is closed too (its peer, the relay, went away).
        await new Promise<void>((res) => (r.server.destroyed ? res() : r.server.once('close', () => res())));
      } finally {
        r.cleanup();
      }
    });

    test('close() (shutdown) writes the last packet to the client and closes both sides', async () => {
      const r = await rig(Impl);
      try {
        const clientSees = readToEnd(r.client);
        const serverSees = readToEnd(r.server);
        r.relay.close(Buffer.from('bye'));
        assert.equal((await clientSees).toString(), 'bye');
        assert.equal((await serverSees).length, 0);
        assert.equal(await r.ended, 'shutdown');
        r.relay.close(); // after the end: a no-op
      } finally {
        r.cleanup();
      }
    });

    test('counters report the bytes each side sent', async () => {
      const r = await rig(Impl);
      try {
        const got = readN(r.server, 1000);
        r.client.write(Buffer.alloc(1000, 7));
        await got;
        const back = readN(r.client, 10);
        r.server.write(Buffer.alloc(10, 1));
        await back;
        r.client.end();
        await r.ended;
        assert.equal(r.relay.counters.clientBytes, 1000);
        assert.equal(r.relay.counters.serverBytes, 10);
      } finally {
        r.cleanup();
      }
    });
  });
}
