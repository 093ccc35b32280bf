// The results of a trace replay: one record per invocation, written as CSV,
// and the summary over the measured (non-warm-up) invocations. Pure maths,
// kept apart from the sender so it can be tested on its own.

export interface InvocationRecord {
  /** Position in the schedule. */
  readonly index: number;
  /** The deployed function's name (trace-<i>). */
  readonly function: string;
  /** When it was due, ms from the start of the replay (after the time scale). */
  readonly scheduledMs: number;
  /** When it left, ms from the start of the replay. */
  sentMs: number;
  /** Latency: from sending to the end of the response body, ms; -1 without an answer. */
  responseMs: number;
  /** HTTP status, 0 when no answer came (connection error). */
  status: number;
  /** Baton's error code for a failure (`code` of the body), or the client error's code. */
  code: string;
  readonly requestedDurationMs: number;
  /** From the body: the trace function's measuredMs, or the emulated sandbox's heldMs; -1 when absent. */
  measuredDurationMs: number;
  readonly memoryMb: number;
  /** Waited in the data plane's queue and was the first request answered by its sandbox in this run. */
  coldStart: boolean;
  /** x-baton-queue-ms; -1 when absent. */
  queueMs: number;
  sandbox: string;
  readonly warmup: boolean;
}

export const CSV_COLUMNS = [
  'index',
  'function',
  'scheduledMs',
  'sentMs',
  'responseMs',
  'status',
  'code',
  'requestedDurationMs',
  'measuredDurationMs',
  'memoryMb',
  'coldStart',
  'queueMs',
  'sandbox',
  'warmup',
] as const;

function csvField(value: string | number | boolean): string {
  const s = typeof value === 'number' ? String(Math.round(value * 1000) / 1000) : String(value);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The header row; `extra` columns (a mode's own, e.g. rps's step) follow CSV_COLUMNS. */
export function csvHeader(extra: readonly string[] = []): string {
  return [...CSV_COLUMNS, ...extra].join(',') + '\n';
}

/** One row; `extra` values match csvHeader's extra columns. */
export function csvRow(r: InvocationRecord, extra: readonly (string | number | boolean)[] = []): string {
  return [...CSV_COLUMNS.map((c) => csvField(r[c])), ...extra.map(csvField)].join(',') + '\n';
}

/** Nearest-rank percentile of sorted values; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? Number.NaN;
}

export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

function percentiles(values: readonly number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s.length > 0 ? (s[s.length - 1] ?? Number.NaN) : Number.NaN };
}

/** The geometric mean of positive values; NaN when empty. */
export function geometricMean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  let sum = 0;
  for (const v of values) sum += Math.log(v);
  return Math.exp(sum / values.length);
}

export interface FunctionSummary {
  readonly function: string;
  readonly invocations: number;
  readonly ok: number;
  /** Geometric mean of latency / requested duration over its successful invocations (each ratio at least 1). */
  readonly slowdown: number;
  readonly coldStarts: number;
}

export interface Summary {
  readonly timeScale: number;
  readonly invocations: {
    readonly scheduled: number;
    readonly warmup: number;
    /** Measured: scheduled minus warm-up. The numbers below are over these. */
    readonly measured: number;
    readonly ok: number;
    readonly failed: number;
  };
  /** Latency of successful invocations, ms. */
  readonly latencyMs: Percentiles;
  /**
   * Dirigent's scheduling latency (plot_azure_500.py): response time − the
   * function's own execution time (measured, else requested), over successful
   * invocations, ms. What the cluster added: queueing, cold starts, proxying.
   */
  readonly schedulingLatencyMs: Percentiles;
  /** The load generator's own lateness: sent − scheduled, ms. */
  readonly sendLagMs: Percentiles;
  /** The largest lag of any send, warm-up included. */
  readonly maxLagMs: number;
  /** Geometric mean over every successful invocation. */
  readonly slowdown: number;
  readonly functions: readonly FunctionSummary[];
  readonly coldStartFraction: number;
  /** "<status> <code>" → count. */
  readonly failures: Readonly<Record<string, number>>;
  readonly rate: {
    /** Measured invocations over the measured window. */
    readonly scheduledPerSec: number;
    /** Measured invocations over the time their sending really took (at least the window). */
    readonly achievedPerSec: number;
  };
}

/**
 * Summarises the records. `windowStartMs` and `windowEndMs` bound the measured
 * part of the schedule (after the warm-up), in the records' time base.
 */
