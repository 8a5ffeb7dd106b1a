// The `client` object (class "myproxy.client"), the action objects returned by client:err() and
// client:connect(), and LuaSessionHandler: the SessionHandler the core calls for Lua listeners.

import type { ProxyMetrics } from '../util/metrics.js';
import { lua, lauxlib, to_jsstring, type LuaState } from '../lua/fengari.js';
import { defineClass, pushObject, testObject, checkObject } from '../lua/class.js';
import { pushBytes, pushNumber, pushOwnedBytes, toBuffer, toText, typeName } from '../lua/convert.js';
import { CallbackFailed, type CallbackRunner } from '../lua/coroutine.js';
import { parseStoredNativeHash, recoverNativePasswordSha1, sha1 } from '../auth/native-password.js';
import {} from '../protocol/constants.js';
import {
  PolicyError,
  accessDeniedMessage,
  type ClientAuthMode,
  type ClientSession,
  type ConnectAction,
  type ConnectTarget,
  type AcceptAction,
  type CommandAction,
  type CommandResult,
  type ErrAction,
  type ForwardAction,
  type InitDbAction,
  type OkAction,
  type ResultAction,
  type LoginAction,
  type LoginRequest,
  type SessionHandler,
  type SessionHooks,
} from '../proxy/handler.js';
import { checkAddressArg } from './address.js';
import type { ServerTls, TlsInfo } from '../net/tls.js';
import type { DeclaredDestination } from '../backend/capabilities.js';
import { installCgroup, pushClientCgroup } from './cgroup.js';
import { ClientErrors, GENERAL_SQLSTATE } from '../util/errors.js';
import { sharedCopy } from '../util/bytes.js';
import { checkForward, checkOk, checkResult, installNull, pushResultInfo } from './commands.js';

export const CLIENT_CLASS = 'myproxy.client';
export const ACTION_CLASS = 'myproxy.action';
export const VERIFIED_CLASS = 'myproxy.verified_credential';

/**
 * What client:verify_native_password() returns when the client proved it knows the password:
 * SHA1(password), or null for the empty password (logged in to the backend with an empty
 * response, never with SHA1("")). Only this object, not a flag, lets client:connect() use it.
 */
export interface VerifiedCredential {
  readonly passwordSha1: Buffer | null;
}

/** What a client userdata carries. */
interface LuaClient {
  readonly session: ClientSession;
  /** Registry ref of the `notes` table, created on first access. */
  notesRef: number;
  stale: boolean;
  /** The login being decided (only while on_handshake_response runs): what verify checks. */
  login: LoginRequest | undefined;
  /** The user the client named (for client:deny()), once known. */
  user: Buffer | undefined;
}

type Action = ErrAction | ConnectAction | AcceptAction | InitDbAction | ForwardAction | OkAction | ResultAction;

/** Other bindings (clusters) register here to be accepted as client:connect() targets. */
export type TargetChecker = (L: LuaState, idx: number) => ConnectTarget | undefined;
const targetCheckers: TargetChecker[] = [];
export function registerConnectTarget(check: TargetChecker): void {
  targetCheckers.push(check);
}

function checkClient(L: LuaState, idx: number): LuaClient {
  const c = checkObject<LuaClient>(L, idx, CLIENT_CLASS);
  if (c.stale || c.session.closed) return lauxlib.luaL_error(L, 'Stale object');
  return c;
}

function keyOf(L: LuaState, idx: number): string | undefined {
  return lua.lua_type(L, idx) === lua.LUA_TSTRING ? to_jsstring(lua.lua_tolstring(L, idx)!) : undefined;
}

function pushOptionalText(L: LuaState, s: string | undefined): void {
  if (s === undefined) lua.lua_pushnil(L);
  else lua.lua_pushstring(L, s);
}

function pushOptionalNumber(L: LuaState, n: number | undefined): void {
  if (n === undefined) lua.lua_pushnil(L);
  else pushNumber(L, n);
}

