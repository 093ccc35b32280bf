// The scaling actuator: makes each function's sandboxes match its desired
// scale. The latest desired value wins: reconcile() is synchronous, compares
// desired with the sandboxes that exist or are starting, and launches the
// creates (in parallel) or the drain-then-deletes that close the gap; each
// finished operation calls reconcile() again. There is no queue of stale
// decisions, as in Dirigent's ScalingControllerLoop, which drains its channel
// to the newest value.
//
// Placement reserves each sandbox's resources on its worker until the
// sandbox is gone; a worker without room is never chosen. When nothing fits
// (or no worker is up) the function records why (describe shows it) and
// retries on every scaling tick, as capacity may free at any moment.
//
// A failed create backs off exponentially (no hot loop on a command that does
// not exist) and records why. In both cases the requests queued for the
// function fail with that code on every data plane, when nothing is left
// that could serve them.
//
// Scale-down picks victims by the eviction policy and drains them on every
// data plane (their in-flight requests finish) before deleting them.
//
// Every change sent to the data planes is stamped (stamp()) with an epoch from
// one increasing sequence, seeded from the clock so a restarted control plane
// continues above its predecessor, and with the function's previous epoch.
// A data plane orders concurrent deltas by it and asks for a function's
// snapshot when it missed one (docs/dataplane.md).
//
// Sandboxes of one function that become ready in the same turn of the event
// loop are announced together: one AddEndpoints per data plane carrying all
// of them, under one epoch (announce()). Under a burst this turns thousands of
// RPCs, each with its own HTTP/2 stream, abort signal and protobuf round trip,
// into a few dozen; the per-RPC cost, not the work of adding an endpoint, was
// most of a creation's CPU.
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  ChangeSchema,
  EndpointSchema,
  FunctionSnapshotSchema,
  StateSnapshotSchema,
  type Change,
  type FunctionSnapshot,
  type SandboxLatencyBreakdown,
  type StateSnapshot,
} from '../gen/baton/v1/common_pb.js';
import type { ControlPlaneConfig } from '../shared/config.js';
import { CreateSandboxRequestSchema, type CreateSandboxRequest, type CreateSandboxResponse, type CreateSandboxResult } from '../gen/baton/v1/worker_pb.js';
import { BatonError, type ErrorCode, ERROR_CODES, isErrorCode } from '../shared/errors.js';
import { sandboxId } from '../shared/ids.js';
import type { Logger } from '../shared/logging.js';
import { fromRpcError } from '../shared/rpc.js';
import { toFunctionSpecMessage } from '../shared/spec.js';
import { ColdStartTrace, CreationLog, RECENT_CREATIONS, type CreationRecord } from './creation-trace.js';
import { isLive, type FunctionState, type SandboxRecord } from './function-state.js';
import type { DataPlaneMember, Membership, WorkerMember } from './membership.js';
import { explainNoFit, type PlacementCandidate, type PlacementPolicy } from './placement/index.js';
import type { ControlPlaneMetrics } from './metrics.js';
import type { EvictionPolicy } from './scaling/eviction.js';

interface Reservation {
  cpuMillis: number;
  memoryMb: number;
}

/** Why a worker may not offer a runtime, for the NO_WORKERS message (docs/runtimes.md). */
const RUNTIME_HINTS: Readonly<Record<string, string>> = {
  oci: ': it needs a worker running as root with runc installed',
  emulated: ': it is opt-in, on workers started with --emulate N or whose runtimes name it',
};

/** Conditions that placement sets and clears; a create retries them on every tick, without back-off. */
const PLACEMENT_CONDITIONS: ReadonlySet<ErrorCode> = new Set(['NO_WORKERS', 'NO_CAPACITY']);

export class Actuator {
  private stopped = false;
  /** Resources reserved by sandboxes (starting, ready or draining), by worker id. */
  private readonly reserved = new Map<string, Reservation>();
  /** Sandboxes with a create or a drain-and-delete in flight. */
  private readonly inOperation = new Set<string>();
  /** The latest epoch handed out. */
  private lastEpoch = 0n;
  /** Every function's latest creations, for `GET /v1/creations`. */
  readonly creations = new CreationLog();
  /** Ready sandboxes waiting to be announced to the data planes, by function (announce()). */
  private readonly announcing = new Map<FunctionState, Announcement>();
  /** Creates waiting to be sent to each worker in one CreateSandboxes (createOn()). */
  private readonly creating = new Map<WorkerMember, PendingCreate[]>();
  /** Workers that answered CreateSandboxes with UNIMPLEMENTED: they get one CreateSandbox per sandbox. */
  private readonly singleCreates = new WeakSet<WorkerMember>();
  /** Functions with a reconcile due at the next turn of the event loop (reconcileSoon()). */
  private readonly reconcileDue = new Set<FunctionState>();

