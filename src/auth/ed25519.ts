// client_ed25519 (MariaDB): an Ed25519 signature over the server's 32-byte scramble, with the
// key derived from the password the way MariaDB's client plugin does it: az = SHA512(password)
// for a password of any length (not a 32-byte seed), az[0..31] clamped is the secret scalar,
// az[32..63] the nonce prefix. Plain BigInt arithmetic on edwards25519 (RFC 8032 §5.1); the
// scalar is not secret from the caller's point of view beyond the password itself, and
// timing-independence is not a goal here.

import { createHash } from 'node:crypto';

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

function mod(a: bigint, m: bigint = P): bigint {
  const r = a % m;
  return r >= 0n ? r : r + m;
}

function powMod(base: bigint, exp: bigint, m: bigint = P): bigint {
  let result = 1n;
  let b = mod(base, m);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}

const inv = (a: bigint): bigint => powMod(a, P - 2n);

const D = mod(-121665n * inv(121666n));
const D2 = mod(2n * D);

/** A point in extended coordinates: x = X/Z, y = Y/Z, x·y = T/Z. */
interface Point {
  readonly X: bigint;
  readonly Y: bigint;
  readonly Z: bigint;
  readonly T: bigint;
}

const BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202n;
const BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960n;
const BASE: Point = { X: BX, Y: BY, Z: 1n, T: mod(BX * BY) };
const IDENTITY: Point = { X: 0n, Y: 1n, Z: 1n, T: 0n };

/** Unified addition for a = -1 twisted Edwards curves (also correct for doubling). */
function add(p: Point, q: Point): Point {
  const a = mod((p.Y - p.X) * (q.Y - q.X));
  const b = mod((p.Y + p.X) * (q.Y + q.X));
  const c = mod(D2 * p.T * q.T);
  const d = mod(2n * p.Z * q.Z);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return { X: mod(e * f), Y: mod(g * h), Z: mod(f * g), T: mod(e * h) };
}

function scalarMultBase(k: bigint): Point {
  let result = IDENTITY;
  let addend = BASE;
  let e = k;
  while (e > 0n) {
    if (e & 1n) result = add(result, addend);
    addend = add(addend, addend);
    e >>= 1n;
  }
  return result;
}

function encodePoint(p: Point): Buffer {
  const zi = inv(p.Z);
  const x = mod(p.X * zi);
  const y = mod(p.Y * zi);
  const out = Buffer.alloc(32);
  let v = y;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (x & 1n) out[31] = out[31]! | 0x80;
  return out;
}

function leToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}

function bigIntToLe32(v: bigint): Buffer {
  const out = Buffer.alloc(32);
  let x = v;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

function sha512(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
}

function expandPassword(password: Uint8Array): { scalar: bigint; prefix: Buffer } {
  const az = sha512(password);
  az[0] = az[0]! & 248;
  az[31] = (az[31]! & 63) | 64;
  return { scalar: leToBigInt(az.subarray(0, 32)), prefix: az.subarray(32, 64) };
}

/** The 32-byte public key MariaDB stores for `password` (base64 in authentication_string). */
export function ed25519PublicKey(password: Uint8Array): Buffer {
  return encodePoint(scalarMultBase(expandPassword(password).scalar));
}

/** The 64-byte signature R‖S of `message` with the key derived from `password`. */
export function ed25519Sign(password: Uint8Array, message: Uint8Array): Buffer {
  const { scalar, prefix } = expandPassword(password);
  const publicKey = encodePoint(scalarMultBase(scalar));
  const r = mod(leToBigInt(sha512(prefix, message)), L);
  const R = encodePoint(scalarMultBase(r));
  const k = mod(leToBigInt(sha512(R, publicKey, message)), L);
  const s = mod(r + k * scalar, L);
  return Buffer.concat([R, bigIntToLe32(s)]);
}
