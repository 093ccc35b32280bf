// The `node` runtime: a sandbox is a Node process serving one function's
// Lambda-style handler (`file.export` in the function's workdir) over HTTP,
// each request an API Gateway HTTP API event (node-runtime/bootstrap.ts).
//
// A pool of config.node.poolSize runtime processes is kept booted and bound
// to no function, so a cold start skips booting Node (~30 ms here, DESIGN.md)
// and costs a listen and a handler import:
//
//   create: take a booted process from the pool (or spawn one and wait for
//   `booted` when the pool is empty, disabled, or the spec sets a variable
//   Node reads only at start-up) → rename its pool log to
//   <dataDir>/sandboxes/<sandboxId>.log → send `load` over the IPC channel →
//   `loaded` with the port it listens on → GET /health there → ready.
//
// The runtime process binds port 0 and reports the port, instead of taking
// one from the worker's PortAllocator: a port chosen by one process and bound
// by another can be taken in between, and on a shared machine it was (4 of
// 40 creates while a neighbour's benchmark held ~1,200 listeners).
//
// The pool is refilled REFILL_DELAY_MS after a take, not during the create:
// spawning blocks the worker's event loop for a few ms and booting takes a
// core for ~30 ms, both of which would land on the cold start it serves.
//
// Every runtime process runs in its own process group with a clean
// environment (PATH, HOME, LANG): never the worker's, which on these machines
// carries NODE_EXTRA_CA_CERTS (~35 ms per Node start) and may carry tokens.
// The function's own environment arrives with `load`. Stop is as for the
// `process` runtime: SIGTERM to the group, stopGraceMs, SIGKILL. A pool
// process that dies idle is replaced; one that cannot boot is retried with a
// back-off, creates meanwhile spawning their own. A runtime process whose
// worker dies sees its IPC channel close and exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, existsSync, openSync } from 'node:fs';
import { mkdir, readdir, rename, unlink } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BatonError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { FunctionSpec } from '../../shared/spec.js';
import { probeHost, waitUntilReady } from '../probe.js';
import { signalGroup, waitGroupGone } from '../process-group.js';
import type { ProcessLedger } from '../process-ledger.js';
import type { RuntimeSandbox, SandboxExit, SandboxLatency, SandboxRuntime, SandboxStartRequest } from '../runtime.js';
import type { FailedMessage, LoadMessage, RuntimeToWorker } from './node-runtime/protocol.js';
import { readLogTail } from './process.js';

export interface NodeRuntimeOptions {
  /** Names the runtime processes (in their argv), so that /proc tells whose they are. */
  readonly workerId: string;
  /** The worker's bind host: sandboxes listen there. */
  readonly host: string;
  /** Absolute; logs go to <dataDir>/sandboxes/. */
  readonly dataDir: string;
  /** Boot (when not pooled), load and readiness together. */
  readonly startTimeoutMs: number;
  readonly stopGraceMs: number;
  /** Booted processes kept ready; 0 disables the pool. */
  readonly poolSize: number;
  /** The Node binary runtime processes run on. */
  readonly nodePath: string;
  readonly log: Logger;
  /** Where each runtime process is recorded until it is gone, so that a restarted worker can kill what a dead one left. */
  readonly ledger?: ProcessLedger;
}

export type NodeRuntimeState = 'INITIALIZED' | 'RUNNING' | 'CLOSING' | 'CLOSED';

/** The runtime process's script, compiled beside this file. */
export const BOOTSTRAP_PATH = fileURLToPath(new URL('./node-runtime/bootstrap.js', import.meta.url));