  constructor(
    private readonly config: ControlPlaneConfig,
    private readonly membership: Membership,
    private readonly placement: PlacementPolicy,
    private readonly evict: EvictionPolicy,
    private readonly metrics: ControlPlaneMetrics,
    private readonly log: Logger,
    private readonly trace?: ColdStartTrace,
  ) {}

  /** Stops launching anything: the control plane is stopping. */
  stop(): void {
    this.stopped = true;
  }

  /** Starts or stops sandboxes so that the function reaches its desired scale. */
  reconcile(fn: FunctionState): void {
    if (fn.deleted || this.stopped) return;
    const ready: SandboxRecord[] = [];
    const starting: SandboxRecord[] = [];
    const cancelled: SandboxRecord[] = [];
    for (const s of fn.sandboxes.values()) {
      if (s.phase === 'ready') ready.push(s);
      else if (s.phase === 'starting') (s.cancelled ? cancelled : starting).push(s);
    }
    let gap = fn.desired - ready.length - starting.length;
    if (gap <= 0 && fn.condition && PLACEMENT_CONDITIONS.has(fn.condition.code)) fn.condition = undefined;
    if (gap > 0) {
      // Starts cancelled a moment ago are wanted again: keep them rather than start more.
      for (const s of cancelled) {
        if (gap === 0) return;
        s.cancelled = false;
        gap--;
      }
      if (gap === 0) return;
      const waitMs = fn.backoffUntilMs - Date.now();
      if (waitMs > 0) {
        this.retryLater(fn, waitMs);
        return;
      }
      for (let i = 0; i < gap; i++) {
        const decidedAtMs = Date.now();
        const t0 = performance.now();
        const placed = this.place(fn);
        if (!placed) break;
        void this.startSandbox(fn, placed.worker, placed.record, decidedAtMs, Math.round((performance.now() - t0) * 1000));
      }
    } else if (gap < 0) {
      // Starts go first, newest first: they serve nobody yet, and draining a
      // warm sandbox to keep a cold one would send requests to cold starts.
      // Kubernetes also removes pods that are not ready first.
      starting.sort((a, b) => b.createdAtMs - a.createdAtMs);
      const cancel = Math.min(-gap, starting.length);
      for (let i = 0; i < cancel; i++) (starting[i] as SandboxRecord).cancelled = true;
      for (const v of this.evict(ready, -gap - cancel)) void this.drainAndDelete(fn, v);
    }
  }

  /**
   * Whether a create or a drain-and-delete of this sandbox is under way. A
   * worker's resync neither adopts nor deletes such a sandbox: its operation
   * decides, even after the worker was lost and came back meanwhile.
   */
  operating(sandboxId: string): boolean {
    return this.inOperation.has(sandboxId);
  }

  /** Resources reserved on a worker by the sandboxes placed there. */
  reservedOn(workerId: string): Readonly<Reservation> {
    return this.reserved.get(workerId) ?? { cpuMillis: 0, memoryMb: 0 };
  }

  private track(fn: FunctionState, record: SandboxRecord): void {
    fn.sandboxes.set(record.id, record);
    const r = this.reserved.get(record.workerId) ?? { cpuMillis: 0, memoryMb: 0 };
    r.cpuMillis += record.resources.cpuMillis;
    r.memoryMb += record.resources.memoryMb;
    this.reserved.set(record.workerId, r);
  }

  private untrack(fn: FunctionState, record: SandboxRecord): void {
    if (fn.sandboxes.get(record.id) !== record) return;
    fn.sandboxes.delete(record.id);
    const r = this.reserved.get(record.workerId);
    if (!r) return;
    r.cpuMillis -= record.resources.cpuMillis;
    r.memoryMb -= record.resources.memoryMb;
    if (r.cpuMillis <= 0 && r.memoryMb <= 0) this.reserved.delete(record.workerId);
  }

