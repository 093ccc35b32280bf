#!/usr/bin/env node
// Sandbox creation throughput (issue 6; target ≥ 2,500 creations/s with emulated
// workers, and the p99 scheduling latency at 1,000/s). `baton up --emulate N` runs as a
// child; this script drives creations of emulated sandboxes (which cost ~nothing to
// start, so what is measured is the control plane, the worker RPC and the data plane's
// propagation) in two modes:
//
//   open loop   --rate R for --duration S: every 10 ms the script raises the minScale of
//               its functions to the number of creations the schedule has asked for so
//               far (R × elapsed), whatever has become ready meanwhile. PATCHes to one
//               function go one at a time (each is a revision), so the rate is split over
//               --functions functions, one PATCH chain each; a PATCH that takes longer
//               than a tick carries several creations.
//   burst       one PATCH per function to minScale --burst / functions, all at once: the
//               most the cluster creates per second when everything is asked at once.
//
// Everything it reports comes from the control plane's creation records
// (GET /v1/creations): achieved creations/s (successful creations over the time from
// the first decision to the last sandbox ready), and per creation:
//   decision→ready     the actuator's decision to the sandbox ready (placement + create RPC);
//   decision→routable  ... and acknowledged by every data plane;
//   scheduled→ready    (open loop) the moment the schedule asked for the i-th creation to
//                      the i-th sandbox ready: includes the PATCH and any lag.
// There is no peer to run here (Kubedirect's figures come from a Kubernetes cluster):
// the figures are reported against the target.
//
//   node bench/creation/run.mjs [--emulate 20] [--rate 1000] [--duration 5] [--burst 10000] [--functions 4]
//
// Needs: npm run build.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, adminApi, quantile, round, runMain, sleep, startBaton } from '../lib/harness.mjs';

