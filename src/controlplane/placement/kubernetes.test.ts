import assert from 'node:assert/strict';
import { test } from 'node:test';
import { balancedAllocationScore, KubernetesPlacement, kubernetesScore, leastAllocatedScore } from './kubernetes.js';
import { mulberry32, request, tally, worker } from './fixtures.js';

// Workers of 4000m CPU and 8192 MB; the request is an eighth of each.
const req = request(500, 1024);
// Lightly loaded but lopsided: 3000m/1024 MB requested once placed (fractions 0.75, 0.125).
const lopsided = worker('lopsided', { reservedCpuMillis: 2500 });
// Half used on both: 2000m/4096 MB requested once placed (0.5, 0.5).
const even = worker('even', { reservedCpuMillis: 1500, reservedMemoryMb: 3072 });
// Memory-heavy: 500m/4096 MB requested (0.125, 0.5).
const memoryHeavy = worker('memory-heavy', { reservedMemoryMb: 3072 });
// Busy but perfectly balanced: 3000m/6144 MB requested (0.75, 0.75).
const busyEven = worker('busy-even', { reservedCpuMillis: 2500, reservedMemoryMb: 5120 });

test('worked example: the two scores, with Kubernetes integer truncation', () => {
  // lopsided: LeastAllocated = ⌊(⌊1000·100/4000⌋ + ⌊7168·100/8192⌋) / 2⌋ = ⌊(25 + ⌊87.5⌋) / 2⌋ = 56
  //           Balanced       = trunc((1 − |0.75 − 0.125| / 2) · 100) = trunc(68.75) = 68       → 124
  assert.equal(leastAllocatedScore(lopsided, req), 56);
  assert.equal(balancedAllocationScore(lopsided, req), 68);
  assert.equal(kubernetesScore(lopsided, req), 124);
  // even: LeastAllocated = (50 + 50) / 2 = 50; Balanced = 100                                 → 150
  assert.equal(leastAllocatedScore(even, req), 50);
  assert.equal(balancedAllocationScore(even, req), 100);
  assert.equal(kubernetesScore(even, req), 150);
  // memory-heavy: LeastAllocated = ⌊(⌊87.5⌋ + 50) / 2⌋ = ⌊68.5⌋ = 68; Balanced = trunc(81.25) = 81 → 149
  assert.equal(leastAllocatedScore(memoryHeavy, req), 68);
  assert.equal(balancedAllocationScore(memoryHeavy, req), 81);
  // busy-even: LeastAllocated = 25; Balanced = 100                                            → 125
  assert.equal(kubernetesScore(busyEven, req), 125);
});

test('kubernetes: balance outweighs free room when the sum says so', () => {
  // LeastAllocated prefers lopsided (56 > 50), BalancedAllocation prefers even (100 > 68): 150 beats 124.
  const policy = new KubernetesPlacement(mulberry32(1));
  assert.equal(policy.place([lopsided, even], req), 1);
  assert.equal(policy.place([even, lopsided], req), 0);
});

test('kubernetes: free room outweighs balance when the sum says so', () => {
  // LeastAllocated prefers memory-heavy (68 > 25), BalancedAllocation prefers busy-even (100 > 81): 149 beats 125.
  const policy = new KubernetesPlacement(mulberry32(1));
  assert.equal(policy.place([busyEven, memoryHeavy], req), 1);
  assert.equal(policy.place([memoryHeavy, busyEven], req), 0);
});

test('kubernetes: a one-point lead decides (150 against 149)', () => {
  const policy = new KubernetesPlacement(mulberry32(1));
  for (let r = 0; r < 20; r++) assert.equal(policy.place([memoryHeavy, even], req), 1);
});

test('kubernetes prefers the least allocated of evenly used workers', () => {
  const policy = new KubernetesPlacement(mulberry32(1));
  const ws = [
    worker('three-quarters', { reservedCpuMillis: 3000, reservedMemoryMb: 6144 }),
    worker('empty'),
    worker('half', { reservedCpuMillis: 2000, reservedMemoryMb: 4096 }),
  ];
  assert.equal(policy.place(ws, req), 1);
  assert.equal(policy.place([ws[0]!, ws[2]!], req), 1);
});

test('kubernetes filters on the real request, not Dirigent\'s (1, 1)', () => {
  // 500m free: room for (1m, 1 MB), not for 600m.
  const halfFull = worker('half-full', { cpuMillis: 1000, memoryMb: 1024, reservedCpuMillis: 500, reservedMemoryMb: 512 });
  const roomy = worker('roomy', { reservedCpuMillis: 3000 });
  const tiny = request(1, 1);
  const real = request(600, 256);
  // With Dirigent's (1, 1) request the half-full worker fits and even scores best...
  assert.ok(kubernetesScore(halfFull, tiny) > kubernetesScore(roomy, tiny));
  const policy = new KubernetesPlacement(mulberry32(1));
  assert.equal(policy.place([halfFull, roomy], tiny), 0);
  // ...but it has no room for the function's real request.
  assert.equal(policy.place([halfFull], real), -1);
  assert.equal(policy.place([halfFull, roomy], real), 1);
});

test('kubernetes breaks ties uniformly at random (reservoir sampling)', () => {
  const policy = new KubernetesPlacement(mulberry32(9));
  const ws = [worker('a'), worker('b'), worker('busy', { reservedCpuMillis: 1000, reservedMemoryMb: 2048 }), worker('c')];
  const rounds = 30_000;
  const counts = tally(rounds, () => policy.place(ws, req));
  assert.deepEqual([...counts.keys()].sort(), [0, 1, 3]);
  for (const i of [0, 1, 3]) {
    const share = (counts.get(i) ?? 0) / rounds;
    assert.ok(Math.abs(share - 1 / 3) < 0.02, `worker ${i} got ${share}`);
  }
});

test('kubernetes: the i-th tied worker replaces the choice when the draw is under 1/i', () => {
  const ws = [worker('a'), worker('b'), worker('c')];
  assert.equal(new KubernetesPlacement(() => 0.9).place(ws, req), 0);
  assert.equal(new KubernetesPlacement(() => 0.4).place(ws, req), 1); // 0.4·2 < 1, then 0.4·3 ≥ 1
  assert.equal(new KubernetesPlacement(() => 0.3).place(ws, req), 2); // 0.3·3 < 1
});
