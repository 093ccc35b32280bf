// Configuration for every component, in one place: the schemas, every default,
// and the YAML loader. Config is compiled in three steps, as in Temporal's
// SDK: what a user writes (YAML and flags, every key optional), then merged
// with the defaults and validated, then frozen. Unknown keys are errors.
// Durations and sizes carry their unit in the key name.
import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { BatonError } from './errors.js';
import { deepFreeze, describeIssue, LOAD_BALANCING_POLICIES, RUNTIMES } from './spec.js';

/** Where new sandboxes go (reference/dirigent.md §4, with the request bug fixed). */
export const PLACEMENT_POLICIES = ['random', 'round-robin', 'kubernetes', 'binpack'] as const;
export type PlacementPolicyName = (typeof PLACEMENT_POLICIES)[number];

/** Which sandboxes go first on a scale-down. */
export const EVICTION_POLICIES = ['newest', 'oldest', 'random'] as const;
export type EvictionPolicyName = (typeof EVICTION_POLICIES)[number];

const port = z.number().int().min(0).max(65535);
const ms = (min = 0) => z.number().int().min(min).max(86_400_000);
const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** A Redis store: the control plane's cluster store, or a data plane's async queue. */
function redisStoreSchema(keyPrefix: string) {
  return z
    .object({
      type: z.literal('redis'),
      url: z.string().regex(/^redis:\/\//, 'must start with redis://').default('redis://127.0.0.1:6379'),
      keyPrefix: z.string().default(keyPrefix),
      /** Set on the server at connect (CONFIG SET appendonly yes, appendfsync); docs/store.md says what each loses. */
      fsync: z.enum(['always', 'everysec', 'no']).default('always'),
      /** Start-up fails after this long without Redis. */
      connectTimeoutMs: ms(1).default(5000),
      /** A command without an answer this long fails and the connection is re-dialed. */
      commandTimeoutMs: ms(1).default(5000),
    })
    .strict();
}

/**
 * A data plane's async invocations (docs/dataplane.md#async-invocations): the
 * durable queue they wait in, how many run at once, retries and how long
 * results are kept (Lambda's defaults where Lambda has one).
 */
export const asyncSchema = z
  .object({
    enabled: z.boolean().default(true),
    store: z
      .discriminatedUnion('type', [
        /** Default: `<dataDir>/dataplane-async.db` (in memory without a dataDir); one file per data plane. */
        z.object({ type: z.literal('sqlite'), path: z.string().min(1).optional() }).strict(),
        /** One keyPrefix per data plane: the queue is the data plane's own. */
        redisStoreSchema('baton:async:'),
      ])
      .default({ type: 'sqlite' }),
    /** Unfinished (queued or running) invocations held; more get 429 ASYNC_QUEUE_FULL. */
    maxQueued: z.number().int().min(1).max(10_000_000).default(10_000),
    /** Lambda's asynchronous payload limit (1 MB). */
    maxBodyBytes: z.number().int().min(1).default(1024 * 1024),
    /** Async invocations running at once (each one also waits for a sandbox token like a sync request). */
    concurrency: z.number().int().min(1).max(100_000).default(64),
    /** Attempts after the first on a 5xx or a lost connection (Lambda: 2). A 4xx is never retried. */
    maxRetries: z.number().int().min(0).max(100).default(2),
    /** Back-off before retry n is backoffInitialMs × 2^(n-1), at most backoffMaxMs. */
    backoffInitialMs: ms(0).default(1000),
    backoffMaxMs: ms(0).default(60_000),
    /** A finished invocation's result is kept this long, then deleted. */
    resultTtlMs: ms(1).default(3_600_000),
    /** How often expired results are deleted. */
    sweepIntervalMs: ms(10).default(60_000),
    /** Retry-After of a 429 ASYNC_QUEUE_FULL. */
    retryAfterMs: ms(0).default(1000),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.backoffMaxMs < v.backoffInitialMs) ctx.addIssue({ code: 'custom', path: ['backoffMaxMs'], message: 'must be at least backoffInitialMs' });
  });

