// The placement policies by name, as config selects them (`placementPolicy`,
// whose names are fixed in shared/config.ts). The registry is typed by those
// names, so a name without a policy does not compile.
import type { PlacementPolicyName } from '../../shared/config.js';
import { BinpackPlacement } from './binpack.js';
import { KubernetesPlacement } from './kubernetes.js';
import type { PlacementPolicy, RandomSource } from './policy.js';
import { RandomPlacement } from './random.js';
import { RoundRobinPlacement } from './round-robin.js';

export type { PlacementCandidate, PlacementPolicy, PlacementRequest, RandomSource } from './policy.js';
export { explainNoFit, fits } from './policy.js';

/** Each factory takes the random source for policies that draw (tests inject a seeded one). */
export const PLACEMENT_POLICY_FACTORIES: Readonly<Record<PlacementPolicyName, (random?: RandomSource) => PlacementPolicy>> = {
  random: (random) => new RandomPlacement(random),
  'round-robin': () => new RoundRobinPlacement(),
  kubernetes: (random) => new KubernetesPlacement(random),
  binpack: () => new BinpackPlacement(),
};

/** A fresh policy (policies keep state, e.g. the round-robin cursor): one per control plane. */
export function createPlacementPolicy(name: PlacementPolicyName, random?: RandomSource): PlacementPolicy {
  return PLACEMENT_POLICY_FACTORIES[name](random);
}
