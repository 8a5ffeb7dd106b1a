/**
 * Typed wrapper around the project's N-API addon (`native/myproxy_native.c`,
 * built by `node-gyp rebuild` during `npm install` into
 * `build/Release/myproxy_native.node`).
 *
 * Node 20 cannot do these itself:
 * - abstract Unix sockets with the exact address length (Node 20 pads
 *   `'\0name'` with NULs to 108 bytes, so non-Node peers cannot reach it);
 * - replacing a stale socket file safely (never a live socket or a non-socket);
 * - reading the peer credentials (`SO_PEERCRED`) of a Unix socket;
 * - pidfds (`SO_PEERPIDFD`, `pidfd_open`) and extended attributes (`lgetxattr`).
 *
 * Errors: every addon function throws a plain `Error` (not a subclass) on a
 * failing system call. Its `code` property is the errno name (`'EACCES'`,
 * `'EADDRINUSE'`, `'EEXIST'`, `'ENOENT'`, `'ECONNREFUSED'`, `'ENAMETOOLONG'`,
 * `'EINVAL'`, ...), its `syscall` property the failing call (`'bind'`,
 * `'connect'`, ...), and its message reads like
 * `bind("/run/x.sock"): Permission denied` (abstract names are shown as
 * `"@name"`, non-printable bytes as `\xNN`). Invalid argument types throw a
 * `TypeError` with code `'ERR_INVALID_ARG_TYPE'`, out-of-range numbers a
 * `RangeError` with code `'ERR_OUT_OF_RANGE'`. Test the `code` property, as
 * with Node's own system errors.
 *
 * The addon is loaded on first use, so importing this module never fails;
 * the first call throws if the addon has not been built.
 *
 * @module
 */

import { createRequire } from 'node:module';
import type * as net from 'node:net';

/** Credentials of the process at the other end of a Unix socket (`SO_PEERCRED`). */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** The shape of the compiled addon's exports. */
interface NativeAddon {
  listenUnix(name: Uint8Array, abstract: boolean, backlog: number, mode: number, datagram?: boolean): number;
  listenInet(
    address: string,
    port: number,
    datagram: boolean,
    backlog: number,
    device?: string | null,
    reuse?: boolean,
  ): number;
  joinMulticast(fd: number, group: string): void;
  datagramListen(fd: number, onDatagram: (bytes: Buffer, uid: number, truncated: boolean) => void): DatagramHandle;
  datagramClose(handle: DatagramHandle): void;
  connectDatagram(
    family: 'unix' | 'inet',
    type: 'dgram' | 'seqpacket' | 'stream',
    address: string | Uint8Array,
    port: number,
  ): number;
  sendOn(fd: number, bytes: Uint8Array): number;
  streamWatch(fd: number, onData: (bytes: Buffer | null, code: string | null) => void): StreamWatchHandle;
  streamWatchRead(handle: StreamWatchHandle, on: boolean): void;
  streamUnwatch(handle: StreamWatchHandle): void;
  /**
   * Accepts a listener's connections as bare non-blocking fds: onAccept(fd, null, false) for each;
   * onAccept(-1, code, false) for one refused with `refusal` for want of descriptors;
   * onAccept(-1, code, true) when accepting halted until acceptWatchRun(handle, true).
   */
  acceptWatch(
    fd: number,
    refusal: Buffer,
    onAccept: (fd: number, code: string | null, halted: boolean) => void,
  ): AcceptWatchHandle;
  acceptWatchRun(handle: AcceptWatchHandle, on: boolean): void;
  acceptUnwatch(handle: AcceptWatchHandle): void;
  loopMetrics(): [iterations: number, events: number];
  connectUnix(name: Uint8Array, abstract: boolean): number;
  peerCredentials(fd: number): PeerCredentials | null;
  peerPidfd(fd: number): number | null;
  pidfdOpen(pid: number): number | null;
  peerIdentity(fd: number, out: Float64Array, usePeerPidfd: boolean): 0 | 1 | 2;
  getXattr(path: string | Uint8Array, name: string | Uint8Array): Buffer | null;
  closeFd(fd: number): void;
  dupFd(fd: number): number;
  fdLimit(): number;
  recvAvailable(fd: number, max: number): Buffer | null;
  fdQuiet(fd: number): boolean;
  openFdCount(): number;
  addonTestFail(point: number): void;
  addonLivePumps(): number;
  pumpStart(
    clientFd: number,
    serverFd: number,
    toServerFirst: Uint8Array | null,
    toClientFirst: Uint8Array | null,
    config: Uint8Array,
    stats: Float64Array | null,
    accountStats: Float64Array | null,
    record: Float64Array | null,
    onEvent: PumpEventHandler,
    keepServer?: boolean,
  ): PumpHandle;
  pumpRelease(handle: PumpHandle): void;
  pumpClose(handle: PumpHandle, lastClientBytes?: Uint8Array): void;
  pumpAbort(handle: PumpHandle): void;
  /** `toServer` true: the held command goes on as it came. */
  pumpResume(handle: PumpHandle, toServer: Uint8Array | true | null, toClient: Uint8Array | null): void;
  /** Intercepted packets that fit go into `buffer` (the event gets their length), not into new Buffers. */
  pumpInbox(buffer: Uint8Array): void;
  pumpStalledMs(handle: PumpHandle): number;
  pumpInfo(
    handle: PumpHandle,
  ): [inFlight: number, untracked: boolean, atBoundary: boolean, serverStatus: number] | null;
  trackerNew(
    config: Uint8Array,
    stats: Float64Array | null,
    accountStats: Float64Array | null,
    record: Float64Array | null,
    onEvent: ((type: number, arg: number) => void) | null,
  ): TrackerHandle;
  trackerClient(handle: TrackerHandle, bytes: Uint8Array): number;
  trackerClientForced(handle: TrackerHandle, bytes: Uint8Array): void;
  trackerServer(handle: TrackerHandle, bytes: Uint8Array): number;
  trackerPushLocal(handle: TrackerHandle): boolean;
  trackerLocalDue(handle: TrackerHandle): boolean;
  trackerPopLocal(handle: TrackerHandle): void;
  trackerInfo(
    handle: TrackerHandle,
  ): [
    inFlight: number,
    untracked: boolean,
    atBoundary: boolean,
    nextSeq: number,
    serverStatus: number,
    reusable: boolean,
  ];
  trackerLayout(): TrackerLayout;
  trackerMayBeKill(sql: Uint8Array, complete: boolean): boolean;
}

