// caching_sha2_password as a client: the scramble response (checked the way MySQL 8's server
// checks it) and the AuthMoreData exchange (fast auth, full auth over a secure transport and over
// TCP with the server's RSA key, which is cached per backend).

import { test, describe, beforeEach } from 'node:test';
import { strict as assert } from 'node:assert';
import { constants, createHash, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';

import {
  AuthPluginError,
  backendAuthPlugin,
  cachingSha2Response,
  clearCachedServerKeys,
  type BackendAuthContext,
  type BackendCredentials,
} from '../../../src/auth/backend-auth.js';

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** The server side: stored SHA256(SHA256(pw)); recover SHA256(pw) from the response and compare. */
function serverAccepts(stored: Buffer, nonce: Buffer, response: Buffer): boolean {
  const mask = sha256(stored, nonce);
  const stage1 = Buffer.from(response.map((b, i) => b ^ mask[i]!));
  return sha256(stage1).equals(stored);
}

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }));

function decryptPassword(cipher: Buffer, nonce: Buffer): Buffer {
  const plain = privateDecrypt(
    { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
    cipher,
  );
  return Buffer.from(plain.map((b, i) => b ^ nonce[i % 20]!));
}

const creds = (pw: string | undefined): BackendCredentials => ({
  password: pw === undefined ? undefined : Buffer.from(pw),
  passwordSha1: pw === undefined ? Buffer.alloc(20, 1) : createHash('sha1').update(pw).digest(),
});

const plugin = backendAuthPlugin('caching_sha2_password', true)!;

describe('caching_sha2_password', () => {
  beforeEach(() => clearCachedServerKeys());

  test('scramble response passes the server check; wrong password does not', () => {
    for (const pw of ['secret', 'x', 'p'.repeat(80), 'pässwörd']) {
      const nonce = randomBytes(20);
      const stored = sha256(sha256(Buffer.from(pw)));
      const resp = plugin.initialResponse(nonce, creds(pw));
      assert.equal(resp.length, 32);
      assert.ok(serverAccepts(stored, nonce, resp));
      assert.ok(!serverAccepts(stored, nonce, cachingSha2Response(Buffer.from(pw + '!'), nonce)));
      // Only the first 20 bytes of the scramble count.
      assert.deepEqual(plugin.initialResponse(Buffer.concat([nonce, Buffer.of(0)]), creds(pw)), resp);
    }
  });

  test('empty password: empty response', () => {
    assert.equal(plugin.initialResponse(randomBytes(20), creds('')).length, 0);
  });

  test('password_sha1 only: clear-text password required', () => {
    assert.throws(
      () => plugin.initialResponse(randomBytes(20), creds(undefined)),
      (e: unknown) => e instanceof AuthPluginError && e.message === 'backend requires the clear-text password',
    );
    const ctx: BackendAuthContext = { secureTransport: true, backendKey: 'x' };
    assert.throws(() => plugin.moreData!(Buffer.of(4), randomBytes(20), creds(undefined), ctx), AuthPluginError);
  });

  test('fast auth success: wait for the OK', () => {
    const ctx: BackendAuthContext = { secureTransport: false, backendKey: 'a' };
    assert.equal(plugin.moreData!(Buffer.of(3), randomBytes(20), creds('pw'), ctx), null);
  });

  test('full auth over a secure transport: clear password with NUL', () => {
    const ctx: BackendAuthContext = { secureTransport: true, backendKey: '/tmp/x.sock' };
    assert.deepEqual(plugin.moreData!(Buffer.of(4), randomBytes(20), creds('pw'), ctx), Buffer.from('pw\0'));
  });

  test('full auth over TCP with get_server_public_key: request the key, encrypt, then reuse the cached key', () => {
    const ctx: BackendAuthContext = { secureTransport: false, backendKey: '127.0.0.1:3306', getServerPublicKey: true };
    const nonce = randomBytes(20);
    assert.deepEqual(plugin.moreData!(Buffer.of(4), nonce, creds('pw'), ctx), Buffer.of(2));
    const cipher = plugin.moreData!(PEM, nonce, creds('pw'), ctx)!;
    assert.equal(cipher.length, 256);
    assert.deepEqual(decryptPassword(cipher, nonce), Buffer.from('pw\0'));
    // Next login to the same backend: encrypted right away.
    const nonce2 = randomBytes(20);
    const long = 'l'.repeat(45);
    const cipher2 = plugin.moreData!(Buffer.of(4), nonce2, creds(long), ctx)!;
    assert.deepEqual(decryptPassword(cipher2, nonce2), Buffer.from(long + '\0'));
    // Another backend still asks for its key.
    const other: BackendAuthContext = {
      secureTransport: false,
      backendKey: '127.0.0.1:3307',
      getServerPublicKey: true,
    };
    assert.deepEqual(plugin.moreData!(Buffer.of(4), nonce, creds('pw'), other), Buffer.of(2));
  });

  test('full auth over plain TCP without a key option is refused; a pinned key is used without asking', () => {
    const nonce = randomBytes(20);
    const bare: BackendAuthContext = { secureTransport: false, backendKey: '127.0.0.1:3308' };
    assert.throws(
      () => plugin.moreData!(Buffer.of(4), nonce, creds('pw'), bare),
      (e: unknown) =>
        e instanceof AuthPluginError && /needs TLS, server_public_key or get_server_public_key/.test(e.message),
    );
    // A key the server volunteers is not taken either.
    assert.throws(() => plugin.moreData!(PEM, nonce, creds('pw'), bare), AuthPluginError);
    const pinned: BackendAuthContext = { ...bare, serverPublicKey: PEM };
    const cipher = plugin.moreData!(Buffer.of(4), nonce, creds('pw'), pinned)!;
    assert.deepEqual(decryptPassword(cipher, nonce), Buffer.from('pw\0'));
    // Inside TLS the password goes as it is.
    const tls: BackendAuthContext = { ...bare, secureTransport: true };
    assert.deepEqual(plugin.moreData!(Buffer.of(4), nonce, creds('pw'), tls), Buffer.from('pw\0'));
  });

  test('garbage AuthMoreData is an error', () => {
    const ctx: BackendAuthContext = { secureTransport: false, backendKey: 'b', getServerPublicKey: true };
    for (const data of [Buffer.of(5), Buffer.alloc(0), Buffer.from('not a key')]) {
      assert.throws(() => plugin.moreData!(data, randomBytes(20), creds('pw'), ctx), AuthPluginError);
    }
    assert.throws(
      () => plugin.moreData!(Buffer.from('-----BEGIN junk'), randomBytes(20), creds('pw'), ctx),
      AuthPluginError,
    );
  });
});
