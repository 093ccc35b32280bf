// `baton bench scale`: Kubedirect's scale microbenchmarks (issue 6) on the
// emulated runtime, against a running cluster or, with `local`, a cluster
// this process starts (what `baton up --emulate N` runs, with the store in a
// temporary directory).
//
// Each point asks for N sandboxes (scale-sandboxes: one function's minScale,
// by PATCH; scale-functions: N functions deployed with minScale 1; scale-nodes:
// N×k sandboxes of one function on N nodes), then polls until every sandbox is
// ready on the control plane AND routable on every data plane. A data plane's
// view is read from its own /metrics (the `baton_dataplane_endpoints` gauge,
// on its RPC port, no token needed): it is what the data plane routes with,
// not what the control plane believes it sent. The stage breakdown comes from
// the control plane's creation records (GET /v1/creations). After each point
// the functions are deleted, and the next starts once they are gone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import type { CreationRecord } from '../controlplane/creation-trace.js';
import { AdminClient } from '../cli/client.js';
import { startCluster, type RunningCluster } from '../cli/up.js';
import { compileConfig, upSchema } from '../shared/config.js';
import { BatonError } from '../shared/errors.js';
import { creationRate, parseEndpointGauge, stageStatistics, type ScalePoint, type ScaleTest } from './stats.js';

/** What each benchmark sandbox reserves: small, so that a node holds 1,600 and placement never runs out at N = 5,000. */
export const BENCH_RESOURCES = Object.freeze({ cpuMillis: 10, memoryMb: 16 });

export interface ScaleBenchOptions {
  test: ScaleTest;
  /** N of each point. */
  sizes: readonly number[];
  /** scale-nodes: sandboxes per node. */
  perNode: number;
  /** scale-functions: how many deployments are in flight at once. */
  batch: number;
  /** The admin API of a running cluster; ignored with `local`. */
  api?: string | undefined;
  token?: string | undefined;
  /** Start an in-process cluster with this many emulated nodes (scale-nodes: N of each point instead). */
  local?: { nodes: number; logLevel: string } | undefined;
  pollMs: number;
  /** Per point, for the sandboxes to be ready and visible, and again for them to be gone. */
  timeoutMs: number;
  progress?: ((line: string) => void) | undefined;
}

interface DataPlaneInfo {
  id: string;
  address: string;
}

interface Target {
  client: AdminClient;
  stop(): Promise<void>;
}

