// The JavaScript relay's part in connection sharing: it lets the server connection go when the
// share hooks agree, works without one until the interceptor attaches another, and hands
// idle() the final packet of each response whole, however the server's bytes were cut.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import type { Socket } from 'node:net';
import { Relay, type InterceptReply, type ShareHooks } from '../../../src/net/relay.js';
import { Capability, Command } from '../../../src/protocol/constants.js';
import { framePayload } from '../../../src/protocol/writer.js';
import { readN, rig } from '../../helpers/relay-rig.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Write `bytes` in pieces of `size`, with a pause between them (so the relay reads them apart). */
async function dribble(s: Socket, bytes: Buffer, size: number): Promise<void> {
  for (let i = 0; i < bytes.length; i += size) {
    s.write(bytes.subarray(i, i + size));
    await sleep(3);
  }
}

test('sharing: release at once, attach on the next command, the final packet of each response', async () => {
  const finals: (Buffer | null)[] = [];
  const alone: boolean[] = [];
  let idleCalls = 0;
  // Filled in by the hooks and after the rig is built (closures see the object, not a narrowed local).
  const at: { kept?: Socket; relay?: Relay } = {};
  let releaseNext = true;
  const hooks: ShareHooks = {
    response: (last, one) => {
      finals.push(last === null ? null : Buffer.from(last));
      alone.push(one);
    },
    idle: () => {
      idleCalls++;
      return releaseNext;
    },
    released: (socket) => {
      at.kept = socket;
    },
  };
  const r = await rig(Relay, null, null, {
    share: hooks,
    intercept: {
      commands: Array.from({ length: 256 }, (_, i) => i),
      onCommand: (packet): InterceptReply => {
        if (!at.relay!.hasServer) at.relay!.attachServer(at.kept!);
        return { toServer: packet };
      },
    },
    tracking: { capabilities: Capability.CLIENT_PROTOCOL_41, track: true, stats: null, onResponse: () => undefined },
  });
  assert.ok(r.relay instanceof Relay);
  const relay = r.relay;
  at.relay = relay;
  try {
    assert.equal(idleCalls, 1, 'asked at the start');
    assert.deepEqual(finals, [], 'with no response yet');
    assert.ok(at.kept !== undefined && !relay.hasServer, 'the connection went');

    // A command: the connection comes back; the response's OK arrives a byte at a time.
    releaseNext = false;
    const query = framePayload(Buffer.concat([Buffer.of(Command.COM_QUERY), Buffer.from('SELECT 1')]), 0);
    const atServer = readN(r.server, query.length);
    r.client.write(query);
    assert.deepEqual(await atServer, query);
    assert.ok(relay.hasServer);
    const okPayload = Buffer.from('000000024000000003616263', 'hex');
    const ok = framePayload(okPayload, 1);
    const atClient = readN(r.client, ok.length);
    await dribble(r.server, ok, 1);
    assert.deepEqual(await atClient, ok);
    await sleep(20);
    assert.deepEqual(finals, [okPayload]);
    assert.ok(relay.hasServer, 'kept: idle() said no');

    // A result set (column count, definition, EOF, two rows, EOF), cut at odd places.
    releaseNext = true;
    const atServer2 = readN(r.server, query.length);
    r.client.write(query);
    await atServer2;
    const eof = Buffer.from('fe00000200', 'hex');
    const resultSet = Buffer.concat([
      framePayload(Buffer.of(1), 1),
      framePayload(Buffer.concat([Buffer.from('03646566', 'hex'), Buffer.alloc(20, 0x01)]), 2),
      framePayload(Buffer.from('fe00000200', 'hex'), 3),
      framePayload(Buffer.from('0131', 'hex'), 4),
      framePayload(Buffer.alloc(300, 0x02).fill(0xfc, 0, 1).fill(0x2b, 1, 2).fill(0x01, 2, 3), 5),
      framePayload(eof, 6),
    ]);
    const atClient2 = readN(r.client, resultSet.length);
    await dribble(r.server, resultSet, 7);
    assert.deepEqual(await atClient2, resultSet);
    await sleep(20);
    assert.deepEqual(finals[finals.length - 1], eof, 'the EOF that ends the result set');
    assert.ok(!relay.hasServer, 'released after it');

    // Two commands in one write, both answered in one write: not told apart, and said so.
    releaseNext = false;
    const two = Buffer.concat([query, query]);
    const atServer3 = readN(r.server, two.length);
    r.client.write(two);
    await atServer3;
    const ok2 = Buffer.from('000000024000000003646566', 'hex');
    const both = Buffer.concat([ok, framePayload(ok2, 1)]);
    const atClient3 = readN(r.client, both.length);
    r.server.write(both);
    await atClient3;
    await sleep(20);
    assert.deepEqual(finals[finals.length - 1], ok2);
    assert.equal(alone[alone.length - 1], false);
    assert.ok(
      alone.slice(0, -1).every((a) => a),
      'the earlier responses came alone',
    );
  } finally {
    at.kept?.destroy();
    r.cleanup();
  }
});
