// `mysql_cluster(nodes [, options])` and the cluster userdata (class "myproxy.cluster"): a Lua
// face for src/cluster. Clusters declared while the config loads start monitoring once it has run
// (host names resolved); clusters made later start at once and stop when Lua forgets them.

import type { ProxyMetrics } from '../util/metrics.js';
import { lua, lauxlib, to_jsstring, type LuaState } from '../lua/fengari.js';
import { checkObject, defineClass, pushObject, testObject } from '../lua/class.js';
import { pushBytes, toBuffer, toText, typeName } from '../lua/convert.js';
import { formatAddress, isNumericAddress, parseAddress, type SocketAddress } from '../net/address.js';
import { Cluster, DEFAULT_CLUSTER_OPTIONS, type ClusterOptions } from '../cluster/cluster.js';
import { nodeIdentity } from '../cluster/rendezvous.js';
import { ConfigError } from '../util/errors.js';
import { ADDRESS_CLASS, checkPoolOption, type AddressBox } from './address.js';
import { BackendPool } from '../backend/pool.js';
import type { PoolOptions } from '../backend/pool.js';
import { registerConnectTarget } from './client.js';

export const CLUSTER_CLASS = 'myproxy.cluster';

/** What a cluster userdata carries. The Cluster is made when its addresses are final. */
interface ClusterHandle {
  readonly name: string;
  /** "config.lua:12:" of the mysql_cluster() call (for errors found after host names resolve). */
  readonly where: string;
  readonly boxes: readonly AddressBox[];
  readonly options: ClusterOptions;
  cluster: Cluster | undefined;
  /** The Cluster, built now if the config is still loading (a connect in the config itself). */
  target(): Cluster;
}

// One checker for every Lua state: each handle knows its own state's cluster registry.
registerConnectTarget((L, idx) => testObject<ClusterHandle>(L, idx, CLUSTER_CLASS)?.target());

/** The nodes of the mysql_cluster() object at `idx` (their addresses resolved once the config ran), if it is one. */
export function clusterNodeBoxes(L: LuaState, idx: number): readonly AddressBox[] | undefined {
  return testObject<ClusterHandle>(L, idx, CLUSTER_CLASS)?.boxes;
}

export interface ClusterBindings {
  /**
   * The config has run and host names are resolved: build the clusters and start monitoring.
   * Throws ConfigError (naming the mysql_cluster() line) when two names resolved to one node.
   */
  enterRuntime(): void;
  /** Stop every cluster's monitoring (shutdown). */
  stopAll(): void;
  /** The node addresses of the clusters the config made (after enterRuntime: resolved). */
  nodeAddresses(): SocketAddress[];
  /** How many clusters are live (made and not stopped or collected). */
  readonly liveCount: number;
}

/** Range of check_interval and connect_timeout, in seconds (below 0.1 s a check would spin). */
const MIN_SECONDS = 0.1;
const MAX_SECONDS = 86_400;

export function installCluster(
  L: LuaState,
  opts: { readonly monitor: boolean; readonly metrics?: ProxyMetrics },
): ClusterBindings {
  const handles: ClusterHandle[] = [];
  const startupNodes: SocketAddress[] = [];
  const live = new Set<Cluster>();
  let runtime = false;
  /** After stopAll() (shutdown), clusters made by callbacks still running are not monitored. */
  let stopped = false;
  let count = 0;
  // A cluster made at runtime (say, in reload()) is monitored until its Lua object is collected.
  const forgotten = new FinalizationRegistry<Cluster>((cluster) => {
    cluster.stop();
    live.delete(cluster);
  });

  const build = (handle: ClusterHandle): Cluster => {
    const cluster = new Cluster(
      handle.name,
      handle.boxes.map((b) => b.address),
      handle.options,
      undefined,
      opts.metrics,
    );
    handle.cluster = cluster;
    cluster.owner = handle;
    if (stopped) {
      cluster.stop(); // never checked: logins go by hashing alone instead of waiting
      return cluster;
    }
    live.add(cluster);
    if (opts.monitor) cluster.start();
    return cluster;
  };

  defineClass(L, CLUSTER_CLASS, {
    __tostring: (L1) => {
      const h = testObject<ClusterHandle>(L1, 1, CLUSTER_CLASS)!;
      lua.lua_pushstring(L1, `${h.name}(${h.boxes.map((b) => formatAddress(b.address)).join(', ')})`);
      return 1;
    },
    __len: (L1) => {
      lua.lua_pushinteger(L1, testObject<ClusterHandle>(L1, 1, CLUSTER_CLASS)!.boxes.length);
      return 1;
    },
    __index: (L1) => {
      const key = toText(L1, 2);
      if (key === 'nodes') lua.lua_pushjsfunction(L1, clusterNodes);
      else if (key === 'pick') lua.lua_pushjsfunction(L1, clusterPick);
      else lua.lua_pushnil(L1);
      return 1;
    },
  });

  lua.lua_pushjsfunction(L, (L1) => {
    const n = lua.lua_gettop(L1);
    if (n < 1 || n > 2) return lauxlib.luaL_error(L1, 'Invalid parameters');
    const boxes = checkNodes(L1, 1);
    const options = checkClusterOptions(L1, 2);
    lauxlib.luaL_where(L1, 1);
    const where = to_jsstring(lua.lua_tolstring(L1, -1)!);
    lua.lua_pop(L1, 1);
    const handle: ClusterHandle = {
      name: `cluster${++count}`,
      where,
      boxes,
      options,
      cluster: undefined,
      target: () => handle.cluster ?? build(handle),
    };
    pushObject(L1, CLUSTER_CLASS, handle);
    if (runtime) forgotten.register(handle, build(handle));
    else handles.push(handle);
    return 1;
  });
  lua.lua_setglobal(L, 'mysql_cluster');

  return {
    enterRuntime() {
      for (const h of handles) {
        const duplicate = findDuplicate(h.boxes.map((b) => b.address));
        if (duplicate !== undefined)
          throw new ConfigError(`${h.where}Duplicate node '${duplicate}' (after resolving host names)`);
      }
      runtime = true;
      for (const h of handles.splice(0)) {
        for (const b of h.boxes) startupNodes.push(b.address);
        if (h.cluster === undefined) build(h);
      }
    },
    nodeAddresses() {
      return startupNodes;
    },
    stopAll() {
      stopped = true;
      for (const c of live) c.stop();
      live.clear();
    },
    get liveCount() {
      return live.size;
    },
  };
}

