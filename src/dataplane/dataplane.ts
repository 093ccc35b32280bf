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
//
// Control-plane deltas carry epochs (epochs.ts, docs/dataplane.md): a delta
// is applied only if nothing newer touched the same endpoint or function, and
// a change that never arrived (a gap) is reported so the control plane sends
// the function's full state (SyncState), as it does on every registration.
import { randomInt } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import type { ConnectRouter } from '@connectrpc/connect';
import { AckSchema } from '../gen/baton/v1/common_pb.js';
import type { Change, Endpoint, FunctionSnapshot, StateSnapshot } from '../gen/baton/v1/common_pb.js';
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
import { fromFunctionSpecMessage, type FunctionSpec, type LoadBalancingPolicyName } from '../shared/spec.js';
import type { AsyncSubmitter } from './async-submitter.js';
import { AsyncInvocations, openQueueStore } from './async/invocations.js';
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
/**
 * How long an epoch a delta names as previous may be missing before it counts
 * as a gap: concurrent RPCs reorder by far less, so one missing this long
 * was lost.
 */
export const GAP_GRACE_MS = 1000;
/** How often functions are checked for gaps. */
const GAP_CHECK_INTERVAL_MS = 250;
/** Removed functions remembered (with their removal epoch) so that a late, older add does not bring them back. */
const REMOVED_FUNCTIONS_KEPT = 1024;

export class DataPlane {
  readonly id: string;
  readonly metrics: DataPlaneMetrics;

