// Listening addresses as prometheus_listen() and control_listen() take them (myproxy's rules).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { formatAddress, parseListenAddress } from '../../../src/net/address.js';

test('wildcards, numeric addresses, default ports, paths and abstract names', () => {
  assert.deepEqual(parseListenAddress('*', 9100), { kind: 'tcp', host: '', port: 9100 });
  assert.deepEqual(parseListenAddress('*:8022', 9100), { kind: 'tcp', host: '', port: 8022 });
  assert.deepEqual(parseListenAddress('127.0.0.1', 9100), { kind: 'tcp', host: '127.0.0.1', port: 9100 });
  assert.deepEqual(parseListenAddress('[::1]:9200', 9100), { kind: 'tcp', host: '::1', port: 9200 });
  assert.deepEqual(parseListenAddress('::', 5478), { kind: 'tcp', host: '::', port: 5478 });
  assert.deepEqual(parseListenAddress('/run/x.sock', 9100), { kind: 'unix', path: '/run/x.sock' });
  assert.equal(formatAddress(parseListenAddress('@ctl', 5478)), '@ctl');
  assert.equal(formatAddress(parseListenAddress('*', 5478)), '*:5478');
});

test("host names are refused with getaddrinfo's message, as myproxy does", () => {
  assert.throws(
    () => parseListenAddress('localhost:8022', 9100),
    /Failed to resolve "localhost":"8022": Name or service not known/,
  );
  assert.throws(() => parseListenAddress('*:99999', 9100), /Port out of range/);
});
