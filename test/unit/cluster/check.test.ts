// One health check (src/cluster/check.ts) against small fake servers written with the project's
// own protocol code: greeting-only checks, an ERR instead of a greeting, and the one deadline that
// bounds the whole check even when every single step stays within its own timeout.
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { test } from 'node:test';

import { checkServer } from '../../../src/cluster/check.js';
import { Capability } from '../../../src/protocol/constants.js';
import { writeErr } from '../../../src/protocol/packets/generic.js';
import { writeHandshakeV10 } from '../../../src/protocol/packets/handshake.js';
import type { SocketAddress } from '../../../src/net/address.js';

const GREETING = writeHandshakeV10({
  serverVersion: Buffer.from('5.5.5-10.11.99-Fake'),
  connectionId: 7,
  scramble: Buffer.alloc(20, 0x41),
  capabilities:
    Capability.CLIENT_PROTOCOL_41 |
    Capability.CLIENT_SECURE_CONNECTION |
    Capability.CLIENT_PLUGIN_AUTH |
    Capability.CLIENT_LONG_PASSWORD,
  characterSet: 0x21,
  statusFlags: 2,
  authPluginName: 'mysql_native_password',
});

/** A TCP server on 127.0.0.1 that runs `onClient` for each connection; returns its address. */
async function server(onClient: (s: net.Socket) => void): Promise<{ address: SocketAddress; close(): void }> {
  const sockets: net.Socket[] = [];
  const srv = net.createServer((s) => {
    s.on('error', () => undefined);
    sockets.push(s);
    onClient(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    address: { kind: 'tcp', host: '127.0.0.1', port },
    close() {
      for (const s of sockets) s.destroy();
      srv.close();
    },
  };
}

const noLogin = { user: undefined, password: undefined, noReadOnly: false, timeoutMs: 2_000 };

test('without a user, a greeting is enough: alive', async () => {
  const srv = await server((s) => s.write(GREETING));
  try {
    assert.deepEqual(await checkServer(srv.address, noLogin), { state: 'alive', detail: 'ok' });
  } finally {
    srv.close();
  }
});

test('an ERR instead of the greeting is dead, with the server message', async () => {
  const srv = await server((s) =>
    s.end(writeErr(0, { errno: 1040, sqlState: '08004', message: 'Too many connections' })),
  );
  try {
    assert.deepEqual(await checkServer(srv.address, noLogin), {
      state: 'dead',
      detail: 'greeting is an error: Too many connections',
    });
  } finally {
    srv.close();
  }
});

test('connection refused is dead', async () => {
  const srv = await server(() => undefined);
  const { address } = srv;
  srv.close();
  await new Promise((r) => setTimeout(r, 20));
  const r = await checkServer(address, noLogin);
  assert.equal(r.state, 'dead');
  assert.match(r.detail, /ECONNREFUSED/);
});

test('the whole check has one deadline: a slow greeting and a silent login end at timeoutMs', async () => {
  const timeoutMs = 600;
  // The greeting comes after 60 % of the time, then the server never answers the login. Each
  // read alone is within its timeout; only the check's own deadline can end it.
  const srv = await server((s) => setTimeout(() => s.write(GREETING), timeoutMs * 0.6));
  try {
    const r = await checkServer(srv.address, {
      user: Buffer.from('monitor'),
      password: Buffer.from('pw'),
      noReadOnly: false,
      timeoutMs,
    });
    assert.deepEqual(r, { state: 'dead', detail: `timed out after ${timeoutMs} ms` });
  } finally {
    srv.close();
  }
});
