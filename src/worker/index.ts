// The worker daemon: it runs sandboxes for the control plane on one machine.
//
//   control plane ──WorkerService RPC──▶ service.ts ──▶ SandboxTable ──▶ runtime (process, ...)
//   control plane ◀──Register/Heartbeat/ReportSandboxFailure── Membership
//
// The control plane decides which sandboxes exist; the worker creates them
// (returning once each passes its readiness probe), deletes them (returning
// once nothing of them is left), lists them for a restarted control plane,
// and reports the ones that die unasked or stop answering their liveness
// probe. On disk it keeps the sandboxes' logs and, for the process and node
// runtimes, a ledger of the process groups it started (process-ledger.ts):
// a worker started on the same dataDir after one that died (SIGKILL, OOM)
// kills what the dead one left before it registers. Its RPC port also
// serves GET /health and GET /metrics.
//
// Lifecycle: INITIALIZED → RUNNING (create) → DRAINING (stop: every sandbox
// is deleted, SIGTERM then SIGKILL after stopGraceMs) → STOPPED, or FAILED
// when start-up or the drain fails. A child never outlives the worker: if the
// process exits without stop(), an 'exit' hook SIGKILLs every sandbox group.
import { mkdir } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import type { Registry } from 'prom-client';
import { WorkerService } from '../gen/baton/v1/worker_pb.js';
import { advertisedHost, joinHostPort, type WorkerConfig } from '../shared/config.js';
import { BatonError } from '../shared/errors.js';
import { componentId } from '../shared/ids.js';
import type { DualListener } from '../shared/listener.js';
import { createLogger, type Logger } from '../shared/logging.js';
import { createMetricsRegistry } from '../shared/metrics.js';
import { startRpcServer } from '../shared/rpc.js';
import { Membership, type Capacity } from './membership.js';
import { WorkerMetrics } from './metrics.js';
import { PortAllocator } from './ports.js';
import { probeHost } from './probe.js';
import { ProcessLedger } from './process-ledger.js';
import { createRuntimes, exitStatus, type SandboxExit, type SandboxRuntime } from './runtime.js';
import { SandboxTable, type SandboxInfo } from './sandboxes.js';
import { workerServiceImpl } from './service.js';

export type {
  RuntimeContext,
  RuntimeSandbox,
  SandboxExit,
  SandboxLatency,
  SandboxRuntime,
  SandboxStartRequest,
} from './runtime.js';
export { RUNTIME_FACTORIES } from './runtime.js';
export { EMULATED_NODE_CAPACITY, emulatedWorkerConfigs, startEmulatedWorkers, stopWorkers } from './emulation.js';
export type { SandboxInfo, SandboxPhase } from './sandboxes.js';
export type { Capacity } from './membership.js';

export type WorkerState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED' | 'FAILED';

export interface WorkerOptions {
  /** Defaults to a pino logger named "worker" at config.logLevel. */
  log?: Logger;
  /**
   * Node's process metrics in this worker's registry (default true). Workers
   * sharing a process (emulated nodes) carry them once.
   */
  processMetrics?: boolean;
}

/**
 * Every worker of this process that may have sandboxes. One 'exit' hook for
 * all of them kills their sandboxes, however many workers the process runs
 * (a hook each would trip Node's listener-leak warning past ten).
 */
const liveWorkers = new Set<Worker>();
let exitHookInstalled = false;

function killSandboxesOnExit(): void {
  for (const worker of liveWorkers) worker.killSandboxesNow();
}

export class Worker {
  readonly id: string;
  readonly config: WorkerConfig;
  /** This worker's Prometheus registry, served at GET /metrics on its RPC port. */
  readonly metrics: Registry;
  /** What the worker advertises: config.cpuMillis / memoryMb, or the machine's. */
  readonly capacity: Capacity;
  private currentState: WorkerState = 'INITIALIZED';
  private readonly log: Logger;
  private readonly dataDir: string;
  private readonly host: string;
  private readonly runtimes: ReadonlyMap<string, SandboxRuntime>;
  private readonly table: SandboxTable;
  private readonly ledger: ProcessLedger;
  private server: DualListener | undefined;
  private membership: Membership | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(config: WorkerConfig, options: WorkerOptions) {
    this.config = config;
    this.id = config.id ?? componentId('worker');
    this.log = options.log ?? createLogger('worker', { level: config.logLevel });
    this.dataDir = resolve(config.dataDir);
    this.host = advertisedHost(config.host, config.advertiseHost);
    this.capacity = {
      cpuMillis: config.cpuMillis || availableParallelism() * 1000,
      memoryMb: config.memoryMb || Math.floor(totalmem() / 1048576),
    };
    this.metrics = createMetricsRegistry('worker', { processMetrics: options.processMetrics ?? true });
    const workerMetrics = new WorkerMetrics(this.metrics);
    this.ledger = new ProcessLedger(this.dataDir, this.id, this.log);
    const built = createRuntimes({
      workerId: this.id,
      config,
      dataDir: this.dataDir,
      log: this.log,
      ports: new PortAllocator(config.host),
      ledger: this.ledger,
    });
    this.runtimes = built.runtimes;
    for (const [name, why] of built.missing) this.log.info({ runtime: name, reason: why }, 'runtime not offered');
    this.table = new SandboxTable({
      runtimes: this.runtimes,
      missingRuntimes: built.missing,
      metrics: workerMetrics,
      log: this.log,
      onUnexpectedExit: (sandbox, exit) => this.reportExit(sandbox, exit),
      liveness: {
        intervalMs: config.livenessIntervalMs,
        failureThreshold: config.livenessFailureThreshold,
        timeoutMs: config.livenessTimeoutMs,
        host: probeHost(config.host),
        skipRuntimes: new Set(['emulated']),
      },
    });
  }

