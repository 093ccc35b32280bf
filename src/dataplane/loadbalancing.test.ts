// The load-balancing policies, without I/O: each sees plain { inFlight }
// lists and a limit. Randomness comes from a seeded PRNG, so the statistical
// checks are deterministic.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LOAD_BALANCING_POLICIES, type LoadBalancingPolicyName } from '../shared/spec.js';
import {
  createLoadBalancingPolicy,
  KnativeBalancer,
  LeastInflightBalancer,
  LOAD_BALANCERS,
  PowerOfTwoBalancer,
  RandomBalancer,
  RoundRobinBalancer,
  type BalancedEndpoint,
  type RandomSource,
} from './loadbalancing/index.js';
import { mulberry32 } from '../shared/random.js';

const eps = (...inFlight: number[]) => inFlight.map((n) => ({ inFlight: n }));


/** Replays fixed draws, so a test can say which endpoints a random policy looks at. */
function scripted(...draws: number[]): RandomSource {
  let i = 0;
  return () => {
    const d = draws[i++ % draws.length];
    assert.ok(d !== undefined);
    return d;
  };
}

/** How often each index is picked in `times` picks on an unchanging list. */
function histogram(pick: () => number, n: number, times: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < times; i++) {
    const r = pick();
    assert.ok(r >= 0 && r < n, `picked ${r}`);
    counts[r]!++;
  }
  return counts;
}

function assertNear(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= expected * tolerance, `${what}: ${actual}, expected ${expected} ±${tolerance * 100}%`);
}

const isFree = (ep: BalancedEndpoint, limit: number): boolean => limit === 0 || ep.inFlight < limit;

// --- every policy ----------------------------------------------------------

for (const name of LOAD_BALANCING_POLICIES) {
  test(`${name}: -1 with no endpoints or when every token is taken`, () => {
    const p = createLoadBalancingPolicy(name, mulberry32(1));
    assert.equal(p.pick([], 0), -1);
    assert.equal(p.pick([], 1), -1);
    for (const limit of [1, 2, 3, 4, 10]) {
      assert.equal(p.pick(eps(limit, limit, limit + 1), limit), -1, `limit ${limit}`);
      assert.equal(p.pick(eps(limit), limit), -1, `one endpoint, limit ${limit}`);
    }
  });

  test(`${name}: finds the only free endpoint, wherever it is`, () => {
    const p = createLoadBalancingPolicy(name, mulberry32(2));
    for (const limit of [1, 3, 5]) {
      for (let free = 0; free < 5; free++) {
        const list = eps(limit, limit, limit, limit, limit);
        list[free] = { inFlight: limit - 1 };
        for (let i = 0; i < 5; i++) assert.equal(p.pick(list, limit), free, `limit ${limit}, free ${free}`);
      }
    }
  });

  test(`${name}: never picks a full endpoint, and finds a free one if any, as the list grows and shrinks`, () => {
    const p = createLoadBalancingPolicy(name, mulberry32(3));
    const rnd = mulberry32(4);
    const int = (n: number): number => Math.floor(rnd() * n);
    for (let round = 0; round < 5000; round++) {
      const list = Array.from({ length: int(8) }, () => ({ inFlight: int(6) }));
      const limit = int(5);
      const r = p.pick(list, limit);
      const anyFree = list.some((ep) => isFree(ep, limit));
      if (r === -1) assert.equal(anyFree, false, `-1 with a free endpoint in ${JSON.stringify(list)}, limit ${limit}`);
      else {
        assert.ok(r >= 0 && r < list.length, `index ${r} of ${list.length}`);
        assert.ok(isFree(list[r]!, limit), `full endpoint ${r} in ${JSON.stringify(list)}, limit ${limit}`);
      }
    }
  });

  test(`${name}: with limit 0 every endpoint is free, however loaded`, () => {
    const p = createLoadBalancingPolicy(name, mulberry32(5));
    const list = eps(1000, 5000, 100_000);
    for (let i = 0; i < 100; i++) {
      const r = p.pick(list, 0);
      assert.ok(r >= 0 && r < 3);
    }
  });

  test(`${name}: spreads requests that stay in flight over every endpoint`, () => {
    // 40 requests arrive and none finishes: 4 endpoints with 10 tokens each fill up.
    const p = createLoadBalancingPolicy(name, mulberry32(6));
    const list = eps(0, 0, 0, 0);
    for (let i = 0; i < 40; i++) {
      const r = p.pick(list, 10);
      assert.ok(r >= 0, `request ${i} found no token`);
      list[r] = { inFlight: list[r]!.inFlight + 1 };
    }
    assert.deepEqual(list.map((ep) => ep.inFlight), [10, 10, 10, 10]);
    assert.equal(p.pick(list, 10), -1);
  });
}

