// The control plane: the function registry and its admin API, worker and
// data-plane membership, scaling, and the actuator that creates and deletes
// sandboxes. One process, state in memory, one writer per object; only
// registrations go to the store (DESIGN.md, principles 1 and 3).
//
// Data flow: data planes report in-flight counts (ReportInFlight) → on every
// tick each function's Knative autoscaler records the sum and decides its
// scale (a queued request decides at once, to scale from zero) → the actuator creates sandboxes on
// workers (placement) and pushes ready endpoints to every data plane, or
// drains and deletes them. Workers report sandbox deaths; silent workers are
// expired on the scaling tick.
import { resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { ConnectRouter } from '@connectrpc/connect';
import { AckSchema, SandboxState, StateSnapshotSchema } from '../gen/baton/v1/common_pb.js';
import {
  ControlPlaneService,
  RegisterDataPlaneResponseSchema,
  RegisterWorkerResponseSchema,
  WorkerHeartbeatResponseSchema,
} from '../gen/baton/v1/controlplane_pb.js';
import { type ControlPlaneConfig, joinHostPort } from '../shared/config.js';
import { BatonError } from '../shared/errors.js';
import type { DualListener } from '../shared/listener.js';
import { createLogger, type Logger } from '../shared/logging.js';
import { createMetricsRegistry } from '../shared/metrics.js';
import { fromRpcError, startRpcServer } from '../shared/rpc.js';
import { parseFunctionSpec, patchFunctionSpec, toFunctionSpecMessage, type FunctionSpec } from '../shared/spec.js';
import { openStore, type ClusterStore } from '../store/index.js';
import { Actuator } from './actuator.js';
import { createAdminHandler, type AdminBackend } from './admin-api.js';
import { ColdStartTrace, type CreationRecord } from './creation-trace.js';
import { LeaderElection, type LeadershipState } from './leader.js';
import { chainFunctionInput, chainOfFunction, parseChainSpec } from '../shared/chain-spec.js';
import { describeFunction, isLive, newFunctionState, summarizeFunction, totalLoad, type FunctionState } from './function-state.js';
import { Membership, type WorkerMember } from './membership.js';
import { createControlPlaneMetrics, type ControlPlaneMetrics } from './metrics.js';
import { createPlacementPolicy } from './placement/index.js';
import { createEvictionPolicy } from './scaling/eviction.js';
import type { KpaOptions } from './scaling/kpa.js';

export type ControlPlaneState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED' | 'FAILED';

export interface ControlPlaneOptions {
  log?: Logger;
  /**
   * Called when a replicated control plane loses the leadership it held: its view of the
   * cluster may be stale, so it has stopped; a supervisor should start it again (as a
   * follower). `baton controlplane` exits non-zero.
   */
  onFailed?: (reason: string) => void;
}

/** The longest a worker waits between two registration attempts (worker/membership.ts). */
const WORKER_REGISTER_BACKOFF_CAP_MS = 1000;

export class ControlPlane implements AdminBackend {
  state: ControlPlaneState = 'INITIALIZED';
  private readonly functions = new Map<string, FunctionState>();
  private readonly membership: Membership;
  private readonly actuator: Actuator;
  private readonly metrics: ControlPlaneMetrics;
  private listener: DualListener | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  /** A data plane whose report is older than this went silent; its counts are ignored. */
  private readonly staleLoadMs: number;
  /** Until then the scaling tick does not act (a restart: see start()). */
  private recoveringUntilMs = 0;
  private readonly kpaOptions: KpaOptions;
  /** With `ha`, the etcd election; without it, this control plane always leads. */
  private election: LeaderElection | undefined;
  private leading: boolean;
  private onFailed: ((reason: string) => void) | undefined;

  private constructor(
    readonly config: ControlPlaneConfig,
    private readonly store: ClusterStore,
    private readonly log: Logger,
  ) {
    this.metrics = createControlPlaneMetrics(createMetricsRegistry('controlplane'));
    this.membership = new Membership({ token: config.token, rpcTimeoutMs: 10_000 });
    this.actuator = new Actuator(
      config,
      this.membership,
      createPlacementPolicy(config.placementPolicy),
      createEvictionPolicy(config.evictionPolicy),
      this.metrics,
      log,
      config.coldStartTracePath === undefined ? undefined : openColdStartTrace(config.coldStartTracePath, log),
    );
    this.leading = config.ha === undefined;
    this.staleLoadMs = config.metricsIntervalMs * 3 + 1000;
    // Knative's 1 s buckets, narrower when the tick is (tests with short windows).
    this.kpaOptions = {
      unlimitedConcurrencyTarget: config.unlimitedConcurrencyTarget,
      bucketMs: Math.min(1000, config.scalingPeriodMs),
    };
  }

  static async create(config: ControlPlaneConfig, options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const log = options.log ?? createLogger('controlplane', { level: config.logLevel });
    const store = await openStore({ store: config.store, dataDir: config.dataDir, log });
    const cp = new ControlPlane(config, store, log);
    cp.onFailed = options.onFailed;
    try {
      await cp.start();
    } catch (err) {
      cp.state = 'FAILED';
      await store.close();
      throw err;
    }
    return cp;
  }

  /** host:port of the admin API and the RPC service. */
  get address(): string {
    return joinHostPort(this.config.host, this.port);
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  get url(): string {
    return `http://${this.address}`;
  }

  private async start(): Promise<void> {
    // A replica loads the registrations when it is elected; until then it knows nothing.
    if (this.leading) await this.loadRegistrations();
    const admin = createAdminHandler(this, {
      token: this.config.token,
      maxBodyBytes: this.config.maxBodyBytes,
      log: this.log,
      dirigentRegistration: this.config.compat.dirigentRegistration,
    });
    this.listener = await startRpcServer({
      host: this.config.host,
      port: this.config.apiPort,
      log: this.log,
      token: this.config.token,
      metrics: this.metrics.registry,
      routes: (router) => this.routes(router),
      health: () => ({
        ok: this.state === 'RUNNING',
        detail: { functions: this.functions.size, workers: this.membership.readyWorkers().length, dataPlanes: this.membership.dataPlanes.size },
      }),
      fallback: (req, res) => {
        // GET /leader: 200 on the leader only, for a balancer's health check (docs/ha.md).
        if (req.method === 'GET' && req.url === '/leader') {
          res.writeHead(this.leading ? 200 : 503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ leader: this.leading, leaderUrl: this.leaderUrl ?? null }));
          return;
        }
        if (this.leading) admin(req, res);
        else this.redirectToLeader(req, res);
      },
    });
    this.tickTimer = setInterval(() => this.tick(), this.config.scalingPeriodMs);
    this.tickTimer.unref();
    this.state = 'RUNNING';
    const ha = this.config.ha;
    if (ha) {
      this.election = new LeaderElection({
        endpoints: ha.etcdEndpoints,
        name: ha.electionName,
        self: ha.advertiseUrl ?? this.url,
        leaseTtlSec: ha.leaseTtlSec,
        log: this.log,
        onChange: (role) => void this.leadershipChanged(role),
      });
      this.election.start();
    }
    this.log.info({ address: this.address, functions: this.functions.size, ha: ha !== undefined }, 'control plane running');
  }

  /** The leader's URL, when this is a replica and one is known. */
  private get leaderUrl(): string | undefined {
    return this.election?.leader;
  }

  /** Reads every registration from the store; a recovery window lets workers come back first. */
  private async loadRegistrations(): Promise<void> {
    for (const f of await this.store.listFunctions()) {
      this.functions.set(f.spec.name, newFunctionState(f.spec, f.revision, f.createdAtMs, f.updatedAtMs, this.kpaOptions));
    }
    const windowMs = this.config.recoveryWindowMs ?? 2 * this.config.workerHeartbeatIntervalMs + WORKER_REGISTER_BACKOFF_CAP_MS;
    if (this.functions.size > 0 && windowMs > 0) {
      // A restart: workers may still run sandboxes of these functions. They re-register
      // within a heartbeat or two and are taken back (resyncWorker); creating for minScale
      // before then would run every such sandbox twice.
      // Workers retry registering with a back-off capped at 1 s (worker/membership.ts).
      this.recoveringUntilMs = Date.now() + windowMs;
      // The data planes may route to these functions' sandboxes already: leave them be
      // until the workers are back (functions registered meanwhile are sent at once).
      for (const name of this.functions.keys()) this.actuator.heldFunctions.add(name);
      this.log.info({ functions: this.functions.size, recoveryWindowMs: windowMs }, 'registrations found: waiting for workers before scaling');
    }
  }

  private async leadershipChanged(role: LeadershipState): Promise<void> {
    if (role === 'LEADER' && !this.leading && this.state === 'RUNNING') {
      try {
        await this.loadRegistrations();
      } catch (err) {
        this.fail(`elected, but cannot read the registrations: ${(err as Error).message}`);
        return;
      }
      this.leading = true;
      this.log.info({ functions: this.functions.size }, 'leading: registrations loaded; workers and data planes come to this replica');
    } else if (role !== 'LEADER' && this.leading && this.state === 'RUNNING') {
      // Another replica may lead already: what this one believes about sandboxes may be stale.
      this.leading = false;
      this.fail('lost the leadership');
    }
  }

  private fail(reason: string): void {
    this.log.error({ reason }, 'control plane stopping');
    void this.stop().then(() => {
      this.state = 'FAILED';
      this.onFailed?.(reason);
    });
  }

  /** A follower's answer to an admin call: a redirect to the leader, or 503 while none is known. */
  private redirectToLeader(req: { url?: string | undefined }, res: { writeHead(status: number, headers: Record<string, string>): unknown; end(body: string): unknown }): void {
    const leader = this.leaderUrl;
    if (leader && leader !== (this.config.ha?.advertiseUrl ?? this.url)) {
      res.writeHead(307, { location: `${leader.replace(/\/$/, '')}${req.url ?? '/'}`, 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 'NOT_LEADER', message: `this replica is a follower; the leader is ${leader}` }));
      return;
    }
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
    res.end(JSON.stringify({ code: 'NOT_LEADER', message: 'no control-plane replica leads right now; retry shortly' }));
  }

  async stop(): Promise<void> {
    if (this.state === 'STOPPED' || this.state === 'DRAINING') return;
    this.state = 'DRAINING';
    this.leading = false;
    // Resigning hands the leadership over at once instead of after the lease TTL.
    await this.election?.stop();
    this.actuator.stop();
    if (this.tickTimer) clearInterval(this.tickTimer);
    for (const fn of this.functions.values()) if (fn.retryTimer) clearTimeout(fn.retryTimer);
    await this.listener?.close();
    await this.store.close();
    this.state = 'STOPPED';
  }

  private requireRunning(): void {
    if (this.state !== 'RUNNING') throw new BatonError('UNAVAILABLE', `control plane is ${this.state.toLowerCase()}`);
    if (!this.leading) {
      throw new BatonError('NOT_LEADER', `this control-plane replica is a follower; the leader is ${this.leaderUrl ?? 'not known yet'}`);
    }
  }

  // ---- internal RPC ---------------------------------------------------------

  private routes(router: ConnectRouter): void {
    router.service(ControlPlaneService, {
      registerWorker: async (req) => {
        this.requireRunning();
        if (!req.workerId || !req.address) throw new BatonError('INVALID_REQUEST', 'workerId and address are required');
        const capacity = { cpuMillis: req.capacity?.cpuMillis ?? 0, memoryMb: Number(req.capacity?.memoryMb ?? 0n) };
        await this.store.putWorker({ id: req.workerId, address: req.address, registeredAtMs: Date.now() });
        for (const old of this.membership.replacedWorkers(req.workerId, req.address)) {
          this.forgetLostWorker(old, `worker replaced: ${req.workerId} registered on its address`);
        }
        const { worker, fresh } = this.membership.upsertWorker(req.workerId, req.address, capacity, req.runtimes, Date.now());
        if (fresh) {
          this.log.info({ worker: worker.id, address: worker.address }, 'worker registered');
          // Functions waiting for a worker or for room need not wait for the next tick.
          for (const fn of this.functions.values()) if (fn.condition) this.actuator.reconcile(fn);
        }
        // A worker registers when it starts, when we forgot it, or when its heartbeats failed:
        // in every case what it runs may differ from what we believe, so compare.
        void this.resyncWorker(worker);
        return create(RegisterWorkerResponseSchema, { heartbeatIntervalMs: this.config.workerHeartbeatIntervalMs });
      },
      workerHeartbeat: async (req) => {
        this.requireRunning();
        const worker = this.membership.workers.get(req.workerId);
        if (!worker || worker.status !== 'ready') return create(WorkerHeartbeatResponseSchema, { known: false });
        worker.lastHeartbeatMs = Date.now();
        if (req.capacity) worker.capacity = { cpuMillis: req.capacity.cpuMillis, memoryMb: Number(req.capacity.memoryMb) };
        if (req.usage) {
          worker.usage = { cpuMillis: req.usage.cpuMillis, memoryMb: Number(req.usage.memoryMb), sandboxes: req.usage.sandboxes };
        }
        return create(WorkerHeartbeatResponseSchema, { known: true });
      },
      registerDataPlane: async (req) => {
        this.requireRunning();
        if (!req.dataPlaneId || !req.address) throw new BatonError('INVALID_REQUEST', 'dataPlaneId and address are required');
        const { dataPlane, fresh } = this.membership.upsertDataPlane(
          req.dataPlaneId,
          req.address,
          req.proxyAddress,
          req.incarnation,
          Date.now(),
        );
        if (fresh) {
          await this.store.putDataPlane({
            id: dataPlane.id,
            address: dataPlane.address,
            proxyAddress: dataPlane.proxyAddress,
            registeredAtMs: dataPlane.registeredAtMs,
          });
          this.log.info({ dataPlane: dataPlane.id, address: dataPlane.address }, 'data plane registered');
        } else if (dataPlane.needsSync) {
          this.log.info({ dataPlane: dataPlane.id }, 'a change to the data plane failed: sending it the full state');
        }
        if (fresh || dataPlane.needsSync) {
          // New, restarted, or it may have missed a delta: one epoch-stamped snapshot of everything.
          dataPlane.needsSync = false;
          void this.actuator.pushAll(dataPlane, this.functions.values());
        }
        return create(RegisterDataPlaneResponseSchema, { metricsIntervalMs: this.config.metricsIntervalMs });
      },
      reportInFlight: async (req) => {
        this.requireRunning();
        const now = Date.now();
        const dp = this.membership.dataPlanes.get(req.dataPlaneId);
        // An unknown data plane (we restarted) registers again at once and gets the whole state.
        if (!dp) throw new BatonError('NOT_FOUND', `data plane ${req.dataPlaneId} is not registered`);
        dp.lastSeenMs = now;
        for (const f of req.functions) {
          const fn = this.functions.get(f.function);
          if (!fn) continue;
          const average = Number.isFinite(f.averageConcurrency) && f.averageConcurrency > 0 ? f.averageConcurrency : 0;
          if (!req.urgent) {
            fn.load.set(req.dataPlaneId, { inFlight: f.inFlight, queued: f.queued, concurrency: average, atMs: now });
            continue;
          }
          // An urgent report is a snapshot taken because a request queued, so
          // it is biased high: it raises this data plane's figure only until
          // its next periodic average replaces it, and is never a sample of its own.
          const prev = fn.load.get(req.dataPlaneId);
          const prevAverage = prev && now - prev.atMs <= this.staleLoadMs ? prev.concurrency : 0;
          fn.load.set(req.dataPlaneId, { inFlight: f.inFlight, queued: f.queued, concurrency: Math.max(prevAverage, f.inFlight + f.queued), atMs: now });
          if (f.queued > 0) {
            this.scaleUrgently(fn, now);
            // A function known not to start fails its new requests at once, not after its timeout.
            if (this.actuator.shouldFailQueued(fn, now)) void this.actuator.rejectQueued(fn, dp);
          }
        }
        return create(AckSchema);
      },
      reportGaps: (req) => {
        this.requireRunning();
        // Recovering: nothing is sent yet, and what we hold is not yet the whole truth.
        if (this.actuator.holdingUpdates) return create(StateSnapshotSchema, { functions: [], complete: false, epoch: this.actuator.nextEpoch() });
        // The data plane missed a change of these functions: their full state now.
        this.log.info({ dataPlane: req.dataPlaneId, functions: req.functions }, 'data plane reported a gap: sending the functions\' state');
        const snapshots = req.functions.map((name) => this.actuator.snapshotOf(name, this.functions.get(name)));
        return create(StateSnapshotSchema, { functions: snapshots, complete: false, epoch: this.actuator.nextEpoch() });
      },
      reportSandboxFailure: async (req) => {
        this.requireRunning();
        const fn = this.functions.get(req.function);
        this.log.warn(
          { function: req.function, sandbox: req.sandboxId, worker: req.workerId, reason: req.reason, exitCode: req.exitCode, signal: req.signal },
          'sandbox failed',
        );
        if (fn) this.actuator.sandboxFailed(fn, req.sandboxId, req.reason, req.message);
        return create(AckSchema);
      },
    });
  }

  /**
   * A worker (re)registered: compare what it runs with what we believe.
   * Records of sandboxes it no longer has are dropped (and routed away from);
   * ready sandboxes of registered functions that we do not know are adopted;
   * anything else it runs that no create of ours is waiting for is deleted, so
   * nothing leaks across a restart of either side.
   */
  private async resyncWorker(worker: WorkerMember): Promise<void> {
    let sandboxes;
    try {
      sandboxes = (await worker.client.listSandboxes({})).sandboxes;
    } catch (err) {
      this.log.warn({ worker: worker.id, err: fromRpcError(err, worker.id).message }, 'cannot list sandboxes');
      return;
    }
    const running = new Set(sandboxes.map((sb) => sb.sandboxId));
    this.actuator.forgetWorkerSandboxes(
      worker,
      this.functions.values(),
      (s) => s.phase !== 'starting' && !running.has(s.id),
      'worker no longer runs these sandboxes',
    );
    // Adopted together, so that a worker's sandboxes reach the data planes in one AddEndpoints per function.
    const adoptions: Promise<void>[] = [];
    for (const sb of sandboxes) {
      const fn = this.functions.get(sb.function);
      if (fn?.sandboxes.has(sb.sandboxId)) continue; // ours: known, or a create we are waiting for
      if (this.actuator.operating(sb.sandboxId)) continue; // a create or delete of ours decides its fate
      if (fn && !fn.deleted && sb.state === SandboxState.READY) {
        adoptions.push(this.actuator.adopt(fn, worker, sb.sandboxId, sb.address, Number(sb.createdAtMs)));
      } else {
        void this.actuator.deleteOnWorker(worker, sb.sandboxId);
      }
    }
    await Promise.all(adoptions);
  }

  /**
   * A worker is lost: its sandboxes are forgotten at once (their endpoints
   * removed from every data plane without draining, their reservations
   * released), and each function scales back to its desired size on the
   * workers left. Should it come back, its registration's resync deletes or
   * adopts what it still runs.
   */
  private forgetLostWorker(worker: WorkerMember, why: string): void {
    this.log.warn({ worker: worker.id, address: worker.address }, why);
    this.actuator.forgetWorkerSandboxes(worker, this.functions.values(), () => true, why);
  }

  // ---- scaling --------------------------------------------------------------

  /**
   * Decides a function's scale and has the actuator work towards it. On the
   * tick (`record`), the function's concurrency summed over data planes is
   * recorded first; after a spec change (registration, PATCH) the decision
   * uses the history so far, so new bounds apply at once. The autoscaler runs
   * on the monotonic clock: a wall-clock step must not empty its windows.
   */
  private scale(fn: FunctionState, now: number, record: boolean): void {
    if (fn.deleted) return;
    const mono = performance.now();
    if (record) fn.autoscaler.record(mono, totalLoad(fn, now, this.staleLoadMs).concurrency);
    let ready = 0;
    for (const s of fn.sandboxes.values()) if (s.phase === 'ready') ready += 1;
    fn.decision = fn.autoscaler.decide(mono, fn.spec.scaling, ready);
    fn.desired = fn.decision.desired;
    // Recovering after a restart: decide, but leave the sandboxes as the workers report them.
    // Requests that queue still scale at once (scaleUrgently), and so do registrations and PATCHes.
    if (record && now < this.recoveringUntilMs) return;
    this.actuator.reconcile(fn);
  }

  /** A request queued with no capacity: scale now if the autoscaler says so (from zero, or a burst). */
  private scaleUrgently(fn: FunctionState, now: number): void {
    if (fn.deleted) return;
    let ready = 0;
    let live = 0;
    for (const s of fn.sandboxes.values()) {
      if (s.phase === 'ready') ready += 1;
      if (isLive(s)) live += 1;
    }
    const load = totalLoad(fn, now, this.staleLoadMs);
    const want = fn.autoscaler.urgent(performance.now(), fn.spec.scaling, ready, live, load.inFlight, load.queued);
    if (want === undefined || want <= fn.desired) {
      // Still reconcile: a start may be waiting for its back-off or for room.
      this.actuator.reconcile(fn);
      return;
    }
    fn.desired = want;
    this.actuator.reconcile(fn);
  }

  private tick(): void {
    if (!this.leading) return;
    const now = Date.now();
    if (this.actuator.holdingUpdates && now >= this.recoveringUntilMs) {
      this.log.info('recovery window over: sending every data plane the whole state');
      this.actuator.releaseUpdates(this.functions.values());
    }
    for (const worker of this.membership.expireWorkers(now, this.config.workerHeartbeatTimeoutMs)) {
      this.forgetLostWorker(worker, `worker lost: no heartbeat within ${this.config.workerHeartbeatTimeoutMs} ms (workerHeartbeatTimeoutMs)`);
    }
    for (const fn of this.functions.values()) {
      this.actuator.settle(fn, now);
      this.scale(fn, now, true);
      this.metrics.observeFunction(fn);
    }
    let ready = 0;
    for (const w of this.membership.workers.values()) if (w.status === 'ready') ready += 1;
    this.metrics.workers.set({ status: 'ready' }, ready);
    this.metrics.workers.set({ status: 'lost' }, this.membership.workers.size - ready);
    this.metrics.dataPlanes.set(this.membership.dataPlanes.size);
  }

  // ---- admin API ------------------------------------------------------------

  private getFunction(name: string): FunctionState {
    const fn = this.functions.get(name);
    if (!fn || fn.deleted) throw new BatonError('FUNCTION_NOT_FOUND', `no function named ${name}`);
    return fn;
  }

  async createFunction(body: unknown): Promise<Record<string, unknown>> {
    this.requireRunning();
    const spec = parseFunctionSpec(body);
    if (spec.runtime === 'chain') throw new BatonError('INVALID_SPEC', 'runtime: chains are registered with POST /v1/chains', { details: { field: 'runtime' } });
    return this.registerFunction(spec);
  }

  /**
   * Registers a chain (docs/chains.md): it is stored, placed and routed as
   * one function of runtime `chain`, whose single sandbox runs the gateway and
   * every member; chains and functions share one name space, as both are
   * invoked at /fn/<name>.
   */
  async createChain(body: unknown): Promise<Record<string, unknown>> {
    this.requireRunning();
    const chain = parseChainSpec(body);
    const described = await this.registerFunction(parseFunctionSpec(chainFunctionInput(chain)));
    return { ...described, chain };
  }

  private getChain(name: string): FunctionState {
    const fn = this.functions.get(name);
    if (!fn || fn.deleted || fn.spec.runtime !== 'chain') throw new BatonError('CHAIN_NOT_FOUND', `no chain named ${name}`);
    return fn;
  }

  listChains(): Record<string, unknown>[] {
    return [...this.functions.values()]
      .filter((f) => !f.deleted && f.spec.runtime === 'chain')
      .sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1))
      .map((f) => {
        const chain = chainOfFunction(f.spec.env);
        return { ...summarizeFunction(f), members: chain.members.map((m) => m.name), routes: chain.routes.map((r) => r.name), entry: chain.entry ?? null };
      });
  }

  describeChain(name: string): Record<string, unknown> {
    const fn = this.getChain(name);
    return { ...describeFunction(fn, Date.now(), this.staleLoadMs), chain: chainOfFunction(fn.spec.env) };
  }

  async deleteChain(name: string): Promise<void> {
    this.getChain(name);
    await this.deleteFunction(name);
  }

  private async registerFunction(spec: FunctionSpec): Promise<Record<string, unknown>> {
    const existing = this.functions.get(spec.name);
    if (existing?.deleted) throw new BatonError('CONFLICT', `function ${spec.name} is still being deleted; retry`);
    if (existing) throw new BatonError('FUNCTION_EXISTS', `function ${spec.name} already exists`);
    const now = Date.now();
    await this.store.createFunction({ spec, revision: 1, createdAtMs: now, updatedAtMs: now });
    const fn = newFunctionState(spec, 1, now, now, this.kpaOptions);
    this.functions.set(spec.name, fn);
    this.log.info({ function: spec.name }, 'function registered');
    const change = this.actuator.stamp(fn);
    await this.actuator.broadcast('add function', (dp) => dp.client.addFunction({ function: toFunctionSpecMessage(spec, 1n), change }), spec.name);
    this.scale(fn, now, false);
    return describeFunction(fn, now, this.staleLoadMs);
  }

  listFunctions(): Record<string, unknown>[] {
    return [...this.functions.values()].filter((f) => !f.deleted).sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1)).map(summarizeFunction);
  }

  describeFunction(name: string): Record<string, unknown> {
    return describeFunction(this.getFunction(name), Date.now(), this.staleLoadMs);
  }

  async patchFunction(name: string, body: unknown): Promise<Record<string, unknown>> {
    this.requireRunning();
    const fn = this.getFunction(name);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new BatonError('INVALID_SPEC', 'body must be an object such as {"scaling": {...}}');
    }
    const spec = patchFunctionSpec(fn.spec, body);
    const now = Date.now();
    const revision = fn.revision + 1;
    const ok = await this.store.updateFunction({ spec, revision, createdAtMs: fn.createdAtMs, updatedAtMs: now }, fn.revision);
    if (!ok) throw new BatonError('CONFLICT', `function ${name} changed meanwhile; retry`);
    fn.spec = spec;
    fn.revision = revision;
    fn.updatedAtMs = now;
    const change = this.actuator.stamp(fn);
    await this.actuator.broadcast('update function', (dp) =>
      dp.client.addFunction({ function: toFunctionSpecMessage(spec, BigInt(revision)), change }),
      spec.name,
    );
    this.scale(fn, now, false);
    return describeFunction(fn, now, this.staleLoadMs);
  }

  async deleteFunction(name: string): Promise<void> {
    this.requireRunning();
    const fn = this.getFunction(name);
    await this.store.deleteFunction(name);
    fn.deleted = true;
    fn.desired = 0;
    if (fn.retryTimer) clearTimeout(fn.retryTimer);
    // The name stays reserved (new registrations get CONFLICT) until the data
    // planes have forgotten it, so our RemoveFunction cannot remove a successor.
    try {
      // Drain first, so in-flight requests finish; then remove the function, which fails queued requests with 404.
      await this.actuator.drainAndDeleteAll(fn, [...fn.sandboxes.values()].filter((s) => s.phase === 'ready'));
      const change = this.actuator.stamp(fn);
      await this.actuator.broadcast('remove function', (dp) => dp.client.removeFunction({ name, change }), name);
      // Sandboxes still starting are deleted by the actuator when their create returns.
      const deadline = Date.now() + this.config.sandboxCreateTimeoutMs;
      while (fn.sandboxes.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (fn.sandboxes.size > 0) {
        this.log.warn({ function: name, sandboxes: [...fn.sandboxes.keys()] }, 'function deleted, but some sandboxes did not confirm their deletion');
      }
    } finally {
      if (this.functions.get(name) === fn) {
        this.functions.delete(name);
        this.metrics.forgetFunction(name);
      }
    }
    this.log.info({ function: name }, 'function deleted');
  }

  listWorkers(): Record<string, unknown>[] {
    const counts = new Map<string, number>();
    for (const fn of this.functions.values()) {
      for (const s of fn.sandboxes.values()) counts.set(s.workerId, (counts.get(s.workerId) ?? 0) + 1);
    }
    return [...this.membership.workers.values()].map((w) => ({
      id: w.id,
      address: w.address,
      status: w.status,
      runtimes: w.runtimes,
      capacity: w.capacity,
      reserved: this.actuator.reservedOn(w.id),
      usage: w.usage,
      sandboxes: counts.get(w.id) ?? 0,
      registeredAt: new Date(w.registeredAtMs).toISOString(),
      lastHeartbeat: new Date(w.lastHeartbeatMs).toISOString(),
    }));
  }

  listDataPlanes(): Record<string, unknown>[] {
    return [...this.membership.dataPlanes.values()].map((d) => ({
      id: d.id,
      address: d.address,
      proxyAddress: d.proxyAddress,
      registeredAt: new Date(d.registeredAtMs).toISOString(),
      lastSeen: new Date(d.lastSeenMs).toISOString(),
    }));
  }

  /** The creations that finished since then, of every function or one, oldest first (GET /v1/creations). */
  listCreations(sinceMs: number, fn: string | undefined): { creations: CreationRecord[]; complete: boolean } {
    const { records, complete } = this.actuator.creations.since(sinceMs, fn);
    return { creations: records, complete };
  }

  /** How many workers are ready and data planes registered (`baton up` waits for one of each). */
  membershipCounts(): { workers: number; dataPlanes: number } {
    return { workers: this.membership.readyWorkers().length, dataPlanes: this.membership.dataPlanes.size };
  }
}

function openColdStartTrace(path: string, log: Logger): ColdStartTrace {
  try {
    return new ColdStartTrace(resolve(path), log);
  } catch (err) {
    throw new BatonError('CONFIG_INVALID', `coldStartTracePath: cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}
