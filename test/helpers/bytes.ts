// Byte-building helpers for protocol tests. Deliberately independent of src/protocol/writer.ts:
// expectations built here must not share code (or bugs) with the implementation under test.

/** A piece of a byte string: bytes, a single byte value (0..255) or a string (UTF-8). */
export type Piece = Uint8Array | number | string;

/**
 * hex`0a 35 2e 35 ${buf} ff` → Buffer. Whitespace is ignored; interpolated values are pieces
 * (Uint8Array inserted as is, number as one byte, string as UTF-8).
 */
export function hex(strings: TemplateStringsArray, ...values: Piece[]): Buffer {
  const parts: Buffer[] = [];
  strings.forEach((s, i) => {
    const digits = s.replace(/\s+/g, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new Error(`hex: bad literal ${JSON.stringify(s)}`);
    parts.push(Buffer.from(digits, 'hex'));
    if (i < values.length) parts.push(bytes(values[i]!));
  });
  return Buffer.concat(parts);
}

export function bytes(...pieces: Piece[]): Buffer {
  return Buffer.concat(
    pieces.map((p) => {
      if (typeof p === 'string') return Buffer.from(p, 'utf8');
      if (typeof p === 'number') {
        if (!Number.isInteger(p) || p < 0 || p > 255) throw new Error(`bytes: ${p} is not a byte`);
        return Buffer.of(p);
      }
      return Buffer.from(p.buffer, p.byteOffset, p.byteLength);
    }),
  );
}

/** Little-endian unsigned integer of `width` bytes, written out byte by byte. */
export function le(value: number | bigint, width: number): Buffer {
  let v = BigInt(value);
  if (v < 0n || v >= 1n << BigInt(8 * width)) throw new Error(`le: ${value} does not fit in ${width} bytes`);
  const out = Buffer.alloc(width);
  for (let i = 0; i < width; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Length-encoded integer, from the spec table (page_protocol_basic_dt_integers). */
export function lenenc(value: number | bigint): Buffer {
  const v = BigInt(value);
  if (v < 251n) return le(v, 1);
  if (v < 1n << 16n) return Buffer.concat([Buffer.of(0xfc), le(v, 2)]);
  if (v < 1n << 24n) return Buffer.concat([Buffer.of(0xfd), le(v, 3)]);
  return Buffer.concat([Buffer.of(0xfe), le(v, 8)]);
}

export function lenencStr(data: Uint8Array | string): Buffer {
  const b = bytes(data);
  return Buffer.concat([lenenc(b.length), b]);
}

/** NUL-terminated string. */
export function nul(data: Uint8Array | string): Buffer {
  return Buffer.concat([bytes(data), Buffer.of(0)]);
}

/** One physical packet: 3-byte length, sequence id, payload (which must fit in one packet). */
export function packet(seq: number, ...payload: Piece[]): Buffer {
  const body = bytes(...payload);
  if (body.length > 0xffffff) throw new Error('packet: payload too large for one physical packet');
  return Buffer.concat([le(body.length, 3), Buffer.of(seq & 0xff), body]);
}

/** Deterministic PRNG (mulberry32), so fuzz and chunking failures can be reproduced. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.int(0, 255);
    return out;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }
}

/** Split `data` at the given sorted offsets (views, no copies). Repeated offsets give empty chunks. */
export function splitAt(data: Buffer, cuts: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of cuts) {
    out.push(data.subarray(at, c));
    at = c;
  }
  out.push(data.subarray(at));
  return out;
}

/**
 * Run `fn`; return 'ok' or the thrown error. Used by fuzz loops, which accept either a result or
 * one of a set of typed errors, and must report anything else with the offending input.
 */
export function attempt(fn: () => unknown): { ok: true } | { ok: false; error: unknown } {
  try {
    fn();
    return { ok: true };
  } catch (error) {
    return { ok: false, error };
  }
}

/**
 * Fuzz rule: `parse(input)` must either return or throw an error accepted by `allowed`. Anything
 * else (TypeError, RangeError, ...) fails with the input in hex so it can be replayed.
 */
export function parsesOrThrowsTyped(
  parse: (input: Buffer) => unknown,
  input: Buffer,
  allowed: (e: unknown) => boolean,
): 'ok' | 'error' {
  const r = attempt(() => parse(input));
  if (r.ok) return 'ok';
  if (!allowed(r.error)) {
    const err = r.error instanceof Error ? `${r.error.name}: ${r.error.message}` : String(r.error);
    throw new Error(`unexpected ${err} for input ${input.toString('hex')}`, { cause: r.error });
  }
  return 'error';
}
