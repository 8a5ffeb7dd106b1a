// Property-based tests (fast-check) for the protocol codecs: every parser, every writer/parser
// pair, the PacketFramer and the control datagram codec.
//
// Three kinds of properties:
//  - round trips: parse(write(x)) deep-equals x for arbitrary legal x, and writers agree with an
//    independent encoder built from test/helpers/bytes.ts (which shares no code with src/);
//  - robustness: arbitrary bytes, every truncation and random mutations of valid packets either
//    parse or throw the coded error (a ProxyError with a code from ErrorCodes), never a
//    RangeError, TypeError or anything else;
//  - framing: any packet list, cut into chunks anywhere, comes out of the framer exactly.
//
// A failing property prints fast-check's seed and shrunk counterexample; rerun it with
// check(..., { seed, path }) (fc.assert parameters) to reproduce.

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import { randomFillSync } from 'node:crypto';
import fc from 'fast-check';

import { PacketReader } from '../../../src/protocol/reader.js';
import { PacketWriter, framePayload } from '../../../src/protocol/writer.js';
import { PacketFramer, type Packet } from '../../../src/protocol/framer.js';
import { parseHandshakeV10, writeHandshakeV10, type GreetingOptions } from '../../../src/protocol/packets/handshake.js';
import {
  isSslRequest,
  parseHandshakeResponse,
  writeHandshakeResponse41,
  type HandshakeResponse,
  type HandshakeResponseOptions,
} from '../../../src/protocol/packets/handshake-response.js';
import {
  parseAuthSwitchRequest,
  parseErr,
  writeAuthSwitchRequest,
  writeErr,
  type ErrPacket,
} from '../../../src/protocol/packets/generic.js';
import {
  isEofPacket,
  parseColumnCount,
  parseTextRow,
  writeComQuery,
} from '../../../src/protocol/packets/text-resultset.js';
import { CONTROL_MAGIC, ControlDatagramBuilder, parseControlDatagram } from '../../../src/protocol/control.js';
import { ErrorCodes, MalformedPacketError, PacketTooLargeError, ProxyError } from '../../../src/util/errors.js';
import { le, lenenc, lenencStr, nul, packet, splitAt } from '../../helpers/bytes.js';

// ---------------------------------------------------------------------------------------------
// Constants, written out from the spec rather than imported.

const MAX = 0xffffff; // largest physical payload (2^24 - 1)
const CONNECT_WITH_DB = 0x8;
const PROTOCOL_41 = 0x200;
const SSL = 0x800;
const SECURE_CONNECTION = 0x8000;
const PLUGIN_AUTH = 0x80000;
const CONNECT_ATTRS = 0x100000;
const LONG_PASSWORD = 0x1;
const LENENC_CLIENT_DATA = 0x200000;

/**
 * fc.assert with a time limit: shrinking a failure found on a large input can otherwise take many
 * minutes. Past the limit fast-check stops and reports the failure with the counterexample shrunk
 * so far (a passing run takes a small fraction of the limit).
 */
function check<Ts>(property: fc.IProperty<Ts>, params: fc.Parameters<Ts> = {}): void {
  fc.assert(property, { interruptAfterTimeLimit: 15_000, ...params });
}

// ---------------------------------------------------------------------------------------------
// Outcome checking.

const errorCodes: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

