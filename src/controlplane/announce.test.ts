// The actuator's coalesced endpoint announcements against a real DataPlane
// over real RPC: sandboxes that become ready together reach it in one
// AddEndpoints under one epoch, the data plane ends with all of them and
// sees no gap in the function's chain, and a data plane that cannot be
// reached is marked for a full sync. The worker is a small in-process
// stand-in (as in actuator.test.ts) so that the test decides when creates
// answer.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@connectrpc/connect';
import { Registry } from 'prom-client';
import type { AddEndpointsRequest } from '../gen/baton/v1/dataplane_pb.js';
import { ControlPlaneService } from '../gen/baton/v1/controlplane_pb.js';
import { DataPlaneService } from '../gen/baton/v1/dataplane_pb.js';
import { DataPlane } from '../dataplane/index.js';
import { GAP_GRACE_MS } from '../dataplane/dataplane.js';
import { compileConfig, dataPlaneSchema, type ControlPlaneConfig } from '../shared/config.js';
import type { DualListener } from '../shared/listener.js';
import { silentLogger } from '../shared/logging.js';
import { createRpcClient, startRpcServer } from '../shared/rpc.js';
import { freePort } from '../shared/test-support.js';
import { parseFunctionSpec, toFunctionSpecMessage } from '../shared/spec.js';
import { Actuator } from './actuator.js';
import { newFunctionState, type FunctionState } from './function-state.js';
import type { DataPlaneMember, Membership } from './membership.js';
import type { ControlPlaneMetrics } from './metrics.js';
import { createPlacementPolicy } from './placement/index.js';
import { createEvictionPolicy } from './scaling/eviction.js';

const TOKEN = 'test-token';
const config = {
  sandboxCreateTimeoutMs: 5000,
  drainTimeoutMs: 0,
  crashLoopWindowMs: 10_000,
  createBackoffInitialMs: 250,
  createBackoffMaxMs: 30_000,
  workerHeartbeatIntervalMs: 5000,
} as ControlPlaneConfig;
const metrics = { sandboxCreateFailures: { inc() {} }, sandboxCreateSeconds: { observe() {} } } as unknown as ControlPlaneMetrics;

/** What the data plane reported missing (ReportGaps), by call. */
const gaps: string[][] = [];
let cpListener: DualListener;
let dp: DataPlane;
let dpClient: Client<typeof DataPlaneService>;

before(async () => {
  cpListener = await startRpcServer({
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    token: TOKEN,
    metrics: new Registry(),
    routes: (router) =>
      router.service(ControlPlaneService, {
        registerDataPlane: () => ({ metricsIntervalMs: 0 }),
        reportInFlight: () => ({}),
        reportGaps: (req) => {
          gaps.push(req.functions);
          return {};
        },
      }),
  });
  const dpConfig = compileConfig(dataPlaneSchema, {
    port: 0,
    rpcPort: 0,
    controlPlaneUrl: `http://127.0.0.1:${cpListener.port}`,
    token: TOKEN,
    metricsIntervalMs: 1000,
    logLevel: 'silent',
  });
  dp = await DataPlane.create(dpConfig, { log: silentLogger() });
  dpClient = createRpcClient(DataPlaneService, { baseUrl: `http://${dp.rpcAddress}`, token: TOKEN });
  await dpClient.syncState({ functions: [], complete: true, epoch: 1n });
});

after(async () => {
  await dp.stop(200);
  await cpListener.close(0);
});

interface Setup {
  actuator: Actuator;
  fn: FunctionState;
  /** Every AddEndpoints the actuator sent to the reachable data plane. */
  adds: AddEndpointsRequest[];
  /** Creates the worker holds until release(). */
  held: number;
  release: () => void;
  members: DataPlaneMember[];
}

/** An actuator whose worker answers creates only on release(), with the real data plane (and optionally one that is down). */
async function setup(name: string, { withUnreachable = false } = {}): Promise<Setup> {
  let gate!: () => void;
  let opened = new Promise<void>((r) => (gate = r));
  const s = { adds: [] as AddEndpointsRequest[], held: 0 } as Setup;
  s.release = () => {
    gate();
    opened = new Promise<void>((r) => (gate = r));
  };
  let port = 20_000;
  const worker = {
    id: 'w1',
    address: 'w1:1',
    status: 'ready',
    capacity: { cpuMillis: 100_000, memoryMb: 100_000 },
    runtimes: [],
    avoidUntilMs: 0,
    client: {
      createSandbox: async (_req: { sandboxId: string }) => {
        s.held += 1;
        await opened;
        return { sandbox: { address: `127.0.0.1:${port++}` } };
      },
      // The batched call as the worker implements it: each create on its own, results in order.
      async createSandboxes(req: { creates: { sandboxId: string }[] }) {
        return { results: await Promise.all(req.creates.map(async (c) => ({ created: await worker.client.createSandbox(c) }))) };
      },
      deleteSandbox: async () => ({}),
    },
  };
  const recording = {
    id: 'dp-real',
    needsSync: false,
    client: {
      ...dpClient,
      // The real call; the test keeps what was sent.
      addEndpoints: (req: AddEndpointsRequest) => {
        s.adds.push(req);
        return dpClient.addEndpoints(req);
      },
    },
  } as unknown as DataPlaneMember;
  s.members = [recording];
  if (withUnreachable) {
    const down = createRpcClient(DataPlaneService, { baseUrl: `http://127.0.0.1:${await freePort()}`, token: TOKEN, timeoutMs: 2000 });
    s.members.push({ id: 'dp-down', needsSync: false, client: down } as unknown as DataPlaneMember);
  }
  const membership = {
    workers: new Map([['w1', worker]]),
    dataPlanes: new Map(s.members.map((m) => [m.id, m])),
    readyWorkers: () => [worker],
  } as unknown as Membership;
  s.actuator = new Actuator(config, membership, createPlacementPolicy('kubernetes'), createEvictionPolicy('newest'), metrics, silentLogger());
  s.fn = newFunctionState(parseFunctionSpec({ name, command: ['x'], resources: { cpuMillis: 10, memoryMb: 10 } }), 1, 0, 0);
  // Register the function on the real data plane the way the control plane does: a stamped change.
  await dpClient.addFunction({ function: toFunctionSpecMessage(s.fn.spec, 1n), change: s.actuator.stamp(s.fn) });
  return s;
}

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The data plane's routable sandboxes of a function, from its own gauge. */
async function endpointsOn(name: string): Promise<number> {
  const m = await dp.metrics.registry.getSingleMetric('baton_dataplane_endpoints')?.get();
  return m?.values.find((v) => v.labels.function === name)?.value ?? 0;
}

