// Turns a parsed trace into a reproducible schedule of invocations: for each
// function and minute, the trace's count of invocations placed inside the
// minute by an inter-arrival-time rule, each with a duration and a memory size
// drawn from the function's percentiles. Pure: the same trace, options and seed
// give the same schedule, bit for bit.
//
// The rules follow InVitro's generator (vhive-serverless/invitro,
// pkg/generator/specification.go; summarised in
// ../shared/reference/workload-peers.md §1.2):
//
// - Arrivals. For a minute with N invocations, N gaps are drawn — all 60 s/N
//   (equidistant), U(0,1) (uniform) or Exp(1) (exponential: Poisson arrivals
//   conditioned on N per minute, after "Serverless in the Wild" §3) — and the
//   random ones rescaled to sum to exactly 60 s. The first invocation fires at
//   the start of the minute and each next one a gap later; the last gap leads
//   into the next minute. This is InVitro `main` without `*_shift` (since
//   94b0da3; `rps_mode` added an extra leading invocation), so every minute
//   gets exactly its trace count. The random rotation of `*_shift` is not
//   offered yet.
// - Duration and memory. A uniform u ∈ [0, 1) is mapped through the inverse of
//   the function's percentile table, linear between neighbouring percentiles.
//   InVitro draws u, finds its percentile bracket, then draws a uniform integer
//   inside the bracket (GenerateExecuteSpec / GenerateMemorySpec): the same
//   distribution, which one draw reproduces. Values are rounded to whole ms and
//   MiB and clamped as InVitro does: runtime to [1 ms, 60 s], memory to
//   [1, 10 240] MiB.
// - Warm-up. The first `warmupMinutes` of the window are replayed but flagged
//   `warmup: true`, for results to leave out (InVitro tags them phase 1).
// - Sampling. `sampleFunctions` picks N functions uniformly without
//   replacement (seeded), kept in trace order. InVitro's `sampler` tool also
//   preserves the invocation-rate distribution; this does not.
//
// Each function draws from its own PRNG streams (mulberry32, seeded from the
// seed and the function's position in the trace), so a function's invocations
// do not change when other functions are sampled in or out.

import { BatonError } from '../shared/errors.js';
import { mulberry32, type RandomSource } from '../shared/random.js';
import type { PercentileTable, Trace, TraceFunction } from './trace/trace.js';

export type IatDistribution = 'equidistant' | 'uniform' | 'exponential';
export const IAT_DISTRIBUTIONS: readonly IatDistribution[] = ['equidistant', 'uniform', 'exponential'];

export interface ScheduleOptions {
  readonly seed: number;
  /** Replay only this many functions, chosen by the seed. Default: all. */
  readonly sampleFunctions?: number;
  /** Minutes of the trace to replay, 0-based from its first minute, `to` exclusive. Default: all. */
  readonly minutes?: { readonly from: number; readonly to: number };
  readonly iat: IatDistribution;
  /** The first minutes of the window, flagged as warm-up. Default 0. */
  readonly warmupMinutes?: number;
  /** Memory for functions whose trace has none (Azure 2021). Default 128 MiB. */
  readonly defaultMemoryMb?: number;
}

/** Every default of the scheduler, in one place. */
export const SCHEDULE_DEFAULTS = {
  warmupMinutes: 0,
  defaultMemoryMb: 128,
} as const;

/** InVitro's clamps (MinExecTimeMilli … MaxMemQuotaMib in its generator; workload-peers.md §1.2). */
export const LIMITS = {
  minDurationMs: 1,
  maxDurationMs: 60_000,
  minMemoryMb: 1,
  maxMemoryMb: 10_240,
} as const;

export const MINUTE_MS = 60_000;

export interface ScheduledInvocation {
  /** Index into Schedule.functions. */
  readonly fn: number;
  /** When to send it, from the start of the window. */
  readonly atMs: number;
  readonly durationMs: number;
  readonly memoryMb: number;
  readonly warmup: boolean;
}

export interface Schedule {
  readonly functions: readonly TraceFunction[];
  /** Sorted by atMs, then by fn. */
  readonly invocations: readonly ScheduledInvocation[];
  /** The length of the window: minutes × 60 000. */
  readonly durationMs: number;
  readonly warmupMs: number;
}

function invalid(key: string, message: string): BatonError {
  return new BatonError('CONFIG_INVALID', `${key}: ${message}`, { details: { key } });
}

/** Options checked against the trace, with defaults filled in. */
interface CompiledOptions {
  readonly seed: number;
  readonly sampleFunctions: number | undefined;
  readonly from: number;
  readonly to: number;
  readonly iat: IatDistribution;
  readonly warmupMinutes: number;
  readonly defaultMemoryMb: number;
}

function compileOptions(trace: Trace, options: ScheduleOptions): CompiledOptions {
  if (!Number.isInteger(options.seed)) throw invalid('seed', `must be an integer, got ${options.seed}`);
  if (!IAT_DISTRIBUTIONS.includes(options.iat)) {
    throw invalid('iat', `must be one of ${IAT_DISTRIBUTIONS.join(', ')}, got ${String(options.iat)}`);
  }
  const from = options.minutes?.from ?? 0;
  const to = options.minutes?.to ?? trace.minutes;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > trace.minutes || from >= to) {
    throw invalid('minutes', `need integers 0 ≤ from < to ≤ ${trace.minutes} (the trace's minutes), got from ${from}, to ${to}`);
  }
  const warmupMinutes = options.warmupMinutes ?? SCHEDULE_DEFAULTS.warmupMinutes;
  if (!Number.isInteger(warmupMinutes) || warmupMinutes < 0 || warmupMinutes > to - from) {
    throw invalid('warmupMinutes', `must be an integer from 0 to the window's ${to - from} minutes, got ${warmupMinutes}`);
  }
  const n = options.sampleFunctions;
  if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw invalid('sampleFunctions', `must be a positive integer, got ${n}`);
  const defaultMemoryMb = options.defaultMemoryMb ?? SCHEDULE_DEFAULTS.defaultMemoryMb;
  if (!(defaultMemoryMb >= LIMITS.minMemoryMb && defaultMemoryMb <= LIMITS.maxMemoryMb)) {
    throw invalid('defaultMemoryMb', `must be from ${LIMITS.minMemoryMb} to ${LIMITS.maxMemoryMb}, got ${defaultMemoryMb}`);
  }
  return { seed: options.seed, sampleFunctions: n, from, to, iat: options.iat, warmupMinutes, defaultMemoryMb };
}

