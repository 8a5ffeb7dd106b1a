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
import { CONTROL_DEFAULT_PORT } from '../protocol/control.js';
import { errnoOrMessage } from '../util/errors.js';

export const ADDRESS_CLASS = 'myproxy.address';

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
      const { host, port } = address;
      return yieldOn(
        L1,
        lookup(host).then(
          (r) => (L2: LuaState) => {
            pushObject(L2, ADDRESS_CLASS, { address: { kind: 'tcp', host: r.address, port }, text });
            return 1;
          },
          (e: unknown) => (L2: LuaState) => {
            lua.lua_pushnil(L2);
            lua.lua_pushstring(L2, `cannot resolve ${JSON.stringify(host)}: ${errnoOrMessage(e)}`);
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
        box.address = { kind: 'tcp', host: r.address, port: a.port };
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
