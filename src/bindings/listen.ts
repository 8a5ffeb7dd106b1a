// `mysql_listen(path | address | systemd, handler [, options])` and the `systemd` token. Sockets are bound while the
// config runs, so a socket that cannot be bound is a Lua error naming the config line.

import { accessSync, constants as fsConstants, unlinkSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { lua, lauxlib, to_jsstring, type LuaState } from '../lua/fengari.js';
import { typeName } from '../lua/convert.js';
import { addonFunctions, closeFd, listenUnix } from '../net/native.js';
import { AddressError, formatAddress, parseAddress, parseListenAddress, type SocketAddress } from '../net/address.js';
import { errorMessage } from '../util/errors.js';
import { ServerTls, type ServerTlsFiles } from '../net/tls.js';
import type { HandlerRefs } from './client.js';
import type { ClientAuthMode } from '../proxy/handler.js';
import type { DeclaredDestination } from '../backend/capabilities.js';
import { testObject } from '../lua/class.js';
import { ADDRESS_CLASS, type AddressBox } from './address.js';
import { clusterNodeBoxes } from './cluster.js';

export const LISTEN_BACKLOG = 256;
const SOCKET_MODE = 0o666;

/** A bound listening socket and the handler its connections go to. */
export interface ListenerSpec {
  readonly fd: number;
  /** Text for logs ("/run/myproxy.sock", "@name", "systemd fd 3"). */
  readonly label: string;
  /** Socket file to remove at shutdown (only ones this process created). */
  readonly ownedPath: string | undefined;
  readonly refs: HandlerRefs;
  /**
   * What the socket is, as workers of a `--workers N` daemon find it among the sockets the
   * supervisor passed down ("unix:/run/x.sock", "abstract:@name", "tcp:*:3306", "systemd:0").
   */
  readonly key: string;
  /** Admission limits of this listener (mysql_listen options). */
  readonly limits: ListenerLimits;
}

/** What is checked at accept, before any Lua runs. */
export interface ListenerLimits {
  readonly maxConnections: number;
  readonly maxConnectErrors: number;
  readonly connectErrorBlockMs: number;
  readonly handshakeTimeoutMs: number;
}

export const HANDLER_KEYS = [
  'on_connect',
  'on_handshake_response',
  'on_command_phase',
  'on_init_db',
  'on_query',
  'on_command',
  'on_result',
  'on_kill',
] as const;
type HandlerKey = (typeof HANDLER_KEYS)[number];

/** The `systemd` global: a unique token, compared by identity (not the string "systemd"). */
const SYSTEMD_TOKEN = Object.freeze({ systemd: true });

export interface ListenBindings {
  readonly listeners: ListenerSpec[];
  /** Number of mysql_listen() calls (also counted when not binding). */
  readonly declared: number;
  /** Remove mysql_listen from the globals (it only makes sense while the config runs). */
  enterRuntime(L: LuaState): void;
  /** Close every socket bound so far and remove the socket files we created (config failed). */
  closeAll(): void;
}

export interface ListenOptions {
  /** Directory relative socket paths are resolved against (the config file's). */
  readonly baseDir: string;
  /** fds passed by systemd socket activation (empty when none). */
  readonly systemdFds: () => readonly number[];
  /**
   * False for `--check`: validate without binding, so checking a config never disturbs (or
   * fails because of) a daemon that is serving on the same socket.
   */
  readonly bind: boolean;
  /**
   * A worker of a `--workers N` daemon: the listening socket the supervisor already bound for
   * `key` (see ListenerSpec.key), used instead of binding (and never unlinked by the worker).
   */
  readonly inherited?: (key: string) => number | undefined;
}

/** The options of mysql_listen (argument 3). */
interface ListenOptionValues {
  auth: ClientAuthMode;
  /** Offer CLIENT_LOCAL_FILES to clients that ask (LOAD DATA LOCAL INFILE); default false. */
  localInfile: boolean;
  tls: ServerTlsFiles | undefined;
  /** Sessions this listener serves at once (0: no limit of its own). */
  maxConnections: number;
  /** Failed handshakes from one TCP address before it is blocked (0: never blocked). */
  maxConnectErrors: number;
  /** How long a blocked address stays blocked (ms). */
  connectErrorBlockMs: number;
  /** Time from accept to the end of the HandshakeResponse, TLS handshake included (ms). */
  handshakeTimeoutMs: number;
  /** The servers the listener's clients are connected to, stated in advance (empty: not stated). */
  destinations: DeclaredDestination[];
}

/** The keys of mysql_listen's options table (argument 3). */
export const LISTEN_OPTIONS = [
  'auth',
  'local_infile',
  'tls',
  'max_connections',
  'max_connect_errors',
  'connect_error_block_time',
  'handshake_timeout',
  'destinations',
] as const;

/** The keys of mysql_listen's `tls` table. */
export const LISTEN_TLS_OPTIONS = ['cert', 'key', 'ca', 'require'] as const;

export const DEFAULT_HANDSHAKE_TIMEOUT_S = 10;
/** MySQL Router's default for max_connect_errors. */
export const DEFAULT_MAX_CONNECT_ERRORS = 100;
export const DEFAULT_CONNECT_ERROR_BLOCK_S = 600;

function stringAt(L: LuaState, idx: number): string | undefined {
  return lua.lua_type(L, idx) === lua.LUA_TSTRING
    ? to_jsstring(lua.lua_tolstring(L, idx)!, undefined, undefined, true)
    : undefined;
}

/** A number option: a non-negative number (an integer where `integer`), else an argument error. */
function numberOption(L: LuaState, optIdx: number, name: string, integer: boolean): number {
  const v = lua.lua_type(L, -1) === lua.LUA_TNUMBER ? lua.lua_tonumber(L, -1) : NaN;
  if (!Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v))) {
    return lauxlib.luaL_argerror(
      L,
      optIdx,
      `Option '${name}' must be a non-negative ${integer ? 'integer' : 'number of seconds'}`,
    );
  }
  return v;
}