test('the registry has a policy for every name and creates a fresh one per call', () => {
  assert.deepEqual(Object.keys(LOAD_BALANCERS).sort(), [...LOAD_BALANCING_POLICIES].sort());
  for (const name of LOAD_BALANCING_POLICIES) {
    const a = createLoadBalancingPolicy(name);
    const b = createLoadBalancingPolicy(name);
    assert.notEqual(a, b);
    assert.equal(a.name, name);
  }
  assert.throws(() => createLoadBalancingPolicy('nope' as LoadBalancingPolicyName), /unknown load-balancing policy nope/);
  assert.throws(() => createLoadBalancingPolicy('toString' as LoadBalancingPolicyName), /unknown load-balancing policy/);
});

// --- random ------------------------------------------------------------------

test('random: uniform over all endpoints with limit 0', () => {
  const p = new RandomBalancer(mulberry32(7));
  const list = eps(0, 7, 100, 3);
  const counts = histogram(() => p.pick(list, 0), 4, 10_000);
  for (const [i, c] of counts.entries()) assertNear(c, 2500, 0.1, `endpoint ${i}`);
});

test('random: uniform over the endpoints with a free token, never a full one', () => {
  const p = new RandomBalancer(mulberry32(8));
  const list = eps(0, 2, 1, 2, 0, 2);
  const counts = histogram(() => p.pick(list, 2), 6, 10_000);
  assert.deepEqual([counts[1], counts[3], counts[5]], [0, 0, 0]);
  for (const i of [0, 2, 4]) assertNear(counts[i]!, 10_000 / 3, 0.1, `endpoint ${i}`);
});

test('random: a source that returns 1 stays in range', () => {
  const p = new RandomBalancer(() => 1);
  assert.equal(p.pick(eps(0, 0, 0), 0), 2);
  assert.equal(p.pick(eps(0, 1, 1), 1), 0);
});

// --- round-robin -------------------------------------------------------------

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

// --- least-inflight ----------------------------------------------------------

test('least-inflight picks the endpoint with the fewest requests in flight', () => {
  const p = new LeastInflightBalancer();
  assert.equal(p.pick(eps(3, 1, 2), 0), 1);
  assert.equal(p.pick(eps(3, 2, 1), 5), 2);
  assert.equal(p.pick(eps(900, 5000, 1000), 0), 0, 'limit 0: still the least loaded');
  assert.equal(p.pick(eps(2, 2, 1), 2), 2, 'the full ones are skipped');
  assert.equal(p.pick(eps(2, 2, 2), 2), -1);
});

test('least-inflight rotates among equally loaded endpoints', () => {
  // Dirigent's least-processed sends every request to the same endpoint
  // while counts are equal; a rotating start shares them.
  const p = new LeastInflightBalancer();
  const idle = eps(0, 0, 0);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(() => p.pick(idle, 1)), [0, 1, 2, 0, 1, 2]);
  const p2 = new LeastInflightBalancer();
  const busy = eps(1, 4, 1, 1);
  assert.deepEqual([0, 1, 2, 3].map(() => p2.pick(busy, 0)), [0, 2, 3, 0]);
});

test('least-inflight ranks by live counts: a once-busy endpoint takes requests again', () => {
  // The regression Dirigent's cumulative counter has: endpoint 0 served a
  // burst that has since finished; it must not be avoided afterwards.
  const p = new LeastInflightBalancer();
  const list = eps(0, 0);
  for (let i = 0; i < 10; i++) {
    const r = p.pick(list, 0);
    list[r] = { inFlight: list[r]!.inFlight + 1 };
  }
  assert.deepEqual(list.map((e) => e.inFlight), [5, 5]);
  list[0] = { inFlight: 0 }; // endpoint 0's requests finished
  assert.deepEqual([p.pick(list, 0), p.pick(list, 0)], [0, 0]);
});

test('least-inflight survives the list shrinking and growing', () => {
  const p = new LeastInflightBalancer();
  const five = eps(0, 0, 0, 0, 0);
  for (let i = 0; i < 4; i++) p.pick(five, 0); // cursor at 4
  assert.equal(p.pick(eps(0, 0), 0), 0, 'cursor 4 on a list of 2');
  assert.equal(p.pick(eps(0, 0), 0), 1);
  assert.equal(p.pick(eps(0, 0, 0, 0), 0), 0);
  assert.equal(p.pick(eps(0, 0, 0, 0), 0), 1);
});

// --- power-of-two ------------------------------------------------------------