  /**
   * Chooses a worker for one more sandbox and reserves its resources there,
   * or records why none can take it. Synchronous, so parallel creates see
   * each other's reservations.
   */
  private place(fn: FunctionState): { worker: WorkerMember; record: SandboxRecord } | undefined {
    const spec = fn.spec;
    const now = Date.now();
    const eligible = this.membership.readyWorkers().filter((w) => w.runtimes.length === 0 || w.runtimes.includes(spec.runtime));
    // A worker a create just failed to reach is skipped for a while, unless it is the only one:
    // otherwise least-allocated placement would keep choosing it, as its failed creates free their room.
    const reachable = eligible.filter((w) => w.avoidUntilMs <= now);
    const workers = reachable.length > 0 ? reachable : eligible;
    const candidates: PlacementCandidate[] = workers.map((w) => ({ id: w.id, capacity: w.capacity, reserved: this.reservedOn(w.id) }));
    const request = { function: spec.name, cpuMillis: spec.resources.cpuMillis, memoryMb: spec.resources.memoryMb };
    const worker = workers[this.placement.place(candidates, request)];
    if (!worker) {
      if (workers.length === 0) this.placementFailed(fn, 'NO_WORKERS', `no ready worker runs the ${spec.runtime} runtime${RUNTIME_HINTS[spec.runtime] ?? ''}`);
      else this.placementFailed(fn, 'NO_CAPACITY', explainNoFit(candidates, request));
      return undefined;
    }
    const record: SandboxRecord = {
      id: sandboxId(spec.name),
      workerId: worker.id,
      address: '',
      phase: 'starting',
      createdAtMs: now,
      readyAtMs: undefined,
      cancelled: false,
      resources: { ...spec.resources },
    };
    this.track(fn, record);
    return { worker, record };
  }

  /**
   * Nothing can take a sandbox of the function right now. Capacity frees and
   * workers join at any moment, so there is no back-off: the next scaling
   * tick tries again.
   */
  private placementFailed(fn: FunctionState, code: ErrorCode, message: string): void {
    const changed = fn.condition?.code !== code || fn.condition.message !== message;
    if (!changed) return;
    fn.condition = { code, message, sinceMs: Date.now() };
    this.log.warn({ function: fn.spec.name, code, err: message }, 'cannot place a sandbox');
    if (this.nothingToWaitFor(fn)) void this.rejectQueued(fn);
  }

  /**
   * Queued requests would wait for nothing: no sandbox of the function is
   * ready or starting, and, when placement found no room, none is draining
   * either (its deletion frees room for a new start, which is then tried at once).
   */
  nothingToWaitFor(fn: FunctionState): boolean {
    const roomComing = fn.condition?.code === 'NO_CAPACITY';
    for (const s of fn.sandboxes.values()) if (isLive(s) || (roomComing && s.phase === 'draining')) return false;
    return true;
  }

  /**
   * Whether requests that queue now should fail at once with the function's
   * condition rather than wait: nothing is running or starting, and the next
   * start is blocked (no room, no worker, or a start failure's back-off). A
   * crash is different: its replacement starts at once.
   */
  shouldFailQueued(fn: FunctionState, nowMs: number): boolean {
    const c = fn.condition;
    if (!c || c.code === 'SANDBOX_CRASHED' || !this.nothingToWaitFor(fn)) return false;
    return PLACEMENT_CONDITIONS.has(c.code) || nowMs < fn.backoffUntilMs;
  }

  private retryLater(fn: FunctionState, delayMs: number): void {
    if (fn.retryTimer || this.stopped) return;
    fn.retryTimer = setTimeout(() => {
      fn.retryTimer = undefined;
      this.reconcile(fn);
    }, delayMs);
    fn.retryTimer.unref();
  }

  private async startSandbox(fn: FunctionState, worker: WorkerMember, record: SandboxRecord, decidedAtMs: number, placementUs: number): Promise<void> {
    this.inOperation.add(record.id);
    try {
      await this.createAndRoute(fn, worker, record, { decidedAtMs, placementUs });
    } finally {
      this.inOperation.delete(record.id);
    }
  }

