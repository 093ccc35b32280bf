// The worker's sandbox table: every sandbox this worker holds, keyed by the
// id the control plane chose. It makes create and delete idempotent, runs
// them through the runtime the spec names, keeps the metrics, and watches
// ready sandboxes so one that dies unasked is forgotten and reported.
//
// A sandbox moves STARTING → READY → STOPPING → (forgotten). A failed start
// is forgotten at once (the error goes back to the caller); a delete during
// STARTING aborts the start, and a ready sandbox that exits by itself goes
// straight to forgotten. A ready sandbox that stops answering its liveness
// probe is forgotten, reported `unresponsive` and killed (see below). State lives only here, in memory: after a control
// plane restart, ListSandboxes is how it learns what runs (DESIGN.md, principle 1).
import type { Logger } from '../shared/logging.js';
import { probeOnce } from './probe.js';
import { BatonError, toBatonError } from '../shared/errors.js';
import type { FunctionSpec } from '../shared/spec.js';
import type { WorkerMetrics } from './metrics.js';
import type { RuntimeSandbox, SandboxExit, SandboxLatency, SandboxRuntime } from './runtime.js';

export type SandboxPhase = 'STARTING' | 'READY' | 'STOPPING';

/** What the table tells about one sandbox. */
export interface SandboxInfo {
  readonly sandboxId: string;
  readonly function: string;
  readonly functionRevision: bigint;
  readonly runtime: string;
  readonly state: SandboxPhase;
  /** 0 until the sandbox is ready. */
  readonly pid: number;
  /** 0 until the sandbox is ready. */
  readonly port: number;
  readonly createdAtMs: number;
  readonly latency: SandboxLatency | undefined;
}

export interface SandboxTableOptions {
  readonly runtimes: ReadonlyMap<string, SandboxRuntime>;
  /** Runtimes this worker does not offer, with why. */
  readonly missingRuntimes?: ReadonlyMap<string, string>;
  readonly metrics: WorkerMetrics;
  readonly log: Logger;
  /** Called once for each ready sandbox that exits without being deleted, or is killed as unresponsive, after it is forgotten. */
  readonly onUnexpectedExit: (sandbox: SandboxInfo, exit: SandboxExit) => void;
  readonly liveness?: LivenessOptions;
}

/** The liveness probe of ready sandboxes: GET /health on their port (config: liveness*). */
export interface LivenessOptions {
  /** 0 disables the probe. */
  readonly intervalMs: number;
  readonly failureThreshold: number;
  readonly timeoutMs: number;
  /** Where the sandboxes' ports are reached (probeHost of the worker's bind host). */
  readonly host: string;
  /** Runtimes whose sandboxes are not probed: `emulated` ones live inside the worker. */
  readonly skipRuntimes: ReadonlySet<string>;
}

/**
 * The liveness timer ticks this often at most: each tick probes the sandboxes
 * whose turn has come. One timer for the whole table, and each sandbox's first
 * probe is placed at random within its first interval, so thousands of
 * sandboxes are probed spread over the interval, not in one burst.
 */
const LIVENESS_TICK_MAX_MS = 250;
/** Probes in flight at once, at most: a table of thousands never opens thousands of sockets at once. */
const LIVENESS_MAX_IN_FLIGHT = 64;

interface Entry {
  readonly sandboxId: string;
  readonly spec: FunctionSpec;
  readonly revision: bigint;
  readonly runtime: SandboxRuntime;
  readonly createdAtMs: number;
  readonly abort: AbortController;
  state: SandboxPhase;
  started: Promise<RuntimeSandbox>;
  handle: RuntimeSandbox | undefined;
  /** Counted in the ready gauge. */
  counted: boolean;
  deleted: Promise<void> | undefined;
  /** performance.now() of the next liveness probe. */
  livenessDueMs: number;
  livenessFailures: number;
  probing: boolean;
}

export class SandboxTable {
  private readonly entries = new Map<string, Entry>();
  private closed = false;
  private livenessTimer: NodeJS.Timeout | undefined;
  private probesInFlight = 0;
  /** Stops of sandboxes killed as unresponsive: deleteAll() waits for them too. */
  private readonly killing = new Set<Promise<void>>();

