// Interception on both relays as the hooks use it: a reply given at once (no promise) or later, a
// command that goes on unchanged (the pump sends what it holds: pumpResume(handle, true)), small
// commands through the pump's inbox and bigger ones as Buffers of their own, pipelined; and the
// server's latest status flags, read from the tracker for the daemon's own replies.
import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { NativeRelay } from '../../../src/net/native-relay.js';
import { Relay, type InterceptReply } from '../../../src/net/relay.js';
import { Command } from '../../../src/protocol/constants.js';
import { framePayload } from '../../../src/protocol/writer.js';
import { readN, rig } from '../../helpers/relay-rig.js';

const query = (sql: string): Buffer =>
  framePayload(Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.from(sql)]), 0);
/** An OK packet with these status flags (sequence id 1). */
const ok = (status: number): Buffer =>
  framePayload(Buffer.from([0x00, 0x00, 0x00, status & 0xff, status >> 8, 0, 0]), 1);

for (const [name, Impl] of [
  ['native pump', NativeRelay],
  ['JavaScript relay', Relay],
] as const) {
  describe(name, () => {
    test('commands answered at once or later, unchanged or rewritten, small and past the inbox, keep their order', async () => {
      const seen: Buffer[] = [];
      const r = await rig(Impl, null, null, {
        intercept: {
          commands: [Command.COM_QUERY],
          maxPacket: 1024 * 1024,
          onCommand(packet: Buffer): InterceptReply | Promise<InterceptReply> {
            seen.push(packet);
            const sql = packet.subarray(5).toString('latin1');
            if (sql === 'SELECT later') {
              return new Promise((resolve) => setTimeout(() => resolve({ toServer: packet }), 20));
            }
            if (sql === 'SELECT rewrite') return { toServer: query('SELECT rewritten') };
            return { toServer: packet };
          },
        },
        tracking: { capabilities: 0, track: true, stats: null },
      });
      try {
        const big = `SELECT '${'x'.repeat(20 * 1024)}'`;
        const sent = ['SELECT 1', big, 'SELECT later', 'SELECT rewrite', `SELECT '${'y'.repeat(100)}'`];
        const expected = Buffer.concat(sent.map((s) => query(s === 'SELECT rewrite' ? 'SELECT rewritten' : s)));
        const atServer = readN(r.server, expected.length);
        r.client.write(Buffer.concat(sent.map(query)));
        assert.deepEqual(await atServer, expected);
        assert.deepEqual(
          seen.map((p) => p.subarray(5).toString('latin1')),
          sent,
        );
      } finally {
        r.cleanup();
      }
    });

    test("the tracker keeps the server's latest status flags for the daemon's own replies", async () => {
      const r = await rig(Impl, null, null, {
        intercept: { commands: [Command.COM_QUERY], onCommand: (packet) => ({ toServer: packet }) },
        tracking: { capabilities: 0, track: true, stats: null },
      });
      try {
        assert.equal(r.relay.state()?.serverStatus, 0x0002, 'autocommit until a response tells');
        for (const status of [0x0003, 0x0000]) {
          const atServer = readN(r.server, query('BEGIN').length);
          r.client.write(query('BEGIN'));
          await atServer;
          const atClient = readN(r.client, ok(status).length);
          r.server.write(ok(status));
          await atClient;
          assert.equal(r.relay.state()?.serverStatus, status);
        }
      } finally {
        r.cleanup();
      }
    });
  });
}
