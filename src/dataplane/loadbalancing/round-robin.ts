// Round-robin that skips endpoints without a free token: Knative's activator
// policy for containerConcurrency > 3, and Dirigent's `round-robin` made
// concurrency-aware (reference/dirigent.md §3). Dirigent's own round-robin
// picks the next endpoint and then waits up to 250 ms for its token, 60
// times; we look at the tokens first, so a request either gets an endpoint at
// once or goes to the cold-start queue.
//
// The cursor survives the list growing and shrinking: it is taken modulo the
// current length.
import type { BalancedEndpoint, LoadBalancingPolicy } from './policy.js';

export class RoundRobinBalancer implements LoadBalancingPolicy {
  readonly name = 'round-robin';
  private next = 0;

  pick(endpoints: readonly BalancedEndpoint[], limit: number): number {
    const n = endpoints.length;
    if (n === 0) return -1;
    let i = this.next < n ? this.next : this.next % n;
    for (let tried = 0; tried < n; tried++) {
      const ep = endpoints[i] as BalancedEndpoint;
      if (limit === 0 || ep.inFlight < limit) {
        this.next = i + 1 === n ? 0 : i + 1;
        return i;
      }
      i = i + 1 === n ? 0 : i + 1;
    }
    return -1;
  }
}
