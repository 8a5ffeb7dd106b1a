// HandshakeV10 (the server greeting): writing ours, parsing a backend's.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';

import { parseHandshakeV10, writeHandshakeV10, type GreetingOptions } from '../../../src/protocol/packets/handshake.js';
import { PacketFramer } from '../../../src/protocol/framer.js';
import { MalformedPacketError, ProxyError } from '../../../src/util/errors.js';
import { Rng, hex, le, nul, parsesOrThrowsTyped } from '../../helpers/bytes.js';

// Capability bits, written out from the spec's table rather than imported.
const LONG_PASSWORD = 1;
const CONNECT_WITH_DB = 8;
const PROTOCOL_41 = 0x200;
const SSL = 0x800;
const SECURE_CONNECTION = 0x8000;
const PLUGIN_AUTH = 0x80000;
const REMEMBER_OPTIONS = 0x80000000;

const isProxyError = (e: unknown): boolean => e instanceof ProxyError;

/** Strip and check the 4-byte header of a single physical packet. */
function unframe(framed: Buffer, seq: number): Buffer {
  assert.equal(framed.readUIntLE(0, 3), framed.length - 4, 'header length');
  assert.equal(framed[3], seq, 'sequence id');
  return framed.subarray(4);
}

/**
 * A MariaDB 10.11 greeting, field by field from the spec. MariaDB does not set CLIENT_LONG_PASSWORD
 * (it reads bit 0 as CLIENT_MYSQL) and puts its extended capabilities in the last 4 reserved bytes.
 */
const mariadb = (() => {
  const version = '5.5.5-10.11.6-MariaDB-0+deb12u1';
  const part1 = Buffer.from('Gr;J7*|m', 'latin1');
  const part2 = Buffer.from('Bk`T0R#o+Y4v', 'latin1');
  const plugin = 'mysql_native_password';
  const fields = {
    head: hex`0a ${nul(version)} 2a000000 ${part1} 00 fef7`,
    rest: hex`2d 0200 ff81 15 000000000000 1d000000`,
    part2: hex`${part2} 00`,
    plugin: nul(plugin),
  };
  const payload = Buffer.concat([fields.head, fields.rest, fields.part2, fields.plugin]);
  const capsEnd = fields.head.length;
  const part2Start = capsEnd + fields.rest.length;
  const part2End = part2Start + fields.part2.length;
  return { payload, version, part1, part2, plugin, capsEnd, part2Start, part2End };
})();

