// Outgoing connections to backends: TCP (with TCP_NODELAY), Unix path, or abstract socket
// (through the native addon, because Node pads abstract names), bounded by a connect timeout.

import { Socket, connect as netConnect } from 'node:net';
import { ErrorCodes, ProxyError } from '../util/errors.js';
import { formatAddress, type SocketAddress } from './address.js';
import { connectUnix } from './native.js';

export function connectSocket(address: SocketAddress, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    let socket: Socket;
    try {
      if (address.kind === 'abstract') {
        const fd = connectUnix(address.name, true);
        socket = new Socket({ fd, readable: true, writable: true });
        socket.pause();
        resolve(socket);
        return;
      }
      socket =
        address.kind === 'unix'
          ? netConnect({ path: address.path })
          : netConnect({ host: address.host, port: address.port, noDelay: true });
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
