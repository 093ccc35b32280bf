// The control plane on the Redis store, as a real `baton controlplane`
// process: an acknowledged registration survives kill -9 of the control plane
// and of Redis; Redis down at start is a clear start-up error; Redis lost
// while running makes writes answer 503 STORE_UNAVAILABLE until it is back.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { request } from 'undici';
import { freePort, RedisServer, redisSkipReason } from '../../src/store/redis-test-support.js';
import { echoSpec, REPO_ROOT, waitFor } from '../helpers/cluster.js';

const skip = redisSkipReason();
if (skip !== undefined) console.warn(`# ${skip}`);

const MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

interface ControlPlaneProcess {
  child: ChildProcess;
  url: string;
  exited: Promise<{ code: number | null; stderr: string }>;
}

function spawnControlPlane(dir: string, apiPort: number, store: Record<string, unknown>): ControlPlaneProcess {
  const config = join(dir, `controlplane-${apiPort}.yaml`);
  writeFileSync(config, JSON.stringify({ host: '127.0.0.1', apiPort, dataDir: join(dir, 'data'), logLevel: 'warn', store }));
  const child = spawn(process.execPath, [MAIN, 'controlplane', '--config', config], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout?.resume();
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  return { child, url: `http://127.0.0.1:${apiPort}`, exited };
}

async function waitReady(cp: ControlPlaneProcess): Promise<void> {
  let gone = false;
  void cp.exited.then(() => (gone = true));
  await waitFor('the control plane to answer', async () => {
    if (gone) throw new Error(`control plane exited: ${(await cp.exited).stderr}`);
    try {
      const r = await request(`${cp.url}/v1/functions`);
      await r.body.dump();
      return r.statusCode === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  });
}

async function kill9(cp: ControlPlaneProcess): Promise<void> {
  if (cp.child.exitCode === null && cp.child.signalCode === null) cp.child.kill('SIGKILL');
  await cp.exited;
}

async function admin(cp: ControlPlaneProcess, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await request(`${cp.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.body.text();
  return { status: r.statusCode, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

describe('control plane on the redis store', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-cp-redis-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('an acknowledged registration survives kill -9 of the control plane and of redis', async () => {
    const redisDir = mkdtempSync(join(dir, 'redis-'));
    const redis = await RedisServer.start(redisDir, ['--appendonly', 'no']);
    const port = await freePort();
    const store = { type: 'redis', url: redis.url, fsync: 'always' };
    let cp = spawnControlPlane(dir, port, store);
    try {
      await waitReady(cp);
      assert.equal((await admin(cp, 'POST', '/v1/functions', echoSpec('durable'))).status, 201);
      await kill9(cp);
      await redis.stop('SIGKILL');

      await redis.restart(['--appendonly', 'yes']);
      cp = spawnControlPlane(dir, port, store);
      await waitReady(cp);
      const got = await admin(cp, 'GET', '/v1/functions/durable');
      assert.equal(got.status, 200);
    } finally {
      await kill9(cp);
      await redis.stop('SIGKILL');
    }
  });

  test('redis down at start: the control plane exits with STORE_UNAVAILABLE', async () => {
    const redisPort = await freePort();
    const cp = spawnControlPlane(dir, await freePort(), { type: 'redis', url: `redis://127.0.0.1:${redisPort}`, connectTimeoutMs: 500 });
    const started = Date.now();
    const { code, stderr } = await cp.exited;
    assert.notEqual(code, 0);
    assert.match(stderr, /STORE_UNAVAILABLE/);
    assert.match(stderr, new RegExp(`127\\.0\\.0\\.1:${redisPort}`));
    assert.ok(Date.now() - started < 10_000);
  });

  test('redis lost while running: writes answer 503 STORE_UNAVAILABLE, and work again once redis is back', async () => {
    const redisDir = mkdtempSync(join(dir, 'redis-'));
    const args = ['--appendonly', 'yes', '--appendfsync', 'always'];
    const redis = await RedisServer.start(redisDir, args);
    const cp = spawnControlPlane(dir, await freePort(), { type: 'redis', url: redis.url });
    try {
      await waitReady(cp);
      assert.equal((await admin(cp, 'POST', '/v1/functions', echoSpec('first'))).status, 201);
      await redis.stop('SIGKILL');

      const down = await admin(cp, 'POST', '/v1/functions', echoSpec('second'));
      assert.equal(down.status, 503);
      assert.equal(down.body.code, 'STORE_UNAVAILABLE');
      // Reads are served from memory; the control plane keeps running.
      assert.equal((await admin(cp, 'GET', '/v1/functions/first')).status, 200);

      await redis.restart(args);
      await waitFor('writes to work again', async () => {
        const r = await admin(cp, 'POST', '/v1/functions', echoSpec('second'));
        if (r.status === 503) return undefined;
        assert.equal(r.status, 201, JSON.stringify(r.body));
        return true;
      });
    } finally {
      await kill9(cp);
      await redis.stop('SIGKILL');
    }
  });
});