test('power-of-two takes the less loaded of its two draws', () => {
  // Draws 0.0 then 0.5 over 3 endpoints: first 0, then 1 of the other two, i.e. 2.
  const list = eps(5, 0, 1);
  assert.equal(new PowerOfTwoBalancer(scripted(0, 0.5)).pick(list, 0), 2, 'endpoint 1 is not drawn');
  assert.equal(new PowerOfTwoBalancer(scripted(0.9, 0)).pick(eps(1, 0, 5), 0), 0, 'first draw 2, second 0');
  // Dirigent's version takes the busier one: with two endpoints it would always pick the loaded one.
  const p = new PowerOfTwoBalancer(mulberry32(9));
  for (let i = 0; i < 100; i++) assert.equal(p.pick(eps(7, 2), 0), 1);
  for (let i = 0; i < 100; i++) assert.equal(p.pick(eps(0, 1), 0), 0, 'the two draws are distinct');
});

test('power-of-two skips a full draw, and scans when both draws are full', () => {
  const list = eps(1, 0, 1, 1);
  // Draws 0 and 2, both full at limit 1: the scan finds endpoint 1.
  assert.equal(new PowerOfTwoBalancer(scripted(0, 0.5)).pick(list, 1), 1);
  // Draws 0 (full) and 1 (free): endpoint 1.
  assert.equal(new PowerOfTwoBalancer(scripted(0, 0)).pick(list, 1), 1);
  assert.equal(new PowerOfTwoBalancer(scripted(0.99, 0.99)).pick(eps(3), 3), -1, 'one full endpoint');
  assert.equal(new PowerOfTwoBalancer(scripted(0.99, 0.99)).pick(eps(2), 3), 0, 'one free endpoint');
});

test('power-of-two: the choice statistics of two distinct uniform draws', () => {
  // Of the 6 pairs over 4 endpoints, 3 contain the idlest and none leaves the
  // busiest as the better draw: P = 1/2, 1/3, 1/6, 0.
  const p = new PowerOfTwoBalancer(mulberry32(10));
  const list = eps(0, 1, 2, 3);
  const counts = histogram(() => p.pick(list, 0), 4, 12_000);
  assertNear(counts[0]!, 6000, 0.1, 'idlest');
  assertNear(counts[1]!, 4000, 0.1, 'second');
  assertNear(counts[2]!, 2000, 0.1, 'third');
  assert.equal(counts[3], 0, 'the busiest is never the better draw');
  // Equal loads: ties go to the first draw, which is uniform.
  const even = histogram(() => p.pick(eps(2, 2, 2, 2), 0), 4, 10_000);
  for (const [i, c] of even.entries()) assertNear(c, 2500, 0.1, `endpoint ${i}`);
});

// --- knative -----------------------------------------------------------------

test('knative with containerConcurrency 0 is power-of-two, taking the less loaded draw', () => {
  const p = new KnativeBalancer(mulberry32(11));
  for (let i = 0; i < 100; i++) assert.equal(p.pick(eps(9, 0), 0), 1);
  const counts = histogram(() => p.pick(eps(0, 1, 2, 3), 0), 4, 12_000);
  assertNear(counts[0]!, 6000, 0.1, 'idlest');
  assert.equal(counts[3], 0);
});

test('knative with containerConcurrency 1 to 3 packs the first endpoint with a free token', () => {
  const p = new KnativeBalancer(mulberry32(12));
  for (let i = 0; i < 5; i++) assert.equal(p.pick(eps(0, 0, 0), 1), 0, 'no rotation');
  assert.equal(p.pick(eps(1, 0, 0), 1), 1);
  assert.equal(p.pick(eps(2, 2, 1), 2), 2);
  assert.equal(p.pick(eps(2, 1, 0), 3), 0, 'the first free one, not the least loaded');
  assert.equal(p.pick(eps(3, 3, 3), 3), -1, 'all full: queue, not a random busy endpoint');
});

test('knative with containerConcurrency above 3 is round-robin skipping full endpoints', () => {
  const p = new KnativeBalancer(mulberry32(13));
  const idle = eps(0, 0, 0);
  assert.deepEqual([0, 1, 2, 3, 4].map(() => p.pick(idle, 4)), [0, 1, 2, 0, 1]);
  assert.equal(p.pick(eps(0, 0, 4), 4), 0, 'cursor at 2, which is full');
  assert.equal(p.pick(eps(4, 4, 4), 4), -1);
});

test('knative switches mode when the concurrency changes, on the same instance', () => {
  const p = new KnativeBalancer(mulberry32(14));
  const list = eps(0, 0, 0);
  assert.equal(p.pick(list, 10), 0);
  assert.equal(p.pick(list, 10), 1);
  assert.equal(p.pick(list, 1), 0, 'first available');
  assert.equal(p.pick(list, 10), 2, 'the round-robin cursor was kept');
  assert.equal(p.pick(eps(3, 0), 0), 1, 'power of two');
});
