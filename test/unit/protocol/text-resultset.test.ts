// COM_QUERY / COM_QUIT packets and the text resultset parsers used by the cluster health check.
// Expectations are built with test/helpers/bytes.ts, independently of src/protocol/writer.ts.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import {
  isEofPacket,
  parseColumnCount,
  parseTextRow,
  writeComQuery,
  writeComQuit,
} from '../../../src/protocol/packets/text-resultset.js';
import { MalformedPacketError } from '../../../src/util/errors.js';
import { hex, lenenc, lenencStr, packet } from '../../helpers/bytes.js';

const malformed = (e: unknown): boolean => e instanceof MalformedPacketError;

test('writeComQuery: 0x03 and the UTF-8 text, sequence 0', () => {
  assert.deepEqual(writeComQuery('SELECT @@global.read_only'), packet(0, 0x03, 'SELECT @@global.read_only'));
  assert.deepEqual(writeComQuery('SELECT "ü"'), hex`0c0000 00 03 ${'SELECT "'} c3bc 22`);
  assert.deepEqual(writeComQuery(''), hex`010000 00 03`);
});

test('writeComQuit: one byte 0x01, sequence 0', () => {
  assert.deepEqual(writeComQuit(), hex`010000 00 01`);
});

test('parseColumnCount: length-encoded counts', () => {
  assert.equal(parseColumnCount(hex`01`), 1);
  assert.equal(parseColumnCount(hex`fa`), 250);
  assert.equal(parseColumnCount(lenenc(251)), 251);
  assert.equal(parseColumnCount(lenenc(0x1234)), 0x1234);
  assert.equal(parseColumnCount(lenenc(0x123456)), 0x123456);
  assert.equal(parseColumnCount(hex`fc fb 00`), 251);
});

test('parseColumnCount: zero, NULL, 0xff, truncation and trailing bytes are malformed', () => {
  for (const bad of [
    hex`00`,
    hex``,
    hex`fb`,
    hex`ff`,
    hex`fc 01`,
    hex`fd 01 02`,
    hex`fe 01 02 03`,
    hex`01 00`,
    hex`fc 01 00 00`,
  ]) {
    assert.throws(() => parseColumnCount(bad), malformed, bad.toString('hex'));
  }
  assert.throws(() => parseColumnCount(hex`00`), /column count 0/);
});

test('isEofPacket: 0xfe shorter than 9 bytes is EOF; longer is a row', () => {
  assert.equal(isEofPacket(hex`fe 00 00 02 00`), true); // 4.1 EOF: warnings, status
  assert.equal(isEofPacket(hex`fe`), true); // pre-4.1 EOF
  assert.equal(isEofPacket(hex`fe 00 00 00 00 00 00 00`), true); // 8 bytes
  // A row whose first value has a 0xfe length prefix: at least 9 bytes.
  assert.equal(isEofPacket(hex`fe 00 00 00 00 00 00 00 00`), false);
  assert.equal(isEofPacket(Buffer.concat([hex`fe 00 00 00 01 00 00 00 00`, Buffer.alloc(16)])), false);
  // Not 0xfe.
  assert.equal(isEofPacket(hex`00 00 00 02 00`), false);
  assert.equal(isEofPacket(hex`ff 15 04`), false);
  assert.equal(isEofPacket(hex`01 31`), false);
  assert.equal(isEofPacket(hex``), false);
});

test('parseTextRow: values as bytes, 0xfb as NULL', () => {
  assert.deepEqual(parseTextRow(hex`01 31`, 1), [Buffer.from('1')]);
  assert.deepEqual(parseTextRow(hex`fb`, 1), [null]);
  assert.deepEqual(parseTextRow(Buffer.concat([lenencStr('0'), hex`fb`, lenencStr(''), lenencStr('abc')]), 4), [
    Buffer.from('0'),
    null,
    Buffer.alloc(0),
    Buffer.from('abc'),
  ]);
  const long = Buffer.alloc(300, 0x61);
  assert.deepEqual(parseTextRow(Buffer.concat([hex`fc 2c 01`, long, hex`fb`]), 2), [long, null]);
  // A value containing 0xfb bytes is not NULL.
  assert.deepEqual(parseTextRow(hex`02 fb fb`, 1), [hex`fb fb`]);
});

test('parseTextRow: truncated rows, missing columns and trailing bytes throw MalformedPacketError', () => {
  const cases: [Buffer, number][] = [
    [hex``, 1],
    [hex`02 31`, 1], // value shorter than its length
    [hex`01 31`, 2], // a column missing
    [hex`fb`, 2],
    [hex`01 31 01 32`, 1], // an extra value
    [hex`fb 00`, 1],
    [hex`fc 05`, 1], // truncated length
    [hex`fc 05 00 61 62`, 1],
    [hex`ff`, 1], // not a length
    [hex`fe 00 00 00 01 00 00 00 00`, 1], // 2^32 bytes announced, none there
  ];
  for (const [payload, columns] of cases) {
    assert.throws(() => parseTextRow(payload, columns), malformed, `${payload.toString('hex')} / ${columns}`);
  }
});

test('parseTextRow with zero columns accepts only an empty payload', () => {
  assert.deepEqual(parseTextRow(hex``, 0), []);
  assert.throws(() => parseTextRow(hex`01 31`, 0), malformed);
});
