// `mysql_resolve()`, `control_resolve()` and the address userdata (class "myproxy.address").

import { lookup } from 'node:dns/promises';
import { lua, lauxlib, to_jsstring, type LuaState } from '../lua/fengari.js';
import { defineClass, pushObject, testObject } from '../lua/class.js';
import { yieldOn } from '../lua/coroutine.js';
import {
  AddressError,
  DEFAULT_MYSQL_PORT,
  formatAddress,
  isNumericAddress,
  parseAddress,
  type SocketAddress,
} from '../net/address.js';
import { readFileSync } from 'node:fs';
import { CONTROL_DEFAULT_PORT } from '../protocol/control.js';
import { errnoOrMessage } from '../util/errors.js';
import { BackendPool, DEFAULT_POOL_OPTIONS, addressPool, setAddressPool, type PoolOptions } from '../backend/pool.js';
import { toText, typeName } from '../lua/convert.js';
import type { BackendRsaOptions, BackendTlsOptions } from '../net/address.js';

/** Keys of the `pool` table (mysql_resolve() and mysql_cluster()). */
export const POOL_OPTIONS = [
  'max_idle',
  'idle_timeout',
  'max_per_key',
  'share',
  'max_connections',
  'queue_timeout',
] as const;

/** Options counted in seconds (the others are whole numbers of connections, or `share`). */
const POOL_SECONDS: readonly string[] = ['idle_timeout', 'queue_timeout'];

/** Upper bounds of the pool's numbers (a config typo should not open a million connections). */
const MAX_POOL_CONNECTIONS = 100_000;
const MAX_POOL_IDLE_SECONDS = 86_400;

/**
 * The `pool` option at stack index `idx` (a table, or `true` for the defaults), or undefined for
 * nil/false. Raises a Lua error naming the bad key.
 */
export function checkPoolOption(L: LuaState, idx: number): PoolOptions | undefined {
  const t = lua.lua_type(L, idx);
  if (t === lua.LUA_TNIL || t === lua.LUA_TNONE) return undefined;
  if (t === lua.LUA_TBOOLEAN) return lua.lua_toboolean(L, idx) ? DEFAULT_POOL_OPTIONS : undefined;
  if (t !== lua.LUA_TTABLE) return lauxlib.luaL_error(L, `Option 'pool' must be a table, got ${typeName(L, idx)}`);
  const values: Record<string, number> = {};
  let share = false;
  const table = lua.lua_absindex(L, idx);
  lua.lua_pushnil(L);
  while (lua.lua_next(L, table) !== 0) {
    const key = toText(L, -2);
    if (key === undefined || !(POOL_OPTIONS as readonly string[]).includes(key)) {
      return lauxlib.luaL_error(
        L,
        `Unknown option '${key ?? typeName(L, -2)}' in 'pool' (options: ${POOL_OPTIONS.join(', ')})`,
      );
    }
    if (key === 'share') {
      if (lua.lua_type(L, -1) !== lua.LUA_TBOOLEAN) {
        return lauxlib.luaL_error(L, `Pool option 'share' must be a boolean, got ${typeName(L, -1)}`);
      }
      share = lua.lua_toboolean(L, -1);
      lua.lua_pop(L, 1);
      continue;
    }
    const value = lua.lua_type(L, -1) === lua.LUA_TNUMBER ? lua.lua_tonumber(L, -1) : NaN;
    const seconds = POOL_SECONDS.includes(key);
    const max = seconds ? MAX_POOL_IDLE_SECONDS : MAX_POOL_CONNECTIONS;
    const min = seconds ? 0.1 : 0;
    const whole = !seconds;
    if (!(value >= min && value <= max) || (whole && !Number.isInteger(value))) {
      return lauxlib.luaL_error(
        L,
        `Pool option '${key}' must be ${whole ? 'a whole number' : 'a number of seconds'} from ${min} to ${max}`,
      );
    }
    values[key] = value;
    lua.lua_pop(L, 1);
  }
  return {
    maxIdle: values['max_idle'] ?? DEFAULT_POOL_OPTIONS.maxIdle,
    idleTimeoutMs:
      values['idle_timeout'] === undefined
        ? DEFAULT_POOL_OPTIONS.idleTimeoutMs
        : Math.round(values['idle_timeout'] * 1000),
    maxPerKey: values['max_per_key'] ?? DEFAULT_POOL_OPTIONS.maxPerKey,
    share,
    maxConnections: values['max_connections'] ?? DEFAULT_POOL_OPTIONS.maxConnections,
    queueTimeoutMs:
      values['queue_timeout'] === undefined
        ? DEFAULT_POOL_OPTIONS.queueTimeoutMs
        : Math.round(values['queue_timeout'] * 1000),
  };
}

