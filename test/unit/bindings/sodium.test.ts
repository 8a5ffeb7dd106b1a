import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { lua, type LuaState } from '../../../src/lua/fengari.js';
import sodium from 'libsodium-wrappers';
import { newLuaState } from '../../../src/lua/state.js';
import { runLua } from '../../helpers/lua.js';
import { installSodium } from '../../../src/bindings/sodium.js';

await sodium.ready;

function state(): LuaState {
  const L = newLuaState();
  installSodium(L, sodium);
  return L;
}

const run = (L: LuaState, src: string): unknown[] => runLua(L, src, 'bytes');

test('sealed box round trip, binary-safe; tampering gives nil', () => {
  const L = state();
  run(
    L,
    `
    local pk, sk = sodium.crypto_box_keypair()
    assert(#pk == 32 and #sk == 32)
    assert(sodium.crypto_scalarmult_base(sk) == pk)
    local m = "\\0\\255\\128binary\\0"
    local c = sodium.crypto_box_seal(m, pk)
    assert(#c == #m + 48)
    assert(sodium.crypto_box_seal_open(c, pk, sk) == m)
    local t = string.char((c:byte(1) ~ 1)) .. c:sub(2)
    assert(sodium.crypto_box_seal_open(t, pk, sk) == nil)
    assert(sodium.crypto_box_seal_open("short", pk, sk) == nil)
    local pk2, sk2 = sodium.crypto_box_keypair()
    assert(sodium.crypto_box_seal_open(c, pk2, sk2) == nil)
    assert(sodium.crypto_box_seal_open(sodium.crypto_box_seal("", pk), pk, sk) == "")
  `,
  );
});

test('sealed box opened by libsodium directly (interoperable bytes)', () => {
  const L = state();
  const kp = sodium.crypto_box_keypair();
  lua.lua_pushstring(L, kp.publicKey);
  lua.lua_setglobal(L, 'pk');
  const [c] = run(L, 'return sodium.crypto_box_seal("\\1\\2\\3\\200", pk)') as [Buffer];
  assert.deepEqual(
    Buffer.from(sodium.crypto_box_seal_open(c, kp.publicKey, kp.privateKey)),
    Buffer.from([1, 2, 3, 200]),
  );
});

test('wrong key sizes are argument errors with myproxy messages', () => {
  const L = state();
  assert.throws(() => run(L, 'sodium.crypto_box_seal("m", "short")'), /bad argument #2 .*Malformed public key/);
  assert.throws(
    () => run(L, 'local pk = sodium.crypto_box_keypair(); sodium.crypto_box_seal_open(("x"):rep(60), pk, "bad")'),
    /bad argument #3 .*Malformed secret key/,
  );
  assert.throws(
    () => run(L, 'sodium.crypto_box_seal_open(("x"):rep(60), "bad", ("k"):rep(32))'),
    /Malformed public key/,
  );
  assert.throws(() => run(L, 'sodium.crypto_scalarmult_base(("x"):rep(31))'), /Malformed secret key/);
  assert.throws(() => run(L, 'sodium.crypto_sign_detached("m", ("x"):rep(32))'), /Malformed secret key/);
  assert.throws(
    () => run(L, 'sodium.crypto_sign_verify_detached(("s"):rep(64), "m", ("x"):rep(31))'),
    /Malformed public key/,
  );
  assert.throws(() => run(L, 'sodium.crypto_box_seal({}, ("x"):rep(32))'), /bad argument #1/);
});

test('sign and verify detached; bad signature size gives nil', () => {
  const L = state();
  run(
    L,
    `
    local pk, sk = sodium.crypto_sign_keypair()
    assert(#pk == 32 and #sk == 64)
    local m = "message\\0with nul"
    local sig = sodium.crypto_sign_detached(m, sk)
    assert(#sig == 64)
    assert(sodium.crypto_sign_verify_detached(sig, m, pk) == true)
    assert(sodium.crypto_sign_verify_detached(sig, m .. "x", pk) == false)
    local bad = string.char((sig:byte(1) ~ 0x40)) .. sig:sub(2)
    assert(sodium.crypto_sign_verify_detached(bad, m, pk) == false)
    assert(sodium.crypto_sign_verify_detached(sig:sub(2), m, pk) == nil)
    assert(sodium.crypto_sign_verify_detached("", m, pk) == nil)
  `,
  );
});

test('bin2hex and hex2bin, with bad input', () => {
  const L = state();
  const [hex] = run(L, 'return sodium.bin2hex("\\0\\1\\171\\255")') as [Buffer];
  assert.equal(hex.toString(), '0001abff');
  run(
    L,
    `
    assert(sodium.hex2bin("0001abff") == "\\0\\1\\171\\255")
    assert(sodium.hex2bin("0001ABFF") == "\\0\\1\\171\\255")
    assert(sodium.hex2bin("") == "")
    assert(sodium.bin2hex("") == "")
    assert(sodium.hex2bin("abc") == nil)
    assert(sodium.hex2bin("zz") == nil)
    assert(sodium.hex2bin("00 11") == nil)
    assert(sodium.hex2bin("\\255\\255") == nil)
    local r = sodium.randombytes(100)
    assert(sodium.hex2bin(sodium.bin2hex(r)) == r)
  `,
  );
});

test('randombytes sizes and bounds', () => {
  const L = state();
  run(
    L,
    `
    assert(#sodium.randombytes(1) == 1)
    assert(#sodium.randombytes(32) == 32)
    assert(#sodium.randombytes(1024 * 1024) == 1024 * 1024)
    assert(sodium.randombytes(32) ~= sodium.randombytes(32))
  `,
  );
  assert.throws(() => run(L, 'sodium.randombytes(0)'), /bad argument #1 .*between 1 and 1048576/);
  assert.throws(() => run(L, 'sodium.randombytes(-5)'), /bad argument #1/);
  assert.throws(() => run(L, 'sodium.randombytes(1024 * 1024 + 1)'), /bad argument #1/);
  assert.throws(() => run(L, 'sodium.randombytes("x")'), /bad argument #1/);
  assert.throws(() => run(L, 'sodium.randombytes(1.5)'), /bad argument #1/);
});

test('crypto_generichash matches libsodium (BLAKE2b), with length and key', () => {
  const L = state();
  const [h32, h64, hk] = run(
    L,
    'return sodium.crypto_generichash("abc\\0"), sodium.crypto_generichash("abc\\0", 64), sodium.crypto_generichash("abc\\0", nil, ("k"):rep(16))',
  ) as [Buffer, Buffer, Buffer];
  const m = Buffer.from('abc\0', 'latin1');
  assert.deepEqual(h32, Buffer.from(sodium.crypto_generichash(32, m, null)));
  assert.deepEqual(h64, Buffer.from(sodium.crypto_generichash(64, m, null)));
  assert.deepEqual(hk, Buffer.from(sodium.crypto_generichash(32, m, Buffer.from('k'.repeat(16)))));
  assert.throws(() => run(L, 'sodium.crypto_generichash("m", 8)'), /bad argument #2/);
  assert.throws(() => run(L, 'sodium.crypto_generichash("m", 65)'), /bad argument #2/);
  assert.throws(() => run(L, 'sodium.crypto_generichash("m", 32, "short")'), /bad argument #3/);
});
