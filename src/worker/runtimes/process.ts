// The `process` runtime: a sandbox is a command that serves HTTP on $PORT.
// It needs nothing installed and no root, which makes it the default.
//
// create: allocate a host port → spawn the command in its own process group
// (detached), with a clean environment and its output appended to
// <dataDir>/sandboxes/<sandboxId>.log → poll GET /health until any HTTP
// answer. If the command cannot be spawned, exits first, or does not answer
// within sandboxStartTimeoutMs, the group is killed, the port released, and
// create rejects with SANDBOX_START_FAILED naming the cause and the tail of
// the sandbox's output.
//
// stop: SIGTERM to the group, stopGraceMs, SIGKILL to the group; resolves
// once the leader has been reaped and no live member is left. A leader that
// dies on its own takes its group with it (SIGKILL to what is left), so a
// function's children never outlive it.
//
// The environment is explicit and never inherited: these machines set
// NODE_EXTRA_CA_CERTS, which alone costs a Node child ~35 ms of start-up
// (DESIGN.md, "Traps"), and a sandbox should not see the worker's token.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BatonError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { FunctionSpec } from '../../shared/spec.js';
import type { PortAllocator } from '../ports.js';
import type { ProcessLedger } from '../process-ledger.js';
import { probeHost, waitUntilReady } from '../probe.js';
import { signalGroup, waitGroupGone } from '../process-group.js';
import { EMPTY_LATENCY, type RuntimeSandbox, type SandboxExit, type SandboxLatency, type SandboxRuntime, type SandboxStartRequest } from '../runtime.js';

export interface ProcessRuntimeOptions {
  /** The worker's bind host: sandboxes get it as $HOST and bind there. */
  readonly host: string;
  /** Absolute; logs go to <dataDir>/sandboxes/, and it is the cwd of specs without a workdir. */
  readonly dataDir: string;
  readonly startTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly log: Logger;
  readonly ports: PortAllocator;
  /** Where each spawned group is recorded until it is gone, so that a restarted worker can kill what a dead one left. */
  readonly ledger?: ProcessLedger;
}

const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** How long to wait for the group to vanish after SIGKILL before giving up with a warning. */
const KILL_WAIT_MS = 5000;
/** Bytes of the log read back for error messages, and characters of it quoted. */
const LOG_TAIL_BYTES = 4096;
const MESSAGE_TAIL_CHARS = 1500;

export class ProcessRuntime implements SandboxRuntime {
  readonly name = 'process';
  private readonly logDir: string;
  private readonly probeHost: string;
  /** Every sandbox whose process may still be alive, for killAllNow(). */
  private readonly live = new Set<ProcessSandbox>();

  constructor(private readonly options: ProcessRuntimeOptions) {
    this.logDir = join(options.dataDir, 'sandboxes');
    this.probeHost = probeHost(options.host);
  }

  /** The log file of a sandbox: its stdout and stderr. */
  logPath(sandboxId: string): string {
    return join(this.logDir, `${sandboxId}.log`);
  }

