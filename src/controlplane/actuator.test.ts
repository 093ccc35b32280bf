// The actuator against fake workers and data planes: reservations, what a
// scale-down takes first, drains that hold room, and sandboxes under an
// operation that a worker resync must leave alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ControlPlaneConfig } from '../shared/config.js';
import { createLogger } from '../shared/logging.js';
import { parseFunctionSpec } from '../shared/spec.js';
import { Actuator } from './actuator.js';
import { newFunctionState, type FunctionState } from './function-state.js';
import type { Membership } from './membership.js';
import type { ControlPlaneMetrics } from './metrics.js';
import { createPlacementPolicy } from './placement/index.js';
import { createEvictionPolicy } from './scaling/eviction.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const config = {
  sandboxCreateTimeoutMs: 1000,
  drainTimeoutMs: 0,
  crashLoopWindowMs: 10_000,
  createBackoffInitialMs: 250,
  createBackoffMaxMs: 30_000,
  workerHeartbeatIntervalMs: 5000,
} as ControlPlaneConfig;
const metrics = { sandboxCreateFailures: { inc() {} }, sandboxCreateSeconds: { observe() {} } } as unknown as ControlPlaneMetrics;

interface Fake {
  actuator: Actuator;
  events: string[];
  /** Sandboxes the fake worker runs. */
  running: Set<string>;
  createMs: number;
  drainMs: number;
}

function setup(opts: { cpuMillis: number; createMs?: number; drainMs?: number }): Fake {
  const fake = { events: [] as string[], running: new Set<string>(), createMs: opts.createMs ?? 5, drainMs: opts.drainMs ?? 0 } as Fake;
  const worker = {
    id: 'w1',
    address: 'w1:1',
    status: 'ready',
    capacity: { cpuMillis: opts.cpuMillis, memoryMb: 100_000 },
    runtimes: [],
    avoidUntilMs: 0,
    client: {
      createSandbox: async (req: { sandboxId: string }) => {
        await sleep(fake.createMs);
        fake.running.add(req.sandboxId);
        fake.events.push(`create ${req.sandboxId}`);
        return { sandbox: { address: '127.0.0.1:1' } };
      },
      // The batched call as the worker implements it: each create on its own, results in order.
      async createSandboxes(req: { creates: { sandboxId: string }[] }) {
        return { results: await Promise.all(req.creates.map(async (c) => ({ created: await worker.client.createSandbox(c) }))) };
      },
      deleteSandbox: async (req: { sandboxId: string }) => {
        fake.running.delete(req.sandboxId);
        fake.events.push(`delete ${req.sandboxId}`);
        return {};
      },
    },
  };
  const dp = {
    id: 'dp',
    client: {
      addEndpoints: async () => ({}),
      removeEndpoints: async (req: { drain: boolean; sandboxIds: string[] }) => {
        if (req.drain) {
          fake.events.push(`drain ${req.sandboxIds.join(',')}`);
          await sleep(fake.drainMs);
        }
        return {};
      },
      rejectQueued: async (req: { code: string }) => {
        fake.events.push(`reject ${req.code}`);
        return {};
      },
    },
  };
  const membership = {
    workers: new Map([['w1', worker]]),
    dataPlanes: new Map([['dp', dp]]),
    readyWorkers: () => [worker],
  } as unknown as Membership;
  fake.actuator = new Actuator(config, membership, createPlacementPolicy('kubernetes'), createEvictionPolicy('newest'), metrics, createLogger('test', { level: 'silent' }));
  return fake;
}

function fn(cpuMillis: number): FunctionState {
  return newFunctionState(parseFunctionSpec({ name: 'f', command: ['x'], resources: { cpuMillis, memoryMb: 10 } }), 1, 0, 0);
}

const phases = (f: FunctionState) => [...f.sandboxes.values()].map((s) => (s.cancelled ? 'cancelled' : s.phase)).sort();

async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !probe(); i++) await sleep(5);
  assert.ok(probe(), `timed out waiting for ${what}`);
}

test('each sandbox reserves its resources on its worker until it is deleted; a full worker gives NO_CAPACITY', async () => {
  const fake = setup({ cpuMillis: 1000 });
  const f = fn(300);
  f.desired = 4;
  fake.actuator.reconcile(f);
  // Placement is synchronous: three fit at once, the fourth does not, while all are still starting.
  assert.deepEqual(phases(f), ['starting', 'starting', 'starting']);
  assert.equal(fake.actuator.reservedOn('w1').cpuMillis, 900);
  assert.equal(f.condition?.code, 'NO_CAPACITY');
  assert.match(f.condition?.message ?? '', /no worker has room for 300m CPU/);
  await until('3 ready', () => phases(f).join() === 'ready,ready,ready');
  assert.ok(!fake.events.includes('reject NO_CAPACITY'), 'requests were not failed: sandboxes were starting');
  f.desired = 0;
  fake.actuator.reconcile(f);
  await until('all deleted', () => f.sandboxes.size === 0);
  assert.equal(fake.actuator.reservedOn('w1').cpuMillis, 0);
  assert.equal(f.condition, undefined, 'the placement condition clears once nothing more is wanted');
});

