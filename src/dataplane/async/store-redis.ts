// The async queue in Redis (ioredis), for data planes that should not keep
// it on their own disk. Under the data plane's key prefix (default
// `baton:async:`; give every data plane its own):
//
//   <prefix>inv:<id>   hash: the request, state, attempts, notBefore and the last result
//   <prefix>queue      sorted set: queued ids by notBefore
//   <prefix>running    set: ids being run
//   <prefix>expiry     sorted set: finished ids by expiresAt
//
// Each call is one MULTI or one Lua script, so the index keys never disagree
// with the hashes. Durability is the cluster store's (src/store/redis.ts):
// the AOF is turned on with `appendfsync always` at every (re)connection, so
// Redis replies only after the write is fsynced.
//
// While Redis is unreachable every call fails at once with
// STORE_UNAVAILABLE (no offline queue): a submit gets 503, the dispatcher
// tries again on its next tick, and ioredis reconnects in the background.
import { Redis } from 'ioredis';
import { BatonError } from '../../shared/errors.js';
import { applyDurability, createRedisClient, type RedisStoreOptions } from '../../store/redis.js';
import type { AsyncQueueStore, InvocationResult, InvocationState, NewInvocation, StoredInvocation } from './queue-store.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    batonAsyncAdd(inv: string, queue: string, id: string, submittedAt: number, fn: string, method: string, path: string, headers: string, body: Buffer): import('ioredis').Result<number, Context>;
    batonAsyncClaim(queue: string, running: string, invPrefix: string, now: number, max: number): import('ioredis').Result<string[], Context>;
    batonAsyncRecover(queue: string, running: string, invPrefix: string): import('ioredis').Result<number, Context>;
    batonAsyncSweep(expiry: string, invPrefix: string, now: number, max: number): import('ioredis').Result<number, Context>;
  }
}

// KEYS: invocation hash, queue; ARGV: id, submittedAt, function, method, path, headers, body. 0 if the id exists.
const ADD = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'function', ARGV[3], 'method', ARGV[4], 'path', ARGV[5], 'headers', ARGV[6], 'body', ARGV[7],
  'submittedAt', ARGV[2], 'state', 'queued', 'attempts', 0, 'notBefore', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`;

// KEYS: queue, running; ARGV: inv prefix, now, max.
const CLAIM = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('SADD', KEYS[2], id)
  local k = ARGV[1] .. id
  redis.call('HSET', k, 'state', 'running')
  redis.call('HINCRBY', k, 'attempts', 1)
end
return ids
`;

// KEYS: queue, running; ARGV: inv prefix.
const RECOVER = `
local ids = redis.call('SMEMBERS', KEYS[2])
for _, id in ipairs(ids) do
  local k = ARGV[1] .. id
  local attempts = tonumber(redis.call('HGET', k, 'attempts') or '0')
  redis.call('HSET', k, 'state', 'queued', 'notBefore', 0, 'attempts', math.max(attempts - 1, 0))
  redis.call('ZADD', KEYS[1], 0, id)
end
redis.call('DEL', KEYS[2])
return #ids
`;

