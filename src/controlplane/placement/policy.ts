// Placement: which worker a new sandbox goes to. A policy is a small pure
// module: it sees the candidate workers and the function's resource request,
// and picks one. Adding a policy means a file here and an entry in
// placement/index.ts.
//
// Every policy first drops the workers without room for the request (`fits`),
// then chooses among the rest. Dirigent never checks room: its `random` and
// `round-robin` ignore capacity and its `kubernetes` filters on a hard-coded
// request of (1 CPU milli, 1 MB) (reference/dirigent.md §4). Here no policy
// ever returns a worker that `fits` rejects, so a full worker is never
// overcommitted; when nothing fits the policy returns -1 and the control plane
// reports `explainNoFit`.

export interface PlacementCandidate {
  readonly id: string;
  readonly capacity: { readonly cpuMillis: number; readonly memoryMb: number };
  /** Resources already reserved by sandboxes on the worker (sum of their requests). */
  readonly reserved: { readonly cpuMillis: number; readonly memoryMb: number };
}

export interface PlacementRequest {
  readonly function: string;
  readonly cpuMillis: number;
  readonly memoryMb: number;
}

export interface PlacementPolicy {
  readonly name: string;
  /** Returns the chosen candidate's index, or -1 when none fits (or there are none). */
  place(candidates: readonly PlacementCandidate[], request: PlacementRequest): number;
}

export { randomIndex, type RandomSource } from '../../shared/random.js';

/**
 * Whether the worker has room for the request on both CPU and memory:
 * capacity − reserved ≥ request. A resource with a capacity of 0 (or less)
 * counts as no room at all, even for a request of 0, so that the scoring
 * policies never divide by a zero capacity.
 */
export function fits(candidate: PlacementCandidate, request: PlacementRequest): boolean {
  const { capacity, reserved } = candidate;
  return (
    capacity.cpuMillis > 0 &&
    capacity.memoryMb > 0 &&
    capacity.cpuMillis - reserved.cpuMillis >= request.cpuMillis &&
    capacity.memoryMb - reserved.memoryMb >= request.memoryMb
  );
}

/** How many workers `explainNoFit` names before it says "and N more". */
export const EXPLAIN_NO_FIT_MAX_WORKERS = 3;

/**
 * Why no candidate has room, for `describe` and the NO_CAPACITY error, e.g.
 * "no worker has room for 100m CPU and 128 MB: w1 has 50m CPU, 900 MB free;
 * w2 has 0m CPU, 0 MB free; w3 has 2000m CPU, 100 MB free; and 3 more".
 * Workers are named in candidate order; a free amount below zero (an
 * overcommitted worker) shows as 0. Meant for when `place` returned -1; if
 * some candidates do fit, it says how many instead.
 */
export function explainNoFit(candidates: readonly PlacementCandidate[], request: PlacementRequest): string {
  const wanted = `${request.cpuMillis}m CPU and ${request.memoryMb} MB`;
  if (candidates.length === 0) return `no worker has room for ${wanted}: there are no workers`;
  const full = candidates.filter((c) => !fits(c, request));
  if (full.length < candidates.length) {
    return `${candidates.length - full.length} of ${candidates.length} workers have room for ${wanted}`;
  }
  const named = full.slice(0, EXPLAIN_NO_FIT_MAX_WORKERS).map((c) => {
    const cpu = Math.max(0, c.capacity.cpuMillis - c.reserved.cpuMillis);
    const memory = Math.max(0, c.capacity.memoryMb - c.reserved.memoryMb);
    return `${c.id} has ${cpu}m CPU, ${memory} MB free`;
  });
  const more = full.length - named.length;
  return `no worker has room for ${wanted}: ${named.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}
