import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RoundRobinPlacement } from './round-robin.js';
import { request, withPlaced, worker } from './fixtures.js';

const req = request(100, 128);

test('round-robin cycles through the workers in order', () => {
  const p = new RoundRobinPlacement();
  const ws = [worker('a'), worker('b'), worker('c')];
  assert.deepEqual([0, 1, 2, 3, 4].map(() => p.place(ws, req)), [0, 1, 2, 0, 1]);
});

test('round-robin returns -1 with no workers and survives the list shrinking', () => {
  const p = new RoundRobinPlacement();
  assert.equal(p.place([], req), -1);
  const ws = [worker('a'), worker('b'), worker('c')];
  p.place(ws, req);
  p.place(ws, req);
  assert.equal(p.place([worker('a')], req), 0);
  assert.equal(p.place([worker('a'), worker('b')], req), 1);
});

test('round-robin keeps cycling when the list grows', () => {
  const p = new RoundRobinPlacement();
  const two = [worker('a'), worker('b')];
  assert.deepEqual([p.place(two, req), p.place(two, req), p.place(two, req)], [0, 1, 0]);
  const four = [...two, worker('c'), worker('d')];
  assert.deepEqual([0, 1, 2, 3, 4].map(() => p.place(four, req)), [1, 2, 3, 0, 1]);
});

test('round-robin skips the workers without room and cycles over the rest', () => {
  const p = new RoundRobinPlacement();
  const ws = [worker('a'), worker('cpu-full', { reservedCpuMillis: 3950 }), worker('c'), worker('mem-full', { memoryMb: 100 }), worker('e')];
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(() => p.place(ws, req)), [0, 2, 4, 0, 2, 4]);
});

test('round-robin moves on as workers fill, and returns -1 once all are full', () => {
  const p = new RoundRobinPlacement();
  // Each worker has room for exactly two sandboxes.
  const ws = [worker('a', { cpuMillis: 200 }), worker('b', { cpuMillis: 200 }), worker('c', { cpuMillis: 200 })];
  const chosen: number[] = [];
  for (let r = 0; r < 7; r++) {
    const i = p.place(ws, req);
    chosen.push(i);
    if (i >= 0) ws[i] = withPlaced(ws[i]!, req);
  }
  assert.deepEqual(chosen, [0, 1, 2, 0, 1, 2, -1]);
});

test('round-robin keeps its cursor when nothing fits', () => {
  const p = new RoundRobinPlacement();
  const ws = [worker('a'), worker('b'), worker('c')];
  assert.equal(p.place(ws, req), 0);
  assert.equal(p.place(ws, request(999_999, 128)), -1);
  assert.equal(p.place(ws, req), 1);
});
