// Async invocations (issue 8) end to end, on a real cluster with a process
// function that counts its requests in files (test/fixtures/flaky-server.js):
// submit and read results, retries with back-off, 4xx not retried, the
// result TTL and its sweep, a full queue, body limits; then, with a SQLite and
// a Redis queue, kill -9 of a data plane running as its own process with
// invocations accepted, and a restart that runs every one of them to
// `succeeded`, none that had finished twice; and a graceful stop mid-attempt.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:http2';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { DataPlane } from '../../src/dataplane/index.js';
import { compileConfig, dataPlaneSchema } from '../../src/shared/config.js';
import { BatonError } from '../../src/shared/errors.js';
import { RedisServer, redisSkipReason } from '../../src/store/redis-test-support.js';
import { fixture, FIXTURES, freePort, REPO_ROOT, startTestCluster, type TestCluster, waitFor } from '../helpers/cluster.js';

const MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const LOG = process.env.BATON_TEST_LOG ?? 'silent';

interface Invocation {
  id: string;
  function: string;
  state: string;
  attempts: number;
  status: number | null;
  headers: Record<string, string> | null;
  body: string | null;
  encoding: string | null;
  errorCode: string | null;
  submittedAt: string;
  finishedAt: string | null;
}

function flakySpec(name: string, countDir: string): Record<string, unknown> {
  return {
    name,
    command: [process.execPath, fixture('flaky-server.js'), countDir],
    workdir: FIXTURES,
    scaling: { maxScale: 1, containerConcurrency: 0 },
  };
}

