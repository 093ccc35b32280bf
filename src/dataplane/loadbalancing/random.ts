// Random: uniform over the endpoints with a free token (over all of them
// when the concurrency is unlimited). This approximates a Kubernetes Service
// (Knative's randomLBPolicy) and is Dirigent's default (reference/dirigent.md
// §3). Dirigent draws uniformly over *all* endpoints and then waits up to
// 250 ms for the drawn one's token, 60 times; we only draw among endpoints
// with a free token, so a request never waits on a busy sandbox while another
// is idle.
//
// Without allocating: draw one endpoint; if it is free, take it (given that
// it is free, it is uniform over the free ones). Otherwise count the free
// ones and take the k-th for a uniform k. Either way each free endpoint has
// probability 1/free, and the common case costs one draw and no scan.
import { randomIndex, type BalancedEndpoint, type LoadBalancingPolicy, type RandomSource } from './policy.js';

export class RandomBalancer implements LoadBalancingPolicy {
  readonly name = 'random';

  constructor(private readonly random: RandomSource = Math.random) {}

  pick(endpoints: readonly BalancedEndpoint[], limit: number): number {
    const n = endpoints.length;
    if (n === 0) return -1;
    const first = randomIndex(this.random, n);
    if (limit === 0 || (endpoints[first] as BalancedEndpoint).inFlight < limit) return first;
    let free = 0;
    for (let i = 0; i < n; i++) if ((endpoints[i] as BalancedEndpoint).inFlight < limit) free++;
    if (free === 0) return -1;
    let k = randomIndex(this.random, free);
    for (let i = 0; i < n; i++) {
      if ((endpoints[i] as BalancedEndpoint).inFlight < limit && k-- === 0) return i;
    }
    return -1; // unreachable: k < free
  }
}
