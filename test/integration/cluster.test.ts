// examples/cluster.lua against three real MariaDB instances: 3,000 accounts spread evenly by
// rendezvous hashing (the same node from every proxy process, and the node the documented formula
// names, computed here by Python's own BLAKE2b), minimal movement when a node is added or
// removed, failover and monitoring when a server stops and comes back, read-only awareness with
// disconnect_unavailable, auth_failed monitoring and the state order, and option errors.

import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { startMariaDB, type MariaDB } from '../helpers/mariadb.js';
import { guard, mariadbCli, REPO_ROOT, runProxy, startProxy, type Proxy } from '../helpers/proxy.js';

interface MysqlError extends Error {
  errno?: number;
  sqlState?: string;
}

const ACCOUNTS = 3000;
const account = (i: number): string => `acct${i}`;
const ALL = Array.from({ length: ACCOUNTS }, (_, i) => account(i));
const MONITOR = { user: 'myproxy_monitor', password: 'monitor-pw' };
/** Only node A knows this monitoring user: B and C refuse it (auth_failed). */
const MONITOR_A = { user: 'monitor_a', password: 'monitor-a-pw' };
/** Users ending in _ro connect with read_only = true (examples/cluster.lua). */
const RO_USERS = Array.from({ length: 30 }, (_, i) => `report${i}_ro`);
const EXAMPLE = fs.readFileSync(path.join(REPO_ROOT, 'examples', 'cluster.lua'), 'utf8');

/** Run `fn` over `items` with at most `limit` in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The documented node choice, computed independently (Python's hashlib BLAKE2b): for every
 * account, the port of the node with the smallest first-8-bytes-little-endian of
 * BLAKE2b-128(IPv4 ‖ port big-endian ‖ account) among `ports` (all on 127.0.0.1).
 */
