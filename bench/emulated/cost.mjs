// What emulated sandboxes and emulated nodes cost: the numbers behind
// docs/runtimes.md (`emulated`). Not a comparison with a peer: it measures
// how cheap the scaffolding of scale experiments is, so that a scale benchmark
// measures the control plane and data plane, not the emulation.
//
//   node --expose-gc bench/emulated/cost.mjs sandboxes [--counts 1000,5000]
//   node bench/emulated/cost.mjs nodes [--counts 1,100,500] [--steady-s 30] [--heartbeat-ms 5000]
//
// `sandboxes` runs in this process: an EmulatedRuntime (no worker, no RPC),
// then a real Worker with the emulated runtime driven over its RPC service by
// a client in this process. For each count: creation time one at a time and
// all at once, memory and file descriptors per sandbox, the cost a readiness
// probe would add, and a held request on every sandbox at once.
//
// `nodes` starts `baton controlplane` and `baton worker --emulate N` as
// children and reads their CPU and memory from /proc: registration time,
// worker RSS, and CPU of both over a steady window of heartbeats.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminApi, cleanChildEnv, freePort, makeTempDir, REPO_ROOT, runMain, spawnChild, stopChild, waitForPort } from '../lib/harness.mjs';

const DIST = path.join(REPO_ROOT, 'dist', 'src');
const BATON_MAIN = path.join(DIST, 'cli', 'main.js');
const CLK_TCK = 100;

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  const args = { mode, counts: undefined, steadyS: 30, heartbeatMs: 5000, concurrency: 64, child: false };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const v = rest[i + 1];
    if (a === '--counts') args.counts = v.split(',').map(Number);
    else if (a === '--steady-s') args.steadyS = Number(v);
    else if (a === '--heartbeat-ms') args.heartbeatMs = Number(v);
    else if (a === '--concurrency') args.concurrency = Number(v);
    else if (a === '--child') {
      args.child = true;
      continue;
    } else throw new Error(`unknown argument ${a}`);
    i++;
  }
  if (mode !== 'sandboxes' && mode !== 'nodes') throw new Error('usage: cost.mjs sandboxes|nodes [--counts a,b]');
  return args;
}

// ---- /proc ---------------------------------------------------------------------------

