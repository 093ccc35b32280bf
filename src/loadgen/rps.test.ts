import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../shared/errors.js';
import {
  buildRpsSchedule,
  coldCooldownSec,
  COLD_SWEEP_DEFAULTS,
  COLD_SWEEP_SCALING,
  findSaturation,
  planColdStep,
  rateSteps,
  sandboxRoom,
  stepLengthMs,
  type RpsSchedule,
} from './rps.js';

function configInvalid(key: string): (err: unknown) => boolean {
  return (err) => err instanceof BatonError && err.code === 'CONFIG_INVALID' && err.message.startsWith(`${key}:`);
}

function countsPerStep(s: RpsSchedule): number[] {
  const counts = s.steps.map(() => 0);
  for (const inv of s.invocations) {
    const step = s.steps[inv.step];
    assert.ok(step, `step ${inv.step}`);
    // Every invocation lies inside its own step's window.
    assert.ok(inv.atMs >= step.startMs && inv.atMs < step.endMs, `${inv.atMs} outside step ${inv.step} [${step.startMs}, ${step.endMs})`);
    counts[inv.step] = (counts[inv.step] ?? 0) + 1;
  }
  return counts;
}

test('rateSteps: a constant rate, a list, and start/step/end with the end included', () => {
  assert.deepEqual(rateSteps({ rps: [100] }), [100]);
  assert.deepEqual(rateSteps({ rps: [10, 50, 100] }), [10, 50, 100]);
  assert.deepEqual(rateSteps({ rpsStart: 10, rpsStep: 10, rpsEnd: 50 }), [10, 20, 30, 40, 50]);
  // An end that is not on the grid is not overshot.
  assert.deepEqual(rateSteps({ rpsStart: 10, rpsStep: 20, rpsEnd: 55 }), [10, 30, 50]);
  // Fractional steps do not drift through repeated addition.
  assert.deepEqual(rateSteps({ rpsStart: 0.1, rpsStep: 0.1, rpsEnd: 0.5 }), [0.1, 0.2, 0.3, 0.4, 0.5]);
  assert.deepEqual(rateSteps({ rpsStart: 5, rpsStep: 1, rpsEnd: 5 }), [5]);
});

test('rateSteps: rejects mixed, incomplete, negative, all-zero and runaway plans', () => {
  assert.throws(() => rateSteps({}), configInvalid('rps'));
  assert.throws(() => rateSteps({ rps: [10], rpsStart: 1, rpsStep: 1, rpsEnd: 2 }), configInvalid('rps'));
  assert.throws(() => rateSteps({ rpsStart: 1, rpsEnd: 2 }), configInvalid('rpsStart'));
  assert.throws(() => rateSteps({ rpsStart: 1, rpsStep: 0, rpsEnd: 2 }), configInvalid('rpsStep'));
  assert.throws(() => rateSteps({ rpsStart: 5, rpsStep: 1, rpsEnd: 2 }), configInvalid('rpsEnd'));
  assert.throws(() => rateSteps({ rps: [5, -1] }), configInvalid('rps'));
  assert.throws(() => rateSteps({ rps: [0, 0] }), configInvalid('rps'));
  assert.throws(() => rateSteps({ rpsStart: 0, rpsStep: 0.001, rpsEnd: 100 }), configInvalid('rpsStep'));
});

test('stepLengthMs: step seconds, or the duration split over the steps, or 10 s; both must agree', () => {
  assert.equal(stepLengthMs(3, { stepSeconds: 5 }), 5000);
  assert.equal(stepLengthMs(4, { durationSeconds: 60 }), 15_000);
  assert.equal(stepLengthMs(1, { durationSeconds: 30 }), 30_000);
  assert.equal(stepLengthMs(2, {}), 10_000);
  assert.equal(stepLengthMs(2, { stepSeconds: 5, durationSeconds: 10 }), 5000);
  assert.throws(() => stepLengthMs(2, { stepSeconds: 5, durationSeconds: 12 }), configInvalid('duration'));
  assert.throws(() => stepLengthMs(2, { stepSeconds: 0 }), configInvalid('stepSeconds'));
});

