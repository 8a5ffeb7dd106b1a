// PacketWriter and framePayload: field encodings and the 0xFFFFFF packet splitting rule.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import { randomFillSync } from 'node:crypto';

import { PacketWriter, framePayload } from '../../../src/protocol/writer.js';
import { PacketFramer } from '../../../src/protocol/framer.js';
import { PacketReader } from '../../../src/protocol/reader.js';
import { hex, le, lenenc } from '../../helpers/bytes.js';

const MAX = 0xffffff;

/** Walk the physical headers of a framed buffer without using the framer. */
function headers(framed: Buffer): { len: number; seq: number; at: number }[] {
  const out: { len: number; seq: number; at: number }[] = [];
  let at = 0;
  while (at < framed.length) {
    assert.ok(framed.length - at >= 4, 'truncated header');
    const len = framed[at]! + framed[at + 1]! * 256 + framed[at + 2]! * 65536;
    out.push({ len, seq: framed[at + 3]!, at: at + 4 });
    at += 4 + len;
  }
  assert.equal(at, framed.length, 'last packet runs past the end');
  return out;
}

describe('framePayload', () => {
  // [payload size, expected physical payload lengths] from the rule: a physical packet of
  // 0xFFFFFF bytes is always followed by another, possibly empty, one.
  const cases: [string, number, number[]][] = [
    ['0', 0, [0]],
    ['1', 1, [1]],
    ['0xFFFFFE', MAX - 1, [MAX - 1]],
    ['0xFFFFFF', MAX, [MAX, 0]],
    ['0xFFFFFF + 1', MAX + 1, [MAX, 1]],
    ['2 * 0xFFFFFF', 2 * MAX, [MAX, MAX, 0]],
  ];
  // One random source buffer, viewed at each size, keeps the suite fast.
  const source = randomFillSync(Buffer.allocUnsafe(2 * MAX));

  for (const [name, size, lengths] of cases) {
    test(`payload of ${name} bytes`, () => {
      const payload = source.subarray(0, size);
      const startSeq = 254; // so that multi-packet payloads wrap 255 → 0
      const framed = framePayload(payload, startSeq);
      assert.equal(framed.length, size + 4 * lengths.length);
      const hs = headers(framed);
      assert.deepEqual(
        hs.map((h) => h.len),
        lengths,
      );
      assert.deepEqual(
        hs.map((h) => h.seq),
        lengths.map((_, i) => (startSeq + i) % 256),
      );
      let offset = 0;
      for (const h of hs) {
        assert.ok(framed.subarray(h.at, h.at + h.len).equals(payload.subarray(offset, offset + h.len)));
        offset += h.len;
      }
      assert.equal(offset, size);

      // Round trip: one logical packet carrying the seq of the last physical packet.
      const got = new PacketFramer(2 * MAX).push(framed);
      assert.equal(got.length, 1);
      assert.equal(got[0]!.seq, (startSeq + lengths.length - 1) % 256);
      assert.ok(got[0]!.payload.equals(payload));

      // PacketWriter.finish frames the same way.
      const w = new PacketWriter(16).bytes(payload);
      assert.ok(w.finish(startSeq).equals(framed));
    });
  }

  test('small payload: exact bytes', () => {
    assert.deepEqual(framePayload(Buffer.from('abc'), 3), hex`03 00 00 03 616263`);
    assert.deepEqual(framePayload(Buffer.alloc(0), 0), hex`00 00 00 00`);
    assert.deepEqual(framePayload(Buffer.of(1), 256 + 7), hex`01 00 00 07 01`, 'seq is taken modulo 256');
  });
});