/** The coded parse error: a ProxyError carrying one of the stable codes. */
const isCoded = (e: unknown): boolean => e instanceof ProxyError && errorCodes.has(e.code);
const isMalformed = (e: unknown): boolean => isCoded(e) && e instanceof MalformedPacketError;
const isTooLarge = (e: unknown): boolean => isCoded(e) && e instanceof PacketTooLargeError;
/** What parseHandshakeV10 may throw: malformed, or a protocol version other than 10. */
const isGreetingError = (e: unknown): boolean =>
  isMalformed(e) || (isCoded(e) && (e as ProxyError).code === ErrorCodes.UNSUPPORTED_PROTOCOL);

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.constructor.name}(${e.name}): ${e.message}` : `non-Error ${String(e)}`;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** Run `fn`; an error not accepted by `allowed` fails the property (with its type and message). */
function run(fn: () => unknown, allowed: (e: unknown) => boolean): Outcome {
  try {
    return { ok: true, value: fn() };
  } catch (error) {
    if (!allowed(error)) throw new Error(`not the coded error: ${errorText(error)}`, { cause: error });
    return { ok: false, error };
  }
}

/**
 * Counts the outcomes of a robustness property. A property whose inputs all parse (or all fail)
 * would prove little, so each one also asserts that both outcomes occurred.
 */
class Tally {
  ok = 0;
  error = 0;
  add(o: Outcome): Outcome {
    if (o.ok) this.ok++;
    else this.error++;
    return o;
  }
  assertBoth(what: string): void {
    assert.ok(this.ok > 0 && this.error > 0, `${what}: ok=${this.ok} error=${this.error}, expected both`);
  }
}

/** Strip the header of a single physical packet after checking its length and sequence id. */
function single(framed: Buffer, seq: number): Buffer {
  assert.ok(framed.length >= 4, 'framed packet has a header');
  assert.equal(framed.readUIntLE(0, 3), framed.length - 4, 'header length');
  assert.equal(framed[3], seq & 0xff, 'sequence id');
  return framed.subarray(4);
}

const toBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

// ---------------------------------------------------------------------------------------------
// Arbitraries.

const byte = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u24 = fc.integer({ min: 0, max: 0xffffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
// Lengths are drawn from the whole [minLength, maxLength] range (size 'max'): fast-check's default
// size would keep them near 10, and lengths past 250 (lenenc 0xFC) would hardly ever occur.
const bin = (maxLength: number, minLength = 0): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength, maxLength, size: 'max' }).map(toBuffer);
/** Bytes without NUL (for NUL-terminated fields). */
const noNul = (maxLength: number, minLength = 0): fc.Arbitrary<Buffer> =>
  fc.array(fc.integer({ min: 1, max: 0xff }), { minLength, maxLength, size: 'max' }).map((a) => Buffer.from(a));
/** Arbitrary bytes: short ones (which sometimes parse) and up to 4 KiB. */
const garbageBytes = fc.oneof(bin(64), bin(4096));
/** ASCII without NUL (plugin names: written as UTF-8, parsed as latin1, so only ASCII round-trips). */
const asciiName = (maxLength: number, minLength = 0): fc.Arbitrary<string> =>
  fc.string({ unit: fc.integer({ min: 1, max: 0x7f }).map((c) => String.fromCharCode(c)), minLength, maxLength });
/** Capability flags with the `must` bits set; every other bit random (each combination is likely). */
const capsWith = (must: number): fc.Arbitrary<number> => u32.map((c) => (c | must) >>> 0);

/** Lengths and integers at the length-encoding boundaries, and anywhere up to 2^53 - 1. */
const LENENC_EDGES = [
  0,
  1,
  250,
  251,
  252,
  0xfffe,
  0xffff,
  0x10000,
  0x10001,
  0xfffffe,
  0xffffff,
  0x1000000,
  0x1000001,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
];
const lenencValue = fc.oneof(fc.constantFrom(...LENENC_EDGES), fc.integer({ min: 0, max: 0x1000100 }), fc.maxSafeNat());

/** Byte values that mean something in the protocol (NUL, lenenc prefixes, ERR, '#', 10). */
const interestingByte = fc.oneof(fc.constantFrom(0x00, 0x0a, 0x23, 0xfb, 0xfc, 0xfd, 0xfe, 0xff), byte);

type Mutation =
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'flip'; readonly at: number; readonly xor: number }
  | { readonly kind: 'set'; readonly at: number; readonly value: number }
  | { readonly kind: 'insert'; readonly at: number; readonly bytes: readonly number[] }
  | { readonly kind: 'delete'; readonly at: number; readonly n: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 0xff }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: interestingByte }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.array(interestingByte, { minLength: 1, maxLength: 9 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 9 }) }),
);
const mutations = fc.array(mutation, { minLength: 1, maxLength: 4 });

/** Apply mutations to a copy of `input` (positions are taken modulo the current length). */
function mutate(input: Buffer, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of ms) {
    switch (m.kind) {
      case 'truncate':
        b = b.subarray(0, m.at % (b.length + 1));
        break;
      case 'flip':
        if (b.length > 0) b[m.at % b.length] = b[m.at % b.length]! ^ m.xor;
        break;
      case 'set':
        if (b.length > 0) b[m.at % b.length] = m.value;
        break;
      case 'insert': {
        const at = m.at % (b.length + 1);
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = m.at % (b.length + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]);
        break;
      }
    }
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// Robustness harness, shared by every parser.

interface ParserUnderTest<C> {
  readonly name: string;
  /** Valid payloads (with the context the parser needs, e.g. server capabilities). */
  readonly valid: fc.Arbitrary<{ readonly payload: Buffer; readonly ctx: C }>;
  /** Context for arbitrary bytes. */
  readonly ctx: fc.Arbitrary<C>;
  /** Arbitrary bytes; defaults to up to 4 KiB of anything. */
  readonly garbage?: fc.Arbitrary<Buffer>;
  readonly parse: (payload: Buffer, ctx: C) => unknown;
  readonly allowed: (e: unknown) => boolean;
  readonly runs: number;
}

function robustness<C>(p: ParserUnderTest<C>): void {
  describe(`${p.name}: robustness`, () => {
    test('arbitrary bytes parse or throw the coded error', () => {
      const tally = new Tally();
      const garbage = p.garbage ?? garbageBytes;
      check(
        fc.property(garbage, p.ctx, (b, ctx) => {
          tally.add(run(() => p.parse(b, ctx), p.allowed));
        }),
        { numRuns: p.runs },
      );
      assert.ok(tally.error > 0, 'some arbitrary input is rejected');
    });

    test('every truncation of a valid packet parses or throws the coded error', () => {
      const tally = new Tally();
      check(
        fc.property(p.valid, ({ payload, ctx }) => {
          assert.ok(tally.add(run(() => p.parse(payload, ctx), p.allowed)).ok, 'the valid packet itself parses');
          // Every length; for the rare 64 KiB packet (lenenc boundary cases) every length near the ends.
          for (let len = 0; len < payload.length; len++) {
            if (len > 2048 && len < payload.length - 2048) len = payload.length - 2048;
            tally.add(run(() => p.parse(payload.subarray(0, len), ctx), p.allowed));
          }
        }),
        { numRuns: Math.ceil(p.runs / 10) },
      );
      tally.assertBoth('truncations');
    });

    test('mutated valid packets (flipped, set, inserted, deleted bytes) parse or throw the coded error', () => {
      const tally = new Tally();
      check(
        fc.property(p.valid, mutations, ({ payload, ctx }, ms) => {
          tally.add(run(() => p.parse(mutate(payload, ms), ctx), p.allowed));
        }),
        { numRuns: p.runs },
      );
      tally.assertBoth('mutations');
    });

    test('a payload that is a view inside a larger buffer parses exactly like a copy', () => {
      check(
        fc.property(
          fc.oneof(
            p.valid,
            p.valid.chain(({ payload, ctx }) => mutations.map((ms) => ({ payload: mutate(payload, ms), ctx }))),
          ),
          bin(16),
          bin(16),
          ({ payload, ctx }, before, after) => {
            const big = Buffer.concat([before, payload, after]);
            const view = big.subarray(before.length, before.length + payload.length);
            const viaCopy = run(() => p.parse(Buffer.from(payload), ctx), p.allowed);
            const viaView = run(() => p.parse(view, ctx), p.allowed);
            assert.equal(viaView.ok, viaCopy.ok);
            if (viaView.ok && viaCopy.ok) assert.deepEqual(viaView.value, viaCopy.value);
          },
        ),
        { numRuns: Math.ceil(p.runs / 4) },
      );
    });
  });
}

// ---------------------------------------------------------------------------------------------
// PacketReader and PacketWriter primitives.

const SIMPLE_READS = [
  'int1',
  'peek1',
  'int2',
  'int3',
  'int4',
  'int8',
  'lenencInt',
  'lenencBytes',
  'nulBytes',
  'nulOrRestBytes',
  'rest',
  'expectEnd',
] as const;

type ReadOp = { readonly op: (typeof SIMPLE_READS)[number] } | { readonly op: 'bytes' | 'skip'; readonly n: number };

const readOp: fc.Arbitrary<ReadOp> = fc.oneof(
  fc.constantFrom(...SIMPLE_READS).map((op) => ({ op })),
  fc.record({ op: fc.constantFrom('bytes' as const, 'skip' as const), n: fc.integer({ min: -2, max: 40 }) }),
);

function applyRead(r: PacketReader, op: ReadOp): unknown {
  switch (op.op) {
    case 'int1':
      return r.int1();
    case 'peek1':
      return r.peek1();
    case 'int2':
      return r.int2();
    case 'int3':
      return r.int3();
    case 'int4':
      return r.int4();
    case 'int8':
      return r.int8();
    case 'lenencInt':
      return r.lenencInt();
    case 'lenencBytes':
      return Buffer.from(r.lenencBytes());
    case 'nulBytes':
      return Buffer.from(r.nulBytes());
    case 'nulOrRestBytes':
      return Buffer.from(r.nulOrRestBytes());
    case 'rest':
      return Buffer.from(r.rest());
    case 'expectEnd':
      r.expectEnd();
      return undefined;
    case 'bytes':
      return Buffer.from(r.bytes(op.n));
    case 'skip':
      r.skip(op.n);
      return undefined;
  }
}

interface TraceEntry {
  readonly op: ReadOp['op'];
  readonly ok: boolean;
  readonly value: unknown;
  readonly position: number;
  readonly remaining: number;
}

/** Run read operations, recording each result (or malformed) with the position relative to `start`. */
function readTrace(r: PacketReader, start: number, ops: readonly ReadOp[]): TraceEntry[] {
  return ops.map((op) => {
    const o = run(() => applyRead(r, op), isMalformed);
    return { op: op.op, ok: o.ok, value: o.ok ? o.value : null, position: r.position - start, remaining: r.remaining };
  });
}

/** Independent decoder of a length-encoded integer (BigInt arithmetic), null where malformed. */
function oracleLenenc(b: Buffer): { value: number; size: number } | null {
  const first = b[0];
  if (first === undefined) return null;
  if (first < 0xfb) return { value: first, size: 1 };
  const width = first === 0xfc ? 2 : first === 0xfd ? 3 : first === 0xfe ? 8 : 0;
  if (width === 0 || b.length < 1 + width) return null;
  let v = 0n;
  for (let i = width; i >= 1; i--) v = (v << 8n) | BigInt(b[i]!);
  return { value: Number(v), size: 1 + width };
}

type WriteOp =
  | { readonly op: 'int1' | 'int2' | 'int3' | 'int4' | 'int8' | 'lenencInt' | 'zeros'; readonly v: number }
  | { readonly op: 'bytes' | 'nulString' | 'lenencBytes'; readonly v: Buffer }
  | { readonly op: 'lenencText' | 'text'; readonly v: string };

/** A large field at a lenenc length boundary, now and then (cheap: at most 64 KiB). */
const edgeBlob = fc.constantFrom(250, 251, 252, 0xffff, 0x10000).map((n) => Buffer.alloc(n, 0x61));

const writeOp: fc.Arbitrary<WriteOp> = fc.oneof(
  fc.record({ op: fc.constant('int1' as const), v: byte }),
  fc.record({ op: fc.constant('int2' as const), v: u16 }),
  fc.record({ op: fc.constant('int3' as const), v: u24 }),
  fc.record({ op: fc.constant('int4' as const), v: u32 }),
  fc.record({ op: fc.constant('int8' as const), v: fc.oneof(fc.maxSafeNat(), u32) }),
  fc.record({ op: fc.constant('lenencInt' as const), v: lenencValue }),
  fc.record({ op: fc.constant('zeros' as const), v: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ op: fc.constant('bytes' as const), v: bin(40) }),
  fc.record({ op: fc.constant('nulString' as const), v: noNul(40) }),
  fc.record({
    op: fc.constant('lenencBytes' as const),
    v: fc.oneof({ weight: 20, arbitrary: bin(300) }, { weight: 1, arbitrary: edgeBlob }),
  }),
  fc.record({ op: fc.constant('lenencText' as const), v: fc.string({ unit: 'grapheme', maxLength: 20 }) }),
  fc.record({ op: fc.constant('text' as const), v: fc.string({ unit: 'grapheme', maxLength: 20 }) }),
);

function applyWrite(w: PacketWriter, op: WriteOp): void {
  switch (op.op) {
    case 'int1':
      w.int1(op.v);
      return;
    case 'int2':
      w.int2(op.v);
      return;
    case 'int3':
      w.int3(op.v);
      return;
    case 'int4':
      w.int4(op.v);
      return;
    case 'int8':
      w.int8(op.v);
      return;
    case 'lenencInt':
      w.lenencInt(op.v);
      return;
    case 'zeros':
      w.zeros(op.v);
      return;
    case 'bytes':
      w.bytes(op.v);
      return;
    case 'nulString':
      w.nulString(op.v);
      return;
    case 'lenencBytes':
      w.lenencBytes(op.v);
      return;
    case 'lenencText':
      w.lenencBytes(op.v);
      return;
    case 'text':
      w.bytes(op.v);
      return;
  }
}

/** The spec's encoding of one write operation, built with test/helpers/bytes.ts. */
function oracleWrite(op: WriteOp): Buffer {
  switch (op.op) {
    case 'int1':
      return le(op.v, 1);
    case 'int2':
      return le(op.v, 2);
    case 'int3':
      return le(op.v, 3);
    case 'int4':
      return le(op.v, 4);
    case 'int8':
      return le(op.v, 8);
    case 'lenencInt':
      return lenenc(op.v);
    case 'zeros':
      return Buffer.alloc(op.v);
    case 'bytes':
      return op.v;
    case 'nulString':
      return nul(op.v);
    case 'lenencBytes':
      return lenencStr(op.v);
    case 'lenencText':
      return lenencStr(op.v);
    case 'text':
      return Buffer.from(op.v, 'utf8');
  }
}

/** Read back what `op` wrote and check it. */
function readBack(r: PacketReader, op: WriteOp): void {
  switch (op.op) {
    case 'int1':
      assert.equal(r.int1(), op.v);
      return;
    case 'int2':
      assert.equal(r.int2(), op.v);
      return;
    case 'int3':
      assert.equal(r.int3(), op.v);
      return;
    case 'int4':
      assert.equal(r.int4(), op.v);
      return;
    case 'int8':
      assert.equal(r.int8(), op.v);
      return;
    case 'lenencInt':
      assert.equal(r.lenencInt(), op.v);
      return;
    case 'zeros':
      assert.deepEqual(r.bytes(op.v), Buffer.alloc(op.v));
      return;
    case 'bytes':
      assert.deepEqual(r.bytes(op.v.length), op.v);
      return;
    case 'nulString':
      assert.deepEqual(r.nulBytes(), op.v);
      return;
    case 'lenencBytes':
      assert.deepEqual(r.lenencBytes(), op.v);
      return;
    case 'lenencText':
      assert.equal(r.lenencBytes().toString('utf8'), op.v);
      return;
    case 'text':
      assert.equal(r.bytes(Buffer.byteLength(op.v)).toString('utf8'), op.v);
      return;
  }
}

describe('PacketWriter / PacketReader primitives', () => {
  test('lenencInt: writer output is the spec encoding (1, 3, 4 or 9 bytes) and reads back', () => {
    check(
      fc.property(lenencValue, (v) => {
        const payload = new PacketWriter(0).lenencInt(v).payload();
        assert.deepEqual(payload, lenenc(v));
        assert.equal(payload.length, v < 251 ? 1 : v < 2 ** 16 ? 3 : v < 2 ** 24 ? 4 : 9);
        const r = new PacketReader(payload);
        assert.equal(r.lenencInt(), v);
        r.expectEnd();
      }),
      { numRuns: 2000 },
    );
  });

  test('lenencInt: the reader agrees with an independent decoder on arbitrary bytes', () => {
    const tally = new Tally();
    check(
      fc.property(fc.array(interestingByte, { maxLength: 10 }), (a) => {
        const b = Buffer.from(a);
        const expected = oracleLenenc(b);
        const r = new PacketReader(b);
        const o = tally.add(run(() => r.lenencInt(), isMalformed));
        if (expected === null) {
          assert.equal(o.ok, false, 'malformed');
        } else {
          assert.ok(o.ok, 'decodes');
          assert.equal(o.value, expected.value);
          assert.equal(r.position, expected.size);
        }
      }),
      { numRuns: 3000 },
    );
    tally.assertBoth('lenencInt');
  });

  test('any sequence of writes equals the spec encoding and reads back (writer growth from any capacity)', () => {
    check(
      fc.property(fc.integer({ min: 0, max: 48 }), fc.array(writeOp, { maxLength: 12 }), byte, (capacity, ops, seq) => {
        const w = new PacketWriter(capacity);
        for (const op of ops) applyWrite(w, op);
        const expected = Buffer.concat(ops.map(oracleWrite));
        assert.equal(w.length, expected.length);
        assert.ok(w.payload().equals(expected), 'payload is the spec encoding');
        assert.ok(w.finish(seq).equals(packet(seq, expected)), 'finish() frames it as one packet');
        const r = new PacketReader(w.payload());
        for (const op of ops) readBack(r, op);
        r.expectEnd();
      }),
      { numRuns: 500 },
    );
  });

  test('framePayload: one physical packet with the payload, for every sequence id', () => {
    check(
      fc.property(bin(600), fc.integer({ min: 0, max: 0xff }), (payload, seq) => {
        assert.ok(framePayload(payload, seq).equals(packet(seq, payload)));
      }),
    );
  });

  test('arbitrary reads on arbitrary bytes: results or MalformedPacketError, the window is never left', () => {
    const tally = new Tally();
    check(
      fc.property(
        bin(24),
        fc.array(interestingByte, { maxLength: 48 }),
        bin(24),
        fc.array(readOp, { minLength: 1, maxLength: 10 }),
        (before, window, after, ops) => {
          const inner = Buffer.from(window);
          const whole = Buffer.concat([before, inner, after]);
          const start = before.length;
          const end = start + inner.length;
          // A reader on a window of a larger buffer behaves exactly like one on a copy of the window.
          const viaWindow = readTrace(new PacketReader(whole, start, end), start, ops);
          const viaCopy = readTrace(new PacketReader(inner), 0, ops);
          assert.deepEqual(viaWindow, viaCopy);
          for (const { ok, position, remaining } of viaCopy) {
            tally.add(ok ? { ok, value: null } : { ok, error: null });
            assert.ok(position >= 0 && position <= inner.length, 'position inside the window');
            assert.equal(remaining, inner.length - position);
          }
        },
      ),
      { numRuns: 3000 },
    );
    tally.assertBoth('reads');
  });
});

// ---------------------------------------------------------------------------------------------
// HandshakeV10 (greeting).

const greetingOptions: fc.Arbitrary<GreetingOptions> = fc.record({
  serverVersion: noNul(40),
  connectionId: u32,
  // The writer's contract: 20 bytes (any, NUL included); the format carries up to 254.
  scramble: fc.oneof({ weight: 3, arbitrary: bin(20, 20) }, { weight: 1, arbitrary: bin(254, 21) }),
  // Part 2 of the scramble is only sent (and parsed) with CLIENT_SECURE_CONNECTION.
  capabilities: capsWith(SECURE_CONNECTION),
  characterSet: byte,
  statusFlags: u16,
  authPluginName: asciiName(40),
  extendedCapabilities: u32,
});

/** A HandshakeV10 from the spec's field table (independent of writeHandshakeV10). */
function oracleGreeting(o: GreetingOptions): Buffer {
  const s = Buffer.from(o.scramble);
  return Buffer.concat([
    le(10, 1),
    nul(o.serverVersion),
    le(o.connectionId, 4),
    s.subarray(0, 8),
    le(0, 1),
    le(o.capabilities & 0xffff, 2),
    le(o.characterSet, 1),
    le(o.statusFlags, 2),
    le(o.capabilities >>> 16, 2),
    le(s.length + 1, 1),
    Buffer.alloc(6),
    le(o.capabilities & LONG_PASSWORD ? 0 : (o.extendedCapabilities ?? 0), 4),
    nul(s.subarray(8)),
    nul(o.authPluginName),
  ]);
}

/**
 * Greetings as servers send them: part 2 of 12+ bytes with a length byte of len + 9, or any
 * value up to 21 for the classic 12 (MySQL 5.x sends 21, MySQL 4.1 sends 0); no part 2 without
 * SECURE_CONNECTION; the plugin name only with PLUGIN_AUTH, its NUL (or part 2's NUL when it is
 * last) sometimes missing; or the short pre-4.1 form ending after the low capability flags.
 */
const serverGreeting = fc
  .record({
    version: noNul(30),
    connectionId: u32,
    part1: bin(8, 8),
    part2: fc.oneof(bin(12, 12), bin(60, 13)),
    classicLength: fc.integer({ min: 0, max: 21 }),
    capabilities: u32,
    characterSet: byte,
    statusFlags: u16,
    pluginName: asciiName(30),
    lastNul: fc.boolean(),
    short: fc.boolean(),
    extended: u32,
  })
  .map((g) => {
    const head = [le(10, 1), nul(g.version), le(g.connectionId, 4), g.part1, le(0, 1), le(g.capabilities & 0xffff, 2)];
    if (g.short) {
      const payload = Buffer.concat(head);
      const expected = {
        protocolVersion: 10,
        serverVersion: g.version,
        connectionId: g.connectionId,
        authPluginData: g.part1,
        capabilities: g.capabilities & 0xffff,
        extendedCapabilities: 0,
        characterSet: 0,
        statusFlags: 0,
        authPluginName: '',
      };
      return { payload, expected };
    }
    const secure = (g.capabilities & SECURE_CONNECTION) !== 0;
    const plugin = (g.capabilities & PLUGIN_AUTH) !== 0;
    const lengthByte = g.part2.length === 12 ? g.classicLength : g.part2.length + 9;
    const parts = [
      ...head,
      le(g.characterSet, 1),
      le(g.statusFlags, 2),
      le(g.capabilities >>> 16, 2),
      le(lengthByte, 1),
      Buffer.alloc(6),
      le(g.extended, 4),
    ];
    if (secure) parts.push(g.part2, plugin || g.lastNul ? Buffer.of(0) : Buffer.alloc(0));
    if (plugin) parts.push(Buffer.from(g.pluginName, 'latin1'), g.lastNul ? Buffer.of(0) : Buffer.alloc(0));
    const expected = {
      protocolVersion: 10,
      serverVersion: g.version,
      connectionId: g.connectionId,
      authPluginData: secure ? Buffer.concat([g.part1, g.part2]) : g.part1,
      capabilities: g.capabilities,
      // Only a server that clears CLIENT_LONG_PASSWORD (MariaDB) has extended capabilities there.
      extendedCapabilities: g.capabilities & LONG_PASSWORD ? 0 : g.extended,
      characterSet: g.characterSet,
      statusFlags: g.statusFlags,
      authPluginName: plugin ? g.pluginName : '',
    };
    return { payload: Buffer.concat(parts), expected };
  });

describe('HandshakeV10', () => {
  test('writeHandshakeV10 is the spec layout, and parseHandshakeV10 reads it back', () => {
    check(
      fc.property(greetingOptions, (o) => {
        const payload = single(writeHandshakeV10(o), 0);
        assert.deepEqual(payload, oracleGreeting(o));
        assert.deepEqual(parseHandshakeV10(payload), {
          protocolVersion: 10,
          serverVersion: Buffer.from(o.serverVersion),
          connectionId: o.connectionId,
          authPluginData: Buffer.from(o.scramble),
          capabilities: o.capabilities,
          extendedCapabilities: o.capabilities & LONG_PASSWORD ? 0 : (o.extendedCapabilities ?? 0),
          characterSet: o.characterSet,
          statusFlags: o.statusFlags,
          authPluginName: o.capabilities & PLUGIN_AUTH ? o.authPluginName : '',
        });
      }),
      { numRuns: 500 },
    );
  });

  test('greetings in every form servers send parse to their fields', () => {
    check(
      fc.property(serverGreeting, ({ payload, expected }) => {
        assert.deepEqual(parseHandshakeV10(payload), expected);
      }),
      { numRuns: 1000 },
    );
  });
});

robustness({
  name: 'parseHandshakeV10',
  valid: fc.oneof(
    greetingOptions.map((o) => ({ payload: single(writeHandshakeV10(o), 0), ctx: null })),
    serverGreeting.map(({ payload }) => ({ payload, ctx: null })),
  ),
  ctx: fc.constant(null),
  // Half of the arbitrary inputs start with protocol version 10, so they get past the first byte.
  garbage: fc
    .tuple(garbageBytes, fc.boolean())
    .map(([b, ten]) => (ten && b.length > 0 ? Buffer.concat([Buffer.of(10), b.subarray(1)]) : b)),
  parse: (b) => parseHandshakeV10(b),
  allowed: isGreetingError,
  runs: 2000,
});

// ---------------------------------------------------------------------------------------------
// HandshakeResponse41 / HandshakeResponse320 / SSLRequest.

/** Auth responses for every form: NUL-free, up to 300 bytes of anything, lengths at the boundaries. */
const authResponse = fc.oneof(
  { weight: 4, arbitrary: noNul(40) },
  { weight: 4, arbitrary: bin(300) },
  { weight: 1, arbitrary: fc.constantFrom(250, 251, 255, 256, 0xffff, 0x10000).map((n) => Buffer.alloc(n, 0x41)) },
);

const responseOptions: fc.Arbitrary<HandshakeResponseOptions> = fc.record({
  capabilities: capsWith(PROTOCOL_41),
  maxPacketSize: u32,
  characterSet: byte,
  user: noNul(32),
  authResponse,
  database: noNul(32),
  authPluginName: asciiName(32),
  extendedCapabilities: u32,
});

/** Connection attributes as clients send them: lenenc key/value pairs behind a lenenc total length. */
const connectAttrs = fc
  .array(fc.tuple(bin(20), bin(300)), { maxLength: 6 })
  .map((kvs) => Buffer.concat(kvs.flatMap(([k, v]) => [lenencStr(k), lenencStr(v)])));

/** The writer's contract on the auth response, from the spec's three forms. */
function authFits(o: HandshakeResponseOptions): boolean {
  if (o.capabilities & LENENC_CLIENT_DATA) return true;
  if (o.capabilities & SECURE_CONNECTION) return o.authResponse.length <= 255;
  return !o.authResponse.includes(0);
}

function expectedResponse(
  o: HandshakeResponseOptions,
  layoutCaps: number,
  connectAttributes: Buffer = Buffer.alloc(0),
): HandshakeResponse {
  return {
    capabilities: o.capabilities,
    // MariaDB's extended capabilities travel only when the client clears CLIENT_LONG_PASSWORD.
    extendedCapabilities: o.capabilities & LONG_PASSWORD ? 0 : (o.extendedCapabilities ?? 0) >>> 0,
    maxPacketSize: o.maxPacketSize,
    characterSet: o.characterSet,
    user: Buffer.from(o.user),
    authResponse: Buffer.from(o.authResponse),
    database: layoutCaps & CONNECT_WITH_DB ? Buffer.from(o.database) : Buffer.alloc(0),
    authPluginName: layoutCaps & PLUGIN_AUTH ? o.authPluginName : '',
    connectAttributes,
  };
}

/** A HandshakeResponse320 (pre-4.1) from the spec, with the expected parse. */
const response320 = fc
  .record({
    capabilities: u16.map((c) => c & ~PROTOCOL_41),
    serverCaps: u32,
    maxPacketSize: u24,
    user: noNul(32),
    auth: noNul(40),
    database: noNul(32),
    lastNul: fc.boolean(),
  })
  .map((g) => {
    const withDb = (g.capabilities & g.serverCaps & CONNECT_WITH_DB) !== 0;
    const tail = g.lastNul ? Buffer.of(0) : Buffer.alloc(0);
    const payload = Buffer.concat([
      le(g.capabilities, 2),
      le(g.maxPacketSize, 3),
      nul(g.user),
      ...(withDb ? [nul(g.auth), g.database, tail] : [g.auth, tail]),
    ]);
    const expected: HandshakeResponse = {
      capabilities: g.capabilities,
      extendedCapabilities: 0,
      maxPacketSize: g.maxPacketSize,
      characterSet: 0,
      user: g.user,
      authResponse: g.auth,
      database: withDb ? g.database : Buffer.alloc(0),
      authPluginName: '',
      connectAttributes: Buffer.alloc(0),
    };
    return { payload, serverCaps: g.serverCaps, expected };
  });

describe('HandshakeResponse', () => {
  test('writeHandshakeResponse41 → parseHandshakeResponse round trip (all auth data forms, connect attrs)', () => {
    check(
      fc.property(
        responseOptions,
        u32,
        byte,
        fc.option(fc.tuple(connectAttrs, fc.option(byte))),
        (o, extraServerCaps, seq, attrs) => {
          if (!authFits(o)) {
            assert.throws(
              () => writeHandshakeResponse41(o, seq),
              isMalformed,
              'the writer refuses what it cannot encode',
            );
            return;
          }
          const withAttrs = (o.capabilities & CONNECT_ATTRS) !== 0 && attrs !== null;
          const kv = withAttrs ? attrs[0] : Buffer.alloc(0);
          let payload = single(writeHandshakeResponse41({ ...o, connectAttributes: kv }, seq), seq);
          // A zstd level byte after the attributes is ignored.
          if (withAttrs && attrs[1] !== null) payload = Buffer.concat([payload, Buffer.of(attrs[1])]);
          const serverCaps = (extraServerCaps | o.capabilities) >>> 0;
          assert.deepEqual(parseHandshakeResponse(payload, serverCaps), expectedResponse(o, o.capabilities, kv));
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('connect attrs are length-checked: a packet ending inside them is malformed', () => {
    check(
      fc.property(
        responseOptions.filter(authFits).map((o) => ({ ...o, capabilities: (o.capabilities | CONNECT_ATTRS) >>> 0 })),
        connectAttrs.filter((kv) => kv.length > 0),
        fc.nat(),
        (o, kv, rawCut) => {
          const written = single(writeHandshakeResponse41({ ...o, connectAttributes: kv }, 0), 0);
          const attrsAt = written.length - lenenc(kv.length).length - kv.length;
          // at least one byte of the attrs, not all of them
          const payload = written.subarray(0, attrsAt + 1 + (rawCut % (written.length - attrsAt - 1)));
          assert.throws(() => parseHandshakeResponse(payload, 0xffffffff), isMalformed);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('the layout follows client ∩ server capabilities; the client flags are reported unmasked', () => {
    check(
      fc.property(responseOptions, capsWith(PROTOCOL_41), (o, serverCaps) => {
        const layoutCaps = (o.capabilities & serverCaps) >>> 0;
        const layout = { ...o, capabilities: layoutCaps };
        fc.pre(authFits(layout));
        const payload = Buffer.from(single(writeHandshakeResponse41(layout, 0), 0));
        payload.writeUInt32LE(o.capabilities, 0);
        assert.deepEqual(parseHandshakeResponse(payload, serverCaps), expectedResponse(o, layoutCaps));
      }),
      { numRuns: 500 },
    );
  });

  test('HandshakeResponse320 parses to its fields', () => {
    check(
      fc.property(response320, ({ payload, serverCaps, expected }) => {
        assert.deepEqual(parseHandshakeResponse(payload, serverCaps), expected);
      }),
      { numRuns: 500 },
    );
  });

  test('isSslRequest: exactly the 32-byte packets with PROTOCOL_41 and SSL; never throws', () => {
    check(
      fc.property(
        fc.oneof(
          bin(40),
          capsWith(0).map((c) => Buffer.concat([le(c, 4), Buffer.alloc(28)])),
        ),
        (b) => {
          const caps = b.length >= 4 ? b.readUInt32LE(0) : 0;
          assert.equal(isSslRequest(b), b.length === 32 && (caps & PROTOCOL_41) !== 0 && (caps & SSL) !== 0);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

robustness({
  name: 'parseHandshakeResponse',
  valid: fc.oneof(
    fc
      .tuple(responseOptions, connectAttrs)
      .filter(([o]) => authFits(o))
      .map(([o, kv]) => {
        const written = single(writeHandshakeResponse41(o, 1), 1);
        const payload = o.capabilities & CONNECT_ATTRS ? Buffer.concat([written, lenenc(kv.length), kv]) : written;
        return { payload, ctx: 0xffffffff };
      }),
    response320.map(({ payload, serverCaps }) => ({ payload, ctx: serverCaps })),
  ),
  ctx: fc.oneof(fc.constant(0xffffffff), u32),
  parse: (b, serverCaps) => parseHandshakeResponse(b, serverCaps),
  allowed: isMalformed,
  runs: 2000,
});

// ---------------------------------------------------------------------------------------------
// ERR and AuthSwitchRequest.

const latin1Char = byte.map((c) => String.fromCharCode(c));
const errPacket = fc.record({
  errno: u16,
  sqlState: fc.string({ unit: latin1Char, maxLength: 7 }),
  message: fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 60 }),
    fc.string({ unit: 'grapheme-ascii', maxLength: 200 }),
  ),
});

describe('ERR', () => {
  test('writeErr → parseErr round trip (the SQL state padded with 0 or cut to 5 characters)', () => {
    check(
      fc.property(errPacket, byte, (e: ErrPacket, seq) => {
        const payload = single(writeErr(seq, e), seq);
        const sqlState = e.sqlState.padEnd(5, '0').slice(0, 5);
        assert.deepEqual(
          payload,
          Buffer.concat([le(0xff, 1), le(e.errno, 2), Buffer.from(`#${sqlState}`, 'latin1'), Buffer.from(e.message)]),
        );
        assert.deepEqual(parseErr(payload), { errno: e.errno, sqlState, message: e.message });
      }),
      { numRuns: 1000 },
    );
  });

  test('a pre-4.1 ERR (no # marker) gets SQL state HY000', () => {
    check(
      fc.property(
        u16,
        fc.string({ unit: 'grapheme', maxLength: 60 }).filter((m) => !m.startsWith('#')),
        (errno, message) => {
          const payload = Buffer.concat([le(0xff, 1), le(errno, 2), Buffer.from(message)]);
          assert.deepEqual(parseErr(payload), { errno, sqlState: 'HY000', message });
        },
      ),
    );
  });
});

