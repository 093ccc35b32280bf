// The data plane daemon: HTTP ingress for invocations, and the RPC service
// through which the control plane tells it which functions and sandboxes
// exist.
//
//   control plane ──RPC (AddFunction, AddEndpoints, RemoveEndpoints, …)──▶ function table
//   client ──HTTP/1.1 or h2c──▶ DualListener ──▶ Proxy (fast path or general path)
//          ──▶ function table (tokens, cold-start queue) ──▶ sandbox
//   function table ──in-flight reports (periodic, urgent)──▶ control plane
//
// It owns: the function table (FunctionState per function; EndpointState
// with its upstream connections per sandbox), the two listeners, the link to
// the control plane, and one housekeeping timer that advances the coarse
// clock, times out upstream exchanges and queued requests, closes idle
// connections and sends the periodic in-flight report. Each tick also samples
// every active function's inFlight + queued, so the report carries the
// average concurrency since the previous one (FunctionLoad.averageConcurrency)
// and a request that starts and ends between two reports still counts,
// without any work per request. Sandbox state is never
// persisted here: a restarted data plane registers and the control plane
// pushes everything again (DESIGN.md principles 1 and 3).
import { randomInt } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import type { ConnectRouter } from '@connectrpc/connect';
import { AckSchema } from '../gen/baton/v1/common_pb.js';
import type { Endpoint } from '../gen/baton/v1/common_pb.js';
import {
  DataPlaneService,
  RemoveEndpointsResponseSchema,
  type AddEndpointsRequest,
  type AddFunctionRequest,
  type RejectQueuedRequest,
  type RemoveEndpointsRequest,
  type RemoveEndpointsResponse,
  type RemoveFunctionRequest,
} from '../gen/baton/v1/dataplane_pb.js';
import type { RegisterDataPlaneResponse } from '../gen/baton/v1/controlplane_pb.js';
import { advertisedHost, joinHostPort, type DataPlaneConfig } from '../shared/config.js';
import { BatonError, type ErrorCode } from '../shared/errors.js';
import { componentId } from '../shared/ids.js';
import { DualListener } from '../shared/listener.js';
import { createLogger, type Logger } from '../shared/logging.js';
import { startRpcServer } from '../shared/rpc.js';
import { fromFunctionSpecMessage, type LoadBalancingPolicyName } from '../shared/spec.js';
import { CLOCK_TICK_MS, tickClock } from './clock.js';
import { ControlPlaneLink, type FunctionLoadInit } from './control-plane-link.js';
import { EndpointState, FunctionState } from './function-table.js';
import { DataPlaneMetrics } from './metrics.js';
import { Proxy } from './proxy.js';
import type { ProxyHost } from './request.js';
import { EndpointUpstream, UpstreamTracker } from './upstream.js';

export type DataPlaneState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED' | 'FAILED';

export interface DataPlaneOptions {
  log?: Logger;
}

/** How often idle connections are checked, both to clients and to sandboxes. */
const IDLE_SWEEP_INTERVAL_MS = 1000;
/**
 * Idle connections to sandboxes close after this long: below the 5 s
 * keep-alive of a default Node server, so we rarely reuse one the sandbox is
 * closing (undici's default keepAliveTimeout is 4 s for the same reason).
 */
const UPSTREAM_IDLE_MS = 4000;
/** Fast-path client connections: as node:http's keepAliveTimeout and headersTimeout in DualListener. */
const CLIENT_IDLE_MS = 65_000;
const CLIENT_HEADERS_MS = 60_000;

export class DataPlane {
  readonly id: string;
  readonly metrics: DataPlaneMetrics;

