// End to end on real processes and real ports: a cluster (control plane, data
// plane, worker) runs in this process; functions are real Node HTTP servers
// from test/fixtures started by the worker's process runtime.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:net';
import { echoSpec, fixture, FIXTURES, pidAlive, startTestCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

describe('a single-machine cluster', () => {
  let c: TestCluster;
  before(async () => {
    c = await startTestCluster({ controlplane: { createBackoffInitialMs: 200, scalingPeriodMs: 200, crashLoopWindowMs: 1000 } });
  });
  after(async () => {
    await c.close();
  });

  test('deploy answers 201 and the first request succeeds after a cold start', async () => {
    const res = await c.admin('POST', '/v1/functions', echoSpec('cold'));
    assert.equal(res.status, 201);
    assert.equal(res.body.name, 'cold');
    assert.equal(res.body.spec.scaling.containerConcurrency, 1, 'defaults are applied');
    const r = await c.invoke('cold', '/echo/a/b?x=1', { method: 'POST', body: 'ping', headers: { 'x-custom': 'yes' } });
    assert.equal(r.status, 200);
    const echoed = JSON.parse(r.body);
    assert.equal(echoed.method, 'POST');
    assert.equal(echoed.url, '/echo/a/b?x=1', 'the /fn/{name} prefix is stripped, the query kept');
    assert.equal(echoed.body, 'ping');
    assert.equal(echoed.headers['x-custom'], 'yes');
    assert.match(String(r.headers['x-baton-sandbox']), /^sb-cold-/);
    assert.ok(Number(r.headers['x-baton-queue-ms']) > 0, 'a cold request waited in the queue');

    const d = await c.admin('GET', '/v1/functions/cold');
    assert.equal(d.status, 200);
    assert.equal(d.body.sandboxes.length, 1);
    assert.equal(d.body.sandboxes[0].state, 'ready');
    assert.equal(d.body.sandboxes[0].worker, c.worker.id);
    assert.match(d.body.sandboxes[0].address, /^127\.0\.0\.1:\d+$/);
  });

  test('warm requests do not start sandboxes', async () => {
    await c.admin('POST', '/v1/functions', echoSpec('warm'));
    const first = await c.invoke('warm');
    assert.equal(first.status, 200);
    const sandbox = first.headers['x-baton-sandbox'];
    for (let i = 0; i < 20; i++) {
      const r = await c.invoke('warm');
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-baton-sandbox'], sandbox);
    }
    const d = await c.admin('GET', '/v1/functions/warm');
    assert.equal(d.body.sandboxes.length, 1);
  });

  test('100 concurrent requests to a cold function all succeed', async () => {
    await c.admin('POST', '/v1/functions', echoSpec('burst', { scaling: { maxScale: 6 } }));
    const results = await Promise.all(Array.from({ length: 100 }, () => c.invoke('burst', '/sleep?ms=20')));
    assert.deepEqual(
      results.map((r) => r.status),
      results.map(() => 200),
    );
    const sandboxes = new Set(results.map((r) => r.headers['x-baton-sandbox']));
    assert.ok(sandboxes.size > 1, 'queued requests scaled the function out');
    assert.ok(sandboxes.size <= 6, 'maxScale is respected');
  });

  test('Host-header routing reaches the same function', async () => {
    await c.admin('POST', '/v1/functions', echoSpec('byhost'));
    const { request } = await import('undici');
    const res = await request(`${c.dataPlaneUrl}/echo`, { headers: { host: 'byhost.functions.local' } });
    assert.equal(res.statusCode, 200);
    assert.equal(JSON.parse(await res.body.text()).url, '/echo');
  });

  test('PATCH changes scaling in place: minScale starts sandboxes without a request', async () => {
    await c.admin('POST', '/v1/functions', echoSpec('patched'));
    const res = await c.admin('PATCH', '/v1/functions/patched', { scaling: { minScale: 2 } });
    assert.equal(res.status, 200);
    assert.equal(res.body.revision, 2);
    await waitFor('two ready sandboxes', async () => {
      const d = await c.admin('GET', '/v1/functions/patched');
      return d.body.status.readySandboxes === 2 ? true : undefined;
    });
    const bad = await c.admin('PATCH', '/v1/functions/patched', { scaling: { minScale: -1 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'INVALID_SPEC');
    assert.match(bad.body.message, /scaling\.minScale/);
    const notScaling = await c.admin('PATCH', '/v1/functions/patched', { command: ['x'] });
    assert.equal(notScaling.status, 400);
    assert.equal(notScaling.body.field, 'command');
  });

  test('delete removes the function and leaves no process behind', async () => {
    await c.admin('POST', '/v1/functions', echoSpec('doomed', { scaling: { minScale: 1 } }));
    const r = await c.invoke('doomed', '/echo');
    const pid = JSON.parse(r.body).pid as number;
    assert.ok(pidAlive(pid));
    const del = await c.admin('DELETE', '/v1/functions/doomed');
    assert.equal(del.status, 200);
    assert.equal(pidAlive(pid), false, `sandbox process ${pid} is gone`);
    assert.equal((await c.admin('GET', '/v1/functions/doomed')).status, 404);
    const after = await c.invoke('doomed');
    assert.equal(after.status, 404);
    assert.equal(JSON.parse(after.body).code, 'FUNCTION_NOT_FOUND');
  });

  test('bad input gets typed errors', async () => {
    const unknown = await c.admin('GET', '/v1/functions/nope');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'FUNCTION_NOT_FOUND');

    const inv = await c.invoke('nope');
    assert.equal(inv.status, 404);
    assert.equal(JSON.parse(inv.body).code, 'FUNCTION_NOT_FOUND');

    const badName = await c.admin('POST', '/v1/functions', { name: 'Not_A_Label', command: ['x'] });
    assert.equal(badName.status, 400);
    assert.equal(badName.body.code, 'INVALID_SPEC');
    assert.equal(badName.body.field, 'name');

    const noCommand = await c.admin('POST', '/v1/functions', { name: 'nocmd' });
    assert.equal(noCommand.status, 400);
    assert.equal(noCommand.body.field, 'command');

    const unknownKey = await c.admin('POST', '/v1/functions', { ...echoSpec('typo'), scalling: {} });
    assert.equal(unknownKey.status, 400);
    assert.equal(unknownKey.body.code, 'INVALID_SPEC');

    const badJson = await c.admin('POST', '/v1/functions', '{not json');
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.code, 'INVALID_REQUEST');

    await c.admin('POST', '/v1/functions', echoSpec('dup'));
    const dup = await c.admin('POST', '/v1/functions', echoSpec('dup'));
    assert.equal(dup.status, 409);
    assert.equal(dup.body.code, 'FUNCTION_EXISTS');

    const huge = await c.admin('POST', '/v1/functions', { ...echoSpec('huge'), env: { BIG: 'x'.repeat(2 * 1024 * 1024) } });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.code, 'BODY_TOO_LARGE');
  });

  test('a command that does not exist: describe shows why, requests get 503, and the control plane backs off', async () => {
    const res = await c.admin('POST', '/v1/functions', { name: 'missing', command: ['/nonexistent/binary'], workdir: FIXTURES });
    assert.equal(res.status, 201);
    const r = await c.invoke('missing');
    assert.equal(r.status, 503);
    assert.equal(JSON.parse(r.body).code, 'SANDBOX_START_FAILED');
    const d = await c.admin('GET', '/v1/functions/missing');
    assert.equal(d.body.status.condition.code, 'SANDBOX_START_FAILED');
    assert.match(d.body.status.condition.message, /nonexistent/);

    // Keep asking for two seconds; with 200 ms doubling back-off that is at most ~4 attempts, not hundreds.
    const before = await createFailures(c, 'missing');
    const until = Date.now() + 2000;
    while (Date.now() < until) {
      const again = await c.invoke('missing');
      assert.equal(again.status, 503);
      await new Promise((r) => setTimeout(r, 50));
    }
    const attempts = (await createFailures(c, 'missing')) - before;
    assert.ok(attempts >= 1 && attempts <= 5, `backed off: ${attempts} attempts in 2 s`);
  });

  test('a command that exits at once fails with a clear code and message', async () => {
    await c.admin('POST', '/v1/functions', { name: 'quitter', command: [process.execPath, fixture('exits-at-once.js')], workdir: FIXTURES });
    const r = await c.invoke('quitter');
    assert.equal(r.status, 503);
    const body = JSON.parse(r.body);
    assert.equal(body.code, 'SANDBOX_START_FAILED');
    const d = await c.admin('GET', '/v1/functions/quitter');
    assert.match(d.body.status.condition.message, /7|failing on purpose/);
  });

  test('a sandbox killed mid-request gives 502, then a new sandbox serves', async () => {
    await c.admin('POST', '/v1/functions', echoSpec('fragile'));
    const first = await c.invoke('fragile');
    assert.equal(first.status, 200);
    const crashed = await c.invoke('fragile', '/crash');
    assert.equal(crashed.status, 502);
    assert.equal(JSON.parse(crashed.body).code, 'SANDBOX_CRASHED');
    const next = await waitFor('a new sandbox', async () => {
      const r = await c.invoke('fragile');
      return r.status === 200 ? r : undefined;
    });
    assert.notEqual(next.headers['x-baton-sandbox'], first.headers['x-baton-sandbox']);
    // The crash shows in describe, and clears once the replacement has stayed up for the crash-loop window.
    const d = await c.admin('GET', '/v1/functions/fragile');
    assert.equal(d.body.status.condition?.code, 'SANDBOX_CRASHED');
    await waitFor('the crash condition to clear', async () => {
      const again = await c.admin('GET', '/v1/functions/fragile');
      return again.body.status.condition === null ? true : undefined;
    });
  });

  test('a crash loop backs off more and more, even though each replacement starts fine', async () => {
    await c.admin('POST', '/v1/functions', {
      name: 'looper',
      command: [process.execPath, fixture('crashes-after-ready.js')],
      workdir: FIXTURES,
      scaling: { minScale: 1 },
    });
    await new Promise((r) => setTimeout(r, 4000));
    // Each sandbox lives ~0.35 s. With a fixed 200 ms back-off that is ~7 starts in 4 s; doubling allows ~4.
    const starts = await createCount(c, 'looper');
    assert.ok(starts >= 2 && starts <= 5, `${starts} starts in 4 s`);
    const d = await c.admin('GET', '/v1/functions/looper');
    assert.equal(d.body.status.condition.code, 'SANDBOX_CRASHED');
    await c.admin('DELETE', '/v1/functions/looper');
  });

  test('a name being deleted cannot be registered again until the delete is done', async () => {
    await c.admin('POST', '/v1/functions', echoSpec('reborn', { scaling: { minScale: 1 } }));
    assert.equal((await c.invoke('reborn', '/sleep?ms=300')).status, 200);
    // Long enough that it is surely in the sandbox when the DELETE comes, on a loaded machine too.
    const slow = c.invoke('reborn', '/sleep?ms=2500');
    await new Promise((r) => setTimeout(r, 500));
    const deleting = c.admin('DELETE', '/v1/functions/reborn');
    await new Promise((r) => setTimeout(r, 50));
    const early = await c.admin('POST', '/v1/functions', echoSpec('reborn'));
    assert.equal(early.status, 409);
    assert.equal(early.body.code, 'CONFLICT');
    assert.equal((await slow).status, 200, 'the in-flight request finished: delete drains first');
    assert.equal((await deleting).status, 200);
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('reborn'))).status, 201);
    assert.equal((await c.invoke('reborn')).status, 200, 'the data planes know the new function');
  });

  test('garbage on the internal RPC port is refused and the control plane keeps running', async () => {
    const port = c.controlPlane.port;
    for (const garbage of ['\x00\x01\x02garbage\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff']) {
      await new Promise<void>((resolve) => {
        const s = connect(port, '127.0.0.1', () => s.end(Buffer.from(garbage, 'latin1')));
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.resume();
      });
    }
    const h = await c.admin('GET', '/health');
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');
    const list = await c.admin('GET', '/v1/workers');
    assert.equal(list.body.workers.length, 1);
    assert.equal(list.body.workers[0].status, 'ready');
  });
});

async function createCount(c: TestCluster, fn: string): Promise<number> {
  const { request } = await import('undici');
  const res = await request(`${c.apiUrl}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith('baton_sandbox_create_seconds_count{') && l.includes(`function="${fn}"`));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function createFailures(c: TestCluster, fn: string): Promise<number> {
  const { request } = await import('undici');
  const res = await request(`${c.apiUrl}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith('baton_sandbox_create_failures_total{') && l.includes(`function="${fn}"`));
  return line ? Number(line.split(' ').pop()) : 0;
}