robustness({
  name: 'parseErr',
  valid: fc.tuple(errPacket, byte).map(([e, seq]) => ({ payload: single(writeErr(seq, e), seq), ctx: null })),
  ctx: fc.constant(null),
  garbage: fc
    .tuple(garbageBytes, fc.boolean())
    .map(([b, err]) => (err && b.length > 0 ? Buffer.concat([Buffer.of(0xff), b.subarray(1)]) : b)),
  parse: (b) => parseErr(b),
  allowed: isMalformed,
  runs: 2000,
});

const authSwitch = fc.record({ seq: byte, pluginName: asciiName(40, 1), pluginData: bin(64) });

describe('AuthSwitchRequest', () => {
  test('writeAuthSwitchRequest → parseAuthSwitchRequest round trip (plugin data of any bytes)', () => {
    check(
      fc.property(authSwitch, ({ seq, pluginName, pluginData }) => {
        const payload = single(writeAuthSwitchRequest(seq, pluginName, pluginData), seq);
        assert.deepEqual(payload, Buffer.concat([le(0xfe, 1), nul(pluginName), pluginData, le(0, 1)]));
        assert.deepEqual(parseAuthSwitchRequest(payload), { pluginName, pluginData });
      }),
      { numRuns: 1000 },
    );
  });

  test('plugin data sent without a trailing NUL is kept whole', () => {
    check(
      fc.property(
        asciiName(40, 1),
        bin(64).filter((d) => d.length === 0 || d[d.length - 1] !== 0),
        (pluginName, pluginData) => {
          const payload = Buffer.concat([le(0xfe, 1), nul(pluginName), pluginData]);
          assert.deepEqual(parseAuthSwitchRequest(payload), { pluginName, pluginData });
        },
      ),
    );
  });
});

