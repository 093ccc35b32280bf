import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { BatonError } from '../shared/errors.js';
import { mulberry32 } from '../shared/random.js';
import { buildSchedule, minuteOffsets, MINUTE_MS, type Schedule, valueAtQuantile } from './schedule.js';
import { readAzure2019Folder } from './trace/azure2019.js';
import type { PercentileTable, Trace, TraceFunction } from './trace/trace.js';

const SAMPLE = fileURLToPath(new URL('../../../test/fixtures/traces/azure2019-example/', import.meta.url));
const sample = await readAzure2019Folder(SAMPLE);

function fn(hash: string, counts: number[], durationMs: PercentileTable = [{ q: 0, value: 100 }, { q: 1, value: 200 }], memoryMb?: PercentileTable): TraceFunction {
  return { hashOwner: undefined, hashApp: `app-${hash}`, hashFunction: hash, trigger: undefined, invocationsPerMinute: counts, durationMs, memoryMb };
}

function traceOf(functions: TraceFunction[]): Trace {
  return { format: 'azure2019', minutes: functions[0]?.invocationsPerMinute.length ?? 0, firstMinuteLabel: 1, functions, dropped: [] };
}

/** Counts per function and minute of a schedule. */
function countsOf(schedule: Schedule): number[][] {
  const minutes = schedule.durationMs / MINUTE_MS;
  const counts = schedule.functions.map(() => new Array<number>(minutes).fill(0));
  for (const inv of schedule.invocations) {
    const row = counts[inv.fn];
    const m = Math.floor(inv.atMs / MINUTE_MS);
    if (row) row[m] = (row[m] ?? 0) + 1;
  }
  return counts;
}

function gaps(schedule: Schedule): number[] {
  const at = schedule.invocations.map((i) => i.atMs);
  return at.slice(1).map((t, i) => t - (at[i] ?? 0));
}

function meanAndCv(values: number[]): { mean: number; cv: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
  return { mean, cv: Math.sqrt(variance) / mean };
}

test('the same seed gives the same schedule; another seed another one', () => {
  const options = { seed: 42, iat: 'exponential' as const, minutes: { from: 0, to: 30 } };
  const a = buildSchedule(sample, options);
  const b = buildSchedule(sample, options);
  assert.deepEqual(a, b);
  const c = buildSchedule(sample, { ...options, seed: 43 });
  assert.notDeepEqual(a.invocations, c.invocations);
});

test('every minute holds exactly the trace count of each function, whatever the IAT rule', () => {
  for (const iat of ['equidistant', 'uniform', 'exponential'] as const) {
    const schedule = buildSchedule(sample, { seed: 7, iat });
    const expected = sample.functions.map((f) => [...f.invocationsPerMinute]);
    assert.deepEqual(countsOf(schedule), expected, iat);
    assert.equal(schedule.invocations.length, 1150 + 3 * 1125);
    assert.equal(schedule.durationMs, 1440 * MINUTE_MS);
  }
});

test('the schedule is sorted by time, then function', () => {
  const { invocations } = buildSchedule(sample, { seed: 1, iat: 'equidistant', minutes: { from: 0, to: 10 } });
  for (let i = 1; i < invocations.length; i++) {
    const prev = invocations[i - 1];
    const cur = invocations[i];
    assert.ok(prev && cur && (prev.atMs < cur.atMs || (prev.atMs === cur.atMs && prev.fn < cur.fn)), `out of order at ${i}`);
  }
});

test('equidistant: n invocations at exactly k × 60 s / n within each minute', () => {
  const schedule = buildSchedule(traceOf([fn('f', [7, 1, 0, 3])]), { seed: 1, iat: 'equidistant' });
  const expected = [
    ...[0, 1, 2, 3, 4, 5, 6].map((k) => (k * MINUTE_MS) / 7),
    MINUTE_MS,
    ...[0, 1, 2].map((k) => 3 * MINUTE_MS + k * 20_000),
  ];
  assert.deepEqual(schedule.invocations.map((i) => i.atMs), expected);
});

