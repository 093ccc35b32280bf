import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { Registry } from 'prom-client';
import { ListSandboxesResponseSchema, WorkerService } from '../gen/baton/v1/worker_pb.js';
import { BatonError } from './errors.js';
import { silentLogger } from './logging.js';
import { createRpcClient, fromRpcError, startRpcServer, type RpcClientOptions } from './rpc.js';

// Baton's client calls a server of its own process in memory, and any other over h2c:
// the tests below run on both paths (inProcess: false forces the network).
const PATHS = [
  ['in memory', true],
  ['over h2c', false],
] as const;

function client(options: RpcClientOptions) {
  return createRpcClient(WorkerService, options);
}

/** Open TCP sockets of this process: an in-memory call opens none. */
function tcpSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

async function serve(token?: string) {
  return startRpcServer({
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    token,
    metrics: new Registry(),
    routes: (router) =>
      router.service(WorkerService, {
        listSandboxes: async () => create(ListSandboxesResponseSchema, { workerId: 'w-1' }),
        deleteSandbox: async (req) => {
          throw new BatonError('SANDBOX_NOT_FOUND', `no sandbox ${req.sandboxId}`);
        },
        createSandbox: async () => {
          throw new Error('boom');
        },
      }),
  });
}

for (const [path, inProcess] of PATHS) {
  test(`Baton's client (${path}) and a plain gRPC client both call the service, and errors keep their code`, async () => {
    const l = await serve();
    try {
      const baseUrl = `http://127.0.0.1:${l.port}`;
      const grpc = createClient(WorkerService, createGrpcTransport({ baseUrl }));
      for (const [kind, c] of [
        ['baton', client({ baseUrl, inProcess })],
        ['grpc', grpc],
      ] as const) {
        assert.equal((await c.listSandboxes({})).workerId, 'w-1', kind);
        await assert.rejects(c.deleteSandbox({ sandboxId: 'x' }), (err: unknown) => {
          const e = fromRpcError(err, 'worker');
          return e.code === 'SANDBOX_NOT_FOUND' && e.message === 'no sandbox x';
        });
        await assert.rejects(c.createSandbox({}), (err: unknown) => fromRpcError(err, 'worker').code === 'INTERNAL');
      }
    } finally {
      await l.close();
    }
  });

  test(`with a token, calls without it are UNAUTHORIZED (${path})`, async () => {
    const l = await serve('t0ken');
    try {
      const baseUrl = `http://127.0.0.1:${l.port}`;
      const anonymous = client({ baseUrl, inProcess });
      await assert.rejects(anonymous.listSandboxes({}), (err: unknown) => fromRpcError(err, 'worker').code === 'UNAUTHORIZED');
      const authed = client({ baseUrl, token: 't0ken', inProcess });
      assert.equal((await authed.listSandboxes({})).workerId, 'w-1');
    } finally {
      await l.close();
    }
  });

  test(`a call past its deadline is PEER_UNAVAILABLE and the handler's signal is aborted (${path})`, async () => {
    let aborted: Promise<void> | undefined;
    const l = await startRpcServer({
      host: '127.0.0.1',
      port: 0,
      log: silentLogger(),
      metrics: new Registry(),
      routes: (router) =>
        router.service(WorkerService, {
          // As the worker's CreateSandbox does: a caller that gives up abandons the sandbox.
          createSandbox: async (_req, ctx) => {
            aborted = new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
            await aborted;
            return {};
          },
        }),
    });
    try {
      const c = client({ baseUrl: `http://127.0.0.1:${l.port}`, timeoutMs: 200, inProcess });
      await assert.rejects(c.createSandbox({}), (err: unknown) => fromRpcError(err, 'worker').code === 'PEER_UNAVAILABLE');
      assert.ok(aborted, 'the handler ran');
      await aborted;
    } finally {
      await l.close();
    }
  });
}

test('a call to a server of this process opens no connection; over h2c it does', async () => {
  const l = await serve();
  try {
    const baseUrl = `http://127.0.0.1:${l.port}`;
    const before = tcpSockets();
    assert.equal((await client({ baseUrl }).listSandboxes({})).workerId, 'w-1');
    assert.equal(tcpSockets(), before, 'in memory: no socket');
    const wire = client({ baseUrl, inProcess: false });
    assert.equal((await wire.listSandboxes({})).workerId, 'w-1');
    assert.ok(tcpSockets() > before, 'over h2c: a connection (the check above can fail)');
    // localhost and the wildcard's loopback reach the same server in memory.
    assert.equal((await client({ baseUrl: `http://localhost:${l.port}` }).listSandboxes({})).workerId, 'w-1');
  } finally {
    await l.close();
  }
});

test('once the server closes, a client made while it was open goes to the network and is refused', async () => {
  const l = await serve();
  const c = client({ baseUrl: `http://127.0.0.1:${l.port}`, timeoutMs: 2000 });
  assert.equal((await c.listSandboxes({})).workerId, 'w-1');
  await l.close();
  await assert.rejects(c.listSandboxes({}), (err: unknown) => fromRpcError(err, 'worker').code === 'PEER_UNAVAILABLE');
});

test('an unreachable peer is PEER_UNAVAILABLE', async () => {
  const client = createRpcClient(WorkerService, { baseUrl: 'http://127.0.0.1:1', timeoutMs: 2000 });
  await assert.rejects(client.listSandboxes({}), (err: unknown) => fromRpcError(err, 'worker').code === 'PEER_UNAVAILABLE');
});
