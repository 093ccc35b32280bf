// A small SVG plotter for the trace replay's report (report.ts): one function
// draws every plot, as lines or steps, on a linear or log x axis, with an
// optional second y axis on the right. Pure: numbers in, an SVG string out,
// with no script, stylesheet or font to fetch, so the report opens offline.

export type Point = readonly [x: number, y: number];

export interface Series {
  /** Shown in the legend; escaped. */
  readonly name: string;
  readonly points: readonly Point[];
  /** Draw as a step function (each value holds until the next x), as CDFs and binned counts are. */
  readonly step?: boolean;
  /** The y axis it is read on (default left). */
  readonly axis?: 'left' | 'right';
}

export interface PlotOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** The right axis's label; there is a right axis only when a series is on it. */
  readonly y2Label?: string;
  /** A log10 x axis; points with x ≤ 0 cannot be drawn on it and are left out. */
  readonly logX?: boolean;
  /** Fixes the left axis (a CDF's 0–1) instead of taking it from the data. */
  readonly yRange?: readonly [number, number];
  readonly width?: number;
  readonly height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const MARGIN = { left: 64, right: 64, top: 34, bottom: 46 };

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Rounds for SVG coordinates and labels: short output, no 0.30000000000000004. */
function num(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/** A tick label: few digits, exponent form only for very large or small values. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(0);
  return String(Number(v.toPrecision(4)));
}

/** Evenly spaced "nice" values (steps of 1, 2 or 5 × 10^k) within [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  // From whole multiples of the step, not by adding it up, and rounded: 0.6, not 0.6000000000000001.
  for (let k = Math.ceil(min / step - 1e-9); k * step <= max + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

interface Axis {
  readonly min: number;
  readonly max: number;
  readonly log: boolean;
}

/** min and max without spreading: a replay can have a million points, more than a call's arguments. */
export function minMax(values: readonly number[]): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

function extent(values: readonly number[], log: boolean, fromZero: boolean): Axis {
  let [min, max] = minMax(values);
  if (log) {
    // Whole decades, so the ticks at powers of ten bound the data.
    min = 10 ** Math.floor(Math.log10(min));
    max = 10 ** Math.ceil(Math.log10(max));
    if (max <= min) max = min * 10;
    return { min, max, log };
  }
  if (fromZero) min = Math.min(0, min);
  if (max <= min) max = min + 1;
  const ticks = niceTicks(min, max);
  const step = ticks.length > 1 ? (ticks[1] ?? 0) - (ticks[0] ?? 0) : 1;
  // Widen to the outer ticks, so the axis ends on a labelled value.
  return { min: Math.floor(min / step + 1e-9) * step, max: Math.ceil(max / step - 1e-9) * step, log };
}

function ticksOf(axis: Axis): number[] {
  if (!axis.log) return niceTicks(axis.min, axis.max);
  const ticks: number[] = [];
  for (let e = Math.round(Math.log10(axis.min)); e <= Math.round(Math.log10(axis.max)); e++) ticks.push(10 ** e);
  return ticks;
}

function scale(axis: Axis, from: number, to: number): (v: number) => number {
  const f = axis.log ? Math.log10 : (v: number) => v;
  const lo = f(axis.min);
  const span = f(axis.max) - lo || 1;
  return (v) => from + ((f(v) - lo) / span) * (to - from);
}

/** One plot as an <svg> element. No drawable point at all gives a framed "no data" plot. */
export function plotSvg(options: PlotOptions, series: readonly Series[]): string {
  const width = options.width ?? 720;
  const height = options.height ?? 360;
  const logX = options.logX === true;
  const drawable = series.map((s) => ({
    ...s,
    points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0)),
  }));
  const x0 = MARGIN.left;
  const x1 = width - MARGIN.right;
  const y0 = height - MARGIN.bottom;
  const y1 = MARGIN.top;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<text class="plot-title" x="${num(width / 2)}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(options.title)}</text>`,
    `<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" stroke="#888"/>`,
  ];
  const all = drawable.flatMap((s) => s.points);
  if (all.length === 0) {
    out.push(`<text class="no-data" x="${num((x0 + x1) / 2)}" y="${num((y0 + y1) / 2)}" text-anchor="middle" fill="#888">no data</text>`, '</svg>');
    return out.join('\n');
  }
  const xAxis = extent(
    all.map((p) => p[0]),
    logX,
    false,
  );
  const onLeft = drawable.filter((s) => s.axis !== 'right').flatMap((s) => s.points.map((p) => p[1]));
  const onRight = drawable.filter((s) => s.axis === 'right').flatMap((s) => s.points.map((p) => p[1]));
  const yAxis: Axis = options.yRange ? { min: options.yRange[0], max: options.yRange[1], log: false } : extent(onLeft.length > 0 ? onLeft : [0, 1], false, true);
  const y2Axis = onRight.length > 0 ? extent(onRight, false, true) : undefined;
  const sx = scale(xAxis, x0, x1);
  const sy = scale(yAxis, y0, y1);
  const sy2 = y2Axis ? scale(y2Axis, y0, y1) : sy;

  out.push(`<g class="x-axis" data-min="${xAxis.min}" data-max="${xAxis.max}">`);
  for (const t of ticksOf(xAxis)) {
    const x = num(sx(t));
    out.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y1}" stroke="#eee"/><text x="${x}" y="${y0 + 16}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  out.push(`<text x="${num((x0 + x1) / 2)}" y="${height - 8}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`, '</g>');
  out.push(`<g class="y-axis" data-min="${yAxis.min}" data-max="${yAxis.max}">`);
  for (const t of ticksOf(yAxis)) {
    const y = num(sy(t));
    out.push(`<line x1="${x0}" y1="${y}" x2="${x1}" y2="${y}" stroke="#eee"/><text x="${x0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${formatTick(t)}</text>`);
  }
  out.push(
    `<text transform="translate(16 ${num((y0 + y1) / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
    '</g>',
  );
  if (y2Axis) {
    out.push(`<g class="y2-axis" data-min="${y2Axis.min}" data-max="${y2Axis.max}">`);
    for (const t of ticksOf(y2Axis)) {
      out.push(`<text x="${x1 + 6}" y="${num(sy2(t))}" dominant-baseline="middle">${formatTick(t)}</text>`);
    }
    out.push(
      `<text transform="translate(${width - 14} ${num((y0 + y1) / 2)}) rotate(90)" text-anchor="middle">${escapeXml(options.y2Label ?? '')}</text>`,
      '</g>',
    );
  }
  for (const [i, s] of drawable.entries()) {
    const color = COLORS[i % COLORS.length] ?? '#000';
    const fy = s.axis === 'right' ? sy2 : sy;
    const d: string[] = [];
    let prevY: string | undefined;
    for (const [x, y] of s.points) {
      const px = num(sx(x));
      const py = num(fy(y));
      if (prevY === undefined) d.push(`M${px} ${py}`);
      else d.push(s.step ? `H${px}V${py}` : `L${px} ${py}`);
      prevY = py;
    }
    if (d.length > 0) out.push(`<path class="series" fill="none" stroke="${color}" stroke-width="1.5" d="${d.join('')}"/>`);
    const ly = y1 + 14 + i * 16;
    out.push(
      `<g class="legend"><line x1="${x0 + 10}" y1="${ly}" x2="${x0 + 28}" y2="${ly}" stroke="${color}" stroke-width="2"/>` +
        `<text x="${x0 + 34}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}${s.axis === 'right' ? ' (right)' : ''}</text></g>`,
    );
  }
  out.push('</svg>');
  return out.join('\n');
}

/**
 * The empirical CDF of the values as step points (value, fraction ≤ value),
 * starting at (smallest, 0); non-finite values are left out. Past maxPoints values, every k-th rank is
 * kept (and the last), which a 720-pixel plot cannot tell apart.
 */
export function cdfPoints(values: readonly number[], maxPoints = 2000): Point[] {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  const n = sorted.length;
  const every = Math.max(1, Math.ceil(n / maxPoints));
  // From 0 at the smallest value, so the first step rises from the axis.
  const points: Point[] = n > 0 ? [[sorted[0] ?? 0, 0]] : [];
  for (let i = every - 1; i < n; i += every) points.push([sorted[i] ?? 0, (i + 1) / n]);
  if (n > 0 && (points[points.length - 1]?.[1] ?? 0) < 1) points.push([sorted[n - 1] ?? 0, 1]);
  return points;
}
