// The load-balancing policies by name, as config selects them.
import type { LoadBalancingPolicy } from './policy.js';
import { RoundRobinBalancer } from './round-robin.js';

export type { BalancedEndpoint, LoadBalancingPolicy } from './policy.js';
export { RoundRobinBalancer } from './round-robin.js';

export const LOAD_BALANCING_POLICIES: Readonly<Record<string, () => LoadBalancingPolicy>> = {
  'round-robin': () => new RoundRobinBalancer(),
};

/** One policy instance per function: policies keep per-function state (a cursor). */
export function createLoadBalancingPolicy(name: string): LoadBalancingPolicy {
  const make = LOAD_BALANCING_POLICIES[name];
  if (!make) throw new Error(`unknown load-balancing policy ${name}`);
  return make();
}