test('sandboxes that become ready together reach the data plane in one AddEndpoints with one epoch; it routes to all of them', async () => {
  const s = await setup('together');
  const registeredAt = s.fn.epoch;
  s.fn.desired = 6;
  s.actuator.reconcile(s.fn);
  await until('6 creates held by the worker', () => s.held === 6);
  s.release();
  await until('6 creation records', () => s.actuator.creations.since(0, 'together').records.length === 6);

  assert.equal(s.adds.length, 1, `one AddEndpoints for the batch, got ${s.adds.map((a) => a.endpoints.length).join(', ')}`);
  const add = s.adds[0];
  assert.ok(add);
  assert.equal(add.endpoints.length, 6);
  assert.deepEqual(new Set(add.endpoints.map((e) => e.sandboxId)), new Set(s.fn.sandboxes.keys()));
  assert.equal(add.change?.previousEpoch, registeredAt, 'the batch is the change after the registration');
  assert.equal(add.change?.epoch, s.fn.epoch, 'one stamp for the batch: it is the function\'s latest change');
  assert.equal(await endpointsOn('together'), 6);
  for (const c of s.actuator.creations.since(0, 'together').records) {
    assert.ok(c.success);
    assert.ok(c.propagationUs > 0, 'each creation keeps its own time to routable');
  }
  assert.equal(s.members[0]?.needsSync, false);

  // A second wave is the next change in the chain: the data plane sees no gap and ends with all 9.
  const before = s.fn.epoch;
  s.fn.desired = 9;
  s.actuator.reconcile(s.fn);
  await until('3 more creates held', () => s.held === 9);
  s.release();
  await until('9 endpoints on the data plane', async () => (await endpointsOn('together')) === 9);
  assert.equal(s.adds.length, 2);
  assert.equal(s.adds[1]?.change?.previousEpoch, before);
  await sleep(GAP_GRACE_MS + 500); // the data plane looks for gaps every 250 ms once one is older than the grace
  assert.deepEqual(gaps.filter((g) => g.includes('together')), [], 'no epoch went missing');
});

test('a sandbox forgotten before its batch is sent is left out of it, and the data plane does not route to it', async () => {
  const s = await setup('forgotten');
  s.fn.desired = 3;
  s.actuator.reconcile(s.fn);
  await until('3 creates held', () => s.held === 3);
  s.release();
  await until('3 creation records', () => s.actuator.creations.since(0, 'forgotten').records.length === 3);
  const sent = new Set(s.adds.flatMap((a) => a.endpoints.map((e) => e.sandboxId)));
  assert.equal(sent.size, 3);

  // Now the same with a crash between ready and the flush: announce() is what createAndRoute calls.
  const [victim, survivor] = [...s.fn.sandboxes.values()];
  assert.ok(victim && survivor);
  const addsBefore = s.adds.length;
  const a = s.actuator.announce(s.fn, victim);
  const b = s.actuator.announce(s.fn, survivor);
  s.actuator.sandboxFailed(s.fn, victim.id, 'exited', 'code 1');
  await Promise.all([a, b]);
  assert.equal(s.adds.length, addsBefore + 1);
  assert.deepEqual(s.adds.at(-1)?.endpoints.map((e) => e.sandboxId), [survivor.id], 'the crashed sandbox is not announced again');
  await until('the data plane holds the 2 live sandboxes', async () => (await endpointsOn('forgotten')) === 2);
});

test('a data plane that misses the batch is marked for a full sync; the others get every endpoint', async () => {
  const s = await setup('partial', { withUnreachable: true });
  s.fn.desired = 4;
  s.actuator.reconcile(s.fn);
  await until('4 creates held', () => s.held === 4);
  s.release();
  await until('4 creation records', () => s.actuator.creations.since(0, 'partial').records.length === 4, 15_000);
  assert.equal(s.adds.length, 1);
  assert.equal(await endpointsOn('partial'), 4);
  const [up, down] = s.members;
  assert.equal(up?.needsSync, false);
  assert.equal(down?.needsSync, true, 'the unreachable data plane gets the full state on its next registration');
});
