// The `control_client` library, as CM4all myproxy's: send control datagrams (beng-proxy format) to
// another daemon, e.g. DISCONNECT_DATABASE to every proxy when an account is deleted or moved.
//
//   local c = assert(control_client:new('/run/myproxy/control.sock'))   -- or an address, '@name', host[:port]
//   assert(c:send(c:build():disconnect_database('acct1', 'acct2')))
//
// Here connecting and sending never block: the socket is a connected, non-blocking datagram
// socket, and a host name is resolved by yielding the callback (at the top level of the config,
// only numeric addresses, paths and abstract names can be used).

import { lua, lauxlib, to_jsstring, type LuaState } from '../lua/fengari.js';
import { defineClass, checkObject, pushObject, testObject } from '../lua/class.js';
import { yieldOn } from '../lua/coroutine.js';
import { isNumericAddress, parseAddress, type SocketAddress } from '../net/address.js';
import { addonFunctions } from '../net/native.js';
import { CONTROL_DEFAULT_PORT, ControlCommand, ControlDatagramBuilder } from '../protocol/control.js';
import { ADDRESS_CLASS, type AddressBox } from './address.js';
import {
  checkArgCount,
  closeHeld,
  connectTo,
  methodIndex,
  plainError,
  resolveAddress,
  trackSocket,
  type HeldSocket,
} from './datagram.js';
import { errnoOrMessage } from '../util/errors.js';

const CLIENT_CLASS = 'control_client';
const BUILDER_CLASS = 'control_builder';

interface ControlClient {
  readonly socket: HeldSocket;
}

/** Builder methods that add one command per argument (the argument is the payload). */
const SIMPLE_COMMANDS: Readonly<Record<string, number>> = {
  fade_children: ControlCommand.FADE_CHILDREN,
  flush_filter_cache: ControlCommand.FLUSH_FILTER_CACHE,
  discard_session: ControlCommand.DISCARD_SESSION,
  flush_http_cache: ControlCommand.FLUSH_HTTP_CACHE,
  terminate_children: ControlCommand.TERMINATE_CHILDREN,
  disconnect_database: ControlCommand.DISCONNECT_DATABASE,
  reset_limiter: ControlCommand.RESET_LIMITER,
  reject_client: ControlCommand.REJECT_CLIENT,
  tarpit_client: ControlCommand.TARPIT_CLIENT,
};

function pushClient(L: LuaState, address: SocketAddress): number {
  let fd: number;
  try {
    fd = connectTo(address, 'dgram');
  } catch (e) {
    lua.lua_pushnil(L);
    lua.lua_pushstring(L, `Failed to connect: ${plainError(e)}`);
    return 2;
  }
  const client: ControlClient = { socket: { fd } };
  trackSocket(client, client.socket);
  pushObject(L, CLIENT_CLASS, client);
  return 1;
}

/** control_client:new(address): a client, or nil and a message. */
const clientNew = (L: LuaState): number => {
  checkArgCount(L, 2, 2);
  const box = testObject<AddressBox>(L, 2, ADDRESS_CLASS);
  let address: SocketAddress;
  if (box !== undefined) {
    address = box.address;
  } else if (lua.lua_isstring(L, 2)) {
    const text = to_jsstring(lua.lua_tolstring(L, 2)!, undefined, undefined, true);
    try {
      address = parseAddress(text, CONTROL_DEFAULT_PORT);
    } catch (e) {
      lua.lua_pushnil(L);
      lua.lua_pushstring(L, `Failed to resolve ${JSON.stringify(text)}: ${(e as Error).message}`);
      return 2;
    }
  } else {
    return lauxlib.luaL_argerror(L, 1, 'SocketAddress expected');
  }
  if (!isNumericAddress(address)) {
    const host = address.kind === 'tcp' ? address.host : '';
    return yieldOn(
      L,
      resolveAddress(address).then(
        (resolved) => (L1: LuaState) => pushClient(L1, resolved),
        (e: unknown) => (L1: LuaState) => {
          lua.lua_pushnil(L1);
          lua.lua_pushstring(L1, `Failed to resolve ${JSON.stringify(host)}: ${errnoOrMessage(e)}`);
          return 2;
        },
      ),
      'control_client:new() with a host name',
    );
  }
  return pushClient(L, address);
};

