// Cluster scheduling and ordering with a fake checker: state preference, readiness, no check
// pile-up, failover suspicion, disconnect_unavailable and state-change logging.
import { test, before, after } from 'node:test';
import { strict as assert } from 'node:assert';
import sodium from 'libsodium-wrappers';
import { DEFAULT_CLUSTER_OPTIONS, Cluster, type Checker, type ClusterOptions } from '../../../src/cluster/cluster.js';
import type { CheckResult, NodeState } from '../../../src/cluster/check.js';
import { nodeIdentity, rendezvousHash } from '../../../src/cluster/rendezvous.js';
import { formatAddress, type SocketAddress } from '../../../src/net/address.js';
import type { BackendCandidate, ClientSession } from '../../../src/proxy/handler.js';
import { setLogSinks } from '../../../src/util/log.js';

const logLines: { stream: 'info' | 'error'; line: string }[] = [];

before(async () => {
  await sodium.ready;
  setLogSinks(
    (line) => void logLines.push({ stream: 'info', line }),
    (line) => void logLines.push({ stream: 'error', line }),
  );
});

after(() => {
  setLogSinks(
    (line) => void process.stdout.write(line + '\n'),
    (line) => void process.stderr.write(line + '\n'),
  );
});

const tcp = (port: number): SocketAddress => ({ kind: 'tcp', host: '127.0.0.1', port });
const label = formatAddress;

function options(over: Partial<ClusterOptions> = {}): ClusterOptions {
  return { ...DEFAULT_CLUSTER_OPTIONS, monitoring: true, checkIntervalMs: 60_000, connectTimeoutMs: 1_000, ...over };
}

/**
 * A checker whose answer per node is set by the test: a state (answered at once) or 'hang'
 * (the check stays pending until `release(address, state)`).
 */
class FakeChecker {
  readonly plan = new Map<string, NodeState | 'hang'>();
  readonly calls: string[] = [];
  readonly #pending = new Map<string, ((r: CheckResult) => void)[]>();

  constructor(initial: Record<string, NodeState | 'hang'> = {}) {
    for (const [k, v] of Object.entries(initial)) this.plan.set(k, v);
  }

  readonly check: Checker = (address) => {
    const key = label(address);
    this.calls.push(key);
    const what = this.plan.get(key) ?? 'hang';
    if (what !== 'hang') return Promise.resolve({ state: what, detail: `fake ${what}` });
    return new Promise<CheckResult>((resolve) => {
      const list = this.#pending.get(key) ?? [];
      list.push(resolve);
      this.#pending.set(key, list);
    });
  };

  count(address: SocketAddress): number {
    return this.calls.filter((c) => c === label(address)).length;
  }

  pendingFor(address: SocketAddress): number {
    return this.#pending.get(label(address))?.length ?? 0;
  }

  release(address: SocketAddress, state: NodeState): void {
    const list = this.#pending.get(label(address)) ?? [];
    this.#pending.delete(label(address));
    for (const resolve of list) resolve({ state, detail: `fake ${state}` });
  }
}

const session = (account: string | undefined): ClientSession => ({
  id: 1,
  peer: { pid: 1, uid: 1, gid: 1, address: undefined },
  account,
  serverVersion: Buffer.from('8.0'),
  logName: 'test',
  closed: false,
});

