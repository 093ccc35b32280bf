#!/usr/bin/env node
// Cold start, node runtime: how long a Lambda-style handler takes to become ready with a
// pre-booted runtime process from the pool, without one, and end to end through `baton
// up`, against a raw Node HTTP server spawned by hand, in the same run.
//
// Why: DESIGN.md, "Performance targets": with a pre-warmed pool, a Node function's cold
// start ≤ 15 ms end to end. Its baselines here: Node with a clean environment answers its
// first request 29–34 ms after spawn; "an already-booted Node process told to load a
// function" 11.5 ms. The machine is shared and noisy, so the sides run interleaved (the
// order rotating each iteration) and are compared by their medians.
//
//   raw:            spawn(node -e "<http server>") with only PATH in its environment; poll
//                   GET / on a fresh connection every ~1 ms until a 200; spawn() → response.
//   create, pooled: NodeRuntime.create() in this process (poolSize 2; the pool is full and
//                   settled before each create), call → ready; then the first GET.
//   create, fresh:  the same with poolSize 0: spawn, boot, load, probe.
//   e2e, pooled:    with `baton up` running (node.poolSize 2), deploy a new function
//                   running examples/node-hello, time one GET {dataplane}/fn/<name>/ from
//                   send to complete response (it causes the cold start), delete it.
//   e2e, fresh:     the same against a second `baton up` with node.poolSize 0.
//
//   node bench/coldstart-node/run.mjs [--iterations 20] [--warmup 3] [--no-e2e]
//
// Needs: npm run build (or npx tsc -p tsconfig.json).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import {
  REPO_ROOT,
  adminApi,
  cleanChildEnv,
  freePort,
  makeTempDir,
  median,
  quantile,
  round,
  runMain,
  sleep,
  spawnChild,
  stopChild,
} from '../lib/harness.mjs';

const TARGET_MS = 15; // pooled, end to end (DESIGN.md)
const EXAMPLE_DIR = path.join(REPO_ROOT, 'examples', 'node-hello');
const DIST = path.join(REPO_ROOT, 'dist', 'src');
const RAW_SERVER = "require('http').createServer((q, s) => s.end('hello\\n')).listen(+process.env.PORT, '127.0.0.1')";

const { values: flags } = parseArgs({
  options: {
    iterations: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    'no-e2e': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('node bench/coldstart-node/run.mjs [--iterations 20] [--warmup 3] [--no-e2e]\n');
  process.exit(0);
}
const iterations = Number(flags.iterations);
const warmup = Number(flags.warmup);
if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations must be a positive integer');
if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup must be a non-negative integer');

/** One GET on a fresh connection (connection: close); resolves with status and body once the server closes. */
function getOnce(host, port, urlPath, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const chunks = [];
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(Object.assign(new Error(`GET ${urlPath} timed out`), { code: 'ETIMEDOUT' }));
    });
    socket.once('connect', () => socket.write(`GET ${urlPath} HTTP/1.1\r\nhost: ${host}:${port}\r\nuser-agent: baton-bench\r\nconnection: close\r\n\r\n`));
    socket.on('data', (c) => chunks.push(c));
    socket.once('end', () => {
      socket.destroy();
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]);
      if (!status) return reject(Object.assign(new Error('connection closed before a response'), { code: 'ECONNRESET' }));
      const headEnd = text.indexOf('\r\n\r\n');
      resolve({ status, head: text.slice(0, headEnd), body: text.slice(headEnd + 4) });
    });
    socket.once('error', reject);
  });
}

