// PacketReader: bounds-checked reads of every field type.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_strings.html

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';

import { PacketReader } from '../../../src/protocol/reader.js';
import { MalformedPacketError } from '../../../src/util/errors.js';
import { Rng, hex, le } from '../../helpers/bytes.js';

/**
 * A reader over `payload` placed inside a larger buffer whose bytes around the window are
 * plausible data (NULs, digits, length bytes): a read that escapes the window would find
 * something to read instead of failing.
 */
function windowed(payload: Buffer): PacketReader {
  const before = hex`00 01 02 03 00 fc ff ff`;
  const after = hex`00 41 42 43 00 ff ff ff ff ff ff ff ff 00`;
  const buf = Buffer.concat([before, payload, after]);
  return new PacketReader(buf, before.length, before.length + payload.length);
}

function malformed(fn: () => unknown, what: string): void {
  assert.throws(fn, MalformedPacketError, what);
}

describe('PacketReader on valid input', () => {
  test('fixed-length integers', () => {
    const r = windowed(hex`ab cdab 563412 efcdab89 ffffffff 0807060504030201 ffffffffffff1f00`);
    assert.equal(r.remaining, 30);
    assert.equal(r.peek1(), 0xab);
    assert.equal(r.remaining, 30, 'peek1 does not advance');
    assert.equal(r.int1(), 0xab);
    assert.equal(r.int2(), 0xabcd);
    assert.equal(r.int3(), 0x123456);
    assert.equal(r.int4(), 0x89abcdef);
    assert.equal(r.int4(), 0xffffffff, 'unsigned');
    assert.equal(r.int8(), Number(0x0102030405060708n));
    assert.equal(r.int8(), 2 ** 53 - 1);
    assert.equal(r.remaining, 0);
    r.expectEnd();
  });

  test('int8 of large values equals the nearest double of the 64-bit value', () => {
    const rng = new Rng(8);
    for (let i = 0; i < 200; i++) {
      const b = rng.bytes(8);
      assert.equal(new PacketReader(b).int8(), Number(b.readBigUInt64LE(0)), b.toString('hex'));
    }
    assert.equal(new PacketReader(hex`ffffffffffffffff`).int8(), 2 ** 64);
  });

  test('length-encoded integers: every form', () => {
    const cases: [Buffer, number][] = [
      [hex`00`, 0],
      [hex`fa`, 250],
      [hex`fc fb00`, 251],
      [hex`fc ffff`, 0xffff],
      [hex`fc 0000`, 0], // non-minimal encodings are still valid
      [hex`fd 000001`, 0x10000],
      [hex`fd ffffff`, 0xffffff],
      [hex`fe 0000000100000000`, 2 ** 24],
      [hex`fe ffffffff01000000`, 2 ** 33 - 1],
    ];
    for (const [bytes, value] of cases) {
      const r = windowed(bytes);
      assert.equal(r.lenencInt(), value, bytes.toString('hex'));
      r.expectEnd();
    }
  });

  test('strings and byte runs', () => {
    const r = windowed(hex`${'abc'} 03 ${'xyz'} ${'user'}00 00 ${'rest'}`);
    assert.deepEqual(r.bytes(3), Buffer.from('abc'));
    assert.deepEqual(r.lenencBytes(), Buffer.from('xyz'));
    assert.deepEqual(r.nulBytes(), Buffer.from('user'));
    assert.deepEqual(r.nulBytes(), Buffer.alloc(0), 'empty NUL-terminated string');
    assert.equal(r.position, 8 + 3 + 4 + 5 + 1);
    assert.deepEqual(r.rest(), Buffer.from('rest'));
    assert.deepEqual(r.rest(), Buffer.alloc(0), 'rest at the end is empty');
    r.expectEnd();
  });

  test('nulOrRestBytes with and without a terminator', () => {
    const r = windowed(hex`${'db'}00 ${'plugin'}`);
    assert.deepEqual(r.nulOrRestBytes(), Buffer.from('db'));
    assert.deepEqual(r.nulOrRestBytes(), Buffer.from('plugin'), 'stops at the window end, not at the NUL after it');
    r.expectEnd();
    assert.deepEqual(r.nulOrRestBytes(), Buffer.alloc(0), 'at the end: empty');
  });

  test('skip, position and remaining', () => {
    const r = windowed(hex`0102030405`);
    assert.equal(r.position, 8, 'position is absolute in the underlying buffer');
    r.skip(0);
    r.skip(2);
    assert.equal(r.position, 10);
    assert.equal(r.remaining, 3);
    assert.equal(r.int1(), 3);
    r.skip(2);
    r.expectEnd();
  });

  test('bytes() and rest() are views into the buffer', () => {
    const buf = hex`01020304`;
    const r = new PacketReader(buf);
    const b = r.bytes(2);
    buf[0] = 0xee;
    assert.equal(b[0], 0xee);
  });

  test('an empty window', () => {
    const buf = hex`00 00 00`;
    const r = new PacketReader(buf, 1, 1);
    assert.equal(r.remaining, 0);
    r.expectEnd();
    assert.deepEqual(r.rest(), Buffer.alloc(0));
    assert.deepEqual(r.nulOrRestBytes(), Buffer.alloc(0));
    malformed(() => r.nulBytes(), 'nulBytes at the end, with a NUL right after the window');
    malformed(() => r.int1(), 'int1');
    malformed(() => r.peek1(), 'peek1');
  });
});