robustness({
  name: 'parseAuthSwitchRequest',
  valid: authSwitch.map(({ seq, pluginName, pluginData }) => ({
    payload: single(writeAuthSwitchRequest(seq, pluginName, pluginData), seq),
    ctx: null,
  })),
  ctx: fc.constant(null),
  garbage: fc
    .tuple(garbageBytes, fc.boolean())
    .map(([b, sw]) => (sw && b.length > 0 ? Buffer.concat([Buffer.of(0xfe), b.subarray(1)]) : b)),
  parse: (b) => parseAuthSwitchRequest(b),
  allowed: isMalformed,
  runs: 2000,
});

// ---------------------------------------------------------------------------------------------
// Text resultset (no writer in src/: rows are encoded from the spec here).

const rowValues = fc.array(fc.oneof({ weight: 1, arbitrary: fc.constant(null) }, { weight: 4, arbitrary: bin(300) }), {
  minLength: 1,
  maxLength: 8,
});
const encodeRow = (values: readonly (Buffer | null)[]): Buffer =>
  Buffer.concat(values.map((v) => (v === null ? Buffer.of(0xfb) : lenencStr(v))));

describe('text resultset', () => {
  test('parseTextRow reads back every row of values and NULLs, no more, no less; no such row looks like EOF', () => {
    check(
      fc.property(rowValues, bin(8, 1), (values, extra) => {
        const payload = encodeRow(values);
        assert.deepEqual(parseTextRow(payload, values.length), values);
        assert.equal(isEofPacket(payload), false);
        // One value missing, or trailing bytes: malformed.
        assert.throws(() => parseTextRow(payload, values.length + 1), isMalformed);
        assert.throws(() => parseTextRow(Buffer.concat([payload, extra]), values.length), isMalformed);
      }),
      { numRuns: 1000 },
    );
  });

  test('parseColumnCount reads back every count ≥ 1 at every lenenc width; 0 is malformed', () => {
    check(
      fc.property(lenencValue, (n) => {
        if (n === 0) assert.throws(() => parseColumnCount(lenenc(n)), isMalformed);
        else assert.equal(parseColumnCount(lenenc(n)), n);
        assert.throws(() => parseColumnCount(Buffer.concat([lenenc(n), Buffer.of(0)])), isMalformed, 'trailing byte');
      }),
      { numRuns: 1000 },
    );
  });

  test('isEofPacket: exactly 0xFE-led payloads shorter than 9 bytes', () => {
    check(
      fc.property(fc.array(interestingByte, { maxLength: 12 }), (a) => {
        const b = Buffer.from(a);
        assert.equal(isEofPacket(b), a[0] === 0xfe && a.length < 9);
      }),
    );
  });

  test('writeComQuery: 0x03 and the UTF-8 text in packet 0', () => {
    check(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), (sql) => {
        assert.deepEqual(writeComQuery(sql), packet(0, 0x03, sql));
      }),
    );
  });
});

