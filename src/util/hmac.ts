// HMAC-SHA-256 under a fixed key from one-shot digests: crypto.createHmac() builds an object (and
// checks its key) per call, which a pooled login paid for its pool key; crypto.hash() (Node 20.12
// and later) computes a digest in one call. HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)),
// RFC 2104, with K no longer than the 64-byte block.

import * as crypto from 'node:crypto';

const BLOCK = 64;

/**
 * crypto.hash() (Node 20.12 and later): a digest in one call, about half the cost of a Hash object.
 * Absent in older Node 20 releases, where callers take a Hash or Hmac object instead.
 */
export const oneShotHash = (crypto as { hash?: (algorithm: string, data: Uint8Array, encoding: 'buffer') => Buffer })
  .hash;

/** A function computing HMAC-SHA-256 under `key` (at most 64 bytes) of its arguments' concatenation. */
export function hmacSha256Under(key: Uint8Array): (...parts: Uint8Array[]) => Buffer {
  if (key.length > BLOCK) throw new RangeError('HMAC key longer than the SHA-256 block');
  if (oneShotHash === undefined) {
    const k = Buffer.from(key);
    return (...parts) => {
      const mac = crypto.createHmac('sha256', k);
      for (const p of parts) mac.update(p);
      return mac.digest();
    };
  }
  const hash = oneShotHash;
  const inner = Buffer.alloc(BLOCK, 0x36);
  const outer = Buffer.alloc(BLOCK, 0x5c);
  for (let i = 0; i < key.length; i++) {
    inner[i]! ^= key[i]!;
    outer[i]! ^= key[i]!;
  }
  return (...parts) =>
    hash('sha256', Buffer.concat([outer, hash('sha256', Buffer.concat([inner, ...parts]), 'buffer')]), 'buffer');
}
