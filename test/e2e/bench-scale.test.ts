// `baton bench scale` end to end, small: scale-sandboxes (N = 20) and
// scale-functions (N = 10) against a running cluster's admin API, and
// scale-nodes (5 nodes × 2) with --local, where the benchmark starts its own
// in-process cluster. Every sandbox must be counted ready on the control plane
// and routable on the data plane, every stage reported from the creation
// records, and the benchmark's functions gone afterwards. No timing
// thresholds: this machine is shared and slow. Also GET /v1/creations itself.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { CreationRecord } from '../../src/controlplane/creation-trace.js';
import { runScaleBench, type ScaleBenchOptions } from '../../src/bench/scale.js';
import { STAGES, type ScalePoint } from '../../src/bench/stats.js';
import { BatonError } from '../../src/shared/errors.js';
import { startTestCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

const COMMON = { perNode: 2, batch: 5, pollMs: 50, timeoutMs: 60_000 } satisfies Partial<ScaleBenchOptions>;

function checkPoint(p: ScalePoint, want: { sandboxes: number; functions: number; nodes: number }): void {
  const show = JSON.stringify(p);
  assert.equal(p.sandboxes, want.sandboxes, show);
  assert.equal(p.functions, want.functions, show);
  assert.equal(p.nodes, want.nodes, show);
  assert.equal(p.readySandboxes, want.sandboxes, show);
  assert.equal(p.visibleOnDataPlanes, want.sandboxes, show);
  assert.equal(p.dataPlanes, 1, show);
  assert.equal(p.creations, want.sandboxes, show);
  assert.equal(p.failedCreations, 0, show);
  assert.equal(p.recordsComplete, true, show);
  assert.ok(p.observedSeconds > 0 && p.lastAckSeconds > 0 && p.creationsPerSecond > 0, show);
  for (const s of STAGES) {
    const st = p.stages[s];
    assert.ok(Number.isFinite(st.p50) && Number.isFinite(st.p99) && Number.isFinite(st.max), `${s}: ${show}`);
    assert.ok(st.p50 >= 0 && st.p50 <= st.p99 && st.p99 <= st.max, `${s}: ${show}`);
  }
  // Every creation is routable at the latest when its record is written, which is the end of its total.
  assert.ok(p.stages.total.max <= p.lastAckSeconds * 1000 + 1, show);
}

describe('baton bench scale', () => {
  let c: TestCluster;
  before(async () => {
    // Emulated sandboxes that take 50 ms to start: with in-memory calls between the cluster's components an
    // instant start made all 20 of a point ready before the 1 ms timeout of the timeout test was ever checked.
    c = await startTestCluster({ emulate: 3, worker: { emulation: { startDelay: { distribution: 'constant', ms: 50 } } } });
  });
  after(async () => {
    await c.close();
  });

  async function benchFunctionsLeft(): Promise<string[]> {
    const { body } = await c.admin('GET', '/v1/functions');
    return (body.functions as { name: string }[]).map((f) => f.name).filter((n) => n.startsWith('bench-'));
  }

  test('scale-sandboxes N=20 against --api: all ready and routable, every stage reported, then gone', async () => {
    const [p] = await runScaleBench({ ...COMMON, test: 'scale-sandboxes', sizes: [20], api: c.apiUrl });
    assert.ok(p);
    checkPoint(p, { sandboxes: 20, functions: 1, nodes: 3 });
    assert.deepEqual(await benchFunctionsLeft(), []);
  });

  test('scale-functions N=10 against --api: ten functions at one sandbox each', async () => {
    const [p] = await runScaleBench({ ...COMMON, test: 'scale-functions', sizes: [10], api: c.apiUrl });
    assert.ok(p);
    checkPoint(p, { sandboxes: 10, functions: 10, nodes: 3 });
    assert.deepEqual(await benchFunctionsLeft(), []);
  });

  test('scale-nodes 5×2 with --local: its own cluster of five emulated nodes', async () => {
    const [p] = await runScaleBench({ ...COMMON, test: 'scale-nodes', sizes: [5], local: { nodes: 1, logLevel: 'silent' } });
    assert.ok(p);
    checkPoint(p, { sandboxes: 10, functions: 1, nodes: 5 });
    assert.ok(p.perNode && p.perNode.min >= 0 && p.perNode.max >= 2 && p.perNode.max <= 10, JSON.stringify(p.perNode));
  });

  test('a point that times out fails with BENCH_TIMEOUT, saying how far it got, and leaves nothing behind', async () => {
    await assert.rejects(
      runScaleBench({ ...COMMON, timeoutMs: 1, test: 'scale-sandboxes', sizes: [20], api: c.apiUrl }),
      (err: unknown) => err instanceof BatonError && err.code === 'BENCH_TIMEOUT' && /scale-sandboxes N=20: \d+\/20 ready/.test(err.message),
    );
    assert.deepEqual(await benchFunctionsLeft(), []);
  });

  test('GET /v1/creations: every creation since a time, of one function or all; a bad time is a 400', async () => {
    const since = Date.now();
    assert.equal((await c.admin('POST', '/v1/functions', { name: 'many', runtime: 'emulated', scaling: { minScale: 12 } })).status, 201);
    assert.equal((await c.admin('POST', '/v1/functions', { name: 'one', runtime: 'emulated', scaling: { minScale: 1 } })).status, 201);
    const all = await waitFor(
      '13 creations',
      async () => {
        const { body } = await c.admin('GET', `/v1/creations?since=${since}`);
        return (body.creations as CreationRecord[]).length >= 13 ? (body as { creations: CreationRecord[]; complete: boolean }) : undefined;
      },
      30_000,
    );
    assert.equal(all.complete, true);
    // More than describe keeps (10), all of them successful, each decided before it finished.
    assert.equal(all.creations.filter((r) => r.function === 'many').length, 12);
    for (const r of all.creations) {
      assert.equal(r.success, true);
      assert.ok(r.decidedAtMs >= since - 1 && r.decidedAtMs <= r.atMs, JSON.stringify(r));
    }
    const iso = new Date(since).toISOString();
    const many = (await c.admin('GET', `/v1/creations?since=${encodeURIComponent(iso)}&function=many`)).body as { creations: CreationRecord[] };
    assert.equal(many.creations.length, 12);
    assert.ok(many.creations.every((r) => r.function === 'many'));
    const later = (await c.admin('GET', `/v1/creations?since=${Date.now() + 60_000}`)).body as { creations: CreationRecord[] };
    assert.equal(later.creations.length, 0);
    const bad = await c.admin('GET', '/v1/creations?since=yesterday');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'INVALID_REQUEST');
    await c.admin('DELETE', '/v1/functions/many');
    await c.admin('DELETE', '/v1/functions/one');
  });
});
