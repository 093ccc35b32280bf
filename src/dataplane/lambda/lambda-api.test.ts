// The Invoke API on a real Proxy and FunctionState, served by node:http on
// loopback: Event against a stand-in AsyncSubmitter (the interface's test
// seam: the durable queue is another component's), throttling (429 with the
// Reason), and the parsing of names and ARNs.
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { silentLogger } from '../../shared/logging.js';
import { parseFunctionSpec } from '../../shared/spec.js';
import type { AsyncInvocationRequest, AsyncSubmitter } from '../async-submitter.js';
import { EndpointState, FunctionState } from '../function-table.js';
import { Proxy } from '../proxy.js';
import { EndpointUpstream, UpstreamTracker } from '../upstream.js';
import { parseInvocationType, parseInvokeTarget } from './invoke-api.js';

type Submit = (req: AsyncInvocationRequest) => Promise<{ id: string }>;

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(`127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`);
    });
  });
}

describe('the Invoke API on a proxy', () => {
  const functions = new Map<string, FunctionState>();
  let submit: Submit | null = null;
  const submitted: AsyncInvocationRequest[] = [];
  const submitter: AsyncSubmitter = {
    submit: (req) => {
      submitted.push(req);
      if (submit === null) throw new Error('no submit behaviour set');
      return submit(req);
    },
  };
  let async = true;
  const proxy = new Proxy(
    {
      functions,
      onActive: () => undefined,
      onQueued: () => undefined,
      onColdStartWait: () => undefined,
      onUnrouted: () => undefined,
      onUpstreamError: () => undefined,
    },
    { maxBodyBytes: 6 * 1024 * 1024, maxQueueLength: 1, requestLog: null, log: silentLogger(), asyncSubmitter: () => (async ? submitter : null) },
  );
  const server = http.createServer(proxy.handle);
  // A sandbox that holds every answer until released, so a test can fill the function's tokens.
  const held: (() => void)[] = [];
  const sandbox = http.createServer((req, res) => {
    req.resume();
    held.push(() => res.end('{"ok":true}'));
  });
  let base = '';
  const tracker = new UpstreamTracker();

  before(async () => {
    base = `http://${await listen(server)}`;
    const sandboxAddress = await listen(sandbox);
    functions.set('fn', new FunctionState(parseFunctionSpec({ name: 'fn', command: ['x'] }), 1n, 'round-robin'));
    functions.set('handler', new FunctionState(parseFunctionSpec({ name: 'handler', runtime: 'node', handler: 'index.handler', workdir: '/tmp' }), 1n, 'round-robin'));
    const capped = new FunctionState(parseFunctionSpec({ name: 'capped', command: ['x'], scaling: { maxScale: 1, containerConcurrency: 1 } }), 1n, 'round-robin');
    capped.addEndpoint(new EndpointState('sb-1', sandboxAddress, 'w', new EndpointUpstream(sandboxAddress, { connections: 2, tracker })));
    functions.set('capped', capped);
  });
  after(async () => {
    for (const release of held.splice(0)) release();
    server.close();
    sandbox.close();
    server.closeAllConnections();
    sandbox.closeAllConnections();
    for (const fn of functions.values()) for (const ep of fn.endpoints) await ep.upstream.destroy();
  });

  const invoke = (name: string, type: string, body: string | Buffer = '{}') =>
    request(`${base}/2015-03-31/functions/${encodeURIComponent(name)}/invocations`, { method: 'POST', headers: { 'x-amz-invocation-type': type }, body });

  test('Event hands the payload to the submitter and answers 202 with the invocation id', async () => {
    submitted.length = 0;
    submit = async () => ({ id: 'inv-123' });
    const res = await invoke('handler', 'Event', '{"a":1}');
    assert.equal(res.statusCode, 202);
    assert.equal(res.headers['x-amzn-requestid'], 'inv-123');
    assert.equal(await res.body.text(), '');
    assert.equal(submitted.length, 1);
    const req = submitted[0] as AsyncInvocationRequest;
    assert.equal(req.function, 'handler');
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/');
    // A node function's payload is its raw event, as in a synchronous call.
    assert.equal(req.headers['x-baton-lambda-event'], '1');
    assert.equal(Buffer.from(req.body).toString(), '{"a":1}');
  });

  test('Event on a full async queue is 429 TooManyRequestsException with Retry-After', async () => {
    submit = async () => {
      throw Object.assign(new Error('the async queue is full'), { code: 'ASYNC_QUEUE_FULL', status: 429, details: { retryAfterMs: 2500 } });
    };
    const res = await invoke('fn', 'Event');
    assert.equal(res.statusCode, 429);
    assert.equal(res.headers['x-amzn-errortype'], 'TooManyRequestsException');
    assert.equal(res.headers['retry-after'], '3');
    const body = (await res.body.json()) as Record<string, string>;
    assert.equal(body.Reason, 'ConcurrentInvocationLimitExceeded');
    assert.equal(body.retryAfterSeconds, '3');
    assert.match(String(body.message), /async queue is full/);
  });

  test('Event for a function the queue does not know is ResourceNotFoundException', async () => {
    submit = async () => {
      throw Object.assign(new Error('no function named "fn"'), { code: 'FUNCTION_NOT_FOUND', status: 404 });
    };
    const res = await invoke('fn', 'Event');
    assert.equal(res.statusCode, 404);
    assert.equal(res.headers['x-amzn-errortype'], 'ResourceNotFoundException');
    await res.body.dump();
  });

  test('Event over 1 MB is RequestTooLargeException, before the submitter sees it', async () => {
    submitted.length = 0;
    submit = async () => ({ id: 'never' });
    const res = await invoke('fn', 'Event', Buffer.alloc(1024 * 1024 + 1, 0x20));
    assert.equal(res.statusCode, 413);
    assert.equal(res.headers['x-amzn-errortype'], 'RequestTooLargeException');
    await res.body.dump();
    assert.equal(submitted.length, 0);
  });

  test('Event without an async queue is 501 ASYNC_DISABLED', async () => {
    async = false;
    try {
      const res = await invoke('fn', 'Event');
      assert.equal(res.statusCode, 501);
      assert.equal(((await res.body.json()) as { code: string }).code, 'ASYNC_DISABLED');
    } finally {
      async = true;
    }
  });

  test('a capped function at its cap with a full queue is 429 ReservedFunctionConcurrentInvocationLimitExceeded', async () => {
    // The one token, then the one queue place (maxQueueLength 1), then a throttle.
    const first = invoke('capped', 'RequestResponse');
    await waitUntil(() => held.length === 1);
    const second = invoke('capped', 'RequestResponse');
    await waitUntil(() => (functions.get('capped') as FunctionState).queued === 1);
    const third = await invoke('capped', 'RequestResponse');
    assert.equal(third.statusCode, 429);
    assert.equal(third.headers['x-amzn-errortype'], 'TooManyRequestsException');
    assert.equal(((await third.body.json()) as { Reason: string }).Reason, 'ReservedFunctionConcurrentInvocationLimitExceeded');
    // The held ones complete once the sandbox answers.
    (held.shift() as () => void)();
    await waitUntil(() => held.length === 1);
    (held.shift() as () => void)();
    for (const res of await Promise.all([first, second])) {
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['x-baton-sandbox'], 'sb-1');
      assert.deepEqual(await res.body.json(), { ok: true });
    }
  });

  test('an unknown invocation type is 400 InvalidParameterValueException', async () => {
    const res = await invoke('fn', 'Sometimes');
    assert.equal(res.statusCode, 400);
    assert.equal(res.headers['x-amzn-errortype'], 'InvalidParameterValueException');
    await res.body.dump();
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('function names: plain, qualified, partial and full ARNs, URL-encoded', () => {
  const path = (n: string, q = ''): string => `/2015-03-31/functions/${encodeURIComponent(n)}/invocations${q}`;
  assert.deepEqual(parseInvokeTarget(path('hello')), { name: 'hello', qualifier: '' });
  assert.deepEqual(parseInvokeTarget(path('hello:$LATEST')), { name: 'hello', qualifier: '$LATEST' });
  assert.deepEqual(parseInvokeTarget(path('123456789012:function:hello')), { name: 'hello', qualifier: '' });
  assert.deepEqual(parseInvokeTarget(path('arn:aws:lambda:us-east-1:123456789012:function:hello:prod')), { name: 'hello', qualifier: 'prod' });
  assert.deepEqual(parseInvokeTarget(path('hello', '?Qualifier=%24LATEST')), { name: 'hello', qualifier: '$LATEST' });
  assert.equal(parseInvokeTarget('/2015-03-31/functions/hello'), undefined);
  assert.equal(parseInvokeTarget('/2015-03-31/functions/hello/configuration'), undefined);
  assert.equal(parseInvokeTarget('/2015-03-31/functions//invocations'), undefined);
  assert.equal(parseInvokeTarget('/2015-03-31/functions/%E0%A4%A/invocations'), undefined);
});

test('invocation types: RequestResponse by default, the three Lambda names, nothing else', () => {
  assert.equal(parseInvocationType(undefined), 'RequestResponse');
  assert.equal(parseInvocationType('Event'), 'Event');
  assert.equal(parseInvocationType('DryRun'), 'DryRun');
  assert.equal(parseInvocationType('event'), undefined);
});