robustness({
  name: 'parseTextRow',
  valid: rowValues.map((values) => ({ payload: encodeRow(values), ctx: values.length })),
  ctx: fc.integer({ min: 0, max: 10 }),
  parse: (b, columns) => parseTextRow(b, columns),
  allowed: isMalformed,
  runs: 2000,
});

robustness({
  name: 'parseColumnCount',
  valid: lenencValue.filter((n) => n > 0).map((n) => ({ payload: lenenc(n), ctx: null })),
  ctx: fc.constant(null),
  garbage: fc.array(interestingByte, { maxLength: 12 }).map((a) => Buffer.from(a)),
  parse: (b) => parseColumnCount(b),
  allowed: isMalformed,
  runs: 2000,
});

// ---------------------------------------------------------------------------------------------
// Control datagrams (never throw at all: errors are reported in the result).

const controlCommands = fc.array(
  fc.record({
    command: u16,
    payload: fc.oneof(
      { weight: 30, arbitrary: bin(64) },
      { weight: 1, arbitrary: fc.constantFrom(0xfffc, 0xffff).map((n) => Buffer.alloc(n, 0x2a)) },
    ),
  }),
  { maxLength: 8 },
);

function buildDatagram(commands: readonly { command: number; payload: Buffer }[]): Buffer {
  const b = new ControlDatagramBuilder();
  for (const c of commands) b.add(c.command, c.payload);
  const d = b.toBuffer();
  assert.equal(b.length, d.length);
  return d;
}

