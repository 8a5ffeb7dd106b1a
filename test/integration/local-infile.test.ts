// LOAD DATA LOCAL INFILE through the proxy: off by default (the server could ask a client for any
// of its files), on for a listener with local_infile = true, where a 50 MB upload with the mariadb
// CLI and with PyMySQL must arrive whole on both relays. The file is made of 0x11 bytes
// (COM_CHANGE_USER, which the relay takes out of the stream) so that upload packets whose
// sequence id wraps to 0 look like commands: the response tracker must know they are not.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createTestUsers, startMariaDB, USERS, type MariaDB } from '../helpers/mariadb.js';
import { mariadbCli, runCommand, startProxy, type Proxy } from '../helpers/proxy.js';

const LINES = 1_100_000;
let file = '';
let fileDir = '';

before(() => {
  fileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-infile-'));
  file = path.join(fileDir, 'data.tsv');
  const fd = fs.openSync(file, 'w');
  const prefix = Buffer.alloc(40, 0x11);
  const parts: Buffer[] = [];
  for (let i = 0; i < LINES; i++) {
    parts.push(prefix, Buffer.from(`\t${i}\n`));
    if (parts.length >= 20_000) {
      fs.writeSync(fd, Buffer.concat(parts.splice(0)));
    }
  }
  fs.writeSync(fd, Buffer.concat(parts));
  fs.closeSync(fd);
  assert.ok(fs.statSync(file).size > 50_000_000);
});

after(() => fs.rmSync(fileDir, { recursive: true, force: true }));

for (const relayKind of ['native', 'js'] as const) {
  describe(`LOAD DATA LOCAL INFILE (--relay ${relayKind})`, () => {
    let db: MariaDB | undefined;
    let open: Proxy | undefined;
    let closed: Proxy | undefined;

    before(async () => {
      db = await startMariaDB({
        name: `infile-${relayKind}`,
        extraArgs: ['--local-infile=1', '--max-allowed-packet=64M'],
      });
      await createTestUsers(db);
      const backend = JSON.stringify(db.socket);
      const handler = `{ on_handshake_response = function(client, hr) return client:connect(${backend}, hr) end }`;
      open = await startProxy({
        name: `infile-${relayKind}`,
        args: ['--relay', relayKind, '--log-responses'],
        config: (dir) => `mysql_listen('${dir}/proxy.sock', ${handler}, { local_infile = true })`,
      });
      closed = await startProxy({
        name: `noinfile-${relayKind}`,
        args: ['--relay', relayKind],
        config: (dir) => `mysql_listen('${dir}/proxy.sock', ${handler})`,
      });
    });

    after(async () => {
      await open?.stop();
      await closed?.stop();
      await db?.stop();
    });

    const load = (): string => `LOAD DATA LOCAL INFILE '${file}' INTO TABLE test.t FIELDS TERMINATED BY '\\t' (a, b)`;

    test('off by default: the client is told the capability is missing', async () => {
      const r = await mariadbCli(closed!.socket, USERS.native.user, USERS.native.password, load(), [
        '--local-infile=1',
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /local infile|4166|not allowed/i);
    });

    test('the mariadb CLI loads 50 MB whole', async () => {
      await db!.query('CREATE OR REPLACE TABLE test.t (a VARBINARY(64), b INT)');
      const r = await mariadbCli(open!.socket, USERS.native.user, USERS.native.password, load(), ['--local-infile=1']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        await db!.query('SELECT COUNT(*), SUM(b), MIN(LENGTH(a)), MAX(LENGTH(a)) FROM test.t'),
        `${LINES}\t${(LINES * (LINES - 1)) / 2}\t40\t40\n`,
      );
      assert.match(
        open!.logs(),
        new RegExp(`response command=query outcome=ok error=0 rows=0 affected_rows=${LINES} `),
      );
      assert.doesNotMatch(open!.logs(), /COM_CHANGE_USER refused|tracking stopped/);
    });

    test('PyMySQL loads 50 MB whole', async () => {
      await db!.query('CREATE OR REPLACE TABLE test.t (a VARBINARY(64), b INT)');
      const script = `
import pymysql, sys
c = pymysql.connect(unix_socket=sys.argv[1], user='native', password='nativepw', database='test', local_infile=True)
with c.cursor() as cur:
    cur.execute(sys.argv[2])
    c.commit()
    cur.execute('SELECT COUNT(*) FROM t')
    print(cur.fetchone()[0])
`;
      const r = await runCommand('/usr/bin/python3', ['-c', script, open!.socket, load()]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), String(LINES));
    });
  });
}