  constructor(private readonly options: SandboxTableOptions) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Creates a sandbox and resolves once it is ready. A second create for an id
   * that is starting or ready resolves with the same sandbox.
   */
  async create(sandboxId: string, spec: FunctionSpec, revision: bigint, runtimeName: string): Promise<SandboxInfo> {
    const existing = this.entries.get(sandboxId);
    if (existing) {
      if (existing.spec.name !== spec.name) {
        throw new BatonError(
          'INVALID_REQUEST',
          `sandbox ${sandboxId} already exists for function "${existing.spec.name}", not "${spec.name}"`,
        );
      }
      if (existing.state === 'STOPPING') throw new BatonError('UNAVAILABLE', `sandbox ${sandboxId} is being deleted`);
      await existing.started;
      return info(existing);
    }
    if (this.closed) throw new BatonError('UNAVAILABLE', 'the worker is stopping and creates no sandboxes');
    const runtime = this.options.runtimes.get(runtimeName);
    if (!runtime) {
      const why = this.options.missingRuntimes?.get(runtimeName);
      throw new BatonError(
        'UNSUPPORTED_RUNTIME',
        `function "${spec.name}" needs runtime "${runtimeName}", which this worker does not have` +
          `${why ? `: ${why}` : ''} (it has: ${[...this.options.runtimes.keys()].join(', ')})`,
      );
    }
    const entry: Entry = {
      sandboxId,
      spec,
      revision,
      runtime,
      createdAtMs: Date.now(),
      abort: new AbortController(),
      state: 'STARTING',
      // Replaced on the next line; start() needs the entry itself.
      started: undefined as unknown as Promise<RuntimeSandbox>,
      handle: undefined,
      counted: false,
      deleted: undefined,
      livenessDueMs: 0,
      livenessFailures: 0,
      probing: false,
    };
    entry.started = this.start(entry);
    this.entries.set(sandboxId, entry);
    await entry.started;
    return info(entry);
  }

  /** Deletes a sandbox and resolves once it is gone. Unknown ids succeed. */
  delete(sandboxId: string): Promise<void> {
    const entry = this.entries.get(sandboxId);
    if (!entry) return Promise.resolve();
    entry.deleted ??= this.stop(entry);
    return entry.deleted;
  }

  list(): SandboxInfo[] {
    return [...this.entries.values()].map(info);
  }

  /** Refuses further creates and deletes every sandbox, starting ones included. */
  async deleteAll(): Promise<void> {
    this.closed = true;
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    await Promise.all([...this.entries.keys()].map((id) => this.delete(id)));
    await Promise.all(this.killing);
  }

  private async start(entry: Entry): Promise<RuntimeSandbox> {
    const { metrics, log } = this.options;
    const began = performance.now();
    let handle: RuntimeSandbox;
    try {
      handle = await entry.runtime.create({ sandboxId: entry.sandboxId, spec: entry.spec, signal: entry.abort.signal });
    } catch (err) {
      if (this.entries.get(entry.sandboxId) === entry && entry.state !== 'STOPPING') this.entries.delete(entry.sandboxId);
      const e = toBatonError(err, 'SANDBOX_START_FAILED');
      const reason = typeof e.details?.reason === 'string' ? e.details.reason : e.code.toLowerCase();
      if (reason !== 'deleted') {
        metrics.createFailed(entry.spec.name, reason);
        log.warn({ sandboxId: entry.sandboxId, function: entry.spec.name, code: e.code, reason, err: e.message }, 'sandbox failed to start');
      }
      throw e;
    }
    entry.handle = handle;
    // Deleted while the probe passed: stop() has it from here.
    if (entry.state === 'STOPPING') return handle;
    entry.state = 'READY';
    entry.counted = true;
    const interval = this.options.liveness?.intervalMs ?? 0;
    entry.livenessDueMs = performance.now() + interval * (0.5 + Math.random());
    this.startLiveness();
    metrics.sandboxReady(entry.spec.name, entry.runtime.name, (performance.now() - began) / 1000);
    log.debug({ sandboxId: entry.sandboxId, function: entry.spec.name, pid: handle.pid, port: handle.port, latencyUs: handle.latency }, 'sandbox ready');
    void handle.exited.then((exit) => this.exitedUnasked(entry, exit));
    return handle;
  }

  private exitedUnasked(entry: Entry, exit: SandboxExit): void {
    if (entry.state !== 'READY' || this.entries.get(entry.sandboxId) !== entry) return;
    this.entries.delete(entry.sandboxId);
    this.uncount(entry);
    this.options.metrics.sandboxExited(entry.spec.name);
    this.options.log.warn(
      { sandboxId: entry.sandboxId, function: entry.spec.name, exitCode: exit.exitCode, signal: exit.signal },
      'sandbox exited without being deleted',
    );
    this.options.onUnexpectedExit(info(entry), exit);
  }

