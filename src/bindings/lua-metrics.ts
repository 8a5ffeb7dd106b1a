// prometheus_counter(name, help [, label]): counters that config.lua (and the Lua library, e.g.
// myproxy.rules' hit counts) adds to the Prometheus exporter. A counter has at most one label, and
// at most MAX_LUA_LABEL_VALUES values of it, so a script cannot make the series explode.

import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import { checkObject, defineClass, pushObject } from '../lua/class.js';
import { toText, typeName } from '../lua/convert.js';
import { MAX_LUA_LABEL_VALUES, type LuaCounter, type ProxyMetrics } from '../util/metrics.js';

const COUNTER_CLASS = 'myproxy.counter';
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function checkText(L: LuaState, idx: number, what: string): string {
  const s = toText(L, idx);
  if (s === undefined) return lauxlib.luaL_argerror(L, idx, `${what} must be a string, got ${typeName(L, idx)}`);
  return s;
}

/** counter:inc([label_value] [, n]): adds n (default 1). */
const counterInc = (L: LuaState): number => {
  const c = checkObject<LuaCounter>(L, 1, COUNTER_CLASS);
  let arg = 2;
  let key = '';
  if (c.label !== undefined) {
    key = checkText(L, 2, 'the label value');
    arg = 3;
  }
  let n = 1;
  if (lua.lua_gettop(L) >= arg && lua.lua_type(L, arg) !== lua.LUA_TNIL) {
    n = lua.lua_type(L, arg) === lua.LUA_TNUMBER ? lua.lua_tonumber(L, arg) : NaN;
    if (!(n >= 0) || !Number.isFinite(n)) return lauxlib.luaL_argerror(L, arg, 'a counter only goes up');
  }
  if (!c.values.has(key) && c.values.size >= MAX_LUA_LABEL_VALUES) key = '_other';
  c.values.set(key, (c.values.get(key) ?? 0) + n);
  return 0;
};

/** counter:get([label_value]): the current value. */
const counterGet = (L: LuaState): number => {
  const c = checkObject<LuaCounter>(L, 1, COUNTER_CLASS);
  const key = c.label !== undefined ? checkText(L, 2, 'the label value') : '';
  lua.lua_pushnumber(L, c.values.get(key) ?? 0);
  return 1;
};

export function installLuaMetrics(L: LuaState, metrics: ProxyMetrics): void {
  defineClass(L, COUNTER_CLASS, {
    __index: (L1) => {
      const key = toText(L1, 2);
      if (key === 'inc') lua.lua_pushjsfunction(L1, counterInc);
      else if (key === 'get') lua.lua_pushjsfunction(L1, counterGet);
      else lua.lua_pushnil(L1);
      return 1;
    },
    __tostring: (L1) => {
      lua.lua_pushstring(L1, `counter(${checkObject<LuaCounter>(L1, 1, COUNTER_CLASS).name})`);
      return 1;
    },
  });
  lua.lua_pushjsfunction(L, (L1: LuaState) => {
    const n = lua.lua_gettop(L1);
    if (n < 2 || n > 3)
      return lauxlib.luaL_error(L1, 'prometheus_counter(name, help [, label]) takes 2 or 3 arguments');
    const name = checkText(L1, 1, 'the name');
    const help = checkText(L1, 2, 'the help text');
    const label = n === 3 && lua.lua_type(L1, 3) !== lua.LUA_TNIL ? checkText(L1, 3, 'the label name') : undefined;
    if (!METRIC_NAME.test(name))
      return lauxlib.luaL_argerror(L1, 1, `not a Prometheus metric name: ${JSON.stringify(name)}`);
    if (label !== undefined && (!LABEL_NAME.test(label) || label.startsWith('__'))) {
      return lauxlib.luaL_argerror(L1, 3, `not a Prometheus label name: ${JSON.stringify(label)}`);
    }
    const existing = metrics.luaCounters.get(name);
    if (existing !== undefined) {
      if (existing.help !== help || existing.label !== label) {
        return lauxlib.luaL_error(L1, `prometheus_counter: ${name} is already defined with another help text or label`);
      }
      pushObject(L1, COUNTER_CLASS, existing);
      return 1;
    }
    const counter: LuaCounter = { name, help, label, values: new Map() };
    metrics.luaCounters.set(name, counter);
    pushObject(L1, COUNTER_CLASS, counter);
    return 1;
  });
  lua.lua_setglobal(L, 'prometheus_counter');
}
