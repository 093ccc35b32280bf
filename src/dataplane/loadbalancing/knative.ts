// Knative: the Knative activator's choice of policy by containerConcurrency
// (newRevisionThrottler in pkg/activator/net/throttler.go, the policies in
// pkg/activator/net/lb_policy.go of knative/serving), which Dirigent's
// `knative` policy mirrors (reference/dirigent.md §3):
//
// - 0 (unlimited): power of two choices, taking the less loaded draw.
// - 1 to 3 ("very low CC values"): the first endpoint, in list order, with a
//   free token.
// - more: round-robin over the endpoints with a free token.
//
// It fixes two bugs of Dirigent's version: its power-of-two takes the
// *busier* draw, and with concurrency ≤ 3 it falls back to a random endpoint
// when none has a free token, then waits on that endpoint's token; we return
// -1 so the request queues for the first token that frees anywhere.
//
// The concurrency is read on every pick, so a function whose
// containerConcurrency changes switches mode at once. Each mode keeps its
// own state (the round-robin cursor).
import type { BalancedEndpoint, LoadBalancingPolicy, RandomSource } from './policy.js';
import { PowerOfTwoBalancer } from './power-of-two.js';
import { RoundRobinBalancer } from './round-robin.js';

/** The largest containerConcurrency for which Knative packs the first free endpoint. */
export const KNATIVE_FIRST_AVAILABLE_MAX_CONCURRENCY = 3;

export class KnativeBalancer implements LoadBalancingPolicy {
  readonly name = 'knative';
  private readonly powerOfTwo: PowerOfTwoBalancer;
  private readonly roundRobin = new RoundRobinBalancer();

  constructor(random: RandomSource = Math.random) {
    this.powerOfTwo = new PowerOfTwoBalancer(random);
  }

  pick(endpoints: readonly BalancedEndpoint[], limit: number): number {
    if (limit === 0) return this.powerOfTwo.pick(endpoints, 0);
    if (limit > KNATIVE_FIRST_AVAILABLE_MAX_CONCURRENCY) return this.roundRobin.pick(endpoints, limit);
    for (let i = 0; i < endpoints.length; i++) {
      if ((endpoints[i] as BalancedEndpoint).inFlight < limit) return i;
    }
    return -1;
  }
}
