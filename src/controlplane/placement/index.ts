// The placement policies by name, as config selects them.
import type { PlacementPolicy } from './policy.js';
import { RoundRobinPlacement } from './round-robin.js';

export type { PlacementCandidate, PlacementPolicy, PlacementRequest } from './policy.js';

export const PLACEMENT_POLICIES: Readonly<Record<string, () => PlacementPolicy>> = {
  'round-robin': () => new RoundRobinPlacement(),
};

export function createPlacementPolicy(name: string): PlacementPolicy {
  const make = PLACEMENT_POLICIES[name];
  if (!make) throw new Error(`unknown placement policy ${name}`);
  return make();
}
