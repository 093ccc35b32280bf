import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ColdStartQueue } from './cold-start-queue.js';
import { EndpointState, FunctionState, type Waiter } from './function-table.js';
import { EndpointUpstream, UpstreamTracker } from './upstream.js';
import { parseFunctionSpec } from '../shared/spec.js';

// Upstreams connect lazily: creating them here does no I/O.
const upstreams: EndpointUpstream[] = [];
const tracker = new UpstreamTracker();
after(async () => {
  await Promise.all(upstreams.map((u) => u.close()));
});

function endpoint(id: string): EndpointState {
  const upstream = new EndpointUpstream('127.0.0.1:9', { connections: 1, tracker });
  upstreams.push(upstream);
  return new EndpointState(id, '127.0.0.1:9', 'w1', upstream);
}

function fnState(containerConcurrency: number): FunctionState {
  const spec = parseFunctionSpec({ name: 'f', command: ['x'], scaling: { containerConcurrency } });
  return new FunctionState(spec, 1n, 'round-robin');
}

class TestWaiter implements Waiter {
  queuePrev: Waiter | null = null;
  queueNext: Waiter | null = null;
  inQueue = false;
  granted: EndpointState | null = null;
  constructor(
    readonly name: string,
    public deadline = Infinity,
  ) {}
  grant(ep: EndpointState): void {
    this.granted = ep;
  }
}

test('queue: FIFO order, removal from the middle, length', () => {
  const q = new ColdStartQueue<TestWaiter>();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => new TestWaiter(n)) as [TestWaiter, TestWaiter, TestWaiter, TestWaiter];
  q.push(a);
  q.push(b);
  q.push(c);
  q.push(d);
  assert.equal(q.length, 4);
  assert.equal(q.remove(c), true);
  assert.equal(q.remove(c), false, 'removing twice is a no-op');
  assert.equal(q.shift()?.name, 'a');
  assert.equal(q.remove(d), true, 'removing the tail');
  assert.equal(q.length, 1);
  q.push(c);
  assert.deepEqual(q.takeAll().map((w) => w.name), ['b', 'c']);
  assert.equal(q.length, 0);
  assert.equal(q.shift(), null);
});

test('tokens: containerConcurrency bounds each endpoint, 0 is unlimited', () => {
  const fn = fnState(2);
  const e1 = endpoint('e1');
  const e2 = endpoint('e2');
  fn.addEndpoint(e1);
  fn.addEndpoint(e2);
  const got = [fn.acquire(), fn.acquire(), fn.acquire(), fn.acquire(), fn.acquire()];
  assert.deepEqual(got.map((e) => e?.sandboxId ?? null), ['e1', 'e2', 'e1', 'e2', null]);
  assert.equal(fn.inFlight, 4);
  fn.release(e1);
  assert.equal(fn.acquire()?.sandboxId, 'e1');

  const unlimited = fnState(0);
  unlimited.addEndpoint(endpoint('u'));
  for (let i = 0; i < 100; i++) assert.ok(unlimited.acquire());
  assert.equal(unlimited.inFlight, 100);
});

test('tokens: a finished request hands its token to the head waiter', () => {
  const fn = fnState(1);
  const e1 = endpoint('e1');
  fn.addEndpoint(e1);
  assert.equal(fn.acquire(), e1);
  const w1 = new TestWaiter('w1');
  const w2 = new TestWaiter('w2');
  fn.queue.push(w1);
  fn.queue.push(w2);
  fn.release(e1);
  assert.equal(w1.granted, e1);
  assert.equal(w2.granted, null);
  assert.equal(e1.inFlight, 1, 'the token went straight to w1');
  assert.equal(fn.queued, 1);
});

test('tokens: a new endpoint releases waiters in FIFO order, as many as it has tokens', () => {
  const fn = fnState(2);
  const ws = [1, 2, 3].map((i) => new TestWaiter(`w${i}`));
  for (const w of ws) fn.queue.push(w);
  assert.equal(fn.acquire(), null);
  const e1 = endpoint('e1');
  fn.addEndpoint(e1);
  assert.deepEqual(ws.map((w) => w.granted?.sandboxId ?? null), ['e1', 'e1', null]);
  assert.equal(fn.queued, 1);
  assert.equal(fn.inFlight, 2);
});

