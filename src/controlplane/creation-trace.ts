// Where the time of each sandbox creation went, end to end: placement on the
// control plane, the worker's stages (port, runtime create, network, start,
// readiness probe), the create RPC around them, and the propagation of the
// new endpoint to every data plane. `describe` shows a function's recent
// creations; with `coldStartTracePath` set, every creation is also a row of a
// CSV whose first columns are Dirigent's data/cold_start_trace.csv
// (pkg/tracing/tracing.go), so its plotting scripts read it, followed by
// Baton's own. Stages Baton does not have (image fetch, snapshots) are 0.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../shared/logging.js';

/** One sandbox creation, in microseconds. */
export interface CreationRecord {
  readonly atMs: number;
  /**
   * When the actuator decided to start this sandbox and began placing it
   * (wall clock, as atMs): a benchmark subtracts its request time from it to
   * get the decision stage.
   */
  readonly decidedAtMs: number;
  readonly function: string;
  readonly sandboxId: string;
  readonly workerId: string;
  readonly runtime: string;
  readonly success: boolean;
  /** From a pool: a pre-created container or a pre-booted runtime. */
  readonly pooled: boolean;
  readonly placementUs: number;
  readonly portAllocationUs: number;
  readonly runtimeCreateUs: number;
  readonly networkUs: number;
  readonly spawnUs: number;
  readonly readinessProbeUs: number;
  /** The worker's own total, from the CreateSandbox call to the probe passing. */
  readonly workerTotalUs: number;
  /** The CreateSandbox RPC as the control plane saw it: the worker's total plus the wire. */
  readonly createRpcUs: number;
  /** Until every data plane acknowledged the new endpoint. */
  readonly propagationUs: number;
  /** Placement + create RPC + propagation: from the decision to place to routable everywhere. */
  readonly totalUs: number;
  /** Why it failed, when it did. */
  readonly error?: string;
}

/** How many creations `describe` keeps per function. */
export const RECENT_CREATIONS = 10;

/**
 * How many creations the control plane keeps for `GET /v1/creations`, across
 * functions: enough for a scale benchmark's 5,000 sandboxes many times over,
 * and about 40 MB at worst.
 */
export const CREATION_LOG_CAPACITY = 100_000;

/**
 * The latest creations of every function, oldest first, in a ring: a
 * benchmark reads all those since its request, which `describe`'s
 * RECENT_CREATIONS per function cannot give.
 */
export class CreationLog {
  private readonly ring: CreationRecord[] = [];
  private next = 0;
  private droppedAtMs = -Infinity;

  constructor(readonly capacity = CREATION_LOG_CAPACITY) {}

  push(r: CreationRecord): void {
    if (this.ring.length < this.capacity) {
      this.ring.push(r);
      return;
    }
    // Full: overwrite the oldest, and remember until when the log is no longer whole.
    this.droppedAtMs = Math.max(this.droppedAtMs, (this.ring[this.next] as CreationRecord).atMs);
    this.ring[this.next] = r;
    this.next = (this.next + 1) % this.capacity;
  }

  /**
   * The creations that finished at or after `sinceMs`, oldest first, of one
   * function or all; `complete` is false when some of them were already
   * overwritten.
   */
  since(sinceMs: number, fn?: string): { records: CreationRecord[]; complete: boolean } {
    const records: CreationRecord[] = [];
    const n = this.ring.length;
    for (let i = 0; i < n; i++) {
      const r = this.ring[(this.next + i) % n] as CreationRecord;
      if (r.atMs >= sinceMs && (fn === undefined || r.function === fn)) records.push(r);
    }
    return { records, complete: this.droppedAtMs < sinceMs };
  }
}

/** Dirigent's columns first, in its order, then Baton's. Times in microseconds. */
export const COLD_START_CSV_COLUMNS = [
  'time',
  'service_name',
  'container_id',
  'success',
  'image_fetch',
  'sandbox_create',
  'sandbox_start',
  'network_setup',
  'iptables',
  'readiness_probe',
  'data_plane_propagation',
  'snapshot_creation',
  'configure_monitoring',
  'find_snapshot',
  'db',
  'other_worker_node',
  'worker_id',
  'runtime',
  'pooled',
  'placement',
  'port_allocation',
  'worker_total',
  'create_rpc',
  'total',
] as const;

export function toCsvRow(r: CreationRecord): string {
  // As Dirigent: what the worker's total does not explain by its stages.
  const other = Math.max(0, r.workerTotalUs - (r.portAllocationUs + r.runtimeCreateUs + r.networkUs + r.spawnUs + r.readinessProbeUs));
  const cells = [
    String(BigInt(Math.round(r.atMs)) * 1_000_000n), // Dirigent writes UnixNano
    r.function,
    r.sandboxId,
    String(r.success),
    '0',
    String(r.runtimeCreateUs),
    String(r.spawnUs),
    String(r.networkUs),
    '0', // Baton's DNAT rules are part of network_setup
    String(r.readinessProbeUs),
    String(r.propagationUs),
    '0',
    '0',
    '0',
    '0', // nothing is persisted per sandbox
    String(other),
    r.workerId,
    r.runtime,
    String(r.pooled),
    String(r.placementUs),
    String(r.portAllocationUs),
    String(r.workerTotalUs),
    String(r.createRpcUs),
    String(r.totalUs),
  ];
  return cells.map(csvCell).join(',') + '\n';
}

function csvCell(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The JSON form in `describe`: milliseconds, rounded to microseconds. */
export function describeCreation(r: CreationRecord): Record<string, unknown> {
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    at: new Date(r.atMs).toISOString(),
    sandbox: r.sandboxId,
    worker: r.workerId,
    runtime: r.runtime,
    success: r.success,
    pooled: r.pooled,
    ms: {
      placement: ms(r.placementUs),
      portAllocation: ms(r.portAllocationUs),
      runtimeCreate: ms(r.runtimeCreateUs),
      network: ms(r.networkUs),
      start: ms(r.spawnUs),
      readiness: ms(r.readinessProbeUs),
      worker: ms(r.workerTotalUs),
      createRpc: ms(r.createRpcUs),
      propagation: ms(r.propagationUs),
      total: ms(r.totalUs),
    },
    ...(r.error === undefined ? {} : { error: r.error }),
  };
}

/**
 * The CSV file, truncated and given its header when the control plane
 * starts (as Dirigent does). Rows are appended synchronously: a creation is
 * milliseconds of work and a row is one small write, and an append that
 * cannot interleave keeps the file readable if the process dies.
 */
export class ColdStartTrace {
  private failed = false;

  constructor(
    private readonly path: string,
    private readonly log: Logger,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, COLD_START_CSV_COLUMNS.join(',') + '\n');
  }

  write(r: CreationRecord): void {
    if (this.failed) return;
    try {
      appendFileSync(this.path, toCsvRow(r));
    } catch (err) {
      // Tracing must never stop scaling: say so once and stop writing.
      this.failed = true;
      this.log.error({ err, path: this.path }, 'cannot write the cold-start trace; tracing stopped');
    }
  }
}
