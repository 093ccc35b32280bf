// Runs the compiled tests with node:test. Node 20 has no glob support in
// `node --test`, so we find the files ourselves: unit tests beside the code
// (dist/src/**/*.test.js) and end-to-end tests (dist/test/**/*.test.js).
// Usage: node scripts/run-tests.mjs [src|test ...]
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const roots = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['src', 'test'];
const files = [];
function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) walk(p);
    else if (entry.name.endsWith('.test.js')) files.push(p);
  }
}
for (const r of roots) {
  const dir = join('dist', r);
  if (existsSync(dir)) walk(dir);
}
files.sort();
if (files.length === 0) {
  console.error('no test files found: run `npm run build` first');
  process.exit(1);
}
// Children must not inherit NODE_EXTRA_CA_CERTS: it makes every Node start ~35 ms slower (DESIGN.md, traps).
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const res = spawnSync(process.execPath, ['--test', '--test-timeout=180000', ...files], { stdio: 'inherit', env });
process.exit(res.status ?? 1);
