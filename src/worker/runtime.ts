// The runtime interface: how a worker turns a function spec into a running,
// ready sandbox and back into nothing. The worker's sandbox table owns ids,
// idempotency, metrics and failure reports; a runtime owns only the mechanics
// of one kind of sandbox (a process, a runc container, an emulated one).
//
// Adding a runtime means adding a file under runtimes/ and an entry in
// RUNTIME_FACTORIES below; the worker advertises every registered name to the
// control plane and refuses specs naming any other with UNSUPPORTED_RUNTIME.
import { constants as osConstants } from 'node:os';
import type { WorkerConfig } from '../shared/config.js';
import { BatonError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import type { FunctionSpec } from '../shared/spec.js';
import type { PortAllocator } from './ports.js';
import type { ProcessLedger } from './process-ledger.js';
import { ChainRuntime } from './runtimes/chain.js';
import { EmulatedRuntime } from './runtimes/emulated.js';
import { NodeRuntime } from './runtimes/node.js';
import { OciRuntime, ociUnavailable } from './runtimes/oci.js';
import { ProcessRuntime, type ProcessRuntimeOptions } from './runtimes/process.js';

/**
 * Where the time of one sandbox creation went on the worker, in
 * microseconds. A stage a runtime does not have is 0.
 */
export interface SandboxLatency {
  readonly portAllocationUs: number;
  /** Preparing before the start: an OCI bundle and "runc create", taking a pooled process. */
  readonly runtimeCreateUs: number;
  /** Network namespace, veth, DNAT. */
  readonly networkUs: number;
  /** Starting the sandbox: spawn, "runc start", a pooled runtime loading the function. */
  readonly spawnUs: number;
  readonly readinessProbeUs: number;
  readonly totalUs: number;
  /** The sandbox came ready-made, or nearly, from a pool (a pre-created container, a pre-booted runtime). */
  readonly pooled: boolean;
}

export const EMPTY_LATENCY: SandboxLatency = Object.freeze({
  portAllocationUs: 0,
  runtimeCreateUs: 0,
  networkUs: 0,
  spawnUs: 0,
  readinessProbeUs: 0,
  totalUs: 0,
  pooled: false,
});

/** How a sandbox's process ended. */
export interface SandboxExit {
  /** The exit code, or null when a signal ended it. */
  readonly exitCode: number | null;
  /** The signal's name (SIGKILL, ...), or null when it exited by itself. */
  readonly signal: string | null;
  /** One line for humans: how it ended and the tail of its output. */
  readonly message: string;
  /** Why, when the runtime knows more than the status: `oom` for a kill by the memory limit. */
  readonly reason?: 'exited' | 'oom' | 'unresponsive';
}

export interface SandboxStartRequest {
  readonly sandboxId: string;
  readonly spec: FunctionSpec;
  /** Aborted when the sandbox is deleted while it starts: the runtime stops it and rejects. */
  readonly signal: AbortSignal;
}

/** A ready sandbox, as a runtime hands it to the worker. */
export interface RuntimeSandbox {
  readonly sandboxId: string;
  /** The host port the sandbox serves HTTP on, bound on the worker's host. */
  readonly port: number;
  /** The process (group leader) id; 0 when the runtime has no process. */
  readonly pid: number;
  readonly latency: SandboxLatency;
  /**
   * Settles once, when the sandbox ends for any reason (never rejects). The
   * worker watches it to report sandboxes that die without being deleted.
   */
  readonly exited: Promise<SandboxExit>;
  /**
   * Stops the sandbox: SIGTERM, the grace period, SIGKILL. Resolves once
   * nothing of it is left. Idempotent; never rejects.
   */
  stop(): Promise<void>;
}

export interface SandboxRuntime {
  readonly name: string;
  /**
   * Starts a sandbox and resolves once it passes its readiness probe. Rejects
   * with a BatonError (SANDBOX_START_FAILED, UNAVAILABLE when aborted) and
   * leaves nothing behind when it cannot.
   */
  create(request: SandboxStartRequest): Promise<RuntimeSandbox>;
  /**
   * Kills every sandbox this runtime started, starting or ready, at once and
   * synchronously: the last resort when the worker process exits without stop().
   */
  killAllNow(): void;
  /**
   * Prepares what the runtime keeps ahead (pools, a bridge, namespaces) and
   * cleans what an earlier run of this worker left. The worker awaits it
   * before it registers.
   */
  start?(): Promise<void>;
  /**
   * Releases everything the runtime holds besides sandboxes (pools, network,
   * state directories). The worker calls it after every sandbox is deleted.
   */
  close?(): Promise<void>;
}

/** One runtime as the worker knows it before building it. */
export interface RuntimeFactory {
  /** Why the runtime cannot work on this machine (not root, runc missing), or undefined when it can. */
  unavailable?(context: RuntimeContext): string | undefined;
  create(context: RuntimeContext): SandboxRuntime;
}

/** What every runtime is built from. */
export interface RuntimeContext {
  /** The worker's id: names what the runtime makes (containers, cgroups), so that workers sharing a machine never touch each other's. */
  readonly workerId: string;
  readonly config: WorkerConfig;
  /** config.dataDir, made absolute. */
  readonly dataDir: string;
  readonly log: Logger;
  readonly ports: PortAllocator;
  /** Records the process groups the process and node runtimes spawn (process-ledger.ts). */
  readonly ledger?: ProcessLedger;
}

/** What the `process` runtime, and the `chain` runtime built on it, are made from. */
function processOptions(c: RuntimeContext): ProcessRuntimeOptions {
  return {
    host: c.config.host,
    dataDir: c.dataDir,
    startTimeoutMs: c.config.sandboxStartTimeoutMs,
    stopGraceMs: c.config.stopGraceMs,
    log: c.log,
    ports: c.ports,
    ledger: c.ledger,
  };
}

export const RUNTIME_FACTORIES: Readonly<Record<string, RuntimeFactory>> = Object.freeze({
  process: {
    create: (c: RuntimeContext) => new ProcessRuntime(processOptions(c)),
  },
  chain: {
    create: (c: RuntimeContext) =>
      new ChainRuntime({ ...processOptions(c), nodePath: c.config.node.nodePath ?? process.execPath }),
  },
  node: {
    unavailable: (c: RuntimeContext) => NodeRuntime.unavailable(c.config.node.nodePath ?? process.execPath),
    create: (c: RuntimeContext) =>
      new NodeRuntime({
        workerId: c.workerId,
        host: c.config.host,
        dataDir: c.dataDir,
        startTimeoutMs: c.config.sandboxStartTimeoutMs,
        stopGraceMs: c.config.stopGraceMs,
        poolSize: c.config.node.poolSize,
        nodePath: c.config.node.nodePath ?? process.execPath,
        log: c.log,
        ledger: c.ledger,
      }),
  },
  oci: {
    unavailable: (c: RuntimeContext) => ociUnavailable(c.config.oci.runc),
    create: (c: RuntimeContext) =>
      new OciRuntime({
        workerId: c.workerId,
        host: c.config.host,
        dataDir: c.dataDir,
        startTimeoutMs: c.config.sandboxStartTimeoutMs,
        stopGraceMs: c.config.stopGraceMs,
        log: c.log,
        ports: c.ports,
        oci: c.config.oci,
      }),
  },
  emulated: {
    // Opt-in: a worker that answers for functions without running them must never be one by accident.
    unavailable: (c: RuntimeContext) =>
      c.config.runtimes?.includes('emulated') ? undefined : "it is opt-in: the worker's runtimes must name it (baton worker --emulate N does)",
    create: (c: RuntimeContext) =>
      new EmulatedRuntime({
        host: c.config.host,
        startDelay: c.config.emulation.startDelay,
        startTimeoutMs: c.config.sandboxStartTimeoutMs,
        stopGraceMs: c.config.stopGraceMs,
        log: c.log,
      }),
  },
});

export interface BuiltRuntimes {
  readonly runtimes: ReadonlyMap<string, SandboxRuntime>;
  /** Runtimes this worker does not offer, with why: an UNSUPPORTED_RUNTIME error quotes it. */
  readonly missing: ReadonlyMap<string, string>;
}

/**
 * Builds the runtimes the worker offers: config.runtimes, or every
 * registered runtime that works here. Naming one that cannot work is a
 * CONFIG_INVALID error that says why.
 */
export function createRuntimes(context: RuntimeContext): BuiltRuntimes {
  const runtimes = new Map<string, SandboxRuntime>();
  const missing = new Map<string, string>();
  const wanted = context.config.runtimes;
  for (const [name, factory] of Object.entries(RUNTIME_FACTORIES)) {
    if (wanted && !wanted.includes(name as (typeof wanted)[number])) {
      missing.set(name, 'this worker is configured without it (runtimes)');
      continue;
    }
    const why = factory.unavailable?.(context);
    if (why !== undefined) {
      if (wanted) throw new BatonError('CONFIG_INVALID', `runtimes: "${name}" cannot run on this machine: ${why}`);
      missing.set(name, why);
      continue;
    }
    runtimes.set(name, factory.create(context));
  }
  for (const name of wanted ?? []) {
    if (!RUNTIME_FACTORIES[name]) throw new BatonError('CONFIG_INVALID', `runtimes: "${name}" is not built into this worker`);
  }
  return { runtimes, missing };
}

/** The exit status to report: the code, or the shell's 128 + signal number for a signalled exit. */
export function exitStatus(exit: Pick<SandboxExit, 'exitCode' | 'signal'>): number {
  if (exit.exitCode !== null) return exit.exitCode;
  const number = exit.signal ? (osConstants.signals as Record<string, number>)[exit.signal] : undefined;
  return number === undefined ? -1 : 128 + number;
}
