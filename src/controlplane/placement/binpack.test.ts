import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BinpackPlacement, mostAllocatedScore } from './binpack.js';
import { request, withPlaced, worker } from './fixtures.js';

const req = request(500, 1024);

test('mostAllocatedScore: the mean used share once the request is placed', () => {
  // (2000/4000 + 2048/8192) / 2 · 100 = (0.5 + 0.25) / 2 · 100 = 37.5
  assert.equal(mostAllocatedScore(worker('w', { reservedCpuMillis: 1500, reservedMemoryMb: 1024 }), req), 37.5);
  assert.equal(mostAllocatedScore(worker('w', { reservedCpuMillis: 3500, reservedMemoryMb: 7168 }), req), 100);
});

test('binpack picks the most allocated worker that still fits', () => {
  const policy = new BinpackPlacement();
  const ws = [
    worker('empty'),
    worker('half', { reservedCpuMillis: 2000, reservedMemoryMb: 4096 }),
    worker('quarter', { reservedCpuMillis: 1000, reservedMemoryMb: 2048 }),
    worker('nearly-full', { reservedCpuMillis: 3600, reservedMemoryMb: 4096 }),
  ];
  assert.equal(policy.place(ws, req), 1);
});

test('binpack fills one worker, then moves on to the next most allocated, then the empty one', () => {
  const policy = new BinpackPlacement();
  // Room for 8 sandboxes of 500m on each 4000m worker.
  const ws = [worker('empty'), worker('quarter', { reservedCpuMillis: 1000, reservedMemoryMb: 2048 }), worker('half', { reservedCpuMillis: 2000, reservedMemoryMb: 4096 })];
  const chosen: number[] = [];
  for (let r = 0; r < 18; r++) {
    const i = policy.place(ws, req);
    chosen.push(i);
    if (i >= 0) ws[i] = withPlaced(ws[i]!, req);
  }
  assert.deepEqual(chosen, [...Array<number>(4).fill(2), ...Array<number>(6).fill(1), ...Array<number>(8).fill(0)]);
  assert.equal(policy.place(ws, req), -1);
});

test('binpack breaks ties by list order', () => {
  const policy = new BinpackPlacement();
  assert.equal(policy.place([worker('a'), worker('b'), worker('c')], req), 0);
  const half = { reservedCpuMillis: 2000, reservedMemoryMb: 4096 };
  assert.equal(policy.place([worker('a'), worker('b', half), worker('c', half)], req), 1);
});

test('binpack does not truncate: a barely used worker beats an empty one listed first', () => {
  // Kubernetes' integer scores would make both 0 and the empty worker win the tie.
  const policy = new BinpackPlacement();
  const big = { cpuMillis: 64_000, memoryMb: 262_144 };
  assert.equal(policy.place([worker('empty', big), worker('one-sandbox', { ...big, reservedCpuMillis: 100, reservedMemoryMb: 128 })], request(100, 128)), 1);
});
