// HandshakeResponse41 / HandshakeResponse320 and SSLRequest.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_response.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_ssl_request.html

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';

import {
  isSslRequest,
  parseHandshakeResponse,
  writeHandshakeResponse41,
  type HandshakeResponseOptions,
} from '../../../src/protocol/packets/handshake-response.js';
import { MalformedPacketError, ProxyError } from '../../../src/util/errors.js';
import { Rng, hex, le, lenenc, lenencStr, nul, parsesOrThrowsTyped } from '../../helpers/bytes.js';

// Capability bits from the spec's table.
const LONG_PASSWORD = 1;
const LONG_FLAG = 4;
const CONNECT_WITH_DB = 8;
const PROTOCOL_41 = 0x200;
const SSL = 0x800;
const SECURE_CONNECTION = 0x8000;
const PLUGIN_AUTH = 0x80000;
const CONNECT_ATTRS = 0x100000;
const LENENC_CLIENT_DATA = 0x200000;
const REMEMBER_OPTIONS = 0x80000000;
const ALL = 0xffffffff;

const isProxyError = (e: unknown): boolean => e instanceof ProxyError;
const scramble20 = Buffer.from('a1b2c3d4e5f6g7h8i9j0');

/** The fixed 32-byte head of a HandshakeResponse41 (also the whole SSLRequest). */
function head41(caps: number, maxPacket = 0x1000000, charset = 0x2d): Buffer {
  return hex`${le(caps >>> 0, 4)} ${le(maxPacket, 4)} ${charset} ${Buffer.alloc(23)}`;
}

interface Case {
  readonly name: string;
  readonly payload: Buffer;
  readonly serverCaps: number;
  readonly expected: {
    capabilities: number;
    maxPacketSize: number;
    characterSet: number;
    user: string;
    authResponse: Buffer;
    database: string;
    authPluginName: string;
  };
}

const base = { maxPacketSize: 0x1000000, characterSet: 0x2d, user: 'alice', authResponse: scramble20 };

const cases41: Case[] = [
  {
    name: 'SECURE_CONNECTION only',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION)} ${nul('alice')} 14 ${scramble20}`,
    expected: { ...base, capabilities: PROTOCOL_41 | SECURE_CONNECTION, database: '', authPluginName: '' },
  },
  {
    name: 'with CONNECT_WITH_DB',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB)} ${nul('alice')} 14 ${scramble20} ${nul('shop')}`,
    expected: {
      ...base,
      capabilities: PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB,
      database: 'shop',
      authPluginName: '',
    },
  },
  {
    name: 'with PLUGIN_AUTH',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH)} ${nul('alice')} 14 ${scramble20} ${nul('mysql_native_password')}`,
    expected: {
      ...base,
      capabilities: PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH,
      database: '',
      authPluginName: 'mysql_native_password',
    },
  },
  {
    name: 'with CONNECT_WITH_DB, PLUGIN_AUTH and REMEMBER_OPTIONS (bit 31)',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB | PLUGIN_AUTH | REMEMBER_OPTIONS)} ${nul('alice')} 14 ${scramble20} ${nul('shop')} ${nul('caching_sha2_password')}`,
    expected: {
      ...base,
      capabilities: (PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB | PLUGIN_AUTH | REMEMBER_OPTIONS) >>> 0,
      database: 'shop',
      authPluginName: 'caching_sha2_password',
    },
  },
  {
    name: 'LENENC client data (300-byte auth response, 0xFC length)',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION | LENENC_CLIENT_DATA | PLUGIN_AUTH)} ${nul('alice')} fc 2c01 ${Buffer.alloc(300, 0x61)} ${nul('client_ed25519')}`,
    expected: {
      ...base,
      capabilities: PROTOCOL_41 | SECURE_CONNECTION | LENENC_CLIENT_DATA | PLUGIN_AUTH,
      authResponse: Buffer.alloc(300, 0x61),
      database: '',
      authPluginName: 'client_ed25519',
    },
  },
  {
    name: 'CONNECT_ATTRS are skipped, a trailing zstd level byte is ignored',
    serverCaps: ALL,
    payload: (() => {
      const kv = Buffer.concat([
        lenencStr('_client_name'),
        lenencStr('libmariadb'),
        lenencStr('_os'),
        lenencStr('Linux'),
      ]);
      const caps = PROTOCOL_41 | SECURE_CONNECTION | LENENC_CLIENT_DATA | CONNECT_WITH_DB | PLUGIN_AUTH | CONNECT_ATTRS;
      return hex`${head41(caps)} ${nul('alice')} 14 ${scramble20} ${nul('shop')} ${nul('mysql_native_password')} ${lenenc(kv.length)} ${kv} 03`;
    })(),
    expected: {
      ...base,
      capabilities:
        PROTOCOL_41 | SECURE_CONNECTION | LENENC_CLIENT_DATA | CONNECT_WITH_DB | PLUGIN_AUTH | CONNECT_ATTRS,
      database: 'shop',
      authPluginName: 'mysql_native_password',
    },
  },
  {
    name: 'neither SECURE_CONNECTION nor LENENC: NUL-terminated auth response',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | CONNECT_WITH_DB)} ${nul('alice')} ${nul('oldpass1')} ${nul('shop')}`,
    expected: {
      ...base,
      capabilities: PROTOCOL_41 | CONNECT_WITH_DB,
      authResponse: Buffer.from('oldpass1'),
      database: 'shop',
      authPluginName: '',
    },
  },
  {
    name: 'empty auth response and empty user',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH)} 00 00 ${nul('mysql_native_password')}`,
    expected: {
      ...base,
      user: '',
      authResponse: Buffer.alloc(0),
      capabilities: PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH,
      database: '',
      authPluginName: 'mysql_native_password',
    },
  },
  {
    name: 'fields the server did not offer are not read (no PLUGIN_AUTH, no LENENC offered)',
    serverCaps: PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB | PLUGIN_AUTH)} ${nul('alice')} 14 ${scramble20} ${nul('shop')} ${nul('mysql_native_password')}`,
    expected: {
      ...base,
      // The client's own flags are reported unmasked.
      capabilities: PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB | PLUGIN_AUTH,
      database: 'shop',
      authPluginName: '',
    },
  },
  {
    name: 'CONNECT_WITH_DB set but the packet ends after the auth response',
    serverCaps: ALL,
    payload: hex`${head41(PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB)} ${nul('alice')} 14 ${scramble20}`,
    expected: {
      ...base,
      capabilities: PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB,
      database: '',
      authPluginName: '',
    },
  },
];

