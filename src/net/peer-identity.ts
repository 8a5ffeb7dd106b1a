/**
 * Who the process at the other end of a Unix socket is: its credentials and a pidfd, taken at
 * accept, and what `/proc/PID/cgroup` and the cgroup file system say about it.
 *
 * A PID alone is not an identity: the client may exit and its PID be given to another process
 * before we read `/proc/PID/...`. So every `/proc/PID` read is bracketed by checks that the pidfd
 * taken at accept still refers to PID (`/proc/self/fdinfo/<pidfd>` `Pid:` reads -1 once the
 * process has exited and been reaped, and a PID cannot be reused before that). Data read while
 * the check fails is discarded: the caller gets `null` ("unknown"), never another process's data.
 *
 * Pure Node plus the addon (src/net/native.ts); no Lua.
 *
 * @see https://man7.org/linux/man-pages/man2/pidfd_open.2.html
 * @see https://man7.org/linux/man-pages/man7/cgroups.7.html ("/proc/[pid]/cgroup")
 * @module
 */

import { readFileSync } from 'node:fs';
import { closeFd, getXattr, peerIdentity, peerPidfd, pidfdOpen } from './native.js';

/** The peer of a Unix socket as seen at accept. */
export interface PeerProcess {
  /** From `SO_PEERCRED`: the peer's ids when it called connect(). */
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /**
   * A pidfd of that very process (`SO_PEERPIDFD`, or `pidfd_open(pid)` on kernels before 6.5);
   * undefined when neither was possible (the peer had already exited, or no pidfd support).
   * The caller owns it: {@link closePidfd} it when the connection ends.
   */
  readonly pidfd: number | undefined;
}

/** Kernels before 6.5 answer SO_PEERPIDFD with ENOPROTOOPT; remember that and skip the call. */
let soPeerPidfdSupported = true;

/**
 * Credentials and pidfd of the peer of a connected socket, or `null` when the socket is not an
 * `AF_UNIX` socket (TCP) or the kernel knows no credentials.
 *
 * @throws Error with `code` for a bad fd or when no fd is left (`EMFILE`).
 */
export function readPeerIdentity(socketFd: number): PeerProcess | null {
  // One native call per accepted connection (what peerCredentials() and openPeerPidfd() do).
  const status = peerIdentity(socketFd, identityScratch, soPeerPidfdSupported);
  if (status === 0) return null;
  if (status === 2) soPeerPidfdSupported = false;
  // Integers out of a Float64Array are doubles: `| 0` and `>>> 0` keep them small integers
  // (unboxed in the objects a session keeps) where they fit, as uid and gid normally do.
  const pidfd = identityScratch[3]! | 0;
  return {
    pid: identityScratch[0]! | 0,
    uid: identityScratch[1]! >>> 0,
    gid: identityScratch[2]! >>> 0,
    pidfd: pidfd >= 0 ? pidfd : undefined,
  };
}

/** Where peerIdentity() writes pid, uid, gid and pidfd (read at once: one scratch array serves all). */
const identityScratch = new Float64Array(4);

/**
 * A pidfd of the socket's peer process `pid`: `SO_PEERPIDFD` when the kernel has it (race-free:
 * the kernel recorded the process at connect()), otherwise `pidfd_open(pid)` right now (correct
 * unless the peer exited and its PID was reused between its connect() and this call), otherwise
 * undefined. No fallback when SO_PEERPIDFD says the peer is gone: pidfd_open() could then open
 * an unrelated process that got the PID.
 *
 * @throws Error with `code` on unexpected failures (`EMFILE`, `EBADF`, ...).
 */
export function openPeerPidfd(socketFd: number, pid: number): number | undefined {
  if (soPeerPidfdSupported) {
    try {
      return peerPidfd(socketFd) ?? undefined;
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'ENOPROTOOPT') throw e;
      soPeerPidfdSupported = false;
    }
  }
  return pidfdOpen(pid) ?? undefined;
}

