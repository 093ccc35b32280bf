// The control plane's in-memory view of one function: its registration (from
// the store), its sandboxes (never persisted; rebuilt from the workers), the
// load its data planes report, and why it cannot scale, if it cannot.
import type { ErrorCode } from '../shared/errors.js';
import { toSpecInput, type FunctionSpec } from '../shared/spec.js';
import { describeCreation, type CreationRecord } from './creation-trace.js';
import { Kpa, type KpaDecision, type KpaOptions } from './scaling/kpa.js';

export type SandboxPhase = 'starting' | 'ready' | 'draining';

export interface SandboxRecord {
  readonly id: string;
  readonly workerId: string;
  address: string;
  phase: SandboxPhase;
  readonly createdAtMs: number;
  readyAtMs: number | undefined;
  /**
   * A starting sandbox the function no longer wants: deleted when its create
   * returns, unless a scale-up wants it again first.
   */
  cancelled: boolean;
  /** What the sandbox reserves on its worker: its function's resources when it was placed. */
  readonly resources: Readonly<{ cpuMillis: number; memoryMb: number }>;
}

export interface LoadReport {
  inFlight: number;
  queued: number;
  /** In flight + queued, averaged over the data plane's report interval. */
  concurrency: number;
  atMs: number;
}

export interface FunctionCondition {
  code: ErrorCode;
  message: string;
  sinceMs: number;
}

export interface FunctionState {
  spec: FunctionSpec;
  revision: number;
  readonly createdAtMs: number;
  updatedAtMs: number;
  readonly sandboxes: Map<string, SandboxRecord>;
  desired: number;
  /** The function's Knative autoscaler and its latest decision. */
  readonly autoscaler: Kpa;
  decision: KpaDecision | undefined;
  /** The latest report of each data plane, by data-plane id. */
  readonly load: Map<string, LoadReport>;
  condition: FunctionCondition | undefined;
  consecutiveFailures: number;
  backoffUntilMs: number;
  retryTimer: NodeJS.Timeout | undefined;
  deleted: boolean;
  /** The epoch of the function's latest change sent to the data planes (0: none yet). */
  epoch: bigint;
  /** The latest sandbox creations, oldest first (RECENT_CREATIONS of them). */
  readonly recentCreations: CreationRecord[];
}

export function newFunctionState(
  spec: FunctionSpec,
  revision: number,
  createdAtMs: number,
  updatedAtMs: number,
  autoscaler: KpaOptions = {},
): FunctionState {
  return {
    spec,
    revision,
    createdAtMs,
    updatedAtMs,
    sandboxes: new Map(),
    desired: spec.scaling.minScale,
    autoscaler: new Kpa(spec.scaling, autoscaler),
    decision: undefined,
    load: new Map(),
    condition: undefined,
    consecutiveFailures: 0,
    epoch: 0n,
    backoffUntilMs: 0,
    retryTimer: undefined,
    deleted: false,
    recentCreations: [],
  };
}

/** Sums the load over data planes, ignoring reports older than `staleMs` (a data plane that went silent). */
export function totalLoad(fn: FunctionState, nowMs: number, staleMs: number): { inFlight: number; queued: number; concurrency: number } {
  let inFlight = 0;
  let queued = 0;
  let concurrency = 0;
  for (const r of fn.load.values()) {
    if (nowMs - r.atMs > staleMs) continue;
    inFlight += r.inFlight;
    queued += r.queued;
    concurrency += r.concurrency;
  }
  return { inFlight, queued, concurrency };
}

/** Sandboxes by phase; a cancelled start counts as draining (it is on its way out). */
export function countPhases(fn: FunctionState): Record<SandboxPhase, number> {
  const counts = { starting: 0, ready: 0, draining: 0 };
  for (const s of fn.sandboxes.values()) counts[s.cancelled ? 'draining' : s.phase] += 1;
  return counts;
}

/** Sandboxes that serve or will serve: ready, or starting and still wanted. */
export function isLive(s: SandboxRecord): boolean {
  return s.phase === 'ready' || (s.phase === 'starting' && !s.cancelled);
}

/** The JSON form of `GET /v1/functions/{name}`. */
export function describeFunction(fn: FunctionState, nowMs: number, staleMs: number): Record<string, unknown> {
  const load = totalLoad(fn, nowMs, staleMs);
  const phases = countPhases(fn);
  return {
    name: fn.spec.name,
    revision: fn.revision,
    createdAt: new Date(fn.createdAtMs).toISOString(),
    updatedAt: new Date(fn.updatedAtMs).toISOString(),
    spec: toSpecInput(fn.spec),
    status: {
      desiredScale: fn.desired,
      readySandboxes: phases.ready,
      startingSandboxes: phases.starting,
      drainingSandboxes: phases.draining,
      inFlight: load.inFlight,
      queued: load.queued,
      autoscaler: describeDecision(fn.decision),
      condition: fn.condition
        ? { code: fn.condition.code, message: fn.condition.message, since: new Date(fn.condition.sinceMs).toISOString() }
        : null,
    },
    sandboxes: [...fn.sandboxes.values()].map((s) => ({
      id: s.id,
      state: s.cancelled ? 'draining' : s.phase,
      worker: s.workerId,
      address: s.address || null,
      createdAt: new Date(s.createdAtMs).toISOString(),
      readyAt: s.readyAtMs === undefined ? null : new Date(s.readyAtMs).toISOString(),
    })),
    recentCreations: fn.recentCreations.map(describeCreation),
  };
}

function describeDecision(d: KpaDecision | undefined): Record<string, unknown> | null {
  if (!d) return null;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    targetPerSandbox: round(d.target),
    stableConcurrency: round(d.stableConcurrency),
    panicConcurrency: round(d.panicConcurrency),
    panicking: d.panicking,
    holdingForGrace: d.holdingForGrace,
  };
}

/** The short JSON form used by `GET /v1/functions`. */
export function summarizeFunction(fn: FunctionState): Record<string, unknown> {
  const phases = countPhases(fn);
  return {
    name: fn.spec.name,
    runtime: fn.spec.runtime,
    revision: fn.revision,
    desiredScale: fn.desired,
    readySandboxes: phases.ready,
    condition: fn.condition ? fn.condition.code : null,
  };
}
