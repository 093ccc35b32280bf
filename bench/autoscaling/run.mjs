#!/usr/bin/env node
// Autoscaling under a bursty load: replays an open-loop schedule (idle → low →
// a 10× burst → low → idle until scale to zero → a burst from zero → idle)
// against one function and plots, over time, the autoscaler's desired scale,
// the ready sandboxes and the requests in flight, with panic periods shaded and
// the offered rate underneath. Writes the plot (a self-contained SVG), the
// samples and the requests (CSV) and a JSON summary to bench/autoscaling/out/.
//
// Why: to see the Knative autoscaler (docs/autoscaling.md) do its job end to
// end: how fast it follows a burst, how far it over- or under-shoots, and
// whether scale-down and scale-to-zero take the time its windows say, without
// failing a request.
//
// What runs: `baton up --workers 2` as a child process (control plane, data
// plane and two workers in one process, with this benchmark's autoscaler
// settings in its --config file), one function "burst"
// (bench/autoscaling/sleep-server.mjs, every request sleeps --sleep-ms),
// containerConcurrency 1, maxScale --max-scale. The load is open loop: Poisson
// arrivals from a seeded generator, sent on schedule whatever the responses do,
// through an undici pool large enough never to hold a request back. Every
// --sample-ms the script reads GET /v1/functions/burst. The load generator is a
// separate process from Baton on purpose: `baton up` spawns sandboxes on its own
// event loop, and a generator sharing that loop would send late exactly when the
// autoscaler is busiest.
//
//   node bench/autoscaling/run.mjs                      # --quick: 10 s stable window, ~1.7 min
//   node bench/autoscaling/run.mjs --knative-defaults   # 60 s / 6 s / 2 s tick, ~7.5 min
//   node bench/autoscaling/run.mjs --seed 7 --out /tmp/as
//
// Needs: npm run build.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { cleanChildEnv, makeTempDir, runMain, spawnChild } from '../lib/harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..');
const DIST = path.join(REPO_ROOT, 'dist', 'src');
const FUNCTION = 'burst';

// ---- the schedules ------------------------------------------------------------------
// Phases of open-loop load, played in order: {label, durationSec, rps}. rps 0 is idle.
// Each idle phase after load is longer than stable window + scale-to-zero grace, so the
// function reaches zero before the next phase. The bursts are 10× the low rate.

const SCHEDULES = {
  quick: [
    { label: 'idle', durationSec: 3, rps: 0 },
    { label: 'low', durationSec: 12, rps: 10 },
    { label: 'burst', durationSec: 10, rps: 100 },
    { label: 'low', durationSec: 18, rps: 10 },
    { label: 'idle', durationSec: 18, rps: 0 },
    { label: 'burst from 0', durationSec: 8, rps: 100 },
    { label: 'idle', durationSec: 16, rps: 0 },
  ],
  knative: [
    { label: 'idle', durationSec: 10, rps: 0 },
    { label: 'low', durationSec: 60, rps: 10 },
    { label: 'burst', durationSec: 30, rps: 100 },
    { label: 'low', durationSec: 90, rps: 10 },
    { label: 'idle', durationSec: 110, rps: 0 },
    { label: 'burst from 0', durationSec: 20, rps: 100 },
    { label: 'idle', durationSec: 100, rps: 0 },
  ],
};

