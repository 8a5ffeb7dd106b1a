// The error catalogue is the only source of error numbers and SQLSTATEs, and docs/errors.md
// describes exactly what it holds.

import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  ClientErrors,
  ErrorCodes,
  MalformedPacketError,
  PacketTooLargeError,
  ProxyError,
  isParseError,
} from '../../../src/util/errors.js';
import { errPacket } from '../../../src/proxy/client-login.js';
import { parseErr } from '../../../src/protocol/packets/generic.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const DOC = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
const specs = Object.values(ClientErrors);

/** The rows of the markdown table that follows `heading`. */
function tableAfter(text: string, heading: string): string[][] {
  const at = text.indexOf(heading);
  assert.ok(at >= 0, `docs/errors.md has no "${heading}"`);
  const lines = text.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim()),
    );
  }
  return rows;
}

test('catalogue entries have distinct codes and well-formed numbers and SQLSTATEs', () => {
  assert.equal(new Set(specs.map((s) => s.code)).size, specs.length);
  for (const s of specs) {
    assert.match(s.code, /^MYP_[A-Z0-9_]+$/);
    assert.ok(Number.isInteger(s.errno) && s.errno >= 1000 && s.errno < 5000, s.code);
    assert.match(s.sqlState, /^[0-9A-Z]{5}$/, s.code);
  }
});

test("docs/errors.md's catalogue table is the catalogue, both ways", () => {
  const rows = tableAfter(DOC, '### The catalogue');
  const documented = rows.map(([name, errno, sqlState, message]) => ({ name, errno, sqlState, message }));
  const expected = specs.map((s) => ({
    name: `\`${s.code}\``,
    errno: String(s.errno),
    sqlState: s.sqlState,
    message: s.message === '' ? '*varies*' : `\`${s.message}\``,
  }));
  assert.deepEqual(documented, expected);
});

test('every catalogue entry is explained by a row of the client-error tables, and every row has an entry', () => {
  const explained = [...tableAfter(DOC, '### Login errors'), ...tableAfter(DOC, '### Errors after the login')];
  const numbered = explained.filter(([errno]) => /^\d+$/.test(errno ?? ''));
  assert.ok(numbered.length > 20);
  for (const s of specs) {
    const rows = numbered.filter(([errno, sqlState]) => errno === String(s.errno) && sqlState === s.sqlState);
    assert.ok(rows.length > 0, `${s.code}: no row for ${s.errno} (${s.sqlState}) in docs/errors.md`);
    if (s.message !== '') {
      assert.ok(
        rows.some(([, , message]) => message!.startsWith(`\`${s.message}`)),
        `${s.code}: no row for ${s.errno} shows "${s.message}"`,
      );
    }
  }
  for (const [errno, sqlState, message] of numbered) {
    assert.ok(
      specs.some((s) => String(s.errno) === errno && s.sqlState === sqlState),
      `docs/errors.md documents ${errno ?? ''} (${sqlState ?? ''}) ${message ?? ''} that the catalogue does not have`,
    );
  }
});

test('internal error codes are documented, both ways', () => {
  const rows = tableAfter(DOC, 'carry\na code of their own');
  assert.deepEqual(
    rows.map(([code]) => code).sort(),
    Object.values(ErrorCodes)
      .map((c) => `\`${c}\``)
      .sort(),
  );
});

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

test('no code outside the catalogue writes an error number or SQLSTATE of its own', () => {
  const sqlState = /['"`](?:0[0-9]|2[0-9]|4[0-9]|70|HY)[0-9A-Z]{3}['"`]/;
  const handBuilt = /\berrno\s*:\s*\d|writeErr\(/;
  const offenders: string[] = [];
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    const rel = relative(ROOT, file);
    // The catalogue itself, and the ERR codec (which reads the server's errors too).
    if (rel === 'src/util/errors.ts' || rel === 'src/protocol/packets/generic.ts') continue;
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      const theHelper = rel === 'src/proxy/client-login.ts' && line.includes('return writeErr(');
      if ((sqlState.test(line) || handBuilt.test(line)) && !theHelper)
        offenders.push(`${rel}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(offenders, []);
});

test('errPacket sends the catalogue entry, with its text or the one given', () => {
  const p = errPacket(2, ClientErrors.CHANGE_USER_REFUSED);
  assert.equal(p[3], 2);
  assert.deepEqual(parseErr(p.subarray(4)), {
    errno: 1235,
    sqlState: '42000',
    message: ClientErrors.CHANGE_USER_REFUSED.message,
  });
  assert.deepEqual(parseErr(errPacket(0x101, ClientErrors.KILL_DENIED, 'You are not owner of thread 7').subarray(4)), {
    errno: 1095,
    sqlState: 'HY000',
    message: 'You are not owner of thread 7',
  });
});

test('isParseError: the framer and parsers, nothing else', () => {
  assert.ok(isParseError(new MalformedPacketError()));
  assert.ok(isParseError(new PacketTooLargeError(10)));
  assert.ok(!isParseError(new ProxyError(ErrorCodes.CONNECT_FAILED, 'x')));
  assert.ok(!isParseError(new Error('x')));
});
