// sleep(seconds): suspends the calling callback's coroutine for that long; other connections
// keep running. At the top level of config.lua (nothing to yield to) it is a Lua error.

import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import { yieldOn, type Resumer } from '../lua/coroutine.js';

/** Longest sleep setTimeout can do (about 24.8 days), in seconds. */
export const SLEEP_MAX_SECONDS = 2147483647 / 1000;

const resumeWithNothing: Resumer = () => 0;

export function installSleep(L: LuaState): void {
  lua.lua_pushjsfunction(L, (L1) => {
    if (lua.lua_type(L1, 1) !== lua.LUA_TNUMBER) return lauxlib.luaL_argerror(L1, 1, 'number expected');
    const seconds = lua.lua_tonumber(L1, 1);
    if (!(seconds >= 0)) return lauxlib.luaL_argerror(L1, 1, 'must not be negative');
    if (seconds > SLEEP_MAX_SECONDS)
      return lauxlib.luaL_argerror(L1, 1, `must be at most ${SLEEP_MAX_SECONDS} seconds`);
    // Do not start a timer nobody will wait for (it would keep the process alive).
    if (!lua.lua_isyieldable(L1)) return yieldOn(L1, Promise.resolve(resumeWithNothing), 'sleep()');
    return yieldOn(
      L1,
      new Promise<Resumer>((resolve) => setTimeout(() => resolve(resumeWithNothing), seconds * 1000)),
      'sleep()',
    );
  });
  lua.lua_setglobal(L, 'sleep');
}