const cases320: Case[] = [
  {
    name: 'HandshakeResponse320 without CONNECT_WITH_DB: auth response to the end',
    serverCaps: ALL,
    payload: hex`${le(LONG_PASSWORD | LONG_FLAG, 2)} ${le(0xfffffe, 3)} ${nul('bob')} ${'5a4b3c2d'}`,
    expected: {
      capabilities: LONG_PASSWORD | LONG_FLAG,
      maxPacketSize: 0xfffffe,
      characterSet: 0,
      user: 'bob',
      authResponse: Buffer.from('5a4b3c2d'),
      database: '',
      authPluginName: '',
    },
  },
  {
    name: 'HandshakeResponse320 with CONNECT_WITH_DB',
    serverCaps: ALL,
    payload: hex`${le(LONG_PASSWORD | CONNECT_WITH_DB, 2)} ${le(0x10000, 3)} ${nul('bob')} ${nul('5a4b3c2d')} ${nul('shop')}`,
    expected: {
      capabilities: LONG_PASSWORD | CONNECT_WITH_DB,
      maxPacketSize: 0x10000,
      characterSet: 0,
      user: 'bob',
      authResponse: Buffer.from('5a4b3c2d'),
      database: 'shop',
      authPluginName: '',
    },
  },
  {
    name: 'HandshakeResponse320, CONNECT_WITH_DB not offered by the server',
    serverCaps: PROTOCOL_41 | SECURE_CONNECTION,
    payload: hex`${le(CONNECT_WITH_DB, 2)} ${le(0x10000, 3)} ${nul('bob')} ${nul('5a4b3c2d')} ${nul('shop')}`,
    expected: {
      capabilities: CONNECT_WITH_DB,
      maxPacketSize: 0x10000,
      characterSet: 0,
      user: 'bob',
      authResponse: Buffer.from('5a4b3c2d'),
      database: '',
      authPluginName: '',
    },
  },
];

