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