test('buildRpsSchedule: exactly round(rate × step) invocations per step, for every IAT rule', () => {
  const rates = rateSteps({ rpsStart: 10, rpsStep: 10, rpsEnd: 200 });
  for (const iat of ['equidistant', 'uniform', 'exponential'] as const) {
    const s = buildRpsSchedule({ rates, stepMs: 10_000, iat, seed: 3 });
    assert.deepEqual(
      countsPerStep(s),
      rates.map((r) => r * 10),
      iat,
    );
    assert.deepEqual(
      s.steps.map((st) => [st.rps, st.startMs, st.endMs, st.count]),
      rates.map((r, i) => [r, i * 10_000, (i + 1) * 10_000, r * 10]),
    );
    assert.equal(s.durationMs, rates.length * 10_000);
    for (let i = 1; i < s.invocations.length; i++) assert.ok((s.invocations[i]?.atMs ?? 0) >= (s.invocations[i - 1]?.atMs ?? 0), 'sorted');
  }
  // Fractional products round: 2.5/s × 3 s = 7.5 → 8 (half up); 0.25/s × 3 s = 0.75 → 1.
  assert.deepEqual(countsPerStep(buildRpsSchedule({ rates: [2.5, 0.25, 0], stepMs: 3000, iat: 'equidistant', seed: 1 })), [8, 1, 0]);
});

test('buildRpsSchedule: equidistant arrivals are evenly spaced at 1/rate within each step', () => {
  const s = buildRpsSchedule({ rates: [4, 10], stepMs: 1000, iat: 'equidistant', seed: 1 });
  assert.deepEqual(
    s.invocations.map((i) => i.atMs),
    [0, 250, 500, 750, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900],
  );
});