describe('PacketReader on truncated input (window ends inside the field, buffer continues)', () => {
  const reads: [string, Buffer, (r: PacketReader) => unknown][] = [
    ['int1', hex`01`, (r) => r.int1()],
    ['int2', hex`0102`, (r) => r.int2()],
    ['int3', hex`010203`, (r) => r.int3()],
    ['int4', hex`01020304`, (r) => r.int4()],
    ['int8', hex`0102030405060708`, (r) => r.int8()],
    ['lenencInt 0xfc', hex`fc 0102`, (r) => r.lenencInt()],
    ['lenencInt 0xfd', hex`fd 010203`, (r) => r.lenencInt()],
    ['lenencInt 0xfe', hex`fe 0102030405060708`, (r) => r.lenencInt()],
    ['bytes(5)', hex`0102030405`, (r) => r.bytes(5)],
    ['lenencBytes', hex`04 61626364`, (r) => r.lenencBytes()],
    ['lenencBytes 0xfc', hex`fc 0300 616263`, (r) => r.lenencBytes()],
    ['nulBytes', hex`616263 00`, (r) => r.nulBytes()],
    ['skip(4)', hex`01020304`, (r) => r.skip(4)],
  ];

  for (const [name, field, read] of reads) {
    test(name, () => {
      // The complete field reads fine and consumes exactly its bytes.
      const full = windowed(field);
      read(full);
      full.expectEnd();
      // Every shorter window throws, although the underlying buffer has more bytes.
      for (let len = 0; len < field.length; len++) {
        const buf = Buffer.concat([field, hex`00 00 00 00 00 00 00 00 00`]);
        malformed(() => read(new PacketReader(buf, 0, len)), `${name} with ${len} of ${field.length} bytes`);
        // The same, starting in the middle of a buffer.
        const offsetBuf = Buffer.concat([hex`ff ff`, buf]);
        malformed(() => read(new PacketReader(offsetBuf, 2, 2 + len)), `${name} at offset 2 with ${len} bytes`);
      }
    });
  }

  test('nulBytes does not find a NUL beyond the window', () => {
    const buf = hex`616263 00`;
    malformed(() => new PacketReader(buf, 0, 3).nulBytes(), 'terminator just past the end');
    malformed(() => new PacketReader(hex`616263`).nulBytes(), 'no terminator at all');
  });

  test('rest() and nulOrRestBytes() stop at the window end', () => {
    const buf = hex`61 62 63 64 00`;
    assert.deepEqual(new PacketReader(buf, 1, 3).rest(), hex`6263`);
    assert.deepEqual(new PacketReader(buf, 1, 3).nulOrRestBytes(), hex`6263`);
  });

  test('a failed read leaves the position where it was', () => {
    const r = windowed(hex`01 02 03`);
    malformed(() => r.int4(), 'int4');
    malformed(() => r.bytes(4), 'bytes');
    malformed(() => r.nulBytes(), 'nulBytes');
    malformed(() => r.skip(4), 'skip');
    assert.equal(r.remaining, 3);
    assert.equal(r.int1(), 1);
  });

  test('negative and absurd lengths are malformed, not RangeErrors', () => {
    malformed(() => new PacketReader(hex`0102`).bytes(-1), 'bytes(-1)');
    malformed(() => new PacketReader(hex`0102`).skip(-1), 'skip(-1)');
    malformed(() => new PacketReader(hex`fe ffffffffffffffff 00`).lenencBytes(), 'lenenc length 2^64-1');
    malformed(() => new PacketReader(hex`fe 0000000001000000 00`).lenencBytes(), 'lenenc length 2^32');
  });
});

