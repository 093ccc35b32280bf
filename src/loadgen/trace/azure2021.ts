// Reads the Azure Functions 2021 per-invocation trace (workload-peers.md §2:
// `app,func,end_timestamp,duration`, both in seconds, timestamps relative to
// the trace start) into the same per-minute form as the 2019 trace, so one
// scheduler serves both:
//
// - each invocation starts at end_timestamp − duration and is counted in the
//   minute it starts in (minute label = floor(start / 60) + 1, as the 2019
//   columns start at "1"; starts before 0 move the first label below 1);
// - a function's duration percentiles are those of its observed durations, at
//   up to 101 evenly spaced quantiles (every value when it has fewer), so the
//   piecewise-linear draw in schedule.ts reproduces the observed distribution;
// - the 2021 trace has no memory data, so memoryMb is undefined and the
//   scheduler uses its default.
//
// Functions are keyed by `func` (HashFunction); columns are found by name.

import { CsvHeader, fileLines, numberField, readCsv, textField, traceError } from './csv.js';
import type { PercentileTable, Trace, TraceFunction } from './trace.js';

/** The largest number of quantiles kept per function; bounds memory for functions with millions of calls. */
const MAX_QUANTILE_STEPS = 100;

export function readAzure2021File(path: string, name = 'trace.csv'): Promise<Trace> {
  return readAzure2021(fileLines(path), name);
}

export async function readAzure2021(lines: AsyncIterable<string> | Iterable<string>, file: string): Promise<Trace> {
  const byFunction = new Map<string, { app: string; startsS: number[]; durationsMs: number[] }>();
  let columns: { app: number; func: number; end: number; duration: number } | undefined;
  let header: CsvHeader | undefined;
  for await (const item of readCsv(lines, file)) {
    if (item instanceof CsvHeader) {
      header = item;
      columns = {
        app: item.require('app'),
        func: item.require('func'),
        end: item.require('end_timestamp'),
        duration: item.require('duration'),
      };
      continue;
    }
    if (header === undefined || columns === undefined) continue;
    const app = textField(header, item, columns.app);
    const func = textField(header, item, columns.func);
    const endS = numberField(header, item, columns.end, 'a timestamp in seconds');
    const durationS = numberField(header, item, columns.duration, 'a duration in seconds');
    if (durationS < 0) throw traceError(file, item.line, `column "duration": "${item.fields[columns.duration] ?? ''}" is negative`);
    let entry = byFunction.get(func);
    if (entry === undefined) {
      entry = { app, startsS: [], durationsMs: [] };
      byFunction.set(func, entry);
    } else if (entry.app !== app) {
      throw traceError(file, item.line, `column "app": function ${func} belongs to app ${entry.app} on an earlier line, ${app} here`);
    }
    entry.startsS.push(endS - durationS);
    entry.durationsMs.push(durationS * 1000);
  }

  let firstMinute = Infinity;
  let lastMinute = -Infinity;
  for (const { startsS } of byFunction.values()) {
    for (const s of startsS) {
      const m = Math.floor(s / 60);
      if (m < firstMinute) firstMinute = m;
      if (m > lastMinute) lastMinute = m;
    }
  }
  if (byFunction.size === 0) {
    return { format: 'azure2021', minutes: 0, firstMinuteLabel: 1, functions: [], dropped: [] };
  }
  const minutes = lastMinute - firstMinute + 1;

  const functions: TraceFunction[] = [];
  for (const [hashFunction, { app, startsS, durationsMs }] of byFunction) {
    const counts = new Array<number>(minutes).fill(0);
    for (const s of startsS) {
      const i = Math.floor(s / 60) - firstMinute;
      counts[i] = (counts[i] ?? 0) + 1;
    }
    functions.push({
      hashOwner: undefined,
      hashApp: app,
      hashFunction,
      trigger: undefined,
      invocationsPerMinute: counts,
      durationMs: empiricalPercentiles(durationsMs),
      memoryMb: undefined,
    });
  }
  return { format: 'azure2021', minutes, firstMinuteLabel: firstMinute + 1, functions, dropped: [] };
}

/** Quantiles of observed values (linear between order statistics), at up to MAX_QUANTILE_STEPS + 1 points. */
export function empiricalPercentiles(values: readonly number[]): PercentileTable {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return [];
  const steps = Math.max(1, Math.min(n - 1, MAX_QUANTILE_STEPS));
  const table: { q: number; value: number }[] = [];
  for (let i = 0; i <= steps; i++) {
    const q = i / steps;
    const pos = q * (n - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, n - 1);
    const a = sorted[lo] ?? 0;
    const b = sorted[hi] ?? a;
    table.push({ q, value: a + (b - a) * (pos - lo) });
  }
  return table;
}
