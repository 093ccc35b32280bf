// The HTTP/1.1 fast path on real sockets: framing of every response kind,
// pipelining, keep-alive reuse, hand-off to node:http, large bodies both
// ways, client aborts and time-outs. A real DataPlane, real upstream
// servers (node:http and raw TCP ones that misbehave), raw and undici clients.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { after, before, test } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { create } from '@bufbuild/protobuf';
import type { Client } from '@connectrpc/connect';
import { Agent, request } from 'undici';
import { FunctionSpecSchema } from '../gen/baton/v1/common_pb.js';
import { DataPlaneService } from '../gen/baton/v1/dataplane_pb.js';
import { compileConfig, dataPlaneSchema } from '../shared/config.js';
import { silentLogger } from '../shared/logging.js';
import { createRpcClient } from '../shared/rpc.js';
import { DataPlane } from './index.js';

let dp: DataPlane;
let rpc: Client<typeof DataPlaneService>;
const servers: net.Server[] = [];
const agent = new Agent({ connections: 16 });
let upstreamConnections = 0;
/** "METHOD url" of every request the node:http sandbox received. */
const sandboxSaw: string[] = [];

async function listen(server: net.Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/** A node:http sandbox with the routes the tests use. */
function sandbox(): http.Server {
  const server = http.createServer((req, res) => {
    sandboxSaw.push(`${req.method} ${req.url}`);
    const url = new URL(req.url ?? '/', 'http://x');
    const q = (k: string, d: number): number => Number(url.searchParams.get(k) ?? d);
    switch (url.pathname) {
      case '/big': {
        const body = Buffer.alloc(q('bytes', 1024), 'abcdefghij');
        res.setHeader('content-length', body.length);
        res.setHeader('x-sha', createHash('sha256').update(body).digest('hex'));
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      case '/chunks': {
        const n = q('n', 100);
        const size = q('size', 10_000);
        for (let i = 0; i < n; i++) res.write(Buffer.alloc(size, i % 256));
        res.end();
        return;
      }
      case '/stream': {
        let i = 0;
        const timer = setInterval(() => {
          if (!res.write(`tick ${i++}\n`) && i > 1000) clearInterval(timer);
        }, q('gapMs', 10));
        res.on('close', () => clearInterval(timer));
        return;
      }
      case '/sleep':
        setTimeout(() => res.end('slept'), q('ms', 100));
        return;
      case '/nocontent':
        res.writeHead(204).end();
        return;
      default: {
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          length += c.length;
        });
        req.on('end', () => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ method: req.method, url: req.url, length, sha: hash.digest('hex'), headers: req.headers, httpVersion: req.httpVersion }));
        });
      }
    }
  });
  server.on('connection', () => upstreamConnections++);
  server.keepAliveTimeout = 65_000;
  return server;
}

/** A raw TCP sandbox that answers each request head with `answer`, then maybe closes. */
function rawSandbox(answer: string, close: boolean): net.Server {
  return net.createServer((socket) => {
    let seen = '';
    socket.on('data', (c: Buffer) => {
      seen += c.toString('latin1');
      while (seen.includes('\r\n\r\n')) {
        seen = seen.slice(seen.indexOf('\r\n\r\n') + 4);
        if (close) socket.end(answer);
        else socket.write(answer);
      }
    });
    socket.on('error', () => undefined);
  });
}

async function addFunction(name: string, address: string, opts: { containerConcurrency?: number; timeoutMs?: number } = {}): Promise<void> {
  await rpc.addFunction({
    function: create(FunctionSpecSchema, {
      name,
      scaling: { containerConcurrency: opts.containerConcurrency ?? 0 },
      timeoutMs: opts.timeoutMs ?? 5000,
      revision: 1n,
    }),
  });
  await rpc.addEndpoints({ function: name, endpoints: [{ sandboxId: `sb-${name}`, address }] });
}

/** Writes raw bytes on a new connection and collects everything until the server closes it. */
function rawRoundTrip(bytes: string | Buffer, opts: { halfClose?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(dp.proxyPort, '127.0.0.1', () => {
      if (opts.halfClose) s.end(bytes);
      else s.write(bytes);
    });
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString('latin1')));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 3000).unref();
  });
}