export const ADDRESS_CLASS = 'myproxy.address';

/** The keys of mysql_resolve's options table (argument 2). */
export const RESOLVE_OPTIONS = ['tls', 'server_public_key', 'get_server_public_key', 'pool'] as const;
/** The keys of its `tls` table. */
export const BACKEND_TLS_OPTIONS = ['ca', 'cert', 'key', 'verify'] as const;
const VERIFY_MODES = ['full', 'ca', 'none'] as const;

interface ResolveOptions {
  tls?: BackendTlsOptions;
  rsa?: BackendRsaOptions;
  pool?: PoolOptions;
}

/** A PEM file named in the options, read now (a bad path is the config's error, with its line). */
function readPem(L: LuaState, what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    return lauxlib.luaL_error(L, `mysql_resolve: cannot read ${what} ${JSON.stringify(path)}: ${errnoOrMessage(e)}`);
  }
}

function stringField(L: LuaState, idx: number, key: string, where: string): string | undefined {
  lua.lua_getfield(L, idx, key);
  const t = lua.lua_type(L, -1);
  const v = t === lua.LUA_TSTRING ? toText(L, -1) : undefined;
  lua.lua_pop(L, 1);
  if (t !== lua.LUA_TNIL && v === undefined) {
    return lauxlib.luaL_error(L, `mysql_resolve: ${where}${key} must be a string`);
  }
  return v;
}

/** Every key of the table at `idx` must be one of `allowed`. */
function checkKeys(L: LuaState, idx: number, allowed: readonly string[], where: string): void {
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx) !== 0) {
    const key = lua.lua_type(L, -2) === lua.LUA_TSTRING ? toText(L, -2) : undefined;
    lua.lua_pop(L, 1);
    if (key === undefined || !allowed.includes(key)) {
      lua.lua_pop(L, 1);
      return lauxlib.luaL_error(
        L,
        `mysql_resolve: Unknown option '${where}${key ?? typeName(L, -1)}' (options: ${allowed.join(', ')})`,
      );
    }
  }
}

