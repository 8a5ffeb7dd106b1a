// The `pg` global table: non-blocking PostgreSQL for config.lua (node-postgres underneath).
//
// pg:new() only records the settings: nothing connects until the first query (or, for
// db:listen(), until the daemon has started), so a config never fails because PostgreSQL is
// down. Queries go through a small pool so that concurrent callbacks do not wait behind one
// another; db:execute() yields the calling coroutine until the result (or an error) is there.

import { isUtf8 } from 'node:buffer';
import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import { createRequire } from 'node:module';
import type * as PgModule from 'pg';
import type { PoolClient, PoolConfig, QueryResult } from 'pg';
import { defineClass, checkObject, pushObject } from '../lua/class.js';
import { pushBytes, pushNumber, toText, typeName } from '../lua/convert.js';
import { yieldOn, type CallbackRunner, type Resumer } from '../lua/coroutine.js';
import { conninfoToConfig } from '../util/conninfo.js';
import { errorMessage } from '../util/errors.js';
import { logError, logInfo } from '../util/log.js';

/** Connections per pg:new() object used by db:execute() (db:listen() has one more of its own). */
export const PG_POOL_MAX = 4;
/** Default per-query timeout (pool wait + query), in seconds. */
export const PG_QUERY_TIMEOUT_S = 10;
/** Reconnect backoff of the LISTEN connection (ms): doubles from the first to the last. */
export const PG_LISTEN_BACKOFF_MIN_MS = 1_000;
export const PG_LISTEN_BACKOFF_MAX_MS = 30_000;
/** PostgreSQL's limit on bind parameters. */
const MAX_PARAMS = 65535;

/**
 * node-postgres, loaded on first use: its code is about 4 MB of live JavaScript heap, which a
 * daemon whose config never calls pg:new() should not carry (a bigger heap also lets V8 keep more
 * login garbage around). It is CommonJS, so it loads synchronously, inside the Lua call.
 */
let pgModule: typeof PgModule | undefined;
function pgLib(): typeof PgModule {
  pgModule ??= createRequire(import.meta.url)('pg') as typeof PgModule;
  return pgModule;
}

const CONNECTION = 'pg.Connection';
const RESULT = 'pg.Result';

/** Every column arrives as PostgreSQL's text form, unparsed. */
const RAW_TYPES = { getTypeParser: () => (v: string) => v };

type Param = string | Buffer | null;

interface PgResult {
  readonly names: string[];
  readonly rows: (string | null)[][];
  pos: number;
  closed: boolean;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function failure(message: string): Resumer {
  return (L) => {
    lua.lua_pushnil(L);
    lua.lua_pushstring(L, message);
    return 2;
  };
}

/** The largest positive integer key of the table at `idx` (its "length" with holes). */
function maxIndex(L: LuaState, idx: number): number {
  let max = 0;
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx) !== 0) {
    if (lua.lua_isinteger(L, -2)) {
      const k = lua.lua_tointeger(L, -2);
      if (k > max) max = k;
    }
    lua.lua_pop(L, 1);
  }
  return max;
}

/** A Lua number as PostgreSQL text: integers exactly, floats with full precision. */
function numberText(L: LuaState, idx: number): string {
  if (lua.lua_isinteger(L, idx)) return String(lua.lua_tointeger(L, idx));
  const n = lua.lua_tonumber(L, idx);
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'Infinity';
  if (n === -Infinity) return '-Infinity';
  if (Number.isInteger(n)) return BigInt(n).toString();
  return String(n); // shortest text that reads back as the same double
}

/** The params table at `idx` as node-postgres values (raises Lua errors on bad types). */
function checkParams(L: LuaState, idx: number): Param[] {
  let max = maxIndex(L, idx);
  // table.pack()'s `n` counts trailing nils, which a Lua table cannot hold otherwise.
  if (lua.lua_getfield(L, idx, 'n') === lua.LUA_TNUMBER && lua.lua_isinteger(L, -1))
    max = Math.max(max, lua.lua_tointeger(L, -1));
  lua.lua_pop(L, 1);
  if (max > MAX_PARAMS) return lauxlib.luaL_error(L, `Too many query parameters (at most ${MAX_PARAMS})`);
  const out: Param[] = [];
  for (let i = 1; i <= max; i++) {
    lua.lua_rawgeti(L, idx, i);
    switch (lua.lua_type(L, -1)) {
      case lua.LUA_TNIL:
        out.push(null);
        break;
      case lua.LUA_TBOOLEAN:
        out.push(lua.lua_toboolean(L, -1) ? 'true' : 'false');
        break;
      case lua.LUA_TNUMBER:
        out.push(numberText(L, -1));
        break;
      case lua.LUA_TSTRING: {
        const bytes = lua.lua_tolstring(L, -1)!;
        // Valid UTF-8 goes as text; anything else as a binary-format parameter (right for bytea).
        out.push(isUtf8(bytes) ? Buffer.from(bytes).toString('utf8') : Buffer.from(bytes));
        break;
      }
      default:
        return lauxlib.luaL_error(L, `Unsupported query parameter type: ${typeName(L, -1)}`);
    }
    lua.lua_pop(L, 1);
  }
  return out;
}