/** The node list: an array of address strings (numeric, path, @name) or mysql_resolve() objects. */
function checkNodes(L: LuaState, idx: number): AddressBox[] {
  if (lua.lua_type(L, idx) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L, idx, 'table expected');
  const entries: { index: number; box: AddressBox }[] = [];
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx) !== 0) {
    if (lua.lua_type(L, -2) !== lua.LUA_TNUMBER) return lauxlib.luaL_error(L, 'Key is not a number');
    const index = lua.lua_tonumber(L, -2);
    entries.push({ index, box: checkNode(L, -1) });
    lua.lua_pop(L, 1);
  }
  if (entries.length === 0) return lauxlib.luaL_error(L, 'Cluster is empty');
  entries.sort((a, b) => a.index - b.index);
  const boxes = entries.map((e) => e.box);
  const duplicate = findDuplicate(boxes.map((b) => b.address).filter(isNumericAddress));
  if (duplicate !== undefined) return lauxlib.luaL_error(L, `Duplicate node '${duplicate}'`);
  return boxes;
}

/**
 * Two nodes with the same hash identity ('[::1]' and '[0:0:0:0:0:0:0:1]', or two host names
 * resolving to one address) would always rank next to each other: the second would never get
 * accounts of its own. Returns the second one's text.
 */
function findDuplicate(addresses: readonly SocketAddress[]): string | undefined {
  const seen = new Set<string>();
  for (const a of addresses) {
    const id = nodeIdentity(a).toString('hex');
    if (seen.has(id)) return formatAddress(a);
    seen.add(id);
  }
  return undefined;
}

function checkNode(L: LuaState, idx: number): AddressBox {
  const box = testObject<AddressBox>(L, idx, ADDRESS_CLASS);
  if (box !== undefined) return box;
  if (lua.lua_type(L, idx) !== lua.LUA_TSTRING) {
    return lauxlib.luaL_error(L, `Node must be an address string or mysql_resolve() object, got ${typeName(L, idx)}`);
  }
  const text = to_jsstring(lua.lua_tolstring(L, idx)!, undefined, undefined, true);
  let address: SocketAddress;
  try {
    address = parseAddress(text);
  } catch (e) {
    return lauxlib.luaL_error(L, (e as Error).message);
  }
  if (!isNumericAddress(address)) {
    return lauxlib.luaL_error(L, `Node '${text}' is not a numeric address (use mysql_resolve() for host names)`);
  }
  return { address, text };
}

export const BOOLEAN_OPTIONS = ['monitoring', 'no_read_only', 'disconnect_unavailable'] as const;
export const STRING_OPTIONS = ['user', 'password'] as const;
export const SECONDS_OPTIONS = ['check_interval', 'connect_timeout'] as const;
/** The `pool` table (as mysql_resolve()'s), for every node of the cluster. */
export const TABLE_OPTIONS = ['pool'] as const;

