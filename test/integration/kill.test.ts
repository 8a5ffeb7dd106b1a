// KILL through the proxy: the connection id a client learns from the greeting is the proxy's, so
// the mariadb CLI's Ctrl-C (`KILL QUERY <id>` on a second connection), PyMySQL's kill()
// (COM_PROCESS_KILL) and hand-written KILL statements must reach that session's thread on its own
// server, never another session's, and only for a client allowed to kill it.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { guard, mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';

const OTHER = { user: 'other', password: 'otherpw' };

async function addOther(db: MariaDB): Promise<void> {
  await db.query(
    `CREATE OR REPLACE USER '${OTHER.user}'@'%' IDENTIFIED BY '${OTHER.password}'; GRANT ALL ON test.* TO '${OTHER.user}'@'%'`,
  );
}

/** Waits until the server runs a statement containing `text` (from the processlist). */
async function waitForQuery(db: MariaDB, text: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const list = await db.query(
      `SELECT INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE '%${text}%' AND INFO NOT LIKE '%PROCESSLIST%'`,
    );
    if (list.trim() !== '') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the server never ran ${text}`);
}

const connect = (p: Proxy, who: { user: string; password: string } = USERS.native) =>
  mysql.createConnection({
    socketPath: p.socket,
    user: who.user,
    password: who.password,
    database: 'test',
    authPlugins: {},
    enableCleartextPlugin: true,
  } as mysql.ConnectionOptions);

describe('KILL through the proxy', () => {
  let db: MariaDB | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    db = await startMariaDB({ name: 'kill' });
    await createTestUsers(db);
    await addOther(db);
    proxy = await startProxy({
      name: 'kill',
      config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  test("the mariadb CLI's Ctrl-C interrupts its own query, not the unrelated one whose thread id is the greeting's id", async () => {
    // A bystander whose query must survive.
    const bystander = await connect(proxy!);
    const bystanderQuery = bystander.query('SELECT SLEEP(4) AS bystander');
    const cli = spawn('mariadb', [
      '--no-defaults',
      '-S',
      proxy!.socket,
      '-u',
      USERS.native.user,
      `-p${USERS.native.password}`,
      '-e',
      'SELECT SLEEP(20) AS victim',
    ]);
    let stderr = '';
    cli.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => cli.once('close', r));
    await waitForQuery(db!, 'victim');
    const started = Date.now();
    cli.kill('SIGINT');
    const code = await guard(exited, 'the CLI after Ctrl-C', 10_000);
    assert.ok(Date.now() - started < 5000, 'the query stopped at once');
    assert.notEqual(code, 0);
    assert.match(stderr, /ERROR 1317 \(70100\).*Query execution was interrupted/);
    const [rows] = await bystanderQuery;
    assert.deepEqual(rows, [{ bystander: 0 }], 'the bystander ran to its end');
    await bystander.end();
    assert.match(proxy!.logs(), /KILL QUERY \d+: KILL QUERY \d+ on /);
  });

  test("PyMySQL's kill() (COM_PROCESS_KILL with the greeting's id) ends the other connection", async () => {
    const script = `
import pymysql, threading, time, sys
kw = dict(unix_socket=sys.argv[1], user='native', password='nativepw', database='test')
victim = pymysql.connect(**kw)
killer = pymysql.connect(**kw)
result = {}
def run():
    try:
        with victim.cursor() as c:
            c.execute('SELECT SLEEP(20)')
            result['v'] = 'finished'
    except Exception as e:
        result['v'] = repr(e)
t = threading.Thread(target=run); t.start()
time.sleep(1)
killer.kill(victim.thread_id())
t.join(10)
print(victim.thread_id(), result.get('v'))
`;
    const r = await runCommand('/usr/bin/python3', ['-c', script, proxy!.socket]);
    assert.equal(r.code, 0, r.stderr);
    const [id, ...outcome] = r.stdout.trim().split(' ');
    assert.ok(Number(id) >= 0x40000000, `the greeting's id ${String(id)} is the proxy's`);
    assert.match(outcome.join(' '), /2013|Lost connection|1927|killed/i);
  });

  test("one user cannot kill another user's query; an unknown id is refused with 1094", async () => {
    const victim = await connect(proxy!);
    await victim.query('SELECT 1');
    const victimId = (victim as unknown as { threadId: number }).threadId;
    const running = victim.query('SELECT SLEEP(2) AS v');
    await waitForQuery(db!, 'SLEEP(2) AS v');
    const r = await mariadbCli(proxy!.socket, OTHER.user, OTHER.password, `KILL QUERY ${victimId}`);
    assert.match(r.stderr, new RegExp(`ERROR 1095 \\(HY000\\).*You are not owner of thread ${victimId}`));
    const [rows] = await running;
    assert.deepEqual(rows, [{ v: 0 }], 'the query was not interrupted');
    const unknown = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, 'KILL 1234567');
    assert.match(unknown.stderr, /ERROR 1094 \(HY000\).*Unknown thread id: 1234567/);
    await victim.end();
  });

  test("KILL CONNECTION and the server's own thread id (CONNECTION_ID()) work too", async () => {
    const victim = await connect(proxy!);
    const [[row]] = (await victim.query('SELECT CONNECTION_ID() AS id')) as unknown as [[{ id: number }]];
    const serverId = row.id;
    assert.ok(serverId < 0x40000000, 'CONNECTION_ID() is the server thread id');
    const r = await mariadbCli(proxy!.socket, USERS.native.user, USERS.native.password, `KILL CONNECTION ${serverId}`);
    assert.equal(r.code, 0, r.stderr);
    await assert.rejects(victim.query('SELECT 1'));
    victim.destroy();
  });
});

describe('KILL through a cluster: the killer runs on another node', () => {
  let a: MariaDB | undefined;
  let b: MariaDB | undefined;
  let proxy: Proxy | undefined;

  before(async () => {
    [a, b] = await Promise.all([startMariaDB({ name: 'killa' }), startMariaDB({ name: 'killb' })]);
    await Promise.all([createTestUsers(a), createTestUsers(b)]);
    proxy = await startProxy({
      name: 'killc',
      config: (dir) => `
local nodes = { ${JSON.stringify(a!.socket)}, ${JSON.stringify(b!.socket)} }
local cluster = mysql_cluster(nodes)
-- Two accounts that rendezvous hashing puts on different nodes; connections alternate.
local on = {}
for i = 1, 1000 do
  local acct = 'acct' .. i
  local node = tostring(cluster:pick(acct))
  on[node] = on[node] or acct
end
local accounts = { on[nodes[1]], on[nodes[2]] }
local n = 0
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr)
    n = n + 1
    client.account = accounts[(n - 1) % 2 + 1]
    return client:connect(cluster, hr)
  end,
})`,
    });
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  test("the CLI's Ctrl-C, whose killer connection lands on the other node, still interrupts the query", async () => {
    const cli = spawn('mariadb', [
      '--no-defaults',
      '-S',
      proxy!.socket,
      '-u',
      USERS.native.user,
      `-p${USERS.native.password}`,
      '-e',
      'SELECT SLEEP(20) AS clustered',
    ]);
    let stderr = '';
    cli.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => cli.once('close', r));
    await waitForQuery(a!, 'clustered');
    cli.kill('SIGINT');
    await guard(exited, 'the CLI after Ctrl-C', 10_000);
    assert.match(stderr, /ERROR 1317 \(70100\)/);
    assert.match(proxy!.logs(), new RegExp(`KILL QUERY \\d+ on ${a!.socket.replace(/[/.]/g, '\\$&')}`));
  });
});