function procStatus(pid, key) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${key}:`));
  return line ? Number(line.split(/\s+/)[1]) : NaN; // kB
}

function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime + stime
}

/** The kernel's slab memory, machine-wide (socket structures live there, not in a process's RSS). Noisy. */
function slabKb() {
  const line = readFileSync('/proc/meminfo', 'utf8').split('\n').find((l) => l.startsWith('Slab:'));
  return Number(line.split(/\s+/)[1]);
}

function fdCount(pid = 'self') {
  return readdirSync(`/proc/${pid}/fd`).length;
}

const mb = (kb) => (kb / 1024).toFixed(1);

function quantile(sorted, q) {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function settle() {
  if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
  globalThis.gc();
  globalThis.gc();
}

// ---- sandboxes -------------------------------------------------------------------------

const silent = { level: 'silent', debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };

function spec(name, extra = {}) {
  return {
    name,
    runtime: 'emulated',
    command: [],
    workdir: undefined,
    env: {},
    resources: { cpuMillis: 100, memoryMb: 128 },
    scaling: { minScale: 0, maxScale: 0, containerConcurrency: 1, targetUtilizationPct: 100, stableWindowSec: 60, panicWindowSec: 6, panicThresholdPct: 200, maxScaleUpRate: 1000, maxScaleDownRate: 2, scaleToZeroGraceSec: 30 },
    timeoutMs: 60_000,
    ...extra,
  };
}

function hold(port, ms, agent) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { 'x-baton-emulate-ms': String(ms) }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

async function measureRuntime(count, { EmulatedRuntime }, { probeOnce }) {
  const runtime = new EmulatedRuntime({
    host: '127.0.0.1',
    startDelay: { distribution: 'constant', ms: 0, spreadMs: 0, seed: 1 },
    startTimeoutMs: 30_000,
    stopGraceMs: 1000,
    log: silent,
  });
  const never = new AbortController().signal;
  settle();
  const rss0 = procStatus('self', 'VmRSS');
  const heap0 = process.memoryUsage().heapUsed;
  const fd0 = fdCount();
  const slab0 = slabKb();

  // One at a time: the latency of a creation.
  const sandboxes = [];
  const wall = [];
  let cpu0 = process.cpuUsage();
  let t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    sandboxes.push(await runtime.create({ sandboxId: `sb-seq-${i}`, spec: spec('f'), signal: never }));
    wall.push((performance.now() - t) * 1000);
  }
  const seqMs = performance.now() - t0;
  let cpu = process.cpuUsage(cpu0);
  const seqCpuUs = (cpu.user + cpu.system) / count;
  wall.sort((a, b) => a - b);

  settle();
  const rss1 = procStatus('self', 'VmRSS');
  const heap1 = process.memoryUsage().heapUsed;
  const fd1 = fdCount();
  const slab1 = slabKb();

  // What a readiness probe (probe.ts, one connect + GET /health) would add per sandbox.
  cpu0 = process.cpuUsage();
  t0 = performance.now();
  const probeN = Math.min(count, 1000);
  for (let i = 0; i < probeN; i++) {
    const r = await probeOnce('127.0.0.1', sandboxes[i].port, 1000);
    if (r !== 'ready') throw new Error(`probe: ${r}`);
  }
  const probeWallUs = ((performance.now() - t0) * 1000) / probeN;
  cpu = process.cpuUsage(cpu0);
  const probeCpuUs = (cpu.user + cpu.system) / probeN;

  // A request held 1 s on every sandbox at once (client in this process: the CPU is both sides').
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  cpu0 = process.cpuUsage();
  t0 = performance.now();
  const statuses = await Promise.all(sandboxes.map((s) => hold(s.port, 1000, agent)));
  const heldWallMs = performance.now() - t0;
  cpu = process.cpuUsage(cpu0);
  const heldCpuUs = (cpu.user + cpu.system) / count;
  if (statuses.some((s) => s !== 200)) throw new Error('a held request failed');
  agent.destroy();

  t0 = performance.now();
  await Promise.all(sandboxes.map((s) => s.stop()));
  const stopMs = performance.now() - t0;

  // All at once: creation throughput.
  cpu0 = process.cpuUsage();
  t0 = performance.now();
  const burst = await Promise.all(Array.from({ length: count }, (_, i) => runtime.create({ sandboxId: `sb-par-${i}`, spec: spec('f'), signal: never })));
  const parMs = performance.now() - t0;
  cpu = process.cpuUsage(cpu0);
  const parCpuUs = (cpu.user + cpu.system) / count;
  await Promise.all(burst.map((s) => s.stop()));
  await runtime.close();

  return {
    count,
    createOneAtATime: { totalMs: Math.round(seqMs), p50Us: Math.round(quantile(wall, 0.5)), p99Us: Math.round(quantile(wall, 0.99)), cpuUsPerSandbox: Math.round(seqCpuUs) },
    createAllAtOnce: { totalMs: Math.round(parMs), perSecond: Math.round(count / (parMs / 1000)), cpuUsPerSandbox: Math.round(parCpuUs) },
    memory: { rssKbPerSandbox: +((rss1 - rss0) / count).toFixed(2), heapBytesPerSandbox: Math.round((heap1 - heap0) / count), fdsPerSandbox: (fd1 - fd0) / count, kernelSlabKbPerSandbox: +((slab1 - slab0) / count).toFixed(2) },
    probe: { wallUs: Math.round(probeWallUs), cpuUs: Math.round(probeCpuUs), measuredOn: probeN },
    heldRequestOnEach: { wallMs: Math.round(heldWallMs), cpuUsPerRequest: Math.round(heldCpuUs) },
    stopAllMs: Math.round(stopMs),
  };
}

/**
 * CreateSandbox over RPC against `baton worker --emulate 1` in a child process,
 * so the worker's CPU per creation is read apart from the client's.
 */
async function measureWorkerRpc(count, concurrency) {
  const { createRpcClient } = await import(path.join(DIST, 'shared', 'rpc.js'));
  const { WorkerService } = await import(path.join(DIST, 'gen', 'baton', 'v1', 'worker_pb.js'));
  const { toFunctionSpecMessage } = await import(path.join(DIST, 'shared', 'spec.js'));
  const dataDir = makeTempDir('baton-emu-cost-');
  const config = path.join(dataDir, 'worker.yaml');
  writeFileSync(config, 'logLevel: error\n');
  const rpcPort = await freePort();
  // Nothing listens on port 1: the worker retries its registration in the background, which costs next to nothing.
  const worker = spawnChild(
    'worker',
    process.execPath,
    [BATON_MAIN, 'worker', '--emulate', '1', '--config', config, '--rpc-port', String(rpcPort), '--control-plane', 'http://127.0.0.1:1', '--data-dir', dataDir],
    { env: cleanChildEnv() },
  );
  worker.stderr.on('data', (c) => process.stderr.write(`[worker] ${c}`));
  await waitForPort('127.0.0.1', rpcPort);
  const client = createRpcClient(WorkerService, { baseUrl: `http://127.0.0.1:${rpcPort}` });
  const fn = toFunctionSpecMessage(spec('f'), 1n);
  await client.createSandbox({ sandboxId: 'sb-rpc-warmup', function: fn });
  const workerCpu0 = cpuMs(worker.pid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  const latencies = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const t = performance.now();
        await client.createSandbox({ sandboxId: `sb-rpc-${i}`, function: fn });
        latencies.push((performance.now() - t) * 1000);
      }
    }),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const workerCpuMs = cpuMs(worker.pid) - workerCpu0;
  latencies.sort((a, b) => a - b);
  const t1 = performance.now();
  await stopChild(worker);
  return {
    count,
    concurrency,
    perSecond: Math.round(count / (ms / 1000)),
    p50Us: Math.round(quantile(latencies, 0.5)),
    p99Us: Math.round(quantile(latencies, 0.99)),
    workerCpuUsPerSandbox: Math.round((workerCpuMs * 1000) / count),
    clientCpuUsPerSandbox: Math.round((cpu.user + cpu.system) / count),
    stopMs: Math.round(performance.now() - t1),
  };
}

