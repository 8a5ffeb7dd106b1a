// Rendezvous hashing: node identity bytes, the hash (known answers from Python's hashlib, not from
// libsodium), and the properties the cluster relies on (even spread, minimal movement).
import { test, before } from 'node:test';
import { strict as assert } from 'node:assert';
import sodium from 'libsodium-wrappers';
import { ipv6Bytes, nodeIdentity, rendezvousHash } from '../../../src/cluster/rendezvous.js';
import { Cluster, DEFAULT_CLUSTER_OPTIONS, type ClusterOptions } from '../../../src/cluster/cluster.js';
import { formatAddress, parseAddress, type SocketAddress } from '../../../src/net/address.js';
import { hex } from '../../helpers/bytes.js';

before(async () => {
  await sodium.ready;
});

const tcp = (host: string, port: number): SocketAddress => ({ kind: 'tcp', host, port });

const OFF: ClusterOptions = DEFAULT_CLUSTER_OPTIONS;

test('nodeIdentity: IPv4 is 4 address bytes and the port big-endian', () => {
  // 3307 = 0x0ceb.
  assert.deepEqual(nodeIdentity(tcp('127.0.0.1', 3307)), hex`7f000001 0ceb`);
  assert.deepEqual(nodeIdentity(tcp('192.168.10.200', 3306)), hex`c0a80ac8 0cea`);
  assert.deepEqual(nodeIdentity(tcp('0.0.0.0', 1)), hex`00000000 0001`);
  assert.deepEqual(nodeIdentity(tcp('255.255.255.255', 65535)), hex`ffffffff ffff`);
});

test('nodeIdentity: IPv6 forms are 16 address bytes and the port big-endian', () => {
  assert.deepEqual(nodeIdentity(tcp('::1', 3306)), hex`00000000000000000000000000000001 0cea`);
  assert.deepEqual(nodeIdentity(tcp('2001:db8::1', 3307)), hex`20010db8000000000000000000000001 0ceb`);
  assert.deepEqual(nodeIdentity(tcp('::ffff:192.0.2.1', 3306)), hex`00000000000000000000ffff c0000201 0cea`);
  assert.deepEqual(
    nodeIdentity(tcp('2001:0db8:0000:0000:0000:0000:0000:0001', 3307)),
    nodeIdentity(tcp('2001:db8::1', 3307)),
  );
  assert.deepEqual(nodeIdentity(tcp('2001:DB8:a:B:c:D:e:F', 80)), hex`20010db8000a000b000c000d000e000f 0050`);
  assert.deepEqual(nodeIdentity(tcp('1::', 3306)), hex`00010000000000000000000000000000 0cea`);
  // The scope of a link-local address is not part of its identity.
  const scoped = parseAddress('[fe80::1%eth0]:3306');
  assert.deepEqual(nodeIdentity(scoped), hex`fe800000000000000000000000000001 0cea`);
  assert.deepEqual(nodeIdentity(scoped), nodeIdentity(tcp('fe80::1', 3306)));
});

test('nodeIdentity: Unix paths are their bytes and a NUL (as myproxy), abstract sockets a NUL and the name', () => {
  assert.deepEqual(
    nodeIdentity({ kind: 'unix', path: '/run/mysqld/mysqld.sock' }),
    Buffer.from('/run/mysqld/mysqld.sock\0'),
  );
  assert.deepEqual(nodeIdentity({ kind: 'unix', path: '/tmp/ü' }), hex`2f746d702f c3bc 00`);
  assert.deepEqual(nodeIdentity(parseAddress('@mysql')), hex`00 6d7973716c`);
  assert.deepEqual(nodeIdentity({ kind: 'abstract', name: hex`ff00` }), hex`00 ff00`);
});

test('nodeIdentity: a host name is refused', () => {
  assert.throws(() => nodeIdentity(tcp('db.example', 3306)), /node address is not numeric: db\.example/);
  assert.throws(() => nodeIdentity(tcp('localhost', 3306)), /not numeric/);
});

test('ipv6Bytes accepts the text forms and rejects malformed ones with undefined', () => {
  assert.deepEqual(ipv6Bytes('::'), Buffer.alloc(16));
  assert.deepEqual(ipv6Bytes('1:2:3:4:5:6:7::'), hex`0001000200030004000500060007 0000`);
  assert.deepEqual(ipv6Bytes('::2:3:4:5:6:7:8'), hex`0000 0002000300040005000600070008`);
  assert.deepEqual(ipv6Bytes('::1.2.3.4'), hex`000000000000000000000000 01020304`);
  assert.deepEqual(ipv6Bytes('1:2:3:4:5:6:1.2.3.4'), hex`000100020003000400050006 01020304`);
  for (const bad of [
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7:g',
    '12345::',
    'g::',
    ':1::',
    '1:',
    '',
    '1.2.3.4',
    '::1.2.3',
    '::256.1.1.1',
    '1:2:3:4:5:6:7:1.2.3.4',
  ]) {
    assert.equal(ipv6Bytes(bad), undefined, bad);
  }
});

