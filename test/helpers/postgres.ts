/**
 * A throwaway PostgreSQL 15 for integration tests: initdb into a temp dir (as the `postgres`
 * user, since PostgreSQL refuses to run as root), listening only on a Unix socket in that dir,
 * trust authentication. stop()/start() can be called repeatedly (to test outages); destroy()
 * stops it and removes the dir.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BIN = '/usr/lib/postgresql/15/bin';

export interface Postgres {
  /** The temp dir; also the Unix socket directory (the `host` of a conninfo). */
  readonly dir: string;
  /** conninfo for the superuser `postgres`, database `postgres`. */
  readonly conninfo: string;
  /** Run SQL through psql (as the postgres role); resolves with psql's unaligned, tuples-only output. */
  query(sql: string): Promise<string>;
  start(): Promise<void>;
  /** Fast shutdown (terminates sessions). */
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/** Whether PostgreSQL 15 is installed (tests skip otherwise). */
export function havePostgres(): boolean {
  return fs.existsSync(`${BIN}/initdb`) && fs.existsSync(`${BIN}/pg_ctl`);
}

function asPostgres(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  if (process.getuid?.() === 0) return run('runuser', ['-u', 'postgres', '--', cmd, ...args], { maxBuffer: 1 << 24 });
  return run(cmd, args, { maxBuffer: 1 << 24 });
}

export async function startPostgres(name = 'pg'): Promise<Postgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `myproxy-${name}-`));
  fs.chmodSync(dir, 0o755);
  if (process.getuid?.() === 0) await run('chown', ['postgres:', dir]);
  await asPostgres(`${BIN}/initdb`, ['-D', `${dir}/data`, '-U', 'postgres', '-A', 'trust', '--no-sync']);
  let running = false;
  const pgCtl = (args: string[]): Promise<unknown> =>
    asPostgres(`${BIN}/pg_ctl`, ['-D', `${dir}/data`, '-l', `${dir}/pg.log`, '-w', ...args]);
  const pg: Postgres = {
    dir,
    conninfo: `host=${dir} user=postgres dbname=postgres`,
    async query(sql) {
      const { stdout } = await asPostgres('/usr/bin/psql', [
        '-h',
        dir,
        '-U',
        'postgres',
        '-d',
        'postgres',
        '-X',
        '-A',
        '-t',
        '-v',
        'ON_ERROR_STOP=1',
        '-c',
        sql,
      ]);
      return stdout;
    },
    async start() {
      if (running) return;
      await pgCtl(['-o', `-c listen_addresses='' -c unix_socket_directories='${dir}' -c fsync=off`, 'start']);
      running = true;
    },
    async stop() {
      if (!running) return;
      await pgCtl(['-m', 'fast', 'stop']);
      running = false;
    },
    async destroy() {
      try {
        await pg.stop();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  await pg.start();
  return pg;
}
