#!/usr/bin/env node
// Cold start of every runtime, in one run: the end-to-end first response of a function
// that has no sandbox, for `process`, `oci` (host and isolated network), `node` with and
// without its pre-booted pool, and `emulated`, each against the raw spawn-to-first-
// response of the same program (the hello fixture), measured in the same rounds.
//
// Each round runs the raw spawn and every variant once, in an order that rotates from
// round to round, so the machine's noise falls on all of them alike. A variant's cold
// start is: deploy a fresh function (minScale 0, maxScale 1), time one GET through the
// data plane (it causes the cold start), read the creation's breakdown from `describe`
// (recentCreations: placement, runtime create, network, start, readiness, propagation),
// delete the function.
//
// Two clusters run side by side, because the pool is a worker setting: one with the
// `node` runtime's pool (node.poolSize 2) serving every variant but `node-nopool`, and
// one with poolSize 0 for it. `oci` variants need root and runc; without them they are
// skipped, and the summary says so.
//
// Every function reserves 1000 millicores: `oci` turns it into a CPU quota, and at the
// default 100 a Node sandbox boots about ten times slower.
//
//   node bench/coldstart/runtimes.mjs [--iterations 15] [--warmup 2] [--only process,node-pool]
//
// Needs: npm run build.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { FIXTURES, HELLO_SERVER, REPO_ROOT, adminApi, makeTempDir, median, quantile, round, runMain, sleep, startBaton } from '../lib/harness.mjs';
import { getOnce, rawColdStart } from '../lib/http-once.mjs';

const VARIANTS = {
  process: { spec: (name) => ({ name, command: [process.execPath, HELLO_SERVER], workdir: FIXTURES }) },
  'oci-host': { needsRoot: true, spec: (name) => ({ name, runtime: 'oci', network: 'host', command: [process.execPath, '/function/hello-server.js'], workdir: FIXTURES }) },
  'oci-isolated': {
    needsRoot: true,
    spec: (name) => ({ name, runtime: 'oci', network: 'isolated', command: [process.execPath, '/function/hello-server.js'], workdir: FIXTURES }),
  },
  // The same function deployed again after a delete: the worker kept a container created
  // ahead for it (oci.precreate), so the start is `runc start` alone.
  'oci-host-again': { needsRoot: true, sameName: true, spec: (name) => ({ name, runtime: 'oci', network: 'host', command: [process.execPath, '/function/hello-server.js'], workdir: FIXTURES }) },
  'oci-isolated-again': {
    needsRoot: true,
    sameName: true,
    spec: (name) => ({ name, runtime: 'oci', network: 'isolated', command: [process.execPath, '/function/hello-server.js'], workdir: FIXTURES }),
  },
  'node-pool': { spec: (name) => ({ name, runtime: 'node', handler: 'hello-handler.handler', workdir: FIXTURES }) },
  'node-nopool': { cluster: 'nopool', spec: (name) => ({ name, runtime: 'node', handler: 'hello-handler.handler', workdir: FIXTURES }) },
  emulated: { spec: (name) => ({ name, runtime: 'emulated', emulation: { durationMs: 0 } }) },
};
const STAGES = ['placement', 'portAllocation', 'runtimeCreate', 'network', 'start', 'readiness', 'worker', 'createRpc', 'propagation', 'total'];

