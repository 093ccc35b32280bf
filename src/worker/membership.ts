// The worker's membership in the cluster: it registers with the control
// plane, then heartbeats with its capacity and usage, and registers again
// whenever the control plane forgets it (a heartbeat answers known=false) or
// stops answering (three heartbeats in a row fail). It also carries the
// worker's sandbox failure reports.
//
// None of this may hold the worker up: the worker serves RPCs whether or not
// the control plane is there, and registration retries in the background
// (100 ms doubling to 1 s). Every timer is unref'd and every call is aborted
// by stop().
import { cpus, freemem, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Client } from '@connectrpc/connect';
import { ControlPlaneService, type SandboxFailureSchema } from '../gen/baton/v1/controlplane_pb.js';
import type { Logger } from '../shared/logging.js';
import { createRpcClient, fromRpcError } from '../shared/rpc.js';

const REGISTER_BACKOFF_INITIAL_MS = 100;
// Capped at 1 s: a restarted control plane waits for its workers before it scales
// (recoveryWindowMs), so how soon they come back is how soon it acts; refused
// connects once a second per worker cost a down control plane nothing.
const REGISTER_BACKOFF_MAX_MS = 1000;
/** Consecutive failed heartbeats after which the worker registers again. */
const HEARTBEAT_FAILURES_BEFORE_REREGISTER = 3;
const RPC_TIMEOUT_MS = 5000;
const FAILURE_REPORT_ATTEMPTS = 3;
const FAILURE_REPORT_BACKOFF_MS = 200;

export type MembershipState = 'UNREGISTERED' | 'REGISTERED' | 'STOPPED';

export interface Capacity {
  readonly cpuMillis: number;
  readonly memoryMb: number;
}

export interface MembershipOptions {
  readonly controlPlaneUrl: string;
  readonly token: string | undefined;
  readonly workerId: string;
  /** host:port of the worker's RPC service. */
  readonly address: string;
  readonly runtimes: readonly string[];
  readonly capacity: Capacity;
  /** Used until the control plane names its own interval. */
  readonly heartbeatIntervalMs: number;
  readonly sandboxCount: () => number;
  readonly log: Logger;
}

export class Membership {
  private currentState: MembershipState = 'UNREGISTERED';
  private readonly client: Client<typeof ControlPlaneService>;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private intervalMs: number;
  private lastCpu = cpuTimes();

  constructor(private readonly options: MembershipOptions) {
    this.intervalMs = options.heartbeatIntervalMs;
    this.client = createRpcClient(ControlPlaneService, {
      baseUrl: options.controlPlaneUrl,
      token: options.token,
      timeoutMs: RPC_TIMEOUT_MS,
    });
  }

  get state(): MembershipState {
    return this.currentState;
  }

  /** Starts registering and heartbeating in the background. */
  start(): void {
    this.running ??= this.run().catch((err: unknown) => this.options.log.error({ err }, 'control plane membership loop failed'));
  }

  async stop(): Promise<void> {
    this.currentState = 'STOPPED';
    this.abort.abort();
    await this.running;
  }