function resultResumer(res: QueryResult | QueryResult[]): Resumer {
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  const result: PgResult = {
    names: (last?.fields ?? []).map((f) => f.name),
    rows: (last?.rows ?? []) as (string | null)[][],
    pos: 0,
    closed: false,
  };
  return (L) => {
    pushObject(L, RESULT, result);
    return 1;
  };
}

/** Listens for NOTIFY on a dedicated connection that reconnects (and re-LISTENs) by itself. */
class Listener {
  readonly #channels = new Map<string, number>();
  readonly #config: PoolConfig;
  readonly #getRunner: () => CallbackRunner | null;
  #client: PgModule.Client | null = null;
  #connected = false;
  #started = false;
  #backoff = PG_LISTEN_BACKOFF_MIN_MS;

  constructor(config: PoolConfig, getRunner: () => CallbackRunner | null) {
    this.#config = config;
    this.#getRunner = getRunner;
  }

  has(channel: string): boolean {
    return this.#channels.has(channel);
  }

  add(channel: string, fnRef: number): void {
    this.#channels.set(channel, fnRef);
    const client = this.#client;
    if (this.#connected && client !== null) {
      client
        .query(`LISTEN ${quoteIdent(channel)}`)
        .catch((e: unknown) => logError(`pg: LISTEN ${channel}: ${errorMessage(e)}`));
    }
    if (!this.#started) {
      this.#started = true;
      this.#waitForRunner();
    }
  }

  /** Connect once the daemon runs callbacks (never during --check or while config.lua loads). */
  #waitForRunner(): void {
    const t = setTimeout(() => {
      if (this.#getRunner() !== null) void this.#connect();
      else this.#waitForRunner();
    }, 100);
    t.unref();
  }