test('uniform: each minute starts with an invocation and stays inside the minute', () => {
  const counts = Array.from({ length: 200 }, (_, i) => 1 + (i % 20));
  const schedule = buildSchedule(traceOf([fn('f', counts)]), { seed: 3, iat: 'uniform' });
  let i = 0;
  counts.forEach((n, minute) => {
    const inMinute = schedule.invocations.slice(i, i + n).map((x) => x.atMs - minute * MINUTE_MS);
    i += n;
    assert.equal(inMinute[0], 0);
    for (const t of inMinute) assert.ok(t >= 0 && t < MINUTE_MS, `minute ${minute}: offset ${t}`);
  });
  // With a steady 20 a minute, gaps are U(0,1) rescaled: CV ≈ √(1/12)/(1/2) ≈ 0.58.
  const steady = buildSchedule(traceOf([fn('f', new Array<number>(200).fill(20))]), { seed: 3, iat: 'uniform' });
  const { mean, cv } = meanAndCv(gaps(steady));
  assert.ok(Math.abs(mean - 3000) < 30, `uniform mean gap ${mean}`);
  assert.ok(cv > 0.5 && cv < 0.66, `uniform gaps' coefficient of variation ${cv}`);
});

test('exponential: gaps average 60 s / N and vary like a Poisson process (CV ≈ 1)', () => {
  const n = 20;
  const schedule = buildSchedule(traceOf([fn('f', new Array<number>(500).fill(n))]), { seed: 11, iat: 'exponential' });
  const { mean, cv } = meanAndCv(gaps(schedule));
  assert.ok(Math.abs(mean - MINUTE_MS / n) / (MINUTE_MS / n) < 0.01, `mean gap ${mean}`);
  assert.ok(cv > 0.9 && cv < 1.1, `coefficient of variation ${cv}`);
});

test('minuteOffsets: gaps rescaled to sum to 60 s, first at 0', () => {
  for (const iat of ['uniform', 'exponential'] as const) {
    const offsets = minuteOffsets(5, iat, mulberry32(5));
    assert.equal(offsets.length, 5);
    assert.equal(offsets[0], 0);
    for (let i = 1; i < 5; i++) assert.ok((offsets[i] ?? 0) > (offsets[i - 1] ?? 0));
    assert.ok((offsets[4] ?? MINUTE_MS) < MINUTE_MS);
  }
  assert.deepEqual(minuteOffsets(0, 'exponential', mulberry32(5)), []);
});

test('sampling picks N functions by seed, in trace order, each with the invocations it has unsampled', () => {
  const full = buildSchedule(sample, { seed: 9, iat: 'uniform', minutes: { from: 0, to: 20 } });
  const picks = new Set<string>();
  for (let seed = 0; seed < 20; seed++) {
    const s = buildSchedule(sample, { seed, iat: 'uniform', sampleFunctions: 2, minutes: { from: 0, to: 20 } });
    assert.equal(s.functions.length, 2);
    const positions = s.functions.map((f) => sample.functions.indexOf(f));
    assert.ok((positions[0] ?? 0) < (positions[1] ?? 0));
    picks.add(positions.join(','));
    assert.deepEqual(buildSchedule(sample, { seed, iat: 'uniform', sampleFunctions: 2, minutes: { from: 0, to: 20 } }), s);
  }
  assert.ok(picks.size > 1, 'different seeds pick different functions');

  const one = buildSchedule(sample, { seed: 9, iat: 'uniform', sampleFunctions: 1, minutes: { from: 0, to: 20 } });
  const position = sample.functions.indexOf(one.functions[0] as TraceFunction);
  const strip = (s: Schedule, index: number) => s.invocations.filter((i) => i.fn === index).map(({ fn: _, ...rest }) => rest);
  assert.deepEqual(strip(one, 0), strip(full, position));
  assert.equal(buildSchedule(sample, { seed: 1, iat: 'uniform', sampleFunctions: 99 }).functions.length, 4);
});

test('a window replays its minutes from time 0, and warm-up minutes are flagged', () => {
  const s = buildSchedule(sample, { seed: 2, iat: 'equidistant', minutes: { from: 3, to: 8 }, warmupMinutes: 2 });
  assert.equal(s.durationMs, 5 * MINUTE_MS);
  assert.equal(s.warmupMs, 2 * MINUTE_MS);
  // Minutes 3..7: the first function has 5 in each; the others start at minute 5.
  assert.deepEqual(countsOf(s), [[5, 5, 5, 5, 5], [0, 0, 5, 5, 5], [0, 0, 5, 5, 5], [0, 0, 5, 5, 5]]);
  for (const inv of s.invocations) assert.equal(inv.warmup, inv.atMs < 2 * MINUTE_MS);
  assert.equal(s.invocations.filter((i) => i.warmup).length, 10);
});

