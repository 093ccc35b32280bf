// The control plane killed with SIGKILL under warm load (issue 5, "Control-plane
// restart"): the data plane keeps serving warm requests from the endpoints it
// has, admin calls fail while nothing listens, and a control plane started
// again on the same data directory reads its registrations, takes back the
// sandboxes the worker still runs (the same ids), pushes them to the data
// plane, and goes on scaling.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { DataPlane } from '../../src/dataplane/index.js';
import { compileConfig, dataPlaneSchema, workerSchema } from '../../src/shared/config.js';
import { Worker } from '../../src/worker/index.js';
import { adminCall, echoSpec, freePort, REPO_ROOT, waitFor, warmLoad } from '../helpers/cluster.js';

const MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');


interface Sandbox {
  id: string;
  state: string;
}

describe('control plane killed with SIGKILL under warm load', () => {
  let dir: string;
  let apiUrl: string;
  let configPath: string;
  let cp: ChildProcess | undefined;
  let worker: Worker;
  let dp: DataPlane;

  const startControlPlane = async (): Promise<void> => {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    cp = spawn(process.execPath, [MAIN, 'controlplane', '--config', configPath], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor('the control plane to answer', async () => {
      try {
        return (await request(`${apiUrl}/health`)).statusCode === 200 || undefined;
      } catch {
        return undefined;
      }
    });
  };

  const admin = (method: string, path: string, body?: unknown): ReturnType<typeof adminCall> => adminCall(apiUrl, method, path, body);

  const readyIds = async (name: string): Promise<string[]> => {
    const d = await admin('GET', `/v1/functions/${name}`);
    return ((d.body?.sandboxes ?? []) as Sandbox[]).filter((s) => s.state === 'ready').map((s) => s.id).sort();
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-cp-kill-'));
    const port = await freePort();
    apiUrl = `http://127.0.0.1:${port}`;
    configPath = join(dir, 'controlplane.yaml');
    writeFileSync(
      configPath,
      [
        'host: 127.0.0.1',
        `apiPort: ${port}`,
        `dataDir: ${join(dir, 'cp')}`,
        'scalingPeriodMs: 200',
        'metricsIntervalMs: 200',
        'workerHeartbeatIntervalMs: 200',
        'workerHeartbeatTimeoutMs: 3000',
        `logLevel: ${process.env.BATON_TEST_LOG ?? 'silent'}`,
        '',
      ].join('\n'),
    );
    await startControlPlane();
    const logLevel = (process.env.BATON_TEST_LOG ?? 'silent') as 'silent';
    worker = await Worker.create(
      compileConfig(workerSchema, { controlPlaneUrl: apiUrl, rpcPort: 0, dataDir: join(dir, 'worker'), runtimes: ['process'], logLevel }),
    );
    dp = await DataPlane.create(compileConfig(dataPlaneSchema, { controlPlaneUrl: apiUrl, port: 0, rpcPort: 0, heartbeatIntervalMs: 200, logLevel }));
  });

  after(async () => {
    cp?.kill('SIGKILL');
    await dp?.stop();
    await worker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('warm requests never fail, the sandboxes are taken back, and scaling resumes', async () => {
    assert.equal((await admin('POST', '/v1/functions', echoSpec('steady', { scaling: { minScale: 2, containerConcurrency: 0 } }))).status, 201);
    const before = await waitFor('two ready sandboxes', async () => {
      const ids = await readyIds('steady');
      return ids.length === 2 ? ids : undefined;
    });
    const invokeUrl = `http://127.0.0.1:${dp.proxyPort}/fn/steady/`;
    await waitFor('the data plane to route', async () => (await request(invokeUrl)).statusCode === 200 || undefined);

    // Warm load: one request after another, for as long as the test runs.
    const load = warmLoad(invokeUrl);

    await new Promise((r) => setTimeout(r, 300));
    cp?.kill('SIGKILL');
    await new Promise<void>((resolve) => cp?.once('exit', () => resolve()));
    const sentAtKill = load.sent();
    // While it is down: nothing answers admin calls (a balancer in front answers 503, docs/ha.md).
    await assert.rejects(admin('GET', '/v1/functions'), /ECONNREFUSED/);
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(load.sent() > sentAtKill + 20, `warm requests went on while the control plane was down (${load.sent() - sentAtKill})`);

    await startControlPlane();
    // The worker re-registers and its sandboxes are adopted under the same ids, not replaced.
    const afterRestart = await waitFor('the same two sandboxes ready', async () => {
      const ids = await readyIds('steady');
      return ids.length === 2 ? ids : undefined;
    });
    assert.deepEqual(afterRestart, before);
    await new Promise((r) => setTimeout(r, 500));
    const { sent, failures } = await load.stop();
    assert.deepEqual(failures, [], `${failures.length} of ${sent} warm requests failed`);

    // Scaling resumes: a PATCH is acted on, and a new function starts cold through the data plane.
    assert.equal((await admin('PATCH', '/v1/functions/steady', { scaling: { minScale: 3 } })).status, 200);
    await waitFor('a third sandbox', async () => ((await readyIds('steady')).length === 3 ? true : undefined)).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify((await admin('GET', '/v1/functions/steady')).body)}`);
    });
    assert.equal((await admin('POST', '/v1/functions', echoSpec('fresh'))).status, 201);
    const cold = await request(`http://127.0.0.1:${dp.proxyPort}/fn/fresh/`);
    await cold.body.dump();
    assert.equal(cold.statusCode, 200);
    // The restarted control plane did not scale the adopted sandboxes down in its first stable window.
    assert.ok((await readyIds('steady')).length >= 3);
  });
});
