// mysql_native_password: SHA1(password) XOR SHA1(scramble ‖ SHA1(SHA1(password))).
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html

import { createHash } from 'node:crypto';

export function sha1(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha1');
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
