// The `json` global table: json.dump(v) and json.parse(s), written directly over Lua values.
//
// Mapping (documented in docs/configuration.md, "Lua libraries"):
// - A table whose keys are all positive integers and dense enough (largest key n with at least
//   n/2 keys present, n >= 1) is an array; holes become null. Any other table is an object
//   (the empty table is `{}`); its keys must be strings or numbers (numbers are written as text).
// - Lua integers are written as integers; floats always with a fraction or exponent (2.0 stays
//   "2.0"), so the type survives a round trip. NaN and infinities cannot be written.
// - Strings must be valid UTF-8. nil at the top level is `null`.
// - json.parse: null is nil (a member whose value is null is absent; an array element that is
//   null is a hole); numbers without fraction/exponent within 32 bits are Lua integers, every
//   other number is a float (integers beyond 2^53 lose precision).
// Errors are `nil, message`, never Lua errors.

import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import { pushBytes, typeName } from '../lua/convert.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';

/** Deepest nesting json.dump and json.parse accept. */
export const JSON_MAX_DEPTH = 200;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

class JsonError extends ProxyError {
  constructor(message: string) {
    super(ErrorCodes.JSON, message);
  }
}

/** Decode UTF-8 bytes, or undefined when they are not valid UTF-8. */
function decodeUtf8(b: Uint8Array): string | undefined {
  try {
    return utf8.decode(b);
  } catch {
    return undefined;
  }
}

function formatFloat(n: number): string {
  if (!Number.isFinite(n)) throw new JsonError('json.dump: cannot encode NaN or infinity');
  if (Object.is(n, -0)) return '-0.0';
  const s = String(n);
  return /^-?\d+$/.test(s) ? `${s}.0` : s;
}

/**
 * Serialise the Lua value at `idx` as JSON text. Throws JsonError (message for the script).
 * Uses a scratch table on the stack to detect cycles; the stack is restored.
 */
export function dumpValue(L: LuaState, idx: number): string {
  const abs = lua.lua_absindex(L, idx);
  const top = lua.lua_gettop(L);
  lua.lua_newtable(L); // tables being written (cycle detection)
  const seen = lua.lua_gettop(L);
  try {
    const out: string[] = [];
    write(L, abs, seen, out, 0);
    return out.join('');
  } finally {
    lua.lua_settop(L, top);
  }
}

function write(L: LuaState, idx: number, seen: number, out: string[], depth: number): void {
  switch (lua.lua_type(L, idx)) {
    case lua.LUA_TNIL:
      out.push('null');
      return;
    case lua.LUA_TBOOLEAN:
      out.push(lua.lua_toboolean(L, idx) ? 'true' : 'false');
      return;
    case lua.LUA_TNUMBER:
      out.push(lua.lua_isinteger(L, idx) ? String(lua.lua_tointeger(L, idx)) : formatFloat(lua.lua_tonumber(L, idx)));
      return;
    case lua.LUA_TSTRING:
      out.push(quote(lua.lua_tolstring(L, idx)!));
      return;
    case lua.LUA_TTABLE:
      writeTable(L, idx, seen, out, depth + 1);
      return;
    default:
      throw new JsonError(`json.dump: cannot encode a ${typeName(L, idx)} value`);
  }
}

function quote(b: Uint8Array): string {
  const s = decodeUtf8(b);
  if (s === undefined) throw new JsonError('json.dump: string is not valid UTF-8');
  return JSON.stringify(s);
}

