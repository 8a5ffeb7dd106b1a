/**
 * Opens and holds many idle, logged-in connections for the memory benchmark
 * of bench/run.ts. Runs as its own process so the measured daemon's RSS
 * contains nothing of the client side.
 *
 * IPC protocol:
 *   holder → parent  { type: 'ready' }
 *   parent → holder  { type: 'open', socket, user, password, database, count, concurrency }
 *   holder → parent  { type: 'opened', ok, failed, errors, ms }
 *   parent → holder  { type: 'check' }   (COM_PING on every held connection)
 *   holder → parent  { type: 'checked', alive, dead, errors }
 *   parent → holder  { type: 'close' }
 *   holder → parent  { type: 'closed' }
 *   parent → holder  { type: 'exit' }
 */
import mysql from 'mysql2';

export interface OpenRequest {
  type: 'open';
  socket: string;
  user: string;
  password: string;
  database: string;
  count: number;
  concurrency: number;
}

const held: mysql.Connection[] = [];

function openOne(req: OpenRequest): Promise<mysql.Connection> {
  return new Promise((resolve, reject) => {
    const conn = mysql.createConnection({
      socketPath: req.socket,
      user: req.user,
      password: req.password,
      database: req.database,
      enableCleartextPlugin: true,
      connectTimeout: 30_000,
    });
    let settled = false;
    conn.on('error', (e: unknown) => {
      if (settled) return;
      settled = true;
      conn.destroy();
      reject(e instanceof Error ? e : new Error(String(e)));
    });
    conn.connect((err) => {
      if (settled) return;
      settled = true;
      if (err !== null) {
        conn.destroy();
        reject(err);
      } else {
        resolve(conn);
      }
    });
  });
}

async function openAll(req: OpenRequest): Promise<{ ok: number; failed: number; errors: string[]; ms: number }> {
  const start = performance.now();
  const errors = new Set<string>();
  let next = 0;
  let failed = 0;
  const lane = async (): Promise<void> => {
    while (next < req.count) {
      next++;
      try {
        held.push(await openOne(req));
      } catch (e) {
        failed++;
        if (errors.size < 5) errors.add(e instanceof Error ? e.message : String(e));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, req.concurrency) }, lane));
  return { ok: held.length, failed, errors: [...errors], ms: performance.now() - start };
}

async function checkAll(): Promise<{ alive: number; dead: number; errors: string[] }> {
  const errors = new Set<string>();
  const results = await Promise.all(
    held.map(
      (conn) =>
        new Promise<boolean>((resolve) => {
          conn.ping((err) => {
            // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- mysql2 types say QueryError | null, but its Ping command calls back with no argument on success
            const failed = err !== null && err !== undefined;
            if (failed && errors.size < 5) errors.add(err.message);
            resolve(!failed);
          });
        }),
    ),
  );
  const alive = results.filter((x) => x).length;
  return { alive, dead: results.length - alive, errors: [...errors] };
}

async function closeAll(): Promise<void> {
  const conns = held.splice(0);
  await Promise.all(
    conns.map(
      (conn) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            conn.destroy();
            resolve();
          }, 5000);
          conn.end(() => {
            clearTimeout(timer);
            resolve();
          });
        }),
    ),
  );
}

if (process.send === undefined) {
  process.stderr.write('conn-holder: must be started with an IPC channel (by bench/run.ts)\n');
  process.exit(64);
}

const reply = (msg: object): void => {
  process.send?.(msg);
};

process.on('message', (msg: { type?: string }) => {
  switch (msg.type) {
    case 'open':
      void openAll(msg as OpenRequest).then((r) => reply({ type: 'opened', ...r }));
      break;
    case 'check':
      void checkAll().then((r) => reply({ type: 'checked', ...r }));
      break;
    case 'close':
      void closeAll().then(() => reply({ type: 'closed' }));
      break;
    case 'exit':
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
reply({ type: 'ready' });