test('valueAtQuantile interpolates linearly between percentiles', () => {
  const table = [
    { q: 0, value: 0 },
    { q: 0.5, value: 10 },
    { q: 0.75, value: 10 },
    { q: 1, value: 30 },
  ];
  assert.equal(valueAtQuantile(table, 0), 0);
  assert.equal(valueAtQuantile(table, 0.25), 5);
  assert.equal(valueAtQuantile(table, 0.6), 10);
  assert.equal(valueAtQuantile(table, 0.875), 20);
  assert.equal(valueAtQuantile(table, 1), 30);
  // Memory tables start with a flat q=0..0.01 segment at pct1, as InVitro returns pct1 there.
  assert.equal(valueAtQuantile([{ q: 0, value: 100 }, { q: 0.01, value: 100 }, { q: 1, value: 200 }], 0.005), 100);
});

test('durations and memory follow the percentiles; clamped to InVitro\'s limits; default memory when none', () => {
  const durationMs = [
    { q: 0, value: 100 },
    { q: 0.5, value: 200 },
    { q: 1, value: 1000 },
  ];
  const memoryMb = [
    { q: 0, value: 64 },
    { q: 1, value: 128 },
  ];
  const s = buildSchedule(traceOf([fn('f', new Array<number>(100).fill(100), durationMs, memoryMb)]), { seed: 4, iat: 'uniform' });
  const d = s.invocations.map((i) => i.durationMs).sort((a, b) => a - b);
  const m = s.invocations.map((i) => i.memoryMb).sort((a, b) => a - b);
  assert.ok((d[0] ?? 0) >= 100 && (d[d.length - 1] ?? 0) <= 1000);
  assert.ok(d.every(Number.isInteger) && m.every(Number.isInteger));
  const median = d[Math.floor(d.length / 2)] ?? 0;
  assert.ok(Math.abs(median - 200) <= 5, `median duration ${median}`);
  const p75 = d[Math.floor(d.length * 0.75)] ?? 0;
  assert.ok(Math.abs(p75 - 600) <= 25, `p75 duration ${p75}`);
  const memMedian = m[Math.floor(m.length / 2)] ?? 0;
  assert.ok(Math.abs(memMedian - 96) <= 2, `median memory ${memMedian}`);

  const extreme = buildSchedule(
    traceOf([fn('f', [50], [{ q: 0, value: 0 }, { q: 1, value: 0 }], [{ q: 0, value: 50_000 }, { q: 1, value: 50_000 }]), fn('g', [50], [{ q: 0, value: 90_000 }, { q: 1, value: 90_000 }])]),
    { seed: 1, iat: 'uniform', defaultMemoryMb: 256 },
  );
  for (const inv of extreme.invocations) {
    assert.equal(inv.durationMs, inv.fn === 0 ? 1 : 60_000);
    assert.equal(inv.memoryMb, inv.fn === 0 ? 10_240 : 256);
  }
});

test('bad options are CONFIG_INVALID errors naming the option', () => {
  const bad = (options: Parameters<typeof buildSchedule>[1], key: string) =>
    assert.throws(() => buildSchedule(sample, options), (err: unknown) => err instanceof BatonError && err.code === 'CONFIG_INVALID' && err.message.startsWith(`${key}:`));
  bad({ seed: 1.5, iat: 'uniform' }, 'seed');
  bad({ seed: 1, iat: 'poisson' as never }, 'iat');
  bad({ seed: 1, iat: 'uniform', minutes: { from: 5, to: 5 } }, 'minutes');
  bad({ seed: 1, iat: 'uniform', minutes: { from: 0, to: 1441 } }, 'minutes');
  bad({ seed: 1, iat: 'uniform', minutes: { from: 0, to: 10 }, warmupMinutes: 11 }, 'warmupMinutes');
  bad({ seed: 1, iat: 'uniform', sampleFunctions: 0 }, 'sampleFunctions');
  bad({ seed: 1, iat: 'uniform', defaultMemoryMb: 0 }, 'defaultMemoryMb');
});
