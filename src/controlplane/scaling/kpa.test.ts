// The KPA on an injected clock, against Knative's documented behaviour
// (knative.dev serving/autoscaling/kpa-specific, scale-to-zero;
// workload-peers.md §3). Time advances in 2 s ticks, Knative's and
// Dirigent's default; sandboxes become ready on the tick they are wanted
// unless a test says otherwise.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SCALING_DEFAULTS, type ScalingSettings } from '../../shared/spec.js';
import { TimedBuckets } from './buckets.js';
import { clampScale, Kpa, type KpaDecision, targetPerSandbox } from './kpa.js';

const TICK = 2000;
const settings = (o: Partial<ScalingSettings> = {}): ScalingSettings => ({ ...SCALING_DEFAULTS, ...o });

/** Drives one autoscaler through time; `ready` follows the last decision unless pinned. */
class Sim {
  now = 0;
  ready = 0;
  last: KpaDecision | undefined;
  readonly kpa: Kpa;
  constructor(
    public s: ScalingSettings,
    options: ConstructorParameters<typeof Kpa>[1] = {},
  ) {
    this.kpa = new Kpa(s, options);
  }

  /** One tick at `load` concurrency; returns the decision. */
  tick(load: number, opts: { ready?: number } = {}): KpaDecision {
    this.now += TICK;
    this.kpa.record(this.now, load);
    const d = this.kpa.decide(this.now, this.s, opts.ready ?? this.ready);
    this.ready = opts.ready ?? d.desired;
    this.last = d;
    return d;
  }

  /** Ticks for `ms` at `load`; returns every decision. */
  run(ms: number, load: number): KpaDecision[] {
    const out: KpaDecision[] = [];
    for (let t = 0; t < ms; t += TICK) out.push(this.tick(load));
    return out;
  }
}

describe('TimedBuckets', () => {
  test('averages the buckets inside the window, a bucket standing for the mean of its samples', () => {
    const b = new TimedBuckets(1000, 60_000);
    b.record(500, 2);
    b.record(900, 4); // same bucket: mean 3
    b.record(1500, 6);
    assert.equal(b.average(1500, 60_000), (3 + 6) / 2);
    assert.equal(b.average(1500, 1000), 6);
  });

  test('buckets without a sample do not count as zero; an empty window has no data', () => {
    const b = new TimedBuckets(1000, 60_000);
    b.record(0, 4);
    b.record(5000, 8); // buckets 1..4 empty (the control plane was busy)
    assert.equal(b.average(5000, 10_000), 6);
    assert.equal(b.average(100_000, 10_000), undefined);
  });

  test('drops buckets older than the retention', () => {
    const b = new TimedBuckets(1000, 10_000);
    for (let t = 0; t < 100_000; t += 1000) b.record(t, 1);
    assert.ok(b.size <= 11, `kept ${b.size} buckets`);
  });
});

describe('target', () => {
  test('is containerConcurrency × utilisation, at least 1; unlimited uses the configured target', () => {
    assert.equal(targetPerSandbox(settings()), 1);
    assert.equal(targetPerSandbox(settings({ containerConcurrency: 10, targetUtilizationPct: 70 })), 7);
    assert.equal(targetPerSandbox(settings({ containerConcurrency: 1, targetUtilizationPct: 50 })), 1);
    assert.equal(targetPerSandbox(settings({ containerConcurrency: 0 })), 100);
    assert.equal(targetPerSandbox(settings({ containerConcurrency: 0, targetUtilizationPct: 70 }), 50), 35);
  });

  test('unlimited concurrency scales on the configured target', () => {
    const sim = new Sim(settings({ containerConcurrency: 0 }), { unlimitedConcurrencyTarget: 10 });
    assert.equal(sim.tick(45).desired, 5);
  });
});