/** mysql_resolve's options: `{ tls = {...}, server_public_key = PATH, get_server_public_key = bool }`. */
function checkResolveOptions(L: LuaState, idx: number, host: string | undefined): ResolveOptions {
  if (lua.lua_type(L, idx) === lua.LUA_TNONE || lua.lua_type(L, idx) === lua.LUA_TNIL) return {};
  if (lua.lua_type(L, idx) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L, idx, 'options table expected');
  checkKeys(L, idx, RESOLVE_OPTIONS, '');
  const out: ResolveOptions = {};
  lua.lua_getfield(L, idx, 'tls');
  const tlsIdx = lua.lua_gettop(L);
  if (lua.lua_type(L, tlsIdx) !== lua.LUA_TNIL) {
    if (lua.lua_type(L, tlsIdx) !== lua.LUA_TTABLE) return lauxlib.luaL_error(L, 'mysql_resolve: tls must be a table');
    if (host === undefined) return lauxlib.luaL_error(L, 'mysql_resolve: tls is for TCP addresses');
    checkKeys(L, tlsIdx, BACKEND_TLS_OPTIONS, 'tls.');
    const verify = stringField(L, tlsIdx, 'verify', 'tls.') ?? 'full';
    if (!(VERIFY_MODES as readonly string[]).includes(verify)) {
      return lauxlib.luaL_error(L, "mysql_resolve: tls.verify must be 'full', 'ca' or 'none'");
    }
    const ca = stringField(L, tlsIdx, 'ca', 'tls.');
    const cert = stringField(L, tlsIdx, 'cert', 'tls.');
    const key = stringField(L, tlsIdx, 'key', 'tls.');
    if ((cert === undefined) !== (key === undefined)) {
      return lauxlib.luaL_error(L, 'mysql_resolve: tls.cert and tls.key go together');
    }
    out.tls = {
      verify: verify as BackendTlsOptions['verify'],
      servername: host,
      ...(ca !== undefined ? { ca: readPem(L, 'tls.ca', ca) } : {}),
      ...(cert !== undefined ? { cert: readPem(L, 'tls.cert', cert) } : {}),
      ...(key !== undefined ? { key: readPem(L, 'tls.key', key) } : {}),
    };
  }
  lua.lua_pop(L, 1);
  lua.lua_getfield(L, idx, 'pool');
  const pool = checkPoolOption(L, -1);
  lua.lua_pop(L, 1);
  if (pool !== undefined) out.pool = pool;
  const pinned = stringField(L, idx, 'server_public_key', '');
  lua.lua_getfield(L, idx, 'get_server_public_key');
  const fetchType = lua.lua_type(L, -1);
  const fetch = lua.lua_toboolean(L, -1);
  lua.lua_pop(L, 1);
  if (fetchType !== lua.LUA_TNIL && fetchType !== lua.LUA_TBOOLEAN) {
    return lauxlib.luaL_error(L, 'mysql_resolve: get_server_public_key must be a boolean');
  }
  if (pinned !== undefined || fetch) {
    out.rsa = {
      ...(pinned !== undefined ? { serverPublicKey: readPem(L, 'server_public_key', pinned) } : {}),
      ...(fetch ? { getServerPublicKey: true } : {}),
    };
  }
  return out;
}

/** The value behind an address userdata. Host names given at startup are resolved after the config ran. */
export interface AddressBox {
  address: SocketAddress;
  /** The text the script passed (shown until resolved). */
  readonly text: string;
}

/** A host name seen at startup, resolved once the config has run (errors name the config line). */
export interface PendingResolve {
  readonly box: AddressBox;
  /** "config.lua:12:" of the mysql_resolve() call. */
  readonly where: string;
}

export interface AddressBindings {
  /** Host names to resolve before serving (startup phase only). */
  readonly pending: PendingResolve[];
  /** Every mysql_resolve() address made while the config ran (probed for its greeting at startup). */
  readonly configured: AddressBox[];
  /** Switch mysql_resolve to runtime behaviour (yield on host names). */
  enterRuntime(): void;
}

