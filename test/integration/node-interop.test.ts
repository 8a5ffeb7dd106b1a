// require('js') (fengari-interop) from config.lua: a Node built-in and a package of the project's
// own dependencies reached from a callback, a promise awaited by yielding only that callback's
// coroutine, a rejected promise as nil + message, and js.await() refused at the top level.
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { runProxy, startProxy, type Proxy } from '../helpers/proxy.js';

describe("require('js'): Node modules from config.lua", () => {
  let proxy: Proxy | undefined;

  before(async () => {
    proxy = await startProxy({
      name: 'interop',
      config: (dir) => `
local js = require('js')
local crypto = js.require('node:crypto')
local timers = js.require('node:timers/promises')
local fs = js.require('node:fs/promises')
local prom = js.require('prom-client')

mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:accept() end,
  on_query = function(client, sql)
    if sql == 'SELECT sha' then
      local hex = crypto:createHash('sha256'):update('myproxy'):digest('hex')
      return client:result{columns = {'sha'}, rows = {{hex}}}
    end
    if sql == 'SELECT wait' then
      local value, err = js.await(timers:setTimeout(200, 'waited'))
      return client:result{columns = {'value'}, rows = {{value}}}
    end
    if sql == 'SELECT missing' then
      local value, err = js.await(fs:readFile('/nonexistent/myproxy'))
      return client:result{columns = {'value', 'err'}, rows = {{tostring(value), err}}}
    end
    if sql == 'SELECT metrics' then
      local registry = js.new(prom.Registry)
      local counter = js.new(prom.Counter, js.global.Object:fromEntries(js.global.Array:of(
        js.global.Array:of('name', 'lua_made_total'), js.global.Array:of('help', 'made in Lua'),
        js.global.Array:of('registers', js.global.Array:of(registry)))))
      counter:inc(3)
      local text = js.await(registry:metrics())
      return client:result{columns = {'text'}, rows = {{text}}}
    end
  end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
  });

  const connect = () =>
    mysql.createConnection({
      socketPath: proxy!.socket,
      user: 'anyone',
      password: 'pw',
      authPlugins: {},
      enableCleartextPlugin: true,
    } as mysql.ConnectionOptions);

  test('a Node built-in, called with methods', async () => {
    const c = await connect();
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT sha');
      const { createHash } = await import('node:crypto');
      assert.equal(rows[0]!['sha'], createHash('sha256').update('myproxy').digest('hex'));
    } finally {
      await c.end();
    }
  });

  test('js.await() yields only its callback: another session is served meanwhile', async () => {
    const a = await connect();
    const b = await connect();
    try {
      const started = Date.now();
      const waiting = a.query<mysql.RowDataPacket[]>('SELECT wait');
      const [quick] = await b.query<mysql.RowDataPacket[]>('SELECT sha');
      const quickMs = Date.now() - started;
      assert.equal(quick.length, 1);
      const [rows] = await waiting;
      assert.equal(rows[0]!['value'], 'waited');
      assert.ok(quickMs < 200, `the other session waited ${quickMs} ms`);
    } finally {
      await a.end();
      await b.end();
    }
  });

  test('a rejected promise is nil and the message', async () => {
    const c = await connect();
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT missing');
      assert.equal(rows[0]!['value'], 'nil');
      assert.match(String(rows[0]!['err']), /ENOENT/);
    } finally {
      await c.end();
    }
  });

  test("a package of the daemon's own dependencies (prom-client), constructed and awaited", async () => {
    const c = await connect();
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT metrics');
      assert.match(String(rows[0]!['text']), /^lua_made_total 3$/m);
    } finally {
      await c.end();
    }
  });

  test('js.await() at the top level of config.lua is a configuration error; js.require of nothing too', async () => {
    const r = await runProxy(['--check'], {
      name: 'interop-top',
      config: `local js = require('js')\nlocal v = js.await(js.require('node:timers/promises'):setTimeout(1))\nmysql_listen('\${dir}/proxy.sock', {on_handshake_response = function() end})\n`,
    });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /config\.lua:2: js\.await\(\) waits for I\/O and can only be called inside a callback/);
    const m = await runProxy(['--check'], {
      name: 'interop-missing',
      config: `local js = require('js')\nlocal m = js.require('no-such-package-here')\nmysql_listen('\${dir}/proxy.sock', {on_handshake_response = function() end})\n`,
    });
    assert.equal(m.code, 78);
    assert.match(m.stderr, /config\.lua:2: js\.require: cannot load "no-such-package-here"/);
  });
});
