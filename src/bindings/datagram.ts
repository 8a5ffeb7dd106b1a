// What control_client and socket share: connecting a datagram (or seqpacket) socket to an address,
// sending on it, closing it when Lua forgets the object, and method lookup for their userdata.

import { lookup } from 'node:dns/promises';
import { lua, lauxlib, to_jsstring, type JSFunction, type LuaState } from '../lua/fengari.js';
import { addonFunctions, closeFd } from '../net/native.js';
import { isNumericAddress, type SocketAddress } from '../net/address.js';

/** A socket Lua holds; closed explicitly or when the object is collected. */
export interface HeldSocket {
  fd: number;
}

const sockets = new FinalizationRegistry<{ fd: number }>((held) => {
  if (held.fd >= 0) {
    try {
      closeFd(held.fd);
    } catch {
      // already closed
    }
  }
});

/** Tracks `owner` so that its fd is closed when it is collected; `held` is the shared fd box. */
export function trackSocket(owner: object, held: HeldSocket): void {
  sockets.register(owner, held, owner);
}

export function closeHeld(held: HeldSocket): void {
  if (held.fd < 0) return;
  const fd = held.fd;
  held.fd = -1;
  try {
    closeFd(fd);
  } catch {
    // already closed
  }
}

/** A connected non-blocking socket of `type` to a numeric address, path or abstract name. */
export function connectTo(address: SocketAddress, type: 'dgram' | 'seqpacket' | 'stream'): number {
  const addon = addonFunctions();
  switch (address.kind) {
    case 'unix':
      return addon.connectDatagram('unix', type, Buffer.from(address.path, 'utf8'), 0);
    case 'abstract':
      return addon.connectDatagram('unix', type, Buffer.concat([Buffer.from([0]), address.name]), 0);
    case 'tcp':
      return addon.connectDatagram('inet', type, address.host, address.port);
  }
}

/** A host name resolved to a numeric address (numeric addresses and local sockets as they are). */
export async function resolveAddress(address: SocketAddress): Promise<SocketAddress> {
  if (address.kind !== 'tcp' || isNumericAddress(address)) return address;
  const r = await lookup(address.host);
  return { kind: 'tcp', host: r.address, port: address.port };
}

/** The system's message alone (the native errors read like `send(): Connection refused`). */
export function plainError(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const at = message.indexOf('): ');
  return at >= 0 ? message.slice(at + 3) : message;
}

/** An __index that finds methods by name (a null-prototype table: keys come from scripts). */
export function methodIndex(methods: Record<string, JSFunction>): JSFunction {
  const table = Object.freeze(Object.assign(Object.create(null) as Record<string, JSFunction>, methods));
  return (L: LuaState) => {
    const key =
      lua.lua_type(L, 2) === lua.LUA_TSTRING
        ? to_jsstring(lua.lua_tolstring(L, 2)!, undefined, undefined, true)
        : undefined;
    const method = key !== undefined ? table[key] : undefined;
    if (method === undefined) {
      lua.lua_pushnil(L);
      return 1;
    }
    lua.lua_pushjsfunction(L, method);
    return 1;
  };
}

/** Raises "Not enough parameters" / "Too many parameters" as myproxy's libraries do. */
export function checkArgCount(L: LuaState, min: number, max: number): void {
  const n = lua.lua_gettop(L);
  if (n < min) lauxlib.luaL_error(L, 'Not enough parameters');
  if (n > max) lauxlib.luaL_error(L, 'Too many parameters');
}