/** Closes a pidfd from {@link readPeerIdentity}; never throws. */
export function closePidfd(pidfd: number): void {
  try {
    closeFd(pidfd);
  } catch {
    // Already closed: nothing to release.
  }
}

/**
 * The PID a pidfd refers to, from the `Pid:` line of `/proc/self/fdinfo/<pidfd>`; undefined when
 * the process has exited and been reaped (the line reads -1), when the process lives in a PID
 * namespace we cannot see (0), or when `pidfd` is not an open pidfd (no such line).
 */
export function pidfdPid(pidfd: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/self/fdinfo/${pidfd}`, 'latin1');
  } catch {
    return undefined;
  }
  const m = /^Pid:\s*(-?\d+)\s*$/m.exec(text);
  if (m === null) return undefined;
  const pid = Number(m[1]);
  return pid > 0 ? pid : undefined;
}

/**
 * `/proc/<pid>/<name>`, read synchronously (≈10 µs; the async API takes 10x as long and
 * milliseconds under load), or `null` when it cannot be attributed to the process `pidfd` refers
 * to: that process has exited (before or during the read), or the file cannot be read.
 */
export function readProcFile(pid: number, pidfd: number, name: string): Buffer | null {
  if (!Number.isInteger(pid) || pid <= 0 || pidfdPid(pidfd) !== pid) return null;
  let data: Buffer;
  try {
    data = readFileSync(`/proc/${pid}/${name}`);
  } catch {
    return null;
  }
  // The PID cannot have been reused while the pidfd still shows it: the data is that process's.
  return pidfdPid(pidfd) === pid ? data : null;
}

// ---------------------------------------------------------------------------
// cgroups

/** Which hierarchy a cgroup path belongs to: cgroup v2, or the v1 `name=systemd` one. */
export type CgroupHierarchy = 'unified' | 'systemd';

/** A control group: a path (bytes, starting with `/`) in a hierarchy. */
export interface CgroupRef {
  readonly hierarchy: CgroupHierarchy;
  readonly path: Buffer;
}

const SLASH = 0x2f;
const COLON = 0x3a;

/**
 * The process's cgroup from the contents of `/proc/PID/cgroup` (lines
 * `hierarchy-ID:controller-list:path`): the cgroup v2 line `0::/path`, or, when there is none
 * (a cgroup v1 system), the `name=systemd` line. `null` when neither is present. On a hybrid
 * system both exist and the `0::` line wins. Paths are bytes: cgroup names need not be UTF-8.
 */
export function parseCgroupFile(data: Uint8Array): CgroupRef | null {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let systemd: Buffer | undefined;
  let start = 0;
  while (start < buf.length) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    const line = buf.subarray(start, end);
    start = end + 1;
    const c1 = line.indexOf(COLON);
    const c2 = c1 < 0 ? -1 : line.indexOf(COLON, c1 + 1);
    if (c2 < 0) continue;
    const path = line.subarray(c2 + 1);
    if (path[0] !== SLASH) continue;
    const id = line.toString('latin1', 0, c1);
    const controllers = line.toString('latin1', c1 + 1, c2);
    if (id === '0' && controllers === '') return { hierarchy: 'unified', path: Buffer.from(path) };
    if (systemd === undefined && controllers.split(',').includes('name=systemd')) systemd = Buffer.from(path);
  }
  return systemd !== undefined ? { hierarchy: 'systemd', path: systemd } : null;
}

/** The cgroup of the process `pidfd` refers to (which must be `pid`), or `null` when unknown. */
export function readPeerCgroup(pid: number, pidfd: number): CgroupRef | null {
  const data = readProcFile(pid, pidfd, 'cgroup');
  return data === null ? null : parseCgroupFile(data);
}

/** The parent cgroup's path; `null` for the root `/`. */
export function cgroupParentPath(path: Buffer): Buffer | null {
  if (path.length <= 1) return null;
  let end = path.length;
  while (end > 1 && path[end - 1] === SLASH) end--; // tolerate a trailing slash
  const i = path.lastIndexOf(SLASH, end - 1);
  if (i <= 0) return Buffer.from('/');
  return Buffer.from(path.subarray(0, i));
}

/** True when a `..` segment could lead the path out of the cgroup file system. */
export function hasDotDotSegment(path: Uint8Array): boolean {
  return Buffer.from(path.buffer, path.byteOffset, path.byteLength).toString('latin1').split('/').includes('..');
}

/** Where each hierarchy is mounted when /proc/self/mountinfo does not say. */
const DEFAULT_MOUNT: Readonly<Record<CgroupHierarchy, string>> = {
  unified: '/sys/fs/cgroup',
  systemd: '/sys/fs/cgroup/systemd',
};

/** Undoes mountinfo's octal escapes (`\040` for a space, ...). */
function unescapeMountField(field: string): Buffer {
  return Buffer.from(
    field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    'latin1',
  );
}

/**
 * The mount points of the cgroup hierarchies, from the contents of `/proc/self/mountinfo`: the
 * first `cgroup2` mount and the first `cgroup` mount with the `name=systemd` option, each only
 * when it shows the hierarchy's root. `/sys/fs/cgroup` on a pure cgroup v2 system;
 * `/sys/fs/cgroup/unified` and `/sys/fs/cgroup/systemd` on a hybrid one.
 */
export function parseCgroupMounts(mountinfo: string): Partial<Record<CgroupHierarchy, Buffer>> {
  const found: Partial<Record<CgroupHierarchy, Buffer>> = {};
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields[3] !== '/') continue;
    const fstype = fields[dash + 1];
    const superOptions = (fields[dash + 3] ?? '').split(',');
    const mountPoint = unescapeMountField(fields[4] ?? '');
    if (fstype === 'cgroup2') found.unified ??= mountPoint;
    else if (fstype === 'cgroup' && superOptions.includes('name=systemd')) found.systemd ??= mountPoint;
  }
  return found;
}

let mounts: Partial<Record<CgroupHierarchy, Buffer>> | undefined;

/** The directory of the hierarchy's root (mountinfo is read once per process). */
export function cgroupMountPoint(hierarchy: CgroupHierarchy): Buffer {
  if (mounts === undefined) {
    try {
      mounts = parseCgroupMounts(readFileSync('/proc/self/mountinfo', 'latin1'));
    } catch {
      mounts = {};
    }
  }
  return mounts[hierarchy] ?? Buffer.from(DEFAULT_MOUNT[hierarchy]);
}

/** The cgroup's directory in the cgroup file system, e.g. `/sys/fs/cgroup/user.slice`. */
export function cgroupDirectory(ref: CgroupRef): Buffer {
  const root = cgroupMountPoint(ref.hierarchy);
  return ref.path.length <= 1 ? root : Buffer.concat([root, ref.path]);
}

const USER_PREFIX = Buffer.from('user.');

/**
 * An extended attribute of the cgroup's directory (lgetxattr, at most 4096 bytes), or `null`
 * when it is not set. A name without a dot gets the `user.` prefix (`account` →
 * `user.account`).
 *
 * @throws Error when the path has a `..` segment, or with `code` when lgetxattr fails otherwise
 *   (`ERANGE` for a longer value, `EACCES`, `EINVAL` for a NUL byte in the name, ...).
 */
export function readCgroupXattr(ref: CgroupRef, name: Uint8Array): Buffer | null {
  if (hasDotDotSegment(ref.path)) throw new Error('cgroup path contains a ".." segment');
  const fullName = name.includes(0x2e) ? name : Buffer.concat([USER_PREFIX, name]);
  return getXattr(cgroupDirectory(ref), fullName);
}
