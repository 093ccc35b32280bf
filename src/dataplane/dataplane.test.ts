// The data plane end to end: a real DataPlane driven through its real RPC
// service, a small real ControlPlaneService that records what the data plane
// tells it, real upstream HTTP servers (in-process, and the echo-server
// fixture as a child process for crashes), and real HTTP/1.1 and h2c clients.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import type { Client } from '@connectrpc/connect';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { FunctionSpecSchema, StateSnapshotSchema, type StateSnapshot } from '../gen/baton/v1/common_pb.js';
import { ControlPlaneService, type FunctionLoad } from '../gen/baton/v1/controlplane_pb.js';
import { DataPlaneService } from '../gen/baton/v1/dataplane_pb.js';
import { compileConfig, dataPlaneSchema } from '../shared/config.js';
import type { DualListener } from '../shared/listener.js';
import { silentLogger } from '../shared/logging.js';
import { freePort } from '../shared/test-support.js';
import { createRpcClient, startRpcServer } from '../shared/rpc.js';
import { DataPlane } from './index.js';

const ECHO_SERVER = fileURLToPath(new URL('../../../test/fixtures/echo-server.js', import.meta.url));
const TOKEN = 'test-token';

// --- a control plane that records ------------------------------------------

interface Report {
  at: number;
  urgent: boolean;
  functions: FunctionLoad[];
}

const cp = {
  registrations: [] as { dataPlaneId: string; address: string; proxyAddress: string }[],
  reports: [] as Report[],
  /** The functions of each gap report, and the state the control plane answers with. */
  gaps: [] as string[][],
  gapAnswer: (_functions: string[]): StateSnapshot => create(StateSnapshotSchema, {}),
  listener: null as DualListener | null,
};

async function startFakeControlPlane(): Promise<DualListener> {
  return startRpcServer({
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    token: TOKEN,
    metrics: new Registry(),
    routes: (router) =>
      router.service(ControlPlaneService, {
        registerDataPlane: (req) => {
          cp.registrations.push({ dataPlaneId: req.dataPlaneId, address: req.address, proxyAddress: req.proxyAddress });
          return { metricsIntervalMs: 0 };
        },
        reportInFlight: (req) => {
          cp.reports.push({ at: performance.now(), urgent: req.urgent, functions: req.functions });
          return {};
        },
        reportGaps: (req) => {
          cp.gaps.push(req.functions);
          return cp.gapAnswer(req.functions);
        },
      }),
  });
}

function reportsFor(fn: string, since = 0): { at: number; urgent: boolean; load: FunctionLoad }[] {
  const out = [];
  for (const r of cp.reports) {
    if (r.at < since) continue;
    for (const load of r.functions) if (load.function === fn) out.push({ at: r.at, urgent: r.urgent, load });
  }
  return out;
}

// --- upstream sandboxes ----------------------------------------------------

interface Upstream {
  server: http.Server;
  address: string;
  hits: number;
}

/** An in-process sandbox: /sleep?ms=, /stream?n=&gapMs=, anything else echoes JSON. */
async function startUpstream(): Promise<Upstream> {
  const up: Upstream = { server: http.createServer(), address: '', hits: 0 };
  up.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    up.hits++;
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/sleep') {
      const ms = Number(url.searchParams.get('ms') ?? '100');
      setTimeout(() => res.end(`slept ${ms}`), ms);
      return;
    }
    if (url.pathname === '/stream') {
      const n = Number(url.searchParams.get('n') ?? '3');
      const gap = Number(url.searchParams.get('gapMs') ?? '5');
      let i = 0;
      const tick = (): void => {
        if (i === n) {
          res.end();
          return;
        }
        res.write(`chunk ${i++}\n`);
        setTimeout(tick, gap);
      };
      tick();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-echo', 'yes');
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
  });
  up.server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => up.server.listen(0, '127.0.0.1', resolve));
  up.address = `127.0.0.1:${(up.server.address() as net.AddressInfo).port}`;
  return up;
}


/** The echo-server fixture as a real child process with a clean environment. */
async function spawnEchoServer(): Promise<{ child: ChildProcess; address: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [ECHO_SERVER], { env: { PORT: String(port), HOST: '127.0.0.1' }, stdio: 'ignore' });
  const deadline = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error('echo server did not start');
    await sleep(10);
  }
  return { child, address: `127.0.0.1:${port}` };
}

// --- the data plane under test --------------------------------------------

let dp: DataPlane;
let rpc: Client<typeof DataPlaneService>;
let upA: Upstream;
let upB: Upstream;
const children: ChildProcess[] = [];
const agent = new Agent({ connections: 64 });