/** Poll `cond` every 5 ms; fail after a generous bound (never a timing assertion). */
async function waitFor(cond: () => boolean, what: string, boundMs = 5_000): Promise<void> {
  const end = Date.now() + boundMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Let queued promise callbacks and immediates run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const stateOf = (c: Cluster, a: SocketAddress): NodeState =>
  c.status().find((s) => label(s.address) === label(a))!.state;
const suspectOf = (c: Cluster, a: SocketAddress): boolean =>
  c.status().find((s) => label(s.address) === label(a))!.suspect;

/** Addresses sorted by their hash for `account` (what order() gives when all states are equal). */
function hashOrder(addresses: readonly SocketAddress[], account: string): SocketAddress[] {
  const acc = Buffer.from(account);
  return [...addresses].sort((a, b) => {
    const ha = rendezvousHash(nodeIdentity(a), acc);
    const hb = rendezvousHash(nodeIdentity(b), acc);
    return ha < hb ? -1 : ha > hb ? 1 : 0;
  });
}

const FIVE = [3306, 3307, 3308, 3309, 3310].map(tcp);
const STATES_WORST_FIRST: NodeState[] = ['dead', 'auth_failed', 'unknown', 'read_only', 'alive'];

for (const account of ['alice', 'bob', 'carol']) {
  test(`order(): state beats hash, dead < auth_failed < unknown < read_only < alive (${account})`, async () => {
    // The hash-preferred node gets the worst state, the least preferred the best.
    const byHash = hashOrder(FIVE, account);
    const fake = new FakeChecker();
    byHash.forEach((a, i) => fake.plan.set(label(a), STATES_WORST_FIRST[i]!));
    const cluster = new Cluster('c', FIVE, options(), fake.check);
    try {
      assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), byHash.map(label));
      cluster.start();
      await waitFor(() => cluster.status().every((s, i) => s.state === fake.plan.get(label(FIVE[i]!))), 'all checked');
      const expected = [...byHash].reverse();
      assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), expected.map(label));
      // read_only wanted: read_only beats alive, both beat the rest, which keep their order.
      const ro = cluster.order(Buffer.from(account), true).map(label);
      assert.deepEqual(ro, [byHash[3]!, byHash[4]!, byHash[2]!, byHash[1]!, byHash[0]!].map(label));
      // select() gives the same order as candidates.
      const cands = await cluster.select(session(account), false);
      assert.deepEqual(
        cands.map((c) => label(c.address)),
        expected.map(label),
      );
      assert.ok(cands.every((c) => c.connectTimeoutMs === 1_000));
    } finally {
      cluster.stop();
    }
  });
}

test('order(): equal states fall back to the hash; pairs of states in both hash positions', async () => {
  const pair = [tcp(3306), tcp(3307)];
  const account = 'dave';
  const [first, second] = hashOrder(pair, account) as [SocketAddress, SocketAddress];
  for (let w = 0; w < STATES_WORST_FIRST.length; w++) {
    for (let b = w + 1; b < STATES_WORST_FIRST.length; b++) {
      const worse = STATES_WORST_FIRST[w]!;
      const better = STATES_WORST_FIRST[b]!;
      const fake = new FakeChecker({ [label(first)]: worse, [label(second)]: better });
      const cluster = new Cluster('c', pair, options(), fake.check);
      cluster.start();
      await waitFor(() => stateOf(cluster, first) === worse && stateOf(cluster, second) === better, 'checked');
      assert.deepEqual(
        cluster.order(Buffer.from(account), false).map(label),
        [second, first].map(label),
        `${worse} vs ${better}`,
      );
      const roFirst = worse === 'read_only' ? first : second;
      assert.equal(
        label(cluster.order(Buffer.from(account), true)[0]!),
        label(roFirst),
        `read_only: ${worse} vs ${better}`,
      );
      cluster.stop();
    }
  }
  // Same state: hash order.
  const fake = new FakeChecker({ [label(first)]: 'alive', [label(second)]: 'alive' });
  const cluster = new Cluster('c', pair, options(), fake.check);
  cluster.start();
  await waitFor(() => cluster.status().every((s) => s.state === 'alive'), 'alive');
  assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), [first, second].map(label));
  cluster.stop();
});

