import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainNoFit, fits, randomIndex } from './policy.js';
import { request, worker } from './fixtures.js';

test('fits: room on both resources, counting what is reserved, exact fit included', () => {
  const w = worker('w', { cpuMillis: 1000, memoryMb: 1024, reservedCpuMillis: 400, reservedMemoryMb: 512 });
  assert.equal(fits(w, request(600, 512)), true);
  assert.equal(fits(w, request(601, 512)), false, 'CPU short by 1m');
  assert.equal(fits(w, request(600, 513)), false, 'memory short by 1 MB');
});

test('fits: a zero capacity is no room, even for a zero request; an overcommitted worker fits nothing', () => {
  assert.equal(fits(worker('w', { cpuMillis: 0 }), request(0, 128)), false);
  assert.equal(fits(worker('w', { memoryMb: 0 }), request(100, 0)), false);
  assert.equal(fits(worker('w'), request(0, 0)), true);
  assert.equal(fits(worker('w', { cpuMillis: 1000, reservedCpuMillis: 1200 }), request(0, 0)), false);
});

test('randomIndex stays in range even when the source returns 1', () => {
  assert.equal(randomIndex(() => 0, 4), 0);
  assert.equal(randomIndex(() => 0.999, 4), 3);
  assert.equal(randomIndex(() => 1, 4), 3);
});

test('explainNoFit names each full worker with what it has free', () => {
  const text = explainNoFit(
    [
      worker('w1', { cpuMillis: 1000, memoryMb: 1024, reservedCpuMillis: 950, reservedMemoryMb: 124 }),
      worker('w2', { cpuMillis: 2000, memoryMb: 1024, reservedMemoryMb: 1024 }),
    ],
    request(100, 128),
  );
  assert.equal(text, 'no worker has room for 100m CPU and 128 MB: w1 has 50m CPU, 900 MB free; w2 has 2000m CPU, 0 MB free');
});

test('explainNoFit caps the list and counts the rest; overcommitted shows as 0 free', () => {
  const full = ['a', 'b', 'c', 'd', 'e'].map((id) => worker(id, { cpuMillis: 1000, reservedCpuMillis: 1500 }));
  assert.equal(
    explainNoFit(full, request(100, 128)),
    'no worker has room for 100m CPU and 128 MB: a has 0m CPU, 8192 MB free; b has 0m CPU, 8192 MB free; ' +
      'c has 0m CPU, 8192 MB free; and 2 more',
  );
});

test('explainNoFit with no workers, and when some do fit', () => {
  assert.equal(explainNoFit([], request(100, 128)), 'no worker has room for 100m CPU and 128 MB: there are no workers');
  assert.equal(
    explainNoFit([worker('a'), worker('b', { memoryMb: 64 })], request(100, 128)),
    '1 of 2 workers have room for 100m CPU and 128 MB',
  );
});
