// Fengari, loaded with myproxy's resource limits. Every module of the project imports Fengari from
// here, never from 'fengari' directly.
//
// Fengari runs Lua in JavaScript and has no allocator hook, and its modules bind each other's
// functions at load time, so nothing can be wrapped from outside. Four one-line changes are made
// to its source as it is loaded (each must apply exactly once, or loading fails loudly):
//   - lstring.js luaS_bless (every Lua string is made there): big strings are counted;
//   - lauxlib.js luaL_prepbuffsize (every buffer that grows: string.rep, table.concat, gsub,
//     format, pack, ...): the new size is checked before it is allocated;
//   - lvm.js luaV_concat (the `..` operator): likewise;
//   - lstrlib.js match (the pattern matcher, which runs in JavaScript, not Lua bytecode): its steps
//     count against the callback's compute budget.
// What the checks do is in limits.ts.

import { createRequire } from 'node:module';
import type * as Fengari from 'fengari';
import { LIMITS_KEY, installLimits } from './limits.js';

const require = createRequire(import.meta.url);

interface Patch {
  readonly file: string;
  readonly find: string;
  readonly replace: string;
}

const HOOK = `globalThis[Symbol.for(${JSON.stringify(LIMITS_KEY)})]`;

const PATCHES: readonly Patch[] = [
  {
    file: 'lstring.js',
    find: 'const luaS_bless = function(L, str) {\n',
    replace: `const luaS_bless = function(L, str) {\n    if (str.length >= 65536) ${HOOK}.string(L, str);\n`,
  },
  {
    file: 'lauxlib.js',
    find: 'let newbuff = new Uint8Array(newsize);',
    replace: `${HOOK}.reserve(B.L, newsize); let newbuff = new Uint8Array(newsize);`,
  },
  {
    file: 'lvm.js',
    find: 'let buff = new Uint8Array(tl);',
    replace: `${HOOK}.reserve(L, tl); let buff = new Uint8Array(tl);`,
  },
  {
    file: 'lstrlib.js',
    find: 'if (ms.matchdepth-- === 0)',
    replace: `${HOOK}.step(ms.L); if (ms.matchdepth-- === 0)`,
  },
];

interface NodeModuleInternals {
  prototype: { _compile(this: unknown, content: string, filename: string): unknown };
}

function loadPatched(): typeof Fengari {
  installLimits();
  const srcDir = require.resolve('fengari/src/lua.js').replace(/lua\.js$/, '');
  if (require.cache[require.resolve('fengari/src/lstring.js')] !== undefined) {
    throw new Error('fengari was loaded before src/lua/fengari.ts: import it only through that module');
  }
  const byFile = new Map(PATCHES.map((p) => [srcDir + p.file, p]));
  const applied = new Set<string>();
  const Module = require('node:module') as unknown as NodeModuleInternals;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be called with .call(this) below
  const compile = Module.prototype._compile;
  Module.prototype._compile = function (this: unknown, content: string, filename: string): unknown {
    const patch = byFile.get(filename);
    if (patch !== undefined) {
      const at = content.indexOf(patch.find);
      if (at < 0 || content.indexOf(patch.find, at + 1) >= 0) {
        throw new Error(`cannot apply myproxy's limits to ${filename}: unexpected Fengari version`);
      }
      content = content.replace(patch.find, patch.replace);
      applied.add(filename);
    }
    return compile.call(this, content, filename);
  };
  try {
    const fengari = require('fengari') as typeof Fengari;
    if (applied.size !== PATCHES.length) {
      throw new Error(`myproxy's limits were applied to ${applied.size} of ${PATCHES.length} Fengari modules`);
    }
    return fengari;
  } finally {
    Module.prototype._compile = compile;
  }
}

const fengari = loadPatched();
const ldo = require('fengari/src/ldo.js') as { luaD_throw(L: unknown, status: number): never };
installLimits().bindRaise(
  (L, message) => fengari.lauxlib.luaL_error(L as Fengari.LuaState, message),
  (L) => ldo.luaD_throw(L, fengari.lua.LUA_ERRMEM),
);

const lstring = require('fengari/src/lstring.js') as { luaS_bless(L: unknown, str: Uint8Array): unknown };
const lobject = require('fengari/src/lobject.js') as { pushsvalue2s(L: unknown, ts: unknown): void };

/**
 * lua_pushstring() without its copy (Fengari copies every pushed string, element by element):
 * `bytes` becomes the Lua string itself, so nothing may ever write to them afterwards. The string
 * is made where every Lua string is made (luaS_bless), so the memory limit still sees it.
 */
export function pushOwnedString(L: Fengari.LuaState, bytes: Uint8Array): void {
  lobject.pushsvalue2s(L, lstring.luaS_bless(L, bytes));
}

export const lua: typeof Fengari.lua = fengari.lua;
export const lauxlib: typeof Fengari.lauxlib = fengari.lauxlib;
export const lualib: typeof Fengari.lualib = fengari.lualib;
export const to_jsstring: typeof Fengari.to_jsstring = fengari.to_jsstring;
export const to_luastring: typeof Fengari.to_luastring = fengari.to_luastring;
export const luastring_eq: typeof Fengari.luastring_eq = fengari.luastring_eq;
export type { LuaState, LuaString, JSFunction, LuaDebug, LuaHook } from 'fengari';