  private async createAndRoute(
    fn: FunctionState,
    worker: WorkerMember,
    record: SandboxRecord,
    { decidedAtMs, placementUs }: { decidedAtMs: number; placementUs: number },
  ): Promise<void> {
    const spec = fn.spec;
    const started = performance.now();
    let address: string;
    let latency: SandboxLatencyBreakdown | undefined;
    try {
      const res = await this.createOn(worker, create(CreateSandboxRequestSchema, { sandboxId: record.id, function: toFunctionSpecMessage(spec, BigInt(fn.revision)) }));
      address = res.sandbox?.address ?? '';
      latency = res.latency;
      if (!address) throw new Error('worker returned a sandbox without an address');
    } catch (err) {
      this.untrack(fn, record);
      const e = fromRpcError(err, `worker ${worker.id}`);
      this.traceCreation(fn, worker, record, { decidedAtMs, placementUs, createRpcUs: usSince(started), latency, error: e.message });
      if (e.code === 'PEER_UNAVAILABLE') {
        // A create lost on the wire may still have started the sandbox: delete it (idempotent) so it cannot leak.
        void this.deleteOnWorker(worker, record.id);
        worker.avoidUntilMs = Date.now() + this.config.workerHeartbeatIntervalMs;
      }
      this.metrics.sandboxCreateFailures.inc({ function: spec.name });
      this.recordFailure(fn, e.code === 'PEER_UNAVAILABLE' ? 'PEER_UNAVAILABLE' : 'SANDBOX_START_FAILED', e.message);
      return;
    }
    const createRpcUs = usSince(started);
    this.metrics.sandboxCreateSeconds.observe({ function: spec.name }, createRpcUs / 1e6);
    if (fn.deleted || fn.sandboxes.get(record.id) !== record || record.cancelled) {
      // The function was deleted, the sandbox's worker was lost, or a scale-down cancelled it, while it started.
      await this.deleteOnWorker(worker, record.id);
      this.untrack(fn, record);
      this.reconcile(fn);
      return;
    }
    record.address = address;
    record.phase = 'ready';
    record.readyAtMs = Date.now();
    // A start that works ends a start failure. A crash loop is different: its
    // replacements start fine and die again, so its back-off only resets once
    // a sandbox has stayed up (settle()).
    if (fn.condition?.code !== 'SANDBOX_CRASHED') {
      fn.condition = undefined;
      fn.consecutiveFailures = 0;
      fn.backoffUntilMs = 0;
    }
    // From ready to acknowledged by every data plane, including the wait for the rest of its batch.
    const propagating = performance.now();
    await this.announce(fn, record);
    this.traceCreation(fn, worker, record, { decidedAtMs, placementUs, createRpcUs, latency, propagationUs: usSince(propagating) });
    if (fn.deleted && fn.sandboxes.get(record.id) === record) {
      // The function was deleted while its endpoint propagated: the DELETE skipped this sandbox (an operation
      // was in flight on it) and waits for it to go, so drain and delete it here, or it would outlive its function.
      record.phase = 'draining';
      await this.drainThenDelete(fn, [record]);
      return;
    }
    // A batch of creates finishing together reconciles once, not once per sandbox (each pass scans the function's sandboxes).
    this.reconcileSoon(fn);
  }

  /**
   * Creates a sandbox on a worker. The creates placed on one worker in the same
   * turn of the event loop go in one CreateSandboxes call (up to
   * CREATE_BATCH_MAX); each still succeeds or fails on its own. A worker that
   * does not know CreateSandboxes (UNIMPLEMENTED) gets CreateSandbox calls
   * from then on.
   */
  private createOn(worker: WorkerMember, req: CreateSandboxRequest): Promise<CreateSandboxResponse> {
    if (this.singleCreates.has(worker)) return worker.client.createSandbox(req, { timeoutMs: this.config.sandboxCreateTimeoutMs });
    return new Promise((resolve, reject) => {
      let batch = this.creating.get(worker);
      if (!batch || batch.length >= CREATE_BATCH_MAX) {
        const created: PendingCreate[] = [];
        batch = created;
        this.creating.set(worker, created);
        setImmediate(() => void this.flushCreates(worker, created));
      }
      batch.push({ req, resolve, reject });
    });
  }