function assertParsed(c: Case): void {
  const r = parseHandshakeResponse(c.payload, c.serverCaps);
  assert.deepEqual(
    {
      capabilities: r.capabilities,
      maxPacketSize: r.maxPacketSize,
      characterSet: r.characterSet,
      user: r.user.toString('latin1'),
      authResponse: r.authResponse,
      database: r.database.toString('latin1'),
      authPluginName: r.authPluginName,
    },
    c.expected,
    c.name,
  );
}

describe('parseHandshakeResponse', () => {
  for (const c of [...cases41, ...cases320]) test(c.name, () => assertParsed(c));

  test('shorter than the fixed part, or without the user terminator: malformed', () => {
    const full = cases41[0]!.payload;
    const userEnd = 32 + 'alice'.length + 1;
    for (let len = 0; len < userEnd; len++) {
      assert.throws(() => parseHandshakeResponse(full.subarray(0, len), ALL), MalformedPacketError, `length ${len}`);
    }
  });

  test('auth response shorter than its length byte / lenenc length: malformed', () => {
    const caps = PROTOCOL_41 | SECURE_CONNECTION;
    assert.throws(
      () => parseHandshakeResponse(hex`${head41(caps)} ${nul('u')} 15 ${scramble20}`, ALL),
      MalformedPacketError,
    );
    const lenencCaps = caps | LENENC_CLIENT_DATA;
    assert.throws(
      () => parseHandshakeResponse(hex`${head41(lenencCaps)} ${nul('u')} fc 2c01 ${Buffer.alloc(299)}`, ALL),
      MalformedPacketError,
    );
    assert.throws(() => parseHandshakeResponse(hex`${head41(lenencCaps)} ${nul('u')} fb`, ALL), MalformedPacketError);
  });

  test('connection attributes longer than the packet: malformed', () => {
    const caps = PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | CONNECT_ATTRS;
    const p = hex`${head41(caps)} ${nul('u')} 00 ${nul('mysql_native_password')} 10 ${lenencStr('k')}`;
    assert.throws(() => parseHandshakeResponse(p, ALL), MalformedPacketError);
  });

  test('every truncation of every case parses or throws a ProxyError', () => {
    for (const c of [...cases41, ...cases320]) {
      for (let len = 0; len <= c.payload.length; len++) {
        parsesOrThrowsTyped((b) => parseHandshakeResponse(b, c.serverCaps), c.payload.subarray(0, len), isProxyError);
      }
    }
  });

  test('fuzz: random bytes and byte flips parse or throw ProxyError', () => {
    const rng = new Rng(41);
    const outcomes = { ok: 0, error: 0 };
    const all = [...cases41, ...cases320];
    for (let i = 0; i < 4000; i++) {
      let b: Buffer;
      if (rng.next() < 0.3) {
        b = rng.bytes(rng.int(0, 80));
      } else {
        b = Buffer.from(rng.pick(all).payload);
        for (let k = rng.int(1, 4); k > 0; k--) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
        if (rng.next() < 0.3) b = b.subarray(0, rng.int(0, b.length));
      }
      const serverCaps = rng.next() < 0.5 ? ALL : rng.int(0, 0xffffffff);
      outcomes[parsesOrThrowsTyped((x) => parseHandshakeResponse(x, serverCaps), b, isProxyError)]++;
    }
    assert.ok(outcomes.ok > 100 && outcomes.error > 100, JSON.stringify(outcomes));
  });
});

