import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseKillStatement } from '../../../src/proxy/kill.js';

const parse = (sql: string): ReturnType<typeof parseKillStatement> => parseKillStatement(Buffer.from(sql, 'latin1'));

test('KILL statements that name a connection are recognised in any case, with comments and a semicolon', () => {
  assert.deepEqual(parse('KILL 5'), { kind: 'connection', modifier: '', id: 5 });
  assert.deepEqual(parse('kill query 7'), { kind: 'query', modifier: '', id: 7 });
  assert.deepEqual(parse('KiLl HARD CONNECTION 12;'), { kind: 'connection', modifier: 'HARD', id: 12 });
  assert.deepEqual(parse(' /* c */ -- line\n\tkill\n/**/9 ; '), { kind: 'connection', modifier: '', id: 9 });
  assert.deepEqual(parse('# note\nKILL SOFT QUERY 3'), { kind: 'query', modifier: 'SOFT', id: 3 });
});

test('anything else is not a KILL: other statements, longer words, query ids, users, executable comments', () => {
  for (const sql of [
    '',
    'SELECT 1',
    'KIL 5',
    'KILLER 5',
    'KILL5',
    'KILLQUERY 5',
    'kill_it 5',
    'KILL',
    'KILL QUERY ID 5',
    'KILL USER bob',
    'KILL 5 6',
    '/*!KILL 5*/',
    'SELECT 1; KILL 5',
    '/* unterminated KILL 5',
  ]) {
    assert.equal(parse(sql), null, sql);
  }
});
