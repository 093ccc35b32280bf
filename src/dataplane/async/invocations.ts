// Async invocations on a data plane: the submitter (AsyncSubmitter), the
// dispatcher that runs queued invocations, and the sweep that deletes
// expired results.
//
//   submit ──durable add──▶ store (queued) ──▶ 202 {id}
//   dispatcher: claim ≤ free slots (queued → running, attempts+1)
//        ──▶ Attempt on the invocation path (token or cold-start queue, load balancing)
//        ──▶ policy.nextStep: finish (succeeded | failed, expires after resultTtlMs)
//                             or requeue with back-off (5xx, crash, timeout)
//   sweep every sweepIntervalMs: delete finished invocations past expiresAt
//
// The dispatcher claims only once the control plane's state has arrived
// (the data plane is synced), so after a restart invocations wait for their
// functions instead of failing as unknown. It wakes on a submit, when a
// back-off ends, and at least every POLL_MS while anything is unfinished.
//
// Stopping: nothing new is claimed; attempts still running get the data
// plane's grace period. An attempt that ends retryable while stopping (the
// shutdown's 503, a cut connection) is not written: it stays `running` in
// the store and the next start puts it back in the queue without counting it.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AsyncConfig } from '../../shared/config.js';
import { BatonError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { AsyncInvocationRequest, AsyncSubmitter } from '../async-submitter.js';
import type { Proxy } from '../proxy.js';
import { Attempt, errorResult } from './attempt.js';
import { nextStep } from './policy.js';
import type { AsyncQueueStore, InvocationResult, StoredInvocation } from './queue-store.js';
import { RedisQueueStore } from './store-redis.js';
import { SqliteQueueStore } from './store-sqlite.js';

/** The dispatcher looks for due invocations at least this often while any is unfinished. */
const POLL_MS = 1000;
/** Answers the dispatcher may not change by retrying. */
const FINAL_CODES = new Set(['RESULT_TOO_LARGE', 'FUNCTION_NOT_FOUND']);

export interface AsyncInvocationsDeps {
  proxy: Proxy;
  /** Whether the control plane's state has arrived: until then nothing is claimed. */
  synced: () => boolean;
  /** Response bodies over this fail with RESULT_TOO_LARGE (the data plane's maxBodyBytes). */
  maxResultBytes: number;
  log: Logger;
  /** The data plane's Prometheus registry: the async gauges and counter go there. */
  registry?: Registry;
}

type Outcome = 'accepted' | 'rejected_full' | 'succeeded' | 'failed' | 'retried';

/**
 * Opens the configured queue store: `<dataDir>/dataplane-async.db` unless a
 * path or Redis is set; in memory (not durable, with a warning) when there is
 * neither a path nor a dataDir.
 */
export async function openQueueStore(config: AsyncConfig, dataDir: string | undefined, log: Logger): Promise<AsyncQueueStore> {
  const s = config.store;
  if (s.type === 'sqlite') {
    const path = s.path ?? (dataDir === undefined ? undefined : join(dataDir, 'dataplane-async.db'));
    if (path === undefined) log.warn('async invocations are kept in memory and lost on restart: set dataDir or async.store.path to make them durable');
    return SqliteQueueStore.open(path ?? ':memory:');
  }
  return RedisQueueStore.open({
    url: s.url,
    keyPrefix: s.keyPrefix,
    fsync: s.fsync,
    connectTimeoutMs: s.connectTimeoutMs,
    commandTimeoutMs: s.commandTimeoutMs,
    log,
  });
}

export class AsyncInvocations implements AsyncSubmitter {
  /** Queued plus running, as counted here (this data plane alone writes its store). */
  private unfinished: number;
  /** Attempts in progress. */
  private running = 0;
  private claiming = false;
  /** pump() was called while a claim was out: claim again when it returns (it may have missed a new invocation). */
  private pumpAgain = false;
  /** The last claim failed (the store is unreachable): logged once until one succeeds. */
  private claimFailing = false;
  private stopping = false;
  private closed: Promise<void> | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;
  private wakeAt = Infinity;
  private idleWaiters: (() => void)[] = [];
  private readonly outcomes: Counter<'outcome'> | null = null;

  private constructor(
    private readonly store: AsyncQueueStore,
    private readonly config: AsyncConfig,
    private readonly deps: AsyncInvocationsDeps,
    unfinished: number,
  ) {
    this.unfinished = unfinished;
    const registry = deps.registry;
    if (registry === undefined) return;
    // Read at scrape time: nothing on the invocation path touches prom-client for them.
    const unfinishedGauge: Gauge = new Gauge({
      name: 'baton_dataplane_async_unfinished',
      help: 'Async invocations queued or running on this data plane.',
      registers: [registry],
      collect: () => unfinishedGauge.set(this.unfinished),
    });
    const runningGauge: Gauge = new Gauge({
      name: 'baton_dataplane_async_running',
      help: 'Async invocation attempts in progress.',
      registers: [registry],
      collect: () => runningGauge.set(this.running),
    });
    this.outcomes = new Counter({
      name: 'baton_dataplane_async_invocations_total',
      help: 'Async invocations by outcome: accepted, rejected_full (429), and per attempt succeeded, failed (final) or retried.',
      labelNames: ['outcome'],
      registers: [registry],
    });
  }

  private count(outcome: Outcome): void {
    this.outcomes?.inc({ outcome });
  }

  /** Opens the store and puts back what a previous process left running. */
  static async open(store: AsyncQueueStore, config: AsyncConfig, deps: AsyncInvocationsDeps): Promise<AsyncInvocations> {
    try {
      const recovered = await store.recover();
      const unfinished = await store.unfinished();
      deps.log.info({ store: store.kind, recovered, unfinished }, 'async invocations: queue opened');
      return new AsyncInvocations(store, config, deps, unfinished);
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  start(): void {
    this.pollTimer = setInterval(() => this.pump(), POLL_MS);
    this.pollTimer.unref();
    this.sweepTimer = setInterval(() => this.sweep(), this.config.sweepIntervalMs);
    this.sweepTimer.unref();
    this.pump();
  }

  // Submitting ---------------------------------------------------------------

  async submit(req: AsyncInvocationRequest): Promise<{ readonly id: string }> {
    if (this.stopping) throw new BatonError('UNAVAILABLE', 'the data plane is shutting down');
    const fn = this.deps.proxy.lookup(req.function);
    if (fn === undefined) throw new BatonError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(req.function)}`);
    const max = this.config.maxBodyBytes;
    if (req.body.byteLength > max) {
      throw new BatonError('BODY_TOO_LARGE', `async request body of ${req.body.byteLength} bytes is over the limit of ${max}`);
    }
    if (this.unfinished >= this.config.maxQueued) {
      this.count('rejected_full');
      const retryAfterMs = this.config.retryAfterMs;
      throw new BatonError('ASYNC_QUEUE_FULL', `the data plane holds ${this.unfinished} unfinished async invocations (async.maxQueued)`, {
        details: { retryAfterMs },
      });
    }
    const id = randomUUID();
    this.unfinished++;
    try {
      await this.store.add({ id, function: fn.name, method: req.method, path: req.path, headers: req.headers, body: req.body, submittedAt: Date.now() });
    } catch (err) {
      this.unfinished--;
      throw err;
    }
    this.count('accepted');
    this.pump();
    return { id };
  }

  /** The invocation, or undefined when unknown or expired (an expired one may not be swept yet). */
  async get(id: string): Promise<StoredInvocation | undefined> {
    const inv = await this.store.get(id);
    if (inv === undefined || (inv.expiresAt !== null && inv.expiresAt <= Date.now())) return undefined;
    return inv;
  }

  /** The stored invocation even when expired but not yet swept (tests, debugging). */
  inspect(id: string): Promise<StoredInvocation | undefined> {
    return this.store.get(id);
  }

  // Dispatching --------------------------------------------------------------

  /** Claims as many due invocations as there are free slots and starts them. */
  pump(): void {
    if (this.claiming) {
      this.pumpAgain = true;
      return;
    }
    if (this.stopping || this.unfinished === 0 || !this.deps.synced()) return;
    const free = this.config.concurrency - this.running;
    if (free <= 0) return;
    this.claiming = true;
    this.pumpAgain = false;
    this.store.claim(free, Date.now()).then(
      (claimed) => {
        this.claiming = false;
        if (this.claimFailing) this.deps.log.warn('async invocations: claiming from the queue works again');
        this.claimFailing = false;
        for (const inv of claimed) this.run(inv);
        // A full batch (there may be more due), or a submit or a freed slot meanwhile.
        if (claimed.length === free || this.pumpAgain) this.pump();
      },
      (err: unknown) => {
        this.claiming = false;
        // Logged once per outage, not on every poll; the poll keeps trying.
        if (!this.claimFailing) this.deps.log.error({ err }, 'async invocations: claiming from the queue failed; retrying every second');
        this.claimFailing = true;
      },
    );
  }

  private run(inv: StoredInvocation): void {
    this.running++;
    const fn = this.deps.proxy.lookup(inv.function);
    if (fn === undefined) {
      this.settle(inv, errorResult(404, 'FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(inv.function)}`));
      return;
    }
    new Attempt(this.deps.proxy, fn, inv, this.deps.maxResultBytes, (result) => this.settle(inv, result)).start();
  }

  private settle(inv: StoredInvocation, result: InvocationResult): void {
    const final = result.errorCode !== undefined && FINAL_CODES.has(result.errorCode);
    const step = nextStep(result.status, inv.attempts, this.config, final);
    let write: Promise<void> | null = null;
    if (this.stopping && result.status >= 500 && !final) {
      // Most likely cut by the shutdown itself: leave it running, so the next
      // start queues it again without counting this attempt (even a last one).
    } else if (step.kind === 'retry') {
      write = this.store.requeue(inv.id, Date.now() + step.delayMs, result);
    } else {
      const now = Date.now();
      write = this.store.finish(inv.id, step.kind, result, now, now + this.config.resultTtlMs);
    }
    const log = this.deps.log;
    if (write === null) {
      this.attemptEnded();
      return;
    }
    write.then(
      () => {
        this.count(step.kind === 'retry' ? 'retried' : step.kind);
        if (step.kind === 'retry') {
          log.debug({ id: inv.id, function: inv.function, attempts: inv.attempts, status: result.status, delayMs: step.delayMs }, 'async invocation: retrying');
          this.wakeIn(step.delayMs);
        } else {
          this.unfinished--;
          log.debug({ id: inv.id, function: inv.function, attempts: inv.attempts, status: result.status, state: step.kind }, 'async invocation finished');
        }
        this.attemptEnded();
      },
      (err: unknown) => {
        // It stays `running` in the store: the next start runs it again.
        log.error({ err, id: inv.id }, 'async invocations: recording an attempt failed; the invocation runs again after a restart');
        this.attemptEnded();
      },
    );
  }

  private attemptEnded(): void {
    this.running--;
    if (this.running === 0 && this.idleWaiters.length > 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
    this.pump();
  }

  /** Pumps when a back-off ends (one timer, for the earliest). */
  private wakeIn(ms: number): void {
    const at = Date.now() + ms;
    if (this.wakeTimer !== null && this.wakeAt <= at) return;
    if (this.wakeTimer !== null) clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.wakeAt = Infinity;
      this.pump();
    }, ms);
    this.wakeTimer.unref();
  }

  // Expiry -------------------------------------------------------------------

  /** Deletes expired results now; resolves to how many. */
  async sweep(): Promise<number> {
    if (this.stopping) return 0;
    try {
      const n = await this.store.sweep(Date.now());
      if (n > 0) this.deps.log.debug({ deleted: n }, 'async invocations: expired results deleted');
      return n;
    } catch (err) {
      this.deps.log.warn({ err }, 'async invocations: the expiry sweep failed; trying again next time');
      return 0;
    }
  }

  // Lifecycle ----------------------------------------------------------------

  /** Claims nothing more, gives running attempts up to `graceMs`, then closes the store. */
  stop(graceMs: number): Promise<void> {
    this.closed ??= this.doStop(graceMs);
    return this.closed;
  }

  private async doStop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const t of [this.pollTimer, this.sweepTimer, this.wakeTimer]) if (t !== null) clearTimeout(t);
    if (this.running > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.store.close();
  }
}
