// Registrations outlive the control plane; the bearer token guards the admin
// API; the data plane enforces its body limit.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { Worker } from '../../src/worker/index.js';
import { compileConfig, workerSchema } from '../../src/shared/config.js';
import { echoSpec, startTestCluster, waitFor } from '../helpers/cluster.js';

test('a control-plane restart keeps the registered functions', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-restart-'));
  try {
    const a = await startTestCluster({}, dir);
    assert.equal((await a.admin('POST', '/v1/functions', echoSpec('kept', { scaling: { maxScale: 3 } }))).status, 201);
    await a.admin('PATCH', '/v1/functions/kept', { scaling: { containerConcurrency: 4 } });
    assert.equal((await a.invoke('kept')).status, 200);
    await a.close();

    const b = await startTestCluster({}, dir);
    try {
      const d = await b.admin('GET', '/v1/functions/kept');
      assert.equal(d.status, 200);
      assert.equal(d.body.revision, 2);
      assert.equal(d.body.spec.scaling.maxScale, 3);
      assert.equal(d.body.spec.scaling.containerConcurrency, 4);
      const r = await b.invoke('kept', '/echo');
      assert.equal(r.status, 200);
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with a token, every admin call without it gets 401', async () => {
  const c = await startTestCluster({ token: 's3cret-token' });
  try {
    for (const [method, path] of [
      ['GET', '/v1/functions'],
      ['POST', '/v1/functions'],
      ['GET', '/v1/functions/x'],
      ['PATCH', '/v1/functions/x'],
      ['DELETE', '/v1/functions/x'],
      ['GET', '/v1/workers'],
    ] as const) {
      const res = await request(`${c.apiUrl}${path}`, { method });
      assert.equal(res.statusCode, 401, `${method} ${path}`);
      assert.equal((await res.body.json() as { code: string }).code, 'UNAUTHORIZED');
    }
    const wrong = await c.admin('GET', '/v1/functions', undefined, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    const ok = await c.admin('POST', '/v1/functions', echoSpec('guarded'));
    assert.equal(ok.status, 201);
    // Components authenticate to each other with the same token, so invocations work.
    assert.equal((await c.invoke('guarded')).status, 200);
    const health = await request(`${c.apiUrl}/health`);
    assert.equal(health.statusCode, 200);
    await health.body.dump();
  } finally {
    await c.close();
  }
});

test('the data plane answers 413 to a body over its limit and keeps serving', async () => {
  const c = await startTestCluster({ dataplane: { maxBodyBytes: 1024 } });
  try {
    await c.admin('POST', '/v1/functions', echoSpec('small'));
    const big = await c.invoke('small', '/echo', { method: 'POST', body: 'x'.repeat(4096) });
    assert.equal(big.status, 413);
    assert.equal(JSON.parse(big.body).code, 'BODY_TOO_LARGE');
    const fine = await c.invoke('small', '/echo', { method: 'POST', body: 'x'.repeat(512) });
    assert.equal(fine.status, 200);
    assert.equal(JSON.parse(fine.body).body.length, 512);
  } finally {
    await c.close();
  }
});

test('the admin API answers h2c clients too, errors included, and keeps running', async () => {
  const http2 = await import('node:http2');
  const c = await startTestCluster();
  try {
    const session = http2.connect(c.apiUrl);
    const call = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = session.request({ ':method': method, ':path': path, 'content-type': 'application/json' });
        let status = 0;
        let text = '';
        req.on('response', (h) => (status = Number(h[':status'])));
        req.setEncoding('utf8');
        req.on('data', (d: string) => (text += d));
        req.on('end', () => resolve({ status, body: text }));
        req.on('error', reject);
        req.end(body);
      });
    const huge = await call('POST', '/v1/functions', JSON.stringify({ name: 'x', command: ['x'], env: { BIG: 'x'.repeat(2 * 1024 * 1024) } }));
    assert.equal(huge.status, 413);
    assert.equal(JSON.parse(huge.body).code, 'BODY_TOO_LARGE');
    const created = await call('POST', '/v1/functions', JSON.stringify(echoSpec('viah2')));
    assert.equal(created.status, 201);
    const listed = await call('GET', '/v1/functions');
    assert.equal(JSON.parse(listed.body).functions[0].name, 'viah2');
    session.close();
  } finally {
    await c.close();
  }
});

test('a worker restarted under the same id and address is resynced: stale sandboxes are dropped and replaced', async () => {
  const c = await startTestCluster({ controlplane: { scalingPeriodMs: 200 } });
  let successor: Worker | undefined;
  try {
    await c.admin('POST', '/v1/functions', echoSpec('steady', { scaling: { minScale: 1 } }));
    const before = await c.invoke('steady');
    assert.equal(before.status, 200);
    const { id, port } = c.worker;
    await c.worker.stop();
    successor = await Worker.create(
      compileConfig(workerSchema, { id, rpcPort: port, controlPlaneUrl: c.apiUrl, dataDir: c.dataDir, logLevel: 'silent' }),
    );
    const after = await waitFor('a new sandbox to serve', async () => {
      const r = await c.invoke('steady');
      return r.status === 200 ? r : undefined;
    });
    assert.notEqual(after.headers['x-baton-sandbox'], before.headers['x-baton-sandbox']);
    const d = await c.admin('GET', '/v1/functions/steady');
    assert.deepEqual(
      d.body.sandboxes.map((s: { id: string }) => s.id),
      [after.headers['x-baton-sandbox']],
      'the stopped worker\'s sandbox is gone from describe',
    );
  } finally {
    await c.close();
    await successor?.stop();
  }
});
