// The `sodium` global table: libsodium (libsodium-wrappers, WASM) for config.lua.
// Lua strings go in and come out as bytes, never through JS strings. `await sodium.ready`
// must have settled before installSodium() (the wrappers fill in their functions then).

import { randomFillSync } from 'node:crypto';
import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import type sodiumModule from 'libsodium-wrappers';
import { pushBytes } from '../lua/convert.js';

export type Sodium = typeof sodiumModule;

/** Upper bound of randombytes(n), as myproxy. */
export const RANDOMBYTES_MAX = 1024 * 1024;

const BOX_PUBLICKEY = 32;
const BOX_SECRETKEY = 32;
const SIGN_PUBLICKEY = 32;
const SIGN_SECRETKEY = 64;
const SIGN_BYTES = 64;
const SEAL_BYTES = 48;
const GENERICHASH_MIN = 16;
const GENERICHASH_MAX = 64;
const GENERICHASH_DEFAULT = 32;

/** Argument `i` as bytes (numbers are converted, as luaL_checklstring does). */
function checkBytes(L: LuaState, i: number): Uint8Array {
  return lauxlib.luaL_checklstring(L, i);
}

/** Argument `i` as a key of exactly `size` bytes, else argerror with myproxy's message. */
function checkKey(L: LuaState, i: number, size: number, kind: 'public' | 'secret'): Uint8Array {
  const key = checkBytes(L, i);
  if (key.length !== size)
    return lauxlib.luaL_argerror(L, i, kind === 'public' ? 'Malformed public key' : 'Malformed secret key');
  return key;
}

/** An optional integer argument (nil/none gives `dflt`). */
function optInteger(L: LuaState, i: number, dflt: number): number {
  const t = lua.lua_type(L, i);
  if (t === lua.LUA_TNIL || t === lua.LUA_TNONE) return dflt;
  return lauxlib.luaL_checkinteger(L, i);
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

export function makeSodiumFunctions(sodium: Sodium): Record<string, (L: LuaState) => number> {
  return {
    crypto_box_keypair: (L) => {
      const kp = sodium.crypto_box_keypair();
      pushBytes(L, kp.publicKey);
      pushBytes(L, kp.privateKey);
      return 2;
    },
    crypto_box_seal: (L) => {
      const m = checkBytes(L, 1);
      const pk = checkKey(L, 2, BOX_PUBLICKEY, 'public');
      pushBytes(L, sodium.crypto_box_seal(m, pk));
      return 1;
    },
    crypto_box_seal_open: (L) => {
      const c = checkBytes(L, 1);
      const pk = checkKey(L, 2, BOX_PUBLICKEY, 'public');
      const sk = checkKey(L, 3, BOX_SECRETKEY, 'secret');
      if (c.length < SEAL_BYTES) {
        lua.lua_pushnil(L);
        return 1;
      }
      let m: Uint8Array;
      try {
        m = sodium.crypto_box_seal_open(c, pk, sk);
      } catch {
        lua.lua_pushnil(L);
        return 1;
      }
      pushBytes(L, m);
      return 1;
    },
    crypto_scalarmult_base: (L) => {
      const sk = checkKey(L, 1, BOX_SECRETKEY, 'secret');
      pushBytes(L, sodium.crypto_scalarmult_base(sk));
      return 1;
    },
    crypto_sign_keypair: (L) => {
      const kp = sodium.crypto_sign_keypair();
      pushBytes(L, kp.publicKey);
      pushBytes(L, kp.privateKey);
      return 2;
    },
    crypto_sign_detached: (L) => {
      const m = checkBytes(L, 1);
      const sk = checkKey(L, 2, SIGN_SECRETKEY, 'secret');
      pushBytes(L, sodium.crypto_sign_detached(m, sk));
      return 1;
    },
    crypto_sign_verify_detached: (L) => {
      const sig = checkBytes(L, 1);
      const m = checkBytes(L, 2);
      const pk = checkKey(L, 3, SIGN_PUBLICKEY, 'public');
      if (sig.length !== SIGN_BYTES) {
        lua.lua_pushnil(L);
        return 1;
      }
      let ok: boolean;
      try {
        ok = sodium.crypto_sign_verify_detached(sig, m, pk);
      } catch {
        ok = false;
      }
      lua.lua_pushboolean(L, ok);
      return 1;
    },
    bin2hex: (L) => {
      const b = checkBytes(L, 1);
      lua.lua_pushstring(L, Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex'));
      return 1;
    },
    hex2bin: (L) => {
      const b = checkBytes(L, 1);
      // Hex digits are ASCII: any other byte makes the latin1 text fail the pattern.
      const text = Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
      if (!HEX.test(text)) {
        lua.lua_pushnil(L);
        return 1;
      }
      pushBytes(L, Buffer.from(text, 'hex'));
      return 1;
    },
    randombytes: (L) => {
      const n = lauxlib.luaL_checkinteger(L, 1);
      if (n < 1 || n > RANDOMBYTES_MAX) return lauxlib.luaL_argerror(L, 1, `must be between 1 and ${RANDOMBYTES_MAX}`);
      // node:crypto's CSPRNG: the WASM build of randombytes_buf fetches 4 bytes per call to
      // getRandomValues (about 3.5 s for 1 MiB).
      lua.lua_pushstring(L, randomFillSync(new Uint8Array(n)));
      return 1;
    },
    crypto_generichash: (L) => {
      const m = checkBytes(L, 1);
      const outlen = optInteger(L, 2, GENERICHASH_DEFAULT);
      if (outlen < GENERICHASH_MIN || outlen > GENERICHASH_MAX) {
        return lauxlib.luaL_argerror(L, 2, `output length must be between ${GENERICHASH_MIN} and ${GENERICHASH_MAX}`);
      }
      let key: Uint8Array | null = null;
      const kt = lua.lua_type(L, 3);
      if (kt !== lua.LUA_TNIL && kt !== lua.LUA_TNONE) {
        key = checkBytes(L, 3);
        if (key.length < GENERICHASH_MIN || key.length > GENERICHASH_MAX) {
          return lauxlib.luaL_argerror(L, 3, `key length must be between ${GENERICHASH_MIN} and ${GENERICHASH_MAX}`);
        }
      }
      pushBytes(L, sodium.crypto_generichash(outlen, m, key));
      return 1;
    },
  };
}

/** Install the global table `sodium`. `sodium.ready` must have resolved. */
export function installSodium(L: LuaState, sodium: Sodium): void {
  const fns = makeSodiumFunctions(sodium);
  lua.lua_createtable(L, 0, Object.keys(fns).length);
  lauxlib.luaL_setfuncs(L, fns, 0);
  lua.lua_setglobal(L, 'sodium');
}
