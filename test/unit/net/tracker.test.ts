// The response tracker (native/tracker.c) through its JavaScript binding: the MySQL command-phase
// grammar, with CLIENT_DEPRECATE_EOF on and off, fed whole and byte by byte, pipelined, with local
// replies in between, and fuzzed. The relays use exactly this code (the pump in C, the JS relay
// through the binding), so what holds here holds for both.
import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { addonFunctions, type TrackerHandle } from '../../../src/net/native.js';
import {
  StatSlot,
  STATS_LENGTH,
  TrackerStop,
  checkTrackerLayout,
  decodeRecord,
  encodeTrackerConfig,
  mayBeKill,
  newRecordArray,
  type ResponseRecord,
} from '../../../src/net/tracking.js';
import { Capability, Command, MariaDbCapability } from '../../../src/protocol/constants.js';
import { framePayload } from '../../../src/protocol/writer.js';

const addon = addonFunctions();
const DEPRECATE_EOF = Capability.CLIENT_DEPRECATE_EOF;
const MORE = 0x0008;
const CURSOR = 0x0040;

interface Rig {
  t: TrackerHandle;
  records: ResponseRecord[];
  untracked: number[];
  stats: Float64Array;
  client(bytes: Buffer): { consumed: number; stop: number };
  server(bytes: Buffer): number;
  /** Feed server bytes as a relay does (stopping where a local reply is due). */
  serverAll(bytes: Buffer, onLocalDue?: () => void): void;
}

function rig(caps = 0, intercept: number[] = [], killFilter = false, extendedCapabilities = 0): Rig {
  const records: ResponseRecord[] = [];
  const untracked: number[] = [];
  const record = newRecordArray();
  const stats = new Float64Array(STATS_LENGTH);
  const t = addon.trackerNew(
    encodeTrackerConfig(
      { capabilities: caps, extendedCapabilities, track: true, killFilter, stats, onResponse: () => undefined },
      intercept,
      65536,
    ),
    stats,
    null,
    record,
    (type, arg) => {
      if (type === 3) records.push(decodeRecord(record));
      if (type === 2) untracked.push(arg);
    },
  );
  const r: Rig = {
    t,
    records,
    untracked,
    stats,
    client(bytes) {
      const v = addon.trackerClient(t, bytes);
      return { consumed: Math.floor(v / 4), stop: v % 4 };
    },
    server(bytes) {
      return addon.trackerServer(t, bytes);
    },
    serverAll(bytes, onLocalDue) {
      let pos = 0;
      while (pos < bytes.length) {
        pos += addon.trackerServer(t, bytes.subarray(pos));
        while (addon.trackerLocalDue(t)) {
          onLocalDue?.();
          addon.trackerPopLocal(t);
        }
      }
    },
  };
  return r;
}

// --- packet builders (payloads framed with explicit sequence ids) ---------------------------------

function lenenc(n: number): Buffer {
  if (n < 0xfb) return Buffer.from([n]);
  if (n <= 0xffff) return Buffer.from([0xfc, n & 0xff, n >> 8]);
  if (n <= 0xffffff) return Buffer.from([0xfd, n & 0xff, (n >> 8) & 0xff, n >> 16]);
  const b = Buffer.alloc(9);
  b[0] = 0xfe;
  b.writeUInt32LE(n % 2 ** 32, 1);
  b.writeUInt32LE(Math.floor(n / 2 ** 32), 5);
  return b;
}
const u16 = (n: number): Buffer => Buffer.from([n & 0xff, n >> 8]);
const command = (byte: number, body: Buffer | string = ''): Buffer =>
  framePayload(Buffer.concat([Buffer.from([byte]), Buffer.from(body)]), 0);
const okPayload = (affected = 0, status = 2, warnings = 0, header = 0x00, insertId = 0): Buffer =>
  Buffer.concat([Buffer.from([header]), lenenc(affected), lenenc(insertId), u16(status), u16(warnings)]);
const errPayload = (code: number): Buffer => Buffer.concat([Buffer.from([0xff]), u16(code), Buffer.from('#HY000oops')]);
const eofPayload = (status = 2, warnings = 0): Buffer =>
  Buffer.concat([Buffer.from([0xfe]), u16(warnings), u16(status)]);
const colDef = (name: string): Buffer =>
  Buffer.concat([
    lenenc(3),
    Buffer.from('def'),
    lenenc(0),
    lenenc(0),
    lenenc(0),
    lenenc(name.length),
    Buffer.from(name),
  ]);
