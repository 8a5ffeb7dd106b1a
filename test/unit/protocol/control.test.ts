// The control protocol codec: myproxy's framing rules and error messages, the builder's padding.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  CONTROL_MAGIC,
  ControlCommand,
  ControlDatagramBuilder,
  parseControlDatagram,
} from '../../../src/protocol/control.js';

test('a built datagram: magic, then each command with big-endian length and number, padded to 4', () => {
  const d = new ControlDatagramBuilder()
    .add(ControlCommand.DISCONNECT_DATABASE, Buffer.from('acct'))
    .add(ControlCommand.FADE_CHILDREN, Buffer.from('x'))
    .add(ControlCommand.NOP, Buffer.alloc(0))
    .toBuffer();
  assert.equal(
    d.toString('hex'),
    ['63046101', '00040014', Buffer.from('acct').toString('hex'), '00010008', '78000000', '00000000'].join(''),
  );
  const parsed = parseControlDatagram(d);
  assert.equal(parsed.error, undefined);
  assert.deepEqual(
    parsed.commands.map((c) => [c.command, c.payload.toString()]),
    [
      [20, 'acct'],
      [8, 'x'],
      [0, ''],
    ],
  );
});

test("malformed datagrams get myproxy's messages; commands before the fault still count", () => {
  assert.equal(parseControlDatagram(Buffer.alloc(0)).error, 'wrong magic');
  assert.equal(parseControlDatagram(Buffer.from([0x63, 0x04, 0x61])).error, 'wrong magic');
  assert.equal(parseControlDatagram(Buffer.from('deadbeef', 'hex')).error, 'wrong magic');
  const magic = Buffer.alloc(4);
  magic.writeUInt32BE(CONTROL_MAGIC);
  assert.equal(parseControlDatagram(Buffer.concat([magic, Buffer.alloc(3)])).error, 'odd control packet (length=3)');
  const good = new ControlDatagramBuilder().add(ControlCommand.DISCONNECT_DATABASE, Buffer.from('a')).toBuffer();
  const bad = Buffer.concat([good, Buffer.from([0x00, 0x09, 0x00, 0x14, 0x41, 0x42, 0x43, 0x44])]);
  const r = parseControlDatagram(bad);
  assert.equal(r.error, 'partial payload (length=4, expected=9)');
  assert.deepEqual(
    r.commands.map((c) => c.payload.toString()),
    ['a'],
  );
});

test('random datagrams never throw', () => {
  for (let i = 0; i < 20000; i++) {
    const b = Buffer.alloc(i % 40);
    for (let k = 0; k < b.length; k++) b[k] = (i * 31 + k * 17) & 0xff;
    if (i % 2 === 0 && b.length >= 4) b.writeUInt32BE(CONTROL_MAGIC, 0);
    parseControlDatagram(b);
  }
});
