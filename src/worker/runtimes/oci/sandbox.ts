// One oci container, from `runc create` to its removal, and the sandbox the
// worker holds once it has been started.
//
// A container is "prepared" (created, its init blocked on runc's exec fifo),
// then started. The sandbox watches its init (init-process.ts); when the init
// ends without being asked, the sandbox reads the OOM-kill counter of its
// memory cgroup before anything is removed, so a function that outgrew its
// memory is reported as `oom`, and then tears the container down by itself:
// the worker forgets a sandbox that died and never calls stop() on it.
import { unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../../shared/logging.js';
import type { FunctionSpec } from '../../../shared/spec.js';
import { EMPTY_LATENCY, type RuntimeSandbox, type SandboxExit, type SandboxLatency } from '../../runtime.js';
import { readLogTail } from '../process.js';
import type { InitExit, InitProcess, InitWatcher } from './init-process.js';
import type { NetworkSlot } from './network.js';

/** A container made by `runc create`: it exists, its init waits for `runc start`. */
export interface PreparedContainer {
  /** Which precreate pool it belongs to (a hash of what config.json is made from). */
  readonly poolKey: string;
  readonly spec: FunctionSpec;
  /** The runc container id. */
  readonly id: string;
  readonly bundleDir: string;
  readonly cgroupsPath: string;
  /** Where its stdout and stderr go; renamed to the sandbox's log when a precreated container is taken. */
  logPath: string;
  readonly init: InitProcess;
  /** The host port it is reached on. */
  readonly port: number;
  /** Its network namespace, for `isolated`. */
  readonly slot: NetworkSlot | undefined;
  /** What preparing it cost, in microseconds. */
  readonly portAllocationUs: number;
  readonly networkUs: number;
  readonly runtimeCreateUs: number;
}

/** What a sandbox needs from its runtime. */
export interface SandboxHooks {
  readonly watcher: InitWatcher;
  readonly stopGraceMs: number;
  readonly log: Logger;
  /** OOM kills counted in the container's memory cgroup; undefined when unknown. */
  readOomKills(container: PreparedContainer): Promise<number | undefined>;
  /** Removes the container and everything it holds (runc state, cgroups, bundle, port, network). Never rejects. */
  destroy(container: PreparedContainer): Promise<void>;
  /** Called once, when the sandbox has been torn down. */
  ended(sandbox: OciSandbox): void;
}

/** How long to wait for the init to vanish after SIGKILL before going on with a warning. */
const KILL_WAIT_MS = 5000;

export class OciSandbox implements RuntimeSandbox {
  readonly port: number;
  readonly pid: number;
  readonly exited: Promise<SandboxExit>;
  latency: SandboxLatency = EMPTY_LATENCY;
  /** How it ended, without its output ("exited with code 1"), once `exited` has settled on an exit nobody asked for. */
  exitSummary: string | undefined;
  private ended = false;
  private stopRequested = false;
  private stopping: Promise<void> | undefined;
  private tearingDown: Promise<void> | undefined;
  private readonly initEnded: Promise<InitExit>;

  constructor(
    readonly sandboxId: string,
    readonly container: PreparedContainer,
    private readonly hooks: SandboxHooks,
  ) {
    this.port = container.port;
    this.pid = container.init.pid;
    this.initEnded = hooks.watcher.watch(container.init).then((exit) => {
      this.ended = true;
      return exit;
    });
    this.exited = this.initEnded.then(async (exit) => {
      if (this.stopRequested) return { exitCode: exit.exitCode, signal: exit.signal, message: 'stopped on request' };
      // Before the teardown: runc delete removes the cgroup and its counters with it.
      const oomKills = await hooks.readOomKills(container);
      void this.teardown();
      const tail = await readLogTail(container.logPath);
      const output = tail ? `; its output ends with:\n${tail}` : '';
      const oom = oomKills !== undefined && oomKills > 0;
      this.exitSummary = oom
        ? `was killed for exceeding its memory limit of ${container.spec.resources.memoryMb} MB ` +
          `(resources.memoryMb; the kernel's OOM killer killed ${oomKills} process${oomKills === 1 ? '' : 'es'} in its cgroup)`
        : describeExit(exit);
      return { exitCode: exit.exitCode, signal: exit.signal, reason: oom ? 'oom' : 'exited', message: `${this.exitSummary}${output}` };
    });
  }

  get logPath(): string {
    return this.container.logPath;
  }

  /** SIGTERM to the init (its pid namespace dies with it), stopGraceMs, SIGKILL, then the teardown. Idempotent. */
  stop(): Promise<void> {
    return this.terminate(this.hooks.stopGraceMs, true);
  }

  /** SIGKILL now, synchronously: the worker process is exiting. */
  killNow(): void {
    if (!this.ended) this.container.init.signal('SIGKILL');
  }

  /** The first call decides the grace and whether the log goes too. */
  terminate(graceMs: number, removeLog: boolean): Promise<void> {
    this.stopRequested = true;
    this.stopping ??= this.runTerminate(graceMs, removeLog);
    return this.stopping;
  }

  private async runTerminate(graceMs: number, removeLog: boolean): Promise<void> {
    const { init } = this.container;
    // The init of a pid namespace only gets the signals it handles: a function without a SIGTERM handler waits out the grace.
    if (!this.ended && init.signal('SIGTERM') && !(await this.waitEnded(graceMs))) {
      init.signal('SIGKILL');
      if (!(await this.waitEnded(KILL_WAIT_MS))) {
        this.hooks.log.warn({ sandboxId: this.sandboxId, pid: this.pid }, 'oci: container init still alive after SIGKILL');
      }
    }
    // An init already dead when the stop came was never signalled nor polled since: look
    // now, so `exited` settles even if the watcher is closed before its next poll.
    if (!this.ended) await this.hooks.watcher.check(init);
    await this.teardown();
    if (removeLog) await unlink(this.container.logPath).catch(() => undefined);
  }

  /** Polls fast (1 ms, ×1.5 up to 20 ms): delete latency is scale-down latency. */
  private async waitEnded(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    let delayMs = 1;
    for (;;) {
      if (this.ended || (await this.hooks.watcher.check(this.container.init))) return true;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await sleep(Math.min(delayMs, left));
      delayMs = Math.min(delayMs * 1.5, 20);
    }
  }

  private teardown(): Promise<void> {
    this.tearingDown ??= this.hooks.destroy(this.container).finally(() => this.hooks.ended(this));
    return this.tearingDown;
  }
}

export function describeExit(exit: InitExit): string {
  if (!exit.known) return 'exited (its exit status is unknown: another process reaped it first)';
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.exitCode ?? 'unknown'}`;
}