const textRow = (...values: string[]): Buffer =>
  Buffer.concat(values.flatMap((v) => [lenenc(v.length), Buffer.from(v)]));

/** Frames payloads with consecutive sequence ids from `seq`. */
function frames(seq: number, ...payloads: Buffer[]): Buffer {
  return Buffer.concat(payloads.map((p, i) => framePayload(p, (seq + i) & 0xff)));
}

/** A text result set's payloads (column count, definitions, EOF or not, rows, end). */
function resultSet(deprecate: boolean, columns: string[], rows: string[][], status = 2, warnings = 0): Buffer[] {
  const out: Buffer[] = [lenenc(columns.length), ...columns.map(colDef)];
  if (!deprecate) out.push(eofPayload(2));
  for (const r of rows) out.push(textRow(...r));
  out.push(deprecate ? okPayload(0, status, warnings, 0xfe) : eofPayload(status, warnings));
  return out;
}

for (const deprecate of [false, true]) {
  const caps = deprecate ? DEPRECATE_EOF : 0;
  const mode = deprecate ? 'CLIENT_DEPRECATE_EOF' : 'classic EOF';

  describe(`tracker (${mode})`, () => {
    test('OK and ERR responses, with their figures and myproxy-style per-server counters', () => {
      const r = rig(caps);
      r.client(command(Command.COM_QUERY, 'UPDATE t SET a = 1'));
      r.serverAll(frames(1, okPayload(3, 2 | 0x0020 | 0x0800, 2, 0x00, 77)));
      r.client(command(Command.COM_QUERY, 'SELEC'));
      r.serverAll(frames(1, errPayload(1064)));
      assert.equal(r.records.length, 2);
      assert.deepEqual(
        [r.records[0]!.outcome, r.records[0]!.affectedRows, r.records[0]!.warnings, r.records[0]!.insertId],
        ['ok', 3, 2, 77],
      );
      assert.deepEqual([r.records[1]!.outcome, r.records[1]!.errorCode], ['err', 1064]);
      assert.equal(r.stats[StatSlot.QUERIES], 2);
      assert.equal(r.stats[StatSlot.QUERY_ERRORS], 1);
      assert.equal(r.stats[StatSlot.QUERY_WARNINGS], 2);
      assert.equal(r.stats[StatSlot.AFFECTED_ROWS], 3);
      assert.equal(r.stats[StatSlot.NO_INDEX], 1);
      assert.equal(r.stats[StatSlot.SLOW], 1);
      assert.equal(r.stats[StatSlot.NO_GOOD_INDEX], 0);
      assert.equal(r.stats[StatSlot.CLIENT_QUERIES], 2);
      assert.equal(r.stats[StatSlot.SERVER_PACKETS], 2);
      assert.equal(r.stats[StatSlot.DURATION_COUNT], 2);
      assert.ok(r.stats[StatSlot.QUERY_WAIT]! > 0);
      assert.deepEqual(r.untracked, []);
    });

    test('a text result set, fed whole and byte by byte', () => {
      const response = frames(
        1,
        ...resultSet(
          deprecate,
          ['a', 'b'],
          [
            ['1', ''],
            ['2', 'x'],
            ['', ''],
          ],
          2,
          1,
        ),
      );
      for (const split of [false, true]) {
        const r = rig(caps);
        r.client(command(Command.COM_QUERY, 'SELECT a, b FROM t'));
        if (split) for (let i = 0; i < response.length; i++) r.serverAll(response.subarray(i, i + 1));
        else r.serverAll(response);
        assert.equal(r.records.length, 1, `split=${split}`);
        assert.deepEqual([r.records[0]!.outcome, r.records[0]!.rows, r.records[0]!.warnings], ['ok', 3, 1]);
        assert.equal(r.records[0]!.bytesOut, response.length);
        assert.equal(addon.trackerInfo(r.t)[0], 0);
        assert.equal(addon.trackerInfo(r.t)[2], true);
      }
    });

    test('SERVER_MORE_RESULTS_EXISTS chains (CALL, multi-statements) end at the last result', () => {
      const r = rig(caps);
      r.client(command(Command.COM_QUERY, 'CALL p()'));
      r.serverAll(
        frames(
          1,
          ...resultSet(deprecate, ['x'], [['1']], 2 | MORE),
          ...resultSet(deprecate, ['y'], [['2'], ['3']], 2 | MORE),
          okPayload(5, 2),
        ),
      );
      assert.equal(r.records.length, 1);
      assert.deepEqual([r.records[0]!.results, r.records[0]!.rows, r.records[0]!.affectedRows], [3, 3, 5]);
    });

    test('an error in the middle of a multi-statement ends the response', () => {
      const r = rig(caps);
      r.client(command(Command.COM_QUERY, 'SELECT 1; SELEC; SELECT 2'));
      r.serverAll(frames(1, ...resultSet(deprecate, ['1'], [['1']], 2 | MORE), errPayload(1064)));
      r.client(command(Command.COM_PING));
      r.serverAll(frames(1, okPayload()));
      assert.deepEqual(
        r.records.map((x) => [x.outcome, x.errorCode, x.command]),
        [
          ['err', 1064, Command.COM_QUERY],
          ['ok', 0, Command.COM_PING],
        ],
      );
    });

    test('LOCAL INFILE: the upload is no command, even a data packet with sequence id 0 that looks like one', () => {
      const r = rig(caps, [Command.COM_CHANGE_USER, Command.COM_INIT_DB]);
      r.client(command(Command.COM_QUERY, "LOAD DATA LOCAL INFILE 'f' INTO TABLE t"));
      r.serverAll(frames(1, Buffer.from([0xfb, ...Buffer.from('f')])));
      // 300 data packets: the sequence id wraps to 0 on one whose first byte is COM_CHANGE_USER.
      const upload: Buffer[] = [];
      for (let i = 0; i < 300; i++) upload.push(framePayload(Buffer.from([0x11, 0x02, i & 0xff]), (2 + i) & 0xff));
      upload.push(framePayload(Buffer.alloc(0), 302 & 0xff));
      const bytes = Buffer.concat(upload);
      const fed = r.client(bytes);
      assert.deepEqual(fed, { consumed: bytes.length, stop: TrackerStop.GO });
      r.serverAll(frames(1, okPayload(300)));
      assert.equal(r.records.length, 1);
      assert.equal(r.records[0]!.affectedRows, 300);
      assert.equal(
        r.records[0]!.bytesIn,
        command(Command.COM_QUERY, "LOAD DATA LOCAL INFILE 'f' INTO TABLE t").length + bytes.length,
      );
      // After the upload, commands are commands again.
      assert.equal(r.client(command(Command.COM_CHANGE_USER, 'x')).stop, TrackerStop.INTERCEPT);
    });

    test('COM_STMT_PREPARE: parameter and column definitions', () => {
      const r = rig(caps);
      r.client(command(Command.COM_STMT_PREPARE, 'SELECT ? + ?'));
      const prepOk = Buffer.concat([
        Buffer.from([0]),
        Buffer.from([1, 0, 0, 0]),
        u16(1),
        u16(2),
        Buffer.from([0]),
        u16(0),
      ]);
      const payloads = [prepOk, colDef('?'), colDef('?')];
      if (!deprecate) payloads.push(eofPayload());
      payloads.push(colDef('x'));
      if (!deprecate) payloads.push(eofPayload());
      r.serverAll(frames(1, ...payloads));
      r.client(command(Command.COM_STMT_CLOSE, Buffer.from([1, 0, 0, 0])));
      r.client(command(Command.COM_PING));
      r.serverAll(frames(1, okPayload()));
      assert.deepEqual(
        r.records.map((x) => [x.command, x.outcome]),
        [
          [Command.COM_STMT_PREPARE, 'ok'],
          [Command.COM_STMT_CLOSE, 'none'],
          [Command.COM_PING, 'ok'],
        ],
      );
    });

    test('COM_STMT_EXECUTE with a cursor, then COM_STMT_FETCH', () => {
      const r = rig(caps);
      r.client(command(Command.COM_STMT_EXECUTE, Buffer.from([1, 0, 0, 0, 1, 1, 0, 0, 0])));
      const head = [lenenc(1), colDef('a')];
      head.push(deprecate ? okPayload(0, 2 | CURSOR, 0, 0xfe) : eofPayload(2 | CURSOR));
      r.serverAll(frames(1, ...head));
      r.client(command(Command.COM_STMT_FETCH, Buffer.from([1, 0, 0, 0, 10, 0, 0, 0])));
      const binRow = Buffer.from([0x00, 0x00, 1, 0, 0, 0]);
      r.serverAll(frames(1, binRow, binRow, deprecate ? okPayload(0, 2 | 0x0080, 0, 0xfe) : eofPayload(2 | 0x0080)));
      assert.deepEqual(
        r.records.map((x) => [x.command, x.outcome, x.rows]),
        [
          [Command.COM_STMT_EXECUTE, 'ok', 0],
          [Command.COM_STMT_FETCH, 'ok', 2],
        ],
      );
    });

    test('MariaDB MARIADB_CLIENT_CACHE_METADATA: a binary result without column definitions', () => {
      const ext = MariaDbCapability.MARIADB_CLIENT_CACHE_METADATA | MariaDbCapability.MARIADB_CLIENT_EXTENDED_METADATA;
      const execute = command(Command.COM_STMT_EXECUTE, Buffer.from([1, 0, 0, 0, 0, 1, 0, 0, 0]));
      const binRow = Buffer.from([0x00, 0x00, 1, 0, 0, 0, 2, 0, 0, 0]);
      const end = deprecate ? okPayload(0, 2, 0, 0xfe) : eofPayload(2);
      // Extended metadata: a (type, value) block inside the definition, after the column name.
      const extDef = (name: string): Buffer =>
        Buffer.concat([colDef(name), lenenc(6), Buffer.from([1]), lenenc(4), Buffer.from('json')]);
      // First execution: "metadata follows" (1), definitions, (EOF), rows; then the cached form (0).
      const first = [Buffer.concat([lenenc(2), Buffer.from([1])]), extDef('a'), extDef('b')];
      if (!deprecate) first.push(eofPayload(2));
      const cached = [Buffer.concat([lenenc(2), Buffer.from([0])]), binRow, binRow, binRow, end];
      const r = rig(caps, [], false, ext);
      r.client(execute);
      r.serverAll(frames(1, ...first, binRow, end));
      r.client(execute);
      r.serverAll(frames(1, ...cached));
      r.client(command(Command.COM_PING));
      r.serverAll(frames(1, okPayload()));
      assert.deepEqual(r.untracked, []);
      assert.deepEqual(
        r.records.map((x) => [x.command, x.outcome, x.rows]),
        [
          [Command.COM_STMT_EXECUTE, 'ok', 1],
          [Command.COM_STMT_EXECUTE, 'ok', 3],
          [Command.COM_PING, 'ok', 0],
        ],
      );
      // Without the capability the same stream is not what the session agreed on: the tracker
      // reads the rows as definitions and loses its place (so the capability must be told).
      const plain = rig(caps);
      plain.client(execute);
      plain.serverAll(frames(1, ...cached));
      plain.client(command(Command.COM_PING));
      plain.serverAll(frames(1, okPayload()));
      assert.notDeepEqual(
        plain.records.map((x) => [x.command, x.outcome, x.rows]),
        [
          [Command.COM_STMT_EXECUTE, 'ok', 3],
          [Command.COM_PING, 'ok', 0],
        ],
      );
    });

    test('MariaDB MARIADB_CLIENT_PROGRESS reports and COM_STMT_BULK_EXECUTE', () => {
      const r = rig(
        caps,
        [],
        false,
        MariaDbCapability.MARIADB_CLIENT_PROGRESS | MariaDbCapability.MARIADB_CLIENT_STMT_BULK_OPERATIONS,
      );
      // A progress report: ERR header, errno 0xFFFF, then 1, stage, max stage, progress, state.
      const progress = Buffer.concat([
        Buffer.from([0xff, 0xff, 0xff, 1, 1, 2, 0x10, 0x27, 0]),
        lenenc(4),
        Buffer.from('copy'),
      ]);
      r.client(command(Command.COM_QUERY, 'ALTER TABLE t ENGINE=InnoDB'));
      r.serverAll(frames(1, progress, progress, okPayload(0)));
      r.client(command(Command.COM_STMT_BULK_EXECUTE, Buffer.from([1, 0, 0, 0, 0x80, 0])));
      r.serverAll(frames(1, okPayload(3)));
      assert.deepEqual(r.untracked, []);
      assert.deepEqual(
        r.records.map((x) => [x.command, x.outcome, x.affectedRows]),
        [
          [Command.COM_QUERY, 'ok', 0],
          [Command.COM_STMT_BULK_EXECUTE, 'ok', 3],
        ],
      );
    });

    test('COM_FIELD_LIST, COM_STATISTICS, COM_PING, COM_PROCESS_KILL', () => {
      const r = rig(caps);
      r.client(command(Command.COM_FIELD_LIST, 't\0'));
      r.serverAll(frames(1, colDef('a'), colDef('b'), deprecate ? okPayload(0, 2, 0, 0xfe) : eofPayload()));
      r.client(command(Command.COM_STATISTICS));
      r.serverAll(frames(1, Buffer.from('Uptime: 10  Threads: 1')));
      r.client(command(Command.COM_PING));
      r.serverAll(frames(1, okPayload()));
      r.client(command(Command.COM_PROCESS_KILL, Buffer.from([9, 0, 0, 0])));
      r.serverAll(frames(1, errPayload(1094)));
      assert.deepEqual(
        r.records.map((x) => [x.command, x.outcome]),
        [
          [Command.COM_FIELD_LIST, 'ok'],
          [Command.COM_STATISTICS, 'ok'],
          [Command.COM_PING, 'ok'],
          [Command.COM_PROCESS_KILL, 'err'],
        ],
      );
    });

    test('COM_BINLOG_DUMP: events until EOF', () => {
      const r = rig(caps);
      r.client(command(Command.COM_BINLOG_DUMP, Buffer.alloc(10)));
      r.serverAll(
        frames(1, Buffer.from([0, 1, 2, 3]), Buffer.from([0, 0xfe, 0xff, 7, 7, 7, 7, 7, 7, 7]), eofPayload()),
      );
      assert.deepEqual(
        r.records.map((x) => [x.command, x.outcome]),
        [[Command.COM_BINLOG_DUMP, 'ok']],
      );
      assert.deepEqual(r.untracked, []);
    });

    test('packets of 16 MiB and more on both sides', () => {
      const r = rig(caps);
      const big = Buffer.alloc(0xffffff + 100, 0x61);
      const query = framePayload(Buffer.concat([Buffer.from([Command.COM_QUERY]), big]), 0);
      assert.deepEqual(r.client(query), { consumed: query.length, stop: TrackerStop.GO });
      // A row that starts with 0xFE (a length of 2^24 or more): not the end of the rows.
      const bigRow = Buffer.concat([lenenc(big.length), big]);
      assert.equal(bigRow[0], 0xfe);
      r.serverAll(frames(1, lenenc(1), colDef('a'), ...(deprecate ? [] : [eofPayload()])));
      const rowBytes = framePayload(bigRow, deprecate ? 3 : 4);
      r.serverAll(rowBytes);
      assert.equal(r.records.length, 0);
      r.serverAll(framePayload(deprecate ? okPayload(0, 2, 0, 0xfe) : eofPayload(), 0));
      assert.deepEqual(
        r.records.map((x) => [x.outcome, x.rows]),
        [['ok', 1]],
      );
      assert.equal(r.records[0]!.bytesIn, query.length);
    });

    test('pipelined commands: responses are matched in order', () => {
      const r = rig(caps);
      const cmds = Buffer.concat([
        command(Command.COM_PING),
        command(Command.COM_QUERY, 'SELECT 1'),
        command(Command.COM_INIT_DB, 'x'),
      ]);
      assert.equal(r.client(cmds).consumed, cmds.length);
      assert.equal(addon.trackerInfo(r.t)[0], 3);
      r.serverAll(
        Buffer.concat([
          frames(1, okPayload()),
          frames(1, ...resultSet(deprecate, ['1'], [['1']])),
          frames(1, errPayload(1049)),
        ]),
      );
      assert.deepEqual(
        r.records.map((x) => [x.command, x.outcome]),
        [
          [Command.COM_PING, 'ok'],
          [Command.COM_QUERY, 'ok'],
          [Command.COM_INIT_DB, 'err'],
        ],
      );
    });
  });
}