/** The `tls` table (on top of the stack): `{cert = PATH, key = PATH [, ca = PATH] [, require = bool]}`. */
function checkTlsOption(L: LuaState, optIdx: number, baseDir: string): ServerTlsFiles {
  if (lua.lua_type(L, -1) !== lua.LUA_TTABLE) {
    return lauxlib.luaL_argerror(L, optIdx, "Option 'tls' must be a table {cert = PATH, key = PATH, ...}");
  }
  const t = lua.lua_gettop(L);
  const paths: Partial<Record<'cert' | 'key' | 'ca', string>> = {};
  let require = false;
  lua.lua_pushnil(L);
  while (lua.lua_next(L, t) !== 0) {
    const key = stringAt(L, -2);
    if (key === 'cert' || key === 'key' || key === 'ca') {
      const v = stringAt(L, -1);
      if (v === undefined || v === '') return lauxlib.luaL_argerror(L, optIdx, `tls.${key} must be a file path`);
      paths[key] = resolvePath(baseDir, v);
    } else if (key === 'require') {
      if (lua.lua_type(L, -1) !== lua.LUA_TBOOLEAN)
        return lauxlib.luaL_argerror(L, optIdx, 'tls.require must be a boolean');
      require = lua.lua_toboolean(L, -1);
    } else {
      return lauxlib.luaL_argerror(
        L,
        optIdx,
        `Unknown tls option '${key ?? typeName(L, -2)}' (options: ${LISTEN_TLS_OPTIONS.join(', ')})`,
      );
    }
    lua.lua_pop(L, 1);
  }
  if (paths.cert === undefined || paths.key === undefined) {
    return lauxlib.luaL_argerror(L, optIdx, 'tls needs both cert and key');
  }
  return { cert: paths.cert, key: paths.key, ca: paths.ca, require };
}

/**
 * The `destinations` option (on top of the stack): one destination or a list of them, each an
 * address string, a mysql_resolve() object or a mysql_cluster() object (all its nodes).
 */
