import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { lua, lauxlib, type LuaState } from '../../../src/lua/fengari.js';
import { newLuaState, errorToString } from '../../../src/lua/state.js';
import { CallbackRunner, CallbackFailed } from '../../../src/lua/coroutine.js';
import { installSleep } from '../../../src/bindings/sleep.js';

function compile(L: LuaState, src: string): number {
  assert.equal(lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=test', null), lua.LUA_OK);
  return lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
}

function state(): LuaState {
  const L = newLuaState();
  installSleep(L);
  return L;
}

const collectNumber = (co: LuaState, n: number): number => lua.lua_tonumber(co, n);

test('sleep yields for about the given time and returns nothing', async () => {
  const L = state();
  const fn = compile(L, 'local n = select("#", sleep(0.05)); return n');
  const t0 = performance.now();
  const n = await new CallbackRunner(L, { budgetMs: 1000 }).call(
    fn,
    () => 0,
    collectNumber,
    () => false,
  );
  assert.equal(n, 0);
  assert.ok(performance.now() - t0 >= 45);
});

test('other coroutines run while one sleeps', async () => {
  const L = state();
  const fn = compile(L, 'local s, v = ... ; sleep(s); return v');
  const runner = new CallbackRunner(L, { budgetMs: 1000 });
  const order: number[] = [];
  const run = (s: number, v: number) =>
    runner
      .call(
        fn,
        (co) => (lua.lua_pushnumber(co, s), lua.lua_pushinteger(co, v), 2),
        collectNumber,
        () => false,
      )
      .then((x) => order.push(x));
  await Promise.all([run(0.06, 1), run(0, 2), run(0.02, 3)]);
  assert.deepEqual(order, [2, 3, 1]);
});

test('sleep inside pcall and sleep(0)', async () => {
  const L = state();
  const fn = compile(L, 'local ok = pcall(sleep, 0.001); assert(ok); sleep(0); return 7');
  assert.equal(
    await new CallbackRunner(L, { budgetMs: 1000 }).call(
      fn,
      () => 0,
      collectNumber,
      () => false,
    ),
    7,
  );
});

test('bad arguments are argument errors', async () => {
  const L = state();
  const runner = new CallbackRunner(L, { budgetMs: 1000 });
  for (const [src, re] of [
    ['sleep(-1)', /bad argument #1 to 'sleep' \(must not be negative\)/],
    ['sleep("1")', /bad argument #1 to 'sleep' \(number expected\)/],
    ['sleep()', /bad argument #1 to 'sleep'/],
    ['sleep(0/0)', /bad argument #1 to 'sleep'/],
    ['sleep(1e10)', /bad argument #1 to 'sleep'/],
  ] as const) {
    await assert.rejects(
      runner.call(
        compile(L, src),
        () => 0,
        () => 0,
        () => false,
      ),
      (e: unknown) => e instanceof CallbackFailed && re.test(e.message),
    );
  }
});

test('sleep at the top level (no coroutine) is a clear Lua error', () => {
  const L = state();
  const src = Buffer.from('sleep(100)');
  assert.equal(lauxlib.luaL_loadbufferx(L, src, src.length, '=config', null), lua.LUA_OK);
  assert.notEqual(lua.lua_pcall(L, 0, 0, 0), lua.LUA_OK);
  assert.match(errorToString(L, -1), /sleep\(\) waits for I\/O and can only be called inside a callback/);
});
