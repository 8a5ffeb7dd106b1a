import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { ClientCommandScanner, heldPacketLength } from '../../../src/net/command-scanner.js';
import { packet } from '../../helpers/bytes.js';

const INIT_DB = 0x02;
const QUERY = 0x03;

/** Feed `stream` in the given pieces; return what was forwarded and what was held. */
function run(stream: Buffer, cuts: number[]): { forwarded: Buffer; held: Buffer | null } {
  const scanner = new ClientCommandScanner([INIT_DB]);
  const forwarded: Buffer[] = [];
  let held: Buffer | null = null;
  let at = 0;
  for (const end of [...cuts, stream.length]) {
    const piece = stream.subarray(at, end);
    at = end;
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

const before = Buffer.concat([packet(0, QUERY, 'select 1'), packet(0, QUERY, 'x'.repeat(300))]);
const initDb = packet(0, INIT_DB, 'shop');
const after = packet(0, QUERY, 'select 2');
const stream = Buffer.concat([before, initDb, after]);

test('an intercepted command is found at every split point, nothing before it is held back', () => {
  for (let cut = 0; cut <= stream.length; cut++) {
    const { forwarded, held } = run(stream, [cut]);
    assert.deepEqual(forwarded, before, `cut at ${cut}`);
    assert.deepEqual(held, Buffer.concat([initDb, after]), `cut at ${cut}`);
    assert.equal(heldPacketLength(held), initDb.length);
  }
});

test('two cuts anywhere give the same result', () => {
  for (let a = 0; a <= stream.length; a += 3) {
    for (let b = a; b <= stream.length; b += 5) {
      const { forwarded, held } = run(stream, [a, b]);
      assert.deepEqual(forwarded, before);
      assert.deepEqual(held, Buffer.concat([initDb, after]));
    }
  }
});

test('the command byte inside a payload or a continuation packet is not a command', () => {
  // A query whose text contains a packet-like INIT_DB, then a 0xFFFFFF packet whose continuation
  // (sequence id 1) starts with the INIT_DB byte.
  const tricky = packet(0, QUERY, Buffer.from([5, 0, 0, 0, INIT_DB, 0x61]));
  const big = Buffer.alloc(4 + 0xffffff);
  big.writeUIntLE(0xffffff, 0, 3);
  big[3] = 0;
  big[4] = QUERY;
  const continuation = packet(1, INIT_DB, 'not a command');
  const s = Buffer.concat([tricky, big, continuation]);
  const { forwarded, held } = run(s, [7, 4 + 0xffffff + 3]);
  assert.equal(held, null);
  assert.equal(forwarded.length, s.length);
});

test('an empty packet and non-zero sequence ids are forwarded', () => {
  const s = Buffer.concat([packet(0), packet(3, INIT_DB, 'x')]);
  const { forwarded, held } = run(s, [2]);
  assert.equal(held, null);
  assert.deepEqual(forwarded, s);
});