export const controlPlaneSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    /** Admin API (HTTP+JSON) and internal RPC share this port, split by path. */
    apiPort: port.default(9090),
    dataDir: z.string().default('.baton'),
    token: z.string().min(1).optional(),
    store: z
      .discriminatedUnion('type', [
        /** `<dataDir>/baton.db`, one machine. */
        z.object({ type: z.literal('sqlite') }).strict(),
        redisStoreSchema('baton:'),
      ])
      .default({ type: 'sqlite' }),
    /** `kubernetes` spreads by free capacity, as the Kubernetes scheduler does; Dirigent defaults to `random`. */
    placementPolicy: z.enum(PLACEMENT_POLICIES).default('kubernetes'),
    /** Newest first keeps the sandboxes that have run longest (warm caches, JIT). Dirigent evicts at random. */
    evictionPolicy: z.enum(EVICTION_POLICIES).default('newest'),
    /** Requests per sandbox the autoscaler aims at when containerConcurrency is 0 (Knative's container-concurrency-target-default). */
    unlimitedConcurrencyTarget: z.number().int().min(1).max(100_000).default(100),
    /** Dirigent: heartbeats every 5 s, a worker silent for 3 × 5 s is lost. */
    workerHeartbeatIntervalMs: ms(10).default(5000),
    workerHeartbeatTimeoutMs: ms(10).default(15_000),
    /** Data planes report in-flight counts this often while a function is active (Dirigent: 2 s). */
    metricsIntervalMs: ms(10).default(2000),
    /** The autoscaler's tick: how often every function's scale is decided (Knative's tick-interval; Dirigent hard-codes 2 s). */
    scalingPeriodMs: ms(10).default(2000),
    sandboxCreateTimeoutMs: ms(100).default(60_000),
    /**
     * After a start that found registrations, how long the scaling tick decides without
     * acting, so that workers still running sandboxes re-register and are taken back before
     * anything is created twice. Default: two worker heartbeat intervals plus the workers'
     * 1 s registration back-off cap.
     */
    recoveryWindowMs: ms(0).optional(),
    /** Back-off after a failed sandbox start, doubling up to the max. */
    createBackoffInitialMs: ms(1).default(250),
    createBackoffMaxMs: ms(1).default(30_000),
    drainTimeoutMs: ms(0).default(30_000),
    /** A sandbox that dies within this long of becoming ready counts as a crash loop (back-off grows). */
    crashLoopWindowMs: ms(0).default(10_000),
    /** Append one CSV row per sandbox creation here (Dirigent's cold_start_trace.csv columns first); unset: off. */
    coldStartTracePath: z.string().min(1).optional(),
    maxBodyBytes: z.number().int().min(1024).default(1024 * 1024),
    logLevel: logLevel.default('info'),
    /** Peers' APIs served beside /v1 (docs/controlplane.md, "Dirigent registration"). */
    compat: z
      .object({
        /**
         * Dirigent's form registration (`POST /registerService`, `POST /`), for InVitro:
         * `off`; `on`, behind the bearer token when one is set; `open`, never behind it
         * (InVitro sends no token). `baton up` turns it `on`.
         */
        dirigentRegistration: z.enum(['off', 'on', 'open']).default('off'),
      })
      .strict()
      .prefault({}),
    /**
     * Replicated control planes (docs/ha.md): replicas elect a leader on etcd; only the
     * leader scales and takes worker and data-plane calls, followers redirect admin calls
     * to it. Needs a store every replica shares (store.type redis).
     */
    ha: z
      .object({
        etcdEndpoints: z.array(z.string().url()).min(1),
        electionName: z.string().min(1).default('baton-control-plane'),
        /** A dead leader is replaced within about this long. */
        leaseTtlSec: z.number().int().min(1).max(60).default(5),
        /** The URL the other replicas (and redirected clients) reach this one on; default http://host:apiPort. */
        advertiseUrl: z.string().url().optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.ha && v.store.type !== 'redis') {
      ctx.addIssue({ code: 'custom', path: ['ha'], message: 'needs a store every replica shares: store.type redis' });
    }
  });

