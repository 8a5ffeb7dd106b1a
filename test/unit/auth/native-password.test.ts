// mysql_native_password, checked against the spec formula and the server's verification step.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';

import { nativePasswordResponse, sha1 } from '../../../src/auth/native-password.js';
import { Rng } from '../../helpers/bytes.js';

function nodeSha1(data: Uint8Array): Buffer {
  return createHash('sha1').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  assert.equal(a.length, b.length);
  return Buffer.from(a.map((x, i) => x ^ b[i]!));
}

/** The spec formula, written out: SHA1(pw) XOR SHA1(scramble ‖ SHA1(SHA1(pw))). */
function expectedResponse(password: string | Buffer, scramble: Buffer): Buffer {
  const stage1 = nodeSha1(Buffer.from(password));
  const stage2 = nodeSha1(stage1);
  return xor(stage1, nodeSha1(Buffer.concat([scramble, stage2])));
}

/**
 * What the server does with the stored hash SHA1(SHA1(pw)) (mysql.user's "*HEX" value): unmask the
 * response with SHA1(scramble ‖ stored) and check that SHA1 of the result is the stored hash.
 */
function serverAccepts(storedStage2: Buffer, scramble: Buffer, response: Buffer): boolean {
  const candidateStage1 = xor(response, nodeSha1(Buffer.concat([scramble, storedStage2])));
  return nodeSha1(candidateStage1).equals(storedStage2);
}

describe('sha1', () => {
  test('known vectors', () => {
    assert.equal(sha1(Buffer.from('abc')).toString('hex'), 'a9993e364706816aba3e25717850c26c9cd0d89d'); // FIPS 180
    assert.equal(sha1(Buffer.alloc(0)).toString('hex'), 'da39a3ee5e6b4b0d3255bfef95601890afd80709');
    assert.equal(sha1(Buffer.from('password')).toString('hex'), '5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8');
  });

  test('several parts hash as their concatenation', () => {
    assert.deepEqual(sha1(Buffer.from('a'), Buffer.from('bc')), sha1(Buffer.from('abc')));
    assert.deepEqual(sha1(), sha1(Buffer.alloc(0)));
  });

  test('SHA1(SHA1("password")) is MySQL\'s PASSWORD("password") = *2470C0C0…', () => {
    assert.equal(
      sha1(sha1(Buffer.from('password')))
        .toString('hex')
        .toUpperCase(),
      '2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19',
    );
  });
});

describe('nativePasswordResponse', () => {
  const stored = Buffer.from('2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19', 'hex'); // PASSWORD('password')

  test('matches the spec formula and passes the server check for a known stored hash', () => {
    const scramble = Buffer.from('ABCDEFGHIJKLMNOPQRST');
    const response = nativePasswordResponse(nodeSha1(Buffer.from('password')), scramble);
    assert.equal(response.length, 20);
    assert.deepEqual(response, expectedResponse('password', scramble));
    assert.equal(serverAccepts(stored, scramble, response), true);
    // The wrong password is refused by the same check (the check is not vacuous).
    assert.equal(
      serverAccepts(stored, scramble, nativePasswordResponse(nodeSha1(Buffer.from('Password')), scramble)),
      false,
    );
  });

  test('random passwords and scrambles', () => {
    const rng = new Rng(1);
    for (let i = 0; i < 200; i++) {
      const password = rng.bytes(rng.int(1, 40));
      const scramble = rng.bytes(20);
      const response = nativePasswordResponse(nodeSha1(password), scramble);
      assert.deepEqual(response, expectedResponse(password, scramble));
      assert.equal(serverAccepts(nodeSha1(nodeSha1(password)), scramble, response), true);
    }
  });

  test('only the first 20 bytes of the scramble count (a trailing NUL is harmless)', () => {
    const scramble = Buffer.from('ABCDEFGHIJKLMNOPQRST');
    const pw = nodeSha1(Buffer.from('secret'));
    assert.deepEqual(
      nativePasswordResponse(pw, Buffer.concat([scramble, Buffer.of(0)])),
      nativePasswordResponse(pw, scramble),
    );
    assert.notDeepEqual(
      nativePasswordResponse(pw, Buffer.from('ABCDEFGHIJKLMNOPQRSU')),
      nativePasswordResponse(pw, scramble),
    );
  });
});
