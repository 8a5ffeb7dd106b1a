// Running Lua callbacks as coroutines. Each call gets its own Lua thread; a binding that waits
// for I/O calls yieldOn() with a Promise, the thread yields, and the runner resumes it with the
// Promise's result. Other connections keep running meanwhile. A count hook bounds how long a
// callback may compute between yields, so a runaway loop cannot freeze the daemon.

import { lua, lauxlib, type LuaState } from './fengari.js';
import { luaLimits, type Deadline } from './limits.js';
import { errorToString } from './state.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';

/** Pushes the results of a finished operation onto the resumed thread; returns their count. */
export type Resumer = (L: LuaState) => number;

const pendingOperations = new WeakMap<LuaState, Promise<Resumer>>();

/**
 * Suspend the running coroutine until `op` settles. Call as `return yieldOn(L, op)` from a
 * binding. Outside a callback (config top level) this raises a Lua error that says why.
 */
export function yieldOn(L: LuaState, op: Promise<Resumer>, what = 'this function'): number {
  if (!lua.lua_isyieldable(L)) {
    // Prevent an unhandled rejection of an operation nobody will wait for.
    op.catch(() => undefined);
    return lauxlib.luaL_error(
      L,
      `${what} waits for I/O and can only be called inside a callback (not at the top level of the config or across a JS call boundary)`,
    );
  }
  pendingOperations.set(L, op);
  return lua.lua_yield(L, 0);
}

export class CallbackCancelled extends ProxyError {
  constructor() {
    super(ErrorCodes.LUA_CANCELLED, 'callback cancelled');
  }
}

export class CallbackFailed extends ProxyError {
  /** The Lua stack traceback, for the log (undefined when there is none). */
  readonly traceback: string | undefined;
  constructor(message: string, traceback?: string) {
    super(ErrorCodes.LUA, message);
    this.traceback = traceback;
  }
}

export interface RunnerOptions {
  /** Longest a callback may run without yielding (ms); 0 disables the limit. */
  readonly budgetMs: number;
}

const HOOK_INSTRUCTIONS = 20000;

export class CallbackRunner {
  readonly #L: LuaState;
  readonly #budgetMs: number;
  readonly #budgetMessage: string;
  /**
   * The count hook of every callback thread (threads a callback creates inherit it): the compute
   * budget is that of the Lua code running now (luaLimits().active, set around each resume), so
   * one hook serves all callbacks.
   */
  readonly #hook: (L: LuaState) => void;

  constructor(L: LuaState, options: RunnerOptions) {
    this.#L = L;
    this.#budgetMs = options.budgetMs;
    this.#budgetMessage = `callback ran for more than ${options.budgetMs} ms without waiting`;
    const limits = luaLimits();
    this.#hook = (L1) => {
      const deadline = limits.active;
      if (deadline !== null && performance.now() > deadline.at) lauxlib.luaL_error(L1, deadline.message);
      limits.checkHeap(L1);
    };
  }

  /**
   * Call the function stored at registry ref `fnRef` in a new coroutine. `pushArgs` pushes the
   * arguments onto the thread and returns their count; `collect` reads the `n` results before
   * the thread is released. Rejects with CallbackFailed (message with traceback) on a Lua error
   * and with CallbackCancelled when `isCancelled()` turned true while the callback waited.
   */
  async call<T>(
    fnRef: number,
    pushArgs: (co: LuaState) => number,
    collect: (co: LuaState, n: number) => T,
    isCancelled: () => boolean,
  ): Promise<T> {
    const L = this.#L;
    const co = lua.lua_newthread(L);
    // Fengari has no collector of its own: the JavaScript reference `co` keeps the thread alive
    // (C Lua would need a registry ref for that), so it leaves the main stack at once.
    lua.lua_pop(L, 1);
    const deadline: Deadline = { at: Infinity, message: this.#budgetMessage };
    const limits = luaLimits();
    lua.lua_sethook(co, this.#hook, lua.LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
    lua.lua_rawgeti(co, lua.LUA_REGISTRYINDEX, fnRef);
    let nargs = pushArgs(co);
    for (;;) {
      deadline.at = this.#budgetMs > 0 ? performance.now() + this.#budgetMs : Infinity;
      // What withDeadline() does, without a closure per resume.
      const outer = limits.active;
      limits.active = deadline;
      let status: number;
      try {
        status = lua.lua_resume(co, L, nargs);
      } finally {
        limits.active = outer;
      }
      if (status === lua.LUA_OK) return collect(co, lua.lua_gettop(co));
      if (status !== lua.LUA_YIELD) {
        // Convert on the main state: a dead coroutine cannot run the __tostring of the error.
        lua.lua_xmove(co, L, 1);
        const msg = errorToString(L, -1);
        lua.lua_pop(L, 1);
        lauxlib.luaL_traceback(L, co, null, 0);
        const traceback = errorToString(L, -1);
        lua.lua_pop(L, 1);
        throw new CallbackFailed(msg, traceback);
      }
      const op = pendingOperations.get(co);
      pendingOperations.delete(co);
      if (op === undefined) {
        throw new CallbackFailed(
          'callback yielded without a pending operation (coroutine.yield outside a coroutine of its own)',
        );
      }
      let resumer: Resumer;
      try {
        resumer = await op;
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        resumer = (L1) => {
          lua.lua_pushnil(L1);
          lua.lua_pushstring(L1, message);
          return 2;
        };
      }
      if (isCancelled()) throw new CallbackCancelled();
      lua.lua_settop(co, 0);
      nargs = resumer(co);
    }
  }
}