export const dataPlaneSchema = z
  .object({
    id: z.string().min(1).optional(),
    host: z.string().default('127.0.0.1'),
    /** Invocations: HTTP/1.1 and h2c on one port. */
    port: port.default(8080),
    /** Internal RPC, /metrics and /health. */
    rpcPort: port.default(8081),
    /** The host peers and clients reach this data plane on; defaults to the bind host. */
    advertiseHost: z.string().optional(),
    controlPlaneUrl: z.string().url().default('http://127.0.0.1:9090'),
    token: z.string().min(1).optional(),
    maxQueueLength: z.number().int().min(1).default(1000),
    /** Lambda's synchronous payload limit. */
    maxBodyBytes: z.number().int().min(1).default(6 * 1024 * 1024),
    metricsIntervalMs: ms(10).default(2000),
    /** Keep-alive connections kept per sandbox. */
    upstreamConnections: z.number().int().min(1).default(128),
    /** For functions that do not name one; `knative` is the activator's policy, as Dirigent's cluster configs use. */
    loadBalancingPolicy: z.enum(LOAD_BALANCING_POLICIES).default('knative'),
    /** Re-registration period, which is also the data plane's heartbeat (Dirigent: 5 s). */
    heartbeatIntervalMs: ms(10).default(5000),
    /** How long stop() lets in-flight requests finish. */
    shutdownGraceMs: ms(0).default(10_000),
    logRequests: z.boolean().default(false),
    logLevel: logLevel.default('info'),
    /**
     * Where the async queue's SQLite file lives (`dataplane-async.db`). Unset
     * (and no async.store.path): the queue is in memory and not durable;
     * `baton up` sets it to its own dataDir.
     */
    dataDir: z.string().min(1).optional(),
    async: asyncSchema.prefault({}),
  })
  .strict();

/** The `oci` runtime (docs/runtimes.md). */
export const ociSchema = z
  .object({
    /** The runc binary: a name on PATH or a path. */
    runc: z.string().min(1).default('runc'),
    /** runc's state directory (--root); default: <dataDir>/runc. */
    stateDir: z.string().optional(),
    /** The user sandboxes run as: nobody. */
    uid: z.number().int().min(1).max(2 ** 31).default(65534),
    gid: z.number().int().min(1).max(2 ** 31).default(65534),
    /** The cgroup pids limit of one sandbox. */
    pidsLimit: z.number().int().min(8).max(1_000_000).default(512),
    /** Containers created ahead ("runc create") per function and network, started on demand. 0 disables. */
    precreate: z.number().int().min(0).max(64).default(1),
    /** `isolated` network: the bridge, its IPv4 subnet (a /16 to /24), and namespaces prepared ahead. */
    bridge: z.string().regex(/^[a-z][a-z0-9]{0,10}$/, 'an interface name of at most 11 letters and digits').default('baton0'),
    subnet: z
      .string()
      .regex(/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\/(1[6-9]|2[0-4])$/, 'an IPv4 CIDR from /16 to /24')
      .default('10.88.0.0/16'),
    networkPoolSize: z.number().int().min(0).max(1024).default(8),
  })
  .strict();

/** The `node` handler runtime. */
export const nodeRuntimeSchema = z
  .object({
    /** Pre-booted runtime processes kept ready, not bound to any function. 0 disables the pool. */
    poolSize: z.number().int().min(0).max(256).default(2),
    /** The Node binary sandboxes run on; default: the one running the worker. */
    nodePath: z.string().optional(),
  })
  .strict();

/** How long an emulated sandbox takes to "start". */
export const startDelaySchema = z
  .object({
    distribution: z.enum(['constant', 'uniform', 'exponential', 'lognormal']).default('constant'),
    /** constant: the delay; uniform: the low bound; exponential and lognormal: the mean. */
    ms: z.number().min(0).max(600_000).default(0),
    /** uniform: the width of the range above `ms`. lognormal: the standard deviation. */
    spreadMs: z.number().min(0).max(600_000).default(0),
    /** Seed of the delays, for reproducible runs. */
    seed: z.number().int().min(0).default(1),
  })
  .strict();

/** The `emulated` runtime: nodes and sandboxes without processes, for scale experiments. */
export const emulationSchema = z
  .object({
    startDelay: startDelaySchema.prefault({}),
  })
  .strict();

export const workerSchema = z
  .object({
    id: z.string().min(1).optional(),
    host: z.string().default('127.0.0.1'),
    rpcPort: port.default(10010),
    advertiseHost: z.string().optional(),
    controlPlaneUrl: z.string().url().default('http://127.0.0.1:9090'),
    token: z.string().min(1).optional(),
    dataDir: z.string().default('.baton'),
    heartbeatIntervalMs: ms(10).default(5000),
    sandboxStartTimeoutMs: ms(10).default(30_000),
    /** Time between SIGTERM and SIGKILL when a sandbox is deleted. */
    stopGraceMs: ms(0).default(2000),
    /**
     * Liveness probe of ready sandboxes: GET /health every livenessIntervalMs
     * (0 disables it); livenessFailureThreshold failures in a row, each a
     * refused connection or no answer within livenessTimeoutMs, and the worker
     * kills the sandbox and reports it `unresponsive` (Kubernetes' defaults:
     * 10 s, 3 failures, 1 s).
     */
    livenessIntervalMs: ms(0).default(5000),
    livenessFailureThreshold: z.number().int().min(1).default(3),
    livenessTimeoutMs: ms(1).default(1000),
    /** Capacity to advertise; 0 means what the machine has. */
    cpuMillis: z.number().int().min(0).default(0),
    memoryMb: z.number().int().min(0).default(0),
    logLevel: logLevel.default('info'),
    /**
     * The runtimes this worker offers. Unset: every runtime that works here
     * (`oci` only as root with runc installed). Naming one that cannot work
     * is a start-up error that says why.
     */
    runtimes: z.array(z.enum(RUNTIMES)).min(1).optional(),
    oci: ociSchema.prefault({}),
    node: nodeRuntimeSchema.prefault({}),
    emulation: emulationSchema.prefault({}),
  })
  .strict();