export function installAddress(L: LuaState): AddressBindings {
  defineClass(L, ADDRESS_CLASS, {
    __tostring: (L1) => {
      const box = testObject<AddressBox>(L1, 1, ADDRESS_CLASS)!;
      lua.lua_pushstring(L1, formatAddress(box.address));
      return 1;
    },
    __eq: (L1) => {
      const a = testObject<AddressBox>(L1, 1, ADDRESS_CLASS);
      const b = testObject<AddressBox>(L1, 2, ADDRESS_CLASS);
      lua.lua_pushboolean(
        L1,
        a !== undefined && b !== undefined && formatAddress(a.address) === formatAddress(b.address),
      );
      return 1;
    },
  });
  const pending: PendingResolve[] = [];
  const configured: AddressBox[] = [];
  let runtime = false;
  /**
   * One pool per address text and options: a callback that calls mysql_resolve(addr, {pool=...})
   * for every login must find the connections the previous logins parked.
   */
  const pools = new Map<string, BackendPool>();
  const poolFor = (text: string, o: PoolOptions): BackendPool => {
    const key = [text, o.maxIdle, o.idleTimeoutMs, o.maxPerKey, o.share, o.maxConnections, o.queueTimeoutMs].join('\0');
    let pool = pools.get(key);
    if (pool === undefined) pools.set(key, (pool = new BackendPool(o)));
    return pool;
  };

  /** mysql_resolve (default port 3306) and control_resolve (5478, myproxy's control port). */
  const resolver =
    (name: string, defaultPort: number) =>
    (L1: LuaState): number => {
      const text = to_jsstring(lauxlib.luaL_checkstring(L1, 1), undefined, undefined, true);
      let address: SocketAddress;
      try {
        address = parseAddress(text, defaultPort);
      } catch (e) {
        if (runtime) {
          lua.lua_pushnil(L1);
          lua.lua_pushstring(L1, (e as Error).message);
          return 2;
        }
        return lauxlib.luaL_error(L1, (e as AddressError).message);
      }
      let pool: BackendPool | undefined;
      if (defaultPort === DEFAULT_MYSQL_PORT) {
        const { pool: poolOptions, ...transport } = checkResolveOptions(
          L1,
          2,
          address.kind === 'tcp' ? address.host : undefined,
        );
        if (address.kind === 'tcp' && (transport.tls !== undefined || transport.rsa !== undefined)) {
          address = { ...address, ...transport };
        }
        pool = poolOptions === undefined ? undefined : poolFor(text, poolOptions);
        if (pool !== undefined) setAddressPool(address, pool);
      }
      const box: AddressBox = { address, text };
      if (!runtime && defaultPort === DEFAULT_MYSQL_PORT) configured.push(box);
      if (isNumericAddress(address) || address.kind !== 'tcp') {
        pushObject(L1, ADDRESS_CLASS, box);
        return 1;
      }
      if (!runtime) {
        lauxlib.luaL_where(L1, 1);
        const where = to_jsstring(lua.lua_tolstring(L1, -1)!);
        lua.lua_pop(L1, 1);
        pending.push({ box, where });
        pushObject(L1, ADDRESS_CLASS, box);
        return 1;
      }
      const tcp = address;
      return yieldOn(
        L1,
        lookup(tcp.host).then(
          (r) => (L2: LuaState) => {
            const resolved: SocketAddress = { ...tcp, host: r.address };
            if (pool !== undefined) setAddressPool(resolved, pool);
            pushObject(L2, ADDRESS_CLASS, { address: resolved, text });
            return 1;
          },
          (e: unknown) => (L2: LuaState) => {
            lua.lua_pushnil(L2);
            lua.lua_pushstring(L2, `cannot resolve ${JSON.stringify(tcp.host)}: ${errnoOrMessage(e)}`);
            return 2;
          },
        ),
        `${name}() of a host name`,
      );
    };
  lua.lua_pushjsfunction(L, resolver('mysql_resolve', DEFAULT_MYSQL_PORT));
  lua.lua_setglobal(L, 'mysql_resolve');
  lua.lua_pushjsfunction(L, resolver('control_resolve', CONTROL_DEFAULT_PORT));
  lua.lua_setglobal(L, 'control_resolve');

  return {
    pending,
    configured,
    enterRuntime() {
      runtime = true;
    },
  };
}

/** Resolve the host names collected at startup; throws with the config location on failure. */
export async function resolvePending(pending: readonly PendingResolve[]): Promise<void> {
  await Promise.all(
    pending.map(async ({ box, where }) => {
      const a = box.address;
      if (a.kind !== 'tcp') return;
      try {
        const r = await lookup(a.host);
        const resolved: SocketAddress = { ...a, host: r.address };
        const pool = addressPool(a);
        if (pool !== undefined) setAddressPool(resolved, pool);
        box.address = resolved;
      } catch (e) {
        throw new AddressError(
          `${where}cannot resolve ${JSON.stringify(a.host)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
    }),
  );
}

/**
 * The connect target at `idx`: an address object or an address string (numeric, path, @name;
 * a host name is resolved when connecting). Raises a Lua error otherwise.
 */
export function checkAddressArg(L: LuaState, idx: number): SocketAddress {
  const box = testObject<AddressBox>(L, idx, ADDRESS_CLASS);
  if (box !== undefined) return box.address;
  if (lua.lua_type(L, idx) === lua.LUA_TSTRING) {
    try {
      return parseAddress(to_jsstring(lua.lua_tolstring(L, idx)!, undefined, undefined, true));
    } catch (e) {
      return lauxlib.luaL_argerror(L, idx, (e as Error).message);
    }
  }
  return lauxlib.luaL_argerror(L, idx, 'address expected');
}
