import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { compileConfig, dataPlaneSchema, readConfigFile, upSchema } from './config.js';
import { BatonError } from './errors.js';

test('up config applies the documented defaults and is frozen', () => {
  const cfg = compileConfig(upSchema, {});
  assert.equal(cfg.apiPort, 9090);
  assert.equal(cfg.dataplanePort, 8080);
  assert.equal(cfg.dataDir, '.baton');
  assert.ok(Object.isFrozen(cfg));
});

test('unknown keys and bad values are CONFIG_INVALID naming the key', () => {
  assert.throws(
    () => compileConfig(upSchema, { apiPrt: 1 }, 'up.yaml'),
    (e: unknown) => e instanceof BatonError && e.code === 'CONFIG_INVALID' && e.message.startsWith('up.yaml'),
  );
  assert.throws(
    () => compileConfig(upSchema, { dataplane: { maxQueueLength: 0 } }),
    (e: unknown) => e instanceof BatonError && /dataplane\.maxQueueLength/.test(e.message),
  );
  assert.throws(() => compileConfig(upSchema, { apiPort: 70000 }), /apiPort/);
});

test('a YAML config file is read and validated', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-cfg-'));
  try {
    const good = join(dir, 'good.yaml');
    writeFileSync(good, 'apiPort: 9999\ndataplane:\n  maxQueueLength: 5\n');
    const cfg = compileConfig(upSchema, readConfigFile(good));
    assert.equal(cfg.apiPort, 9999);
    assert.equal(cfg.dataplane.maxQueueLength, 5);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, '- a list\n');
    assert.throws(() => readConfigFile(bad), (e: unknown) => e instanceof BatonError && e.code === 'CONFIG_INVALID');
    assert.throws(() => readConfigFile(join(dir, 'missing.yaml')), /cannot read/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the data plane's async section: documented defaults, redis store, and its rules", () => {
  const dp = compileConfig(dataPlaneSchema, {});
  assert.equal(dp.dataDir, undefined);
  assert.deepEqual(
    { ...dp.async },
    {
      enabled: true,
      store: { type: 'sqlite' },
      maxQueued: 10_000,
      maxBodyBytes: 1024 * 1024,
      concurrency: 64,
      maxRetries: 2,
      backoffInitialMs: 1000,
      backoffMaxMs: 60_000,
      resultTtlMs: 3_600_000,
      sweepIntervalMs: 60_000,
      retryAfterMs: 1000,
    },
  );
  const redis = compileConfig(dataPlaneSchema, { async: { store: { type: 'redis', url: 'redis://10.0.0.5:6379' } } });
  assert.deepEqual(redis.async.store, { type: 'redis', url: 'redis://10.0.0.5:6379', keyPrefix: 'baton:async:', fsync: 'always', connectTimeoutMs: 5000, commandTimeoutMs: 5000 });
  const bad = (input: unknown, key: RegExp): void =>
    assert.throws(() => compileConfig(dataPlaneSchema, input), (e: unknown) => e instanceof BatonError && e.code === 'CONFIG_INVALID' && key.test(e.message));
  bad({ async: { backoffInitialMs: 500, backoffMaxMs: 100 } }, /backoffMaxMs/);
  bad({ async: { maxQueued: 0 } }, /maxQueued/);
  bad({ async: { store: { type: 'sqlite', url: 'redis://x' } } }, /url/);
  assert.throws(() => compileConfig(upSchema, { dataplane: { dataDir: '/x' } }), /set by baton up/);
});
