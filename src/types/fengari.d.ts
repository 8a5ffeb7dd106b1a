// Minimal ambient types for the parts of fengari (Lua 5.3 in JS) that myproxy uses.
// Lua strings are Uint8Array; integers are 32-bit.

declare module 'fengari' {
  export type LuaState = { readonly __luaState: unique symbol };
  export type LuaString = Uint8Array;
  export type JSFunction = (L: LuaState) => number;
  export interface LuaDebug {
    currentline: number;
    short_src: LuaString;
  }
  export type LuaHook = (L: LuaState, ar: LuaDebug) => void;

  export function to_luastring(s: string, cache?: boolean): LuaString;
  export function to_jsstring(s: LuaString, from?: number, to?: number, replacement_char?: boolean): string;
  export function luastring_eq(a: LuaString, b: LuaString): boolean;

  export const lua: {
    LUA_OK: 0;
    LUA_YIELD: 1;
    LUA_ERRRUN: 2;
    LUA_ERRSYNTAX: 3;
    LUA_ERRMEM: 4;
    LUA_ERRGCMM: 5;
    LUA_ERRERR: 6;
    LUA_MULTRET: -1;
    LUA_REGISTRYINDEX: number;
    LUA_RIDX_GLOBALS: number;
    LUA_TNONE: -1;
    LUA_TNIL: 0;
    LUA_TBOOLEAN: 1;
    LUA_TLIGHTUSERDATA: 2;
    LUA_TNUMBER: 3;
    LUA_TSTRING: 4;
    LUA_TTABLE: 5;
    LUA_TFUNCTION: 6;
    LUA_TUSERDATA: 7;
    LUA_TTHREAD: 8;
    LUA_MASKCOUNT: number;
    lua_absindex(L: LuaState, idx: number): number;
    lua_atnativeerror(L: LuaState, f: JSFunction): JSFunction | null;
    lua_call(L: LuaState, nargs: number, nresults: number): void;
    lua_checkstack(L: LuaState, n: number): boolean;
    lua_createtable(L: LuaState, narr: number, nrec: number): void;
    lua_error(L: LuaState): never;
    lua_getfield(L: LuaState, idx: number, k: LuaString | string): number;
    lua_getglobal(L: LuaState, name: LuaString | string): number;
    lua_gettop(L: LuaState): number;
    lua_isinteger(L: LuaState, idx: number): boolean;
    lua_isstring(L: LuaState, idx: number): boolean;
    lua_isyieldable(L: LuaState): boolean;
    lua_newtable(L: LuaState): void;
    lua_newthread(L: LuaState): LuaState;
    lua_newuserdata(L: LuaState, size?: number): Record<string, unknown>;
    lua_next(L: LuaState, idx: number): number;
    lua_pcall(L: LuaState, nargs: number, nresults: number, msgh: number): number;
    lua_pop(L: LuaState, n: number): void;
    lua_pushboolean(L: LuaState, b: boolean): void;
    lua_pushcclosure(L: LuaState, f: JSFunction, n: number): void;
    lua_pushinteger(L: LuaState, n: number): void;
    lua_pushjsfunction(L: LuaState, f: JSFunction): void;
    lua_pushlightuserdata(L: LuaState, p: unknown): void;
    lua_pushliteral(L: LuaState, s: string): void;
    lua_pushnil(L: LuaState): void;
    lua_pushnumber(L: LuaState, n: number): void;
    lua_pushstring(L: LuaState, s: LuaString | string): void;
    lua_pushvalue(L: LuaState, idx: number): void;
    lua_rawequal(L: LuaState, a: number, b: number): boolean;
    lua_remove(L: LuaState, idx: number): void;
    lua_rawget(L: LuaState, idx: number): number;
    lua_rawgeti(L: LuaState, idx: number, n: number): number;
    lua_rawlen(L: LuaState, idx: number): number;
    lua_rawgetp(L: LuaState, idx: number, p: unknown): number;
    lua_rawset(L: LuaState, idx: number): void;
    lua_rawseti(L: LuaState, idx: number, n: number): void;
    lua_resume(L: LuaState, from: LuaState | null, nargs: number): number;
    lua_setfield(L: LuaState, idx: number, k: LuaString | string): void;
    lua_setglobal(L: LuaState, name: LuaString | string): void;
    lua_sethook(L: LuaState, f: LuaHook | null, mask: number, count: number): void;
    lua_setmetatable(L: LuaState, idx: number): void;
    lua_settop(L: LuaState, idx: number): void;
    lua_toboolean(L: LuaState, idx: number): boolean;
    lua_tointeger(L: LuaState, idx: number): number;
    lua_tolstring(L: LuaState, idx: number): LuaString | null;
    lua_tonumber(L: LuaState, idx: number): number;
    lua_tothread(L: LuaState, idx: number): LuaState | null;
    lua_touserdata(L: LuaState, idx: number): unknown;
    lua_type(L: LuaState, idx: number): number;
    lua_typename(L: LuaState, t: number): LuaString;
    lua_upvalueindex(i: number): number;
    lua_xmove(from: LuaState, to: LuaState, n: number): void;
    lua_yield(L: LuaState, n: number): number;
    lua_getstack(L: LuaState, level: number, ar: LuaDebug): number;
    lua_getinfo(L: LuaState, what: LuaString | string, ar: LuaDebug): number;
  };

  export const lauxlib: {
    LUA_NOREF: number;
    LUA_REFNIL: number;
    luaL_Debug: new () => LuaDebug;
    luaL_argerror(L: LuaState, arg: number, msg: LuaString | string): never;
    luaL_checkinteger(L: LuaState, arg: number): number;
    luaL_checklstring(L: LuaState, arg: number): LuaString;
    luaL_checknumber(L: LuaState, arg: number): number;
    luaL_checkstring(L: LuaState, arg: number): LuaString;
    luaL_checktype(L: LuaState, arg: number, t: number): void;
    luaL_checkudata(L: LuaState, arg: number, tname: LuaString | string): Record<string, unknown>;
    luaL_error(L: LuaState, fmt: LuaString | string, ...args: unknown[]): never;
    luaL_getmetafield(L: LuaState, obj: number, e: LuaString | string): number;
    luaL_loadfilex(L: LuaState, filename: LuaString | string | null, mode: LuaString | string | null): number;
    luaL_loadbufferx(
      L: LuaState,
      buff: LuaString,
      sz: number,
      name: LuaString | string,
      mode: LuaString | string | null,
    ): number;
    luaL_newmetatable(L: LuaState, tname: LuaString | string): number;
    luaL_newstate(): LuaState;
    luaL_ref(L: LuaState, t: number): number;
    luaL_setfuncs(L: LuaState, l: Record<string, JSFunction>, nup: number): void;
    luaL_setmetatable(L: LuaState, tname: LuaString | string): void;
    luaL_testudata(L: LuaState, ud: number, tname: LuaString | string): Record<string, unknown> | null;
    luaL_tolstring(L: LuaState, idx: number): LuaString;
    luaL_traceback(L: LuaState, L1: LuaState, msg: LuaString | string | null, level: number): void;
    luaL_typename(L: LuaState, idx: number): LuaString;
    luaL_unref(L: LuaState, t: number, ref: number): void;
    luaL_where(L: LuaState, level: number): void;
  };

  export const lualib: {
    luaL_openlibs(L: LuaState): void;
  };
}
