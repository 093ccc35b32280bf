// Generates src/gen/ from proto/ with protoc (Debian's protobuf-compiler) and
// the protoc-gen-es plugin from npm. Usage: node scripts/gen.mjs [outDir]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export function protocAvailable() {
  return spawnSync('protoc', ['--version'], { stdio: 'ignore' }).status === 0;
}

export function generate(outDir) {
  const protos = readdirSync(join('proto', 'baton', 'v1'))
    .filter((f) => f.endsWith('.proto'))
    .sort()
    .map((f) => join('proto', 'baton', 'v1', f));
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const plugin = join(process.cwd(), 'node_modules', '.bin', 'protoc-gen-es');
  const res = spawnSync(
    'protoc',
    [`--plugin=protoc-gen-es=${plugin}`, `--es_out=${outDir}`, '--es_opt=target=ts,import_extension=js', '-I', 'proto', ...protos],
    { stdio: 'inherit' },
  );
  if (res.error) throw new Error(`cannot run protoc (apt-get install protobuf-compiler): ${res.error.message}`);
  if (res.status !== 0) process.exit(res.status ?? 1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  generate(process.argv[2] ?? join('src', 'gen'));
}
