// The worker's sandbox table: every sandbox this worker holds, keyed by the
// id the control plane chose. It makes create and delete idempotent, runs
// them through the runtime the spec names, keeps the metrics, and watches
// ready sandboxes so one that dies unasked is forgotten and reported.
//
// A sandbox moves STARTING → READY → STOPPING → (forgotten). A failed start
// is forgotten at once (the error goes back to the caller); a delete during
// STARTING aborts the start, and a ready sandbox that exits by itself goes
// straight to forgotten. State lives only here, in memory: after a control
// plane restart, ListSandboxes is how it learns what runs (DESIGN.md, principle 1).
import type { Logger } from '../shared/logging.js';
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
  /** Called once for each ready sandbox that exits without being deleted, after it is forgotten. */
  readonly onUnexpectedExit: (sandbox: SandboxInfo, exit: SandboxExit) => void;
}

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
}

export class SandboxTable {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

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
    await Promise.all([...this.entries.keys()].map((id) => this.delete(id)));
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
