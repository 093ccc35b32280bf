#!/usr/bin/env node
// Function chains on shared memory against the same functions chained over HTTP
// through the data plane (docs/chains.md; issue 7; SPRIGHT's two workloads,
// reference/spright-kubedirect.md §1.6), in the same run, in interleaved rounds.
//
// Workloads (services.mjs, one copy of the logic for both transports):
// - parking: Detection → Search → Index → Persist → Charging, a static route; the
//   execution times of cfg/parking.cfg scaled by --scale (1e-4: Detection 43.5 µs);
//   the request is a 4 KiB "image";
// - boutique: an Online Boutique-style call tree around a frontend (home page: 4
//   calls; product page: 5; checkout: frontend → checkout → 6 calls), Locust's mix
//   simplified to 1 home, 10 product, 1 checkout per 12 requests.
//
// Three ways to run each:
// - shm:  one chain (runtime `chain`): the data plane forwards to the chain's
//         gateway, and the members (threads) hand the slot to each other in shared memory;
// - proc: the same chain with `transport: processes`: members are processes, slots
//         are copied through a /dev/shm file, descriptors go over Unix sockets;
// - http: every service a Baton function of the `node` runtime; each hop is an HTTP
//         call through the data plane (/fn/<service>), as functions are chained
//         without SPRIGHT.
// Both have one sandbox per function (minScale = maxScale = 1) and the same client:
// this script, a closed loop of --connections concurrent requests over keep-alive.
//
// Reported per workload and transport: requests/s, p50, p99, and CPU seconds per
// 1,000 requests, from /proc: utime+stime of `baton up` and every process under it
// (control plane, data plane, worker, sandboxes), before and after each round. The
// client's own CPU is not counted (the same client drives both). Targets (issue 7):
// shm ≥ 5× the requests/s of http, and ≤ 1/5 of its CPU per request.
//
//   node bench/chains/run.mjs [--duration 5] [--rounds 2] [--connections 16] [--scale 0.0001]
//
// Needs: npm run build.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { REPO_ROOT, adminApi, median, quantile, round, runMain, sleep, startBaton, waitForReadySandboxes } from '../lib/harness.mjs';
import { BOUTIQUE_MIX, BOUTIQUE_SERVICES, PARKING_ROUTE } from './services.mjs';

const HERE = path.join(REPO_ROOT, 'bench', 'chains');
const TARGET_RPS_RATIO = 5;
const TARGET_CPU_RATIO = 5;
const CLOCK_TICKS = 100; // USER_HZ: /proc's unit on Linux

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '16' },
    scale: { type: 'string', default: '0.0001' },
    warmup: { type: 'string', default: '1' },
    'log-level': { type: 'string', default: 'warn' },
  },
});
const DURATION_S = Number(flags.duration);
const ROUNDS = Number(flags.rounds);
const CONNECTIONS = Number(flags.connections);
const WARMUP_S = Number(flags.warmup);

const MODES = ['shm', 'proc', 'http'];
const ONE = { minScale: 1, maxScale: 1, containerConcurrency: 0 };
const SMALL = { cpuMillis: 1, memoryMb: 1 };

/** CPU seconds used so far by `pid` and all its descendants. */
function treeCpuSeconds(pid) {
  const children = new Map();
  const ticks = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(f[1]);
    ticks.set(Number(entry), Number(f[11]) + Number(f[12]));
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(entry));
  }
  let total = 0;
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop();
    total += ticks.get(p) ?? 0;
    stack.push(...(children.get(p) ?? []));
  }
  return total / CLOCK_TICKS;
}

/** A closed loop of `connections` requests at a time for `seconds`; `next(i)` gives request i's path, method and body. */
async function drive(base, next, seconds, check) {
  const pool = new Pool(base, { connections: CONNECTIONS, pipelining: 1 });
  const latencies = [];
  let errors = 0;
  let firstError;
  let i = 0;
  const deadline = performance.now() + seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      const req = next(i++);
      const t0 = performance.now();
      try {
        const res = await pool.request(req);
        const body = await res.body.text();
        if (res.statusCode !== 200 || !check(body)) {
          errors++;
          firstError ??= `${res.statusCode} ${body.slice(0, 200)}`;
          continue;
        }
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= err.message;
      }
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, loop));
  const elapsed = (performance.now() - began) / 1000;
  await pool.close();
  return { latencies, errors, firstError, elapsed };
}