before(async () => {
  cp.listener = await startFakeControlPlane();
  upA = await startUpstream();
  upB = await startUpstream();
  const config = compileConfig(dataPlaneSchema, {
    port: 0,
    rpcPort: 0,
    controlPlaneUrl: `http://127.0.0.1:${cp.listener.port}`,
    token: TOKEN,
    metricsIntervalMs: 50,
    maxQueueLength: 3,
    maxBodyBytes: 1024,
    logLevel: 'silent',
  });
  dp = await DataPlane.create(config, { log: silentLogger() });
  rpc = createRpcClient(DataPlaneService, { baseUrl: `http://${dp.rpcAddress}`, token: TOKEN });
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await dp.stop(500);
  await agent.close();
  await cp.listener?.close(0);
  upA.server.closeAllConnections();
  upB.server.closeAllConnections();
  await new Promise((r) => upA.server.close(r));
  await new Promise((r) => upB.server.close(r));
});

function specOf(name: string, opts: { containerConcurrency?: number; timeoutMs?: number; revision?: bigint; loadBalancing?: string } = {}) {
  return create(FunctionSpecSchema, {
    name,
    runtime: 'process',
    command: ['node', 'fn.js'],
    scaling: { containerConcurrency: opts.containerConcurrency ?? 1 },
    timeoutMs: opts.timeoutMs ?? 5000,
    revision: opts.revision ?? 1n,
    loadBalancing: opts.loadBalancing ?? '',
  });
}

async function addFunction(
  name: string,
  opts: { containerConcurrency?: number; timeoutMs?: number; revision?: bigint; loadBalancing?: string; change?: [bigint, bigint] } = {},
  client: Client<typeof DataPlaneService> = rpc,
): Promise<void> {
  const change = opts.change ? { epoch: opts.change[0], previousEpoch: opts.change[1] } : undefined;
  await client.addFunction({ function: specOf(name, opts), change });
}

/** Adds one endpoint; `change` is [epoch, previous epoch] (unversioned without it). */
async function addEndpoint(
  fn: string,
  sandboxId: string,
  address: string,
  client: Client<typeof DataPlaneService> = rpc,
  change?: [bigint, bigint],
): Promise<void> {
  await client.addEndpoints({
    function: fn,
    endpoints: [{ sandboxId, function: fn, address, workerId: 'w1' }],
    change: change ? { epoch: change[0], previousEpoch: change[1] } : undefined,
  });
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => Record<string, unknown>;
}