const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const KILL_WAIT_MS = 5000;
/** After the process exits, how long its last IPC messages may still take to arrive. */
const CHANNEL_DRAIN_MS = 100;
/** Back-off after a pool process fails to boot: doubling from the first to the last. */
const BOOT_RETRY_FIRST_MS = 1000;
const BOOT_RETRY_MAX_MS = 30_000;
const POOL_LOG = /^node-pool-(\d+)-\d+\.log$/;
/**
 * How long after a create the pool's refill starts. spawn() forks and execs
 * synchronously (a few ms of the worker's event loop), and in `baton up` that
 * loop also carries the new sandbox's endpoint to the data plane and its
 * first request: the refill waits until those are through.
 */
const REFILL_DELAY_MS = 50;
/** The longest start() waits for the pool's first process: a Node boot, with room for a loaded machine. */
const START_WAIT_MAX_MS = 2000;

/** Pool logs are named by the worker's pid and a counter shared by every NodeRuntime in this process. */
let poolLogSeq = 0;

/**
 * Variables Node reads only while it starts: a spec that sets one gets a
 * runtime process spawned with it, not a pooled one booted without it.
 */
export function startupEnv(env: Readonly<Record<string, string>>): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    const startup =
      (name.startsWith('NODE_') && name !== 'NODE_ENV' && name !== 'NODE_TLS_REJECT_UNAUTHORIZED') ||
      name === 'UV_THREADPOOL_SIZE' ||
      name === 'OPENSSL_CONF' ||
      name === 'SSL_CERT_FILE' ||
      name === 'SSL_CERT_DIR';
    if (startup) picked[name] = value;
  }
  return picked;
}

export class NodeRuntime implements SandboxRuntime {
  readonly name = 'node';
  private currentState: NodeRuntimeState = 'INITIALIZED';
  private readonly logDir: string;
  private readonly probeHost: string;
  private readonly maxParallelBoots: number;
  /** Booted pool processes, oldest first. */
  private readonly idle: RuntimeProcess[] = [];
  private booting = 0;
  /** Every runtime process that may be alive (pool and sandboxes), for killAllNow() and close(). */
  private readonly live = new Set<RuntimeProcess>();
  private bootFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private refillTimer: NodeJS.Timeout | undefined;
  private firstBoot: (() => void) | undefined;

  constructor(private readonly options: NodeRuntimeOptions) {
    this.logDir = join(options.dataDir, 'sandboxes');
    this.probeHost = probeHost(options.host);
    this.maxParallelBoots = Math.max(1, availableParallelism());
  }

  /** Why the runtime cannot work here, or undefined when it can. */
  static unavailable(nodePath: string): string | undefined {
    if (!existsSync(BOOTSTRAP_PATH)) return `its runtime script ${BOOTSTRAP_PATH} is missing (run the compiled worker)`;
    try {
      accessSync(nodePath, fsConstants.X_OK);
    } catch {
      return `node.nodePath ${nodePath} is not an executable file`;
    }
    return undefined;
  }

  get state(): NodeRuntimeState {
    return this.currentState;
  }

  /** Pool processes booted and waiting for a function. */
  get idleCount(): number {
    return this.idle.length;
  }

  /** The pids of the pool's idle processes, oldest first. */
  get idlePids(): number[] {
    return this.idle.map((p) => p.pid);
  }

  logPath(sandboxId: string): string {
    return join(this.logDir, `${sandboxId}.log`);
  }

  /**
   * Removes the pool logs of dead workers and starts filling the pool.
   * Resolves once the first pool process has booted (or failed to, or after
   * START_WAIT_MAX_MS): about one Node start, so that the worker's first
   * create already finds one.
   */
  async start(): Promise<void> {
    if (this.currentState !== 'INITIALIZED') return;
    await mkdir(this.logDir, { recursive: true });
    await this.removeStalePoolLogs();
    this.currentState = 'RUNNING';
    if (this.options.poolSize === 0) return;
    const first = new Promise<void>((resolve) => (this.firstBoot = resolve));
    this.fill();
    const timer = setTimeout(() => this.firstBoot?.(), START_WAIT_MAX_MS);
    await first;
    clearTimeout(timer);
    this.firstBoot = undefined;
  }

