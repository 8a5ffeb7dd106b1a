// Property-based tests (fast-check) for ClientCommandScanner: for any client byte stream cut into
// any chunks, the scanner forwards exactly the bytes before the first intercepted command packet
// and holds that packet and everything after it. A command packet is the first physical packet of
// a logical packet (not the continuation of a 0xFFFFFF one) with sequence id 0, a non-empty payload
// and a first byte in the intercepted set.

import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';

import { ClientCommandScanner, heldPacketLength } from '../../../src/net/command-scanner.js';
import { le, splitAt } from '../../helpers/bytes.js';

const MAX = 0xffffff; // largest physical payload (2^24 - 1)

/**
 * fc.assert with a time limit: shrinking a failure found on a large input can otherwise take many
 * minutes. Past the limit fast-check stops and reports the failure with the counterexample shrunk
 * so far (a passing run takes a small fraction of the limit).
 */
function check<Ts>(property: fc.IProperty<Ts>, params: fc.Parameters<Ts> = {}): void {
  fc.assert(property, { interruptAfterTimeLimit: 15_000, ...params });
}

interface Physical {
  readonly seq: number;
  readonly payload: Buffer;
}

function frame(packets: readonly Physical[]): { stream: Buffer; offsets: number[] } {
  const offsets: number[] = [];
  let at = 0;
  const parts = packets.flatMap((p) => {
    offsets.push(at);
    at += 4 + p.payload.length;
    return [le(p.payload.length, 3), le(p.seq, 1), p.payload];
  });
  return { stream: Buffer.concat(parts), offsets };
}

/** The oracle: index of the first physical packet the scanner must intercept, or -1. */
function firstIntercepted(packets: readonly Physical[], commands: readonly number[]): number {
  let continued = false;
  for (const [i, p] of packets.entries()) {
    const first = p.payload[0];
    if (!continued && p.seq === 0 && first !== undefined && commands.includes(first)) return i;
    continued = p.payload.length === MAX;
  }
  return -1;
}

/** Feed `stream` in pieces as the relay does: once something is held, later input is appended to it. */
function scanAll(commands: readonly number[], pieces: readonly Buffer[]): { forwarded: Buffer; held: Buffer | null } {
  const scanner = new ClientCommandScanner(commands);
  const forwarded: Buffer[] = [];
  let held: Buffer | null = null;
  for (const piece of pieces) {
    if (held !== null) {
      held = Buffer.concat([held, piece]);
      continue;
    }
    const r = scanner.scan(piece);
    forwarded.push(r.forward);
    held = r.held;
  }
  return { forwarded: Buffer.concat(forwarded), held };
}

const cutsArb = fc.array(fc.nat(), { maxLength: 12 });
const cutsFor = (raw: readonly number[], length: number): number[] =>
  raw.map((c) => c % (length + 1)).sort((a, b) => a - b);

// Commands and first payload bytes from a small universe, so that hits and near misses are common.
const commandByte = fc.integer({ min: 0, max: 7 });
const commandSet = fc.uniqueArray(commandByte, { minLength: 1, maxLength: 3 });
const physical: fc.Arbitrary<Physical> = fc.record({
  seq: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xff })),
  payload: fc.oneof(
    fc.constant(Buffer.alloc(0)),
    fc
      .tuple(commandByte, fc.uint8Array({ maxLength: 40, size: 'max' }))
      .map(([c, rest]) => Buffer.concat([Buffer.of(c), rest])),
  ),
});

function checkScan(packets: readonly Physical[], commands: readonly number[], pieces: readonly Buffer[]): void {
  const { stream, offsets } = frame(packets);
  const { forwarded, held } = scanAll(commands, pieces);
  const hit = firstIntercepted(packets, commands);
  if (hit < 0) {
    assert.equal(held, null, 'nothing held');
    assert.equal(forwarded.length, stream.length, 'everything forwarded');
    assert.ok(forwarded.equals(stream));
  } else {
    const at = offsets[hit]!;
    assert.equal(forwarded.length, at, 'forwarded up to the intercepted packet');
    assert.ok(forwarded.equals(stream.subarray(0, at)));
    assert.ok(held !== null && held.equals(stream.subarray(at)), 'the intercepted packet and all after it held');
    assert.equal(heldPacketLength(held), 4 + packets[hit]!.payload.length);
  }
}

