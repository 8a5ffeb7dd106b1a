// Resource limits of the Lua VM: the compute budget of the callback running now, and a memory
// limit. Fengari has no allocator hook; fengari.ts routes the places where big allocations happen
// (and the pattern matcher, whose work is not Lua bytecode) through the hook object below.
//
// Memory is bounded two ways, both approximations documented in docs/configuration.md:
//   - strings of 64 KiB and more are counted while they live (a FinalizationRegistry subtracts them
//     when the garbage collector takes them), and a buffer or concatenation that would take the
//     total past the limit fails before it is allocated;
//   - everything else a script keeps (tables, small strings) lives on the V8 heap: the count hook
//     and every big allocation compare the heap's growth since the configuration ran with the limit.
// Past the limit, the allocation fails as the Lua error "not enough memory" in that callback.

import { getHeapStatistics } from 'node:v8';

/** The global the patched Fengari modules find the hook object under (Symbol.for). */
export const LIMITS_KEY = 'myproxy.lua.limits';

/** Strings this long and longer are counted while they live. */
const BIG_STRING = 65536;
/** The pattern matcher looks at the deadline every this many steps. */
const STEPS_PER_CHECK = 1024;

export const DEFAULT_LUA_MEMORY_BYTES = 256 * 1024 * 1024;

/** The compute deadline of the Lua code running now (a callback, or the daemon converting an error). */
export interface Deadline {
  at: number;
  readonly message: string;
}

type Raise = (L: unknown, message: string) => never;
type RaiseMemory = (L: unknown) => never;

class LuaLimits {
  maxBytes = DEFAULT_LUA_MEMORY_BYTES;
  /** Bytes of big strings alive now. */
  liveBytes = 0;
  /** V8 heap use when the limit was configured (what the configuration itself keeps). */
  heapBaseline = 0;
  /** The deadline of the Lua code running now; null at the top level of the configuration. */
  active: Deadline | null = null;
  #steps = 0;
  #raise: Raise | null = null;
  #raiseMemory: RaiseMemory | null = null;
  readonly #counted = new WeakSet<Uint8Array>();
  readonly #registry = new FinalizationRegistry<number>((bytes) => {
    this.liveBytes -= bytes;
  });

  /** How to raise a Lua error, and a memory error (LUA_ERRMEM, "not enough memory"), in Fengari. */
  bindRaise(raise: Raise, raiseMemory: RaiseMemory): void {
    this.#raise = raise;
    this.#raiseMemory = raiseMemory;
  }

  #fail(L: unknown, message: string): never {
    if (this.#raise === null) throw new Error(message);
    return this.#raise(L, message);
  }

  #outOfMemory(L: unknown): never {
    if (this.#raiseMemory === null) throw new Error('not enough memory');
    return this.#raiseMemory(L);
  }

  /** The heap has grown past the limit (checked by the count hook and big allocations). */
  heapExceeded(): boolean {
    return this.heapBaseline > 0 && getHeapStatistics().used_heap_size - this.heapBaseline > this.maxBytes;
  }

  checkHeap(L: unknown): void {
    if (this.heapExceeded()) this.#outOfMemory(L);
  }

  /** A buffer or a concatenation of `bytes` is about to be allocated. */
  reserve(L: unknown, bytes: number): void {
    if (bytes < BIG_STRING) return;
    if (bytes > this.maxBytes || this.liveBytes + bytes > this.maxBytes || this.heapExceeded()) {
      this.#outOfMemory(L);
    }
  }

  /** A big string was made: count it while it lives. */
  string(L: unknown, bytes: Uint8Array): void {
    if (this.#counted.has(bytes)) return;
    this.#counted.add(bytes);
    this.liveBytes += bytes.length;
    this.#registry.register(bytes, bytes.length);
    if (this.liveBytes > this.maxBytes) this.#outOfMemory(L);
  }

  /** A step of the pattern matcher: it counts against the compute budget like Lua instructions. */
  step(L: unknown): void {
    if ((++this.#steps & (STEPS_PER_CHECK - 1)) !== 0) return;
    const d = this.active;
    if (d !== null && performance.now() > d.at) this.#fail(L, d.message);
  }
}

let limits: LuaLimits | null = null;

/** The hook object (created once per process). */
export function installLimits(): LuaLimits {
  if (limits === null) {
    limits = new LuaLimits();
    (globalThis as Record<symbol, unknown>)[Symbol.for(LIMITS_KEY)] = limits;
  }
  return limits;
}

export function luaLimits(): LuaLimits {
  return installLimits();
}

/**
 * Sets the memory limit; the V8 heap as it is now (the configuration has run) is the baseline the
 * heap's growth is measured from.
 */
export function configureLuaMemory(maxBytes: number): void {
  const l = installLimits();
  l.maxBytes = maxBytes;
  l.heapBaseline = getHeapStatistics().used_heap_size;
}

/** Runs `fn` with `deadline` as the deadline of the Lua code it runs. */
export function withDeadline<T>(deadline: Deadline | null, fn: () => T): T {
  const l = installLimits();
  const outer = l.active;
  l.active = deadline;
  try {
    return fn();
  } finally {
    l.active = outer;
  }
}
