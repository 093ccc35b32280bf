// The worker daemon end to end: a real Worker, its real RPC server, real
// sandbox processes, and a recording control plane served over real RPC.
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import * as net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { SandboxState } from '../gen/baton/v1/common_pb.js';
import { WorkerService } from '../gen/baton/v1/worker_pb.js';
import { compileConfig, workerSchema, type WorkerConfig } from '../shared/config.js';
import { BatonError } from '../shared/errors.js';
import { silentLogger } from '../shared/logging.js';
import { createRpcClient, fromRpcError } from '../shared/rpc.js';
import { toFunctionSpecMessage } from '../shared/spec.js';
import { Worker } from './index.js';
import { fixture, functionSpec, liveGroupMembers, processAlive, RecordingControlPlane, sandboxProcesses, tempDir, waitFor } from './test-support.js';

const NODE = process.execPath;
/** Sandbox ids are unique per test process, so parallel runs never see each other's sandboxes. */
const id = (name: string): string => `sb-${name}-${process.pid}`;
const echoSpec = toFunctionSpecMessage(functionSpec('echo', [NODE, fixture('echo-server.js')]), 7n);

function config(over: Record<string, unknown>): WorkerConfig {
  return compileConfig(workerSchema, { host: '127.0.0.1', rpcPort: 0, stopGraceMs: 200, logLevel: 'silent', ...over });
}