async function invoke(
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Readable; signal?: AbortSignal } = {},
): Promise<Reply> {
  const res = await request(`http://${dp.proxyAddress}${path}`, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: opts.headers,
    body: opts.body,
    dispatcher: agent,
    signal: opts.signal,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

// --- tests -------------------------------------------------------------------

test('registers with the control plane, advertising both addresses; healthy once the full state arrived', async () => {
  for (let i = 0; i < 200 && !dp.registered; i++) await sleep(10);
  const reg = cp.registrations[0];
  assert.ok(reg, 'a RegisterDataPlane call arrived');
  assert.equal(reg.dataPlaneId, dp.id);
  assert.equal(reg.address, dp.rpcAddress);
  assert.equal(reg.proxyAddress, dp.proxyAddress);
  assert.equal(dp.state, 'RUNNING');
  assert.equal(dp.registered, true);
  // Not healthy until the control plane's full state arrives, as it does after a registration.
  assert.equal((await invoke('/health')).status, 503);
  await rpc.syncState({ functions: [], complete: true, epoch: 1n });
  assert.equal((await invoke('/health')).status, 200);
  assert.equal(dp.synced, true);
});

test('a /fn/<name>/ prefix routes and is stripped; method, query, headers and body pass through', async () => {
  await addFunction('echo');
  await addEndpoint('echo', 'sb-echo-1', upA.address);
  const r = await invoke('/fn/echo/echo/x?a=1&b=2', {
    method: 'POST',
    headers: { 'x-custom': 'hello', 'content-type': 'text/plain', te: 'trailers', 'proxy-authorization': 'secret' },
    body: 'the body',
  });
  assert.equal(r.status, 200);
  const seen = r.json() as { method: string; url: string; headers: Record<string, string>; body: string };
  assert.equal(seen.method, 'POST');
  assert.equal(seen.url, '/echo/x?a=1&b=2');
  assert.equal(seen.body, 'the body');
  assert.equal(seen.headers['x-custom'], 'hello');
  assert.equal(seen.headers['content-type'], 'text/plain');
  assert.equal(seen.headers['te'], undefined, 'hop-by-hop header not forwarded');
  assert.equal(seen.headers['proxy-authorization'], undefined);
  assert.equal(seen.headers.host, upA.address, 'undici sets Host for the sandbox');
  assert.equal(r.headers['x-echo'], 'yes', 'response headers pass back');
  assert.equal(r.headers['x-baton-sandbox'], 'sb-echo-1');
  assert.equal(r.headers['x-baton-queue-ms'], '0');

  const bare = await invoke('/fn/echo');
  assert.equal((bare.json() as { url: string }).url, '/');
  const q = await invoke('/fn/echo?z=9');
  assert.equal((q.json() as { url: string }).url, '/?z=9');
});

test('the first Host label routes when there is no /fn/ prefix', async () => {
  const r = await invoke('/some/path?q=1', { headers: { host: 'echo.functions.example.com' } });
  assert.equal(r.status, 200);
  assert.equal((r.json() as { url: string }).url, '/some/path?q=1');
  const withPort = await invoke('/p', { headers: { host: 'echo:8080' } });
  assert.equal(withPort.status, 200);
});

test('unknown functions get 404 FUNCTION_NOT_FOUND; GET /health answers 200', async () => {
  const a = await invoke('/fn/nope/x');
  assert.equal(a.status, 404);
  assert.equal(a.json().code, 'FUNCTION_NOT_FOUND');
  assert.match(String(a.json().message), /nope/);
  const b = await invoke('/x', { headers: { host: 'nope.example.com' } });
  assert.equal(b.status, 404);
  assert.equal(b.json().code, 'FUNCTION_NOT_FOUND');
  const h = await invoke('/health');
  assert.equal(h.status, 200);
  assert.deepEqual(h.json(), { status: 'ok' });
});

test('responses stream: the first chunk arrives before the sandbox finishes', async () => {
  const started = performance.now();
  const res = await request(`http://${dp.proxyAddress}/fn/echo/stream?n=4&gapMs=60`, { dispatcher: agent });
  let firstAt = 0;
  let text = '';
  for await (const chunk of res.body) {
    if (firstAt === 0) firstAt = performance.now() - started;
    text += String(chunk);
  }
  const total = performance.now() - started;
  assert.equal(text, 'chunk 0\nchunk 1\nchunk 2\nchunk 3\n');
  assert.ok(total >= 170, `stream took ${total} ms`);
  assert.ok(firstAt < total - 120, `first chunk at ${firstAt} ms of ${total} ms`);
});

test('chunked request bodies stream to the sandbox; over the limit they get 413', async () => {
  const ok = await invoke('/fn/echo/echo', { method: 'POST', body: Readable.from(['ab', 'cd', 'ef']) });
  assert.equal(ok.status, 200);
  assert.equal((ok.json() as { body: string }).body, 'abcdef');
  const big = await invoke('/fn/echo/echo', { method: 'POST', body: Readable.from([Buffer.alloc(600), Buffer.alloc(600)]) });
  assert.equal(big.status, 413);
  assert.equal(big.json().code, 'BODY_TOO_LARGE');
});

test('a Content-Length over maxBodyBytes gets 413 at once', async () => {
  const r = await invoke('/fn/echo/echo', { method: 'POST', body: 'x'.repeat(2000) });
  assert.equal(r.status, 413);
  assert.equal(r.json().code, 'BODY_TOO_LARGE');
  // The data plane keeps serving on new connections.
  assert.equal((await invoke('/fn/echo/echo')).status, 200);
});

test('h2c clients work, by path prefix and by :authority', async () => {
  const session = http2.connect(`http://${dp.proxyAddress}`);
  try {
    const get = (headers: http2.OutgoingHttpHeaders, body?: string): Promise<{ status: number; text: string; sandbox: unknown }> =>
      new Promise((resolve, reject) => {
        const s = session.request(headers);
        let text = '';
        let status = 0;
        let sandbox: unknown;
        s.on('response', (h) => {
          status = Number(h[':status']);
          sandbox = h['x-baton-sandbox'];
        });
        s.on('data', (c: Buffer) => (text += c.toString()));
        s.on('end', () => resolve({ status, text, sandbox }));
        s.on('error', reject);
        s.end(body);
      });
    const a = await get({ ':path': '/fn/echo/echo?h2=1', ':method': 'POST', 'x-h2': 'yes' }, 'h2 body');
    assert.equal(a.status, 200);
    const seen = JSON.parse(a.text) as { url: string; body: string; headers: Record<string, string> };
    assert.equal(seen.url, '/echo?h2=1');
    assert.equal(seen.body, 'h2 body');
    assert.equal(seen.headers['x-h2'], 'yes');
    assert.equal(a.sandbox, 'sb-echo-1');
    const b = await get({ ':path': '/by-authority', ':authority': 'echo.example.com' });
    assert.equal(b.status, 200);
    assert.equal((JSON.parse(b.text) as { url: string }).url, '/by-authority');
    const c = await get({ ':path': '/fn/missing/' });
    assert.equal(c.status, 404);
  } finally {
    session.close();
  }
});

test('AddEndpoints is idempotent by sandbox id, and requests round-robin over endpoints', async () => {
  await addFunction('rr', { containerConcurrency: 0, loadBalancing: 'round-robin' });
  await addEndpoint('rr', 'sb-rr-a', upA.address);
  await addEndpoint('rr', 'sb-rr-a', upA.address);
  await addEndpoint('rr', 'sb-rr-b', upB.address);
  await addFunction('rr', { containerConcurrency: 0, loadBalancing: 'round-robin' }); // the re-sync after a registration
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) seen.push(String((await invoke('/fn/rr/')).headers['x-baton-sandbox']));
  assert.deepEqual(seen, ['sb-rr-a', 'sb-rr-b', 'sb-rr-a', 'sb-rr-b', 'sb-rr-a', 'sb-rr-b']);
});

test('a function uses its own load-balancing policy, and a new revision can switch it', async () => {
  // The data plane default is knative: with containerConcurrency 1 it packs the first free endpoint.
  await addFunction('lb', { containerConcurrency: 1 });
  await addEndpoint('lb', 'sb-lb-a', upA.address);
  await addEndpoint('lb', 'sb-lb-b', upB.address);
  const sequential = async (): Promise<string[]> => {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push(String((await invoke('/fn/lb/')).headers['x-baton-sandbox']));
    return seen;
  };
  assert.deepEqual(await sequential(), ['sb-lb-a', 'sb-lb-a', 'sb-lb-a', 'sb-lb-a']);
  await addFunction('lb', { containerConcurrency: 1, loadBalancing: 'round-robin', revision: 2n });
  assert.deepEqual(await sequential(), ['sb-lb-a', 'sb-lb-b', 'sb-lb-a', 'sb-lb-b']);
  await addFunction('lb', { containerConcurrency: 1, revision: 3n });
  assert.deepEqual(await sequential(), ['sb-lb-a', 'sb-lb-a', 'sb-lb-a', 'sb-lb-a'], 'back to the default');
});

test('a request queued with no sandbox is reported urgently and released when AddEndpoints arrives', async () => {
  await addFunction('cold');
  const queuedAt = performance.now();
  const pending = invoke('/fn/cold/echo');
  for (let i = 0; i < 50 && !reportsFor('cold').some((r) => r.urgent); i++) await sleep(5);
  const urgent = reportsFor('cold').find((r) => r.urgent);
  assert.ok(urgent, 'an urgent report arrived');
  assert.ok(urgent.at - queuedAt < 100, `urgent report after ${urgent.at - queuedAt} ms`);
  assert.equal(urgent.load.queued, 1);
  assert.equal(urgent.load.inFlight, 0);
  assert.equal(urgent.load.averageConcurrency, 1, 'an urgent report carries the load now');
  await sleep(60);
  await addEndpoint('cold', 'sb-cold-1', upA.address);
  const r = await pending;
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-baton-sandbox'], 'sb-cold-1');
  const waited = Number(r.headers['x-baton-queue-ms']);
  assert.ok(waited >= 50, `x-baton-queue-ms = ${waited}`);

  // Once idle, a final report with zeros follows.
  const doneAt = performance.now();
  for (let i = 0; i < 60 && !reportsFor('cold', doneAt).some((x) => x.load.inFlight === 0 && x.load.queued === 0); i++) await sleep(10);
  assert.ok(
    reportsFor('cold', doneAt).some((x) => !x.urgent && x.load.inFlight === 0 && x.load.queued === 0),
    'a final zero report arrived',
  );
  // …and then reports for it stop.
  await sleep(150);
  const quietFrom = performance.now();
  await sleep(150);
  assert.equal(reportsFor('cold', quietFrom).length, 0, 'no reports for an idle function');
});

test('periodic reports carry in-flight counts while requests run', async () => {
  await addFunction('busy', { containerConcurrency: 0 });
  await addEndpoint('busy', 'sb-busy-1', upA.address);
  const since = performance.now();
  const calls = [invoke('/fn/busy/sleep?ms=250'), invoke('/fn/busy/sleep?ms=250')];
  await sleep(150);
  const during = reportsFor('busy', since).filter((r) => !r.urgent);
  assert.ok(during.some((r) => r.load.inFlight === 2), `reports: ${JSON.stringify(during.map((r) => r.load.inFlight))}`);
  await Promise.all(calls);
});

test('a request between two reports is reported as average concurrency, then a true zero follows', async () => {
  // A data plane of its own with reports 400 ms apart, so a 100 ms request
  // fits between two of them.
  const config = compileConfig(dataPlaneSchema, {
    port: 0,
    rpcPort: 0,
    controlPlaneUrl: `http://127.0.0.1:${cp.listener?.port}`,
    token: TOKEN,
    metricsIntervalMs: 400,
    logLevel: 'silent',
  });
  const other = await DataPlane.create(config, { log: silentLogger() });
  try {
    const c = createRpcClient(DataPlaneService, { baseUrl: `http://${other.rpcAddress}`, token: TOKEN });
    await addFunction('avg', { containerConcurrency: 0 }, c);
    await addEndpoint('avg', 'sb-avg-1', upA.address, c);
    const call = async (path: string): Promise<void> => {
      const r = await request(`http://${other.proxyAddress}${path}`, { dispatcher: agent });
      assert.equal(r.statusCode, 200);
      await r.body.text();
    };
    // Line up with the report clock: after a report, the next is 400 ms away.
    await call('/fn/avg/echo');
    for (let i = 0; i < 200 && reportsFor('avg').length === 0; i++) await sleep(5);
    assert.ok(reportsFor('avg').length > 0, 'the first request was reported');
    const since = performance.now();
    await call('/fn/avg/sleep?ms=100');
    const finishedAt = performance.now();
    for (let i = 0; i < 200 && !reportsFor('avg', since).some((r) => r.load.averageConcurrency === 0); i++) await sleep(10);
    const reports = reportsFor('avg', since).map((r) => ({ ...r.load, at: r.at }));
    const detail = JSON.stringify(reports.map(({ inFlight, queued, averageConcurrency }) => ({ inFlight, queued, averageConcurrency })));
    assert.ok(reports.length >= 2, `reports: ${detail}`);
    const [during, final] = reports as [(typeof reports)[number], (typeof reports)[number]];
    assert.ok(during.at > finishedAt, `the request finished before the next report: ${detail}`);
    assert.equal(during.inFlight, 0);
    assert.equal(during.queued, 0);
    // ~100 ms of one request over ~400 ms: about 0.25.
    assert.ok(during.averageConcurrency > 0.1 && during.averageConcurrency < 0.5, `averageConcurrency ${during.averageConcurrency}`);
    assert.deepEqual([final.inFlight, final.queued, final.averageConcurrency], [0, 0, 0], 'then a true zero');
    // …after which reports for it stop.
    await sleep(500);
    assert.equal(reportsFor('avg', since).length, 2, `reports: ${detail}`);
  } finally {
    await other.stop(500);
  }
});

test('a queued request times out with 504 QUEUE_TIMEOUT', async () => {
  await addFunction('never', { timeoutMs: 200 });
  const started = performance.now();
  const r = await invoke('/fn/never/');
  const took = performance.now() - started;
  assert.equal(r.status, 504);
  assert.equal(r.json().code, 'QUEUE_TIMEOUT');
  assert.ok(took >= 195 && took < 1000, `timed out after ${took} ms`);
  assert.ok(Number(r.headers['x-baton-queue-ms']) >= 195);
  assert.match(String(r.json().message), /no sandbox of never became ready within 200 ms/);
});

test('a request waiting for a token on busy sandboxes times out with a message that says so', async () => {
  await addFunction('busy', { containerConcurrency: 1, timeoutMs: 5000 });
  await addEndpoint('busy', 'sb-busy-1', upA.address);
  const holder = invoke('/fn/busy/sleep?ms=700');
  await sleep(30);
  // A shorter timeout for requests from now on, so the waiter gives up while the holder still runs.
  await addFunction('busy', { containerConcurrency: 1, timeoutMs: 300, revision: 2n });
  const r = await invoke('/fn/busy/');
  assert.equal(r.status, 504);
  assert.equal(r.json().code, 'QUEUE_TIMEOUT');
  assert.match(String(r.json().message), /all 1 sandboxes of busy stayed at their concurrency limit \(1\) for 300 ms/);
  assert.equal((await holder).status, 200, 'the request holding the token is unaffected');
});

test('a full queue answers 503 QUEUE_FULL with Retry-After; RejectQueued fails the queued ones', async () => {
  await addFunction('full', { timeoutMs: 5000 });
  const queued = [invoke('/fn/full/'), invoke('/fn/full/'), invoke('/fn/full/')];
  await sleep(50);
  const r = await invoke('/fn/full/');
  assert.equal(r.status, 503);
  assert.equal(r.json().code, 'QUEUE_FULL');
  assert.equal(r.headers['retry-after'], '1');
  await rpc.rejectQueued({ function: 'full', code: 'NO_WORKERS', message: 'no worker can take it', httpStatus: 503 });
  for (const q of await Promise.all(queued)) {
    assert.equal(q.status, 503);
    assert.deepEqual(q.json(), { code: 'NO_WORKERS', message: 'no worker can take it' });
  }
  const other = [invoke('/fn/full/')];
  await sleep(30);
  await rpc.rejectQueued({ function: 'full', code: 'SANDBOX_START_FAILED', message: 'boom', httpStatus: 502 });
  const [o] = await Promise.all(other);
  assert.equal(o?.status, 502);
  assert.equal(o?.json().code, 'SANDBOX_START_FAILED');
});

test('a client that gives up leaves the queue', async () => {
  await addFunction('abandon', { timeoutMs: 5000 });
  const ac = new AbortController();
  const p = invoke('/fn/abandon/', { signal: ac.signal }).catch((e: unknown) => e);
  await sleep(50);
  ac.abort();
  await p;
  await sleep(50);
  const metrics = await (await request(`http://${dp.rpcAddress}/metrics`, { dispatcher: agent })).body.text();
  assert.match(metrics, /baton_dataplane_queue_length\{function="abandon"[^}]*\} 0/);
  // The endpoint arriving later serves nobody twice.
  await addEndpoint('abandon', 'sb-ab-1', upA.address);
  const r = await invoke('/fn/abandon/');
  assert.equal(r.status, 200);
});