// The autoscaler's settings per mode. quick: the shortest stable window Baton accepts
// (6 s) is too short to tell scale-down apart from the panic window, so 10 s; a 2 s panic
// window, 2 s grace and a 250 ms tick. knative: Knative's defaults (Baton's too).
const MODES = {
  quick: {
    scaling: { stableWindowSec: 10, panicWindowSec: 2, scaleToZeroGraceSec: 2 },
    controlplane: { scalingPeriodMs: 250, metricsIntervalMs: 250 },
  },
  knative: {
    scaling: { stableWindowSec: 60, panicWindowSec: 6, scaleToZeroGraceSec: 30 },
    controlplane: { scalingPeriodMs: 2000, metricsIntervalMs: 2000 },
  },
};

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'knative-defaults': { type: 'boolean', default: false },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: path.join(HERE, 'out') },
    'sleep-ms': { type: 'string', default: '200' },
    'max-scale': { type: 'string', default: '40' },
    workers: { type: 'string', default: '2' },
    'sample-ms': { type: 'string', default: '250' },
    'log-level': { type: 'string', default: 'warn' },
    // What was measured, for the plot and the summary, when the git state does not say it.
    label: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write(
    'node bench/autoscaling/run.mjs [--quick | --knative-defaults] [--seed 1] [--out DIR]\n' +
      '                               [--sleep-ms 200] [--max-scale 40] [--workers 2] [--sample-ms 250] [--log-level warn] [--label TEXT]\n',
  );
  process.exit(0);
}
if (flags.quick && flags['knative-defaults']) throw new Error('--quick and --knative-defaults exclude each other');
const modeName = flags['knative-defaults'] ? 'knative' : 'quick';
const mode = MODES[modeName];
const schedule = SCHEDULES[modeName];
const intFlag = (name, min) => {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`);
  return n;
};
const seed = intFlag('seed', 0);
const sleepMs = intFlag('sleep-ms', 1);
const maxScale = intFlag('max-scale', 1);
const workerCount = intFlag('workers', 1);
const sampleMs = intFlag('sample-ms', 10);
const outDir = path.resolve(flags.out);

const commandLine = () =>
  `node bench/autoscaling/run.mjs ${modeName === 'knative' ? '--knative-defaults' : '--quick'} --seed ${seed}` +
  (sleepMs !== 200 ? ` --sleep-ms ${sleepMs}` : '') +
  (maxScale !== 40 ? ` --max-scale ${maxScale}` : '') +
  (workerCount !== 2 ? ` --workers ${workerCount}` : '') +
  (flags.label ? ` --label ${JSON.stringify(flags.label)}` : '');

/**
 * Which code ran: the commit, whether src/ had uncommitted changes, and when dist/ was
 * built. Others may rebuild dist/ while this runs; the import happens once, at the start.
 */
function codeState() {
  const git = (...args) => {
    try {
      return execFileSync('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return undefined;
    }
  };
  const commit = git('rev-parse', '--short', 'HEAD');
  const dirty = git('status', '--porcelain', '--', 'src', 'proto');
  let distBuiltAt;
  try {
    distBuiltAt = statSync(path.join(DIST, 'controlplane', 'index.js')).mtime.toISOString();
  } catch {
    distBuiltAt = undefined;
  }
  const changed = dirty ? dirty.split('\n').length : 0;
  const describe = flags.label ?? (commit ? `commit ${commit}${changed ? ` + uncommitted changes to ${changed} files in src/` : ''}` : 'unknown code state');
  return { commit: commit ?? null, uncommittedSrcFiles: changed, distBuiltAt: distBuiltAt ?? null, describe };
}

// ---- the load -------------------------------------------------------------------------

/** Arrival times (ms from the start of the schedule) of a Poisson process per phase. */
function arrivalsFor(phases, random) {
  const out = [];
  let startMs = 0;
  phases.forEach((p, phase) => {
    const endMs = startMs + p.durationSec * 1000;
    if (p.rps > 0) {
      let t = startMs;
      for (;;) {
        t += (-Math.log(1 - random()) / p.rps) * 1000;
        if (t >= endMs) break;
        out.push({ atMs: t, phase });
      }
    }
    startMs = endMs;
  });
  return out;
}

function phaseAt(phases, tMs) {
  let start = 0;
  for (let i = 0; i < phases.length; i++) {
    start += phases[i].durationSec * 1000;
    if (tMs < start) return i;
  }
  return phases.length - 1;
}

function phaseStarts(phases) {
  const starts = [];
  let t = 0;
  for (const p of phases) {
    starts.push(t);
    t += p.durationSec;
  }
  return { starts, totalSec: t };
}

// ---- statistics -----------------------------------------------------------------------

function quantile(values, q) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}
const round = (x, digits = 2) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

function latencyStats(reqs) {
  const ok = reqs.filter((r) => r.status === 200);
  const lat = ok.map((r) => r.latencyMs);
  const queue = ok.map((r) => r.queueMs).filter((x) => Number.isFinite(x));
  return {
    requests: reqs.length,
    ok: ok.length,
    failed: reqs.length - ok.length,
    p50Ms: round(quantile(lat, 0.5), 1),
    p99Ms: round(quantile(lat, 0.99), 1),
    maxMs: round(lat.length ? Math.max(...lat) : NaN, 1),
    queuedOver0: queue.filter((q) => q > 0).length,
    queuedOver50Ms: queue.filter((q) => q > 50).length,
    maxQueueMs: round(queue.length ? Math.max(...queue) : NaN, 1),
  };
}

// ---- the run ------------------------------------------------------------------------

/**
 * Starts `baton up` with a config file (the autoscaler's tick and report interval are
 * not flags) on free ports and a temporary data dir; resolves with its addresses once
 * it has printed them. The harness stops it on exit, on an error and on Ctrl-C.
 */
async function startBatonUp(config, { startTimeoutMs = 30_000 } = {}) {
  const dir = makeTempDir('baton-bench-as-');
  const configFile = path.join(dir, 'baton.yaml');
  writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n'); // JSON is YAML
  const child = spawnChild(
    'baton up',
    process.execPath,
    [path.join(DIST, 'cli', 'main.js'), 'up', '--config', configFile, '--api-port', '0', '--dataplane-port', '0', '--data-dir', path.join(dir, 'data'), '--log-level', flags['log-level']],
    { cwd: REPO_ROOT, env: cleanChildEnv(), stopGraceMs: 15_000 },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    process.stderr.write(`[baton] ${chunk}`);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`baton up printed no addresses within ${startTimeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`)), startTimeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const api = /admin API:\s+(http:\/\/\S+)/.exec(stdout);
      const dataPlane = /data plane:\s+(http:\/\/\S+)/.exec(stdout);
      if (api && dataPlane && stdout.includes('Stop with Ctrl-C.')) {
        clearTimeout(timer);
        resolve({ apiUrl: api[1], dataPlaneUrl: dataPlane[1], child });
      }
    });
    child.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`baton up exited (code ${code}, signal ${signal})\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    });
  });
}