/** c:build(): an empty builder. */
const clientBuild = (L: LuaState): number => {
  checkObject<ControlClient>(L, 1, CLIENT_CLASS);
  checkArgCount(L, 1, 2);
  pushObject(L, BUILDER_CLASS, new ControlDatagramBuilder());
  return 1;
};

/** c:send(builder): true, or nil and "send() failed: REASON". */
const clientSend = (L: LuaState): number => {
  const client = checkObject<ControlClient>(L, 1, CLIENT_CLASS);
  checkArgCount(L, 2, 2);
  const builder = checkObject<ControlDatagramBuilder>(L, 2, BUILDER_CLASS);
  try {
    if (client.socket.fd < 0) throw new Error('send(): Bad file descriptor');
    addonFunctions().sendOn(client.socket.fd, builder.toBuffer());
  } catch (e) {
    lua.lua_pushnil(L);
    lua.lua_pushstring(L, `send() failed: ${plainError(e)}`);
    return 2;
  }
  lua.lua_pushboolean(L, true);
  return 1;
};

/** c:close(): an addition of this version (myproxy closes when the object is collected). */
const clientClose = (L: LuaState): number => {
  closeHeld(checkObject<ControlClient>(L, 1, CLIENT_CLASS).socket);
  return 0;
};

/** A payload argument: strings and numbers as text, anything else empty (as myproxy's builder). */
function payloadArg(L: LuaState, idx: number): Buffer {
  const t = lua.lua_type(L, idx);
  // lua_tolstring turns a number into its text, as myproxy's builder does.
  return t === lua.LUA_TSTRING || t === lua.LUA_TNUMBER ? Buffer.from(lua.lua_tolstring(L, idx)!) : Buffer.alloc(0);
}

function simpleCommand(command: number) {
  return (L: LuaState): number => {
    const builder = checkObject<ControlDatagramBuilder>(L, 1, BUILDER_CLASS);
    const n = lua.lua_gettop(L);
    if (n < 2) return lauxlib.luaL_error(L, 'Not enough parameters');
    for (let i = 2; i <= n; i++) builder.add(command, payloadArg(L, i));
    lua.lua_settop(L, 1);
    return 1;
  };
}

/** builder:cancel_job(partition, job_id): payload "partition\0job_id". */
const cancelJob = (L: LuaState): number => {
  const builder = checkObject<ControlDatagramBuilder>(L, 1, BUILDER_CLASS);
  checkArgCount(L, 3, 3);
  const partition = lauxlib.luaL_checklstring(L, 2);
  const job = lauxlib.luaL_checklstring(L, 3);
  builder.add(ControlCommand.CANCEL_JOB, Buffer.concat([partition, Buffer.from([0]), job]));
  lua.lua_settop(L, 1);
  return 1;
};

export function installControlClient(L: LuaState): void {
  defineClass(L, CLIENT_CLASS, {
    __index: methodIndex({ build: clientBuild, send: clientSend, close: clientClose }),
    __tostring: (L1) => {
      lua.lua_pushliteral(L1, 'control_client');
      return 1;
    },
  });
  const builderMethods: Record<string, (L: LuaState) => number> = { cancel_job: cancelJob };
  for (const [name, command] of Object.entries(SIMPLE_COMMANDS)) builderMethods[name] = simpleCommand(command);
  defineClass(L, BUILDER_CLASS, {
    __index: methodIndex(builderMethods),
    __tostring: (L1) => {
      const b = checkObject<ControlDatagramBuilder>(L1, 1, BUILDER_CLASS);
      lua.lua_pushstring(L1, `control_builder(${b.length} bytes)`);
      return 1;
    },
  });
  lua.lua_createtable(L, 0, 1);
  lua.lua_pushjsfunction(L, clientNew);
  lua.lua_setfield(L, -2, 'new');
  lua.lua_setglobal(L, 'control_client');
}