describe('parseHandshakeV10', () => {
  test('a byte-exact MariaDB 10.11 greeting', () => {
    const g = parseHandshakeV10(mariadb.payload);
    assert.equal(g.protocolVersion, 10);
    assert.deepEqual(g.serverVersion, Buffer.from(mariadb.version));
    assert.equal(g.connectionId, 42);
    assert.deepEqual(g.authPluginData, Buffer.concat([mariadb.part1, mariadb.part2]));
    assert.equal(g.authPluginData.length, 20);
    assert.equal(g.capabilities, 0x81fff7fe);
    assert.equal(g.capabilities & LONG_PASSWORD, 0);
    assert.notEqual(g.capabilities & PROTOCOL_41, 0);
    assert.notEqual(g.capabilities & SECURE_CONNECTION, 0);
    assert.notEqual(g.capabilities & PLUGIN_AUTH, 0);
    assert.equal(g.capabilities & SSL, 0);
    // The last 4 reserved bytes: progress, bulk operations, extended metadata, metadata cache.
    assert.equal(g.extendedCapabilities, 0x1d);
    assert.equal(g.characterSet, 45);
    assert.equal(g.statusFlags, 2);
    assert.equal(g.authPluginName, mariadb.plugin);
  });

  test('the same greeting arriving through the framer byte by byte', () => {
    const framer = new PacketFramer(1024);
    const framed = Buffer.concat([le(mariadb.payload.length, 3), hex`00`, mariadb.payload]);
    const packets = [...framed].flatMap((b) => framer.push(Buffer.of(b)));
    assert.equal(packets.length, 1);
    assert.equal(parseHandshakeV10(packets[0]!.payload).authPluginName, mariadb.plugin);
  });

  test('capabilities with bit 31 set are unsigned', () => {
    const p = Buffer.from(mariadb.payload);
    p.writeUInt16LE(0x81ff | 0x8000, mariadb.capsEnd + 3);
    assert.equal(parseHandshakeV10(p).capabilities, 0x81fff7fe);
    p.writeUInt16LE(0xffff, mariadb.capsEnd + 3);
    assert.equal(parseHandshakeV10(p).capabilities, 0xfffff7fe);
  });

  test('a pre-plugin-auth greeting (MySQL 5.1 style: length 0, 13-byte part 2, no plugin name)', () => {
    const part2 = Buffer.from('abcdefghijkl');
    const payload = hex`0a ${nul('5.1.73')} 01000000 ${'ABCDEFGH'} 00 ffff 08 0200 0000 00 ${Buffer.alloc(10)} ${part2} 00`;
    const g = parseHandshakeV10(payload);
    assert.deepEqual(g.authPluginData, Buffer.from('ABCDEFGHabcdefghijkl'));
    assert.equal(g.capabilities, 0xffff);
    assert.equal(g.authPluginName, '');
  });

  test('a longer auth-plugin-data length: part 2 is len - 8 bytes', () => {
    const part2 = Buffer.from('0123456789abcdefghijklm'); // 24 bytes with the NUL → len 32
    const payload = hex`0a 00 01000000 ${'ABCDEFGH'} 00 0082 21 0200 0800 20 ${Buffer.alloc(10)} ${part2} 00 ${nul('some_plugin')}`;
    const g = parseHandshakeV10(payload);
    assert.deepEqual(g.authPluginData, Buffer.concat([Buffer.from('ABCDEFGH'), part2]));
    assert.equal(g.authPluginName, 'some_plugin');
  });

  test('a plugin name without its NUL terminator (sent by some servers) is accepted', () => {
    const g = parseHandshakeV10(mariadb.payload.subarray(0, mariadb.payload.length - 1));
    assert.equal(g.authPluginName, mariadb.plugin);
  });

  test('protocol versions other than 10 are a typed ProxyError', () => {
    for (const v of [0, 9, 11, 0xff]) {
      const p = Buffer.from(mariadb.payload);
      p[0] = v;
      assert.throws(
        () => parseHandshakeV10(p),
        (e) => e instanceof ProxyError && !(e instanceof MalformedPacketError) && e.code === 'MYP_UNSUPPORTED_PROTOCOL',
      );
    }
  });

  test('truncated at every length', () => {
    const { payload, capsEnd, part2Start, part2End } = mariadb;
    for (let len = 0; len < payload.length; len++) {
      const cut = payload.subarray(0, len);
      if (len === capsEnd) {
        // The spec lets a greeting end after capability_flags_1 ("if more data in the packet").
        const g = parseHandshakeV10(cut);
        assert.deepEqual(g.authPluginData, mariadb.part1);
        assert.equal(g.capabilities, 0xf7fe);
        assert.equal(g.authPluginName, '');
      } else if (len === part2Start + 12 || len === part2End) {
        // Part 2 complete; only its NUL (and the plugin name) missing.
        const g = parseHandshakeV10(cut);
        assert.deepEqual(g.authPluginData, Buffer.concat([mariadb.part1, mariadb.part2]));
        assert.equal(g.authPluginName, '');
      } else if (len > part2End) {
        // Inside the plugin name: tolerated as a name without terminator (a prefix of it).
        const g = parseHandshakeV10(cut);
        assert.equal(g.authPluginName, mariadb.plugin.slice(0, len - part2End));
        assert.equal(g.authPluginData.length, 20);
      } else {
        assert.throws(() => parseHandshakeV10(cut), MalformedPacketError, `length ${len}`);
      }
    }
  });

  test('a scramble cut short is malformed, not a shorter scramble', () => {
    const cut = mariadb.payload.subarray(0, mariadb.part2Start + 6);
    assert.throws(() => parseHandshakeV10(cut), MalformedPacketError);
  });

  test('fuzz: random bytes, truncations and byte flips parse or throw ProxyError', () => {
    const rng = new Rng(10);
    const parse = (b: Buffer): unknown => parseHandshakeV10(b);
    const outcomes = { ok: 0, error: 0 };
    for (let i = 0; i < 3000; i++) {
      const b = rng.bytes(rng.int(0, 120));
      if (b.length > 0 && rng.next() < 0.5) b[0] = 10;
      outcomes[parsesOrThrowsTyped(parse, b, isProxyError)]++;
    }
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(mariadb.payload);
      for (let k = rng.int(1, 4); k > 0; k--) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
      const cut = rng.next() < 0.3 ? b.subarray(0, rng.int(0, b.length)) : b;
      outcomes[parsesOrThrowsTyped(parse, cut, isProxyError)]++;
    }
    // The fuzz must exercise both outcomes to mean anything.
    assert.ok(outcomes.ok > 100 && outcomes.error > 100, JSON.stringify(outcomes));
  });
});

describe('writeHandshakeV10', () => {
  const scramble = Buffer.from('0123456789abcdefghij');
  const options: GreetingOptions = {
    serverVersion: Buffer.from('5.7.99-myproxy'),
    connectionId: 0x01020304,
    scramble,
    capabilities:
      (REMEMBER_OPTIONS | PLUGIN_AUTH | SECURE_CONNECTION | PROTOCOL_41 | CONNECT_WITH_DB | LONG_PASSWORD) >>> 0,
    characterSet: 0x21,
    statusFlags: 0x0002,
    authPluginName: 'mysql_native_password',
  };

  test('exact bytes, field by field from the spec', () => {
    const expected = hex`
      0a ${nul('5.7.99-myproxy')} 04030201 ${'01234567'} 00
      0982 21 0200 0880 15 00000000000000000000 ${'89abcdefghij'} 00 ${nul('mysql_native_password')}`;
    assert.deepEqual(unframe(writeHandshakeV10(options), 0), expected);
  });

  test('round trip through parseHandshakeV10', () => {
    const rng = new Rng(3);
    for (const caps of [options.capabilities, 0xffffffff, PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH]) {
      const s = rng.bytes(20); // any bytes, NULs included
      const o: GreetingOptions = { ...options, capabilities: caps, scramble: s, connectionId: 0xfffffffe };
      const g = parseHandshakeV10(unframe(writeHandshakeV10(o), 0));
      assert.equal(g.protocolVersion, 10);
      assert.deepEqual(g.serverVersion, Buffer.from(o.serverVersion));
      assert.equal(g.connectionId, 0xfffffffe);
      assert.deepEqual(g.authPluginData, s);
      assert.equal(g.capabilities, caps >>> 0);
      assert.equal(g.characterSet, 0x21);
      assert.equal(g.statusFlags, 2);
      assert.equal(g.authPluginName, 'mysql_native_password');
    }
  });

  test('without CLIENT_PLUGIN_AUTH the parser ignores the name', () => {
    const caps = PROTOCOL_41 | SECURE_CONNECTION;
    const g = parseHandshakeV10(unframe(writeHandshakeV10({ ...options, capabilities: caps }), 0));
    assert.deepEqual(g.authPluginData, scramble);
    assert.equal(g.authPluginName, '');
  });
});