/** One count, in this process: the child side of `sandboxes`. */
async function sandboxesChild(count, args) {
  const emulated = await import(path.join(DIST, 'worker', 'runtimes', 'emulated.js'));
  const probe = await import(path.join(DIST, 'worker', 'probe.js'));
  const runtime = await measureRuntime(count, emulated, probe);
  const rpc = await measureWorkerRpc(count, args.concurrency);
  process.stdout.write(JSON.stringify({ runtime, rpc }) + '\n');
}

async function sandboxes(args) {
  const results = [];
  // Each count in a fresh process, so that memory freed by an earlier count does not hide the next one's.
  for (const count of args.counts ?? [1000, 5000]) {
    const child = spawnChild('sandboxes', process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), 'sandboxes', '--child', '--counts', String(count), '--concurrency', String(args.concurrency)], {
      env: cleanChildEnv(),
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => process.stderr.write(c));
    const { code } = await child.exited;
    if (code !== 0) throw new Error(`the measurement of ${count} sandboxes failed (exit ${code})`);
    const r = JSON.parse(out.trim().split('\n').pop());
    process.stderr.write(`${count} sandboxes: ${JSON.stringify(r)}\n`);
    results.push(r);
  }
  console.log('| sandboxes | RSS / sandbox | heap / sandbox | kernel slab / sandbox (machine-wide) | fds / sandbox | create one at a time p50 / p99 | CPU / create | all at once | via worker RPC (c=' + args.concurrency + '): rate, p50, worker CPU / create | probe would add (wall / CPU) | a held request on each: CPU / request | stop all |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const { runtime: r, rpc } of results) {
    console.log(
      `| ${r.count} | ${r.memory.rssKbPerSandbox} kB | ${(r.memory.heapBytesPerSandbox / 1024).toFixed(1)} kB | ${r.memory.kernelSlabKbPerSandbox} kB | ${r.memory.fdsPerSandbox} | ` +
        `${r.createOneAtATime.p50Us} / ${r.createOneAtATime.p99Us} µs | ${r.createOneAtATime.cpuUsPerSandbox} µs | ` +
        `${r.createAllAtOnce.perSecond}/s (${r.createAllAtOnce.totalMs} ms) | ${rpc.perSecond}/s, p50 ${(rpc.p50Us / 1000).toFixed(1)} ms, ${rpc.workerCpuUsPerSandbox} µs | ` +
        `${r.probe.wallUs} / ${r.probe.cpuUs} µs | ${r.heldRequestOnEach.cpuUsPerRequest} µs | ${r.stopAllMs} ms |`,
    );
  }
  console.log(JSON.stringify(results));
}

