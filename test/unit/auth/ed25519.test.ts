// client_ed25519: the signature MariaDB's client plugin computes, checked independently with
// node:crypto's Ed25519 verify, and (for a 32-byte "password") against node:crypto's own
// RFC 8032 signing, which derives the key from SHA512(seed) exactly as MariaDB does from SHA512(password).

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

import { ed25519PublicKey, ed25519Sign } from '../../../src/auth/ed25519.js';
import { backendAuthPlugin, AuthPluginError } from '../../../src/auth/backend-auth.js';

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function publicKeyObject(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

describe('ed25519 (MariaDB client_ed25519)', () => {
  test('signatures verify with node:crypto for passwords of any length', () => {
    for (const password of ['', 'edpw', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(100), 'pässwörd']) {
      const pw = Buffer.from(password);
      const msg = randomBytes(32);
      const sig = ed25519Sign(pw, msg);
      assert.equal(sig.length, 64);
      const pk = publicKeyObject(ed25519PublicKey(pw));
      assert.ok(verify(null, msg, pk, sig), `password ${JSON.stringify(password)}`);
      // Another message or another password does not verify.
      assert.ok(!verify(null, randomBytes(32), pk, sig));
      assert.ok(!verify(null, msg, publicKeyObject(ed25519PublicKey(Buffer.from(password + '!'))), sig));
    }
  });

  test('a 32-byte password signs exactly like RFC 8032 with that seed (node:crypto)', () => {
    for (let i = 0; i < 5; i++) {
      const seed = randomBytes(32);
      const msg = randomBytes(32);
      const priv = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
      const expected = sign(null, msg, priv);
      assert.deepEqual(ed25519Sign(seed, msg), expected);
      const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
      assert.deepEqual(ed25519PublicKey(seed), spki.subarray(SPKI_PREFIX.length));
    }
  });

  test('RFC 8032 test vector 1 (empty message)', () => {
    const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
    assert.equal(
      ed25519PublicKey(seed).toString('hex'),
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    );
    assert.equal(
      ed25519Sign(seed, Buffer.alloc(0)).toString('hex'),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155' +
        '5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
  });

  test('the plugin signs the first 32 bytes of the scramble and needs the clear password', () => {
    const plugin = backendAuthPlugin('client_ed25519', true)!;
    assert.equal(plugin.name, 'client_ed25519');
    const scramble = randomBytes(32);
    const pw = Buffer.from('edpw');
    const resp = plugin.initialResponse(scramble, { password: pw, passwordSha1: undefined });
    assert.ok(verify(null, scramble, publicKeyObject(ed25519PublicKey(pw)), resp));
    // A scramble whose last byte was a NUL the packet parser dropped is padded back.
    const withZero = Buffer.concat([scramble.subarray(0, 31), Buffer.of(0)]);
    const resp2 = plugin.initialResponse(withZero.subarray(0, 31), { password: pw, passwordSha1: undefined });
    assert.ok(verify(null, withZero, publicKeyObject(ed25519PublicKey(pw)), resp2));
    assert.throws(
      () => plugin.initialResponse(scramble, { password: undefined, passwordSha1: Buffer.alloc(20) }),
      (e: unknown) => e instanceof AuthPluginError && e.message === 'backend requires the clear-text password',
    );
  });
});
