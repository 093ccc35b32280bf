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
import type { Logger } from '../shared/logging.js';
import type { FunctionSpec } from '../shared/spec.js';
import type { PortAllocator } from './ports.js';
import { ProcessRuntime } from './runtimes/process.js';

/** Where the time of one sandbox creation went, in microseconds. */
export interface SandboxLatency {
  readonly portAllocationUs: number;
  readonly spawnUs: number;
  readonly readinessProbeUs: number;
  readonly totalUs: number;
}

/** How a sandbox's process ended. */
export interface SandboxExit {
  /** The exit code, or null when a signal ended it. */
  readonly exitCode: number | null;
  /** The signal's name (SIGKILL, ...), or null when it exited by itself. */
  readonly signal: string | null;
  /** One line for humans: how it ended and the tail of its output. */
  readonly message: string;
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
}

/** What every runtime is built from. */
export interface RuntimeContext {
  readonly config: WorkerConfig;
  /** config.dataDir, made absolute. */
  readonly dataDir: string;
  readonly log: Logger;
  readonly ports: PortAllocator;
}

export const RUNTIME_FACTORIES: Readonly<Record<string, (context: RuntimeContext) => SandboxRuntime>> = Object.freeze({
  process: (c: RuntimeContext) =>
    new ProcessRuntime({
      host: c.config.host,
      dataDir: c.dataDir,
      startTimeoutMs: c.config.sandboxStartTimeoutMs,
      stopGraceMs: c.config.stopGraceMs,
      log: c.log,
      ports: c.ports,
    }),
});

/** Builds every registered runtime, keyed by name. */
export function createRuntimes(context: RuntimeContext): ReadonlyMap<string, SandboxRuntime> {
  const runtimes = new Map<string, SandboxRuntime>();
  for (const [name, factory] of Object.entries(RUNTIME_FACTORIES)) runtimes.set(name, factory(context));
  return runtimes;
}

/** The exit status to report: the code, or the shell's 128 + signal number for a signalled exit. */
export function exitStatus(exit: Pick<SandboxExit, 'exitCode' | 'signal'>): number {
  if (exit.exitCode !== null) return exit.exitCode;
  const number = exit.signal ? (osConstants.signals as Record<string, number>)[exit.signal] : undefined;
  return number === undefined ? -1 : 128 + number;
}