/** Opaque handle of a datagram receiver. */
export type DatagramHandle = { readonly __datagram: unique symbol };

/**
 * Opaque handle of a stream socket read by the addon (streamWatch): onData(bytes) for what arrived,
 * onData(null, null) at the end of the stream, onData(null, code) after a read error. Harmless
 * after streamUnwatch().
 */
export type StreamWatchHandle = { readonly __streamWatch: unique symbol };
export type AcceptWatchHandle = { readonly __acceptWatch: unique symbol };

/** Opaque handle of a running native byte pump (harmless after the pump is gone). */
export type PumpHandle = { readonly __pump: unique symbol };
/** Opaque handle of a response tracker (freed by the garbage collector). */
export type TrackerHandle = { readonly __tracker: unique symbol };

/**
 * What the pump tells JavaScript: (0, reason, clientBytes, serverBytes, serverFd) when the pair is
 * closed (serverFd >= 0: the server connection was kept for the pool and is the caller's now);
 * (1, packet, truncated) for an intercepted command; (2, reason) when the session became
 * untracked; (3) when a response finished (event mode: the record array holds it).
 */
export type PumpEventHandler = (type: number, a?: unknown, b?: unknown, c?: unknown, d?: unknown) => void;

/** Sizes of the arrays shared with the tracker (checked against the TypeScript constants). */
export interface TrackerLayout {
  readonly statsLength: number;
  readonly recordLength: number;
  readonly configBytes: number;
  readonly durationBuckets: number;
  readonly commandCounts: number;
  readonly durationBounds: readonly number[];
}

/**
 * Path of the addon relative to this module. `src/net/native.ts` (run by tsx)
 * and `dist/net/native.js` (compiled; dist/ mirrors src/) both resolve it to
 * `<project root>/build/Release/myproxy_native.node`. MYPROXY_NATIVE_ADDON names
 * another build (the AddressSanitizer one of `npm run test:asan`).
 */