function get(address: string, path: string): Promise<{ status: number; body: string }> {
  const url = new URL(`http://${address}${path}`);
  return new Promise((resolve, reject) => {
    const req = http.get({ host: url.hostname, port: url.port, path: url.pathname, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

async function rpcFailure(promise: Promise<unknown>): Promise<BatonError> {
  try {
    await promise;
  } catch (err) {
    return fromRpcError(err, 'worker');
  }
  assert.fail('the call should have failed');
}

describe('worker', () => {
  const dir = tempDir('worker');
  // Set in before(); after() copes with a before() that failed half-way.
  let cp!: RecordingControlPlane;
  let worker!: Worker;
  let client: ReturnType<typeof createRpcClient<typeof WorkerService>>;

  before(async () => {
    cp = await RecordingControlPlane.start();
    // The control plane asks for 50 ms heartbeats; the worker's own default would be 5 s.
    // Only `process`, so that what it offers does not depend on the machine (as root with runc, `oci` works too).
    worker = await Worker.create(config({ controlPlaneUrl: cp.url, dataDir: dir.path, heartbeatIntervalMs: 5000, runtimes: ['process'] }), {
      log: silentLogger(),
    });
    client = createRpcClient(WorkerService, { baseUrl: `http://${worker.address}` });
  });

  after(async () => {
    await (worker as Worker | undefined)?.stop();
    await (cp as RecordingControlPlane | undefined)?.close();
    dir.remove();
  });

  it('registers with the control plane and heartbeats at the interval it is given', async () => {
    assert.equal(worker.state, 'RUNNING');
    assert.equal(worker.address, `127.0.0.1:${worker.port}`);
    const reg = await waitFor('RegisterWorker', () => cp.registrations[0]);
    assert.equal(reg.workerId, worker.id);
    assert.equal(reg.address, worker.address);
    assert.deepEqual(reg.runtimes, ['process']);
    assert.ok((reg.capacity?.cpuMillis ?? 0) >= 1000);
    assert.ok((reg.capacity?.memoryMb ?? 0n) > 0n);
    const hb = await waitFor('a heartbeat', () => cp.heartbeats[0], 2000);
    assert.equal(hb.workerId, worker.id);
    assert.ok(hb.usage !== undefined && hb.usage.memoryMb > 0n);
    assert.equal(hb.capacity?.cpuMillis, reg.capacity?.cpuMillis);
  });

  it('creates a sandbox idempotently, serves it, and reports it when it is killed from outside', async () => {
    const [first, again] = await Promise.all([
      client.createSandbox({ sandboxId: id('echo-1'), function: echoSpec }),
      client.createSandbox({ sandboxId: id('echo-1'), function: echoSpec }),
    ]);
    const sandbox = first.sandbox;
    assert.ok(sandbox);
    assert.equal(sandbox.state, SandboxState.READY);
    assert.equal(sandbox.function, 'echo');
    assert.equal(sandbox.functionRevision, 7n);
    assert.match(sandbox.address, /^127\.0\.0\.1:\d+$/);
    assert.ok(sandbox.pid > 0 && sandbox.createdAtMs > 0n);
    assert.ok((first.latency?.totalUs ?? 0n) > 0n && (first.latency?.readinessProbeUs ?? 0n) > 0n);
    assert.equal(again.sandbox?.pid, sandbox.pid, 'a retried create returns the same sandbox');

    const hello = await get(sandbox.address, '/');
    assert.equal(hello.body, `hello from ${sandbox.pid}\n`);
    const listed = await client.listSandboxes({});
    assert.equal(listed.workerId, worker.id);
    assert.deepEqual(
      listed.sandboxes.map((s) => [s.sandboxId, s.state, s.address]),
      [[id('echo-1'), SandboxState.READY, sandbox.address]],
    );
    await waitFor('a heartbeat counting the sandbox', () => cp.heartbeats.some((h) => h.usage?.sandboxes === 1));

    process.kill(sandbox.pid, 'SIGKILL');
    const failure = await waitFor('ReportSandboxFailure', () => cp.failures.find((f) => f.sandboxId === id('echo-1')));
    assert.equal(failure.reason, 'exited');
    assert.equal(failure.workerId, worker.id);
    assert.equal(failure.function, 'echo');
    assert.equal(failure.signal, 'SIGKILL');
    assert.equal(failure.exitCode, 137);
    assert.match(failure.message, /killed by SIGKILL/);
    assert.deepEqual((await client.listSandboxes({})).sandboxes, [], 'the dead sandbox is forgotten');

    const metrics = await get(worker.address, '/metrics');
    assert.match(metrics.body, /\nbaton_worker_sandbox_exits_total\{[^}]*function="echo"[^}]*\} 1\n/);
    assert.match(metrics.body, /\nbaton_worker_sandbox_create_seconds_count\{[^}]*function="echo"[^}]*\} 1\n/);
  });

  it('deletes a sandbox, returning once its process group is gone; unknown ids succeed', async () => {
    const { sandbox } = await client.createSandbox({ sandboxId: id('echo-2'), function: echoSpec });
    assert.ok(sandbox && processAlive(sandbox.pid));
    await client.deleteSandbox({ sandboxId: id('echo-2') });
    assert.equal(processAlive(sandbox.pid), false);
    assert.deepEqual(liveGroupMembers(sandbox.pid), []);
    await client.deleteSandbox({ sandboxId: id('echo-2') });
    await client.deleteSandbox({ sandboxId: id('never-existed') });
    assert.deepEqual((await client.listSandboxes({})).sandboxes, []);
    assert.equal(cp.failures.some((f) => f.sandboxId === id('echo-2')), false, 'a deleted sandbox is not a failure');
  });

  it('a create whose caller gives up deletes the sandbox it was starting', async () => {
    const slow = toFunctionSpecMessage(functionSpec('slow', [NODE, fixture('slow-start.js')], { SLOW_START_MS: '1500' }), 1n);
    const err = await rpcFailure(client.createSandbox({ sandboxId: id('slow-1'), function: slow }, { timeoutMs: 300 }));
    assert.equal(err.code, 'PEER_UNAVAILABLE');
    await waitFor('the abandoned sandbox to be deleted', () => sandboxProcesses(id('slow-1')).length === 0, 5000);
    await new Promise((r) => setTimeout(r, 1500)); // past the boot: nothing came back to life
    assert.deepEqual(sandboxProcesses(id('slow-1')), []);
    assert.deepEqual((await client.listSandboxes({})).sandboxes, []);
  });

  it('answers with stable error codes over RPC', async () => {
    const quitter = toFunctionSpecMessage(functionSpec('quitter', [NODE, fixture('exits-at-once.js')]), 1n);
    const failed = await rpcFailure(client.createSandbox({ sandboxId: id('quitter-1'), function: quitter }));
    assert.equal(failed.code, 'SANDBOX_START_FAILED');
    assert.match(failed.message, /exited with code 7/);
    assert.match(failed.message, /failing on purpose/);

    const oci = { ...echoSpec, runtime: 'oci' };
    const unsupported = await rpcFailure(client.createSandbox({ sandboxId: id('oci-1'), function: oci }));
    assert.equal(unsupported.code, 'UNSUPPORTED_RUNTIME');
    assert.match(unsupported.message, /"oci"/);

    const badId = await rpcFailure(client.createSandbox({ sandboxId: '../../etc/passwd', function: echoSpec }));
    assert.equal(badId.code, 'INVALID_REQUEST');
    assert.deepEqual((await client.listSandboxes({})).sandboxes, []);
  });

  it('CreateSandboxes creates each sandbox on its own and answers in request order', async () => {
    const quitter = toFunctionSpecMessage(functionSpec('quitter', [NODE, fixture('exits-at-once.js')]), 1n);
    const { results } = await client.createSandboxes({
      creates: [
        { sandboxId: id('batch-a'), function: echoSpec },
        { sandboxId: id('batch-q'), function: quitter },
        { sandboxId: '../bad', function: echoSpec },
        { sandboxId: id('batch-b'), function: echoSpec },
      ],
    });
    assert.equal(results.length, 4);
    const [a, q, bad, b] = results;
    assert.equal(a?.created?.sandbox?.sandboxId, id('batch-a'));
    assert.equal(q?.created, undefined);
    assert.equal(q?.errorCode, 'SANDBOX_START_FAILED', 'a failed create fails alone');
    assert.match(q?.errorMessage ?? '', /exited with code 7/);
    assert.equal(bad?.errorCode, 'INVALID_REQUEST');
    assert.equal(b?.created?.sandbox?.sandboxId, id('batch-b'));
    for (const r of [a, b]) assert.equal((await get(r?.created?.sandbox?.address ?? '', '/')).status, 200);
    const listed = (await client.listSandboxes({})).sandboxes.map((s) => s.sandboxId).sort();
    assert.deepEqual(listed, [id('batch-a'), id('batch-b')].sort());
    await client.deleteSandbox({ sandboxId: id('batch-a') });
    await client.deleteSandbox({ sandboxId: id('batch-b') });
  });

  it('registers again when a heartbeat answers known=false', async () => {
    const before = cp.registrations.length;
    cp.known = false;
    await waitFor('a second RegisterWorker', () => cp.registrations.length > before);
    cp.known = true;
    assert.equal(cp.registrations.at(-1)?.workerId, worker.id);
  });

  it('keeps serving after garbage bytes on its RPC port', async () => {
    const garbage = [
      Buffer.from('\x00\xff\x13garbage\r\n\r\n\x7f\x80'),
      Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.alloc(64, 0xee)]),
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n'),
    ];
    for (const bytes of garbage) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(worker.port, '127.0.0.1', () => socket.end(bytes));
        socket.on('data', () => undefined);
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
      });
    }
    const listed = await client.listSandboxes({});
    assert.equal(listed.workerId, worker.id);
    assert.equal(worker.state, 'RUNNING');
  });
});

