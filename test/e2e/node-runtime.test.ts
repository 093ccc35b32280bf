// End to end with the node runtime: a Lambda-style handler registered through
// the admin API, invoked through the data plane, served by a pooled runtime
// process on the cluster's worker.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FIXTURES, pidAlive, REPO_ROOT, startTestCluster, type TestCluster } from '../helpers/cluster.js';

const HANDLERS = join(FIXTURES, 'node-handlers');
const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/** Runs the CLI without blocking this process, which serves the cluster it talks to. */
function cli(args: string[], api: string, cwd = REPO_ROOT): Promise<{ status: number; stdout: string; stderr: string }> {
  const env: Record<string, string | undefined> = { ...process.env, BATON_API: api };
  delete env.NODE_EXTRA_CA_CERTS;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('the node runtime in a cluster', () => {
  let c: TestCluster;
  before(async () => {
    c = await startTestCluster();
  });
  after(async () => {
    await c.close();
  });

  test('a handler registered through the admin API answers through the data plane', async () => {
    const res = await c.admin('POST', '/v1/functions', { name: 'hello-node', runtime: 'node', handler: 'hello.handler', workdir: HANDLERS });
    assert.equal(res.status, 201);
    assert.equal(res.body.spec.runtime, 'node');
    assert.equal(res.body.spec.handler, 'hello.handler');

    const first = await c.invoke('hello-node', '/greet?name=cluster');
    assert.equal(first.status, 200);
    assert.equal(first.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(first.body), { message: 'Hello, cluster!' });
    assert.match(String(first.headers['x-baton-sandbox']), /^sb-hello-node-/);

    const d = await c.admin('GET', '/v1/functions/hello-node');
    assert.equal(d.body.sandboxes.length, 1);
    assert.equal(d.body.sandboxes[0].state, 'ready');
  });

  test('the event carries the path and body the client sent, past the /fn/{name} prefix', async () => {
    await c.admin('POST', '/v1/functions', { name: 'echo-node', runtime: 'node', handler: 'echo.handler', workdir: HANDLERS, env: { GREETING: 'hi' } });
    const r = await c.invoke('echo-node', '/orders/7?x=1', { method: 'POST', body: '{"item":"tea"}', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200);
    const { event, env, pid } = JSON.parse(r.body);
    assert.equal(event.rawPath, '/orders/7');
    assert.deepEqual(event.queryStringParameters, { x: '1' });
    assert.equal(event.requestContext.http.method, 'POST');
    assert.equal(event.body, '{"item":"tea"}');
    assert.equal(env.GREETING, 'hi');
    assert.equal(env.NODE_EXTRA_CA_CERTS, undefined);

    const del = await c.admin('DELETE', '/v1/functions/echo-node');
    assert.equal(del.status, 200);
    assert.equal(pidAlive(pid), false, `runtime process ${pid} is gone with its function`);
  });

  test('baton deploy takes the example spec file, its workdir its own directory, and --handler flags', async () => {
    const dep = await cli(['deploy', 'examples/node-hello/function.yaml'], c.apiUrl);
    assert.equal(dep.status, 0, dep.stderr);
    assert.match(dep.stdout, /deployed node-hello/);
    const spec = (await c.admin('GET', '/v1/functions/node-hello')).body.spec;
    assert.equal(spec.workdir, join(REPO_ROOT, 'examples', 'node-hello'));
    const r = await c.invoke('node-hello', '/?name=example');
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body);
    assert.equal(body.message, 'Hello, example!');
    assert.match(body.sandbox, /^sb-node-hello-/);

    const flags = await cli(['deploy', '--name', 'flag-node', '--handler', 'cjs-hello.handler'], c.apiUrl, HANDLERS);
    assert.equal(flags.status, 0, flags.stderr);
    const viaFlags = await c.invoke('flag-node', '/flags');
    assert.deepEqual(JSON.parse(viaFlags.body), { greeting: 'hello from commonjs', path: '/flags' });

    const both = await cli(['deploy', '--name', 'confused', '--handler', 'hello.handler', '--', 'node', 'server.js'], c.apiUrl, HANDLERS);
    assert.equal(both.status, 1);
    assert.match(both.stderr, /INVALID_SPEC: command: is not used by runtime "node"/);
  });

  test('a handler that cannot be loaded shows why in describe', async () => {
    await c.admin('POST', '/v1/functions', { name: 'broken-node', runtime: 'node', handler: 'no-export.handler', workdir: HANDLERS, timeoutMs: 2000 });
    const r = await c.invoke('broken-node', '/');
    assert.equal(r.status, 503);
    const error = JSON.parse(r.body);
    assert.equal(error.code, 'SANDBOX_START_FAILED');
    assert.match(error.message, /handler "no-export\.handler": no-export\.mjs has no export "handler"/);
    const d = await c.admin('GET', '/v1/functions/broken-node');
    assert.match(JSON.stringify(d.body), /no-export\.mjs has no export \\"handler\\"/);
  });
});
