// `prometheus_listen(address)` and `control_listen(address [, options])`, as CM4all myproxy's:
// available while config.lua runs, their sockets bound there (so an error names the line), and
// served by the daemon once the configuration is complete (src/service/).

import { unlinkSync } from 'node:fs';
import { lua, lauxlib, to_jsstring, type LuaState } from '../lua/fengari.js';
import { typeName } from '../lua/convert.js';
import { AddressError, formatAddress, parseAddress, parseListenAddress, type SocketAddress } from '../net/address.js';
import { addonFunctions, closeFd, listenUnix } from '../net/native.js';
import { CONTROL_DEFAULT_PORT } from '../protocol/control.js';

/** The keys of prometheus_listen's and control_listen's options tables. */
export const PROMETHEUS_OPTIONS = ['accounts'] as const;
export const CONTROL_OPTIONS = ['interface', 'multicast_group', 'allowed_uids'] as const;

export const PROMETHEUS_DEFAULT_PORT = 9100;
/** myproxy's listen backlog for the exporter. */
const PROMETHEUS_BACKLOG = 16;
const SOCKET_MODE = 0o666;

/** A bound socket a service will use. */
export interface ServiceSocket {
  readonly fd: number;
  /** Text for logs ("*:9100", "/run/x.sock", "@name"). */
  readonly label: string;
  /** Socket file to remove at shutdown (only ones this process created). */
  readonly ownedPath: string | undefined;
}

export interface ControlSocket extends ServiceSocket {
  /** A Unix datagram socket (the sender's uid is known). */
  readonly local: boolean;
  /** Senders accepted on a Unix socket besides root and the daemon's own user; 'any' accepts all. */
  readonly allowedUids: 'any' | ReadonlySet<number>;
}

export interface ServiceBindings {
  readonly prometheus: ServiceSocket[];
  readonly control: ControlSocket[];
  /** Per-account metric labels asked for (prometheus_listen's `accounts` option), 0 when none. */
  readonly accountLimit: number;
  /** Remove prometheus_listen and control_listen (they only make sense while the config runs). */
  enterRuntime(L: LuaState): void;
  /** Close what was bound (the config failed, or the daemon stops). */
  closeAll(): void;
}

export interface ServiceOptions {
  /** False for `--check`: validate without binding. */
  readonly bind: boolean;
}

function text(L: LuaState, idx: number): string {
  return to_jsstring(lua.lua_tolstring(L, idx)!, undefined, undefined, true);
}

/** Binds `address` (stream or datagram); errors are Lua errors naming the address. */
function bindAddress(
  L: LuaState,
  address: SocketAddress,
  datagram: boolean,
  backlog: number,
  device: string | null = null,
  reuse = false,
): ServiceSocket {
  const label = formatAddress(address);
  try {
    switch (address.kind) {
      case 'unix': {
        const fd = listenUnix(Buffer.from(address.path), false, backlog, SOCKET_MODE, datagram);
        return { fd, label, ownedPath: address.path };
      }
      case 'abstract':
        return { fd: listenUnix(address.name, true, backlog, SOCKET_MODE, datagram), label, ownedPath: undefined };
      case 'tcp':
        return {
          fd: addonFunctions().listenInet(address.host, address.port, datagram, backlog, device, reuse),
          label,
          ownedPath: undefined,
        };
    }
  } catch (e) {
    return lauxlib.luaL_error(L, `Failed to bind to ${label}: ${(e as Error).message}`);
  }
}

