// Three control-plane replicas (issue 5, "Replicated control plane"): they
// share a Redis store and elect a leader on etcd; HAProxy sends every caller
// (the admin CLI, the worker, the data plane) to the replica whose GET /leader
// answers 200. The leader is killed with SIGKILL under warm load: a new one is
// elected within the lease TTL, reads the registrations, takes the sandboxes
// back under their ids, no warm request fails, and registrations resume. A
// follower asked directly redirects to the leader.
//
// Needs etcd-server, redis-server and haproxy (Debian); skipped, saying which
// is missing, without them. CI installs all three.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { DataPlane } from '../../src/dataplane/index.js';
import { compileConfig, dataPlaneSchema, workerSchema } from '../../src/shared/config.js';
import { Worker } from '../../src/worker/index.js';
import { adminCall, echoSpec, freePort, REPO_ROOT, waitFor, warmLoad } from '../helpers/cluster.js';

const MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const LEASE_TTL_SEC = 2;
const have = (cmd: string, arg: string): boolean => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;
const missing = [
  ['etcd', '--version', 'etcd-server'],
  ['redis-server', '--version', 'redis-server'],
  ['haproxy', '-v', 'haproxy'],
].filter(([cmd, arg]) => !have(cmd as string, arg as string));
const skip = missing.length > 0 ? `needs ${missing.map((m) => m[2]).join(', ')} (apt-get install)` : false;


async function get(url: string): Promise<number> {
  try {
    const res = await request(url, { headersTimeout: 1000, bodyTimeout: 1000 });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0;
  }
}

