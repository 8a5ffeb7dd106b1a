// Rendezvous hashing: which cluster node an account prefers. Every proxy process computes the same
// order from the same node list and account, so several instances agree without talking.
// The exact formula is in docs/cluster.md; it follows myproxy's (BLAKE2b-128 over the node's
// address ‖ account, first 8 bytes little-endian, smallest first) but includes the port.

import { isIPv4 } from 'node:net';
import sodium from 'libsodium-wrappers';
import type { SocketAddress } from '../net/address.js';

/** BLAKE2b output length: crypto_generichash_BYTES_MIN, as myproxy. */
const HASH_BYTES = 16;

/**
 * The bytes that identify a node in the hash: IPv4 address (4 bytes) or IPv6 address (16 bytes)
 * followed by the port (2 bytes, big-endian, as in sockaddr); a Unix socket's path bytes and a
 * terminating NUL; an abstract socket's name after a NUL byte (as in sun_path). Both socket forms
 * are what myproxy hashes. Host names must be resolved first.
 */
export function nodeIdentity(address: SocketAddress): Buffer {
  switch (address.kind) {
    case 'unix':
      // With the terminating NUL, as myproxy's sockaddr_un (its length counts the NUL).
      return Buffer.concat([Buffer.from(address.path, 'utf8'), Buffer.of(0)]);
    case 'abstract':
      return Buffer.concat([Buffer.of(0), address.name]);
    case 'tcp': {
      const host = address.host.replace(/%.*$/, '');
      const ip = isIPv4(host) ? ipv4Bytes(host) : ipv6Bytes(host);
      if (ip === undefined) throw new Error(`node address is not numeric: ${address.host}`);
      const port = Buffer.allocUnsafe(2);
      port.writeUInt16BE(address.port, 0);
      return Buffer.concat([ip, port]);
    }
  }
}

/** BLAKE2b-128(identity ‖ account), first 8 bytes read as an unsigned little-endian integer. */
export function rendezvousHash(identity: Uint8Array, account: Uint8Array): bigint {
  const input = new Uint8Array(identity.length + account.length);
  input.set(identity, 0);
  input.set(account, identity.length);
  const digest = sodium.crypto_generichash(HASH_BYTES, input, null);
  return Buffer.from(digest.buffer, digest.byteOffset, 8).readBigUInt64LE(0);
}

function ipv4Bytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

/** 16 bytes of an IPv6 text address ("::" and a trailing dotted IPv4 part allowed), or undefined. */
export function ipv6Bytes(text: string): Buffer | undefined {
  let groups: string[] = [];
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    if (!isIPv4(last)) return undefined;
    tail = [...ipv4Bytes(last)];
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string): string[] => (s === '' ? [] : s.split(':'));
  if (halves.length === 2) {
    const head = parse(halves[0]!);
    const rest = parse(halves[1]!);
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...Array<string>(fill).fill('0'), ...rest];
  } else {
    groups = parse(text);
  }
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    out.writeUInt16BE(parseInt(g, 16), i * 2);
  }
  if (tail.length === 4) out.set(tail, 12);
  return out;
}