describe('ClientCommandScanner properties', () => {
  test('any packet list, cut anywhere: forwards exactly up to the first intercepted command', () => {
    const outcomes = { intercepted: 0, passed: 0 };
    check(
      fc.property(fc.array(physical, { maxLength: 12 }), commandSet, cutsArb, (packets, commands, rawCuts) => {
        const { stream } = frame(packets);
        checkScan(packets, commands, splitAt(stream, cutsFor(rawCuts, stream.length)));
        if (firstIntercepted(packets, commands) < 0) outcomes.passed++;
        else outcomes.intercepted++;
      }),
      { numRuns: 2000 },
    );
    assert.ok(outcomes.intercepted > 0 && outcomes.passed > 0, JSON.stringify(outcomes));
  });

  const garbage = fc
    .array(
      fc.oneof(
        fc.uint8Array({ maxLength: 24, size: 'max' }).map((u) => Buffer.from(u)),
        // Plausible headers (small lengths, often sequence id 0) followed by a command-ish byte.
        fc
          .tuple(
            fc.integer({ min: 0, max: 30 }),
            fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xff })),
            commandByte,
          )
          .map(([len, seq, c]) => Buffer.concat([le(len, 3), le(seq, 1), Buffer.of(c)])),
      ),
      { maxLength: 20 },
    )
    .map((parts) => Buffer.concat(parts));

  test('arbitrary bytes: never throws, the result does not depend on the chunking, no byte is lost', () => {
    check(
      fc.property(
        fc.oneof(
          garbage,
          fc.uint8Array({ maxLength: 2048, size: 'max' }).map((u) => Buffer.from(u)),
        ),
        commandSet,
        cutsArb,
        (stream, commands, rawCuts) => {
          const whole = scanAll(commands, [stream]);
          const split = scanAll(commands, splitAt(stream, cutsFor(rawCuts, stream.length)));
          assert.ok(split.forwarded.equals(whole.forwarded), 'same bytes forwarded');
          assert.deepEqual(split.held, whole.held, 'same bytes held');
          assert.ok(stream.subarray(0, split.forwarded.length).equals(split.forwarded), 'forwarded is a prefix');
          if (split.held !== null) {
            assert.ok(Buffer.concat([split.forwarded, split.held]).equals(stream), 'forwarded + held = input');
            assert.ok(heldPacketLength(split.held) >= 4);
          } else {
            // Only an incomplete header (at most 4 bytes) may be waiting for more input.
            assert.ok(
              stream.length - split.forwarded.length <= 4,
              `${stream.length - split.forwarded.length} bytes unaccounted`,
            );
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('heldPacketLength: -1 below 4 bytes, else 4 + the header length', () => {
    check(
      fc.property(fc.uint8Array({ maxLength: 12 }), (u) => {
        const b = Buffer.from(u);
        assert.equal(heldPacketLength(b), b.length < 4 ? -1 : 4 + b[0]! + (b[1]! << 8) + (b[2]! << 16));
      }),
    );
  });

  test('0xFFFFFF packets: their continuations are never commands, whatever their first byte and sequence id', () => {
    // One shared 16 MiB payload full of command bytes; only its first byte and the packets around vary.
    const bigPayload = Buffer.alloc(MAX, 2);
    check(
      fc.property(
        fc.array(physical, { maxLength: 2 }),
        fc.integer({ min: 0, max: 15 }), // the big packet's first byte: a command byte half of the time
        fc.integer({ min: 1, max: 2 }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 20 }),
        fc.array(physical, { maxLength: 3 }),
        commandSet,
        cutsArb,
        (before, firstByte, fullParts, seqZero, tailRest, after, commands, rawCuts) => {
          bigPayload[0] = firstByte;
          // The continuations get sequence id 0 (wrong, but it must not matter) or their proper one.
          const big: Physical[] = [];
          for (let i = 0; i < fullParts; i++) big.push({ seq: i === 0 || seqZero ? 0 : i, payload: bigPayload });
          // The packet that ends the logical packet starts with an intercepted command byte.
          const tail = { seq: seqZero ? 0 : fullParts, payload: Buffer.concat([Buffer.of(commands[0]!), tailRest]) };
          const packets = [...before, ...big, tail, ...after];
          const { stream } = frame(packets);
          checkScan(packets, commands, splitAt(stream, cutsFor(rawCuts, stream.length)));
        },
      ),
      { numRuns: 20 },
    );
  });
});