async function rawColdStart() {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, ['-e', RAW_SERVER], { env: { PATH: '/usr/bin:/bin', PORT: String(port) }, stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    for (;;) {
      try {
        const res = await getOnce('127.0.0.1', port, '/', 5_000);
        if (res.status === 200) return performance.now() - t0;
      } catch (err) {
        if (err.code !== 'ECONNREFUSED' && err.code !== 'ECONNRESET') throw err;
      }
      if (child.exitCode !== null) throw new Error(`the raw server exited with ${child.exitCode}`);
      await sleep(1);
    }
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

const spec = (name) => ({
  name,
  runtime: 'node',
  command: [],
  handler: 'index.handler',
  workdir: EXAMPLE_DIR,
  env: {},
  resources: { cpuMillis: 100, memoryMb: 128 },
  scaling: {},
  timeoutMs: 30_000,
});

/** NodeRuntime.create() in this process: call → ready, then the first response. */
async function runtimeColdStart(runtime, poolSize, name) {
  if (poolSize > 0) {
    while (runtime.idleCount < poolSize) await sleep(5);
    await sleep(100); // the refill's boot is over: measure the create alone
  }
  const t0 = performance.now();
  const sandbox = await runtime.create({ sandboxId: name, spec: spec('bench'), signal: new AbortController().signal });
  const createMs = performance.now() - t0;
  const res = await getOnce('127.0.0.1', sandbox.port, '/?name=bench');
  const firstMs = performance.now() - t0;
  await sandbox.stop();
  if (res.status !== 200 || !res.body.includes('Hello, bench!')) throw new Error(`the sandbox answered ${res.status} ${res.body.slice(0, 200)}`);
  return { createMs, firstMs, latency: sandbox.latency };
}

async function startBatonWith(poolSize) {
  const dataDir = makeTempDir('baton-bench-node-');
  const config = path.join(dataDir, 'up.yaml');
  writeFileSync(config, `worker:\n  node:\n    poolSize: ${poolSize}\n`);
  const child = spawnChild(
    `baton up (pool ${poolSize})`,
    process.execPath,
    [path.join(DIST, 'cli', 'main.js'), 'up', '--config', config, '--api-port', '0', '--dataplane-port', '0', '--data-dir', dataDir, '--log-level', 'warn'],
    { cwd: REPO_ROOT, env: cleanChildEnv(), stopGraceMs: 15_000 },
  );
  let stdout = '';
  child.stderr.on('data', (c) => process.stderr.write(`[baton ${poolSize}] ${c}`));
  const urls = await new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c) => {
      stdout += c;
      const api = /admin API:\s+(http:\/\/\S+)/.exec(stdout);
      const dp = /data plane:\s+(http:\/\/\S+)/.exec(stdout);
      if (api && dp && stdout.includes('Stop with Ctrl-C.')) resolve({ apiUrl: api[1], dataPlaneUrl: dp[1] });
    });
    child.exited.then(({ code }) => reject(new Error(`baton up exited with ${code}:\n${stdout}`)));
  });
  return { ...urls, child };
}

async function e2eColdStart(baton, name) {
  await sleep(300); // the previous take's refill has booted
  await adminApi(baton.apiUrl, 'POST', '/v1/functions', { name, runtime: 'node', handler: 'index.handler', workdir: EXAMPLE_DIR, scaling: { maxScale: 1 } });
  const { hostname, port } = new URL(baton.dataPlaneUrl);
  const t0 = performance.now();
  const res = await getOnce(hostname, Number(port), `/fn/${name}/?name=bench`);
  const ms = performance.now() - t0;
  await adminApi(baton.apiUrl, 'DELETE', `/v1/functions/${name}`);
  if (res.status !== 200 || !res.body.includes('Hello, bench!')) throw new Error(`${name} answered ${res.status} ${res.body.slice(0, 200)}`);
  return ms;
}

const stats = (xs) => ({
  median: round(median(xs), 2),
  p90: round(quantile(xs, 0.9), 2),
  min: round(Math.min(...xs), 2),
  max: round(Math.max(...xs), 2),
  n: xs.length,
});