export function installServices(L: LuaState, options: ServiceOptions): ServiceBindings {
  const prometheus: ServiceSocket[] = [];
  const control: ControlSocket[] = [];
  let accountLimit = 0;

  // prometheus_listen(address [, { accounts = N }])
  lua.lua_pushjsfunction(L, (L1) => {
    const n = lua.lua_gettop(L1);
    if (n < 1 || n > 2) return lauxlib.luaL_error(L1, 'Invalid parameter count');
    if (lua.lua_type(L1, 1) !== lua.LUA_TSTRING) return lauxlib.luaL_argerror(L1, 1, 'path expected');
    let address: SocketAddress;
    try {
      address = parseListenAddress(text(L1, 1), PROMETHEUS_DEFAULT_PORT);
    } catch (e) {
      return lauxlib.luaL_error(L1, (e as AddressError).message);
    }
    if (n === 2 && lua.lua_type(L1, 2) !== lua.LUA_TNIL) {
      if (lua.lua_type(L1, 2) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L1, 2, 'options table expected');
      lua.lua_pushnil(L1);
      while (lua.lua_next(L1, 2) !== 0) {
        const key = lua.lua_type(L1, -2) === lua.LUA_TSTRING ? text(L1, -2) : undefined;
        if (key !== 'accounts') {
          return lauxlib.luaL_argerror(
            L1,
            2,
            `Unknown option '${key ?? typeName(L1, -2)}' (options: ${PROMETHEUS_OPTIONS.join(', ')})`,
          );
        }
        const v = lua.lua_tonumber(L1, -1);
        if (lua.lua_type(L1, -1) !== lua.LUA_TNUMBER || !Number.isInteger(v) || v < 0 || v > 100_000) {
          return lauxlib.luaL_argerror(L1, 2, "Option 'accounts' must be a number of accounts from 0 to 100000");
        }
        accountLimit = Math.max(accountLimit, v);
        lua.lua_pop(L1, 1);
      }
    }
    if (options.bind) prometheus.push(bindAddress(L1, address, false, PROMETHEUS_BACKLOG));
    return 0;
  });
  lua.lua_setglobal(L, 'prometheus_listen');

  // control_listen(address [, { interface = NAME, multicast_group = ADDRESS, allowed_uids = {...} | 'any' }])
  lua.lua_pushjsfunction(L, (L1) => {
    const n = lua.lua_gettop(L1);
    if (n < 1 || n > 2) return lauxlib.luaL_error(L1, 'Invalid parameter count');
    const t = lua.lua_type(L1, 1);
    if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) return lauxlib.luaL_argerror(L1, 1, 'string expected');
    let address: SocketAddress;
    try {
      address = parseListenAddress(text(L1, 1), CONTROL_DEFAULT_PORT);
    } catch (e) {
      return lauxlib.luaL_error(L1, (e as AddressError).message);
    }
    let device: string | null = null;
    let group: SocketAddress | null = null;
    let allowedUids: 'any' | Set<number> = new Set();
    if (n === 2 && lua.lua_type(L1, 2) !== lua.LUA_TNIL) {
      if (lua.lua_type(L1, 2) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L1, 2, 'options table expected');
      lua.lua_pushnil(L1);
      while (lua.lua_next(L1, 2) !== 0) {
        if (lua.lua_type(L1, -2) !== lua.LUA_TSTRING) return lauxlib.luaL_argerror(L1, 2, 'Bad key type');
        const key = text(L1, -2);
        if (key === 'interface') {
          if (lua.lua_type(L1, -1) !== lua.LUA_TSTRING) return lauxlib.luaL_argerror(L1, 2, "Bad 'interface' value");
          const v = text(L1, -1);
          device = v === '' ? null : v;
        } else if (key === 'multicast_group') {
          if (lua.lua_type(L1, -1) !== lua.LUA_TSTRING)
            return lauxlib.luaL_argerror(L1, 2, "Bad 'multicast_group' value");
          try {
            group = parseAddress(text(L1, -1), 0);
          } catch (e) {
            return lauxlib.luaL_error(L1, (e as Error).message);
          }
          if (group.kind !== 'tcp') return lauxlib.luaL_error(L1, 'multicast_group must be an IP address');
        } else if (key === 'allowed_uids') {
          if (lua.lua_type(L1, -1) === lua.LUA_TSTRING && text(L1, -1) === 'any') {
            allowedUids = 'any';
          } else if (lua.lua_type(L1, -1) === lua.LUA_TTABLE) {
            const uids = new Set<number>();
            const len = lua.lua_rawlen(L1, -1);
            for (let i = 1; i <= len; i++) {
              lua.lua_rawgeti(L1, -1, i);
              const uid = lua.lua_tonumber(L1, -1);
              if (lua.lua_type(L1, -1) !== lua.LUA_TNUMBER || !Number.isInteger(uid) || uid < 0) {
                return lauxlib.luaL_argerror(L1, 2, "Option 'allowed_uids' must be a list of uids or 'any'");
              }
              uids.add(uid);
              lua.lua_pop(L1, 1);
            }
            allowedUids = uids;
          } else {
            return lauxlib.luaL_argerror(L1, 2, "Option 'allowed_uids' must be a list of uids or 'any'");
          }
        } else {
          return lauxlib.luaL_argerror(L1, 2, `Unknown option '${key}' (options: ${CONTROL_OPTIONS.join(', ')})`);
        }
        lua.lua_pop(L1, 1);
      }
    }
    if (!options.bind) return 0;
    const bound = bindAddress(L1, address, true, 1, device, group !== null);
    const local = address.kind !== 'tcp';
    control.push({ ...bound, local, allowedUids });
    if (group !== null) {
      try {
        addonFunctions().joinMulticast(bound.fd, group.host);
      } catch (e) {
        return lauxlib.luaL_error(
          L1,
          `Failed to join multicast group ${formatAddress(group)}: ${(e as Error).message}`,
        );
      }
    }
    return 0;
  });
  lua.lua_setglobal(L, 'control_listen');

  return {
    prometheus,
    control,
    get accountLimit() {
      return accountLimit;
    },
    enterRuntime(L1) {
      lua.lua_pushnil(L1);
      lua.lua_setglobal(L1, 'prometheus_listen');
      lua.lua_pushnil(L1);
      lua.lua_setglobal(L1, 'control_listen');
    },
    closeAll() {
      for (const s of [...prometheus.splice(0), ...control.splice(0)]) {
        if (s.ownedPath !== undefined) {
          try {
            unlinkSync(s.ownedPath);
          } catch {
            // already gone
          }
        }
        try {
          closeFd(s.fd);
        } catch {
          // already closed (handed to a server that closed it)
        }
      }
    },
  };
}
