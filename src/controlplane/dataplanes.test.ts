// The control plane with two data planes, over real RPC: recording
// DataPlaneService servers stand in for the data planes. Checks that every
// data plane gets every change, stamped with increasing epochs chained per
// function; that a registration gets one epoch-stamped full snapshot (also
// after a control-plane restart, above every epoch from before); that gap
// reports are answered with the functions' state; and that the load is
// summed over data planes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import type { Change, StateSnapshot } from '../gen/baton/v1/common_pb.js';
import { ControlPlaneService } from '../gen/baton/v1/controlplane_pb.js';
import { DataPlaneService } from '../gen/baton/v1/dataplane_pb.js';
import { compileConfig, controlPlaneSchema } from '../shared/config.js';
import type { DualListener } from '../shared/listener.js';
import { silentLogger } from '../shared/logging.js';
import { createRpcClient, startRpcServer } from '../shared/rpc.js';
import { ControlPlane } from './index.js';

interface Recorder {
  id: string;
  listener: DualListener;
  syncs: StateSnapshot[];
  changes: { what: string; function: string; change: Change | undefined }[];
}

async function recordingDataPlane(id: string): Promise<Recorder> {
  const r: Recorder = { id, listener: undefined as unknown as DualListener, syncs: [], changes: [] };
  r.listener = await startRpcServer({
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    token: undefined,
    metrics: new Registry(),
    routes: (router) =>
      router.service(DataPlaneService, {
        addFunction: (req) => {
          r.changes.push({ what: 'add function', function: req.function?.name ?? '', change: req.change });
          return {};
        },
        removeFunction: (req) => {
          r.changes.push({ what: 'remove function', function: req.name, change: req.change });
          return {};
        },
        addEndpoints: (req) => {
          r.changes.push({ what: 'add endpoints', function: req.function, change: req.change });
          return {};
        },
        removeEndpoints: (req) => {
          r.changes.push({ what: 'remove endpoints', function: req.function, change: req.change });
          return { abandonedInFlight: 0 };
        },
        rejectQueued: () => ({}),
        syncState: (req) => {
          r.syncs.push(req);
          return {};
        },
      }),
  });
  return r;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await sleep(10);
  assert.ok(ok(), `timed out waiting for ${what}`);
}

const dir = mkdtempSync(join(tmpdir(), 'baton-dps-'));
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

async function startControlPlane(): Promise<ControlPlane> {
  const cp = await ControlPlane.create(compileConfig(controlPlaneSchema, { apiPort: 0, dataDir: dir, logLevel: 'silent', recoveryWindowMs: 0 }), { log: silentLogger() });
  return cp;
}

test('two data planes: every change reaches both with chained epochs; snapshots on registration and gaps; load is summed', async () => {
  let cp = await startControlPlane();
  let stopped = false;
  cleanups.push(() => (stopped ? Promise.resolve() : cp.stop()));
  const dpA = await recordingDataPlane('dp-a');
  const dpB = await recordingDataPlane('dp-b');
  const dps = [dpA, dpB];
  for (const d of dps) cleanups.push(() => d.listener.close(0));
  let client = createRpcClient(ControlPlaneService, { baseUrl: cp.url });
  const register = (d: Recorder, incarnation: bigint) =>
    client.registerDataPlane({ dataPlaneId: d.id, address: `127.0.0.1:${d.listener.port}`, proxyAddress: '127.0.0.1:1', incarnation });

  for (const d of dps) await register(d, 1n);
  await until('both snapshots', () => dps.every((d) => d.syncs.length === 1));
  for (const d of dps) assert.equal(d.syncs[0]?.complete, true);
  const firstSnapshotEpoch = dpA.syncs[0]?.epoch ?? 0n;
  assert.ok(firstSnapshotEpoch > 0n);

  await cp.createFunction({ name: 'f', command: ['node', 'x.js'] });
  await cp.patchFunction('f', { scaling: { maxScale: 5 } });
  for (const d of dps) {
    const adds = d.changes.filter((c) => c.function === 'f' && c.what === 'add function');
    assert.equal(adds.length, 2, `${d.id} got both changes`);
    const [a, b] = adds.map((c) => c.change);
    assert.ok(a && b);
    assert.equal(a.previousEpoch, 0n, 'the first change of a function starts its chain');
    assert.ok(a.epoch > firstSnapshotEpoch);
    assert.equal(b.previousEpoch, a.epoch, 'each change names the previous one');
    assert.ok(b.epoch > a.epoch);
  }
  const latest = dpA.changes.at(-1)?.change?.epoch ?? 0n;
  assert.deepEqual(dpB.changes.map((c) => c.change?.epoch), dpA.changes.map((c) => c.change?.epoch), 'the same epochs on both');

  // The same incarnation is a heartbeat: no new snapshot. A new one (a restart) gets the full state.
  await register(dpA, 1n);
  await register(dpB, 2n);
  await until('the restarted data plane\'s snapshot', () => dpB.syncs.length === 2);
  assert.equal(dpA.syncs.length, 1);
  const resync = dpB.syncs[1];
  assert.equal(resync?.complete, true);
  assert.deepEqual(resync?.functions.map((f) => [f.name, f.epoch, f.function?.scaling?.maxScale]), [['f', latest, 5]]);

  // A gap report gets the state of the functions named, and the absence of unknown ones.
  const gap = await client.reportGaps({ dataPlaneId: 'dp-a', functions: ['f', 'nope'] });
  assert.equal(gap.complete, false);
  assert.equal(gap.functions[0]?.epoch, latest);
  assert.equal(gap.functions[0]?.function?.name, 'f');
  assert.equal(gap.functions[1]?.name, 'nope');
  assert.equal(gap.functions[1]?.function, undefined);
  assert.ok((gap.functions[1]?.epoch ?? 0n) > latest);

  // Load is summed over the data planes.
  await client.reportInFlight({ dataPlaneId: 'dp-a', functions: [{ function: 'f', inFlight: 3, queued: 1, averageConcurrency: 4 }] });
  await client.reportInFlight({ dataPlaneId: 'dp-b', functions: [{ function: 'f', inFlight: 4, queued: 2, averageConcurrency: 6 }] });
  const status = cp.describeFunction('f').status as { inFlight: number; queued: number };
  assert.equal(status.inFlight, 7);
  assert.equal(status.queued, 3);

  // A restarted control plane: the data planes' next registration (their heartbeat) gets the full state, above every old epoch.
  await cp.stop();
  stopped = true;
  cp = await startControlPlane();
  stopped = false;
  client = createRpcClient(ControlPlaneService, { baseUrl: cp.url });
  await register(dpA, 1n);
  await until('the snapshot from the new control plane', () => dpA.syncs.length === 2);
  const after = dpA.syncs[1];
  assert.equal(after?.functions[0]?.name, 'f');
  assert.ok((after?.functions[0]?.epoch ?? 0n) > (gap.functions[1]?.epoch ?? 0n), 'epochs continue above the old control plane\'s');
});