function writeTable(L: LuaState, idx: number, seen: number, out: string[], depth: number): void {
  if (depth > JSON_MAX_DEPTH) throw new JsonError(`json.dump: nesting deeper than ${JSON_MAX_DEPTH}`);
  if (!lua.lua_checkstack(L, 6)) throw new JsonError('json.dump: out of stack space');
  lua.lua_pushvalue(L, idx);
  if (lua.lua_rawget(L, seen) !== lua.LUA_TNIL) throw new JsonError('json.dump: table contains a cycle');
  lua.lua_pop(L, 1);
  lua.lua_pushvalue(L, idx);
  lua.lua_pushboolean(L, true);
  lua.lua_rawset(L, seen);

  // Classify: array (positive integer keys, dense enough) or object.
  let count = 0;
  let max = 0;
  let allPositiveIntegers = true;
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx) !== 0) {
    count++;
    if (allPositiveIntegers && lua.lua_isinteger(L, -2)) {
      const k = lua.lua_tointeger(L, -2);
      if (k >= 1) max = Math.max(max, k);
      else allPositiveIntegers = false;
    } else {
      allPositiveIntegers = false;
    }
    lua.lua_pop(L, 1);
  }

  if (count > 0 && allPositiveIntegers && max <= 2 * count) {
    out.push('[');
    for (let i = 1; i <= max; i++) {
      if (i > 1) out.push(',');
      lua.lua_rawgeti(L, idx, i);
      write(L, lua.lua_gettop(L), seen, out, depth);
      lua.lua_pop(L, 1);
    }
    out.push(']');
  } else {
    out.push('{');
    let first = true;
    lua.lua_pushnil(L);
    while (lua.lua_next(L, idx) !== 0) {
      const kt = lua.lua_type(L, -2);
      let key: string;
      if (kt === lua.LUA_TSTRING) {
        key = quote(lua.lua_tolstring(L, -2)!);
      } else if (kt === lua.LUA_TNUMBER) {
        // Do not convert the key in place (that would confuse lua_next).
        key = JSON.stringify(
          lua.lua_isinteger(L, -2) ? String(lua.lua_tointeger(L, -2)) : formatFloat(lua.lua_tonumber(L, -2)),
        );
      } else {
        throw new JsonError(`json.dump: a ${typeName(L, -2)} key cannot be an object key`);
      }
      if (!first) out.push(',');
      first = false;
      out.push(key, ':');
      write(L, lua.lua_gettop(L), seen, out, depth);
      lua.lua_pop(L, 1);
    }
    out.push('}');
  }

  lua.lua_pushvalue(L, idx);
  lua.lua_pushnil(L);
  lua.lua_rawset(L, seen);
}

/** Parses JSON text and pushes the value onto the Lua stack. */
class Parser {
  #pos = 0;
  readonly L: LuaState;
  readonly s: string;
  constructor(L: LuaState, s: string) {
    this.L = L;
    this.s = s;
  }

  run(): void {
    this.#ws();
    this.#value(0);
    this.#ws();
    if (this.#pos < this.s.length) this.#fail('unexpected data after the value');
  }

  #fail(what: string): never {
    throw new JsonError(`json.parse: ${what} at position ${this.#pos + 1}`);
  }

  #ws(): void {
    const s = this.s;
    while (this.#pos < s.length) {
      const c = s.charCodeAt(this.#pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.#pos++;
      else break;
    }
  }