  /** Starts the table's one liveness timer, with the first ready sandbox. */
  private startLiveness(): void {
    const l = this.options.liveness;
    if (this.livenessTimer || this.closed || !l || l.intervalMs <= 0) return;
    const tickMs = Math.max(1, Math.min(LIVENESS_TICK_MAX_MS, Math.floor(l.intervalMs / 4)));
    this.livenessTimer = setInterval(() => this.probeDue(l), tickMs);
    this.livenessTimer.unref();
  }

  /** Starts the liveness probes that are due, up to LIVENESS_MAX_IN_FLIGHT at once. */
  private probeDue(l: LivenessOptions): void {
    if (this.closed) return;
    const now = performance.now();
    for (const entry of this.entries.values()) {
      if (this.probesInFlight >= LIVENESS_MAX_IN_FLIGHT) return;
      if (entry.state !== 'READY' || entry.probing || entry.livenessDueMs > now || !entry.handle) continue;
      if (l.skipRuntimes.has(entry.runtime.name)) continue;
      void this.probeLiveness(entry, entry.handle, l);
    }
  }

  private async probeLiveness(entry: Entry, handle: RuntimeSandbox, l: LivenessOptions): Promise<void> {
    entry.probing = true;
    this.probesInFlight += 1;
    let result;
    try {
      result = await probeOnce(l.host, handle.port, l.timeoutMs);
    } finally {
      entry.probing = false;
      this.probesInFlight -= 1;
    }
    entry.livenessDueMs = performance.now() + l.intervalMs;
    if (entry.state !== 'READY' || this.entries.get(entry.sandboxId) !== entry) return;
    if (result === 'ready') {
      entry.livenessFailures = 0;
      return;
    }
    entry.livenessFailures += 1;
    this.options.log.debug({ sandboxId: entry.sandboxId, result, failures: entry.livenessFailures }, 'liveness probe failed');
    if (entry.livenessFailures < l.failureThreshold) return;
    const message =
      `did not answer GET /health on ${l.host}:${handle.port} ${entry.livenessFailures} times in a row ` +
      `(last: ${result}; livenessIntervalMs ${l.intervalMs}, livenessTimeoutMs ${l.timeoutMs}) and was killed`;
    this.killUnresponsive(entry, handle, message);
  }

  /**
   * Forgets a sandbox that stopped answering and reports it at once, so the
   * data planes stop routing to it while it is being killed.
   */
  private killUnresponsive(entry: Entry, handle: RuntimeSandbox, message: string): void {
    this.entries.delete(entry.sandboxId);
    entry.state = 'STOPPING';
    this.uncount(entry);
    this.options.metrics.sandboxExited(entry.spec.name);
    this.options.log.warn({ sandboxId: entry.sandboxId, function: entry.spec.name, pid: handle.pid, port: handle.port, err: message }, 'sandbox unresponsive');
    this.options.onUnexpectedExit(info(entry), { exitCode: null, signal: null, message, reason: 'unresponsive' });
    const stopping = handle.stop();
    entry.deleted = stopping;
    this.killing.add(stopping);
    void stopping.finally(() => this.killing.delete(stopping));
  }

  private async stop(entry: Entry): Promise<void> {
    entry.state = 'STOPPING';
    entry.abort.abort();
    // A start that is aborted stops its own process before it rejects.
    const handle = await entry.started.catch(() => undefined);
    if (handle) await handle.stop();
    if (this.entries.get(entry.sandboxId) === entry) this.entries.delete(entry.sandboxId);
    this.uncount(entry);
  }

  private uncount(entry: Entry): void {
    if (!entry.counted) return;
    entry.counted = false;
    this.options.metrics.sandboxGone(entry.spec.name);
  }
}

function info(entry: Entry): SandboxInfo {
  return {
    sandboxId: entry.sandboxId,
    function: entry.spec.name,
    functionRevision: entry.revision,
    runtime: entry.runtime.name,
    state: entry.state,
    pid: entry.handle?.pid ?? 0,
    port: entry.handle?.port ?? 0,
    createdAtMs: entry.createdAtMs,
    latency: entry.handle?.latency,
  };
}