describe('PacketReader invalid encodings and checks', () => {
  test('lenenc 0xFB (NULL) and 0xFF are not integers', () => {
    malformed(() => new PacketReader(hex`fb 00 00 00 00 00 00 00 00`).lenencInt(), '0xfb');
    malformed(() => new PacketReader(hex`ff 00 00 00 00 00 00 00 00`).lenencInt(), '0xff');
    malformed(() => new PacketReader(hex`fb 00`).lenencBytes(), 'lenencBytes 0xfb');
  });

  test('expectEnd throws when bytes remain', () => {
    const r = windowed(hex`01 02`);
    malformed(() => r.expectEnd(), 'two bytes left');
    r.int1();
    malformed(() => r.expectEnd(), 'one byte left');
    r.int1();
    r.expectEnd();
  });

  test('a window outside the buffer is refused at construction', () => {
    const buf = hex`01 02 03`;
    assert.throws(() => new PacketReader(buf, 0, 4), RangeError);
    assert.throws(() => new PacketReader(buf, 2, 1), RangeError);
    assert.throws(() => new PacketReader(buf, -1, 2), RangeError);
    assert.throws(() => new PacketReader(buf, 0.5, 2), RangeError);
    assert.equal(new PacketReader(buf, 3).remaining, 0);
    assert.equal(new PacketReader(buf, 1).remaining, 2, 'end defaults to the buffer end');
  });

  test('random reads on random input: values or MalformedPacketError, never beyond the window', () => {
    const rng = new Rng(42);
    const ops: ((r: PacketReader) => unknown)[] = [
      (r) => r.int1(),
      (r) => r.int2(),
      (r) => r.int3(),
      (r) => r.int4(),
      (r) => r.int8(),
      (r) => r.lenencInt(),
      (r) => r.lenencBytes(),
      (r) => r.nulBytes(),
      (r) => r.nulOrRestBytes(),
      (r) => r.bytes(rng.int(0, 6)),
      (r) => r.skip(rng.int(0, 6)),
      (r) => r.peek1(),
    ];
    for (let i = 0; i < 3000; i++) {
      const buf = rng.bytes(rng.int(0, 24));
      const start = rng.int(0, buf.length);
      const end = rng.int(start, buf.length);
      const r = new PacketReader(buf, start, end);
      for (let k = 0; k < 8; k++) {
        try {
          rng.pick(ops)(r);
        } catch (e) {
          assert.ok(e instanceof MalformedPacketError, `${String(e)} on ${buf.toString('hex')} [${start},${end})`);
        }
        assert.ok(r.position >= start && r.position <= end, 'position stays inside the window');
        assert.equal(r.remaining, end - r.position);
      }
    }
  });
});

test('le() helper sanity (used to build expectations elsewhere)', () => {
  assert.deepEqual(le(0x010203, 3), hex`030201`);
  assert.throws(() => le(256, 1));
});
