// mysql_cluster() through a real Lua state: option validation (myproxy's messages), the node
// list, and the cluster userdata (tostring, #, nodes(), pick()).
import { test, before } from 'node:test';
import { strict as assert } from 'node:assert';
import v8 from 'node:v8';
import vm from 'node:vm';
import sodium from 'libsodium-wrappers';
import type { LuaState } from '../../../src/lua/fengari.js';
import { newLuaState } from '../../../src/lua/state.js';
import { installAddress } from '../../../src/bindings/address.js';
import { installClient } from '../../../src/bindings/client.js';
import { installCluster, type ClusterBindings } from '../../../src/bindings/cluster.js';
import { Cluster, DEFAULT_CLUSTER_OPTIONS, type ClusterOptions } from '../../../src/cluster/cluster.js';
import { formatAddress, parseAddress } from '../../../src/net/address.js';
import { runLua } from '../../helpers/lua.js';

before(async () => {
  await sodium.ready;
});

function state(): { L: LuaState; clusters: ClusterBindings } {
  const L = newLuaState();
  installClient(L);
  installAddress(L);
  // monitor: false, as in `--check`: no health checks against real addresses.
  const clusters = installCluster(L, { monitor: false });
  return { L, clusters };
}

/** The error message of `src`, which must fail. */
function errorOf(src: string): string {
  const { L } = state();
  try {
    runLua(L, src, 'utf8');
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail(`no error from ${src}`);
}

const N = `{'127.0.0.1:3306', '127.0.0.1:3307'}`;

const ERRORS: [string, string][] = [
  [`mysql_cluster({})`, 'Cluster is empty'],
  [`mysql_cluster({x = '127.0.0.1'})`, 'Key is not a number'],
  [`mysql_cluster({'127.0.0.1', y = '127.0.0.2'})`, 'Key is not a number'],
  [`mysql_cluster(${N}, {user = 'u'})`, "'user' without 'monitoring'"],
  [`mysql_cluster(${N}, {password = 'p'})`, "'password' without 'monitoring'"],
  [`mysql_cluster(${N}, {no_read_only = true})`, "'no_read_only' without 'monitoring'"],
  [`mysql_cluster(${N}, {disconnect_unavailable = true})`, "'disconnect_unavailable' without 'monitoring'"],
  [`mysql_cluster(${N}, {disconnect_unavailable = false})`, "'disconnect_unavailable' without 'monitoring'"],
  [`mysql_cluster(${N}, {check_interval = 5})`, "'check_interval' without 'monitoring'"],
  [`mysql_cluster(${N}, {monitoring = false, user = 'u'})`, "'user' without 'monitoring'"],
  [`mysql_cluster(${N}, {monitoring = true, password = 'p'})`, "'password' without 'user'"],
  [`mysql_cluster(${N}, {monitoring = true, no_read_only = true})`, "'no_read_only' without 'user'"],
  [`mysql_cluster(${N}, {monitoring = true, no_read_only = false})`, "'no_read_only' without 'user'"],
  [`mysql_cluster(${N}, {x = 1})`, "Unknown option 'x'"],
  [`mysql_cluster(${N}, {monitoring = true, x = 1})`, "Unknown option 'x'"],
  [`mysql_cluster(${N}, {'monitoring'})`, 'Unknown option (key is not a string)'],
  [`mysql_cluster(${N}, {monitoring = 1})`, "Option 'monitoring' must be a boolean"],
  [`mysql_cluster(${N}, {monitoring = 'yes'})`, "Option 'monitoring' must be a boolean"],
  [
    `mysql_cluster(${N}, {monitoring = true, no_read_only = 'true', user = 'u'})`,
    "Option 'no_read_only' must be a boolean",
  ],
  [`mysql_cluster(${N}, {monitoring = true, user = {}})`, "Option 'user' must be a string"],
  [
    `mysql_cluster(${N}, {monitoring = true, check_interval = 0})`,
    "Option 'check_interval' must be a number of seconds from 0.1 to 86400",
  ],
  [
    `mysql_cluster(${N}, {monitoring = true, check_interval = -1})`,
    "Option 'check_interval' must be a number of seconds from 0.1 to 86400",
  ],
  [
    `mysql_cluster(${N}, {monitoring = true, check_interval = 'x'})`,
    "Option 'check_interval' must be a number of seconds from 0.1 to 86400",
  ],
  [
    `mysql_cluster(${N}, {monitoring = true, check_interval = 0/0})`,
    "Option 'check_interval' must be a number of seconds from 0.1 to 86400",
  ],
  [
    `mysql_cluster(${N}, {monitoring = true, check_interval = 86401})`,
    "Option 'check_interval' must be a number of seconds from 0.1 to 86400",
  ],
  [
    `mysql_cluster(${N}, {connect_timeout = 0})`,
    "Option 'connect_timeout' must be a number of seconds from 0.1 to 86400",
  ],
  [
    `mysql_cluster({'db.example:3306'})`,
    "Node 'db.example:3306' is not a numeric address (use mysql_resolve() for host names)",
  ],
  [`mysql_cluster({'localhost'})`, "Node 'localhost' is not a numeric address (use mysql_resolve() for host names)"],
  [`mysql_cluster({42})`, 'Node must be an address string or mysql_resolve() object, got number'],
  [`mysql_cluster({'127.0.0.1:3306', '127.0.0.1:3306'})`, "Duplicate node '127.0.0.1:3306'"],
  [`mysql_cluster({'127.0.0.1', '127.0.0.1:3306'})`, "Duplicate node '127.0.0.1:3306'"],
  [`mysql_cluster({'/run/a.sock', mysql_resolve('/run/a.sock')})`, "Duplicate node '/run/a.sock'"],
  [`mysql_cluster({'[::1]:3306', '[0:0:0:0:0:0:0:1]:3306'})`, "Duplicate node '[0:0:0:0:0:0:0:1]:3306'"],
  [
    `mysql_cluster(${N}, {monitoring = true, check_interval = 0.0001})`,
    "Option 'check_interval' must be a number of seconds from 0.1 to 86400",
  ],
  [`mysql_cluster()`, 'Invalid parameters'],
  [`mysql_cluster(${N}, {}, 3)`, 'Invalid parameters'],
];

for (const [src, message] of ERRORS) {
  test(`mysql_cluster error: ${src}`, () => {
    assert.equal(errorOf(src), `test:1: ${message}`);
  });
}

test('mysql_cluster: a node list that is not a table, and options that are not a table', () => {
  assert.match(errorOf(`mysql_cluster('127.0.0.1')`), /bad argument #1 .*table expected/);
  assert.match(errorOf(`mysql_cluster(${N}, 'x')`), /bad argument #2 .*table expected/);
});

test('mysql_cluster: valid option sets are accepted', () => {
  const { L } = state();
  for (const opts of [
    '',
    ', nil',
    ', {}',
    ', {monitoring = false}',
    ', {connect_timeout = 2.5}',
    ', {monitoring = true}',
    ', {monitoring = true, user = "u"}',
    ', {monitoring = true, user = "u", password = "p", no_read_only = true, disconnect_unavailable = true, check_interval = 1, connect_timeout = 3}',
    ', {monitoring = true, disconnect_unavailable = true, check_interval = 86400}',
  ]) {
    assert.deepEqual(runLua(L, `return type(mysql_cluster(${N}${opts}))`, 'utf8'), ['userdata'], opts);
  }
});

test('the cluster userdata: tostring lists the nodes in index order, # is the count', () => {
  const { L } = state();
  const [text, len] = runLua(
    L,
    `local c = mysql_cluster({[2] = '[::1]:3307', [1] = '127.0.0.1', [3] = '/run/db.sock', [4] = '@abs', [5] = mysql_resolve('10.0.0.1:4000')})
     return tostring(c), #c`,
    'utf8',
  );
  assert.equal(text, 'cluster1(127.0.0.1:3306, [::1]:3307, /run/db.sock, @abs, 10.0.0.1:4000)');
  assert.equal(len, 5);
  // A second cluster gets the next name.
  assert.deepEqual(runLua(L, `return tostring(mysql_cluster({'127.0.0.1'}))`, 'utf8'), ['cluster2(127.0.0.1:3306)']);
  // Unknown fields are nil.
  assert.deepEqual(runLua(L, `return mysql_cluster({'127.0.0.1'}).frobnicate`, 'utf8'), [null]);
});

test('cluster:nodes() gives address/state/suspect tables, unknown at first (before and after the config ran)', () => {
  const { L, clusters } = state();
  const src = `local t = c:nodes()
    local out = {}
    for i, n in ipairs(t) do out[#out + 1] = n.address .. '=' .. n.state .. '=' .. tostring(n.suspect) end
    return #t, table.concat(out, ',')`;
  runLua(L, `c = mysql_cluster({'127.0.0.1:3307', '/run/x.sock'}, {monitoring = true, user = 'u'})`, 'utf8');
  const expected = [2, '127.0.0.1:3307=unknown=false,/run/x.sock=unknown=false'];
  assert.deepEqual(runLua(L, src, 'utf8'), expected);
  clusters.enterRuntime();
  assert.deepEqual(runLua(L, src, 'utf8'), expected);
  clusters.stopAll();
});

test('cluster:pick(account) is deterministic and equals Cluster.order()[0]', () => {
  const { L, clusters } = state();
  const texts = ['127.0.0.1:3306', '127.0.0.1:3307', '127.0.0.1:3308', '[::1]:3306'];
  runLua(L, `c = mysql_cluster({${texts.map((t) => `'${t}'`).join(', ')}})`, 'utf8');
  const options: ClusterOptions = DEFAULT_CLUSTER_OPTIONS;
  const reference = new Cluster(
    'ref',
    texts.map((t) => parseAddress(t)),
    options,
  );
  const accounts = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'x', ''];
  const picked = new Set<string>();
  for (const phase of ['config', 'runtime']) {
    if (phase === 'runtime') clusters.enterRuntime();
    for (const account of accounts) {
      const [a1, a2] = runLua(L, `return c:pick('${account}'), c:pick('${account}')`, 'utf8');
      assert.equal(a1, a2);
      const expected = formatAddress(reference.order(Buffer.from(account), false)[0]!);
      assert.equal(a1, expected, `${phase} ${account}`);
      picked.add(a1);
    }
    assert.deepEqual(runLua(L, `return c:pick()`, 'utf8'), [
      formatAddress(reference.order(Buffer.alloc(0), false)[0]!),
    ]);
  }
  assert.ok(picked.size >= 2, 'different accounts land on different nodes');
  assert.match(
    errorOf(`return mysql_cluster({'127.0.0.1'}):pick({})`),
    /bad argument #1 to 'pick' \(string expected\)/,
  ); // method call: Lua counts without self
  clusters.stopAll();
});

test('cluster:pick() while the config loads refuses nodes whose host names are not resolved yet', () => {
  assert.equal(
    errorOf(`return mysql_cluster({mysql_resolve('db.example:3306')}):pick('a')`),
    'test:1: cluster:pick(): host names are resolved after the config has run; call it from a callback',
  );
});

test('two nodes that are one address after resolving host names are a configuration error', () => {
  const L = newLuaState();
  installClient(L);
  const address = installAddress(L);
  const clusters = installCluster(L, { monitor: false });
  runLua(L, `local x = 1\nmysql_cluster({'127.0.0.1:3306', mysql_resolve('localhost:3306')})`, 'utf8');
  // What the instance does once the config has run: resolve, then build the clusters.
  for (const p of address.pending) p.box.address = { kind: 'tcp', host: '127.0.0.1', port: 3306 };
  assert.throws(
    () => clusters.enterRuntime(),
    (e: Error) =>
      e.name === 'ConfigError' && e.message === "test:2: Duplicate node '127.0.0.1:3306' (after resolving host names)",
  );
});

test('a cluster made at runtime stops monitoring once Lua has forgotten it', async () => {
  // The JS garbage collector collects Fengari's objects; expose it for this test.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const L = newLuaState();
  installClient(L);
  installAddress(L);
  const clusters = installCluster(L, { monitor: true });
  clusters.enterRuntime();
  // A closed port: each check fails at once with ECONNREFUSED.
  runLua(L, `kept = mysql_cluster({'127.0.0.1:1'}, {monitoring = true, check_interval = 0.1})`, 'utf8');
  runLua(L, `local c = mysql_cluster({'127.0.0.1:2'}, {monitoring = true, check_interval = 0.1})`, 'utf8');
  assert.equal(clusters.liveCount, 2);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- assert.equal narrowed liveCount to 2; gc() and the monitors' timers change it while we await
  for (let i = 0; i < 200 && clusters.liveCount > 1; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(clusters.liveCount, 1, 'the forgotten cluster was stopped; the one in a global lives on');
  clusters.stopAll();
  assert.equal(clusters.liveCount, 0);
});

test('after stopAll() (shutdown), a cluster made by a late callback is not monitored and does not make logins wait', () => {
  const L = newLuaState();
  installClient(L);
  installAddress(L);
  const clusters = installCluster(L, { monitor: true });
  clusters.enterRuntime();
  clusters.stopAll();
  runLua(L, `late = mysql_cluster({'127.0.0.1:1'}, {monitoring = true})`, 'utf8');
  assert.equal(clusters.liveCount, 0);
  assert.deepEqual(runLua(L, `return late:nodes()[1].state`, 'utf8'), ['unknown']);
});