test('containerConcurrency=1: a second concurrent request waits for the first', async () => {
  await addFunction('one', { containerConcurrency: 1 });
  await addEndpoint('one', 'sb-one-1', upA.address);
  const started = performance.now();
  const [a, b] = await Promise.all([invoke('/fn/one/sleep?ms=200'), invoke('/fn/one/sleep?ms=200')]);
  const took = performance.now() - started;
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  const waits = [Number(a.headers['x-baton-queue-ms']), Number(b.headers['x-baton-queue-ms'])].sort((x, y) => x - y);
  assert.equal(waits[0], 0);
  assert.ok((waits[1] ?? 0) >= 150, `second waited ${waits[1]} ms`);
  assert.ok(took >= 390, `both took ${took} ms`);
  // Raising the concurrency applies to the tokens at once.
  await addFunction('one', { containerConcurrency: 2, revision: 2n });
  const s2 = performance.now();
  await Promise.all([invoke('/fn/one/sleep?ms=200'), invoke('/fn/one/sleep?ms=200')]);
  assert.ok(performance.now() - s2 < 380, 'two ran side by side');
});

test('a sandbox that dies mid-request gives 502 SANDBOX_CRASHED, then 502 SANDBOX_UNREACHABLE', async () => {
  const { child, address } = await spawnEchoServer();
  children.push(child);
  await addFunction('crashy', { containerConcurrency: 0 });
  await addEndpoint('crashy', 'sb-crashy-1', address);
  const ok = await invoke('/fn/crashy/echo', { method: 'POST', body: 'real process' });
  assert.equal(ok.status, 200);
  assert.equal((ok.json() as { body: string }).body, 'real process');
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const crashed = await invoke('/fn/crashy/crash');
  assert.equal(crashed.status, 502);
  assert.equal(crashed.json().code, 'SANDBOX_CRASHED');
  await exited;
  const gone = await invoke('/fn/crashy/echo', { method: 'POST', body: 'anyone?' });
  assert.equal(gone.status, 502);
  assert.equal(gone.json().code, 'SANDBOX_UNREACHABLE');
});

