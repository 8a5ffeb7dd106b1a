// Generic Fengari embedding: state creation, error mapping, running files with tracebacks.
// Knows nothing about MySQL.

import { lua, lauxlib, lualib, to_jsstring, type LuaState } from './fengari.js';
import { luaLimits, withDeadline, type Deadline } from './limits.js';
import { bytesToLogText, logInfo } from '../util/log.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';

/** Create a Lua state with the standard libraries and myproxy's fixes for Fengari's gaps. */
export function newLuaState(): LuaState {
  const L = lauxlib.luaL_newstate();
  lualib.luaL_openlibs(L);
  // A JS exception inside a binding would otherwise surface as an error without a message.
  lua.lua_atnativeerror(L, (L1) => {
    const e = lua.lua_touserdata(L1, -1);
    const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    lua.lua_pushstring(L1, text);
    return 1;
  });
  // Fengari has no collector of its own (JS's does the work); collectgarbage() must not fail.
  lua.lua_pushjsfunction(L, (L1) => {
    lua.lua_pushinteger(L1, 0);
    return 1;
  });
  lua.lua_setglobal(L, 'collectgarbage');
  // print() writes log lines like the daemon's own: through the sink that escapes control
  // characters, so a script printing what a client sent cannot forge lines either.
  lua.lua_pushjsfunction(L, (L1) => {
    const n = lua.lua_gettop(L1);
    const parts: string[] = [];
    for (let i = 1; i <= n; i++) {
      parts.push(bytesToLogText(lauxlib.luaL_tolstring(L1, i)));
      lua.lua_pop(L1, 1);
    }
    logInfo(parts.join('\t'));
    return 0;
  });
  lua.lua_setglobal(L, 'print');
  wrapProtectedCalls(L);
  return L;
}

/**
 * Fengari's lua_pcallk clears the saved 'allowhook' flag instead of saving it (operator
 * precedence), so after pcall/xpcall recovers from an error inside a coroutine, debug hooks stay
 * off for good, and with them the compute budget that stops runaway callbacks. The wrappers
 * switch hooks back on after every protected call. They are Lua functions, so yielding through
 * them keeps working.
 */
function wrapProtectedCalls(L: LuaState): void {
  const src = `local restore, pcall, xpcall = ...
    _G.pcall = function(...) return restore(pcall(...)) end
    _G.xpcall = function(...) return restore(xpcall(...)) end`;
  const chunk = new TextEncoder().encode(src);
  if (lauxlib.luaL_loadbufferx(L, chunk, chunk.length, '=(myproxy)', null) !== lua.LUA_OK) {
    throw new Error(errorToString(L, -1));
  }
  lua.lua_pushjsfunction(L, (L1) => {
    (L1 as unknown as { allowhook: number }).allowhook = 1;
    // A callback out of compute time must not go on by catching the budget error: raise it again.
    const deadline = luaLimits().active;
    if (deadline !== null && performance.now() > deadline.at) {
      return lauxlib.luaL_error(L1, deadline.message);
    }
    return lua.lua_gettop(L1);
  });
  lua.lua_getglobal(L, 'pcall');
  lua.lua_getglobal(L, 'xpcall');
  lua.lua_call(L, 3, 0);
}

/** Message handler for lua_pcall: error message plus a stack traceback. */
export function tracebackHandler(L: LuaState): number {
  const msg = errorToString(L, 1);
  lauxlib.luaL_traceback(L, L, msg, 1);
  return 1;
}

const toStringInLua = (L: LuaState): number => {
  lauxlib.luaL_tolstring(L, 1);
  return 1;
};

/** How long a script's __tostring may run when the daemon turns an error object into text. */
const CONVERSION_BUDGET_MS = 100;

/** Text of the error value at `idx` (which may be any Lua value, or nil). */
export function errorToString(L: LuaState, idx: number): string {
  const t = lua.lua_type(L, idx);
  if (t === lua.LUA_TSTRING) return to_jsstring(lua.lua_tolstring(L, idx)!, undefined, undefined, true);
  if (t === lua.LUA_TNIL || t === lua.LUA_TNONE) return '(error object is nil)';
  // Tables with __tostring and the like: that runs Lua code, which may fail itself, so convert
  // in a protected call and fall back to the type name.
  const top = lua.lua_gettop(L);
  const abs = lua.lua_absindex(L, idx);
  let text: string;
  if (!lua.lua_checkstack(L, 4)) return `(error object is a ${to_jsstring(lauxlib.luaL_typename(L, abs))} value)`;
  lua.lua_pushjsfunction(L, toStringInLua);
  lua.lua_pushvalue(L, abs);
  // The daemon runs this (a __tostring of the script's) outside any callback: it gets a budget
  // of its own, or an endless __tostring would hang the daemon for good.
  const deadline: Deadline = {
    at: performance.now() + CONVERSION_BUDGET_MS,
    message: `__tostring ran for more than ${CONVERSION_BUDGET_MS} ms`,
  };
  lua.lua_sethook(
    L,
    (L1) => {
      if (performance.now() > deadline.at) lauxlib.luaL_error(L1, deadline.message);
    },
    lua.LUA_MASKCOUNT,
    1000,
  );
  let ok: boolean;
  try {
    ok = withDeadline(deadline, () => lua.lua_pcall(L, 1, 1, 0) === lua.LUA_OK);
  } finally {
    lua.lua_sethook(L, null, 0, 0);
    // Fengari's pcall leaves hooks disabled after an error (see wrapProtectedCalls).
    (L as unknown as { allowhook: number }).allowhook = 1;
  }
  if (ok && lua.lua_type(L, -1) === lua.LUA_TSTRING) {
    text = to_jsstring(lua.lua_tolstring(L, -1)!, undefined, undefined, true);
  } else {
    text = `(error object is a ${to_jsstring(lauxlib.luaL_typename(L, abs))} value)`;
  }
  lua.lua_settop(L, top);
  return text;
}

export class LuaScriptError extends ProxyError {
  constructor(message: string) {
    super(ErrorCodes.LUA, message);
  }
}

/** Load and run a file in the main state (not a coroutine). Throws LuaScriptError with file:line. */
export function runFile(L: LuaState, path: string): void {
  const base = lua.lua_gettop(L);
  lua.lua_pushjsfunction(L, tracebackHandler);
  const status = lauxlib.luaL_loadfilex(L, path, null);
  if (status !== lua.LUA_OK) {
    const msg = errorToString(L, -1);
    lua.lua_settop(L, base);
    throw new LuaScriptError(msg);
  }
  const rc = lua.lua_pcall(L, 0, 0, base + 1);
  if (rc !== lua.LUA_OK) {
    const msg = errorToString(L, -1);
    lua.lua_settop(L, base);
    throw new LuaScriptError(msg);
  }
  lua.lua_settop(L, base);
}

/** Prepend directories to package.path so `require` finds operator and shipped modules. */
export function addPackagePath(L: LuaState, dirs: readonly string[]): void {
  lua.lua_getglobal(L, 'package');
  lua.lua_getfield(L, -1, 'path');
  const current = to_jsstring(lua.lua_tolstring(L, -1) ?? new Uint8Array());
  lua.lua_pop(L, 1);
  const extra = dirs.map((d) => `${d}/?.lua`).join(';');
  lua.lua_pushstring(L, current.length > 0 ? `${extra};${current}` : extra);
  lua.lua_setfield(L, -2, 'path');
  lua.lua_pop(L, 1);
}