const ADDON_PATH = process.env['MYPROXY_NATIVE_ADDON'] ?? '../../build/Release/myproxy_native.node';

const NOT_BUILT_MESSAGE = 'native addon not built: run npm install (needs python3, make, g++)';

let addon: NativeAddon | undefined;

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}

function load(): NativeAddon {
  if (addon !== undefined) return addon;
  const requireAddon = createRequire(import.meta.url);
  let loaded: unknown;
  try {
    loaded = requireAddon(ADDON_PATH);
  } catch (err) {
    if (errorCode(err) === 'MODULE_NOT_FOUND') {
      throw new Error(NOT_BUILT_MESSAGE, { cause: err });
    }
    // Present but unloadable (e.g. built for another Node ABI or architecture).
    const detail = err instanceof Error ? err.message : String(err);
    throw new Error(`native addon failed to load (${detail}): run npm rebuild`, { cause: err });
  }
  addon = loaded as NativeAddon;
  return addon;
}

/**
 * Creates a listening `AF_UNIX` stream socket (non-blocking, close-on-exec,
 * `SO_PASSCRED` set) and returns its fd, for the acceptor (`acceptWatch`).
 *
 * @param name - Socket path, or the abstract name without its leading NUL.
 *   At most 107 bytes, not empty; a path must not contain NUL bytes.
 * @param abstract - Bind the abstract name `\0name` with the exact address
 *   length (no NUL padding) instead of a path.
 * @param backlog - `listen()` backlog (the kernel caps it at somaxconn).
 * @param mode - Permission bits applied to a path socket with `chmod()` after
 *   binding (e.g. `0o666`); ignored for abstract sockets.
 * @param datagram - A bound SOCK_DGRAM socket instead (not listening).
 *
 * For a path, an existing socket file that refuses connections (left behind
 * by a dead process) is unlinked and replaced. A socket somebody listens on is
 * never taken over (`code` `'EADDRINUSE'`), and anything that is not a socket
 * is never removed (`code` `'EEXIST'`). Servers listening on an fd never
 * unlink their path on close: remove it yourself when done.
 *
 * @throws Error with `code` (`'EADDRINUSE'`, `'EEXIST'`, `'EACCES'`,
 *   `'ENOENT'`, `'ENAMETOOLONG'`, `'EINVAL'`, ...); see the module comment.
 */
export function listenUnix(
  name: Uint8Array,
  abstract: boolean,
  backlog: number,
  mode: number,
  datagram = false,
): number {
  return load().listenUnix(name, abstract, backlog, mode, datagram);
}

/**
 * Starts connecting a non-blocking, close-on-exec `AF_UNIX` stream socket to a
 * path or an abstract name (exact address length) and returns its fd, for
 * `new net.Socket({ fd, readable: true, writable: true })`.
 *
 * @param name - Socket path, or the abstract name without its leading NUL.
 * @param abstract - Connect to the abstract name `\0name`.
 * @throws Error with `code` `'ECONNREFUSED'` (nobody listening), `'ENOENT'`
 *   (no such path), `'EAGAIN'` (listener backlog full), `'EACCES'`,
 *   `'ENAMETOOLONG'`, `'EINVAL'`, ...
 */
export function connectUnix(name: Uint8Array, abstract: boolean): number {
  return load().connectUnix(name, abstract);
}

/**
 * Returns the pid/uid/gid of the peer of a connected Unix socket, or `null`
 * when the fd is not an `AF_UNIX` socket (e.g. TCP, where `SO_PEERCRED`
 * would report pid 0 / uid 4294967295) or the kernel reports pid 0 (no
 * credentials known). The values are those of the peer when it called
 * `connect()` (for a listening socket: when `listen()` was called).
 *
 * @param fd - A socket fd, e.g. {@link fdOf}(socket).
 * @throws Error with `code` `'EBADF'` / `'ENOTSOCK'` for a bad fd.
 */
export function peerCredentials(fd: number): PeerCredentials | null {
  return load().peerCredentials(fd);
}

