// ERR, OK and AuthSwitchRequest packets.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_err_packet.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_switch_request.html

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';

import {
  parseAuthSwitchRequest,
  parseErr,
  writeAuthSwitchRequest,
  writeErr,
  writeOk,
} from '../../../src/protocol/packets/generic.js';
import { MalformedPacketError, ProxyError } from '../../../src/util/errors.js';
import { Rng, hex, le, nul, parsesOrThrowsTyped } from '../../helpers/bytes.js';

const isProxyError = (e: unknown): boolean => e instanceof ProxyError;

function unframe(framed: Buffer, seq: number): Buffer {
  assert.equal(framed.readUIntLE(0, 3), framed.length - 4, 'header length');
  assert.equal(framed[3], seq, 'sequence id');
  return framed.subarray(4);
}

function fuzz(parse: (b: Buffer) => unknown, valid: readonly Buffer[], seed: number): void {
  const rng = new Rng(seed);
  const outcomes = { ok: 0, error: 0 };
  for (let i = 0; i < 2000; i++) {
    let b: Buffer;
    if (rng.next() < 0.3) {
      b = rng.bytes(rng.int(0, 40));
      if (b.length > 0 && rng.next() < 0.7) b[0] = rng.pick([0x00, 0xfe, 0xff]);
    } else {
      b = Buffer.from(rng.pick(valid));
      if (b.length > 0) for (let k = rng.int(1, 3); k > 0; k--) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
      if (rng.next() < 0.4) b = b.subarray(0, rng.int(0, b.length));
    }
    outcomes[parsesOrThrowsTyped(parse, b, isProxyError)]++;
  }
  for (const v of valid) {
    for (let len = 0; len <= v.length; len++) parsesOrThrowsTyped(parse, v.subarray(0, len), isProxyError);
  }
  assert.ok(outcomes.ok > 50 && outcomes.error > 50, JSON.stringify(outcomes));
}

describe('ERR packet', () => {
  test('writeErr: exact bytes (4.1 format)', () => {
    const framed = writeErr(2, { errno: 1045, sqlState: '28000', message: "Access denied for user 'x'" });
    assert.deepEqual(unframe(framed, 2), hex`ff 1504 23 ${'28000'} ${"Access denied for user 'x'"}`);
  });

  test('writeErr counts the message in UTF-8 bytes', () => {
    const framed = writeErr(1, { errno: 1064, sqlState: '42000', message: 'größe – ✓' });
    const payload = unframe(framed, 1);
    assert.deepEqual(payload.subarray(9), Buffer.from('größe – ✓', 'utf8'));
  });

  test('writeErr pads or cuts the SQL state to 5 characters', () => {
    assert.deepEqual(unframe(writeErr(0, { errno: 1, sqlState: 'HY', message: '' }), 0), hex`ff 0100 23 ${'HY000'}`);
    assert.deepEqual(
      unframe(writeErr(0, { errno: 1, sqlState: '4200077', message: '' }), 0),
      hex`ff 0100 23 ${'42000'}`,
    );
  });

  test('round trip', () => {
    for (const err of [
      { errno: 1043, sqlState: '08S01', message: 'Bad handshake' },
      { errno: 0xffff, sqlState: 'HY000', message: '' },
      { errno: 1, sqlState: 'XX001', message: 'multi\nline ✓' },
    ]) {
      assert.deepEqual(parseErr(unframe(writeErr(5, err), 5)), err);
    }
  });

  test('without SQL state (pre-4.1 / early handshake errors): HY000', () => {
    assert.deepEqual(parseErr(hex`ff 6a04 ${"Host '10.0.0.1' is blocked"}`), {
      errno: 1130,
      sqlState: 'HY000',
      message: "Host '10.0.0.1' is blocked",
    });
    assert.deepEqual(parseErr(hex`ff 6a04`), { errno: 1130, sqlState: 'HY000', message: '' });
  });

  test('malformed ERR packets', () => {
    assert.throws(() => parseErr(Buffer.alloc(0)), MalformedPacketError, 'empty');
    assert.throws(() => parseErr(hex`ff 15`), MalformedPacketError, 'short errno');
    assert.throws(() => parseErr(hex`00 1504 23 ${'28000'}`), MalformedPacketError, 'not an ERR header');
    assert.throws(() => parseErr(hex`ff 1504 23 ${'2800'}`), MalformedPacketError, 'SQL state of 4 bytes');
  });

  test('fuzz', () => {
    fuzz(parseErr, [unframe(writeErr(0, { errno: 1045, sqlState: '28000', message: 'denied' }), 0), hex`ff 0100`], 1);
  });
});