const { values: flags } = parseArgs({
  options: {
    iterations: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '2' },
    only: { type: 'string', default: Object.keys(VARIANTS).join(',') },
    'log-level': { type: 'string', default: 'warn' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write(`node bench/coldstart/runtimes.mjs [--iterations 15] [--warmup 2] [--only ${Object.keys(VARIANTS).join(',')}]\n`);
  process.exit(0);
}
const iterations = Number(flags.iterations);
const warmup = Number(flags.warmup);
if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations must be a positive integer');
if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup must be a non-negative integer');
const wanted = flags.only.split(',').filter(Boolean);
for (const v of wanted) if (!VARIANTS[v]) throw new Error(`--only: unknown variant ${v} (known: ${Object.keys(VARIANTS).join(', ')})`);

function ociUsable() {
  if (process.getuid?.() !== 0) return 'not root';
  const r = spawnSync('runc', ['--version'], { stdio: 'ignore' });
  return r.status === 0 ? undefined : 'runc not found';
}


async function batonColdStart(cluster, variant, name) {
  // A whole core each: at the default 100 millicores an oci sandbox (a CPU quota) boots Node
  // ~10× slower; the other runtimes only reserve it.
  const spec = { ...VARIANTS[variant].spec(name), scaling: { maxScale: 1 }, resources: { cpuMillis: 1000 } };
  await adminApi(cluster.apiUrl, 'POST', '/v1/functions', spec);
  const { hostname, port } = new URL(cluster.dataPlaneUrl);
  const t0 = performance.now();
  const res = await getOnce(hostname, Number(port), `/fn/${name}/`);
  const ms = performance.now() - t0;
  const fn = await adminApi(cluster.apiUrl, 'GET', `/v1/functions/${name}`);
  await adminApi(cluster.apiUrl, 'DELETE', `/v1/functions/${name}`);
  const creation = (fn.recentCreations ?? []).find((c) => c.success);
  const ok = res.status === 200 && (variant === 'emulated' || res.body === 'hello\n');
  return { ms, ok, status: res.status, body: res.body.slice(0, 200), queueMs: Number(res.headers['x-baton-queue-ms']), creation };
}

const stats = (xs) => (xs.length === 0 ? null : { median: round(median(xs), 2), p90: round(quantile(xs, 0.9), 2), min: round(Math.min(...xs), 2), max: round(Math.max(...xs), 2), n: xs.length });

async function main() {
  if (!existsSync(path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'))) throw new Error('dist/src/cli/main.js is missing: run `npm run build` first');
  const skipped = {};
  const ociWhy = ociUsable();
  const variants = wanted.filter((v) => {
    if (VARIANTS[v].needsRoot && ociWhy) {
      skipped[v] = ociWhy;
      return false;
    }
    return true;
  });

  const configDir = makeTempDir('baton-bench-cs-');
  const clusters = {};
  for (const [key, poolSize] of [
    ['main', 2],
    ['nopool', 0],
  ]) {
    if (!variants.some((v) => (VARIANTS[v].cluster ?? 'main') === key)) continue;
    const config = path.join(configDir, `${key}.yaml`);
    writeFileSync(config, `worker:\n  node:\n    poolSize: ${poolSize}\n`);
    process.stderr.write(`starting baton up (${key}: node.poolSize ${poolSize})…\n`);
    // The main cluster also runs one emulated node: `emulated` is opt-in per worker.
    const args = ['--config', config, ...(key === 'main' ? ['--emulate', '1'] : [])];
    clusters[key] = await startBaton({ logLevel: flags['log-level'], args });
  }
  await sleep(500); // let the pools fill

  const raw = [];
  const runs = Object.fromEntries(variants.map((v) => [v, []]));
  const failures = [];
  const sides = ['raw', ...variants];
  for (let i = 0; i < warmup + iterations; i++) {
    const recorded = i >= warmup;
    const label = recorded ? `${i - warmup + 1}/${iterations}` : `warm-up ${i + 1}/${warmup}`;
    const order = sides.map((_, k) => sides[(k + i) % sides.length]);
    for (const side of order) {
      if (side === 'raw') {
        const { ms } = await rawColdStart();
        if (recorded) raw.push(ms);
        process.stderr.write(`${label.padEnd(12)} ${'raw'.padEnd(13)} ${ms.toFixed(2).padStart(8)} ms\n`);
        continue;
      }
      const name = VARIANTS[side].sameName ? `cs-${side}` : `cs-${side}-${i}`;
      try {
        const r = await batonColdStart(clusters[VARIANTS[side].cluster ?? 'main'], side, name);
        if (!r.ok) failures.push({ variant: side, iteration: i, status: r.status, body: r.body });
        else if (recorded) runs[side].push(r);
        const c = r.creation?.ms;
        process.stderr.write(
          `${label.padEnd(12)} ${side.padEnd(13)} ${r.ms.toFixed(2).padStart(8)} ms  HTTP ${r.status}` +
            (c ? `  create ${c.runtimeCreate} start ${c.start} ready ${c.readiness} net ${c.network} prop ${c.propagation}${r.creation.pooled ? ' (pooled)' : ''}` : '') +
            '\n',
        );
      } catch (err) {
        failures.push({ variant: side, iteration: i, error: err.message });
        process.stderr.write(`${label.padEnd(12)} ${side.padEnd(13)} FAILED: ${err.message}\n`);
        await adminApi(clusters[VARIANTS[side].cluster ?? 'main'].apiUrl, 'DELETE', `/v1/functions/${name}`).catch(() => {});
      }
      // The pool refills in the background; give it the time a real gap between cold starts would.
      await sleep(50);
    }
  }

  const summary = {
    benchmark: 'coldstart-runtimes',
    date: new Date().toISOString(),
    command: `node bench/coldstart/runtimes.mjs --iterations ${iterations} --warmup ${warmup} --only ${wanted.join(',')}`,
    machine: { nproc: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, loadavg: os.loadavg().map((x) => round(x, 2)) },
    rawMs: stats(raw),
    variants: {},
    skipped,
    failures,
  };
  const row = (cells) => cells.map((c, k) => String(c ?? '-')[k === 0 ? 'padEnd' : 'padStart'](k === 0 ? 16 : 9)).join(' ');
  const lines = ['', `cold start by runtime, ${summary.command} (${summary.machine.nproc} CPUs, node ${summary.machine.node})`];
  lines.push(row(['first response', 'median', 'p90', 'min', 'max', 'n', '− raw', 'pooled']));
  lines.push(row(['raw spawn → 200', summary.rawMs.median, summary.rawMs.p90, summary.rawMs.min, summary.rawMs.max, raw.length, '', '']));
  const breakdown = [row(['median ms', ...STAGES.map((s) => s.slice(0, 9))])];
  for (const v of variants) {
    const rs = runs[v];
    const s = stats(rs.map((r) => r.ms));
    const stages = Object.fromEntries(STAGES.map((st) => [st, stats(rs.map((r) => r.creation?.ms?.[st]).filter((x) => typeof x === 'number'))?.median ?? null]));
    const pooled = rs.filter((r) => r.creation?.pooled).length;
    summary.variants[v] = { firstResponseMs: s, minusRawMs: s ? round(s.median - summary.rawMs.median, 2) : null, pooled, stagesMedianMs: stages };
    lines.push(row([v, s?.median, s?.p90, s?.min, s?.max, rs.length, s ? round(s.median - summary.rawMs.median, 2) : null, `${pooled}/${rs.length}`]));
    breakdown.push(row([v, ...STAGES.map((st) => stages[st])]));
  }
  lines.push('', 'where the time went (medians of the creations, from describe):', ...breakdown);
  for (const [v, why] of Object.entries(skipped)) lines.push(`skipped ${v}: ${why}`);
  if (failures.length > 0) lines.push(`failures: ${failures.length} (see the JSON)`);
  lines.push('');
  process.stdout.write(lines.join('\n') + '\n');

  for (const c of Object.values(clusters)) await c.stop();
  const outDir = path.join(REPO_ROOT, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const outFile = path.join(outDir, `coldstart-runtimes-${summary.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(outFile, JSON.stringify({ ...summary, raw, runs }, null, 2) + '\n');
  process.stderr.write(`wrote ${path.relative(REPO_ROOT, outFile)}\n`);
}

runMain(main);
