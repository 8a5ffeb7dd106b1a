import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { lua, type LuaState } from '../../../src/lua/fengari.js';
import { newLuaState } from '../../../src/lua/state.js';
import { runLua } from '../../helpers/lua.js';
import { installJson } from '../../../src/bindings/json.js';

function state(): LuaState {
  const L = newLuaState();
  installJson(L);
  return L;
}

const run = (L: LuaState, src: string): unknown[] => runLua(L, src, 'utf8');

const dump = (L: LuaState, expr: string): unknown[] => run(L, `return json.dump(${expr})`);

test('dump: scalars, integers vs floats', () => {
  const L = state();
  assert.deepEqual(dump(L, '1'), ['1']);
  assert.deepEqual(dump(L, 'math.mininteger'), ['-2147483648']);
  assert.deepEqual(dump(L, '1.5'), ['1.5']);
  assert.deepEqual(dump(L, '2.0'), ['2.0']);
  assert.deepEqual(dump(L, '-0.0'), ['-0.0']);
  assert.deepEqual(dump(L, '2^53'), ['9007199254740992.0']);
  assert.deepEqual(dump(L, '1e300'), ['1e+300']);
  assert.deepEqual(dump(L, 'true'), ['true']);
  assert.deepEqual(dump(L, 'nil'), ['null']);
  assert.deepEqual(dump(L, '"a\\"b\\\\c\\n\\0"'), ['"a\\"b\\\\c\\n\\u0000"']);
  assert.deepEqual(dump(L, '"h\\u{e9}llo \\u{1F600}"'), ['"héllo 😀"']);
  assert.deepEqual(dump(L, '0/0'), [null, 'json.dump: cannot encode NaN or infinity']);
  assert.deepEqual(dump(L, 'math.huge'), [null, 'json.dump: cannot encode NaN or infinity']);
});

test('dump: arrays vs objects, nesting, holes', () => {
  const L = state();
  assert.deepEqual(dump(L, '{1, 2, "x"}'), ['[1,2,"x"]']);
  assert.deepEqual(dump(L, '{}'), ['{}']);
  assert.deepEqual(dump(L, '{a = 1}'), ['{"a":1}']);
  assert.deepEqual(dump(L, '{[1] = 1, [3] = 3}'), ['[1,null,3]']);
  assert.deepEqual(dump(L, '{[10] = "x"}'), ['{"10":"x"}']);
  assert.deepEqual(dump(L, '{[0] = "z"}'), ['{"0":"z"}']);
  assert.deepEqual(dump(L, '{[1.5] = "f"}'), ['{"1.5":"f"}']);
  const [nested] = dump(L, '{list = {1, {2, 3}, {k = false}}, n = 1.25}') as [string];
  assert.deepEqual(JSON.parse(nested), { list: [1, [2, 3], { k: false }], n: 1.25 });
  const [mixed] = dump(L, '{1, 2, x = 3}') as [string];
  assert.deepEqual(JSON.parse(mixed), { '1': 1, '2': 2, x: 3 });
});

