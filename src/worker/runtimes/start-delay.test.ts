import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { startDelaySampler, type StartDelayConfig } from './start-delay.js';

const N = 20_000;

function draw(config: Partial<StartDelayConfig>, n = N): number[] {
  const sample = startDelaySampler({ distribution: 'constant', ms: 0, spreadMs: 0, seed: 1, ...config });
  return Array.from({ length: n }, sample);
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function sd(xs: readonly number[]): number {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

describe('emulated start delay', () => {
  it('constant is always ms, 0 by default', () => {
    assert.deepEqual(draw({}, 5), [0, 0, 0, 0, 0]);
    assert.deepEqual(draw({ ms: 40 }, 3), [40, 40, 40]);
  });

  it('uniform stays in [ms, ms + spreadMs] and covers it evenly', () => {
    const xs = draw({ distribution: 'uniform', ms: 10, spreadMs: 20 });
    assert.ok(xs.every((x) => x >= 10 && x <= 30));
    assert.ok(Math.abs(mean(xs) - 20) < 0.3, `mean ${mean(xs)}`);
    // A quarter of the draws in each quarter of the range, within a couple of percent.
    for (let q = 0; q < 4; q++) {
      const share = xs.filter((x) => x >= 10 + 5 * q && x < 15 + 5 * q).length / xs.length;
      assert.ok(Math.abs(share - 0.25) < 0.02, `quarter ${q}: ${share}`);
    }
  });

  it('exponential has mean ms, its median at ms·ln 2, and no negative draw', () => {
    const xs = draw({ distribution: 'exponential', ms: 50 });
    assert.ok(xs.every((x) => x >= 0 && Number.isFinite(x)));
    assert.ok(Math.abs(mean(xs) - 50) < 1.5, `mean ${mean(xs)}`);
    assert.ok(Math.abs(median(xs) - 50 * Math.LN2) < 1.5, `median ${median(xs)}`);
  });

  it('lognormal has mean ms and standard deviation spreadMs, skewed right', () => {
    const xs = draw({ distribution: 'lognormal', ms: 100, spreadMs: 30 });
    assert.ok(xs.every((x) => x > 0 && Number.isFinite(x)));
    assert.ok(Math.abs(mean(xs) - 100) < 1.5, `mean ${mean(xs)}`);
    assert.ok(Math.abs(sd(xs) - 30) < 1.5, `sd ${sd(xs)}`);
    assert.ok(median(xs) < mean(xs), 'the median sits left of the mean');
  });

  it('lognormal without spread is constant, and with mean 0 is 0', () => {
    assert.ok(draw({ distribution: 'lognormal', ms: 25 }, 10).every((x) => Math.abs(x - 25) < 1e-9));
    assert.deepEqual(draw({ distribution: 'lognormal', ms: 0, spreadMs: 10 }, 3), [0, 0, 0]);
  });

  it('the same seed gives the same delays; another seed others', () => {
    for (const distribution of ['uniform', 'exponential', 'lognormal'] as const) {
      const a = draw({ distribution, ms: 30, spreadMs: 10, seed: 7 }, 100);
      const b = draw({ distribution, ms: 30, spreadMs: 10, seed: 7 }, 100);
      const c = draw({ distribution, ms: 30, spreadMs: 10, seed: 8 }, 100);
      assert.deepEqual(a, b, distribution);
      assert.notDeepEqual(a, c, distribution);
    }
  });
});
