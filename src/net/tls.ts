// Client TLS termination: a listener's certificate files made into a SecureContext (again on
// SIGHUP, keeping the old one when the new files are bad), the switch of an accepted socket to TLS
// after the client's SSLRequest, and what policy sees of the result (client.tls).

import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import {
  createSecureContext,
  Server as TlsServer,
  TLSSocket,
  type PeerCertificate,
  type SecureContextOptions,
} from 'node:tls';
import { ErrorCodes, ProxyError, errorMessage } from '../util/errors.js';

/** mysql_listen's `tls` table: file paths (absolute by now) and whether plain clients are refused. */
export interface ServerTlsFiles {
  readonly cert: string;
  readonly key: string;
  /** CA bundle for client certificates: clients are asked for one, and one they send must verify. */
  readonly ca: string | undefined;
  readonly require: boolean;
}

/** A certificate file that cannot be used; the message names the file. */
export class TlsConfigError extends ProxyError {
  constructor(message: string) {
    super(ErrorCodes.TLS_CONFIG, message);
  }
}

/** The TLS handshake with a client failed (it left, sent no TLS, or its certificate did not verify). */
export class TlsHandshakeError extends ProxyError {
  constructor(message: string) {
    super(ErrorCodes.TLS_HANDSHAKE, message);
  }
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new TlsConfigError(`Cannot read TLS ${what} file ${path}: ${errorMessage(e)}`);
  }
}

/** Reads and checks the files one by one (so an error names the one at fault), then tries them together. */
function loadContext(files: ServerTlsFiles): SecureContextOptions {
  const cert = readPem(files.cert, 'certificate');
  const key = readPem(files.key, 'key');
  const ca = files.ca === undefined ? undefined : readPem(files.ca, 'CA');
  try {
    new X509Certificate(cert);
  } catch (e) {
    throw new TlsConfigError(`TLS certificate file ${files.cert} holds no usable certificate: ${errorMessage(e)}`);
  }
  try {
    createPrivateKey(key);
  } catch (e) {
    throw new TlsConfigError(`TLS key file ${files.key} holds no usable private key: ${errorMessage(e)}`);
  }
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch (e) {
      throw new TlsConfigError(`TLS CA file ${files.ca!} holds no usable certificate: ${errorMessage(e)}`);
    }
  }
  const options: SecureContextOptions = { cert, key, ...(ca !== undefined ? { ca } : {}) };
  try {
    createSecureContext(options);
    return options;
  } catch (e) {
    throw new TlsConfigError(`TLS key file ${files.key} does not fit certificate ${files.cert}: ${errorMessage(e)}`);
  }
}

/** What client.tls shows of a session's TLS. */
export interface TlsInfo {
  readonly version: string;
  readonly cipher: string;
  readonly peerCertificate: PeerCertificateInfo | undefined;
}

export interface PeerCertificateInfo {
  /** One-line distinguished names, e.g. "CN=app1,O=Example" (RFC 4514 order as OpenSSL prints it). */
  readonly subject: string;
  readonly issuer: string;
  /** Lower-case hex, no colons. */
  readonly fingerprintSha256: string;
  /** The end of validity as an ISO 8601 UTC time, e.g. "2027-01-01T00:00:00Z". */
  readonly notAfter: string;
}

/** A listener's TLS: the current context (replaced on reload) and the switch of one socket to TLS. */
export class ServerTls {
  readonly files: ServerTlsFiles;
  /**
   * Never listens: accepted sockets are handed to it after their SSLRequest. Going through a
   * tls.Server (rather than a bare TLSSocket) gets Node's own verification of client certificates.
   */
  readonly #server: TlsServer;
  /** Upgrades in progress, by the client's "address:port" (unique among connected sockets). */
  readonly #pending = new Map<string, (socket: TLSSocket | Error) => void>();

  /** Throws TlsConfigError naming the file at fault. */
  constructor(files: ServerTlsFiles) {
    this.files = files;
    this.#server = new TlsServer({
      ...loadContext(files),
      // A certificate is asked for where a CA is configured; one that is sent must verify (checked
      // in upgrade(): Node would also refuse clients without one, which policy may want to allow).
      requestCert: files.ca !== undefined,
      rejectUnauthorized: false,
      // The session's handshake_timeout covers the TLS handshake.
      handshakeTimeout: 0,
    });
    this.#server.on('secureConnection', (socket: TLSSocket) => this.#settle(socket, socket));
    this.#server.on('tlsClientError', (e: Error, socket: TLSSocket) => {
      this.#settle(socket, new TlsHandshakeError(`TLS handshake failed: ${e.message}`));
    });
  }

  get require(): boolean {
    return this.files.require;
  }

  /**
   * Read the files again (SIGHUP). Sessions keep the context they started with; new ones get the
   * new one. Throws TlsConfigError and keeps the old context when the files are bad.
   */
  reload(): void {
    this.#server.setSecureContext(loadContext(this.files));
  }

  /**
   * TLS over an accepted client socket after its SSLRequest. `leftover` is what was read after
   * the SSLRequest (the start of the ClientHello, sent without waiting). Resolves when the
   * handshake is done; rejects with TlsHandshakeError (the socket is destroyed then).
   */
  upgrade(socket: Socket, leftover: Buffer | null): Promise<TLSSocket> {
    if (leftover !== null && leftover.length > 0) socket.unshift(leftover);
    const key = peerKey(socket);
    return new Promise<TLSSocket>((resolve, reject) => {
      const onClose = (): void =>
        this.#settle(socket, new TlsHandshakeError('TLS handshake failed: connection closed'));
      socket.once('close', onClose);
      this.#pending.set(key, (result) => {
        socket.off('close', onClose);
        if (result instanceof Error) {
          socket.destroy();
          reject(result);
          return;
        }
        if (this.files.ca !== undefined && !result.authorized && hasCertificate(result.getPeerCertificate())) {
          result.destroy();
          reject(new TlsHandshakeError(`client certificate refused: ${String(result.authorizationError)}`));
          return;
        }
        result.pause();
        resolve(result);
      });
      this.#server.emit('connection', socket);
    });
  }

  #settle(socket: Socket, result: TLSSocket | Error): void {
    const key = peerKey(socket);
    const done = this.#pending.get(key);
    if (done === undefined) return;
    this.#pending.delete(key);
    done(result);
  }
}

function peerKey(socket: Socket): string {
  return `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}|${socket.localPort ?? ''}`;
}

/** client.tls of a session over `socket`. */
export function tlsInfo(socket: TLSSocket): TlsInfo {
  const cert = socket.getPeerCertificate();
  return {
    version: socket.getProtocol() ?? 'unknown',
    cipher: socket.getCipher().standardName,
    peerCertificate: hasCertificate(cert) ? certificateInfo(cert) : undefined,
  };
}

/** Node returns an empty object (typed as a certificate) when the peer sent none. */
function hasCertificate(cert: PeerCertificate): boolean {
  return (cert as Partial<PeerCertificate>).raw !== undefined;
}

function certificateInfo(cert: PeerCertificate): PeerCertificateInfo {
  const x = new X509Certificate(cert.raw);
  return {
    subject: oneLineName(x.subject),
    issuer: oneLineName(x.issuer),
    fingerprintSha256: createHash('sha256').update(cert.raw).digest('hex'),
    notAfter: new Date(x.validTo).toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
}

/** Node gives names one attribute per line; policies compare one-line "CN=x,O=y" text. */
function oneLineName(name: string): string {
  return name
    .split('\n')
    .filter((part) => part.length > 0)
    .join(',');
}