/** client:err(message [, code [, sqlstate]]): refuse (a login, a database, a command) with this ERR. */
const clientErr = (L: LuaState): number => {
  checkClient(L, 1);
  const n = lua.lua_gettop(L);
  if (n < 2 || n > 4 || lua.lua_type(L, 2) !== lua.LUA_TSTRING) {
    return lauxlib.luaL_error(L, 'client:err() expects a message string [, an error code [, a SQLSTATE]]');
  }
  const message = to_jsstring(lua.lua_tolstring(L, 2)!, undefined, undefined, true);
  if (n === 2 || lua.lua_type(L, 3) === lua.LUA_TNIL) {
    pushObject(L, ACTION_CLASS, { kind: 'err', message } satisfies ErrAction);
    return 1;
  }
  const errno = lua.lua_type(L, 3) === lua.LUA_TNUMBER ? lua.lua_tonumber(L, 3) : NaN;
  if (!Number.isInteger(errno) || errno < 1000 || errno > 65535) {
    return lauxlib.luaL_error(L, 'client:err(): the error code must be an integer from 1000 to 65535');
  }
  const sqlState = n === 4 && lua.lua_type(L, 4) !== lua.LUA_TNIL ? toText(L, 4) : GENERAL_SQLSTATE;
  if (sqlState === undefined || !/^[0-9A-Z]{5}$/.test(sqlState)) {
    return lauxlib.luaL_error(L, 'client:err(): the SQLSTATE must be five digits or capital letters');
  }
  const error = { code: 'MYP_LUA_REFUSED', errno, sqlState, message: '' };
  pushObject(L, ACTION_CLASS, { kind: 'err', message, error } satisfies ErrAction);
  return 1;
};

/** client:accept(): a backend-less session (on_handshake_response only). */
const clientAccept = (L: LuaState): number => {
  checkClient(L, 1);
  if (lua.lua_gettop(L) !== 1) return lauxlib.luaL_error(L, 'client:accept() takes no arguments');
  pushObject(L, ACTION_CLASS, { kind: 'accept' } satisfies AcceptAction);
  return 1;
};

const clientForward = (L: LuaState): number => {
  checkClient(L, 1);
  pushObject(L, ACTION_CLASS, checkForward(L));
  return 1;
};

const clientOk = (L: LuaState): number => {
  checkClient(L, 1);
  pushObject(L, ACTION_CLASS, checkOk(L));
  return 1;
};

const clientResult = (L: LuaState): number => {
  checkClient(L, 1);
  pushObject(L, ACTION_CLASS, checkResult(L));
  return 1;
};

/** client:deny(): the server's own refusal, ERR 1045 (28000) "Access denied for user '<user>'". */
const clientDeny = (L: LuaState): number => {
  const c = checkClient(L, 1);
  if (lua.lua_gettop(L) !== 1) return lauxlib.luaL_error(L, 'client:deny() takes no arguments');
  const message = c.user === undefined ? 'Access denied' : accessDeniedMessage(c.user);
  pushObject(L, ACTION_CLASS, {
    kind: 'err',
    message,
    error: ClientErrors.ACCESS_DENIED,
  } satisfies ErrAction);
  return 1;
};

/**
 * client:verify_native_password(stored): a VerifiedCredential when the client's login matches
 * the stored hash ('' for no password, '*' + 40 hex digits, or the raw 20-byte
 * SHA1(SHA1(password))), nil when it does not.
 */
const clientVerifyNativePassword = (L: LuaState): number => {
  const c = checkClient(L, 1);
  if (lua.lua_gettop(L) !== 2 || lua.lua_type(L, 2) !== lua.LUA_TSTRING) {
    return lauxlib.luaL_error(L, 'client:verify_native_password() expects one string argument');
  }
  const stored = parseStoredNativeHash(toBuffer(L, 2)!);
  if (stored === undefined) {
    return lauxlib.luaL_error(
      L,
      "client:verify_native_password(): stored hash must be '', '*' followed by 40 hex digits, or 20 raw bytes",
    );
  }
  const login = c.login;
  if (login === undefined) {
    return lauxlib.luaL_error(L, 'client:verify_native_password() only works in on_handshake_response');
  }
  let verified: VerifiedCredential | undefined;
  if (login.native !== undefined) {
    const answer = login.native.answer;
    if (stored === 'empty') verified = answer.length === 0 ? { passwordSha1: null } : undefined;
    else {
      const digest = recoverNativePasswordSha1(answer, login.native.scramble, stored);
      verified = digest === undefined ? undefined : { passwordSha1: digest };
    }
  } else if (login.password !== undefined) {
    // auth = 'clear': the same check on the clear password.
    const pw = login.password;
    if (stored === 'empty') verified = pw.length === 0 ? { passwordSha1: null } : undefined;
    else if (pw.length > 0) {
      const digest = sha1(pw);
      verified = sha1(digest).equals(stored) ? { passwordSha1: digest } : undefined;
    }
  }
  if (verified === undefined) lua.lua_pushnil(L);
  else pushObject(L, VERIFIED_CLASS, verified);
  return 1;
};