test('readiness: with monitoring select() waits until a node is alive', async () => {
  const nodes = [tcp(3306), tcp(3307), tcp(3308)];
  const fake = new FakeChecker();
  const cluster = new Cluster('c', nodes, options(), fake.check);
  assert.equal(cluster.ready, false);
  let result: readonly BackendCandidate[] | undefined;
  const p = cluster.select(session('alice'), false).then((r) => (result = r));
  cluster.start();
  await waitFor(() => fake.calls.length === 3, 'first checks');
  await settle();
  assert.equal(result, undefined);
  fake.release(nodes[0]!, 'dead');
  await waitFor(() => stateOf(cluster, nodes[0]!) === 'dead', 'dead applied');
  await settle();
  assert.equal(result, undefined, 'one dead node of three does not make it ready');
  assert.equal(cluster.ready, false);
  fake.release(nodes[2]!, 'alive');
  await p;
  assert.equal(cluster.ready, true);
  assert.equal(label(result![0]!.address), label(nodes[2]!));
  cluster.stop();
});

test('readiness: with monitoring select() resolves once every node was checked, even if none is alive', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const fake = new FakeChecker();
  const cluster = new Cluster('c', nodes, options(), fake.check);
  let done = false;
  const p = cluster.select(session('x'), false).then(() => (done = true));
  cluster.start();
  await waitFor(() => fake.calls.length === 2, 'first checks');
  fake.release(nodes[0]!, 'auth_failed');
  await waitFor(() => stateOf(cluster, nodes[0]!) === 'auth_failed', 'applied');
  await settle();
  assert.equal(done, false);
  fake.release(nodes[1]!, 'read_only');
  await p;
  assert.equal(cluster.ready, true);
  cluster.stop();
});

test('readiness: stop() releases waiting selects', async () => {
  const fake = new FakeChecker();
  const cluster = new Cluster('c', [tcp(3306)], options(), fake.check);
  cluster.start();
  let done = false;
  const p = cluster.select(session('x'), false).then(() => (done = true));
  await settle();
  assert.equal(done, false);
  cluster.stop();
  await p;
  assert.equal(cluster.ready, true);
});

test('readiness: without monitoring select() resolves at once and nothing is checked', async () => {
  const fake = new FakeChecker({ '127.0.0.1:3306': 'alive' });
  const cluster = new Cluster('c', [tcp(3306), tcp(3307)], options({ monitoring: false }), fake.check);
  assert.equal(cluster.ready, true);
  const cands = await cluster.select(session('alice'), false);
  assert.equal(cands.length, 2);
  cluster.start();
  await settle();
  assert.deepEqual(fake.calls, []);
  assert.ok(cluster.status().every((s) => s.state === 'unknown'));
  cluster.stop();
});

test('no pile-up: a check that never finishes is not started again, however many intervals pass', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const fake = new FakeChecker(); // every check hangs
  const cluster = new Cluster('c', nodes, options({ checkIntervalMs: 10 }), fake.check);
  cluster.start();
  cluster.start(); // a second start() does not check again either
  await sleep(200); // twenty intervals
  assert.equal(fake.count(nodes[0]!), 1);
  assert.equal(fake.count(nodes[1]!), 1);
  cluster.stop();
});

test('no pile-up: failed() while a check is running does not start another', async () => {
  const node = tcp(3306);
  const fake = new FakeChecker({ [label(node)]: 'alive' });
  const cluster = new Cluster('c', [node], options({ checkIntervalMs: 10 }), fake.check);
  cluster.start();
  await waitFor(() => fake.count(node) >= 2, 'repeated checks');
  fake.plan.set(label(node), 'hang');
  await waitFor(() => fake.pendingFor(node) === 1, 'a hanging check');
  const [cand] = await cluster.select(session('a'), false);
  cand!.failed!('connection refused');
  const n = fake.count(node);
  await sleep(1_200); // past the early-check gap and many intervals
  assert.equal(fake.count(node), n);
  cluster.stop();
});