// KEYS: expiry; ARGV: inv prefix, now, max. Deletes at most max per call (one script blocks Redis).
const SWEEP = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
`;

const SWEEP_BATCH = 500;

/** The cluster store's Redis settings; keyPrefix is this data plane's own (docs/dataplane.md). */
export type RedisQueueStoreOptions = RedisStoreOptions;

function resultFields(result: InvocationResult): (string | number | Buffer)[] {
  return [
    'resultStatus',
    result.status,
    'resultHeaders',
    JSON.stringify(result.headers),
    'resultBody',
    Buffer.from(result.body),
    'resultError',
    result.errorCode ?? '',
  ];
}

function fromHash(id: string, h: Record<string, Buffer>): StoredInvocation | undefined {
  const text = (name: string): string => h[name]?.toString('utf8') ?? '';
  const num = (name: string): number | null => (h[name] === undefined || text(name) === '' ? null : Number(text(name)));
  if (h.state === undefined) return undefined;
  const status = num('resultStatus');
  let result: InvocationResult | null = null;
  if (status !== null) {
    const errorCode = text('resultError');
    result = {
      status,
      headers: JSON.parse(text('resultHeaders') || '[]') as [string, string][],
      body: h.resultBody ?? Buffer.alloc(0),
      ...(errorCode !== '' ? { errorCode } : {}),
    };
  }
  return {
    id,
    function: text('function'),
    method: text('method'),
    path: text('path'),
    headers: JSON.parse(text('headers') || '{}') as Record<string, string>,
    body: h.body ?? Buffer.alloc(0),
    submittedAt: num('submittedAt') ?? 0,
    state: text('state') as InvocationState,
    attempts: num('attempts') ?? 0,
    notBefore: num('notBefore') ?? 0,
    finishedAt: num('finishedAt'),
    expiresAt: num('expiresAt'),
    result,
  };
}

export class RedisQueueStore implements AsyncQueueStore {
  readonly kind = 'redis';
  private readonly queueKey: string;
  private readonly runningKey: string;
  private readonly expiryKey: string;
  private readonly invPrefix: string;
  private closed = false;

  private constructor(
    private readonly client: Redis,
    private readonly where: string,
    keyPrefix: string,
  ) {
    this.queueKey = `${keyPrefix}queue`;
    this.runningKey = `${keyPrefix}running`;
    this.expiryKey = `${keyPrefix}expiry`;
    this.invPrefix = `${keyPrefix}inv:`;
  }

  /** Connects and turns the AOF on; STORE_UNAVAILABLE when Redis does not answer within connectTimeoutMs. */
  static async open(options: RedisQueueStoreOptions): Promise<RedisQueueStore> {
    const { client, where } = createRedisClient(options);
    client.defineCommand('batonAsyncAdd', { numberOfKeys: 2, lua: ADD });
    client.defineCommand('batonAsyncClaim', { numberOfKeys: 2, lua: CLAIM });
    client.defineCommand('batonAsyncRecover', { numberOfKeys: 2, lua: RECOVER });
    client.defineCommand('batonAsyncSweep', { numberOfKeys: 1, lua: SWEEP });
    let lastError: Error | undefined;
    client.on('error', (err: Error) => {
      lastError = err;
    });
    const store = new RedisQueueStore(client, where, options.keyPrefix);
    const deadline = setTimeout(() => client.disconnect(), options.connectTimeoutMs);
    try {
      await client.connect();
      await applyDurability(client, where, options.fsync, options.log, true);
    } catch (err) {
      client.disconnect();
      const cause = lastError ?? err;
      throw new BatonError('STORE_UNAVAILABLE', `async queue: cannot connect to redis at ${where}: ${(cause as Error).message}`, { cause });
    } finally {
      clearTimeout(deadline);
    }
    // A restarted Redis has forgotten CONFIG SET: turn the AOF on again after every reconnection.
    client.on('ready', () => {
      applyDurability(client, where, options.fsync, options.log, false).catch((err: unknown) => {
        options.log.warn({ err, redis: where }, 'async queue: could not turn the redis AOF on again');
      });
    });
    return store;
  }

  private async run<T>(what: string, fn: (c: Redis) => Promise<T>): Promise<T> {
    if (this.closed) throw new BatonError('STORE_UNAVAILABLE', `async queue: ${what}: the redis store is closed`);
    try {
      return await fn(this.client);
    } catch (err) {
      if (err instanceof BatonError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      const code = err instanceof Error && err.name === 'ReplyError' ? 'STORE_ERROR' : 'STORE_UNAVAILABLE';
      throw new BatonError(code, `async queue: ${what}: redis at ${this.where}: ${message}`, { cause: err });
    }
  }

  /** EXEC's replies, failing on the first command error. */
  private static checked(replies: [Error | null, unknown][] | null): void {
    for (const [err] of replies ?? []) if (err) throw err;
  }

  async add(inv: NewInvocation): Promise<void> {
    await this.run('add', async (c) => {
      const added = await c.batonAsyncAdd(
        this.invPrefix + inv.id,
        this.queueKey,
        inv.id,
        inv.submittedAt,
        inv.function,
        inv.method,
        inv.path,
        JSON.stringify(inv.headers),
        Buffer.from(inv.body),
      );
      if (added !== 1) throw new BatonError('STORE_ERROR', `async queue: add: invocation ${inv.id} exists`);
    });
  }

  async claim(max: number, now: number): Promise<StoredInvocation[]> {
    return this.run('claim', async (c) => {
      const ids = await c.batonAsyncClaim(this.queueKey, this.runningKey, this.invPrefix, now, max);
      if (ids.length === 0) return [];
      const p = c.pipeline();
      for (const id of ids) p.hgetallBuffer(this.invPrefix + id);
      const replies = (await p.exec()) ?? [];
      const out: StoredInvocation[] = [];
      ids.forEach((id, i) => {
        const [err, h] = replies[i] ?? [null, {}];
        if (err) throw err;
        const inv = fromHash(id, h as Record<string, Buffer>);
        if (inv) out.push(inv);
      });
      return out;
    });
  }

  async requeue(id: string, notBefore: number, result: InvocationResult): Promise<void> {
    await this.run('requeue', async (c) => {
      const replies = await c
        .multi()
        .srem(this.runningKey, id)
        .hset(this.invPrefix + id, 'state', 'queued', 'notBefore', notBefore, ...resultFields(result))
        .zadd(this.queueKey, notBefore, id)
        .exec();
      RedisQueueStore.checked(replies);
    });
  }

  async finish(id: string, state: 'succeeded' | 'failed', result: InvocationResult, finishedAt: number, expiresAt: number): Promise<void> {
    await this.run('finish', async (c) => {
      const replies = await c
        .multi()
        .srem(this.runningKey, id)
        .hset(this.invPrefix + id, 'state', state, 'finishedAt', finishedAt, 'expiresAt', expiresAt, ...resultFields(result))
        .zadd(this.expiryKey, expiresAt, id)
        .exec();
      RedisQueueStore.checked(replies);
    });
  }

  async get(id: string): Promise<StoredInvocation | undefined> {
    return this.run('get', async (c) => fromHash(id, await c.hgetallBuffer(this.invPrefix + id)));
  }

  async recover(): Promise<number> {
    return this.run('recover', (c) => c.batonAsyncRecover(this.queueKey, this.runningKey, this.invPrefix));
  }

  async unfinished(): Promise<number> {
    return this.run('count', async (c) => {
      const replies = await c.multi().zcard(this.queueKey).scard(this.runningKey).exec();
      RedisQueueStore.checked(replies);
      return (replies ?? []).reduce((sum, [, n]) => sum + Number(n), 0);
    });
  }

  async sweep(now: number): Promise<number> {
    return this.run('sweep', async (c) => {
      let total = 0;
      for (;;) {
        const n = await c.batonAsyncSweep(this.expiryKey, this.invPrefix, now, SWEEP_BATCH);
        total += n;
        if (n < SWEEP_BATCH) return total;
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
