// Command-phase relay through the proxy against a real MariaDB: packets around and above the
// 16 MiB split, prepared statements, multi-statements and multiple result sets, both EOF styles,
// and a large result set.

import { createHash, randomBytes } from 'node:crypto';
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, startProxy, type Proxy } from '../helpers/proxy.js';

const MAX = 0xffffff;
const MiB = 1024 * 1024;

function guard<T>(p: Promise<T>, what: string, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms);
    }),
  ]);
}

/** `n` random bytes from [a-z0-9] (nothing to escape in SQL). */
function alnum(n: number): Buffer {
  const alphabet = Buffer.from('abcdefghijklmnopqrstuvwxyz0123456789');
  const b = randomBytes(n);
  for (let i = 0; i < n; i++) b[i] = alphabet[b[i]! % alphabet.length]!;
  return b;
}

const sha1hex = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

// ---------------------------------------------------------------------------
// A minimal protocol client, to control capability flags exactly.

const CLIENT = {
  LONG_PASSWORD: 0x1,
  PROTOCOL_41: 0x200,
  TRANSACTIONS: 0x2000,
  SECURE_CONNECTION: 0x8000,
  MULTI_RESULTS: 0x20000,
  PLUGIN_AUTH: 0x80000,
  DEPRECATE_EOF: 0x1000000,
} as const;

