#!/usr/bin/env node
// Cold start, oci runtime: OciRuntime.create() to ready, against runc driven by hand on
// the same bundle, in the same run, interleaved.
//
//   raw node:         no container: the same command spawned as a plain process with a clean
//                     environment, for scale (what the `process` runtime starts).
//   raw run:          `runc run` (foreground) of a bundle the runtime's own code wrote for
//                     the same function, then GET /health until any answer (the worker's
//                     readiness loop, probe.ts); time from spawning runc to the answer.
//   raw create+start: the same with `runc create` then `runc start`.
//   host, isolated:   OciRuntime.create() of the function (network "host" / "isolated"),
//                     precreate 0: bundle + runc create + runc start + probe; isolated adds a
//                     namespace from the pool and a DNAT rule, and is probed through it.
//   … + precreate:    the same with precreate 1: the container was made ahead, so create()
//                     is `runc start` + probe (latency.pooled). The pool is refilled (not
//                     timed) before the next iteration.
//
// The function is bench/fixtures/hello-server.js on the machine's Node, 1000 millicores
// (a 0.1-core quota would stretch Node's ~40 ms of boot CPU tenfold) and 128 MB. Each
// iteration runs every mode once, rotating their order; sandboxes are deleted between.
//
//   sudo node bench/oci-coldstart/run.mjs [--iterations 10] [--warmup 2] [--cpu-millis 1000]
//
// Needs: root, runc, iproute2, iptables; npm run build (or npx tsc -p tsconfig.json).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FIXTURES, REPO_ROOT, makeTempDir, median, quantile, round, runMain } from '../lib/harness.mjs';

const dist = (p) => path.join(REPO_ROOT, 'dist', 'src', p);
const { OciRuntime, ociUnavailable } = await import(dist('worker/runtimes/oci.js'));
const { readHostLayout, sandboxEnv, writeBundle } = await import(dist('worker/runtimes/oci/bundle.js'));
const { readCgroupMounts, removeCgroupTree } = await import(dist('worker/runtimes/oci/cgroups.js'));
const { PortAllocator } = await import(dist('worker/ports.js'));
const { waitUntilReady } = await import(dist('worker/probe.js'));
const { workerSchema } = await import(dist('shared/config.js'));
const { silentLogger } = await import(dist('shared/logging.js'));
const { parseFunctionSpec } = await import(dist('shared/spec.js'));

const { values: flags } = parseArgs({
  options: {
    iterations: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    'cpu-millis': { type: 'string', default: '1000' },
  },
});
const ITERATIONS = Number(flags.iterations);
const WARMUP = Number(flags.warmup);
const CPU_MILLIS = Number(flags['cpu-millis']);

function spec(network) {
  return parseFunctionSpec({
    name: `hello-${network}`,
    runtime: 'oci',
    command: ['/usr/bin/node', 'hello-server.js'],
    workdir: FIXTURES,
    network,
    resources: { cpuMillis: CPU_MILLIS, memoryMb: 128 },
  });
}

