import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { lua, lauxlib, type LuaState } from '../../../src/lua/fengari.js';
import { newLuaState } from '../../../src/lua/state.js';
import { CallbackRunner, CallbackFailed, CallbackCancelled, yieldOn } from '../../../src/lua/coroutine.js';
import { pushNumber, pushOwnedBytes, toText } from '../../../src/lua/convert.js';

/** Compile `src` as a function and return its registry ref. */
function compile(L: LuaState, src: string): number {
  assert.equal(lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=test', null), lua.LUA_OK);
  return lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
}

/** A global `wait(ms, value)` that yields until a timer fires, then returns value. */
function installWait(L: LuaState): void {
  lua.lua_pushjsfunction(L, (L1) => {
    const ms = lua.lua_tonumber(L1, 1);
    const v = lua.lua_tonumber(L1, 2);
    return yieldOn(
      L1,
      new Promise((resolve) => setTimeout(() => resolve((L2) => (pushNumber(L2, v), 1)), ms)),
      'wait()',
    );
  });
  lua.lua_setglobal(L, 'wait');
}

const collectNumber = (co: LuaState, n: number): number => lua.lua_tonumber(co, n);

test('a callback that yields is resumed with the operation result', async () => {
  const L = newLuaState();
  installWait(L);
  const fn = compile(L, 'local a = ... ; local b = wait(5, 40); return a + b');
  const r = await new CallbackRunner(L, { budgetMs: 1000 }).call(
    fn,
    (co) => (lua.lua_pushinteger(co, 2), 1),
    collectNumber,
    () => false,
  );
  assert.equal(r, 42);
});

test('interleaved coroutines do not block each other', async () => {
  const L = newLuaState();
  installWait(L);
  const fn = compile(L, 'local ms, v = ... ; return wait(ms, v)');
  const runner = new CallbackRunner(L, { budgetMs: 1000 });
  const order: number[] = [];
  const run = (ms: number, v: number) =>
    runner
      .call(
        fn,
        (co) => (lua.lua_pushinteger(co, ms), lua.lua_pushinteger(co, v), 2),
        collectNumber,
        () => false,
      )
      .then((x) => order.push(x));
  await Promise.all([run(40, 1), run(5, 2), run(20, 3)]);
  assert.deepEqual(order, [2, 3, 1]);
});

test('yielding inside pcall works', async () => {
  const L = newLuaState();
  installWait(L);
  const fn = compile(L, 'local ok, v = pcall(wait, 1, 7); assert(ok); return v * 2');
  assert.equal(
    await new CallbackRunner(L, { budgetMs: 1000 }).call(
      fn,
      () => 0,
      collectNumber,
      () => false,
    ),
    14,
  );
});

test('a Lua error rejects with the message and a traceback', async () => {
  const L = newLuaState();
  const fn = compile(L, 'local function inner() error("boom") end\ninner()');
  await assert.rejects(
    new CallbackRunner(L, { budgetMs: 1000 }).call(
      fn,
      () => 0,
      () => 0,
      () => false,
    ),
    (e: unknown) =>
      e instanceof CallbackFailed &&
      /test:1: boom/.test(e.message) &&
      !e.message.includes('\n') &&
      /stack traceback/.test(e.traceback ?? '') &&
      /in (local|function) 'inner'/.test(e.traceback ?? ''),
  );
});

test('error() with a table value or nil still produces a message', async () => {
  const L = newLuaState();
  const runner = new CallbackRunner(L, { budgetMs: 1000 });
  await assert.rejects(
    runner.call(
      compile(L, 'error({})'),
      () => 0,
      () => 0,
      () => false,
    ),
    /table: /,
  );
  await assert.rejects(
    runner.call(
      compile(L, 'error(nil)'),
      () => 0,
      () => 0,
      () => false,
    ),
    /error object is nil/,
  );
});

test('a runaway loop is stopped by the compute budget', async () => {
  const L = newLuaState();
  const fn = compile(L, 'while true do end');
  await assert.rejects(
    new CallbackRunner(L, { budgetMs: 50 }).call(
      fn,
      () => 0,
      () => 0,
      () => false,
    ),
    /more than 50 ms without waiting/,
  );
});

test('time spent waiting does not count against the budget', async () => {
  const L = newLuaState();
  installWait(L);
  const fn = compile(L, 'wait(120, 0); return 1');
  assert.equal(
    await new CallbackRunner(L, { budgetMs: 50 }).call(
      fn,
      () => 0,
      collectNumber,
      () => false,
    ),
    1,
  );
});

test('a callback whose connection went away is cancelled instead of resumed', async () => {
  const L = newLuaState();
  installWait(L);
  let resumedAfter = false;
  lua.lua_pushjsfunction(L, () => {
    resumedAfter = true;
    return 0;
  });
  lua.lua_setglobal(L, 'mark');
  const fn = compile(L, 'wait(10, 0); mark()');
  let cancelled = false;
  const p = new CallbackRunner(L, { budgetMs: 1000 }).call(
    fn,
    () => 0,
    () => 0,
    () => cancelled,
  );
  cancelled = true;
  await assert.rejects(p, CallbackCancelled);
  assert.equal(resumedAfter, false);
});

test('a plain coroutine.yield from the callback is an error, not a hang', async () => {
  const L = newLuaState();
  const fn = compile(L, 'coroutine.yield()');
  await assert.rejects(
    new CallbackRunner(L, { budgetMs: 1000 }).call(
      fn,
      () => 0,
      () => 0,
      () => false,
    ),
    /without a pending operation/,
  );
});

test('coroutines created by the script itself still work inside a callback', async () => {
  const L = newLuaState();
  const fn = compile(L, 'local co = coroutine.wrap(function() coroutine.yield(20) return 22 end); return co() + co()');
  assert.equal(
    await new CallbackRunner(L, { budgetMs: 1000 }).call(
      fn,
      () => 0,
      collectNumber,
      () => false,
    ),
    42,
  );
});

test('an operation awaited at the top level is refused with an explanation', () => {
  const L = newLuaState();
  installWait(L);
  lua.lua_getglobal(L, 'wait');
  lua.lua_pushinteger(L, 1);
  lua.lua_pushinteger(L, 1);
  assert.notEqual(lua.lua_pcall(L, 2, 0, 0), lua.LUA_OK);
  assert.match(toText(L, -1) ?? '', /can only be called inside a callback/);
});

test('the compute budget still applies after pcall caught an error', async () => {
  const L = newLuaState();
  const fn = compile(L, "pcall(error, 'x'); while true do end");
  await assert.rejects(
    new CallbackRunner(L, { budgetMs: 50 }).call(
      fn,
      () => 0,
      () => 0,
      () => false,
    ),
    /more than 50 ms/,
  );
  const fn2 = compile(L, "xpcall(error, function(m) return m end, 'x'); while true do end");
  await assert.rejects(
    new CallbackRunner(L, { budgetMs: 50 }).call(
      fn2,
      () => 0,
      () => 0,
      () => false,
    ),
    /more than 50 ms/,
  );
});

test('pcall and xpcall keep their results and still allow yielding', async () => {
  const L = newLuaState();
  installWait(L);
  const fn = compile(
    L,
    `
    local ok1, v1 = pcall(wait, 1, 5)
    local ok2, e2 = pcall(error, 'bad', 0)
    local ok3, v3 = xpcall(function() return wait(1, 7) end, debug.traceback)
    assert(ok1 and not ok2 and e2 == 'bad' and ok3)
    return v1 * v3`,
  );
  assert.equal(
    await new CallbackRunner(L, { budgetMs: 1000 }).call(
      fn,
      () => 0,
      collectNumber,
      () => false,
    ),
    35,
  );
});

test('catching the budget error with pcall does not buy more time', async () => {
  const L = newLuaState();
  const fn = compile(L, 'local n = 0; while true do pcall(function() while true do end end); n = n + 1 end');
  await assert.rejects(
    new CallbackRunner(L, { budgetMs: 50 }).call(
      fn,
      () => 0,
      () => 0,
      () => false,
    ),
    /more than 50 ms/,
  );
});

test('an error object whose __tostring fails or that needs Lua to print still gives a message', async () => {
  const L = newLuaState();
  const runner = new CallbackRunner(L, { budgetMs: 1000 });
  await assert.rejects(
    runner.call(
      compile(L, "error(setmetatable({}, {__tostring = function() return 'custom text' end}))"),
      () => 0,
      () => 0,
      () => false,
    ),
    (e: unknown) => e instanceof CallbackFailed && /custom text/.test(e.message),
  );
  await assert.rejects(
    runner.call(
      compile(L, "error(setmetatable({}, {__tostring = function() error('nested') end}))"),
      () => 0,
      () => 0,
      () => false,
    ),
    (e: unknown) => e instanceof CallbackFailed && /error object is a table value/.test(e.message),
  );
});

/** runner.run() of `src` (no arguments, never cancelled). */
function runSource<T>(runner: CallbackRunner, L: LuaState, src: string, collect: (co: LuaState, n: number) => T) {
  return runner.run(
    compile(L, src),
    () => 0,
    collect,
    () => false,
  );
}

test('run() answers at once without a promise when the callback does not wait, and a promise when it does', async () => {
  const L = newLuaState();
  installWait(L);
  const runner = new CallbackRunner(L, { budgetMs: 1000 });
  const direct = runner.run(
    compile(L, 'return ... * 2'),
    (co) => (lua.lua_pushinteger(co, 21), 1),
    collectNumber,
    () => false,
  );
  assert.equal(direct, 42);
  const waiting = runSource(runner, L, 'return wait(5, 7)', collectNumber);
  assert.ok(waiting instanceof Promise);
  assert.equal(await waiting, 7);
  // A Lua error is thrown at once, not as a rejected promise.
  assert.throws(
    () => runSource(runner, L, "error('boom')", collectNumber),
    (e: unknown) => e instanceof CallbackFailed && /boom/.test(e.message),
  );
});

test('threads of finished callbacks are reused with an empty stack; failed ones are not', async () => {
  const L = newLuaState();
  installWait(L);
  const runner = new CallbackRunner(L, { budgetMs: 1000 });
  const text = (co: LuaState, n: number): string => toText(co, n)!;
  const count = (_co: LuaState, n: number): number => n;
  const thread = 'return tostring(coroutine.running())';
  const first = runSource(runner, L, thread, text);
  assert.equal(runSource(runner, L, thread, text), first);
  // Many results, then one: the second call sees only its own.
  assert.equal(runSource(runner, L, 'return 1, 2, 3', count), 3);
  assert.equal(runSource(runner, L, 'return 9', count), 1);
  // A thread that waited and then returned serves the next call as well.
  assert.equal(await runSource(runner, L, `wait(1, 0); ${thread}`, text), first);
  assert.equal(runSource(runner, L, thread, text), first);
  // A thread whose callback failed is dropped: the next call gets a working one.
  assert.throws(() => runSource(runner, L, "error('x')", text), CallbackFailed);
  assert.notEqual(runSource(runner, L, thread, text), first);
  assert.equal(runSource(runner, L, 'return 5', collectNumber), 5);
});

test('a callback run from inside another keeps its own compute deadline', () => {
  const L = newLuaState();
  const runner = new CallbackRunner(L, { budgetMs: 50 });
  lua.lua_pushjsfunction(L, (L1) => {
    const n = runSource(runner, L, 'return 1', collectNumber);
    lua.lua_pushinteger(L1, typeof n === 'number' ? n : -1);
    return 1;
  });
  lua.lua_setglobal(L, 'nested');
  // The outer callback goes on computing after the nested one returned: its budget still holds.
  assert.throws(
    () => runSource(runner, L, 'local n = nested(); while true do n = n + 1 end', collectNumber),
    (e: unknown) => e instanceof CallbackFailed && /more than 50 ms/.test(e.message),
  );
  assert.equal(runSource(runner, L, 'return nested() + 1', collectNumber), 2);
});

test('pushOwnedBytes() hands bytes to Lua as a string without copying them', () => {
  const L = newLuaState();
  const bytes = Buffer.from([0x00, 0xff, 0x41, 0x0a]);
  pushOwnedBytes(L, bytes);
  lua.lua_setglobal(L, 's');
  lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, compile(L, 'return #s, s:byte(1, -1)'));
  assert.equal(lua.lua_pcall(L, 0, 5, 0), lua.LUA_OK);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((i) => lua.lua_tonumber(L, i)),
    [4, 0x00, 0xff, 0x41, 0x0a],
  );
  lua.lua_getglobal(L, 's');
  assert.equal(lua.lua_tolstring(L, -1), bytes, 'the Lua string is the array it was given');
});
