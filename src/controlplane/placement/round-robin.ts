// Round-robin placement: each new sandbox goes to the next worker in turn that
// has room, as Dirigent's `round-robin` (a CAS counter over the schedulable
// nodes, reference/dirigent.md §4). Dirigent's counter ignores capacity and
// keeps handing sandboxes to full nodes; this cursor skips workers that do not
// `fit` and resumes after the worker it chose.
//
// The cursor is a position in the list, not a worker id: the caller keeps the
// order stable (by id), and when the list grows or shrinks the cursor wraps
// onto the new length, so the rotation carries on, at worst visiting one
// worker out of turn once. Placement is synchronous and JavaScript single-
// threaded, so the counter needs no CAS.
import { fits, type PlacementCandidate, type PlacementPolicy, type PlacementRequest } from './policy.js';

export class RoundRobinPlacement implements PlacementPolicy {
  readonly name = 'round-robin';
  private next = 0;

  place(candidates: readonly PlacementCandidate[], request: PlacementRequest): number {
    const n = candidates.length;
    if (n === 0) return -1;
    const start = this.next % n;
    for (let step = 0; step < n; step++) {
      const i = (start + step) % n;
      if (fits(candidates[i]!, request)) {
        this.next = i + 1;
        return i;
      }
    }
    return -1;
  }
}
