// Worker and sandbox failures, end to end on real processes (issue 5): a
// control plane, a data plane and worker A run in this process; worker B is
// a `baton worker` child process, so that it can be killed with SIGKILL.
//
// 1. B and its sandboxes are SIGKILLed under load: after the heartbeat
//    timeout B's endpoints are gone from the data plane, every request is
//    served by A, and the function is back at its desired scale on A.
// 2. B's daemon alone is SIGKILLed: its sandboxes keep running (detached
//    process groups) until a worker started on the same dataDir sweeps them,
//    and says so in its log.
// 3. A sandbox that stops answering (SIGSTOP) fails its liveness probe, is
//    reported `unresponsive`, and is replaced.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { echoSpec, pidAlive, REPO_ROOT, startTestCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

const HEARTBEAT_TIMEOUT_MS = 1000;
const CAPACITY = { cpuMillis: 4000, memoryMb: 4096 };
const FAST_WORKER = { stopGraceMs: 200, livenessIntervalMs: 200, livenessFailureThreshold: 3, livenessTimeoutMs: 200 };

interface ChildWorker {
  id: string;
  process: ChildProcess;
  /** stdout and stderr so far (the worker logs JSON lines to stderr). */
  output(): string;
}

interface SandboxView {
  id: string;
  worker: string;
  state: string;
}

