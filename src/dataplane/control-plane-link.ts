// The data plane's side of its conversation with the control plane:
// registration, the heartbeat, and in-flight reports.
//
// - Registration runs in the background: create() never waits for it, and a
//   control plane that is down only delays it (back-off 100 ms, doubling to
//   5 s). The warm path does not need the control plane at all.
// - The data plane registers again every heartbeatIntervalMs (5 s, as
//   Dirigent's RegisterDataplane heartbeat), and at once when a report says
//   the control plane does not know us. Each registration makes the control
//   plane push the full function and endpoint state, which the data plane
//   applies idempotently, so a restarted control plane (or data plane)
//   re-syncs within one heartbeat.
// - Reports: the data plane sends one batched periodic report; urgent
//   reports (a request queued with no token free) go out at once, at most
//   one in flight per function, so scaling from zero does not wait for a tick.
import { setMaxListeners } from 'node:events';
import { create } from '@bufbuild/protobuf';
import type { Client } from '@connectrpc/connect';
import type { StateSnapshot } from '../gen/baton/v1/common_pb.js';
import {
  ControlPlaneService,
  GapReportSchema,
  InFlightReportSchema,
  RegisterDataPlaneRequestSchema,
  type FunctionLoad,
  type RegisterDataPlaneResponse,
} from '../gen/baton/v1/controlplane_pb.js';
import type { Logger } from '../shared/logging.js';
import { createRpcClient, fromRpcError } from '../shared/rpc.js';
import type { FunctionState } from './function-table.js';

export interface ControlPlaneLinkOptions {
  controlPlaneUrl: string;
  token?: string | undefined;
  dataPlaneId: string;
  /** host:port of our RPC service. */
  rpcAddress: string;
  /** host:port clients invoke us on. */
  proxyAddress: string;
  heartbeatIntervalMs: number;
  /** Changes with every start of the data plane (RegisterDataPlaneRequest.incarnation). */
  incarnation: bigint;
  log: Logger;
  /** Called after every successful registration. */
  onRegistered?: (res: RegisterDataPlaneResponse) => void;
}

const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 5000;
const RPC_TIMEOUT_MS = 5000;

export type FunctionLoadInit = Pick<FunctionLoad, 'function' | 'inFlight' | 'queued' | 'averageConcurrency'>;

export class ControlPlaneLink {
  private readonly client: Client<typeof ControlPlaneService>;
  private stopped = false;
  private registeredOnce = false;
  private wake: (() => void) | null = null;
  private sleepTimer: NodeJS.Timeout | null = null;
  private loop: Promise<void> | null = null;
  /** Aborts calls in flight when the link stops, so stop() never waits on a hung control plane. */
  private readonly aborter = new AbortController();
  /** Whether the last registration attempt succeeded. */
  registered = false;

  constructor(private readonly options: ControlPlaneLinkOptions) {
    // Every call in flight listens on the one signal, and a burst of cold
    // starts sends an urgent report per queued function at once: dozens of
    // listeners are expected, not a leak (Node warns from 11).
    setMaxListeners(0, this.aborter.signal);
    this.client = createRpcClient(ControlPlaneService, {
      baseUrl: options.controlPlaneUrl,
      token: options.token,
      timeoutMs: RPC_TIMEOUT_MS,
    });
  }

  /** Starts registering in the background; returns at once. */
  start(): void {
    this.loop ??= this.registerLoop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.aborter.abort();
    this.interruptSleep();
    await this.loop;
  }

  /** Registers again now instead of at the next heartbeat. */
  reregisterNow(): void {
    this.interruptSleep();
  }