describe('control datagrams', () => {
  test('ControlDatagramBuilder → parseControlDatagram round trip; the layout is the spec one', () => {
    check(
      fc.property(controlCommands, (commands) => {
        const d = buildDatagram(commands);
        const expected = Buffer.concat([
          Buffer.from([0x63, 0x04, 0x61, 0x01]),
          ...commands.flatMap((c) => {
            const header = Buffer.alloc(4);
            header.writeUInt16BE(c.payload.length, 0);
            header.writeUInt16BE(c.command, 2);
            return [header, c.payload, Buffer.alloc((4 - (c.payload.length % 4)) % 4)];
          }),
        ]);
        assert.ok(d.equals(expected), 'magic, then big-endian length and command, payload padded to 4');
        const parsed = parseControlDatagram(d);
        assert.equal(parsed.error, undefined);
        assert.deepEqual(
          parsed.commands.map((c) => ({ command: c.command, payload: Buffer.from(c.payload) })),
          commands.map((c) => ({ command: c.command, payload: c.payload })),
        );
      }),
      { numRuns: 300 },
    );
  });

  const datagramGarbage = fc.oneof(
    bin(4096),
    // Mostly the right magic and a multiple-of-4 length, so the command loop is reached.
    fc.array(interestingByte, { maxLength: 80 }).map((a) => {
      const body = Buffer.from(a.slice(0, a.length - (a.length % 4)));
      const magic = Buffer.alloc(4);
      magic.writeUInt32BE(CONTROL_MAGIC, 0);
      return Buffer.concat([magic, body]);
    }),
    controlCommands.chain((cs) => mutations.map((ms) => mutate(buildDatagram(cs), ms))),
  );

  test('arbitrary datagrams never throw; parsed commands lie inside the datagram and rebuild to the same', () => {
    const outcomes = { clean: 0, refused: 0 };
    check(
      fc.property(datagramGarbage, (d) => {
        const parsed = run(
          () => parseControlDatagram(d),
          () => false,
        );
        assert.ok(parsed.ok);
        const { commands, error } = parsed.value as ReturnType<typeof parseControlDatagram>;
        assert.ok(commands.length <= Math.max(0, (d.length - 4) / 4));
        for (const c of commands) {
          assert.equal(c.payload.buffer, d.buffer, 'payloads are views into the datagram');
          assert.ok(
            c.payload.byteOffset >= d.byteOffset + 8 &&
              c.payload.byteOffset + c.payload.length <= d.byteOffset + d.length,
          );
        }
        if (error === undefined) {
          outcomes.clean++;
          // What was accepted means the same when rebuilt by the builder (padding normalised).
          const again = parseControlDatagram(
            buildDatagram(commands.map((c) => ({ command: c.command, payload: Buffer.from(c.payload) }))),
          );
          assert.equal(again.error, undefined);
          assert.deepEqual(
            again.commands.map((c) => [c.command, Buffer.from(c.payload)]),
            commands.map((c) => [c.command, Buffer.from(c.payload)]),
          );
        } else {
          outcomes.refused++;
        }
      }),
      { numRuns: 3000 },
    );
    assert.ok(outcomes.clean > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
  });

  test('a valid datagram cut at a multiple of 4 yields a prefix of its commands', () => {
    check(
      fc.property(controlCommands, fc.nat(), (commands, at) => {
        const d = buildDatagram(commands);
        const cut = 4 + 4 * (at % ((d.length - 4) / 4 + 1));
        const parsed = parseControlDatagram(d.subarray(0, cut));
        const got = parsed.commands.map((c) => ({ command: c.command, payload: Buffer.from(c.payload) }));
        assert.deepEqual(got, commands.slice(0, got.length));
      }),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// PacketFramer.

interface Logical {
  readonly seq: number;
  readonly payload: Buffer;
}

/**
 * The protocol's framing, from the spec: physical packets of at most 0xFFFFFF bytes with
 * consecutive sequence ids, a payload that is a multiple of 0xFFFFFF ending with an empty one.
 * Returns the stream, the offset of every physical header and the expected logical packets.
 */
function oracleFrame(logicals: readonly Logical[]): {
  stream: Buffer;
  headers: number[];
  starts: number[];
  packets: Logical[];
} {
  let total = 0;
  for (const l of logicals) total += l.payload.length + 4 * (Math.floor(l.payload.length / MAX) + 1);
  const stream = Buffer.allocUnsafe(total);
  const headers: number[] = [];
  const starts: number[] = [];
  const packets: Logical[] = [];
  let at = 0;
  for (const l of logicals) {
    starts.push(at);
    let seq = l.seq;
    let src = 0;
    for (;;) {
      const n = Math.min(MAX, l.payload.length - src);
      headers.push(at);
      stream.writeUIntLE(n, at, 3);
      stream[at + 3] = seq & 0xff;
      at += 4;
      at += l.payload.copy(stream, at, src, src + n);
      src += n;
      if (n < MAX) break;
      seq++;
    }
    packets.push({ seq: seq & 0xff, payload: l.payload });
  }
  assert.equal(at, total);
  return { stream, headers, starts, packets };
}

/** Chunk boundaries: arbitrary offsets (repeats give empty chunks) taken modulo the stream length. */
const cutsArb = fc.array(fc.nat(), { maxLength: 12 });
const cutsFor = (raw: readonly number[], length: number): number[] =>
  raw.map((c) => c % (length + 1)).sort((a, b) => a - b);

/** Compare packets by seq, length and content (no deepEqual: a 16 MiB mismatch must not print 16 MiB). */
function assertPackets(actual: readonly Packet[], expected: readonly Logical[]): void {
  assert.equal(actual.length, expected.length, 'packet count');
  actual.forEach((p, i) => {
    const e = expected[i]!;
    assert.equal(p.seq, e.seq, `seq of packet ${i}`);
    assert.equal(p.payload.length, e.payload.length, `length of packet ${i}`);
    assert.ok(p.payload.equals(e.payload), `payload of packet ${i} differs`);
  });
}

/** Feed chunks; check that payloads handed out earlier never change while later chunks arrive. */
function feedChecked(framer: PacketFramer, chunks: readonly Buffer[]): Packet[] {
  const out: Packet[] = [];
  const copies: Buffer[] = [];
  for (const c of chunks) {
    const before = Buffer.from(c);
    for (const p of framer.push(c)) {
      out.push(p);
      if (p.payload.length < 4096) copies.push(Buffer.from(p.payload));
    }
    assert.ok(c.equals(before), 'the framer does not write into pushed chunks');
  }
  let k = 0;
  for (const p of out)
    if (p.payload.length < 4096) assert.ok(p.payload.equals(copies[k++]!), 'handed-out payload intact');
  return out;
}

const smallLogicals = fc.array(fc.record({ seq: byte, payload: bin(300) }), { maxLength: 16 });

describe('PacketFramer', () => {
  test('any packet list, cut into chunks anywhere, comes out exactly (payloads and sequence ids)', () => {
    check(
      fc.property(smallLogicals, cutsArb, fc.integer({ min: 0, max: 100 }), (logicals, rawCuts, slack) => {
        const { stream, packets } = oracleFrame(logicals);
        const maxPayload = Math.max(0, ...logicals.map((l) => l.payload.length)) + slack;
        const framer = new PacketFramer(maxPayload);
        assertPackets(feedChecked(framer, splitAt(stream, cutsFor(rawCuts, stream.length))), packets);
        assert.equal(framer.takeBuffered(), null, 'nothing left over');
      }),
      { numRuns: 1000 },
    );
  });

  test('the writer frames what the framer reads (PacketWriter.finish → PacketFramer)', () => {
    check(
      fc.property(
        fc.array(fc.tuple(byte, fc.array(writeOp, { maxLength: 4 })), { maxLength: 6 }),
        cutsArb,
        (specs, rawCuts) => {
          const written = specs.map(([seq, ops]) => {
            const w = new PacketWriter(8);
            for (const op of ops) applyWrite(w, op);
            return { seq, payload: Buffer.from(w.payload()), framed: w.finish(seq) };
          });
          const stream = Buffer.concat(written.map((w) => w.framed));
          const got = feedChecked(new PacketFramer(MAX), splitAt(stream, cutsFor(rawCuts, stream.length)));
          assertPackets(got, written);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a stream cut anywhere: complete packets out, the rest back from takeBuffered() byte-exactly', () => {
    check(
      fc.property(smallLogicals, cutsArb, fc.nat(), (logicals, rawCuts, rawEnd) => {
        const { stream, headers, packets } = oracleFrame(logicals);
        const end = rawEnd % (stream.length + 1);
        const framer = new PacketFramer(300);
        const got = feedChecked(framer, splitAt(stream.subarray(0, end), cutsFor(rawCuts, end)));
        const complete = headers.filter((h, i) => (headers[i + 1] ?? stream.length) <= end && h < end).length;
        assertPackets(got, packets.slice(0, complete));
        const consumed = headers[complete] ?? stream.length;
        const rest = framer.takeBuffered();
        if (consumed === end) assert.equal(rest, null);
        else assert.ok(rest !== null && rest.equals(stream.subarray(consumed, end)), 'the unconsumed bytes exactly');
        assert.equal(framer.takeBuffered(), null, 'taken once');
        // A new framer given the remainder and the rest of the stream finishes the job.
        const again = new PacketFramer(300).push(Buffer.concat([rest ?? Buffer.alloc(0), stream.subarray(end)]));
        assertPackets([...got, ...again], packets);
      }),
      { numRuns: 1000 },
    );
  });

  test('a packet over the limit: PacketTooLargeError as soon as its header is complete, then always', () => {
    check(
      fc.property(
        fc.array(fc.record({ seq: byte, payload: bin(100) }), { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 0, max: 64 }),
        cutsArb,
        (logicals, maxPayload, rawCuts) => {
          const { stream, headers, packets } = oracleFrame(logicals);
          const firstTooLarge = logicals.findIndex((l) => l.payload.length > maxPayload);
          const chunks = splitAt(stream, cutsFor(rawCuts, stream.length));
          const framer = new PacketFramer(maxPayload);
          const got: Packet[] = [];
          let fed = 0;
          let threwAt = -1; // bytes fed when the error came
          for (const c of chunks) {
            const o = run(() => framer.push(c), isTooLarge);
            if (o.ok) got.push(...(o.value as Packet[]));
            else if (threwAt < 0) threwAt = fed + c.length;
            fed += c.length;
          }
          if (firstTooLarge < 0) {
            assert.equal(threwAt, -1, 'no error when every packet fits');
            assertPackets(got, packets);
            return;
          }
          const headerEnd = headers[firstTooLarge]! + 4;
          assert.ok(threwAt >= headerEnd, 'not before the header of the oversized packet is complete');
          // The error comes with the chunk that completes that header; it and every later push fail.
          const chunkEnds = chunks.reduce<number[]>((a, c) => [...a, (a[a.length - 1] ?? 0) + c.length], []);
          assert.equal(
            threwAt,
            chunkEnds.find((e) => e >= headerEnd),
          );
          const failedOnwards = threwAt - (chunks[chunkEnds.indexOf(threwAt)]?.length ?? 0);
          const delivered = headers.filter(
            (_h, i) => i < firstTooLarge && (headers[i + 1] ?? stream.length) <= failedOnwards,
          ).length;
          assertPackets(got, packets.slice(0, delivered));
          assert.throws(() => framer.push(Buffer.of(0)), isTooLarge);
        },
      ),
      { numRuns: 1000 },
    );
  });

  const streamGarbage = fc
    .array(
      fc.oneof(
        bin(24),
        // Plausible headers with small lengths, so that garbage also frames into packets.
        fc.tuple(fc.integer({ min: 0, max: 40 }), byte).map(([len, seq]) => Buffer.concat([le(len, 3), le(seq, 1)])),
      ),
      { maxLength: 20 },
    )
    .map((parts) => Buffer.concat(parts));

  test('garbage: packets or PacketTooLargeError only; without an error, packets + takeBuffered() are the input', () => {
    const outcomes = { clean: 0, tooLarge: 0, packets: 0 };
    check(
      fc.property(
        fc.oneof(streamGarbage, garbageBytes),
        cutsArb,
        fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: MAX - 1 })),
        (input, rawCuts, maxPayload) => {
          const framer = new PacketFramer(maxPayload);
          const got: Packet[] = [];
          let failed = false;
          for (const c of splitAt(input, cutsFor(rawCuts, input.length))) {
            const o = run(() => framer.push(c), isTooLarge);
            if (o.ok) {
              assert.ok(!failed, 'once failed, every later push fails too');
              got.push(...(o.value as Packet[]));
            } else {
              failed = true;
            }
          }
          outcomes.packets += got.length;
          for (const p of got) assert.ok(p.payload.length <= maxPayload, 'no packet over the limit');
          if (failed) {
            outcomes.tooLarge++;
            return;
          }
          outcomes.clean++;
          // Below 0xFFFFFF every logical packet is one physical packet: re-framing is byte-exact.
          const reframed = Buffer.concat([
            ...got.map((p) => packet(p.seq, p.payload)),
            framer.takeBuffered() ?? Buffer.alloc(0),
          ]);
          assert.ok(reframed.equals(input), 'bytes conserved');
        },
      ),
      { numRuns: 3000 },
    );
    assert.ok(outcomes.clean > 0 && outcomes.tooLarge > 0 && outcomes.packets > 0, JSON.stringify(outcomes));
  });

  describe('payloads at and beyond 0xFFFFFF (fixed large sizes, few runs)', () => {
    // One random pool; payloads are views into it, so a run costs the stream copy only.
    let pool: Buffer | null = null;
    const payloadOf = (len: number, off: number): Buffer => {
      pool ??= randomFillSync(Buffer.allocUnsafe(2 * MAX + 64));
      const start = off % (pool.length - len + 1);
      return pool.subarray(start, start + len);
    };
    const bigLength = fc.constantFrom(MAX - 1, MAX, MAX + 1, MAX + 1000, 2 * MAX);
    const bigCase = fc.record({
      before: fc.array(fc.record({ seq: byte, payload: bin(20) }), { maxLength: 3 }),
      big: fc.record({ seq: byte, len: bigLength, off: fc.nat() }),
      after: fc.array(fc.record({ seq: byte, payload: bin(20) }), { maxLength: 3 }),
      // Cuts at a physical header (by index) plus a small offset, and anywhere.
      headerCuts: fc.array(fc.tuple(fc.nat(), fc.integer({ min: -5, max: 5 })), { maxLength: 4 }),
      cuts: fc.array(fc.nat(), { maxLength: 4 }),
      // Where the input stops (null: the whole stream): mostly inside the large packet.
      stop: fc.option(fc.nat()),
    });

    test('framePayload and the framer agree with the spec on multi-packet payloads, cut anywhere', () => {
      check(
        fc.property(bigCase, fc.constantFrom(0, 1), (c, extraLimit) => {
          const big = { seq: c.big.seq, payload: payloadOf(c.big.len, c.big.off) };
          const logicals = [...c.before, big, ...c.after];
          const { stream, headers, starts, packets } = oracleFrame(logicals);
          // The writer splits exactly like the spec (sequence ids continue and wrap).
          const bigStart = headers[c.before.length]!;
          assert.ok(
            framePayload(big.payload, big.seq).equals(
              stream.subarray(bigStart, bigStart + big.payload.length + 4 * (Math.floor(big.payload.length / MAX) + 1)),
            ),
          );
          const end = c.stop === null ? stream.length : c.stop % (stream.length + 1);
          const cuts = [
            ...c.headerCuts.map(([h, d]) => Math.min(end, Math.max(0, headers[h % headers.length]! + d))),
            ...c.cuts.map((x) => x % (end + 1)),
          ].sort((a, b) => a - b);
          const limit = c.big.len + extraLimit;
          const framer = new PacketFramer(limit);
          const got = feedChecked(framer, splitAt(stream.subarray(0, end), cuts));
          const complete = starts.filter((_s, i) => (starts[i + 1] ?? stream.length) <= end).length;
          assertPackets(got, packets.slice(0, complete));
          // takeBuffered() returns the rest byte-exactly, even inside a multi-packet payload...
          const consumed = starts[complete] ?? stream.length;
          const rest = framer.takeBuffered();
          if (consumed === end) assert.equal(rest, null);
          else assert.ok(rest !== null && rest.equals(stream.subarray(consumed, end)), 'the unconsumed bytes exactly');
          // ...so that re-framing the packets (as PacketChannel.detach does) plus the rest is the input.
          const reframed = got.map((p) => {
            const parts = Math.floor(p.payload.length / MAX) + 1;
            return framePayload(p.payload, (p.seq - (parts - 1)) & 0xff);
          });
          assert.ok(Buffer.concat([...reframed, rest ?? Buffer.alloc(0)]).equals(stream.subarray(0, end)));
          const again = new PacketFramer(limit).push(Buffer.concat([rest ?? Buffer.alloc(0), stream.subarray(end)]));
          assertPackets(again, packets.slice(complete));
        }),
        { numRuns: 12 },
      );
    });

    test('the limit applies to the joined payload of continuation packets', () => {
      check(
        fc.property(bigLength, fc.integer({ min: -2, max: 2 }), byte, (len, delta, seq) => {
          const maxPayload = len + delta;
          const { stream } = oracleFrame([{ seq, payload: payloadOf(len, 0) }]);
          const o = run(() => new PacketFramer(maxPayload).push(stream), isTooLarge);
          assert.equal(o.ok, delta >= 0, `len ${len}, limit ${maxPayload}`);
        }),
        { numRuns: 10 },
      );
    });
  });
});
