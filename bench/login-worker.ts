/**
 * Login benchmark client, run as a separate process by bench/run.ts so that
 * the client's CPU use does not land in the measured process.
 *
 * IPC protocol (process.send / 'message'):
 *   worker → parent  { type: 'ready' }
 *   parent → worker  { type: 'run', socket, user, password, database, seconds }
 *   worker → parent  { type: 'result', ok, failed, elapsedMs, errors }
 *   parent → worker  { type: 'exit' }
 *
 * One "login" is: connect (full handshake + authentication) → SELECT 1 →
 * COM_QUIT and wait for the socket to close.
 */
import mysql from 'mysql2';

export interface LoginRunRequest {
  type: 'run';
  socket: string;
  user: string;
  password: string;
  database: string;
  seconds: number;
}

export interface LoginRunResult {
  type: 'result';
  ok: number;
  failed: number;
  elapsedMs: number;
  /** Up to 5 distinct error messages. */
  errors: string[];
}

function loginOnce(req: LoginRunRequest): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = mysql.createConnection({
      socketPath: req.socket,
      user: req.user,
      password: req.password,
      database: req.database,
      enableCleartextPlugin: true,
      connectTimeout: 10_000,
    });
    let settled = false;
    const fail = (e: unknown): void => {
      if (settled) return;
      settled = true;
      conn.destroy();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    conn.on('error', fail);
    conn.query('SELECT 1', (err) => {
      if (err !== null) {
        fail(err);
        return;
      }
      conn.end((endErr) => {
        if (settled) return;
        settled = true;
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- mysql2 types say QueryError | null, but its Quit command calls back with no argument
        if (endErr !== null && endErr !== undefined) reject(endErr);
        else resolve();
      });
    });
  });
}

async function runLoop(req: LoginRunRequest): Promise<LoginRunResult> {
  const errors = new Set<string>();
  let ok = 0;
  let failed = 0;
  const start = performance.now();
  const deadline = start + req.seconds * 1000;
  while (performance.now() < deadline) {
    try {
      await loginOnce(req);
      ok++;
    } catch (e) {
      failed++;
      if (errors.size < 5) errors.add(e instanceof Error ? e.message : String(e));
    }
  }
  return { type: 'result', ok, failed, elapsedMs: performance.now() - start, errors: [...errors] };
}

if (process.send === undefined) {
  process.stderr.write('login-worker: must be started with an IPC channel (by bench/run.ts)\n');
  process.exit(64);
}

process.on('message', (msg: { type?: string }) => {
  if (msg.type === 'run') {
    runLoop(msg as LoginRunRequest).then(
      (result) => process.send?.(result),
      (e: unknown) => process.send?.({ type: 'result', ok: 0, failed: 1, elapsedMs: 0, errors: [String(e)] }),
    );
  } else if (msg.type === 'exit') {
    process.exit(0);
  }
});
// The parent going away ends the worker too.
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
