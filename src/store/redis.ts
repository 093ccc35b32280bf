// The Redis store, for clusters whose control plane should not keep its state
// on one machine's disk. Three hashes under a key prefix (default `baton:`):
//
//   <prefix>functions   name -> JSON {revision, spec, createdAtMs, updatedAtMs}
//   <prefix>workers     id   -> JSON {address, registeredAtMs}
//   <prefix>dataplanes  id   -> JSON {address, proxyAddress, registeredAtMs}
//
// Uniqueness of names is HSETNX; the compare-and-set on the revision is one
// Lua script (Redis runs a script atomically). Lists read the whole hash and
// sort by name in the process: registrations are few and never on the
// invocation path.
//
// The client is ioredis, set up so that failures are fast and visible:
//
// - `open` gives up after `connectTimeoutMs` (refused, or accepting but
//   silent): a control plane whose Redis is unreachable fails to start with
//   STORE_UNAVAILABLE instead of waiting.
// - While the connection is down, every call fails at once with
//   STORE_UNAVAILABLE: no offline queue, and in-flight commands are failed
//   when the connection closes (maxRetriesPerRequest 0) rather than resent.
//   ioredis reconnects in the background (100 ms doubling to 2 s).
// - A command without an answer after `commandTimeoutMs` fails with
//   STORE_UNAVAILABLE (ioredis's commandTimeout).
// - After every (re)connection the durability settings are applied again
//   before store calls are let through (a restarted Redis has forgotten a
//   CONFIG SET).
//
// Durability (docs/store.md has the details per mode): with `fsync` set, the
// store turns the server's AOF on at every (re)connection (CONFIG SET
// appendonly yes, appendfsync <fsync>) and waits for the AOF to be active.
// With `appendfsync always`, Redis writes and fsyncs the AOF before it sends
// the reply (aof.c, flushAppendOnlyFile runs in beforeSleep before replies
// are written), so an acknowledged registration survives kill -9 of Redis and
// a power cut. A managed Redis may refuse CONFIG: then the store logs a
// warning with what the server has and carries on.
import { Redis, type Result } from 'ioredis';
import type { Logger } from '../shared/logging.js';
import { BatonError } from '../shared/errors.js';
import { parseFunctionSpec, toSpecInput } from '../shared/spec.js';
import type { ClusterStore, StoredDataPlane, StoredFunction, StoredWorker } from './store.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** UPDATE_IF_REVISION: 1 when the record was replaced, 0 when the revision did not match. */
    batonUpdateIfRevision(key: string, name: string, expectedRevision: number, record: string): Result<number, Context>;
  }
}

export type RedisFsync = 'always' | 'everysec' | 'no';

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] */
  url: string;
  keyPrefix: string;
  /** Sets the server's appendfsync (and appendonly yes); undefined leaves the server as it is. */
  fsync: RedisFsync | undefined;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  log: Logger;
}

// KEYS[1] functions hash; ARGV: name, expected revision, new record.
const UPDATE_IF_REVISION = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if cjson.decode(cur).revision ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`;

/** How long turning the AOF on may take (Redis rewrites the AOF from memory first). */
const AOF_READY_TIMEOUT_MS = 30_000;

const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 2000;

/** How long close() waits for QUIT before dropping the socket. */
const QUIT_TIMEOUT_MS = 1000;

interface Endpoint {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
}

/**
 * An ioredis client for Baton's stores (the cluster store, the data plane's
 * async queue), not yet connected: nothing waits for a connection, so while
 * it is down calls fail at once, and it reconnects with a capped back-off.
 * `where` is host:port, for messages.
 */
export function createRedisClient(options: { url: string; connectTimeoutMs: number; commandTimeoutMs: number }): { client: Redis; where: string } {
  const endpoint = parseRedisUrl(options.url);
  const client = new Redis({
    host: endpoint.host,
    port: endpoint.port,
    ...(endpoint.username !== undefined ? { username: endpoint.username } : {}),
    ...(endpoint.password !== undefined ? { password: endpoint.password } : {}),
    db: endpoint.db ?? 0,
    lazyConnect: true,
    connectTimeout: options.connectTimeoutMs,
    commandTimeout: options.commandTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt: number) => Math.min(BACKOFF_INITIAL_MS * 2 ** Math.min(attempt - 1, 10), BACKOFF_MAX_MS),
  });
  return { client, where: `${endpoint.host}:${endpoint.port}` };
}

export function parseRedisUrl(url: string): Endpoint {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BatonError('CONFIG_INVALID', `store.url: ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'redis:') {
    throw new BatonError('CONFIG_INVALID', `store.url: only redis:// is supported (got ${u.protocol}//)`);
  }
  const endpoint: Endpoint = { host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port: u.port === '' ? 6379 : Number(u.port) };
  if (u.password !== '') endpoint.password = decodeURIComponent(u.password);
  if (u.username !== '' && u.password !== '') endpoint.username = decodeURIComponent(u.username);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '') {
    if (!/^\d+$/.test(db)) throw new BatonError('CONFIG_INVALID', `store.url: the path must be a database number (got /${db})`);
    endpoint.db = Number(db);
  }
  return endpoint;
}