function formulaChoice(ports: readonly number[], accounts: readonly string[]): number[] {
  const script = `
import hashlib, json, socket, struct, sys
ports, accounts = json.load(sys.stdin)
def weight(port, account):
    ident = socket.inet_aton('127.0.0.1') + struct.pack('>H', port)
    digest = hashlib.blake2b(ident + account.encode(), digest_size=16).digest()
    return struct.unpack('<Q', digest[:8])[0]
print(json.dumps([min(ports, key=lambda p: weight(p, a)) for a in accounts]))
`;
  const out = execFileSync('python3', ['-c', script], { input: JSON.stringify([ports, accounts]) });
  return JSON.parse(out.toString()) as number[];
}

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe('examples/cluster.lua with three MariaDB servers', () => {
  const dbs: MariaDB[] = [];
  const ports: number[] = [];
  const proxies: Proxy[] = [];
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir().length > 60 ? '/tmp' : os.tmpdir(), 'myproxy-cluster-'));
  /** Expected node (port) of every account with all three nodes up, from the formula. */
  let expected3: number[] = [];

  const nodesEnv = (list: readonly number[]): string => list.map((p) => `127.0.0.1:${p}`).join(',');

  /** A proxy running examples/cluster.lua over `nodePorts`, listening on sockDir/NAME.sock. */
  const startCluster = async (
    name: string,
    nodePorts: readonly number[],
    extraEnv: NodeJS.ProcessEnv = {},
  ): Promise<Proxy & { sock: string }> => {
    const sock = path.join(sockDir, `${name}.sock`);
    const p = await startProxy({
      name: `cl-${name}`,
      config: () => EXAMPLE,
      listeners: 1,
      env: {
        MYPROXY_SOCKET: sock,
        MYPROXY_NODES: nodesEnv(nodePorts),
        MYPROXY_MONITOR_USER: MONITOR.user,
        MYPROXY_MONITOR_PASSWORD: MONITOR.password,
        MYPROXY_CHECK_INTERVAL: '0.2',
        ...extraEnv,
      },
    });
    proxies.push(p);
    return Object.assign(p, { sock });
  };

  const connect = (sock: string, user: string): Promise<mysql.Connection> =>
    guard(
      mysql.createConnection({ socketPath: sock, user, password: '', enableCleartextPlugin: true }),
      `login ${user}`,
    );

  /** Log in as `user` through `sock` and return the port of the server that answered. */
  const portOf = async (sock: string, user: string): Promise<number> => {
    const c = await connect(sock, user);
    try {
      const [rows] = await c.query('SELECT @@port AS port');
      return (rows as { port: number }[])[0]!.port;
    } finally {
      await c.end();
    }
  };

  const mapAccounts = (sock: string, accounts: readonly string[]): Promise<number[]> =>
    guard(
      mapLimit(accounts, 32, (a) => portOf(sock, a)),
      `${accounts.length} logins`,
      120_000,
    );

  before(async () => {
    for (const name of ['a', 'b', 'c']) dbs.push(await startMariaDB({ name: `cluster-${name}`, tcpPort: 0 }));
    for (const db of dbs) ports.push(db.tcpPort!);
    const users = ALL.map((u) => `'${u}'@'%'`).join(', ');
    await Promise.all(
      dbs.map((db, k) =>
        db.query(
          [
            `CREATE USER ${users}`,
            `CREATE USER ${RO_USERS.map((u) => `'${u}'@'%'`).join(', ')}`,
            `CREATE USER '${MONITOR.user}'@'%' IDENTIFIED BY '${MONITOR.password}'`,
            ...(k === 0 ? [`CREATE USER '${MONITOR_A.user}'@'%' IDENTIFIED BY '${MONITOR_A.password}'`] : []),
            '',
          ].join(';\n'),
        ),
      ),
    );
    expected3 = formulaChoice(ports, ALL);
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await Promise.all(dbs.map((db) => db.stop()));
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  test('3,000 accounts: even spread, the documented formula, the same node from every process', async () => {
    const first = await startCluster('first', ports);
    const got = await mapAccounts(first.sock, ALL);
    for (const port of ports) {
      const share = got.filter((p) => p === port).length;
      assert.ok(Math.abs(share - ACCOUNTS / 3) <= ACCOUNTS / 30, `node ${port} got ${share} of ${ACCOUNTS} accounts`);
    }
    assert.deepEqual(got, expected3, 'every account is on the node the documented formula names');

    // A second process (running at the same time) and a restarted first one agree.
    const second = await startCluster('second', ports);
    await first.stop();
    const restarted = await startCluster('first-again', ports);
    const [fromSecond, fromRestarted] = await Promise.all([
      mapAccounts(second.sock, ALL),
      mapAccounts(restarted.sock, ALL),
    ]);
    assert.deepEqual(fromSecond, expected3);
    assert.deepEqual(fromRestarted, expected3);
    await Promise.all([second.stop(), restarted.stop()]);
  });

  test('removing or adding one node moves only the accounts that must move', async () => {
    const [a, b, c] = ports as [number, number, number];
    const two = await startCluster('two-nodes', [a, b]);
    const got2 = await mapAccounts(two.sock, ALL);
    await two.stop();
    let moved = 0;
    got2.forEach((port, i) => {
      if (expected3[i] === c) {
        moved++;
        assert.ok(port === a || port === b);
      } else {
        assert.equal(port, expected3[i], `${account(i)} moved although its node stayed`);
      }
    });
    // Going from {a, b} to {a, b, c} moves exactly the same accounts back: about a third.
    assert.ok(moved > ACCOUNTS * 0.28 && moved < ACCOUNTS * 0.39, `${moved} accounts moved`);
    assert.deepEqual(got2, formulaChoice([a, b], ALL));
  });

  test('a stopped server: failover at once, its accounts go to the others and come back', async () => {
    const [a, b, c] = ports as [number, number, number];
    const proxy = await startCluster('failover', ports);
    await proxy.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${c}: unknown -> alive`), 20_000);
    const sample = ALL.slice(0, 600);
    const without = formulaChoice([a, b], sample);

    const since = proxy.logs().length;
    await dbs[2]!.halt();
    // Logins right away (before or after the next check): C's accounts fail over, no login fails.
    assert.deepEqual(await mapAccounts(proxy.sock, sample), without);
    await proxy.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${c}: alive -> dead`), 20_000, since);
    assert.deepEqual(await mapAccounts(proxy.sock, sample), without, 'after the check, the others keep their node');

    await dbs[2]!.resume();
    await proxy.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${c}: dead -> alive`), 30_000, since);
    assert.deepEqual(await mapAccounts(proxy.sock, sample), expected3.slice(0, 600), 'C has its accounts back');
    await proxy.stop();
  });

  test('read_only: new logins avoid the node, its sessions are closed, read-only sessions stay', async () => {
    const [a, b, c] = ports as [number, number, number];
    const proxy = await startCluster('read-only', ports);
    for (const p of ports) await proxy.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${p}: unknown -> alive`), 20_000);

    const onA = ALL.filter((_, i) => expected3[i] === a).slice(0, 3);
    // One more session on A, from the mariadb CLI, busy in a query when A turns read-only.
    const cliUser = ALL.filter((_, i) => expected3[i] === a)[3]!;
    const roHome = formulaChoice(ports, RO_USERS);
    // With 30 users, the chance that none (or all) hash to A is below 1e-5.
    const roOnA = RO_USERS.find((_, i) => roHome[i] === a)!;
    const roElsewhere = RO_USERS.find((_, i) => roHome[i] !== a)!;
    const sessions = await Promise.all(onA.map((u) => connect(proxy.sock, u)));
    const roSession = await connect(proxy.sock, roOnA);
    assert.deepEqual((await roSession.query('SELECT @@port AS p'))[0], [{ p: a }]);
    for (const s of sessions) assert.deepEqual((await s.query('SELECT @@port AS p'))[0], [{ p: a }]);

    const closed = sessions.map(
      (s) => new Promise<MysqlError>((resolve) => s.on('error', (e: MysqlError) => resolve(e))),
    );
    const beforeCli = proxy.logs().length;
    const cli = mariadbCli(proxy.sock, cliUser, '', 'SELECT SLEEP(20)', ['--enable-cleartext-plugin']);
    await proxy.waitForLog(new RegExp(`"${cliUser}"\\] handshake`), 20_000, beforeCli);
    const since = proxy.logs().length;
    await dbs[0]!.query('SET GLOBAL read_only = ON');
    try {
      await proxy.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${a}: alive -> read_only`), 20_000, since);
      // The writable sessions on A are told why and closed.
      for (const e of await guard(Promise.all(closed), 'sessions closed', 20_000)) {
        // mysql2 reports an ERR that arrives between commands as a fatal error with the number
        // in `code` (and no SQL state); the wire bytes are the same ERR as at shutdown.
        assert.equal(e.errno ?? (e as { code?: unknown }).code, 1047);
        assert.equal(e.message, 'Node is unavailable');
      }
      // The CLI shows the ERR with its SQL state (it is the answer to the running query).
      const r = await guard(cli, 'mariadb CLI session closed', 25_000);
      assert.match(r.stderr.trim(), /\nERROR 1047 \(08S01\) at line 1: Node is unavailable$/);
      assert.match(proxy.logs().slice(since), /closing 4 session\(s\) on read_only node/);
      // New logins of A's accounts go to a writable node (the next in their order).
      assert.deepEqual(await mapAccounts(proxy.sock, onA), formulaChoice([b, c], onA));
      // Read-only clients prefer the read-only node now, and theirs was not closed.
      assert.equal(await portOf(proxy.sock, roElsewhere), a);
      assert.deepEqual((await roSession.query('SELECT @@port AS p'))[0], [{ p: a }]);
    } finally {
      await dbs[0]!.query('SET GLOBAL read_only = OFF');
      await roSession.end();
    }
    await proxy.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${a}: read_only -> alive`), 20_000, since);
    assert.deepEqual(
      await mapAccounts(proxy.sock, onA),
      onA.map(() => a),
    );
    await proxy.stop();
  });

  test('without monitoring: a node that refuses connections hands its accounts to the next in order', async () => {
    const [a, b, c] = ports as [number, number, number];
    const d = await closedPort();
    const sample = ALL.slice(0, 300);
    const sock = path.join(sockDir, 'plain.sock');
    const proxy = await startProxy({
      name: 'cl-plain',
      config: [
        `local cluster = mysql_cluster({ ${[a, b, c, d].map((p) => `'127.0.0.1:${p}'`).join(', ')} })`,
        'mysql_listen(' + JSON.stringify(sock) + ', { on_handshake_response = function(client, hr)',
        '  client.account = hr.user',
        '  return client:connect(cluster, hr)',
        'end })',
        '',
      ].join('\n'),
    });
    proxies.push(proxy);
    const withD = formulaChoice([a, b, c, d], sample);
    const toD = withD.filter((p) => p === d).length;
    assert.ok(toD > 30, `only ${toD} of ${sample.length} accounts prefer the closed port`);
    assert.deepEqual(await mapAccounts(sock, sample), formulaChoice([a, b, c], sample));
    assert.match(proxy.logs(), new RegExp(`node 127\\.0\\.0\\.1:${d} failed a session connect`));
    assert.match(proxy.logs(), /trying the next node: 127\.0\.0\.1:\d+/);
    await proxy.stop();
  });

  test('monitoring with wrong credentials: auth_failed, and the state order decides', async () => {
    const [a, b, c] = ports as [number, number, number];
    const sample = ALL.slice(0, 150);

    // Nobody accepts the monitoring login: every node is auth_failed; hashing alone decides.
    const wrong = await startCluster('auth-failed', ports, { MYPROXY_MONITOR_PASSWORD: 'wrong' });
    for (const p of ports) {
      await wrong.waitForLog(
        new RegExp(`node 127\\.0\\.0\\.1:${p}: unknown -> auth_failed \\(login refused: 1045 `),
        20_000,
      );
    }
    assert.deepEqual(await mapAccounts(wrong.sock, sample), expected3.slice(0, 150));
    await wrong.stop();

    // Only A accepts monitor_a: A alive > B, C auth_failed > D dead. Everything goes to A.
    const d = await closedPort();
    const mixed = await startCluster('states', [a, b, c, d], {
      MYPROXY_MONITOR_USER: MONITOR_A.user,
      MYPROXY_MONITOR_PASSWORD: MONITOR_A.password,
    });
    await mixed.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${a}: unknown -> alive`), 20_000);
    await mixed.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${d}: unknown -> dead`), 20_000);
    assert.deepEqual(
      await mapAccounts(mixed.sock, sample),
      sample.map(() => a),
    );
    await mixed.stop();

    // B (auth_failed) beats D (dead) for every account, without trying D first.
    const worse = await startCluster('worse', [b, d], {
      MYPROXY_MONITOR_USER: MONITOR_A.user,
      MYPROXY_MONITOR_PASSWORD: MONITOR_A.password,
    });
    await worse.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${b}: unknown -> auth_failed`), 20_000);
    await worse.waitForLog(new RegExp(`node 127\\.0\\.0\\.1:${d}: unknown -> dead`), 20_000);
    assert.deepEqual(
      await mapAccounts(worse.sock, sample),
      sample.map(() => b),
    );
    assert.doesNotMatch(worse.logs(), /failed a session connect/);
    await worse.stop();
  });
});

describe('mysql_cluster option errors are configuration errors', () => {
  const cases: [string, string][] = [
    ['mysql_cluster({})', 'Cluster is empty'],
    ["mysql_cluster({'127.0.0.1'}, {user = 'x'})", "'user' without 'monitoring'"],
    ["mysql_cluster({'127.0.0.1'}, {disconnect_unavailable = true})", "'disconnect_unavailable' without 'monitoring'"],
    ["mysql_cluster({'127.0.0.1'}, {monitoring = true, no_read_only = true})", "'no_read_only' without 'user'"],
    ["mysql_cluster({'127.0.0.1'}, {monitoring = true, colour = 'red'})", "Unknown option 'colour'"],
  ];
  for (const [call, message] of cases) {
    for (const mode of ['--check', 'startup'] as const) {
      test(`${call} (${mode})`, async () => {
        const r = await runProxy(mode === '--check' ? ['--check'] : [], {
          name: 'cluster-opt',
          config: `local x = 1\n${call}\nmysql_listen('\${dir}/proxy.sock', {on_handshake_response = function() end})\n`,
        });
        assert.equal(r.code, 78, r.stderr);
        assert.ok(r.stderr.includes(`${r.configPath}:2: ${message}`), r.stderr);
      });
    }
  }
});