describe('tracker: local replies, interception, untracked sessions', () => {
  test('a local reply waits for the responses before it, and goes before the ones after it', () => {
    const r = rig(0);
    const order: string[] = [];
    r.client(command(Command.COM_QUERY, 'SELECT SLEEP(1)'));
    assert.equal(addon.trackerPushLocal(r.t), true); // behind the query in flight
    r.client(command(Command.COM_PING));
    const q1 = frames(1, ...resultSet(false, ['s'], [['0']]));
    const ping = frames(1, okPayload());
    let pos = 0;
    const bytes = Buffer.concat([q1, ping]);
    while (pos < bytes.length) {
      const n = r.server(bytes.subarray(pos));
      order.push(`server ${pos}..${pos + n}`);
      pos += n;
      while (addon.trackerLocalDue(r.t)) {
        order.push('local');
        addon.trackerPopLocal(r.t);
      }
    }
    assert.deepEqual(order, [`server 0..${q1.length}`, 'local', `server ${q1.length}..${bytes.length}`]);
    assert.equal(addon.trackerPushLocal(r.t), false); // nothing in flight: send at once
  });

  test('intercepted commands stop the client stream before their first byte', () => {
    const r = rig(0, [Command.COM_CHANGE_USER]);
    const before = command(Command.COM_PING);
    const changeUser = command(Command.COM_CHANGE_USER, 'root\0');
    const res = r.client(Buffer.concat([before, changeUser, command(Command.COM_PING)]));
    assert.deepEqual(res, { consumed: before.length, stop: TrackerStop.INTERCEPT });
    // An incomplete header is held until more arrives.
    assert.deepEqual(r.client(Buffer.from([5, 0])), { consumed: 0, stop: TrackerStop.MORE });
  });

  test('the KILL filter takes out what may be a KILL, and nothing else', () => {
    const r = rig(0, [], true);
    const stopsAt = (sql: string): number => r.client(command(Command.COM_QUERY, sql)).stop;
    assert.equal(stopsAt('KILL QUERY 1073741825'), TrackerStop.INTERCEPT);
    assert.equal(stopsAt(' /* why */ kill 5'), TrackerStop.INTERCEPT);
    assert.equal(stopsAt('-- note\nKiLl CONNECTION 5;'), TrackerStop.INTERCEPT);
    assert.equal(stopsAt('/*!50000 KILL 5 */'), TrackerStop.INTERCEPT);
    for (const sql of ['SELECT kill FROM t', 'killer()', 'SELECT 1']) {
      r.serverAll(frames(1, okPayload())); // keep the queue short
      assert.equal(stopsAt(sql), TrackerStop.GO, sql);
    }
    assert.equal(mayBeKill(Buffer.from('KILL'), true), true);
    assert.equal(mayBeKill(Buffer.from('KILLS'), true), false);
    assert.equal(mayBeKill(Buffer.from(' '.repeat(300)), false), true); // unsure: intercept
    // The decision waits for the first bytes of the query.
    const partial = command(Command.COM_QUERY, 'SELECT 1').subarray(0, 6);
    assert.deepEqual(r.client(partial), { consumed: 0, stop: TrackerStop.MORE });
  });

  test('an unknown command or a server packet that fits nothing: untracked for good, counted once', () => {
    const r = rig(0);
    r.client(command(0x20, 'x'));
    assert.deepEqual(r.untracked, [1]);
    assert.equal(r.stats[StatSlot.UNTRACKED], 1);
    r.serverAll(randomBytes(5000));
    r.client(command(Command.COM_PING));
    r.serverAll(frames(1, okPayload()));
    assert.deepEqual(r.untracked, [1]);
    assert.equal(r.records.length, 0);
    assert.equal(addon.trackerInfo(r.t)[1], true);

    const s = rig(0);
    s.serverAll(frames(0, okPayload())); // nothing was asked
    assert.deepEqual(s.untracked, [2]);
  });

  test('fuzzed server streams leave the tracker tracked or untracked, never failing', () => {
    for (let round = 0; round < 300; round++) {
      const r = rig(round % 2 === 0 ? DEPRECATE_EOF : 0);
      for (let i = 0; i < 5; i++)
        r.client(command([Command.COM_QUERY, Command.COM_STMT_EXECUTE, Command.COM_PING][i % 3]!));
      const noise = randomBytes(1 + (round % 4000));
      // Sometimes plausible: real headers with random payloads.
      if (round % 3 === 0) {
        let at = 0;
        while (at + 4 < noise.length) {
          const len = Math.min(noise.length - at - 4, noise[at]! % 40);
          noise.writeUIntLE(len, at, 3);
          at += 4 + len;
        }
      }
      let pos = 0;
      while (pos < noise.length) {
        const step = 1 + (noise[pos]! % 64);
        r.serverAll(noise.subarray(pos, pos + step));
        pos += step;
      }
      assert.ok(r.untracked.length <= 1);
      assert.equal(r.stats[StatSlot.SERVER_BYTES], noise.length);
    }
  });

  test('the native layout matches the TypeScript constants', () => {
    checkTrackerLayout();
  });
});
