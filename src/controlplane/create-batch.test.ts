// The actuator's batched creates over real RPC: the creates it places on one
// worker in one turn go in one CreateSandboxes; a worker of an older version,
// which answers it with UNIMPLEMENTED, gets one CreateSandbox per sandbox, and
// its sandboxes start all the same. The worker is a real RPC server whose
// service records the calls (it serves only what the test needs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceImpl } from '@connectrpc/connect';
import { Registry } from 'prom-client';
import { WorkerService } from '../gen/baton/v1/worker_pb.js';
import type { ControlPlaneConfig } from '../shared/config.js';
import { silentLogger } from '../shared/logging.js';
import { createRpcClient, startRpcServer } from '../shared/rpc.js';
import { parseFunctionSpec } from '../shared/spec.js';
import { Actuator } from './actuator.js';
import { newFunctionState } from './function-state.js';
import type { Membership } from './membership.js';
import type { ControlPlaneMetrics } from './metrics.js';
import { createPlacementPolicy } from './placement/index.js';
import { createEvictionPolicy } from './scaling/eviction.js';

const config = {
  sandboxCreateTimeoutMs: 5000,
  drainTimeoutMs: 0,
  crashLoopWindowMs: 10_000,
  createBackoffInitialMs: 250,
  createBackoffMaxMs: 30_000,
  workerHeartbeatIntervalMs: 5000,
} as ControlPlaneConfig;
const metrics = { sandboxCreateFailures: { inc() {} }, sandboxCreateSeconds: { observe() {} } } as unknown as ControlPlaneMetrics;

/** Starts a worker RPC server; `batched` decides whether it serves CreateSandboxes. Returns the calls it got. */
async function startWorker(batched: boolean) {
  const calls: string[] = [];
  let port = 30_000;
  const impl: Partial<ServiceImpl<typeof WorkerService>> = {
    createSandbox(req) {
      calls.push(`create ${req.sandboxId}`);
      return { sandbox: { sandboxId: req.sandboxId, address: `127.0.0.1:${port++}` } };
    },
    deleteSandbox: () => ({}),
  };
  if (batched) {
    impl.createSandboxes = (req) => {
      calls.push(`batch ${req.creates.length}`);
      return { results: req.creates.map((c) => ({ created: { sandbox: { sandboxId: c.sandboxId, address: `127.0.0.1:${port++}` } } })) };
    };
  }
  const listener = await startRpcServer({
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    metrics: new Registry(),
    routes: (router) => router.service(WorkerService, impl),
  });
  return { calls, listener };
}

async function run(batched: boolean): Promise<{ calls: string[]; ready: number }> {
  const { calls, listener } = await startWorker(batched);
  try {
    const worker = {
      id: 'w1',
      address: `127.0.0.1:${listener.port}`,
      status: 'ready',
      capacity: { cpuMillis: 100_000, memoryMb: 100_000 },
      runtimes: [],
      avoidUntilMs: 0,
      client: createRpcClient(WorkerService, { baseUrl: `http://127.0.0.1:${listener.port}` }),
    };
    const membership = { workers: new Map([['w1', worker]]), dataPlanes: new Map(), readyWorkers: () => [worker] } as unknown as Membership;
    const actuator = new Actuator(config, membership, createPlacementPolicy('kubernetes'), createEvictionPolicy('newest'), metrics, silentLogger());
    const fn = newFunctionState(parseFunctionSpec({ name: 'f', command: ['x'], resources: { cpuMillis: 10, memoryMb: 10 } }), 1, 0, 0);
    fn.desired = 5;
    actuator.reconcile(fn);
    const ready = () => [...fn.sandboxes.values()].filter((s) => s.phase === 'ready').length;
    for (let i = 0; i < 500 && ready() < 5; i++) await sleep(10);
    assert.equal(fn.condition, undefined, fn.condition?.message);
    return { calls, ready: ready() };
  } finally {
    await listener.close(0);
  }
}

test('the creates placed on a worker in one turn go in one CreateSandboxes', async () => {
  const { calls, ready } = await run(true);
  assert.equal(ready, 5);
  assert.deepEqual(calls, ['batch 5']);
});

test('a worker without CreateSandboxes (UNIMPLEMENTED) gets one CreateSandbox per sandbox', async () => {
  const { calls, ready } = await run(false);
  assert.equal(ready, 5);
  assert.equal(calls.length, 5);
  assert.ok(calls.every((c) => c.startsWith('create ')), calls.join('; '));
});