/** An error reply from Redis (`-ERR ...`), as opposed to a connection problem or a timeout. */
function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

/** An ioredis failure as a BatonError: error replies are STORE_ERROR, everything else (connection, timeout) STORE_UNAVAILABLE. */
function toBatonError(what: string, where: string, err: unknown): BatonError {
  if (err instanceof BatonError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isReplyError(err)) return new BatonError('STORE_ERROR', `${what}: ${message}`, { cause: err });
  return new BatonError('STORE_UNAVAILABLE', `${what}: redis at ${where}: ${message}`, { cause: err });
}

/** HGETALL's reply as pairs sorted by field. */
function sortedPairs(reply: Record<string, string>): [string, string][] {
  // Byte order of the UTF-8 names, as SQLite's ORDER BY name.
  return Object.entries(reply).sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

interface FunctionRecord {
  revision: number;
  spec: unknown;
  createdAtMs: number;
  updatedAtMs: number;
}

function encodeFunction(fn: StoredFunction): string {
  const record: FunctionRecord = { revision: fn.revision, spec: toSpecInput(fn.spec), createdAtMs: fn.createdAtMs, updatedAtMs: fn.updatedAtMs };
  return JSON.stringify(record);
}

function decodeFunction(json: string): StoredFunction {
  const r = JSON.parse(json) as FunctionRecord;
  // Re-validating on read applies defaults added since the record was written.
  return { spec: parseFunctionSpec(r.spec), revision: r.revision, createdAtMs: r.createdAtMs, updatedAtMs: r.updatedAtMs };
}

export class RedisStore implements ClusterStore {
  readonly kind = 'redis';
  private readonly functionsKey: string;
  private readonly workersKey: string;
  private readonly dataPlanesKey: string;
  /** True between a (re)connection whose durability setup finished and the next loss. */
  private usable = false;
  private closed = false;
  /** Set once open has connected and applied the durability settings. */
  private opened = false;
  /** Counts connections, so a setup that finishes after its connection was lost does not open the gate. */
  private epoch = 0;
  private lastError: Error | undefined;

  private constructor(
    private readonly client: Redis,
    private readonly where: string,
    keyPrefix: string,
    private readonly fsync: RedisFsync | undefined,
    private readonly log: Logger,
  ) {
    this.functionsKey = `${keyPrefix}functions`;
    this.workersKey = `${keyPrefix}workers`;
    this.dataPlanesKey = `${keyPrefix}dataplanes`;
    this.watch();
  }

  /** Connects, applies the durability settings; throws STORE_UNAVAILABLE when Redis cannot be reached in time. */
  static async open(options: RedisStoreOptions): Promise<RedisStore> {
    const { client, where } = createRedisClient(options);
    const log = options.log;
    client.defineCommand('batonUpdateIfRevision', { numberOfKeys: 1, lua: UPDATE_IF_REVISION });
    const store = new RedisStore(client, where, options.keyPrefix, options.fsync, log);

    let timer: NodeJS.Timeout | undefined;
    try {
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new BatonError('STORE_UNAVAILABLE', `cannot connect to redis at ${where}: no answer within ${options.connectTimeoutMs} ms`)),
          options.connectTimeoutMs,
        );
      });
      const connected = client.connect();
      // The loser of the race below must not become an unhandled rejection.
      connected.catch(() => undefined);
      await Promise.race([connected, timedOut]);
      clearTimeout(timer);
      await applyDurability(client, where, options.fsync, log, true);
    } catch (err) {
      clearTimeout(timer);
      store.closed = true;
      client.disconnect();
      if (err instanceof BatonError) throw err;
      // connect() rejects with "Connection is closed."; the socket's own error (ECONNREFUSED, ...) says more.
      const cause = store.lastError ?? err;
      const message = cause instanceof Error ? cause.message : String(cause);
      throw new BatonError('STORE_UNAVAILABLE', `cannot connect to redis at ${where}: ${message}`, { cause });
    }
    store.opened = true;
    // Lost again during the setup: the next 'ready' opens the gate.
    store.usable = client.status === 'ready';
    return store;
  }

  /** Follows the connection: closes the gate when it is lost, re-applies durability and opens it on every reconnection. */
  private watch(): void {
    this.client.on('error', (err: Error) => {
      this.lastError = err;
      if (this.opened && !this.usable && !this.closed) this.log.debug({ err, redis: this.where }, 'redis store: reconnect failed, retrying');
    });
    this.client.on('close', () => {
      this.epoch++;
      if (!this.opened || this.closed || !this.usable) return;
      this.usable = false;
      this.log.error({ err: this.lastError, redis: this.where }, 'lost the connection to the redis store; writes fail until it is back');
    });
    this.client.on('ready', () => {
      const epoch = ++this.epoch;
      // The first connection is set up by open itself.
      if (!this.opened) return;
      applyDurability(this.client, this.where, this.fsync, this.log, false).then(
        () => {
          if (this.closed || epoch !== this.epoch) return;
          this.usable = true;
          this.lastError = undefined;
          this.log.warn({ redis: this.where }, 'reconnected to the redis store');
        },
        (err: unknown) => {
          if (this.closed || epoch !== this.epoch) return;
          this.log.debug({ err, redis: this.where }, 'redis store: reconnect failed, retrying');
          // Drop this connection; ioredis dials again with its back-off.
          this.client.disconnect(true);
        },
      );
    });
  }

  private async run<T>(what: string, fn: (client: Redis) => Promise<T>): Promise<T> {
    if (this.closed) throw new BatonError('STORE_UNAVAILABLE', `${what}: redis store at ${this.where} is closed`);
    if (!this.usable) {
      const why = this.lastError ? `: ${this.lastError.message}` : '';
      throw new BatonError('STORE_UNAVAILABLE', `${what}: redis at ${this.where} is not connected${why}; reconnecting`);
    }
    try {
      return await fn(this.client);
    } catch (err) {
      if (err instanceof BatonError) throw err;
      throw toBatonError(what, this.where, err);
    }
  }

  async listFunctions(): Promise<StoredFunction[]> {
    return this.run('list functions', async (c) => sortedPairs(await c.hgetall(this.functionsKey)).map(([, v]) => decodeFunction(v)));
  }

  async getFunction(name: string): Promise<StoredFunction | undefined> {
    return this.run('get function', async (c) => {
      const v = await c.hget(this.functionsKey, name);
      return v === null ? undefined : decodeFunction(v);
    });
  }

  async createFunction(fn: StoredFunction): Promise<void> {
    await this.run('create function', async (c) => {
      const created = await c.hsetnx(this.functionsKey, fn.spec.name, encodeFunction(fn));
      if (created !== 1) throw new BatonError('FUNCTION_EXISTS', `function ${fn.spec.name} already exists`);
    });
  }

  async updateFunction(fn: StoredFunction, expectedRevision: number): Promise<boolean> {
    return this.run('update function', async (c) => {
      const r = await c.batonUpdateIfRevision(this.functionsKey, fn.spec.name, expectedRevision, encodeFunction(fn));
      return r === 1;
    });
  }

  async deleteFunction(name: string): Promise<boolean> {
    return this.run('delete function', async (c) => (await c.hdel(this.functionsKey, name)) === 1);
  }

  async putWorker(w: StoredWorker): Promise<void> {
    await this.run('put worker', (c) => c.hset(this.workersKey, w.id, JSON.stringify({ address: w.address, registeredAtMs: w.registeredAtMs })));
  }

  async deleteWorker(id: string): Promise<void> {
    await this.run('delete worker', (c) => c.hdel(this.workersKey, id));
  }

  async listWorkers(): Promise<StoredWorker[]> {
    return this.run('list workers', async (c) =>
      sortedPairs(await c.hgetall(this.workersKey)).map(([id, v]) => {
        const r = JSON.parse(v) as { address: string; registeredAtMs: number };
        return { id, address: r.address, registeredAtMs: r.registeredAtMs };
      }),
    );
  }

  async putDataPlane(d: StoredDataPlane): Promise<void> {
    await this.run('put data plane', (c) =>
      c.hset(this.dataPlanesKey, d.id, JSON.stringify({ address: d.address, proxyAddress: d.proxyAddress, registeredAtMs: d.registeredAtMs })),
    );
  }

  async deleteDataPlane(id: string): Promise<void> {
    await this.run('delete data plane', (c) => c.hdel(this.dataPlanesKey, id));
  }

  async listDataPlanes(): Promise<StoredDataPlane[]> {
    return this.run('list data planes', async (c) =>
      sortedPairs(await c.hgetall(this.dataPlanesKey)).map(([id, v]) => {
        const r = JSON.parse(v) as { address: string; proxyAddress: string; registeredAtMs: number };
        return { id, address: r.address, proxyAddress: r.proxyAddress, registeredAtMs: r.registeredAtMs };
      }),
    );
  }

  /** Sends QUIT (or drops the socket when Redis is not there to answer); leaves no socket or reconnect timer behind. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.usable = false;
    const client = this.client;
    if (client.status === 'end') return;
    if (client.status !== 'ready') {
      // Reconnecting: this clears the reconnect timer (there is no socket);
      // connecting: this drops the socket being dialed.
      client.disconnect();
      return;
    }
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.quit(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('QUIT timed out')), QUIT_TIMEOUT_MS);
        }),
      ]);
    } catch {
      client.disconnect();
    } finally {
      clearTimeout(timer);
    }
    await Promise.race([ended, new Promise((r) => setTimeout(r, QUIT_TIMEOUT_MS).unref())]);
  }
}

async function configGet(client: Redis, key: string): Promise<string | undefined> {
  const reply = await client.config('GET', key);
  return Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : undefined;
}

/**
 * Turns the AOF on with the asked fsync policy and waits until Redis is
 * appending to it. Turning it on makes Redis rewrite the AOF from memory in a
 * child; until that ends, writes are not yet in an AOF that a restart loads.
 */