  #literal(word: string): void {
    if (this.s.startsWith(word, this.#pos)) this.#pos += word.length;
    else this.#fail('invalid literal');
  }

  /** Push the value at the current position (nil for null). */
  #value(depth: number): void {
    const L = this.L;
    if (this.#pos >= this.s.length) this.#fail('unexpected end of input');
    const c = this.s[this.#pos];
    switch (c) {
      case '{':
        this.#object(depth + 1);
        return;
      case '[':
        this.#array(depth + 1);
        return;
      case '"':
        pushBytes(L, encoder.encode(this.#string()));
        return;
      case 't':
        this.#literal('true');
        lua.lua_pushboolean(L, true);
        return;
      case 'f':
        this.#literal('false');
        lua.lua_pushboolean(L, false);
        return;
      case 'n':
        this.#literal('null');
        lua.lua_pushnil(L);
        return;
      default:
        this.#number();
    }
  }

  #enter(depth: number): void {
    if (depth > JSON_MAX_DEPTH) this.#fail(`nesting deeper than ${JSON_MAX_DEPTH}`);
    if (!lua.lua_checkstack(this.L, 4)) this.#fail('out of stack space');
  }

  #object(depth: number): void {
    const L = this.L;
    this.#enter(depth);
    this.#pos++; // {
    lua.lua_newtable(L);
    const t = lua.lua_gettop(L);
    this.#ws();
    if (this.s[this.#pos] === '}') {
      this.#pos++;
      return;
    }
    for (;;) {
      this.#ws();
      if (this.s[this.#pos] !== '"') this.#fail('expected a string key');
      pushBytes(L, encoder.encode(this.#string()));
      this.#ws();
      if (this.s[this.#pos] !== ':') this.#fail("expected ':'");
      this.#pos++;
      this.#ws();
      this.#value(depth);
      // A null member (nil) is absent; it also removes an earlier duplicate key.
      lua.lua_rawset(L, t);
      this.#ws();
      const d = this.s[this.#pos];
      if (d === ',') {
        this.#pos++;
        continue;
      }
      if (d === '}') {
        this.#pos++;
        return;
      }
      this.#fail("expected ',' or '}'");
    }
  }

  #array(depth: number): void {
    const L = this.L;
    this.#enter(depth);
    this.#pos++; // [
    lua.lua_newtable(L);
    const t = lua.lua_gettop(L);
    this.#ws();
    if (this.s[this.#pos] === ']') {
      this.#pos++;
      return;
    }
    for (let i = 1; ; i++) {
      this.#ws();
      this.#value(depth);
      if (lua.lua_type(L, -1) === lua.LUA_TNIL) lua.lua_pop(L, 1);
      else {
        lua.lua_pushinteger(L, i);
        lua.lua_pushvalue(L, -2);
        lua.lua_rawset(L, t);
        lua.lua_pop(L, 1);
      }
      this.#ws();
      const d = this.s[this.#pos];
      if (d === ',') {
        this.#pos++;
        continue;
      }
      if (d === ']') {
        this.#pos++;
        return;
      }
      this.#fail("expected ',' or ']'");
    }
  }

  #string(): string {
    const s = this.s;
    this.#pos++; // opening quote
    let out = '';
    let start = this.#pos;
    for (;;) {
      if (this.#pos >= s.length) this.#fail('unterminated string');
      const c = s.charCodeAt(this.#pos);
      if (c === 0x22) {
        out += s.slice(start, this.#pos);
        this.#pos++;
        return out;
      }
      if (c < 0x20) this.#fail('control character in string');
      if (c !== 0x5c) {
        this.#pos++;
        continue;
      }
      out += s.slice(start, this.#pos);
      this.#pos++; // backslash
      const e = s[this.#pos];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const cu = this.#hex4();
          if (cu >= 0xd800 && cu <= 0xdbff) {
            if (s[this.#pos + 1] !== '\\' || s[this.#pos + 2] !== 'u') this.#fail('unpaired surrogate in \\u escape');
            this.#pos += 2;
            const lo = this.#hex4();
            if (lo < 0xdc00 || lo > 0xdfff) this.#fail('unpaired surrogate in \\u escape');
            out += String.fromCharCode(cu, lo);
          } else if (cu >= 0xdc00 && cu <= 0xdfff) {
            this.#fail('unpaired surrogate in \\u escape');
          } else {
            out += String.fromCharCode(cu);
          }
          break;
        }
        default:
          this.#fail('invalid escape in string');
      }
      this.#pos++;
      start = this.#pos;
    }
  }

  /** Reads the 4 hex digits after `\u` (pos at 'u'); leaves pos at the last digit. */
  #hex4(): number {
    const h = this.s.slice(this.#pos + 1, this.#pos + 5);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.#fail('invalid \\u escape');
    this.#pos += 4;
    return parseInt(h, 16);
  }

  #number(): void {
    const m = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.#pos, this.#pos + 400));
    if (m === null || m[0].length === 0) this.#fail('unexpected character');
    const text = m[0];
    this.#pos += text.length;
    const n = Number(text);
    if (m[1] === undefined && m[2] === undefined && (n | 0) === n && !Object.is(n, -0)) lua.lua_pushinteger(this.L, n);
    else lua.lua_pushnumber(this.L, n);
  }
}

function pushFailure(L: LuaState, e: unknown): number {
  if (!(e instanceof JsonError)) throw e;
  lua.lua_pushnil(L);
  lua.lua_pushstring(L, e.message);
  return 2;
}

/** Install the global table `json` with dump() and parse(). */
export function installJson(L: LuaState): void {
  lua.lua_createtable(L, 0, 2);
  lauxlib.luaL_setfuncs(
    L,
    {
      dump: (L1) => {
        if (lua.lua_type(L1, 1) === lua.LUA_TNONE) return lauxlib.luaL_argerror(L1, 1, 'value expected');
        let text: string;
        try {
          text = dumpValue(L1, 1);
        } catch (e) {
          return pushFailure(L1, e);
        }
        pushBytes(L1, encoder.encode(text));
        return 1;
      },
      parse: (L1) => {
        const b = lauxlib.luaL_checklstring(L1, 1);
        const s = decodeUtf8(b);
        if (s === undefined) {
          lua.lua_pushnil(L1);
          lua.lua_pushstring(L1, 'json.parse: input is not valid UTF-8');
          return 2;
        }
        const top = lua.lua_gettop(L1);
        try {
          new Parser(L1, s).run();
        } catch (e) {
          lua.lua_settop(L1, top);
          return pushFailure(L1, e);
        }
        return 1;
      },
    },
    0,
  );
  lua.lua_setglobal(L, 'json');
}