/** Starts an in-process cluster with `nodes` emulated workers and its store in a temporary directory. */
async function startLocal(nodes: number, logLevel: string): Promise<Target> {
  const dataDir = mkdtempSync(join(tmpdir(), 'baton-bench-scale-'));
  let cluster: RunningCluster;
  try {
    const cfg = compileConfig(upSchema, { apiPort: 0, dataplanePort: 0, dataDir, logLevel, emulate: nodes }, 'bench scale --local');
    cluster = await startCluster(cfg);
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    client: new AdminClient({ api: cluster.apiUrl }),
    async stop() {
      await cluster.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function benchSpec(name: string, minScale: number): Record<string, unknown> {
  return { name, runtime: 'emulated', resources: BENCH_RESOURCES, scaling: { minScale, maxScale: 0 } };
}

/** Runs the test at every size and returns one point per size. */
export async function runScaleBench(o: ScaleBenchOptions): Promise<ScalePoint[]> {
  const points: ScalePoint[] = [];
  const say = o.progress ?? (() => undefined);
  let shared: Target | undefined;
  try {
    for (const size of o.sizes) {
      const nodes = o.test === 'scale-nodes' ? size : (o.local?.nodes ?? 0);
      let target: Target;
      if (o.local && o.test === 'scale-nodes') {
        say(`starting a local cluster with ${nodes} emulated nodes`);
        target = await startLocal(nodes, o.local.logLevel);
      } else if (o.local) {
        if (!shared) say(`starting a local cluster with ${nodes} emulated nodes`);
        shared ??= await startLocal(nodes, o.local.logLevel);
        target = shared;
      } else {
        target = { client: new AdminClient({ api: o.api, token: o.token }), stop: async () => undefined };
      }
      try {
        points.push(await runPoint(target.client, o, size));
      } finally {
        if (target !== shared) await target.stop();
      }
      const p = points[points.length - 1];
      if (p) say(`${p.test} N=${size}: ${p.visibleOnDataPlanes}/${p.sandboxes} ready and visible in ${p.observedSeconds.toFixed(2)} s`);
    }
  } finally {
    await shared?.stop();
  }
  return points;
}

async function emulatedNodes(client: AdminClient): Promise<string[]> {
  const { workers } = await client.call<{ workers: { id: string; status: string; runtimes: string[] }[] }>('GET', '/v1/workers');
  return workers.filter((w) => w.status === 'ready' && w.runtimes.includes('emulated')).map((w) => w.id);
}

async function runPoint(client: AdminClient, o: ScaleBenchOptions, size: number): Promise<ScalePoint> {
  const nodeIds = await emulatedNodes(client);
  if (nodeIds.length === 0) throw new BatonError('NO_WORKERS', 'no ready worker offers the emulated runtime: start the cluster with --emulate N, or use --local');
  const { dataPlanes } = await client.call<{ dataPlanes: DataPlaneInfo[] }>('GET', '/v1/dataplanes');
  if (dataPlanes.length === 0) throw new BatonError('PEER_UNAVAILABLE', 'no data plane is registered with the control plane');
  // The cluster's control plane must keep creation records (an older Baton does not): ask before creating anything.
  await client.call('GET', `/v1/creations?since=${Date.now()}`);
  const prefix = `bench-${o.test.slice('scale-'.length)}-${size}-${Date.now().toString(36)}-`;
  try {
    const point = await measurePoint(client, o, size, prefix, nodeIds, dataPlanes);
    await cleanUp(client, o, prefix);
    return point;
  } catch (err) {
    // Whatever failed, leave nothing of ours behind on the cluster; the first error is the one to report.
    await cleanUp(client, o, prefix).catch(() => undefined);
    throw err;
  }
}

async function measurePoint(
  client: AdminClient,
  o: ScaleBenchOptions,
  size: number,
  prefix: string,
  nodeIds: readonly string[],
  dataPlanes: readonly DataPlaneInfo[],
): Promise<ScalePoint> {
  const requestedAt = new Map<string, number>();
  let sandboxes: number;
  let functions: number;
  let startMs: number;

  if (o.test === 'scale-functions') {
    functions = size;
    sandboxes = size;
    const names = Array.from({ length: size }, (_, i) => `${prefix}${i + 1}`);
    startMs = Date.now();
    await inBatches(names, o.batch, async (name) => {
      requestedAt.set(name, Date.now());
      await client.call('POST', '/v1/functions', benchSpec(name, 1));
    });
  } else {
    functions = 1;
    sandboxes = o.test === 'scale-nodes' ? size * o.perNode : size;
    const name = `${prefix}1`;
    // Registered at zero first, so that the measurement is the scale-up alone (the data planes already know the function).
    await client.call('POST', '/v1/functions', benchSpec(name, 0));
    startMs = Date.now();
    requestedAt.set(name, startMs);
    await client.call('PATCH', `/v1/functions/${encodeURIComponent(name)}`, { scaling: { minScale: sandboxes } });
  }

  const mine = (fn: string): boolean => fn.startsWith(prefix);
  const deadline = startMs + o.timeoutMs;
  let ready = 0;
  let visible = 0;
  let observedMs: number;
  for (;;) {
    ready = await readyOnControlPlane(client, mine);
    visible = ready < sandboxes ? 0 : await minVisible(dataPlanes, mine);
    if (ready >= sandboxes && visible >= sandboxes) {
      observedMs = Date.now();
      break;
    }
    if (Date.now() > deadline) {
      throw new BatonError('BENCH_TIMEOUT', `${o.test} N=${size}: ${ready}/${sandboxes} ready and ${visible} visible on every data plane after ${o.timeoutMs} ms`);
    }
    await sleep(o.pollMs);
  }

  // A creation's record is written once its propagation is acknowledged, a moment after the data plane routes it.
  let records: CreationRecord[] = [];
  let complete = true;
  for (;;) {
    const res = await client.call<{ creations: CreationRecord[]; complete: boolean }>('GET', `/v1/creations?since=${startMs}`);
    records = res.creations.filter((r) => mine(r.function));
    complete = res.complete;
    if (records.filter((r) => r.success).length >= sandboxes || Date.now() > deadline) break;
    await sleep(o.pollMs);
  }
  const succeeded = records.filter((r) => r.success);
  const lastAckMs = succeeded.reduce((m, r) => Math.max(m, r.atMs), startMs);
  let perNode: ScalePoint['perNode'];
  if (o.test === 'scale-nodes') {
    const counts = new Map<string, number>(nodeIds.map((id) => [id, 0]));
    for (const r of succeeded) if (counts.has(r.workerId)) counts.set(r.workerId, (counts.get(r.workerId) ?? 0) + 1);
    perNode = { min: Math.min(...counts.values()), max: Math.max(...counts.values()) };
  }

  const lastAckSeconds = (lastAckMs - startMs) / 1000;
  return {
    test: o.test,
    size,
    nodes: nodeIds.length,
    functions,
    sandboxes,
    readySandboxes: ready,
    visibleOnDataPlanes: visible,
    dataPlanes: dataPlanes.length,
    observedSeconds: (observedMs - startMs) / 1000,
    lastAckSeconds,
    creationsPerSecond: creationRate(succeeded.length, lastAckSeconds),
    creations: succeeded.length,
    failedCreations: records.length - succeeded.length,
    recordsComplete: complete,
    stages: stageStatistics(succeeded, (r) => requestedAt.get(r.function) ?? startMs),
    ...(perNode ? { perNode } : {}),
  };
}

/**
 * Runs `work` over the items with at most `width` in flight. After the first
 * failure no lane starts another item, and it rejects only once every lane
 * has stopped: a clean-up after it then sees everything that was created.
 */
async function inBatches<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    try {
      while (!failed && next < items.length) await work(items[next++] as T);
    } catch (err) {
      failed = true;
      throw err;
    }
  };
  const lanes = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(width, items.length)) }, lane));
  const rejected = lanes.find((l): l is PromiseRejectedResult => l.status === 'rejected');
  if (rejected) throw rejected.reason;
}