describe('OK packet', () => {
  test('writeOk: exact bytes', () => {
    assert.deepEqual(writeOk(2, 0x0002), hex`07 00 00 02 00 00 00 0200 0000`);
    assert.deepEqual(writeOk(0, 0x4003), hex`07 00 00 00 00 00 00 0340 0000`);
  });
});

describe('AuthSwitchRequest', () => {
  const scramble = Buffer.from('abcdefghij0123456789');

  test('write: exact bytes, plugin data followed by NUL', () => {
    assert.deepEqual(
      writeAuthSwitchRequest(2, 'mysql_native_password', scramble),
      hex`${le(1 + 22 + 21, 3)} 02 fe ${nul('mysql_native_password')} ${scramble} 00`,
    );
  });

  test('round trip removes the trailing NUL', () => {
    const sw = parseAuthSwitchRequest(unframe(writeAuthSwitchRequest(4, 'mysql_native_password', scramble), 4));
    assert.equal(sw.pluginName, 'mysql_native_password');
    assert.deepEqual(sw.pluginData, scramble);
  });

  test('round trip with plugin names and data of many lengths', () => {
    for (let n = 1; n <= 100; n++) {
      const name = 'p'.repeat(n);
      const data = Buffer.alloc(100 - n + 1, 0x2a);
      const sw = parseAuthSwitchRequest(unframe(writeAuthSwitchRequest(1, name, data), 1));
      assert.deepEqual([sw.pluginName, sw.pluginData], [name, data], `name of ${n} bytes`);
    }
  });

  test('without a trailing NUL the data is kept whole', () => {
    const sw = parseAuthSwitchRequest(hex`fe ${nul('mysql_clear_password')} ${'xyz'}`);
    assert.equal(sw.pluginName, 'mysql_clear_password');
    assert.deepEqual(sw.pluginData, Buffer.from('xyz'));
  });

  test('only one trailing NUL is removed', () => {
    assert.deepEqual(parseAuthSwitchRequest(hex`fe ${nul('p')} 61 00 00`).pluginData, hex`61 00`);
  });

  test('no plugin data at all', () => {
    assert.deepEqual(parseAuthSwitchRequest(hex`fe ${nul('mysql_clear_password')}`).pluginData, Buffer.alloc(0));
    assert.deepEqual(parseAuthSwitchRequest(hex`fe ${nul('mysql_clear_password')} 00`).pluginData, Buffer.alloc(0));
  });

  test('malformed AuthSwitchRequests', () => {
    assert.throws(() => parseAuthSwitchRequest(hex`fe 00 ${scramble} 00`), MalformedPacketError, 'empty plugin name');
    assert.throws(() => parseAuthSwitchRequest(hex`fe`), MalformedPacketError, 'old-style switch: no name at all');
    assert.throws(
      () => parseAuthSwitchRequest(hex`fe ${'mysql_native_password'}`),
      MalformedPacketError,
      'no terminator',
    );
    assert.throws(() => parseAuthSwitchRequest(hex`00 ${nul('p')}`), MalformedPacketError, 'wrong header');
    assert.throws(() => parseAuthSwitchRequest(Buffer.alloc(0)), MalformedPacketError, 'empty');
  });

  test('fuzz', () => {
    fuzz(parseAuthSwitchRequest, [unframe(writeAuthSwitchRequest(0, 'mysql_native_password', scramble), 0)], 3);
  });
});
