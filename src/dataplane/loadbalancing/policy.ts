// Load balancing: which ready sandbox of a function a request goes to. A
// policy is a small pure module: it sees the function's routable endpoints
// with their in-flight counts and the concurrency limit, and picks one that
// has a free token. Adding a policy means a file here and an entry in
// loadbalancing/index.ts (whose registry is typed by the names in
// shared/spec.ts, so a missing one does not compile).
//
// The policy runs on the hot path, once per request: it must not allocate.
import type { LoadBalancingPolicyName } from '../../shared/spec.js';

/** What a policy may look at: an endpoint's requests in flight. */
export interface BalancedEndpoint {
  readonly inFlight: number;
}

export interface LoadBalancingPolicy {
  readonly name: LoadBalancingPolicyName;
  /**
   * Returns the index of an endpoint with a free token (inFlight below
   * `limit`; a limit of 0 means unlimited), or -1 when every token is taken
   * or there are no endpoints.
   */
  pick(endpoints: readonly BalancedEndpoint[], limit: number): number;
}

export { randomIndex, type RandomSource } from '../../shared/random.js';
