// Bin-packing placement: the worker that is already the most allocated gets
// the sandbox, so one worker fills before the next is used and the rest stay
// empty (free for large sandboxes, or to be drained and shut down). This is
// the Kubernetes scheduler's NodeResourcesFit `MostAllocated` strategy
// (pkg/scheduler/framework/plugins/noderesources/most_allocated.go), which
// Dirigent does not offer; like every policy here it only considers workers
// that `fit` the function's real request (Dirigent's `kubernetes` policy
// filters on a hard-coded (1, 1)).
//
// Score = mean over CPU and memory (weight 1 each) of requested·100/capacity,
// with "requested" = reserved + request. Unlike Kubernetes the score is not
// truncated to an integer: with truncation a worker holding one small sandbox
// ties with an empty one (both 0), and the empty one may win the tie, leaving
// two half-used workers instead of one full and one free. Ties go to the
// first candidate in list order, so placement is deterministic.
import { fits, type PlacementCandidate, type PlacementPolicy, type PlacementRequest } from './policy.js';

/** MostAllocated: the mean used share after placing the request, 0–100. Assumes `fits` (capacities > 0). */
export function mostAllocatedScore(candidate: PlacementCandidate, request: PlacementRequest): number {
  const cpu = Math.min(1, (candidate.reserved.cpuMillis + request.cpuMillis) / candidate.capacity.cpuMillis);
  const memory = Math.min(1, (candidate.reserved.memoryMb + request.memoryMb) / candidate.capacity.memoryMb);
  return ((cpu + memory) / 2) * 100;
}

export class BinpackPlacement implements PlacementPolicy {
  readonly name = 'binpack';

  place(candidates: readonly PlacementCandidate[], request: PlacementRequest): number {
    let chosen = -1;
    let best = -1;
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      if (!fits(candidate, request)) continue;
      const score = mostAllocatedScore(candidate, request);
      if (score > best) {
        best = score;
        chosen = i;
      }
    }
    return chosen;
  }
}
