// Fails when the generated code in src/gen is stale: regenerates from proto/
// into a temporary directory and compares it with what is committed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const out = mkdtempSync(join(tmpdir(), 'baton-gen-'));
try {
  const bin = join(process.cwd(), 'node_modules', '.bin');
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
  const gen = spawnSync(join(bin, 'buf'), ['generate', '--output', out], { stdio: 'inherit', env });
  if (gen.status !== 0) process.exit(gen.status ?? 1);
  const list = (dir) =>
    readdirSync(dir, { recursive: true })
      .map(String)
      .filter((p) => statSync(join(dir, p)).isFile())
      .sort();
  const want = list(join(out, 'src', 'gen'));
  const have = list(join('src', 'gen'));
  const stale = [];
  for (const f of new Set([...want, ...have])) {
    const a = want.includes(f) ? readFileSync(join(out, 'src', 'gen', f), 'utf8') : undefined;
    const b = have.includes(f) ? readFileSync(join('src', 'gen', f), 'utf8') : undefined;
    if (a !== b) stale.push(join('src', 'gen', f));
  }
  if (stale.length > 0) {
    console.error(`generated code is stale; run \`npm run gen\` and commit:\n  ${stale.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`generated code is up to date (${relative('.', 'src/gen')}, ${have.length} files)`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
