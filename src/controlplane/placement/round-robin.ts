// Round-robin placement: each new sandbox goes to the next worker in turn, as
// Dirigent's `round-robin` (a counter over the schedulable nodes). Workers
// are taken in the order given; the caller keeps that order stable (by id).
import type { PlacementCandidate, PlacementPolicy, PlacementRequest } from './policy.js';

export class RoundRobinPlacement implements PlacementPolicy {
  readonly name = 'round-robin';
  private next = 0;

  place(candidates: readonly PlacementCandidate[], _request: PlacementRequest): number {
    if (candidates.length === 0) return -1;
    return this.next++ % candidates.length;
  }
}
