// Throwaway MariaDB for scripts/demo.sh.
//
//   node --import tsx scripts/demo.ts READY_FILE
//
// Starts a private MariaDB server (test/helpers/mariadb.ts: fresh temp dir, no networking, the
// system's configuration untouched), creates the test users (`native`/`nativepw`, ...) and
// writes the server's socket path to READY_FILE. The server runs until stdin reaches EOF (the
// demo closes its end of a pipe, or dies), then it is stopped and its directory removed.

import { writeFileSync } from 'node:fs';
import { createTestUsers, startMariaDB, type MariaDB } from '../test/helpers/mariadb.js';

async function main(argv: readonly string[]): Promise<number> {
  const readyFile = argv[0];
  if (readyFile === undefined || argv.length !== 1) {
    process.stderr.write('usage: node --import tsx scripts/demo.ts READY_FILE\n');
    return 64;
  }

  // Watch stdin from the start: if the demo goes away while the server is still starting, stop
  // right after the start instead of running forever.
  let released = false;
  const release = new Promise<void>((resolve) => {
    const done = (): void => {
      released = true;
      resolve();
    };
    process.stdin.on('end', done);
    process.stdin.on('error', done);
    process.stdin.on('close', done);
    process.stdin.resume();
  });

  let db: MariaDB;
  try {
    db = await startMariaDB({ name: 'demo' });
  } catch (e) {
    process.stderr.write(`demo: cannot start MariaDB: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the stdin handlers while we awaited the start
    if (!released) {
      await createTestUsers(db);
      writeFileSync(readyFile, `${db.socket}\n`);
      await release;
    }
  } catch (e) {
    process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    await db.stop();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(70);
  },
);