async function main() {
  if (!existsSync(path.join(DIST, 'cli', 'main.js'))) throw new Error('dist/src/cli/main.js is missing: run `npm run build` first');
  const { mulberry32 } = await import(pathToFileURL(path.join(DIST, 'shared', 'random.js')).href);

  const settings = {
    mode: modeName,
    seed,
    workers: workerCount,
    sleepMs,
    containerConcurrency: 1,
    maxScale,
    ...mode.scaling,
    ...mode.controlplane,
    sampleMs,
  };
  const loadBefore = os.loadavg().map((x) => round(x, 2));
  const code = codeState();
  process.stderr.write(`  code: ${code.describe}; dist built ${code.distBuiltAt}\n`);
  const arrivals = arrivalsFor(schedule, mulberry32(seed));
  const { starts, totalSec } = phaseStarts(schedule);
  process.stderr.write(
    `autoscaling, ${modeName} mode: ${schedule.length} phases, ${totalSec} s, ${arrivals.length} requests (seed ${seed})\n`,
  );

  const cluster = await startBatonUp({
    workers: workerCount,
    controlplane: mode.controlplane,
    dataplane: { metricsIntervalMs: mode.controlplane.metricsIntervalMs },
  });
  process.stderr.write(`  baton up (pid ${cluster.child.pid}): admin API ${cluster.apiUrl}, data plane ${cluster.dataPlaneUrl}, ${workerCount} workers\n`);

  const admin = new Agent({ connections: 4 });
  const adminCall = async (method, urlPath, body) => {
    const res = await request(`${cluster.apiUrl}${urlPath}`, {
      method,
      dispatcher: admin,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${urlPath} → HTTP ${res.statusCode}: ${text}`);
    return text === '' ? undefined : JSON.parse(text);
  };

  // Small resource requests: each of the two workers has half the machine (1000 cpuMillis
  // on 2 CPUs), and the default 100 cpuMillis per sandbox would cap the function at 20
  // sandboxes by placement rather than by the autoscaler.
  const spec = (name) => ({
    name,
    command: [process.execPath, path.join(HERE, 'sleep-server.mjs')],
    workdir: HERE,
    resources: { cpuMillis: 10, memoryMb: 32 },
    scaling: { containerConcurrency: 1, minScale: 0, maxScale, ...mode.scaling },
  });

  // Warm the path (cold starts, the data plane, the admin API) on a throwaway function and
  // delete it, so the measured one starts from zero sandboxes and an empty autoscaler
  // history without waiting a stable window and a grace period for it.
  await adminCall('POST', '/v1/functions', spec('warmup'));
  for (let i = 0; i < 3; i++) {
    const warm = await request(`${cluster.dataPlaneUrl}/fn/warmup/?ms=1`);
    await warm.body.text();
    if (warm.statusCode !== 200) throw new Error(`warm-up request answered ${warm.statusCode}`);
  }
  await adminCall('DELETE', '/v1/functions/warmup');
  await adminCall('POST', '/v1/functions', spec(FUNCTION));
  const st = (await adminCall('GET', `/v1/functions/${FUNCTION}`)).status;
  if (st.desiredScale !== 0 || st.readySandboxes + st.startingSandboxes !== 0) throw new Error(`function ${FUNCTION} does not start at zero: ${JSON.stringify(st)}`);
  process.stderr.write('  warmed up; function registered at zero sandboxes\n');

  // ---- open-loop load and sampling ----
  const client = new Agent({ connections: 4096, pipelining: 1, keepAliveTimeout: 60_000 });
  const url = `${cluster.dataPlaneUrl}/fn/${FUNCTION}/?ms=${sleepMs}`;
  const reqs = [];
  let sent = 0;
  let completed = 0;
  const t0 = performance.now() + 50;
  const nowMs = () => performance.now() - t0;
  const inflightDone = [];

  const fire = (a) => {
    const rec = { i: reqs.length, phase: a.phase, scheduledMs: a.atMs, sentMs: nowMs(), status: 0, latencyMs: NaN, queueMs: NaN, sandbox: '', error: '' };
    reqs.push(rec);
    sent++;
    const p = request(url, { dispatcher: client, headersTimeout: 120_000, bodyTimeout: 120_000 })
      .then(async (res) => {
        const body = await res.body.text();
        rec.status = res.statusCode;
        rec.queueMs = Number(res.headers['x-baton-queue-ms']);
        rec.sandbox = String(res.headers['x-baton-sandbox'] ?? '');
        if (res.statusCode !== 200) rec.error = body.slice(0, 300).replace(/\s+/g, ' ');
      })
      .catch((err) => {
        rec.error = `${err.code ?? ''} ${err.message}`.trim();
      })
      .finally(() => {
        rec.latencyMs = nowMs() - rec.sentMs;
        rec.doneMs = nowMs();
        completed++;
      });
    inflightDone.push(p);
  };

  const samples = [];
  let samplePending = false;
  const takeSample = async () => {
    if (samplePending) return; // never stack admin calls behind a slow one
    samplePending = true;
    const t = nowMs();
    const clientInFlight = sent - completed;
    const sentSoFar = sent;
    const completedSoFar = completed;
    try {
      const fn = await adminCall('GET', `/v1/functions/${FUNCTION}`);
      const st = fn.status;
      const a = st.autoscaler ?? {};
      samples.push({
        tSec: t / 1000,
        phase: phaseAt(schedule, t),
        offeredRps: schedule[phaseAt(schedule, t)].rps,
        sent: sentSoFar,
        completed: completedSoFar,
        clientInFlight,
        desired: st.desiredScale,
        ready: st.readySandboxes,
        starting: st.startingSandboxes,
        draining: st.drainingSandboxes,
        dpInFlight: st.inFlight,
        dpQueued: st.queued,
        stableConcurrency: a.stableConcurrency ?? 0,
        panicConcurrency: a.panicConcurrency ?? 0,
        panicking: Boolean(a.panicking),
        holdingForGrace: Boolean(a.holdingForGrace),
        sampleLatencyMs: nowMs() - t,
      });
    } catch (err) {
      process.stderr.write(`  sample at ${(t / 1000).toFixed(2)} s failed: ${err.message}\n`);
    } finally {
      samplePending = false;
    }
  };

  await new Promise((r) => setTimeout(r, Math.max(0, -nowMs())));
  const sampler = setInterval(() => void takeSample(), sampleMs);
  void takeSample();

  // The generator: every arrival that is due goes out now; then sleep until the next one.
  let maxLagMs = 0;
  await new Promise((resolve) => {
    let next = 0;
    let lastPhase = -1;
    const pump = () => {
      const now = nowMs();
      while (next < arrivals.length && arrivals[next].atMs <= now) {
        maxLagMs = Math.max(maxLagMs, now - arrivals[next].atMs);
        fire(arrivals[next++]);
      }
      const ph = phaseAt(schedule, now);
      if (ph !== lastPhase) {
        lastPhase = ph;
        process.stderr.write(`  ${(now / 1000).toFixed(1).padStart(6)} s  phase ${ph + 1}/${schedule.length}: ${schedule[ph].label}, ${schedule[ph].rps} req/s for ${schedule[ph].durationSec} s\n`);
      }
      if (next >= arrivals.length && now >= totalSec * 1000) return resolve();
      const wakeAt = Math.min(next < arrivals.length ? arrivals[next].atMs : Infinity, starts[ph] * 1000 + schedule[ph].durationSec * 1000);
      setTimeout(pump, Math.max(0, wakeAt - nowMs()));
    };
    pump();
  });
  await Promise.all(inflightDone);
  // Let the last sandbox go if the schedule's tail was too short for it (noisy machine).
  const settleDeadline = nowMs() + (mode.scaling.stableWindowSec + mode.scaling.scaleToZeroGraceSec + 15) * 1000;
  while (nowMs() < settleDeadline) {
    const last = samples.at(-1);
    if (last && last.desired === 0 && last.ready + last.starting + last.draining === 0) break;
    await new Promise((r) => setTimeout(r, sampleMs));
  }
  clearInterval(sampler);
  while (samplePending) await new Promise((r) => setTimeout(r, 10));
  await client.close();
  await admin.close();

  // ---- analysis ----
  const summary = analyse({ settings, samples, reqs, starts, totalSec, maxLagMs });
  summary.command = commandLine();
  summary.code = code;
  summary.date = new Date().toISOString();
  summary.machine = { nproc: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, loadavgBefore: loadBefore, loadavgAfter: os.loadavg().map((x) => round(x, 2)) };

  mkdirSync(outDir, { recursive: true });
  const stamp = summary.date.replace(/[:.]/g, '-');
  const base = path.join(outDir, `autoscaling-${stamp}`);
  writeFileSync(`${base}.svg`, renderSvg({ settings, samples, reqs, starts, totalSec, summary }));
  writeFileSync(`${base}.samples.csv`, samplesCsv(samples));
  writeFileSync(`${base}.requests.csv`, requestsCsv(reqs));
  writeFileSync(`${base}.json`, JSON.stringify(summary, null, 2) + '\n');

  printReport(summary);
  const rel = (f) => path.relative(process.cwd(), f) || f;
  process.stdout.write(`\nplot:     ${rel(`${base}.svg`)}\nsamples:  ${rel(`${base}.samples.csv`)}\nrequests: ${rel(`${base}.requests.csv`)}\nsummary:  ${rel(`${base}.json`)}\n`);

  await adminCall('DELETE', `/v1/functions/${FUNCTION}`).catch(() => {});
}

// ---- analysis -------------------------------------------------------------------------

function analyse({ settings, samples, reqs, starts, totalSec, maxLagMs }) {
  const failures = {};
  for (const r of reqs) {
    if (r.status === 200) continue;
    const key = r.status ? `HTTP ${r.status}` : `error ${r.error.split(' ')[0] || 'unknown'}`;
    failures[key] = (failures[key] ?? 0) + 1;
  }
  const failureExamples = reqs.filter((r) => r.status !== 200).slice(0, 5).map((r) => ({ atSec: round(r.sentMs / 1000, 2), status: r.status, error: r.error }));
  const perPhase = schedule.map((p, i) => ({ phase: i + 1, label: p.label, rps: p.rps, fromSec: starts[i], toSec: starts[i] + p.durationSec, ...latencyStats(reqs.filter((r) => r.phase === i)) }));

  const first = (from, pred) => samples.find((s) => s.tSec >= from && pred(s));
  const after = (s, t) => (s ? round(s.tSec - t, 2) : null);
  const within = (a, b) => samples.filter((s) => s.tSec >= a && s.tSec < b);
  const maxOf = (ss, f) => (ss.length ? Math.max(...ss.map(f)) : null);
  const ccDemand = (rps) => (rps * settings.sleepMs) / 1000 / settings.containerConcurrency;

  const bursts = [];
  schedule.forEach((p, i) => {
    if (!/burst/.test(p.label)) return;
    const from = starts[i];
    const to = from + p.durationSec;
    const demand = ccDemand(p.rps);
    const need = Math.ceil(demand);
    const during = within(from, to);
    const burstReqs = reqs.filter((r) => r.phase === i);
    // When the backlog was gone: the last request of the burst that waited > 50 ms for a token or a sandbox.
    const lastQueued = burstReqs.filter((r) => r.queueMs > 50).at(-1);
    const before = samples.filter((s) => s.tSec < from).at(-1);
    const panicStart = first(from, (s) => s.panicking);
    bursts.push({
      label: p.label,
      fromSec: from,
      toSec: to,
      rps: p.rps,
      demandSandboxes: round(demand, 1),
      readyAtStart: before?.ready ?? 0,
      alreadyPanicking: Boolean(before?.panicking),
      panicAfterSec: !before?.panicking && panicStart && panicStart.tSec < to ? after(panicStart, from) : null,
      desiredReachesDemandAfterSec: after(first(from, (s) => s.desired >= need), from),
      readyReachesDemandAfterSec: after(first(from, (s) => s.ready >= need), from),
      firstReadyAfterSec: after(first(from, (s) => s.ready >= 1), from),
      backlogClearedAfterSec: lastQueued ? round(lastQueued.sentMs / 1000 - from, 2) : 0,
      peakDesired: maxOf(within(from, to + 5), (s) => s.desired),
      peakReady: maxOf(within(from, to + 5), (s) => s.ready),
      peakLive: maxOf(within(from, to + 5), (s) => s.ready + s.starting),
      peakClientInFlight: maxOf(within(from, to + 1), (s) => s.clientInFlight),
      ...latencyStats(burstReqs),
    });
  });

  // Scale-down after the first burst, into the following low phase: when the burst's panic
  // ends, the lowest scale reached and when, and whether the scale went up again at a
  // steady low rate (a new panic, or any rise at all).
  const b1 = schedule.findIndex((p) => /burst/.test(p.label));
  let scaleDown = null;
  if (b1 >= 0 && schedule[b1 + 1]?.rps > 0) {
    const from = starts[b1] + schedule[b1].durationSec;
    const to = from + schedule[b1 + 1].durationSec;
    const peak = maxOf(within(starts[b1], from + 1), (s) => s.desired);
    const low = within(from, to);
    const lowest = low.length ? Math.min(...low.map((s) => s.desired)) : null;
    const panicEnd = first(from, (s) => !s.panicking);
    const firstDrop = first(from, (s) => s.desired < peak);
    const reachedLowest = low.find((s) => s.desired === lowest);
    const readyLowest = low.find((s) => s.ready <= lowest && s.draining === 0);
    const afterLowest = reachedLowest ? low.filter((s) => s.tSec >= reachedLowest.tSec) : [];
    let rises = 0;
    for (let k = 1; k < low.length; k++) if (low[k].desired > low[k - 1].desired) rises++;
    scaleDown = {
      burstEndSec: from,
      peakDesired: peak,
      lowDemandSandboxes: round(ccDemand(schedule[b1 + 1].rps), 1),
      panicEndsAfterSec: panicEnd && panicEnd.tSec < to ? after(panicEnd, from) : null,
      firstDecreaseAfterSec: firstDrop && firstDrop.tSec < to ? after(firstDrop, from) : null,
      lowestDesired: lowest,
      lowestDesiredAfterSec: reachedLowest ? after(reachedLowest, from) : null,
      readyAtLowestAfterSec: readyLowest ? after(readyLowest, from) : null,
      risesInLowPhase: rises,
      maxDesiredAfterLowest: maxOf(afterLowest, (s) => s.desired),
      desiredAtEndOfLowPhase: low.at(-1)?.desired ?? null,
      maxDrainingSandboxes: maxOf(low, (s) => s.draining),
    };
  }

  // Every panic, as the samples saw it: when, how long, at which scale, in which phase it began.
  const panics = [];
  for (let k = 0; k < samples.length; k++) {
    if (!samples[k].panicking || (k > 0 && samples[k - 1].panicking)) continue;
    let j = k;
    while (j + 1 < samples.length && samples[j + 1].panicking) j++;
    const endSec = j + 1 < samples.length ? samples[j + 1].tSec : samples[j].tSec;
    const during = samples.slice(k, j + 1);
    const ph = samples[k].phase;
    panics.push({
      fromSec: round(samples[k].tSec, 2),
      durationSec: round(endSec - samples[k].tSec, 2),
      phase: `${ph + 1} ${schedule[ph].label}`,
      offeredSandboxes: round(ccDemand(schedule[ph].rps), 1),
      readyWhenSeen: samples[k].ready,
      maxDesired: maxOf(during, (s) => s.desired),
    });
  }

  // Scale to zero: from the last request of each loaded stretch that is followed by idle.
  const toZero = [];
  schedule.forEach((p, i) => {
    if (p.rps !== 0 || i === 0 || schedule[i - 1].rps === 0) return;
    const from = starts[i];
    const to = i + 1 < schedule.length ? from + p.durationSec : Infinity;
    const lastDone = Math.max(...reqs.filter((r) => r.phase < i).map((r) => r.doneMs)) / 1000;
    const graceStart = first(lastDone, (s) => s.holdingForGrace);
    const desiredZero = first(lastDone, (s) => s.desired === 0);
    const allGone = first(lastDone, (s) => s.desired === 0 && s.ready + s.starting + s.draining === 0);
    toZero.push({
      afterPhase: schedule[i - 1].label,
      lastResponseSec: round(lastDone, 2),
      expectedSec: settings.stableWindowSec + settings.scaleToZeroGraceSec,
      graceHoldStartsAfterSec: graceStart && graceStart.tSec < to ? after(graceStart, lastDone) : null,
      desiredZeroAfterSec: desiredZero && desiredZero.tSec < to ? after(desiredZero, lastDone) : null,
      lastSandboxGoneAfterSec: allGone && allGone.tSec < to ? after(allGone, lastDone) : null,
    });
  });

  const sampleGaps = samples.slice(1).map((s, k) => (s.tSec - samples[k].tSec) * 1000);
  return {
    benchmark: 'autoscaling',
    settings,
    schedule,
    durationSec: totalSec,
    overall: { ...latencyStats(reqs), failures, failureExamples },
    generator: { maxSendLagMs: round(maxLagMs, 1), maxSampleGapMs: round(Math.max(...sampleGaps), 0), samples: samples.length },
    peaks: {
      desired: maxOf(samples, (s) => s.desired),
      ready: maxOf(samples, (s) => s.ready),
      live: maxOf(samples, (s) => s.ready + s.starting + s.draining),
      clientInFlight: maxOf(samples, (s) => s.clientInFlight),
    },
    bursts,
    scaleDown,
    panics,
    toZero,
    perPhase,
  };
}

function printReport(s) {
  const o = s.overall;
  const lines = [
    '',
    `autoscaling, ${s.command}  (${s.machine.nproc} CPUs, node ${s.machine.node}, load average ${s.machine.loadavgBefore.join(' ')} before, ${s.machine.loadavgAfter.join(' ')} after)`,
    `settings: containerConcurrency 1, sleep ${s.settings.sleepMs} ms, maxScale ${s.settings.maxScale}, stable ${s.settings.stableWindowSec} s, panic ${s.settings.panicWindowSec} s, grace ${s.settings.scaleToZeroGraceSec} s, tick ${s.settings.scalingPeriodMs} ms, ${s.settings.workers} workers`,
    `requests ${o.requests}, ok ${o.ok}, failed ${o.failed}${o.failed ? ' ' + JSON.stringify(o.failures) : ''}; latency p50 ${o.p50Ms} ms, p99 ${o.p99Ms} ms, max ${o.maxMs} ms`,
    `queued (x-baton-queue-ms): > 0 ms ${o.queuedOver0}, > 50 ms ${o.queuedOver50Ms}, max ${o.maxQueueMs} ms; generator max send lag ${s.generator.maxSendLagMs} ms, max sample gap ${s.generator.maxSampleGapMs} ms`,
    '',
    'phase                 req/s  requests  failed  p50 ms  p99 ms  max ms  queued>50ms  max queue ms',
    ...s.perPhase.map((p) =>
      `${String(p.phase).padStart(2)} ${p.label.padEnd(17)} ${String(p.rps).padStart(6)} ${String(p.requests).padStart(9)} ${String(p.failed).padStart(7)} ${String(p.p50Ms ?? '-').padStart(7)} ${String(p.p99Ms ?? '-').padStart(7)} ${String(p.maxMs ?? '-').padStart(7)} ${String(p.queuedOver50Ms).padStart(12)} ${String(p.maxQueueMs ?? '-').padStart(13)}`,
    ),
    '',
    ...s.bursts.map(
      (b) =>
        `${b.label} at ${b.fromSec} s (${b.rps} req/s ≈ ${b.demandSandboxes} sandboxes busy; ${b.readyAtStart} ready at start): ` +
        `panic ${b.alreadyPanicking ? 'already on' : `after ${b.panicAfterSec} s`}, desired ≥ demand after ${b.desiredReachesDemandAfterSec} s, ready ≥ demand after ${b.readyReachesDemandAfterSec} s, ` +
        `backlog (queue > 50 ms) until ${b.backlogClearedAfterSec} s; peaks: desired ${b.peakDesired}, ready ${b.peakReady}, ready+starting ${b.peakLive}, client in flight ${b.peakClientInFlight}`,
    ),
  ];
  if (s.scaleDown) {
    const d = s.scaleDown;
    lines.push(
      `scale-down after the burst (stable window ${s.settings.stableWindowSec} s): panic ends after ${d.panicEndsAfterSec} s, first decrease after ${d.firstDecreaseAfterSec} s, ` +
        `desired ${d.peakDesired} → lowest ${d.lowestDesired} after ${d.lowestDesiredAfterSec} s (ready after ${d.readyAtLowestAfterSec} s; low demand ≈ ${d.lowDemandSandboxes}); ` +
        `at the steady low rate desired rose ${d.risesInLowPhase} times, to at most ${d.maxDesiredAfterLowest} after its lowest, ${d.desiredAtEndOfLowPhase} at the end of the phase`,
    );
  }
  lines.push(
    `panics: ${s.panics.length}`,
    ...s.panics.map((p) => `  at ${p.fromSec} s for ${p.durationSec} s, in phase ${p.phase} (offered ≈ ${p.offeredSandboxes} busy), ${p.readyWhenSeen} ready then, desired up to ${p.maxDesired}`),
  );
  for (const z of s.toZero) {
    lines.push(
      `to zero after "${z.afterPhase}" (last response at ${z.lastResponseSec} s; stable + grace = ${z.expectedSec} s): grace hold after ${z.graceHoldStartsAfterSec} s, desired 0 after ${z.desiredZeroAfterSec} s, last sandbox gone after ${z.lastSandboxGoneAfterSec} s`,
    );
  }
  if (o.failed) lines.push('', `FAILURES: ${JSON.stringify(o.failures)}`, ...o.failureExamples.map((f) => `  at ${f.atSec} s: ${f.status} ${f.error}`));
  process.stdout.write(lines.join('\n') + '\n');
}

// ---- CSV ------------------------------------------------------------------------------

function csv(rows, cols) {
  const cell = (v) => {
    if (typeof v === 'number') return Number.isFinite(v) ? String(round(v, 3)) : '';
    if (typeof v === 'boolean') return v ? '1' : '0';
    const t = String(v ?? '');
    return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  return [cols.join(','), ...rows.map((r) => cols.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
}

function samplesCsv(samples) {
  return csv(
    samples.map((s) => ({ ...s, phase: s.phase + 1 })),
    ['tSec', 'phase', 'offeredRps', 'sent', 'completed', 'clientInFlight', 'desired', 'ready', 'starting', 'draining', 'dpInFlight', 'dpQueued', 'stableConcurrency', 'panicConcurrency', 'panicking', 'holdingForGrace', 'sampleLatencyMs'],
  );
}

function requestsCsv(reqs) {
  return csv(
    reqs.map((r) => ({ ...r, phase: r.phase + 1 })),
    ['i', 'phase', 'scheduledMs', 'sentMs', 'doneMs', 'status', 'latencyMs', 'queueMs', 'sandbox', 'error'],
  );
}

// ---- the plot (hand-written SVG) ------------------------------------------------------

const esc = (t) => String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A step of 1, 2 or 5 × 10^k giving about `count` ticks over [0, max]. */
function niceStep(max, count) {
  const raw = Math.max(max, 1e-9) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function renderSvg({ settings, samples, reqs, starts, totalSec, summary }) {
  const W = 1100;
  const H = 760;
  const L = 70;
  const R = 1040;
  const main = { top: 132, bottom: 478 };
  const rate = { top: 508, bottom: 598 };
  const endSec = Math.max(totalSec, samples.at(-1)?.tSec ?? 0);
  const xStep = niceStep(endSec, 12);
  const xMax = Math.ceil(endSec / xStep) * xStep;
  const x = (t) => L + (Math.min(Math.max(t, 0), xMax) / xMax) * (R - L);

  const yTop = Math.max(5, ...samples.map((s) => Math.max(s.desired, s.ready + s.starting, s.clientInFlight)));
  const yStep = niceStep(yTop, 8);
  const yMax = Math.ceil(yTop / yStep) * yStep;
  const y = (v) => main.bottom - (v / yMax) * (main.bottom - main.top);

  // Sent per second, from the requests themselves.
  const perSec = new Array(Math.ceil(xMax)).fill(0);
  for (const r of reqs) perSec[Math.floor(r.sentMs / 1000)] += 1;
  const rTop = Math.max(1, ...schedule.map((p) => p.rps), ...perSec);
  const rStep = niceStep(rTop, 3);
  const rMax = Math.ceil(rTop / rStep) * rStep;
  const ry = (v) => rate.bottom - (v / rMax) * (rate.bottom - rate.top);

  const f = (n) => n.toFixed(1);
  const stepPath = (val) => {
    if (samples.length === 0) return '';
    let d = `M${f(x(samples[0].tSec))},${f(y(val(samples[0])))}`;
    for (let k = 1; k < samples.length; k++) d += `H${f(x(samples[k].tSec))}V${f(y(val(samples[k])))}`;
    return d;
  };
  const linePath = (val) => samples.map((s, k) => `${k ? 'L' : 'M'}${f(x(s.tSec))},${f(y(val(s)))}`).join('');
  // The band between ready and ready + starting: sandboxes being created.
  const startingBand = () => {
    if (samples.length === 0) return '';
    let upper = `M${f(x(samples[0].tSec))},${f(y(samples[0].ready + samples[0].starting))}`;
    for (let k = 1; k < samples.length; k++) upper += `H${f(x(samples[k].tSec))}V${f(y(samples[k].ready + samples[k].starting))}`;
    let lower = '';
    for (let k = samples.length - 1; k >= 1; k--) lower += `V${f(y(samples[k].ready))}H${f(x(samples[k - 1].tSec))}`;
    return `${upper}${lower}V${f(y(samples[0].ready))}Z`;
  };

  const panicRects = [];
  for (let k = 0; k < samples.length; k++) {
    if (!samples[k].panicking) continue;
    let j = k;
    while (j + 1 < samples.length && samples[j + 1].panicking) j++;
    const t1 = j + 1 < samples.length ? samples[j + 1].tSec : samples[j].tSec;
    panicRects.push([samples[k].tSec, t1]);
    k = j;
  }

  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<title>Baton autoscaling under a bursty open-loop load (${esc(summary.command)})</title>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${L}" y="30" font-size="18" font-weight="bold" fill="#222">Baton autoscaling: desired scale, ready sandboxes and requests in flight under a bursty load</text>`);
  out.push(
    `<text x="${L}" y="52" fill="#444">${esc(`${settings.mode === 'knative' ? 'Knative defaults' : 'quick mode'}: stable window ${settings.stableWindowSec} s, panic window ${settings.panicWindowSec} s, scale-to-zero grace ${settings.scaleToZeroGraceSec} s, tick ${settings.scalingPeriodMs} ms, reports every ${settings.metricsIntervalMs} ms`)}</text>`,
  );
  out.push(
    `<text x="${L}" y="70" fill="#444">${esc(`containerConcurrency 1, maxScale ${settings.maxScale}, each request sleeps ${settings.sleepMs} ms; ${settings.workers} workers; open-loop Poisson arrivals, seed ${settings.seed}; ${summary.date.slice(0, 16).replace('T', ' ')} UTC, ${summary.machine.nproc} CPUs; ${summary.code.describe}`)}</text>`,
  );

  // Legend.
  const legend = [
    ['line', '#1f77b4', 'desired scale', '6 3', 2.5],
    ['line', '#2ca02c', 'ready sandboxes', '', 2.5],
    ['band', '#2ca02c', 'starting sandboxes'],
    ['line', '#ff7f0e', 'requests in flight (client: sent − completed)', '', 1.5],
    ['line', '#555', `offered load (req/s × ${settings.sleepMs / 1000} s)`, '1 3', 1.2],
    ['band', '#d62728', 'autoscaler panicking'],
  ];
  let lx = L;
  let ly = 92;
  for (const [kind, color, label, dash, width] of legend) {
    const itemWidth = 32 + label.length * 6.3 + 16;
    if (lx > L && lx + itemWidth - 16 > R) {
      lx = L;
      ly += 18;
    }
    if (kind === 'line') out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 26}" y2="${ly}" stroke="${color}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    else out.push(`<rect x="${lx}" y="${ly - 6}" width="26" height="12" fill="${color}" fill-opacity="${color === '#d62728' ? 0.12 : 0.25}"/>`);
    out.push(`<text x="${lx + 32}" y="${ly + 4}" fill="#222">${esc(label)}</text>`);
    lx += itemWidth;
  }

  // Main panel: phase bands, panic shading, grid, series.
  out.push(`<g>`);
  schedule.forEach((p, i) => {
    if (i % 2 === 1) out.push(`<rect x="${f(x(starts[i]))}" y="${main.top}" width="${f(x(starts[i] + p.durationSec) - x(starts[i]))}" height="${main.bottom - main.top}" fill="#f4f4f4"/>`);
  });
  for (const [a, b] of panicRects) out.push(`<rect x="${f(x(a))}" y="${main.top}" width="${f(Math.max(1, x(b) - x(a)))}" height="${main.bottom - main.top}" fill="#d62728" fill-opacity="0.12"/>`);
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    out.push(`<line x1="${L}" y1="${f(y(v))}" x2="${R}" y2="${f(y(v))}" stroke="${v === 0 ? '#888' : '#e0e0e0'}" stroke-width="1"/>`);
    out.push(`<text x="${L - 8}" y="${f(y(v) + 4)}" text-anchor="end" fill="#444">${round(v, 2)}</text>`);
  }
  schedule.forEach((p, i) => {
    const cx = (x(starts[i]) + x(starts[i] + p.durationSec)) / 2;
    out.push(`<text x="${f(cx)}" y="${main.top + 14}" text-anchor="middle" fill="#666" font-size="11">${esc(p.label)}</text>`);
    out.push(`<text x="${f(cx)}" y="${main.top + 27}" text-anchor="middle" fill="#888" font-size="10">${p.rps ? `${p.rps} req/s` : ''}</text>`);
  });
  // Offered load in sandboxes: rate × service time / containerConcurrency (Little's law).
  let demand = '';
  schedule.forEach((p, i) => {
    const v = (p.rps * settings.sleepMs) / 1000 / settings.containerConcurrency;
    demand += `${i ? 'V' : 'M' + f(x(0)) + ','}${f(y(v))}H${f(x(starts[i] + p.durationSec))}`;
  });
  out.push(`<path d="${demand}" fill="none" stroke="#555" stroke-width="1.2" stroke-dasharray="1 3"/>`);
  out.push(`<path d="${startingBand()}" fill="#2ca02c" fill-opacity="0.25" stroke="none"/>`);
  out.push(`<path d="${linePath((s) => s.clientInFlight)}" fill="none" stroke="#ff7f0e" stroke-width="1.5" stroke-linejoin="round"/>`);
  out.push(`<path d="${stepPath((s) => s.ready)}" fill="none" stroke="#2ca02c" stroke-width="2.5"/>`);
  out.push(`<path d="${stepPath((s) => s.desired)}" fill="none" stroke="#1f77b4" stroke-width="2.5" stroke-dasharray="6 3"/>`);
  out.push(`<rect x="${L}" y="${main.top}" width="${R - L}" height="${main.bottom - main.top}" fill="none" stroke="#888"/>`);
  out.push(`<text transform="translate(22 ${(main.top + main.bottom) / 2}) rotate(-90)" text-anchor="middle" fill="#222">sandboxes / requests</text>`);
  out.push(`</g>`);

  // Rate panel: requests sent per second (bars) and the offered rate (step).
  out.push(`<g>`);
  for (let v = 0; v <= rMax + 1e-9; v += rStep) {
    out.push(`<line x1="${L}" y1="${f(ry(v))}" x2="${R}" y2="${f(ry(v))}" stroke="${v === 0 ? '#888' : '#e8e8e8'}"/>`);
    out.push(`<text x="${L - 8}" y="${f(ry(v) + 4)}" text-anchor="end" fill="#444">${round(v, 2)}</text>`);
  }
  perSec.forEach((n, sec) => {
    if (n > 0) out.push(`<rect x="${f(x(sec) + 0.5)}" y="${f(ry(n))}" width="${f(Math.max(0.5, x(sec + 1) - x(sec) - 1))}" height="${f(rate.bottom - ry(n))}" fill="#9e9e9e" fill-opacity="0.45"/>`);
  });
  let d = '';
  schedule.forEach((p, i) => {
    d += `${i ? 'V' : 'M' + f(x(0)) + ','}${f(ry(p.rps))}H${f(x(starts[i] + p.durationSec))}`;
  });
  out.push(`<path d="${d}" fill="none" stroke="#555" stroke-width="1.5"/>`);
  out.push(`<rect x="${L}" y="${rate.top}" width="${R - L}" height="${rate.bottom - rate.top}" fill="none" stroke="#888"/>`);
  out.push(`<text transform="translate(22 ${(rate.top + rate.bottom) / 2}) rotate(-90)" text-anchor="middle" fill="#222">req/s</text>`);
  out.push(`<text x="${R - 4}" y="${rate.top + 14}" text-anchor="end" fill="#555" font-size="11">offered rate (line), requests sent per second (bars)</text>`);
  out.push(`</g>`);

  // Phase boundaries across both panels, and the time axis.
  starts.slice(1).forEach((t) => {
    out.push(`<line x1="${f(x(t))}" y1="${main.top}" x2="${f(x(t))}" y2="${rate.bottom}" stroke="#999" stroke-dasharray="2 3"/>`);
  });
  for (let t = 0; t <= xMax + 1e-9; t += xStep) {
    out.push(`<line x1="${f(x(t))}" y1="${rate.bottom}" x2="${f(x(t))}" y2="${rate.bottom + 5}" stroke="#666"/>`);
    out.push(`<line x1="${f(x(t))}" y1="${main.bottom}" x2="${f(x(t))}" y2="${main.bottom + 4}" stroke="#666"/>`);
    out.push(`<text x="${f(x(t))}" y="${rate.bottom + 18}" text-anchor="middle" fill="#444">${round(t, 1)}</text>`);
  }
  out.push(`<text x="${(L + R) / 2}" y="${rate.bottom + 36}" text-anchor="middle" fill="#222">time since the schedule started (s)</text>`);

  // Key numbers.
  const o = summary.overall;
  const notes = [
    `${o.requests} requests, ${o.failed} failed${o.failed ? ` (${Object.entries(o.failures).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}; latency p50 ${o.p50Ms} ms, p99 ${o.p99Ms} ms, max ${o.maxMs} ms; ${o.queuedOver50Ms} requests waited > 50 ms in the data plane (x-baton-queue-ms).`,
    ...summary.bursts.map(
      (b) =>
        `${b.label} at ${b.fromSec} s (≈ ${b.demandSandboxes} busy): desired ≥ ${Math.ceil(b.demandSandboxes)} after ${b.desiredReachesDemandAfterSec} s, ready after ${b.readyReachesDemandAfterSec} s; peak desired ${b.peakDesired}, ready ${b.peakReady}, in flight ${b.peakClientInFlight}; p99 ${b.p99Ms} ms.`,
    ),
  ];
  if (summary.scaleDown) {
    const sd = summary.scaleDown;
    notes.push(
      `After the burst: panic ends ${sd.panicEndsAfterSec} s after it; desired ${sd.peakDesired} → ${sd.lowestDesired} by ${sd.lowestDesiredAfterSec} s (low demand ≈ ${sd.lowDemandSandboxes} busy), then rose ${sd.risesInLowPhase} times at the steady low rate, to at most ${sd.maxDesiredAfterLowest}. Panics: ${summary.panics.length}.`,
    );
  }
  if (summary.toZero.length) {
    notes.push(
      `To zero, after the last response (stable window + grace = ${summary.toZero[0].expectedSec} s): ` +
        summary.toZero.map((z) => `after "${z.afterPhase}" ${z.lastSandboxGoneAfterSec} s`).join(', ') +
        '.',
    );
  }
  notes.forEach((t, k) => out.push(`<text x="${L}" y="${rate.bottom + 62 + k * 17}" fill="#333" font-size="11.5">${esc(t)}</text>`));
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}

// ---- entry ----------------------------------------------------------------------------

runMain(main);
