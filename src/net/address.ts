// Backend and listener addresses: TCP (IPv4/IPv6/host name), Unix socket path, abstract socket.
// Text forms follow myproxy: '/path', '@abstract', '1.2.3.4', '1.2.3.4:3307', '[::1]:3307', 'host:port'.

import { isIPv4, isIPv6 } from 'node:net';
import { ErrorCodes, ProxyError } from '../util/errors.js';

export const DEFAULT_MYSQL_PORT = 3306;

/** TLS to a backend (mysql_resolve's `tls` option). */
export interface BackendTlsOptions {
  /** PEM CA certificates to verify the server with (Node's default CAs when absent). */
  readonly ca?: Buffer;
  /** PEM client certificate and key, for servers that ask for one. */
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** 'full': chain and host name; 'ca': chain only; 'none': no verification (encryption only). */
  readonly verify: 'full' | 'ca' | 'none';
  /** The host name as written (checked against the certificate; kept when the name is resolved). */
  readonly servername: string;
}

/** How caching_sha2_password may protect a password over plain TCP (mysql_resolve options). */
export interface BackendRsaOptions {
  /** A pinned PEM public key of the server (`server_public_key`). */
  readonly serverPublicKey?: Buffer;
  /** Ask the server for its key (`get_server_public_key = true`): trusts the network. */
  readonly getServerPublicKey?: boolean;
}

export type SocketAddress =
  | {
      readonly kind: 'tcp';
      readonly host: string;
      readonly port: number;
      readonly tls?: BackendTlsOptions;
      readonly rsa?: BackendRsaOptions;
    }
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'abstract'; readonly name: Buffer };

export class AddressError extends ProxyError {
  constructor(message: string) {
    super(ErrorCodes.ADDRESS, message);
  }
}

/**
 * Parse an address text. Host names are kept as names (`isNumericHost` tells them apart);
 * they are resolved by the caller. Throws AddressError on malformed input.
 */
export function parseAddress(text: string, defaultPort = DEFAULT_MYSQL_PORT): SocketAddress {
  if (text.length === 0) throw new AddressError('Empty address');
  if (text.includes('\0')) throw new AddressError('Address contains a NUL byte');
  if (text.startsWith('/')) return { kind: 'unix', path: text };
  if (text.startsWith('@')) {
    if (text.length === 1) throw new AddressError('Empty abstract socket name');
    return { kind: 'abstract', name: Buffer.from(text.slice(1), 'utf8') };
  }
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new AddressError(`Malformed address: ${text}`);
    const host = text.slice(1, close);
    if (!isIPv6(host.replace(/%.*$/, ''))) throw new AddressError(`Malformed IPv6 address: ${text}`);
    const rest = text.slice(close + 1);
    if (rest === '') return { kind: 'tcp', host, port: defaultPort };
    if (!rest.startsWith(':')) throw new AddressError(`Malformed address: ${text}`);
    return { kind: 'tcp', host, port: parsePort(rest.slice(1), text) };
  }
  if (isIPv6(text.replace(/%.*$/, ''))) return { kind: 'tcp', host: text, port: defaultPort };
  const colon = text.lastIndexOf(':');
  if (colon >= 0) {
    const host = text.slice(0, colon);
    if (host.length === 0 || host.includes(':')) throw new AddressError(`Malformed address: ${text}`);
    return { kind: 'tcp', host, port: parsePort(text.slice(colon + 1), text) };
  }
  return { kind: 'tcp', host: text, port: defaultPort };
}

function parsePort(s: string, text: string): number {
  if (!/^[0-9]{1,5}$/.test(s)) throw new AddressError(`Malformed port in address: ${text}`);
  const port = Number(s);
  if (port < 1 || port > 65535) throw new AddressError(`Port out of range in address: ${text}`);
  return port;
}

/**
 * A listening address as myproxy's prometheus_listen() and control_listen() take it: '/path',
 * '@abstract', '*' or '*:port' (every address: IPv6 and IPv4), a numeric IPv4 or IPv6 address with
 * an optional port ('[::1]:9100'). Host names are not resolved here (myproxy refuses them too, with
 * getaddrinfo's message). The wildcard has host ''.
 */
export function parseListenAddress(text: string, defaultPort: number): SocketAddress {
  if (text === '*') return { kind: 'tcp', host: '', port: defaultPort };
  if (text.startsWith('*:')) return { kind: 'tcp', host: '', port: parsePort(text.slice(2), text) };
  const a = parseAddress(text, defaultPort);
  if (!isNumericAddress(a) && a.kind === 'tcp') {
    throw new AddressError(
      `Failed to resolve ${JSON.stringify(a.host)}:${JSON.stringify(String(a.port))}: Name or service not known`,
    );
  }
  return a;
}

/** True for numeric IP hosts and local sockets; false for a TCP address with a host name. */
export function isNumericAddress(a: SocketAddress): boolean {
  return a.kind !== 'tcp' || isIPv4(a.host) || isIPv6(a.host.replace(/%.*$/, ''));
}

/** The readable form used in logs and by Lua's tostring(). */
export function formatAddress(a: SocketAddress): string {
  switch (a.kind) {
    case 'unix':
      return a.path;
    case 'abstract':
      return '@' + a.name.toString('utf8');
    case 'tcp':
      if (a.host === '') return `*:${a.port}`;
      return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
  }
}
