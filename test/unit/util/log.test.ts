// The log sink's escaping (no text can start a line of its own or restyle a terminal), quoting of
// bytes that should be text, and the rate limit of repeated lines.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { test } from 'node:test';
import {
  LogRateLimit,
  escapeLogText,
  logError,
  logInfo,
  quote,
  quoteBytes,
  setLogSinks,
} from '../../../src/util/log.js';

test('every control character, C1 control, line separator and lone surrogate becomes visible', () => {
  assert.equal(escapeLogText('plain text, ünïcödé ✓'), 'plain text, ünïcödé ✓');
  assert.equal(escapeLogText('a\nb\rc\td'), 'a\\nb\\rc\\td');
  assert.equal(escapeLogText('\x1b[31mred\x07\x00\x7f'), '\\x1b[31mred\\x07\\x00\\x7f');
  assert.equal(escapeLogText('\u009b2J\u2028\u2029'), '\\x9b2J\\u2028\\u2029');
  assert.equal(escapeLogText('a\ud800b\udc00'), 'a\\ud800b\\udc00');
  assert.equal(escapeLogText('\ud83d\ude00'), '\ud83d\ude00'); // a valid pair stays
});

test('the sinks get one line per call, whatever the text', () => {
  const lines: string[] = [];
  setLogSinks(
    (l) => lines.push(`out ${l}`),
    (l) => lines.push(`err ${l}`),
  );
  try {
    logInfo('one\ntwo');
    logError('three\r\nfour');
  } finally {
    setLogSinks(
      (l) => process.stdout.write(l + '\n'),
      (l) => process.stderr.write(l + '\n'),
    );
  }
  assert.deepEqual(lines, ['out one\\ntwo', 'err three\\r\\nfour']);
});

test('quote() escapes quotes and backslashes; quoteBytes() shows invalid UTF-8 byte by byte', () => {
  assert.equal(quote('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(quoteBytes(Buffer.from('ok "x"')), '"ok \\"x\\""');
  assert.equal(quoteBytes(Buffer.from([0x61, 0xff, 0xc3, 0xa9, 0xc3, 0x5c])), '"a\\xffé\\xc3\\\\"');
  assert.equal(quoteBytes(Buffer.from([0xed, 0xa0, 0x80])), '"\\xed\\xa0\\x80"'); // an encoded surrogate is invalid
});

test('a rate limit lets a burst through, then counts what it left out', () => {
  const limit = new LogRateLimit(2, 1000);
  assert.equal(limit.take(0), '');
  assert.equal(limit.take(10), '');
  assert.equal(limit.take(20), undefined);
  assert.equal(limit.take(30), undefined);
  assert.equal(limit.take(1500), ' (2 similar line(s) suppressed)');
  assert.equal(limit.take(1600), '');
});

test('info lines are written in one batch per loop turn, yet keep their order with error lines and survive process.exit()', () => {
  const script = `
    const { logInfo, logError, setLogPrefix } = await import(${JSON.stringify(resolve('src/util/log.ts'))});
    setLogPrefix('[worker 1] ');
    logInfo('a'); logInfo('b'); logError('c'); logInfo('d');
    process.exit(0);
  `;
  // stdout and stderr into one pipe: the order in which the lines reach it is what a reader sees.
  const r = spawnSync(
    '/bin/sh',
    ['-c', `"${process.execPath}" --import tsx --input-type=module -e "$0" 2>&1`, script],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stdout);
  assert.equal(r.stdout, '[worker 1] a\n[worker 1] b\n[worker 1] c\n[worker 1] d\n');
});
