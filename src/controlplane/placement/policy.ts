// Placement: which worker a new sandbox goes to. A policy is a small pure
// module: it sees the candidate workers and the function, and picks one.
// Adding a policy means a file here and an entry in placement/index.ts.

export interface PlacementCandidate {
  readonly id: string;
  readonly capacity: { readonly cpuMillis: number; readonly memoryMb: number };
  /** Resources already reserved by sandboxes on the worker. */
  readonly reserved: { readonly cpuMillis: number; readonly memoryMb: number };
}

export interface PlacementRequest {
  readonly function: string;
  readonly cpuMillis: number;
  readonly memoryMb: number;
}

export interface PlacementPolicy {
  readonly name: string;
  /** Returns the chosen candidate's index, or -1 when none fits. */
  place(candidates: readonly PlacementCandidate[], request: PlacementRequest): number;
}
