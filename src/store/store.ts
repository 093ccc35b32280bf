// The ClusterStore: where registrations live. Only registrations are written
// (functions, workers, data planes), and never on the invocation path;
// sandbox state is never persisted and is rebuilt from the workers
// (DESIGN.md, principle 1). Every backend passes the same conformance suite
// (store.conformance.ts).
//
// Writes are acknowledged only once durable, so an acknowledged registration
// survives a kill -9 of the control plane.
import type { FunctionSpec } from '../shared/spec.js';

export interface StoredFunction {
  readonly spec: FunctionSpec;
  /** Increases on every change of the spec. */
  readonly revision: number;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
}

export interface StoredWorker {
  readonly id: string;
  readonly address: string;
  readonly registeredAtMs: number;
}

export interface StoredDataPlane {
  readonly id: string;
  readonly address: string;
  readonly proxyAddress: string;
  readonly registeredAtMs: number;
}

export interface ClusterStore {
  readonly kind: string;
  listFunctions(): Promise<StoredFunction[]>;
  getFunction(name: string): Promise<StoredFunction | undefined>;
  /** Throws FUNCTION_EXISTS when the name is taken. */
  createFunction(fn: StoredFunction): Promise<void>;
  /** Replaces a function only if the stored revision is `expectedRevision`; returns whether it did. */
  updateFunction(fn: StoredFunction, expectedRevision: number): Promise<boolean>;
  /** Returns whether a function was deleted. */
  deleteFunction(name: string): Promise<boolean>;

  putWorker(w: StoredWorker): Promise<void>;
  deleteWorker(id: string): Promise<void>;
  listWorkers(): Promise<StoredWorker[]>;

  putDataPlane(d: StoredDataPlane): Promise<void>;
  deleteDataPlane(id: string): Promise<void>;
  listDataPlanes(): Promise<StoredDataPlane[]>;

  close(): Promise<void>;
}
