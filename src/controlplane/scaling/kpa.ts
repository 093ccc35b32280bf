// The Knative Pod Autoscaler, concurrency mode: one per function. A port of
// knative/serving pkg/autoscaler/scaling/autoscaler.go (Scale) and the
// bounds of pkg/reconciler/autoscaling/kpa/scaler.go, as Dirigent ports it
// (reference/dirigent.md §4, workload-peers.md §3), with its bugs fixed:
//
// - The scaling period is the caller's tick, not hard-coded to 2 s.
// - Scale to zero waits for a grace period after the stable average reaches
//   zero (Knative's scale-to-zero-grace-period); Dirigent has none.
// - Unlimited concurrency (0) scales on a configurable target, not a literal 100.
//
// Each tick the caller records the function's concurrency (requests in
// flight or queued, summed over data planes) and asks for a decision:
//
//   target = max(1, total × targetUtilizationPct / 100), total = containerConcurrency or the unlimited target
//   ready  = max(1, ready sandboxes)
//   dspc   = ceil(stable average / target), dppc = ceil(panic average / target)
//   both clamped to [floor(ready / maxScaleDownRate), ceil(ready × maxScaleUpRate)]
//   panic  entered when dppc / ready ≥ panicThresholdPct / 100, extended by every
//          tick still over it, left a full stable window after the last one;
//          while panicking the scale is max(dspc, dppc) and never decreases
//   then   min/max scale, then the scale-to-zero grace
//
// Between ticks, a request that queues with no capacity makes the data plane
// report at once, and urgent() may raise the scale without waiting: from
// zero (Knative's activator "pokes" the autoscaler on a cold start), or when
// the queue alone, beyond the requests in flight, is a burst over the panic
// threshold. The raised scale is a floor held for one panic window. A real
// burst reaches the panic window within it, and once the panic average is
// over the threshold against the sandboxes ready when the burst began (the
// ones the floor added would hide it), the floor becomes a panic, held for a
// stable window. A momentary cluster of arrivals at a steady rate never gets
// there, and costs a panic window of extra sandboxes, not a stable window.
// Smaller shortfalls of a running function wait for the tick, so an isolated
// queued request cannot make the scale flap.
//
// Pure: no timers, no I/O; the caller passes the time.
import type { ScalingSettings } from '../../shared/spec.js';
import { TimedBuckets } from './buckets.js';

/** Knative's container-concurrency-target-default. */
export const DEFAULT_UNLIMITED_CONCURRENCY_TARGET = 100;

/** Knative stores concurrency in 1-second buckets. */
const KNATIVE_BUCKET_MS = 1000;

export interface KpaOptions {
  /** Requests per sandbox to aim at when containerConcurrency is 0. */
  unlimitedConcurrencyTarget?: number;
  /** Bucket width; defaults to 1 s, or the tick when that is shorter (tests with short windows). */
  bucketMs?: number;
}

export interface KpaDecision {
  /** The scale to run: bounded by min/max scale and the scale-to-zero grace. */
  readonly desired: number;
  /** Requests per sandbox aimed at. */
  readonly target: number;
  /** Window averages of concurrency; 0 when there is no data. */
  readonly stableConcurrency: number;
  readonly panicConcurrency: number;
  readonly panicking: boolean;
  /** This tick's panic-window demand was at or over the panic threshold (it starts or extends a panic). */
  readonly overPanicThreshold: boolean;
  /** True while desired is held at 1 by the scale-to-zero grace period. */
  readonly holdingForGrace: boolean;
}

/** Requests one sandbox is meant to hold: total × utilisation, at least 1 (Knative's target.go). */
export function targetPerSandbox(s: ScalingSettings, unlimitedTarget = DEFAULT_UNLIMITED_CONCURRENCY_TARGET): number {
  const total = s.containerConcurrency > 0 ? s.containerConcurrency : unlimitedTarget;
  return Math.max(1, (total * s.targetUtilizationPct) / 100);
}

/** minScale ≤ n ≤ maxScale (0 = unlimited). */
export function clampScale(s: ScalingSettings, n: number): number {
  const upper = s.maxScale > 0 ? s.maxScale : Number.POSITIVE_INFINITY;
  return Math.min(upper, Math.max(s.minScale, n));
}

export class Kpa {
  private readonly samples: TimedBuckets;
  private readonly unlimitedTarget: number;
  /** Knative's panicTime: the last tick over the panic threshold; undefined when not panicking. */
  private lastOverThresholdMs: number | undefined;
  /** Knative's maxPanicPods: the highest scale decided in this panic. */
  private maxPanicPods = 0;
  /** When the decision first reached 0 in the current run of zeros. */
  private zeroSinceMs: number | undefined;
  /** The scale an urgent report asked for, held until urgentUntilMs. */
  private urgentFloor = 0;
  private urgentUntilMs = 0;
  /** Ready sandboxes when the floor was set: what a burst is measured against. */
  private urgentReady = 1;

  constructor(settings: ScalingSettings, options: KpaOptions = {}) {
    this.unlimitedTarget = options.unlimitedConcurrencyTarget ?? DEFAULT_UNLIMITED_CONCURRENCY_TARGET;
    this.samples = new TimedBuckets(options.bucketMs ?? KNATIVE_BUCKET_MS, settings.stableWindowSec * 1000);
  }