  async create(request: SandboxStartRequest): Promise<RuntimeSandbox> {
    const { sandboxId, spec, signal } = request;
    if (this.currentState === 'CLOSING' || this.currentState === 'CLOSED') {
      throw new BatonError('UNAVAILABLE', `sandbox ${sandboxId}: the node runtime is closed`, { details: { reason: 'closed' } });
    }
    if (signal.aborted) throw deletedWhileStarting(sandboxId);
    const { handler, workdir } = spec;
    if (handler === undefined || workdir === undefined) {
      throw new BatonError('INVALID_SPEC', `function "${spec.name}": runtime "node" needs a handler and a workdir`, {
        details: { field: handler === undefined ? 'handler' : 'workdir' },
      });
    }
    const t0 = process.hrtime.bigint();
    const deadline = performance.now() + this.options.startTimeoutMs;
    const logPath = this.logPath(sandboxId);
    const ownStartupEnv = startupEnv(spec.env);
    let proc = Object.keys(ownStartupEnv).length === 0 ? this.idle.shift() : undefined;
    const pooled = proc !== undefined;
    try {
      let logMoved: Promise<void> = Promise.resolve();
      if (proc) {
        proc.phase = 'LOADING';
        logMoved = proc.moveLog(logPath, this.options.log);
      } else {
        try {
          proc = this.spawnProcess(logPath, ownStartupEnv);
        } catch (err) {
          throw startFailed(spec, `cannot start ${this.options.nodePath}: ${(err as Error).message}`, 'start_failed', err);
        }
        const booted = await proc.expect('booted', deadline, signal);
        if (booted.type !== 'booted') {
          throw await this.failStart(proc, spec, sandboxId, booted, {
            exited: `the runtime process ${proc.describeExit()} while it booted`,
            timeout: `the runtime process did not boot within ${this.options.startTimeoutMs} ms (sandboxStartTimeoutMs)`,
          });
        }
        proc.phase = 'LOADING';
      }
      const t1 = process.hrtime.bigint();

      proc.send({
        type: 'load',
        sandboxId,
        functionName: spec.name,
        dir: workdir,
        handler,
        host: this.options.host,
        env: sandboxEnv(spec, sandboxId, this.options.host, workdir),
        timeoutMs: spec.timeoutMs,
        memoryMb: spec.resources.memoryMb,
      });
      const loaded = await proc.expect('loaded', deadline, signal);
      await logMoved;
      const t2 = process.hrtime.bigint();
      if (loaded.type !== 'loaded') {
        throw await this.failStart(proc, spec, sandboxId, loaded, {
          exited: `the runtime process ${proc.describeExit()} while it loaded handler "${handler}"`,
          timeout: `handler "${handler}" was not loaded within ${this.options.startTimeoutMs} ms (sandboxStartTimeoutMs)`,
        });
      }
      const { port } = loaded;
      this.options.log.debug({ sandboxId, pid: proc.pid, pooled, loadUs: loaded.loadUs, importUs: loaded.importUs }, 'node runtime: handler loaded');

      // The process says it listens; the probe checks that it answers there, as for every runtime.
      const outcome = await waitUntilReady({
        host: this.probeHost,
        port,
        timeoutMs: Math.max(1, deadline - performance.now()),
        signal,
        exited: proc.reaped,
      });
      const t3 = process.hrtime.bigint();
      if (outcome !== 'ready') {
        throw await this.failStart(proc, spec, sandboxId, { type: outcome }, {
          exited: `the runtime process ${proc.describeExit()} before it was ready`,
          timeout: `handler "${handler}" was loaded but GET /health on ${this.probeHost}:${port} got no answer within ${this.options.startTimeoutMs} ms (sandboxStartTimeoutMs)`,
        });
      }
      proc.phase = 'READY';
      // The record now names the sandbox, so that a restarted worker says which it killed.
      this.options.ledger?.record(proc.pid, this.name, sandboxId);
      const latency: SandboxLatency = {
        portAllocationUs: 0,
        runtimeCreateUs: us(t1 - t0),
        networkUs: 0,
        spawnUs: us(t2 - t1),
        readinessProbeUs: us(t3 - t2),
        totalUs: us(t3 - t0),
        pooled,
      };
      return new NodeSandbox(sandboxId, port, proc, latency, this.options.stopGraceMs);
    } finally {
      if (pooled) this.refillSoon();
    }
  }

