import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SCALING_DEFAULTS, type ScalingSettings } from '../../shared/spec.js';
import { desiredScale, targetPerSandbox } from './simple.js';

const s = (o: Partial<ScalingSettings> = {}): ScalingSettings => ({ ...SCALING_DEFAULTS, ...o });
const base = { current: 0, inFlight: 0, queued: 0, lastActiveMs: 0, nowMs: 0 };

test('the first queued request scales a function from zero to one', () => {
  assert.equal(desiredScale({ ...base, scaling: s(), queued: 1 }), 1);
});

test('queued requests add sandboxes up to demand / target', () => {
  assert.equal(desiredScale({ ...base, scaling: s(), current: 2, inFlight: 2, queued: 5 }), 7);
  assert.equal(desiredScale({ ...base, scaling: s({ containerConcurrency: 4 }), current: 1, inFlight: 4, queued: 5 }), 3);
  // unlimited concurrency uses Knative's target of 100 per sandbox
  assert.equal(desiredScale({ ...base, scaling: s({ containerConcurrency: 0 }), inFlight: 250 }), 3);
});

test('traffic never scales down', () => {
  assert.equal(desiredScale({ ...base, scaling: s(), current: 10, inFlight: 1, nowMs: 1e9 }), 10);
});

test('no traffic: keep the sandboxes until the grace period, then go to minScale', () => {
  const scaling = s({ scaleToZeroGraceSec: 30, minScale: 0 });
  assert.equal(desiredScale({ ...base, scaling, current: 3, lastActiveMs: 1000, nowMs: 30_999 }), 3);
  assert.equal(desiredScale({ ...base, scaling, current: 3, lastActiveMs: 1000, nowMs: 31_000 }), 0);
  assert.equal(desiredScale({ ...base, scaling: s({ minScale: 2 }), current: 3, lastActiveMs: 0, nowMs: 1e9 }), 2);
});

test('min and max bound the result', () => {
  assert.equal(desiredScale({ ...base, scaling: s({ minScale: 2 }) }), 2);
  assert.equal(desiredScale({ ...base, scaling: s({ maxScale: 4 }), queued: 100 }), 4);
});

test('target is concurrency × utilisation, at least one request', () => {
  assert.equal(targetPerSandbox(s({ containerConcurrency: 10, targetUtilizationPct: 70 })), 7);
  assert.equal(targetPerSandbox(s({ containerConcurrency: 1, targetUtilizationPct: 50 })), 1);
});