  async create(request: SandboxStartRequest): Promise<RuntimeSandbox> {
    const { sandboxId, spec, signal } = request;
    const { ports } = this.options;
    if (signal.aborted) throw deletedWhileStarting(sandboxId);
    const command = spec.command[0];
    if (command === undefined) {
      throw new BatonError('INVALID_SPEC', `function "${spec.name}": command must name a program`, {
        details: { field: 'command' },
      });
    }
    const t0 = process.hrtime.bigint();
    const port = await ports.allocate();
    const t1 = process.hrtime.bigint();

    const cwd = spec.workdir ?? this.options.dataDir;
    const logPath = this.logPath(sandboxId);
    let child: ChildProcess;
    let fd: number;
    try {
      fd = openSync(logPath, 'a');
    } catch (err) {
      ports.release(port);
      throw new BatonError('SANDBOX_START_FAILED', `cannot open the sandbox log ${logPath}: ${(err as Error).message}`, {
        cause: err,
        details: { reason: 'start_failed' },
      });
    }
    // Recorded before the spawn too: a worker killed during it must not leave the child unknown.
    this.options.ledger?.intend(sandboxId, this.name);
    try {
      child = spawn(command, spec.command.slice(1), {
        cwd,
        env: sandboxEnv(spec, sandboxId, this.options.host, port, cwd),
        detached: true,
        stdio: ['ignore', fd, fd],
      });
    } catch (err) {
      // Synchronous failures: invalid arguments, such as a NUL byte in an env value.
      this.options.ledger?.settle(sandboxId);
      ports.release(port);
      await unlink(logPath).catch(() => undefined);
      throw startFailed(spec, `cannot start ${formatCommand(spec.command)}: ${(err as Error).message}`, 'start_failed', err);
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      // spawn() failed (ENOENT, EACCES, a missing cwd): Node reports it on the next tick.
      const err = await new Promise<NodeJS.ErrnoException>((resolve) => child.once('error', resolve));
      this.options.ledger?.settle(sandboxId);
      ports.release(port);
      await unlink(logPath).catch(() => undefined);
      const cause = await describeSpawnError(err, command, cwd);
      throw startFailed(spec, `cannot start ${formatCommand(spec.command)}: ${cause}`, 'start_failed', err);
    }
    // Recorded while the sandbox boots, not before its probe starts; the intent covers it until then.
    const { ledger } = this.options;
    const recorded = ledger?.recordAfterIntent(pid, this.name, sandboxId).then(() => ledger.settle(sandboxId));
    const t2 = process.hrtime.bigint();

    const sandbox = new ProcessSandbox(child, pid, sandboxId, port, logPath, this.options);
    this.live.add(sandbox);
    void sandbox.exited.then(() => this.live.delete(sandbox));
    const outcome = await waitUntilReady({ host: this.probeHost, port, timeoutMs: this.options.startTimeoutMs, signal, exited: sandbox.exited });
    const t3 = process.hrtime.bigint();
    await recorded;
    if (outcome === 'ready') {
      sandbox.latency = {
        portAllocationUs: us(t1 - t0),
        spawnUs: us(t2 - t1),
        readinessProbeUs: us(t3 - t2),
        totalUs: us(t3 - t0),
        runtimeCreateUs: 0,
        networkUs: 0,
        pooled: false,
      };
      return sandbox;
    }

    if (outcome === 'aborted') {
      await sandbox.stop();
      throw deletedWhileStarting(sandboxId);
    }
    await sandbox.terminate(0, false);
    const tail = await readLogTail(logPath);
    const output = tail ? `; its output ends with:\n${tail}` : '; it wrote no output';
    if (outcome === 'timeout') {
      throw startFailed(
        spec,
        `${formatCommand(spec.command)} did not answer GET /health on ${this.probeHost}:${port} within ` +
          `${this.options.startTimeoutMs} ms (sandboxStartTimeoutMs) and was killed${output}`,
        'probe_timeout',
      );
    }
    throw startFailed(spec, `${formatCommand(spec.command)} ${sandbox.describeExit()} before it was ready${output}`, 'start_failed');
  }

  killAllNow(): void {
    for (const sandbox of this.live) sandbox.killNow();
  }
}

/** One running process sandbox: the group leader's ChildProcess and what is needed to end it. */
class ProcessSandbox implements RuntimeSandbox {
  readonly exited: Promise<SandboxExit>;
  latency: SandboxLatency = EMPTY_LATENCY;
  private exitCode: number | null = null;
  private exitSignal: NodeJS.Signals | null = null;
  private reaped = false;
  private readonly reapedEvent: Promise<void>;
  private stopRequested = false;
  private stopping: Promise<void> | undefined;
  private portReleased = false;

  constructor(
    child: ChildProcess,
    readonly pid: number,
    readonly sandboxId: string,
    readonly port: number,
    private readonly logPath: string,
    private readonly options: ProcessRuntimeOptions,
  ) {
    // Errors after a successful spawn come only from child.kill(), which we do not use; log, never crash.
    child.on('error', (err) => options.log.warn({ err, sandboxId, pid }, 'sandbox process error'));
    this.reapedEvent = new Promise<void>((resolve) => {
      child.once('exit', (code, sig) => {
        this.reaped = true;
        this.exitCode = code;
        this.exitSignal = sig;
        // The leader is gone; whatever it started goes with it.
        if (!this.stopRequested) {
          signalGroup(pid, 'SIGKILL');
          this.releasePort();
          void options.ledger?.forget(pid);
        }
        resolve();
      });
    });
    this.exited = this.reapedEvent.then(async () => {
      if (this.stopRequested) return { exitCode: this.exitCode, signal: this.exitSignal, message: 'stopped on request' };
      const tail = await readLogTail(this.logPath);
      return {
        exitCode: this.exitCode,
        signal: this.exitSignal,
        message: `${this.describeExit()}${tail ? `; its output ends with:\n${tail}` : ''}`,
      };
    });
  }

