// The plans behind `baton loadgen rps`, pure (no network, no clock): the
// rates of a constant or stepped run, the schedule of its invocations, the
// cold-start sweep's functions and calls, and the saturation point of a sweep.
// See docs/loadgen.md.
//
// The cold-start sweep is InVitro's RPS mode with a 100 % cold share (the
// `rps_mode` branch Dirigent's artifact evaluation uses for its Fig. 7;
// ../shared/reference/workload-peers.md §1.3): a cold rate R is spread over
// ceil(R × cooldown) functions that may run at most one sandbox and go back to
// zero quickly, and each function is called once per cooldown, staggered, so
// nearly every call finds its function at zero.

import { BatonError } from '../shared/errors.js';
import { mulberry32 } from '../shared/random.js';
import { streamSeed, windowOffsets, type IatDistribution } from './schedule.js';

function invalid(key: string, message: string): BatonError {
  return new BatonError('CONFIG_INVALID', `${key}: ${message}`, { details: { key } });
}

/** Most steps one run may have; a typo such as --rps-step 0.001 should fail, not plan for hours. */
export const MAX_STEPS = 1000;

/** Every default of `baton loadgen rps`, in one place. */
export const RPS_DEFAULTS = {
  stepSeconds: 10,
  iat: 'equidistant' as IatDistribution,
  seed: 42,
} as const;

export interface RateOptions {
  /** A constant rate (one value) or the rates of the steps, in order. */
  readonly rps?: readonly number[];
  /** A stepped run: start, start + step, … up to and including end. */
  readonly rpsStart?: number;
  readonly rpsStep?: number;
  readonly rpsEnd?: number;
}

/** The requests per second of each step. */
export function rateSteps(o: RateOptions): number[] {
  const stepped = o.rpsStart !== undefined || o.rpsStep !== undefined || o.rpsEnd !== undefined;
  if (o.rps !== undefined && stepped) throw invalid('rps', 'give either a rate or a list of rates, or --rps-start/--rps-step/--rps-end, not both');
  let rates: number[];
  if (stepped) {
    const { rpsStart: start, rpsStep: step, rpsEnd: end } = o;
    if (start === undefined || step === undefined || end === undefined) throw invalid('rpsStart', 'a stepped rate needs start, step and end');
    if (!(step > 0)) throw invalid('rpsStep', `must be above 0, got ${step}`);
    if (!(end >= start)) throw invalid('rpsEnd', `must not be below the start ${start}, got ${end}`);
    const n = Math.floor((end - start) / step + 1e-9) + 1;
    if (n > MAX_STEPS) throw invalid('rpsStep', `${n} steps from ${start} to ${end}; at most ${MAX_STEPS}`);
    // start + k × step, not repeated addition, so 0.1-steps do not drift.
    rates = Array.from({ length: n }, (_, k) => Math.round((start + k * step) * 1e9) / 1e9);
  } else {
    if (o.rps === undefined || o.rps.length === 0) throw invalid('rps', 'give a rate (--rps 100), a list (--rps 10,50,100) or --rps-start/--rps-step/--rps-end');
    if (o.rps.length > MAX_STEPS) throw invalid('rps', `${o.rps.length} steps; at most ${MAX_STEPS}`);
    rates = [...o.rps];
  }
  for (const r of rates) if (!Number.isFinite(r) || r < 0) throw invalid('rps', `rates must be numbers ≥ 0, got ${r}`);
  if (!rates.some((r) => r > 0)) throw invalid('rps', 'at least one rate must be above 0');
  return rates;
}

/**
 * The length of one step, ms: `stepSeconds`, or the `durationSeconds` split
 * evenly over the steps, or the default. Both given must agree.
 */
export function stepLengthMs(steps: number, o: { stepSeconds?: number | undefined; durationSeconds?: number | undefined }): number {
  for (const [key, v] of [
    ['stepSeconds', o.stepSeconds],
    ['duration', o.durationSeconds],
  ] as const) {
    if (v !== undefined && !(v > 0 && Number.isFinite(v))) throw invalid(key, `must be a number of seconds above 0, got ${v}`);
  }
  if (o.stepSeconds !== undefined && o.durationSeconds !== undefined && Math.abs(o.stepSeconds * steps - o.durationSeconds) > 1e-6) {
    throw invalid('duration', `${o.durationSeconds} s is not ${steps} steps of ${o.stepSeconds} s; give one of them`);
  }
  const seconds = o.stepSeconds ?? (o.durationSeconds !== undefined ? o.durationSeconds / steps : RPS_DEFAULTS.stepSeconds);
  return seconds * 1000;
}