/**
 * A component section of the `baton up` config: validated against the
 * component's schema, but kept as written, without defaults, so that the
 * values `up` sets itself (ports, addresses) are not hidden by them.
 */
function upSection(schema: z.ZodObject, reserved: readonly string[]) {
  return z
    .record(z.string(), z.unknown())
    .default({})
    .superRefine((value, ctx) => {
      for (const key of reserved) {
        if (key in value) ctx.addIssue({ code: 'custom', path: [key], message: 'is set by baton up itself; use the top-level key' });
      }
      const parsed = schema.safeParse(value);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
      }
    });
}

export const upSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    apiPort: port.default(9090),
    dataplanePort: port.default(8080),
    /** Workers to run in the one process: several nodes on one machine, each with its share of the machine. */
    workers: z.number().int().min(1).max(64).default(1),
    /** Emulated workers to run besides them: nodes offering only the `emulated` runtime, for scale experiments. */
    emulate: z.number().int().min(0).max(5000).default(0),
    dataDir: z.string().default('.baton'),
    token: z.string().min(1).optional(),
    logLevel: logLevel.default('info'),
    /**
     * The components call each other in memory (rpc.ts); false: over h2c, as
     * separate processes do, to measure or debug the wire.
     */
    inProcessRpc: z.boolean().default(true),
    /** Component settings beyond the common ones. */
    controlplane: upSection(controlPlaneSchema, ['host', 'apiPort', 'dataDir', 'token']),
    dataplane: upSection(dataPlaneSchema, ['host', 'port', 'controlPlaneUrl', 'token', 'dataDir']),
    worker: upSection(workerSchema, ['host', 'controlPlaneUrl', 'token', 'dataDir']),
  })
  .strict();

export type ControlPlaneConfig = Readonly<z.output<typeof controlPlaneSchema>>;
export type DataPlaneConfig = Readonly<z.output<typeof dataPlaneSchema>>;
export type AsyncConfig = Readonly<z.output<typeof asyncSchema>>;
export type WorkerConfig = Readonly<z.output<typeof workerSchema>>;
export type UpConfig = Readonly<z.output<typeof upSchema>>;

/** Validates a config object against a schema, applies defaults, and freezes it. */
export function compileConfig<S extends z.ZodType>(schema: S, input: unknown, source = 'config'): Readonly<z.output<S>> {
  const parsed = schema.safeParse(input ?? {});
  if (!parsed.success) {
    const { message } = describeIssue(parsed.error);
    throw new BatonError('CONFIG_INVALID', `${source}: ${message}`);
  }
  return deepFreeze(parsed.data);
}

/** Reads a YAML config file into a plain object; validation happens in compileConfig. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(resolve(path), 'utf8');
  } catch (err) {
    throw new BatonError('CONFIG_INVALID', `${path}: cannot read: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new BatonError('CONFIG_INVALID', `${path}: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new BatonError('CONFIG_INVALID', `${path}: must be a mapping of keys to values`);
  }
  return doc as Record<string, unknown>;
}

/**
 * The host peers reach a component on. A component bound to a wildcard
 * address advertises the machine's first non-internal IPv4 address (or its
 * hostname), never loopback, so that nothing assumes one machine.
 */
export function advertisedHost(bindHost: string, advertise?: string): string {
  if (advertise) return advertise;
  if (bindHost !== '0.0.0.0' && bindHost !== '::') return bindHost;
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return hostname();
}

/** host:port with IPv6 hosts bracketed. */
export function joinHostPort(host: string, p: number): string {
  return host.includes(':') ? `[${host}]:${p}` : `${host}:${p}`;
}
