/**
 * A throwaway Prometheus server (Debian's `prometheus`) that scrapes given targets every second,
 * and a query helper for its HTTP API. Stopped (SIGKILL) and its directory removed when the test
 * process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freeTcpPort } from './mariadb.js';

export interface Prometheus {
  readonly url: string;
  /** The value of an instant query's first series (undefined when there is none). */
  value(query: string): Promise<number | undefined>;
  /** Waits until `query` has a value for which `accept` holds; returns it. */
  waitFor(query: string, accept: (v: number) => boolean, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** Starts Prometheus scraping `targets` ("host:port") every second. */
export async function startPrometheus(targets: readonly string[]): Promise<Prometheus> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-prometheus-'));
  const port = await freeTcpPort();
  fs.writeFileSync(
    path.join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: myproxy',
      '    static_configs:',
      `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
      '',
    ].join('\n'),
  );
  const child = spawn(
    'prometheus',
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/-/ready`);
      if (r.ok) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`prometheus did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const value = async (query: string): Promise<number | undefined> => {
    const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(query)}`);
    const body = (await r.json()) as { data?: { result?: { value: [number, string] }[] } };
    const first = body.data?.result?.[0];
    return first === undefined ? undefined : Number(first.value[1]);
  };
  return {
    url,
    value,
    async waitFor(query, accept, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      let last: number | undefined;
      for (;;) {
        last = await value(query);
        if (last !== undefined && accept(last)) return last;
        if (Date.now() > end) throw new Error(`${query}: ${String(last)} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 300));
      }
    },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
      running.delete(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