test('a sandbox slower than the function timeout gives 504 REQUEST_TIMEOUT', async () => {
  await addFunction('slow', { containerConcurrency: 0, timeoutMs: 150 });
  await addEndpoint('slow', 'sb-slow-1', upA.address);
  const r = await invoke('/fn/slow/sleep?ms=1000');
  assert.equal(r.status, 504);
  assert.equal(r.json().code, 'REQUEST_TIMEOUT');
});

test('RemoveEndpoints with drain waits for in-flight requests, which still succeed', async () => {
  await addFunction('drain', { containerConcurrency: 0 });
  await addEndpoint('drain', 'sb-drain-1', upA.address);
  const inflight = invoke('/fn/drain/sleep?ms=300');
  await sleep(50);
  const started = performance.now();
  const res = await rpc.removeEndpoints({ function: 'drain', sandboxIds: ['sb-drain-1'], drain: true, drainTimeoutMs: 5000 });
  const took = performance.now() - started;
  assert.equal(res.abandonedInFlight, 0);
  assert.ok(took >= 200, `drain returned after ${took} ms`);
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.text, 'slept 300');
  // Nothing routes to it any more: a new request queues (and times out here).
  await addFunction('drain', { containerConcurrency: 0, timeoutMs: 100, revision: 2n });
  assert.equal((await invoke('/fn/drain/')).json().code, 'QUEUE_TIMEOUT');

  // A drain that times out reports what it abandoned.
  await addEndpoint('drain', 'sb-drain-2', upB.address);
  await addFunction('drain', { containerConcurrency: 0, timeoutMs: 5000, revision: 3n });
  const slow = invoke('/fn/drain/sleep?ms=400');
  await sleep(50);
  const res2 = await rpc.removeEndpoints({ function: 'drain', sandboxIds: ['sb-drain-2', 'unknown'], drain: true, drainTimeoutMs: 50 });
  assert.equal(res2.abandonedInFlight, 1);
  assert.equal((await slow).status, 200);
});

