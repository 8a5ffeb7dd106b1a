// PacketChannel over real connected sockets (a net.Server on a temporary Unix socket path).

import { test, describe, before, after } from 'node:test';
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { ChannelClosedError, ChannelTimeoutError, PacketChannel } from '../../../src/net/packet-channel.js';
import type { Packet } from '../../../src/protocol/framer.js';
import { PacketTooLargeError } from '../../../src/util/errors.js';
import { Rng, le, packet } from '../../helpers/bytes.js';

const MAX = 0xffffff;

let dir = '';
let server: net.Server;
let socketPath = '';
const pending: ((s: net.Socket) => void)[] = [];
const open: net.Socket[] = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-channel-'));
  socketPath = path.join(dir, 's');
  server = net.createServer((s) => {
    open.push(s);
    pending.shift()?.(s);
  });
  server.listen(socketPath);
  await once(server, 'listening');
});

after(async () => {
  for (const s of open) s.destroy();
  server.close();
  await once(server, 'close');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A connected pair: `accepted` is the server side (wrapped by the channel), `peer` the client. */
async function connect(): Promise<{ accepted: net.Socket; peer: net.Socket }> {
  const accepted = new Promise<net.Socket>((resolve) => pending.push(resolve));
  const peer = net.connect(socketPath);
  open.push(peer);
  await once(peer, 'connect');
  return { accepted: await accepted, peer };
}

function write(s: net.Socket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => s.write(data, (e) => (e ? reject(e) : resolve())));
}

function assertPacket(p: Packet, seq: number, payload: Buffer): void {
  assert.equal(p.seq, seq);
  assert.equal(p.payload.length, payload.length);
  assert.ok(p.payload.equals(payload), 'payload differs');
}

/** Everything the socket delivers after detach(), until the peer ends. */
async function drain(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.resume();
  await once(s, 'end');
  return Buffer.concat(chunks);
}

describe('PacketChannel', () => {
  test('delivers packets in order across chunked writes', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1 << 20);
    const rng = new Rng(7);
    const expected: [number, Buffer][] = [];
    for (let i = 0; i < 30; i++) {
      const size = rng.pick([0, 1, 3, 100, 5000, 200_000]);
      expected.push([i & 0xff, rng.bytes(size)]);
    }
    const stream = Buffer.concat(expected.map(([seq, p]) => packet(seq, p)));
    const writer = (async () => {
      for (let at = 0; at < stream.length;) {
        const n = rng.next() < 0.3 ? rng.int(1, 5) : rng.int(1, 70_000);
        await write(peer, stream.subarray(at, at + n));
        at += n;
        if (rng.next() < 0.2) await sleep(1);
      }
    })();
    for (const [seq, payload] of expected) assertPacket(await channel.next(5000), seq, payload);
    await writer;
  });

  test('several packets in one write are handed out one per next()', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    await write(peer, Buffer.concat([packet(0, 'a'), packet(1, ''), packet(2, 'ccc')]));
    assertPacket(await channel.next(1000), 0, Buffer.from('a'));
    assertPacket(await channel.next(1000), 1, Buffer.alloc(0));
    assertPacket(await channel.next(1000), 2, Buffer.from('ccc'));
  });

  test('the socket is paused while nobody waits for a packet', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    assert.equal(accepted.isPaused(), true, 'paused from the start');
    await write(peer, Buffer.concat([packet(0, 'a'), packet(1, 'b')]));
    await channel.next(1000);
    assert.equal(accepted.isPaused(), true, 'paused again after a packet was delivered');
  });

  test('rejects with ChannelClosedError when the peer closes (after delivering what it sent)', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    peer.end(packet(0, 'last words'));
    assertPacket(await channel.next(1000), 0, Buffer.from('last words'));
    await assert.rejects(channel.next(1000), ChannelClosedError);
    await assert.rejects(channel.next(1000), ChannelClosedError, 'and keeps rejecting');
  });

  test('a pending next() rejects when the peer closes mid-packet', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    const next = channel.next(5000);
    await write(peer, packet(0, 'truncated').subarray(0, 6));
    peer.destroy();
    await assert.rejects(next, ChannelClosedError);
  });

  test('ChannelTimeoutError when nothing arrives in time', async () => {
    const { accepted } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    const started = Date.now();
    await assert.rejects(channel.next(50), ChannelTimeoutError);
    assert.ok(Date.now() - started >= 45, 'not before the timeout');
  });

  test('a timeout does not fire after the packet arrived', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    const next = channel.next(100);
    await write(peer, packet(0, 'x'));
    assertPacket(await next, 0, Buffer.from('x'));
    await sleep(150);
    await write(peer, packet(1, 'y'));
    assertPacket(await channel.next(1000), 1, Buffer.from('y'));
  });

  test('next() while already waiting is a programming error', async () => {
    const { accepted } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    const first = channel.next(100);
    assert.throws(() => channel.next(100), /already waiting/);
    await assert.rejects(first, ChannelTimeoutError);
  });

  test('an oversized packet rejects with PacketTooLargeError, and later bytes are not framed', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 100);
    await write(peer, packet(0, Buffer.alloc(100, 1)));
    assertPacket(await channel.next(1000), 0, Buffer.alloc(100, 1));
    const next = channel.next(1000);
    await write(peer, Buffer.concat([le(101, 3), Buffer.of(1)]));
    await assert.rejects(next, PacketTooLargeError);
    // The 101 payload bytes (which here look like small packets) must not come out as packets.
    await write(peer, Buffer.concat([packet(2, 'fake'), Buffer.alloc(101 - 8)]));
    await sleep(20); // let the channel read them
    await assert.rejects(channel.next(1000), PacketTooLargeError);
  });

  test('detach() returns queued packets and the partial one byte-exactly', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    const first = packet(0, 'login');
    const rest = Buffer.concat([
      packet(1, 'queued one'),
      packet(2, ''),
      packet(3, 'queued three'),
      packet(4, 'part').subarray(0, 6),
    ]);
    await write(peer, Buffer.concat([first, rest]));
    await sleep(20); // everything is in the receive buffer before the channel reads
    assertPacket(await channel.next(1000), 0, Buffer.from('login'));
    const detached = channel.detach();
    assert.ok(detached !== null);
    assert.equal(detached.toString('hex'), rest.toString('hex'));

    // The socket is ours now: later bytes come through untouched.
    const tail = packet(4, 'part').subarray(6);
    const drained = drain(accepted);
    peer.end(tail);
    assert.equal((await drained).toString('hex'), tail.toString('hex'));
  });

  test('detach() with nothing buffered returns null', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1024);
    await write(peer, packet(0, 'only'));
    await channel.next(1000);
    assert.equal(channel.detach(), null);
  });

  test('detach() mid-stream: detached bytes plus later socket data equal the stream after the last packet', async () => {
    const { accepted, peer } = await connect();
    const channel = new PacketChannel(accepted, 1 << 20);
    const rng = new Rng(11);
    const stream = Buffer.concat([packet(0, 'first'), packet(1, rng.bytes(300_000)), packet(2, 'after')]);
    await write(peer, stream.subarray(0, 1000));
    assertPacket(await channel.next(1000), 0, Buffer.from('first'));
    const detached = channel.detach() ?? Buffer.alloc(0);
    const drained = drain(accepted);
    peer.end(stream.subarray(1000));
    const got = Buffer.concat([detached, await drained]);
    assert.ok(got.equals(stream.subarray(9)), 'bytes lost, duplicated or reordered');
  });

  test('detach() re-splits a queued payload of 0xFFFFFF bytes or more into its original packets', async () => {
    const { accepted } = await connect();
    const channel = new PacketChannel(accepted, 2 * MAX);
    const big = Buffer.alloc(MAX + 10, 0x42);
    big.fill(0x43, MAX);
    const bigFramed = Buffer.concat([
      le(MAX, 3),
      Buffer.of(1),
      big.subarray(0, MAX),
      le(10, 3),
      Buffer.of(2),
      big.subarray(MAX),
    ]);
    const exactFramed = Buffer.concat([le(MAX, 3), Buffer.of(3), big.subarray(0, MAX), le(0, 3), Buffer.of(4)]);
    const rest = Buffer.concat([bigFramed, exactFramed, packet(5, 'tail')]);
    // One chunk holding everything, as the socket's next 'data' event (sockets read at most 64
    // KiB, so only unshift() can make packets this large arrive together and be queued).
    accepted.unshift(Buffer.concat([packet(0, 'first'), rest]));
    assertPacket(await channel.next(1000), 0, Buffer.from('first'));
    const detached = channel.detach();
    assert.ok(detached !== null);
    assert.equal(detached.length, rest.length);
    assert.ok(detached.equals(rest), 'not re-framed byte-exactly');
  });
});