  /** Ends a start that went wrong: stops the process (it may be exiting by itself) and builds the error. The log is kept. */
  private async failStart(
    proc: RuntimeProcess,
    spec: FunctionSpec,
    sandboxId: string,
    failure: Failure,
    texts: { exited: string; timeout: string },
  ): Promise<BatonError> {
    if (failure.type === 'aborted') {
      await proc.terminate(this.options.stopGraceMs, true);
      return deletedWhileStarting(sandboxId);
    }
    // A process that reported its failure exits by itself; one that timed out is killed at once.
    await proc.terminate(failure.type === 'timeout' ? 0 : this.options.stopGraceMs, false);
    if (failure.type === 'failed') return startFailed(spec, failure.message, 'start_failed');
    const output = proc.lastOutput ? `; its output ends with:\n${proc.lastOutput}` : '; it wrote no output';
    return startFailed(spec, `${texts[failure.type]}${output}`, failure.type === 'timeout' ? 'probe_timeout' : 'start_failed');
  }

  /** The last resort when the worker exits without close(): every runtime process dies now and the pool is not refilled. */
  killAllNow(): void {
    if (this.currentState === 'RUNNING' || this.currentState === 'INITIALIZED') this.currentState = 'CLOSING';
    clearTimeout(this.retryTimer);
    clearTimeout(this.refillTimer);
    for (const proc of this.live) proc.killNow();
  }

  /** Stops the pool's processes, booted or booting, and waits for them. Sandboxes are the worker's to delete. */
  async close(): Promise<void> {
    if (this.currentState === 'CLOSED') return;
    this.currentState = 'CLOSING';
    clearTimeout(this.retryTimer);
    clearTimeout(this.refillTimer);
    this.retryTimer = undefined;
    this.refillTimer = undefined;
    this.firstBoot?.();
    this.idle.length = 0;
    const pool = [...this.live].filter((p) => p.phase === 'BOOTING' || p.phase === 'IDLE');
    await Promise.all(pool.map((p) => p.terminate(this.options.stopGraceMs, true)));
    this.currentState = 'CLOSED';
  }

