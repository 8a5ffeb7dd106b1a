// The `socket` library, as CM4all myproxy's: connect to an address and send bytes.
//
//   local s = assert(socket:connect('@some-daemon', { type = 'dgram' }))
//   s:send('hello')
//   s:close()
//
// Numeric addresses only (default port 0), paths and '@abstract' names. Datagram and seqpacket
// sockets connect at once, anywhere; a stream socket is connected by yielding the callback (myproxy
// blocks the whole daemon instead), so it can be made in callbacks and reload(), not at the top
// level of the config.

import type { Socket } from 'node:net';
import { lua, lauxlib, to_jsstring, type LuaState } from '../lua/fengari.js';
import { checkObject, defineClass, pushObject, testObject } from '../lua/class.js';
import { yieldOn } from '../lua/coroutine.js';
import { AddressError, isNumericAddress, parseAddress, type SocketAddress } from '../net/address.js';
import { connectSocket } from '../net/connect.js';
import { addonFunctions } from '../net/native.js';
import { ADDRESS_CLASS, type AddressBox } from './address.js';
import {
  checkArgCount,
  closeHeld,
  connectTo,
  methodIndex,
  plainError,
  trackSocket,
  type HeldSocket,
} from './datagram.js';

/** The keys of socket:connect()'s options table. */
export const SOCKET_OPTIONS = ['type'] as const;

const SOCKET_CLASS = 'socket';
const STREAM_CONNECT_TIMEOUT_MS = 10_000;

type LuaSocket =
  { readonly kind: 'fd'; readonly socket: HeldSocket } | { readonly kind: 'stream'; readonly socket: Socket };

function push(L: LuaState, value: LuaSocket): number {
  if (value.kind === 'fd') trackSocket(value, value.socket);
  pushObject(L, SOCKET_CLASS, value);
  return 1;
}

/** socket:connect(address [, { type = 'stream' | 'dgram' | 'seqpacket' }]) */
const socketConnect = (L: LuaState): number => {
  checkArgCount(L, 2, 3);
  let address: SocketAddress;
  const box = testObject<AddressBox>(L, 2, ADDRESS_CLASS);
  if (box !== undefined) {
    address = box.address;
  } else if (lua.lua_isstring(L, 2)) {
    try {
      address = parseAddress(to_jsstring(lua.lua_tolstring(L, 2)!, undefined, undefined, true), 0);
    } catch (e) {
      return lauxlib.luaL_error(L, (e as AddressError).message);
    }
    if (!isNumericAddress(address) && address.kind === 'tcp') {
      return lauxlib.luaL_error(
        L,
        `Failed to resolve ${JSON.stringify(address.host)}:${JSON.stringify(String(address.port))}: Name or service not known`,
      );
    }
  } else {
    return lauxlib.luaL_argerror(L, 1, 'SocketAddress expected');
  }
  if (address.kind === 'tcp' && address.port === 0) {
    lua.lua_pushnil(L);
    lua.lua_pushstring(L, 'Connection refused');
    return 2;
  }
  let type: 'stream' | 'dgram' | 'seqpacket' = 'stream';
  if (lua.lua_gettop(L) >= 3 && lua.lua_type(L, 3) !== lua.LUA_TNIL) {
    lua.lua_pushnil(L);
    while (lua.lua_next(L, 3) !== 0) {
      if (lua.lua_type(L, -2) !== lua.LUA_TSTRING) return lauxlib.luaL_error(L, 'Key is not a string');
      const key = to_jsstring(lua.lua_tolstring(L, -2)!, undefined, undefined, true);
      if (key !== 'type') return lauxlib.luaL_error(L, `Unrecognized option (options: ${SOCKET_OPTIONS.join(', ')})`);
      if (!lua.lua_isstring(L, -1)) return lauxlib.luaL_error(L, "'type' must be a string");
      const value = to_jsstring(lua.lua_tolstring(L, -1)!, undefined, undefined, true);
      if (value !== 'stream' && value !== 'dgram' && value !== 'seqpacket')
        return lauxlib.luaL_error(L, 'Unsupported socket type');
      type = value;
      lua.lua_pop(L, 1);
    }
  }
  if (type !== 'stream') {
    try {
      return push(L, { kind: 'fd', socket: { fd: connectTo(address, type) } });
    } catch (e) {
      lua.lua_pushnil(L);
      lua.lua_pushstring(L, plainError(e));
      return 2;
    }
  }
  return yieldOn(
    L,
    connectSocket(address, STREAM_CONNECT_TIMEOUT_MS).then(
      (s) => (L1: LuaState) => {
        s.on('error', () => undefined);
        s.resume(); // whatever the peer sends is not for us
        return push(L1, { kind: 'stream', socket: s });
      },
      (e: unknown) => (L1: LuaState) => {
        lua.lua_pushnil(L1);
        lua.lua_pushstring(L1, plainError(e));
        return 2;
      },
    ),
    'socket:connect() of a stream socket',
  );
};

/** s:send(data [, start [, end]]): bytes sent, or nil and the system's message. */
const socketSend = (L: LuaState): number => {
  const s = checkObject<LuaSocket>(L, 1, SOCKET_CLASS);
  checkArgCount(L, 2, 4);
  let data = Buffer.from(lauxlib.luaL_checklstring(L, 2));
  // As myproxy: END is applied first, then START relative to what is left.
  if (lua.lua_gettop(L) >= 4 && lua.lua_type(L, 4) !== lua.LUA_TNIL) {
    let end = lauxlib.luaL_checkinteger(L, 4);
    if (end < 0) end = data.length + 1 + end;
    if (end < 1 || end > data.length) return lauxlib.luaL_argerror(L, 3, 'Bad string position');
    data = data.subarray(0, end);
  }
  if (lua.lua_gettop(L) >= 3 && lua.lua_type(L, 3) !== lua.LUA_TNIL) {
    let start = lauxlib.luaL_checkinteger(L, 3);
    if (start < 0) start = data.length + 1 + start;
    if (start < 1 || start > data.length) return lauxlib.luaL_argerror(L, 2, 'Bad string position');
    data = data.subarray(start - 1);
  }
  if (data.length === 0) {
    lua.lua_pushinteger(L, 0);
    return 1;
  }
  try {
    let sent: number;
    if (s.kind === 'fd') {
      if (s.socket.fd < 0) throw new Error('send(): Bad file descriptor');
      sent = addonFunctions().sendOn(s.socket.fd, data);
    } else {
      if (s.socket.destroyed) throw new Error('send(): Bad file descriptor');
      s.socket.write(Buffer.from(data));
      sent = data.length;
    }
    lua.lua_pushinteger(L, sent);
    return 1;
  } catch (e) {
    lua.lua_pushnil(L);
    lua.lua_pushstring(L, plainError(e));
    return 2;
  }
};

const socketClose = (L: LuaState): number => {
  const s = checkObject<LuaSocket>(L, 1, SOCKET_CLASS);
  checkArgCount(L, 1, 1);
  if (s.kind === 'fd') closeHeld(s.socket);
  else s.socket.end();
  return 0;
};

export function installSocket(L: LuaState): void {
  defineClass(L, SOCKET_CLASS, {
    __index: methodIndex({ send: socketSend, close: socketClose }),
    __tostring: (L1) => {
      lua.lua_pushliteral(L1, 'socket');
      return 1;
    },
  });
  lua.lua_createtable(L, 0, 1);
  lua.lua_pushjsfunction(L, socketConnect);
  lua.lua_setfield(L, -2, 'connect');
  lua.lua_setglobal(L, 'socket');
}