  /** Starts a worker: its RPC server at once, its registration with the control plane in the background. */
  static async create(config: WorkerConfig, options: WorkerOptions = {}): Promise<Worker> {
    const worker = new Worker(config, options);
    try {
      await worker.start();
    } catch (err) {
      worker.currentState = 'FAILED';
      worker.killSandboxesNow();
      liveWorkers.delete(worker);
      for (const runtime of worker.runtimes.values()) await runtime.close?.().catch(() => undefined);
      await worker.server?.close(0);
      throw err;
    }
    return worker;
  }

  get state(): WorkerState {
    return this.currentState;
  }

  /** The port of the RPC server (the bound one when config.rpcPort is 0). */
  get port(): number {
    return this.server?.port ?? 0;
  }

  /** host:port peers reach the RPC server on. */
  get address(): string {
    return joinHostPort(this.host, this.port);
  }

  /** Kills every sandbox at once and synchronously: the last resort when the process exits without stop(). */
  killSandboxesNow(): void {
    for (const runtime of this.runtimes.values()) runtime.killAllNow();
  }

  /** Deletes every sandbox, stops heartbeats and closes the RPC server. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  private async start(): Promise<void> {
    const { config, log } = this;
    const sandboxDir = join(this.dataDir, 'sandboxes');
    try {
      await mkdir(sandboxDir, { recursive: true });
    } catch (err) {
      throw new BatonError('CONFIG_INVALID', `dataDir: cannot create ${sandboxDir}: ${(err as Error).message}`, { cause: err });
    }
    liveWorkers.add(this);
    if (!exitHookInstalled) {
      process.on('exit', killSandboxesOnExit);
      exitHookInstalled = true;
    }
    // What a worker that died on this dataDir left running (its ids may differ from ours), before anything starts.
    await this.ledger.sweep();
    // Pools, bridges and the leftovers of an earlier run, before the control plane can ask for anything.
    for (const runtime of this.runtimes.values()) await runtime.start?.();
    try {
      this.server = await startRpcServer({
        host: config.host,
        port: config.rpcPort,
        log,
        token: config.token,
        metrics: this.metrics,
        health: () => ({
          ok: this.currentState === 'RUNNING',
          detail: { state: this.currentState, workerId: this.id, sandboxes: this.table.size, controlPlane: this.membership?.state },
        }),
        routes: (router) => router.service(WorkerService, workerServiceImpl({ workerId: this.id, sandboxHost: this.host, table: this.table })),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
        throw new BatonError('CONFIG_INVALID', `rpcPort: cannot listen on ${joinHostPort(config.host, config.rpcPort)}: ${code}`, {
          cause: err,
        });
      }
      throw err;
    }
    this.membership = new Membership({
      controlPlaneUrl: config.controlPlaneUrl,
      token: config.token,
      workerId: this.id,
      address: this.address,
      runtimes: [...this.runtimes.keys()],
      capacity: this.capacity,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      sandboxCount: () => this.table.size,
      log,
    });
    this.membership.start();
    this.currentState = 'RUNNING';
    log.info(
      { workerId: this.id, address: this.address, controlPlaneUrl: config.controlPlaneUrl, runtimes: [...this.runtimes.keys()], capacity: this.capacity },
      'worker started',
    );
  }

  private async drain(): Promise<void> {
    if (this.currentState === 'RUNNING') this.currentState = 'DRAINING';
    // Every step runs even when one before it failed (a control plane already
    // gone, say): a stop that gave up half-way would leave sandboxes running.
    let firstError: Error | undefined;
    const step = async (what: string, run: () => Promise<unknown> | undefined): Promise<void> => {
      try {
        await run();
      } catch (err) {
        firstError ??= err instanceof Error ? err : new Error(String(err));
        this.log.error({ err, workerId: this.id }, `stopping: ${what} failed; going on`);
      }
    };
    await step('leaving the control plane', () => this.membership?.stop());
    await step('deleting the sandboxes', () => this.table.deleteAll());
    for (const runtime of this.runtimes.values()) await step(`closing the ${runtime.name} runtime`, () => runtime.close?.());
    // The last net: a process group this worker recorded but no longer knows of (a spawn the
    // sandbox table lost track of) would outlive a stop that otherwise went well.
    await step('killing what the ledger still records', () => this.ledger.killOwn());
    await step('closing the RPC server', () => this.server?.close(1000));
    liveWorkers.delete(this);
    if (firstError !== undefined) {
      this.currentState = 'FAILED';
      this.log.error({ err: firstError, workerId: this.id }, 'worker failed to stop cleanly');
      throw firstError;
    }
    this.currentState = 'STOPPED';
    this.log.info({ workerId: this.id }, 'worker stopped');
  }

  private reportExit(sandbox: SandboxInfo, exit: SandboxExit): void {
    const membership = this.membership;
    if (!membership) return;
    void membership.reportSandboxFailure({
      workerId: this.id,
      sandboxId: sandbox.sandboxId,
      function: sandbox.function,
      reason: exit.reason ?? 'exited',
      message: exit.message,
      exitCode: exitStatus(exit),
      signal: exit.signal ?? '',
    });
  }
}