describe('Knative KPA', () => {
  test('scale from zero: the first observed request asks for one sandbox at once', () => {
    const sim = new Sim(settings());
    assert.equal(sim.tick(0).desired, 0);
    assert.equal(sim.tick(0).desired, 0);
    assert.equal(sim.tick(1).desired, 1);
  });

  test('ramp-up: a burst panics and scales to the panic-window demand in one tick', () => {
    const sim = new Sim(settings());
    sim.run(60_000, 0);
    const d = sim.tick(30);
    // The panic window (6 s = 3 ticks) averages 30 with two zeros: ceil(10) = 10 sandboxes at once.
    assert.equal(d.desired, 10);
    assert.ok(d.panicking);
    // The next ticks bring the panic average to 30, which it reaches within the panic window.
    sim.tick(30);
    assert.equal(sim.tick(30).desired, 30);
  });

  test('ramp-up: a steady climb is followed without panic', () => {
    const sim = new Sim(settings());
    sim.run(60_000, 10);
    for (let load = 11; load <= 20; load++) {
      // +10 % per tick stays under the 200 % panic threshold.
      const d = sim.tick(load);
      assert.ok(d.desired <= load, `desired ${d.desired} over load ${load}`);
    }
    assert.equal(sim.last?.panicking, false);
    // The stable average lags behind a climb; holding 20 brings it up.
    sim.run(60_000, 20);
    assert.equal(sim.last?.desired, 20);
  });

  test('maxScaleUpRate limits a tick to ceil(ready × rate)', () => {
    const sim = new Sim(settings({ maxScaleUpRate: 2 }));
    sim.tick(0, { ready: 4 });
    assert.equal(sim.tick(100, { ready: 4 }).desired, 8);
    // With nothing ready, Knative counts one: at most ceil(1 × 2).
    assert.equal(new Sim(settings({ maxScaleUpRate: 2 })).tick(100).desired, 2);
  });

  test('panic is entered at the threshold, not below it', () => {
    // 4 ready; a panic average of 7 wants 7 (175 %): no panic. 8 wants 200 %: panic.
    const below = new Sim(settings({ panicWindowSec: 2 }));
    for (let i = 0; i < 30; i++) below.tick(4, { ready: 4 });
    assert.equal(below.tick(7, { ready: 4 }).panicking, false);
    const at = new Sim(settings({ panicWindowSec: 2 }));
    for (let i = 0; i < 30; i++) at.tick(4, { ready: 4 });
    assert.equal(at.tick(8, { ready: 4 }).panicking, true);
  });

  test('panic never scales down, and ends a full stable window after the last tick over the threshold', () => {
    const sim = new Sim(settings());
    sim.run(60_000, 2);
    assert.equal(sim.last?.desired, 2);
    let lastOverAt = 0;
    for (let i = 0; i < 3; i++) {
      const d = sim.tick(20);
      assert.ok(d.panicking);
      if (d.overPanicThreshold) lastOverAt = sim.now;
    }
    const peak = sim.last?.desired ?? 0;
    assert.equal(peak, 20);
    // Load falls back: the scale holds at the peak while panicking, a whole stable window.
    while (sim.now - lastOverAt < 60_000) {
      const d = sim.tick(2);
      assert.equal(d.overPanicThreshold, false);
      assert.ok(d.panicking, `left panic early, ${sim.now - lastOverAt} ms after the last over-threshold tick`);
      assert.equal(d.desired, peak);
    }
    const after = sim.tick(2);
    assert.equal(after.panicking, false);
    // Out of panic, the stable average (still holding part of the burst) decides, limited by ÷2.
    assert.ok(after.desired < peak && after.desired >= peak / 2, `desired ${after.desired}`);
  });

  test('a tick still over the threshold extends the panic', () => {
    const sim = new Sim(settings());
    sim.run(60_000, 1);
    sim.tick(10);
    const start = sim.now;
    // A second burst 40 s in: the panic lasts 60 s from it, not from the first.
    sim.run(38_000, 1);
    sim.tick(100, { ready: 10 });
    let second = sim.now;
    for (;;) {
      const d = sim.tick(1, { ready: 10 });
      if (d.overPanicThreshold) second = sim.now;
      assert.ok(d.panicking);
      if (sim.now - second >= 60_000) break;
    }
    assert.ok(sim.now - start > 60_000);
    assert.equal(sim.tick(1, { ready: 10 }).panicking, false);
  });

  test('scale-down is limited by maxScaleDownRate per tick', () => {
    // A short window lets the average fall faster than halving allows.
    const descent = (maxScaleDownRate: number) => {
      const sim = new Sim(settings({ stableWindowSec: 6, panicWindowSec: 2, scaleToZeroGraceSec: 0, maxScaleDownRate }));
      for (let i = 0; i < 10; i++) sim.tick(16, { ready: 16 });
      sim.ready = 16;
      const steps: number[] = [];
      while (sim.ready > 0 && steps.length < 20) steps.push(sim.tick(0).desired);
      return steps;
    };
    // The 6 s window holds 16,16,0 → 11; 16,0,0 → 6; then 0, but each tick may at most halve.
    assert.deepEqual(descent(2), [11, 6, 3, 1, 0]);
    assert.deepEqual(descent(100_000), [11, 6, 0]);
  });

  test('a slower maxScaleDownRate slows the descent', () => {
    const fast = new Sim(settings({ maxScaleDownRate: 2, stableWindowSec: 6, panicWindowSec: 2 }));
    const slow = new Sim(settings({ maxScaleDownRate: 1.25, stableWindowSec: 6, panicWindowSec: 2 }));
    for (const sim of [fast, slow]) {
      for (let i = 0; i < 10; i++) sim.tick(100, { ready: 100 });
      sim.ready = 100;
    }
    // The 6 s window now holds 100, 100, 0: ceil(66.7) = 67, above the ÷2 floor of 50…
    assert.equal(fast.tick(0).desired, 67);
    // …but under the ÷1.25 floor of 80.
    assert.equal(slow.tick(0).desired, 80);
  });

  test('scale to zero happens only after the stable window, then the grace period', () => {
    const grace = 30;
    const sim = new Sim(settings({ scaleToZeroGraceSec: grace }));
    sim.run(60_000, 1);
    assert.equal(sim.last?.desired, 1);
    const stopped = sim.now;
    let zeroAt: number | undefined;
    let graceStart: number | undefined;
    for (let i = 0; i < 100 && zeroAt === undefined; i++) {
      const d = sim.tick(0);
      if (d.holdingForGrace) graceStart ??= sim.now;
      if (d.desired === 0) zeroAt = sim.now;
    }
    assert.ok(graceStart !== undefined && zeroAt !== undefined);
    // The stable average reaches 0 once the window holds only zeros…
    assert.ok(graceStart - stopped >= 60_000 - TICK, `grace began ${graceStart - stopped} ms after the load stopped`);
    // …and the last sandbox stays for the grace period after that.
    assert.ok(zeroAt - graceStart >= grace * 1000, `zero ${zeroAt - graceStart} ms into the grace`);
    assert.ok(zeroAt - graceStart <= grace * 1000 + TICK);
  });

  test('traffic during the grace period keeps the sandbox and restarts the grace', () => {
    const sim = new Sim(settings({ stableWindowSec: 6, panicWindowSec: 2, scaleToZeroGraceSec: 10 }));
    sim.run(10_000, 1);
    sim.run(8000, 0);
    assert.ok(sim.last?.holdingForGrace);
    assert.equal(sim.tick(1).desired, 1);
    const d = sim.run(6000, 0);
    assert.ok(d.every((x) => x.desired === 1), 'a new grace period began');
  });

  test('urgent: the first queued request scales from zero at once; a burst from zero is held for a panic window', () => {
    const one = new Sim(settings());
    one.run(10_000, 0);
    assert.equal(one.kpa.urgent(one.now, one.s, 0, 0, 0, 1), 1);
    assert.equal(one.kpa.panicking, false, 'one request is not a burst');

    const burst = new Sim(settings());
    burst.run(10_000, 0);
    assert.equal(burst.kpa.urgent(burst.now, burst.s, 0, 0, 0, 8), 8);
    // The next tick's windows hold one sample of 8 among zeros: the panic
    // window's average asks for 3, against the 1 there was: a panic, at the floor's 8.
    assert.equal(burst.tick(8, { ready: 0 }).desired, 8);
    assert.ok(burst.kpa.panicking, 'the burst reached the windows and panics');
    // Panic never lowers the scale, so the 8 stays though the floor expired.
    burst.run(8000, 8);
    assert.equal(burst.last?.desired, 8);
  });

  test('urgent: a running function waits for the tick unless the queue alone is a burst over the threshold', () => {
    const sim = new Sim(settings());
    sim.run(70_000, 4); // past the panic of the ramp from zero
    assert.equal(sim.ready, 4);
    // 4 in flight + 5 queued on 4 ready: 225 % in all, but the queue alone
    // is 125 %: a cluster of arrivals, left to the tick.
    assert.equal(sim.kpa.urgent(sim.now, sim.s, 4, 4, 4, 5), undefined);
    // Already starting enough: nothing to do.
    assert.equal(sim.kpa.urgent(sim.now, sim.s, 4, 12, 4, 8), undefined);
    // 8 queued beyond 4 in flight on 4 ready: the queue alone is 200 %, a burst; scale now.
    assert.equal(sim.kpa.urgent(sim.now, sim.s, 4, 4, 4, 8), 12);
    assert.equal(sim.kpa.panicking, false);
    // Bounds apply.
    const capped = new Sim(settings({ maxScale: 3 }));
    assert.equal(capped.kpa.urgent(0, capped.s, 0, 0, 0, 50), 3);
    assert.equal(capped.kpa.urgent(0, capped.s, 0, 3, 0, 50), undefined);
  });

  test('urgent: a false alarm at a steady rate costs one panic window, not a stable window', () => {
    const sim = new Sim(settings());
    sim.run(70_000, 3);
    assert.equal(sim.ready, 3);
    // A moment with 3 in flight and 6 queued on 3 sandboxes: a burst by the snapshot.
    assert.equal(sim.kpa.urgent(sim.now, sim.s, 3, 3, 3, 6), 9);
    // The load stays at 3: the floor holds 9 for the panic window (6 s: the
    // ticks at +2 s and +4 s), then the scale falls back, halving at most per
    // tick (maxScaleDownRate 2).
    const held = sim.run(4000, 3);
    assert.deepEqual(held.map((d) => d.desired), [9, 9]);
    assert.ok(held.every((d) => !d.panicking));
    const after = sim.run(6000, 3);
    assert.deepEqual(after.map((d) => d.desired), [4, 3, 3]);
  });

  test('urgent: a real burst carries the floor into the panic, which holds it', () => {
    const sim = new Sim(settings());
    sim.run(60_000, 2);
    assert.equal(sim.kpa.urgent(sim.now, sim.s, 2, 2, 2, 20), 22);
    // The windows take the burst in: measured against the 2 sandboxes there
    // were, it is a panic, which keeps the floor though 22 are ready now and
    // 20 is what the windows ask for.
    const d = sim.run(20_000, 20);
    assert.ok(d.every((x) => x.panicking && x.desired === 22), JSON.stringify(d.map((x) => [x.desired, x.panicking])));
  });

  test('minScale and maxScale bound every decision, panic included', () => {
    const sim = new Sim(settings({ minScale: 2, maxScale: 5 }));
    assert.equal(sim.tick(0).desired, 2);
    assert.equal(sim.tick(100).desired, 5);
    assert.ok(sim.last?.panicking);
    sim.run(200_000, 0);
    assert.equal(sim.last?.desired, 2);
    assert.equal(clampScale(settings({ maxScale: 0 }), 1e6), 1e6);
  });

  test('settings changed between ticks (a PATCH) apply on the next decision', () => {
    const s = settings();
    const sim = new Sim(s);
    sim.run(60_000, 10);
    assert.equal(sim.last?.desired, 10);
    sim.s = settings({ containerConcurrency: 5 });
    // Halving at most per tick, then the new target: 10 / 5 = 2.
    sim.run(10_000, 10);
    assert.equal(sim.last?.desired, 2);
    sim.s = settings({ containerConcurrency: 5, maxScale: 1 });
    assert.equal(sim.tick(10).desired, 1);
  });

  test('startInPanic holds the current scale for a stable window (no history after a restart)', () => {
    const sim = new Sim(settings({ stableWindowSec: 10, panicWindowSec: 2, scaleToZeroGraceSec: 0 }));
    sim.kpa.startInPanic(sim.now, 6);
    sim.ready = 6;
    const held = sim.run(8000, 0);
    assert.ok(held.every((d) => d.desired === 6 && d.panicking));
    sim.run(4000, 0);
    assert.equal(sim.last?.panicking, false);
    assert.ok((sim.last?.desired ?? 6) < 6);
  });
});