describe('PacketWriter fields', () => {
  test('fixed-length integers are little endian and masked to their width', () => {
    const w = new PacketWriter(1)
      .int1(0xab)
      .int1(0x1ff)
      .int2(0x1234)
      .int2(0xfffff)
      .int3(0x123456)
      .int4(0x89abcdef)
      .int4(-1)
      .int8(0x0102030405)
      .int8(2 ** 53 - 1);
    assert.deepEqual(
      w.payload(),
      Buffer.concat([hex`ab ff 3412 ffff 563412 efcdab89 ffffffff`, le(0x0102030405, 8), le(2 ** 53 - 1, 8)]),
    );
    assert.equal(w.length, 1 + 1 + 2 + 2 + 3 + 4 + 4 + 8 + 8);
  });

  test('length-encoded integers at every boundary of the encoding table', () => {
    const values = [0, 1, 250, 251, 252, 0xfb, 0xff, 0x100, 0xffff, 0x10000, 0xffffff, 0x1000000, 2 ** 32, 2 ** 53 - 1];
    for (const v of values) {
      const got = new PacketWriter().lenencInt(v).payload();
      assert.deepEqual(got, lenenc(v), `lenenc(${v})`);
      const r = new PacketReader(got);
      assert.equal(r.lenencInt(), v);
      r.expectEnd();
    }
    // Spot checks written out by hand from the table.
    assert.deepEqual(new PacketWriter().lenencInt(250).payload(), hex`fa`);
    assert.deepEqual(new PacketWriter().lenencInt(251).payload(), hex`fc fb00`);
    assert.deepEqual(new PacketWriter().lenencInt(0x10000).payload(), hex`fd 000001`);
    assert.deepEqual(new PacketWriter().lenencInt(0x1000000).payload(), hex`fe 00000001 00000000`);
  });

  test('strings: bytes, UTF-8 text, NUL-terminated, length-encoded, zeros', () => {
    const w = new PacketWriter(2)
      .bytes(Buffer.of(1, 2))
      .bytes('ü') // UTF-8: c3 bc
      .nulString('ab')
      .nulString(Buffer.alloc(0))
      .lenencBytes('xyz')
      .lenencBytes(Buffer.alloc(0))
      .zeros(3)
      .zeros(0);
    assert.deepEqual(w.payload(), hex`0102 c3bc 616200 00 03 78797a 00 000000`);
  });

  test('lenencBytes of 300 bytes uses the 0xFC form', () => {
    const data = Buffer.alloc(300, 0x41);
    assert.deepEqual(new PacketWriter().lenencBytes(data).payload(), Buffer.concat([hex`fc 2c01`, data]));
  });

  test('grows past its initial capacity without losing earlier bytes', () => {
    const w = new PacketWriter(1);
    const expected: number[] = [];
    for (let i = 0; i < 5000; i++) {
      w.int1(i);
      expected.push(i & 0xff);
    }
    w.bytes(Buffer.alloc(100_000, 9));
    assert.equal(w.length, 105_000);
    assert.deepEqual(w.payload().subarray(0, 5000), Buffer.from(expected));
    assert.ok(w.payload().subarray(5000).equals(Buffer.alloc(100_000, 9)));
  });

  test('every field survives the buffer growing exactly at it', () => {
    // Each field is written after a prefix that fills the initial capacity, so it is the write
    // that triggers the growth. Expected bytes come from the helpers, not from the writer.
    const fields: [string, (w: PacketWriter) => void, Buffer][] = [
      ['int1', (w) => w.int1(0x7e), hex`7e`],
      ['int2', (w) => w.int2(0xbeef), hex`efbe`],
      ['int3', (w) => w.int3(0xc0ffee), hex`eeffc0`],
      ['int4', (w) => w.int4(0xdeadbeef), hex`efbeadde`],
      ['int8', (w) => w.int8(2 ** 40 + 5), le(2 ** 40 + 5, 8)],
      ['lenencInt', (w) => w.lenencInt(0x12345), hex`fd 452301`],
      ['bytes', (w) => w.bytes('hello'), hex`68656c6c6f`],
      ['nulString', (w) => w.nulString('hi'), hex`686900`],
      ['lenencBytes', (w) => w.lenencBytes('hi'), hex`02 6869`],
      ['zeros', (w) => w.zeros(5), hex`0000000000`],
    ];
    for (const [name, write, expected] of fields) {
      for (let capacity = 1; capacity <= 9; capacity++) {
        const w = new PacketWriter(capacity).bytes(Buffer.alloc(capacity, 0xaa));
        write(w);
        w.int1(0x55);
        assert.deepEqual(
          w.payload(),
          Buffer.concat([Buffer.alloc(capacity, 0xaa), expected, hex`55`]),
          `${name} at capacity ${capacity}`,
        );
      }
    }
  });

  test('zeros() really writes zeros into reused (allocUnsafe) memory', () => {
    // Fill, then grow: the grown buffer is allocUnsafe and may hold garbage.
    for (let round = 0; round < 50; round++) {
      const w = new PacketWriter(4).bytes(Buffer.alloc(4, 0xff)).zeros(1000);
      assert.ok(w.payload().subarray(4).equals(Buffer.alloc(1000)));
    }
  });

  test('finish() frames what was written', () => {
    const w = new PacketWriter().int1(0x03).bytes('SELECT 1');
    assert.deepEqual(w.finish(0), hex`09 00 00 00 03 ${'SELECT 1'}`);
  });
});
