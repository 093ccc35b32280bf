// The load-balancing policies by name, as config and function specs select
// them. The registry is keyed by every name in shared/spec.ts, so a name
// without a policy (or a policy without a name) does not compile.
import type { LoadBalancingPolicyName } from '../../shared/spec.js';
import { KnativeBalancer } from './knative.js';
import { LeastInflightBalancer } from './least-inflight.js';
import type { LoadBalancingPolicy, RandomSource } from './policy.js';
import { PowerOfTwoBalancer } from './power-of-two.js';
import { RandomBalancer } from './random.js';
import { RoundRobinBalancer } from './round-robin.js';

export type { BalancedEndpoint, LoadBalancingPolicy, RandomSource } from './policy.js';
export { KnativeBalancer } from './knative.js';
export { LeastInflightBalancer } from './least-inflight.js';
export { PowerOfTwoBalancer } from './power-of-two.js';
export { RandomBalancer } from './random.js';
export { RoundRobinBalancer } from './round-robin.js';

export const LOAD_BALANCERS: Readonly<Record<LoadBalancingPolicyName, (random?: RandomSource) => LoadBalancingPolicy>> = Object.freeze({
  random: (random?: RandomSource) => new RandomBalancer(random),
  'round-robin': () => new RoundRobinBalancer(),
  'least-inflight': () => new LeastInflightBalancer(),
  'power-of-two': (random?: RandomSource) => new PowerOfTwoBalancer(random),
  knative: (random?: RandomSource) => new KnativeBalancer(random),
});

/**
 * One policy instance per function: policies keep per-function state (a
 * cursor). `random` defaults to Math.random.
 */
export function createLoadBalancingPolicy(name: LoadBalancingPolicyName, random?: RandomSource): LoadBalancingPolicy {
  // Names are validated at the edge; this guards callers outside the type system.
  if (!Object.hasOwn(LOAD_BALANCERS, name)) throw new Error(`unknown load-balancing policy ${name}`);
  return LOAD_BALANCERS[name](random);
}