const clientInitDb = (L: LuaState): number => {
  checkClient(L, 1);
  if (lua.lua_gettop(L) !== 2 || lua.lua_type(L, 2) !== lua.LUA_TSTRING) {
    return lauxlib.luaL_error(L, 'client:init_db() expects one string argument');
  }
  const database = toBuffer(L, 2)!;
  if (database.length === 0 || database.includes(0))
    return lauxlib.luaL_error(L, 'client:init_db(): bad database name');
  pushObject(L, ACTION_CLASS, { kind: 'init_db', database } satisfies InitDbAction);
  return 1;
};

function checkTarget(L: LuaState, idx: number): ConnectTarget {
  for (const check of targetCheckers) {
    const t = check(L, idx);
    if (t !== undefined) return t;
  }
  return checkAddressArg(L, idx);
}

const clientConnect = (L: LuaState): number => {
  checkClient(L, 1);
  const n = lua.lua_gettop(L);
  if (n < 3 || n > 4) return lauxlib.luaL_error(L, 'Invalid parameters');
  const target = checkTarget(L, 2);
  if (lua.lua_type(L, 3) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L, 3, 'table expected');

  let user: Buffer | undefined;
  let password: Buffer | undefined;
  let passwordSha1: Buffer | undefined;
  let database: Buffer | undefined;
  let verifiedEmpty = false;
  lua.lua_pushnil(L);
  while (lua.lua_next(L, 3) !== 0) {
    const key = keyOf(L, -2);
    if (key === undefined) return lauxlib.luaL_error(L, 'Unknown attribute (key is not a string)');
    const verified = key === 'password_sha1' ? testObject<VerifiedCredential>(L, -1, VERIFIED_CLASS) : undefined;
    if (verified !== undefined) {
      if (verified.passwordSha1 === null) verifiedEmpty = true;
      else passwordSha1 = verified.passwordSha1;
      lua.lua_pop(L, 1);
      continue;
    }
    const value = toBuffer(L, -1);
    if (value === undefined) {
      return lauxlib.luaL_error(L, `Attribute '${key}' must be a string, got ${typeName(L, -1)}`);
    }
    switch (key) {
      case 'user':
        user = value;
        break;
      case 'password':
        password = value;
        break;
      case 'password_sha1':
        if (value.length !== 20) return lauxlib.luaL_error(L, 'Bad SHA1 length (password_sha1 must be 20 raw bytes)');
        passwordSha1 = value;
        break;
      case 'database':
        database = value;
        break;
      default:
        return lauxlib.luaL_error(L, `Unknown attribute '${key}'`);
    }
    lua.lua_pop(L, 1);
  }
  if (user === undefined) return lauxlib.luaL_error(L, "Missing attribute 'user'");
  // A verified empty password logs in with an empty response (not SHA1("")).
  if (verifiedEmpty && password === undefined) password = Buffer.alloc(0);

  let readOnly = false;
  if (n === 4 && lua.lua_type(L, 4) !== lua.LUA_TNIL) {
    if (lua.lua_type(L, 4) !== lua.LUA_TTABLE) return lauxlib.luaL_argerror(L, 4, 'table expected');
    lua.lua_pushnil(L);
    while (lua.lua_next(L, 4) !== 0) {
      const key = keyOf(L, -2);
      if (key !== 'read_only')
        return lauxlib.luaL_error(
          L,
          `Unknown option '${key ?? typeName(L, -2)}' (options: ${CONNECT_OPTIONS.join(', ')})`,
        );
      if (lua.lua_type(L, -1) !== lua.LUA_TBOOLEAN)
        return lauxlib.luaL_error(L, "Option 'read_only' must be a boolean");
      readOnly = lua.lua_toboolean(L, -1);
      lua.lua_pop(L, 1);
    }
  }
  const action: ConnectAction = { kind: 'connect', target, user, password, passwordSha1, database, readOnly };
  pushObject(L, ACTION_CLASS, action);
  return 1;
};

/** The keys of client:connect()'s options table (argument 4). */
export const CONNECT_OPTIONS = ['read_only'] as const;

/** client:err(), client:connect(), ... by name (a null-prototype table: keys come from scripts). */
export const CLIENT_METHODS: Readonly<Record<string, (L: LuaState) => number>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, (L: LuaState) => number>, {
    err: clientErr,
    connect: clientConnect,
    init_db: clientInitDb,
    deny: clientDeny,
    verify_native_password: clientVerifyNativePassword,
    accept: clientAccept,
    forward: clientForward,
    ok: clientOk,
    result: clientResult,
  }),
);