function checkDestinations(L: LuaState, optIdx: number): DeclaredDestination[] {
  const out: DeclaredDestination[] = [];
  const one = (idx: number): void => {
    const box = testObject<AddressBox>(L, idx, ADDRESS_CLASS);
    if (box !== undefined) {
      out.push(box);
      return;
    }
    const nodes = clusterNodeBoxes(L, idx);
    if (nodes !== undefined) {
      out.push(...nodes);
      return;
    }
    const text = stringAt(L, idx);
    if (text === undefined) {
      lauxlib.luaL_argerror(
        L,
        optIdx,
        `Option 'destinations': an address, mysql_resolve() or mysql_cluster() expected, got ${typeName(L, idx)}`,
      );
      return;
    }
    try {
      out.push({ address: parseAddress(text) });
    } catch (e) {
      lauxlib.luaL_argerror(L, optIdx, `Option 'destinations': ${errorMessage(e)}`);
    }
  };
  if (lua.lua_type(L, -1) !== lua.LUA_TTABLE) {
    one(lua.lua_gettop(L));
    return out;
  }
  const t = lua.lua_gettop(L);
  const n = lua.lua_rawlen(L, t);
  if (n === 0) return lauxlib.luaL_argerror(L, optIdx, "Option 'destinations' must not be empty");
  for (let i = 1; i <= n; i++) {
    lua.lua_rawgeti(L, t, i);
    one(lua.lua_gettop(L));
    lua.lua_pop(L, 1);
  }
  return out;
}

/** The options table of mysql_listen (argument 3); see LISTEN_OPTIONS and docs/configuration.md. */
function checkListenOptions(L: LuaState, idx: number, baseDir: string): ListenOptionValues {
  const options: ListenOptionValues = {
    auth: 'clear',
    localInfile: false,
    tls: undefined,
    maxConnections: 0,
    maxConnectErrors: DEFAULT_MAX_CONNECT_ERRORS,
    connectErrorBlockMs: DEFAULT_CONNECT_ERROR_BLOCK_S * 1000,
    handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_S * 1000,
    destinations: [],
  };
  if (lua.lua_gettop(L) < idx || lua.lua_type(L, idx) === lua.LUA_TNIL) return options;
  if (lua.lua_type(L, idx) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L, idx, 'options table expected');
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx) !== 0) {
    const key = stringAt(L, -2);
    switch (key) {
      case 'auth': {
        const value = stringAt(L, -1);
        if (value !== 'clear' && value !== 'native') {
          return lauxlib.luaL_argerror(L, idx, "Option 'auth' must be 'clear' or 'native'");
        }
        options.auth = value;
        break;
      }
      case 'local_infile':
        if (lua.lua_type(L, -1) !== lua.LUA_TBOOLEAN) {
          return lauxlib.luaL_argerror(L, idx, "Option 'local_infile' must be a boolean");
        }
        options.localInfile = lua.lua_toboolean(L, -1);
        break;
      case 'tls':
        options.tls = checkTlsOption(L, idx, baseDir);
        break;
      case 'max_connections':
        options.maxConnections = numberOption(L, idx, key, true);
        break;
      case 'max_connect_errors':
        options.maxConnectErrors = numberOption(L, idx, key, true);
        break;
      case 'connect_error_block_time':
        options.connectErrorBlockMs = numberOption(L, idx, key, false) * 1000;
        break;
      case 'handshake_timeout': {
        const s = numberOption(L, idx, key, false);
        if (s === 0) return lauxlib.luaL_argerror(L, idx, "Option 'handshake_timeout' must be more than 0");
        options.handshakeTimeoutMs = s * 1000;
        break;
      }
      case 'destinations':
        options.destinations = checkDestinations(L, idx);
        break;
      default:
        return lauxlib.luaL_argerror(
          L,
          idx,
          `Unknown option '${key ?? typeName(L, -2)}' (options: ${LISTEN_OPTIONS.join(', ')})`,
        );
    }
    lua.lua_pop(L, 1);
  }
  return options;
}