function run(file, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${file} ${args.join(' ')}: ${err.trim()}`))));
  });
}

async function main() {
  const why = ociUnavailable('runc');
  if (why) throw new Error(`the oci runtime cannot run here: ${why}`);
  const dataDir = makeTempDir('baton-oci-bench-');
  mkdirSync(path.join(dataDir, 'sandboxes'), { recursive: true });
  const ports = new PortAllocator('127.0.0.1');
  const runtime = (precreate, n) =>
    new OciRuntime({
      workerId: `bench-oci-${process.pid}-${n}`,
      host: '127.0.0.1',
      dataDir,
      startTimeoutMs: 30_000,
      stopGraceMs: 2000,
      log: silentLogger(),
      ports,
      oci: workerSchema.parse({ oci: { precreate, bridge: `btbench${n}`, subnet: `10.251.${n}.0/24` } }).oci,
    });
  const cold = runtime(0, 1);
  const warm = runtime(1, 2);
  await cold.start();
  await warm.start();

  // The raw side: a bundle per run, written by the runtime's own bundle code.
  const rawRoot = path.join(dataDir, 'raw-runc');
  const layout = readHostLayout();
  const cgroups = readCgroupMounts();
  const never = new AbortController().signal;
  const neverExits = new Promise(() => {});
  let rawSeq = 0;
  async function raw(mode) {
    const port = await ports.allocate();
    const id = `baton-bench-${process.pid}-${rawSeq++}`;
    const bundle = path.join(dataDir, 'raw', id);
    const s = spec('host');
    await writeBundle(bundle, {
      spec: s,
      env: sandboxEnv(s, '127.0.0.1', port),
      uid: 65534,
      gid: 65534,
      pidsLimit: 512,
      cgroupsPath: `/baton-bench-${process.pid}/${id}`,
      netnsPath: undefined,
      layout,
      swapLimit: cgroups.swapLimit,
    });
    const t0 = performance.now();
    let child;
    if (mode === 'run') {
      child = spawn('runc', ['--root', rawRoot, 'run', '--bundle', bundle, id], { stdio: 'ignore' });
    } else {
      await run('runc', ['--root', rawRoot, 'create', '--bundle', bundle, id]);
      await run('runc', ['--root', rawRoot, 'start', id]);
    }
    const outcome = await waitUntilReady({ host: '127.0.0.1', port, timeoutMs: 30_000, signal: never, exited: neverExits });
    const ms = performance.now() - t0;
    if (outcome !== 'ready') throw new Error(`raw runc ${mode}: ${outcome}`);
    await run('runc', ['--root', rawRoot, 'kill', id, 'KILL']).catch(() => undefined);
    if (child) await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
    await run('runc', ['--root', rawRoot, 'delete', '--force', id]);
    ports.release(port);
    return { ms };
  }

  async function rawNode() {
    const port = await ports.allocate();
    const t0 = performance.now();
    const child = spawn('/usr/bin/node', ['hello-server.js'], {
      cwd: FIXTURES,
      env: { PATH: '/usr/bin:/bin', PORT: String(port), HOST: '127.0.0.1' },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => child.once('exit', r));
    const outcome = await waitUntilReady({ host: '127.0.0.1', port, timeoutMs: 30_000, signal: never, exited });
    const ms = performance.now() - t0;
    if (outcome !== 'ready') throw new Error(`raw node: ${outcome}`);
    child.kill('SIGKILL');
    await exited;
    ports.release(port);
    return { ms };
  }

  let sandboxSeq = 0;
  async function viaRuntime(rt, network) {
    await rt.settled(); // the pools are full, as they are on an idle worker
    const t0 = performance.now();
    const sandbox = await rt.create({ sandboxId: `sb-bench-${sandboxSeq++}`, spec: spec(network), signal: never });
    const ms = performance.now() - t0;
    await sandbox.stop();
    return { ms, latency: sandbox.latency };
  }

  const modes = {
    'raw node (no container)': rawNode,
    'raw runc run': () => raw('run'),
    'raw runc create+start': () => raw('create'),
    'host': () => viaRuntime(cold, 'host'),
    'host + precreate': () => viaRuntime(warm, 'host'),
    'isolated': () => viaRuntime(cold, 'isolated'),
    'isolated + precreate': () => viaRuntime(warm, 'isolated'),
  };
  const names = Object.keys(modes);
  const results = Object.fromEntries(names.map((n) => [n, []]));
  try {
    // The first create of a function makes its precreate pool: part of the warm-up.
    for (let i = 0; i < WARMUP + ITERATIONS; i++) {
      const order = names.map((_, k) => names[(k + i) % names.length]);
      for (const name of order) {
        const r = await modes[name]();
        if (i >= WARMUP) results[name].push(r);
      }
      process.stderr.write(`iteration ${i + 1}/${WARMUP + ITERATIONS}${i < WARMUP ? ' (warm-up)' : ''}\n`);
    }
  } finally {
    await cold.close();
    await warm.close();
    await removeCgroupTree(cgroups, `/baton-bench-${process.pid}`);
  }

  const stages = ['portAllocationUs', 'networkUs', 'runtimeCreateUs', 'spawnUs', 'readinessProbeUs'];
  console.log(`\noci cold start, ${ITERATIONS} iterations (after ${WARMUP} warm-up), ${CPU_MILLIS} millicores, ms`);
  console.log(`${'mode'.padEnd(24)} ${'median'.padStart(7)} ${'p90'.padStart(7)} ${'min'.padStart(7)}  pooled  stage medians (port / network / create / start / probe)`);
  const summary = {};
  for (const name of names) {
    const rows = results[name];
    const ms = rows.map((r) => r.ms);
    const line = [name.padEnd(24), String(round(median(ms), 1)).padStart(7), String(round(quantile(ms, 0.9), 1)).padStart(7), String(round(Math.min(...ms), 1)).padStart(7)];
    const withLatency = rows.filter((r) => r.latency);
    if (withLatency.length > 0) {
      line.push(`  ${withLatency.filter((r) => r.latency.pooled).length}/${withLatency.length}`.padEnd(8));
      line.push(stages.map((s) => round(median(withLatency.map((r) => r.latency[s] / 1000)), 1)).join(' / '));
    }
    console.log(line.join(' '));
    summary[name] = { medianMs: round(median(ms), 2), p90Ms: round(quantile(ms, 0.9), 2), minMs: round(Math.min(...ms), 2), samplesMs: ms.map((x) => round(x, 2)) };
  }
  const outDir = path.join(REPO_ROOT, 'bench', 'out');
  if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `oci-coldstart-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ iterations: ITERATIONS, warmup: WARMUP, cpuMillis: CPU_MILLIS, summary }, null, 2));
  console.log(`\n${file}`);
}

runMain(main);
