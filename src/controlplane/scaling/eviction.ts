// Eviction: which ready sandboxes go when a function scales down. Pure: the
// actuator passes the candidates and how many must go, and drains the
// victims before deleting them, so the choice affects warmth, never
// correctness.
//
// - `newest` (the default): the sandboxes that became ready last go first,
//   keeping those that have run longest (warm caches and JIT). Kubernetes'
//   ReplicaSet controller also removes the most recently ready pods first.
// - `oldest`: the reverse, to recycle long-lived sandboxes.
// - `random`: Dirigent's eviction_policy.go.
import type { EvictionPolicyName } from '../../shared/config.js';

export interface EvictionCandidate {
  readonly id: string;
  readonly createdAtMs: number;
  readonly readyAtMs: number | undefined;
}

export type EvictionPolicy = <T extends EvictionCandidate>(candidates: readonly T[], count: number) => T[];

const readyAt = (c: EvictionCandidate): number => c.readyAtMs ?? c.createdAtMs;

/** Stable order for equal times, so the choice is reproducible. */
const byId = (a: EvictionCandidate, b: EvictionCandidate): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export function newestFirst<T extends EvictionCandidate>(candidates: readonly T[], count: number): T[] {
  return [...candidates].sort((a, b) => readyAt(b) - readyAt(a) || byId(a, b)).slice(0, Math.max(0, count));
}

export function oldestFirst<T extends EvictionCandidate>(candidates: readonly T[], count: number): T[] {
  return [...candidates].sort((a, b) => readyAt(a) - readyAt(b) || byId(a, b)).slice(0, Math.max(0, count));
}

/** Uniform choice of `count` candidates (a partial Fisher–Yates shuffle). */
export function randomEviction(random: () => number = Math.random): EvictionPolicy {
  return <T extends EvictionCandidate>(candidates: readonly T[], count: number): T[] => {
    const pool = [...candidates];
    const n = Math.min(Math.max(0, count), pool.length);
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(random() * (pool.length - i));
      const tmp = pool[i] as T;
      pool[i] = pool[j] as T;
      pool[j] = tmp;
    }
    return pool.slice(0, n);
  };
}

export function createEvictionPolicy(name: EvictionPolicyName, random: () => number = Math.random): EvictionPolicy {
  const policies: Record<EvictionPolicyName, EvictionPolicy> = {
    newest: newestFirst,
    oldest: oldestFirst,
    random: randomEviction(random),
  };
  return policies[name];
}
