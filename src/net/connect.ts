// Outgoing connections to backends: TCP (with TCP_NODELAY), Unix path, or abstract socket
// (through the native addon, because Node pads abstract names), bounded by a connect timeout.

import { Socket, connect as netConnect } from 'node:net';
import { ErrorCodes, ProxyError } from '../util/errors.js';
import { formatAddress, type SocketAddress } from './address.js';
import { connectUnix } from './native.js';

/** A Unix socket address: a path or an abstract name. */
export type UnixSocketAddress = Exclude<SocketAddress, { kind: 'tcp' }>;

/**
 * Connects a Unix socket now and returns its fd (non-blocking, close-on-exec; the caller owns it).
 * A Unix socket connects at once or not at all (there is no handshake to wait for): net.connect()
 * would take a trip through the event loop, a connect request and a writability check for the
 * same result. Throws ProxyError CONNECT_FAILED, as connectSocket() rejects.
 */
export function connectUnixFd(address: UnixSocketAddress): number {
  try {
    return address.kind === 'abstract'
      ? connectUnix(address.name, true)
      : connectUnix(unixPathBytes(address.path), false);
  } catch (e) {
    throw new ProxyError(
      ErrorCodes.CONNECT_FAILED,
      `connect to ${formatAddress(address)}: ${connectFailure(address, e)}`,
    );
  }
}

export function connectSocket(address: SocketAddress, timeoutMs: number): Promise<Socket> {
  if (address.kind !== 'tcp') {
    // connectUnixFd() throwing in the executor rejects the promise.
    return new Promise<Socket>((resolve) => {
      const socket = new Socket({ fd: connectUnixFd(address), readable: true, writable: true });
      socket.pause();
      resolve(socket);
    });
  }
  return new Promise<Socket>((resolve, reject) => {
    let socket: Socket;
    try {
      socket = netConnect({ host: address.host, port: address.port, noDelay: true });
    } catch (e) {
      reject(
        new ProxyError(ErrorCodes.CONNECT_FAILED, `connect to ${formatAddress(address)}: ${(e as Error).message}`),
      );
      return;
    }
    socket.pause();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ProxyError(ErrorCodes.CONNECT_TIMEOUT, `connect to ${formatAddress(address)}: timed out`));
    }, timeoutMs);
    const onError = (e: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ProxyError(ErrorCodes.CONNECT_FAILED, `connect to ${formatAddress(address)}: ${e.message}`));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** The path as the bytes connect() gets (cached: sessions connect to the same few servers). */
const pathBytes = new Map<string, Buffer>();
function unixPathBytes(path: string): Buffer {
  let b = pathBytes.get(path);
  if (b === undefined) {
    if (pathBytes.size >= 256) pathBytes.clear();
    b = Buffer.from(path);
    pathBytes.set(path, b);
  }
  return b;
}

/** A failed Unix connect in the words Node uses ("connect ENOENT /run/db.sock"), for the log. */
function connectFailure(address: SocketAddress, e: unknown): string {
  const code = (e as { code?: unknown }).code;
  if (address.kind === 'unix' && typeof code === 'string' && code.startsWith('E'))
    return `connect ${code} ${address.path}`;
  return (e as Error).message;
}