async function measure(baton, target, seconds) {
  const cpu0 = treeCpuSeconds(baton.child.pid);
  const r = await drive(baton.dataPlaneUrl, target.request, seconds, target.check);
  const cpu = treeCpuSeconds(baton.child.pid) - cpu0;
  const ok = r.latencies.length;
  r.latencies.sort((a, b) => a - b);
  return {
    requests: ok,
    errors: r.errors,
    firstError: r.firstError,
    rps: ok / r.elapsed,
    p50Ms: quantile(r.latencies, 0.5),
    p99Ms: quantile(r.latencies, 0.99),
    cpuSeconds: cpu,
    cpuSecondsPer1k: ok > 0 ? (cpu / ok) * 1000 : NaN,
  };
}

const IMAGE = Buffer.alloc(4096, 'camera-frame-');

function targets() {
  const parkingCheck = (body) => JSON.parse(body).persisted === true;
  const boutiqueCheck = (body) => typeof JSON.parse(body).page === 'string';
  const page = (i) => BOUTIQUE_MIX[i % BOUTIQUE_MIX.length];
  return {
    parking: {
      shm: { request: () => ({ method: 'POST', path: '/fn/parking-shm/park', body: IMAGE, headers: { 'content-type': 'text/plain' } }), check: parkingCheck },
      proc: { request: () => ({ method: 'POST', path: '/fn/parking-proc/park', body: IMAGE, headers: { 'content-type': 'text/plain' } }), check: parkingCheck },
      http: { request: () => ({ method: 'POST', path: '/fn/parking-detection/', body: IMAGE, headers: { 'content-type': 'text/plain' } }), check: parkingCheck },
    },
    boutique: {
      shm: { request: (i) => ({ method: 'GET', path: `/fn/ob-shm${page(i)}?user=u${i % 50}` }), check: boutiqueCheck },
      proc: { request: (i) => ({ method: 'GET', path: `/fn/ob-proc${page(i)}?user=u${i % 50}` }), check: boutiqueCheck },
      http: { request: (i) => ({ method: 'GET', path: `/fn/ob-frontend${page(i)}?user=u${i % 50}` }), check: boutiqueCheck },
    },
  };
}

async function register(baton) {
  const env = { DP_URL: baton.dataPlaneUrl, PARKING_SCALE: flags.scale };
  const api = (body, kind = 'functions') => adminApi(baton.apiUrl, 'POST', `/v1/${kind}`, body);
  await api(
    {
      name: 'parking-shm',
      workdir: HERE,
      members: PARKING_ROUTE.map((s) => ({ name: s, handler: `shm-members.${s}` })),
      routes: [{ name: 'park', path: 'park', sequence: [...PARKING_ROUTE] }],
      env,
      scaling: ONE,
    },
    'chains',
  );
  await api(
    { name: 'ob-shm', workdir: HERE, members: BOUTIQUE_SERVICES.map((s) => ({ name: s, handler: `shm-members.${s}` })), entry: 'frontend', env, scaling: ONE },
    'chains',
  );
  await api(
    {
      name: 'parking-proc',
      transport: 'processes',
      workdir: HERE,
      members: PARKING_ROUTE.map((s) => ({ name: s, handler: `shm-members.${s}` })),
      routes: [{ name: 'park', path: 'park', sequence: [...PARKING_ROUTE] }],
      env,
      scaling: ONE,
    },
    'chains',
  );
  await api(
    { name: 'ob-proc', transport: 'processes', workdir: HERE, members: BOUTIQUE_SERVICES.map((s) => ({ name: s, handler: `shm-members.${s}` })), entry: 'frontend', env, scaling: ONE },
    'chains',
  );
  const names = [...PARKING_ROUTE.map((s) => [`parking-${s}`, s]), ...BOUTIQUE_SERVICES.map((s) => [`ob-${s}`, s])];
  for (const [name, service] of names) {
    await api({ name, runtime: 'node', handler: `http-members.${service}`, workdir: HERE, env, scaling: ONE, resources: SMALL });
  }
  for (const name of ['parking-shm', 'ob-shm', 'parking-proc', 'ob-proc', ...names.map(([n]) => n)]) await waitForReadySandboxes(baton.apiUrl, name, { timeoutMs: 60_000 });
}

