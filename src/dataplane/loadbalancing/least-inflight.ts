// Least in-flight: the endpoint with the fewest requests in flight right
// now, if it has a free token. Ties go to the first such endpoint after a
// rotating start (the one after the previous pick), so equally loaded
// endpoints share the load round-robin instead of the first one taking it
// all.
//
// Dirigent's `least-processed` (reference/dirigent.md §3) ranks endpoints by
// a cumulative request count that is never decremented, so a sandbox that
// was busy in the past is avoided forever and a new sandbox takes every
// request until it catches up. We rank by live in-flight counts.
//
// The cursor survives the list growing and shrinking: it is taken modulo the
// current length.
import type { BalancedEndpoint, LoadBalancingPolicy } from './policy.js';

export class LeastInflightBalancer implements LoadBalancingPolicy {
  readonly name = 'least-inflight';
  private next = 0;

  pick(endpoints: readonly BalancedEndpoint[], limit: number): number {
    const n = endpoints.length;
    if (n === 0) return -1;
    let i = this.next < n ? this.next : this.next % n;
    let best = -1;
    let bestInFlight = Infinity;
    for (let tried = 0; tried < n; tried++) {
      const inFlight = (endpoints[i] as BalancedEndpoint).inFlight;
      if (inFlight < bestInFlight) {
        best = i;
        bestInFlight = inFlight;
        if (inFlight === 0) break; // nothing is less loaded than idle
      }
      i = i + 1 === n ? 0 : i + 1;
    }
    // The least loaded endpoint has a free token if any endpoint has.
    if (limit !== 0 && bestInFlight >= limit) return -1;
    this.next = best + 1 === n ? 0 : best + 1;
    return best;
  }
}
