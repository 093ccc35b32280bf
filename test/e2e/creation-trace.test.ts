// The latency breakdown of sandbox creations, end to end: `describe` shows
// each creation's stages, and the cold-start trace CSV has Dirigent's columns
// first with one row per creation, failures included.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { COLD_START_CSV_COLUMNS } from '../../src/controlplane/creation-trace.js';
import { echoSpec, startTestCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

interface Creation {
  sandbox: string;
  worker: string;
  runtime: string;
  success: boolean;
  pooled: boolean;
  error?: string;
  ms: Record<'placement' | 'portAllocation' | 'start' | 'readiness' | 'worker' | 'createRpc' | 'propagation' | 'total', number>;
}
type Described = { recentCreations: Creation[] };

describe('sandbox creation latency breakdown', () => {
  let c: TestCluster;
  let csv: string;
  before(async () => {
    csv = join(process.env.TMPDIR ?? '/tmp', `baton-trace-${process.pid}`, 'cold_start_trace.csv');
    c = await startTestCluster({ controlplane: { coldStartTracePath: csv, scalingPeriodMs: 200, createBackoffInitialMs: 100 } });
  });
  after(async () => {
    await c.close();
  });

  test('describe shows the stages of each creation and the CSV has a row for it', async () => {
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('traced', { scaling: { minScale: 2 } }))).status, 201);
    const d = await waitFor('two creations', async () => {
      const body = (await c.admin('GET', '/v1/functions/traced')).body as Described;
      return body.recentCreations.length >= 2 ? body : undefined;
    });
    for (const cr of d.recentCreations) {
      assert.equal(cr.success, true);
      assert.equal(cr.runtime, 'process');
      assert.equal(cr.worker, c.worker.id);
      assert.equal(cr.pooled, false);
      // A process start spawns, then waits for its probe: both take time; the total holds every stage.
      assert.ok(cr.ms.start > 0 && cr.ms.readiness > 0, JSON.stringify(cr.ms));
      assert.ok(cr.ms.worker >= cr.ms.start + cr.ms.readiness + cr.ms.portAllocation - 0.01, JSON.stringify(cr.ms));
      assert.ok(cr.ms.createRpc >= cr.ms.worker, JSON.stringify(cr.ms));
      assert.ok(cr.ms.propagation > 0, JSON.stringify(cr.ms));
      assert.ok(Math.abs(cr.ms.total - (cr.ms.placement + cr.ms.createRpc + cr.ms.propagation)) < 0.01, JSON.stringify(cr.ms));
    }

    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    assert.equal(lines[0], COLD_START_CSV_COLUMNS.join(','));
    assert.deepEqual(lines[0]?.split(',').slice(0, 16), [
      'time', 'service_name', 'container_id', 'success', 'image_fetch', 'sandbox_create', 'sandbox_start', 'network_setup',
      'iptables', 'readiness_probe', 'data_plane_propagation', 'snapshot_creation', 'configure_monitoring', 'find_snapshot',
      'db', 'other_worker_node',
    ], "Dirigent's columns first, in its order");
    const rows = lines.slice(1).map((l): Record<string, string> => Object.fromEntries(l.split(',').map((v, i) => [COLD_START_CSV_COLUMNS[i] ?? String(i), v])));
    const ours = rows.filter((r) => r.service_name === 'traced');
    assert.equal(ours.length, 2);
    for (const r of ours) {
      assert.equal(r.success, 'true');
      assert.ok(Number(r.sandbox_start) > 0 && Number(r.readiness_probe) > 0 && Number(r.data_plane_propagation) > 0);
      assert.ok(d.recentCreations.some((cr) => cr.sandbox === r.container_id));
    }
  });

  test('a failed creation is traced with its error', async () => {
    const spec = { name: 'broken', command: ['/nonexistent/program'], scaling: { minScale: 1 } };
    assert.equal((await c.admin('POST', '/v1/functions', spec)).status, 201);
    const d = await waitFor('a failed creation', async () => {
      const body = (await c.admin('GET', '/v1/functions/broken')).body as Described;
      return body.recentCreations.length >= 1 ? body : undefined;
    });
    assert.equal(d.recentCreations[0]?.success, false);
    assert.match(d.recentCreations[0]?.error ?? '', /nonexistent/);
    const rows = readFileSync(csv, 'utf8').trim().split('\n').slice(1);
    assert.ok(rows.some((l) => l.includes(',broken,') && l.includes(',false,')));
    await c.admin('DELETE', '/v1/functions/broken');
  });
});