  private async flushCreates(worker: WorkerMember, batch: PendingCreate[]): Promise<void> {
    if (this.creating.get(worker) === batch) this.creating.delete(worker);
    const single = (p: PendingCreate): void => {
      worker.client.createSandbox(p.req, { timeoutMs: this.config.sandboxCreateTimeoutMs }).then(p.resolve, p.reject);
    };
    const only = batch[0];
    if (batch.length === 1 && only) {
      single(only);
      return;
    }
    let results: CreateSandboxResult[];
    try {
      const res = await worker.client.createSandboxes(
        { creates: batch.map((p) => p.req) },
        { timeoutMs: this.config.sandboxCreateTimeoutMs },
      );
      results = res.results;
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unimplemented) {
        // A worker of an older version: one call per sandbox, as it always was.
        this.singleCreates.add(worker);
        batch.forEach(single);
        return;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const r = results[i];
      if (r?.created) p.resolve(r.created);
      else if (r && r.errorCode) p.reject(new BatonError(isErrorCode(r.errorCode) ? r.errorCode : 'INTERNAL', r.errorMessage));
      else p.reject(new BatonError('INTERNAL', `worker ${worker.id} answered ${results.length} results to ${batch.length} creates`));
    });
  }

  /**
   * Routes a ready sandbox on every data plane; resolves once every data plane
   * answered (a failure marks it for a full sync, as broadcast() does). The
   * sandboxes of one function that become ready in the same turn of the event
   * loop share one AddEndpoints per data plane and one epoch: the data plane
   * applies the change atomically, so the chain of epochs stays one change per
   * stamp, whatever the change holds.
   */
  announce(fn: FunctionState, record: SandboxRecord): Promise<void> {
    let batch = this.announcing.get(fn);
    if (!batch) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      const created: Announcement = { records: [], done, resolve };
      batch = created;
      this.announcing.set(fn, created);
      // setImmediate runs after the poll phase: every create answer read in this turn joins the batch.
      setImmediate(() => void this.flushAnnouncement(fn, created));
    }
    batch.records.push(record);
    return batch.done;
  }

  private async flushAnnouncement(fn: FunctionState, batch: Announcement): Promise<void> {
    if (this.announcing.get(fn) === batch) this.announcing.delete(fn);
    try {
      // A sandbox forgotten (its worker lost, it crashed) or drained since it was queued must not come back:
      // its removal was stamped already, and an add stamped after it would route to it again.
      const live = batch.records.filter((r) => r.phase === 'ready' && fn.sandboxes.get(r.id) === r);
      if (live.length === 0 || fn.deleted) return;
      const name = fn.spec.name;
      const endpoints = live.map((r) => this.endpointOf(name, r));
      const change = this.stamp(fn);
      await this.broadcast(live.length === 1 ? 'add endpoint' : `add ${live.length} endpoints`, (dp) => dp.client.addEndpoints({ function: name, endpoints, change }), name);
    } finally {
      batch.resolve();
    }
  }

  /** Reconciles the function at the next turn of the event loop, once however many ask meanwhile. */
  private reconcileSoon(fn: FunctionState): void {
    if (this.reconcileDue.has(fn)) return;
    this.reconcileDue.add(fn);
    setImmediate(() => {
      this.reconcileDue.delete(fn);
      this.reconcile(fn);
    });
  }

  /** Keeps the creation for `describe` and writes it to the cold-start trace, if one is configured. */
  private traceCreation(
    fn: FunctionState,
    worker: WorkerMember,
    record: SandboxRecord,
    t: {
      decidedAtMs: number;
      placementUs: number;
      createRpcUs: number;
      latency: SandboxLatencyBreakdown | undefined;
      propagationUs?: number;
      error?: string;
    },
  ): void {
    const l = t.latency;
    const propagationUs = t.propagationUs ?? 0;
    const entry: CreationRecord = {
      atMs: Date.now(),
      decidedAtMs: t.decidedAtMs,
      function: fn.spec.name,
      sandboxId: record.id,
      workerId: worker.id,
      runtime: l?.runtime || fn.spec.runtime,
      success: t.error === undefined,
      pooled: l?.pooled ?? false,
      placementUs: t.placementUs,
      portAllocationUs: Number(l?.portAllocationUs ?? 0n),
      runtimeCreateUs: Number(l?.runtimeCreateUs ?? 0n),
      networkUs: Number(l?.networkUs ?? 0n),
      spawnUs: Number(l?.spawnUs ?? 0n),
      readinessProbeUs: Number(l?.readinessProbeUs ?? 0n),
      workerTotalUs: Number(l?.totalUs ?? 0n),
      createRpcUs: t.createRpcUs,
      propagationUs,
      totalUs: t.placementUs + t.createRpcUs + propagationUs,
      ...(t.error === undefined ? {} : { error: t.error }),
    };
    fn.recentCreations.push(entry);
    if (fn.recentCreations.length > RECENT_CREATIONS) fn.recentCreations.shift();
    this.creations.push(entry);
    this.trace?.write(entry);
  }

  /** Deletes a sandbox on its worker; a failure is logged, not thrown. */
  async deleteOnWorker(worker: WorkerMember, id: string): Promise<void> {
    try {
      await worker.client.deleteSandbox({ sandboxId: id });
    } catch (err) {
      this.log.warn({ err: fromRpcError(err, `worker ${worker.id}`).message, sandbox: id }, 'delete sandbox failed');
    }
  }

  /** Stops routing to a sandbox on every data plane, waits for its requests, then deletes it. */
  async drainAndDelete(fn: FunctionState, record: SandboxRecord): Promise<void> {
    if (record.phase === 'draining' || this.inOperation.has(record.id)) return;
    record.phase = 'draining';
    this.inOperation.add(record.id);
    try {
      await this.drainThenDelete(fn, [record]);
    } finally {
      this.inOperation.delete(record.id);
    }
    this.reconcile(fn);
  }

  /**
   * drainAndDelete() for several sandboxes of a function being deleted: one
   * RemoveEndpoints per data plane for all of them (one per sandbox put
   * thousands of RPCs in flight when a large function was deleted), then each
   * is deleted on its worker. The function's DELETE waits for all of them
   * anyway; a sandbox may only be deleted when the slowest drain ends.
   */
  async drainAndDeleteAll(fn: FunctionState, records: SandboxRecord[]): Promise<void> {
    const mine = records.filter((r) => r.phase !== 'draining' && !this.inOperation.has(r.id));
    if (mine.length === 0) return;
    for (const r of mine) {
      r.phase = 'draining';
      this.inOperation.add(r.id);
    }
    try {
      await this.drainThenDelete(fn, mine);
    } finally {
      for (const r of mine) this.inOperation.delete(r.id);
    }
    this.reconcile(fn);
  }

  private async drainThenDelete(fn: FunctionState, records: SandboxRecord[]): Promise<void> {
    // A request cannot outlive the function's timeout (the data plane ends it
    // there), so waiting that long lets every in-flight request finish.
    const drainTimeoutMs = Math.max(this.config.drainTimeoutMs, fn.spec.timeoutMs);
    const change = this.stamp(fn);
    const sandboxIds = records.map((r) => r.id);
    await this.broadcast(records.length === 1 ? 'drain endpoint' : `drain ${records.length} endpoints`, (dp) =>
      dp.client.removeEndpoints(
        { function: fn.spec.name, sandboxIds, drain: true, drainTimeoutMs, change },
        { timeoutMs: drainTimeoutMs + 5000 },
      ),
      fn.spec.name,
    );
    await Promise.all(
      records.map(async (record) => {
        const worker = this.membership.workers.get(record.workerId);
        const current = fn.sandboxes.get(record.id);
        if (worker && worker.status === 'ready' && (current === undefined || current === record)) await this.deleteOnWorker(worker, record.id);
        this.untrack(fn, record);
      }),
    );
  }

  /** A worker said one of its sandboxes died: forget it, stop routing to it, replace it. */
  sandboxFailed(fn: FunctionState, id: string, reason: string, message: string): void {
    const record = fn.sandboxes.get(id);
    if (!record || record.phase === 'starting') return;
    this.forget(fn, [id]);
    if (record.phase === 'draining') return;
    const livedMs = Date.now() - (record.readyAtMs ?? record.createdAtMs);
    fn.condition = { code: 'SANDBOX_CRASHED', message: `sandbox ${id} ${reason}: ${message}`, sinceMs: Date.now() };
    if (livedMs < this.config.crashLoopWindowMs) {
      // Crash-looping: replace it, but back off as for a failed start.
      fn.consecutiveFailures += 1;
      fn.backoffUntilMs = Date.now() + this.backoffMs(fn.consecutiveFailures - 1);
    } else {
      fn.consecutiveFailures = 0;
    }
    this.reconcile(fn);
  }

  /**
   * Clears a crash condition, and the back-off that came with it, once a
   * sandbox has stayed ready for a whole crash-loop window (or none is
   * wanted). Called on the scaling tick.
   */
  settle(fn: FunctionState, nowMs: number): void {
    const window = this.config.crashLoopWindowMs;
    const c = fn.condition;
    if (c?.code !== 'SANDBOX_CRASHED' || nowMs - c.sinceMs < window) return;
    let stable = fn.desired === 0;
    for (const s of fn.sandboxes.values()) {
      if (s.phase === 'ready' && s.readyAtMs !== undefined && nowMs - s.readyAtMs >= window) stable = true;
    }
    if (!stable) return;
    fn.condition = undefined;
    fn.consecutiveFailures = 0;
    fn.backoffUntilMs = 0;
  }

  /**
   * Forgets the worker's sandboxes that `gone` selects (all of them for a lost
   * worker; those it no longer runs after a resync), stops routing to them,
   * and lets each function replace them.
   */
  forgetWorkerSandboxes(worker: WorkerMember, functions: Iterable<FunctionState>, gone: (s: SandboxRecord) => boolean, why: string): void {
    for (const fn of functions) {
      const ids = [...fn.sandboxes.values()].filter((s) => s.workerId === worker.id && gone(s)).map((s) => s.id);
      if (ids.length === 0) continue;
      this.log.warn({ function: fn.spec.name, worker: worker.id, sandboxes: ids }, why);
      this.forget(fn, ids);
      this.reconcile(fn);
    }
  }

  /** Takes a ready sandbox we did not start (found on a worker) into the function, and routes to it. */
  async adopt(fn: FunctionState, worker: WorkerMember, sandboxId: string, address: string, createdAtMs: number): Promise<void> {
    const now = Date.now();
    const record: SandboxRecord = {
      id: sandboxId,
      workerId: worker.id,
      address,
      phase: 'ready',
      createdAtMs: createdAtMs || now,
      readyAtMs: now,
      cancelled: false,
      resources: { ...fn.spec.resources },
    };
    this.track(fn, record);
    // We have no load history for what we adopt: hold the scale for a stable
    // window, as Knative's autoscaler does when it starts with ready pods.
    let live = 0;
    for (const s of fn.sandboxes.values()) if (isLive(s)) live += 1;
    fn.desired = Math.max(fn.desired, live);
    fn.autoscaler.startInPanic(performance.now(), fn.desired);
    this.log.info({ function: fn.spec.name, sandbox: record.id, worker: worker.id }, 'adopted running sandbox');
    await this.announce(fn, record);
  }

  /** Drops sandbox records and removes their endpoints from every data plane, without draining. */
  private forget(fn: FunctionState, ids: string[]): void {
    for (const id of ids) {
      const record = fn.sandboxes.get(id);
      if (record) this.untrack(fn, record);
    }
    const change = this.stamp(fn);
    void this.broadcast('remove endpoints', (dp) => dp.client.removeEndpoints({ function: fn.spec.name, sandboxIds: ids, drain: false, change }), fn.spec.name);
  }

  private backoffMs(failures: number): number {
    return Math.min(this.config.createBackoffMaxMs, this.config.createBackoffInitialMs * 2 ** Math.min(failures, 30));
  }

  private recordFailure(fn: FunctionState, code: ErrorCode, message: string): void {
    fn.consecutiveFailures += 1;
    const delay = this.backoffMs(fn.consecutiveFailures - 1);
    fn.backoffUntilMs = Date.now() + delay;
    fn.condition = { code, message, sinceMs: Date.now() };
    this.log.warn({ function: fn.spec.name, code, err: message, retryInMs: delay }, 'cannot start a sandbox');
    if (this.nothingToWaitFor(fn)) void this.rejectQueued(fn);
    this.retryLater(fn, delay);
  }

  /** Fails the requests queued for the function on every data plane (or one) with its condition. */
  async rejectQueued(fn: FunctionState, only?: DataPlaneMember): Promise<void> {
    const c = fn.condition;
    if (!c) return;
    const req = { function: fn.spec.name, code: c.code, message: c.message, httpStatus: ERROR_CODES[c.code].status };
    if (only) {
      await only.client.rejectQueued(req).catch((err: unknown) => this.log.warn({ err: String(err) }, 'reject queued failed'));
      return;
    }
    await this.broadcast('reject queued', (dp) => dp.client.rejectQueued(req), fn.spec.name);
  }

  endpointOf(functionName: string, s: SandboxRecord) {
    return create(EndpointSchema, { sandboxId: s.id, function: functionName, address: s.address, workerId: s.workerId });
  }

  /**
   * A new epoch: above every one handed out, and (so that a restarted control
   * plane continues above its predecessor) above the clock in ms × 65536.
   */
  nextEpoch(): bigint {
    const fromClock = BigInt(Date.now()) << 16n;
    this.lastEpoch = this.lastEpoch >= fromClock ? this.lastEpoch + 1n : fromClock;
    return this.lastEpoch;
  }

  /**
   * Records a change of the function (made just before, synchronously) and
   * returns the Change to send with its delta. Call it once per change, not
   * per data plane.
   */
  stamp(fn: FunctionState): Change {
    const previousEpoch = fn.epoch;
    fn.epoch = this.nextEpoch();
    return create(ChangeSchema, { epoch: fn.epoch, previousEpoch });
  }

  /** The function's full state now: its spec and ready endpoints, or its absence. */
  snapshotOf(name: string, fn: FunctionState | undefined): FunctionSnapshot {
    if (!fn || fn.deleted) return create(FunctionSnapshotSchema, { name, epoch: fn && fn.epoch > 0n ? fn.epoch : this.nextEpoch() });
    if (fn.epoch === 0n) fn.epoch = this.nextEpoch(); // loaded from the store, never sent yet
    const ready = [...fn.sandboxes.values()].filter((s) => s.phase === 'ready');
    return create(FunctionSnapshotSchema, {
      name,
      function: toFunctionSpecMessage(fn.spec, BigInt(fn.revision)),
      endpoints: ready.map((s) => this.endpointOf(name, s)),
      epoch: fn.epoch,
    });
  }

  /**
   * The functions whose updates to data planes are held: those a restarted control plane
   * loaded, during its recovery window. Until the workers are back its view holds fewer
   * sandboxes than the data planes route to, and a snapshot of it would take warm
   * endpoints away. Functions registered since pass.
   */
  readonly heldFunctions = new Set<string>();

  get holdingUpdates(): boolean {
    return this.heldFunctions.size > 0;
  }

  /** Ends the hold: every data plane gets the whole state as one snapshot. */
  releaseUpdates(functions: Iterable<FunctionState>): void {
    if (!this.holdingUpdates) return;
    this.heldFunctions.clear();
    const all = [...functions];
    for (const dp of this.membership.dataPlanes.values()) {
      dp.needsSync = false;
      void this.pushAll(dp, all);
    }
  }

  /** Every function's full state; the data plane removes any function it holds that is not in it. */
  fullSnapshot(functions: Iterable<FunctionState>): StateSnapshot {
    const snapshots = [...functions].filter((fn) => !fn.deleted).map((fn) => this.snapshotOf(fn.spec.name, fn));
    return create(StateSnapshotSchema, { functions: snapshots, complete: true, epoch: this.nextEpoch() });
  }

  /**
   * Sends the whole state to one data plane, as one epoch-stamped snapshot:
   * deltas sent before it that arrive after it are ignored, later ones apply.
   */
  async pushAll(dp: DataPlaneMember, functions: Iterable<FunctionState>): Promise<void> {
    if (this.holdingUpdates) {
      // The held functions wait for the end of the hold; those registered since go now.
      dp.needsSync = true;
      const fresh = [...functions].filter((fn) => !fn.deleted && !this.heldFunctions.has(fn.spec.name));
      if (fresh.length === 0) return;
      const partial = create(StateSnapshotSchema, { functions: fresh.map((fn) => this.snapshotOf(fn.spec.name, fn)), complete: false, epoch: this.nextEpoch() });
      await dp.client.syncState(partial).catch((err: unknown) => this.log.warn({ dataPlane: dp.id, err: fromRpcError(err, dp.id).message }, 'state push failed'));
      return;
    }
    const snapshot = this.fullSnapshot(functions);
    try {
      await dp.client.syncState(snapshot);
    } catch (err) {
      dp.needsSync = true;
      this.log.warn({ dataPlane: dp.id, err: fromRpcError(err, dp.id).message }, 'state push failed; retried on its next registration');
    }
  }

  /**
   * Runs one call on every data plane in parallel; failures are logged, not
   * thrown, and the data plane gets the full state on its next registration
   * heartbeat, as it may have missed the change.
   */
  async broadcast(what: string, call: (dp: DataPlaneMember) => Promise<unknown>, fnName?: string): Promise<void> {
    const dps = [...this.membership.dataPlanes.values()];
    if (this.holdingUpdates && (fnName === undefined || this.heldFunctions.has(fnName))) {
      // Recovering after a restart: the data planes keep what they have; each gets the
      // whole state in one snapshot when the hold ends (releaseUpdates).
      for (const dp of dps) dp.needsSync = true;
      return;
    }
    const results = await Promise.allSettled(dps.map(call));
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        const dp = dps[i];
        if (dp) dp.needsSync = true;
        this.log.warn({ dataPlane: dp?.id, err: fromRpcError(r.reason, dp?.id ?? '').message }, `${what} failed`);
      }
    });
  }
}

/**
 * The most creates in one CreateSandboxes: a burst goes to a worker as a few
 * calls in flight together rather than one that waits for its slowest create.
 */
const CREATE_BATCH_MAX = 256;

/** A create waiting for its worker's next CreateSandboxes (Actuator.createOn()). */
interface PendingCreate {
  readonly req: CreateSandboxRequest;
  readonly resolve: (res: CreateSandboxResponse) => void;
  readonly reject: (err: unknown) => void;
}

/** Ready sandboxes of one function to announce in one AddEndpoints (Actuator.announce()). */
interface Announcement {
  readonly records: SandboxRecord[];
  /** Resolves once every data plane answered the batch's AddEndpoints (or it was not sent). */
  readonly done: Promise<void>;
  readonly resolve: () => void;
}

function usSince(t: number): number {
  return Math.round((performance.now() - t) * 1000);
}
