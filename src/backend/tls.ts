// TLS to a backend: after the server's greeting and our SSLRequest, the TCP socket is handed to
// Node's TLS client; the login goes on inside it. Verification follows mysql_resolve's `tls.verify`.

import type { Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import type { BackendTlsOptions, SocketAddress } from '../net/address.js';
import { errorMessage } from '../util/errors.js';
import { BackendLoginError } from './login.js';

/**
 * Runs the TLS handshake over `socket` (which must have no unread bytes: the server waits for our
 * ClientHello). Rejects with a BackendLoginError naming the cause (unknown CA, host name mismatch,
 * handshake failure), which the client sees as 1043 "Connection error".
 */
export function startBackendTls(socket: Socket, options: BackendTlsOptions, timeoutMs: number): Promise<TLSSocket> {
  const name = options.servername;
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({
      socket,
      ...(isIP(name) === 0 ? { servername: name } : {}),
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
      ...(options.cert !== undefined ? { cert: options.cert } : {}),
      ...(options.key !== undefined ? { key: options.key } : {}),
      rejectUnauthorized: options.verify !== 'none',
      // 'ca' verifies the chain only; 'full' also the name the address was written with (an IP
      // literal is checked against the certificate's IP addresses).
      checkServerIdentity:
        options.verify === 'full' ? (_host, cert) => checkServerIdentity(name, cert) : () => undefined,
    });
    const timer = setTimeout(() => fail(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      tls.destroy();
      reject(new BackendLoginError(`TLS handshake with the server failed: ${errorMessage(e)}`, 'Connection error'));
    };
    tls.once('error', fail);
    tls.once('secureConnect', () => {
      clearTimeout(timer);
      tls.off('error', fail);
      tls.on('error', () => undefined);
      resolve(tls);
    });
  });
}

/** The caching_sha2_password key options of an address, as loginToBackend takes them. */
export function rsaLoginOptions(address: SocketAddress): { serverPublicKey?: Buffer; getServerPublicKey?: boolean } {
  if (address.kind !== 'tcp' || address.rsa === undefined) return {};
  const { serverPublicKey, getServerPublicKey } = address.rsa;
  return {
    ...(serverPublicKey !== undefined ? { serverPublicKey } : {}),
    ...(getServerPublicKey === true ? { getServerPublicKey } : {}),
  };
}