function checkClusterOptions(L: LuaState, idx: number): ClusterOptions {
  const flags: Record<string, boolean> = {};
  const strings: Record<string, Buffer> = {};
  const seconds: Record<string, number> = {};
  let pool: PoolOptions | undefined;
  if (lua.lua_gettop(L) >= idx && lua.lua_type(L, idx) !== lua.LUA_TNIL) {
    if (lua.lua_type(L, idx) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L, idx, 'table expected');
    lua.lua_pushnil(L);
    while (lua.lua_next(L, idx) !== 0) {
      const key = toText(L, -2);
      if (key === undefined) return lauxlib.luaL_error(L, 'Unknown option (key is not a string)');
      if ((BOOLEAN_OPTIONS as readonly string[]).includes(key)) {
        if (lua.lua_type(L, -1) !== lua.LUA_TBOOLEAN) return lauxlib.luaL_error(L, `Option '${key}' must be a boolean`);
        flags[key] = lua.lua_toboolean(L, -1);
      } else if ((STRING_OPTIONS as readonly string[]).includes(key)) {
        const value = toBuffer(L, -1);
        if (value === undefined) return lauxlib.luaL_error(L, `Option '${key}' must be a string`);
        strings[key] = value;
      } else if ((SECONDS_OPTIONS as readonly string[]).includes(key)) {
        const value = lua.lua_type(L, -1) === lua.LUA_TNUMBER ? lua.lua_tonumber(L, -1) : NaN;
        if (!(value >= MIN_SECONDS && value <= MAX_SECONDS)) {
          return lauxlib.luaL_error(
            L,
            `Option '${key}' must be a number of seconds from ${MIN_SECONDS} to ${MAX_SECONDS}`,
          );
        }
        seconds[key] = value;
      } else if (key === 'pool') {
        pool = checkPoolOption(L, -1);
      } else {
        // myproxy's own text, word for word.
        return lauxlib.luaL_error(L, `Unknown option '${key}'`);
      }
      lua.lua_pop(L, 1);
    }
  }
  const monitoring = flags['monitoring'] === true;
  const has = (k: string): boolean => k in flags || k in strings;
  // myproxy's rules and messages; a `false` flag counts as given, as there.
  if (monitoring) {
    if (has('password') && !has('user')) return lauxlib.luaL_error(L, "'password' without 'user'");
    if (has('no_read_only') && !has('user')) return lauxlib.luaL_error(L, "'no_read_only' without 'user'");
  } else {
    for (const k of ['user', 'password', 'no_read_only', 'disconnect_unavailable', 'check_interval']) {
      if (has(k) || k in seconds) return lauxlib.luaL_error(L, `'${k}' without 'monitoring'`);
    }
  }
  return {
    monitoring,
    user: strings['user'],
    password: strings['password'],
    noReadOnly: flags['no_read_only'] === true,
    disconnectUnavailable: flags['disconnect_unavailable'] === true,
    checkIntervalMs:
      seconds['check_interval'] === undefined
        ? DEFAULT_CLUSTER_OPTIONS.checkIntervalMs
        : Math.round(seconds['check_interval'] * 1000),
    connectTimeoutMs:
      seconds['connect_timeout'] === undefined
        ? DEFAULT_CLUSTER_OPTIONS.connectTimeoutMs
        : Math.round(seconds['connect_timeout'] * 1000),
    pool: pool === undefined ? undefined : new BackendPool(pool),
  };
}

/** cluster:nodes(): { {address=..., state=..., suspect=...}, ... } in declaration order. */
const clusterNodes = (L: LuaState): number => {
  const h = checkObject<ClusterHandle>(L, 1, CLUSTER_CLASS);
  const status = h.cluster?.status();
  lua.lua_createtable(L, h.boxes.length, 0);
  h.boxes.forEach((box, i) => {
    lua.lua_createtable(L, 0, 3);
    lua.lua_pushstring(L, formatAddress(box.address));
    lua.lua_setfield(L, -2, 'address');
    lua.lua_pushstring(L, status?.[i]?.state ?? 'unknown');
    lua.lua_setfield(L, -2, 'state');
    lua.lua_pushboolean(L, status?.[i]?.suspect ?? false);
    lua.lua_setfield(L, -2, 'suspect');
    lua.lua_rawseti(L, -2, i + 1);
  });
  return 1;
};

/**
 * cluster:pick(account [, read_only]): the address text of the node a client with this account
 * would try first right now (for diagnostics; client:connect() decides the same way).
 */
const clusterPick = (L: LuaState): number => {
  const h = checkObject<ClusterHandle>(L, 1, CLUSTER_CLASS);
  const account =
    lua.lua_type(L, 2) === lua.LUA_TNIL || lua.lua_type(L, 2) === lua.LUA_TNONE ? Buffer.alloc(0) : toBuffer(L, 2);
  if (account === undefined) return lauxlib.luaL_argerror(L, 2, 'string expected');
  const t3 = lua.lua_type(L, 3);
  if (t3 !== lua.LUA_TNONE && t3 !== lua.LUA_TNIL && t3 !== lua.LUA_TBOOLEAN) {
    return lauxlib.luaL_argerror(L, 3, 'boolean expected');
  }
  const readOnly = lua.lua_toboolean(L, 3);
  if (h.cluster === undefined && !h.boxes.every((b) => isNumericAddress(b.address))) {
    return lauxlib.luaL_error(
      L,
      'cluster:pick(): host names are resolved after the config has run; call it from a callback',
    );
  }
  const cluster =
    h.cluster ??
    new Cluster(
      h.name,
      h.boxes.map((b) => b.address),
      h.options,
    );
  pushBytes(L, Buffer.from(formatAddress(cluster.order(account, readOnly)[0]!)));
  return 1;
};
