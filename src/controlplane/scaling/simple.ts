// The interim scaling rule (issue 2), until the full KPA lands: scale from
// zero on the first request, add sandboxes while requests queue, never scale
// down while there is traffic, and go back to minScale once the function has
// had no traffic for its scale-to-zero grace period. Pure: the caller passes
// the clock.
import type { ScalingSettings } from '../../shared/spec.js';

/** Knative's container-concurrency-target-default, used when concurrency is unlimited (0). */
export const UNLIMITED_CONCURRENCY_TARGET = 100;

export interface ScalingInput {
  readonly scaling: ScalingSettings;
  /** Sandboxes ready or starting. */
  readonly current: number;
  /** Requests being served, summed over every data plane. */
  readonly inFlight: number;
  /** Requests waiting for a sandbox, summed over every data plane. */
  readonly queued: number;
  /** When the function last had a request in flight or queued. */
  readonly lastActiveMs: number;
  readonly nowMs: number;
}

/** Requests one sandbox is meant to hold: containerConcurrency × utilisation, at least 1 (Knative). */
export function targetPerSandbox(s: ScalingSettings): number {
  const total = s.containerConcurrency > 0 ? s.containerConcurrency : UNLIMITED_CONCURRENCY_TARGET;
  return Math.max(1, (total * s.targetUtilizationPct) / 100);
}

export function clampScale(s: ScalingSettings, n: number): number {
  const upper = s.maxScale > 0 ? s.maxScale : Number.POSITIVE_INFINITY;
  return Math.min(upper, Math.max(s.minScale, n));
}

export function desiredScale(input: ScalingInput): number {
  const { scaling, current, inFlight, queued, lastActiveMs, nowMs } = input;
  const demand = inFlight + queued;
  let want: number;
  if (demand > 0) {
    want = Math.max(current, Math.ceil(demand / targetPerSandbox(scaling)));
  } else if (nowMs - lastActiveMs >= scaling.scaleToZeroGraceSec * 1000) {
    want = 0;
  } else {
    want = current;
  }
  return clampScale(scaling, want);
}
