// client:verify_native_password(), client:deny() and mysql_listen's `auth` option, without
// sockets. Expected values are computed here with node:crypto, independently of src/auth.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { lua, lauxlib, to_jsstring, type LuaState } from '../../../src/lua/fengari.js';
import { newLuaState } from '../../../src/lua/state.js';
import { CallbackRunner } from '../../../src/lua/coroutine.js';
import { installClient, LuaSessionHandler } from '../../../src/bindings/client.js';
import { installAddress } from '../../../src/bindings/address.js';
import { installListen } from '../../../src/bindings/listen.js';
import { parseStoredNativeHash, recoverNativePasswordSha1 } from '../../../src/auth/native-password.js';
import {
  PolicyError,
  type ClientSession,
  type ConnectAction,
  type ErrAction,
  type LoginRequest,
  type PeerIdentity,
} from '../../../src/proxy/handler.js';
import { luaBytes } from '../../helpers/proxy.js';
import { ClientErrors } from '../../../src/util/errors.js';

const sha1 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** What a client sends: SHA1(pw) XOR SHA1(scramble ‖ SHA1(SHA1(pw))), empty for ''. */
function clientAnswer(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const stage1 = sha1(Buffer.from(password));
  const mask = sha1(scramble, sha1(stage1));
  return Buffer.from(stage1.map((b, i) => b ^ mask[i]!));
}

const authString = (password: string): string =>
  '*' +
  sha1(sha1(Buffer.from(password)))
    .toString('hex')
    .toUpperCase();

/** Run a chunk; LUA_OK or the error status, with the result or message as text. */
function doString(L: LuaState, src: string): { status: number; text: string } {
  let status = lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=chunk', null);
  if (status === lua.LUA_OK) status = lua.lua_pcall(L, 0, 1, 0);
  const t = lua.lua_tolstring(L, -1);
  return { status, text: t === null ? '' : to_jsstring(t) };
}

class FakeSession implements ClientSession {
  id = 9;
  peer: PeerIdentity = { pid: 1, uid: 2, gid: 3, address: undefined };
  account: string | undefined;
  serverVersion = Buffer.from('5.7.30');
  closed = false;
  get logName(): string {
    return 'fake';
  }
}

