// mysql_native_password: SHA1(password) XOR SHA1(scramble ‖ SHA1(SHA1(password))).
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html

import * as crypto from 'node:crypto';
import { oneShotHash } from '../util/hmac.js';

export function sha1(...parts: Uint8Array[]): Buffer {
  if (oneShotHash !== undefined)
    return oneShotHash('sha1', parts.length === 1 ? parts[0]! : Buffer.concat(parts), 'buffer');
  const h = crypto.createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * The client's answer to a scramble, computed from SHA1(password) (so `password_sha1` suffices).
 * Only the first 20 bytes of the scramble are used, as the server does.
 */
export function nativePasswordResponse(passwordSha1: Uint8Array, scramble: Uint8Array): Buffer {
  const stage2 = sha1(passwordSha1);
  const mask = sha1(scramble.subarray(0, 20), stage2);
  const out = Buffer.allocUnsafe(20);
  for (let i = 0; i < 20; i++) out[i] = passwordSha1[i]! ^ mask[i]!;
  return out;
}

/**
 * A stored mysql_native_password hash as MySQL keeps it: `''` (the account has no password),
 * `*` + 40 hex digits (the authentication_string, any case), or the raw 20-byte
 * SHA1(SHA1(password)). Returns 'empty', the 20 raw bytes, or undefined when malformed.
 */
export function parseStoredNativeHash(stored: Uint8Array): Buffer | 'empty' | undefined {
  if (stored.length === 0) return 'empty';
  if (stored.length === 20) return Buffer.from(stored);
  if (stored.length === 41 && stored[0] === 0x2a) {
    const hex = Buffer.from(stored.subarray(1)).toString('latin1');
    if (/^[0-9a-fA-F]{40}$/.test(hex)) return Buffer.from(hex, 'hex');
  }
  return undefined;
}

/**
 * Check a client's mysql_native_password answer against the stored SHA1(SHA1(password)) without
 * knowing the password: recover SHA1(password) = answer XOR SHA1(scramble ‖ stored) and accept it
 * only if SHA1(recovered) == stored. Returns the recovered SHA1(password), or undefined.
 */
export function recoverNativePasswordSha1(
  answer: Uint8Array,
  scramble: Uint8Array,
  stored: Uint8Array,
): Buffer | undefined {
  if (answer.length !== 20 || stored.length !== 20) return undefined;
  const mask = sha1(scramble.subarray(0, 20), stored);
  const candidate = Buffer.allocUnsafe(20);
  for (let i = 0; i < 20; i++) candidate[i] = answer[i]! ^ mask[i]!;
  return crypto.timingSafeEqual(sha1(candidate), stored) ? candidate : undefined;
}
