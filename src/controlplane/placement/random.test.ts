import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RandomPlacement } from './random.js';
import { mulberry32, request, tally, worker } from './fixtures.js';

const req = request(500, 1024);

test('random is roughly uniform over the workers that fit, and never picks the others', () => {
  const policy = new RandomPlacement(mulberry32(42));
  const ws = [
    worker('a'),
    worker('full-cpu', { reservedCpuMillis: 3800 }),
    worker('b', { reservedCpuMillis: 3000, reservedMemoryMb: 7000 }),
    worker('full-memory', { reservedMemoryMb: 7500 }),
    worker('c', { cpuMillis: 500, memoryMb: 1024 }),
  ];
  const rounds = 30_000;
  const counts = tally(rounds, () => policy.place(ws, req));
  assert.deepEqual([...counts.keys()].sort(), [0, 2, 4]);
  for (const i of [0, 2, 4]) {
    const share = (counts.get(i) ?? 0) / rounds;
    assert.ok(Math.abs(share - 1 / 3) < 0.02, `worker ${i} got ${share}`);
  }
});

test('random maps the draw onto the fitting workers in list order', () => {
  const ws = [worker('full', { cpuMillis: 100 }), worker('a'), worker('full2', { memoryMb: 100 }), worker('b')];
  assert.equal(new RandomPlacement(() => 0).place(ws, req), 1);
  assert.equal(new RandomPlacement(() => 0.49).place(ws, req), 1);
  assert.equal(new RandomPlacement(() => 0.5).place(ws, req), 3);
  assert.equal(new RandomPlacement(() => 0.999).place(ws, req), 3);
});

test('random does not draw when nothing fits', () => {
  let draws = 0;
  const policy = new RandomPlacement(() => (draws++, 0));
  assert.equal(policy.place([worker('full', { cpuMillis: 100 })], req), -1);
  assert.equal(policy.place([], req), -1);
  assert.equal(draws, 0);
});

test('random uses Math.random by default', () => {
  assert.equal(new RandomPlacement().place([worker('a')], req), 0);
});