/**
 * The client an __index call is for. The userdata's value being a ClientRecord (which only
 * LuaSessionHooks makes, for userdata of CLIENT_CLASS) proves the class without looking the
 * metatable up by name; anything else gets checkClient()'s error.
 */
function indexedClient(L: LuaState): LuaClient {
  const value = (lua.lua_touserdata(L, 1) as { value?: unknown } | null)?.value;
  if (!(value instanceof ClientRecord)) return checkClient(L, 1);
  if (value.stale || value.session.closed) return lauxlib.luaL_error(L, 'Stale object');
  return value;
}

const clientIndex = (L: LuaState): number => {
  const c = indexedClient(L);
  const key = keyOf(L, 2);
  const s = c.session;
  switch (key) {
    case 'pid':
      pushOptionalNumber(L, s.peer.pid);
      return 1;
    case 'uid':
      pushOptionalNumber(L, s.peer.uid);
      return 1;
    case 'gid':
      pushOptionalNumber(L, s.peer.gid);
      return 1;
    case 'address':
      pushOptionalText(L, s.peer.address);
      return 1;
    case 'listener':
      pushOptionalText(L, s.listener);
      return 1;
    case 'tls':
      pushTlsInfo(L, s.tls);
      return 1;
    case 'account':
      pushOptionalText(L, s.account);
      return 1;
    case 'server_version':
      pushBytes(L, s.serverVersion);
      return 1;
    case 'user':
      if (c.user === undefined) lua.lua_pushnil(L);
      else pushBytes(L, c.user);
      return 1;
    case 'database':
      if (s.database === undefined) lua.lua_pushnil(L);
      else pushBytes(L, s.database);
      return 1;
    case 'notes':
      if (c.notesRef === lauxlib.LUA_NOREF) {
        lua.lua_newtable(L);
        lua.lua_pushvalue(L, -1);
        c.notesRef = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
      } else {
        lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, c.notesRef);
      }
      return 1;
    case 'cgroup':
      pushClientCgroup(L, s);
      return 1;
    default: {
      const method = key !== undefined && Object.hasOwn(CLIENT_METHODS, key) ? CLIENT_METHODS[key] : undefined;
      if (method === undefined) return lauxlib.luaL_error(L, `Unknown attribute '${key ?? typeName(L, 2)}'`);
      lua.lua_pushjsfunction(L, method);
      return 1;
    }
  }
};

const clientNewIndex = (L: LuaState): number => {
  const c = checkClient(L, 1);
  const key = keyOf(L, 2);
  switch (key) {
    case 'account': {
      const t = lua.lua_type(L, 3);
      if (t === lua.LUA_TNIL) {
        c.session.account = undefined;
        return 0;
      }
      if (t !== lua.LUA_TSTRING || lua.lua_tolstring(L, 3)!.length === 0) {
        return lauxlib.luaL_error(L, 'account must be a non-empty string or nil');
      }
      c.session.account = to_jsstring(lua.lua_tolstring(L, 3)!, undefined, undefined, true);
      return 0;
    }
    case 'server_version': {
      const v = toBuffer(L, 3);
      if (v === undefined || v.length === 0 || v.length > 250 || v.includes(0)) {
        return lauxlib.luaL_error(L, 'server_version must be a non-empty string of at most 250 bytes without NUL');
      }
      c.session.serverVersion = v;
      return 0;
    }
    default:
      return lauxlib.luaL_error(L, `Unknown attribute '${key ?? typeName(L, 2)}'`);
  }
};

const clientToString = (L: LuaState): number => {
  const c = checkObject<LuaClient>(L, 1, CLIENT_CLASS);
  lua.lua_pushstring(L, `client(${c.session.logName})`);
  return 1;
};

export function installClient(L: LuaState): void {
  defineClass(L, CLIENT_CLASS, { __index: clientIndex, __newindex: clientNewIndex, __tostring: clientToString });
  installCgroup(L);
  installNull(L);
  defineClass(L, ACTION_CLASS, {
    __tostring: (L1) => {
      const a = checkObject<Action>(L1, 1, ACTION_CLASS);
      lua.lua_pushstring(L1, `action(${a.kind})`);
      return 1;
    },
  });
  // Opaque: Lua can pass it to client:connect() but never read the digest out of it.
  defineClass(L, VERIFIED_CLASS, {
    __tostring: (L1) => {
      checkObject<VerifiedCredential>(L1, 1, VERIFIED_CLASS);
      lua.lua_pushliteral(L1, 'verified_credential');
      return 1;
    },
  });
}

