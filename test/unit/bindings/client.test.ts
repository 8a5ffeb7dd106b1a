// LuaSessionHandler called directly, without sockets: the Lua API of the client object and the
// actions it returns.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { lua, lauxlib, type LuaState } from '../../../src/lua/fengari.js';
import { newLuaState } from '../../../src/lua/state.js';
import { CallbackRunner } from '../../../src/lua/coroutine.js';
import { installClient, LuaSessionHandler } from '../../../src/bindings/client.js';
import { installAddress } from '../../../src/bindings/address.js';
import { PolicyError, type ClientSession, type ConnectAction, type PeerIdentity } from '../../../src/proxy/handler.js';

class FakeSession implements ClientSession {
  id = 7;
  peer: PeerIdentity;
  account: string | undefined;
  serverVersion = Buffer.from('5.7.30');
  closed = false;
  constructor(peer: Partial<PeerIdentity> = {}) {
    this.peer = { pid: 100, uid: 1000, gid: 1001, address: undefined, ...peer };
  }
  get logName(): string {
    return (
      `pid=${String(this.peer.pid)} uid=${String(this.peer.uid)}` +
      (this.account === undefined ? '' : ` "${this.account}"`)
    );
  }
}

function handlerFor(src: string): { L: LuaState; handler: LuaSessionHandler } {
  const L = newLuaState();
  installClient(L);
  installAddress(L);
  assert.equal(lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=config', null), lua.LUA_OK);
  lua.lua_call(L, 0, 0);
  const ref = (name: string): number | undefined => {
    lua.lua_getglobal(L, 'handler');
    lua.lua_getfield(L, -1, name);
    lua.lua_remove(L, -2);
    if (lua.lua_type(L, -1) !== lua.LUA_TFUNCTION) {
      lua.lua_settop(L, 0);
      return undefined;
    }
    const r = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
    lua.lua_settop(L, 0);
    return r;
  };
  const refs = {
    onConnect: ref('on_connect'),
    onHandshakeResponse: ref('on_handshake_response')!,
    onCommandPhase: ref('on_command_phase'),
    onInitDb: undefined,
  };
  return { L, handler: new LuaSessionHandler(L, new CallbackRunner(L, { budgetMs: 1000 }), refs) };
}

const login = { user: Buffer.from('alice'), password: Buffer.from('secret'), database: Buffer.from('shop') };

test('connect action carries the credentials table unchanged', async () => {
  const { handler } = handlerFor(`handler = {}
    function handler.on_handshake_response(client, hr) return client:connect('/run/db.sock', hr) end`);
  const a = (await handler.open(new FakeSession()).onHandshakeResponse(login)) as ConnectAction;
  assert.equal(a.kind, 'connect');
  assert.deepEqual(a.target, { kind: 'unix', path: '/run/db.sock' });
  assert.equal(a.user.toString(), 'alice');
  assert.equal(a.password?.toString(), 'secret');
  assert.equal(a.database?.toString(), 'shop');
  assert.equal(a.passwordSha1, undefined);
  assert.equal(a.readOnly, false);
});

test('handshake_response has no database key when the client sent none', async () => {
  const { handler } = handlerFor(`handler = {}
    function handler.on_handshake_response(client, hr)
      return client:err(string.format('%s|%s|%s', hr.user, hr.password, tostring(hr.database)))
    end`);
  const a = await handler.open(new FakeSession()).onHandshakeResponse({ ...login, database: Buffer.alloc(0) });
  assert.deepEqual(a, { kind: 'err', message: 'alice|secret|nil' });
});

test('binary passwords reach Lua and come back byte for byte', async () => {
  const { handler } = handlerFor(`handler = {}
    function handler.on_handshake_response(client, hr) return client:connect('@db', {user=hr.user, password=hr.password}) end`);
  const pw = Buffer.from([0xff, 0x00, 0x80, 0xc3, 0x28]);
  const a = (await handler.open(new FakeSession()).onHandshakeResponse({ ...login, password: pw })) as ConnectAction;
  assert.deepEqual(a.password, pw);
  assert.deepEqual(a.target, { kind: 'abstract', name: Buffer.from('db') });
});

test('password_sha1 must be exactly 20 raw bytes', async () => {
  const digest = createHash('sha1').update('pw').digest();
  const lit = [...digest].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
  const ok = handlerFor(`handler = {}
    function handler.on_handshake_response(client, hr) return client:connect('10.0.0.1', {user='u', password_sha1="${lit}"}) end`);
  const a = (await ok.handler.open(new FakeSession()).onHandshakeResponse(login)) as ConnectAction;
  assert.deepEqual(a.passwordSha1, digest);
  assert.deepEqual(a.target, { kind: 'tcp', host: '10.0.0.1', port: 3306 });

  const bad = handlerFor(`handler = {}
    function handler.on_handshake_response(client, hr) return client:connect('10.0.0.1', {user='u', password_sha1='abc'}) end`);
  await assert.rejects(
    bad.handler.open(new FakeSession()).onHandshakeResponse(login),
    (e: unknown) => e instanceof PolicyError && /Bad SHA1 length/.test(e.message),
  );
});

test('unknown credential keys, unknown options and unknown attributes are Lua errors', async () => {
  for (const [body, re] of [
    [`return client:connect('/x', {user='u', pasword='typo'})`, /Unknown attribute 'pasword'/],
    [`return client:connect('/x', hr, {read_only=true, foo=1})`, /Unknown option 'foo'/],
    [`return client:connect('/x', {password='p'})`, /Missing attribute 'user'/],
    [`return client:connect('/x', {user=42})`, /must be a string/],
    [`return client:connect('not an address:99999', hr)`, /Port out of range/],
    [`local x = client.foo`, /Unknown attribute 'foo'/],
    [`client.pid = 3`, /Unknown attribute 'pid'/],
    [`client.account = ''`, /non-empty string/],
    [`return 42`, /Bad return value/],
    [`return`, /Bad return value/],
    [`return client:err()`, /expects a message string/],
    [`return client:err('x', 5)`, /from 1000 to 65535/],
    [`return client:err('x', 1234, 'abc')`, /SQLSTATE must be five/],
    [`return client:forward(42)`, /client:forward\(\) expects one string/],
    [`return client:ok{foo = 1}`, /unknown field 'foo'/],
    [`return client:ok{affected_rows = -1}`, /'affected_rows' must be an integer/],
    [`return client:result{columns = {}}`, /from 1 to 4096 columns/],
    [`return client:result{columns = {'a'}, rows = {{{}}}}`, /a table cannot be a column value/],
    [`return client:result{columns = {{type = 'long'}}}`, /column 1 has no name/],
    [`return client:result{columns = {{name = 'a', type = 'nope'}}}`, /unknown type "nope"/],
    [`return client:result{columns = {'a'}, rows = {5}}`, /row 1 is not a list/],
    [`return client:ok()`, /Bad return value \(userdata\)/],
  ] as const) {
    const { handler } = handlerFor(`handler = {}
      function handler.on_handshake_response(client, hr) ${body} end`);
    await assert.rejects(
      handler.open(new FakeSession()).onHandshakeResponse(login),
      (e: unknown) => e instanceof PolicyError && re.test(e.message),
      body,
    );
  }
});

test('read_only option is carried in the action', async () => {
  const { handler } = handlerFor(`handler = {}
    function handler.on_handshake_response(client, hr) return client:connect('/x', hr, {read_only=true}) end`);
  const a = (await handler.open(new FakeSession()).onHandshakeResponse(login)) as ConnectAction;
  assert.equal(a.readOnly, true);
});

test('client attributes: credentials, notes persist, account and server_version are writable', async () => {
  const { handler } = handlerFor(`handler = {}
    function handler.on_connect(client)
      client.notes.seen = client.pid .. ':' .. client.uid .. ':' .. client.gid
      client.account = 'acct-' .. client.uid
      client.server_version = '8.0.99-proxy'
    end
    function handler.on_handshake_response(client, hr)
      return client:err(client.notes.seen .. '|' .. client.account .. '|' .. client.server_version .. '|' .. tostring(client.address) .. '|' .. tostring(client.cgroup))
    end`);
  const session = new FakeSession();
  const hooks = handler.open(session);
  assert.equal(await hooks.onConnect!(), undefined);
  assert.equal(session.account, 'acct-1000');
  assert.equal(session.serverVersion.toString(), '8.0.99-proxy');
  assert.deepEqual(await hooks.onHandshakeResponse(login), {
    kind: 'err',
    message: '100:1000:1001|acct-1000|8.0.99-proxy|nil|nil',
  });
});

test('TCP clients have nil credentials and an address', async () => {
  const { handler } = handlerFor(`handler = {}
    function handler.on_handshake_response(client, hr) return client:err(tostring(client.pid) .. ' ' .. client.address) end`);
  const session = new FakeSession({ pid: undefined, uid: undefined, gid: undefined, address: '192.0.2.1:5555' });
  assert.deepEqual(await handler.open(session).onHandshakeResponse(login), {
    kind: 'err',
    message: 'nil 192.0.2.1:5555',
  });
});

test('on_connect may only reject; on_command_phase must return nothing', async () => {
  const a = handlerFor(`handler = {}
    function handler.on_connect(client) return client:connect('/x', {user='u'}) end
    function handler.on_handshake_response(client, hr) return client:err('x') end`);
  await assert.rejects(a.handler.open(new FakeSession()).onConnect!(), /Bad return value/);
  const b = handlerFor(`handler = {}
    function handler.on_connect(client) return client:err('closed for maintenance') end
    function handler.on_command_phase(client) return 1 end
    function handler.on_handshake_response(client, hr) return client:err('x') end`);
  const hooks = b.handler.open(new FakeSession());
  assert.deepEqual(await hooks.onConnect!(), { kind: 'err', message: 'closed for maintenance' });
  await assert.rejects(hooks.onCommandPhase!(), /Bad return value/);
});

test('a client object kept after the connection closed raises "Stale object"', async () => {
  const { handler, L } = handlerFor(`handler = {}
    function handler.on_connect(client) kept = client end
    function handler.on_handshake_response(client, hr) return client:err('x') end`);
  const session = new FakeSession();
  const hooks = handler.open(session);
  await hooks.onConnect!();
  hooks.onClose();
  session.closed = true;
  const src = 'return kept.pid';
  lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=probe', null);
  assert.notEqual(lua.lua_pcall(L, 0, 1, 0), lua.LUA_OK);
  assert.match(Buffer.from(lua.lua_tolstring(L, -1)!).toString(), /Stale object/);
});

test('each connection gets its own notes table', async () => {
  const { handler } = handlerFor(`handler = {}
    function handler.on_connect(client) client.notes.n = (client.notes.n or 0) + 1 end
    function handler.on_handshake_response(client, hr) return client:err(tostring(client.notes.n)) end`);
  for (let i = 0; i < 2; i++) {
    const hooks = handler.open(new FakeSession());
    await hooks.onConnect!();
    assert.deepEqual(await hooks.onHandshakeResponse(login), { kind: 'err', message: '1' });
  }
});
