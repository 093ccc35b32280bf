// Random placement: a uniform pick among the workers with room for the
// request. This is Dirigent's default and fallback policy (`random`,
// reference/dirigent.md §4), which picks uniformly over every schedulable
// node whether or not it has room, so a full node keeps receiving sandboxes;
// here the workers that do not `fit` are left out first.
import { fits, randomIndex, type PlacementCandidate, type PlacementPolicy, type PlacementRequest, type RandomSource } from './policy.js';

export class RandomPlacement implements PlacementPolicy {
  readonly name = 'random';

  constructor(private readonly random: RandomSource = Math.random) {}

  place(candidates: readonly PlacementCandidate[], request: PlacementRequest): number {
    // Two passes instead of a filtered copy: count, draw, then find the k-th fit.
    let fitting = 0;
    for (const c of candidates) if (fits(c, request)) fitting++;
    if (fitting === 0) return -1;
    let k = randomIndex(this.random, fitting);
    for (let i = 0; i < candidates.length; i++) {
      if (fits(candidates[i]!, request) && k-- === 0) return i;
    }
    return -1; // unreachable: k < fitting
  }
}