/** The Lua functions of one mysql_listen() handler table, as registry refs. */
export interface HandlerRefs {
  readonly onConnect: number | undefined;
  readonly onHandshakeResponse: number;
  readonly onCommandPhase: number | undefined;
  readonly onInitDb: number | undefined;
  readonly onKill?: number | undefined;
  readonly onQuery?: number | undefined;
  readonly onCommand?: number | undefined;
  readonly onResult?: number | undefined;
  /** mysql_listen option `auth` (default 'clear'). */
  readonly auth?: ClientAuthMode;
  /** mysql_listen option `local_infile` (default false). */
  readonly localInfile?: boolean;
  /** The listen address as written in mysql_listen ('systemd' for systemd's sockets): client.listener. */
  readonly listener?: string;
  /** mysql_listen option `tls`. */
  readonly tls?: ServerTls | undefined;
  /** mysql_listen option `destinations`: the servers this listener's clients are connected to. */
  readonly destinations?: readonly DeclaredDestination[];
}

/** client.tls: nil for a plain connection, else {version, cipher, peer_certificate = nil | {...}}. */
function pushTlsInfo(L: LuaState, info: TlsInfo | undefined): void {
  if (info === undefined) {
    lua.lua_pushnil(L);
    return;
  }
  const field = (name: string, value: string): void => {
    lua.lua_pushstring(L, value);
    lua.lua_setfield(L, -2, name);
  };
  lua.lua_createtable(L, 0, 3);
  field('version', info.version);
  field('cipher', info.cipher);
  const cert = info.peerCertificate;
  if (cert !== undefined) {
    lua.lua_createtable(L, 0, 4);
    field('subject', cert.subject);
    field('issuer', cert.issuer);
    field('fingerprint_sha256', cert.fingerprintSha256);
    field('not_after', cert.notAfter);
    lua.lua_setfield(L, -2, 'peer_certificate');
  }
}

/** Implements the core's SessionHandler by calling the Lua callbacks in coroutines. */
export class LuaSessionHandler implements SessionHandler {
  readonly L: LuaState;
  readonly runner: CallbackRunner;
  readonly refs: HandlerRefs;
  readonly clientAuth: ClientAuthMode;
  readonly localInfile: boolean;
  readonly listener: string | undefined;
  readonly tls: ServerTls | undefined;
  readonly destinations: readonly DeclaredDestination[] | undefined;
  readonly #Hooks: new (handler: LuaSessionHandler, session: ClientSession) => LuaSessionHooks;

  /** Where callback durations go (none in unit tests). */
  readonly metrics: ProxyMetrics | undefined;

  constructor(L: LuaState, runner: CallbackRunner, refs: HandlerRefs, metrics?: ProxyMetrics) {
    this.L = L;
    this.runner = runner;
    this.refs = refs;
    this.metrics = metrics;
    this.clientAuth = refs.auth ?? 'clear';
    this.localInfile = refs.localInfile ?? false;
    this.listener = refs.listener;
    this.tls = refs.tls;
    this.destinations = refs.destinations;
    // Absent callbacks must be absent hooks (the core skips them at no cost), so pick the class
    // whose prototype has exactly the hooks this handler table defines: no per-connection closures.
    this.#Hooks = hooksClass(refs);
  }

  open(session: ClientSession): SessionHooks {
    return new this.#Hooks(this, session);
  }
}

/** What a client userdata carries (see indexedClient() for why it is a class). */
class ClientRecord implements LuaClient {
  readonly session: ClientSession;
  notesRef = lauxlib.LUA_NOREF;
  stale = false;
  login: LoginRequest | undefined = undefined;
  user: Buffer | undefined = undefined;
  constructor(session: ClientSession) {
    this.session = session;
  }
}

/** Each session's client userdata (registry ref), so one callback can be handed another's client. */
const clientRefs = new WeakMap<ClientSession, number>();

/**
 * What every session of a Lua state pushes or checks, as registry refs made once: pushing by ref is
 * an integer lookup, while a name (a class, a table key) given as a JS string is converted and
 * hashed anew on each use (Fengari interns no strings).
 */
interface StateRefs {
  readonly clientMeta: number;
  readonly actionMeta: number;
  readonly userKey: number;
  readonly passwordKey: number;
  readonly databaseKey: number;
}
const stateRefs = new WeakMap<LuaState, StateRefs>();

