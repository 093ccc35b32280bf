import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RoundRobinPlacement } from './round-robin.js';

const worker = (id: string) => ({ id, capacity: { cpuMillis: 2000, memoryMb: 4096 }, reserved: { cpuMillis: 0, memoryMb: 0 } });
const req = { function: 'f', cpuMillis: 100, memoryMb: 128 };

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
