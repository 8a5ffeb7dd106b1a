// Running Lua callbacks as coroutines. Each call runs in a Lua thread of its own (threads of
// callbacks that returned are reused); a binding that waits for I/O calls yieldOn() with a
// Promise, the thread yields, and the runner resumes it with the Promise's result. Other connections keep running meanwhile. A count hook bounds how long a
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

/** Finished callback threads a runner keeps for reuse (a new thread costs more than a call). */
const MAX_IDLE_THREADS = 32;

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
  readonly #limits = luaLimits();
  /** The deadline of the resume under way (set anew before each one). */
  readonly #deadline: Deadline;
  readonly #idle: LuaState[] = [];

  constructor(L: LuaState, options: RunnerOptions) {
    this.#L = L;
    this.#budgetMs = options.budgetMs;
    this.#budgetMessage = `callback ran for more than ${options.budgetMs} ms without waiting`;
    this.#deadline = { at: Infinity, message: this.#budgetMessage };
    const limits = this.#limits;
    this.#hook = (L1) => {
      const deadline = limits.active;
      if (deadline !== null && performance.now() > deadline.at) lauxlib.luaL_error(L1, deadline.message);
      limits.checkHeap(L1);
    };
  }

  /**
   * Call the function stored at registry ref `fnRef` in a coroutine. `pushArgs` pushes the
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
    return this.run(fnRef, pushArgs, collect, isCancelled);
  }

  /**
   * call() without a promise for a callback that returns without waiting (most do): its result,
   * or a throw, at once; a promise only once the callback has yielded. For hooks on every query,
   * where a promise and its microtask per call would cost more than the Lua call itself.
   */
  run<T>(
    fnRef: number,
    pushArgs: (co: LuaState) => number,
    collect: (co: LuaState, n: number) => T,
    isCancelled: () => boolean,
  ): T | Promise<T> {
    let co = this.#idle.pop();
    if (co === undefined) {
      const L = this.#L;
      co = lua.lua_newthread(L);
      // Fengari has no collector of its own: the JavaScript reference `co` keeps the thread alive
      // (C Lua would need a registry ref for that), so it leaves the main stack at once.
      lua.lua_pop(L, 1);
      lua.lua_sethook(co, this.#hook, lua.LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
    }
    lua.lua_rawgeti(co, lua.LUA_REGISTRYINDEX, fnRef);
    const nargs = pushArgs(co);
    const status = this.#resume(co, nargs);
    return status === lua.LUA_OK ? this.#finish(co, collect) : this.#wait(co, collect, isCancelled);
  }

  /** One resume of `co` under the compute budget: LUA_OK, LUA_YIELD, or a throw (CallbackFailed). */
  #resume(co: LuaState, nargs: number): number {
    const L = this.#L;
    const limits = this.#limits;
    const outer = limits.active;
    // One deadline object serves every resume, unless this one runs inside another of this
    // runner's (a binding whose effect reaches a hook synchronously): that one keeps its own.
    const deadline = outer === this.#deadline ? { at: 0, message: this.#budgetMessage } : this.#deadline;
    deadline.at = this.#budgetMs > 0 ? performance.now() + this.#budgetMs : Infinity;
    // What withDeadline() does, without a closure per resume.
    limits.active = deadline;
    let status: number;
    try {
      status = lua.lua_resume(co, L, nargs);
    } finally {
      limits.active = outer;
    }
    if (status === lua.LUA_OK || status === lua.LUA_YIELD) return status;
    // Convert on the main state: a dead coroutine cannot run the __tostring of the error.
    lua.lua_xmove(co, L, 1);
    const msg = errorToString(L, -1);
    lua.lua_pop(L, 1);
    lauxlib.luaL_traceback(L, co, null, 0);
    const traceback = errorToString(L, -1);
    lua.lua_pop(L, 1);
    throw new CallbackFailed(msg, traceback);
  }

  /** The results of a finished callback; its thread goes back to the idle ones. */
  #finish<T>(co: LuaState, collect: (co: LuaState, n: number) => T): T {
    try {
      return collect(co, lua.lua_gettop(co));
    } finally {
      // A thread that returned is as good as new (status OK, no frames); an empty stack drops
      // every reference it still held. Threads that failed or were cancelled are not reused.
      lua.lua_settop(co, 0);
      if (this.#idle.length < MAX_IDLE_THREADS) this.#idle.push(co);
    }
  }

  /** The rest of a callback that yielded: resumed with each awaited operation's result. */
  async #wait<T>(co: LuaState, collect: (co: LuaState, n: number) => T, isCancelled: () => boolean): Promise<T> {
    for (;;) {
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
      if (this.#resume(co, resumer(co)) === lua.LUA_OK) return this.#finish(co, collect);
    }
  }
}
