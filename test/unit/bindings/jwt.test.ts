import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createPublicKey, verify } from 'node:crypto';
import { lua, lauxlib, type LuaState } from '../../../src/lua/fengari.js';
import sodium from 'libsodium-wrappers';
import { newLuaState, errorToString } from '../../../src/lua/state.js';
import { installJson } from '../../../src/bindings/json.js';
import { installJwt } from '../../../src/bindings/jwt.js';
import { installSodium } from '../../../src/bindings/sodium.js';

await sodium.ready;

function state(): LuaState {
  const L = newLuaState();
  installSodium(L, sodium);
  installJson(L);
  installJwt(L, sodium);
  return L;
}

/** Run `src` and return its first result as bytes (or throw with the Lua message). */
function run(L: LuaState, src: string): Buffer | null {
  const base = lua.lua_gettop(L);
  const chunk = Buffer.from(src);
  if (
    lauxlib.luaL_loadbufferx(L, chunk, chunk.length, '=test', null) !== lua.LUA_OK ||
    lua.lua_pcall(L, 0, 1, 0) !== lua.LUA_OK
  ) {
    const msg = errorToString(L, -1);
    lua.lua_settop(L, base);
    throw new Error(msg);
  }
  const r = lua.lua_type(L, -1) === lua.LUA_TSTRING ? Buffer.from(lua.lua_tolstring(L, -1)!) : null;
  lua.lua_settop(L, base);
  return r;
}

/** node:crypto public key from the last 32 bytes of a libsodium Ed25519 secret key. */
function publicKeyOf(sk: Uint8Array) {
  const der = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), sk.subarray(32)]);
  return createPublicKey({ key: der, format: 'der', type: 'spki' });
}

test('jwt.sign produces a compact EdDSA JWT that node:crypto verifies', () => {
  const L = state();
  const kp = sodium.crypto_sign_keypair();
  lua.lua_pushstring(L, kp.privateKey);
  lua.lua_setglobal(L, 'sk');
  const token = run(
    L,
    'return jwt.sign(sk, {alg = "none", kid = "k1"}, {sub = "alice", n = 42, f = 1.5, roles = {"a", "b"}, name = "J\\u{f6}rg"})',
  )!.toString('latin1');
  assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  const [h, p, s] = token.split('.') as [string, string, string];
  assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url').toString()), { alg: 'EdDSA', kid: 'k1', typ: 'JWT' });
  assert.deepEqual(JSON.parse(Buffer.from(p, 'base64url').toString()), {
    sub: 'alice',
    n: 42,
    f: 1.5,
    roles: ['a', 'b'],
    name: 'Jörg',
  });
  const sig = Buffer.from(s, 'base64url');
  assert.equal(sig.length, 64);
  assert.equal(verify(null, Buffer.from(`${h}.${p}`), publicKeyOf(kp.privateKey), sig), true);
  assert.equal(verify(null, Buffer.from(`${h}.${p}x`), publicKeyOf(kp.privateKey), sig), false);
  // the caller's header table is not modified
  assert.equal(run(L, 'local h = {alg = "none"}; jwt.sign(sk, h, {}); return h.alg')!.toString(), 'none');
});

test('jwt.sign with a key made in Lua; empty header and payload', () => {
  const L = state();
  const token = run(
    L,
    'local pk, sk = sodium.crypto_sign_keypair(); sk_lua = sk; return jwt.sign(sk, {}, {})',
  )!.toString('latin1');
  const sk = run(L, 'return sk_lua')!;
  const [h, p, s] = token.split('.') as [string, string, string];
  assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url').toString()), { alg: 'EdDSA', typ: 'JWT' });
  assert.equal(Buffer.from(p, 'base64url').toString(), '{}');
  assert.ok(!token.includes('='));
  assert.equal(verify(null, Buffer.from(`${h}.${p}`), publicKeyOf(sk), Buffer.from(s, 'base64url')), true);
});

test('jwt.sign argument errors', () => {
  const L = state();
  assert.throws(() => run(L, 'jwt.sign(("x"):rep(32), {}, {})'), /bad argument #1 .*Malformed secret key/);
  assert.throws(() => run(L, 'local _, sk = sodium.crypto_sign_keypair(); jwt.sign(sk, "h", {})'), /bad argument #2/);
  assert.throws(() => run(L, 'local _, sk = sodium.crypto_sign_keypair(); jwt.sign(sk, {}, nil)'), /bad argument #3/);
  assert.throws(
    () => run(L, 'local _, sk = sodium.crypto_sign_keypair(); jwt.sign(sk, {}, {f = print})'),
    /bad argument #3 .*cannot encode a function/,
  );
  assert.throws(
    () => run(L, 'local _, sk = sodium.crypto_sign_keypair(); jwt.sign(sk, {x = "\\255"}, {})'),
    /bad argument #2 .*not valid UTF-8/,
  );
});