test('checks repeat every interval after the result, and stop() ends them', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const fake = new FakeChecker({ [label(nodes[0]!)]: 'alive', [label(nodes[1]!)]: 'dead' });
  const cluster = new Cluster('c', nodes, options({ checkIntervalMs: 10 }), fake.check);
  cluster.start();
  await waitFor(() => fake.count(nodes[0]!) >= 3 && fake.count(nodes[1]!) >= 3, 'repeated checks');
  cluster.stop();
  const n = fake.calls.length;
  await sleep(150);
  assert.equal(fake.calls.length, n);
  cluster.start(); // no restart after stop()
  const [cand] = await cluster.select(session('a'), false);
  cand!.failed!('refused'); // no early check after stop() either
  await sleep(1_200);
  assert.equal(fake.calls.length, n);
});

test('stop() during a check: its result is not applied', async () => {
  const node = tcp(3306);
  const fake = new FakeChecker();
  const cluster = new Cluster('c', [node], options(), fake.check);
  cluster.start();
  await waitFor(() => fake.pendingFor(node) === 1, 'check running');
  cluster.stop();
  fake.release(node, 'alive');
  await settle();
  assert.equal(stateOf(cluster, node), 'unknown');
});

test('a checker that throws counts as dead', async () => {
  const node = tcp(3306);
  const cluster = new Cluster('c', [node], options(), () => Promise.reject(new Error('boom')));
  cluster.start();
  await cluster.select(session('a'), false);
  assert.equal(stateOf(cluster, node), 'dead');
  cluster.stop();
});

test('failover: failed() without monitoring sorts the node after equal peers, until a check interval passes', async () => {
  const nodes = [tcp(3306), tcp(3307), tcp(3308)];
  const account = 'erin';
  const byHash = hashOrder(nodes, account);
  const cluster = new Cluster('c', nodes, options({ monitoring: false, checkIntervalMs: 30 }), () => {
    throw new Error('no checks without monitoring');
  });
  const cands = await cluster.select(session(account), false);
  assert.deepEqual(
    cands.map((c) => label(c.address)),
    byHash.map(label),
  );
  cands[0]!.failed!('connection refused');
  assert.equal(suspectOf(cluster, byHash[0]!), true);
  assert.deepEqual(
    cluster.order(Buffer.from(account), false).map(label),
    [byHash[1]!, byHash[2]!, byHash[0]!].map(label),
  );
  // Two suspects: both after the third, among themselves by hash.
  cands[1]!.failed!('connection refused');
  assert.deepEqual(
    cluster.order(Buffer.from(account), false).map(label),
    [byHash[2]!, byHash[0]!, byHash[1]!].map(label),
  );
  await waitFor(() => cluster.status().every((s) => !s.suspect), 'suspicion lapses');
  assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), byHash.map(label));
  cluster.stop();
});

test('failover: with monitoring failed() triggers an early check; the node is suspect until its result', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const account = 'frank';
  const [first, second] = hashOrder(nodes, account) as [SocketAddress, SocketAddress];
  const fake = new FakeChecker({ [label(first)]: 'alive', [label(second)]: 'alive' });
  const cluster = new Cluster('early', nodes, options({ checkIntervalMs: 600_000 }), fake.check);
  cluster.start();
  await cluster.select(session(account), false);
  await waitFor(() => cluster.status().every((s) => s.state === 'alive'), 'alive');
  assert.equal(fake.calls.length, 2);
  fake.plan.set(label(first), 'hang');
  const cands = await cluster.select(session(account), false);
  assert.equal(label(cands[0]!.address), label(first));
  cands[0]!.failed!('connection refused');
  assert.equal(suspectOf(cluster, first), true);
  assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), [second, first].map(label));
  // The early check comes long before the 10-minute interval.
  await waitFor(() => fake.pendingFor(first) === 1, 'early check', 10_000);
  assert.equal(fake.count(first), 2);
  assert.equal(fake.count(second), 1);
  assert.equal(suspectOf(cluster, first), true, 'still suspect while its check runs');
  assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), [second, first].map(label));
  fake.release(first, 'alive');
  await waitFor(() => !suspectOf(cluster, first), 'check result clears suspicion');
  assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), [first, second].map(label));
  // The failed connect was logged once, as an error.
  assert.equal(
    logLines.filter(
      (l) =>
        l.stream === 'error' && l.line === `[early] node ${label(first)} failed a session connect: connection refused`,
    ).length,
    1,
  );
  cluster.stop();
});

