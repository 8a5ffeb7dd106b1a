// Running Lua snippets in unit tests of the bindings.
import { lua, lauxlib, type LuaState } from '../../src/lua/fengari.js';
import { errorToString } from '../../src/lua/state.js';

/**
 * Run `src` in `L` and return its results: strings as text (`'utf8'`) or raw bytes (`'bytes'`),
 * numbers, booleans, and null for everything else. A Lua error is thrown with its message.
 */
export function runLua(L: LuaState, src: string, strings: 'utf8' | 'bytes'): unknown[] {
  const base = lua.lua_gettop(L);
  const chunk = Buffer.from(src);
  if (
    lauxlib.luaL_loadbufferx(L, chunk, chunk.length, '=test', null) !== lua.LUA_OK ||
    lua.lua_pcall(L, 0, lua.LUA_MULTRET, 0) !== lua.LUA_OK
  ) {
    const msg = errorToString(L, -1);
    lua.lua_settop(L, base);
    throw new Error(msg);
  }
  const out: unknown[] = [];
  for (let i = base + 1; i <= lua.lua_gettop(L); i++) {
    const t = lua.lua_type(L, i);
    if (t === lua.LUA_TSTRING) {
      const b = Buffer.from(lua.lua_tolstring(L, i)!);
      out.push(strings === 'utf8' ? b.toString('utf8') : b);
    } else if (t === lua.LUA_TNUMBER) out.push(lua.lua_tonumber(L, i));
    else if (t === lua.LUA_TBOOLEAN) out.push(lua.lua_toboolean(L, i));
    else out.push(null);
  }
  lua.lua_settop(L, base);
  return out;
}
