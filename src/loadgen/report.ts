// The trace replay's HTML report (`report.html` beside invocations.csv and
// summary.json): the summary table and four plots, latency CDF, per-function
// slowdown CDF, requests per second with the sandbox count, and cold starts
// per second. Pure: records, summary and the polled sandbox counts in, one
// self-contained HTML string out (inline SVG from plot.ts, inline CSS, no
// script), so it opens offline and can be mailed around.
import { cdfPoints, escapeXml, minMax, plotSvg, type Point } from './plot.js';
import type { InvocationRecord, Percentiles, Summary } from './summary.js';

/** The ready sandboxes of the trace functions, as polled from the control plane during the replay. */
export interface SandboxSample {
  /** ms from the start of the replay (the records' time base). */
  readonly atMs: number;
  readonly ready: number;
}

export interface ReportInput {
  readonly records: readonly InvocationRecord[];
  readonly summary: Summary;
  readonly sandboxes: readonly SandboxSample[];
  /** A line under the heading: the trace, the options. Escaped. */
  readonly subtitle?: string;
}

export interface TimeSeries {
  /** The bin width, ms of the replay clock. */
  readonly binMs: number;
  /** Sends per second in each bin, at the bin's start (s). */
  readonly sentPerSec: Point[];
  /** Cold starts per second in each bin, by send time. */
  readonly coldPerSec: Point[];
}

/**
 * The bin width for a replay of durationMs: 1 s, narrower for a short
 * (time-scaled) replay so it still has ~60 bins, never under 10 ms.
 */
export function binWidthMs(durationMs: number): number {
  return Math.min(1000, Math.max(10, Math.round(durationMs / 60)));
}

/**
 * Per-bin rates of the sent invocations (warm-up included: the plots show
 * the whole run) by their send time. Bins run from 0 to the last send; a
 * final point at the end of the last bin closes its step.
 */
export function timeSeries(records: readonly InvocationRecord[], binMs: number): TimeSeries {
  const sent = records.filter((r) => r.sentMs >= 0);
  if (sent.length === 0) return { binMs, sentPerSec: [], coldPerSec: [] };
  const bins = Math.floor(minMax(sent.map((r) => r.sentMs))[1] / binMs) + 1;
  const counts = new Array<number>(bins).fill(0);
  const colds = new Array<number>(bins).fill(0);
  for (const r of sent) {
    const b = Math.floor(r.sentMs / binMs);
    counts[b] = (counts[b] ?? 0) + 1;
    if (r.coldStart) colds[b] = (colds[b] ?? 0) + 1;
  }
  const perSec = (values: number[]): Point[] => {
    const points: Point[] = values.map((n, b) => [(b * binMs) / 1000, n / (binMs / 1000)]);
    points.push([(bins * binMs) / 1000, (values[bins - 1] ?? 0) / (binMs / 1000)]);
    return points;
  };
  return { binMs, sentPerSec: perSec(counts), coldPerSec: perSec(colds) };
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–';
}

function percentileRow(name: string, p: Percentiles): string {
  return `<tr><th>${name}</th><td>${fmt(p.p50)}</td><td>${fmt(p.p90)}</td><td>${fmt(p.p99)}</td><td>${fmt(p.max)}</td></tr>`;
}

