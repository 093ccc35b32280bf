// A function deleted while it scales up: sandboxes whose creation is still
// propagating to the data planes when the DELETE arrives are skipped by its
// drain (an operation is in flight on them), so the creation must delete them
// itself once its propagation ends. Before that fix the DELETE waited for
// sandboxCreateTimeoutMs (60 s) and left them running on their workers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';

let c: TestCluster;
before(async () => {
  // A short create timeout bounds how long the DELETE may wait, so a regression fails the test rather than hang it.
  // Over h2c, as separate processes talk: in memory, creates and AddEndpoints take a few microtasks, and the
  // DELETE finds every sandbox ready (none still starting or propagating), so it would test nothing.
  c = await startTestCluster({ emulate: 3, inProcessRpc: false, controlplane: { sandboxCreateTimeoutMs: 10_000 } });
});
after(async () => {
  await c.close();
});

async function sandboxesOnWorkers(fn: string): Promise<number> {
  let n = 0;
  for (const w of c.emulatedWorkers) {
    const metric = (await w.metrics.getMetricsAsJSON()).find((m) => m.name === 'baton_worker_sandboxes');
    for (const v of (metric?.values ?? []) as { labels: Record<string, unknown>; value: number }[]) if (v.labels.function === fn) n += v.value;
  }
  return n;
}

test('DELETE during a scale-up leaves no sandbox on any worker, whatever phase each creation was in', async () => {
  for (let round = 1; round <= 2; round++) {
    const name = `doomed-${round}`;
    assert.equal((await c.admin('POST', '/v1/functions', { name, runtime: 'emulated', scaling: { minScale: 20 } })).status, 201);
    // The creates are in flight; those that return while the DELETE writes the store become ready and
    // start propagating, the window the DELETE's drain used to skip.
    const described = await c.admin('GET', `/v1/functions/${name}`);
    assert.ok(described.body.status.startingSandboxes > 0, JSON.stringify(described.body.status));
    const res = await c.admin('DELETE', `/v1/functions/${name}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    // Without the fix the DELETE gives up after the create timeout and the skipped sandboxes stay running.
    assert.equal(await sandboxesOnWorkers(name), 0, `round ${round}: sandboxes of the deleted function still run`);
  }
});
