// Fails when the generated code in src/gen is stale: regenerates from proto/
// into a temporary directory and compares it with what is committed. Needs
// protoc (apt-get install protobuf-compiler); without it the check is skipped
// with a warning on a developer's machine, and fails under CI.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate, protocAvailable } from './gen.mjs';

if (!protocAvailable()) {
  const msg = 'protoc not found (apt-get install protobuf-compiler): cannot check src/gen against proto/';
  if (process.env.CI) {
    console.error(msg);
    process.exit(1);
  }
  console.warn(`warning: ${msg}; skipped`);
  process.exit(0);
}

const out = mkdtempSync(join(tmpdir(), 'baton-gen-'));
try {
  generate(out);
  const list = (dir) =>
    readdirSync(dir, { recursive: true })
      .map(String)
      .filter((p) => statSync(join(dir, p)).isFile())
      .sort();
  const want = list(out);
  const have = list(join('src', 'gen'));
  const stale = [];
  for (const f of new Set([...want, ...have])) {
    const a = want.includes(f) ? readFileSync(join(out, f), 'utf8') : undefined;
    const b = have.includes(f) ? readFileSync(join('src', 'gen', f), 'utf8') : undefined;
    if (a !== b) stale.push(join('src', 'gen', f));
  }
  if (stale.length > 0) {
    console.error(`generated code is stale; run \`npm run gen\` and commit:\n  ${stale.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`generated code is up to date (src/gen, ${have.length} files)`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
