// docs/configuration.md names everything config.lua can use: every global the daemon installs (read
// off a real daemon's Lua state), every handler key, client method and option the bindings accept.

import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { HANDLER_KEYS, LISTEN_OPTIONS, LISTEN_TLS_OPTIONS } from '../../src/bindings/listen.js';
import { CLIENT_METHODS, CONNECT_OPTIONS } from '../../src/bindings/client.js';
import { BOOLEAN_OPTIONS, SECONDS_OPTIONS, STRING_OPTIONS, TABLE_OPTIONS } from '../../src/bindings/cluster.js';
import { BACKEND_TLS_OPTIONS, POOL_OPTIONS, RESOLVE_OPTIONS } from '../../src/bindings/address.js';
import { CONTROL_OPTIONS, PROMETHEUS_OPTIONS } from '../../src/bindings/services.js';
import { SOCKET_OPTIONS } from '../../src/bindings/socket.js';
import { runProxy } from '../helpers/proxy.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONFIG_DOC = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
const DOCS = ['configuration.md', 'control.md', 'metrics.md', 'cluster.md', 'pg.md']
  .map((f) => {
    try {
      return readFileSync(join(ROOT, 'docs', f), 'utf8');
    } catch {
      return '';
    }
  })
  .join('\n');

/** Names missing from `text` as code: `name`, `name(`, `name =`, `:name(` or `.name`. */
function undocumented(names: readonly string[], text: string): string[] {
  return names.filter(
    (n) => !new RegExp('`[^`\\n]*\\b' + n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '\\b[^`\\n]*`').test(text),
  );
}

/** Lua 5.3's own globals: the ones a stock interpreter has. */
const STOCK_GLOBALS = new Set([
  '_G',
  '_VERSION',
  'assert',
  'collectgarbage',
  'coroutine',
  'debug',
  'dofile',
  'error',
  'getmetatable',
  'io',
  'ipairs',
  'load',
  'loadfile',
  'math',
  'next',
  'os',
  'package',
  'pairs',
  'pcall',
  'print',
  'rawequal',
  'rawget',
  'rawlen',
  'rawset',
  'require',
  'select',
  'setmetatable',
  'string',
  'table',
  'tonumber',
  'tostring',
  'type',
  'utf8',
  'xpcall',
]);

test('every global a config.lua sees is in docs/configuration.md', async () => {
  const r = await runProxy(['--check'], {
    name: 'docs-globals',
    config: `local names = {}
for k in pairs(_G) do names[#names + 1] = tostring(k) end
table.sort(names)
print('GLOBALS ' .. table.concat(names, ' '))
mysql_listen('\${dir}/proxy.sock', {on_handshake_response = function() end})
`,
  });
  assert.equal(r.code, 0, r.stderr);
  const line = r.stdout.split('\n').find((l) => l.startsWith('GLOBALS '));
  assert.ok(line !== undefined, r.stdout);
  const ours = line
    .slice('GLOBALS '.length)
    .split(' ')
    .filter((n) => !STOCK_GLOBALS.has(n));
  // The daemon's API, as the C++ model's manual has it, must be among them.
  for (const name of [
    'mysql_listen',
    'mysql_resolve',
    'mysql_cluster',
    'prometheus_listen',
    'control_listen',
    'systemd',
  ]) {
    assert.ok(ours.includes(name), `${name} is not a global`);
  }
  assert.deepEqual(undocumented(ours, CONFIG_DOC), []);
});

test('every handler key and client method is in docs/configuration.md', () => {
  assert.deepEqual(undocumented(HANDLER_KEYS, CONFIG_DOC), []);
  assert.deepEqual(undocumented(Object.keys(CLIENT_METHODS), CONFIG_DOC), []);
});

test('every option the bindings accept is documented', () => {
  const options = [
    ...LISTEN_OPTIONS,
    ...LISTEN_TLS_OPTIONS,
    ...CONNECT_OPTIONS,
    ...BOOLEAN_OPTIONS,
    ...STRING_OPTIONS,
    ...SECONDS_OPTIONS,
    ...PROMETHEUS_OPTIONS,
    ...CONTROL_OPTIONS,
    ...SOCKET_OPTIONS,
    ...RESOLVE_OPTIONS,
    ...TABLE_OPTIONS,
    ...POOL_OPTIONS,
    ...BACKEND_TLS_OPTIONS,
  ];
  assert.deepEqual(undocumented(options, DOCS), []);
});