/**
 * Writes `parts` on one connection, `gapMs` apart (the client keeps its side
 * open), and returns everything read until `gapMs` after the last part.
 */
async function rawSession(parts: string[], gapMs = 100, port = dp.proxyPort): Promise<string> {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let out = '';
  s.on('data', (c: Buffer) => (out += c.toString('latin1')));
  s.on('error', () => undefined);
  await new Promise((resolve) => s.on('connect', resolve));
  for (const p of parts) {
    s.write(p);
    await sleep(gapMs);
  }
  await sleep(gapMs);
  s.destroy();
  return out;
}

async function get(path: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}) {
  const res = await request(`http://${dp.proxyAddress}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: init.headers,
    body: init.body,
    dispatcher: agent,
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, text: body.toString() };
}

before(async () => {
  dp = await DataPlane.create(
    compileConfig(dataPlaneSchema, { port: 0, rpcPort: 0, controlPlaneUrl: 'http://127.0.0.1:1', logLevel: 'silent' }),
    { log: silentLogger() },
  );
  rpc = createRpcClient(DataPlaneService, { baseUrl: `http://${dp.rpcAddress}` });
  const up = await listen(sandbox());
  await addFunction('f', up);
  await addFunction('one', up, { containerConcurrency: 1 });
  await addFunction('slow', up, { timeoutMs: 300 });
  await addFunction('http10', await listen(rawSandbox('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, closed world', true)));
  await addFunction('garbage', await listen(rawSandbox('this is not http\r\n\r\n', false)));
  await addFunction('bare-lf', await listen(rawSandbox('HTTP/1.1 200 OK\r\nX: a\nY: b\r\nContent-Length: 0\r\n\r\n', false)));
  await addFunction('smuggle', await listen(rawSandbox('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', false)));
  await addFunction('early', await listen(rawSandbox('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', false)));
});

after(async () => {
  await dp.stop(500);
  await agent.close();
  for (const s of servers) {
    (s as http.Server).closeAllConnections?.();
    s.close();
  }
});

