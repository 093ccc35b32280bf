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
// Durability (docs/store.md has the details per mode): with `fsync` set, the
// store turns the server's AOF on at every (re)connection (CONFIG SET
// appendonly yes, appendfsync <fsync>) and waits for the AOF to be active.
// With `appendfsync always`, Redis writes and fsyncs the AOF before it sends
// the reply (aof.c, flushAppendOnlyFile runs in beforeSleep before replies
// are written), so an acknowledged registration survives kill -9 of Redis and
// a power cut. A managed Redis may refuse CONFIG: then the store logs a
// warning with what the server has and carries on.
import type { Logger } from '../shared/logging.js';
import { BatonError } from '../shared/errors.js';
import { parseFunctionSpec, toSpecInput } from '../shared/spec.js';
import { RespConnection, RespError, type RespValue } from './resp.js';
import type { ClusterStore, StoredDataPlane, StoredFunction, StoredWorker } from './store.js';

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

interface Endpoint {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
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

function asString(v: RespValue): string | null {
  return typeof v === 'string' ? v : null;
}

/** HGETALL's flat [field, value, ...] reply as sorted pairs. */
function sortedPairs(reply: RespValue): [string, string][] {
  if (!Array.isArray(reply)) throw new BatonError('STORE_ERROR', 'redis: HGETALL did not answer with an array');
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const k = asString(reply[i] ?? null);
    const v = asString(reply[i + 1] ?? null);
    if (k !== null && v !== null) pairs.push([k, v]);
  }
  // Byte order of the UTF-8 names, as SQLite's ORDER BY name.
  return pairs.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
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

  private constructor(
    private readonly conn: RespConnection,
    keyPrefix: string,
  ) {
    this.functionsKey = `${keyPrefix}functions`;
    this.workersKey = `${keyPrefix}workers`;
    this.dataPlanesKey = `${keyPrefix}dataplanes`;
  }

