// Instance.reload(): a reload requested while reload() runs makes it run exactly once more.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Instance, DEFAULT_INSTANCE_OPTIONS } from '../../src/instance.js';
import { setLogSinks } from '../../src/util/log.js';

test('reload requests during a running reload() coalesce into one more run', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-reload-'));
  const lines: string[] = [];
  setLogSinks(
    (l) => lines.push(l),
    (l) => lines.push(l),
  );
  try {
    fs.writeFileSync(
      path.join(dir, 'config.lua'),
      `mysql_listen('${dir}/p.sock', { on_handshake_response = function(c, hr) return c:err('x') end })
       runs = 0
       function reload()
         runs = runs + 1
         print_run = runs
         mysql_resolve('localhost') -- yields: the daemon goes on while reload() waits
         error('run ' .. runs .. ' done')
       end`,
    );
    const instance = new Instance({ ...DEFAULT_INSTANCE_OPTIONS, configPath: path.join(dir, 'config.lua') });
    await instance.load();
    await instance.start();
    // Not awaited: the requests must overlap; the outcome is checked in the log below.
    void instance.reload();
    void instance.reload(); // while the first run waits
    void instance.reload(); // coalesces with the previous one
    for (let i = 0; i < 200 && lines.filter((l) => l.startsWith('reload() failed')).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 100)); // a third run would have logged by now
    const failures = lines.filter((l) => l.startsWith('reload() failed'));
    assert.equal(failures.length, 2, lines.join('\n'));
    assert.match(failures[0]!, /run 1 done/);
    assert.match(failures[1]!, /run 2 done/);
    await instance.shutdown(0);
  } finally {
    setLogSinks(
      (l) => process.stdout.write(l + '\n'),
      (l) => process.stderr.write(l + '\n'),
    );
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