function summaryTables(s: Summary): string {
  const i = s.invocations;
  const failures = Object.entries(s.failures);
  return [
    '<table class="summary">',
    `<tr><th>invocations</th><td>${i.measured} measured (${i.warmup} warm-up left out), ${i.ok} ok, ${i.failed} failed</td></tr>`,
    `<tr><th>rate</th><td>${fmt(s.rate.achievedPerSec, 2)}/s achieved of ${fmt(s.rate.scheduledPerSec, 2)}/s scheduled${s.timeScale !== 1 ? ` (time scale ${s.timeScale})` : ''}</td></tr>`,
    `<tr><th>cold starts</th><td>${fmt(s.coldStartFraction * 100)}% of measured invocations</td></tr>`,
    `<tr><th>slowdown</th><td>${fmt(s.slowdown, 2)} (geometric mean of latency / requested duration)</td></tr>`,
    `<tr><th>max lag</th><td>${fmt(s.maxLagMs)} ms behind schedule</td></tr>`,
    `<tr><th>failures</th><td>${failures.length === 0 ? 'none' : failures.map(([k, n]) => `${escapeXml(k)}: ${n}`).join('<br>')}</td></tr>`,
    '</table>',
    '<table class="percentiles">',
    '<tr><th>ms</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>',
    percentileRow('latency', s.latencyMs),
    percentileRow('scheduling latency', s.schedulingLatencyMs),
    percentileRow('send lag', s.sendLagMs),
    '</table>',
    '<table class="functions">',
    '<tr><th>function</th><th>invocations</th><th>ok</th><th>cold</th><th>slowdown</th></tr>',
    ...s.functions.map(
      (f) => `<tr><th>${escapeXml(f.function)}</th><td>${f.invocations}</td><td>${f.ok}</td><td>${f.coldStarts}</td><td>${fmt(f.slowdown, 2)}</td></tr>`,
    ),
    '</table>',
  ].join('\n');
}

const CSS = `body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{text-align:left;background:#f4f4f4}
.plots{display:flex;flex-wrap:wrap;gap:1em}`;

export function renderReport(input: ReportInput): string {
  const { records, summary, sandboxes } = input;
  const ok = records.filter((r) => !r.warmup && r.status >= 200 && r.status < 300);
  const end = Math.max(0, minMax(records.map((r) => r.sentMs))[1], minMax(sandboxes.map((s) => s.atMs))[1]);
  const series = timeSeries(records, binWidthMs(end));
  const binNote = series.binMs === 1000 ? '1 s bins' : `${series.binMs} ms bins`;
  const plots = [
    plotSvg({ title: 'Latency CDF (measured, successful)', xLabel: 'response time (ms, log)', yLabel: 'fraction of invocations', logX: true, yRange: [0, 1] }, [
      { name: 'all', points: cdfPoints(ok.map((r) => r.responseMs)), step: true },
      { name: 'cold starts', points: cdfPoints(ok.filter((r) => r.coldStart).map((r) => r.responseMs)), step: true },
      { name: 'warm', points: cdfPoints(ok.filter((r) => !r.coldStart).map((r) => r.responseMs)), step: true },
    ]),
    plotSvg(
      { title: 'Per-function slowdown CDF', xLabel: 'slowdown (geometric mean of latency / requested duration, log)', yLabel: 'fraction of functions', logX: true, yRange: [0, 1] },
      [{ name: 'functions', points: cdfPoints(summary.functions.map((f) => f.slowdown)), step: true }],
    ),
    plotSvg({ title: `Requests per second and ready sandboxes (${binNote})`, xLabel: 'time since start (s)', yLabel: 'requests sent per second', y2Label: 'ready sandboxes' }, [
      { name: 'requests/s', points: series.sentPerSec, step: true },
      { name: 'ready sandboxes', points: sandboxes.map((s) => [s.atMs / 1000, s.ready] as const), step: true, axis: 'right' },
    ]),
    plotSvg({ title: `Cold starts per second (${binNote})`, xLabel: 'time since start (s)', yLabel: 'cold starts per second' }, [
      { name: 'cold starts/s', points: series.coldPerSec, step: true },
    ]),
  ];
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<title>Baton trace replay</title>',
    `<style>${CSS}</style>`,
    '</head><body>',
    '<h1>Baton trace replay</h1>',
    input.subtitle === undefined ? '' : `<p>${escapeXml(input.subtitle)}</p>`,
    summaryTables(summary),
    '<p>Time is the replay\'s clock (scaled by the time scale). The plots show the whole run, warm-up included, except the CDFs, which are over the measured invocations. The sandbox count is polled from the control plane.</p>',
    `<div class="plots">\n${plots.join('\n')}\n</div>`,
    '</body></html>',
    '',
  ].join('\n');
}