function refsOf(L: LuaState): StateRefs {
  let refs = stateRefs.get(L);
  if (refs === undefined) {
    const ref = (push: () => void): number => {
      push();
      return lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
    };
    refs = {
      clientMeta: ref(() => lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, CLIENT_CLASS)),
      actionMeta: ref(() => lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, ACTION_CLASS)),
      userKey: ref(() => lua.lua_pushliteral(L, 'user')),
      passwordKey: ref(() => lua.lua_pushliteral(L, 'password')),
      databaseKey: ref(() => lua.lua_pushliteral(L, 'database')),
    };
    stateRefs.set(L, refs);
  }
  return refs;
}

/** Fengari's lua_getmetatable, which src/types/fengari.d.ts does not declare. */
function getMetatable(L: LuaState, idx: number): boolean {
  return (lua as unknown as { lua_getmetatable(L: LuaState, idx: number): boolean }).lua_getmetatable(L, idx);
}

/** The action a callback returned at `idx` (what testObject(L, idx, ACTION_CLASS) finds, by ref). */
function returnedAction(L: LuaState, idx: number, refs: StateRefs): Action | undefined {
  if (lua.lua_type(L, idx) !== lua.LUA_TUSERDATA || !getMetatable(L, idx)) return undefined;
  lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, refs.actionMeta);
  const isAction = lua.lua_rawequal(L, -1, -2);
  lua.lua_pop(L, 2);
  return isAction ? (lua.lua_touserdata(L, idx) as { value: Action }).value : undefined;
}

/** The hooks of one connection: its client userdata and the calls into Lua. */
class LuaSessionHooks {
  readonly #handler: LuaSessionHandler;
  readonly #client: LuaClient;
  readonly #clientRef: number;
  readonly #refs: StateRefs;

  constructor(handler: LuaSessionHandler, session: ClientSession) {
    const L = handler.L;
    this.#handler = handler;
    this.#refs = refsOf(L);
    this.#client = new ClientRecord(session);
    // One userdata per connection, kept in the registry so every callback sees the same object
    // (pushObject(L, CLIENT_CLASS, client), with the metatable taken by ref instead of by name).
    (lua.lua_newuserdata(L, 0) as { value: LuaClient }).value = this.#client;
    lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, this.#refs.clientMeta);
    lua.lua_setmetatable(L, -2);
    this.#clientRef = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
    clientRefs.set(session, this.#clientRef);
  }

  /** Call a Lua callback with (client, extra...) in a coroutine; Lua failures become PolicyError. */
  protected async call<T>(
    name: string,
    fnRef: number,
    pushExtra: ((co: LuaState) => number) | null,
    collect: (co: LuaState, n: number) => T,
  ): Promise<T> {
    return this.run(name, fnRef, pushExtra, collect);
  }

  /**
   * call() without a promise when the callback returns without waiting: the result, or a thrown
   * PolicyError, at once (the hooks on every command use this: see CallbackRunner.run()).
   */
  protected run<T>(
    name: string,
    fnRef: number,
    pushExtra: ((co: LuaState) => number) | null,
    collect: (co: LuaState, n: number) => T,
  ): T | Promise<T> {
    const client = this.#client;
    const clientRef = this.#clientRef;
    const started = performance.now();
    let result: T | Promise<T>;
    try {
      result = this.#handler.runner.run(
        fnRef,
        (co) => {
          lua.lua_rawgeti(co, lua.LUA_REGISTRYINDEX, clientRef);
          return 1 + (pushExtra === null ? 0 : pushExtra(co));
        },
        collect,
        () => client.stale,
      );
    } catch (e) {
      this.#observe(name, started);
      throw policyError(name, e);
    }
    if (!(result instanceof Promise)) {
      this.#observe(name, started);
      return result;
    }
    return result.then(
      (value) => {
        this.#observe(name, started);
        return value;
      },
      (e: unknown) => {
        this.#observe(name, started);
        throw policyError(name, e);
      },
    );
  }