const { values: flags } = parseArgs({
  options: {
    emulate: { type: 'string', default: '20' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '5' },
    burst: { type: 'string', default: '10000' },
    functions: { type: 'string', default: '4' },
    mode: { type: 'string', default: 'both' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('node bench/creation/run.mjs [--emulate 20] [--rate 1000] [--duration 5] [--burst 10000] [--functions 4] [--mode both|rate|burst]\n');
  process.exit(0);
}
const EMULATE = Number(flags.emulate);
const RATE = Number(flags.rate);
const DURATION_S = Number(flags.duration);
const BURST = Number(flags.burst);
const FUNCTIONS = Number(flags.functions);
const MODE = flags.mode;
const TARGET_PER_S = 2500;
const TICK_MS = 10;
// Small, so that 20 emulated nodes (16 cores, 64 GB each) hold 32,000 of them.
const RESOURCES = { cpuMillis: 10, memoryMb: 16 };

function spec(name) {
  return { name, runtime: 'emulated', resources: RESOURCES, scaling: { minScale: 0, maxScale: 0 } };
}

async function deployAll(api, names) {
  for (const name of names) await adminApi(api, 'POST', '/v1/functions', spec(name));
}

async function deleteAll(api, names) {
  await Promise.all(names.map((name) => adminApi(api, 'DELETE', `/v1/functions/${name}`)));
  for (;;) {
    const { functions } = await adminApi(api, 'GET', '/v1/functions');
    if (!functions.some((f) => names.includes(f.name))) return;
    await sleep(100);
  }
}

/** Waits until the functions have `total` successful creation records since `sinceMs`; returns them. */
async function waitForCreations(api, names, sinceMs, total, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await adminApi(api, 'GET', `/v1/creations?since=${sinceMs}`);
    const mine = res.creations.filter((r) => names.includes(r.function));
    const ok = mine.filter((r) => r.success);
    if (ok.length >= total) return { records: ok, failed: mine.length - ok.length, complete: res.complete };
    if (Date.now() > deadline) throw new Error(`${ok.length}/${total} creations after ${timeoutMs} ms (${mine.length - ok.length} failed)`);
    await sleep(200);
  }
}

const readyAt = (r) => r.decidedAtMs + (r.placementUs + r.createRpcUs) / 1000;

function summarize(records, extra = {}) {
  const firstDecision = Math.min(...records.map((r) => r.decidedAtMs));
  const lastReady = Math.max(...records.map(readyAt));
  const lastRoutable = Math.max(...records.map((r) => r.atMs));
  const toReady = records.map((r) => readyAt(r) - r.decidedAtMs);
  const toRoutable = records.map((r) => r.atMs - r.decidedAtMs);
  const stat = (xs) => ({ p50: round(quantile(xs, 0.5)), p99: round(quantile(xs, 0.99)), max: round(Math.max(...xs)) });
  return {
    creations: records.length,
    creationsPerSecond: round(records.length / ((lastReady - firstDecision) / 1000), 0),
    routablePerSecond: round(records.length / ((lastRoutable - firstDecision) / 1000), 0),
    decisionToReadyMs: stat(toReady),
    decisionToRoutableMs: stat(toRoutable),
    placementMs: stat(records.map((r) => r.placementUs / 1000)),
    createRpcMs: stat(records.map((r) => r.createRpcUs / 1000)),
    workerMs: stat(records.map((r) => r.workerTotalUs / 1000)),
    propagationMs: stat(records.map((r) => r.propagationUs / 1000)),
    ...extra,
  };
}

async function openLoop(api, names) {
  const total = Math.round(RATE * DURATION_S);
  const perFn = new Map(names.map((n) => [n, { asked: 0, busy: false }]));
  const patchMs = [];
  let maxBehind = 0;
  const start = Date.now();
  const t0 = performance.now();
  const chains = [];
  for (;;) {
    const elapsed = performance.now() - t0;
    const due = Math.min(total, Math.floor((RATE * elapsed) / 1000));
    // Creation i goes to function i mod F: each function's share of what is due.
    names.forEach((name, k) => {
      const s = perFn.get(name);
      const want = Math.floor((due - k - 1) / names.length) + 1;
      if (s.busy || want <= s.asked) return;
      s.busy = true;
      const sent = performance.now();
      chains.push(
        adminApi(api, 'PATCH', `/v1/functions/${name}`, { scaling: { minScale: want } }).then(() => {
          patchMs.push(performance.now() - sent);
          s.asked = want;
          s.busy = false;
        }),
      );
    });
    const asked = [...perFn.values()].reduce((a, s) => a + s.asked, 0);
    maxBehind = Math.max(maxBehind, due - asked);
    if (asked >= total) break;
    await sleep(TICK_MS);
  }
  await Promise.all(chains);
  const { records, failed, complete } = await waitForCreations(api, names, start - 1, total, 120_000 + total * 10);
  // The i-th creation (by decision) answers the schedule's i-th: scheduled at start + i / rate.
  const byReady = [...records].sort((a, b) => readyAt(a) - readyAt(b));
  const scheduledToReady = byReady.map((r, i) => readyAt(r) - (start + (i * 1000) / RATE));
  return summarize(records, {
    mode: `open loop at ${RATE}/s for ${DURATION_S} s`,
    failed,
    recordsComplete: complete,
    scheduledToReadyMs: { p50: round(quantile(scheduledToReady, 0.5)), p99: round(quantile(scheduledToReady, 0.99)), max: round(Math.max(...scheduledToReady)) },
    patches: patchMs.length,
    patchMs: { p50: round(quantile(patchMs, 0.5)), p99: round(quantile(patchMs, 0.99)) },
    maxCreationsBehindSchedule: maxBehind,
  });
}

async function burst(api, names) {
  const per = Math.ceil(BURST / names.length);
  const start = Date.now();
  await Promise.all(names.map((name) => adminApi(api, 'PATCH', `/v1/functions/${name}`, { scaling: { minScale: per } })));
  const { records, failed, complete } = await waitForCreations(api, names, start - 1, per * names.length, 120_000 + BURST * 20);
  return summarize(records, { mode: `burst of ${per * names.length}`, failed, recordsComplete: complete });
}

function line(r) {
  return (
    `${r.mode}: ${r.creations} creations, ${r.creationsPerSecond}/s to ready (${r.routablePerSecond}/s to routable), ${r.failed} failed\n` +
    `  decision→ready     p50 ${r.decisionToReadyMs.p50} ms  p99 ${r.decisionToReadyMs.p99} ms  max ${r.decisionToReadyMs.max} ms\n` +
    `  decision→routable  p50 ${r.decisionToRoutableMs.p50} ms  p99 ${r.decisionToRoutableMs.p99} ms  max ${r.decisionToRoutableMs.max} ms\n` +
    (r.scheduledToReadyMs ? `  scheduled→ready    p50 ${r.scheduledToReadyMs.p50} ms  p99 ${r.scheduledToReadyMs.p99} ms (PATCH p50 ${r.patchMs.p50} ms, at most ${r.maxCreationsBehindSchedule} creations behind)\n` : '') +
    `  stages p50/p99 ms: placement ${r.placementMs.p50}/${r.placementMs.p99}, create RPC ${r.createRpcMs.p50}/${r.createRpcMs.p99} ` +
    `(worker ${r.workerMs.p50}/${r.workerMs.p99}), propagation ${r.propagationMs.p50}/${r.propagationMs.p99}\n`
  );
}

async function main() {
  const baton = await startBaton({ args: ['--emulate', String(EMULATE)], startTimeoutMs: 60_000 + EMULATE * 100 });
  const results = [];
  const names = Array.from({ length: FUNCTIONS }, (_, i) => `create-bench-${i + 1}`);
  if (MODE === 'both' || MODE === 'rate') {
    await deployAll(baton.apiUrl, names);
    results.push(await openLoop(baton.apiUrl, names));
    await deleteAll(baton.apiUrl, names);
    process.stdout.write(line(results[results.length - 1]));
  }
  if (MODE === 'both' || MODE === 'burst') {
    await deployAll(baton.apiUrl, names);
    results.push(await burst(baton.apiUrl, names));
    await deleteAll(baton.apiUrl, names);
    process.stdout.write(line(results[results.length - 1]));
  }
  const best = Math.max(...results.map((r) => r.creationsPerSecond));
  process.stdout.write(
    `\ntarget ≥ ${TARGET_PER_S} creations/s (issue 6; no peer run here): best ${best}/s, ${best >= TARGET_PER_S ? 'met' : 'NOT met'}\n`,
  );
  const out = path.join(REPO_ROOT, 'bench', 'out');
  mkdirSync(out, { recursive: true });
  const file = path.join(out, `creation-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ emulate: EMULATE, rate: RATE, durationS: DURATION_S, burst: BURST, functions: FUNCTIONS, results }, null, 2) + '\n');
  process.stdout.write(`wrote ${path.relative(REPO_ROOT, file)}\n`);
  await baton.stop();
}

runMain(main);