  private refillSoon(): void {
    if (this.refillTimer || this.currentState !== 'RUNNING') return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.fill();
    }, REFILL_DELAY_MS);
  }

  /** Boots pool processes until the pool is full, a few at a time. */
  private fill(): void {
    if (this.currentState !== 'RUNNING' || this.retryTimer) return;
    while (this.idle.length + this.booting < this.options.poolSize && this.booting < this.maxParallelBoots) {
      void this.bootPoolProcess();
    }
  }

  private async bootPoolProcess(): Promise<void> {
    this.booting++;
    const logPath = join(this.logDir, `node-pool-${process.pid}-${poolLogSeq++}.log`);
    let proc: RuntimeProcess;
    try {
      proc = this.spawnProcess(logPath, {});
    } catch (err) {
      this.booting--;
      this.bootFailed(`cannot start ${this.options.nodePath}: ${(err as Error).message}`);
      return;
    }
    const outcome = await proc.expect('booted', performance.now() + this.options.startTimeoutMs);
    this.booting--;
    if (outcome.type === 'booted' && this.currentState === 'RUNNING') {
      this.bootFailures = 0;
      proc.phase = 'IDLE';
      this.idle.push(proc);
      void proc.reaped.then(() => this.onPoolExit(proc));
      this.firstBoot?.();
      this.firstBoot = undefined;
      this.fill();
      return;
    }
    await proc.terminate(0, false);
    await unlink(logPath).catch(() => undefined);
    if (outcome.type === 'booted' || outcome.type === 'aborted') return; // closing meanwhile
    const why =
      outcome.type === 'failed'
        ? outcome.message
        : outcome.type === 'exited'
          ? proc.describeExit()
          : `did not boot within ${this.options.startTimeoutMs} ms (sandboxStartTimeoutMs)`;
    this.bootFailed(`${this.options.nodePath} ${BOOTSTRAP_PATH} ${why}${proc.lastOutput ? `; its output ends with:\n${proc.lastOutput}` : ''}`);
  }

  private bootFailed(why: string): void {
    this.firstBoot?.();
    this.firstBoot = undefined;
    if (this.currentState !== 'RUNNING') return;
    this.bootFailures++;
    const delayMs = Math.min(BOOT_RETRY_FIRST_MS * 2 ** (this.bootFailures - 1), BOOT_RETRY_MAX_MS);
    this.options.log.warn({ err: why, failures: this.bootFailures, retryInMs: delayMs }, 'node runtime: a pool process failed to boot');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.fill();
    }, delayMs);
    this.retryTimer.unref();
  }

  /** A pool process that ends while idle (killed, out of memory) leaves the pool and is replaced. */
  private onPoolExit(proc: RuntimeProcess): void {
    if (proc.phase !== 'IDLE') return;
    const at = this.idle.indexOf(proc);
    if (at >= 0) this.idle.splice(at, 1);
    proc.phase = 'EXITED';
    void unlink(proc.logPath).catch(() => undefined);
    if (this.currentState !== 'RUNNING') return;
    this.options.log.warn({ pid: proc.pid, exit: proc.describeExit() }, 'node runtime: an idle pool process died; replacing it');
    this.fill();
  }

  /** Spawns a runtime process in its own group, its output appended to logPath. Throws on synchronous spawn failures. */
  private spawnProcess(logPath: string, extraEnv: Record<string, string>): RuntimeProcess {
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.options.nodePath, [BOOTSTRAP_PATH, `--worker=${this.options.workerId}`], {
        cwd: this.options.dataDir,
        env: { PATH: SANDBOX_PATH, HOME: this.options.dataDir, LANG: 'C.UTF-8', ...extraEnv },
        detached: true,
        stdio: ['ignore', fd, fd, 'ipc'],
        serialization: 'json',
      });
    } finally {
      closeSync(fd);
    }
    const proc = new RuntimeProcess(child, logPath, this.options);
    this.live.add(proc);
    this.options.ledger?.record(proc.pid, this.name);
    void proc.reaped.then(async () => {
      this.live.delete(proc);
      await this.options.ledger?.forget(proc.pid);
    });
    return proc;
  }

  /** Pool logs of workers that are no longer running: their processes died with them (the IPC channel closed). */
  private async removeStalePoolLogs(): Promise<void> {
    const names = await readdir(this.logDir).catch(() => [] as string[]);
    await Promise.all(
      names.map(async (name) => {
        const pid = Number(POOL_LOG.exec(name)?.[1] ?? 0);
        if (pid === 0 || pid === process.pid || processExists(pid)) return;
        await unlink(join(this.logDir, name)).catch(() => undefined);
      }),
    );
  }
}

/** True when a process with this pid exists. */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export type RuntimeProcessPhase = 'BOOTING' | 'IDLE' | 'LOADING' | 'READY' | 'EXITED';

/** Why an awaited message did not come: the process's own failure, its exit, an abort, the deadline. */
type Failure = FailedMessage | { readonly type: 'exited' | 'aborted' | 'timeout' };

/**
 * One runtime process, from spawn to reaping: its IPC inbox, its exit, and
 * stopping its group. It is a pool member until a create takes it, then one
 * sandbox's process.
 */