export async function applyDurability(client: Redis, where: string, fsync: RedisFsync | undefined, log: Logger, first: boolean): Promise<void> {
  if (fsync === undefined) return;
  try {
    await client.config('SET', 'appendfsync', fsync);
    await client.config('SET', 'appendonly', 'yes');
  } catch (err) {
    if (!isReplyError(err)) throw err;
    let has = 'unknown (CONFIG GET refused too)';
    try {
      has = `appendonly ${(await configGet(client, 'appendonly')) ?? '?'}, appendfsync ${(await configGet(client, 'appendfsync')) ?? '?'}`;
    } catch (e) {
      if (!isReplyError(e)) throw e;
    }
    log.warn(
      { redis: where, asked: { appendonly: 'yes', appendfsync: fsync }, serverHas: has, err: (err as Error).message },
      'redis refused CONFIG SET: the store runs with the durability the server is configured with',
    );
    return;
  }
  const deadline = Date.now() + AOF_READY_TIMEOUT_MS;
  for (;;) {
    const text = await client.info('persistence');
    const field = (name: string): string | undefined => new RegExp(`^${name}:(\\S*)`, 'm').exec(text)?.[1];
    if (field('aof_enabled') === '1' && field('aof_rewrite_in_progress') === '0' && field('aof_rewrite_scheduled') === '0') break;
    if (Date.now() > deadline) {
      throw new BatonError('STORE_UNAVAILABLE', `redis at ${where} did not finish turning its AOF on within ${AOF_READY_TIMEOUT_MS} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  if (first) log.info({ redis: where, appendonly: 'yes', appendfsync: fsync }, 'redis store: AOF on');
}