  private stateValue: DataPlaneState = 'INITIALIZED';
  private readonly functions = new Map<string, FunctionState>();
  /** Functions with requests in flight or queued, plus those owed a final zero report. */
  private readonly active = new Set<FunctionState>();
  /** Every endpoint whose pool is open, routable or draining. */
  private readonly openEndpoints = new Set<EndpointState>();
  private readonly proxy: Proxy;
  /** The policy of functions whose spec names none. */
  private readonly lbPolicy: LoadBalancingPolicyName;
  private readonly heartbeatIntervalMs: number;
  private proxyListener: DualListener | null = null;
  private readonly tracker: UpstreamTracker;
  private lastIdleSweepAt = 0;
  private rpcListener: DualListener | null = null;
  private linkValue: ControlPlaneLink | null = null;
  private addresses = { proxy: '', rpc: '', proxyPort: 0, rpcPort: 0 };
  private housekeeping: NodeJS.Timeout | null = null;
  private metricsIntervalMs: number;
  private lastReportAt = 0;
  private reportInFlight = false;
  private stopping: Promise<void> | null = null;

  private constructor(
    private readonly config: DataPlaneConfig,
    private readonly log: Logger,
    id: string,
  ) {
    this.id = id;
    this.lbPolicy = config.loadBalancingPolicy;
    this.heartbeatIntervalMs = config.heartbeatIntervalMs;
    this.metricsIntervalMs = config.metricsIntervalMs;
    this.tracker = new UpstreamTracker(log);
    const metrics = new DataPlaneMetrics(() => this.functions.values());
    this.metrics = metrics;
    const host: ProxyHost = {
      functions: this.functions,
      onActive: (fn) => this.markActive(fn),
      onQueued: (fn) => this.linkValue?.reportUrgent(fn),
      onColdStartWait: (fn, ms) => metrics.observeColdStartWait(fn, ms),
      onUnrouted: (status) => metrics.countUnrouted(status),
      onUpstreamError: (fn, code: ErrorCode) => metrics.countUpstreamError(fn, code),
    };
    this.proxy = new Proxy(host, {
      maxBodyBytes: config.maxBodyBytes,
      maxQueueLength: config.maxQueueLength,
      requestLog: config.logRequests ? log.child({ kind: 'request' }) : null,
      log,
    });
  }

  /**
   * Binds both ports, starts serving, and starts registering with the
   * control plane in the background (an absent control plane does not make
   * this fail or wait).
   */
  static async create(config: DataPlaneConfig, options: DataPlaneOptions = {}): Promise<DataPlane> {
    const id = config.id ?? componentId('dataplane');
    const log = (options.log ?? createLogger('dataplane', { level: config.logLevel })).child({ dataPlaneId: id });
    const dp = new DataPlane(config, log, id);
    try {
      await dp.start();
    } catch (err) {
      dp.stateValue = 'FAILED';
      await dp.proxyListener?.close(0);
      await dp.rpcListener?.close(0);
      throw err;
    }
    return dp;
  }

  private async start(): Promise<void> {
    const config = this.config;
    const log = this.log;
    const proxy = this.proxy;
    const listener = await DualListener.listen(proxy.handle, {
      host: config.host,
      port: config.port,
      log,
      onHttp1: (socket, head) => proxy.acceptHttp1(socket, head),
    });
    this.proxyListener = listener;
    proxy.toNodeHttp = (socket, head) => listener.toHttp1(socket, head);
    this.rpcListener = await startRpcServer({
      host: config.host,
      port: config.rpcPort,
      log,
      token: config.token,
      metrics: this.metrics.registry,
      routes: (router) => this.routes(router),
      health: () => ({
        ok: this.stateValue === 'RUNNING',
        detail: { dataPlaneId: this.id, state: this.stateValue, registered: this.registered },
      }),
    });
    const host = advertisedHost(config.host, config.advertiseHost);
    const proxyPort = this.proxyListener.port;
    const rpcPort = this.rpcListener.port;
    this.addresses = {
      proxy: joinHostPort(host, proxyPort),
      rpc: joinHostPort(host, rpcPort),
      proxyPort,
      rpcPort,
    };
    this.linkValue = new ControlPlaneLink({
      controlPlaneUrl: config.controlPlaneUrl,
      token: config.token,
      dataPlaneId: this.id,
      rpcAddress: this.addresses.rpc,
      proxyAddress: this.addresses.proxy,
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      // New on every start, so the control plane tells a restart from a heartbeat and re-sends everything.
      incarnation: (BigInt(Date.now()) << 16n) | BigInt(randomInt(65536)),
      log,
      onRegistered: (res) => this.onRegistered(res),
    });
    this.startHousekeeping();
    this.stateValue = 'RUNNING';
    this.linkValue.start();
    log.info({ proxy: this.addresses.proxy, rpc: this.addresses.rpc, controlPlane: config.controlPlaneUrl }, 'data plane started');
  }