/** The pid of the live process whose environment names this sandbox, if any. */
function sandboxPid(sandboxId: string): number | undefined {
  const needle = `BATON_SANDBOX_ID=${sandboxId}\0`;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${name}/environ`, 'latin1');
    } catch {
      continue;
    }
    if (environ.includes(needle) && pidAlive(Number(name))) return Number(name);
  }
  return undefined;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

describe('worker and sandbox failure', () => {
  let c: TestCluster;
  const children = new Set<ChildProcess>();
  /** Sandbox groups a test may leave behind when it fails: killed in after(). */
  const groups = new Set<number>();
  const dirs: string[] = [];

  before(async () => {
    c = await startTestCluster({
      controlplane: {
        placementPolicy: 'round-robin',
        workerHeartbeatIntervalMs: 200,
        workerHeartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
        scalingPeriodMs: 100,
        createBackoffInitialMs: 100,
        crashLoopWindowMs: 1000,
      },
      worker: { ...CAPACITY, ...FAST_WORKER, runtimes: ['process'] },
    });
  });

  after(async () => {
    // A worker still running deletes its sandboxes on SIGTERM; one that does not exit in time is killed.
    await Promise.all(
      [...children].map(async (child) => {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }),
    );
    for (const pid of groups) killGroup(pid);
    await c.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  async function startChildWorker(dataDir: string): Promise<ChildWorker> {
    const configPath = join(dataDir, 'worker.yaml');
    const config = {
      host: '127.0.0.1',
      rpcPort: 0,
      controlPlaneUrl: c.apiUrl,
      dataDir,
      runtimes: ['process'],
      logLevel: 'info',
      ...CAPACITY,
      ...FAST_WORKER,
    };
    writeFileSync(configPath, JSON.stringify(config)); // JSON is YAML.
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const child = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'), 'worker', '--config', configPath], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    let output = '';
    child.stdout?.on('data', (b: Buffer) => (output += b.toString('utf8')));
    child.stderr?.on('data', (b: Buffer) => (output += b.toString('utf8')));
    const id = await waitFor('the child worker to start', () => /^worker (\S+): /m.exec(output)?.[1], 15_000);
    await waitFor('the child worker to register', async () => {
      const { body } = await c.admin('GET', '/v1/workers');
      return (body.workers as { id: string; status: string }[]).some((w) => w.id === id && w.status === 'ready');
    });
    return { id, process: child, output: () => output };
  }

  async function sandboxes(name: string): Promise<SandboxView[]> {
    const d = await c.admin('GET', `/v1/functions/${name}`);
    return d.body.sandboxes as SandboxView[];
  }

  async function workerStatus(id: string): Promise<string | undefined> {
    const { body } = await c.admin('GET', '/v1/workers');
    return (body.workers as { id: string; status: string }[]).find((w) => w.id === id)?.status;
  }

  function tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  }

  /** Requests in a loop through the data plane, `parallel` at a time, until stopped. */
  function load(name: string, parallel: number): { results: { atMs: number; status: number }[]; stop(): Promise<void> } {
    const results: { atMs: number; status: number }[] = [];
    let running = true;
    const loops = Array.from({ length: parallel }, async () => {
      while (running) {
        let status = 0;
        try {
          status = (await c.invoke(name, '/')).status;
        } catch {
          status = 0;
        }
        results.push({ atMs: Date.now(), status });
      }
    });
    return {
      results,
      async stop() {
        running = false;
        await Promise.all(loops);
      },
    };
  }

  test('a worker killed with its sandboxes loses its endpoints after the heartbeat timeout, and its sandboxes are recreated on the other', async (t) => {
    const b = await startChildWorker(tempDir('baton-wfail-b-'));
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('spread', { scaling: { minScale: 2, maxScale: 2 } }))).status, 201);
    const placed = await waitFor('two ready sandboxes', async () => {
      const s = (await sandboxes('spread')).filter((x) => x.state === 'ready');
      return s.length === 2 ? s : undefined;
    });
    assert.deepEqual(new Set(placed.map((s) => s.worker)), new Set([c.worker.id, b.id]), 'one sandbox on each worker');
    const onB = placed.find((s) => s.worker === b.id);
    assert.ok(onB);
    const pidOnB = sandboxPid(onB.id);
    assert.ok(pidOnB !== undefined, 'the sandbox on B runs');
    groups.add(pidOnB);

    const traffic = load('spread', 2);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const killedAtMs = Date.now();
      killGroup(pidOnB);
      b.process.kill('SIGKILL');

      await waitFor('B to be lost', async () => ((await workerStatus(b.id)) === 'lost' ? true : undefined), 5000);
      const lostAtMs = Date.now();
      assert.ok(lostAtMs - killedAtMs >= HEARTBEAT_TIMEOUT_MS - 250, 'lost only after the heartbeat timeout');
      const restored = await waitFor('the desired scale on A', async () => {
        const s = (await sandboxes('spread')).filter((x) => x.state === 'ready');
        return s.length === 2 && s.every((x) => x.worker === c.worker.id) ? s : undefined;
      });
      assert.ok(!restored.some((s) => s.id === onB.id));
      // Requests keep succeeding once B is known lost: its endpoint is gone from the data plane at once.
      const checkFromMs = Date.now();
      await new Promise((r) => setTimeout(r, 1000));
      await traffic.stop();
      const after = traffic.results.filter((r) => r.atMs >= checkFromMs);
      assert.ok(after.length > 20, `requests ran after the loss (${after.length})`);
      assert.deepEqual(
        after.filter((r) => r.status !== 200),
        [],
        'every request after the loss succeeded',
      );
      // Before the timeout requests may still go to B's dead endpoint: the timeout bounds that window.
      const failedMeanwhile = traffic.results.filter((r) => r.atMs >= killedAtMs && r.atMs < checkFromMs && r.status !== 200).length;
      t.diagnostic(`requests failed between the kill and the loss: ${failedMeanwhile}`);
    } finally {
      await traffic.stop();
    }
    assert.equal((await c.admin('DELETE', '/v1/functions/spread')).status, 200);
  });

  test('a worker killed alone leaves its sandboxes running until a worker restarted on its dataDir kills them', async () => {
    const dir = tempDir('baton-wfail-b2-');
    const b = await startChildWorker(dir);
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('orphan', { scaling: { minScale: 2, maxScale: 2 } }))).status, 201);
    const placed = await waitFor('two ready sandboxes', async () => {
      const s = (await sandboxes('orphan')).filter((x) => x.state === 'ready');
      return s.length === 2 ? s : undefined;
    });
    const onB = placed.filter((s) => s.worker === b.id);
    assert.ok(onB.length >= 1, 'a sandbox on B');
    const pids = onB.map((s) => {
      const pid = sandboxPid(s.id);
      assert.ok(pid !== undefined, `sandbox ${s.id} runs`);
      groups.add(pid);
      return pid;
    });

    b.process.kill('SIGKILL');
    await new Promise<void>((resolve) => (b.process.exitCode !== null || b.process.signalCode !== null ? resolve() : b.process.once('exit', () => resolve())));
    assert.ok(pids.every(pidAlive), 'SIGKILL on the daemon alone leaves its sandboxes running');

    const restarted = await startChildWorker(dir);
    assert.notEqual(restarted.id, b.id, 'a restarted worker has a new id');
    for (const pid of pids) assert.equal(pidAlive(pid), false, `sandbox process ${pid} was killed by the restarted worker`);
    for (const s of onB) assert.ok(restarted.output().includes(s.id), `the restarted worker's log names ${s.id}`);
    assert.match(restarted.output(), /killed \d+ sandbox process group\(s\) left by a previous run/);

    // The control plane replaces what it lost, on the workers that are up.
    await waitFor('B to be lost', async () => ((await workerStatus(b.id)) === 'lost' ? true : undefined), 5000);
    await waitFor('the desired scale again', async () => {
      const s = (await sandboxes('orphan')).filter((x) => x.state === 'ready');
      return s.length === 2 && s.every((x) => x.worker !== b.id) ? true : undefined;
    });
    assert.equal((await c.admin('DELETE', '/v1/functions/orphan')).status, 200);

    // A graceful stop deletes its sandboxes and leaves no record behind.
    restarted.process.kill('SIGTERM');
    await new Promise<void>((resolve) =>
      restarted.process.exitCode !== null || restarted.process.signalCode !== null ? resolve() : restarted.process.once('exit', () => resolve()),
    );
    assert.deepEqual(readdirSync(join(dir, 'processes')), [], 'no process record is left');
  });

  test('a sandbox that stops answering is detected by the liveness probe, reported unresponsive, and replaced', async () => {
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('hangs', { scaling: { minScale: 1, maxScale: 1 } }))).status, 201);
    const first = await waitFor('a ready sandbox', async () => (await sandboxes('hangs')).find((x) => x.state === 'ready'));
    assert.equal(first.worker, c.worker.id);
    const pid = sandboxPid(first.id);
    assert.ok(pid !== undefined);
    groups.add(pid);
    assert.equal((await c.invoke('hangs')).status, 200);

    process.kill(pid, 'SIGSTOP');
    const replacement = await waitFor(
      'a replacement',
      async () => (await sandboxes('hangs')).find((x) => x.state === 'ready' && x.id !== first.id),
      10_000,
    );
    assert.ok(replacement);
    const d = await c.admin('GET', '/v1/functions/hangs');
    assert.ok(!(d.body.sandboxes as SandboxView[]).some((s) => s.id === first.id), 'the unresponsive sandbox is forgotten');
    assert.match(String(d.body.status.condition?.message), /unresponsive/);
    await waitFor('the stopped sandbox to be killed', () => (pidAlive(pid) ? undefined : true), 5000);
    assert.equal((await c.invoke('hangs')).status, 200);
    assert.equal((await c.admin('DELETE', '/v1/functions/hangs')).status, 200);
  });
});