class RuntimeProcess {
  phase: RuntimeProcessPhase = 'BOOTING';
  readonly pid: number;
  /** The end of the log, read when the process failed to boot. */
  lastOutput = '';
  readonly reaped: Promise<void>;
  private exitCode: number | null = null;
  private exitSignal: NodeJS.Signals | null = null;
  private hasExited = false;
  private readonly channelClosed: Promise<void>;
  private readonly inbox: RuntimeToWorker[] = [];
  private wake: (() => void) | undefined;
  private stopRequested = false;
  private stopping: Promise<void> | undefined;
  private spawnError = '';

  constructor(
    private readonly child: ChildProcess,
    public logPath: string,
    private readonly options: NodeRuntimeOptions,
  ) {
    // Only an exec failure (ENOENT, EACCES) leaves pid unset; the 'exit' below still follows the 'error'.
    this.pid = child.pid ?? 0;
    child.on('error', (err) => {
      if (this.pid === 0) {
        this.spawnError = err.message;
        this.markExited(null, null);
      } else {
        options.log.warn({ err, pid: this.pid }, 'node runtime process error');
      }
    });
    child.on('message', (message: RuntimeToWorker) => {
      // Only the start is a conversation; a loaded function's own process.send() is not for us.
      if (this.phase !== 'BOOTING' && this.phase !== 'LOADING') return;
      this.inbox.push(message);
      this.wake?.();
    });
    this.channelClosed = new Promise((resolve) => child.once('disconnect', resolve));
    this.reaped = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.markExited(code, signal);
        resolve();
      });
      if (this.pid === 0) child.once('error', () => resolve());
    });
  }

  private markExited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.hasExited) return;
    this.hasExited = true;
    this.exitCode = code;
    this.exitSignal = signal;
    // The leader is gone; whatever the function started goes with it.
    if (this.pid > 0 && !this.stopRequested) signalGroup(this.pid, 'SIGKILL');
    this.wake?.();
  }

  describeExit(): string {
    if (this.pid === 0) return `could not be started: ${this.spawnError}`;
    if (this.exitSignal) return `was killed by ${this.exitSignal}`;
    return `exited with code ${this.exitCode ?? 'unknown'}`;
  }

  send(message: LoadMessage): void {
    this.child.send(message, (err) => {
      // The process died first: its exit is what the create reports.
      if (err) this.options.log.debug({ err, pid: this.pid }, 'node runtime: cannot send to the runtime process');
    });
  }

  /**
   * Waits for the process's next message, which should be `expected`; or
   * for why none comes: it exited (its last messages read first), the signal
   * aborted, or the deadline passed.
   */
  async expect<T extends 'booted' | 'loaded'>(expected: T, deadlineMs: number, signal?: AbortSignal): Promise<Extract<RuntimeToWorker, { type: T }> | Failure> {
    const answer = (m: RuntimeToWorker): Extract<RuntimeToWorker, { type: T }> | Failure => {
      if (m.type === expected) return m as Extract<RuntimeToWorker, { type: T }>;
      if (m.type === 'failed') return m;
      return { type: 'failed', message: `the runtime process said "${m.type}" where "${expected}" was due` };
    };
    for (;;) {
      const message = this.inbox.shift();
      if (message) return answer(message);
      if (this.hasExited) {
        // The channel may still hold what the process sent just before it exited.
        await Promise.race([this.channelClosed, sleep(CHANNEL_DRAIN_MS)]);
        const last = this.inbox.shift();
        return last ? answer(last) : { type: 'exited' };
      }
      if (signal?.aborted) return { type: 'aborted' };
      const left = deadlineMs - performance.now();
      if (left <= 0) return { type: 'timeout' };
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, left);
        signal?.addEventListener('abort', done, { once: true });
        this.wake = done;
      });
    }
  }

  /** Renames the pool log to the sandbox's: the process keeps writing to the same file. */
  async moveLog(to: string, log: Logger): Promise<void> {
    try {
      await rename(this.logPath, to);
      this.logPath = to;
    } catch (err) {
      log.warn({ err, pid: this.pid, from: this.logPath, to }, 'node runtime: cannot rename a pool log; the sandbox keeps it');
    }
  }

  killNow(): void {
    if (!this.hasExited && this.pid > 0) signalGroup(this.pid, 'SIGKILL');
  }

  /** SIGTERM, up to graceMs, SIGKILL; resolves once the leader is reaped and the group is empty. The first call decides. */
  terminate(graceMs: number, removeLog: boolean): Promise<void> {
    this.stopRequested = true;
    this.stopping ??= this.runTerminate(graceMs, removeLog);
    return this.stopping;
  }

  private async runTerminate(graceMs: number, removeLog: boolean): Promise<void> {
    const reaped = (): boolean => this.hasExited;
    if (this.pid > 0 && (signalGroup(this.pid, graceMs > 0 ? 'SIGTERM' : 'SIGKILL') || !this.hasExited)) {
      let gone = await waitGroupGone(this.pid, reaped, graceMs);
      if (!gone) {
        signalGroup(this.pid, 'SIGKILL');
        gone = await waitGroupGone(this.pid, reaped, KILL_WAIT_MS);
        if (!gone) this.options.log.warn({ pid: this.pid, log: this.logPath }, 'node runtime process group still alive after SIGKILL');
      }
    }
    if (!this.hasExited) await Promise.race([this.reaped, sleep(KILL_WAIT_MS)]);
    this.phase = 'EXITED';
    if (!removeLog) this.lastOutput = await readLogTail(this.logPath);
    if (removeLog) await unlink(this.logPath).catch(() => undefined);
  }

  /** How the sandbox on this process ended, once it has. */
  async sandboxExit(): Promise<SandboxExit> {
    await this.reaped;
    if (this.stopRequested) return { exitCode: this.exitCode, signal: this.exitSignal, message: 'stopped on request' };
    const tail = await readLogTail(this.logPath);
    return {
      exitCode: this.exitCode,
      signal: this.exitSignal,
      message: `the node runtime process ${this.describeExit()}${tail ? `; its output ends with:\n${tail}` : ''}`,
    };
  }
}

