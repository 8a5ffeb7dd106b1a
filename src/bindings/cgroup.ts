// The client's control group as Lua sees it (class "myproxy.cgroup"): client.cgroup.path,
// client.cgroup.xattr[name] (class "myproxy.cgroup.xattr") and client.cgroup.parent.
// The reading itself (pidfd-checked /proc, lgetxattr) lives in net/peer-identity.ts.

import { lua, lauxlib, type LuaState } from '../lua/fengari.js';
import { checkObject, defineClass, pushObject } from '../lua/class.js';
import { pushBytes, toBuffer, toText } from '../lua/convert.js';
import { cgroupParentPath, readCgroupXattr, readPeerCgroup, type CgroupRef } from '../net/peer-identity.js';
import type { ClientSession } from '../proxy/handler.js';
import { errorMessage } from '../util/errors.js';

export const CGROUP_CLASS = 'myproxy.cgroup';
export const CGROUP_XATTR_CLASS = 'myproxy.cgroup.xattr';

/** What a cgroup (and its xattr) userdata carries: a cgroup of one connection's client. */
interface LuaCgroup {
  readonly session: ClientSession;
  readonly ref: CgroupRef;
}

/**
 * The client's cgroup per connection, read on first access and kept (null: unknown). The entry
 * goes with the session object; nothing to release when the connection closes.
 */
const sessionCgroups = new WeakMap<ClientSession, CgroupRef | null>();

function sessionCgroup(session: ClientSession): CgroupRef | null {
  let ref = sessionCgroups.get(session);
  if (ref === undefined) {
    const { pid, pidfd } = session.peer;
    // Without a pidfd nothing guards against a recycled PID, so the cgroup stays unknown.
    ref = pid !== undefined && pidfd !== undefined && !session.closed ? readPeerCgroup(pid, pidfd) : null;
    sessionCgroups.set(session, ref);
  }
  return ref;
}

/** Push `client.cgroup`: a cgroup object, or nil when the cgroup is unknown. */
export function pushClientCgroup(L: LuaState, session: ClientSession): void {
  const ref = sessionCgroup(session);
  if (ref === null) lua.lua_pushnil(L);
  else pushObject(L, CGROUP_CLASS, { session, ref } satisfies LuaCgroup);
}

function checkLive(L: LuaState, idx: number, name: string): LuaCgroup {
  const c = checkObject<LuaCgroup>(L, idx, name);
  if (c.session.closed) return lauxlib.luaL_error(L, 'Stale object');
  return c;
}

const cgroupIndex = (L: LuaState): number => {
  const c = checkLive(L, 1, CGROUP_CLASS);
  switch (lua.lua_type(L, 2) === lua.LUA_TSTRING ? toText(L, 2) : undefined) {
    case 'path':
      pushBytes(L, c.ref.path);
      return 1;
    case 'xattr':
      pushObject(L, CGROUP_XATTR_CLASS, c);
      return 1;
    case 'parent': {
      const path = cgroupParentPath(c.ref.path);
      if (path === null) lua.lua_pushnil(L);
      else
        pushObject(L, CGROUP_CLASS, {
          session: c.session,
          ref: { hierarchy: c.ref.hierarchy, path },
        } satisfies LuaCgroup);
      return 1;
    }
    default:
      // As in CM4all myproxy: unknown keys of a cgroup are nil, not an error.
      lua.lua_pushnil(L);
      return 1;
  }
};

const xattrIndex = (L: LuaState): number => {
  const c = checkLive(L, 1, CGROUP_XATTR_CLASS);
  const name = toBuffer(L, 2);
  if (name === undefined) {
    lua.lua_pushnil(L);
    return 1;
  }
  let value: Buffer | null;
  try {
    value = readCgroupXattr(c.ref, name);
  } catch (e) {
    // '%s': the message is data, not a format string.
    return lauxlib.luaL_error(L, '%s', `cgroup.xattr: ${errorMessage(e)}`);
  }
  if (value === null) lua.lua_pushnil(L);
  else pushBytes(L, value);
  return 1;
};

function pushDescription(L: LuaState, prefix: string, c: LuaCgroup): void {
  pushBytes(L, Buffer.concat([Buffer.from(`${prefix}(`), c.ref.path, Buffer.from(')')]));
}

export function installCgroup(L: LuaState): void {
  defineClass(L, CGROUP_CLASS, {
    __index: cgroupIndex,
    __tostring: (L1) => {
      pushDescription(L1, 'cgroup', checkObject<LuaCgroup>(L1, 1, CGROUP_CLASS));
      return 1;
    },
  });
  defineClass(L, CGROUP_XATTR_CLASS, {
    __index: xattrIndex,
    __tostring: (L1) => {
      pushDescription(L1, 'cgroup.xattr', checkObject<LuaCgroup>(L1, 1, CGROUP_XATTR_CLASS));
      return 1;
    },
  });
}
