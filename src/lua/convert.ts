// Moving values between JS and Lua. Lua strings are bytes (Uint8Array) and stay bytes;
// Fengari integers are 32-bit, so larger integers are pushed as floats.

import { lua, lauxlib, pushOwnedString, to_jsstring, type LuaState } from './fengari.js';

/**
 * Push bytes that belong to nobody else as a Lua string, without a copy: the caller hands them
 * over and never writes to them again (a command's SQL, made for its hook).
 */
export function pushOwnedBytes(L: LuaState, b: Uint8Array): void {
  pushOwnedString(L, b);
}

/** Push bytes as a Lua string (copied: Lua must not alias network buffers). */
export function pushBytes(L: LuaState, b: Uint8Array): void {
  lua.lua_pushstring(L, Uint8Array.prototype.slice.call(b));
}

/** A copy of the Lua string at `idx` as a Buffer; undefined when it is not a string. */
export function toBuffer(L: LuaState, idx: number): Buffer | undefined {
  if (lua.lua_type(L, idx) !== lua.LUA_TSTRING) return undefined;
  return Buffer.from(lua.lua_tolstring(L, idx)!);
}

/** The string at `idx` decoded as UTF-8 (invalid sequences replaced); undefined when not a string. */
export function toText(L: LuaState, idx: number): string | undefined {
  if (lua.lua_type(L, idx) !== lua.LUA_TSTRING) return undefined;
  return to_jsstring(lua.lua_tolstring(L, idx)!, undefined, undefined, true);
}

export function pushNumber(L: LuaState, n: number): void {
  if ((n | 0) === n) lua.lua_pushinteger(L, n);
  else lua.lua_pushnumber(L, n);
}

/** Type name of the value at `idx`, for error messages. */
export function typeName(L: LuaState, idx: number): string {
  return to_jsstring(lauxlib.luaL_typename(L, idx));
}