export interface RpsStep {
  readonly index: number;
  /** The target rate, requests per second. */
  readonly rps: number;
  /** From the start of the run. */
  readonly startMs: number;
  readonly endMs: number;
  /** round(rps × step length): the step's invocations. */
  readonly count: number;
}

export interface RpsInvocation {
  readonly step: number;
  /** From the start of the run. */
  readonly atMs: number;
}

export interface RpsSchedule {
  readonly steps: readonly RpsStep[];
  /** Sorted by atMs. */
  readonly invocations: readonly RpsInvocation[];
  readonly durationMs: number;
}

export interface RpsScheduleOptions {
  readonly rates: readonly number[];
  readonly stepMs: number;
  readonly iat: IatDistribution;
  readonly seed: number;
}

/** The arrivals' stream of each step: its own, so a step's arrivals do not depend on the other steps. */
const RPS_STREAM = 3;

/**
 * Each step gets exactly round(rps × step length) invocations, placed in the
 * step by the trace minutes' rule (windowOffsets): equidistant, or uniform /
 * exponential gaps rescaled to fill the step. Seeded: the same options give the
 * same schedule.
 */
export function buildRpsSchedule(o: RpsScheduleOptions): RpsSchedule {
  if (!Number.isInteger(o.seed)) throw invalid('seed', `must be an integer, got ${o.seed}`);
  if (!(o.stepMs > 0)) throw invalid('stepSeconds', `must be above 0, got ${o.stepMs / 1000}`);
  const steps: RpsStep[] = [];
  const invocations: RpsInvocation[] = [];
  for (const [index, rps] of o.rates.entries()) {
    const startMs = index * o.stepMs;
    const count = Math.round((rps * o.stepMs) / 1000);
    steps.push({ index, rps, startMs, endMs: startMs + o.stepMs, count });
    for (const offset of windowOffsets(count, o.iat, mulberry32(streamSeed(o.seed, index, RPS_STREAM)), o.stepMs)) {
      invocations.push({ step: index, atMs: startMs + offset });
    }
  }
  return { steps, invocations, durationMs: o.rates.length * o.stepMs };
}

// ---- the cold-start sweep -----------------------------------------------------------

/**
 * The scaling of the sweep's functions: at most one sandbox, back to zero as
 * soon as Baton allows. The stable window is Baton's (and Knative's) least, 6 s,
 * as in Dirigent's cold_start_sweep registration; no grace after it.
 */
export const COLD_SWEEP_SCALING = {
  minScale: 0,
  maxScale: 1,
  containerConcurrency: 1,
  stableWindowSec: 6,
  panicWindowSec: 1,
  scaleToZeroGraceSec: 0,
} as const;

export const COLD_SWEEP_DEFAULTS = {
  /**
   * Seconds added to stable window + grace for the cooldown: the data plane's
   * last report of the request comes up to a report interval (2 s) after it,
   * the stable average is kept in 1 s buckets, the decision waits for the next
   * tick (2 s), and the drain and delete take a moment.
   */
  marginSec: 6,
  /** Saturated when the achieved cold starts per second fall below this share of the target… */
  coldFraction: 0.9,
  /** …or p99 exceeds this multiple of the lowest rate's p99. */
  p99Multiple: 5,
} as const;

/**
 * How long after a call its function is back at zero: the last sandbox goes a
 * stable window plus the grace after the function's last load
 * (docs/autoscaling.md, "Scale to zero"), plus a margin for reports, ticks and the drain.
 */
export function coldCooldownSec(scaling: { stableWindowSec: number; scaleToZeroGraceSec: number }, marginSec: number = COLD_SWEEP_DEFAULTS.marginSec): number {
  if (!(marginSec >= 0)) throw invalid('cooldownMargin', `must be ≥ 0 seconds, got ${marginSec}`);
  return scaling.stableWindowSec + scaling.scaleToZeroGraceSec + marginSec;
}

export interface ColdStepPlan {
  /** The cold rate, calls per second. */
  readonly rate: number;
  /** ceil(rate × cooldown): how many functions the calls rotate over. */
  readonly functions: number;
  /** Every call: when (from the start of the step) and which function (0-based). Sorted by atMs. */
  readonly calls: readonly { readonly atMs: number; readonly fn: number }[];
  /** The time between two calls of one function: functions / rate ≥ the cooldown. */
  readonly periodMs: number;
}

/**
 * One step of the sweep: round(rate × step) calls, one every 1/rate s, going
 * round ceil(rate × cooldown) functions in turn. A function is thus called
 * every ceil(rate × cooldown) / rate ≥ cooldown seconds, and the calls of
 * different functions are staggered evenly.
 */