test('tokens: raising containerConcurrency frees tokens at once; lowering lets in-flight finish', () => {
  const fn = fnState(1);
  const e1 = endpoint('e1');
  fn.addEndpoint(e1);
  fn.acquire();
  const w = new TestWaiter('w');
  fn.queue.push(w);
  const raised = parseFunctionSpec({ name: 'f', command: ['x'], scaling: { containerConcurrency: 2 } });
  assert.equal(fn.update(raised, 2n), true);
  assert.equal(w.granted, e1);
  const lowered = parseFunctionSpec({ name: 'f', command: ['x'], scaling: { containerConcurrency: 1 } });
  assert.equal(fn.update(lowered, 1n), false, 'a stale revision is ignored');
  assert.equal(fn.update(lowered, 3n), true);
  assert.equal(fn.acquire(), null, 'two in flight, limit now 1');
  fn.release(e1);
  assert.equal(fn.acquire(), null, 'still one in flight');
  fn.release(e1);
  assert.equal(fn.acquire(), e1);
});

test('tokens: a removed endpoint is not routed to and resolves whenIdle when its requests finish', async () => {
  const fn = fnState(1);
  const e1 = endpoint('e1');
  const e2 = endpoint('e2');
  fn.addEndpoint(e1);
  fn.addEndpoint(e2);
  assert.equal(fn.acquire(), e1);
  const w = new TestWaiter('w');
  assert.equal(fn.acquire(), e2);
  fn.queue.push(w);
  assert.equal(fn.removeEndpoint('e1'), e1);
  assert.equal(fn.removeEndpoint('e1'), undefined);
  let idle = false;
  const p = e1.whenIdle().then(() => (idle = true));
  fn.release(e1);
  await p;
  assert.equal(idle, true);
  assert.equal(w.granted, null, 'a draining endpoint gives its token to nobody');
  fn.release(e2);
  assert.equal(w.granted, e2);
});

test('expiry takes the waiters whose deadline passed, oldest first', () => {
  const fn = fnState(1);
  const ws = [10, 20, 30].map((d, i) => new TestWaiter(`w${i}`, d));
  for (const w of ws) fn.queue.push(w);
  assert.equal(fn.takeExpired(5), null);
  assert.deepEqual(fn.takeExpired(20)?.map((w) => (w as TestWaiter).name), ['w0', 'w1']);
  assert.equal(fn.queued, 1);
});

test('policy: the spec names it, else the default applies; an update that changes it takes effect', () => {
  const spec = (loadBalancing?: string) =>
    parseFunctionSpec({ name: 'f', command: ['x'], scaling: { containerConcurrency: 1 }, ...(loadBalancing ? { loadBalancing } : {}) });
  const fn = new FunctionState(spec(), 1n, 'round-robin');
  assert.equal(fn.policy.name, 'round-robin', 'the data plane default');
  assert.equal(new FunctionState(spec('least-inflight'), 1n, 'round-robin').policy.name, 'least-inflight');
  const e1 = endpoint('e1');
  const e2 = endpoint('e2');
  fn.addEndpoint(e1);
  fn.addEndpoint(e2);
  const sequential = (): string[] =>
    [0, 1, 2, 3].map(() => {
      const ep = fn.acquire();
      assert.ok(ep);
      fn.release(ep);
      return ep.sandboxId;
    });
  assert.deepEqual(sequential(), ['e1', 'e2', 'e1', 'e2']);

  // knative with containerConcurrency 1 packs the first free endpoint.
  assert.equal(fn.update(spec('knative'), 2n), true);
  assert.equal(fn.policy.name, 'knative');
  assert.deepEqual(sequential(), ['e1', 'e1', 'e1', 'e1']);

  // A stale revision changes nothing; the same name keeps the instance (and its cursor).
  const knative = fn.policy;
  assert.equal(fn.update(spec('round-robin'), 1n), false);
  assert.equal(fn.policy, knative);
  assert.equal(fn.update(spec('knative'), 3n), true);
  assert.equal(fn.policy, knative);

  // Dropping the field goes back to the default.
  assert.equal(fn.update(spec(), 4n), true);
  assert.equal(fn.policy.name, 'round-robin');
  assert.deepEqual(sequential(), ['e1', 'e2', 'e1', 'e2']);
});