async function submit(
  base: string,
  path: string,
  init: { body?: string | Buffer; headers?: Record<string, string>; method?: string } = {},
): Promise<{ status: number; body: any; headers: Record<string, string | string[] | undefined> }> {
  const res = await request(`${base}${path}`, {
    method: (init.method ?? 'POST') as 'POST',
    body: init.body,
    headers: { 'x-baton-invocation': 'async', ...init.headers },
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

async function result(base: string, id: string): Promise<{ status: number; body: any }> {
  const res = await request(`${base}/v1/invocations/${id}`);
  return { status: res.statusCode, body: JSON.parse(await res.body.text()) };
}

function waitState(base: string, id: string, states: string[], timeoutMs = 60_000): Promise<Invocation> {
  return waitFor(
    `invocation ${id} to be ${states.join(' or ')}`,
    async () => {
      const r = await result(base, id).catch(() => undefined);
      return r?.status === 200 && states.includes((r.body as Invocation).state) ? (r.body as Invocation) : undefined;
    },
    timeoutMs,
  );
}

/** How many requests with `key` the function saw. */
function countOf(dir: string, key: string): number {
  try {
    return readFileSync(join(dir, key), 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

describe('async invocations on an in-process cluster', () => {
  let c: TestCluster;
  let base: string;
  const counts = mkdtempSync(join(tmpdir(), 'baton-async-counts-'));

  before(async () => {
    c = await startTestCluster({
      controlplane: { scalingPeriodMs: 200, metricsIntervalMs: 200 },
      dataplane: {
        async: { concurrency: 2, maxQueued: 6, maxRetries: 4, backoffInitialMs: 100, backoffMaxMs: 400, resultTtlMs: 2000, sweepIntervalMs: 200, retryAfterMs: 2500 },
      },
    });
    base = c.dataPlaneUrl;
    const reg = await c.admin('POST', '/v1/functions', flakySpec('flaky', counts));
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
  });

  after(async () => {
    await c?.close();
    rmSync(counts, { recursive: true, force: true });
  });

  test('a submit answers 202 with an id and a Location; the result has the status, headers and body', async () => {
    const res = await submit(base, '/fn/flaky/hello?key=plain', { body: 'payload', headers: { 'content-type': 'text/plain' } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.id as string;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.location, `/v1/invocations/${id}`);
    const done = await waitState(base, id, ['succeeded', 'failed']);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.function, 'flaky');
    assert.equal(done.attempts, 1);
    assert.equal(done.status, 200);
    assert.equal(done.encoding, 'utf-8');
    assert.equal(done.body, 'ok 1\npayload');
    assert.equal(done.headers?.['x-count'], '1');
    // The sandbox got an ordinary request: the flaky fixture echoes only the body, so ask the invocation's own request.
    const stored = await c.dataPlane.asyncInvocations?.inspect(id);
    assert.equal(stored?.headers['content-type'], 'text/plain');
    assert.equal(stored?.headers['x-baton-invocation'], undefined, 'the async header is not passed on');
    assert.ok(done.finishedAt !== null && Date.parse(done.finishedAt) >= Date.parse(done.submittedAt));
    assert.equal(countOf(counts, 'plain'), 1);
  });

  test("Lambda's X-Amz-Invocation-Type: Event is async too", async () => {
    const res = await submit(base, '/fn/flaky/?key=event', { headers: { 'x-baton-invocation': 'sync', 'X-Amz-Invocation-Type': 'Event' } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.equal((await waitState(base, res.body.id, ['succeeded'])).body, 'ok 1\n');
  });

  test('h2c clients submit too', async () => {
    const session = connect(base);
    try {
      const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/fn/flaky/?key=h2', 'x-baton-invocation': 'async' });
        let status = 0;
        let text = '';
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.setEncoding('utf8');
        stream.on('data', (c: string) => (text += c));
        stream.on('end', () => resolve({ status, text }));
        stream.on('error', reject);
        stream.end('over h2');
      });
      assert.equal(status, 202, text);
      const done = await waitState(base, (JSON.parse(text) as { id: string }).id, ['succeeded']);
      assert.equal(done.body, 'ok 1\nover h2');
    } finally {
      session.close();
    }
  });

  test('DataPlane.asyncSubmitter() (the Lambda Invoke API\'s door) submits, and refuses unknown functions', async () => {
    const submitter = c.dataPlane.asyncSubmitter();
    assert.ok(submitter);
    const { id } = await submitter.submit({ function: 'flaky', method: 'POST', path: '/?key=direct', headers: { 'x-h': 'v' }, body: Buffer.from('direct') });
    assert.equal((await waitState(base, id, ['succeeded'])).body, 'ok 1\ndirect');
    await assert.rejects(
      submitter.submit({ function: 'nope', method: 'POST', path: '/', headers: {}, body: new Uint8Array() }),
      (e: unknown) => e instanceof BatonError && e.code === 'FUNCTION_NOT_FOUND',
    );
  });

  test('a function that fails twice with 5xx is retried and succeeds on the third attempt', async () => {
    const res = await submit(base, '/fn/flaky/?key=twice&fail=2&status=503');
    assert.equal(res.status, 202);
    const done = await waitState(base, res.body.id, ['succeeded', 'failed']);
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    assert.equal(done.attempts, 3);
    assert.equal(done.body, 'ok 3\n');
    assert.equal(countOf(counts, 'twice'), 3);
    // Every attempt carried the invocation's id, so a function can make a re-run harmless.
    const ids = readFileSync(join(counts, 'twice'), 'utf8').trim().split('\n').map((line) => line.split(' ')[1]);
    assert.deepEqual(ids, [res.body.id, res.body.id, res.body.id]);
  });

  test('a sandbox that crashes mid-request is retried on its replacement', async () => {
    const res = await submit(base, '/fn/flaky/?key=crash&crash=1');
    const done = await waitState(base, res.body.id, ['succeeded', 'failed']);
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    // A retry may also find the dead sandbox still listed (SANDBOX_UNREACHABLE) before its replacement is.
    assert.ok(done.attempts >= 2, JSON.stringify(done));
    assert.equal(done.body, 'ok 2\n');
    assert.equal(countOf(counts, 'crash'), 2, 'the function saw the crashed request and the one that succeeded');
  });

  test('a function that keeps failing fails after 1 + maxRetries attempts with its last answer', async () => {
    const res = await submit(base, '/fn/flaky/?key=always&fail=100');
    const done = await waitState(base, res.body.id, ['succeeded', 'failed']);
    assert.equal(done.state, 'failed');
    assert.equal(done.attempts, 5);
    assert.equal(done.status, 500);
    assert.equal(done.body, 'fail 5');
    assert.equal(countOf(counts, 'always'), 5);
  });

  test('a 4xx is not retried', async () => {
    const res = await submit(base, '/fn/flaky/?key=client&fail=100&status=422');
    const done = await waitState(base, res.body.id, ['succeeded', 'failed']);
    assert.equal(done.state, 'failed');
    assert.equal(done.attempts, 1);
    assert.equal(done.status, 422);
    // Longer than the back-off: a retry would have run by now.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(countOf(counts, 'client'), 1);
    assert.equal((await result(base, res.body.id)).body.attempts, 1);
  });

  test('unknown function, unknown id, oversized body, reserved path', async () => {
    const unknownFn = await submit(base, '/fn/nope/');
    assert.equal(unknownFn.status, 404);
    assert.equal(unknownFn.body.code, 'FUNCTION_NOT_FOUND');
    for (const id of ['00000000-0000-0000-0000-000000000000', 'queue', '..%2Fx', '%E0%A4%A']) {
      const unknownId = await result(base, id);
      assert.equal(unknownId.status, 404, id);
      assert.equal(unknownId.body.code, 'INVOCATION_NOT_FOUND');
    }
    const big = await submit(base, '/fn/flaky/?key=big', { body: Buffer.alloc(1024 * 1024 + 1, 97) });
    assert.equal(big.status, 413);
    assert.equal(big.body.code, 'BODY_TOO_LARGE');
    assert.equal(countOf(counts, 'big'), 0);
    // /v1/invocations/ is the data plane's even for a request Host-routed to a function.
    const port = new URL(base).port;
    const shadow = await request(`${base}/v1/invocations/x`, { headers: { host: `flaky.local:${port}` } });
    assert.equal(shadow.statusCode, 404);
    assert.equal(JSON.parse(await shadow.body.text()).code, 'INVOCATION_NOT_FOUND');
    assert.equal((await request(`${base}/v1/invocations/x`, { method: 'DELETE' })).statusCode, 405);
  });

  test('a result expires after resultTtlMs: 404, and the sweep deletes it from the store', async () => {
    const res = await submit(base, '/fn/flaky/?key=ttl');
    const done = await waitState(base, res.body.id, ['succeeded']);
    const finishedAt = Date.parse(done.finishedAt as string);
    const invocations = c.dataPlane.asyncInvocations;
    assert.ok(invocations);
    assert.equal((await invocations.inspect(res.body.id))?.state, 'succeeded');
    await waitFor('the result to expire', async () => ((await result(base, res.body.id)).status === 404 ? true : undefined), 15_000);
    assert.ok(Date.now() >= finishedAt + 2000, 'not before the TTL');
    assert.equal((await result(base, res.body.id)).body.code, 'INVOCATION_NOT_FOUND');
    await waitFor('the sweep to delete it', async () => ((await invocations.inspect(res.body.id)) === undefined ? true : undefined), 15_000);
  });

  test('a full queue answers 429 ASYNC_QUEUE_FULL with Retry-After; it accepts again once invocations finish', async () => {
    const ids: string[] = [];
    let full: Awaited<ReturnType<typeof submit>> | undefined;
    for (let i = 0; i < 10 && full === undefined; i++) {
      const res = await submit(base, `/fn/flaky/?key=slow${i}&sleep=700`);
      if (res.status === 429) full = res;
      else {
        assert.equal(res.status, 202, JSON.stringify(res.body));
        ids.push(res.body.id);
      }
    }
    assert.ok(full, 'the queue never filled');
    assert.equal(ids.length, 6, 'maxQueued (6) invocations were accepted first');
    assert.equal(full.body.code, 'ASYNC_QUEUE_FULL');
    assert.equal(full.body.retryAfterMs, 2500);
    assert.equal(full.headers['retry-after'], '3');
    await assert.rejects(
      (c.dataPlane.asyncSubmitter() as NonNullable<ReturnType<typeof c.dataPlane.asyncSubmitter>>).submit({
        function: 'flaky',
        method: 'GET',
        path: '/?key=never',
        headers: {},
        body: new Uint8Array(),
      }),
      (e: unknown) => e instanceof BatonError && e.code === 'ASYNC_QUEUE_FULL' && e.status === 429 && e.details?.retryAfterMs === 2500,
    );
    for (const id of ids) assert.equal((await waitState(base, id, ['succeeded', 'failed'])).state, 'succeeded');
    const again = await submit(base, '/fn/flaky/?key=after-full');
    assert.equal(again.status, 202);
  });

  test('/metrics counts async outcomes and shows the unfinished ones', async () => {
    const scrape = async (): Promise<string> => (await request(`http://${c.dataPlane.rpcAddress}/metrics`)).body.text();
    // A sample line: the name, its labels (the registry adds component="dataplane"), the value.
    const value = (text: string, name: string, outcome?: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && (outcome === undefined || l.includes(`outcome="${outcome}"`)));
      return Number(line?.slice(line.lastIndexOf(' ') + 1) ?? NaN);
    };
    await waitFor('nothing unfinished', async () => (value(await scrape(), 'baton_dataplane_async_unfinished') === 0 ? true : undefined), 30_000);
    const text = await scrape();
    assert.ok(value(text, 'baton_dataplane_async_invocations_total', 'accepted') >= 15, text);
    assert.ok(value(text, 'baton_dataplane_async_invocations_total', 'rejected_full') >= 2);
    assert.ok(value(text, 'baton_dataplane_async_invocations_total', 'retried') >= 6, 'twice: 2, always: 4');
    assert.ok(value(text, 'baton_dataplane_async_invocations_total', 'failed') >= 2, 'always and client');
    assert.equal(value(text, 'baton_dataplane_async_running'), 0);
  });
});

test('with async.enabled false there is no submitter and /v1/invocations answers 501 ASYNC_DISABLED', async () => {
  const dp = await DataPlane.create(
    compileConfig(dataPlaneSchema, { port: 0, rpcPort: 0, controlPlaneUrl: 'http://127.0.0.1:1', logLevel: 'silent', async: { enabled: false } }),
  );
  try {
    assert.equal(dp.asyncSubmitter(), null);
    const res = await request(`http://${dp.proxyAddress}/v1/invocations/x`);
    assert.equal(res.statusCode, 501);
    assert.equal(JSON.parse(await res.body.text()).code, 'ASYNC_DISABLED');
  } finally {
    await dp.stop(0);
  }
});

for (const store of ['sqlite', 'redis'] as const) {
  describe(`a data plane restarted with accepted invocations (${store} queue)`, { skip: store === 'redis' ? redisSkipReason() ?? false : false }, () => {
    let c: TestCluster;
    let dir: string;
    let dp: ChildProcess | undefined;
    let dpPort: number;
    let dpRpcPort: number;
    let redis: RedisServer | undefined;

    function startDp(): ChildProcess {
      const env = { ...process.env };
      delete env.NODE_EXTRA_CA_CERTS;
      // In `dir`: the SQLite queue lands in the daemon's default data dir, `.baton`.
      return spawn(process.execPath, [MAIN, 'dataplane', '--config', join(dir, 'dp.yaml')], { cwd: dir, env, stdio: ['ignore', 'ignore', LOG === 'silent' ? 'ignore' : 'inherit'] });
    }

    async function healthy(): Promise<void> {
      await waitFor(
        'the data plane to be synced',
        async () => {
          try {
            const res = await request(`http://127.0.0.1:${dpRpcPort}/health`);
            await res.body.dump();
            return res.statusCode === 200 ? true : undefined;
          } catch {
            return undefined;
          }
        },
        30_000,
      );
    }

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'baton-async-kill-'));
      mkdirSync(join(dir, 'counts'));
      c = await startTestCluster({ controlplane: { scalingPeriodMs: 200, metricsIntervalMs: 200 } });
      [dpPort, dpRpcPort] = [await freePort(), await freePort()];
      if (store === 'redis') {
        mkdirSync(join(dir, 'redis'));
        redis = await RedisServer.start(join(dir, 'redis'));
      }
      const storeLine = redis ? `  store: { type: redis, url: '${redis.url}', keyPrefix: 'test:async:' }` : '  store: { type: sqlite }';
      writeFileSync(
        join(dir, 'dp.yaml'),
        [
          `port: ${dpPort}`,
          `rpcPort: ${dpRpcPort}`,
          `controlPlaneUrl: ${c.controlPlane.url}`,
          'heartbeatIntervalMs: 200',
          'metricsIntervalMs: 200',
          'shutdownGraceMs: 300',
          'async:',
          '  concurrency: 2',
          '  backoffInitialMs: 100',
          '  backoffMaxMs: 200',
          storeLine,
          `logLevel: ${LOG}`,
          '',
        ].join('\n'),
      );
      dp = startDp();
      await healthy();
      // `baton dataplane` defaults its data dir, so the queue is on disk without one configured.
      if (store === 'sqlite') assert.ok(existsSync(join(dir, '.baton', 'dataplane-async.db')), 'the queue file in the default data dir');
    });

    after(async () => {
      dp?.kill('SIGKILL');
      await c?.close();
      await redis?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('every accepted invocation ends succeeded after the restart; none that had finished runs again', { timeout: 180_000 }, async () => {
      const reg = await c.admin('POST', '/v1/functions', flakySpec('durable', join(dir, 'counts')));
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      const base = `http://127.0.0.1:${dpPort}`;
      const N = 20;
      const ids: string[] = [];
      for (let i = 0; i < N; i++) {
        const res = await submit(base, `/fn/durable/?key=k${i}&sleep=300`, { body: `n=${i}` });
        assert.equal(res.status, 202, JSON.stringify(res.body));
        ids.push(res.body.id);
      }
      // Kill once some have finished and the rest are queued or running.
      const finishedBefore = await waitFor(
        'a few invocations to finish',
        async () => {
          const states = await Promise.all(ids.map(async (id) => (await result(base, id)).body.state as string));
          const done = ids.filter((_, i) => states[i] === 'succeeded');
          return done.length >= 2 ? done : undefined;
        },
        60_000,
      );
      const child = dp as ChildProcess;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      assert.ok(finishedBefore.length < N, 'the kill came before everything had finished');

      dp = startDp();
      await healthy();
      for (const [i, id] of ids.entries()) {
        const done = await waitState(base, id, ['succeeded', 'failed'], 60_000);
        assert.equal(done.state, 'succeeded', `invocation ${i}: ${JSON.stringify(done)}`);
        assert.match(done.body ?? '', new RegExp(`\\nn=${i}$`));
      }
      for (const id of finishedBefore) {
        const i = ids.indexOf(id);
        assert.equal(countOf(join(dir, 'counts'), `k${i}`), 1, `invocation ${i} finished before the kill and must not run again`);
      }
    });

    test('an attempt cut by a graceful stop runs again after the restart, its cut attempt not counted', { timeout: 120_000 }, async () => {
      const base = `http://127.0.0.1:${dpPort}`;
      const res = await submit(base, '/fn/durable/?key=cut&sleep=3000');
      assert.equal(res.status, 202);
      await waitFor('the sandbox to get the request', () => (countOf(join(dir, 'counts'), 'cut') === 1 ? true : undefined), 60_000);
      const child = dp as ChildProcess;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      dp = startDp();
      await healthy();
      const done = await waitState(base, res.body.id, ['succeeded', 'failed'], 60_000);
      assert.equal(done.state, 'succeeded', JSON.stringify(done));
      assert.equal(done.attempts, 1);
      assert.equal(countOf(join(dir, 'counts'), 'cut'), 2, 'cut once, then run to the end');
    });
  });
}