describe('writeHandshakeResponse41', () => {
  const options: HandshakeResponseOptions = {
    capabilities: PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB | PLUGIN_AUTH | LONG_PASSWORD,
    maxPacketSize: 0x1000000,
    characterSet: 0x21,
    user: Buffer.from('proxyuser'),
    authResponse: scramble20,
    database: Buffer.from('shop'),
    authPluginName: 'mysql_native_password',
  };

  test('exact bytes', () => {
    const framed = writeHandshakeResponse41(options, 1);
    const expected = hex`${le(options.capabilities, 4)} 00000001 21 ${Buffer.alloc(23)} ${nul('proxyuser')} 14 ${scramble20} ${nul('shop')} ${nul('mysql_native_password')}`;
    assert.deepEqual(framed, hex`${le(expected.length, 3)} 01 ${expected}`);
  });

  test('round trip with every combination of the optional fields', () => {
    const optional = [CONNECT_WITH_DB, PLUGIN_AUTH, LENENC_CLIENT_DATA, SECURE_CONNECTION, REMEMBER_OPTIONS];
    for (let mask = 0; mask < 1 << optional.length; mask++) {
      let caps = PROTOCOL_41;
      optional.forEach((bit, i) => {
        if (mask & (1 << i)) caps |= bit;
      });
      caps >>>= 0;
      const secure = (caps & (SECURE_CONNECTION | LENENC_CLIENT_DATA)) !== 0;
      const o: HandshakeResponseOptions = {
        ...options,
        capabilities: caps,
        authResponse: secure ? Buffer.from([0, 1, 2, 0, 255, ...scramble20]) : Buffer.from('no-nul-here'),
      };
      const framed = writeHandshakeResponse41(o, 7);
      assert.equal(framed.readUIntLE(0, 3), framed.length - 4);
      assert.equal(framed[3], 7);
      const r = parseHandshakeResponse(framed.subarray(4), ALL);
      assert.equal(r.capabilities, caps, `caps 0x${caps.toString(16)}`);
      assert.equal(r.maxPacketSize, 0x1000000);
      assert.equal(r.characterSet, 0x21);
      assert.deepEqual(r.user, Buffer.from('proxyuser'));
      assert.deepEqual(r.authResponse, Buffer.from(o.authResponse), `auth response, caps 0x${caps.toString(16)}`);
      assert.deepEqual(r.database, caps & CONNECT_WITH_DB ? Buffer.from('shop') : Buffer.alloc(0));
      assert.equal(r.authPluginName, caps & PLUGIN_AUTH ? 'mysql_native_password' : '');
    }
  });

  test('round trip with user and database names of every length up to 300 bytes', () => {
    for (let n = 0; n <= 300; n++) {
      const user = Buffer.alloc(n, 0x75);
      const database = Buffer.alloc(300 - n, 0x64);
      const framed = writeHandshakeResponse41({ ...options, user, database }, 1);
      const r = parseHandshakeResponse(framed.subarray(4), ALL);
      assert.deepEqual(
        [r.user, r.authResponse, r.database, r.authPluginName],
        [user, scramble20, database, 'mysql_native_password'],
        `user of ${n} bytes`,
      );
    }
  });

  test('auth responses over 255 bytes need LENENC client data', () => {
    const long = Buffer.alloc(256, 1);
    assert.throws(() => writeHandshakeResponse41({ ...options, authResponse: long }, 1), MalformedPacketError);
    const caps = options.capabilities | LENENC_CLIENT_DATA;
    const r = parseHandshakeResponse(
      writeHandshakeResponse41({ ...options, capabilities: caps, authResponse: long }, 1).subarray(4),
      ALL,
    );
    assert.deepEqual(r.authResponse, long);
  });

  test('a NUL-terminated auth response cannot contain NUL', () => {
    const caps = PROTOCOL_41 | PLUGIN_AUTH;
    assert.throws(
      () => writeHandshakeResponse41({ ...options, capabilities: caps, authResponse: Buffer.of(1, 0, 2) }, 1),
      MalformedPacketError,
    );
  });
});

describe('isSslRequest', () => {
  test('a 32-byte SSLRequest with PROTOCOL_41 and SSL', () => {
    assert.equal(isSslRequest(head41(PROTOCOL_41 | SSL | SECURE_CONNECTION)), true);
    assert.equal(isSslRequest(head41(ALL)), true);
  });

  test('anything else is not', () => {
    assert.equal(isSslRequest(head41(PROTOCOL_41 | SECURE_CONNECTION)), false, 'no SSL flag');
    assert.equal(isSslRequest(head41(SSL | SECURE_CONNECTION)), false, 'no PROTOCOL_41');
    assert.equal(isSslRequest(head41(PROTOCOL_41 | SSL).subarray(0, 31)), false, '31 bytes');
    assert.equal(isSslRequest(Buffer.concat([head41(PROTOCOL_41 | SSL), hex`00`])), false, '33 bytes');
    const fullResponse = hex`${head41(PROTOCOL_41 | SSL | SECURE_CONNECTION)} ${nul('alice')} 00`;
    assert.equal(isSslRequest(fullResponse), false, 'a HandshakeResponse41 carrying the SSL flag');
    assert.equal(isSslRequest(Buffer.alloc(0)), false);
  });
});