test('failover: a suspect node still beats a node in a worse state', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const account = 'gina';
  const [first, second] = hashOrder(nodes, account) as [SocketAddress, SocketAddress];
  // The hash prefers `first`; make `second` the alive one, then suspect it.
  const fake = new FakeChecker({ [label(first)]: 'read_only', [label(second)]: 'alive' });
  const cluster = new Cluster('c', nodes, options(), fake.check);
  cluster.start();
  await waitFor(() => stateOf(cluster, first) === 'read_only' && stateOf(cluster, second) === 'alive', 'checked');
  fake.plan.set(label(second), 'hang');
  const cands = await cluster.select(session(account), false);
  assert.equal(label(cands[0]!.address), label(second));
  cands[0]!.failed!('refused');
  assert.equal(suspectOf(cluster, second), true);
  assert.deepEqual(cluster.order(Buffer.from(account), false).map(label), [second, first].map(label));
  cluster.stop();
});

test('disconnect_unavailable: sessions on a node are closed when it becomes worse than another', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const account = 'henry';
  const [first, second] = hashOrder(nodes, account) as [SocketAddress, SocketAddress];
  const fake = new FakeChecker({ [label(first)]: 'alive', [label(second)]: 'alive' });
  const cluster = new Cluster('c', nodes, options({ disconnectUnavailable: true, checkIntervalMs: 10 }), fake.check);
  cluster.start();
  const cands = await cluster.select(session(account), false);
  await waitFor(() => cluster.status().every((s) => s.state === 'alive'), 'alive');
  assert.equal(typeof cands[0]!.attach, 'function');
  let closedFirst = 0;
  let closedSecond = 0;
  let closedDetached = 0;
  cands[0]!.attach!(() => closedFirst++);
  cands[1]!.attach!(() => closedSecond++);
  const detach = cands[0]!.attach!(() => closedDetached++);
  detach();
  // Both alive through several checks: nobody is closed.
  const n = fake.calls.length;
  await waitFor(() => fake.calls.length >= n + 6, 'more checks');
  assert.equal(closedFirst + closedSecond, 0);
  fake.plan.set(label(first), 'dead');
  await waitFor(() => closedFirst > 0, 'sessions on the dead node closed');
  const m = fake.calls.length;
  await waitFor(() => fake.calls.length >= m + 6, 'more checks');
  assert.equal(closedFirst, 1, 'each observer is called once');
  assert.equal(closedSecond, 0, 'the alive node keeps its sessions');
  assert.equal(closedDetached, 0, 'a detached observer is not called');
  assert.ok(logLines.some((l) => l.line.includes(`closing 1 session(s) on dead node ${label(first)}`)));
  cluster.stop();
});

test('disconnect_unavailable: sessions on worse nodes are closed when a better node appears', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const [a, b] = nodes as [SocketAddress, SocketAddress];
  const fake = new FakeChecker({ [label(a)]: 'read_only', [label(b)]: 'dead' });
  const cluster = new Cluster(
    'c',
    nodes,
    options({ disconnectUnavailable: true, checkIntervalMs: 600_000 }),
    fake.check,
  );
  cluster.start();
  const cands = await cluster.select(session('ivy'), false);
  await waitFor(() => stateOf(cluster, a) === 'read_only' && stateOf(cluster, b) === 'dead', 'checked');
  const onA = cands.find((c) => label(c.address) === label(a))!;
  let closedA = 0;
  onA.attach!(() => closedA++);
  assert.equal(closedA, 0);
  // B comes back alive; only B is checked (early check via a failed connect), not A.
  fake.plan.set(label(b), 'alive');
  const onB = cands.find((c) => label(c.address) === label(b))!;
  onB.failed!('refused');
  await waitFor(() => stateOf(cluster, b) === 'alive', 'b alive', 10_000);
  assert.equal(fake.count(a), 1, 'A was not checked again');
  assert.equal(closedA, 1);
  cluster.stop();
});

