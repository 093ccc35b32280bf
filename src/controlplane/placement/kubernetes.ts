// Kubernetes placement: the default scoring of the Kubernetes scheduler, which
// spreads sandboxes over the workers with the most free and the most evenly
// used resources. Dirigent ports it in `k8s_placement.go`
// (reference/dirigent.md §4) but filters on a hard-coded request of
// (1 CPU milli, 1 MB), so a worker with 500m free still "fits" a 600m
// sandbox; here the filter is `fits` with the function's real request, and
// "requested" is what the sandboxes on the worker reserved (Dirigent uses
// heartbeat utilisation) plus the request.
//
// Score = NodeResourcesFit's LeastAllocated + NodeResourcesBalancedAllocation,
// 0–100 each, CPU and memory with weight 1 each (Kubernetes' defaults;
// pkg/scheduler/framework/plugins/noderesources/{least_allocated,
// balanced_allocation}.go):
//   leastAllocated     = ⌊(⌊(capCpu − reqCpu)·100/capCpu⌋ + ⌊(capMem − reqMem)·100/capMem⌋) / 2⌋
//   balancedAllocation = trunc((1 − |fCpu − fMem| / 2) · 100), f = requested/capacity capped at 1
// The integer truncation is Kubernetes' own (int64 arithmetic, then
// int64(float)), kept so scores match the scheduler's; it also makes workers
// within a point of each other tie, and ties are broken uniformly at random
// (reservoir sampling, as Dirigent and Kubernetes' selectHost do), which
// spreads further.
import { fits, type PlacementCandidate, type PlacementPolicy, type PlacementRequest, type RandomSource } from './policy.js';

/** Kubernetes' framework.MaxNodeScore. */
const MAX_NODE_SCORE = 100;

/** LeastAllocated: the mean free share after placing the request, 0–100. Assumes `fits`. */
export function leastAllocatedScore(candidate: PlacementCandidate, request: PlacementRequest): number {
  const cpu = leastRequested(candidate.reserved.cpuMillis + request.cpuMillis, candidate.capacity.cpuMillis);
  const memory = leastRequested(candidate.reserved.memoryMb + request.memoryMb, candidate.capacity.memoryMb);
  return Math.floor((cpu + memory) / 2);
}

/** BalancedAllocation: 100 when CPU and memory would be equally used, less as they diverge. Assumes `fits`. */
export function balancedAllocationScore(candidate: PlacementCandidate, request: PlacementRequest): number {
  const cpu = Math.min(1, (candidate.reserved.cpuMillis + request.cpuMillis) / candidate.capacity.cpuMillis);
  const memory = Math.min(1, (candidate.reserved.memoryMb + request.memoryMb) / candidate.capacity.memoryMb);
  const std = Math.abs((cpu - memory) / 2);
  return Math.trunc((1 - std) * MAX_NODE_SCORE);
}

/** The total a worker is ranked by, 0–200. Assumes `fits`. */
export function kubernetesScore(candidate: PlacementCandidate, request: PlacementRequest): number {
  return leastAllocatedScore(candidate, request) + balancedAllocationScore(candidate, request);
}

function leastRequested(requested: number, capacity: number): number {
  if (capacity <= 0 || requested > capacity) return 0;
  return Math.floor(((capacity - requested) * MAX_NODE_SCORE) / capacity);
}

export class KubernetesPlacement implements PlacementPolicy {
  readonly name = 'kubernetes';

  constructor(private readonly random: RandomSource = Math.random) {}

  place(candidates: readonly PlacementCandidate[], request: PlacementRequest): number {
    let chosen = -1;
    let best = -1;
    let tied = 0;
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      if (!fits(candidate, request)) continue;
      const score = kubernetesScore(candidate, request);
      if (score > best) {
        best = score;
        chosen = i;
        tied = 1;
      } else if (score === best) {
        // Reservoir sampling: the i-th of `tied` equal scores replaces the choice with probability 1/tied.
        tied++;
        if (this.random() * tied < 1) chosen = i;
      }
    }
    return chosen;
  }
}