// ---- nodes ------------------------------------------------------------------------------

async function measureNodes(count, args) {
  const dataDir = makeTempDir('baton-emu-nodes-');
  const apiPort = await freePort();
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const env = cleanChildEnv();
  const cpConfig = path.join(dataDir, 'cp.yaml');
  writeFileSync(cpConfig, `workerHeartbeatIntervalMs: ${args.heartbeatMs}\nworkerHeartbeatTimeoutMs: ${args.heartbeatMs * 3}\nlogLevel: warn\n`);
  const cp = spawnChild('controlplane', process.execPath, [BATON_MAIN, 'controlplane', '--config', cpConfig, '--api-port', String(apiPort), '--data-dir', dataDir], { env });
  cp.stderr.on('data', (c) => process.stderr.write(`[cp] ${c}`));
  await waitForPort('127.0.0.1', apiPort);
  const t0 = performance.now();
  const worker = spawnChild('workers', process.execPath, [BATON_MAIN, 'worker', '--emulate', String(count), '--control-plane', apiUrl, '--data-dir', dataDir], { env });
  worker.stderr.on('data', (c) => process.stderr.write(`[workers] ${c}`));
  let registeredMs;
  for (;;) {
    const { workers } = await adminApi(apiUrl, 'GET', '/v1/workers');
    if (workers.filter((w) => w.status === 'ready').length >= count) {
      registeredMs = performance.now() - t0;
      break;
    }
    if (performance.now() - t0 > 120_000) throw new Error(`only ${workers.length}/${count} workers registered after 120 s`);
    await sleep(20);
  }
  await sleep(2000);
  const cpu0 = { w: cpuMs(worker.pid), cp: cpuMs(cp.pid) };
  const t1 = performance.now();
  await sleep(args.steadyS * 1000);
  const seconds = (performance.now() - t1) / 1000;
  const cpu = { w: (cpuMs(worker.pid) - cpu0.w) / seconds, cp: (cpuMs(cp.pid) - cpu0.cp) / seconds };
  const result = {
    count,
    registeredMs: Math.round(registeredMs),
    workerRssKb: procStatus(worker.pid, 'VmRSS'),
    workerFds: fdCount(worker.pid),
    controlPlaneRssKb: procStatus(cp.pid, 'VmRSS'),
    workerCpuMsPerS: +cpu.w.toFixed(1),
    controlPlaneCpuMsPerS: +cpu.cp.toFixed(1),
    heartbeatMs: args.heartbeatMs,
  };
  const t2 = performance.now();
  await stopChild(worker);
  result.stopMs = Math.round(performance.now() - t2);
  await stopChild(cp);
  return result;
}

async function nodes(args) {
  const results = [];
  for (const count of args.counts ?? [1, 100, 500]) {
    const r = await measureNodes(count, args);
    process.stderr.write(`${count} emulated workers: ${JSON.stringify(r)}\n`);
    results.push(r);
  }
  const base = results.find((r) => r.count === 1);
  console.log(`| emulated workers | registered (all) | worker RSS | RSS / worker (vs N=1) | fds | worker CPU (heartbeats every ${args.heartbeatMs} ms) | control plane CPU | control plane RSS | stop |`);
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const per = base && r.count > 1 ? `${((r.workerRssKb - base.workerRssKb) / (r.count - 1)).toFixed(0)} kB` : '-';
    console.log(
      `| ${r.count} | ${r.registeredMs} ms | ${mb(r.workerRssKb)} MB | ${per} | ${r.workerFds} | ${r.workerCpuMsPerS} ms/s | ${r.controlPlaneCpuMsPerS} ms/s | ${mb(r.controlPlaneRssKb)} MB | ${r.stopMs} ms |`,
    );
  }
  console.log(JSON.stringify(results));
}

runMain(async () => {
  const args = parseArgs(process.argv.slice(2));
  if (args.mode === 'sandboxes' && args.child) await sandboxesChild(args.counts[0], args);
  else if (args.mode === 'sandboxes') await sandboxes(args);
  else await nodes(args);
});