test('disconnect_unavailable: read-only selects and clusters without the option offer no attach', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const fake = new FakeChecker({ [label(nodes[0]!)]: 'alive', [label(nodes[1]!)]: 'alive' });
  const on = new Cluster('c', nodes, options({ disconnectUnavailable: true }), fake.check);
  on.start();
  const rw = await on.select(session('a'), false);
  assert.ok(rw.every((c) => typeof c.attach === 'function' && typeof c.failed === 'function'));
  const ro = await on.select(session('a'), true);
  assert.ok(ro.every((c) => c.attach === undefined && typeof c.failed === 'function'));
  on.stop();
  const off = new Cluster('c', nodes, options(), fake.check);
  off.start();
  const plain = await off.select(session('a'), false);
  assert.ok(plain.every((c) => c.attach === undefined));
  off.stop();
  const noMon = new Cluster('c', nodes, options({ monitoring: false }), fake.check);
  assert.ok((await noMon.select(session('a'), false)).every((c) => c.attach === undefined));
});

test('select() keys the order on the session account (undefined as empty)', async () => {
  const nodes = [3306, 3307, 3308, 3309].map(tcp);
  const cluster = new Cluster('c', nodes, options({ monitoring: false }));
  for (const account of ['alice', 'bob', '', 'ü']) {
    const cands = await cluster.select(session(account), false);
    assert.deepEqual(
      cands.map((c) => label(c.address)),
      hashOrder(nodes, account).map(label),
    );
  }
  const none = await cluster.select(session(undefined), false);
  assert.deepEqual(
    none.map((c) => label(c.address)),
    hashOrder(nodes, '').map(label),
  );
});

test('a state change is logged once (info when usable, error otherwise)', async () => {
  const node = tcp(3399);
  const fake = new FakeChecker({ [label(node)]: 'alive' });
  const cluster = new Cluster('logtest', [node], options({ checkIntervalMs: 10 }), fake.check);
  cluster.start();
  await waitFor(() => fake.count(node) >= 5, 'repeated checks');
  fake.plan.set(label(node), 'auth_failed');
  await waitFor(() => stateOf(cluster, node) === 'auth_failed', 'auth_failed');
  const n = fake.count(node);
  await waitFor(() => fake.count(node) >= n + 5, 'repeated checks');
  cluster.stop();
  const mine = logLines.filter((l) => l.line.startsWith('[logtest] node 127.0.0.1:3399:'));
  assert.deepEqual(mine, [
    { stream: 'info', line: '[logtest] node 127.0.0.1:3399: unknown -> alive (fake alive)' },
    { stream: 'error', line: '[logtest] node 127.0.0.1:3399: alive -> auth_failed (fake auth_failed)' },
  ]);
});

test('an empty cluster is refused', () => {
  assert.throws(() => new Cluster('c', [], options()), /Cluster is empty/);
});

test('the owner is held while logins wait for readiness or sessions are attached, and only then', async () => {
  const nodes = [tcp(3306), tcp(3307)];
  const fake = new FakeChecker(); // every check hangs until released
  const cluster = new Cluster('c', nodes, options({ disconnectUnavailable: true }), fake.check);
  cluster.owner = {};
  cluster.start();
  assert.equal(cluster.ownerPinned, false, 'nothing waits yet');
  const waiting = cluster.select(session('ivy'), false);
  await settle();
  assert.equal(cluster.ownerPinned, true, 'a login waits for readiness');
  fake.release(nodes[0]!, 'alive');
  const cands = await waiting;
  assert.equal(cluster.ownerPinned, false, 'ready, nobody attached');
  const detach = cands[0]!.attach!(() => undefined);
  assert.equal(cluster.ownerPinned, true, 'a session is attached');
  detach();
  assert.equal(cluster.ownerPinned, false, 'the session detached');
  cluster.stop();
});
