// What a benchmark script leaves behind when it ends or is interrupted: its child processes and
// its temp dir. Shared by run.ts and fuzz.ts.

import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';

interface Tracked {
  readonly child: ChildProcess;
  /** Spawned detached: kill the whole process group (socat's forks). */
  readonly group: boolean;
}

export class BenchCleanup {
  readonly #name: string;
  readonly #tracked = new Set<Tracked>();
  /** Removed at the end (set once the script made it). */
  tmpDir: string | undefined;

  constructor(name: string) {
    this.#name = name;
  }

  /** Kill `child` (or its process group) if it still runs when the script ends. */
  track(child: ChildProcess, group = false): ChildProcess {
    const entry: Tracked = { child, group };
    this.#tracked.add(entry);
    child.on('error', (e) => process.stderr.write(`${this.#name}: child process ${String(child.pid)}: ${e.message}\n`));
    child.once('exit', () => {
      if (!group) this.#tracked.delete(entry);
    });
    return child;
  }

  /** `child` was stopped by the script itself. */
  untrack(child: ChildProcess): void {
    for (const t of this.#tracked) if (t.child === child) this.#tracked.delete(t);
  }

  killAllSync(): void {
    for (const { child, group } of this.#tracked) {
      try {
        if (group && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        else if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    this.#tracked.clear();
  }

  removeTmpSync(): void {
    if (this.tmpDir === undefined) return;
    try {
      fs.rmSync(this.tmpDir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      /* best effort */
    }
    this.tmpDir = undefined;
  }

  /** Clean up at exit and on SIGINT, SIGTERM and SIGHUP (MariaDB: the test helper's own handler). */
  install(): void {
    process.on('exit', () => {
      this.killAllSync();
      this.removeTmpSync();
    });
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(sig, () => {
        process.stderr.write(`\n${this.#name}: caught ${sig}, cleaning up\n`);
        this.killAllSync();
        this.removeTmpSync();
        process.exit(sig === 'SIGINT' ? 130 : 143);
      });
    }
  }
}