  /** Connects, applies the durability settings; throws STORE_UNAVAILABLE when Redis cannot be reached in time. */
  static async open(options: RedisStoreOptions): Promise<RedisStore> {
    const endpoint = parseRedisUrl(options.url);
    const log = options.log;
    let first = true;
    const conn = await RespConnection.connect({
      ...endpoint,
      connectTimeoutMs: options.connectTimeoutMs,
      commandTimeoutMs: options.commandTimeoutMs,
      onConnect: async (c) => {
        await applyDurability(c, options.fsync, log, first);
        first = false;
      },
      onStateChange: (event, err) => {
        if (event === 'lost') log.error({ err, redis: conn.where }, 'lost the connection to the redis store; writes fail until it is back');
        else if (event === 'restored') log.warn({ redis: conn.where }, 'reconnected to the redis store');
        else log.debug({ err, redis: conn.where }, 'redis store: reconnect failed, retrying');
      },
    });
    return new RedisStore(conn, options.keyPrefix);
  }

  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof BatonError) throw err;
      throw new BatonError('STORE_ERROR', `${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  async listFunctions(): Promise<StoredFunction[]> {
    return this.run('list functions', async () => sortedPairs(await this.conn.call('HGETALL', this.functionsKey)).map(([, v]) => decodeFunction(v)));
  }

  async getFunction(name: string): Promise<StoredFunction | undefined> {
    return this.run('get function', async () => {
      const v = asString(await this.conn.call('HGET', this.functionsKey, name));
      return v === null ? undefined : decodeFunction(v);
    });
  }

  async createFunction(fn: StoredFunction): Promise<void> {
    await this.run('create function', async () => {
      const created = await this.conn.call('HSETNX', this.functionsKey, fn.spec.name, encodeFunction(fn));
      if (created !== 1) throw new BatonError('FUNCTION_EXISTS', `function ${fn.spec.name} already exists`);
    });
  }

  async updateFunction(fn: StoredFunction, expectedRevision: number): Promise<boolean> {
    return this.run('update function', async () => {
      const r = await this.conn.call('EVAL', UPDATE_IF_REVISION, 1, this.functionsKey, fn.spec.name, expectedRevision, encodeFunction(fn));
      return r === 1;
    });
  }

  async deleteFunction(name: string): Promise<boolean> {
    return this.run('delete function', async () => (await this.conn.call('HDEL', this.functionsKey, name)) === 1);
  }

  async putWorker(w: StoredWorker): Promise<void> {
    await this.run('put worker', () =>
      this.conn.call('HSET', this.workersKey, w.id, JSON.stringify({ address: w.address, registeredAtMs: w.registeredAtMs })),
    );
  }

  async deleteWorker(id: string): Promise<void> {
    await this.run('delete worker', () => this.conn.call('HDEL', this.workersKey, id));
  }

  async listWorkers(): Promise<StoredWorker[]> {
    return this.run('list workers', async () =>
      sortedPairs(await this.conn.call('HGETALL', this.workersKey)).map(([id, v]) => {
        const r = JSON.parse(v) as { address: string; registeredAtMs: number };
        return { id, address: r.address, registeredAtMs: r.registeredAtMs };
      }),
    );
  }

  async putDataPlane(d: StoredDataPlane): Promise<void> {
    await this.run('put data plane', () =>
      this.conn.call(
        'HSET',
        this.dataPlanesKey,
        d.id,
        JSON.stringify({ address: d.address, proxyAddress: d.proxyAddress, registeredAtMs: d.registeredAtMs }),
      ),
    );
  }

  async deleteDataPlane(id: string): Promise<void> {
    await this.run('delete data plane', () => this.conn.call('HDEL', this.dataPlanesKey, id));
  }

  async listDataPlanes(): Promise<StoredDataPlane[]> {
    return this.run('list data planes', async () =>
      sortedPairs(await this.conn.call('HGETALL', this.dataPlanesKey)).map(([id, v]) => {
        const r = JSON.parse(v) as { address: string; proxyAddress: string; registeredAtMs: number };
        return { id, address: r.address, proxyAddress: r.proxyAddress, registeredAtMs: r.registeredAtMs };
      }),
    );
  }

  async close(): Promise<void> {
    await this.conn.close();
  }
}

async function configGet(conn: RespConnection, key: string): Promise<string | undefined> {
  const reply = await conn.call('CONFIG', 'GET', key);
  return Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : undefined;
}

/**
 * Turns the AOF on with the asked fsync policy and waits until Redis is
 * appending to it. Turning it on makes Redis rewrite the AOF from memory in a
 * child; until that ends, writes are not yet in an AOF that a restart loads.
 */
async function applyDurability(conn: RespConnection, fsync: RedisFsync | undefined, log: Logger, first: boolean): Promise<void> {
  if (fsync === undefined) return;
  try {
    await conn.call('CONFIG', 'SET', 'appendfsync', fsync);
    await conn.call('CONFIG', 'SET', 'appendonly', 'yes');
  } catch (err) {
    if (!(err instanceof RespError)) throw err;
    let has = 'unknown (CONFIG GET refused too)';
    try {
      has = `appendonly ${(await configGet(conn, 'appendonly')) ?? '?'}, appendfsync ${(await configGet(conn, 'appendfsync')) ?? '?'}`;
    } catch (e) {
      if (!(e instanceof RespError)) throw e;
    }
    log.warn(
      { redis: conn.where, asked: { appendonly: 'yes', appendfsync: fsync }, serverHas: has, err: err.message },
      'redis refused CONFIG SET: the store runs with the durability the server is configured with',
    );
    return;
  }
  const deadline = Date.now() + AOF_READY_TIMEOUT_MS;
  for (;;) {
    const info = await conn.call('INFO', 'persistence');
    const text = typeof info === 'string' ? info : '';
    const field = (name: string): string | undefined => new RegExp(`^${name}:(\\S*)`, 'm').exec(text)?.[1];
    if (field('aof_enabled') === '1' && field('aof_rewrite_in_progress') === '0' && field('aof_rewrite_scheduled') === '0') break;
    if (Date.now() > deadline) {
      throw new BatonError('STORE_UNAVAILABLE', `redis at ${conn.where} did not finish turning its AOF on within ${AOF_READY_TIMEOUT_MS} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  if (first) log.info({ redis: conn.where, appendonly: 'yes', appendfsync: fsync }, 'redis store: AOF on');
}