test('dump: bad values give nil and a message', () => {
  const L = state();
  assert.deepEqual(dump(L, '"\\255"'), [null, 'json.dump: string is not valid UTF-8']);
  assert.deepEqual(dump(L, '{k = "\\192\\128"}'), [null, 'json.dump: string is not valid UTF-8']);
  assert.deepEqual(dump(L, '{f = print}'), [null, 'json.dump: cannot encode a function value']);
  assert.deepEqual(dump(L, 'coroutine.create(print)'), [null, 'json.dump: cannot encode a thread value']);
  assert.deepEqual(dump(L, '{[true] = 1}'), [null, 'json.dump: a boolean key cannot be an object key']);
  assert.deepEqual(run(L, 'local t = {}; t.self = t; return json.dump(t)'), [
    null,
    'json.dump: table contains a cycle',
  ]);
  assert.deepEqual(run(L, 'local t = {}; t[1] = {t}; return json.dump(t)'), [
    null,
    'json.dump: table contains a cycle',
  ]);
  // a shared (not cyclic) table is fine
  assert.deepEqual(run(L, 'local s = {1}; return json.dump({s, s})'), ['[[1],[1]]']);
  const [deepNil, deepMsg] = run(L, 'local t = {}; for i = 1, 500 do t = {t} end; return json.dump(t)');
  assert.equal(deepNil, null);
  assert.match(String(deepMsg), /nesting deeper than/);
  assert.throws(() => run(L, 'json.dump()'), /bad argument #1/);
});

test('parse: values, types, null, arrays 1-based', () => {
  const L = state();
  run(
    L,
    `
    local v = json.parse('{"a": [1, 2.0, -3, 1.5e2, 4294967296, "s", true, false, null], "b": {}, "c": null}')
    assert(math.type(v.a[1]) == "integer" and v.a[1] == 1)
    assert(math.type(v.a[2]) == "float" and v.a[2] == 2)
    assert(math.type(v.a[3]) == "integer" and v.a[3] == -3)
    assert(math.type(v.a[4]) == "float" and v.a[4] == 150)
    assert(math.type(v.a[5]) == "float" and v.a[5] == 4294967296)
    assert(v.a[6] == "s" and v.a[7] == true and v.a[8] == false and v.a[9] == nil)
    assert(type(v.b) == "table" and next(v.b) == nil)
    assert(v.c == nil)
    assert(json.parse("null") == nil)
    assert(json.parse(" 42 ") == 42)
    assert(math.type(json.parse("2147483647")) == "integer")
    assert(math.type(json.parse("2147483648")) == "float")
    assert(math.type(json.parse("-2147483648")) == "integer")
    assert(json.parse('"x"') == "x")
    local arr = json.parse('[1, null, 3]')
    assert(arr[1] == 1 and arr[2] == nil and arr[3] == 3)
    assert(json.dump(arr) == '[1,null,3]')
  `,
  );
});

test('parse: strings, escapes and unicode are UTF-8 bytes', () => {
  const L = state();
  run(
    L,
    `
    assert(json.parse('"a\\\\"b\\\\\\\\c\\\\/d\\\\b\\\\f\\\\n\\\\r\\\\t"') == 'a"b\\\\c/d\\b\\f\\n\\r\\t')
    assert(json.parse('"\\\\u00e9"') == "\\u{e9}")
    assert(json.parse('"\\\\ud83d\\\\ude00"') == "\\u{1F600}")
    assert(json.parse('"\\\\u0000"') == "\\0")
    assert(json.parse('"h\\u{e9}llo"') == "h\\u{e9}llo")
    assert(json.parse('"\\u{FEFF}x"') == "\\u{FEFF}x")
  `,
  );
});

test('round trips', () => {
  const L = state();
  run(
    L,
    `
    for _, s in ipairs({
      '[1,2,3]', '{}', '{"a":{"b":[true,false,"x"]}}', '[1.5,2.0,-0.0,3]',
      '"\\\\u0000\\\\n\\u{e9}\\u{1F600}"', '[[],[[]]]', '-7', '1e+300',
    }) do
      local v = json.parse(s)
      local again = json.dump(v)
      local v2 = json.parse(again)
      assert(json.dump(v2) == again, s)
    end
    assert(json.dump(json.parse('[1.5,2.0,-0.0,3]')) == '[1.5,2.0,-0.0,3]')
    assert(json.dump(json.parse('{"k":[1,{"z":"y"}]}')) == '{"k":[1,{"z":"y"}]}')
  `,
  );
});

test('parse: bad input gives nil and a message', () => {
  const L = state();
  for (const bad of [
    '',
    '{',
    '[1,]',
    '{"a" 1}',
    '{a: 1}',
    'tru',
    '01',
    '1.',
    '.5',
    '"abc',
    '"\\x"',
    '"\\u12"',
    '"\\ud800"',
    '"\\udc00x"',
    '[1] x',
    'NaN',
    '"tab\there"',
    '{"a":1,}',
  ]) {
    lua.lua_pushstring(L, bad);
    lua.lua_setglobal(L, 'input');
    const [v, msg] = run(L, 'return json.parse(input)');
    assert.equal(v, null, `input ${JSON.stringify(bad)}`);
    assert.match(String(msg), /^json\.parse: .* at position \d+$/, `input ${JSON.stringify(bad)}: ${String(msg)}`);
  }
  assert.deepEqual(run(L, 'return json.parse("\\"\\255\\"")'), [null, 'json.parse: input is not valid UTF-8']);
  const [deep, deepMsg] = run(L, `return json.parse(("["):rep(1000) .. ("]"):rep(1000))`);
  assert.equal(deep, null);
  assert.match(String(deepMsg), /nesting deeper than/);
  assert.throws(() => run(L, 'json.parse({})'), /bad argument #1/);
});