export function summarise(records: readonly InvocationRecord[], window: { startMs: number; endMs: number; timeScale: number }): Summary {
  const measured = records.filter((r) => !r.warmup);
  const ok = measured.filter((r) => r.status >= 200 && r.status < 300);
  const failures: Record<string, number> = {};
  for (const r of measured) {
    if (r.status >= 200 && r.status < 300) continue;
    const key = `${r.status} ${r.code || '-'}`;
    failures[key] = (failures[key] ?? 0) + 1;
  }
  // Dirigent drops ratios under 1 (an answer faster than the requested time:
  // timer granularity); counting them as 1 keeps a function whose every
  // ratio is under 1 in the summary instead of leaving it without a value.
  const ratio = (r: InvocationRecord): number => Math.max(1, r.responseMs / Math.max(r.requestedDurationMs, 1));
  const execution = (r: InvocationRecord): number => (r.measuredDurationMs >= 0 ? r.measuredDurationMs : r.requestedDurationMs);
  const byFunction = new Map<string, InvocationRecord[]>();
  for (const r of measured) {
    const list = byFunction.get(r.function) ?? [];
    list.push(r);
    byFunction.set(r.function, list);
  }
  const functions: FunctionSummary[] = [...byFunction.entries()].map(([name, rs]) => {
    const good = rs.filter((r) => r.status >= 200 && r.status < 300);
    return {
      function: name,
      invocations: rs.length,
      ok: good.length,
      slowdown: geometricMean(good.map(ratio)),
      coldStarts: rs.filter((r) => r.coldStart).length,
    };
  });
  const windowMs = Math.max(window.endMs - window.startMs, 1);
  const lastSent = measured.reduce((m, r) => Math.max(m, r.sentMs), window.startMs);
  return {
    timeScale: window.timeScale,
    invocations: {
      scheduled: records.length,
      warmup: records.length - measured.length,
      measured: measured.length,
      ok: ok.length,
      failed: measured.length - ok.length,
    },
    latencyMs: percentiles(ok.map((r) => r.responseMs)),
    schedulingLatencyMs: percentiles(ok.map((r) => Math.max(0, r.responseMs - execution(r)))),
    sendLagMs: percentiles(measured.map((r) => r.sentMs - r.scheduledMs)),
    maxLagMs: records.reduce((m, r) => Math.max(m, r.sentMs - r.scheduledMs), 0),
    slowdown: geometricMean(ok.map(ratio)),
    functions,
    coldStartFraction: measured.length > 0 ? measured.filter((r) => r.coldStart).length / measured.length : Number.NaN,
    failures,
    rate: {
      scheduledPerSec: measured.length / (windowMs / 1000),
      achievedPerSec: measured.length / (Math.max(windowMs, lastSent - window.startMs) / 1000),
    },
  };
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

/** The summary as a printable table. */
export function formatSummary(s: Summary): string {
  const lines: string[] = [];
  const i = s.invocations;
  lines.push(`invocations: ${i.measured} measured (${i.warmup} warm-up left out), ${i.ok} ok, ${i.failed} failed`);
  lines.push(`rate: ${fmt(s.rate.achievedPerSec, 2)}/s achieved of ${fmt(s.rate.scheduledPerSec, 2)}/s scheduled${s.timeScale !== 1 ? ` (time scale ${s.timeScale})` : ''}`);
  lines.push('');
  lines.push(`${'ms'.padEnd(20)}${'p50'.padStart(10)}${'p90'.padStart(10)}${'p99'.padStart(10)}${'max'.padStart(10)}`);
  for (const [name, p] of [
    ['latency', s.latencyMs],
    ['scheduling latency', s.schedulingLatencyMs],
    ['send lag', s.sendLagMs],
  ] as const) {
    lines.push(`${name.padEnd(20)}${fmt(p.p50).padStart(10)}${fmt(p.p90).padStart(10)}${fmt(p.p99).padStart(10)}${fmt(p.max).padStart(10)}`);
  }
  lines.push('');
  lines.push(`max lag ${fmt(s.maxLagMs)} ms; slowdown (geometric mean) ${fmt(s.slowdown, 2)}; cold starts ${fmt(s.coldStartFraction * 100)}%`);
  lines.push('');
  lines.push(`${'FUNCTION'.padEnd(12)}${'INVOCATIONS'.padStart(12)}${'OK'.padStart(8)}${'COLD'.padStart(8)}${'SLOWDOWN'.padStart(10)}`);
  for (const f of s.functions) {
    lines.push(`${f.function.padEnd(12)}${String(f.invocations).padStart(12)}${String(f.ok).padStart(8)}${String(f.coldStarts).padStart(8)}${fmt(f.slowdown, 2).padStart(10)}`);
  }
  const failures = Object.entries(s.failures);
  if (failures.length > 0) {
    lines.push('');
    lines.push('failures:');
    for (const [key, n] of failures) lines.push(`  ${key}: ${n}`);
  }
  return lines.join('\n') + '\n';
}
