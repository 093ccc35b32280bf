// Emulated nodes end to end: `baton up --emulate 5` in this process (a
// control plane, a data plane, one real worker and five emulated ones),
// emulated functions placed only on the emulated nodes, invoked through the
// data plane, held for their duration, and scaled to 50 sandboxes.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestCluster, type TestCluster, waitFor } from '../helpers/cluster.js';

const EMULATED_NODES = 5;

function refused(address: string): Promise<boolean> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('emulated workers', () => {
  let c: TestCluster;
  before(async () => {
    c = await startTestCluster({
      emulate: EMULATED_NODES,
      controlplane: { scalingPeriodMs: 200, metricsIntervalMs: 200, createBackoffInitialMs: 100 },
      worker: { emulation: { startDelay: { distribution: 'uniform', ms: 5, spreadMs: 20 } } },
    });
  });
  after(async () => {
    await c.close();
  });

  test('each emulated worker registers as a node of its own, offering only the emulated runtime', async () => {
    const { body } = await c.admin('GET', '/v1/workers');
    const emulated = (body.workers as { id: string; runtimes: string[]; capacity: { cpuMillis: number } }[]).filter((w) => /-emu-\d+$/.test(w.id));
    assert.equal(emulated.length, EMULATED_NODES);
    assert.equal(new Set(emulated.map((w) => w.id)).size, EMULATED_NODES);
    for (const w of emulated) {
      assert.deepEqual(w.runtimes, ['emulated']);
      assert.equal(w.capacity.cpuMillis, 16_000);
    }
    assert.equal(c.emulatedWorkers.length, EMULATED_NODES);
  });

  test('a request is held for emulation.durationMs, or for x-baton-emulate-ms, by the sandbox the data plane names', async () => {
    const deployed = await c.admin('POST', '/v1/functions', { name: 'sleepy', runtime: 'emulated', emulation: { durationMs: 200 } });
    assert.equal(deployed.status, 201, JSON.stringify(deployed.body));
    const cold = await c.invoke('sleepy');
    assert.equal(cold.status, 200, cold.body);

    const t0 = performance.now();
    const warm = await c.invoke('sleepy');
    const heldMs = performance.now() - t0;
    assert.equal(warm.status, 200);
    const body = JSON.parse(warm.body);
    assert.equal(body.heldMs, 200);
    assert.ok(heldMs >= 195 && heldMs < 5000, `held ${heldMs} ms`);
    assert.equal(warm.headers['x-baton-sandbox'], body.sandbox, 'the data plane names the sandbox that answered');

    const short = await c.invoke('sleepy', '/', { headers: { 'x-baton-emulate-ms': '20' } });
    assert.equal(JSON.parse(short.body).heldMs, 20);

    const d = await c.admin('GET', '/v1/functions/sleepy');
    assert.equal(d.body.sandboxes.length, 1);
    assert.match(d.body.sandboxes[0].worker, /-emu-\d+$/, 'placed on an emulated node, never on the real worker');
  });

  test('scales to 50 sandboxes over the 5 nodes, which then serve 50 held requests at once', async () => {
    const t0 = performance.now();
    const deployed = await c.admin('POST', '/v1/functions', {
      name: 'wide',
      runtime: 'emulated',
      emulation: { durationMs: 300 },
      scaling: { minScale: 50, containerConcurrency: 1 },
    });
    assert.equal(deployed.status, 201, JSON.stringify(deployed.body));
    const sandboxes = await waitFor(
      '50 ready sandboxes',
      async () => {
        const d = await c.admin('GET', '/v1/functions/wide');
        const ready = (d.body.sandboxes as { state: string; worker: string; address: string }[]).filter((s) => s.state === 'ready');
        return ready.length >= 50 ? ready : undefined;
      },
      15_000,
    );
    const scaleMs = performance.now() - t0;
    const perNode = new Map<string, number>();
    for (const s of sandboxes) perNode.set(s.worker, (perNode.get(s.worker) ?? 0) + 1);
    assert.equal(perNode.size, EMULATED_NODES, `spread over every emulated node: ${JSON.stringify([...perNode])}`);
    assert.equal(new Set(sandboxes.map((s) => s.address)).size, 50, 'each sandbox has an address of its own');
    assert.ok(scaleMs < 10_000, `0 → 50 took ${scaleMs} ms`);

    const t1 = performance.now();
    const replies = await Promise.all(Array.from({ length: 50 }, () => c.invoke('wide')));
    const wallMs = performance.now() - t1;
    assert.deepEqual(
      replies.map((r) => r.status),
      replies.map(() => 200),
    );
    // One request per sandbox (cc 1): every hold overlaps; a serialised run would take 50 × 300 ms.
    assert.ok(wallMs < 2000, `50 requests held 300 ms took ${wallMs} ms`);
    assert.ok(new Set(replies.map((r) => r.headers['x-baton-sandbox'])).size >= 40, 'spread over the sandboxes');

    const deleted = await c.admin('DELETE', '/v1/functions/wide');
    assert.ok(deleted.status < 300, JSON.stringify(deleted.body));
    // Deleted sandboxes free their ports: each was a listener of its own.
    await waitFor('every deleted sandbox to free its port', async () => ((await Promise.all(sandboxes.map((s) => refused(s.address)))).every(Boolean) ? true : undefined));
  });
});
