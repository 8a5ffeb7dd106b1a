// require('js'): fengari-interop's bridge to JavaScript, for a config.lua that must reach a Node
// module the daemon does not bind (an HTTP or Redis client, say), plus js.require(name) and
// js.await(promise), which suspends only the calling callback's coroutine until the promise
// settles. config.lua is the operator's own code: this gives it everything Node can do.
// Loaded only by configs that require it (it changes how the state reports native errors).

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import { toText, typeName } from '../lua/convert.js';
import { yieldOn } from '../lua/coroutine.js';
import { errorMessage } from '../util/errors.js';

interface FengariInterop {
  luaopen_js(L: LuaState): number;
  push(L: LuaState, value: unknown): void;
  tojs(L: LuaState, idx: number): unknown;
}

const daemonRequire = createRequire(import.meta.url);
let interop: FengariInterop | undefined;

/** Loaded on first use, after lua/fengari.ts, so that it shares that (patched) Fengari. */
function loadInterop(): FengariInterop {
  interop ??= daemonRequire('fengari-interop') as FengariInterop;
  return interop;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === 'object' || typeof v === 'function') &&
    v !== null &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}

/** Registers package.preload.js; `configPath` is where js.require() looks for modules first. */
export function installNodeInterop(L: LuaState, configPath: string): void {
  const configRequire = createRequire(join(dirname(configPath), 'config.lua'));

  /** js.require(name): a module from config.lua's node_modules, or from the daemon's own. */
  const jsRequire = (L1: LuaState): number => {
    const name = toText(L1, 1);
    if (name === undefined) return lauxlib.luaL_argerror(L1, 1, `module name expected, got ${typeName(L1, 1)}`);
    let mod: unknown;
    try {
      mod = configRequire(name);
    } catch (first) {
      try {
        mod = daemonRequire(name);
      } catch {
        return lauxlib.luaL_error(L1, `js.require: cannot load ${JSON.stringify(name)}: ${errorMessage(first)}`);
      }
    }
    loadInterop().push(L1, mod);
    return 1;
  };

  /** js.await(value): the promise's value, or nil and the rejection's message; other values as they are. */
  const jsAwait = (L1: LuaState): number => {
    const bridge = loadInterop();
    const value = bridge.tojs(L1, 1);
    if (!isThenable(value)) {
      lua.lua_settop(L1, 1);
      return 1;
    }
    return yieldOn(
      L1,
      Promise.resolve(value).then(
        (v) => (L2: LuaState) => {
          bridge.push(L2, v);
          return 1;
        },
        (e: unknown) => (L2: LuaState) => {
          lua.lua_pushnil(L2);
          lua.lua_pushstring(L2, errorMessage(e));
          return 2;
        },
      ),
      'js.await()',
    );
  };

  lua.lua_getglobal(L, 'package');
  lua.lua_getfield(L, -1, 'preload');
  lua.lua_pushjsfunction(L, (L1: LuaState) => {
    loadInterop().luaopen_js(L1);
    lua.lua_pushjsfunction(L1, jsRequire);
    lua.lua_setfield(L1, -2, 'require');
    lua.lua_pushjsfunction(L1, jsAwait);
    lua.lua_setfield(L1, -2, 'await');
    return 1;
  });
  lua.lua_setfield(L, -2, 'js');
  lua.lua_pop(L, 2);
}