test('a scale-down cancels sandboxes still starting before it drains warm ones; a scale-up takes them back', async () => {
  const fake = setup({ cpuMillis: 10_000, createMs: 5 });
  const f = fn(100);
  f.desired = 2;
  fake.actuator.reconcile(f);
  await until('2 ready', () => phases(f).join() === 'ready,ready');
  fake.createMs = 200;
  f.desired = 5;
  fake.actuator.reconcile(f);
  assert.deepEqual(phases(f), ['ready', 'ready', 'starting', 'starting', 'starting']);
  f.desired = 3;
  fake.actuator.reconcile(f);
  assert.deepEqual(phases(f), ['cancelled', 'cancelled', 'ready', 'ready', 'starting']);
  assert.ok(!fake.events.some((e) => e.startsWith('drain')), 'no warm sandbox drained');
  f.desired = 4;
  fake.actuator.reconcile(f);
  assert.deepEqual(phases(f), ['cancelled', 'ready', 'ready', 'starting', 'starting'], 'a cancelled start is wanted again, none new');
  assert.equal(f.sandboxes.size, 5);
  await until('4 ready, the cancelled one deleted', () => phases(f).join() === 'ready,ready,ready,ready');
  assert.equal(fake.running.size, 4);
  assert.equal(fake.actuator.reservedOn('w1').cpuMillis, 400);
});

test('a drain holds its room: queued requests wait for it rather than fail with NO_CAPACITY', async () => {
  const fake = setup({ cpuMillis: 1000, drainMs: 150 });
  const f = fn(1000);
  f.desired = 1;
  fake.actuator.reconcile(f);
  await until('ready', () => phases(f).join() === 'ready');
  const first = [...f.sandboxes.keys()][0] as string;
  f.desired = 0; // the grace period ended; a long request keeps the drain going
  fake.actuator.reconcile(f);
  await sleep(10);
  f.desired = 1; // a request queued meanwhile
  fake.actuator.reconcile(f);
  assert.equal(f.condition?.code, 'NO_CAPACITY');
  assert.equal(fake.actuator.shouldFailQueued(f, Date.now()), false);
  assert.ok(fake.actuator.operating(first), 'the draining sandbox is under an operation (a resync leaves it alone)');
  await until('a new sandbox once the drain freed the room', () => phases(f).join() === 'ready' && !f.sandboxes.has(first));
  assert.ok(!fake.events.includes('reject NO_CAPACITY'), fake.events.join('; '));
  assert.equal(fake.actuator.operating(first), false);
});

test('with nothing running, starting or draining, a full worker fails queued requests at once', async () => {
  const fake = setup({ cpuMillis: 500 });
  const f = fn(1000);
  f.desired = 1;
  fake.actuator.reconcile(f);
  assert.equal(f.condition?.code, 'NO_CAPACITY');
  assert.equal(fake.actuator.shouldFailQueued(f, Date.now()), true);
  await until('reject', () => fake.events.includes('reject NO_CAPACITY'));
});

test('a function being deleted drains all its sandboxes in one RemoveEndpoints per data plane, then deletes each', async () => {
  const fake = setup({ cpuMillis: 10_000 });
  const f = fn(100);
  f.desired = 3;
  fake.actuator.reconcile(f);
  await until('3 ready', () => phases(f).join() === 'ready,ready,ready');
  const ids = [...f.sandboxes.keys()];
  await until('their creates done (routed)', () => ids.every((id) => !fake.actuator.operating(id)));
  f.deleted = true;
  f.desired = 0;
  await fake.actuator.drainAndDeleteAll(f, [...f.sandboxes.values()]);
  const drains = fake.events.filter((e) => e.startsWith('drain'));
  assert.equal(drains.length, 1, drains.join('; '));
  assert.deepEqual(new Set(drains[0]?.slice('drain '.length).split(',')), new Set(ids));
  assert.equal(f.sandboxes.size, 0);
  assert.equal(fake.running.size, 0, 'each sandbox deleted on its worker');
  assert.equal(fake.actuator.reservedOn('w1').cpuMillis, 0);
  for (const id of ids) assert.equal(fake.actuator.operating(id), false);
});
