#!/usr/bin/env -S node --max-semi-space-size=2
// The myproxy executable: runs the compiled daemon (npm install builds dist/).
// The shebang caps V8's young generation at 2 MiB: sessions live long and logins leave only
// short-lived garbage, so a small nursery keeps the resident size down (docs/benchmarks.md has
// the measurement). Running `node bin/myproxy.js` directly skips that flag.
import { main } from '../dist/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`myproxy: fatal: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(70);
  },
);