  /** host:port clients invoke functions on (the advertised host). */
  get proxyAddress(): string {
    return this.addresses.proxy;
  }

  /** host:port of the RPC service, /metrics and /health (the advertised host). */
  get rpcAddress(): string {
    return this.addresses.rpc;
  }

  get proxyPort(): number {
    return this.addresses.proxyPort;
  }

  get rpcPort(): number {
    return this.addresses.rpcPort;
  }

  get state(): DataPlaneState {
    return this.stateValue;
  }

  /** Whether the last registration (or heartbeat) reached the control plane. */
  get registered(): boolean {
    return this.linkValue?.registered ?? false;
  }

  /**
   * Stops: new requests and queued ones get 503 UNAVAILABLE, in-flight ones
   * get up to `graceMs` to finish, then every connection and pool closes.
   */
  stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.stopping ??= this.doStop(graceMs);
    return this.stopping;
  }

  private async doStop(graceMs: number): Promise<void> {
    this.stateValue = 'DRAINING';
    this.proxy.accepting = false;
    if (this.housekeeping) clearInterval(this.housekeeping);
    this.housekeeping = null;
    const listenerClosed = this.proxyListener?.close(graceMs);
    this.proxy.closeIdleClients();
    for (const fn of this.functions.values()) {
      this.proxy.failQueued(fn, 503, 'UNAVAILABLE', 'the data plane is shutting down', '1');
    }
    const linkStopped = this.linkValue?.stop();
    await withTimeout(Promise.all([...this.openEndpoints].map((ep) => ep.whenIdle())), graceMs);
    this.proxyListener?.http1.closeIdleConnections();
    this.proxy.closeIdleClients();
    await listenerClosed;
    await linkStopped;
    await this.rpcListener?.close(Math.min(graceMs, 1000));
    await Promise.all([...this.openEndpoints].map((ep) => ep.upstream.destroy().catch(() => undefined)));
    this.openEndpoints.clear();
    this.stateValue = 'STOPPED';
    this.log.info('data plane stopped');
  }

  // RPC service ------------------------------------------------------------

  private routes(router: ConnectRouter): void {
    router.service(DataPlaneService, {
      addFunction: (req) => {
        this.addFunction(req);
        return create(AckSchema);
      },
      removeFunction: (req) => {
        this.removeFunction(req);
        return create(AckSchema);
      },
      addEndpoints: (req) => {
        this.addEndpoints(req);
        return create(AckSchema);
      },
      removeEndpoints: (req) => this.removeEndpoints(req),
      rejectQueued: (req) => {
        this.rejectQueued(req);
        return create(AckSchema);
      },
    });
  }

  private addFunction(req: AddFunctionRequest): void {
    if (!req.function || req.function.name === '') {
      throw new BatonError('INVALID_REQUEST', 'AddFunction needs a function with a name');
    }
    const spec = fromFunctionSpecMessage(req.function);
    const revision = req.function.revision;
    const fn = this.functions.get(spec.name);
    if (fn) {
      if (
        revision === fn.revision &&
        fn.spec.timeoutMs === spec.timeoutMs &&
        fn.concurrency === spec.scaling.containerConcurrency &&
        fn.spec.loadBalancing === spec.loadBalancing
      ) {
        return; // the re-sync after a registration: nothing changed
      }
      if (!fn.update(spec, revision)) {
        this.log.debug({ function: spec.name, revision, held: fn.revision }, 'ignored a stale function revision');
        return;
      }
      this.log.info({ function: spec.name, revision, containerConcurrency: fn.concurrency, loadBalancing: fn.policy.name }, 'function updated');
      return;
    }
    const added = new FunctionState(spec, revision, this.lbPolicy);
    this.functions.set(spec.name, added);
    this.log.info({ function: spec.name, revision, containerConcurrency: spec.scaling.containerConcurrency, loadBalancing: added.policy.name }, 'function added');
  }

  private removeFunction(req: RemoveFunctionRequest): void {
    const fn = this.functions.get(req.name);
    if (!fn) return;
    this.functions.delete(req.name);
    fn.removed = true;
    const failed = this.proxy.failQueued(fn, 404, 'FUNCTION_NOT_FOUND', `function ${JSON.stringify(fn.name)} was removed`);
    for (const ep of [...fn.endpoints]) {
      fn.removeEndpoint(ep.sandboxId);
      this.closeWhenIdle(fn, ep);
    }
    this.metrics.flush(fn);
    this.log.info({ function: fn.name, failedQueued: failed, inFlight: fn.inFlight }, 'function removed');
  }

  private addEndpoints(req: AddEndpointsRequest): void {
    const fn = this.functions.get(req.function);
    if (!fn) throw new BatonError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(req.function)} on data plane ${this.id}`);
    for (const e of req.endpoints) this.addEndpoint(fn, e);
  }

  private addEndpoint(fn: FunctionState, e: Endpoint): void {
    if (e.sandboxId === '' || e.address === '') {
      throw new BatonError('INVALID_REQUEST', 'an endpoint needs a sandbox id and an address');
    }
    const known = fn.getEndpoint(e.sandboxId);
    if (known) {
      if (known.address === e.address) return; // idempotent re-send
      fn.removeEndpoint(e.sandboxId);
      this.closeWhenIdle(fn, known);
    }
    let upstream: EndpointUpstream;
    try {
      upstream = new EndpointUpstream(e.address, { connections: this.config.upstreamConnections, tracker: this.tracker });
    } catch (err) {
      throw new BatonError('INVALID_REQUEST', `endpoint ${e.sandboxId}: ${(err as Error).message}`);
    }
    const ep = new EndpointState(e.sandboxId, e.address, e.workerId, upstream);
    this.openEndpoints.add(ep);
    const queued = fn.queued;
    fn.addEndpoint(ep);
    this.log.debug({ function: fn.name, sandbox: e.sandboxId, address: e.address, released: queued - fn.queued }, 'endpoint added');
  }

  private async removeEndpoints(req: RemoveEndpointsRequest): Promise<RemoveEndpointsResponse> {
    const fn = this.functions.get(req.function);
    if (!fn) return create(RemoveEndpointsResponseSchema, { abandonedInFlight: 0 });
    const removed: EndpointState[] = [];
    for (const id of req.sandboxIds) {
      const ep = fn.removeEndpoint(id);
      if (ep) removed.push(ep);
    }
    if (req.drain && removed.some((ep) => ep.inFlight > 0)) {
      const timeoutMs = req.drainTimeoutMs > 0 ? req.drainTimeoutMs : fn.timeoutMs;
      await withTimeout(Promise.all(removed.map((ep) => ep.whenIdle())), timeoutMs);
    }
    let abandoned = 0;
    for (const ep of removed) {
      abandoned += ep.inFlight;
      this.closeWhenIdle(fn, ep);
    }
    this.log.debug({ function: fn.name, removed: removed.length, drain: req.drain, abandoned }, 'endpoints removed');
    return create(RemoveEndpointsResponseSchema, { abandonedInFlight: abandoned });
  }

  private rejectQueued(req: RejectQueuedRequest): void {
    const fn = this.functions.get(req.function);
    if (!fn) return;
    const status = req.httpStatus >= 400 && req.httpStatus <= 599 ? req.httpStatus : 503;
    const code = req.code || 'UNAVAILABLE';
    const message = req.message || `function ${fn.name} cannot start a sandbox now`;
    const n = this.proxy.failQueued(fn, status, code, message, status === 503 || status === 429 ? '1' : undefined);
    if (n > 0) this.log.info({ function: fn.name, rejected: n, code, status }, 'rejected queued requests');
  }

  /** Closes an endpoint's pool once its in-flight requests are done. */
  private closeWhenIdle(fn: FunctionState, ep: EndpointState): void {
    void ep.whenIdle().then(async () => {
      this.openEndpoints.delete(ep);
      if (fn.removed) this.metrics.flush(fn);
      try {
        await ep.upstream.close();
      } catch (err) {
        this.log.debug({ err, sandbox: ep.sandboxId }, 'closing an endpoint pool failed');
      }
    });
  }

  // Control-plane reporting -----------------------------------------------

  private markActive(fn: FunctionState): void {
    fn.reportActive = true;
    this.active.add(fn);
  }

  private onRegistered(res: RegisterDataPlaneResponse): void {
    // The control plane decides how often it wants reports.
    if (res.metricsIntervalMs > 0 && res.metricsIntervalMs !== this.metricsIntervalMs) {
      this.metricsIntervalMs = res.metricsIntervalMs;
      if (this.housekeeping) this.startHousekeeping();
    }
  }

  private startHousekeeping(): void {
    if (this.housekeeping) clearInterval(this.housekeeping);
    this.housekeeping = setInterval(() => this.housekeep(), Math.min(CLOCK_TICK_MS, this.metricsIntervalMs));
    this.housekeeping.unref();
  }

  /**
   * The one periodic timer: advance the coarse clock, time out upstream
   * exchanges and queued requests, close idle connections, sample each
   * active function's concurrency, and send the in-flight report when due.
   */
  private housekeep(): void {
    const now = tickClock();
    if (this.tracker.busy.size > 0 || this.tracker.waiting.size > 0) this.tracker.sweep(now);
    if (now - this.lastIdleSweepAt >= IDLE_SWEEP_INTERVAL_MS) {
      this.lastIdleSweepAt = now;
      this.proxy.sweepClients(now, CLIENT_IDLE_MS, CLIENT_HEADERS_MS);
      for (const ep of this.openEndpoints) ep.upstream.raw.closeIdle(now - UPSTREAM_IDLE_MS);
    }
    if (this.active.size === 0) return;
    for (const fn of this.active) {
      if (fn.queued > 0) this.proxy.expireQueued(fn, now);
      // Ticks are evenly spaced (give or take timer lag), so an unweighted
      // mean of the samples approximates the time average; a request shorter
      // than a tick is caught with probability duration/tick, which is the
      // same in expectation.
      fn.concurrencySampleSum += fn.inFlight + fn.queued;
      fn.concurrencySamples++;
    }
    if (now - this.lastReportAt < this.metricsIntervalMs - 1 || this.reportInFlight) return;
    this.lastReportAt = now;
    const loads: FunctionLoadInit[] = [];
    for (const fn of this.active) {
      const averageConcurrency = fn.concurrencySamples > 0 ? fn.concurrencySampleSum / fn.concurrencySamples : fn.inFlight + fn.queued;
      fn.concurrencySampleSum = 0;
      fn.concurrencySamples = 0;
      loads.push({ function: fn.name, inFlight: fn.inFlight, queued: fn.queued, averageConcurrency });
      if (fn.inFlight === 0 && fn.queued === 0 && averageConcurrency === 0) {
        // This report carries the final zero (nothing in flight, queued, or
        // seen since the last report); stop reporting until the next request.
        fn.reportActive = false;
        this.active.delete(fn);
      }
    }
    const link = this.linkValue;
    if (!link) return;
    this.reportInFlight = true;
    void link.report(loads, false).then(() => {
      this.reportInFlight = false;
    });
  }
}

/** Resolves when `p` settles or `ms` pass, whichever is first. */
async function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.then(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}
