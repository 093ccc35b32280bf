#!/usr/bin/env node
// Cold start, process runtime: the end-to-end first response of a function that has no
// sandbox, against a raw spawn-to-first-response of the same command, in the same run.
//
// Why: DESIGN.md, "Performance targets": end-to-end first response ≤ raw
// spawn-to-first-response + 5 ms. Its baselines on this machine: Node with a clean
// environment answers its first request 29–34 ms after spawn (63–72 ms if it inherits
// NODE_EXTRA_CA_CERTS), so the runtime's own boot dominates and everything Baton adds
// (admin API → autoscaler → placement → worker RPC → spawn → readiness probe →
// endpoint push → data plane forward) has to fit in the 5 ms on top. The machine is
// shared and noisy, so raw and Baton iterations are interleaved (alternating which goes
// first) and compared by their medians.
//
//   raw:   spawn(node bench/fixtures/hello-server.js) with only PATH, PORT and HOST in its
//          environment; poll GET / on a fresh TCP connection every ~1 ms until a 200;
//          time from the spawn() call to that complete response; then stop it.
//   baton: with `baton up` running, deploy a new function hello-cs-<i> running the same
//          command (scaling {maxScale: 1}, minScale 0, so nothing runs yet), then time
//          one GET {dataplane}/fn/hello-cs-<i>/ from send to complete response: that
//          request causes the cold start. x-baton-queue-ms is recorded beside it. Then
//          DELETE the function.
//
// Both sides use the same minimal HTTP/1.1 client on node:net (one fresh connection per
// request, `connection: close`), so client overhead is the same on both.
//
//   node bench/coldstart/run.mjs [--iterations 20] [--warmup 3]
//
// Needs: npm run build.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { REPO_ROOT, adminApi, helloSpec, median, quantile, round, runMain, startBaton } from '../lib/harness.mjs';
import { getOnce, rawColdStart } from '../lib/http-once.mjs';

const TARGET_EXTRA_MS = 5; // Baton median − raw median (DESIGN.md)

