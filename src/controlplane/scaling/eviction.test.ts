import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 as seeded } from '../../shared/random.js';
import { createEvictionPolicy, newestFirst, oldestFirst, randomEviction } from './eviction.js';

const sb = (id: string, readyAtMs: number | undefined, createdAtMs = 0) => ({ id, readyAtMs, createdAtMs });
const ids = (xs: { id: string }[]) => xs.map((x) => x.id);


const pool = [sb('a', 10), sb('b', 30), sb('c', 20), sb('d', undefined, 25)];

test('newest evicts the sandboxes that became ready last', () => {
  assert.deepEqual(ids(newestFirst(pool, 2)), ['b', 'd']);
  assert.deepEqual(ids(newestFirst(pool, 0)), []);
  assert.deepEqual(ids(newestFirst(pool, 10)), ['b', 'd', 'c', 'a']);
});

test('oldest evicts the sandboxes that have run longest; equal times order by id', () => {
  assert.deepEqual(ids(oldestFirst(pool, 2)), ['a', 'c']);
  assert.deepEqual(ids(oldestFirst([sb('y', 5), sb('x', 5)], 1)), ['x']);
});

test('random evicts distinct sandboxes, each about equally often', () => {
  const evict = randomEviction(seeded(7));
  const counts = new Map<string, number>();
  for (let i = 0; i < 4000; i++) {
    const v = ids(evict(pool, 2));
    assert.equal(new Set(v).size, 2);
    for (const id of v) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  for (const id of ['a', 'b', 'c', 'd']) {
    const n = counts.get(id) ?? 0;
    assert.ok(n > 1800 && n < 2200, `${id} evicted ${n} times of an expected 2000`);
  }
  assert.deepEqual(evict(pool, -1), []);
});

test('policies do not modify their input', () => {
  const copy = [...pool];
  for (const name of ['newest', 'oldest', 'random'] as const) createEvictionPolicy(name, seeded(1))(pool, 3);
  assert.deepEqual(pool, copy);
});