  /** Records the function's concurrency now (in flight + queued, over every data plane). */
  record(nowMs: number, concurrency: number): void {
    this.samples.record(nowMs, concurrency);
  }

  /**
   * Enters (or extends) panic as of now at `scale`, so nothing scales below
   * it for a stable window. Knative does this for a new autoscaler that finds
   * more than one ready pod; the control plane does it when it adopts
   * sandboxes it has no load history for.
   */
  startInPanic(nowMs: number, scale: number): void {
    this.lastOverThresholdMs = nowMs;
    this.maxPanicPods = Math.max(this.maxPanicPods, scale);
  }

  /**
   * The scale to go to at once because requests queue with no capacity, or
   * undefined to leave it to the next tick. `inFlight` and `queued` are now,
   * over every data plane; `active` counts sandboxes ready or starting.
   */
  urgent(nowMs: number, s: ScalingSettings, readySandboxes: number, active: number, inFlight: number, queued: number): number | undefined {
    const ready = Math.max(1, readySandboxes);
    const target = targetPerSandbox(s, this.unlimitedTarget);
    const want = clampScale(s, Math.min(Math.ceil((inFlight + queued) / target), Math.ceil(ready * s.maxScaleUpRate)));
    if (want <= active) return undefined;
    // In flight + queued is a snapshot taken the moment a request queued, so
    // it is biased high; only the queue alone being over the threshold is
    // evidence of a burst (at a steady rate it rarely is, in a burst at once).
    const burst = Math.ceil(queued / target) / ready >= s.panicThresholdPct / 100;
    if (!burst && active > 0) return undefined;
    if (nowMs >= this.urgentUntilMs) {
      this.urgentFloor = 0;
      this.urgentReady = ready;
    }
    this.urgentFloor = Math.max(this.urgentFloor, want);
    this.urgentUntilMs = nowMs + s.panicWindowSec * 1000;
    this.zeroSinceMs = undefined;
    return want;
  }

  get panicking(): boolean {
    return this.lastOverThresholdMs !== undefined;
  }

  /**
   * Decides the function's scale. `readySandboxes` counts sandboxes that
   * serve requests (not starting, not draining), as Knative's ready pods.
   */
  decide(nowMs: number, s: ScalingSettings, readySandboxes: number): KpaDecision {
    const stableMs = s.stableWindowSec * 1000;
    this.samples.retain(stableMs);
    const target = targetPerSandbox(s, this.unlimitedTarget);
    const stable = this.samples.average(nowMs, stableMs) ?? 0;
    const panic = this.samples.average(nowMs, s.panicWindowSec * 1000) ?? 0;

    const ready = Math.max(1, readySandboxes);
    const maxScaleUp = Math.ceil(ready * s.maxScaleUpRate);
    const maxScaleDown = Math.floor(ready / s.maxScaleDownRate);
    const dspc = Math.ceil(stable / target);
    const dppc = Math.ceil(panic / target);
    const stableScale = Math.min(Math.max(dspc, maxScaleDown), maxScaleUp);
    const panicScale = Math.min(Math.max(dppc, maxScaleDown), maxScaleUp);

    const overThreshold = dppc / ready >= s.panicThresholdPct / 100;
    if (overThreshold) {
      this.lastOverThresholdMs = nowMs;
    } else if (this.lastOverThresholdMs !== undefined && nowMs - this.lastOverThresholdMs > stableMs) {
      // The surge has made its way into the stable average (Knative: panicTime + stable window < now).
      this.lastOverThresholdMs = undefined;
      this.maxPanicPods = 0;
    }

    let urgentFloor = nowMs < this.urgentUntilMs ? this.urgentFloor : 0;
    if (urgentFloor > 0 && dppc / this.urgentReady >= s.panicThresholdPct / 100) {
      // The burst has reached the panic window, measured against the sandboxes
      // there were when it began (the floor has added more since, which would
      // hide it): it is a panic now, which holds the floor for a stable window.
      this.lastOverThresholdMs = nowMs;
      this.maxPanicPods = Math.max(this.maxPanicPods, urgentFloor);
      this.urgentUntilMs = 0;
      urgentFloor = 0;
    }
    let scale = Math.max(stableScale, urgentFloor);
    if (this.lastOverThresholdMs !== undefined) {
      // Provision for the larger of the two, and never decrease while
      // panicking: an urgent floor in force joins the panic's scale.
      this.maxPanicPods = Math.max(this.maxPanicPods, stableScale, panicScale, urgentFloor);
      scale = this.maxPanicPods;
    }

    scale = clampScale(s, scale);

    let holdingForGrace = false;
    if (scale === 0) {
      this.zeroSinceMs ??= nowMs;
      // Keep the last sandbox until the stable average has been zero for the grace period.
      if (readySandboxes > 0 && nowMs - this.zeroSinceMs < s.scaleToZeroGraceSec * 1000) {
        scale = 1;
        holdingForGrace = true;
      }
    } else {
      this.zeroSinceMs = undefined;
    }

    return {
      desired: scale,
      target,
      stableConcurrency: stable,
      panicConcurrency: panic,
      panicking: this.lastOverThresholdMs !== undefined,
      overPanicThreshold: overThreshold,
      holdingForGrace,
    };
  }
}
