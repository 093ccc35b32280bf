import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeltaChain } from './epochs.js';

test('in-order deltas keep the chain complete and move the base to the head', () => {
  const c = new DeltaChain();
  assert.equal(c.accept(10n, 0n, 0), 'complete');
  assert.equal(c.accept(11n, 10n, 0), 'complete');
  assert.equal(c.base, 11n);
  assert.equal(c.accept(11n, 10n, 0), 'stale', 'a duplicate');
  assert.equal(c.accept(9n, 0n, 0), 'stale', 'older than the base');
});

test('a delta that overtook its predecessor waits for it; the predecessor closes the gap', () => {
  const c = new DeltaChain();
  c.accept(10n, 0n, 0);
  assert.equal(c.accept(12n, 11n, 100), 'applied');
  assert.equal(c.complete, false);
  assert.equal(c.base, 10n);
  assert.equal(c.hasGap(1099, 1000), false, 'within the grace period');
  assert.equal(c.hasGap(1100, 1000), true);
  assert.equal(c.accept(11n, 10n, 200), 'complete', 'the late one is applied, not ignored');
  assert.equal(c.base, 12n);
  assert.equal(c.hasGap(5000, 1000), false);
});

test('a snapshot covers the gaps below its epoch and ignores older snapshots', () => {
  const c = new DeltaChain();
  c.accept(10n, 0n, 0);
  c.accept(13n, 12n, 0);
  c.accept(15n, 14n, 0);
  assert.equal(c.snapshot(13n), true);
  assert.equal(c.complete, false, '14 is still missing');
  assert.equal(c.snapshot(14n), true);
  assert.equal(c.complete, true);
  assert.equal(c.base, 15n);
  assert.equal(c.snapshot(15n), false);
  assert.equal(c.accept(14n, 13n, 0), 'stale');
});