test('RemoveFunction: queued requests get 404, in-flight ones finish', async () => {
  await addFunction('gone', { containerConcurrency: 1 });
  await addEndpoint('gone', 'sb-gone-1', upA.address);
  const first = invoke('/fn/gone/sleep?ms=200');
  await sleep(30);
  const second = invoke('/fn/gone/');
  await sleep(30);
  await rpc.removeFunction({ name: 'gone' });
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 404);
  assert.equal(b.json().code, 'FUNCTION_NOT_FOUND');
  assert.equal((await invoke('/fn/gone/')).status, 404);
});

test('AddEndpoints for an unknown function is rejected with FUNCTION_NOT_FOUND', async () => {
  await assert.rejects(
    rpc.addEndpoints({ function: 'nobody', endpoints: [{ sandboxId: 's', address: upA.address }] }),
    (err: Error) => /nobody/.test(err.message),
  );
});

test('garbage bytes on the proxy and RPC ports do not stop the data plane', async () => {
  const garbage = [
    Buffer.from('\x00\x01\x02 not http at all\r\n\r\n'),
    Buffer.from('GET / HTTP/1.1\r\nHost: echo\r\nContent-Length: nope\r\n\r\n'),
    Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff'),
    Buffer.from('PRI * HTTP/2.0\r\n\r\nXX'),
  ];
  for (const port of [dp.proxyPort, dp.rpcPort]) {
    for (const g of garbage) {
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.end(g));
        s.on('data', () => undefined);
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 300).unref();
      });
    }
  }
  assert.equal((await invoke('/fn/echo/echo')).status, 200);
  await addFunction('after-garbage');
  const health = await request(`http://${dp.rpcAddress}/health`, { dispatcher: agent });
  assert.equal(health.statusCode, 200);
  await health.body.text();
});