/** A value each mysql_listen option accepts (true where none is given). */
const LISTEN_SAMPLES: Partial<Record<string, string>> = {
  auth: "'native'",
  max_connections: '10',
  max_connect_errors: '5',
  connect_error_block_time: '60',
  handshake_timeout: '2.5',
  destinations: "{'127.0.0.1:3306', mysql_resolve('/run/mysqld/mysqld.sock'), mysql_cluster({'127.0.0.2'})}",
};

test('the option lists are what the bindings accept: each listed option passes, another does not', async () => {
  const calls = [
    // tls needs certificate files and a TCP address: test/integration/tls.test.ts has its calls.
    ...LISTEN_OPTIONS.filter((o) => o !== 'tls').map(
      (o) => `mysql_listen('\${dir}/${o}.sock', h, {${o} = ${LISTEN_SAMPLES[o] ?? 'true'}})`,
    ),
    ...BOOLEAN_OPTIONS.map((o) => `mysql_cluster({'127.0.0.1'}, {monitoring = true, user = 'u', ${o} = true})`),
    ...STRING_OPTIONS.map((o) => `mysql_cluster({'127.0.0.1'}, {monitoring = true, user = 'u', ${o} = 'x'})`),
    ...SECONDS_OPTIONS.map((o) => `mysql_cluster({'127.0.0.1'}, {monitoring = true, ${o} = 5})`),
    ...PROMETHEUS_OPTIONS.map((o) => `prometheus_listen('127.0.0.1:19100', {${o} = 10})`),
    ...POOL_OPTIONS.map((o) => `mysql_resolve('127.0.0.1', {pool = {${o} = ${o === 'share' ? 'true' : '5'}}})`),
    ...POOL_OPTIONS.map((o) => `mysql_cluster({'127.0.0.1'}, {pool = {${o} = ${o === 'share' ? 'true' : '5'}}})`),
    `mysql_resolve('127.0.0.1', {tls = {verify = 'none'}})`,
    `mysql_resolve('127.0.0.1', {server_public_key = '\${dir}/config.lua'})`,
    `mysql_resolve('127.0.0.1', {get_server_public_key = true})`,
    // ca, cert, key (files) and verify's other modes: test/integration/backend-tls.test.ts.
    `control_listen('127.0.0.1:19100', {interface = 'lo', allowed_uids = 'any'})`,
    `control_listen('127.0.0.1:19100', {multicast_group = '239.1.2.3'})`,
  ];
  assert.equal(CONTROL_OPTIONS.length, 3, 'a new control_listen option needs a call above');
  assert.deepEqual(
    [...RESOLVE_OPTIONS, ...TABLE_OPTIONS],
    ['tls', 'server_public_key', 'get_server_public_key', 'pool', 'pool'],
    'a new table option needs a call above',
  );
  const config = `local h = {on_handshake_response = function() end}
local failed = {}
local calls = {${calls.map((c) => `function() ${c} end`).join(',\n')}}
for i, f in ipairs(calls) do
  local ok, err = pcall(f)
  if not ok then failed[#failed + 1] = i .. ': ' .. tostring(err) end
end
for _, bogus in ipairs({
  function() mysql_listen('\${dir}/bogus.sock', h, {bogus = 1}) end,
  function() prometheus_listen('127.0.0.1:19100', {bogus = 1}) end,
  function() control_listen('127.0.0.1:19100', {bogus = 1}) end,
  function() mysql_cluster({'127.0.0.1'}, {bogus = 1}) end,
  function() mysql_resolve('127.0.0.1', {bogus = 1}) end,
  function() mysql_resolve('127.0.0.1', {pool = {bogus = 1}}) end,
  function() mysql_cluster({'127.0.0.1'}, {pool = {bogus = 1}}) end,
}) do
  local ok, err = pcall(bogus)
  if ok or not tostring(err):find('Unknown option', 1, true) then failed[#failed + 1] = 'bogus accepted: ' .. tostring(err) end
end
print('FAILED ' .. #failed)
for _, f in ipairs(failed) do print(f) end
mysql_listen('\${dir}/proxy.sock', h)
`;
  const r = await runProxy(['--check'], { name: 'docs-options', config });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^FAILED 0$/m, r.stdout);
});
