import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { Registry } from 'prom-client';
import { ListSandboxesResponseSchema, WorkerService } from '../gen/baton/v1/worker_pb.js';
import { BatonError } from './errors.js';
import { silentLogger } from './logging.js';
import { createRpcClient, fromRpcError, startRpcServer } from './rpc.js';

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

test("Baton's client and a plain gRPC client both call the service, and errors keep their code", async () => {
  const l = await serve();
  try {
    const baseUrl = `http://127.0.0.1:${l.port}`;
    const grpc = createClient(WorkerService, createGrpcTransport({ baseUrl }));
    for (const [kind, client] of [
      ['baton', createRpcClient(WorkerService, { baseUrl })],
      ['grpc', grpc],
    ] as const) {
      assert.equal((await client.listSandboxes({})).workerId, 'w-1', kind);
      await assert.rejects(client.deleteSandbox({ sandboxId: 'x' }), (err: unknown) => {
        const e = fromRpcError(err, 'worker');
        return e.code === 'SANDBOX_NOT_FOUND' && e.message === 'no sandbox x';
      });
      await assert.rejects(client.createSandbox({}), (err: unknown) => fromRpcError(err, 'worker').code === 'INTERNAL');
    }
  } finally {
    await l.close();
  }
});

test('with a token, calls without it are UNAUTHORIZED', async () => {
  const l = await serve('t0ken');
  try {
    const baseUrl = `http://127.0.0.1:${l.port}`;
    const anonymous = createRpcClient(WorkerService, { baseUrl });
    await assert.rejects(anonymous.listSandboxes({}), (err: unknown) => fromRpcError(err, 'worker').code === 'UNAUTHORIZED');
    const authed = createRpcClient(WorkerService, { baseUrl, token: 't0ken' });
    assert.equal((await authed.listSandboxes({})).workerId, 'w-1');
  } finally {
    await l.close();
  }
});

test('an unreachable peer is PEER_UNAVAILABLE', async () => {
  const client = createRpcClient(WorkerService, { baseUrl: 'http://127.0.0.1:1', timeoutMs: 2000 });
  await assert.rejects(client.listSandboxes({}), (err: unknown) => fromRpcError(err, 'worker').code === 'PEER_UNAVAILABLE');
});