  #observe(name: string, started: number): void {
    this.#handler.metrics?.callbackDuration(name).observe((performance.now() - started) / 1000);
  }

  /** run() with the function ref taken from the handler (for hooks defined outside this class). */
  runWith<T>(
    name: string,
    fnRef: (handler: LuaSessionHandler) => number,
    pushExtra: ((co: LuaState) => number) | null,
    collect: (co: LuaState, n: number) => T,
  ): T | Promise<T> {
    return this.run(name, fnRef(this.#handler), pushExtra, collect);
  }

  /** call() with the function ref taken from the handler (for hooks defined outside this class). */
  callWith<T>(
    name: string,
    fnRef: (handler: LuaSessionHandler) => number,
    pushExtra: ((co: LuaState) => number) | null,
    collect: (co: LuaState, n: number) => T,
  ): Promise<T> {
    return this.call(name, fnRef(this.#handler), pushExtra, collect);
  }

  async onHandshakeResponse(login: LoginRequest): Promise<LoginAction> {
    this.#client.login = login;
    // Kept for the session's life: a copy, not a slice that would keep the login packet alive.
    this.#client.user = sharedCopy(login.user);
    try {
      return await this.#callHandshakeResponse(login);
    } finally {
      this.#client.login = undefined;
    }
  }

  #callHandshakeResponse(login: LoginRequest): Promise<LoginAction> {
    return this.call(
      'on_handshake_response',
      this.#handler.refs.onHandshakeResponse,
      (co) => {
        pushLoginTable(co, login, this.#refs);
        return 1;
      },
      (co, n) => {
        const a = n > 0 ? returnedAction(co, n, this.#refs) : undefined;
        if (a === undefined || (a.kind !== 'connect' && a.kind !== 'err' && a.kind !== 'accept')) {
          throw new CallbackFailed(
            `Bad return value (${n > 0 ? typeName(co, n) : 'nothing'}): return client:connect(...) or client:err(...)`,
          );
        }
        return a;
      },
    );
  }

  callOnConnect(): Promise<ErrAction | undefined> {
    return this.call('on_connect', this.#handler.refs.onConnect!, null, (co, n) => {
      if (n === 0 || lua.lua_type(co, n) === lua.LUA_TNIL) return undefined;
      const a = testObject<Action>(co, n, ACTION_CLASS);
      if (a?.kind !== 'err') {
        throw new CallbackFailed(
          `Bad return value (${typeName(co, n)}): on_connect may only return client:err(...) or nothing`,
        );
      }
      return a;
    });
  }

  callOnCommandPhase(): Promise<void> {
    return this.call('on_command_phase', this.#handler.refs.onCommandPhase!, null, (co, n) => {
      if (n > 0 && lua.lua_type(co, n) !== lua.LUA_TNIL) {
        throw new CallbackFailed(`Bad return value (${typeName(co, n)}): on_command_phase returns nothing`);
      }
    });
  }

  callOnInitDb(database: Buffer): Promise<InitDbAction | ErrAction> {
    return this.call(
      'on_init_db',
      this.#handler.refs.onInitDb!,
      (co) => {
        pushBytes(co, database);
        return 1;
      },
      (co, n) => {
        const a = n > 0 ? testObject<Action>(co, n, ACTION_CLASS) : undefined;
        if (a === undefined || (a.kind !== 'init_db' && a.kind !== 'err')) {
          throw new CallbackFailed(
            `Bad return value (${n > 0 ? typeName(co, n) : 'nothing'}): return client:init_db(name) or client:err(...)`,
          );
        }
        return a;
      },
    );
  }

  onClose(): void {
    const L = this.#handler.L;
    this.#client.stale = true;
    lauxlib.luaL_unref(L, lua.LUA_REGISTRYINDEX, this.#clientRef);
    if (this.#client.notesRef !== lauxlib.LUA_NOREF)
      lauxlib.luaL_unref(L, lua.LUA_REGISTRYINDEX, this.#client.notesRef);
  }
}

/** A failed Lua callback as the core sees it (other errors, e.g. a cancelled callback, pass as they are). */
function policyError(name: string, e: unknown): unknown {
  return e instanceof CallbackFailed ? new PolicyError(`${name}: ${e.message}`, e.traceback) : e;
}

/** What on_query and on_command may return: nothing (forward as it is) or one of the command actions. */
function collectCommandAction(hook: string) {
  return (co: LuaState, n: number): CommandAction | undefined => {
    if (n === 0 || lua.lua_type(co, n) === lua.LUA_TNIL) return undefined;
    const a = testObject<Action>(co, n, ACTION_CLASS);
    if (a === undefined || a.kind === 'connect' || a.kind === 'init_db' || a.kind === 'accept') {
      throw new CallbackFailed(
        `Bad return value (${a === undefined ? typeName(co, n) : `client:${a.kind}()`}): ${hook} returns nothing, ` +
          'client:forward(), client:err(), client:ok() or client:result()',
      );
    }
    return a;
  };
}

const collectQueryAction = collectCommandAction('on_query');
const collectOtherAction = collectCommandAction('on_command');

/**
 * on_query(client, sql). `sql` is the hook's own copy (see SessionHooks.onQuery), so the Lua string
 * takes it as it is. Without a promise when the hook returns without waiting.
 */
function callOnQuery(
  this: LuaSessionHooks,
  sql: Buffer,
): CommandAction | undefined | Promise<CommandAction | undefined> {
  return this.runWith(
    'on_query',
    (handler) => handler.refs.onQuery!,
    (co) => {
      pushOwnedBytes(co, sql);
      return 1;
    },
    collectQueryAction,
  );
}

/** on_command(client, name, payload), like on_query. */
function callOnCommand(
  this: LuaSessionHooks,
  name: string,
  payload: Buffer,
): CommandAction | undefined | Promise<CommandAction | undefined> {
  return this.runWith(
    'on_command',
    (handler) => handler.refs.onCommand!,
    (co) => {
      lua.lua_pushstring(co, name);
      pushOwnedBytes(co, payload);
      return 2;
    },
    collectOtherAction,
  );
}

/** on_result(client, info): its return value is ignored. */
function callOnResult(this: LuaSessionHooks, result: CommandResult): Promise<void> {
  return this.callWith(
    'on_result',
    (handler) => handler.refs.onResult!,
    (co) => {
      pushResultInfo(co, result);
      return 1;
    },
    () => undefined,
  );
}

type HooksClass = new (handler: LuaSessionHandler, session: ClientSession) => LuaSessionHooks;

/** on_kill(client, target, what): true lets the client kill target's query ('query') or connection. */
function callOnKill(this: LuaSessionHooks, target: ClientSession, query: boolean): Promise<boolean> {
  const targetRef = clientRefs.get(target);
  return this.callWith(
    'on_kill',
    (handler) => handler.refs.onKill!,
    (co) => {
      if (targetRef === undefined || target.closed) lua.lua_pushnil(co);
      else lua.lua_rawgeti(co, lua.LUA_REGISTRYINDEX, targetRef);
      lua.lua_pushstring(co, query ? 'query' : 'connection');
      return 2;
    },
    (co, n) => {
      if (n === 0 || lua.lua_type(co, n) === lua.LUA_TNIL) return false;
      if (lua.lua_type(co, n) !== lua.LUA_TBOOLEAN) {
        throw new CallbackFailed(`Bad return value (${typeName(co, n)}): on_kill returns true or false`);
      }
      return lua.lua_toboolean(co, n);
    },
  );
}

/**
 * A hooks class whose prototype has exactly the optional hooks the handler table defines (the
 * core skips absent hooks at no cost), built once per mysql_listen() call.
 */
function hooksClass(refs: HandlerRefs): HooksClass {
  const Hooks = class extends LuaSessionHooks {};
  const proto = LuaSessionHooks.prototype;
  const add = (name: keyof SessionHooks, fn: unknown): void => {
    Object.defineProperty(Hooks.prototype, name, { value: fn, writable: false, enumerable: false });
  };
  // The methods move to another prototype: they are called on instances of Hooks, not detached.
  /* eslint-disable @typescript-eslint/unbound-method */
  if (refs.onConnect !== undefined) add('onConnect', proto.callOnConnect);
  if (refs.onCommandPhase !== undefined) add('onCommandPhase', proto.callOnCommandPhase);
  if (refs.onInitDb !== undefined) add('onInitDb', proto.callOnInitDb);
  /* eslint-enable @typescript-eslint/unbound-method */
  if (refs.onKill !== undefined) add('onKill', callOnKill);
  if (refs.onQuery !== undefined) add('onQuery', callOnQuery);
  if (refs.onCommand !== undefined) add('onCommand', callOnCommand);
  if (refs.onResult !== undefined) add('onResult', callOnResult);
  return Hooks;
}

/**
 * handshake_response = {user=, password=, database=} (database only when non-empty; password
 * absent under auth = 'native'). The keys come by ref; lua_pushstring() copies each value once
 * (Lua never aliases the network buffers).
 */
function pushLoginTable(L: LuaState, login: LoginRequest, refs: StateRefs): void {
  lua.lua_createtable(L, 0, 3);
  setBytesField(L, refs.userKey, login.user);
  if (login.password !== undefined) setBytesField(L, refs.passwordKey, login.password);
  if (login.database.length > 0) setBytesField(L, refs.databaseKey, login.database);
}

/** table[key] = value for the table on top of the stack, the key a registry ref. */
function setBytesField(L: LuaState, keyRef: number, value: Uint8Array): void {
  lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, keyRef);
  lua.lua_pushstring(L, value);
  lua.lua_rawset(L, -3);
}
