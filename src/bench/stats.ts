// The pure parts of `baton bench scale`: the size lists it takes, the stage
// breakdown it computes from the control plane's creation records, the data
// plane's endpoint counts it reads from /metrics, and the table it prints.
// Kept apart from the runner so each can be tested without a cluster.
import type { CreationRecord } from '../controlplane/creation-trace.js';
import { percentile } from '../loadgen/summary.js';
import { BatonError } from '../shared/errors.js';

export const SCALE_TESTS = ['scale-sandboxes', 'scale-functions', 'scale-nodes'] as const;
export type ScaleTest = (typeof SCALE_TESTS)[number];

/**
 * The stages of one creation, in the order they happen (docs/benchmarks.md):
 * - decision: from the benchmark's request to the actuator deciding to start it;
 * - placement: choosing and reserving a worker;
 * - createRpc: the CreateSandbox RPC minus the worker's own time (wire and queueing);
 * - ready: the worker's time, from the call to the sandbox answering its probe;
 * - propagation: until every data plane acknowledged the endpoint;
 * - total: from the request to routable on every data plane.
 */
export const STAGES = ['decision', 'placement', 'createRpc', 'ready', 'propagation', 'total'] as const;
export type Stage = (typeof STAGES)[number];

export const STAGE_LABELS: Readonly<Record<Stage, string>> = {
  decision: 'decision',
  placement: 'placement',
  createRpc: 'create RPC',
  ready: 'ready',
  propagation: 'propagation',
  total: 'request→routable',
};

export interface StageStats {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** "100,1000,5k" → [100, 1000, 5000]: positive integers, a k suffix for thousands. */
export function parseSizeList(value: string, flag: string): number[] {
  const sizes = value.split(',').map((part) => {
    const m = /^\s*(\d+)(k?)\s*$/i.exec(part);
    const n = m ? Number(m[1]) * (m[2] ? 1000 : 1) : Number.NaN;
    if (!Number.isSafeInteger(n) || n <= 0) throw new BatonError('INVALID_REQUEST', `${flag} ${value}: expected positive integers separated by commas, e.g. 100,1000`);
    return n;
  });
  return sizes;
}

/** Milliseconds per stage of one successful creation; `requestedAtMs` is when the benchmark asked for its function's scale. */
export function stagesOf(r: CreationRecord, requestedAtMs: number): Record<Stage, number> {
  return {
    decision: Math.max(0, r.decidedAtMs - requestedAtMs),
    placement: r.placementUs / 1000,
    createRpc: Math.max(0, r.createRpcUs - r.workerTotalUs) / 1000,
    ready: r.workerTotalUs / 1000,
    propagation: r.propagationUs / 1000,
    total: Math.max(0, r.atMs - requestedAtMs),
  };
}

/** p50, p99 and max of every stage over the creations; NaN for all when there are none. */
export function stageStatistics(records: readonly CreationRecord[], requestedAtMs: (r: CreationRecord) => number): Record<Stage, StageStats> {
  const values = Object.fromEntries(STAGES.map((s) => [s, [] as number[]])) as Record<Stage, number[]>;
  for (const r of records) {
    const t = stagesOf(r, requestedAtMs(r));
    for (const s of STAGES) values[s].push(t[s]);
  }
  const out = {} as Record<Stage, StageStats>;
  for (const s of STAGES) {
    const sorted = values[s].sort((a, b) => a - b);
    out[s] = { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.length > 0 ? (sorted[sorted.length - 1] as number) : Number.NaN };
  }
  return out;
}

/**
 * Routable endpoints per function, from a data plane's Prometheus text: its
 * `baton_dataplane_endpoints{function="…"}` gauge.
 */
export function parseEndpointGauge(metricsText: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of metricsText.matchAll(/^baton_dataplane_endpoints\{(.*)\}\s+(\S+)$/gm)) {
    // Labels in any order (the registry adds its own, such as component): take `function`.
    const label = /(?:^|,)function="((?:[^"\\]|\\.)*)"/.exec(m[1] ?? '');
    if (label) counts.set((label[1] ?? '').replace(/\\(.)/g, '$1'), Number(m[2]));
  }
  return counts;
}

/** One measured point of a scale test. Times in seconds from the first request unless named otherwise. */
export interface ScalePoint {
  readonly test: ScaleTest;
  /** N: sandboxes, functions or nodes. */
  readonly size: number;
  readonly nodes: number;
  readonly functions: number;
  /** Sandboxes asked for. */
  readonly sandboxes: number;
  /** Ready on the control plane and routable on every data plane when the poll saw it done. */
  readonly readySandboxes: number;
  readonly visibleOnDataPlanes: number;
  readonly dataPlanes: number;
  /** The poll that first saw every sandbox ready and on every data plane (so up to one poll interval late). */
  readonly observedSeconds: number;
  /** The last creation's propagation acknowledged, from the control plane's records. */
  readonly lastAckSeconds: number;
  /** Successful creations per second up to the last acknowledgement. */
  readonly creationsPerSecond: number;
  readonly creations: number;
  readonly failedCreations: number;
  /** False when the control plane's creation log had already dropped some of this point's records. */
  readonly recordsComplete: boolean;
  readonly stages: Record<Stage, StageStats>;
  /** scale-nodes: the fewest and most sandboxes on one node. */
  readonly perNode?: { readonly min: number; readonly max: number };
}

/** Sandbox creations per second: `creations` over the seconds they took; 0 when no time passed. */
export function creationRate(creations: number, seconds: number): number {
  return seconds > 0 ? creations / seconds : 0;
}

function fmt(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

export function alignRows(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd()).join('\n') + '\n';
}

/** The size column: N, or N×k for scale-nodes. */
function sizeLabel(p: ScalePoint): string {
  return p.test === 'scale-nodes' ? `${p.nodes}×${p.nodes > 0 ? Math.round(p.sandboxes / p.nodes) : 0}` : String(p.size);
}

/** One line per point, then each point's stage breakdown. */
export function formatScaleReport(points: readonly ScalePoint[]): string {
  const summary = alignRows([
    ['test', 'N', 'nodes', 'sandboxes', 'ready+visible s', 'last ack s', 'creations/s', 'failed'],
    ...points.map((p) => [
      p.test,
      sizeLabel(p),
      String(p.nodes),
      `${p.visibleOnDataPlanes}/${p.sandboxes}`,
      fmt(p.observedSeconds, 2),
      fmt(p.lastAckSeconds, 2),
      fmt(p.creationsPerSecond, 0),
      String(p.failedCreations),
    ]),
  ]);
  const stageTables = points.map((p) => {
    const head = `${p.test} N=${sizeLabel(p)}: stages over ${p.creations} creations, ms${p.recordsComplete ? '' : ' (some records were dropped)'}` +
      (p.perNode ? `; ${p.perNode.min}–${p.perNode.max} sandboxes per node` : '');
    const rows = alignRows([
      ['stage', 'p50', 'p99', 'max'],
      ...STAGES.map((s) => [STAGE_LABELS[s], fmt(p.stages[s].p50, 2), fmt(p.stages[s].p99, 2), fmt(p.stages[s].max, 2)]),
    ]);
    return `${head}\n${rows}`;
  });
  return [summary, ...stageTables].join('\n');
}
