// Power of two choices: draw two distinct endpoints at random and take the
// one with fewer requests in flight (ties go to the first draw, itself
// random). Knative's activator uses it for containerConcurrency 0
// (randomChoice2Policy in knative/serving pkg/activator/net/lb_policy.go);
// with two draws the maximum load is exponentially better than with one
// (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing").
//
// Dirigent's `knative` policy (reference/dirigent.md §3) compares the two
// draws the wrong way round and takes the *busier* one; we take the less
// busy one. The less busy draw has a free token whenever either draw has,
// so a full endpoint is never taken; when both draws are full we fall back
// to a least-in-flight scan, so a request gets a free endpoint whenever
// there is one instead of queueing.
import { LeastInflightBalancer } from './least-inflight.js';
import { randomIndex, type BalancedEndpoint, type LoadBalancingPolicy, type RandomSource } from './policy.js';

export class PowerOfTwoBalancer implements LoadBalancingPolicy {
  readonly name = 'power-of-two';
  private readonly fallback = new LeastInflightBalancer();

  constructor(private readonly random: RandomSource = Math.random) {}

  pick(endpoints: readonly BalancedEndpoint[], limit: number): number {
    const n = endpoints.length;
    if (n === 0) return -1;
    if (n === 1) return limit === 0 || (endpoints[0] as BalancedEndpoint).inFlight < limit ? 0 : -1;
    const a = randomIndex(this.random, n);
    // A uniform draw over the other n-1 endpoints: skip over `a`.
    let b = randomIndex(this.random, n - 1);
    if (b >= a) b++;
    const aInFlight = (endpoints[a] as BalancedEndpoint).inFlight;
    const bInFlight = (endpoints[b] as BalancedEndpoint).inFlight;
    const pick = bInFlight < aInFlight ? b : a;
    if (limit === 0 || (pick === a ? aInFlight : bInFlight) < limit) return pick;
    return this.fallback.pick(endpoints, limit);
  }
}