  get hasExited(): boolean {
    return this.reaped;
  }

  describeExit(): string {
    if (this.exitSignal) return `was killed by ${this.exitSignal}`;
    return `exited with code ${this.exitCode ?? 'unknown'}`;
  }

  /** Once only: after release the port may be handed to another sandbox. */
  private releasePort(): void {
    if (this.portReleased) return;
    this.portReleased = true;
    this.options.ports.release(this.port);
  }

  stop(): Promise<void> {
    return this.terminate(this.options.stopGraceMs, true);
  }

  killNow(): void {
    if (!this.reaped) signalGroup(this.pid, 'SIGKILL');
  }

  /**
   * SIGTERM, up to graceMs for the group to leave, SIGKILL, and wait for the
   * leader's reaping and for the group to empty. The first call decides.
   */
  terminate(graceMs: number, removeLog: boolean): Promise<void> {
    this.stopRequested = true;
    this.stopping ??= this.runTerminate(graceMs, removeLog);
    return this.stopping;
  }

  private async runTerminate(graceMs: number, removeLog: boolean): Promise<void> {
    const { log } = this.options;
    const reaped = (): boolean => this.reaped;
    if (signalGroup(this.pid, 'SIGTERM') || !this.reaped) {
      let gone = await waitGroupGone(this.pid, reaped, graceMs);
      if (!gone) {
        signalGroup(this.pid, 'SIGKILL');
        gone = await waitGroupGone(this.pid, reaped, KILL_WAIT_MS);
        if (!gone) log.warn({ sandboxId: this.sandboxId, pid: this.pid }, 'sandbox process group still alive after SIGKILL');
      }
    }
    if (!this.reaped) {
      await Promise.race([this.reapedEvent, sleep(KILL_WAIT_MS)]);
    }
    this.releasePort();
    await this.options.ledger?.forget(this.pid);
    if (removeLog) await unlink(this.logPath).catch(() => undefined);
  }
}

function sandboxEnv(spec: FunctionSpec, sandboxId: string, host: string, port: number, home: string): Record<string, string> {
  return {
    PATH: SANDBOX_PATH,
    HOME: home,
    LANG: 'C.UTF-8',
    ...spec.env,
    PORT: String(port),
    HOST: host,
    BATON_FUNCTION: spec.name,
    BATON_SANDBOX_ID: sandboxId,
  };
}

function startFailed(spec: FunctionSpec, message: string, reason: string, cause?: unknown): BatonError {
  return new BatonError('SANDBOX_START_FAILED', `function "${spec.name}": ${message}`, {
    cause,
    details: { reason },
  });
}

function deletedWhileStarting(sandboxId: string): BatonError {
  return new BatonError('UNAVAILABLE', `sandbox ${sandboxId} was deleted while it was starting`, {
    details: { reason: 'deleted' },
  });
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  ENOEXEC: 'not an executable format',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
};

/** Names the cause of a spawn failure, telling a missing workdir from a missing program. */
async function describeSpawnError(err: NodeJS.ErrnoException, command: string, cwd: string): Promise<string> {
  const code = err.code ?? 'UNKNOWN';
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    const cwdOk = await stat(cwd).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!cwdOk) return `its workdir ${cwd} does not exist or is not a directory`;
    if (!command.includes('/')) return `${command} was not found on PATH (${SANDBOX_PATH}) (ENOENT)`;
  }
  return `${command}: ${ERRNO_TEXT[code] ?? err.message} (${code})`;
}

export function formatCommand(command: readonly string[]): string {
  const text = command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  return `"${text.length > 200 ? `${text.slice(0, 197)}...` : text}"`;
}

/** The end of a sandbox's log, for error messages; '' when there is none. */
export async function readLogTail(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const text = buffer.toString('utf8').trim();
    return text.length > MESSAGE_TAIL_CHARS ? `...${text.slice(-MESSAGE_TAIL_CHARS)}` : text;
  } catch {
    return '';
  } finally {
    await handle.close();
  }
}

function us(ns: bigint): number {
  return Number(ns / 1000n);
}