/**
 * Returns a pidfd (close-on-exec) of the process at the other end of a
 * connected Unix socket (`SO_PEERPIDFD`, Linux ≥ 6.5), or `null` when the fd
 * is not an `AF_UNIX` socket or the kernel knows no live peer process. Newer
 * kernels may return a pidfd of a process that has already exited: its
 * `/proc/self/fdinfo` `Pid:` line reads -1. The caller owns the pidfd and
 * must {@link closeFd} it.
 *
 * @throws Error with `code` `'ENOPROTOOPT'` on kernels without
 *   `SO_PEERPIDFD`, `'EBADF'` / `'ENOTSOCK'` for a bad fd, `'EMFILE'`, ...
 */
export function peerPidfd(fd: number): number | null {
  return load().peerPidfd(fd);
}

/**
 * `pidfd_open(pid, 0)`: a pidfd (close-on-exec) of the process `pid` now, or
 * `null` when there is no such process (`ESRCH`) or the kernel has no pidfds
 * (`ENOSYS`). The caller owns the pidfd and must {@link closeFd} it.
 *
 * @throws Error with `code` (`'EMFILE'`, ...) on other failures.
 */
export function pidfdOpen(pid: number): number | null {
  return load().pidfdOpen(pid);
}

/**
 * {@link peerCredentials} and then {@link peerPidfd} (or, with `usePeerPidfd`
 * false, {@link pidfdOpen}) in one call, as an accepted connection needs
 * them: one `getsockname()` and no object made. Returns 0 when the fd is not
 * an `AF_UNIX` socket or has no peer credentials; otherwise fills `out` (a
 * Float64Array of 4) with pid, uid, gid and the pidfd (-1: none) and returns
 * 1, or 2 when the kernel lacks `SO_PEERPIDFD` (the pidfd then comes from
 * `pidfd_open(pid)`). The caller owns the pidfd.
 *
 * @throws Error with `code` (`'EMFILE'`, `'EBADF'`, ...) on other failures.
 */
export function peerIdentity(fd: number, out: Float64Array, usePeerPidfd: boolean): 0 | 1 | 2 {
  return load().peerIdentity(fd, out, usePeerPidfd);
}

/**
 * `lgetxattr(path, name)` (symbolic links are not followed): the raw value
 * (at most 4096 bytes), or `null` when the attribute or the file does not
 * exist or the file system has no extended attributes (`ENODATA`, `ENOENT`,
 * `ENOTSUP`). Strings are passed as UTF-8; Uint8Arrays as they are.
 *
 * @throws Error with `code` `'ERANGE'` (value longer than 4096 bytes),
 *   `'EACCES'`, `'ENAMETOOLONG'`, `'EINVAL'` (a NUL byte in path or name), ...
 */
export function getXattr(path: string | Uint8Array, name: string | Uint8Array): Buffer | null {
  return load().getXattr(path, name);
}

/**
 * Closes a raw fd (for error paths, before it was handed to a net.Server or
 * net.Socket, which would otherwise close it).
 *
 * @throws Error with `code` `'EBADF'` if `fd` is not open.
 */
export function closeFd(fd: number): void {
  load().closeFd(fd);
}

/**
 * Returns the fd behind a connected net.Socket or a listening net.Server
 * (Node's internal `_handle.fd`).
 *
 * @throws Error if the socket/server has no handle or no fd (not yet
 *   connected or listening, already closed, or a platform without fds).
 */
export function fdOf(socket: net.Socket | net.Server): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new Error('socket has no file descriptor (not connected/listening, or closed)');
  }
  return fd;
}

/** A close-on-exec duplicate of `fd` (so the socket outlives the handle that owns `fd`). */
export function dupFd(fd: number): number {
  return load().dupFd(fd);
}

/** The soft limit on open file descriptors (RLIMIT_NOFILE). */
export function fdLimit(): number {
  return load().fdLimit();
}

/** How many file descriptors this process has open now (reads /proc/self/fd: not for hot paths). */
export function openFdCount(): number {
  return load().openFdCount();
}

/** The native addon itself, for the relays and the tracker (their typed wrappers live there). */
export function addonFunctions(): NativeAddon {
  return load();
}

export type { NativeAddon };
