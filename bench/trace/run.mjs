#!/usr/bin/env node
// The 30-minute trace replay on the sample (issue 6's benchmark suite): starts
// `baton up --emulate N` as a child, then runs, as another child,
//
//   baton loadgen trace --trace ../shared/traces/azure2019-example --minutes 0-30
//                       --warmup-minutes 10 --iat exponential --seed 42 --runtime emulated
//
// against it, which prints the summary (latency and scheduling latency p50/p90/p99,
// slowdown, cold-start fraction, failures by code, achieved vs scheduled rate) and
// writes invocations.csv and summary.json to bench/out/trace-<time>/. At the default
// --time-scale 1 it takes the trace's 30 minutes (the first 10 are warm-up, left out of
// the summary); --time-scale 0.05 replays the same schedule 20× faster, to check the
// setup (its figures are no longer the trace's load).
//
//   node bench/trace/run.mjs [--trace DIR] [--minutes 0-30] [--warmup-minutes 10] [--time-scale 1] [--emulate 20] [--seed 42]
//
// Needs: npm run build.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, cleanChildEnv, runMain, spawnChild, startBaton } from '../lib/harness.mjs';

const MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const { values: flags } = parseArgs({
  options: {
    trace: { type: 'string', default: path.resolve(REPO_ROOT, '..', 'shared', 'traces', 'azure2019-example') },
    minutes: { type: 'string', default: '0-30' },
    'warmup-minutes': { type: 'string', default: '10' },
    'time-scale': { type: 'string', default: '1' },
    emulate: { type: 'string', default: '20' },
    seed: { type: 'string', default: '42' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('node bench/trace/run.mjs [--trace DIR] [--minutes 0-30] [--warmup-minutes 10] [--time-scale 1] [--emulate 20] [--seed 42]\n');
  process.exit(0);
}

async function main() {
  const baton = await startBaton({ args: ['--emulate', flags.emulate], startTimeoutMs: 60_000 + Number(flags.emulate) * 100 });
  const out = path.join(REPO_ROOT, 'bench', 'out', `trace-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const args = [MAIN, 'loadgen', 'trace', '--api', baton.apiUrl, '--trace', flags.trace, '--minutes', flags.minutes,
    '--warmup-minutes', flags['warmup-minutes'], '--iat', 'exponential', '--seed', flags.seed, '--runtime', 'emulated',
    '--time-scale', flags['time-scale'], '--out', out];
  process.stdout.write(`$ baton ${args.slice(1).join(' ')}\n`);
  const child = spawnChild('loadgen', process.execPath, args, { cwd: REPO_ROOT, env: cleanChildEnv(), stdio: ['ignore', 'inherit', 'inherit'] });
  const { code, signal } = await child.exited;
  if (code !== 0) throw new Error(`baton loadgen trace failed (code ${code}, signal ${signal})`);
  await baton.stop();
}

runMain(main);
