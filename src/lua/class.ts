// Userdata classes: a metatable registered by name, and userdata that carry one JS value.

import { lua, lauxlib, type JSFunction, type LuaState } from './fengari.js';

/** Register metatable `name` with the given metamethods (__index, __tostring, ...). */
export function defineClass(L: LuaState, name: string, meta: Record<string, JSFunction>): void {
  lauxlib.luaL_newmetatable(L, name);
  for (const [k, f] of Object.entries(meta)) {
    lua.lua_pushjsfunction(L, f);
    lua.lua_setfield(L, -2, k);
  }
  // Scripts must not be able to swap our metatables.
  lua.lua_pushliteral(L, name);
  lua.lua_setfield(L, -2, '__metatable');
  lua.lua_pop(L, 1);
}

/** Push a new userdata of class `name` carrying `value`. */
export function pushObject(L: LuaState, name: string, value: unknown): void {
  const ud = lua.lua_newuserdata(L, 0);
  ud['value'] = value;
  lauxlib.luaL_setmetatable(L, name);
}

/** The value carried by the userdata at `idx`, or a Lua argument error naming the class. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the class's value type
export function checkObject<T>(L: LuaState, idx: number, name: string): T {
  return lauxlib.luaL_checkudata(L, idx, name)['value'] as T;
}

/** The value carried by the userdata at `idx` if it is of class `name`. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the class's value type
export function testObject<T>(L: LuaState, idx: number, name: string): T | undefined {
  const ud = lauxlib.luaL_testudata(L, idx, name);
  return ud === null ? undefined : (ud['value'] as T);
}