describe('worker lifecycle', () => {
  // Run even when a test fails half-way: an open server would keep the test process alive.
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('stop() kills every sandbox, including one that ignores SIGTERM', async () => {
    const dir = tempDir('worker-stop');
    cleanups.push(dir.remove);
    const cp = await RecordingControlPlane.start();
    cleanups.push(() => cp.close());
    const worker = await Worker.create(config({ controlPlaneUrl: cp.url, dataDir: dir.path }), { log: silentLogger() });
    cleanups.push(() => worker.stop());
    const client = createRpcClient(WorkerService, { baseUrl: `http://${worker.address}` });
    const stubbornSpec = toFunctionSpecMessage(functionSpec('stubborn', [NODE, fixture('ignores-sigterm.js')]), 1n);
    const created = await Promise.all([
      client.createSandbox({ sandboxId: id('a'), function: echoSpec }),
      client.createSandbox({ sandboxId: id('b'), function: echoSpec }),
      client.createSandbox({ sandboxId: id('c'), function: stubbornSpec }),
    ]);
    const pids = created.map((c) => c.sandbox?.pid ?? 0);
    assert.ok(pids.every((pid) => processAlive(pid)));
    await waitFor('the stubborn grandchild', () => liveGroupMembers(pids[2] ?? 0).length >= 2);

    await worker.stop();
    assert.equal(worker.state, 'STOPPED');
    for (const pid of pids) {
      assert.equal(processAlive(pid), false, `sandbox leader ${pid} is dead`);
      assert.deepEqual(liveGroupMembers(pid), [], `group ${pid} is empty`);
    }
    for (const name of ['a', 'b', 'c']) assert.deepEqual(sandboxProcesses(id(name)), [], `nothing of sandbox ${name} is left`);
    assert.equal(cp.failures.length, 0, 'stopping is not failing');
    const refused = await new Promise<boolean>((resolve) => {
      const socket = net.connect(worker.port, '127.0.0.1', () => {
        socket.destroy();
        resolve(false);
      });
      socket.on('error', () => resolve(true));
    });
    assert.ok(refused, 'the RPC port is closed');
    await worker.stop(); // idempotent
  });

  it('starts at once when the control plane is unreachable, and stops cleanly', async () => {
    const dir = tempDir('worker-nocp');
    cleanups.push(dir.remove);
    const t0 = performance.now();
    // Port 1 on loopback: nothing listens, connections are refused.
    const worker = await Worker.create(config({ controlPlaneUrl: 'http://127.0.0.1:1', dataDir: dir.path }), { log: silentLogger() });
    cleanups.push(() => worker.stop());
    assert.ok(performance.now() - t0 < 1000, 'create does not wait for the control plane');
    assert.equal(worker.state, 'RUNNING');
    const client = createRpcClient(WorkerService, { baseUrl: `http://${worker.address}` });
    const { sandbox } = await client.createSandbox({ sandboxId: id('alone'), function: echoSpec });
    assert.equal(sandbox?.state, SandboxState.READY, 'sandboxes start without a control plane');
    await new Promise((r) => setTimeout(r, 300)); // a few registration attempts
    const t1 = performance.now();
    await worker.stop();
    assert.ok(performance.now() - t1 < 2000, 'stop does not wait on registration back-off');
    assert.equal(worker.state, 'STOPPED');
    assert.equal(processAlive(sandbox.pid), false);
  });

  it('refuses a port that is taken with CONFIG_INVALID', async () => {
    const dir = tempDir('worker-port');
    cleanups.push(dir.remove);
    const first = await Worker.create(config({ controlPlaneUrl: 'http://127.0.0.1:1', dataDir: dir.path }), { log: silentLogger() });
    cleanups.push(() => first.stop());
    await assert.rejects(
      Worker.create(config({ controlPlaneUrl: 'http://127.0.0.1:1', dataDir: dir.path, rpcPort: first.port }), { log: silentLogger() }),
      (err: unknown) => err instanceof BatonError && err.code === 'CONFIG_INVALID' && /rpcPort/.test(err.message),
    );
  });
});
