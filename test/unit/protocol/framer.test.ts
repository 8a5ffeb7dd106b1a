// PacketFramer: reassembly of logical packets from an arbitrarily chunked byte stream.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import { randomFillSync } from 'node:crypto';

import { PacketFramer, type Packet } from '../../../src/protocol/framer.js';
import { PacketTooLargeError, ProxyError } from '../../../src/util/errors.js';
import { Rng, le, packet, splitAt } from '../../helpers/bytes.js';

const MAX = 0xffffff; // largest physical payload, from the spec (2^24 - 1)

interface Expected {
  readonly seq: number;
  readonly payload: Buffer;
}

/** Compare without deepEqual so a 16 MiB mismatch does not print 16 MiB. */
function assertPackets(actual: readonly Packet[], expected: readonly Expected[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: packet count`);
  actual.forEach((p, i) => {
    const e = expected[i]!;
    assert.equal(p.seq, e.seq, `${what}: seq of packet ${i}`);
    assert.equal(p.payload.length, e.payload.length, `${what}: length of packet ${i}`);
    assert.ok(p.payload.equals(e.payload), `${what}: payload of packet ${i} differs`);
  });
}

function feed(framer: PacketFramer, chunks: readonly Buffer[]): Packet[] {
  const out: Packet[] = [];
  for (const c of chunks) out.push(...framer.push(c));
  return out;
}

// A short stream: ordinary packets, an empty payload, a 1-byte one, and sequence ids that wrap.
const small: { stream: Buffer; packets: Expected[] } = (() => {
  const payloads: [number, Buffer][] = [
    [0, Buffer.from('\x03SELECT 1', 'latin1')],
    [1, Buffer.alloc(0)],
    [2, Buffer.of(0xfe)],
    [255, Buffer.from('abcdefghij')],
    [0, Buffer.alloc(0)],
    [7, Buffer.from([0, 0, 0, 0, 1, 2, 3])], // payload bytes that look like headers
  ];
  return {
    stream: Buffer.concat(payloads.map(([seq, p]) => packet(seq, p))),
    packets: payloads.map(([seq, payload]) => ({ seq, payload })),
  };
})();

describe('PacketFramer on a small stream', () => {
  test('the whole stream in one chunk', () => {
    assertPackets(new PacketFramer(1024).push(small.stream), small.packets, 'one chunk');
  });

  test('split at every single byte offset', () => {
    for (let i = 0; i <= small.stream.length; i++) {
      const got = feed(new PacketFramer(1024), splitAt(small.stream, [i]));
      assertPackets(got, small.packets, `cut at ${i}`);
    }
  });

  test('split at every pair of offsets (three chunks, empty chunks included)', () => {
    const n = small.stream.length;
    let runs = 0;
    for (let i = 0; i <= n; i++) {
      for (let j = i; j <= n; j++) {
        const framer = new PacketFramer(1024);
        const got = feed(framer, splitAt(small.stream, [i, j]));
        assertPackets(got, small.packets, `cuts at ${i},${j}`);
        assert.equal(framer.takeBuffered(), null, `cuts at ${i},${j}: nothing left over`);
        runs++;
      }
    }
    assert.equal(runs, ((n + 1) * (n + 2)) / 2);
  });

  test('one byte at a time', () => {
    const bytesOneByOne = [...small.stream].map((b) => Buffer.of(b));
    assertPackets(feed(new PacketFramer(1024), bytesOneByOne), small.packets, 'byte by byte');
  });

  test('payloads handed out stay intact while later chunks arrive', () => {
    const framer = new PacketFramer(1024);
    const got: Packet[] = [];
    const snapshots: Buffer[] = [];
    // Packets already returned must not change when the framer joins or keeps later bytes.
    for (let at = 0; at < small.stream.length; at += 3) {
      const fresh = framer.push(Buffer.from(small.stream.subarray(at, at + 3)));
      got.push(...fresh);
      snapshots.push(...fresh.map((p) => Buffer.from(p.payload)));
      got.forEach((p, i) => assert.ok(p.payload.equals(snapshots[i]!), `packet ${i} changed after byte ${at}`));
    }
    assertPackets(got, small.packets, 'chunks of 3');
  });

  test('an empty chunk completes nothing and breaks nothing', () => {
    const framer = new PacketFramer(1024);
    assert.deepEqual(framer.push(Buffer.alloc(0)), []);
    assert.deepEqual(framer.push(small.stream.subarray(0, 2)), []);
    assert.deepEqual(framer.push(Buffer.alloc(0)), []);
    assertPackets(framer.push(small.stream.subarray(2)), small.packets, 'after empty chunks');
  });
});

/**
 * A large stream: a small packet, a 0xFFFFFF + 1000 byte logical packet (two physical packets),
 * a payload of exactly 0xFFFFFF bytes (one full packet plus the empty terminator the protocol
 * requires), then a small packet. Built with one allocation; payload bytes are random so a part
 * joined in the wrong place or order cannot go unnoticed.
 */
const large = (() => {
  const bigLen = MAX + 1000;
  const big = randomFillSync(Buffer.allocUnsafe(bigLen));
  const exact = randomFillSync(Buffer.allocUnsafe(MAX));
  const first = packet(3, 'first');
  const last = packet(9, 'last');
  const stream = Buffer.allocUnsafe(first.length + 4 + bigLen + 4 + 4 + MAX + 4 + last.length);
  let at = 0;
  const headers: number[] = [];
  const header = (len: number, seq: number): void => {
    headers.push(at);
    le(len, 3).copy(stream, at);
    stream[at + 3] = seq;
    at += 4;
  };
  headers.push(at);
  at += first.copy(stream, at);
  header(MAX, 4);
  at += big.copy(stream, at, 0, MAX);
  header(1000, 5);
  at += big.copy(stream, at, MAX);
  header(MAX, 6);
  at += exact.copy(stream, at);
  header(0, 7);
  headers.push(at);
  at += last.copy(stream, at);
  assert.equal(at, stream.length);
  const packets: Expected[] = [
    { seq: 3, payload: Buffer.from('first') },
    { seq: 5, payload: big }, // the seq of the last physical packet
    { seq: 7, payload: exact },
    { seq: 9, payload: Buffer.from('last') },
  ];
  return { stream, packets, headers };
})();

describe('PacketFramer on a stream with >16 MiB logical packets', () => {
  test('in one chunk', () => {
    assertPackets(new PacketFramer(2 * MAX).push(large.stream), large.packets, 'one chunk');
  });

  test('cut at and around every physical header', () => {
    const cuts = new Set<number>();
    for (const h of large.headers)
      for (let d = -2; d <= 5; d++) cuts.add(Math.min(large.stream.length, Math.max(0, h + d)));
    const sorted = [...cuts].sort((a, b) => a - b);
    const framer = new PacketFramer(2 * MAX);
    assertPackets(feed(framer, splitAt(large.stream, sorted)), large.packets, 'header cuts');
    assert.equal(framer.takeBuffered(), null);
  });

  for (const seed of [1, 2, 3]) {
    test(`randomized chunking (seed ${seed})`, () => {
      const rng = new Rng(seed);
      const cuts: number[] = [];
      let at = 0;
      for (;;) {
        // Mostly socket-sized chunks, some tiny ones (which split headers when they land there).
        at += rng.next() < 0.2 ? rng.int(0, 5) : rng.int(1, 256 * 1024);
        if (at >= large.stream.length) break;
        cuts.push(at);
      }
      const framer = new PacketFramer(MAX + 1000);
      assertPackets(feed(framer, splitAt(large.stream, cuts)), large.packets, `seed ${seed}`);
      assert.equal(framer.takeBuffered(), null);
    });
  }

  test('many small chunks of one large packet take linear, not quadratic, time', () => {
    // 0xFFFFFF + 1000 bytes in 4 KiB chunks: ~4100 pushes. Re-joining the buffered bytes on every
    // push would copy ~34 GB here.
    const slice = large.stream.subarray(large.headers[1], large.headers[3]);
    const cuts: number[] = [];
    for (let at = 4096; at < slice.length; at += 4096) cuts.push(at);
    const started = process.hrtime.bigint();
    const got = feed(new PacketFramer(MAX + 1000), splitAt(slice, cuts));
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assertPackets(got, [large.packets[1]!], '4 KiB chunks');
    assert.ok(ms < 2000, `took ${ms} ms`);
  });

  test('payload of 2 * 0xFFFFFF: two full packets and an empty terminator', () => {
    const payload = Buffer.allocUnsafe(2 * MAX);
    randomFillSync(payload.subarray(0, 65536)).copy(payload, MAX); // distinct halves, cheap to fill
    payload.fill(0x5a, 65536, MAX);
    payload.fill(0xa5, MAX + 65536);
    const framer = new PacketFramer(2 * MAX);
    const got = [
      ...framer.push(Buffer.concat([le(MAX, 3), Buffer.of(250), payload.subarray(0, MAX)])),
      ...framer.push(Buffer.concat([le(MAX, 3), Buffer.of(251), payload.subarray(MAX)])),
    ];
    assert.deepEqual(got, [], 'two full packets do not end the logical packet');
    assertPackets(framer.push(Buffer.concat([le(0, 3), Buffer.of(252)])), [{ seq: 252, payload }], 'terminated');
  });
});

describe('PacketFramer limits', () => {
  test('a payload of exactly maxPayload is accepted', () => {
    const payload = Buffer.alloc(100, 7);
    assertPackets(new PacketFramer(100).push(packet(0, payload)), [{ seq: 0, payload }], 'at the limit');
  });

  test('maxPayload + 1 throws PacketTooLargeError as soon as the header is complete', () => {
    const framer = new PacketFramer(100);
    assert.deepEqual(framer.push(hdr(101, 0).subarray(0, 3)), []);
    assert.throws(
      () => framer.push(hdr(101, 0).subarray(3)),
      (e) => {
        assert.ok(e instanceof PacketTooLargeError);
        assert.ok(e instanceof ProxyError);
        assert.equal(e.code, 'MYP_PACKET_TOO_LARGE');
        return true;
      },
    );
  });

  test('a 0xFFFFFF continuation header over a smaller limit throws', () => {
    assert.throws(() => new PacketFramer(64 * 1024).push(hdr(MAX, 0)), PacketTooLargeError);
  });

  test('the limit applies to the joined payload: crossed by a continuation part', () => {
    const part = Buffer.concat([hdr(MAX, 0), Buffer.alloc(MAX)]);
    const ok = new PacketFramer(MAX + 5);
    assert.deepEqual(ok.push(part), []);
    assert.equal(ok.push(packet(1, Buffer.alloc(5)))[0]!.payload.length, MAX + 5);

    const tooBig = new PacketFramer(MAX + 5);
    assert.deepEqual(tooBig.push(part), []);
    assert.throws(() => tooBig.push(hdr(6, 1)), PacketTooLargeError);
  });

  test('after exceeding the limit the stream stays failed (no resynchronisation on payload bytes)', () => {
    const framer = new PacketFramer(10);
    assert.throws(() => framer.push(hdr(11, 0)), PacketTooLargeError);
    // Whatever comes next is the oversized payload, not packets: it must not be framed.
    assert.throws(() => framer.push(packet(1, 'abc')), PacketTooLargeError);
  });
});

describe('PacketFramer.takeBuffered', () => {
  test('null when nothing is buffered', () => {
    const framer = new PacketFramer(100);
    assert.equal(framer.takeBuffered(), null);
    framer.push(packet(0, 'abc'));
    assert.equal(framer.takeBuffered(), null);
  });

  test('returns exactly the bytes after the last complete packet, for every cut', () => {
    for (let cut = 0; cut <= small.stream.length; cut++) {
      const framer = new PacketFramer(1024);
      const got = framer.push(small.stream.subarray(0, cut));
      const consumed = got.reduce((n, p) => n + 4 + p.payload.length, 0);
      const rest = framer.takeBuffered();
      const expected = small.stream.subarray(consumed, cut);
      if (expected.length === 0) assert.equal(rest, null, `cut ${cut}`);
      else assert.ok(rest !== null && rest.equals(expected), `cut ${cut}: ${rest?.toString('hex') ?? 'null'}`);
      // Handing the remainder plus the rest of the stream to a new framer yields the remaining packets.
      const again = new PacketFramer(1024).push(Buffer.concat([rest ?? Buffer.alloc(0), small.stream.subarray(cut)]));
      assertPackets([...got, ...again], small.packets, `cut ${cut}, resumed`);
    }
  });

  test('a remainder that arrived in many chunks comes back joined and exact', () => {
    const framer = new PacketFramer(1024);
    const stream = Buffer.concat([packet(0, 'x'), packet(1, 'partial packet')]);
    const end = stream.length - 3;
    for (let i = 0; i < end; i++) framer.push(stream.subarray(i, i + 1));
    const rest = framer.takeBuffered();
    assert.ok(rest !== null && rest.equals(stream.subarray(5, end)));
    assert.equal(framer.takeBuffered(), null, 'taken once');
    assertPackets(framer.push(packet(4, 'next')), [{ seq: 4, payload: Buffer.from('next') }], 'reusable');
  });

  test('inside a multi-packet payload: the full physical packets and the partial one, exactly', () => {
    const part = Buffer.concat([hdr(MAX, 8), randomFillSync(Buffer.allocUnsafe(MAX))]);
    const partial = Buffer.concat([hdr(20, 9), Buffer.from('0123456789')]);
    const framer = new PacketFramer(2 * MAX);
    assert.deepEqual(framer.push(Buffer.concat([packet(7, 'done'), part.subarray(0, 1000)])).length, 1);
    assert.deepEqual(framer.push(part.subarray(1000)), []);
    assert.deepEqual(framer.push(partial), []);
    const rest = framer.takeBuffered();
    assert.ok(rest !== null);
    assert.equal(rest.length, part.length + partial.length);
    assert.ok(rest.subarray(0, part.length).equals(part));
    assert.ok(rest.subarray(part.length).equals(partial));
  });
});

function hdr(len: number, seq: number): Buffer {
  return Buffer.concat([le(len, 3), Buffer.of(seq)]);
}
