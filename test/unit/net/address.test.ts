// Address texts: Unix paths, abstract sockets, IPv4/IPv6 literals and host names with ports.

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';

import {
  AddressError,
  DEFAULT_MYSQL_PORT,
  formatAddress,
  isNumericAddress,
  parseAddress,
  type SocketAddress,
} from '../../../src/net/address.js';

describe('parseAddress', () => {
  const valid: [string, SocketAddress][] = [
    ['/run/x.sock', { kind: 'unix', path: '/run/x.sock' }],
    ['/', { kind: 'unix', path: '/' }],
    ['@name', { kind: 'abstract', name: Buffer.from('name') }],
    ['@with space/ü', { kind: 'abstract', name: Buffer.from('with space/ü', 'utf8') }],
    ['192.168.0.2', { kind: 'tcp', host: '192.168.0.2', port: 3306 }],
    ['192.168.0.2:3307', { kind: 'tcp', host: '192.168.0.2', port: 3307 }],
    ['[::1]:4321', { kind: 'tcp', host: '::1', port: 4321 }],
    ['[::1]', { kind: 'tcp', host: '::1', port: 3306 }],
    ['::1', { kind: 'tcp', host: '::1', port: 3306 }],
    ['2001:db8::42', { kind: 'tcp', host: '2001:db8::42', port: 3306 }],
    ['[fe80::1%eth0]:3306', { kind: 'tcp', host: 'fe80::1%eth0', port: 3306 }],
    ['fe80::1%eth0', { kind: 'tcp', host: 'fe80::1%eth0', port: 3306 }],
    ['::ffff:10.0.0.1', { kind: 'tcp', host: '::ffff:10.0.0.1', port: 3306 }],
    ['host.example:1234', { kind: 'tcp', host: 'host.example', port: 1234 }],
    ['host', { kind: 'tcp', host: 'host', port: 3306 }],
    ['host:1', { kind: 'tcp', host: 'host', port: 1 }],
    ['host:65535', { kind: 'tcp', host: 'host', port: 65535 }],
  ];
  for (const [text, expected] of valid) {
    test(`valid: ${JSON.stringify(text)}`, () => assert.deepEqual(parseAddress(text), expected));
  }

  test('the default port is 3306 and can be overridden', () => {
    assert.equal(DEFAULT_MYSQL_PORT, 3306);
    assert.deepEqual(parseAddress('db', 3307), { kind: 'tcp', host: 'db', port: 3307 });
    assert.deepEqual(parseAddress('[::1]', 1), { kind: 'tcp', host: '::1', port: 1 });
    assert.deepEqual(parseAddress('db:4000', 3307), { kind: 'tcp', host: 'db', port: 4000 }, 'an explicit port wins');
  });

  const invalid: [string, string][] = [
    ['', 'empty'],
    ['host:0', 'port 0'],
    ['host:65536', 'port 65536'],
    ['host:99999', 'port 99999'],
    ['host:abc', 'port abc'],
    ['host:', 'empty port'],
    ['host:-1', 'negative port'],
    ['host:+80', 'signed port'],
    ['host: 80', 'space in the port'],
    ['host:123456', 'six digits'],
    ['[::1]:0', 'IPv6 with port 0'],
    ['[::1]:65536', 'IPv6 with port 65536'],
    ['[::1]:', 'IPv6 with empty port'],
    ['[::1', 'unclosed bracket'],
    ['[::1]x', 'garbage after the bracket'],
    ['[::1]:80:90', 'two ports'],
    ['[]:3306', 'empty brackets'],
    ['[host]:3306', 'name in brackets'],
    ['[1.2.3.4]:3306', 'IPv4 in brackets'],
    ['a:b:c', 'colons but not IPv6'],
    ['1:2:3:4:5:6:7:8:9', 'too many groups'],
    [':3306', 'no host'],
    ['@', 'empty abstract name'],
    ['host\0:3306', 'NUL byte'],
    ['/run/x\0.sock', 'NUL byte in a path'],
    ['@a\0b', 'NUL byte in an abstract name'],
  ];
  for (const [text, why] of invalid) {
    test(`malformed: ${why} (${JSON.stringify(text)})`, () => {
      assert.throws(() => parseAddress(text), AddressError);
    });
  }
});

describe('formatAddress', () => {
  test('readable forms', () => {
    assert.equal(formatAddress({ kind: 'unix', path: '/run/x.sock' }), '/run/x.sock');
    assert.equal(formatAddress({ kind: 'abstract', name: Buffer.from('name') }), '@name');
    assert.equal(formatAddress({ kind: 'tcp', host: '192.168.0.2', port: 3306 }), '192.168.0.2:3306');
    assert.equal(formatAddress({ kind: 'tcp', host: '::1', port: 4321 }), '[::1]:4321');
    assert.equal(formatAddress({ kind: 'tcp', host: 'db.example', port: 1 }), 'db.example:1');
  });

  test('parse(format(a)) == a', () => {
    const texts = [
      '/run/x.sock',
      '@name',
      '192.168.0.2',
      '10.1.2.3:3307',
      '[::1]:4321',
      '::1',
      '[fe80::1%eth0]:3306',
      'host.example:1234',
      'host',
    ];
    for (const text of texts) {
      const a = parseAddress(text);
      const formatted = formatAddress(a);
      assert.deepEqual(parseAddress(formatted), a, `${text} → ${formatted}`);
      assert.equal(formatAddress(parseAddress(formatted)), formatted, 'format is a fixed point');
    }
  });
});

describe('isNumericAddress', () => {
  test('IP literals and local sockets are numeric', () => {
    for (const text of ['/run/x.sock', '@name', '192.168.0.2', '192.168.0.2:1', '[::1]:4321', '::1', 'fe80::1%eth0']) {
      assert.equal(isNumericAddress(parseAddress(text)), true, text);
    }
  });

  test('host names are not', () => {
    for (const text of ['host', 'host.example:1234', 'localhost', '1.2.3', '1.2.3.4.5', '256.1.1.1']) {
      assert.equal(isNumericAddress(parseAddress(text)), false, text);
    }
  });
});