  /** Tells the control plane a sandbox died unasked. Retries a little; logs and gives up, never throws. */
  async reportSandboxFailure(failure: MessageInitShape<typeof SandboxFailureSchema>): Promise<void> {
    const { log } = this.options;
    for (let attempt = 1; ; attempt++) {
      if (this.abort.signal.aborted) return;
      try {
        await this.client.reportSandboxFailure(
          { ...failure, workerId: this.options.workerId },
          { signal: this.abort.signal, timeoutMs: RPC_TIMEOUT_MS },
        );
        return;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (attempt >= FAILURE_REPORT_ATTEMPTS) {
          const e = fromRpcError(err, 'control plane');
          log.warn({ sandboxId: failure.sandboxId, code: e.code, err: e.message }, 'cannot report a sandbox failure to the control plane');
          return;
        }
        await this.pause(FAILURE_REPORT_BACKOFF_MS * attempt);
      }
    }
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      if (!(await this.register())) return;
      await this.heartbeatUntilLost();
    }
  }

  /** Registers, retrying with back-off; false when stopped first. */
  private async register(): Promise<boolean> {
    const { log, workerId, address, runtimes, capacity } = this.options;
    let delayMs = REGISTER_BACKOFF_INITIAL_MS;
    for (let attempt = 1; ; attempt++) {
      if (this.abort.signal.aborted) return false;
      try {
        const res = await this.client.registerWorker(
          { workerId, address, capacity: { cpuMillis: capacity.cpuMillis, memoryMb: BigInt(capacity.memoryMb) }, runtimes: [...runtimes] },
          { signal: this.abort.signal, timeoutMs: RPC_TIMEOUT_MS },
        );
        if (res.heartbeatIntervalMs > 0) this.intervalMs = res.heartbeatIntervalMs;
        this.currentState = 'REGISTERED';
        this.lastCpu = cpuTimes();
        log.info({ workerId, address, attempts: attempt, heartbeatIntervalMs: this.intervalMs }, 'registered with the control plane');
        return true;
      } catch (err) {
        if (this.abort.signal.aborted) return false;
        // Attempts 1, 2, 4, 8, ...: a control plane that stays down is not a flood of warnings.
        if ((attempt & (attempt - 1)) === 0) {
          const e = fromRpcError(err, 'control plane');
          log.warn(
            { controlPlaneUrl: this.options.controlPlaneUrl, attempts: attempt, retryInMs: delayMs, code: e.code, err: e.message },
            'cannot register with the control plane; retrying',
          );
        }
        await this.pause(delayMs);
        delayMs = Math.min(delayMs * 2, REGISTER_BACKOFF_MAX_MS);
      }
    }
  }

  /** Heartbeats until the control plane forgets the worker or stops answering, or until stop(). */
  private async heartbeatUntilLost(): Promise<void> {
    const { log, workerId, capacity } = this.options;
    let failures = 0;
    for (;;) {
      // After a failure, try again soon (100 ms doubling), not a whole interval later:
      // a control plane that restarted learns of this worker that much sooner.
      await this.pause(failures === 0 ? this.intervalMs : Math.min(this.intervalMs, REGISTER_BACKOFF_INITIAL_MS * 2 ** (failures - 1)));
      if (this.abort.signal.aborted) return;
      try {
        const res = await this.client.workerHeartbeat(
          {
            workerId,
            capacity: { cpuMillis: capacity.cpuMillis, memoryMb: BigInt(capacity.memoryMb) },
            usage: this.usage(),
          },
          { signal: this.abort.signal, timeoutMs: RPC_TIMEOUT_MS },
        );
        failures = 0;
        if (!res.known) {
          log.info({ workerId }, 'the control plane does not know this worker; registering again');
          this.currentState = 'UNREGISTERED';
          return;
        }
      } catch (err) {
        if (this.abort.signal.aborted) return;
        failures++;
        const e = fromRpcError(err, 'control plane');
        if (failures >= HEARTBEAT_FAILURES_BEFORE_REREGISTER) {
          log.warn({ failures, code: e.code, err: e.message }, 'heartbeats keep failing; registering again');
          this.currentState = 'UNREGISTERED';
          return;
        }
        if (failures === 1) log.warn({ code: e.code, err: e.message }, 'a heartbeat to the control plane failed');
      }
    }
  }

  /** Machine CPU use since the last heartbeat (from the kernel's per-CPU times), memory in use, sandboxes. */
  private usage(): { cpuMillis: number; memoryMb: bigint; sandboxes: number } {
    const now = cpuTimes();
    const busy = now.busy - this.lastCpu.busy;
    const total = now.total - this.lastCpu.total;
    this.lastCpu = now;
    const cpuMillis = total > 0 ? Math.round((busy / total) * now.count * 1000) : 0;
    return {
      cpuMillis: Math.max(0, cpuMillis),
      memoryMb: BigInt(Math.max(0, Math.round((totalmem() - freemem()) / 1048576))),
      sandboxes: this.options.sandboxCount(),
    };
  }

  /** Resolves after ms, or at once on stop(). Never keeps the process alive. */
  private async pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.abort.signal, ref: false }).catch(() => undefined);
  }
}

interface CpuTimes {
  readonly busy: number;
  readonly total: number;
  readonly count: number;
}

/**
 * How old a reading of the machine's CPU times may be and still be used:
 * os.cpus() costs ~0.1 ms, and workers sharing a process (emulated nodes,
 * hundreds of them heartbeating) would each read the same numbers. 250 ms
 * is nothing against a heartbeat's interval of seconds.
 */
const CPU_TIMES_MAX_AGE_MS = 250;
let lastReading: { atMs: number; times: CpuTimes } | undefined;

function cpuTimes(): CpuTimes {
  const now = performance.now();
  if (lastReading && now - lastReading.atMs < CPU_TIMES_MAX_AGE_MS) return lastReading.times;
  let busy = 0;
  let total = 0;
  const all = cpus();
  for (const c of all) {
    const t = c.times;
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  lastReading = { atMs: now, times: { busy, total, count: all.length } };
  return lastReading.times;
}