test('buildRpsSchedule: seeded; a step does not change when the steps after it do', () => {
  const a = buildRpsSchedule({ rates: [20, 40], stepMs: 5000, iat: 'exponential', seed: 9 });
  const b = buildRpsSchedule({ rates: [20, 40], stepMs: 5000, iat: 'exponential', seed: 9 });
  const c = buildRpsSchedule({ rates: [20, 40], stepMs: 5000, iat: 'exponential', seed: 10 });
  const d = buildRpsSchedule({ rates: [20, 80, 5], stepMs: 5000, iat: 'exponential', seed: 9 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.invocations, c.invocations);
  const firstStep = (s: RpsSchedule): number[] => s.invocations.filter((i) => i.step === 0).map((i) => i.atMs);
  assert.deepEqual(firstStep(a), firstStep(d));
  // Exponential gaps are not all equal.
  const gaps = firstStep(a).slice(1).map((t, i) => t - (firstStep(a)[i] ?? 0));
  assert.ok(Math.max(...gaps) > 2 * Math.min(...gaps), `gaps ${gaps.join(', ')}`);
  assert.throws(() => buildRpsSchedule({ rates: [1], stepMs: 1000, iat: 'equidistant', seed: 1.5 }), configInvalid('seed'));
});

test('coldCooldownSec: stable window + grace + margin; the sweep scaling goes to zero as soon as Baton allows', () => {
  assert.equal(coldCooldownSec(COLD_SWEEP_SCALING), 6 + 0 + COLD_SWEEP_DEFAULTS.marginSec);
  assert.equal(coldCooldownSec({ stableWindowSec: 10, scaleToZeroGraceSec: 3 }, 2), 15);
  assert.equal(COLD_SWEEP_SCALING.minScale, 0);
  assert.equal(COLD_SWEEP_SCALING.maxScale, 1);
  assert.throws(() => coldCooldownSec(COLD_SWEEP_SCALING, -1), configInvalid('cooldownMargin'));
});

test('planColdStep: ceil(rate × cooldown) functions, each called once per cooldown, calls staggered at 1/rate', () => {
  for (const [rate, cooldown, stepMs] of [
    [1, 12, 30_000],
    [2, 12, 30_000],
    [5, 8, 20_000],
    [0.3, 10, 60_000],
    [50, 12, 10_000],
    [3, 0.5, 4000],
  ] as const) {
    const plan = planColdStep(rate, stepMs, cooldown);
    const label = `rate ${rate}, cooldown ${cooldown}`;
    assert.equal(plan.functions, Math.max(1, Math.round(Math.ceil(rate * cooldown - 1e-9))), label);
    assert.equal(plan.calls.length, Math.round((rate * stepMs) / 1000), label);
    // Staggered: one call every 1/rate s, over every function in turn.
    plan.calls.forEach((c, k) => {
      assert.ok(Math.abs(c.atMs - (k * 1000) / rate) < 1e-6, `${label}: call ${k} at ${c.atMs}`);
      assert.equal(c.fn, k % plan.functions, label);
    });
    // Each function: its calls at least a cooldown apart, and at most one cooldown + 1/rate apart.
    const last = new Map<number, number>();
    for (const c of plan.calls) {
      const prev = last.get(c.fn);
      if (prev !== undefined) {
        assert.ok(c.atMs - prev >= cooldown * 1000 - 1e-6, `${label}: fn ${c.fn} called again after ${c.atMs - prev} ms`);
        assert.ok(c.atMs - prev < cooldown * 1000 + 1000 / rate + 1e-6, `${label}: fn ${c.fn} idle ${c.atMs - prev} ms`);
      }
      last.set(c.fn, c.atMs);
    }
    assert.ok(plan.periodMs >= cooldown * 1000 - 1e-6, label);
  }
  // 0.3 × 10 is 3.0000000000000004 in floating point: still 3 functions.
  assert.equal(planColdStep(0.3, 10_000, 10).functions, 3);
  assert.throws(() => planColdStep(0, 1000, 10), configInvalid('rps'));
  assert.throws(() => planColdStep(1, 1000, 0), configInvalid('cooldown'));
});

test('findSaturation: the first rate whose achieved cold rate or p99 gives out', () => {
  const healthy = [
    { rate: 1, achievedColdPerSec: 1, p99Ms: 50 },
    { rate: 2, achievedColdPerSec: 1.96, p99Ms: 60 },
    { rate: 5, achievedColdPerSec: 4.9, p99Ms: 80 },
  ];
  assert.equal(findSaturation(healthy), undefined);
  // Achieved below 90 % of the target.
  const starved = [...healthy, { rate: 10, achievedColdPerSec: 8.5, p99Ms: 90 }, { rate: 20, achievedColdPerSec: 9, p99Ms: 5000 }];
  assert.deepEqual(
    { ...findSaturation(starved), reason: undefined },
    { index: 3, rate: 10, reason: undefined },
  );
  assert.match(findSaturation(starved)?.reason ?? '', /8\.50 cold starts\/s, below 90% of 10\/s/);
  // p99 above the multiple of the lowest rate's p99 (50 ms × 5 = 250 ms), at full cold rate.
  const slow = [...healthy, { rate: 10, achievedColdPerSec: 10, p99Ms: 251 }];
  assert.equal(findSaturation(slow)?.rate, 10);
  assert.match(findSaturation(slow)?.reason ?? '', /p99 251\.0 ms, above 5× the lowest rate's 50\.0 ms/);
  assert.equal(findSaturation(slow, { p99Multiple: 6 }), undefined);
  assert.equal(findSaturation(starved, { coldFraction: 0.8 })?.rate, 20);
  // Points in any order: judged by increasing rate; the base is the lowest rate's.
  assert.equal(findSaturation([...slow].reverse())?.index, 0);
  // Nothing succeeded: saturated.
  assert.equal(findSaturation([...healthy, { rate: 10, achievedColdPerSec: 10, p99Ms: Number.NaN }])?.reason, 'no call succeeded');
  assert.throws(() => findSaturation(healthy, { coldFraction: 1.5 }), configInvalid('saturationColdFraction'));
  assert.throws(() => findSaturation(healthy, { p99Multiple: 1 }), configInvalid('saturationP99Multiple'));
});

test('sandboxRoom: free room for sandboxes on the ready workers that offer the runtime, the tighter of CPU and memory', () => {
  const w = (status: string, runtimes: string[], cpu: number, mem: number, rCpu = 0, rMem = 0) => ({
    status,
    runtimes,
    capacity: { cpuMillis: cpu, memoryMb: mem },
    reserved: { cpuMillis: rCpu, memoryMb: rMem },
  });
  const res = { cpuMillis: 100, memoryMb: 128 };
  assert.equal(sandboxRoom([w('ready', ['emulated'], 16_000, 65_536)], 'emulated', res), 160);
  assert.equal(sandboxRoom([w('ready', ['emulated'], 16_000, 65_536, 1000, 0)], 'emulated', res), 150);
  // Memory is the limit here: 1024 / 128 = 8.
  assert.equal(sandboxRoom([w('ready', ['process'], 16_000, 1024)], 'process', res), 8);
  // Lost workers and workers without the runtime do not count; over-reserved ones count 0.
  assert.equal(
    sandboxRoom([w('lost', ['emulated'], 16_000, 65_536), w('ready', ['process'], 16_000, 65_536), w('ready', ['emulated'], 100, 100, 200, 0), w('ready', ['emulated'], 1000, 1280)], 'emulated', res),
    10,
  );
});