async function main() {
  if (!existsSync(path.join(DIST, 'worker', 'runtimes', 'node.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const { NodeRuntime } = await import(path.join(DIST, 'worker', 'runtimes', 'node.js'));
  const { silentLogger } = await import(path.join(DIST, 'shared', 'logging.js'));
  const dataDir = makeTempDir('baton-bench-node-rt-');
  const make = (poolSize) =>
    new NodeRuntime({
      workerId: `bench-${process.pid}-${poolSize}`,
      host: '127.0.0.1',
      dataDir,
      startTimeoutMs: 30_000,
      stopGraceMs: 2000,
      poolSize,
      nodePath: process.execPath,
      log: silentLogger(),
    });
  const pooled = make(2);
  const fresh = make(0);
  await pooled.start();
  await fresh.start();
  const e2e = !flags['no-e2e'];
  const batons = e2e ? { pooled: await startBatonWith(2), fresh: await startBatonWith(0) } : undefined;

  const sides = ['raw', 'pooled', 'fresh', ...(e2e ? ['e2ePooled', 'e2eFresh'] : [])];
  const results = Object.fromEntries(sides.map((s) => [s, []]));
  const firsts = { pooled: [], fresh: [] };
  const breakdown = [];
  for (let i = 0; i < warmup + iterations; i++) {
    const recorded = i >= warmup;
    const label = recorded ? `${i - warmup + 1}/${iterations}` : `warm-up ${i + 1}/${warmup}`;
    const order = sides.map((_, k) => sides[(k + i) % sides.length]);
    const line = [];
    for (const side of order) {
      let ms;
      if (side === 'raw') ms = await rawColdStart();
      else if (side === 'pooled' || side === 'fresh') {
        const r = await runtimeColdStart(side === 'pooled' ? pooled : fresh, side === 'pooled' ? 2 : 0, `sb-bench-${side}-${i}`);
        ms = r.createMs;
        if (recorded) {
          firsts[side].push(r.firstMs);
          if (side === 'pooled') breakdown.push(r.latency);
        }
      } else ms = await e2eColdStart(side === 'e2ePooled' ? batons.pooled : batons.fresh, `nb-${side === 'e2ePooled' ? 'p' : 'f'}-${i}`);
      if (recorded) results[side].push(ms);
      line.push(`${side} ${ms.toFixed(2)}`);
    }
    process.stderr.write(`${label.padEnd(12)} ${line.join('  ')}\n`);
  }
  await pooled.close();
  await fresh.close();
  if (batons) await Promise.all([stopChild(batons.pooled.child), stopChild(batons.fresh.child)]);

  const summary = {
    benchmark: 'coldstart-node',
    date: new Date().toISOString(),
    command: `node bench/coldstart-node/run.mjs --iterations ${iterations} --warmup ${warmup}${e2e ? '' : ' --no-e2e'}`,
    machine: { nproc: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, loadavg: os.loadavg().map((x) => round(x, 2)) },
    ms: Object.fromEntries(sides.map((s) => [s, stats(results[s])])),
    firstResponseMs: { pooled: stats(firsts.pooled), fresh: stats(firsts.fresh) },
    pooledBreakdownUs: Object.fromEntries(['runtimeCreateUs', 'spawnUs', 'readinessProbeUs', 'totalUs'].map((k) => [k, round(median(breakdown.map((b) => b[k])), 0)])),
  };
  const row = (cells) => cells.map((c, k) => String(c)[k === 0 ? 'padEnd' : 'padStart'](k === 0 ? 36 : 9)).join(' ');
  const lines = ['', `node cold start, ${summary.command} (${summary.machine.nproc} CPUs, node ${summary.machine.node}, load ${summary.machine.loadavg.join(' ')})`];
  lines.push(row(['ms', 'median', 'p90', 'min', 'max', 'n']));
  const names = {
    raw: 'raw node -e: spawn → first 200',
    pooled: 'create(), pooled: call → ready',
    fresh: 'create(), no pool: call → ready',
    e2ePooled: 'e2e first response, pooled',
    e2eFresh: 'e2e first response, no pool',
  };
  for (const s of sides) {
    const x = summary.ms[s];
    lines.push(row([names[s], x.median, x.p90, x.min, x.max, x.n]));
    if (s === 'pooled' || s === 'fresh') {
      const f = summary.firstResponseMs[s];
      lines.push(row(['  create → first 200', f.median, f.p90, f.min, f.max, f.n]));
    }
  }
  const b = summary.pooledBreakdownUs;
  lines.push('', `pooled create, medians (µs): take ${b.runtimeCreateUs}, load → loaded ${b.spawnUs}, probe ${b.readinessProbeUs}, total ${b.totalUs}`);
  const headline = e2e ? summary.ms.e2ePooled.median : summary.firstResponseMs.pooled.median;
  lines.push(`pooled ${e2e ? 'end to end' : 'create → first response'}: ${headline} ms; target ≤ ${TARGET_MS} ms: ${headline <= TARGET_MS ? 'MET' : 'NOT MET'}`, '');
  process.stdout.write(lines.join('\n') + '\n');

  const outDir = path.join(REPO_ROOT, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const outFile = path.join(outDir, `coldstart-node-${summary.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(outFile, JSON.stringify({ ...summary, results, firsts, breakdown }, null, 2) + '\n');
  process.stderr.write(`wrote ${path.relative(REPO_ROOT, outFile)}\n`);
}

runMain(main);
