import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLoadBalancingPolicy, LOAD_BALANCING_POLICIES } from './loadbalancing/index.js';
import { RoundRobinBalancer } from './loadbalancing/round-robin.js';

const eps = (...inFlight: number[]) => inFlight.map((n) => ({ inFlight: n }));

test('round-robin cycles through endpoints with free tokens', () => {
  const p = new RoundRobinBalancer();
  const list = eps(0, 0, 0);
  assert.deepEqual([0, 1, 2, 3, 4].map(() => p.pick(list, 1)), [0, 1, 2, 0, 1]);
});

test('round-robin skips endpoints whose tokens are all taken', () => {
  const p = new RoundRobinBalancer();
  assert.equal(p.pick(eps(1, 0, 1), 1), 1);
  assert.equal(p.pick(eps(1, 1, 0), 1), 2);
  assert.equal(p.pick(eps(0, 1, 1), 1), 0);
  assert.equal(p.pick(eps(2, 2), 2), -1);
});

test('round-robin with limit 0 treats every endpoint as free', () => {
  const p = new RoundRobinBalancer();
  const list = eps(1000, 5000);
  assert.deepEqual([p.pick(list, 0), p.pick(list, 0), p.pick(list, 0)], [0, 1, 0]);
});

test('round-robin returns -1 with no endpoints and survives the list shrinking', () => {
  const p = new RoundRobinBalancer();
  assert.equal(p.pick([], 1), -1);
  const list = eps(0, 0, 0);
  p.pick(list, 1);
  p.pick(list, 1);
  assert.equal(p.pick(eps(0), 1), 0, 'cursor 2 on a list of 1');
  const two = eps(0, 0);
  assert.deepEqual([p.pick(two, 1), p.pick(two, 1), p.pick(two, 1)], [0, 1, 0]);
});

test('the registry creates a fresh policy per call and rejects unknown names', () => {
  assert.ok(LOAD_BALANCING_POLICIES['round-robin']);
  const a = createLoadBalancingPolicy('round-robin');
  const b = createLoadBalancingPolicy('round-robin');
  assert.notEqual(a, b);
  assert.equal(a.name, 'round-robin');
  assert.throws(() => createLoadBalancingPolicy('nope'), /unknown load-balancing policy/);
});