function handlerFor(body: string, auth: 'clear' | 'native' = 'native'): LuaSessionHandler {
  const L = newLuaState();
  installClient(L);
  installAddress(L);
  const src = `return function(client, hr) ${body} end`;
  assert.equal(lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=config', null), lua.LUA_OK);
  lua.lua_call(L, 0, 1);
  const ref = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
  const refs = { onConnect: undefined, onHandshakeResponse: ref, onCommandPhase: undefined, onInitDb: undefined, auth };
  return new LuaSessionHandler(L, new CallbackRunner(L, { budgetMs: 1000 }), refs);
}

function nativeLogin(user: string, password: string, scramble = randomBytes(20)): LoginRequest {
  return {
    user: Buffer.from(user),
    password: undefined,
    native: { scramble, answer: clientAnswer(password, scramble) },
    database: Buffer.from('db'),
  };
}

const VERIFY_AND_CONNECT = (stored: string): string => `
  local v = client:verify_native_password(${stored})
  if not v then return client:deny() end
  return client:connect('/db.sock', { user = hr.user, password_sha1 = v, database = hr.database })`;

test('recovery math: SHA1(password) comes back from a right answer only', () => {
  for (const pw of ['nativepw', 'x', 'pässwörd', '\u0000\u00ff']) {
    const scramble = randomBytes(20);
    const stored = sha1(sha1(Buffer.from(pw)));
    assert.deepEqual(recoverNativePasswordSha1(clientAnswer(pw, scramble), scramble, stored), sha1(Buffer.from(pw)));
    assert.equal(recoverNativePasswordSha1(clientAnswer(pw + '!', scramble), scramble, stored), undefined);
    assert.equal(recoverNativePasswordSha1(clientAnswer(pw, randomBytes(20)), scramble, stored), undefined);
    assert.equal(recoverNativePasswordSha1(Buffer.alloc(0), scramble, stored), undefined);
    assert.equal(recoverNativePasswordSha1(clientAnswer(pw, scramble).subarray(0, 19), scramble, stored), undefined);
  }
});

test('stored hash formats: empty, * + 40 hex (any case), raw 20 bytes; others rejected', () => {
  const raw = sha1(sha1(Buffer.from('nativepw')));
  assert.equal(parseStoredNativeHash(Buffer.alloc(0)), 'empty');
  assert.deepEqual(parseStoredNativeHash(Buffer.from(authString('nativepw'))), raw);
  assert.deepEqual(parseStoredNativeHash(Buffer.from(authString('nativepw').toLowerCase())), raw);
  assert.deepEqual(parseStoredNativeHash(raw), raw);
  for (const bad of ['nativepw', authString('x').slice(1), authString('x') + '0', '*' + 'g'.repeat(40)]) {
    assert.equal(parseStoredNativeHash(Buffer.from(bad)), undefined, bad);
  }
});

test('auth=native: handshake_response has no password and no verify field', async () => {
  const h = handlerFor(`
    local keys = {}
    for k in pairs(hr) do keys[#keys + 1] = k end
    table.sort(keys)
    return client:err(table.concat(keys, ','))`);
  const a = await h.open(new FakeSession()).onHandshakeResponse(nativeLogin('native', 'nativepw'));
  assert.deepEqual(a, { kind: 'err', message: 'database,user' });
});

test('verify with the authentication_string: right password gives SHA1(password) to connect', async () => {
  const h = handlerFor(VERIFY_AND_CONNECT(`'${authString('nativepw').toLowerCase()}'`));
  const a = (await h.open(new FakeSession()).onHandshakeResponse(nativeLogin('native', 'nativepw'))) as ConnectAction;
  assert.equal(a.kind, 'connect');
  assert.deepEqual(a.passwordSha1, sha1(Buffer.from('nativepw')));
  assert.equal(a.password, undefined);
  assert.equal(a.user.toString(), 'native');
});

test('verify with the raw 20-byte digest', async () => {
  const h = handlerFor(VERIFY_AND_CONNECT(luaBytes(sha1(sha1(Buffer.from('nativepw'))))));
  const a = (await h.open(new FakeSession()).onHandshakeResponse(nativeLogin('native', 'nativepw'))) as ConnectAction;
  assert.deepEqual(a.passwordSha1, sha1(Buffer.from('nativepw')));
});

test('wrong password: verify returns nil, client:deny() is ERR 1045 (28000)', async () => {
  const h = handlerFor(VERIFY_AND_CONNECT(`'${authString('nativepw')}'`));
  for (const pw of ['wrong', '']) {
    const a = (await h.open(new FakeSession()).onHandshakeResponse(nativeLogin('native', pw))) as ErrAction;
    assert.deepEqual(a, { kind: 'err', message: "Access denied for user 'native'", error: ClientErrors.ACCESS_DENIED });
    assert.equal(ClientErrors.ACCESS_DENIED.errno, 1045);
    assert.equal(ClientErrors.ACCESS_DENIED.sqlState, '28000');
  }
});

test("empty password: only stored '' matches, and connect sends an empty password (not SHA1(''))", async () => {
  const h = handlerFor(VERIFY_AND_CONNECT(`''`));
  const a = (await h.open(new FakeSession()).onHandshakeResponse(nativeLogin('nopw', ''))) as ConnectAction;
  assert.equal(a.kind, 'connect');
  assert.deepEqual(a.password, Buffer.alloc(0));
  assert.equal(a.passwordSha1, undefined);
  const denied = await h.open(new FakeSession()).onHandshakeResponse(nativeLogin('nopw', 'something'));
  assert.equal(denied.kind, 'err');
});

test('the verified credential is opaque; verify needs a valid stored hash and the login', async () => {
  const shown = await handlerFor(`
    local v = client:verify_native_password('${authString('pw')}')
    return client:err(tostring(v) .. ' ' .. type(v))`)
    .open(new FakeSession())
    .onHandshakeResponse(nativeLogin('u', 'pw'));
  assert.deepEqual(shown, { kind: 'err', message: 'verified_credential userdata' });

  await assert.rejects(
    handlerFor(`return client:verify_native_password('nativepw')`)
      .open(new FakeSession())
      .onHandshakeResponse(nativeLogin('u', 'pw')),
    (e: unknown) => e instanceof PolicyError && /stored hash must be/.test(e.message),
  );

  // Outside on_handshake_response (here: a coroutine resumed afterwards) there is nothing to verify.
  const L = newLuaState();
  installClient(L);
  const src = `co = nil
    return function(client, hr)
      co = coroutine.create(function() return client:verify_native_password('') end)
      return client:err('x')
    end`;
  assert.equal(lauxlib.luaL_loadbufferx(L, Buffer.from(src), src.length, '=config', null), lua.LUA_OK);
  lua.lua_call(L, 0, 1);
  const ref = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
  const h = new LuaSessionHandler(L, new CallbackRunner(L, { budgetMs: 1000 }), {
    onConnect: undefined,
    onHandshakeResponse: ref,
    onCommandPhase: undefined,
    onInitDb: undefined,
    auth: 'native',
  });
  await h.open(new FakeSession()).onHandshakeResponse(nativeLogin('u', ''));
  const run = `local ok, err = coroutine.resume(co) return tostring(ok) .. ' ' .. tostring(err)`;
  const r = doString(L, run);
  assert.equal(r.status, lua.LUA_OK);
  assert.match(r.text, /^false .*only works in on_handshake_response/);
});

test('auth=clear: verify checks the clear password against the stored hash', async () => {
  const h = handlerFor(VERIFY_AND_CONNECT(`'${authString('secret')}'`), 'clear');
  const login = { user: Buffer.from('alice'), password: Buffer.from('secret'), database: Buffer.alloc(0) };
  const ok = (await h.open(new FakeSession()).onHandshakeResponse(login)) as ConnectAction;
  assert.deepEqual(ok.passwordSha1, sha1(Buffer.from('secret')));
  const bad = await h.open(new FakeSession()).onHandshakeResponse({ ...login, password: Buffer.from('nope') });
  assert.equal(bad.kind, 'err');
  assert.equal(h.clientAuth, 'clear');
});

test("mysql_listen options: auth = 'native' | 'clear'; anything else is a config error", () => {
  const run = (call: string): { ok: boolean; message: string; declared: number } => {
    const L: LuaState = newLuaState();
    const b = installListen(L, { baseDir: '/tmp', systemdFds: () => [], bind: false });
    const src = `local h = { on_handshake_response = function() end }\n${call}`;
    const r = doString(L, src);
    return { ok: r.status === lua.LUA_OK, message: r.status === lua.LUA_OK ? '' : r.text, declared: b.declared };
  };
  assert.equal(run(`mysql_listen('@x', h, { auth = 'native' })`).ok, true);
  assert.equal(run(`mysql_listen('@x', h, { auth = 'clear' })`).ok, true);
  assert.equal(run(`mysql_listen('@x', h, {})`).ok, true);
  assert.equal(run(`mysql_listen('@x', h)`).ok, true);
  assert.match(run(`mysql_listen('@x', h, { auth = 'sha2' })`).message, /Option 'auth' must be 'clear' or 'native'/);
  assert.match(run(`mysql_listen('@x', h, { auht = 'native' })`).message, /Unknown option 'auht'/);
  assert.match(run(`mysql_listen('@x', h, 'native')`).message, /options table expected/);
  assert.match(run(`mysql_listen('@x', h, {}, 4)`).message, /takes 2 or 3 arguments/);
});