async function main() {
  const baton = await startBaton({ logLevel: flags['log-level'] });
  try {
    await register(baton);
    const all = targets();
    const results = {};
    for (const [workload, modes] of Object.entries(all)) {
      results[workload] = { shm: [], proc: [], http: [] };
      for (const mode of MODES) {
        const w = await measure(baton, modes[mode], WARMUP_S);
        if (w.errors > 0) throw new Error(`${workload}/${mode} warm-up: ${w.errors} errors, first: ${w.firstError}`);
      }
      for (let r = 0; r < ROUNDS; r++) {
        for (const mode of MODES) {
          const m = await measure(baton, modes[mode], DURATION_S);
          results[workload][mode].push(m);
          process.stderr.write(
            `${workload} ${mode} round ${r + 1}: ${round(m.rps, 0)} req/s, p50 ${round(m.p50Ms)} ms, p99 ${round(m.p99Ms)} ms, ` +
              `${round(m.cpuSecondsPer1k, 3)} CPU s/1k, errors ${m.errors}${m.firstError ? ` (${m.firstError})` : ''}\n`,
          );
          await sleep(200);
        }
      }
    }
    report(results);
  } finally {
    await baton.stop();
  }
}

function report(results) {
  const summary = {};
  const rows = [['workload', 'transport', 'req/s', 'p50 ms', 'p99 ms', 'CPU s / 1k req', 'errors']];
  for (const [workload, modes] of Object.entries(results)) {
    const med = (mode, key) => median(modes[mode].map((m) => m[key]));
    for (const mode of MODES) {
      rows.push([workload, mode, round(med(mode, 'rps'), 0), round(med(mode, 'p50Ms')), round(med(mode, 'p99Ms')), round(med(mode, 'cpuSecondsPer1k'), 3), modes[mode].reduce((a, m) => a + m.errors, 0)].map(String));
    }
    const rpsRatio = med('shm', 'rps') / med('http', 'rps');
    const cpuRatio = med('http', 'cpuSecondsPer1k') / med('shm', 'cpuSecondsPer1k');
    summary[workload] = {
      shm: { rps: med('shm', 'rps'), p50Ms: med('shm', 'p50Ms'), p99Ms: med('shm', 'p99Ms'), cpuSecondsPer1k: med('shm', 'cpuSecondsPer1k') },
      proc: { rps: med('proc', 'rps'), p50Ms: med('proc', 'p50Ms'), p99Ms: med('proc', 'p99Ms'), cpuSecondsPer1k: med('proc', 'cpuSecondsPer1k') },
      http: { rps: med('http', 'rps'), p50Ms: med('http', 'p50Ms'), p99Ms: med('http', 'p99Ms'), cpuSecondsPer1k: med('http', 'cpuSecondsPer1k') },
      procRpsRatio: med('proc', 'rps') / med('http', 'rps'),
      procCpuRatio: med('http', 'cpuSecondsPer1k') / med('proc', 'cpuSecondsPer1k'),
      rpsRatio,
      cpuRatio,
      rpsTargetMet: rpsRatio >= TARGET_RPS_RATIO,
      cpuTargetMet: cpuRatio >= TARGET_CPU_RATIO,
    };
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i])).join('  ') + '\n');
  process.stdout.write('\n');
  for (const [workload, s] of Object.entries(summary)) {
    process.stdout.write(
      `${workload}: shm/http req/s ${round(s.rpsRatio)}× (target ≥ ${TARGET_RPS_RATIO}×: ${s.rpsTargetMet ? 'met' : 'NOT met'}); ` +
        `http/shm CPU per request ${round(s.cpuRatio)}× (target ≥ ${TARGET_CPU_RATIO}×: ${s.cpuTargetMet ? 'met' : 'NOT met'}); ` +
        `processes transport: ${round(s.procRpsRatio)}× http req/s, ${round(s.procCpuRatio)}× less CPU\n`,
    );
  }
  const out = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
    flags: { duration: DURATION_S, rounds: ROUNDS, connections: CONNECTIONS, scale: Number(flags.scale) },
    summary,
    rounds: results,
  };
  mkdirSync(path.join(REPO_ROOT, 'bench', 'out'), { recursive: true });
  const file = path.join(REPO_ROOT, 'bench', 'out', `chains-${Date.now()}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2));
  process.stdout.write(`\n${JSON.stringify({ summary }, null, 2)}\nfull results: ${path.relative(REPO_ROOT, file)}\n`);
}

runMain(main);