// Known answers, computed with Python (not libsodium):
//   python3 -c "import hashlib;d=hashlib.blake2b(bytes.fromhex(IDENTITY)+ACCOUNT,digest_size=16).digest();print(int.from_bytes(d[:8],'little'))"
const VECTORS: { what: string; address: SocketAddress; identity: string; account: string; hash: bigint }[] = [
  // IDENTITY='7f0000010cea' ACCOUNT=b'alice'
  {
    what: 'IPv4',
    address: tcp('127.0.0.1', 3306),
    identity: '7f0000010cea',
    account: 'alice',
    hash: 6232836458359724435n,
  },
  // IDENTITY='00000000000000000000000000000001'+'0cea' ACCOUNT=b'bob'
  {
    what: 'IPv6 ::1',
    address: tcp('::1', 3306),
    identity: '000000000000000000000000000000010cea',
    account: 'bob',
    hash: 4036584951564421553n,
  },
  // IDENTITY='20010db8000000000000000000000001'+'0cea' ACCOUNT=b'alice'
  {
    what: 'IPv6',
    address: tcp('2001:db8::1', 3306),
    identity: '20010db80000000000000000000000010cea',
    account: 'alice',
    hash: 1658994977473725719n,
  },
  // IDENTITY=b'/run/mysqld/mysqld.sock\0'.hex() ACCOUNT=b'alice'
  {
    what: 'unix path',
    address: { kind: 'unix', path: '/run/mysqld/mysqld.sock' },
    identity: Buffer.from('/run/mysqld/mysqld.sock\0').toString('hex'),
    account: 'alice',
    hash: 9634300040917169915n,
  },
  // IDENTITY='7f0000010cea' ACCOUNT=b''
  {
    what: 'empty account',
    address: tcp('127.0.0.1', 3306),
    identity: '7f0000010cea',
    account: '',
    hash: 187780669066800616n,
  },
  // IDENTITY='00'+b'mysql'.hex() ACCOUNT=b'carol'
  {
    what: 'abstract',
    address: { kind: 'abstract', name: Buffer.from('mysql') },
    identity: '006d7973716c',
    account: 'carol',
    hash: 909322632558745404n,
  },
];

for (const v of VECTORS) {
  test(`rendezvousHash known answer: ${v.what}`, () => {
    const identity = nodeIdentity(v.address);
    assert.equal(identity.toString('hex'), v.identity);
    assert.equal(rendezvousHash(identity, Buffer.from(v.account)), v.hash);
  });
}

test('rendezvousHash is the hash of the concatenation, not of its parts', () => {
  // Same bytes split differently give the same hash (identity ‖ account).
  assert.equal(rendezvousHash(hex`7f0000010cea61`, Buffer.from('lice')), 6232836458359724435n);
  assert.notEqual(rendezvousHash(hex`7f0000010cea`, Buffer.from('alicf')), 6232836458359724435n);
  // Values above 2^63 come out unsigned.
  assert.ok(VECTORS[3]!.hash > 1n << 63n);
});

const ports = (...ps: number[]): SocketAddress[] => ps.map((p) => tcp('127.0.0.1', p));
const ACCOUNTS = Array.from({ length: 3000 }, (_, i) => Buffer.from(`account-${i}`));
const firsts = (c: Cluster): string[] => ACCOUNTS.map((a) => formatAddress(c.order(a, false)[0]!));

test('3000 accounts spread evenly over 3 nodes on one IP (±10 %)', () => {
  const cluster = new Cluster('t', ports(3306, 3307, 3308), OFF);
  const counts = new Map<string, number>();
  for (const f of firsts(cluster)) counts.set(f, (counts.get(f) ?? 0) + 1);
  assert.equal(counts.size, 3);
  for (const [node, n] of counts) assert.ok(n >= 900 && n <= 1100, `${node}: ${n}`);
});

test('nodes on the same IP with different ports do not tie', () => {
  const a = nodeIdentity(tcp('127.0.0.1', 3306));
  const b = nodeIdentity(tcp('127.0.0.1', 3307));
  let aFirst = 0;
  for (const acc of ACCOUNTS) {
    const ha = rendezvousHash(a, acc);
    const hb = rendezvousHash(b, acc);
    assert.notEqual(ha, hb);
    if (ha < hb) aFirst++;
  }
  assert.ok(aFirst > 1200 && aFirst < 1800, String(aFirst));
});

test('the order is the full node list, sorted by hash, and does not depend on the declaration order', () => {
  const c1 = new Cluster('t', ports(3306, 3307, 3308), OFF);
  const c2 = new Cluster('t', ports(3308, 3306, 3307), OFF);
  for (const acc of ACCOUNTS.slice(0, 100)) {
    const o = c1.order(acc, false);
    assert.deepEqual(o, c2.order(acc, false));
    assert.equal(o.length, 3);
    const hashes = o.map((a) => rendezvousHash(nodeIdentity(a), acc));
    assert.ok(hashes[0]! < hashes[1]! && hashes[1]! < hashes[2]!);
  }
});

test('removing a node moves only the accounts that were on it', () => {
  const before3 = firsts(new Cluster('t', ports(3306, 3307, 3308), OFF));
  const after2 = firsts(new Cluster('t', ports(3306, 3308), OFF));
  let moved = 0;
  for (let i = 0; i < ACCOUNTS.length; i++) {
    if (before3[i] === '127.0.0.1:3307') {
      moved++;
      assert.notEqual(after2[i], '127.0.0.1:3307');
    } else {
      assert.equal(after2[i], before3[i], `account-${i}`);
    }
  }
  assert.ok(moved > 0);
});

test('adding a 4th node moves only the accounts that now go to it, about a quarter', () => {
  const before3 = firsts(new Cluster('t', ports(3306, 3307, 3308), OFF));
  const after4 = firsts(new Cluster('t', ports(3306, 3307, 3308, 3309), OFF));
  let moved = 0;
  for (let i = 0; i < ACCOUNTS.length; i++) {
    if (after4[i] !== before3[i]) {
      moved++;
      assert.equal(after4[i], '127.0.0.1:3309', `account-${i}`);
    }
  }
  const share = moved / ACCOUNTS.length;
  assert.ok(share >= 0.18 && share <= 0.32, String(share));
});
