#!/usr/bin/env node
// Kubedirect's scale microbenchmarks (issue 6): `baton bench scale --local` for each of
// scale-sandboxes, scale-functions and scale-nodes, one child process per test (each
// starts its own in-process cluster of emulated workers, with the store in a temporary
// directory), with the sizes of Kubedirect's figures by default:
//
//   scale-sandboxes   one function from 0 to N sandboxes, N = 100, 1,000, 5,000 (20 nodes)
//   scale-functions   N functions from 0 to 1 sandbox each, N = 100, 1,000 (20 nodes)
//   scale-nodes       N nodes (N = 100, 500) with k = 10 sandboxes each
//
// Each test prints its table (time until every sandbox is ready and routable on the data
// plane, creations/s, the stage breakdown); the JSON of each goes to bench/out/. See
// docs/benchmarks.md for what every column means.
//
//   node bench/scale/run.mjs [--tests scale-sandboxes,scale-functions,scale-nodes]
//                            [--sandboxes 100,1000,5000] [--functions 100,1000] [--nodes 100,500] [--per-node 10]
//                            [--local-nodes 20] [--timeout-s 300]
//
// Needs: npm run build.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, cleanChildEnv, runMain, spawnChild } from '../lib/harness.mjs';

const MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const { values: flags } = parseArgs({
  options: {
    tests: { type: 'string', default: 'scale-sandboxes,scale-functions,scale-nodes' },
    sandboxes: { type: 'string', default: '100,1000,5000' },
    functions: { type: 'string', default: '100,1000' },
    nodes: { type: 'string', default: '100,500' },
    'per-node': { type: 'string', default: '10' },
    'local-nodes': { type: 'string', default: '20' },
    'timeout-s': { type: 'string', default: '300' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write(
    'node bench/scale/run.mjs [--tests scale-sandboxes,scale-functions,scale-nodes] [--sandboxes 100,1000,5000] [--functions 100,1000] ' +
      '[--nodes 100,500] [--per-node 10] [--local-nodes 20] [--timeout-s 300]\n',
  );
  process.exit(0);
}

const SIZES = { 'scale-sandboxes': ['--sandboxes', flags.sandboxes], 'scale-functions': ['--functions', flags.functions], 'scale-nodes': ['--nodes', flags.nodes] };

async function main() {
  const out = path.join(REPO_ROOT, 'bench', 'out');
  mkdirSync(out, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const test of flags.tests.split(',')) {
    const sizes = SIZES[test];
    if (!sizes) throw new Error(`unknown test ${test}: expected scale-sandboxes, scale-functions or scale-nodes`);
    const file = path.join(out, `${test}-${stamp}.json`);
    const args = [MAIN, 'bench', 'scale', test, '--local', ...sizes, '--per-node', flags['per-node'], '--local-nodes', flags['local-nodes'],
      '--timeout-s', flags['timeout-s'], '--out', file];
    process.stdout.write(`\n$ baton ${args.slice(1).join(' ')}\n`);
    const child = spawnChild(test, process.execPath, args, { cwd: REPO_ROOT, env: cleanChildEnv(), stdio: ['ignore', 'inherit', 'inherit'], stopGraceMs: 30_000 });
    const { code, signal } = await child.exited;
    if (code !== 0) throw new Error(`baton bench scale ${test} failed (code ${code}, signal ${signal})`);
  }
}

runMain(main);