function checkHandler(L: LuaState, idx: number): HandlerRefs {
  if (lua.lua_type(L, idx) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L, idx, 'Not a table');
  const found: Partial<Record<HandlerKey, true>> = {};
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx) !== 0) {
    if (lua.lua_type(L, -2) !== lua.LUA_TSTRING) return lauxlib.luaL_argerror(L, idx, 'Key is not a string');
    const key = to_jsstring(lua.lua_tolstring(L, -2)!, undefined, undefined, true);
    if (!(HANDLER_KEYS as readonly string[]).includes(key)) {
      return lauxlib.luaL_argerror(L, idx, `Unrecognized key '${key}'`);
    }
    if (lua.lua_type(L, -1) !== lua.LUA_TFUNCTION) {
      return lauxlib.luaL_argerror(L, idx, `Value is not a function ('${key}' is a ${typeName(L, -1)})`);
    }
    found[key as HandlerKey] = true;
    lua.lua_pop(L, 1);
  }
  if (found.on_handshake_response !== true) return lauxlib.luaL_argerror(L, idx, 'No on_handshake_response handler');
  // The function values are captured now, as in myproxy: reassigning handler.x later has no effect.
  const ref = (key: HandlerKey): number | undefined => {
    if (found[key] !== true) return undefined;
    lua.lua_getfield(L, idx, key);
    return lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
  };
  return {
    onConnect: ref('on_connect'),
    onHandshakeResponse: ref('on_handshake_response')!,
    onCommandPhase: ref('on_command_phase'),
    onInitDb: ref('on_init_db'),
    onKill: ref('on_kill'),
    onQuery: ref('on_query'),
    onCommand: ref('on_command'),
    onResult: ref('on_result'),
  };
}

/**
 * The TCP form of mysql_listen's address: HOST:PORT where HOST is `*` (every address, IPv6 and
 * IPv4), a numeric IPv4 address or a numeric IPv6 address in brackets. Everything else is a
 * socket path, as in myproxy (a file really named like that is written './127.0.0.1:3306').
 */
export function tcpListenAddress(text: string): TcpAddress | null {
  if (!/^(\*|\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.%a-z]+\]):\d+$/.test(text)) return null;
  const a = parseListenAddress(text, 0); // throws AddressError for a bad address or port
  if (a.kind !== 'tcp' || a.port === 0) throw new AddressError(`Port out of range in address: ${text}`);
  return a;
}

function tcpListenAddressOrNull(text: string): TcpAddress | null {
  try {
    return tcpListenAddress(text);
  } catch {
    return null;
  }
}

type TcpAddress = Extract<SocketAddress, { kind: 'tcp' }>;

