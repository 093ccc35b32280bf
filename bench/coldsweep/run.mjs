#!/usr/bin/env node
// The cold-start sweep (Dirigent's Fig. 7): end-to-end latency against forced
// cold starts per second, and the rate where Baton saturates. Starts
// `baton up` (emulated workers by default, so the sweep measures the control
// path: scale from zero, placement, create, endpoint propagation, forward),
// then runs `baton loadgen rps --cold-sweep` against it as a separate process
// (a generator sharing baton up's event loop would send late exactly when the
// control plane is busiest), and prints the sweep's table and a JSON summary.
//
//   node bench/coldsweep/run.mjs                          # 1,2,5,10,20,50 cold/s, 30 s each (~4 min)
//   node bench/coldsweep/run.mjs --quick                  # 1,5,20 cold/s, 15 s each (~1 min)
//   node bench/coldsweep/run.mjs --rates 1,10,50,100 --step-seconds 30 --start-delay-ms 50
//   node bench/coldsweep/run.mjs --runtime process --workers 1 --rates 1,2,4
//
// No peer: Dirigent reports Knative saturating at about 3 cold starts/s
// (../shared/reference/dirigent.md, "Artifact evaluation"); a figure from
// another cluster is context, not a comparison.
//
// Needs: npm run build.
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cleanChildEnv, makeTempDir, REPO_ROOT, runMain, spawnChild, startBaton } from '../lib/harness.mjs';

const BATON_MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rates: { type: 'string' },
    'step-seconds': { type: 'string' },
    runtime: { type: 'string', default: 'emulated' },
    emulate: { type: 'string', default: 'auto' },
    workers: { type: 'string', default: '1' },
    'start-delay-ms': { type: 'string', default: '0' },
    cooldown: { type: 'string' },
    out: { type: 'string' },
  },
});

// What the sweep's emulated functions reserve (Baton's default resources) and what an
// emulated node offers (EMULATED_NODE_CAPACITY): 160 sandboxes a node.
const SANDBOXES_PER_EMULATED_NODE = 16_000 / 100;
const DEFAULT_COOLDOWN_SEC = 12;

/**
 * --emulate auto: enough emulated nodes for the largest rate. Each of its
 * ceil(R × cooldown) functions can hold a sandbox until its next call, so fewer
 * nodes would fail calls with NO_CAPACITY, a limit of this cluster's size and
 * not of the control path the sweep measures. A quarter more for the sandboxes
 * of the previous step that are still draining.
 */
function emulatedNodes(rates) {
  if (args.emulate !== 'auto') return Number(args.emulate);
  const maxRate = Math.max(...rates.split(',').map(Number));
  const functions = Math.ceil(maxRate * Number(args.cooldown ?? DEFAULT_COOLDOWN_SEC));
  return Math.max(2, Math.ceil((functions * 1.25) / SANDBOXES_PER_EMULATED_NODE));
}

async function main() {
  const rates = args.rates ?? (args.quick ? '1,5,20' : '1,2,5,10,20,50');
  const stepSeconds = args['step-seconds'] ?? (args.quick ? '15' : '30');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = args.out ?? path.join(REPO_ROOT, 'bench', 'out', `coldsweep-${stamp}`);
  mkdirSync(outDir, { recursive: true });

  // The emulated workers' start delay goes in through baton up's config file (worker.emulation).
  const configPath = path.join(makeTempDir('baton-coldsweep-'), 'up.json');
  writeFileSync(configPath, JSON.stringify({ worker: { emulation: { startDelay: { distribution: 'constant', ms: Number(args['start-delay-ms']) } } } }));
  const upArgs = ['--config', configPath, '--workers', args.workers];
  if (args.runtime === 'emulated') upArgs.push('--emulate', String(emulatedNodes(rates)));
  const baton = await startBaton({ args: upArgs });
  process.stderr.write(`baton up: ${baton.apiUrl}, data plane ${baton.dataPlaneUrl}\n`);

  const sweepArgs = [
    BATON_MAIN,
    '--api',
    baton.apiUrl,
    'loadgen',
    'rps',
    '--cold-sweep',
    '--rps',
    rates,
    '--step-seconds',
    stepSeconds,
    '--runtime',
    args.runtime,
    '--dataplane',
    baton.dataPlaneUrl,
    '--out',
    outDir,
  ];
  if (args.cooldown !== undefined) sweepArgs.push('--cooldown', args.cooldown);
  const sweep = spawnChild('loadgen', process.execPath, sweepArgs, { cwd: REPO_ROOT, env: cleanChildEnv(), stdio: ['ignore', 'inherit', 'pipe'] });
  // Progress lines are noise here; warnings and errors are not.
  sweep.stderr.setEncoding('utf8');
  sweep.stderr.on('data', (chunk) => {
    for (const line of chunk.split('\n')) if (line !== '' && !line.startsWith('sent ')) process.stderr.write(`[loadgen] ${line}\n`);
  });
  const { code } = await sweep.exited;
  if (code !== 0) throw new Error(`baton loadgen rps --cold-sweep exited with ${code}`);

  const report = JSON.parse(readFileSync(path.join(outDir, 'summary.json'), 'utf8'));
  const summary = {
    benchmark: 'coldsweep',
    runtime: args.runtime,
    emulatedNodes: args.runtime === 'emulated' ? emulatedNodes(rates) : undefined,
    emulatedStartDelayMs: args.runtime === 'emulated' ? Number(args['start-delay-ms']) : undefined,
    cooldownSec: report.cooldownSec,
    stepSeconds: Number(stepSeconds),
    points: report.steps.map((s) => ({
      rate: s.rate,
      achievedColdPerSec: Number(s.achievedColdPerSec.toFixed(2)),
      coldFraction: Number(s.coldFraction.toFixed(3)),
      p50Ms: Number(s.latencyMs.p50.toFixed(1)),
      p99Ms: Number(s.latencyMs.p99.toFixed(1)),
      failed: s.calls - s.ok,
    })),
    saturation: report.saturation,
    out: outDir,
  };
  process.stdout.write(`\n${JSON.stringify(summary)}\n`);
}

runMain(main);
