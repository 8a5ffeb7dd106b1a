// Backend auth plugin selection (a null-prototype registry keyed by names from the network) and
// the responses each plugin computes.

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';

import {
  AuthPluginError,
  backendAuthPlugin,
  supportedBackendPlugins,
  type BackendCredentials,
} from '../../../src/auth/backend-auth.js';

const NATIVE = 'mysql_native_password';
const CLEAR = 'mysql_clear_password';
const scramble = Buffer.from('0123456789abcdefghij');

function sha1(data: Uint8Array): Buffer {
  return createHash('sha1').update(data).digest();
}

/** SHA1(pw) XOR SHA1(scramble ‖ SHA1(SHA1(pw))), from the spec, given SHA1(pw). */
function nativeFromSha1(stage1: Buffer, s: Buffer): Buffer {
  const mask = sha1(Buffer.concat([s, sha1(stage1)]));
  return Buffer.from(stage1.map((b, i) => b ^ mask[i]!));
}

const creds = (password: string | undefined, passwordSha1?: Buffer): BackendCredentials => ({
  password: password === undefined ? undefined : Buffer.from(password),
  passwordSha1,
});

// Names inherited by ordinary objects: a plain `{}` lookup would find functions for these.
const prototypeNames = [
  '__proto__',
  'toString',
  'constructor',
  'hasOwnProperty',
  'valueOf',
  'isPrototypeOf',
  '__defineGetter__',
  'propertyIsEnumerable',
  'toLocaleString',
];

describe('backendAuthPlugin lookup', () => {
  test('known plugins by name, in both modes', () => {
    for (const strict of [true, false]) {
      assert.equal(backendAuthPlugin(NATIVE, strict)?.name, NATIVE);
      assert.equal(backendAuthPlugin(CLEAR, strict)?.name, CLEAR);
    }
  });

  test('strict: unknown names are undefined', () => {
    for (const name of [
      'sha256_password',
      'auth_gssapi_client',
      '',
      'MYSQL_NATIVE_PASSWORD',
      'mysql_native_password\0',
    ]) {
      assert.equal(backendAuthPlugin(name, true), undefined, JSON.stringify(name));
    }
  });

  test('strict: Object.prototype names are undefined', () => {
    for (const name of prototypeNames) assert.equal(backendAuthPlugin(name, true), undefined, name);
  });

  test('lenient: unknown and Object.prototype names fall back to mysql_native_password', () => {
    for (const name of ['sha256_password', '', ...prototypeNames]) {
      const plugin = backendAuthPlugin(name, false);
      assert.equal(plugin?.name, NATIVE, name);
      // A real plugin, not something found on a prototype.
      assert.deepEqual(
        plugin.initialResponse(scramble, creds('pw')),
        nativeFromSha1(sha1(Buffer.from('pw')), scramble),
      );
    }
  });

  test('supportedBackendPlugins lists exactly the four plugins', () => {
    assert.deepEqual([...supportedBackendPlugins()].sort(), ['caching_sha2_password', 'client_ed25519', CLEAR, NATIVE]);
  });
});

describe('mysql_native_password towards a backend', () => {
  const native = backendAuthPlugin(NATIVE, true)!;

  test('from the clear password', () => {
    assert.deepEqual(
      native.initialResponse(scramble, creds('secret')),
      nativeFromSha1(sha1(Buffer.from('secret')), scramble),
    );
  });

  test('from passwordSha1 alone equals the response from the password', () => {
    const fromSha1 = native.initialResponse(scramble, creds(undefined, sha1(Buffer.from('secret'))));
    assert.deepEqual(fromSha1, native.initialResponse(scramble, creds('secret')));
    assert.equal(fromSha1.length, 20);
  });

  test('an empty clear password gives an empty response', () => {
    assert.deepEqual(native.initialResponse(scramble, creds('')), Buffer.alloc(0));
    // Also when the caller derived passwordSha1 = SHA1("") from it.
    assert.deepEqual(native.initialResponse(scramble, creds('', sha1(Buffer.alloc(0)))), Buffer.alloc(0));
  });

  test('no password at all gives an empty response', () => {
    assert.deepEqual(native.initialResponse(scramble, creds(undefined)), Buffer.alloc(0));
  });

  test('depends on the scramble', () => {
    const other = Buffer.from('0123456789abcdefghiJ');
    assert.notDeepEqual(
      native.initialResponse(other, creds('secret')),
      native.initialResponse(scramble, creds('secret')),
    );
  });
});

describe('mysql_clear_password towards a backend', () => {
  const clear = backendAuthPlugin(CLEAR, true)!;

  test('sends the password followed by NUL', () => {
    assert.deepEqual(
      clear.initialResponse(scramble, creds('s3cr3t ✓')),
      Buffer.concat([Buffer.from('s3cr3t ✓'), Buffer.of(0)]),
    );
    assert.deepEqual(clear.initialResponse(scramble, creds('')), Buffer.of(0));
  });

  test('needs the clear password: passwordSha1 is not enough', () => {
    assert.throws(
      () => clear.initialResponse(scramble, creds(undefined, sha1(Buffer.from('secret')))),
      (e) => {
        assert.ok(e instanceof AuthPluginError);
        assert.equal(e.message, 'backend requires the clear-text password');
        assert.equal(e.pluginName, CLEAR);
        assert.equal(e.name, 'AuthPluginError');
        return true;
      },
    );
  });
});
