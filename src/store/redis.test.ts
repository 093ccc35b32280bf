// The Redis store against a real redis-server started here: the conformance
// suite, durability across kill -9 of Redis, and what a lost Redis does.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BatonError } from '../shared/errors.js';
import { silentLogger } from '../shared/logging.js';
import { parseFunctionSpec } from '../shared/spec.js';
import { parseRedisUrl, RedisStore, type RedisFsync } from './redis.js';
import { freePort, RedisServer, redisSkipReason } from './redis-test-support.js';
import { clusterStoreConformance } from './store.conformance.js';
import type { StoredFunction } from './store.js';

const skip = redisSkipReason();
if (skip !== undefined) console.warn(`# ${skip}`);

function fn(name: string, revision = 1): StoredFunction {
  return { spec: parseFunctionSpec({ name, command: ['x'] }), revision, createdAtMs: 1, updatedAtMs: revision };
}

function open(url: string, keyPrefix = 'baton:', fsync: RedisFsync | undefined = 'always'): Promise<RedisStore> {
  return RedisStore.open({ url, keyPrefix, fsync, connectTimeoutMs: 2000, commandTimeoutMs: 2000, log: silentLogger() });
}

function isCode(code: string): (e: unknown) => boolean {
  return (e) => e instanceof BatonError && e.code === code;
}

describe('redis store', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-redis-'));
  let shared: RedisServer;
  before(async () => {
    shared = await RedisServer.start(join(dir, '.'));
  });
  after(async () => {
    await shared.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // Each store gets its own key prefix, so each starts empty.
  let n = 0;
  clusterStoreConformance('redis', () => open(shared.url, `conformance-${n++}:`));

  test('redis: keys live under the prefix; two prefixes do not see each other', async () => {
    const a = await open(shared.url, 'tenant-a:');
    const b = await open(shared.url, 'tenant-b:');
    try {
      await a.createFunction(fn('same'));
      await b.createFunction(fn('same'));
      assert.equal(await a.deleteFunction('same'), true);
      assert.equal((await b.getFunction('same'))?.spec.name, 'same');
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('redis: concurrent compare-and-set on one revision has exactly one winner', async () => {
    const store = await open(shared.url, 'cas:');
    try {
      await store.createFunction(fn('race'));
      const results = await Promise.all(Array.from({ length: 20 }, () => store.updateFunction(fn('race', 2), 1)));
      assert.equal(results.filter(Boolean).length, 1);
    } finally {
      await store.close();
    }
  });

  test('redis: with fsync always, acknowledged writes survive kill -9 of Redis', async () => {
    const aofDir = mkdtempSync(join(dir, 'aof-'));
    // Started without AOF: the store turns it on (CONFIG SET) at connect.
    const server = await RedisServer.start(aofDir, ['--appendonly', 'no']);
    try {
      const store = await open(server.url, 'baton:', 'always');
      const count = 50;
      for (let i = 0; i < count; i++) await store.createFunction(fn(`fn-${String(i).padStart(3, '0')}`));
      assert.equal(await store.updateFunction(fn('fn-007', 2), 1), true);
      await store.putWorker({ id: 'w1', address: '127.0.0.1:1', registeredAtMs: 5 });
      await server.stop('SIGKILL');
      await store.close();

      // A restart must load the AOF, so it is started with appendonly yes.
      await server.restart(['--appendonly', 'yes']);
      const again = await open(server.url, 'baton:', 'always');
      try {
        const fns = await again.listFunctions();
        assert.equal(fns.length, count);
        assert.equal(fns.find((f) => f.spec.name === 'fn-007')?.revision, 2);
        assert.deepEqual(await again.listWorkers(), [{ id: 'w1', address: '127.0.0.1:1', registeredAtMs: 5 }]);
      } finally {
        await again.close();
      }
    } finally {
      await server.stop('SIGKILL');
    }
  });

  test('redis: unreachable at open is STORE_UNAVAILABLE within the connect timeout', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(open(`redis://127.0.0.1:${port}`), isCode('STORE_UNAVAILABLE'));
    assert.ok(Date.now() - started < 2500, 'must not retry past the connect timeout');
  });

  test('redis: a server that accepts but never answers is STORE_UNAVAILABLE after the connect timeout', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const addr = silent.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    try {
      const started = Date.now();
      await assert.rejects(
        RedisStore.open({ url: `redis://127.0.0.1:${port}`, keyPrefix: 'x:', fsync: 'always', connectTimeoutMs: 300, commandTimeoutMs: 5000, log: silentLogger() }),
        (e: unknown) => isCode('STORE_UNAVAILABLE')(e) && /within 300 ms/.test((e as Error).message),
      );
      assert.ok(Date.now() - started < 2000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  test('redis: a lost Redis fails calls fast with STORE_UNAVAILABLE, and the store reconnects when it is back', async () => {
    const lostDir = mkdtempSync(join(dir, 'lost-'));
    const server = await RedisServer.start(lostDir, ['--appendonly', 'yes', '--appendfsync', 'always']);
    const store = await open(server.url);
    try {
      await store.createFunction(fn('before'));
      await server.stop('SIGKILL');
      const started = Date.now();
      await assert.rejects(store.createFunction(fn('during')), isCode('STORE_UNAVAILABLE'));
      await assert.rejects(store.listFunctions(), isCode('STORE_UNAVAILABLE'));
      assert.ok(Date.now() - started < 1000, 'calls must fail at once while Redis is down');

      await server.restart(['--appendonly', 'yes', '--appendfsync', 'always']);
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          await store.createFunction(fn('after'));
          break;
        } catch (err) {
          assert.ok(isCode('STORE_UNAVAILABLE')(err), String(err));
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.deepEqual((await store.listFunctions()).map((f) => f.spec.name), ['after', 'before']);
    } finally {
      await store.close();
      await server.stop('SIGKILL');
    }
  });

  test('redis: a closed store refuses calls', async () => {
    const store = await open(shared.url, 'closed:');
    await store.close();
    await assert.rejects(store.listFunctions(), isCode('STORE_UNAVAILABLE'));
  });
});

test('redis urls: host, port, password and database', () => {
  assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6380'), { host: '127.0.0.1', port: 6380 });
  assert.deepEqual(parseRedisUrl('redis://:pw@localhost/2'), { host: 'localhost', port: 6379, password: 'pw', db: 2 });
  assert.deepEqual(parseRedisUrl('redis://u:p%40ss@[::1]:7000'), { host: '::1', port: 7000, username: 'u', password: 'p@ss' });
  assert.throws(() => parseRedisUrl('rediss://x'), isCode('CONFIG_INVALID'));
  assert.throws(() => parseRedisUrl('redis://x/abc'), isCode('CONFIG_INVALID'));
});