async function readyOnControlPlane(client: AdminClient, mine: (fn: string) => boolean): Promise<number> {
  const { functions } = await client.call<{ functions: { name: string; readySandboxes: number }[] }>('GET', '/v1/functions');
  return functions.reduce((sum, f) => sum + (mine(f.name) ? f.readySandboxes : 0), 0);
}

/** The benchmark's routable endpoints on the data plane that has the fewest. */
async function minVisible(dataPlanes: readonly DataPlaneInfo[], mine: (fn: string) => boolean): Promise<number> {
  const counts = await Promise.all(
    dataPlanes.map(async (dp) => {
      const res = await request(`http://${dp.address}/metrics`);
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new BatonError('PEER_UNAVAILABLE', `data plane ${dp.id}: /metrics answered ${res.statusCode}`);
      let sum = 0;
      for (const [fn, n] of parseEndpointGauge(text)) if (mine(fn)) sum += n;
      return sum;
    }),
  );
  return Math.min(...counts);
}

/** Deletes the point's functions (by their prefix) and waits until the control plane and every data plane have forgotten them. */
async function cleanUp(client: AdminClient, o: ScaleBenchOptions, prefix: string): Promise<void> {
  const listed = await client.call<{ functions: { name: string }[] }>('GET', '/v1/functions');
  const names = listed.functions.map((f) => f.name).filter((n) => n.startsWith(prefix));
  await inBatches(names, o.batch, async (name) => {
    try {
      await client.call('DELETE', `/v1/functions/${encodeURIComponent(name)}`);
    } catch (err) {
      if (!(err instanceof BatonError && err.code === 'FUNCTION_NOT_FOUND')) throw err;
    }
  });
  // DELETE answers once the function's sandboxes are drained and gone and every data plane was told; the
  // name lingers on the control plane until then, so its absence from the list is the end of the point.
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const { functions } = await client.call<{ functions: { name: string }[] }>('GET', '/v1/functions');
    const left = functions.filter((f) => f.name.startsWith(prefix)).length;
    if (left === 0) return;
    if (Date.now() > deadline) throw new BatonError('BENCH_TIMEOUT', `cleaning up ${prefix}*: ${left} functions left after ${o.timeoutMs} ms`);
    await sleep(o.pollMs);
  }
}
