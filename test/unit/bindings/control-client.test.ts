// The control_client and socket Lua libraries against real Unix datagram sockets.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { installAddress } from '../../../src/bindings/address.js';
import { installControlClient } from '../../../src/bindings/control-client.js';
import { installSocket } from '../../../src/bindings/socket.js';
import { newLuaState } from '../../../src/lua/state.js';
import { addonFunctions, listenUnix, type DatagramHandle } from '../../../src/net/native.js';
import { parseControlDatagram } from '../../../src/protocol/control.js';
import { runLua } from '../../helpers/lua.js';

let dir = '';
let sock = '';
let handle: DatagramHandle | undefined;
const received: Buffer[] = [];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-cc-'));
  sock = path.join(dir, 'control.sock');
  const fd = listenUnix(Buffer.from(sock), false, 1, 0o666, true);
  handle = addonFunctions().datagramListen(fd, (bytes) => received.push(bytes));
});

after(() => {
  if (handle !== undefined) addonFunctions().datagramClose(handle);
  fs.rmSync(dir, { recursive: true, force: true });
});

function state() {
  const L = newLuaState();
  installAddress(L);
  installControlClient(L);
  installSocket(L);
  return L;
}

async function nextDatagram(): Promise<Buffer> {
  const end = Date.now() + 5000;
  while (received.length === 0) {
    if (Date.now() > end) throw new Error('no datagram');
    await new Promise((r) => setTimeout(r, 10));
  }
  return received.shift()!;
}

test('control_client sends every builder command in one datagram', async () => {
  const L = state();
  received.length = 0;
  const [ok] = runLua(
    L,
    `local c = assert(control_client:new('${sock}'))
     return c:send(c:build():disconnect_database('a', 'b'):fade_children(42, {}):cancel_job('part', 'job'))`,
    'utf8',
  );
  assert.equal(ok, true);
  const d = parseControlDatagram(await nextDatagram());
  assert.equal(d.error, undefined);
  assert.deepEqual(
    d.commands.map((c) => [c.command, c.payload.toString('latin1')]),
    [
      [20, 'a'],
      [20, 'b'],
      [8, '42'],
      [8, ''],
      [25, 'part\0job'],
    ],
  );
});

test("control_client's errors: nil and a message, or myproxy's parameter errors", () => {
  const L = state();
  const [v, msg] = runLua(L, `return control_client:new('${dir}/nobody.sock')`, 'utf8');
  assert.equal(v, null);
  assert.match(String(msg), /^Failed to connect: (No such file or directory|Connection refused)/);
  assert.throws(() => runLua(L, `return control_client.new('${sock}')`, 'utf8'), /Not enough parameters/);
  assert.throws(
    () => runLua(L, `local c = control_client:new('${sock}') return c:build():cancel_job('x')`, 'utf8'),
    /Not enough parameters/,
  );
  assert.throws(
    () => runLua(L, `local c = control_client:new('${sock}') return c:build():reset_limiter()`, 'utf8'),
    /Not enough parameters/,
  );
  assert.throws(
    () => runLua(L, `local c = control_client:new('${sock}') return c:send()`, 'utf8'),
    /Not enough parameters/,
  );
});

test('control_resolve gives an address object control_client takes (default port 5478)', () => {
  const L = state();
  const [text] = runLua(L, `return tostring(control_resolve('127.0.0.1'))`, 'utf8');
  assert.equal(text, '127.0.0.1:5478');
  const [ok] = runLua(
    L,
    `local c = assert(control_client:new(control_resolve('${sock}'))) return c:send(c:build())`,
    'utf8',
  );
  assert.equal(ok, true);
});

test("socket:connect() for datagrams and send()'s END-then-START positions", async () => {
  const L = state();
  await new Promise((r) => setTimeout(r, 50));
  received.length = 0;
  const [n1, n2, n3] = runLua(
    L,
    `local s = assert(socket:connect('${sock}', { type = 'dgram' }))
     return s:send('hello'), s:send('abcdef', 2, 4), s:send('abcdef', -2)`,
    'utf8',
  );
  assert.deepEqual([n1, n2, n3], [5, 3, 2]);
  assert.equal((await nextDatagram()).toString(), 'hello');
  assert.equal((await nextDatagram()).toString(), 'bcd');
  assert.equal((await nextDatagram()).toString(), 'ef');
  assert.throws(
    () => runLua(L, `return socket:connect('${sock}', { type = 'raw' })`, 'utf8'),
    /Unsupported socket type/,
  );
  assert.throws(() => runLua(L, `return socket:connect('${sock}', { kind = 'dgram' })`, 'utf8'), /Unrecognized option/);
  assert.throws(
    () => runLua(L, `return socket:connect('localhost:1234')`, 'utf8'),
    /Failed to resolve "localhost":"1234"/,
  );
  assert.throws(
    () => runLua(L, `local s = socket:connect('${sock}', { type = 'dgram' }) return s:send('abc', 5)`, 'utf8'),
    /Bad string position/,
  );
  const [v, msg] = runLua(L, `return socket:connect('${dir}/nobody.sock', { type = 'dgram' })`, 'utf8');
  assert.equal(v, null);
  assert.match(String(msg), /No such file or directory|Connection refused/);
  const [closed, err] = runLua(
    L,
    `local s = socket:connect('${sock}', { type = 'dgram' }) s:close() return s:send('x')`,
    'utf8',
  );
  assert.equal(closed, null);
  assert.match(String(err), /Bad file descriptor/);
});
