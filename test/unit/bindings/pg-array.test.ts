// pg:encode_array / pg:decode_array, the libpq conninfo parser, and the pg errors that need no
// server (argument checks, db:execute() at the top level).
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { lua, lauxlib, type LuaState } from '../../../src/lua/fengari.js';
import { newLuaState, errorToString } from '../../../src/lua/state.js';
import { decodeArray, encodeArray, installPg } from '../../../src/bindings/pg.js';
import { conninfoToConfig, parseKeywordValue } from '../../../src/util/conninfo.js';

const b = (s: string): Uint8Array => Buffer.from(s);
const text = (a: readonly (Uint8Array | null)[]): (string | null)[] =>
  a.map((x) => (x === null ? null : Buffer.from(x).toString('latin1')));

function state(): LuaState {
  const L = newLuaState();
  installPg(L, () => null);
  return L;
}

/** Run `src` on the main state; returns [ok, first result or error as a string]. */
function run(L: LuaState, src: string): [boolean, string] {
  assert.equal(lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=test', null), lua.LUA_OK);
  const status = lua.lua_pcall(L, 0, 1, 0);
  const v = lua.lua_type(L, -1) === lua.LUA_TNIL ? 'nil' : errorToString(L, -1);
  lua.lua_pop(L, 1);
  return [status === lua.LUA_OK, v];
}

test('encode_array quotes every element and escapes quotes and backslashes', () => {
  const out = Buffer.from(encodeArray([b('a'), null, b(''), b('x"y\\z'), b('{,}'), b('NULL')])).toString();
  assert.equal(out, '{"a",NULL,"","x\\"y\\\\z","{,}","NULL"}');
  assert.equal(Buffer.from(encodeArray([])).toString(), '{}');
});

test('decode_array handles quoting, NULL, escapes, whitespace and dimensions', () => {
  assert.deepEqual(text(decodeArray(b('{}'))), []);
  assert.deepEqual(text(decodeArray(b('{a,b}'))), ['a', 'b']);
  assert.deepEqual(text(decodeArray(b(' { a b , NULL, null ,"NULL",""} '))), ['a b', null, null, 'NULL', '']);
  assert.deepEqual(text(decodeArray(b('{"x\\"y\\\\z","{,}",a\\,b,\\NULL}'))), ['x"y\\z', '{,}', 'a,b', 'NULL']);
  assert.deepEqual(text(decodeArray(b('[0:1]={1,2}'))), ['1', '2']);
  for (const bad of ['', 'a', '{', '{a', '{a,}', '{,a}', '{{1},{2}}', '{"a}', '{a}x', '{a"b}']) {
    assert.throws(() => decodeArray(b(bad)), /Malformed array literal/, bad);
  }
});

test('round trip of awkward strings, including binary bytes', () => {
  const values = [
    b('"'),
    b('\\'),
    b(','),
    b('{'),
    b('}'),
    b(' lead'),
    b('trail '),
    b(''),
    null,
    b('NULL'),
    Uint8Array.from([0xff, 0, 0x80, 0x22]),
  ];
  assert.deepEqual(text(decodeArray(encodeArray(values))), text(values));
});

test('pg:encode_array / pg:decode_array from Lua', () => {
  const L = state();
  assert.deepEqual(run(L, `return pg:encode_array({'a', nil, 'b"c', 42, 1.5})`), [
    true,
    '{"a",NULL,"b\\"c","42","1.5"}',
  ]);
  assert.deepEqual(
    run(
      L,
      `local t = pg:decode_array('{a,NULL,"b\\\\"c",""}') return tostring(t[1]) .. '|' .. tostring(t[2]) .. '|' .. t[3] .. '|' .. t[4] .. '|' .. #t`,
    ),
    [true, 'a|nil|b"c||4'],
  );
  assert.deepEqual(
    run(
      L,
      `local s = pg:encode_array({'x,y', '{}', '', '\\\\'}) local t = pg:decode_array(s) return t[1] .. t[2] .. '[' .. t[3] .. ']' .. t[4]`,
    ),
    [true, 'x,y{}[]\\'],
  );
  const [ok, msg] = run(L, `return pg:encode_array({{}})`);
  assert.equal(ok, false);
  assert.match(msg, /Unsupported array element type: table/);
  const [ok2, msg2] = run(L, `return pg:decode_array('{oops')`);
  assert.equal(ok2, false);
  assert.match(msg2, /Malformed array literal/);
});

test('libpq keyword/value conninfo', () => {
  assert.deepEqual(
    [...parseKeywordValue(`dbname=foo host=/run/postgresql  user = proxy password='a b\\'c' application_name=x\\ y`)],
    [
      ['dbname', 'foo'],
      ['host', '/run/postgresql'],
      ['user', 'proxy'],
      ['password', "a b'c"],
      ['application_name', 'x y'],
    ],
  );
  assert.deepEqual(conninfoToConfig('host=/tmp port=5433 dbname=d user=u connect_timeout=5'), {
    host: '/tmp',
    port: 5433,
    database: 'd',
    user: 'u',
    connectionTimeoutMillis: 5000,
  });
  assert.deepEqual(conninfoToConfig('postgresql://u@%2Frun%2Fpostgresql/db'), {
    connectionString: 'postgresql://u@%2Frun%2Fpostgresql/db',
  });
  assert.throws(() => conninfoToConfig('dbname'), /missing "="/);
  assert.throws(() => conninfoToConfig("password='abc"), /unterminated/);
  assert.throws(() => conninfoToConfig('sslcert=x'), /unsupported connection option "sslcert"/);
  assert.throws(() => conninfoToConfig('port=x'), /invalid port/);
});

test('pg:new is lazy; bad conninfo and top-level execute are clear errors', () => {
  const L = state();
  // Nothing listens there: creating the object must not fail.
  assert.deepEqual(run(L, `db = pg:new('host=/nonexistent/dir dbname=x user=y', 'myschema') return tostring(db)`), [
    true,
    'pg.Connection',
  ]);
  const [ok, msg] = run(L, `return pg:new('dbname')`);
  assert.equal(ok, false);
  assert.match(msg, /missing "="/);
  const [ok2, msg2] = run(L, `return db:execute('SELECT 1')`);
  assert.equal(ok2, false);
  assert.match(msg2, /db:execute\(\) waits for I\/O and can only be called inside a callback/);
  const [ok3, msg3] = run(L, `return db:execute('SELECT $1', {{}})`);
  assert.equal(ok3, false);
  assert.match(msg3, /Unsupported query parameter type: table/);
  const [ok4, msg4] = run(L, `db:listen('ch', function() end) db:listen('ch', function() end)`);
  assert.equal(ok4, false);
  assert.match(msg4, /Duplicate notify name/);
});
