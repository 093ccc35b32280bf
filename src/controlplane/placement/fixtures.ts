// Shared by the placement tests (named so that `node --test <dir>` does not take
// it for a test file): a seeded PRNG, so that tests of the policies that draw
// are deterministic, and builders for candidate workers and requests.
import type { PlacementCandidate, PlacementRequest } from './policy.js';

export { mulberry32 } from '../../shared/random.js';

export interface WorkerShape {
  cpuMillis?: number;
  memoryMb?: number;
  reservedCpuMillis?: number;
  reservedMemoryMb?: number;
}

/** A candidate worker; by default 4000m CPU and 8192 MB, nothing reserved. */
export function worker(id: string, shape: WorkerShape = {}): PlacementCandidate {
  return {
    id,
    capacity: { cpuMillis: shape.cpuMillis ?? 4000, memoryMb: shape.memoryMb ?? 8192 },
    reserved: { cpuMillis: shape.reservedCpuMillis ?? 0, memoryMb: shape.reservedMemoryMb ?? 0 },
  };
}

export function request(cpuMillis: number, memoryMb: number): PlacementRequest {
  return { function: 'fn', cpuMillis, memoryMb };
}

/** The candidate with the request added to its reservation, as the control plane records a placed sandbox. */
export function withPlaced(candidate: PlacementCandidate, req: PlacementRequest): PlacementCandidate {
  return {
    ...candidate,
    reserved: {
      cpuMillis: candidate.reserved.cpuMillis + req.cpuMillis,
      memoryMb: candidate.reserved.memoryMb + req.memoryMb,
    },
  };
}

/** How often each index was chosen over `rounds` placements on an unchanging list. */
export function tally(rounds: number, place: () => number): Map<number, number> {
  const counts = new Map<number, number>();
  for (let r = 0; r < rounds; r++) {
    const i = place();
    counts.set(i, (counts.get(i) ?? 0) + 1);
  }
  return counts;
}
