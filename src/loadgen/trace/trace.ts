// The parsed form every trace format is turned into: functions with their
// invocation counts per minute and the percentiles their durations and memory
// are drawn from. schedule.ts turns a Trace into timed invocations.

/** One point of an empirical distribution: the value at quantile q ∈ [0, 1]. */
export interface PercentilePoint {
  readonly q: number;
  readonly value: number;
}

/** Points with q ascending from 0 to 1 and values non-decreasing. */
export type PercentileTable = readonly PercentilePoint[];

export interface TraceFunction {
  readonly hashOwner: string | undefined;
  readonly hashApp: string;
  readonly hashFunction: string;
  readonly trigger: string | undefined;
  /** Invocations in each minute of the trace; index 0 is the trace's first minute. */
  readonly invocationsPerMinute: readonly number[];
  readonly durationMs: PercentileTable;
  /** Undefined when the trace has no memory data (Azure 2021). */
  readonly memoryMb: PercentileTable | undefined;
}

export interface DroppedFunction {
  readonly hashFunction: string;
  readonly reason: string;
}

export interface Trace {
  readonly format: 'azure2019' | 'azure2021';
  /** The number of minutes every function's invocationsPerMinute covers. */
  readonly minutes: number;
  /** The label of the first minute column ("1" in a full day; InVitro's excerpts start elsewhere, e.g. 540). */
  readonly firstMinuteLabel: number;
  readonly functions: readonly TraceFunction[];
  /** Functions of the invocations file left out because another file had no row for them. */
  readonly dropped: readonly DroppedFunction[];
}