  private async registerLoop(): Promise<void> {
    const o = this.options;
    let backoffMs = BACKOFF_INITIAL_MS;
    let failures = 0;
    while (!this.stopped) {
      let waitMs: number;
      try {
        const res = await this.client.registerDataPlane(
          create(RegisterDataPlaneRequestSchema, {
            dataPlaneId: o.dataPlaneId,
            address: o.rpcAddress,
            proxyAddress: o.proxyAddress,
            incarnation: o.incarnation,
          }),
          { signal: this.aborter.signal },
        );
        if (!this.registeredOnce || failures > 0) {
          o.log.info({ controlPlane: o.controlPlaneUrl, afterFailures: failures }, 'registered with the control plane');
        }
        this.registeredOnce = true;
        this.registered = true;
        failures = 0;
        backoffMs = BACKOFF_INITIAL_MS;
        waitMs = o.heartbeatIntervalMs;
        o.onRegistered?.(res);
      } catch (err) {
        if (this.stopped) break;
        this.registered = false;
        const e = fromRpcError(err, 'control plane');
        // Say it once, then quietly keep trying.
        if (failures === 0) {
          o.log.warn({ code: e.code, err: e.message, controlPlane: o.controlPlaneUrl }, 'cannot register with the control plane; retrying');
        }
        else o.log.debug({ code: e.code, err: e.message }, 'registration retry failed');
        failures++;
        waitMs = backoffMs;
        backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
      }
      await this.sleep(waitMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(() => this.interruptSleep(), ms);
      this.sleepTimer.unref();
    });
  }

  private interruptSleep(): void {
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.sleepTimer = null;
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Sends one report; resolves false when it failed (already logged). */
  async report(functions: FunctionLoadInit[], urgent: boolean): Promise<boolean> {
    if (this.stopped) return false;
    try {
      await this.client.reportInFlight(
        create(InFlightReportSchema, { dataPlaneId: this.options.dataPlaneId, functions, urgent }),
        { signal: this.aborter.signal },
      );
      return true;
    } catch (err) {
      if (this.stopped) return false;
      const e = fromRpcError(err, 'control plane');
      this.options.log.debug({ code: e.code, err: e.message, urgent }, 'in-flight report failed');
      // The control plane answers for data planes it does not know with
      // NOT_FOUND (it restarted, or timed us out): register again now.
      if (e.code === 'NOT_FOUND' || e.code === 'UNAVAILABLE') this.reregisterNow();
      return false;
    }
  }

  /** Asks for the full state of functions whose changes we missed; resolves undefined when it failed (logged). */
  async reportGaps(functions: string[]): Promise<StateSnapshot | undefined> {
    if (this.stopped) return undefined;
    try {
      return await this.client.reportGaps(
        create(GapReportSchema, { dataPlaneId: this.options.dataPlaneId, functions }),
        { signal: this.aborter.signal },
      );
    } catch (err) {
      if (this.stopped) return undefined;
      const e = fromRpcError(err, 'control plane');
      this.options.log.warn({ code: e.code, err: e.message, functions }, 'gap report failed; retrying');
      if (e.code === 'NOT_FOUND' || e.code === 'UNAVAILABLE') this.reregisterNow();
      return undefined;
    }
  }

  /**
   * Tells the control plane at once that `fn` has requests queued with no
   * token free. At most one urgent report per function is in flight; if
   * the queue grew meanwhile, one more follows when it returns.
   */
  reportUrgent(fn: FunctionState): void {
    if (this.stopped) return;
    if (fn.urgentInFlight) {
      fn.urgentPending = true;
      return;
    }
    fn.urgentInFlight = true;
    fn.urgentPending = false;
    const queuedAtSend = fn.queued;
    // An urgent report is a snapshot between periodic ones: its average is
    // the load now (the periodic report's samples are left alone).
    const load: FunctionLoadInit = { function: fn.name, inFlight: fn.inFlight, queued: queuedAtSend, averageConcurrency: fn.inFlight + queuedAtSend };
    void this.report([load], true).then(() => {
      fn.urgentInFlight = false;
      if (fn.urgentPending && !fn.removed && fn.queued > queuedAtSend) this.reportUrgent(fn);
      fn.urgentPending = false;
    });
  }
}
