// The node runtime against real runtime processes: the handlers in
// test/fixtures/node-handlers, real ports, and /proc to check that nothing is
// left behind.
import { strict as assert } from 'node:assert';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../shared/logging.js';
import type { FunctionSpec } from '../shared/spec.js';
import type { RuntimeSandbox } from './runtime.js';
import { NodeRuntime, type NodeRuntimeOptions } from './runtimes/node.js';
import { functionSpec, liveGroupMembers, processAlive, repoRoot, tempDir, waitFor, startFailure } from './test-support.js';

const HANDLERS = join(repoRoot, 'test', 'fixtures', 'node-handlers');

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

function request(port: number, path: string, init: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
      });
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

function nodeSpec(name: string, handler: string, env: Record<string, string> = {}): FunctionSpec {
  return { ...functionSpec(name, [], env), runtime: 'node', command: [], handler, workdir: HANDLERS, timeoutMs: 30_000 };
}

/** Live runtime processes started for a worker id: their argv names it. */
function runtimeProcesses(workerId: string): number[] {
  const needle = `--worker=${workerId}\0`;
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1');
    } catch {
      continue;
    }
    if (cmdline.includes(needle) && processAlive(Number(name))) found.push(Number(name));
  }
  return found;
}

function stdoutOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/fd/1`);
  } catch {
    return undefined;
  }
}

let seq = 0;
const nextId = (): string => `sb-node-${process.pid}-${seq++}`;
const never = new AbortController().signal;

describe('node runtime', () => {
  const dir = tempDir('node-runtime');
  const runtimes: NodeRuntime[] = [];
  const started: RuntimeSandbox[] = [];
  let workers = 0;
  const options = (over: Partial<NodeRuntimeOptions> = {}): NodeRuntimeOptions => ({
    workerId: `test-${process.pid}-${workers++}`,
    host: '127.0.0.1',
    dataDir: dir.path,
    startTimeoutMs: 10_000,
    stopGraceMs: 1000,
    poolSize: 2,
    nodePath: process.execPath,
    log: silentLogger(),
    ...over,
  });
  async function runtimeWith(over: Partial<NodeRuntimeOptions> = {}): Promise<{ runtime: NodeRuntime; workerId: string }> {
    const o = options(over);
    const runtime = new NodeRuntime(o);
    runtimes.push(runtime);
    await runtime.start();
    return { runtime, workerId: o.workerId };
  }
  async function create(runtime: NodeRuntime, spec: FunctionSpec, sandboxId = nextId()): Promise<RuntimeSandbox> {
    const sandbox = await runtime.create({ sandboxId, spec, signal: never });
    started.push(sandbox);
    return sandbox;
  }
  const logOf = (sandboxId: string): string => join(dir.path, 'sandboxes', `${sandboxId}.log`);

  let shared: NodeRuntime;
  let sharedWorkerId: string;
  before(async () => {
    process.env.NODE_EXTRA_CA_CERTS ??= '/nonexistent/extra-ca.pem';
    process.env.BATON_TEST_LEAK = 'leaked';
    ({ runtime: shared, workerId: sharedWorkerId } = await runtimeWith());
  });

  after(async () => {
    delete process.env.BATON_TEST_LEAK;
    await Promise.all(started.map((s) => s.stop()));
    await Promise.all(runtimes.map((r) => r.close()));
    dir.remove();
  });

  it('serves an ESM handler from a pooled process and refills the pool after the take', async () => {
    const { runtime } = await runtimeWith();
    await waitFor('a full pool', () => runtime.idleCount === 2);
    const before = runtime.idlePids;
    const sandboxId = nextId();
    const sandbox = await create(runtime, nodeSpec('hello', 'hello.handler'), sandboxId);
    assert.equal(sandbox.latency.pooled, true);
    assert.equal(sandbox.pid, before[0], 'the oldest pool process was taken');
    assert.ok(sandbox.latency.spawnUs > 0 && sandbox.latency.readinessProbeUs > 0);
    assert.ok(sandbox.latency.totalUs >= sandbox.latency.portAllocationUs + sandbox.latency.runtimeCreateUs + sandbox.latency.spawnUs - 2);

    const res = await request(sandbox.port, '/greet?name=you');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(res.text), { message: 'Hello, you!' });

    await waitFor('the pool to refill', () => runtime.idleCount === 2 && !runtime.idlePids.includes(sandbox.pid));
    assert.ok(existsSync(logOf(sandboxId)), 'the pool log became the sandbox log');
    await sandbox.stop();
    assert.equal(processAlive(sandbox.pid), false);
    assert.deepEqual(liveGroupMembers(sandbox.pid), []);
    assert.equal(existsSync(logOf(sandboxId)), false, 'a deleted sandbox leaves no log');
    assert.equal((await sandbox.exited).message, 'stopped on request');
    await sandbox.stop(); // idempotent
  });

  it('spawns a runtime process of its own when the pool is disabled', async () => {
    const { runtime } = await runtimeWith({ poolSize: 0 });
    assert.equal(runtime.idleCount, 0);
    const sandbox = await create(runtime, nodeSpec('plain', 'cjs-hello.handler'));
    assert.equal(sandbox.latency.pooled, false);
    assert.ok(sandbox.latency.runtimeCreateUs > 1000, 'the boot is counted as runtime creation');
    const res = await request(sandbox.port, '/cjs');
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { greeting: 'hello from commonjs', path: '/cjs' });
    assert.equal(runtime.idleCount, 0, 'no pool grows behind it');
    await sandbox.stop();
  });

  it('gives a GET the API Gateway v2 event, the Lambda context and a clean environment', async () => {
    const sandboxId = nextId();
    const sandbox = await create(shared, nodeSpec('echo', 'echo.handler', { GREETING: 'hi', PORT: '1', BATON_SANDBOX_ID: 'forged' }), sandboxId);
    const res = await request(sandbox.port, '/items/42?a=1&a=2&b=x%20y&empty=', {
      headers: {
        'user-agent': 'node-test',
        'x-multi': ['one', 'two'],
        cookie: 'c1=v1; c2=v2',
        'x-request-id': 'req-123',
        'X-Mixed-Case': 'yes',
      },
    });
    assert.equal(res.status, 200);
    const { event, context, env, cwd, invocations } = JSON.parse(res.text);
    assert.equal(invocations, 1, 'readiness probes do not invoke the handler');

    assert.equal(event.version, '2.0');
    assert.equal(event.routeKey, '$default');
    assert.equal(event.rawPath, '/items/42');
    assert.equal(event.rawQueryString, 'a=1&a=2&b=x%20y&empty=');
    assert.deepEqual(event.queryStringParameters, { a: '1,2', b: 'x y', empty: '' });
    assert.deepEqual(event.cookies, ['c1=v1', 'c2=v2']);
    assert.equal(event.headers.cookie, undefined, 'cookies move out of the headers');
    assert.equal(event.headers['x-multi'], 'one,two');
    assert.equal(event.headers['x-mixed-case'], 'yes');
    assert.equal(event.headers['user-agent'], 'node-test');
    assert.equal(event.isBase64Encoded, false);
    assert.equal(event.body, undefined, 'a request without a body has none');
    const rc = event.requestContext;
    assert.equal(rc.accountId, 'baton');
    assert.equal(rc.apiId, 'echo');
    assert.equal(rc.domainName, `127.0.0.1:${sandbox.port}`);
    assert.equal(rc.requestId, 'req-123');
    assert.equal(rc.routeKey, '$default');
    assert.equal(rc.stage, '$default');
    assert.deepEqual(rc.http, { method: 'GET', path: '/items/42', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'node-test' });
    assert.match(rc.time, /^\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d \+0000$/);
    assert.ok(Math.abs(rc.timeEpoch - Date.now()) < 5000);

    assert.equal(context.functionName, 'echo');
    assert.equal(context.functionVersion, '$LATEST');
    assert.equal(context.awsRequestId, 'req-123');
    assert.equal(context.memoryLimitInMB, '128');
    assert.equal(context.logStreamName, sandboxId);
    assert.equal(context.invokedFunctionArn, 'arn:baton:lambda:local:baton:function:echo');
    assert.equal(context.callbackWaitsForEmptyEventLoop, true);
    assert.ok(context.remainingMs > 29_000 && context.remainingMs <= 30_000, `remaining ${context.remainingMs} ms of a 30 s timeout`);

    assert.equal(cwd, HANDLERS);
    assert.deepEqual(env, {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: HANDLERS,
      LANG: 'C.UTF-8',
      GREETING: 'hi',
      PORT: String(sandbox.port),
      HOST: '127.0.0.1',
      BATON_FUNCTION: 'echo',
      BATON_SANDBOX_ID: sandboxId,
    });
    // The runtime process itself was spawned with PATH, HOME and LANG only (its initial environment, from /proc),
    // plus what Node adds for the IPC channel.
    const initial = readFileSync(`/proc/${sandbox.pid}/environ`, 'latin1').split('\0').filter(Boolean);
    const names = initial.map((kv) => kv.slice(0, kv.indexOf('='))).filter((name) => !name.startsWith('NODE_CHANNEL_'));
    assert.deepEqual(names.sort(), ['HOME', 'LANG', 'PATH']);

    // A client's own GET /health reaches the handler; only the probe's is answered by the runtime.
    const health = JSON.parse((await request(sandbox.port, '/health')).text);
    assert.equal(health.event.rawPath, '/health');
    assert.equal(health.invocations, 2);
    await sandbox.stop();
  });

  it('passes a text body as UTF-8 and a binary body as base64', async () => {
    const sandbox = await create(shared, nodeSpec('echo', 'echo.handler'));
    const json = JSON.stringify({ hello: 'wörld' });
    const posted = JSON.parse((await request(sandbox.port, '/post', { method: 'POST', headers: { 'content-type': 'application/json' }, body: json })).text);
    assert.equal(posted.event.requestContext.http.method, 'POST');
    assert.equal(posted.event.body, json);
    assert.equal(posted.event.isBase64Encoded, false);
    assert.equal(posted.event.headers['content-length'], String(Buffer.byteLength(json)));

    const bytes = Buffer.from([0, 1, 2, 0xc3, 0x28, 0xfe, 0xff]);
    const binary = JSON.parse(
      (await request(sandbox.port, '/upload', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes })).text,
    );
    assert.equal(binary.event.isBase64Encoded, true);
    assert.deepEqual(Buffer.from(binary.event.body, 'base64'), bytes);

    // Text by its type but not valid UTF-8: base64, so nothing is lost.
    const latin1 = JSON.parse((await request(sandbox.port, '/t', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: Buffer.from([0x66, 0xe9]) })).text);
    assert.equal(latin1.event.isBase64Encoded, true);
    assert.equal(latin1.event.body, Buffer.from([0x66, 0xe9]).toString('base64'));
    await sandbox.stop();
  });

  it('maps results as API Gateway does: statusCode responses, and anything else as a JSON 200', async () => {
    const sandbox = await create(shared, nodeSpec('respond', 'respond.handler'));
    const send = (result: unknown): Promise<Reply> =>
      request(sandbox.port, '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ result }) });

    const structured = await send({
      statusCode: 201,
      headers: { 'Content-Type': 'text/plain', 'x-count': 3, 'content-length': '999' },
      multiValueHeaders: { 'x-many': ['1', '2'] },
      cookies: ['a=1', 'b=2; Path=/; HttpOnly'],
      body: 'created',
    });
    assert.equal(structured.status, 201);
    assert.equal(structured.text, 'created');
    assert.equal(structured.headers['content-type'], 'text/plain');
    assert.equal(structured.headers['x-count'], '3');
    assert.equal(structured.headers['x-many'], '1, 2');
    assert.deepEqual(structured.headers['set-cookie'], ['a=1', 'b=2; Path=/; HttpOnly']);
    assert.equal(structured.headers['content-length'], '7', 'the runtime sets the length of what it sends');

    // A header node:http cannot write (a handler echoing a request header with a newline):
    // a 500 for this request, and the sandbox goes on serving.
    const badHeader = await send({ statusCode: 200, headers: { 'x-echo': 'a\nb' }, body: 'x' });
    assert.equal(badHeader.status, 500);
    assert.equal((await send({ statusCode: 200, body: 'still here' })).text, 'still here');

    const noContent = await send({ statusCode: 204 });
    assert.equal(noContent.status, 204);
    assert.equal(noContent.text, '');

    const object = await send({ message: 'plain object' });
    assert.equal(object.status, 200);
    assert.equal(object.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(object.text), { message: 'plain object' });

    const text = await send('just a string');
    assert.equal(text.status, 200);
    assert.equal(text.headers['content-type'], 'application/json');
    assert.equal(text.text, 'just a string', 'a string is the body as it is');

    const array = await send([1, 2]);
    assert.equal(array.text, '[1,2]');

    const bad = await send({ statusCode: 'two hundred' });
    assert.equal(bad.status, 500);
    assert.equal(bad.text, '{"message":"Internal Server Error"}');

    await sandbox.stop();
    const binary = await create(shared, nodeSpec('binary', 'respond.binary'));
    const bytes = await request(binary.port, '/');
    assert.equal(bytes.headers['content-type'], 'application/octet-stream');
    assert.deepEqual(bytes.body, Buffer.from([0, 1, 2, 253, 254, 255]));
    await binary.stop();
  });

  it('answers a failing handler with a 500 that hides the error, and logs the error', async () => {
    const sandboxId = nextId();
    const sandbox = await create(shared, nodeSpec('throws', 'throws.handler'), sandboxId);
    const res = await request(sandbox.port, '/', { headers: { 'x-request-id': 'req-boom' } });
    assert.equal(res.status, 500);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.text, '{"message":"Internal Server Error"}');
    assert.doesNotMatch(res.text, /kaboom/);
    const log = await waitFor('the error in the log', () => {
      const text = readFileSync(logOf(sandboxId), 'utf8');
      return text.includes('kaboom') ? text : undefined;
    });
    assert.match(log, /req-boom\tERROR\tInvoke Error: Error: secret kaboom in the handler\n\s+at handler \(file:\/\/.*throws\.mjs:3/);
    const again = await request(sandbox.port, '/');
    assert.equal(again.status, 500, 'the sandbox keeps serving');
    await sandbox.stop();
  });

  it('supports callback-style handlers, their results and their errors', async () => {
    const ok = await create(shared, nodeSpec('callback', 'callback.handler'));
    const res = await request(ok.port, '/cb');
    assert.equal(res.status, 201);
    assert.equal(res.text, 'callback /cb');
    await ok.stop();

    const sandboxId = nextId();
    const failing = await create(shared, nodeSpec('callback', 'callback.fails'), sandboxId);
    const failed = await request(failing.port, '/');
    assert.equal(failed.status, 500);
    assert.doesNotMatch(failed.text, /callback failure text/);
    assert.match(readFileSync(logOf(sandboxId), 'utf8'), /CallbackError: callback failure text/);
    await failing.stop();

    const nested = await create(shared, nodeSpec('nested', 'lib/nested.handler'));
    assert.equal((await request(nested.port, '/')).text, 'nested commonjs');
    await nested.stop();
  });

  it('serves concurrent requests at once', async () => {
    const sandbox = await create(shared, nodeSpec('respond', 'respond.handler'));
    const t0 = performance.now();
    const [a, b] = await Promise.all([request(sandbox.port, '/?wait=300'), request(sandbox.port, '/?wait=300')]);
    const took = performance.now() - t0;
    const first = JSON.parse(a.text);
    const second = JSON.parse(b.text);
    assert.equal(first.pid, second.pid);
    assert.ok(first.started < second.ended && second.started < first.ended, 'the two invocations overlapped');
    assert.ok(took >= 295, `took ${took.toFixed(0)} ms`);
    await sandbox.stop();
  });

  it('fails a create with SANDBOX_START_FAILED naming the handler when it cannot be loaded', async () => {
    const cases: [string, RegExp][] = [
      ['no-export.handler', /function "broken": handler "no-export\.handler": no-export\.mjs has no export "handler"$/],
      ['not-function.handler', /handler "not-function\.handler": export "handler" of not-function\.mjs is not a function \(it is a string\)$/],
      ['missing.handler', /handler "missing\.handler": no missing\.js, missing\.mjs, missing\.cjs or missing in .*node-handlers$/],
      // Node 20 keeps an ES module's syntax error location out of the error; a CommonJS one has it.
      ['syntax-error.handler', /handler "syntax-error\.handler": cannot load syntax-error\.mjs: SyntaxError: Unexpected token ';'( \(.*syntax-error\.mjs:2\))?$/],
      ['syntax-error-cjs.handler', /handler "syntax-error-cjs\.handler": cannot load syntax-error-cjs\.js: SyntaxError: Unexpected end of input \(.*syntax-error-cjs\.js:\d\)$/],
      ['throws-at-load.handler', /handler "throws-at-load\.handler": cannot load throws-at-load\.mjs: Error: cannot initialise: the database is unreachable$/],
    ];
    for (const [handler, expected] of cases) {
      const sandboxId = nextId();
      const err = await startFailure(shared.create({ sandboxId, spec: nodeSpec('broken', handler), signal: never }));
      assert.equal(err.code, 'SANDBOX_START_FAILED', handler);
      assert.equal(err.details?.reason, 'start_failed');
      assert.match(err.message, expected);
      assert.ok(existsSync(logOf(sandboxId)), 'a failed sandbox keeps its log');
    }
    const missingDir = { ...nodeSpec('broken', 'index.handler'), workdir: '/nonexistent/baton-node-dir' };
    const err = await startFailure(shared.create({ sandboxId: nextId(), spec: missingDir, signal: never }));
    assert.match(err.message, /the function's directory \/nonexistent\/baton-node-dir does not exist/);
  });

  it('reports how a ready sandbox died and frees its port', async () => {
    const sandbox = await create(shared, nodeSpec('crash', 'respond.crash'));
    await request(sandbox.port, '/').catch(() => undefined);
    const exit = await sandbox.exited;
    assert.equal(exit.exitCode, 3);
    assert.match(exit.message, /the node runtime process exited with code 3/);
    assert.equal(processAlive(sandbox.pid), false);
    assert.deepEqual(liveGroupMembers(sandbox.pid), []);
  });

  it('stops a sandbox deleted while its handler loads, and rejects the create', async () => {
    const abort = new AbortController();
    const sandboxId = nextId();
    const creating = shared.create({ sandboxId, spec: nodeSpec('slow', 'slow-load.handler'), signal: abort.signal });
    // The process loading it writes to the sandbox's log.
    const pid = await waitFor('the load to start', () => runtimeProcesses(sharedWorkerId).find((p) => stdoutOf(p) === logOf(sandboxId)));
    abort.abort();
    const err = await startFailure(creating);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(processAlive(pid), false, 'the loading process is stopped');
    assert.equal(existsSync(logOf(sandboxId)), false);
  });

  it('replaces a pool process that dies while idle', async () => {
    const { runtime } = await runtimeWith();
    await waitFor('a full pool', () => runtime.idleCount === 2);
    const [victim, survivor] = runtime.idlePids;
    process.kill(victim ?? 0, 'SIGKILL');
    await waitFor('a replacement', () => runtime.idleCount === 2 && !runtime.idlePids.includes(victim ?? 0), 5000);
    assert.ok(runtime.idlePids.includes(survivor ?? 0));
  });

  it('starts a fresh process for a spec that sets a variable Node reads at start-up', async () => {
    const sandbox = await create(shared, nodeSpec('opts', 'echo.handler', { NODE_OPTIONS: '--max-old-space-size=96' }));
    assert.equal(sandbox.latency.pooled, false);
    const initial = readFileSync(`/proc/${sandbox.pid}/environ`, 'latin1');
    assert.match(initial, /NODE_OPTIONS=--max-old-space-size=96/);
    const { env } = JSON.parse((await request(sandbox.port, '/')).text);
    assert.equal(env.NODE_OPTIONS, '--max-old-space-size=96');
    await sandbox.stop();
  });

  it('leaves no process behind after close and refuses creates', async () => {
    const { runtime, workerId } = await runtimeWith({ poolSize: 3 });
    await waitFor('a full pool', () => runtime.idleCount === 3);
    const pids = runtimeProcesses(workerId);
    assert.equal(pids.length, 3);
    await runtime.close();
    assert.deepEqual(runtimeProcesses(workerId), []);
    for (const pid of pids) assert.deepEqual(liveGroupMembers(pid), []);
    const err = await startFailure(runtime.create({ sandboxId: nextId(), spec: nodeSpec('late', 'hello.handler'), signal: never }));
    assert.equal(err.code, 'UNAVAILABLE');
  });

  it('kills pool processes and sandboxes at once with killAllNow', async () => {
    const { runtime, workerId } = await runtimeWith();
    const sandbox = await create(runtime, nodeSpec('hello', 'hello.handler'));
    await waitFor('a full pool', () => runtime.idleCount === 2);
    assert.equal(runtimeProcesses(workerId).length, 3);
    runtime.killAllNow();
    await sandbox.exited;
    await waitFor('every runtime process to die', () => runtimeProcesses(workerId).length === 0);
    await runtime.close();
  });

  it('survives a Node that cannot boot: the pool backs off and creates fail naming the exit', async () => {
    assert.match(NodeRuntime.unavailable('/nonexistent/node') ?? '', /node\.nodePath \/nonexistent\/node is not an executable file/);
    assert.equal(NodeRuntime.unavailable(process.execPath), undefined);
    const t0 = performance.now();
    const { runtime } = await runtimeWith({ nodePath: '/bin/false', poolSize: 1 });
    assert.ok(performance.now() - t0 < 1500, 'start() does not wait for a pool that cannot boot');
    assert.equal(runtime.idleCount, 0);
    const err = await startFailure(runtime.create({ sandboxId: nextId(), spec: nodeSpec('hello', 'hello.handler'), signal: never }));
    assert.equal(err.code, 'SANDBOX_START_FAILED');
    assert.match(err.message, /the runtime process exited with code 1 while it booted; it wrote no output/);
  });

  it('removes every pool log once the runtimes are closed', async () => {
    await Promise.all(runtimes.map((r) => r.close()));
    assert.deepEqual(
      readdirSync(join(dir.path, 'sandboxes')).filter((n) => n.startsWith('node-pool-')),
      [],
    );
  });
});