describe('three control-plane replicas on etcd and Redis, behind HAProxy', { skip }, () => {
  let dir: string;
  const children: ChildProcess[] = [];
  const replicas: { port: number; config: string; child?: ChildProcess }[] = [];
  let frontUrl: string;
  let worker: Worker | undefined;
  let dp: DataPlane | undefined;
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;

  const spawnChild = (cmd: string, args: string[]): ChildProcess => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', process.env.BATON_TEST_LOG ? 'inherit' : 'ignore'] });
    children.push(child);
    return child;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-ha-'));
    const [etcdPort, etcdPeer, redisPort, front] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    spawnChild('etcd', [
      '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', etcdUrl,
      '--advertise-client-urls', etcdUrl,
      '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster', `default=http://127.0.0.1:${etcdPeer}`,
    ]);
    mkdirSync(join(dir, 'redis'));
    spawnChild('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', join(dir, 'redis'), '--appendonly', 'yes', '--save', '']);
    await waitFor('etcd', async () => ((await get(`${etcdUrl}/health`)) === 200 ? true : undefined), 15_000);
    // A control plane whose store does not answer at start exits: wait for Redis to listen.
    await waitFor('redis', () => new Promise<true | undefined>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: redisPort }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(undefined));
    }), 15_000);

    const logLevel = process.env.BATON_TEST_LOG ?? 'silent';
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const config = join(dir, `cp${i}.yaml`);
      writeFileSync(
        config,
        [
          'host: 127.0.0.1',
          `apiPort: ${port}`,
          `dataDir: ${join(dir, `cp${i}`)}`,
          'store:',
          '  type: redis',
          `  url: redis://127.0.0.1:${redisPort}`,
          'ha:',
          `  etcdEndpoints: [${etcdUrl}]`,
          `  leaseTtlSec: ${LEASE_TTL_SEC}`,
          `  advertiseUrl: http://127.0.0.1:${port}`,
          'scalingPeriodMs: 200',
          'metricsIntervalMs: 200',
          'workerHeartbeatIntervalMs: 200',
          'workerHeartbeatTimeoutMs: 3000',
          `logLevel: ${logLevel}`,
          '',
        ].join('\n'),
      );
      replicas.push({ port, config });
    }
    for (const r of replicas) r.child = spawnChild(process.execPath, [MAIN, 'controlplane', '--config', r.config]);

    const haproxyCfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      haproxyCfg,
      `global
    maxconn 1000
defaults
    mode tcp
    timeout connect 1s
    timeout client 60s
    timeout server 60s
frontend controlplane
    bind 127.0.0.1:${front}
    default_backend replicas
backend replicas
    option httpchk GET /leader
    http-check expect status 200
    default-server inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions
${replicas.map((r, i) => `    server cp${i} 127.0.0.1:${r.port} check`).join('\n')}
`,
    );
    spawnChild('haproxy', ['-f', haproxyCfg, '-db']);
    frontUrl = `http://127.0.0.1:${front}`;
    await waitFor('a leader behind HAProxy', async () => ((await get(`${frontUrl}/leader`)) === 200 ? true : undefined), 20_000);

    const quiet = logLevel as 'silent';
    worker = await Worker.create(compileConfig(workerSchema, { controlPlaneUrl: frontUrl, rpcPort: 0, dataDir: join(dir, 'worker'), runtimes: ['process'], logLevel: quiet }));
    dp = await DataPlane.create(compileConfig(dataPlaneSchema, { controlPlaneUrl: frontUrl, port: 0, rpcPort: 0, heartbeatIntervalMs: 200, logLevel: quiet }));
  });

  after(async () => {
    await dp?.stop();
    await worker?.stop();
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const admin = (method: string, path: string, body?: unknown, base = frontUrl): ReturnType<typeof adminCall> => adminCall(base, method, path, body);
  const readyIds = async (name: string): Promise<string[] | undefined> => {
    const d = await admin('GET', `/v1/functions/${name}`).catch(() => undefined);
    if (d?.status !== 200) return undefined;
    return (d.body.sandboxes as { id: string; state: string }[]).filter((s) => s.state === 'ready').map((s) => s.id).sort();
  };
  const leaderIndex = async (candidates: number[]): Promise<number | undefined> => {
    for (const i of candidates) if ((await get(`http://127.0.0.1:${replicas[i]?.port}/leader`)) === 200) return i;
    return undefined;
  };

  test('the leader killed under warm load: a new one within the TTL, no warm request fails, registrations resume', async () => {
    assert.equal((await admin('POST', '/v1/functions', echoSpec('ha', { scaling: { minScale: 2, containerConcurrency: 0 } }))).status, 201);
    const before = await waitFor('two ready sandboxes', async () => {
      const ids = await readyIds('ha');
      return ids?.length === 2 ? ids : undefined;
    }, 20_000);
    const leader = (await leaderIndex([0, 1, 2])) as number;
    assert.notEqual(leader, undefined);
    const follower = [0, 1, 2].find((i) => i !== leader) as number;

    // A follower asked directly sends the caller to the leader (once its observer has seen it).
    const redirected = await waitFor('a redirect to the leader', async () => {
      const r = await admin('GET', '/v1/functions', undefined, `http://127.0.0.1:${replicas[follower]?.port}`);
      return r.status === 307 && r.headers.location === `http://127.0.0.1:${replicas[leader]?.port}/v1/functions` ? r : undefined;
    }, 5000);
    assert.equal(redirected.body.code, 'NOT_LEADER');

    const invokeUrl = `http://127.0.0.1:${dp?.proxyPort}/fn/ha/`;
    await waitFor('the data plane to route', async () => ((await get(invokeUrl)) === 200 ? true : undefined));
    const load = warmLoad(invokeUrl);
    await new Promise((r) => setTimeout(r, 300));

    const t0 = Date.now();
    replicas[leader]?.child?.kill('SIGKILL');
    const others = [0, 1, 2].filter((i) => i !== leader);
    const next = await waitFor('a new leader', () => leaderIndex(others), 15_000);
    const failoverMs = Date.now() - t0;
    // etcd expires the lease within its TTL, give or take its one-second granularity and the keep-alive cadence.
    assert.ok(failoverMs <= LEASE_TTL_SEC * 1000 + 1500, `new leader after ${failoverMs} ms (lease TTL ${LEASE_TTL_SEC} s)`);

    // The new leader reads the registration and takes back the same sandboxes.
    const after = await waitFor('the same sandboxes on the new leader', async () => {
      const ids = await readyIds('ha');
      return ids?.length === 2 ? ids : undefined;
    }, 20_000);
    assert.deepEqual(after, before);
    await new Promise((r) => setTimeout(r, 300));
    const { sent, failures } = await load.stop();
    assert.deepEqual(failures, [], `${failures.length} of ${sent} warm requests failed`);

    // Registrations resume, through the same front address.
    const created = await admin('POST', '/v1/functions', echoSpec('after-failover'));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const cold = await request(`http://127.0.0.1:${dp?.proxyPort}/fn/after-failover/`);
    await cold.body.dump();
    assert.equal(cold.statusCode, 200);
    assert.equal(await leaderIndex([next]), next);
    process.stderr.write(`# failover: new leader ${failoverMs} ms after SIGKILL; ${sent} warm requests, none failed\n`);
  });
});