test('/metrics on the RPC port counts requests by function and status class', async () => {
  const text = await (await request(`http://${dp.rpcAddress}/metrics`, { dispatcher: agent })).body.text();
  assert.match(text, /baton_dataplane_requests_total\{function="echo",status_class="2xx"[^}]*\} \d+/);
  assert.match(text, /baton_dataplane_requests_total\{function="echo",status_class="4xx"[^}]*\} \d+/);
  assert.match(text, /baton_dataplane_cold_start_wait_seconds_count\{[^}]*function="cold"[^}]*\} 1/);
  assert.match(text, /baton_dataplane_unrouted_requests_total\{status_class="4xx"[^}]*\} \d+/);
});

test('stop(): queued requests get 503, in-flight ones finish, state ends STOPPED', async () => {
  const config = compileConfig(dataPlaneSchema, {
    port: 0,
    rpcPort: 0,
    controlPlaneUrl: 'http://127.0.0.1:1', // nobody: registration retries quietly
    logLevel: 'silent',
  });
  const started = performance.now();
  const other = await DataPlane.create(config, { log: silentLogger() });
  assert.ok(performance.now() - started < 1000, 'create() does not wait for the control plane');
  assert.equal(other.registered, false);
  const c = createRpcClient(DataPlaneService, { baseUrl: `http://${other.rpcAddress}` });
  await c.addFunction({ function: create(FunctionSpecSchema, { name: 'f', scaling: { containerConcurrency: 1 }, timeoutMs: 5000, revision: 1n }) });
  await c.addEndpoints({ function: 'f', endpoints: [{ sandboxId: 'sb-f', address: upA.address }] });
  const call = (path: string) =>
    request(`http://${other.proxyAddress}${path}`, { dispatcher: agent }).then(async (r) => ({ status: r.statusCode, text: await r.body.text() }));
  const inflight = call('/fn/f/sleep?ms=200');
  await sleep(30);
  const queued = call('/fn/f/');
  await sleep(30);
  const stopped = other.stop(2000);
  assert.equal(other.state, 'DRAINING');
  const q = await queued;
  assert.equal(q.status, 503);
  assert.equal((JSON.parse(q.text) as { code: string }).code, 'UNAVAILABLE');
  const r = await inflight;
  assert.equal(r.status, 200);
  await stopped;
  assert.equal(other.state, 'STOPPED');
});

// --- epochs ------------------------------------------------------------------

test('an add that arrives after the removal of the same endpoint does not resurrect it; no gap is reported', async () => {
  const gapsBefore = cp.gaps.length;
  await addFunction('ooo', { containerConcurrency: 0, change: [100n, 0n] });
  // Epoch 101 adds sb-ooo-x and 102 removes it, but the removal arrives first.
  await rpc.removeEndpoints({ function: 'ooo', sandboxIds: ['sb-ooo-x'], drain: false, change: { epoch: 102n, previousEpoch: 101n } });
  await addEndpoint('ooo', 'sb-ooo-x', upA.address, rpc, [101n, 100n]);
  await addEndpoint('ooo', 'sb-ooo-y', upB.address, rpc, [103n, 102n]);
  // A delta older than what the function holds is ignored.
  await addEndpoint('ooo', 'sb-ooo-old', upA.address, rpc, [99n, 0n]);
  const hitsA = upA.hits;
  for (let i = 0; i < 6; i++) assert.equal((await invoke('/fn/ooo/')).status, 200);
  assert.equal(upA.hits, hitsA, 'nothing is routed to the removed endpoint');
  await sleep(1400); // past the gap grace period
  assert.equal(cp.gaps.length, gapsBefore, 'the chain is complete: no gap report');
});

