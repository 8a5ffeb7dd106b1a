// The layer rule of docs/architecture.md, held by a test: a directory under src/ imports only from
// directories below it, src/lua/ only from util/ (and Fengari), and nothing at or below proxy/ knows Lua.

import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** Bottom to top. A layer may import its own directory and the ones before it. */
const STACK = [
  'util',
  'protocol',
  'auth',
  'net',
  'backend',
  'proxy',
  'cluster',
  'bindings',
  'service',
  'instance',
  'workers',
  'main',
];
/** Beside the stack: what each may import besides itself. */
const SIDE: Record<string, readonly string[]> = { lua: ['util'], types: [] };
/** Who may import a side directory. */
const SIDE_USERS: Record<string, readonly string[]> = { lua: ['bindings', 'instance'], types: STACK };
/** Packages that only the Lua side may load. */
const LUA_PACKAGES = ['fengari', 'fengari-interop'];

interface ImportEdge {
  readonly from: string; // file, relative to src/
  readonly specifier: string;
}

/** The layer of a path relative to src/: its first directory, or the file's name for top-level files. */
function layerOf(path: string): string {
  const first = path.split('/')[0]!;
  return first.replace(/\.(d\.)?ts$/, '').replace(/\.js$/, '');
}

/** Every rule an import breaks, as a sentence; empty when the import is allowed. */
function violations(edge: ImportEdge): string[] {
  const from = layerOf(edge.from);
  const out: string[] = [];
  if (!edge.specifier.startsWith('.')) {
    const pkg = edge.specifier.split('/')[0]!;
    if (
      LUA_PACKAGES.includes(pkg) &&
      from !== 'lua' &&
      from !== 'bindings' &&
      from !== 'instance' &&
      from !== 'types'
    ) {
      out.push(`${edge.from} loads ${pkg}: only lua/, bindings/ and instance.ts may`);
    }
    return out;
  }
  const target = layerOf(relative(SRC, resolve(SRC, dirname(edge.from), edge.specifier)));
  if (target === from) return out;
  if (from in SIDE) {
    if (!SIDE[from]!.includes(target)) out.push(`${edge.from} (${from}/) imports ${target}/`);
    return out;
  }
  if (target in SIDE) {
    if (!SIDE_USERS[target]!.includes(from)) out.push(`${edge.from} (${from}/) imports ${target}/`);
    return out;
  }
  const fromRank = STACK.indexOf(from);
  const targetRank = STACK.indexOf(target);
  if (fromRank < 0) out.push(`${edge.from}: ${from} is in no layer`);
  else if (targetRank < 0) out.push(`${edge.from} imports ${edge.specifier}, outside every layer`);
  else if (targetRank > fromRank) out.push(`${edge.from} (${from}/) imports the higher layer ${target}/`);
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(file: string): ImportEdge[] {
  const text = readFileSync(file, 'utf8');
  const from = relative(SRC, file);
  return [...text.matchAll(IMPORT)].map((m) => ({ from, specifier: (m[1] ?? m[2])! }));
}

test('every import under src/ respects the layer order', () => {
  const edges = sourceFiles(SRC).flatMap(importsOf);
  assert.ok(edges.length > 200, `found only ${edges.length} imports: the scanner is broken`);
  const broken = edges.flatMap(violations);
  assert.deepEqual(broken, []);
});

test('the checker flags what the rule forbids', () => {
  assert.deepEqual(violations({ from: 'net/relay.ts', specifier: '../proxy/connection.js' }), [
    'net/relay.ts (net/) imports the higher layer proxy/',
  ]);
  assert.equal(violations({ from: 'cluster/cluster.ts', specifier: '../proxy/connection.js' }).length, 0);
  assert.equal(violations({ from: 'backend/login.ts', specifier: '../proxy/connection.js' }).length, 1);
  assert.equal(violations({ from: 'proxy/connection.ts', specifier: '../lua/state.js' }).length, 1);
  assert.equal(violations({ from: 'lua/state.ts', specifier: '../net/relay.js' }).length, 1);
  assert.equal(violations({ from: 'lua/state.ts', specifier: '../util/log.js' }).length, 0);
  assert.equal(violations({ from: 'proxy/handler.ts', specifier: 'fengari' }).length, 1);
  assert.equal(violations({ from: 'bindings/client.ts', specifier: '../lua/state.js' }).length, 0);
  assert.equal(violations({ from: 'util/log.ts', specifier: './errors.js' }).length, 0);
  assert.equal(violations({ from: 'instance.ts', specifier: './main.js' }).length, 1);
  assert.equal(violations({ from: 'main.ts', specifier: './instance.js' }).length, 0);
});
