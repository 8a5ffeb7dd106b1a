// The `jwt` global table: jwt.sign(ed25519_secret_key, header, payload) -> compact JWT (EdDSA).
// The header's "alg" is forced to "EdDSA" and "typ" to "JWT"; the JSON follows json.dump's
// mapping; segments are base64url without padding. Sign only, as myproxy.

import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import { pushBytes } from '../lua/convert.js';
import { dumpValue } from './json.js';
import type { Sodium } from './sodium.js';

const SIGN_SECRETKEY = 64;

/** JSON of the table at `idx`, or a Lua argument error naming `arg`. */
function tableJson(L: LuaState, idx: number, arg: number): string {
  try {
    return dumpValue(L, idx);
  } catch (e) {
    return lauxlib.luaL_argerror(L, arg, e instanceof Error ? e.message : String(e));
  }
}

export function installJwt(L: LuaState, sodium: Sodium): void {
  lua.lua_createtable(L, 0, 1);
  lauxlib.luaL_setfuncs(
    L,
    {
      sign: (L1) => {
        const sk = lauxlib.luaL_checklstring(L1, 1);
        if (sk.length !== SIGN_SECRETKEY) return lauxlib.luaL_argerror(L1, 1, 'Malformed secret key');
        lauxlib.luaL_checktype(L1, 2, lua.LUA_TTABLE);
        lauxlib.luaL_checktype(L1, 3, lua.LUA_TTABLE);
        lua.lua_settop(L1, 3);
        // A copy of the header with alg/typ forced (the caller's table stays untouched).
        lua.lua_newtable(L1);
        lua.lua_pushnil(L1);
        while (lua.lua_next(L1, 2) !== 0) {
          // stack: ... key value -> push key, value; rawset; pop value (keep key for next)
          lua.lua_pushvalue(L1, -2);
          lua.lua_pushvalue(L1, -2);
          lua.lua_rawset(L1, 4);
          lua.lua_pop(L1, 1);
        }
        lua.lua_pushstring(L1, 'EdDSA');
        lua.lua_setfield(L1, 4, 'alg');
        lua.lua_pushstring(L1, 'JWT');
        lua.lua_setfield(L1, 4, 'typ');
        const header = Buffer.from(tableJson(L1, 4, 2)).toString('base64url');
        const payload = Buffer.from(tableJson(L1, 3, 3)).toString('base64url');
        const signingInput = `${header}.${payload}`;
        const sig = sodium.crypto_sign_detached(Buffer.from(signingInput, 'latin1'), sk);
        pushBytes(L1, Buffer.from(`${signingInput}.${Buffer.from(sig).toString('base64url')}`, 'latin1'));
        return 1;
      },
    },
    0,
  );
  lua.lua_setglobal(L, 'jwt');
}
