// The async queue conformance suite against a real redis-server started here.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { silentLogger } from '../../shared/logging.js';
import { RedisServer, redisSkipReason } from '../../store/redis-test-support.js';
import { RedisQueueStore } from './store-redis.js';
import { asyncQueueConformance } from './store.conformance.js';

const skip = redisSkipReason();
if (skip !== undefined) console.warn(`# ${skip}`);

describe('redis async queue', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-async-redis-'));
  let server: RedisServer;
  before(async () => {
    server = await RedisServer.start(dir);
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  asyncQueueConformance('redis', (name) =>
    RedisQueueStore.open({ url: server.url, keyPrefix: `${name}:`, fsync: 'always', connectTimeoutMs: 2000, commandTimeoutMs: 2000, log: silentLogger() }),
  );
});
