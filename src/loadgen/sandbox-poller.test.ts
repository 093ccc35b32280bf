import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { AdminClient } from '../cli/client.js';
import { pollIntervalMs, readyOf, SandboxPoller } from './sandbox-poller.js';

test('pollIntervalMs: 1 s, a trace second when time-scaled, not under 50 ms', () => {
  assert.equal(pollIntervalMs(1), 1000);
  assert.equal(pollIntervalMs(10), 1000);
  assert.equal(pollIntervalMs(0.2), 200);
  assert.equal(pollIntervalMs(0.01), 50);
});

test('readyOf sums readySandboxes of the named functions only', () => {
  const body = {
    functions: [
      { name: 'trace-0', readySandboxes: 2 },
      { name: 'trace-1', readySandboxes: 3 },
      { name: 'other', readySandboxes: 7 },
      { name: 'trace-2' },
    ],
  };
  assert.equal(readyOf(body, new Set(['trace-0', 'trace-1', 'trace-2'])), 5);
  assert.equal(readyOf({}, new Set(['trace-0'])), 0);
});

test('SandboxPoller polls GET /v1/functions until stopped, then once more; a failing API is one warning', async () => {
  let ready = 0;
  let calls = 0;
  const server = createServer((req, res) => {
    calls++;
    assert.equal(`${req.method} ${req.url}`, 'GET /v1/functions');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ functions: [{ name: 'trace-0', readySandboxes: ready++ }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const t0 = performance.now();
  const logged: string[] = [];
  try {
    const poller = new SandboxPoller(new AdminClient({ api }), ['trace-0'], 20, () => performance.now() - t0, (l) => logged.push(l));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const samples = await poller.stop();
    assert.ok(samples.length >= 3, `${samples.length} samples`);
    assert.equal(samples.length, calls, 'one sample per call');
    assert.deepEqual(
      samples.map((s) => s.ready),
      samples.map((_, i) => i),
    );
    for (let i = 1; i < samples.length; i++) assert.ok((samples[i]?.atMs ?? 0) > (samples[i - 1]?.atMs ?? 0));
    assert.equal(calls, ready);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(calls, samples.length, 'no poll after stop()');
    assert.equal(logged.length, 0, logged.join('\n'));
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }

  const down = new SandboxPoller(new AdminClient({ api }), ['trace-0'], 20, () => performance.now() - t0, (l) => logged.push(l));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(await down.stop(), []);
  assert.equal(logged.length, 1, logged.join('\n'));
  assert.match(logged[0] ?? '', /^warning: could not poll the sandbox count/);
});