  private stateValue: DataPlaneState = 'INITIALIZED';
  private readonly functions = new Map<string, FunctionState>();
  /** The epoch at which each recently removed function was removed. */
  private readonly removedFunctions = new Map<string, bigint>();
  /** Functions a delta named that we do not hold: their state is asked for with the next gap report. */
  private readonly unknownFunctions = new Set<string>();
  private lastGapCheckAt = 0;
  private gapReportInFlight = false;
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
  /** Async invocations (src/dataplane/async/); null when async.enabled is false. */
  private asyncValue: AsyncInvocations | null = null;

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
      asyncSubmitter: () => this.asyncSubmitter(),
    });
    // Not healthy until the control plane's state arrives (syncState).
    this.proxy.synced = false;
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
      await dp.asyncValue?.stop(0);
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
    if (config.async.enabled) {
      // Opened first: a queue another data plane holds (or an unreachable Redis) fails the start.
      const asyncLog = log.child({ component: 'async' });
      const store = await openQueueStore(config.async, config.dataDir, asyncLog);
      this.asyncValue = await AsyncInvocations.open(store, config.async, {
        proxy,
        synced: () => proxy.synced,
        maxResultBytes: config.maxBodyBytes,
        log: asyncLog,
        registry: this.metrics.registry,
      });
      proxy.asyncInvocations = this.asyncValue;
      proxy.asyncMaxBodyBytes = config.async.maxBodyBytes;
    }
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
        ok: this.stateValue === 'RUNNING' && this.synced,
        detail: { dataPlaneId: this.id, state: this.stateValue, registered: this.registered, synced: this.synced },
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
    this.asyncValue?.start();
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

  /**
   * Whether the control plane's full state has arrived once: until then
   * /health answers 503 (on both ports), so a load balancer sends a restarted
   * data plane nothing before it knows the functions.
   */
  get synced(): boolean {
    return this.proxy.synced;
  }

  /**
   * Where async invocations are submitted (the Lambda Invoke API's `Event`
   * type uses it too); null when `async.enabled` is false.
   */
  asyncSubmitter(): AsyncSubmitter | null {
    return this.asyncValue;
  }

  /** The async invocations themselves (results, the expiry sweep); null when disabled. */
  get asyncInvocations(): AsyncInvocations | null {
    return this.asyncValue;
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
    // Claims nothing more; attempts still running get the grace period (async/invocations.ts).
    const asyncStopped = this.asyncValue?.stop(graceMs);
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
    await asyncStopped;
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
      syncState: (req) => {
        this.syncState(req);
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
    const change = versioned(req.change);
    // The first change of a function we hold, and newer than anything of it:
    // it was deleted and registered again while we missed the removal.
    const again = fn !== undefined && change !== undefined && change.previousEpoch === 0n && change.epoch > fn.chain.head;
    if (fn && change) {
      const accepted = this.accept(fn, change);
      if (accepted === 'stale') return;
      if (accepted === 'complete') fn.tombstones.clear();
    }
    if (!fn && change && (this.removedFunctions.get(spec.name) ?? 0n) >= change.epoch) {
      this.log.debug({ function: spec.name, epoch: change.epoch }, 'ignored an add of a function removed later');
      return;
    }
    if (fn && again) {
      this.log.info({ function: fn.name }, 'function registered again: its old endpoints are dropped');
      for (const ep of [...fn.endpoints]) {
        const removed = this.removeEndpointAt(fn, ep.sandboxId, change.epoch);
        if (removed) this.closeWhenIdle(fn, removed);
      }
    }
    this.updateSpec(fn, spec, revision, change, 0n, again);
  }

  /** Adds the function, or applies a newer spec to it; `change` starts a new function's chain. */
  private updateSpec(
    fn: FunctionState | undefined,
    spec: FunctionSpec,
    revision: bigint,
    change: Change | undefined,
    snapshotEpoch = 0n,
    force = false,
  ): void {
    if (fn) {
      if (
        revision === fn.revision &&
        fn.spec.timeoutMs === spec.timeoutMs &&
        fn.concurrency === spec.scaling.containerConcurrency &&
        fn.spec.loadBalancing === spec.loadBalancing
      ) {
        return; // the re-sync after a registration: nothing changed
      }
      if (!fn.update(spec, revision, force)) {
        this.log.debug({ function: spec.name, revision, held: fn.revision }, 'ignored a stale function revision');
        return;
      }
      this.log.info({ function: spec.name, revision, containerConcurrency: fn.concurrency, loadBalancing: fn.policy.name }, 'function updated');
      return;
    }
    const added = new FunctionState(spec, revision, this.lbPolicy);
    if (snapshotEpoch > 0n) added.chain.snapshot(snapshotEpoch);
    else if (change) this.accept(added, change);
    this.functions.set(spec.name, added);
    this.removedFunctions.delete(spec.name);
    this.unknownFunctions.delete(spec.name);
    this.log.info({ function: spec.name, revision, containerConcurrency: spec.scaling.containerConcurrency, loadBalancing: added.policy.name }, 'function added');
  }

  private removeFunction(req: RemoveFunctionRequest): void {
    const change = versioned(req.change);
    const fn = this.functions.get(req.name);
    if (change) {
      // A change newer than the removal (the function registered again) wins.
      if (fn && fn.chain.head > change.epoch) return;
      this.rememberRemoved(req.name, change.epoch);
    }
    if (fn) this.dropFunction(fn);
  }

  private rememberRemoved(name: string, epoch: bigint): void {
    const known = this.removedFunctions.get(name) ?? 0n;
    this.removedFunctions.delete(name);
    this.removedFunctions.set(name, known > epoch ? known : epoch);
    this.unknownFunctions.delete(name);
    if (this.removedFunctions.size > REMOVED_FUNCTIONS_KEPT) {
      const oldest = this.removedFunctions.keys().next();
      if (!oldest.done) this.removedFunctions.delete(oldest.value);
    }
  }

  private dropFunction(fn: FunctionState): void {
    this.functions.delete(fn.name);
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
    const change = versioned(req.change);
    const fn = this.functions.get(req.function);
    if (!fn) {
      if (change && (this.removedFunctions.get(req.function) ?? 0n) >= change.epoch) return; // removed since
      // We missed the function's add (or it is on its way): ask for its state.
      if (change) this.unknownFunctions.add(req.function);
      throw new BatonError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(req.function)} on data plane ${this.id}`);
    }
    const accepted = change ? this.accept(fn, change) : 'applied';
    if (accepted === 'stale') return;
    for (const e of req.endpoints) this.addEndpoint(fn, e, change?.epoch ?? 0n);
    if (accepted === 'complete') fn.tombstones.clear();
  }

  private addEndpoint(fn: FunctionState, e: Endpoint, epoch: bigint): void {
    if (e.sandboxId === '' || e.address === '') {
      throw new BatonError('INVALID_REQUEST', 'an endpoint needs a sandbox id and an address');
    }
    if (epoch > 0n && fn.changedAt(e.sandboxId) >= epoch) {
      this.log.debug({ function: fn.name, sandbox: e.sandboxId, epoch }, 'ignored an add older than the endpoint\'s latest change');
      return;
    }
    const known = fn.getEndpoint(e.sandboxId);
    if (known) {
      if (known.address === e.address) {
        known.epoch = epoch > known.epoch ? epoch : known.epoch;
        return; // idempotent re-send
      }
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
    ep.epoch = epoch;
    fn.tombstones.delete(e.sandboxId);
    this.openEndpoints.add(ep);
    const queued = fn.queued;
    fn.addEndpoint(ep);
    this.log.debug({ function: fn.name, sandbox: e.sandboxId, address: e.address, released: queued - fn.queued }, 'endpoint added');
  }

  private async removeEndpoints(req: RemoveEndpointsRequest): Promise<RemoveEndpointsResponse> {
    const fn = this.functions.get(req.function);
    if (!fn) return create(RemoveEndpointsResponseSchema, { abandonedInFlight: 0 });
    const change = versioned(req.change);
    const accepted = change ? this.accept(fn, change) : 'applied';
    if (accepted === 'stale') return create(RemoveEndpointsResponseSchema, { abandonedInFlight: 0 });
    const removed: EndpointState[] = [];
    for (const id of req.sandboxIds) {
      const ep = this.removeEndpointAt(fn, id, change?.epoch ?? 0n);
      if (ep) removed.push(ep);
    }
    if (accepted === 'complete') fn.tombstones.clear();
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

  /** Stops routing to an endpoint unless a newer change added it; remembers the removal's epoch. */
  private removeEndpointAt(fn: FunctionState, sandboxId: string, epoch: bigint): EndpointState | undefined {
    if (epoch > 0n) {
      if (fn.changedAt(sandboxId) >= epoch) return undefined;
      fn.tombstones.set(sandboxId, epoch);
    }
    return fn.removeEndpoint(sandboxId);
  }

  /** Records a versioned delta in the function's chain; 'stale' means ignore it. */
  private accept(fn: FunctionState, change: Change): 'stale' | 'applied' | 'complete' {
    const r = fn.chain.accept(change.epoch, change.previousEpoch, performance.now());
    if (r === 'stale') this.log.debug({ function: fn.name, epoch: change.epoch, base: fn.chain.base }, 'ignored a stale delta');
    return r;
  }

  // Snapshots and gaps ------------------------------------------------------

  /** Applies the full state of some functions (or all): changes newer than the snapshot are kept. */
  private syncState(snapshot: StateSnapshot): void {
    const named = new Set<string>();
    for (const f of snapshot.functions) {
      named.add(f.name);
      this.applySnapshot(f);
    }
    if (!snapshot.complete) return;
    if (!this.proxy.synced) {
      this.proxy.synced = true;
      this.log.info({ functions: snapshot.functions.length }, 'received the full state: healthy');
      // Async invocations waited for their functions to be known.
      this.asyncValue?.pump();
    }
    for (const fn of [...this.functions.values()]) {
      if (!named.has(fn.name) && fn.chain.head <= snapshot.epoch) {
        this.log.info({ function: fn.name }, 'function absent from the control plane\'s state: removed');
        this.rememberRemoved(fn.name, snapshot.epoch);
        this.dropFunction(fn);
      }
    }
    this.unknownFunctions.clear();
  }

  private applySnapshot(f: FunctionSnapshot): void {
    const fn = this.functions.get(f.name);
    this.unknownFunctions.delete(f.name);
    if (!f.function) {
      if (fn && fn.chain.head > f.epoch) return;
      this.rememberRemoved(f.name, f.epoch);
      if (fn) this.dropFunction(fn);
      return;
    }
    const spec = fromFunctionSpecMessage(f.function);
    if (!fn) {
      if ((this.removedFunctions.get(f.name) ?? 0n) >= f.epoch) return;
      this.updateSpec(undefined, spec, f.function.revision, undefined, f.epoch);
      const added = this.functions.get(f.name);
      if (added) for (const e of f.endpoints) this.addEndpoint(added, e, f.epoch);
      return;
    }
    // Newer than every change we applied: its spec is right even with a lower revision (registered again).
    const newest = f.epoch >= fn.chain.head;
    if (!fn.chain.snapshot(f.epoch)) return; // we already hold all of it
    this.updateSpec(fn, spec, f.function.revision, undefined, 0n, newest);
    const wanted = new Set<string>();
    for (const e of f.endpoints) {
      wanted.add(e.sandboxId);
      this.addEndpoint(fn, e, f.epoch);
    }
    for (const ep of [...fn.endpoints]) {
      if (wanted.has(ep.sandboxId)) continue;
      const removed = this.removeEndpointAt(fn, ep.sandboxId, f.epoch);
      if (removed) this.closeWhenIdle(fn, removed);
    }
    if (fn.chain.complete) fn.tombstones.clear();
  }

  /** Asks the control plane for the state of functions with a gap; at most one report in flight. */
  private checkGaps(now: number): void {
    if (now - this.lastGapCheckAt < GAP_CHECK_INTERVAL_MS || this.gapReportInFlight) return;
    this.lastGapCheckAt = now;
    const names = new Set(this.unknownFunctions);
    for (const fn of this.functions.values()) {
      if (!fn.chain.complete && fn.chain.hasGap(now, GAP_GRACE_MS)) names.add(fn.name);
    }
    const link = this.linkValue;
    if (names.size === 0 || !link) return;
    this.gapReportInFlight = true;
    this.log.info({ functions: [...names] }, 'missed a control-plane change: asking for the full state');
    void link.reportGaps([...names]).then((snapshot) => {
      this.gapReportInFlight = false;
      if (snapshot) this.syncState(snapshot);
    });
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
    this.checkGaps(now);
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

/** The delta's place in its function's history, or undefined for an unversioned delta (applied unconditionally). */
function versioned(change: Change | undefined): Change | undefined {
  return change && change.epoch > 0n ? change : undefined;
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