class RawClient {
  readonly #socket: net.Socket;
  #buf = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  #closed = false;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  async packet(): Promise<{ seq: number; payload: Buffer }> {
    for (;;) {
      if (this.#buf.length >= 4) {
        const len = this.#buf.readUIntLE(0, 3);
        if (this.#buf.length >= 4 + len) {
          const seq = this.#buf[3]!;
          const payload = this.#buf.subarray(4, 4 + len);
          this.#buf = this.#buf.subarray(4 + len);
          return { seq, payload };
        }
      }
      if (this.#closed) throw new Error('connection closed');
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  send(seq: number, payload: Buffer): void {
    const h = Buffer.alloc(4);
    h.writeUIntLE(payload.length, 0, 3);
    h[3] = seq;
    this.#socket.write(Buffer.concat([h, payload]));
  }

  /** Log in with mysql_clear_password; returns the capabilities sent. */
  async login(user: string, password: string, extraCaps: number): Promise<void> {
    const greeting = await this.packet();
    assert.equal(greeting.payload[0], 10, 'greeting');
    const caps =
      CLIENT.LONG_PASSWORD |
      CLIENT.PROTOCOL_41 |
      CLIENT.TRANSACTIONS |
      CLIENT.SECURE_CONNECTION |
      CLIENT.MULTI_RESULTS |
      CLIENT.PLUGIN_AUTH |
      extraCaps;
    const head = Buffer.alloc(32);
    head.writeUInt32LE(caps >>> 0, 0);
    head.writeUInt32LE(MAX, 4);
    head[8] = 0x21;
    const auth = Buffer.from(`${password}\0`);
    this.send(
      greeting.seq + 1,
      Buffer.concat([
        head,
        Buffer.from(`${user}\0`),
        Buffer.from([auth.length]),
        auth,
        Buffer.from('mysql_clear_password\0'),
      ]),
    );
    const ok = await this.packet();
    assert.equal(ok.payload[0], 0x00, `login OK expected, got ${ok.payload.toString('latin1')}`);
  }

  /** COM_QUERY; returns rows as string arrays and the raw terminator payloads seen. */
  async query(
    sql: string,
  ): Promise<{ columns: number; eofAfterColumns: boolean; rows: (string | null)[][]; end: Buffer }> {
    this.send(0, Buffer.concat([Buffer.from([0x03]), Buffer.from(sql)]));
    const first = await this.packet();
    assert.notEqual(first.payload[0], 0xff, first.payload.toString('latin1'));
    const columns = first.payload[0]!;
    assert.ok(columns > 0 && columns < 0xfb);
    for (let i = 0; i < columns; i++) await this.packet();
    let p = await this.packet();
    let eofAfterColumns = false;
    if (p.payload[0] === 0xfe && p.payload.length < 9) {
      eofAfterColumns = true;
      p = await this.packet();
    }
    const rows: (string | null)[][] = [];
    while (!(p.payload[0] === 0xfe && p.payload.length < 0xffffff)) {
      assert.notEqual(p.payload[0], 0xff, p.payload.toString('latin1'));
      const row: (string | null)[] = [];
      let o = 0;
      for (let i = 0; i < columns; i++) {
        const b = p.payload[o]!;
        if (b === 0xfb) {
          row.push(null);
          o++;
          continue;
        }
        let len: number;
        if (b < 0xfb) {
          len = b;
          o += 1;
        } else if (b === 0xfc) {
          len = p.payload.readUInt16LE(o + 1);
          o += 3;
        } else if (b === 0xfd) {
          len = p.payload.readUIntLE(o + 1, 3);
          o += 4;
        } else {
          throw new Error('row value too long for this test client');
        }
        row.push(p.payload.subarray(o, o + len).toString('utf8'));
        o += len;
      }
      rows.push(row);
      p = await this.packet();
    }
    return { columns, eofAfterColumns, rows, end: p.payload };
  }

  close(): void {
    this.#socket.destroy();
  }
}

// ---------------------------------------------------------------------------

// Every test runs against both relays: the native byte pump (default) and the JavaScript one.
for (const relayKind of ['native', 'js'] as const)
  describe(`relay (--relay ${relayKind})`, () => {
    let db: MariaDB | undefined;
    let proxy: Proxy | undefined;
    const open: mysql.Connection[] = [];

    before(async () => {
      db = await startMariaDB({ name: `relay-${relayKind}` });
      await createTestUsers(db);
      await db.query(
        [
          'CREATE TABLE test.big (id INT PRIMARY KEY, v LONGBLOB);',
          'CREATE TABLE test.items (id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(10,2), at DATETIME, note TEXT) CHARSET utf8mb4;',
          'DELIMITER //',
          "CREATE PROCEDURE test.two_sets() BEGIN SELECT 1 AS first_a, 'one' AS first_b; SELECT seq AS second FROM test.seq_1_to_3; END//",
          'DELIMITER ;',
          '',
        ].join('\n'),
      );
      proxy = await startProxy({
        name: 'relay',
        args: ['--relay', relayKind],
        config: (dir) => `
mysql_listen('${dir}/proxy.sock', {
  on_handshake_response = function(client, hr) return client:connect(${JSON.stringify(db!.socket)}, hr) end,
})`,
      });
    });

    after(async () => {
      for (const c of open) c.destroy();
      await proxy?.stop();
      await db?.stop();
    });

    async function connect(extra: Partial<mysql.ConnectionOptions> = {}): Promise<mysql.Connection> {
      const c = await guard(
        mysql.createConnection({
          socketPath: proxy!.socket,
          user: USERS.native.user,
          password: USERS.native.password,
          database: 'test',
          enableCleartextPlugin: true,
          ...extra,
        }),
        'mysql2 login',
      );
      open.push(c);
      return c;
    }

    test('values around and above 16 MiB are stored and read back intact (text and prepared)', async () => {
      const c = await connect();
      const prefixOf = (id: number): string => `INSERT INTO big (id, v) VALUES (${id}, '`;
      const suffix = "')";
      // COM_QUERY payload (1 + SQL) exactly 0xFFFFFF: the client must send an empty packet after it.
      const exactQueryLen = MAX - 1 - prefixOf(1).length - suffix.length;
      const cases: { id: number; value: Buffer; via: 'text' | 'prepared'; why: string }[] = [
        { id: 1, value: alnum(exactQueryLen), via: 'text', why: 'query payload = 0xFFFFFF' },
        { id: 2, value: alnum(MAX - 4), via: 'text', why: 'text row payload = 0xFFFFFF' },
        { id: 3, value: alnum(MAX - 6), via: 'text', why: 'binary row payload = 0xFFFFFF' },
        { id: 4, value: alnum(MAX - 5), via: 'text', why: 'text row payload = 0xFFFFFE' },
        { id: 5, value: alnum(16 * MiB + 3), via: 'text', why: '16 MiB + 3' },
        { id: 6, value: alnum(17 * MiB), via: 'prepared', why: '17 MiB via COM_STMT_EXECUTE' },
        { id: 7, value: alnum(17 * MiB + 1), via: 'text', why: '17 MiB + 1 via COM_QUERY' },
      ];
      for (const { id, value, via, why } of cases) {
        if (via === 'text') {
          const sql = prefixOf(id) + value.toString('latin1') + suffix;
          if (id === 1) assert.equal(1 + sql.length, MAX);
          await guard(c.query(sql), `insert ${why}`);
        } else {
          await guard(c.execute('INSERT INTO big (id, v) VALUES (?, ?)', [id, value]), `insert ${why}`);
        }
      }
      // What MariaDB stored, checked without the proxy.
      const stored = await db!.query('SELECT id, LENGTH(v), SHA1(v) FROM test.big ORDER BY id');
      assert.equal(stored, cases.map((k) => `${k.id}\t${k.value.length}\t${sha1hex(k.value)}\n`).join(''));

      // Read back through the proxy, text and binary protocol.
      for (const { id, value, why } of cases) {
        const [t] = await guard(
          c.query<mysql.RowDataPacket[]>('SELECT v FROM big WHERE id = ?', [id]),
          `text read ${why}`,
        );
        assert.ok(Buffer.isBuffer(t[0]!['v']));
        assert.ok(value.equals(t[0]!['v']), `text read back intact: ${why}`);
        const [b] = await guard(
          c.execute<mysql.RowDataPacket[]>('SELECT v FROM big WHERE id = ?', [id]),
          `binary read ${why}`,
        );
        assert.ok(value.equals(b[0]!['v'] as Buffer), `prepared read back intact: ${why}`);
      }
      // The stream is still in sync afterwards.
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS n, SUM(LENGTH(v)) AS total FROM big');
      assert.equal(rows[0]!['n'], cases.length);
      assert.equal(
        Number(rows[0]!['total']),
        cases.reduce((s, k) => s + k.value.length, 0),
      );
    });

    test('prepared statements: execute with parameters, reuse, close', async () => {
      const c = await connect();
      const countStmts = async (): Promise<number> => {
        const [r] = await c.query<mysql.RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'");
        return Number(r[0]!['Value']);
      };
      const before = await countStmts();
      const ins = await c.prepare('INSERT INTO items (id, name, price, at, note) VALUES (?, ?, ?, ?, ?)');
      const sel = await c.prepare('SELECT id, name, price, at, note FROM items WHERE id >= ? ORDER BY id');
      assert.equal(await countStmts(), before + 2);
      const when = new Date(2024, 0, 2, 3, 4, 5);
      for (let i = 1; i <= 20; i++) {
        await ins.execute([i, `item ${i} ✓`, (i * 1.25).toFixed(2), when, i % 3 === 0 ? null : 'n'.repeat(i * 50)]);
      }
      for (const from of [1, 10, 20, 21]) {
        const [rows] = (await sel.execute([from])) as [mysql.RowDataPacket[], mysql.FieldPacket[]];
        assert.equal(rows.length, Math.max(0, 21 - from));
        for (const r of rows) {
          const i = r['id'] as number;
          assert.equal(r['name'], `item ${i} ✓`);
          assert.equal(r['price'], (i * 1.25).toFixed(2));
          assert.equal((r['at'] as Date).getTime(), when.getTime());
          assert.equal(r['note'], i % 3 === 0 ? null : 'n'.repeat(i * 50));
        }
      }
      // A failing execute is an ERR and the session goes on.
      await assert.rejects(ins.execute([1, 'dup', '1.00', when, null]), (e: { errno?: number }) => e.errno === 1062);
      await ins.close();
      await sel.close();
      // COM_STMT_CLOSE has no reply; the next command still gets its own answer.
      assert.equal(await countStmts(), before);
      const [[one]] = (await c.execute('SELECT ? AS x', ['after close'])) as [mysql.RowDataPacket[], unknown];
      assert.equal(one!['x'], 'after close');
    });

    test('multi-statements and a CALL with two result sets', async () => {
      const c = await connect({ multipleStatements: true });
      const [results] = await c.query('SELECT 1 AS a; SELECT 2 AS b, 3 AS c; DO 1; SELECT seq FROM seq_1_to_4');
      const r = results as unknown as unknown[];
      assert.equal(r.length, 4);
      assert.deepEqual(
        (r[0] as mysql.RowDataPacket[]).map((x) => ({ ...x })),
        [{ a: 1 }],
      );
      assert.deepEqual(
        (r[1] as mysql.RowDataPacket[]).map((x) => ({ ...x })),
        [{ b: 2, c: 3 }],
      );
      assert.equal((r[2] as mysql.ResultSetHeader).affectedRows, 0);
      assert.deepEqual(
        (r[3] as mysql.RowDataPacket[]).map((x) => x['seq'] as number),
        [1, 2, 3, 4],
      );

      const [call] = await c.query('CALL two_sets()');
      const sets = call as unknown as unknown[];
      assert.equal(sets.length, 3, 'two result sets and the final OK');
      assert.deepEqual(
        (sets[0] as mysql.RowDataPacket[]).map((x) => ({ ...x })),
        [{ first_a: 1, first_b: 'one' }],
      );
      assert.deepEqual(
        (sets[1] as mysql.RowDataPacket[]).map((x) => x['second'] as number),
        [1, 2, 3],
      );
      assert.equal(typeof (sets[2] as mysql.ResultSetHeader).affectedRows, 'number');

      // Prepared CALL (PS_MULTI_RESULTS) too.
      const [pcall] = await c.execute('CALL two_sets()');
      assert.equal((pcall as unknown as unknown[]).length, 3);
      // And the session is still in sync.
      const [[x]] = (await c.query('SELECT 42 AS x')) as [mysql.RowDataPacket[], unknown];
      assert.equal(x!['x'], 42);
    });

    test('result sets with and without CLIENT_DEPRECATE_EOF', async () => {
      const expected = Array.from({ length: 1000 }, (_, i) => [String(i + 1), `r${i + 1}`]);
      const sql = "SELECT seq, CONCAT('r', seq) FROM test.seq_1_to_1000";
      for (const deprecateEof of [false, true]) {
        const raw = await RawClient.connect(proxy!.socket);
        try {
          await guard(
            raw.login(USERS.native.user, USERS.native.password, deprecateEof ? CLIENT.DEPRECATE_EOF : 0),
            'raw login',
          );
          for (let round = 0; round < 2; round++) {
            const r = await guard(raw.query(sql), 'raw query');
            assert.equal(r.columns, 2);
            assert.equal(
              r.eofAfterColumns,
              !deprecateEof,
              'EOF after the column definitions only without DEPRECATE_EOF',
            );
            assert.deepEqual(r.rows, expected);
            // Terminator: a 5-byte EOF, or an OK packet with the 0xFE header (7+ bytes).
            if (deprecateEof) assert.ok(r.end.length >= 7, `OK-style terminator, got ${r.end.length} bytes`);
            else assert.equal(r.end.length, 5, 'EOF terminator');
          }
        } finally {
          raw.close();
        }
      }
      // mysql2 never asks for DEPRECATE_EOF; with it explicitly removed it reads the same rows.
      for (const flags of [undefined, ['-DEPRECATE_EOF']]) {
        const c = await connect(flags === undefined ? {} : { flags });
        const [rows] = await c.query<mysql.RowDataPacket[]>({ sql, rowsAsArray: true });
        assert.deepEqual(
          rows.map((r) => [String(r[0]), r[1] as unknown]),
          expected,
        );
      }
    });

    test('a large result set (50k rows) arrives intact', async () => {
      const c = await connect();
      const n = 50_000;
      const [rows] = await guard(
        c.query<mysql.RowDataPacket[]>({
          sql: `SELECT seq, REPEAT(CHAR(97 + seq % 26 USING ascii), seq % 200) AS pad, SHA1(seq) AS h FROM seq_1_to_${n}`,
          rowsAsArray: true,
        }),
        'large result',
      );
      assert.equal(rows.length, n);
      for (let i = 0; i < n; i++) {
        const seq = i + 1;
        const r = rows[i]!;
        if (
          r[0] !== seq ||
          r[1] !== String.fromCharCode(97 + (seq % 26)).repeat(seq % 200) ||
          r[2] !== sha1hex(Buffer.from(String(seq)))
        ) {
          assert.fail(`row ${i} corrupted: ${JSON.stringify(r)}`);
        }
      }
      // The same through the CLI (a different client library).
      const cli = await mariadbCli(
        proxy!.socket,
        USERS.native.user,
        USERS.native.password,
        `SELECT seq FROM test.seq_1_to_${n}`,
      );
      assert.equal(cli.code, 0, cli.stderr);
      const lines = cli.stdout.trimEnd().split('\n');
      assert.equal(lines.length, n);
      assert.ok(lines.every((l, i) => l === String(i + 1)));
    });
  });