test('a change that never arrives is reported as a gap and the function is re-synced from its snapshot', async () => {
  cp.gapAnswer = (functions) =>
    create(StateSnapshotSchema, {
      functions: functions.map((name) => ({
        name,
        function: specOf(name, { containerConcurrency: 0 }),
        // Epoch 202 (lost) added sb-g2; 204 removed sb-g1.
        endpoints: [{ sandboxId: 'sb-g2', function: name, address: upB.address, workerId: 'w1' }],
        epoch: 204n,
      })),
      epoch: 204n,
    });
  await addFunction('gappy', { containerConcurrency: 0, change: [200n, 0n] });
  await addEndpoint('gappy', 'sb-g1', upA.address, rpc, [201n, 200n]);
  await addEndpoint('gappy', 'sb-g3', upB.address, rpc, [203n, 202n]); // 202 is never delivered
  await addEndpoint('gappy', 'sb-g4', upB.address, rpc, [205n, 204n]); // newer than the snapshot: kept
  for (let i = 0; i < 100 && !cp.gaps.some((g) => g.includes('gappy')); i++) await sleep(50);
  assert.ok(cp.gaps.some((g) => g.includes('gappy')), 'the gap was reported');
  await sleep(100);
  // 204 (in the snapshot) removed sb-g1 and sb-g3; a late copy of 201 does not bring sb-g1 back.
  await addEndpoint('gappy', 'sb-g1', upA.address, rpc, [201n, 200n]);
  const hitsA = upA.hits;
  for (let i = 0; i < 6; i++) assert.equal((await invoke('/fn/gappy/')).status, 200);
  assert.equal(upA.hits, hitsA, 'sb-g1 is gone');
  const reported = cp.gaps.filter((g) => g.includes('gappy')).length;
  await sleep(1400);
  assert.equal(cp.gaps.filter((g) => g.includes('gappy')).length, reported, 'the snapshot closed the gap');
});

test('a delta for a function the data plane does not hold is reported as a gap', async () => {
  cp.gapAnswer = (functions) =>
    create(StateSnapshotSchema, {
      functions: functions.map((name) => ({
        name,
        function: specOf(name, { containerConcurrency: 0 }),
        endpoints: [{ sandboxId: 'sb-m1', function: name, address: upB.address, workerId: 'w1' }],
        epoch: 301n,
      })),
      epoch: 301n,
    });
  await assert.rejects(addEndpoint('missed', 'sb-m1', upB.address, rpc, [301n, 300n]), /no function named/);
  for (let i = 0; i < 40 && !cp.gaps.some((g) => g.includes('missed')); i++) await sleep(50);
  assert.ok(cp.gaps.some((g) => g.includes('missed')));
  for (let i = 0; i < 40 && (await invoke('/fn/missed/', { headers: {} })).status !== 200; i++) await sleep(50);
  assert.equal((await invoke('/fn/missed/')).status, 200);
});

test('a function registered again while the data plane missed its removal replaces the old one', async () => {
  await addFunction('again', { containerConcurrency: 0, revision: 3n, change: [500n, 0n] });
  await addEndpoint('again', 'sb-again-old', upA.address, rpc, [501n, 500n]);
  // Its RemoveFunction (502) was lost; the new registration starts a new chain, with revisions from 1.
  await addFunction('again', { containerConcurrency: 0, revision: 1n, timeoutMs: 1234, change: [600n, 0n] });
  await addEndpoint('again', 'sb-again-new', upB.address, rpc, [601n, 600n]);
  const hitsA = upA.hits;
  for (let i = 0; i < 4; i++) assert.equal((await invoke('/fn/again/')).status, 200);
  assert.equal(upA.hits, hitsA, 'the old endpoint is gone');
});

test('a complete snapshot removes the functions it does not name, unless changed after it', async () => {
  await addFunction('stale-fn', { change: [400n, 0n] });
  await addFunction('newer-fn', { change: [410n, 0n] });
  await rpc.syncState({ functions: [], complete: true, epoch: 405n });
  assert.equal((await invoke('/fn/stale-fn/')).status, 404);
  // A late add from before the snapshot does not bring it back.
  await addFunction('stale-fn', { change: [401n, 400n] });
  assert.equal((await invoke('/fn/stale-fn/')).status, 404);
  await addEndpoint('newer-fn', 'sb-n1', upB.address, rpc, [411n, 410n]);
  assert.equal((await invoke('/fn/newer-fn/')).status, 200);
});