  async #connect(): Promise<void> {
    const client = new (pgLib().Client)(this.#config);
    this.#client = client;
    let failed = false;
    const fail = (e: unknown): void => {
      if (failed) return;
      failed = true;
      this.#connected = false;
      if (this.#client === client) this.#client = null;
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      logError(`pg: LISTEN connection: ${errorMessage(e)}; reconnecting in ${this.#backoff / 1000} s`);
      const t = setTimeout(() => void this.#connect(), this.#backoff);
      t.unref();
      this.#backoff = Math.min(this.#backoff * 2, PG_LISTEN_BACKOFF_MAX_MS);
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('connection closed')));
    client.on('notification', (msg) => this.#dispatch(msg.channel, msg.payload ?? ''));
    try {
      await client.connect();
      // Do not keep the process alive just for this connection.
      (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream?.unref?.();
      for (const channel of this.#channels.keys()) await client.query(`LISTEN ${quoteIdent(channel)}`);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the error handler while we awaited
      if (failed) return;
      this.#connected = true;
      this.#backoff = PG_LISTEN_BACKOFF_MIN_MS;
      logInfo(`pg: listening for notifications on ${[...this.#channels.keys()].join(', ')}`);
    } catch (e) {
      fail(e);
    }
  }

  #dispatch(channel: string, payload: string): void {
    const ref = this.#channels.get(channel);
    const runner = this.#getRunner();
    if (ref === undefined || runner === null) return;
    runner
      .call(
        ref,
        (co) => {
          lua.lua_pushstring(co, payload);
          return 1;
        },
        () => undefined,
        () => false,
      )
      .catch((e: unknown) => logError(`pg: notification handler for ${channel} failed: ${errorMessage(e)}`));
  }
}

/** Every pool made by pg:new() (weakly: a forgotten one goes with its connections). */
const pools = new Set<WeakRef<PgModule.Pool>>();

/** The connections of every pg pool, by state (for the metrics). */
export function pgPoolStats(): Record<string, number> {
  const stats = { total: 0, idle: 0, waiting: 0 };
  for (const ref of pools) {
    const pool = ref.deref();
    if (pool === undefined) {
      pools.delete(ref);
      continue;
    }
    stats.total += pool.totalCount;
    stats.idle += pool.idleCount;
    stats.waiting += pool.waitingCount;
  }
  return stats;
}

class Database {
  readonly pool: PgModule.Pool;
  readonly timeoutMs: number;
  readonly #config: PoolConfig;
  readonly #getRunner: () => CallbackRunner | null;
  #listener: Listener | null = null;

  constructor(
    config: PoolConfig,
    schema: string | undefined,
    timeoutMs: number,
    getRunner: () => CallbackRunner | null,
  ) {
    this.timeoutMs = timeoutMs;
    this.#getRunner = getRunner;
    this.#config = config;
    // The server cancels a statement a little after we gave up on it.
    this.pool = new (pgLib().Pool)({
      ...config,
      max: PG_POOL_MAX,
      allowExitOnIdle: true,
      statement_timeout: timeoutMs + 1000,
    });
    this.pool.on('error', (e) => logError(`pg: idle connection: ${e.message}`));
    pools.add(new WeakRef(this.pool));
    if (schema !== undefined) {
      this.pool.on('connect', (client) => {
        client
          .query(`SET search_path TO ${quoteIdent(schema)}`)
          .catch((e: unknown) => logError(`pg: Failed to set schema: ${errorMessage(e)}`));
      });
    }
  }

  get listener(): Listener {
    this.#listener ??= new Listener(this.#config, this.#getRunner);
    return this.#listener;
  }

  /** Run one query; always resolves (errors become `nil, message`). */
  query(text: string, values: Param[]): Promise<Resumer> {
    return new Promise<Resumer>((resolve) => {
      let settled = false;
      let client: PoolClient | undefined;
      let released = false;
      const release = (destroy: boolean): void => {
        if (client === undefined || released) return;
        released = true;
        client.release(destroy);
      };
      const timer = setTimeout(() => {
        settled = true;
        resolve(failure('timeout'));
        release(true); // stop waiting for a hung query (statement_timeout ends it server side)
      }, this.timeoutMs);
      this.pool.connect().then(
        (c) => {
          client = c;
          if (settled) {
            release(false);
            return;
          }
          c.query({ text, values, rowMode: 'array', types: RAW_TYPES }).then(
            (res: QueryResult | QueryResult[]) => {
              release(false);
              if (settled) return;
              settled = true;
              clearTimeout(timer);
              resolve(resultResumer(res));
            },
            (e: unknown) => {
              // An SQL error leaves the connection usable; a broken connection is dropped.
              const broken =
                !(e instanceof Error && 'severity' in e) || (e as { code?: string }).code?.startsWith('57P') === true;
              release(broken);
              if (settled) return;
              settled = true;
              clearTimeout(timer);
              resolve(failure(errorMessage(e)));
            },
          );
        },
        (e: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(failure(errorMessage(e)));
        },
      );
    });
  }
}

// ---------------------------------------------------------------------------
// Arrays

/** PostgreSQL array text for `elements` (null → NULL); every element is double-quoted. */
export function encodeArray(elements: readonly (Uint8Array | null)[]): Uint8Array {
  const out: number[] = [0x7b];
  elements.forEach((e, i) => {
    if (i > 0) out.push(0x2c);
    if (e === null) {
      out.push(0x4e, 0x55, 0x4c, 0x4c);
      return;
    }
    out.push(0x22);
    for (const b of e) {
      if (b === 0x22 || b === 0x5c) out.push(0x5c);
      out.push(b);
    }
    out.push(0x22);
  });
  out.push(0x7d);
  return Uint8Array.from(out);
}

const isWs = (b: number | undefined): boolean =>
  b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;

/** Parse one-dimensional PostgreSQL array text; throws Error on malformed input. */
export function decodeArray(s: Uint8Array): (Uint8Array | null)[] {
  let i = 0;
  const n = s.length;
  const bad = (why: string): never => {
    throw new Error(`Malformed array literal: ${why}`);
  };
  const skipWs = (): void => {
    while (i < n && isWs(s[i])) i++;
  };
  skipWs();
  if (s[i] === 0x5b) {
    // dimension decoration such as [0:2]=
    while (i < n && s[i] !== 0x3d) i++;
    if (i >= n) bad('"=" expected after dimensions');
    i++;
    skipWs();
  }
  if (s[i] !== 0x7b) bad('"{" expected');
  i++;
  const out: (Uint8Array | null)[] = [];
  skipWs();
  if (s[i] === 0x7d) {
    i++;
  } else {
    for (;;) {
      skipWs();
      const c = s[i];
      if (c === undefined) bad('unexpected end of input');
      if (c === 0x7b) bad('multi-dimensional arrays are not supported');
      const bytes: number[] = [];
      if (c === 0x22) {
        i++;
        for (;;) {
          const b = s[i];
          if (b === undefined) bad('unterminated quoted element');
          if (b === 0x5c) {
            const next = s[i + 1];
            if (next === undefined) bad('unexpected end of input');
            bytes.push(next!);
            i += 2;
          } else if (b === 0x22) {
            i++;
            break;
          } else {
            bytes.push(b!);
            i++;
          }
        }
        out.push(Uint8Array.from(bytes));
      } else {
        let escaped = false;
        let keep = 0; // length up to the last byte that is not trailing whitespace
        for (;;) {
          const b = s[i];
          if (b === undefined) bad('unexpected end of input');
          if (b === 0x2c || b === 0x7d) break;
          if (b === 0x22 || b === 0x7b) bad('unexpected character in unquoted element');
          if (b === 0x5c) {
            const next = s[i + 1];
            if (next === undefined) bad('unexpected end of input');
            bytes.push(next!);
            keep = bytes.length;
            escaped = true;
            i += 2;
          } else {
            bytes.push(b!);
            if (!isWs(b)) keep = bytes.length;
            i++;
          }
        }
        bytes.length = keep;
        if (bytes.length === 0) bad('empty unquoted element');
        const isNull = !escaped && bytes.length === 4 && Buffer.from(bytes).toString('latin1').toUpperCase() === 'NULL';
        out.push(isNull ? null : Uint8Array.from(bytes));
      }
      skipWs();
      if (s[i] === 0x2c) {
        i++;
        continue;
      }
      if (s[i] === 0x7d) {
        i++;
        break;
      }
      bad('"," or "}" expected');
    }
  }
  skipWs();
  if (i !== n) bad('junk after closing "}"');
  return out;
}

// ---------------------------------------------------------------------------
// Lua functions

function checkResult(L: LuaState): PgResult {
  return checkObject<PgResult>(L, 1, RESULT);
}

const resultMethods: Record<string, (L: LuaState) => number> = {
  fetch: (L) => {
    const r = checkResult(L);
    let mode = 'a';
    const mt = lua.lua_type(L, 3);
    if (mt !== lua.LUA_TNIL && mt !== lua.LUA_TNONE) {
      mode = toText(L, 3) ?? '';
      if (mode !== 'a' && mode !== 'n') return lauxlib.luaL_argerror(L, 3, 'Bad mode');
    }
    const tt = lua.lua_type(L, 2);
    if (tt !== lua.LUA_TNIL && tt !== lua.LUA_TNONE) lauxlib.luaL_checktype(L, 2, lua.LUA_TTABLE);
    if (r.closed || r.pos >= r.rows.length) return 0;
    const row = r.rows[r.pos++]!;
    if (tt === lua.LUA_TTABLE) lua.lua_pushvalue(L, 2);
    else lua.lua_createtable(L, mode === 'n' ? row.length : 0, mode === 'a' ? row.length : 0);
    row.forEach((v, j) => {
      if (mode === 'n') lua.lua_pushinteger(L, j + 1);
      else lua.lua_pushstring(L, r.names[j] ?? String(j + 1));
      if (v === null) lua.lua_pushnil(L);
      else lua.lua_pushstring(L, v);
      lua.lua_rawset(L, -3);
    });
    return 1;
  },
  numrows: (L) => {
    const r = checkResult(L);
    pushNumber(L, r.rows.length);
    return 1;
  },
  getcolnames: (L) => {
    const r = checkResult(L);
    lua.lua_createtable(L, r.names.length, 0);
    r.names.forEach((name, j) => {
      lua.lua_pushinteger(L, j + 1);
      lua.lua_pushstring(L, name);
      lua.lua_rawset(L, -3);
    });
    return 1;
  },
  close: (L) => {
    const r = checkResult(L);
    r.closed = true;
    lua.lua_pushboolean(L, true);
    return 1;
  },
};

function makeConnectionMethods(): Record<string, (L: LuaState) => number> {
  return {
    execute: (L) => {
      const db = checkObject<Database>(L, 1, CONNECTION);
      lauxlib.luaL_checkstring(L, 2);
      const sql = toText(L, 2)!;
      let values: Param[] = [];
      const pt = lua.lua_type(L, 3);
      if (pt !== lua.LUA_TNIL && pt !== lua.LUA_TNONE) {
        lauxlib.luaL_checktype(L, 3, lua.LUA_TTABLE);
        values = checkParams(L, 3);
      }
      // Do not send a query nobody will wait for.
      if (!lua.lua_isyieldable(L)) return yieldOn(L, Promise.resolve(failure('not run')), 'db:execute()');
      return yieldOn(L, db.query(sql, values), 'db:execute()');
    },
    listen: (L) => {
      const db = checkObject<Database>(L, 1, CONNECTION);
      lauxlib.luaL_checkstring(L, 2);
      const channel = toText(L, 2)!;
      lauxlib.luaL_checktype(L, 3, lua.LUA_TFUNCTION);
      const listener = db.listener;
      if (listener.has(channel)) return lauxlib.luaL_argerror(L, 2, 'Duplicate notify name');
      lua.lua_pushvalue(L, 3);
      listener.add(channel, lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX));
      return 0;
    },
  };
}

function registerClass(L: LuaState, name: string, methods: Record<string, (L: LuaState) => number>): void {
  defineClass(L, name, {
    __tostring: (L1) => {
      lua.lua_pushstring(L1, name);
      return 1;
    },
  });
  lauxlib.luaL_newmetatable(L, name); // already exists: pushes it
  lua.lua_createtable(L, 0, Object.keys(methods).length);
  lauxlib.luaL_setfuncs(L, methods, 0);
  lua.lua_setfield(L, -2, '__index');
  lua.lua_pop(L, 1);
}

/**
 * Install the global table `pg`. `getRunner` returns the daemon's CallbackRunner once it has
 * started (null before): NOTIFY handlers run through it.
 */
export function installPg(L: LuaState, getRunner: () => CallbackRunner | null): void {
  registerClass(L, CONNECTION, makeConnectionMethods());
  registerClass(L, RESULT, resultMethods);
  const fns: Record<string, (L: LuaState) => number> = {
    new: (L1) => {
      lauxlib.luaL_checkstring(L1, 2);
      const conninfo = toText(L1, 2)!;
      let schema: string | undefined;
      const st = lua.lua_type(L1, 3);
      if (st !== lua.LUA_TNIL && st !== lua.LUA_TNONE) {
        lauxlib.luaL_checkstring(L1, 3);
        const s = toText(L1, 3)!;
        if (s !== '' && s !== 'public') schema = s;
      }
      let timeoutS = PG_QUERY_TIMEOUT_S;
      const tt = lua.lua_type(L1, 4);
      if (tt !== lua.LUA_TNIL && tt !== lua.LUA_TNONE) {
        timeoutS = lauxlib.luaL_checknumber(L1, 4);
        if (!(timeoutS > 0 && timeoutS <= 86400))
          return lauxlib.luaL_argerror(L1, 4, 'timeout must be between 0 and 86400 seconds');
      }
      let config: PoolConfig;
      try {
        config = conninfoToConfig(conninfo);
      } catch (e) {
        return lauxlib.luaL_argerror(L1, 2, errorMessage(e));
      }
      pushObject(L1, CONNECTION, new Database(config, schema, Math.round(timeoutS * 1000), getRunner));
      return 1;
    },
    encode_array: (L1) => {
      lauxlib.luaL_checktype(L1, 2, lua.LUA_TTABLE);
      const max = maxIndex(L1, 2);
      const elements: (Uint8Array | null)[] = [];
      for (let i = 1; i <= max; i++) {
        lua.lua_rawgeti(L1, 2, i);
        const t = lua.lua_type(L1, -1);
        if (t === lua.LUA_TNIL) elements.push(null);
        else if (t === lua.LUA_TSTRING) elements.push(lua.lua_tolstring(L1, -1));
        else if (t === lua.LUA_TNUMBER) elements.push(Buffer.from(numberText(L1, -1)));
        else return lauxlib.luaL_error(L1, `Unsupported array element type: ${typeName(L1, -1)}`);
        lua.lua_pop(L1, 1);
      }
      pushBytes(L1, encodeArray(elements));
      return 1;
    },
    decode_array: (L1) => {
      const s = lauxlib.luaL_checklstring(L1, 2);
      let elements: (Uint8Array | null)[];
      try {
        elements = decodeArray(s);
      } catch (e) {
        return lauxlib.luaL_error(L1, errorMessage(e));
      }
      lua.lua_createtable(L1, elements.length, 0);
      elements.forEach((e, i) => {
        if (e === null) return;
        lua.lua_pushinteger(L1, i + 1);
        pushBytes(L1, e);
        lua.lua_rawset(L1, -3);
      });
      return 1;
    },
  };
  lua.lua_createtable(L, 0, Object.keys(fns).length);
  lauxlib.luaL_setfuncs(L, fns, 0);
  lua.lua_setglobal(L, 'pg');
}