export function planColdStep(rate: number, stepMs: number, cooldownSec: number): ColdStepPlan {
  if (!(rate > 0) || !Number.isFinite(rate)) throw invalid('rps', `cold rates must be above 0, got ${rate}`);
  if (!(cooldownSec > 0)) throw invalid('cooldown', `must be above 0 seconds, got ${cooldownSec}`);
  if (!(stepMs > 0)) throw invalid('stepSeconds', `must be above 0, got ${stepMs / 1000}`);
  // The epsilon keeps a product such as 0.3 × 10 = 3.0000000000000004 from rounding up to 4.
  const functions = Math.max(1, Math.ceil(rate * cooldownSec - 1e-9));
  const count = Math.round((rate * stepMs) / 1000);
  const gapMs = 1000 / rate;
  const calls = Array.from({ length: count }, (_, k) => ({ atMs: k * gapMs, fn: k % functions }));
  return { rate, functions, calls, periodMs: functions * gapMs };
}

export interface SweepPoint {
  /** Target cold starts per second. */
  readonly rate: number;
  /** Cold starts really observed per second of the step. */
  readonly achievedColdPerSec: number;
  /** Latency of the successful calls, ms; NaN when none succeeded. */
  readonly p99Ms: number;
}

export interface Saturation {
  /** Index into the points. */
  readonly index: number;
  readonly rate: number;
  readonly reason: string;
}

/**
 * The first point, by increasing rate, where the cluster no longer keeps up:
 * the achieved cold-start rate falls below `coldFraction` × the target, or p99
 * exceeds `p99Multiple` × the lowest rate's p99 (or nothing succeeded).
 * undefined when every point keeps up.
 */
export function findSaturation(
  points: readonly SweepPoint[],
  o: { coldFraction?: number; p99Multiple?: number } = {},
): Saturation | undefined {
  const coldFraction = o.coldFraction ?? COLD_SWEEP_DEFAULTS.coldFraction;
  const p99Multiple = o.p99Multiple ?? COLD_SWEEP_DEFAULTS.p99Multiple;
  if (!(coldFraction > 0 && coldFraction <= 1)) throw invalid('saturationColdFraction', `must be in (0, 1], got ${coldFraction}`);
  if (!(p99Multiple > 1)) throw invalid('saturationP99Multiple', `must be above 1, got ${p99Multiple}`);
  const order = points.map((p, index) => ({ p, index })).sort((a, b) => a.p.rate - b.p.rate);
  const base = order[0]?.p.p99Ms ?? Number.NaN;
  for (const { p, index } of order) {
    if (p.achievedColdPerSec < coldFraction * p.rate) {
      return { index, rate: p.rate, reason: `${p.achievedColdPerSec.toFixed(2)} cold starts/s, below ${Math.round(coldFraction * 100)}% of ${p.rate}/s` };
    }
    if (!Number.isFinite(p.p99Ms)) return { index, rate: p.rate, reason: 'no call succeeded' };
    if (Number.isFinite(base) && p.p99Ms > p99Multiple * base) {
      return { index, rate: p.rate, reason: `p99 ${p.p99Ms.toFixed(1)} ms, above ${p99Multiple}× the lowest rate's ${base.toFixed(1)} ms` };
    }
  }
  return undefined;
}

/** A worker as `GET /v1/workers` lists it (the fields this needs). */
export interface WorkerRoom {
  readonly status: string;
  readonly runtimes: readonly string[];
  readonly capacity: { readonly cpuMillis: number; readonly memoryMb: number };
  readonly reserved: { readonly cpuMillis: number; readonly memoryMb: number };
}

/**
 * How many more sandboxes of `resources` the ready workers offering the
 * runtime can hold. A sweep step keeps up to one sandbox per function alive
 * (each lives about a cooldown after its call), so a step with more functions
 * than this fails calls with NO_CAPACITY: a limit of the cluster's size, not of
 * its control path.
 */
export function sandboxRoom(workers: readonly WorkerRoom[], runtime: string, resources: { cpuMillis: number; memoryMb: number }): number {
  let room = 0;
  for (const w of workers) {
    if (w.status !== 'ready' || !w.runtimes.includes(runtime)) continue;
    const cpu = Math.floor((w.capacity.cpuMillis - w.reserved.cpuMillis) / Math.max(1, resources.cpuMillis));
    const mem = Math.floor((w.capacity.memoryMb - w.reserved.memoryMb) / Math.max(1, resources.memoryMb));
    room += Math.max(0, Math.min(cpu, mem));
  }
  return room;
}
