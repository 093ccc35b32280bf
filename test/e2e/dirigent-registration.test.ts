// End to end: InVitro's way into Baton. Functions are registered through
// Dirigent's form (POST /registerService, POST /) on the control plane, and
// invoked as InVitro does: GET / on a data-plane address from the answer,
// the function named by the Host header, the work by InVitro's headers.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';

/** POSTs a Dirigent registration form; returns status and body text. */
async function register(apiUrl: string, fields: [string, string][], path = '/registerService', headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const res = await request(`${apiUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: res.statusCode, body: await res.body.text() };
}

function form(name: string, image: string, extra: [string, string][] = []): [string, string][] {
  return [
    ['name', name],
    ['image', image],
    ['port_forwarding', '80'],
    ['port_forwarding', 'tcp'],
    ['requested_cpu', '100'],
    ['requested_memory', '200'],
    ...extra,
  ];
}

/** InVitro's invocation: GET / to the data plane, `Host: <function>`, its headers. */
async function invokeAsInVitro(dataPlane: string, name: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  const res = await request(`http://${dataPlane}/`, { headers: { host: name, function: name, ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, body: text.startsWith('{') ? JSON.parse(text) : text };
}

describe('Dirigent/InVitro registration on a baton up cluster', () => {
  let c: TestCluster;
  before(async () => {
    c = await startTestCluster();
  });
  after(async () => {
    await c.close();
  });

  test('a cold-start-sweep registration maps to a trace function with Dirigent\'s sweep profile, answered with the data planes', async () => {
    const name = 't0123456789abcdef01-sweep';
    const res = await register(c.apiUrl, form(name, 'docker.io/cvetkovic/dirigent_trace_function:latest', [
      ['scaling_lower_bound', '0'],
      ['scaling_upper_bound', '1'],
      ['cold_start_sweep', 'true'],
      ['cold_start_busy_loop_ms', '30'],
    ]));
    assert.equal(res.status, 200, res.body);
    // Dirigent's answer: every data plane's host:port, joined by ';' (one here).
    assert.equal(res.body, c.dataPlane.proxyAddress);

    const d = await c.admin('GET', `/v1/functions/${name}`);
    assert.equal(d.status, 200);
    const spec = d.body.spec;
    assert.equal(spec.runtime, 'process');
    assert.match(spec.command[1], /loadgen\/trace-function\.js$/);
    assert.deepEqual(spec.resources, { cpuMillis: 100, memoryMb: 200 });
    assert.equal(spec.scaling.minScale, 0);
    assert.equal(spec.scaling.maxScale, 1);
    assert.equal(spec.scaling.stableWindowSec, 6);
    assert.equal(spec.scaling.panicWindowSec, 2);
    assert.equal(spec.scaling.scaleToZeroGraceSec, 0);
    assert.equal(spec.env.COLD_START_BUSY_LOOP_MS, '30');
  });

  test('POST / registers too; bounds map to minScale and maxScale, with Dirigent\'s default windows', async () => {
    const name = 'tfedcba9876543210ab-warm';
    const res = await register(c.apiUrl, form(name, 'trace', [['scaling_lower_bound', '1'], ['scaling_upper_bound', '5']]), '/');
    assert.equal(res.status, 200, res.body);
    const spec = (await c.admin('GET', `/v1/functions/${name}`)).body.spec;
    assert.equal(spec.scaling.minScale, 1);
    assert.equal(spec.scaling.maxScale, 5);
    assert.equal(spec.scaling.stableWindowSec, 60);
    assert.equal(spec.scaling.panicWindowSec, 6);
  });

  test('a registered function answers InVitro\'s invocation by Host header with InVitro\'s JSON', async () => {
    const name = 't00000000000000000a-invoke';
    const reg = await register(c.apiUrl, form(name, 'trace'));
    assert.equal(reg.status, 200, reg.body);
    const dataPlane = reg.body.split(';')[0] as string;

    const traced = await invokeAsInVitro(dataPlane, name, { workload: 'trace', requested_cpu: '25', requested_memory: '2', multiplier: '155' });
    assert.equal(traced.status, 200, JSON.stringify(traced.body));
    assert.deepEqual(Object.keys(traced.body).sort(), ['ExecutionTime', 'Function', 'MachineName', 'Status']);
    assert.equal(traced.body.Status, 'OK');
    assert.equal(traced.body.Function, name);
    assert.equal(traced.body.MachineName, hostname());
    // µs, and at least the 25 ms asked for.
    assert.ok(Number.isInteger(traced.body.ExecutionTime) && traced.body.ExecutionTime >= 25_000, String(traced.body.ExecutionTime));

    const empty = await invokeAsInVitro(dataPlane, name, { workload: 'empty', requested_cpu: '25' });
    assert.equal(empty.status, 200);
    assert.equal(empty.body.Status, 'OK');
    assert.ok(Number.isInteger(empty.body.ExecutionTime) && empty.body.ExecutionTime >= 0);

    // Baton's own interface of the trace function still works on the same sandbox.
    const own = await c.invoke(name, '/?ms=5');
    assert.equal(own.status, 200);
    assert.equal(JSON.parse(own.body).requestedMs, 5);
  });

  test('a name registered twice is 409, and an image Baton cannot run is 400 pointing to /v1/functions', async () => {
    const name = 't11111111111111111b-dup';
    assert.equal((await register(c.apiUrl, form(name, 'empty'))).status, 200);
    const dup = await register(c.apiUrl, form(name, 'empty'));
    assert.equal(dup.status, 409);
    assert.equal(JSON.parse(dup.body).code, 'FUNCTION_EXISTS');

    const other = await register(c.apiUrl, form('t22222222222222222c-img', 'docker.io/library/nginx:latest'));
    assert.equal(other.status, 400);
    const err = JSON.parse(other.body);
    assert.equal(err.code, 'INVALID_REQUEST');
    assert.equal(err.field, 'image');
    assert.match(err.message, /POST \/v1\/functions/);
    assert.equal((await c.admin('GET', '/v1/functions/t22222222222222222c-img')).status, 404);

    const udp = await register(c.apiUrl, [...form('t33333333333333333d-udp', 'trace').filter(([k]) => k !== 'port_forwarding'), ['port_forwarding', '80'], ['port_forwarding', 'udp']]);
    assert.equal(udp.status, 400);
    assert.equal(JSON.parse(udp.body).field, 'port_forwarding');
  });
});

describe('Dirigent registration with a token', () => {
  let c: TestCluster;
  before(async () => {
    c = await startTestCluster({ token: 'e2e-secret' });
  });
  after(async () => {
    await c.close();
  });

  test('under baton up it is on: it needs the token as /v1 does, and says how to open it', async () => {
    const refused = await register(c.apiUrl, form('t44444444444444444e-tok', 'trace'));
    assert.equal(refused.status, 401);
    assert.match(JSON.parse(refused.body).message, /dirigentRegistration to open/);
    const ok = await register(c.apiUrl, form('t44444444444444444e-tok', 'trace'), '/registerService', { authorization: 'Bearer e2e-secret' });
    assert.equal(ok.status, 200, ok.body);
  });
});
