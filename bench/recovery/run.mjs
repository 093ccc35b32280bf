#!/usr/bin/env node
// Control-plane recovery (issue 5; DESIGN.md target: state rebuilt from 1,000 sandboxes on
// 100 workers in ≤ 1 s). A control plane and N emulated workers run as separate processes;
// one emulated function is scaled to S sandboxes; then the control plane is killed with
// SIGKILL and started again on the same data directory, and the script times, from the
// moment the new process is spawned:
//
//   health      the admin API answers;
//   workers     every worker has registered again;
//   adopted     describe shows all S sandboxes ready, under the ids they had before;
//
// and counts the sandboxes created after the restart (there should be none: a recovery
// window keeps the tick from starting minScale twice while workers come back). Workers
// re-register on their own schedule (a failed heartbeat, then a back-off up to 5 s), so
// the script also reports `adopt`: from the first worker's re-registration to the last
// sandbox taken back, which is the control plane's own reconstruction work.
//
// As a by-product it also reports the scale-out before the kill: 0 → S sandboxes.
//
//   node bench/recovery/run.mjs [--workers 100] [--sandboxes 1000] [--heartbeat-ms 1000] [--rounds 3]
//
// Needs: npm run build.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { REPO_ROOT, adminApi, cleanChildEnv, freePort, makeTempDir, median, round, runMain, sleep, spawnChild, stopChild } from '../lib/harness.mjs';

const MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const { values: flags } = parseArgs({
  options: {
    workers: { type: 'string', default: '100' },
    sandboxes: { type: 'string', default: '1000' },
    'heartbeat-ms': { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('node bench/recovery/run.mjs [--workers 100] [--sandboxes 1000] [--heartbeat-ms 1000] [--rounds 3]\n');
  process.exit(0);
}
const WORKERS = Number(flags.workers);
const SANDBOXES = Number(flags.sandboxes);
const HEARTBEAT_MS = Number(flags['heartbeat-ms']);
const ROUNDS = Number(flags.rounds);

async function poll(what, probe, timeoutMs = 120_000, everyMs = 10) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function main() {
  const dir = makeTempDir('baton-bench-recovery-');
  const port = await freePort();
  const apiUrl = `http://127.0.0.1:${port}`;
  const config = path.join(dir, 'controlplane.yaml');
  writeFileSync(
    config,
    [`host: 127.0.0.1`, `apiPort: ${port}`, `dataDir: ${path.join(dir, 'cp')}`, `workerHeartbeatIntervalMs: ${HEARTBEAT_MS}`, 'logLevel: warn', ''].join('\n'),
  );
  const startControlPlane = () => spawnChild('baton controlplane', process.execPath, [MAIN, 'controlplane', '--config', config], { env: cleanChildEnv(), stdio: ['ignore', 'ignore', 'inherit'] });
  let cp = startControlPlane();
  await poll('the control plane', async () => (await fetch(`${apiUrl}/health`)).ok);
  const workers = spawnChild('emulated workers', process.execPath, [MAIN, 'worker', '--emulate', String(WORKERS), '--control-plane', apiUrl, '--data-dir', path.join(dir, 'w')], {
    env: cleanChildEnv(),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await poll(`${WORKERS} workers`, async () => (await adminApi(apiUrl, 'GET', '/v1/workers')).workers.length >= WORKERS || undefined);

  const readyIds = async () => {
    const fn = await adminApi(apiUrl, 'GET', '/v1/functions/many');
    return (fn.sandboxes ?? []).filter((s) => s.state === 'ready').map((s) => s.id);
  };
  const t0 = performance.now();
  await adminApi(apiUrl, 'POST', '/v1/functions', { name: 'many', runtime: 'emulated', scaling: { minScale: SANDBOXES }, resources: { cpuMillis: 10, memoryMb: 16 } });
  await poll(`${SANDBOXES} sandboxes`, async () => (await readyIds()).length >= SANDBOXES || undefined, 120_000, 20);
  const scaleOutMs = performance.now() - t0;
  process.stderr.write(`scale-out 0 → ${SANDBOXES} on ${WORKERS} emulated workers: ${scaleOutMs.toFixed(0)} ms\n`);

  const rounds = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const before = new Set(await readyIds());
    cp.kill('SIGKILL');
    await cp.exited;
    await sleep(500);
    const tSpawn = performance.now();
    cp = startControlPlane();
    await poll('health', async () => (await fetch(`${apiUrl}/health`)).ok, 30_000, 2);
    const healthMs = performance.now() - tSpawn;
    const firstWorkerMs = (await poll('a worker', async () => ((await adminApi(apiUrl, 'GET', '/v1/workers')).workers.length > 0 ? performance.now() : undefined), 30_000, 5)) - tSpawn;
    let workersMs;
    const adoptedAt = await poll(
      'every sandbox taken back',
      async () => {
        if (workersMs === undefined && (await adminApi(apiUrl, 'GET', '/v1/workers')).workers.length >= WORKERS) workersMs = performance.now() - tSpawn;
        const ids = await readyIds();
        return ids.length >= before.size && ids.every((id) => before.has(id)) ? performance.now() : undefined;
      },
      60_000,
      5,
    );
    const adoptedMs = adoptedAt - tSpawn;
    const fn = await adminApi(apiUrl, 'GET', '/v1/functions/many');
    const createdAfter = (fn.recentCreations ?? []).length; // the restarted control plane's own creations
    const row = { round: r, healthMs: round(healthMs, 1), firstWorkerMs: round(firstWorkerMs, 1), allWorkersMs: round(workersMs ?? adoptedMs, 1), adoptedMs: round(adoptedMs, 1), adoptMs: round(adoptedMs - firstWorkerMs, 1), createdAfter };
    rounds.push(row);
    process.stderr.write(`round ${r}: ${JSON.stringify(row)}\n`);
    await sleep(1000);
  }
  await stopChild(workers);
  await stopChild(cp);

  const med = (k) => round(median(rounds.map((x) => x[k])), 1);
  const summary = {
    benchmark: 'recovery',
    date: new Date().toISOString(),
    command: `node bench/recovery/run.mjs --workers ${WORKERS} --sandboxes ${SANDBOXES} --heartbeat-ms ${HEARTBEAT_MS} --rounds ${ROUNDS}`,
    machine: { nproc: os.availableParallelism(), node: process.version, loadavg: os.loadavg().map((x) => round(x, 2)) },
    scaleOutMs: round(scaleOutMs, 0),
    medians: { healthMs: med('healthMs'), firstWorkerMs: med('firstWorkerMs'), allWorkersMs: med('allWorkersMs'), adoptedMs: med('adoptedMs'), adoptMs: med('adoptMs') },
    rounds,
    target: { adoptedMs: 1000 },
  };
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
}

runMain(main);