const { values: flags } = parseArgs({
  options: {
    iterations: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    'log-level': { type: 'string', default: 'warn' },
    // Without Baton: only the raw side, for checking it or recording it alone.
    'peer-only': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('node bench/coldstart/run.mjs [--iterations 20] [--warmup 3] [--log-level warn] [--peer-only]\n');
  process.exit(0);
}
const iterations = Number(flags.iterations);
const warmup = Number(flags.warmup);
if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations must be a positive integer');
if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup must be a non-negative integer');

// ---- the two sides ------------------------------------------------------------------


/** Baton: deploy a fresh function, time the first invocation, delete it. */
async function batonColdStart(baton, name) {
  const tDeploy = performance.now();
  await adminApi(baton.apiUrl, 'POST', '/v1/functions', helloSpec(name, { maxScale: 1 }));
  const deployMs = performance.now() - tDeploy;
  const { hostname, port } = new URL(baton.dataPlaneUrl);
  const t0 = performance.now();
  const res = await getOnce(hostname, Number(port), `/fn/${name}/`);
  const ms = performance.now() - t0;
  const tDelete = performance.now();
  await adminApi(baton.apiUrl, 'DELETE', `/v1/functions/${name}`);
  const deleteMs = performance.now() - tDelete;
  const queueMs = Number(res.headers['x-baton-queue-ms']);
  return {
    ms,
    status: res.status,
    body: res.body,
    queueMs: Number.isFinite(queueMs) ? queueMs : null,
    sandbox: res.headers['x-baton-sandbox'] ?? null,
    deployMs,
    deleteMs,
  };
}

// ---- the run ------------------------------------------------------------------------

const stats = (xs) => ({
  median: round(median(xs), 2),
  p90: round(quantile(xs, 0.9), 2),
  min: round(Math.min(...xs), 2),
  max: round(Math.max(...xs), 2),
});

async function main() {
  const peerOnly = flags['peer-only'];
  let baton;
  if (!peerOnly) {
    if (!existsSync(path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'))) {
      throw new Error('dist/src/cli/main.js is missing: run `npm run build` first');
    }
    process.stderr.write('starting baton up…\n');
    baton = await startBaton({ logLevel: flags['log-level'] });
    process.stderr.write(`  admin API ${baton.apiUrl}, data plane ${baton.dataPlaneUrl}\n`);
  }

  const raw = [];
  const batonRuns = [];
  const failures = [];
  for (let i = 0; i < warmup + iterations; i++) {
    const recorded = i >= warmup;
    const label = recorded ? `${i - warmup + 1}/${iterations}` : `warm-up ${i + 1}/${warmup}`;
    const order = peerOnly ? ['raw'] : i % 2 === 0 ? ['raw', 'baton'] : ['baton', 'raw'];
    for (const side of order) {
      if (side === 'raw') {
        const r = await rawColdStart();
        if (r.body !== 'hello\n') throw new Error(`raw hello-server answered ${JSON.stringify(r.body)}`);
        if (recorded) raw.push(r.ms);
        process.stderr.write(`${label.padEnd(14)} raw    ${r.ms.toFixed(2).padStart(8)} ms\n`);
      } else {
        const name = `hello-cs-${i}`;
        let b;
        try {
          b = await batonColdStart(baton, name);
        } catch (err) {
          failures.push({ iteration: i, name, error: err.message });
          process.stderr.write(`${label.padEnd(14)} baton  FAILED: ${err.message}\n`);
          await adminApi(baton.apiUrl, 'DELETE', `/v1/functions/${name}`).catch(() => {});
          continue;
        }
        const ok = b.status === 200 && b.body === 'hello\n';
        if (!ok) failures.push({ iteration: i, name, status: b.status, body: b.body.slice(0, 200) });
        else if (recorded) batonRuns.push(b);
        process.stderr.write(
          `${label.padEnd(14)} baton  ${b.ms.toFixed(2).padStart(8)} ms  HTTP ${b.status}  queue-ms ${b.queueMs ?? '-'}  deploy ${b.deployMs.toFixed(1)} ms  delete ${b.deleteMs.toFixed(1)} ms${ok ? '' : `  body ${JSON.stringify(b.body.slice(0, 120))}`}\n`,
        );
      }
    }
  }

  const summary = {
    benchmark: 'coldstart',
    date: new Date().toISOString(),
    command: `node bench/coldstart/run.mjs --iterations ${iterations} --warmup ${warmup}${peerOnly ? ' --peer-only' : ''}`,
    machine: { nproc: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version },
    iterations,
    warmup,
    rawMs: stats(raw),
  };
  const lines = ['', `cold start, ${summary.command} (${summary.machine.nproc} CPUs, node ${summary.machine.node})`];
  const row = (cells) => cells.map((c, i) => String(c)[i === 0 ? 'padEnd' : 'padStart'](i === 0 ? 22 : 10)).join(' ');
  lines.push(row(['ms', 'median', 'p90', 'min', 'max', 'n']));
  lines.push(row(['raw spawn → 200', summary.rawMs.median, summary.rawMs.p90, summary.rawMs.min, summary.rawMs.max, raw.length]));
  if (!peerOnly) {
    summary.failures = failures;
    if (batonRuns.length > 0) {
      summary.batonMs = stats(batonRuns.map((b) => b.ms));
      const queue = batonRuns.map((b) => b.queueMs).filter((q) => q !== null);
      summary.batonQueueMs = queue.length > 0 ? stats(queue) : null;
      summary.deployMs = stats(batonRuns.map((b) => b.deployMs));
      summary.deleteMs = stats(batonRuns.map((b) => b.deleteMs));
      const extra = summary.batonMs.median - summary.rawMs.median;
      summary.batonMinusRawMs = { medians: round(extra, 2), target: TARGET_EXTRA_MS, met: extra <= TARGET_EXTRA_MS };
      summary.batonOverRaw = round(summary.batonMs.median / summary.rawMs.median, 3);
      const s = summary;
      lines.push(row(['baton first response', s.batonMs.median, s.batonMs.p90, s.batonMs.min, s.batonMs.max, batonRuns.length]));
      if (s.batonQueueMs) lines.push(row(['  x-baton-queue-ms', s.batonQueueMs.median, s.batonQueueMs.p90, s.batonQueueMs.min, s.batonQueueMs.max, queue.length]));
      lines.push(row(['  (deploy call)', s.deployMs.median, s.deployMs.p90, s.deployMs.min, s.deployMs.max, batonRuns.length]));
      lines.push(row(['  (delete call)', s.deleteMs.median, s.deleteMs.p90, s.deleteMs.min, s.deleteMs.max, batonRuns.length]));
      lines.push(
        '',
        `baton − raw (medians): ${extra.toFixed(2)} ms (${s.batonOverRaw}×); target ≤ +${TARGET_EXTRA_MS} ms: ${s.batonMinusRawMs.met ? 'MET' : `NOT MET by ${(extra - TARGET_EXTRA_MS).toFixed(2)} ms`}`,
      );
    }
    if (failures.length > 0) lines.push(`baton failures: ${failures.length} (see "failures" in the JSON)`);
  }
  lines.push('');
  process.stdout.write(lines.join('\n') + '\n');
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');

  const outDir = path.join(REPO_ROOT, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const outFile = path.join(outDir, `coldstart-${summary.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(outFile, JSON.stringify({ ...summary, raw, baton: batonRuns }, null, 2) + '\n');
  process.stderr.write(`wrote ${path.relative(REPO_ROOT, outFile)}\n`);
  if (!peerOnly && batonRuns.length === 0) throw new Error('no Baton cold start succeeded');
}

runMain(main);