test('pipelined requests are answered in order, and Connection: close closes after the last', async () => {
  const out = await rawRoundTrip(
    'GET /fn/f/one HTTP/1.1\r\nHost: x\r\n\r\nPOST /fn/f/two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /fn/f/three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  );
  const urls = [...out.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(urls, ['/one', '/two', '/three']);
  assert.equal(out.match(/HTTP\/1\.1 200 /g)?.length, 3);
  assert.match(out, /"length":3/);
  assert.match(out, /connection: close\r\n/i);
});

test('a client that half-closes after its request still gets the response', async () => {
  const out = await rawRoundTrip('GET /fn/f/half HTTP/1.1\r\nHost: x\r\n\r\n', { halfClose: true });
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.match(out, /"url":"\/half"/);
});

test('keep-alive connections to the sandbox are reused', async () => {
  await get('/fn/f/warm');
  const before = upstreamConnections;
  for (let i = 0; i < 20; i++) assert.equal((await get(`/fn/f/seq/${i}`)).status, 200);
  assert.ok(upstreamConnections - before <= 1, `${upstreamConnections - before} new connections for 20 sequential requests`);
});

test('large bodies pass intact both ways', async () => {
  const big = await get('/fn/f/big?bytes=3000000');
  assert.equal(big.status, 200);
  assert.equal(big.body.length, 3_000_000);
  assert.equal(createHash('sha256').update(big.body).digest('hex'), big.headers['x-sha']);
  const chunked = await get('/fn/f/chunks?n=200&size=10000');
  assert.equal(chunked.body.length, 2_000_000);
  assert.equal(chunked.headers['transfer-encoding'], 'chunked');
  const upload = Buffer.alloc(1_500_000, 'xyz');
  const echoed = await get('/fn/f/upload', { method: 'POST', body: upload });
  const seen = JSON.parse(echoed.text) as { length: number; sha: string };
  assert.equal(seen.length, upload.length);
  assert.equal(seen.sha, createHash('sha256').update(upload).digest('hex'));
});

test('HEAD and 204 responses carry no body and keep the connection usable', async () => {
  const head = await get('/fn/f/big?bytes=500', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '500');
  assert.equal(head.body.length, 0);
  const none = await get('/fn/f/nocontent');
  assert.equal(none.status, 204);
  const out = await rawRoundTrip('HEAD /fn/f/big?bytes=7 HTTP/1.1\r\nHost: x\r\n\r\nGET /fn/f/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 200 [^]*content-length: 7\r\n[^]*\r\n\r\nHTTP\/1\.1 200 /i);
  assert.match(out, /"url":"\/after"/);
});

test('a body delimited by the sandbox closing is re-chunked; the client connection survives', async () => {
  const out = await rawRoundTrip('GET /fn/http10/ HTTP/1.1\r\nHost: x\r\n\r\nGET /fn/http10/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(out.match(/HTTP\/1\.1 200 OK\r\n/g)?.length, 2);
  assert.match(out, /transfer-encoding: chunked\r\n/i);
  const r = await get('/fn/http10/');
  assert.equal(r.text, 'hello, closed world');
});

test('1xx informational responses are not forwarded', async () => {
  const r = await get('/fn/early/');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'ok');
});

test('invalid responses from a sandbox become 502 SANDBOX_CRASHED', async () => {
  for (const fn of ['garbage', 'bare-lf', 'smuggle']) {
    const r = await get(`/fn/${fn}/`);
    assert.equal(r.status, 502, fn);
    assert.equal((JSON.parse(r.text) as { code: string }).code, 'SANDBOX_CRASHED', fn);
  }
});

test('requests the fast path does not take are served by node:http', async () => {
  const expect = await rawRoundTrip(
    'POST /fn/f/expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 11\r\nConnection: close\r\n\r\nwith expect',
  );
  assert.match(expect, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  assert.match(expect, /"length":11/);
  const out = await rawRoundTrip('GET /fn/f/old HTTP/1.0\r\nHost: x\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.match(out, /"url":"\/old"/);
  assert.match(out, /x-baton-sandbox: sb-f/i);
  const bad = await rawRoundTrip('GET /fn/f/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n');
  assert.match(bad, /^HTTP\/1\.1 400 /);
});

test('an unknown function with a request body gets 404 and the connection closes', async () => {
  const out = await rawRoundTrip('POST /fn/nobody/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial');
  assert.match(out, /^HTTP\/1\.1 404 /);
  assert.match(out, /connection: close/i);
  assert.match(out, /FUNCTION_NOT_FOUND/);
});

test('a client that goes away mid-response frees the sandbox token at once', async () => {
  const ac = new AbortController();
  const res = await request(`http://${dp.proxyAddress}/fn/one/stream?gapMs=5`, { dispatcher: agent, signal: ac.signal });
  for await (const _chunk of res.body) {
    ac.abort();
    break;
  }
  await sleep(20);
  const started = performance.now();
  const r = await get('/fn/one/after-abort');
  assert.equal(r.status, 200);
  // The sandbox's stream never ends: only the abort can have freed the token.
  assert.ok(Number(r.headers['x-baton-queue-ms']) < 200, `waited ${String(r.headers['x-baton-queue-ms'])} ms for the token`);
  assert.ok(performance.now() - started < 500);
});

test('a sandbox slower than the function timeout gets 504 REQUEST_TIMEOUT on the fast path', async () => {
  const started = performance.now();
  const r = await get('/fn/slow/sleep?ms=3000');
  const took = performance.now() - started;
  assert.equal(r.status, 504);
  assert.equal((JSON.parse(r.text) as { code: string }).code, 'REQUEST_TIMEOUT');
  assert.ok(took >= 295 && took < 1500, `timed out after ${took} ms`);
});

test('logRequests: one line per request on both paths, none otherwise', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const logged = await DataPlane.create(
    compileConfig(dataPlaneSchema, { port: 0, rpcPort: 0, controlPlaneUrl: 'http://127.0.0.1:1', logRequests: true }),
    { log: pino({ level: 'info' }, sink) },
  );
  try {
    const c = createRpcClient(DataPlaneService, { baseUrl: `http://${logged.rpcAddress}` });
    await c.addFunction({ function: create(FunctionSpecSchema, { name: 'f', scaling: { containerConcurrency: 0 }, timeoutMs: 5000, revision: 1n }) });
    const address = `127.0.0.1:${((servers[0] as net.Server).address() as net.AddressInfo).port}`; // the node:http sandbox
    await c.addEndpoints({ function: 'f', endpoints: [{ sandboxId: 'sb-log', address }] });
    const r1 = await request(`http://${logged.proxyAddress}/fn/f/fast?x=1`, { dispatcher: agent });
    await r1.body.text();
    const r2 = await request(`http://${logged.proxyAddress}/fn/f/general`, { dispatcher: agent, method: 'POST', body: Readable.from(['chunked']) });
    await r2.body.text();
    await sleep(20);
    const requests = lines.filter((l) => l.msg === 'request');
    assert.deepEqual(
      requests.map((l) => [l.function, l.path, l.status, l.sandbox]),
      [
        ['f', '/fast?x=1', 200, 'sb-log'],
        ['f', '/general', 200, 'sb-log'],
      ],
    );
    assert.equal(typeof requests[0]?.ms, 'number');
  } finally {
    await logged.stop(200);
  }
});

const smuggled = 'POST /fn/f/SMUGGLED HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n';

test('the rest of a body the proxy answered early is never parsed as a request', async () => {
  sandboxSaw.length = 0;
  const out = await rawSession([`POST /fn/nobody/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${smuggled.length}\r\n\r\n`, smuggled]);
  assert.match(out, /^HTTP\/1\.1 404 /);
  assert.equal(out.match(/HTTP\/1\.1 /g)?.length, 1);
  assert.deepEqual(sandboxSaw, []);
});

test('a body over maxBodyBytes gets 413 and is never parsed as requests', async () => {
  const small = await DataPlane.create(
    compileConfig(dataPlaneSchema, { port: 0, rpcPort: 0, controlPlaneUrl: 'http://127.0.0.1:1', logLevel: 'silent', maxBodyBytes: 1000 }),
    { log: silentLogger() },
  );
  try {
    const c = createRpcClient(DataPlaneService, { baseUrl: `http://${small.rpcAddress}` });
    await c.addFunction({ function: create(FunctionSpecSchema, { name: 'f', scaling: { containerConcurrency: 0 }, timeoutMs: 5000, revision: 1n }) });
    const address = `127.0.0.1:${((servers[0] as net.Server).address() as net.AddressInfo).port}`; // the node:http sandbox
    await c.addEndpoints({ function: 'f', endpoints: [{ sandboxId: 'sb-small', address }] });
    sandboxSaw.length = 0;
    const body = smuggled + 'y'.repeat(1200);
    const out = await rawSession([`POST /fn/f/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, body], 100, small.proxyPort);
    assert.match(out, /^HTTP\/1\.1 413 /);
    assert.equal(out.match(/HTTP\/1\.1 /g)?.length, 1);
    assert.deepEqual(sandboxSaw, []);
  } finally {
    await small.stop(200);
  }
});

test('after a Connection: close request nothing more is read from the connection', async () => {
  sandboxSaw.length = 0;
  const out = await rawSession([
    'GET /fn/f/first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'GET /fn/f/AFTER-CLOSE HTTP/1.1\r\nHost: x\r\n\r\n',
  ]);
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.equal(out.match(/HTTP\/1\.1 /g)?.length, 1);
  assert.deepEqual(sandboxSaw, ['GET /first']);
});

test("HEAD requests get no body in the proxy's own responses, and the connection stays usable", async () => {
  const out = await rawRoundTrip(
    'HEAD /fn/nope/x HTTP/1.1\r\nHost: x\r\n\r\nHEAD /fn/garbage/ HTTP/1.1\r\nHost: x\r\n\r\nGET /fn/f/after-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  );
  const headOnly = '[^]*?content-length: [1-9]\\d*\\r\\n(?:[^\\r\\n]+\\r\\n)*\\r\\n';
  assert.match(out, new RegExp(`^HTTP/1\\.1 404 ${headOnly}HTTP/1\\.1 502 ${headOnly}HTTP/1\\.1 200 `, 'i'));
  assert.doesNotMatch(out, /FUNCTION_NOT_FOUND|SANDBOX_CRASHED/);
  assert.match(out, /"url":"\/after-head"/);
});

test('pipelined requests sent with a half-close are all answered', async () => {
  const out = await rawRoundTrip('GET /fn/f/a HTTP/1.1\r\nHost: x\r\n\r\nGET /fn/f/b HTTP/1.1\r\nHost: x\r\n\r\nGET /fn/f/c HTTP/1.1\r\nHost: x\r\n\r\n', {
    halfClose: true,
  });
  assert.deepEqual(
    [...out.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]),
    ['/a', '/b', '/c'],
  );
});

test('a client that does not read its responses stops being answered (backpressure)', async () => {
  const s = net.connect({ port: dp.proxyPort, host: '127.0.0.1' });
  s.on('error', () => undefined);
  await new Promise((resolve) => s.on('connect', resolve));
  s.pause(); // never read
  const batch = Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(2000));
  for (let i = 0; i < 60; i++) {
    s.write(batch);
    await sleep(5);
  }
  await sleep(200);
  const clients = (dp as unknown as { proxy: { clients: Set<{ socket: net.Socket }> } }).proxy.clients;
  const mine = [...clients].find((c) => c.socket.remotePort === s.localPort);
  assert.ok(mine !== undefined);
  const held = mine.socket.writableLength;
  s.destroy();
  assert.ok(held < 256 * 1024, `${held} bytes of responses held for a client that reads nothing`);
});

test('requests waiting for a pooled sandbox connection time out from when they arrived', async () => {
  const one = await DataPlane.create(
    compileConfig(dataPlaneSchema, { port: 0, rpcPort: 0, controlPlaneUrl: 'http://127.0.0.1:1', logLevel: 'silent', upstreamConnections: 1 }),
    { log: silentLogger() },
  );
  try {
    const c = createRpcClient(DataPlaneService, { baseUrl: `http://${one.rpcAddress}` });
    await c.addFunction({ function: create(FunctionSpecSchema, { name: 'slow', scaling: { containerConcurrency: 0 }, timeoutMs: 300, revision: 1n }) });
    const address = `127.0.0.1:${((servers[0] as net.Server).address() as net.AddressInfo).port}`; // the node:http sandbox
    await c.addEndpoints({ function: 'slow', endpoints: [{ sandboxId: 'sb-one', address }] });
    const started = performance.now();
    const results = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (i) => {
        const res = await request(`http://${one.proxyAddress}/fn/slow/sleep?ms=250&i=${i}`, { dispatcher: agent });
        const text = await res.body.text();
        return { status: res.statusCode, text, ms: performance.now() - started };
      }),
    );
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, JSON.stringify(results));
    for (const r of results) {
      assert.ok(r.ms < 800, `answered after ${r.ms} ms with a 300 ms timeout`);
      if (r.status !== 200) {
        assert.equal(r.status, 504);
        assert.equal((JSON.parse(r.text) as { code: string }).code, 'REQUEST_TIMEOUT');
      }
    }
  } finally {
    await one.stop(200);
  }
});

test('the rest of a body the sandbox answered early is never parsed as a request', async () => {
  sandboxSaw.length = 0;
  // The 'early' sandbox answers as soon as it has the head.
  const out = await rawSession([`POST /fn/early/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${smuggled.length}\r\n\r\n`, smuggled]);
  assert.match(out, /^HTTP\/1\.1 200 [^]*connection: close\r\n/i);
  assert.equal(out.match(/HTTP\/1\.1 /g)?.length, 1);
  assert.deepEqual(sandboxSaw, []);
});