/** A seed for one function's stream, so functions draw independently of each other. */
export function streamSeed(seed: number, functionIndex: number, stream: number): number {
  let h = (seed ^ Math.imul(functionIndex + 1, 0x9e3779b1) ^ Math.imul(stream, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

/** Indices of n of `count` items, chosen uniformly without replacement, ascending. */
export function sampleIndices(count: number, n: number, random: RandomSource): number[] {
  const indices = Array.from({ length: count }, (_, i) => i);
  const k = Math.min(n, count);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (count - i));
    const a = indices[i] ?? i;
    indices[i] = indices[j] ?? j;
    indices[j] = a;
  }
  return indices.slice(0, k).sort((a, b) => a - b);
}

/**
 * Offsets in ms, from the start of a minute, of its n invocations: the first at
 * 0 and each next one a gap later, the n gaps summing to 60 s (InVitro's rule).
 */
export function minuteOffsets(n: number, iat: IatDistribution, random: RandomSource): number[] {
  return windowOffsets(n, iat, random, MINUTE_MS);
}

/**
 * Offsets in ms of n invocations in a window of `windowMs`, by the same rule as
 * a trace minute's (`baton loadgen rps` uses it for its steps).
 */
export function windowOffsets(n: number, iat: IatDistribution, random: RandomSource, windowMs: number): number[] {
  if (n <= 0) return [];
  if (iat === 'equidistant') return Array.from({ length: n }, (_, k) => (k * windowMs) / n);
  const gaps = new Array<number>(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    // Exp(1) by inversion; 1 − u ∈ (0, 1], so the log is finite.
    const gap = iat === 'exponential' ? -Math.log(1 - random()) : random();
    gaps[i] = gap;
    total += gap;
  }
  const offsets = new Array<number>(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    offsets[i] = at;
    // All draws 0 (possible only in theory) would leave total 0: spread evenly instead.
    at += total > 0 ? ((gaps[i] ?? 0) / total) * windowMs : windowMs / n;
  }
  return offsets;
}

/** The value at quantile u ∈ [0, 1] of a percentile table, linear between its points. */
export function valueAtQuantile(table: PercentileTable, u: number): number {
  const first = table[0];
  if (first === undefined) throw new BatonError('INTERNAL', 'empty percentile table');
  if (u <= first.q) return first.value;
  for (let i = 1; i < table.length; i++) {
    const hi = table[i];
    const lo = table[i - 1];
    if (hi === undefined || lo === undefined) break;
    if (u <= hi.q) {
      const span = hi.q - lo.q;
      return span > 0 ? lo.value + ((hi.value - lo.value) * (u - lo.q)) / span : hi.value;
    }
  }
  return table[table.length - 1]?.value ?? first.value;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

export function buildSchedule(trace: Trace, options: ScheduleOptions): Schedule {
  const o = compileOptions(trace, options);
  const chosen =
    o.sampleFunctions === undefined
      ? trace.functions.map((_, i) => i)
      : sampleIndices(trace.functions.length, o.sampleFunctions, mulberry32(streamSeed(o.seed, -1, 0)));

  const functions: TraceFunction[] = [];
  const invocations: ScheduledInvocation[] = [];
  const warmupEndMinute = o.from + o.warmupMinutes;
  for (const traceIndex of chosen) {
    const fn = trace.functions[traceIndex];
    if (fn === undefined) continue;
    const index = functions.length;
    functions.push(fn);
    const iatRandom = mulberry32(streamSeed(o.seed, traceIndex, 1));
    const specRandom = mulberry32(streamSeed(o.seed, traceIndex, 2));
    for (let minute = o.from; minute < o.to; minute++) {
      const count = fn.invocationsPerMinute[minute] ?? 0;
      const minuteStartMs = (minute - o.from) * MINUTE_MS;
      const warmup = minute < warmupEndMinute;
      for (const offset of minuteOffsets(count, o.iat, iatRandom)) {
        const durationMs = clamp(Math.round(valueAtQuantile(fn.durationMs, specRandom())), LIMITS.minDurationMs, LIMITS.maxDurationMs);
        const memoryU = specRandom();
        const memoryMb =
          fn.memoryMb === undefined
            ? o.defaultMemoryMb
            : clamp(Math.round(valueAtQuantile(fn.memoryMb, memoryU)), LIMITS.minMemoryMb, LIMITS.maxMemoryMb);
        invocations.push({ fn: index, atMs: minuteStartMs + offset, durationMs, memoryMb, warmup });
      }
    }
  }
  invocations.sort((a, b) => a.atMs - b.atMs || a.fn - b.fn);
  return { functions, invocations, durationMs: (o.to - o.from) * MINUTE_MS, warmupMs: o.warmupMinutes * MINUTE_MS };
}