export function installListen(L: LuaState, options: ListenOptions): ListenBindings {
  const listeners: ListenerSpec[] = [];
  let declared = 0;
  lua.lua_pushlightuserdata(L, SYSTEMD_TOKEN);
  lua.lua_setglobal(L, 'systemd');

  lua.lua_pushjsfunction(L, (L1) => {
    const nargs = lua.lua_gettop(L1);
    if (nargs < 2 || nargs > 3) return lauxlib.luaL_error(L1, 'mysql_listen() takes 2 or 3 arguments');
    const opts = checkListenOptions(L1, 3, options.baseDir);
    const limits: ListenerLimits = {
      maxConnections: opts.maxConnections,
      maxConnectErrors: opts.maxConnectErrors,
      connectErrorBlockMs: opts.connectErrorBlockMs,
      handshakeTimeoutMs: opts.handshakeTimeoutMs,
    };
    let tls: ServerTls | undefined;
    if (opts.tls !== undefined) {
      try {
        // Read now (also under --check): a bad file stops the daemon here, naming it.
        tls = new ServerTls(opts.tls);
      } catch (e) {
        return lauxlib.luaL_error(L1, errorMessage(e));
      }
    }
    const t = lua.lua_type(L1, 1);
    const systemd = t === lua.LUA_TLIGHTUSERDATA && lua.lua_touserdata(L1, 1) === SYSTEMD_TOKEN;
    if (!systemd && t !== lua.LUA_TSTRING) return lauxlib.luaL_argerror(L1, 1, 'path expected');
    const text = systemd ? 'systemd' : to_jsstring(lua.lua_tolstring(L1, 1)!, undefined, undefined, true);
    const refs: HandlerRefs = {
      ...checkHandler(L1, 2),
      auth: opts.auth,
      localInfile: opts.localInfile,
      listener: text,
      tls,
      ...(opts.destinations.length > 0 ? { destinations: opts.destinations } : {}),
    };
    declared++;
    if (tls !== undefined && !systemd && tcpListenAddressOrNull(text) === null) {
      return lauxlib.luaL_error(L1, `Option 'tls' needs a TCP listener (${text} is a socket path)`);
    }
    if (systemd) {
      if (!options.bind) return 0;
      const fds = options.systemdFds();
      if (fds.length === 0) return lauxlib.luaL_error(L1, 'No systemd socket');
      fds.forEach((fd, i) =>
        listeners.push({ fd, label: `systemd fd ${fd}`, ownedPath: undefined, refs, limits, key: `systemd:${i}` }),
      );
      return 0;
    }
    let tcp: TcpAddress | null;
    try {
      tcp = tcpListenAddress(text);
    } catch (e) {
      return lauxlib.luaL_error(L1, `Failed to listen on ${text}: ${errorMessage(e)}`);
    }
    if (tcp !== null) {
      if (!options.bind) return 0;
      const label = formatAddress(tcp);
      const key = `tcp:${label}`;
      let fd = options.inherited?.(key);
      if (fd === undefined) {
        try {
          fd = addonFunctions().listenInet(tcp.host, tcp.port, false, LISTEN_BACKLOG, null, false);
        } catch (e) {
          return lauxlib.luaL_error(L1, `Failed to listen on ${label}: ${(e as Error).message}`);
        }
      }
      listeners.push({ fd, label, ownedPath: undefined, refs, limits, key });
      return 0;
    }
    const abstract = text.startsWith('@');
    const path = abstract ? text : resolvePath(options.baseDir, text);
    const name = abstract ? Buffer.from(text.slice(1), 'utf8') : Buffer.from(path, 'utf8');
    if (!options.bind) {
      if (!abstract) {
        try {
          accessSync(dirname(path), fsConstants.W_OK | fsConstants.X_OK);
        } catch (e) {
          return lauxlib.luaL_error(L1, `Failed to listen on ${path}: ${(e as Error).message}`);
        }
      }
      return 0;
    }
    const key = abstract ? `abstract:${text}` : `unix:${path}`;
    const inherited = options.inherited?.(key);
    if (inherited !== undefined) {
      // The supervisor bound it and removes the file when the whole daemon stops.
      listeners.push({ fd: inherited, label: path, ownedPath: undefined, refs, limits, key });
      return 0;
    }
    let fd: number;
    try {
      fd = listenUnix(name, abstract, LISTEN_BACKLOG, SOCKET_MODE);
    } catch (e) {
      return lauxlib.luaL_error(L1, `Failed to listen on ${path}: ${(e as Error).message}`);
    }
    listeners.push({ fd, label: path, ownedPath: abstract ? undefined : path, refs, limits, key });
    return 0;
  });
  lua.lua_setglobal(L, 'mysql_listen');

  return {
    listeners,
    get declared() {
      return declared;
    },
    enterRuntime(L1) {
      lua.lua_pushnil(L1);
      lua.lua_setglobal(L1, 'mysql_listen');
    },
    closeAll() {
      for (const l of listeners.splice(0)) {
        if (l.ownedPath !== undefined) {
          try {
            unlinkSync(l.ownedPath);
          } catch {
            // already gone
          }
        }
        try {
          closeFd(l.fd);
        } catch {
          // already closed
        }
      }
    },
  };
}

/**
 * The fds passed by systemd socket activation (LISTEN_FDS starting at fd 3), if they are meant
 * for this process. The variables are removed so child processes do not inherit them.
 */
export function takeSystemdFds(env: NodeJS.ProcessEnv = process.env): number[] {
  const pid = env['LISTEN_PID'];
  const count = env['LISTEN_FDS'];
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  if (pid === undefined || count === undefined || Number(pid) !== process.pid) return [];
  const n = Number(count);
  if (!Number.isInteger(n) || n <= 0) return [];
  return Array.from({ length: n }, (_, i) => 3 + i);
}