/** A ready sandbox: a runtime process bound to one function. */
class NodeSandbox implements RuntimeSandbox {
  readonly exited: Promise<SandboxExit>;

  constructor(
    readonly sandboxId: string,
    readonly port: number,
    private readonly proc: RuntimeProcess,
    readonly latency: SandboxLatency,
    private readonly stopGraceMs: number,
  ) {
    this.exited = proc.sandboxExit();
  }

  get pid(): number {
    return this.proc.pid;
  }

  stop(): Promise<void> {
    return this.proc.terminate(this.stopGraceMs, true);
  }
}

/** The function's whole environment, as the `process` runtime gives it, with HOME its directory. */
function sandboxEnv(spec: FunctionSpec, sandboxId: string, host: string, home: string): Record<string, string> {
  return {
    PATH: SANDBOX_PATH,
    HOME: home,
    LANG: 'C.UTF-8',
    ...spec.env,
    HOST: host,
    BATON_FUNCTION: spec.name,
    BATON_SANDBOX_ID: sandboxId,
  };
}

function startFailed(spec: FunctionSpec, message: string, reason: string, cause?: unknown): BatonError {
  return new BatonError('SANDBOX_START_FAILED', `function "${spec.name}": ${message}`, { cause, details: { reason } });
}

function deletedWhileStarting(sandboxId: string): BatonError {
  return new BatonError('UNAVAILABLE', `sandbox ${sandboxId} was deleted while it was starting`, { details: { reason: 'deleted' } });
}

function us(ns: bigint): number {
  return Number(ns / 1000n);
}

